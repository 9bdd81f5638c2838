/**
 * Verification of VivoKey authenticity tokens (JWTs) against the platform's JWKS, built on jose.
 *
 * protocols.md §1.1 records a conflict: vivokey.com and the Spark docs show ES256 tokens, the AuthentiChip target
 * README shows RS256. Tapline therefore selects the key by `kid` and accepts exactly those two algorithms; the JWK's
 * own `kty`/`crv`/`alg` must fit the token's `alg`, so one algorithm can never be verified with the other's key.
 *
 * @packageDocumentation
 */
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  customFetch,
  decodeProtectedHeader,
  jwtVerify,
  type FetchImplementation,
  type JSONWebKeySet,
  type JWTVerifyGetKey,
  type ProtectedHeaderParameters,
} from 'jose';
import { ErrorCode, TaplineError, isTaplineError } from '../model/errors.js';
import type { AuthenticityClaims, VerifyTokenOptions } from '../model/platform.js';
import { systemClock, type Clock } from '../runtime/clock.js';
import { silentLogger, type Logger } from '../runtime/logger.js';
import {
  BodyTooLargeError,
  checkTimeout,
  networkErrorCode,
  readBodyLimited,
  sanitizeCause,
  withCallDeadline,
  type FetchLike,
} from './http.js';

/** The signature algorithms an authenticity token may use. Nothing else is ever accepted (`none`, HS*, PS*, …). */
export type JwtAlgorithm = 'ES256' | 'RS256';

/** Every {@link JwtAlgorithm}, in the order Tapline prefers them. */
export const JWT_ALGORITHMS: readonly JwtAlgorithm[] = Object.freeze(['ES256', 'RS256'] as const);

/** Why a token was refused; found in `details.reason` of a `TOKEN_INVALID` error. */
export type TokenInvalidReason =
  /** Not a compact JWS, or its header or claims are not JSON objects. */
  | 'malformed'
  /** `alg` is not in the allowlist (`none`, HS256, …). */
  | 'algorithm'
  /** No `kid`, or no key in the JWKS with that `kid` (after one refresh) fits the algorithm. */
  | 'kid'
  /** The signature does not verify. */
  | 'signature'
  /** `exp` is in the past (beyond the tolerance). */
  | 'expired'
  /** `nbf` or `iat` is in the future (beyond the tolerance). */
  | 'not-yet-valid'
  | 'issuer'
  | 'audience'
  /** A required claim is missing or has the wrong type or form (for example `sub` not 64 hex characters). */
  | 'claims'
  /** The JWKS entry the token selected cannot be used as a verification key. */
  | 'key';

/** Returns the current JWKS of an in-process platform; called on every verification. */
export type JwksGetter = () => JSONWebKeySet | Promise<JSONWebKeySet>;

/** Options of {@link createJwtVerifier} that do not choose the key source. */
export interface JwtVerifierBaseOptions {
  /** Required `iss`. Default: not checked (VivoKey's ES256 tokens have been seen without one). */
  readonly issuer?: string | readonly string[];
  /** Required `aud`, unless a call passes its own. Default: not checked. */
  readonly audience?: string;
  /** Accepted algorithms, a non-empty subset of {@link JWT_ALGORITHMS}. Default both. */
  readonly algorithms?: readonly JwtAlgorithm[];
  /** Used to fetch a remote JWKS. Default `globalThis.fetch`. */
  readonly fetch?: FetchLike;
  /** How long fetched keys are trusted before they are fetched again. Default 10 minutes. */
  readonly cacheMaxAgeMs?: number;
  /**
   * After a fetch, how long an unknown `kid` is refused without fetching again. Default 30 s. It bounds how often a
   * stream of forged `kid`s can make Tapline hit the platform; a genuinely rotated key is picked up once it passes.
   */
  readonly cooldownMs?: number;
  /** JWKS fetch timeout, and the default per-call timeout. Default 5000 ms. */
  readonly timeoutMs?: number;
  /** Largest JWKS accepted. Default 256 KiB. */
  readonly maxJwksBytes?: number;
  /** The time `exp`/`nbf`/`iat` are checked against. The JWKS cache ages by the wall clock (jose's own). */
  readonly clock?: Clock;
  /** Seconds of clock skew tolerated, unless a call passes its own. Default 30. */
  readonly clockToleranceSec?: number;
  readonly logger?: Logger;
}

