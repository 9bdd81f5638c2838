/**
 * The HTTP client of the current VivoKey Auth API (`auth.vivokey.com`, protocols.md §1.1). The legacy Scan API
 * (`api2.vivokey.com/v1`, §1.2) is a different protocol and is deliberately not spoken here.
 *
 * @packageDocumentation
 */
import { createHash } from 'node:crypto';
import { ErrorCode, TaplineError, abortError, isTaplineError } from '../model/errors.js';
import type {
  AuthenticityClaims,
  ChallengeRequest,
  ChallengeResponse,
  PlatformCallOptions,
  PlatformClient,
  SessionRequest,
  SessionResponse,
  ValidateRequest,
  ValidateResponse,
  VerifyTokenOptions,
} from '../model/platform.js';
import { silentLogger, type Logger } from '../runtime/logger.js';
import {
  BodyTooLargeError,
  checkTimeout,
  isLoopback,
  networkErrorCode,
  parseBaseUrl,
  parseJsonBytes,
  readBodyLimited,
  sanitizeCause,
  scrubText,
  withCallDeadline,
  type FetchLike,
} from './http.js';
import { createJwtVerifier, type JwtAlgorithm, type JwtVerifier } from './jwt.js';

/** Where the VivoKey Auth API lives. */
export const DEFAULT_VIVOKEY_BASE_URL = 'https://auth.vivokey.com';

/** Default per-call timeout of {@link VivoKeyAuthClient}, covering connection, headers and body. */
export const DEFAULT_PLATFORM_TIMEOUT_MS = 10_000;

/** Default cap on a response body; VivoKey's answers are a few hundred bytes. */
export const DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024;

/** The outcome of a SUN validation. */
export type ValidateResult = ValidateResponse['result'];

/**
 * The unsigned answer of `POST /validate.json`: `result` is checked, every other field (`dev_id`, `atp`, `type`,
 * `product`, …) is passed on as the platform sent it. Nothing here is signed: never base a trust decision on it.
 */
export interface ValidateJsonResponse {
  readonly result: ValidateResult;
  readonly [field: string]: unknown;
}

/** Options of {@link createVivoKeyAuthClient}. */
export interface VivoKeyAuthClientOptions {
  /** The Auth API base URL. Default {@link DEFAULT_VIVOKEY_BASE_URL}; a path prefix is kept. */
  readonly baseUrl?: string | URL;
  /** The developer API key, sent as `X-API-VIVOKEY` on every call. Never logged, never in an error. */
  readonly apiKey: string;
  /** The JWKS for {@link VivoKeyAuthClient.verifyToken}. Default `<baseUrl>/.well-known/jwks.json`. */
  readonly jwksUrl?: string | URL;
  /** Required token issuer. Default: not checked (VivoKey's ES256 tokens have been seen without one). */
  readonly issuer?: string;
  /** Required token audience, unless a call passes its own. */
  readonly audience?: string;
  /** Used for every request, the JWKS included. Default `globalThis.fetch`. */
  readonly fetch?: FetchLike;
  /** Per-call timeout in ms, unless a call passes its own. Default {@link DEFAULT_PLATFORM_TIMEOUT_MS}. */
  readonly timeoutMs?: number;
  readonly logger?: Logger;
  /** Token algorithms accepted; a non-empty subset of `['ES256', 'RS256']` (the default). */
  readonly allowedAlgorithms?: readonly JwtAlgorithm[];
  /** A ready verifier (for example over a local JWKS); excludes `jwksUrl`, `issuer`, `audience`, `allowedAlgorithms`. */
  readonly verifier?: JwtVerifier;
  /** Largest response body accepted. Default {@link DEFAULT_MAX_RESPONSE_BYTES}. */
  readonly maxResponseBytes?: number;
}

type Endpoint = '/challenge' | '/session' | '/validate' | '/validate.json';

