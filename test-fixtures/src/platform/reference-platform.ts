import { createHash, createHmac, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { SignJWT, type JSONWebKeySet, type JWTPayload } from 'jose';
import {
  ErrorCode,
  TaplineError,
  constantTimeEqual,
  createCounterGuard,
  createSunVerifier,
  fromHex,
  parseSunMessage,
  parseTam1Authenticate,
  pcdAnswerChallenge,
  systemClock,
  toHex,
  verifyPiccAnswer,
  verifyTam1Response,
  type Clock,
  type CounterGuard,
  type SunMessage,
  type SunVerifier,
} from '@tapline/core';
import { cryptoRandom, type RandomSource } from '../chips/chip-model.js';
import { defaultChipRegistry, type ChipRegistry, type EnrolledChip } from './chip-registry.js';
import { FaultInjector, type FaultControl, type FaultPlan, type SlowBodyFault } from './faults.js';
import { generatePlatformSigningKey, type PlatformSigningKey } from './signing-keys.js';

/**
 * The reference VivoKey platform: the Auth API (`/challenge`, `/session`, `/validate`, `/validate.json`) and its
 * JWKS over real HTTP, with real crypto against the keys of the enrolled (virtual) chips, for tests and `--sim`.
 * What it does follows protocols.md §1.1 and §6.1; what VivoKey has not published (error shapes, status codes,
 * claim numbers for Spark 1) is chosen here and documented on {@link startReferencePlatform}.
 *
 * @packageDocumentation
 */

/** Options of {@link startReferencePlatform}. */
export interface ReferencePlatformOptions {
  /** The key every Auth API call must carry in `X-API-VIVOKEY`. Default: 32 random bytes, hex. */
  readonly apiKey?: string;
  /** The enrolled chips. Default: {@link defaultChipRegistry} (every default virtual chip, fixture keys). */
  readonly chips?: ChipRegistry;
  /**
   * The `iss` claim. Default `auth.vivokey.com`, the issuer VivoKey's own validation sample expects
   * (authentichip-target), so that a client configured for the real platform checks these tokens the same way;
   * they still only verify against this platform's JWKS.
   */
  readonly issuer?: string;
  /** How long a challenge token stays usable, in ms. Default 30 000 (VivoKey's clients refetch after 25–30 s). */
  readonly tokenTtlMs?: number;
  /** Token lifetime (`exp − iat`), in seconds. Default 300 (the real platform's). */
  readonly jwtTtlSec?: number;
  /** The developer account id, the `dev_id` claim. Default: a random UUID. */
  readonly devId?: string;
  /**
   * The secret `sub` is derived with (see {@link chipSubject}): the same salt and devId give the same `sub` for a
   * chip on every platform instance. Default: 32 random bytes.
   */
  readonly subSalt?: Uint8Array | string;
  /**
   * The signing keys: the first signs, the others are published in the JWKS as earlier keys. Default: one key
   * generated at start.
   */
  readonly signingKeys?: readonly PlatformSigningKey[];
  /** How many earlier signing keys stay in the JWKS after {@link ReferencePlatform.rotateSigningKey}. Default 1. */
  readonly retainedSigningKeys?: number;
  /** The time source for token TTLs and `iat`/`exp`. Default: the wall clock. */
  readonly clock?: Clock;
  /** RndA and the scheme 1 payload. Default: node:crypto. Challenge tokens always come from node:crypto. */
  readonly random?: RandomSource;
  /**
   * The `atp` claim of `/session` tokens. Default `mutual` (flexsecure-applets); vivokey.com's sample token shows
   * `mau`.
   */
  readonly sessionAtp?: 'mutual' | 'mau';
  /** The address to listen on. Default `127.0.0.1`. */
  readonly host?: string;
  /** The port. Default 0 (an ephemeral one; read {@link ReferencePlatform.url}). */
  readonly port?: number;
  /** The largest request body accepted, in bytes; larger ones get 413. Default 16 384. */
  readonly maxBodyBytes?: number;
}

/** Counters for tests. A snapshot: read `platform.stats` again for fresh values. */
export interface PlatformStats {
  /** Requests per path (`/challenge`, …, `/.well-known/jwks.json`); any other path counts as `other`. */
  readonly requests: Readonly<Record<string, number>>;
  /** Challenge tokens issued by `/challenge`. */
  readonly challengesIssued: number;
  /** Challenge tokens consumed by `/session` (each at most once, whatever the outcome). */
  readonly tokensConsumed: number;
  readonly sessions: { readonly succeeded: number; readonly failed: number };
  readonly validations: { readonly success: number; readonly expired: number; readonly invalid: number };
  /** JWTs signed (by `/session` and `/validate`). */
  readonly jwtsIssued: number;
  /** Fault hits (see {@link FaultControl.injected}). */
  readonly faultsInjected: number;
}

/** A running reference platform. */
export interface ReferencePlatform {
  /** The base URL, `http://127.0.0.1:<port>/`: endpoints are `new URL('/challenge', url)`. */
  readonly url: URL;
  /** `/.well-known/jwks.json` on {@link ReferencePlatform.url}. */
  readonly jwksUrl: URL;
  readonly apiKey: string;
  /** The published keys, as `/.well-known/jwks.json` serves them now: the current key first. */
  readonly jwks: JSONWebKeySet;
  /** The `iss` claim of every token. */
  readonly issuer: string;
  /** The `dev_id` claim of every token. */
  readonly devId: string;
  /** The `kid` of the key that signs now. */
  readonly currentKid: string;
  readonly faults: FaultControl;
  readonly chips: ChipRegistry;
  readonly stats: PlatformStats;
  /** The `sub` this platform gives the chip enrolled under `uid`; undefined when none is. */
  subFor(uid: Uint8Array | string): string | undefined;
  /**
   * Makes `next` (default: a fresh key) the signing key. The previous one stays published for tokens already out,
   * up to `retainedSigningKeys`; older ones leave the JWKS. Returns the new `kid`.
   */
  rotateSigningKey(next?: PlatformSigningKey): Promise<string>;
  /** Removes an earlier key from the JWKS (the current key cannot be retired). True when it was published. */
  retireSigningKey(kid: string): boolean;
  /** Zeroes the counters of {@link ReferencePlatform.stats}. */
  resetStats(): void;
  /** Stops listening and drops every open connection. Idempotent. */
  close(): Promise<void>;
}

/**
 * The `sub` of a chip: `hex(HMAC-SHA256(subSalt, UTF-8(devId) ‖ UTF-8(identity)))`, 64 hex digits, like the real
 * platform's. Per developer (devId), per chip (identity, `<kind>:<uid hex>` by default), and not reversible to the
 * uid without the salt: it says "this genuine chip again", never whose.
 */
export function chipSubject(subSalt: Uint8Array | string, devId: string, identity: string): string {
  const key = typeof subSalt === 'string' ? Buffer.from(subSalt, 'utf8') : Buffer.from(subSalt);
  return createHmac('sha256', key).update(devId, 'utf8').update(identity, 'utf8').digest('hex');
}

/**
 * Starts a reference platform on 127.0.0.1, an ephemeral port by default.
 *
 * Endpoints, all answering JSON (`Content-Type: application/json`, `Cache-Control: no-store`):
 * - `POST /challenge`: scheme 2 `{scheme, message, uid}` plays the PCD of AuthenticateEV2First with the chip's key
 *   (core's `pcdAnswerChallenge`, random RndA) → `{payload, token}`; scheme 1 `{"scheme":1}` exactly → a random
 *   16-byte payload (its first 10 bytes are the TAM1 IChallenge) and a token.
 * - `POST /session` `{uid, response, token, cld?}`: the token is consumed by any attempt that names it, whatever
 *   the outcome; then it must have been issued here, be unexpired and (scheme 2) be for this uid. Scheme 2 takes the
 *   chip's 32 bytes + `9100` (core's `verifyPiccAnswer`), scheme 1 the whole AUTHENTICATE reply (core's
 *   `parseTam1Authenticate`, `verifyTam1Response`) → `{token: JWT}`.
 * - `POST /validate` `{signature, aud?, cld?}`: a SUN message (`UID-CTR-SIG` or a URL with `sun=`/`s=`) verified
 *   against the enrolled chip's SUN key (core's SUN verifier), then the counter guard → `{result, token?}`
 *   (`success`, `expired` for a counter not above the last accepted, `invalid` for anything else, HTTP 200).
 *   `/validate.json` answers the claims unsigned instead of a token.
 * - `GET /.well-known/jwks.json`: the public keys (no API key needed).
 *
 * Errors are `{"error": "<sentence>"}`: 401 for a missing or wrong `X-API-VIVOKEY` and for a chip answer that does
 * not verify (`authentication failed`); 400 for a challenge token that is unknown, already used, expired or for
 * another chip (start over with a new challenge) and for a body that is not a JSON object of the documented shape
 * (unknown fields are refused too, to catch client bugs); 404 for an unknown path and for a chip that is not
 * enrolled; 405 for a wrong method; 413 for a body over the limit; 415 for a non-JSON `Content-Type`.
 *
 * Tokens: header `{typ: 'JWT', alg: 'ES256', kid}`, claims `{dev_id, type, product, atp, cld?, aud?, sub, iss,
 * iat, exp}`; `atp` is `mutual` (or `sessionAtp`) for `/session` and `cmac` for `/validate`; `type`/`product` per
 * chip family, see `PLATFORM_CHIP_CLAIMS`.
 */
export async function startReferencePlatform(options: ReferencePlatformOptions = {}): Promise<ReferencePlatform> {
  const keys = options.signingKeys?.length ? [...options.signingKeys] : [await generatePlatformSigningKey()];
  const platform = new ReferencePlatformServer(options, keys);
  await platform.listen(options.host ?? '127.0.0.1', options.port ?? 0);
  return platform;
}

// ---------------------------------------------------------------------------------------------------------------

const CHALLENGE = '/challenge';
const SESSION = '/session';
const VALIDATE = '/validate';
const VALIDATE_JSON = '/validate.json';
const JWKS = '/.well-known/jwks.json';

const ROUTES: ReadonlyMap<string, readonly string[]> = new Map([
  [CHALLENGE, ['POST']],
  [SESSION, ['POST']],
  [VALIDATE, ['POST']],
  [VALIDATE_JSON, ['POST']],
  [JWKS, ['GET', 'HEAD']],
]);

/** VivoKey's limit on `cld` for `/validate` (protocols.md §1.1), applied to `/session` too. */
const MAX_CLD_LENGTH = 2048;
const RND_LENGTH = 16;
const SCHEME1_PAYLOAD_LENGTH = 16;
const TAM1_ICHALLENGE_LENGTH = 10;
const SPARK2_KEY_NO = 2;
/** How long a spent or expired challenge token is remembered, so that a retry hears why it failed. */
const FORGET_AFTER_MS = 10 * 60_000;
/** Beyond this many times the limit, an oversized body is not drained any more but the connection dropped. */
const DRAIN_FACTOR = 64;

type Body = Record<string, unknown>;

interface Reply {
  readonly status: number;
  readonly body: unknown;
  readonly headers?: Readonly<Record<string, string>>;
}

/** A refusal with an HTTP status, turned into `{"error": message}` by the router. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

interface ChallengeRecord {
  readonly scheme: 1 | 2;
  /** The chip the challenge was made for (scheme 2); scheme 1 learns it at `/session`. */
  readonly uid: string | undefined;
  readonly rndA: Uint8Array;
  readonly rndB: Uint8Array;
  readonly ichallenge: Uint8Array;
  readonly expiresAt: number;
}