/**
 * Options of {@link createJwtVerifier}: either `jwksUrl` (fetched, cached and rotated by jose's remote JWKS) or
 * `jwks`, a key set or a getter for one (the in-process reference platform).
 */
export type JwtVerifierOptions = JwtVerifierBaseOptions &
  (
    | { readonly jwksUrl: string | URL; readonly jwks?: undefined }
    | { readonly jwks: JSONWebKeySet | JwksGetter; readonly jwksUrl?: undefined }
  );

/** Verifies authenticity tokens. Create one with {@link createJwtVerifier}. */
export interface JwtVerifier {
  /** The JWKS URL, or `undefined` for a local key set. */
  readonly jwksUrl: URL | undefined;
  /** The accepted algorithms. */
  readonly algorithms: readonly JwtAlgorithm[];
  /**
   * Verifies `token` and returns its claims. Rejects with `TOKEN_INVALID` (`details.reason` says why, see
   * {@link TokenInvalidReason}), `PLATFORM_UNAVAILABLE` when the JWKS cannot be fetched, `PROTOCOL_ERROR` when it is
   * not a key set, `TIMEOUT` or `ABORTED`.
   */
  verify(token: string, options?: VerifyTokenOptions): Promise<AuthenticityClaims>;
}

const DEFAULT_TIMEOUT_MS = 5_000;
const DEFAULT_CACHE_MAX_AGE_MS = 10 * 60_000;
const DEFAULT_COOLDOWN_MS = 30_000;
const DEFAULT_CLOCK_TOLERANCE_SEC = 30;
const DEFAULT_MAX_JWKS_BYTES = 256 * 1024;
// Far above any real token; a bound keeps hostile input from costing base64 and JSON work.
const MAX_TOKEN_CHARS = 16 * 1024;
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const SUB = /^[0-9a-fA-F]{64}$/;
const TIMEOUT_HINT = 'Check the network and the platform URL (--platform), or allow more time (--timeout).';
const NETWORK_HINT = 'Check the network connection and the platform URL (--platform); then try again.';

/** Creates a {@link JwtVerifier}. Invalid options throw `INVALID_ARGUMENT` at once. */
export function createJwtVerifier(options: JwtVerifierOptions): JwtVerifier {
  return new JoseJwtVerifier(options);
}

class JoseJwtVerifier implements JwtVerifier {
  readonly jwksUrl: URL | undefined;
  readonly algorithms: readonly JwtAlgorithm[];
  readonly #getKey: JWTVerifyGetKey;
  readonly #issuer: string | string[] | undefined;
  readonly #audience: string | undefined;
  readonly #timeoutMs: number;
  readonly #clock: Clock;
  readonly #toleranceSec: number;
  readonly #log: Logger;

  constructor(options: JwtVerifierOptions) {
    this.algorithms = checkAlgorithms(options.algorithms);
    this.#timeoutMs = checkTimeout(options.timeoutMs, DEFAULT_TIMEOUT_MS, 'timeoutMs');
    this.#issuer = options.issuer === undefined ? undefined : [options.issuer].flat();
    this.#audience = options.audience;
    this.#clock = options.clock ?? systemClock;
    this.#toleranceSec = checkTolerance(options.clockToleranceSec ?? DEFAULT_CLOCK_TOLERANCE_SEC);
    this.#log = (options.logger ?? silentLogger).child({ component: 'platform.jwt' });
    if (options.jwksUrl !== undefined && options.jwks !== undefined) {
      throw new TaplineError(ErrorCode.InvalidArgument, 'Give the token verifier either jwksUrl or jwks, not both.');
    }
    if (options.jwksUrl !== undefined) {
      this.jwksUrl = parseJwksUrl(options.jwksUrl);
      this.#getKey = this.remoteKeys(this.jwksUrl, options);
    } else if (options.jwks !== undefined) {
      this.jwksUrl = undefined;
      this.#getKey = localKeys(options.jwks);
    } else {
      throw new TaplineError(ErrorCode.InvalidArgument, 'The token verifier needs a jwksUrl or a jwks key set.');
    }
  }