const HEX = /^(?:[0-9a-fA-F]{2})+$/;
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const RESULTS: readonly ValidateResult[] = ['success', 'expired', 'invalid'];
// VivoKey documents this bound for /validate; /session echoes cld into the JWT just the same.
const MAX_CLD_CHARS = 2048;
const MAX_TOKEN_CHARS = 16 * 1024;
const MAX_ERROR_BODY_BYTES = 16 * 1024;
const MAX_SERVER_MESSAGE_CHARS = 200;
const SPENT_TOKENS_KEPT = 4096;

const NETWORK_HINT = 'Check the network connection and the platform URL (--platform); then try again.';
const TIMEOUT_HINT = 'The VivoKey platform is slow or unreachable: check the network, or allow more time (--timeout).';
const PROTOCOL_HINT =
  'Check that --platform points at the VivoKey Auth API (https://auth.vivokey.com); if it does, please report this.';
const API_KEY_HINT = 'Check the VivoKey API key (--api-key or its configuration); a key is issued per developer email.';

/** Creates a {@link VivoKeyAuthClient}. Invalid options throw `INVALID_ARGUMENT` at once. */
export function createVivoKeyAuthClient(options: VivoKeyAuthClientOptions): VivoKeyAuthClient {
  return new VivoKeyAuthClient(options);
}

/**
 * {@link PlatformClient} over HTTP: `POST` JSON with `X-API-VIVOKEY`, one deadline per call over connection,
 * headers and body, strict validation of requests and answers, and typed errors:
 *
 * - network failure (refused, reset, DNS) → `PLATFORM_UNAVAILABLE`; 5xx, 408, 429 → `PLATFORM_UNAVAILABLE`;
 * - 401/403 → `PLATFORM_REJECTED` (API key); other 4xx → `PLATFORM_REJECTED` with the server's text, scrubbed;
 * - non-JSON, wrong shape, oversized body or a redirect → `PROTOCOL_ERROR`;
 * - deadline → `TIMEOUT`; the caller's signal → `ABORTED`; a malformed request → `INVALID_ARGUMENT`.
 *
 * Retries: the client never retries. `/challenge` is safe for a caller to retry (it only spends a fresh challenge).
 * `/validate` may be retried, but a first attempt that reached the platform before failing has already consumed the
 * SUN counter, so the retry can honestly answer `expired`. `/session` must never be retried: a challenge token is
 * single-use, and a token whose first sending timed out may already be spent; this client refuses to send the same
 * token twice (`ALREADY_USED`). Start over with a new `/challenge` instead.
 *
 * Redirects are not followed, so the API key is never sent to another address.
 */
export class VivoKeyAuthClient implements PlatformClient {
  /** The Auth API base URL, always ending in `/`. */
  readonly baseUrl: URL;
  /** The JWKS URL tokens are checked against, or `undefined` when a ready verifier was given. */
  readonly jwksUrl: URL | undefined;
  // Private fields keep the key out of util.inspect, JSON.stringify and structured clones of the client.
  readonly #apiKey: string;
  readonly #fetch: FetchLike;
  readonly #timeoutMs: number;
  readonly #maxBytes: number;
  readonly #log: Logger;
  readonly #verifier: JwtVerifier;
  readonly #spentTokens = new Set<string>();