const TOKEN_REFUSALS = {
  unknown: 'unknown challenge token',
  used: 'challenge token already used',
  expired: 'challenge token expired',
} as const;

type TokenLookup =
  { readonly state: 'ok'; readonly record: ChallengeRecord } | { readonly state: 'unknown' | 'used' | 'expired' };

interface MutableStats {
  requests: Record<string, number>;
  challengesIssued: number;
  tokensConsumed: number;
  sessions: { succeeded: number; failed: number };
  validations: { success: number; expired: number; invalid: number };
  jwtsIssued: number;
}

function emptyStats(): MutableStats {
  return {
    requests: {},
    challengesIssued: 0,
    tokensConsumed: 0,
    sessions: { succeeded: 0, failed: 0 },
    validations: { success: 0, expired: 0, invalid: 0 },
    jwtsIssued: 0,
  };
}

function sha256(text: string): Uint8Array {
  return createHash('sha256').update(text, 'utf8').digest();
}

function checkPositive(value: number, what: string): number {
  if (!Number.isFinite(value) || value <= 0) {
    throw new TaplineError(ErrorCode.InvalidArgument, `${what} must be a positive number, not ${value}.`);
  }
  return value;
}

function refuseUnknownFields(body: Body, allowed: readonly string[]): void {
  const unknown = Object.keys(body).filter((key) => !allowed.includes(key));
  if (unknown.length > 0) {
    throw new HttpError(400, `unexpected field${unknown.length > 1 ? 's' : ''}: ${unknown.join(', ')}`);
  }
}