  async verify(token: string, options: VerifyTokenOptions = {}): Promise<AuthenticityClaims> {
    const timeoutMs = checkTimeout(options.timeoutMs, this.#timeoutMs, 'timeoutMs');
    const toleranceSec = checkTolerance(options.clockToleranceSec ?? this.#toleranceSec);
    const audience = options.audience ?? this.#audience;
    const header = this.checkHeader(token);
    try {
      return await withCallDeadline(
        { what: 'Verifying the authenticity token', timeoutMs, signal: options.signal, timeoutHint: TIMEOUT_HINT },
        () => this.verifyWithKeys(token, header, toleranceSec, audience),
      );
    } catch (error) {
      if (isTaplineError(error)) {
        this.#log.debug('token refused', { code: error.code, reason: error.details['reason'], kid: header.kid });
      }
      throw error;
    }
  }

  /** Refuses what needs no key: not a JWT, a foreign algorithm, no kid. No JWKS fetch is spent on those. */
  private checkHeader(token: string): ProtectedHeaderParameters & { kid: string; alg: JwtAlgorithm } {
    if (typeof token !== 'string' || token.length > MAX_TOKEN_CHARS || !COMPACT_JWS.test(token)) {
      throw tokenInvalid('malformed', 'The authenticity token is not a well-formed JWT (header.payload.signature).');
    }
    let header: ProtectedHeaderParameters;
    try {
      header = decodeProtectedHeader(token);
    } catch (cause) {
      throw tokenInvalid('malformed', 'The authenticity token header is not valid base64url JSON.', { cause });
    }
    const alg = header.alg;
    if (typeof alg !== 'string' || !(this.algorithms as readonly string[]).includes(alg)) {
      throw tokenInvalid(
        'algorithm',
        `The authenticity token uses the algorithm ${printable(alg)}; Tapline accepts only ${this.algorithms.join(', ')}.`,
        { details: { alg: printable(alg) } },
      );
    }
    const kid = header.kid;
    if (typeof kid !== 'string' || kid === '') {
      throw tokenInvalid('kid', 'The authenticity token names no signing key (no "kid" in its header).');
    }
    return { ...header, alg: alg as JwtAlgorithm, kid };
  }

  private async verifyWithKeys(
    token: string,
    header: { kid: string; alg: JwtAlgorithm },
    toleranceSec: number,
    audience: string | undefined,
  ): Promise<AuthenticityClaims> {
    const now = this.#clock.now();
    let payload: Record<string, unknown>;
    try {
      const result = await jwtVerify(token, this.#getKey, {
        algorithms: [...this.algorithms],
        // exp is required: a token without one would be valid forever.
        requiredClaims: ['exp', 'sub'],
        clockTolerance: toleranceSec,
        currentDate: new Date(now),
        ...(this.#issuer === undefined ? {} : { issuer: this.#issuer }),
        ...(audience === undefined ? {} : { audience }),
      });
      payload = result.payload;
    } catch (error) {
      throw fromJoseError(error, header);
    }
    const claims = checkClaims(payload, now, toleranceSec);
    this.#log.debug('token verified', { kid: header.kid, alg: header.alg });
    return claims;
  }

  private remoteKeys(url: URL, options: JwtVerifierBaseOptions): JWTVerifyGetKey {
    const fetchImpl = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    const maxBytes = options.maxJwksBytes ?? DEFAULT_MAX_JWKS_BYTES;
    const log = this.#log;
    // jose owns caching, rotation and the cooldown; this wrapper only turns transport failures into Tapline errors
    // (jose passes any non-TimeoutError through) and caps the body before jose parses it.
    const jwksFetch: FetchImplementation = async (input, init) => {
      const started = Date.now();
      const what = `Fetching the VivoKey key set from ${url.origin}${url.pathname}`;
      let response: Response;
      try {
        response = await fetchImpl(input, init);
      } catch (cause) {
        throw jwksFailure(init.signal, what, cause, this.#timeoutMs);
      }
      if (response.status !== 200) {
        await response.body?.cancel().catch(() => undefined);
        throw new TaplineError(
          ErrorCode.PlatformUnavailable,
          `${what} failed: the server answered HTTP ${response.status}.`,
          { details: { status: response.status, url: url.href }, hint: 'Check the JWKS URL, or try again later.' },
        );
      }
      let bytes: Uint8Array;
      try {
        bytes = await readBodyLimited(response, init.signal, maxBytes);
      } catch (cause) {
        if (cause instanceof BodyTooLargeError) {
          throw new TaplineError(ErrorCode.ProtocolError, `${what}: the key set is larger than ${maxBytes} bytes.`, {
            cause,
            details: { url: url.href, maxBytes },
          });
        }
        throw jwksFailure(init.signal, what, cause, this.#timeoutMs);
      }
      let json: unknown;
      try {
        json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
      } catch (cause) {
        throw malformedJwks(what, url, sanitizeCause(cause, []));
      }
      if (!isKeySet(json)) throw malformedJwks(what, url, undefined);
      log.debug('jwks fetched', { url: url.href, keys: json.keys.length, elapsedMs: Date.now() - started });
      return new Response(bytes, { status: 200, headers: { 'content-type': 'application/json' } });
    };
    return createRemoteJWKSet(url, {
      timeoutDuration: Math.ceil(this.#timeoutMs),
      cacheMaxAge: checkDuration(options.cacheMaxAgeMs, DEFAULT_CACHE_MAX_AGE_MS, 'cacheMaxAgeMs'),
      cooldownDuration: checkDuration(options.cooldownMs, DEFAULT_COOLDOWN_MS, 'cooldownMs'),
      [customFetch]: jwksFetch,
    });
  }
}

function localKeys(source: JSONWebKeySet | JwksGetter): JWTVerifyGetKey {
  if (typeof source !== 'function') {
    const set = buildLocalSet(source);
    return (header, token) => set(header, token);
  }
  let cached: { readonly source: JSONWebKeySet; readonly set: ReturnType<typeof createLocalJWKSet> } | undefined;
  return async (header, token) => {
    let jwks: JSONWebKeySet;
    try {
      jwks = await source();
    } catch (cause) {
      throw new TaplineError(ErrorCode.PlatformUnavailable, 'The local platform could not provide its key set.', {
        cause,
      });
    }
    // Rebuilding only when the getter hands out a new object keeps imported keys cached between calls.
    if (cached?.source !== jwks) cached = { source: jwks, set: buildLocalSet(jwks) };
    return cached.set(header, token);
  };
}

function buildLocalSet(jwks: JSONWebKeySet): ReturnType<typeof createLocalJWKSet> {
  if (!isKeySet(jwks)) {
    throw new TaplineError(ErrorCode.InvalidArgument, 'The local JWKS is not a key set ({"keys": [...]}).');
  }
  return createLocalJWKSet(jwks);
}

function isKeySet(value: unknown): value is JSONWebKeySet {
  if (typeof value !== 'object' || value === null) return false;
  const keys = (value as { keys?: unknown }).keys;
  return Array.isArray(keys) && keys.every((key) => typeof key === 'object' && key !== null && !Array.isArray(key));
}

function jwksFailure(signal: AbortSignal, what: string, cause: unknown, timeoutMs: number): TaplineError {
  if (isTaplineError(cause)) return cause;
  if (signal.aborted) {
    return new TaplineError(ErrorCode.Timeout, `${what} did not finish within ${timeoutMs} ms.`, {
      cause: sanitizeCause(cause, []),
      details: { timeoutMs },
      hint: TIMEOUT_HINT,
    });
  }
  const code = networkErrorCode(cause);
  return new TaplineError(
    ErrorCode.PlatformUnavailable,
    `${what} failed${code === undefined ? '' : ` (${code})`}: the key set to check tokens with is unavailable.`,
    { cause: sanitizeCause(cause, []), details: code === undefined ? {} : { networkError: code }, hint: NETWORK_HINT },
  );
}

function malformedJwks(what: string, url: URL, cause: unknown): TaplineError {
  return new TaplineError(ErrorCode.ProtocolError, `${what}: the answer is not a JSON Web Key Set.`, {
    cause,
    details: { url: url.href },
    hint: 'Check that the JWKS URL points at /.well-known/jwks.json of the VivoKey platform.',
  });
}

const REASON_MESSAGES: Readonly<Record<TokenInvalidReason, string>> = {
  malformed: 'The authenticity token is not a well-formed JWT.',
  algorithm: 'The authenticity token uses an algorithm Tapline does not accept.',
  kid: 'The authenticity token was signed with a key that is not in the VivoKey key set.',
  signature: 'The authenticity token signature does not verify.',
  expired: 'The authenticity token has expired.',
  'not-yet-valid': 'The authenticity token is not valid yet (nbf or iat in the future).',
  issuer: 'The authenticity token was issued by an unexpected issuer.',
  audience: 'The authenticity token is not meant for this audience.',
  claims: 'The authenticity token claims are missing or malformed.',
  key: 'The key the authenticity token selected cannot verify it.',
};

const REASON_HINTS: Readonly<Record<TokenInvalidReason, string>> = {
  malformed: 'Pass the JWT exactly as the platform issued it.',
  algorithm: 'Do not trust this token: it was not issued by the VivoKey platform.',
  kid: 'Do not trust this token unless the platform URL is right: it was not signed by a key the platform publishes.',
  signature: 'Do not trust this token: it was altered or signed by someone else.',
  expired: 'Tokens live a few minutes: scan the chip again for a fresh one.',
  'not-yet-valid': "Check this computer's clock, then scan the chip again.",
  issuer: 'Check the platform URL and the expected issuer.',
  audience: 'Check the audience the relying party expects.',
  claims: 'Do not trust this token: it is not a VivoKey authenticity token.',
  key: 'The platform key set looks broken; try again later.',
};

function tokenInvalid(
  reason: TokenInvalidReason,
  message: string = REASON_MESSAGES[reason],
  extra: { cause?: unknown; details?: Readonly<Record<string, unknown>> } = {},
): TaplineError {
  return new TaplineError(ErrorCode.TokenInvalid, message, {
    cause: extra.cause,
    hint: REASON_HINTS[reason],
    details: { reason, ...extra.details },
  });
}

function fromJoseError(error: unknown, header: { kid: string; alg: JwtAlgorithm }): TaplineError {
  if (isTaplineError(error)) return error;
  const code = (error as { code?: unknown } | null)?.code;
  const claim = (error as { claim?: unknown } | null)?.claim;
  switch (code) {
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
    case 'ERR_JOSE_NOT_SUPPORTED':
      return tokenInvalid('algorithm', undefined, { cause: error, details: { alg: header.alg } });
    case 'ERR_JWKS_NO_MATCHING_KEY':
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
      return tokenInvalid(
        'kid',
        `The authenticity token was signed with key ${printable(header.kid)}, which the VivoKey key set does not hold for ${header.alg}.`,
        { cause: error, details: { kid: printable(header.kid), alg: header.alg } },
      );
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return tokenInvalid('signature', undefined, { cause: error, details: { kid: printable(header.kid) } });
    case 'ERR_JWT_EXPIRED':
      return tokenInvalid('expired', undefined, { cause: error });
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED': {
      const reason: TokenInvalidReason =
        claim === 'iss' ? 'issuer' : claim === 'aud' ? 'audience' : claim === 'nbf' ? 'not-yet-valid' : 'claims';
      const missing = (error as { reason?: unknown }).reason === 'missing';
      const message =
        reason === 'claims' || missing
          ? `The authenticity token claim "${printable(claim)}" is ${missing ? 'missing' : 'invalid'}.`
          : undefined;
      return tokenInvalid(reason, message, { cause: error, details: { claim: printable(claim) } });
    }
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID':
      return tokenInvalid('malformed', undefined, { cause: error });
    case 'ERR_JWKS_INVALID':
      return new TaplineError(ErrorCode.ProtocolError, 'The VivoKey key set is not a valid JSON Web Key Set.', {
        cause: error,
        hint: 'Check the JWKS URL, or try again later.',
      });
    case 'ERR_JWKS_TIMEOUT':
      return new TaplineError(ErrorCode.Timeout, 'Fetching the VivoKey key set timed out.', {
        cause: error,
        hint: TIMEOUT_HINT,
      });
    default:
      // A key that fails to import or to verify for a reason jose does not classify: refuse the token.
      return tokenInvalid('key', undefined, { cause: error, details: { kid: printable(header.kid) } });
  }
}

/** Checks what jose does not: `sub` is a 64-hex chip id, `iat` is not in the future, and the claim types. */
function checkClaims(payload: Record<string, unknown>, nowMs: number, toleranceSec: number): AuthenticityClaims {
  const bad = (claim: string, why: string): TaplineError =>
    tokenInvalid('claims', `The authenticity token claim "${claim}" ${why}.`, { details: { claim } });
  const sub = payload['sub'];
  if (typeof sub !== 'string' || !SUB.test(sub)) throw bad('sub', 'is not a 64-hex chip identifier');
  const iat = payload['iat'];
  if (iat !== undefined && (typeof iat !== 'number' || !Number.isFinite(iat))) throw bad('iat', 'is not a number');
  if (typeof iat === 'number' && iat > nowMs / 1000 + toleranceSec) {
    throw tokenInvalid('not-yet-valid', 'The authenticity token was issued in the future (iat).', {
      details: { claim: 'iat' },
    });
  }
  for (const name of ['iss', 'dev_id', 'atp', 'cld'] as const) {
    if (payload[name] !== undefined && typeof payload[name] !== 'string') throw bad(name, 'is not a string');
  }
  for (const name of ['type', 'product'] as const) {
    if (payload[name] !== undefined && typeof payload[name] !== 'number') throw bad(name, 'is not a number');
  }
  const aud = payload['aud'];
  if (
    aud !== undefined &&
    typeof aud !== 'string' &&
    !(Array.isArray(aud) && aud.every((entry) => typeof entry === 'string'))
  ) {
    throw bad('aud', 'is not a string or a list of strings');
  }
  return Object.freeze({ ...payload, sub });
}

function checkAlgorithms(value: unknown): readonly JwtAlgorithm[] {
  if (value === undefined) return JWT_ALGORITHMS;
  const allowed: readonly unknown[] = JWT_ALGORITHMS;
  const list: readonly unknown[] | undefined = Array.isArray(value) ? (value as unknown[]) : undefined;
  if (list === undefined || list.length === 0 || list.some((alg) => !allowed.includes(alg))) {
    throw new TaplineError(
      ErrorCode.InvalidArgument,
      `The accepted token algorithms must be a non-empty subset of ${JWT_ALGORITHMS.join(', ')}.`,
      { details: { algorithms: list === undefined ? printable(value) : list.map(printable) } },
    );
  }
  return Object.freeze([...new Set(list as readonly JwtAlgorithm[])]);
}

function checkTolerance(value: number): number {
  if (!Number.isFinite(value) || value < 0 || value > 3600) {
    throw new TaplineError(ErrorCode.InvalidArgument, 'clockToleranceSec must be between 0 and 3600 seconds.', {
      details: { clockToleranceSec: value },
    });
  }
  return value;
}

function checkDuration(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (Number.isNaN(value) || value < 0) {
    throw new TaplineError(ErrorCode.InvalidArgument, `${name} must be zero or a positive number of milliseconds.`, {
      details: { [name]: value },
    });
  }
  return value;
}

function parseJwksUrl(value: string | URL): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch (cause) {
    throw new TaplineError(ErrorCode.InvalidArgument, 'The JWKS URL is not a valid URL.', { cause });
  }
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || url.username !== '' || url.password !== '') {
    throw new TaplineError(ErrorCode.InvalidArgument, 'The JWKS URL must be http(s) and carry no credentials.', {
      details: { protocol: url.protocol },
    });
  }
  return url;
}

/** Header values are attacker-controlled: keep only a short run of safe characters for messages and details. */
function printable(value: unknown): string {
  if (typeof value !== 'string') return value === undefined ? '(none)' : typeof value;
  const safe = value.replace(/[^A-Za-z0-9_.:-]/g, '?');
  return safe.length > 64 ? `${safe.slice(0, 61)}...` : safe;
}