  constructor(options: VivoKeyAuthClientOptions) {
    this.#apiKey = checkApiKey(options.apiKey);
    this.baseUrl = parseBaseUrl(options.baseUrl ?? DEFAULT_VIVOKEY_BASE_URL);
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.#timeoutMs = checkTimeout(options.timeoutMs, DEFAULT_PLATFORM_TIMEOUT_MS, 'timeoutMs');
    this.#maxBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    if (!Number.isInteger(this.#maxBytes) || this.#maxBytes <= 0) {
      throw new TaplineError(ErrorCode.InvalidArgument, 'maxResponseBytes must be a positive integer.');
    }
    this.#log = (options.logger ?? silentLogger).child({ component: 'platform' });
    if (this.baseUrl.protocol === 'http:' && !isLoopback(this.baseUrl.hostname)) {
      this.#log.warn('the platform URL is plain http: the API key crosses the network unencrypted', {
        host: this.baseUrl.host,
      });
    }
    if (options.verifier) {
      if (
        options.jwksUrl !== undefined ||
        options.issuer !== undefined ||
        options.audience !== undefined ||
        options.allowedAlgorithms !== undefined
      ) {
        throw new TaplineError(
          ErrorCode.InvalidArgument,
          'Pass either a ready token verifier or jwksUrl/issuer/audience/allowedAlgorithms, not both.',
        );
      }
      this.#verifier = options.verifier;
    } else {
      this.#verifier = createJwtVerifier({
        jwksUrl: options.jwksUrl ?? new URL('.well-known/jwks.json', this.baseUrl),
        issuer: options.issuer,
        audience: options.audience,
        algorithms: options.allowedAlgorithms,
        fetch: this.#fetch,
        logger: options.logger,
        timeoutMs: options.timeoutMs,
      });
    }
    this.jwksUrl = this.#verifier.jwksUrl;
  }

  /**
   * `POST /challenge`. Scheme 1 sends exactly `{"scheme":1}`; scheme 2 sends the chip's 16-byte E(K, RndB) and its
   * uid (lower-cased). The answer's payload is checked: at least 10 bytes for scheme 1, exactly 32 for scheme 2.
   * Safe to retry.
   */
  async challenge(request: ChallengeRequest, options: PlatformCallOptions = {}): Promise<ChallengeResponse> {
    const body = challengeBody(request);
    const answer = await this.post('/challenge', body, options, []);
    const payload = hexField(answer, 'payload', '/challenge');
    if (request.scheme === 1 && payload.length < 20) {
      throw badAnswer('/challenge', 'payload', 'must be at least 10 bytes for scheme 1');
    }
    if (request.scheme === 2 && payload.length !== 64) {
      throw badAnswer('/challenge', 'payload', 'must be exactly 32 bytes for scheme 2');
    }
    const token = tokenField(answer, 'token', '/challenge', false);
    return { payload: payload.toLowerCase(), token };
  }

  /**
   * `POST /session`: exchanges the chip's answer for an authenticity token. Never retried, here or by callers: the
   * challenge token is single-use, and a second sending of the same token is refused with `ALREADY_USED` before it
   * reaches the network. The returned JWT is not verified here; use {@link verifyToken}.
   */
  async session(request: SessionRequest, options: PlatformCallOptions = {}): Promise<SessionResponse> {
    const body = sessionBody(request);
    // Everything that can fail before the token leaves is checked first, so a token is only spent when it is sent.
    checkTimeout(options.timeoutMs, this.#timeoutMs, 'timeoutMs');
    if (options.signal?.aborted) throw abortError(`POST /session to ${this.baseUrl.host}`, options.signal.reason);
    this.spend(request.token);
    const answer = await this.post('/session', body, options, [request.token]);
    return { token: tokenField(answer, 'token', '/session', true) };
  }

  /**
   * `POST /validate`: checks a SUN signature (`UID-CTR-SIG` or the full URL) and, on success, returns a JWT. A retry
   * after a failure that reached the platform may answer `expired`: the counter was already consumed.
   */
  async validate(request: ValidateRequest, options: PlatformCallOptions = {}): Promise<ValidateResponse> {
    const answer = await this.post('/validate', validateBody(request), options, [request.signature]);
    const result = resultField(answer, '/validate');
    if (result !== 'success') return { result };
    return { result, token: tokenField(answer, 'token', '/validate', true) };
  }

  /**
   * `POST /validate.json`: like {@link validate} but the platform answers unsigned JSON. Only `result` is checked; the
   * other fields are returned as sent and are not authenticated.
   */
  async validateJson(request: ValidateRequest, options: PlatformCallOptions = {}): Promise<ValidateJsonResponse> {
    const answer = await this.post('/validate.json', validateBody(request), options, [request.signature]);
    const result = resultField(answer, '/validate.json');
    return Object.freeze({ ...(answer as Record<string, unknown>), result });
  }

  /** Verifies an authenticity token against the platform's JWKS; see {@link JwtVerifier.verify}. */
  verifyToken(token: string, options?: VerifyTokenOptions): Promise<AuthenticityClaims> {
    return this.#verifier.verify(token, options);
  }

  /** Records a challenge token as sent; throws `ALREADY_USED` if it was sent before. Only a digest is kept. */
  private spend(token: string): void {
    const digest = createHash('sha256').update(token).digest('base64url');
    if (this.#spentTokens.has(digest)) {
      throw new TaplineError(ErrorCode.AlreadyUsed, 'This challenge token was already sent to /session.', {
        hint: 'Challenge tokens are single-use: start over with a new challenge (tap the chip again).',
      });
    }
    this.#spentTokens.add(digest);
    if (this.#spentTokens.size > SPENT_TOKENS_KEPT) {
      // A Set iterates in insertion order, so the first entry is the oldest.
      const oldest = this.#spentTokens.values().next();
      if (oldest.done !== true) this.#spentTokens.delete(oldest.value);
    }
  }

  /** Posts `body` and returns the parsed JSON answer of a 2xx. Every failure leaves as a scrubbed TaplineError. */
  private async post(
    endpoint: Endpoint,
    body: Readonly<Record<string, string | number>>,
    options: PlatformCallOptions,
    requestSecrets: readonly string[],
  ): Promise<unknown> {
    const secrets = [this.#apiKey, ...requestSecrets];
    const timeoutMs = checkTimeout(options.timeoutMs, this.#timeoutMs, 'timeoutMs');
    const url = new URL(endpoint.slice(1), this.baseUrl);
    const started = Date.now();
    this.#log.debug('platform request', { endpoint, host: this.baseUrl.host, timeoutMs });
    try {
      const { status, bytes, json } = await withCallDeadline(
        {
          what: `POST ${endpoint} to ${this.baseUrl.host}`,
          timeoutMs,
          signal: options.signal,
          timeoutHint: TIMEOUT_HINT,
        },
        (signal) => this.exchange(url, endpoint, body, signal, secrets),
      );
      this.#log.debug('platform response', { endpoint, status, bytes, elapsedMs: Date.now() - started });
      return json;
    } catch (error) {
      const failure = isTaplineError(error)
        ? error
        : new TaplineError(ErrorCode.PlatformUnavailable, `POST ${endpoint} failed unexpectedly.`, {
            cause: sanitizeCause(error, secrets),
            hint: NETWORK_HINT,
          });
      this.#log.debug('platform call failed', {
        endpoint,
        code: failure.code,
        status: failure.details['status'],
        elapsedMs: Date.now() - started,
      });
      throw failure;
    }
  }

  private async exchange(
    url: URL,
    endpoint: Endpoint,
    body: Readonly<Record<string, string | number>>,
    signal: AbortSignal,
    secrets: readonly string[],
  ): Promise<{ status: number; bytes: number; json: unknown }> {
    let response: Response;
    try {
      response = await this.#fetch(url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'X-API-VIVOKEY': this.#apiKey },
        body: JSON.stringify(body),
        signal,
        redirect: 'manual',
      });
    } catch (cause) {
      throw unreachable(endpoint, this.baseUrl, cause, secrets, 'could not be reached');
    }
    const status = response.status;
    if (status < 200 || status > 299) throw await this.statusError(response, endpoint, signal, secrets);
    let bytes: Uint8Array;
    try {
      bytes = await readBodyLimited(response, signal, this.#maxBytes);
    } catch (cause) {
      if (cause instanceof BodyTooLargeError) {
        throw new TaplineError(
          ErrorCode.ProtocolError,
          `The VivoKey platform answered POST ${endpoint} with a body larger than ${this.#maxBytes} bytes.`,
          { cause, details: { endpoint, status, maxBytes: this.#maxBytes }, hint: PROTOCOL_HINT },
        );
      }
      throw unreachable(endpoint, this.baseUrl, cause, secrets, 'broke off while sending its answer');
    }
    let json: unknown;
    try {
      json = parseJsonBytes(bytes);
    } catch (cause) {
      throw new TaplineError(
        ErrorCode.ProtocolError,
        `The VivoKey platform answered POST ${endpoint} with a body that is not JSON.`,
        {
          cause: sanitizeCause(cause, secrets),
          details: { endpoint, status, bytes: bytes.byteLength },
          hint: PROTOCOL_HINT,
        },
      );
    }
    if (typeof json !== 'object' || json === null || Array.isArray(json)) {
      throw badAnswer(endpoint, '(body)', 'must be a JSON object');
    }
    return { status, bytes: bytes.byteLength, json };
  }

  private async statusError(
    response: Response,
    endpoint: Endpoint,
    signal: AbortSignal,
    secrets: readonly string[],
  ): Promise<TaplineError> {
    const status = response.status;
    if (status >= 300 && status < 400) {
      await response.body?.cancel().catch(() => undefined);
      return new TaplineError(
        ErrorCode.ProtocolError,
        `The VivoKey platform answered POST ${endpoint} with a redirect (HTTP ${status}); Tapline does not follow ` +
          'redirects, so that the API key is never sent to another address.',
        {
          details: { endpoint, status, location: redirectTarget(response, this.baseUrl) },
          hint: 'Use the final address as the platform URL (--platform), for example https:// rather than http://.',
        },
      );
    }
    const serverMessage = await readServerMessage(response, signal, secrets);
    const details = { endpoint, status, ...(serverMessage === undefined ? {} : { serverMessage }) };
    const said = serverMessage === undefined ? '' : `: ${serverMessage}`;
    if (status >= 500 || status === 408 || status === 429) {
      // 408 and 429 are 4xx by number but mean "not now", which is what PLATFORM_UNAVAILABLE tells a caller.
      const retryAfter = response.headers.get('retry-after');
      return new TaplineError(
        ErrorCode.PlatformUnavailable,
        `The VivoKey platform could not answer POST ${endpoint} (HTTP ${status})${said}.`,
        {
          details: {
            ...details,
            ...(retryAfter !== null && /^\d{1,6}$/.test(retryAfter) ? { retryAfterSec: Number(retryAfter) } : {}),
          },
          hint: 'The platform is having trouble: try again in a moment.',
        },
      );
    }
    if ((status === 401 || status === 403) && endpoint === '/session') {
      // The same key just passed /challenge, so a refusal here is about the chip's answer, not the key.
      return new TaplineError(
        ErrorCode.PlatformRejected,
        `The VivoKey platform did not accept the chip's answer (POST ${endpoint}, HTTP ${status})${said}.`,
        {
          details,
          hint: 'The chip did not prove it holds its VivoKey key: it may not be a genuine VivoKey chip, or it moved during the exchange. Tap it again.',
        },
      );
    }
    if (status === 401 || status === 403) {
      return new TaplineError(
        ErrorCode.PlatformRejected,
        `The VivoKey platform refused the API key for POST ${endpoint} (HTTP ${status})${said}.`,
        { details, hint: API_KEY_HINT },
      );
    }
    return new TaplineError(
      ErrorCode.PlatformRejected,
      `The VivoKey platform rejected POST ${endpoint} (HTTP ${status})${said}.`,
      { details, hint: rejectionHint(endpoint, status) },
    );
  }
}

function rejectionHint(endpoint: Endpoint, status: number): string {
  if (status === 404 || status === 405) {
    return 'Check the platform URL (--platform): it should be the Auth API root, such as https://auth.vivokey.com.';
  }
  switch (endpoint) {
    case '/challenge':
      return 'Check that the chip is a VivoKey chip enrolled with the platform, then tap it again.';
    case '/session':
      return 'Challenges are short-lived and single-use: tap the chip again to start over.';
    default:
      return 'Check the SUN signature (UID-CTR-SIG or the full URL as read from the chip).';
  }
}

function unreachable(
  endpoint: Endpoint,
  baseUrl: URL,
  cause: unknown,
  secrets: readonly string[],
  what: string,
): TaplineError {
  const code = networkErrorCode(cause);
  return new TaplineError(
    ErrorCode.PlatformUnavailable,
    `The VivoKey platform at ${baseUrl.host} ${what} (POST ${endpoint}${code === undefined ? '' : `, ${code}`}).`,
    {
      cause: sanitizeCause(cause, secrets),
      details: { endpoint, host: baseUrl.host, ...(code === undefined ? {} : { networkError: code }) },
      hint: NETWORK_HINT,
    },
  );
}

/** The server's own words on a refusal, if they are short, textual and, once scrubbed, still say something. */
async function readServerMessage(
  response: Response,
  signal: AbortSignal,
  secrets: readonly string[],
): Promise<string | undefined> {
  let bytes: Uint8Array;
  try {
    bytes = await readBodyLimited(response, signal, MAX_ERROR_BODY_BYTES);
  } catch {
    return undefined;
  }
  let text: string | undefined;
  try {
    const json = parseJsonBytes(bytes);
    if (typeof json === 'string') text = json;
    else if (typeof json === 'object' && json !== null) {
      const record = json as Record<string, unknown>;
      const found = ['error_description', 'message', 'error', 'detail', 'reason'].find(
        (key) => typeof record[key] === 'string',
      );
      text = found === undefined ? undefined : (record[found] as string);
    }
  } catch {
    const type = response.headers.get('content-type') ?? '';
    if (/^text\/plain\b/i.test(type)) text = new TextDecoder().decode(bytes);
  }
  if (text === undefined) return undefined;
  const flat = scrubText(text, secrets)
    .replace(/\p{Cc}+/gu, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  if (flat === '' || flat === '[redacted]') return undefined;
  return flat.length > MAX_SERVER_MESSAGE_CHARS ? `${flat.slice(0, MAX_SERVER_MESSAGE_CHARS - 3)}...` : flat;
}

function redirectTarget(response: Response, baseUrl: URL): string | undefined {
  const location = response.headers.get('location');
  if (location === null) return undefined;
  try {
    const target = new URL(location, baseUrl);
    // Origin and path only: a query string could carry anything.
    return `${target.origin}${target.pathname}`;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------------------------

function invalidRequest(endpoint: Endpoint, field: string, problem: string): TaplineError {
  return new TaplineError(ErrorCode.InvalidArgument, `Invalid ${endpoint} request: "${field}" ${problem}.`, {
    details: { endpoint, field },
  });
}

function requireHex(endpoint: Endpoint, field: string, value: unknown, minChars: number, maxChars: number): string {
  if (typeof value !== 'string' || !HEX.test(value) || value.length < minChars || value.length > maxChars) {
    const size = minChars === maxChars ? `${minChars}` : `${minChars} to ${maxChars}`;
    throw invalidRequest(endpoint, field, `must be ${size} hex characters (whole bytes)`);
  }
  return value.toLowerCase();
}

function requireText(endpoint: Endpoint, field: string, value: unknown, maxChars: number): string {
  if (typeof value !== 'string' || value === '' || value.length > maxChars) {
    throw invalidRequest(endpoint, field, `must be a non-empty string of at most ${maxChars} characters`);
  }
  return value;
}

function optionalText(endpoint: Endpoint, field: string, value: unknown, maxChars: number): string | undefined {
  return value === undefined ? undefined : requireText(endpoint, field, value, maxChars);
}

function challengeBody(request: ChallengeRequest): Readonly<Record<string, string | number>> {
  const scheme = (request as { scheme?: unknown } | undefined)?.scheme;
  // Built field by field so that nothing a caller adds at run time reaches the wire.
  if (scheme === 1) return { scheme: 1 };
  if (scheme === 2) {
    const r = request as Extract<ChallengeRequest, { scheme: 2 }>;
    return {
      scheme: 2,
      message: requireHex('/challenge', 'message', r.message, 32, 32),
      uid: requireHex('/challenge', 'uid', r.uid, 2, 64),
    };
  }
  throw invalidRequest('/challenge', 'scheme', 'must be 1 (Spark 1) or 2 (Spark 2, Apex)');
}

function sessionBody(request: SessionRequest): Readonly<Record<string, string>> {
  const uid = requireHex('/session', 'uid', request.uid, 2, 64);
  const response = requireHex('/session', 'response', request.response, 2, 1024);
  const token = requireText('/session', 'token', request.token, MAX_TOKEN_CHARS);
  const cld = optionalText('/session', 'cld', request.cld, MAX_CLD_CHARS);
  return { uid, response, token, ...(cld === undefined ? {} : { cld }) };
}

function validateBody(request: ValidateRequest): Readonly<Record<string, string>> {
  const signature = requireText('/validate', 'signature', request.signature, 4096);
  const aud = optionalText('/validate', 'aud', request.aud, 1024);
  const cld = optionalText('/validate', 'cld', request.cld, MAX_CLD_CHARS);
  return { signature, ...(aud === undefined ? {} : { aud }), ...(cld === undefined ? {} : { cld }) };
}

// ---------------------------------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------------------------------

function badAnswer(endpoint: Endpoint, field: string, problem: string): TaplineError {
  // The value itself stays out: it may be a token.
  return new TaplineError(
    ErrorCode.ProtocolError,
    `The VivoKey platform answered POST ${endpoint} with an invalid ${field === '(body)' ? 'body' : `"${field}"`}: it ${problem}.`,
    { details: { endpoint, field }, hint: PROTOCOL_HINT },
  );
}

function hexField(answer: unknown, field: string, endpoint: Endpoint): string {
  const value = (answer as Record<string, unknown>)[field];
  if (typeof value !== 'string' || !HEX.test(value) || value.length > 1024) {
    throw badAnswer(endpoint, field, 'must be hex of even length');
  }
  return value;
}

function tokenField(answer: unknown, field: string, endpoint: Endpoint, jwt: boolean): string {
  const value = (answer as Record<string, unknown>)[field];
  if (typeof value !== 'string' || value === '' || value.length > MAX_TOKEN_CHARS) {
    throw badAnswer(endpoint, field, 'must be a non-empty string');
  }
  if (jwt && !COMPACT_JWS.test(value)) throw badAnswer(endpoint, field, 'must be a JWT (header.payload.signature)');
  return value;
}

function resultField(answer: unknown, endpoint: Endpoint): ValidateResult {
  const value = (answer as Record<string, unknown>)['result'];
  if (typeof value !== 'string' || !(RESULTS as readonly string[]).includes(value)) {
    throw badAnswer(endpoint, 'result', `must be one of ${RESULTS.join(', ')}`);
  }
  return value as ValidateResult;
}

// ---------------------------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------------------------

function checkApiKey(value: unknown): string {
  // The messages name the problem, never the value.
  if (typeof value !== 'string' || value.trim() === '') {
    throw new TaplineError(ErrorCode.InvalidArgument, 'The VivoKey API key is missing.', { hint: API_KEY_HINT });
  }
  if (!/^[\x21-\x7e]{1,1024}$/.test(value)) {
    throw new TaplineError(
      ErrorCode.InvalidArgument,
      'The VivoKey API key contains spaces, control or non-ASCII characters, or is too long.',
      { hint: API_KEY_HINT },
    );
  }
  return value;
}