/** The hex string field `name` as bytes, of one of `lengths` bytes when given. */
function hexField(body: Body, name: string, lengths?: readonly number[]): Uint8Array {
  const value = body[name];
  if (typeof value !== 'string' || !/^(?:[0-9a-fA-F]{2})+$/.test(value)) {
    throw new HttpError(400, `${name} must be a non-empty string of hex byte pairs`);
  }
  const bytes = fromHex(value);
  if (lengths !== undefined && !lengths.includes(bytes.length)) {
    throw new HttpError(400, `${name} must be ${lengths.join(' or ')} bytes, not ${bytes.length}`);
  }
  return bytes;
}

function optionalString(body: Body, name: string, maxLength: number): string | undefined {
  const value = body[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw new HttpError(400, `${name} must be a string`);
  if (value.length > maxLength) throw new HttpError(400, `${name} must be at most ${maxLength} characters`);
  return value;
}

/** Reads the body, draining (not keeping) one over `limit`; undefined when it was too large. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        chunks.length = 0;
        if (size > limit * DRAIN_FACTOR) req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(size > limit ? undefined : Buffer.concat(chunks)));
    req.on('close', () => resolve(undefined));
    req.on('error', reject);
  });
}

class ReferencePlatformServer implements ReferencePlatform {
  readonly apiKey: string;
  readonly issuer: string;
  readonly devId: string;
  readonly chips: ChipRegistry;
  readonly #faults = new FaultInjector();
  readonly #server: Server;
  readonly #clock: Clock;
  readonly #random: RandomSource;
  readonly #apiKeyDigest: Uint8Array;
  readonly #subSalt: Uint8Array | string;
  readonly #tokenTtlMs: number;
  readonly #jwtTtlSec: number;
  readonly #sessionAtp: string;
  readonly #maxBodyBytes: number;
  readonly #retainedKeys: number;
  readonly #closing = new AbortController();
  readonly #tokens = new Map<string, ChallengeRecord>();
  /** Spent tokens, with when to forget them. */
  readonly #spent = new Map<string, number>();
  readonly #counterGuard: CounterGuard = createCounterGuard();
  readonly #verifiers = new WeakMap<EnrolledChip, SunVerifier>();
  #keys: PlatformSigningKey[];
  #stats = emptyStats();
  #url: URL | undefined;
  #closed: Promise<void> | undefined;

  constructor(options: ReferencePlatformOptions, keys: PlatformSigningKey[]) {
    this.apiKey = options.apiKey ?? randomBytes(32).toString('hex');
    if (this.apiKey === '') throw new TaplineError(ErrorCode.InvalidArgument, 'The API key must not be empty.');
    this.#apiKeyDigest = sha256(this.apiKey);
    this.issuer = options.issuer ?? 'auth.vivokey.com';
    this.devId = options.devId ?? randomUUID();
    this.#subSalt = options.subSalt ?? new Uint8Array(randomBytes(32));
    this.chips = options.chips ?? defaultChipRegistry();
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? cryptoRandom;
    this.#tokenTtlMs = checkPositive(options.tokenTtlMs ?? 30_000, 'tokenTtlMs');
    this.#jwtTtlSec = checkPositive(options.jwtTtlSec ?? 300, 'jwtTtlSec');
    this.#sessionAtp = options.sessionAtp ?? 'mutual';
    this.#maxBodyBytes = checkPositive(options.maxBodyBytes ?? 16_384, 'maxBodyBytes');
    this.#retainedKeys = options.retainedSigningKeys ?? 1;
    if (!Number.isSafeInteger(this.#retainedKeys) || this.#retainedKeys < 0) {
      throw new TaplineError(ErrorCode.InvalidArgument, 'retainedSigningKeys must be an integer ≥ 0.');
    }
    this.#keys = keys;
    this.#server = createServer((req, res) => {
      this.#handle(req, res).catch(() => {
        // A failure here is a bug or a connection that went away; the client must see it rather than hang.
        if (this.#closed !== undefined || res.headersSent) res.destroy();
        else this.#writeNow(res, 500, JSON.stringify({ error: 'internal error' }));
      });
    });
  }

  async listen(host: string, port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen({ host, port }, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    const address = this.#server.address() as AddressInfo;
    const hostText = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    this.#url = new URL(`http://${hostText}:${address.port}/`);
  }

  get url(): URL {
    return new URL(this.#url!.href);
  }

  get jwksUrl(): URL {
    return new URL(JWKS, this.#url);
  }

  get jwks(): JSONWebKeySet {
    return { keys: this.#keys.map((key) => ({ ...key.publicJwk })) };
  }

  get currentKid(): string {
    return this.#keys[0]!.kid;
  }

  get faults(): FaultControl {
    return this.#faults;
  }

  get stats(): PlatformStats {
    const s = this.#stats;
    return {
      requests: { ...s.requests },
      challengesIssued: s.challengesIssued,
      tokensConsumed: s.tokensConsumed,
      sessions: { ...s.sessions },
      validations: { ...s.validations },
      jwtsIssued: s.jwtsIssued,
      faultsInjected: this.#faults.injected,
    };
  }

  resetStats(): void {
    this.#stats = emptyStats();
  }

  subFor(uid: Uint8Array | string): string | undefined {
    const chip = this.chips.get(uid);
    return chip === undefined ? undefined : chipSubject(this.#subSalt, this.devId, chip.identity);
  }

  async rotateSigningKey(next?: PlatformSigningKey): Promise<string> {
    const key = next ?? (await generatePlatformSigningKey());
    this.#keys = [key, ...this.#keys.filter((k) => k.kid !== key.kid)].slice(0, 1 + this.#retainedKeys);
    return key.kid;
  }

  retireSigningKey(kid: string): boolean {
    const index = this.#keys.findIndex((key) => key.kid === kid);
    if (index <= 0) return false;
    this.#keys.splice(index, 1);
    return true;
  }

  close(): Promise<void> {
    this.#closed ??= new Promise<void>((resolve) => {
      this.#closing.abort();
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
    return this.#closed;
  }

  // -------------------------------------------------------------------------------------------------------------
  // HTTP

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://platform.invalid').pathname;
    const bucket = ROUTES.has(path) ? path : 'other';
    this.#stats.requests[bucket] = (this.#stats.requests[bucket] ?? 0) + 1;
    const plan = this.#faults.take(path);
    if (plan.latencyMs > 0) await this.#sleep(plan.latencyMs);
    const injected = plan.answer;
    if (injected !== undefined && injected.processed !== true) {
      await this.#answerFault(req, res, plan);
      return;
    }
    const reply = await this.#route(req, path);
    if (injected !== undefined) {
      await this.#answerFault(req, res, plan);
      return;
    }
    let text = reply.body === undefined ? '' : JSON.stringify(reply.body);
    // Half of a JSON object never parses: it lacks at least its closing brace.
    if (plan.malformed) text = text.slice(0, Math.max(1, Math.floor(text.length / 2)));
    await this.#write(res, reply.status, text, reply.headers, plan.slowBody);
  }

  async #answerFault(req: IncomingMessage, res: ServerResponse, plan: FaultPlan): Promise<void> {
    const fault = plan.answer!;
    if (fault.kind === 'reset') {
      req.socket.resetAndDestroy();
      return;
    }
    await this.#write(res, fault.status, fault.body ?? '{"error":"injected fault"}', undefined, plan.slowBody);
  }

  #writeNow(res: ServerResponse, status: number, text: string, headers?: Readonly<Record<string, string>>): Buffer {
    const body = Buffer.from(text, 'utf8');
    res.writeHead(status, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': String(body.length),
      'cache-control': 'no-store',
      ...headers,
    });
    return body;
  }

  async #write(
    res: ServerResponse,
    status: number,
    text: string,
    headers: Readonly<Record<string, string>> | undefined,
    slow: SlowBodyFault | undefined,
  ): Promise<void> {
    const body = this.#writeNow(res, status, text, headers);
    if (slow === undefined || body.length === 0) {
      res.end(body);
      return;
    }
    res.flushHeaders();
    const pieces = Math.min(slow.chunks ?? 8, body.length);
    const start = performance.now();
    for (let i = 1; i <= pieces; i++) {
      // Deadline-based, so that timer jitter cannot make the whole body arrive before `ms`.
      const due = start + (slow.ms * i) / pieces;
      while (performance.now() < due) await this.#sleep(Math.max(1, Math.ceil(due - performance.now())));
      const from = Math.floor(((i - 1) * body.length) / pieces);
      const to = Math.floor((i * body.length) / pieces);
      if (i === pieces) res.end(body.subarray(from));
      else res.write(body.subarray(from, to));
    }
  }

  #sleep(ms: number): Promise<void> {
    return sleep(ms, undefined, { signal: this.#closing.signal });
  }

  async #route(req: IncomingMessage, path: string): Promise<Reply> {
    const methods = ROUTES.get(path);
    if (methods === undefined) return { status: 404, body: { error: `no such endpoint: ${path}` } };
    const method = req.method ?? 'GET';
    if (!methods.includes(method)) {
      return { status: 405, body: { error: `${method} is not allowed here` }, headers: { allow: methods.join(', ') } };
    }
    if (path === JWKS) return { status: 200, body: this.jwks };
    if (!this.#apiKeyValid(req)) return { status: 401, body: { error: 'missing or invalid X-API-VIVOKEY' } };
    try {
      const body = await this.#jsonBody(req);
      switch (path) {
        case CHALLENGE:
          return this.#challenge(body);
        case SESSION:
          return await this.#session(body);
        default:
          return await this.#validate(body, path === VALIDATE_JSON);
      }
    } catch (error) {
      if (error instanceof HttpError) return { status: error.status, body: { error: error.message } };
      throw error;
    }
  }

  #apiKeyValid(req: IncomingMessage): boolean {
    const given = req.headers['x-api-vivokey'];
    // Compared as digests, so that neither the content nor the length of the key leaks through timing.
    return typeof given === 'string' && constantTimeEqual(sha256(given), this.#apiKeyDigest);
  }

  async #jsonBody(req: IncomingMessage): Promise<Body> {
    const type = req.headers['content-type'];
    if (type !== undefined && !/^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i.test(type)) {
      await readBody(req, this.#maxBodyBytes);
      throw new HttpError(415, 'Content-Type must be application/json');
    }
    const raw = await readBody(req, this.#maxBodyBytes);
    if (raw === undefined) throw new HttpError(413, `the body exceeds ${this.#maxBodyBytes} bytes`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw.toString('utf8'));
    } catch {
      throw new HttpError(400, 'the body is not valid JSON');
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new HttpError(400, 'the body must be a JSON object');
    }
    return parsed as Body;
  }

  // -------------------------------------------------------------------------------------------------------------
  // The Auth API

  #challenge(body: Body): Reply {
    const { scheme } = body;
    if (scheme === 1) {
      if (Object.keys(body).length !== 1) throw new HttpError(400, 'scheme 1 takes only {"scheme":1}');
      const payload = this.#randomBytes(SCHEME1_PAYLOAD_LENGTH);
      const token = this.#issue({
        scheme: 1,
        uid: undefined,
        rndA: new Uint8Array(0),
        rndB: new Uint8Array(0),
        ichallenge: payload.slice(0, TAM1_ICHALLENGE_LENGTH),
        expiresAt: this.#clock.now() + this.#tokenTtlMs,
      });
      return { status: 200, body: { payload: toHex(payload), token } };
    }
    if (scheme !== 2) throw new HttpError(400, 'scheme must be 1 or 2');
    refuseUnknownFields(body, ['scheme', 'message', 'uid']);
    const message = hexField(body, 'message', [16]);
    const chip = this.#enrolled(hexField(body, 'uid', [7, 8]));
    if (chip.scheme !== 2) throw new HttpError(400, 'this chip answers scheme 1');
    const rndA = this.#randomBytes(RND_LENGTH);
    const { response32, rndB } = pcdAnswerChallenge(chip.authKey, message, rndA);
    const token = this.#issue({
      scheme: 2,
      uid: chip.uid,
      rndA,
      rndB,
      ichallenge: new Uint8Array(0),
      expiresAt: this.#clock.now() + this.#tokenTtlMs,
    });
    return { status: 200, body: { payload: toHex(response32), token } };
  }

  async #session(body: Body): Promise<Reply> {
    if (typeof body['token'] !== 'string' || body['token'] === '') {
      throw new HttpError(400, 'token must be the non-empty string /challenge returned');
    }
    // Consumed before anything else is looked at, so that no answer, good or bad, can ever use it again.
    const lookup = this.#consume(body['token']);
    try {
      const reply = await this.#sessionWith(body, lookup);
      this.#stats.sessions.succeeded += 1;
      return reply;
    } catch (error) {
      this.#stats.sessions.failed += 1;
      throw error;
    }
  }

  async #sessionWith(body: Body, lookup: TokenLookup): Promise<Reply> {
    refuseUnknownFields(body, ['uid', 'response', 'token', 'cld']);
    if (lookup.state !== 'ok') throw new HttpError(400, TOKEN_REFUSALS[lookup.state]);
    const { record } = lookup;
    const uid = hexField(body, 'uid', [7, 8]);
    const response = hexField(body, 'response');
    const cld = optionalString(body, 'cld', MAX_CLD_LENGTH);
    const uidHex = toHex(uid);
    if (record.uid !== undefined && record.uid !== uidHex) {
      throw new HttpError(400, 'the challenge token was issued for another chip');
    }
    const chip = this.#enrolled(uid);
    if (chip.scheme !== record.scheme) throw new HttpError(400, `this chip does not answer scheme ${record.scheme}`);
    const authentic =
      record.scheme === 2 ? this.#verifyEv2(chip, record, response) : this.#verifyTam1(chip, record, response);
    if (!authentic) throw new HttpError(401, 'authentication failed');
    const token = await this.#sign(chip, this.#sessionAtp, { cld });
    return { status: 200, body: { token } };
  }

  #verifyEv2(chip: EnrolledChip, record: ChallengeRecord, response: Uint8Array): boolean {
    if (response.length !== 34 || response[32] !== 0x91 || response[33] !== 0x00) {
      throw new HttpError(400, "response must be the chip's 32-byte answer followed by 9100");
    }
    try {
      verifyPiccAnswer(chip.authKey, record.rndA, record.rndB, response.subarray(0, 32), SPARK2_KEY_NO);
      return true;
    } catch (error) {
      if (error instanceof TaplineError && error.code === ErrorCode.AuthenticationFailed) return false;
      throw error;
    }
  }

  #verifyTam1(chip: EnrolledChip, record: ChallengeRecord, response: Uint8Array): boolean {
    let tresponse: Uint8Array;
    try {
      tresponse = parseTam1Authenticate(response).tresponse;
    } catch (error) {
      if (error instanceof TaplineError) {
        throw new HttpError(400, 'response must be the whole AUTHENTICATE reply: flags, one byte, 16-byte TResponse');
      }
      throw error;
    }
    return verifyTam1Response(chip.authKey, record.ichallenge, tresponse);
  }

  async #validate(body: Body, unsigned: boolean): Promise<Reply> {
    refuseUnknownFields(body, ['signature', 'aud', 'cld']);
    const signature = body['signature'];
    if (typeof signature !== 'string' || signature === '') {
      throw new HttpError(400, 'signature must be a non-empty string: UID-CTR-SIG or the full URL');
    }
    const aud = optionalString(body, 'aud', MAX_CLD_LENGTH);
    const cld = optionalString(body, 'cld', MAX_CLD_LENGTH);
    const outcome = await this.#checkSun(signature);
    this.#stats.validations[outcome.result] += 1;
    if (outcome.result !== 'success') return { status: 200, body: { result: outcome.result } };
    const { chip } = outcome;
    if (unsigned) {
      const claims = this.#claims(chip, 'cmac', { aud, cld });
      return { status: 200, body: { dev_id: claims['dev_id'], atp: 'cmac', result: 'success', ...claims } };
    }
    return { status: 200, body: { result: 'success', token: await this.#sign(chip, 'cmac', { aud, cld }) } };
  }

  async #checkSun(
    signature: string,
  ): Promise<{ readonly result: 'success'; readonly chip: EnrolledChip } | { readonly result: 'expired' | 'invalid' }> {
    let message: SunMessage;
    try {
      message = parseSunMessage(signature);
    } catch {
      return { result: 'invalid' };
    }
    // VivoKey's implants mirror UID and counter in clear (Spark 2 `sun=`) or sign them (Apex `s=`); encrypted
    // PICCData would need a trial decryption under every key, which no VivoKey chip calls for.
    if (message.mode === 'sdm-encrypted') return { result: 'invalid' };
    const chip = this.chips.get(message.uid);
    const expectedMode = chip?.kind === 'apex' ? 'apex-cmac' : 'sdm-plain';
    if (chip?.sunKey === undefined || chip.kind === 'spark1' || message.mode !== expectedMode) {
      return { result: 'invalid' };
    }
    let verifier = this.#verifiers.get(chip);
    if (verifier === undefined) {
      verifier = createSunVerifier({ key: chip.sunKey, ...(chip.sunSalt === undefined ? {} : { salt: chip.sunSalt }) });
      this.#verifiers.set(chip, verifier);
    }
    const guarded = await this.#counterGuard.check(verifier.verify(message));
    if (guarded.valid) return { result: 'success', chip };
    return { result: guarded.reason === 'replayed' ? 'expired' : 'invalid' };
  }

  // -------------------------------------------------------------------------------------------------------------
  // Tokens

  #enrolled(uid: Uint8Array): EnrolledChip {
    const chip = this.chips.get(uid);
    if (chip === undefined) throw new HttpError(404, 'chip not enrolled');
    return chip;
  }

  #randomBytes(length: number): Uint8Array {
    const bytes = this.#random(length);
    if (bytes.length !== length) throw new Error(`The random source gave ${bytes.length} bytes, not ${length}.`);
    return Uint8Array.from(bytes);
  }

  #issue(record: ChallengeRecord): string {
    this.#sweep();
    const token = randomBytes(32).toString('base64url');
    this.#tokens.set(token, record);
    this.#stats.challengesIssued += 1;
    return token;
  }

  #consume(token: string): TokenLookup {
    const record = this.#tokens.get(token);
    if (record === undefined) return { state: this.#spent.has(token) ? 'used' : 'unknown' };
    this.#tokens.delete(token);
    const now = this.#clock.now();
    this.#spent.set(token, Math.max(now, record.expiresAt) + FORGET_AFTER_MS);
    this.#stats.tokensConsumed += 1;
    return now >= record.expiresAt ? { state: 'expired' } : { state: 'ok', record };
  }

  /** Forgets tokens long expired or spent, so that a long-running `--sim` does not grow without bound. */
  #sweep(): void {
    const now = this.#clock.now();
    for (const [token, record] of this.#tokens) {
      if (record.expiresAt + FORGET_AFTER_MS < now) this.#tokens.delete(token);
    }
    for (const [token, forgetAt] of this.#spent) if (forgetAt < now) this.#spent.delete(token);
  }

  #claims(
    chip: EnrolledChip,
    atp: string,
    extra: { readonly aud?: string | undefined; readonly cld?: string | undefined },
  ): JWTPayload {
    const iat = Math.floor(this.#clock.now() / 1000);
    // The order of VivoKey's sample token, for readers who compare decoded tokens by eye.
    return {
      dev_id: this.devId,
      type: chip.type,
      product: chip.product,
      atp,
      ...(extra.cld === undefined ? {} : { cld: extra.cld }),
      ...(extra.aud === undefined ? {} : { aud: extra.aud }),
      sub: chipSubject(this.#subSalt, this.devId, chip.identity),
      iss: this.issuer,
      iat,
      exp: iat + this.#jwtTtlSec,
    };
  }

  async #sign(
    chip: EnrolledChip,
    atp: string,
    extra: { readonly aud?: string | undefined; readonly cld?: string | undefined },
  ): Promise<string> {
    const key = this.#keys[0]!;
    const jwt = await new SignJWT(this.#claims(chip, atp, extra))
      .setProtectedHeader({ typ: 'JWT', alg: 'ES256', kid: key.kid })
      .sign(key.privateKey);
    this.#stats.jwtsIssued += 1;
    return jwt;
  }
}
