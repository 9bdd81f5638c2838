import { createHash, createHmac, randomBytes, randomUUID } from 'node:crypto';
import {
  createServer,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type Server,
  type ServerResponse,
} from 'node:http';
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
import { DEFAULT_ACCOUNT, PlatformAccounts } from './accounts.js';
import { defaultChipRegistry, type ChipRegistry, type EnrolledChip, type PlatformChipKind } from './chip-registry.js';
import { FaultInjector, type FaultControl, type FaultPlan, type SlowBodyFault } from './faults.js';
import {
  DESKTOP_CLIENT_ID,
  OIDC_PREFIX,
  SCAN_REQUESTS_SCOPE,
  emptyOidcStats,
  type DeviceClient,
  type MutableOidcStats,
  type OidcSetup,
  type OidcStats,
} from './oidc-common.js';
import type { ReferenceOidc } from './oidc.js';
import {
  ScanRequestBook,
  rfc3339,
  type ClaimSlot,
  type NewScanRequest,
  type ScanRequestRecord,
  type ScanRequestRelyingParty,
  type StoredScanRequest,
} from './scan-requests.js';
import { generatePlatformSigningKey, type PlatformSigningKey } from './signing-keys.js';

/**
 * The reference VivoKey platform: the Auth API (`/challenge`, `/session`, `/validate`, `/validate.json`) and its
 * JWKS over real HTTP, with real crypto against the keys of the enrolled (virtual) chips, for tests and `--sim`;
 * and Tapline's extension of it (docs/scan-request-protocol.md): an OpenID Provider for associating a desktop with an
 * account, and the scan-request resource. What it does follows protocols.md §1.1 and §6.1; what VivoKey has not
 * published (error shapes, status codes, claim numbers for Spark 1) is chosen here and documented on
 * {@link startReferencePlatform}.
 *
 * @packageDocumentation
 */

/** A relying party as the platform registers it: who creates scan requests, with which key. */
export interface RelyingPartyRegistration {
  /** The id: the result token's `dev_id`, and the sector of the account's pairwise subject for this RP. */
  readonly id: string;
  /** The name the desktop shows next to each request's purpose. */
  readonly name: string;
  /** The key the RP sends in `X-API-VIVOKEY`. */
  readonly apiKey: string;
}

/** A public device-flow OAuth client registered next to `tapline-desktop`. */
export interface PlatformDeviceClient {
  readonly clientId: string;
  /** The name the approval page shows. Default: the client id. */
  readonly clientName?: string;
}

/** Options of {@link startReferencePlatform}. */
export interface ReferencePlatformOptions {
  /**
   * The key every Auth API call must carry in `X-API-VIVOKEY`; also the key of the relying party `default-rp`.
   * Default: 32 random bytes, hex.
   */
  readonly apiKey?: string;
  /** The enrolled chips. Default: {@link defaultChipRegistry} (every default virtual chip, fixture keys). */
  readonly chips?: ChipRegistry;
  /**
   * The `iss` claim. Default `auth.vivokey.com`, the issuer VivoKey's own validation sample expects
   * (authentichip-target), so that a client configured for the real platform checks these tokens the same way;
   * they still only verify against this platform's JWKS.
   */
  readonly issuer?: string;
  /**
   * How long a challenge token stays usable, in ms; also how long a scan-request claim lasts (capped by the
   * request's expiry). Default 30 000 (VivoKey's clients refetch after 25–30 s).
   */
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
  /** The time source for token TTLs, `iat`/`exp` and scan-request times. Default: the wall clock. */
  readonly clock?: Clock;
  /** RndA and the scheme 1 payload. Default: node:crypto. Challenge tokens always come from node:crypto. */
  readonly random?: RandomSource;
  /**
   * The `atp` claim of `/session` tokens (and scan-request results). Default `mutual` (flexsecure-applets);
   * vivokey.com's sample token shows `mau`.
   */
  readonly sessionAtp?: 'mutual' | 'mau';
  /** The address to listen on. Default `127.0.0.1`. */
  readonly host?: string;
  /** The port. Default 0 (an ephemeral one; read {@link ReferencePlatform.url}). */
  readonly port?: number;
  /** The largest request body accepted, in bytes; larger ones get 413. Default 16 384. */
  readonly maxBodyBytes?: number;
  /**
   * The accounts: account id → the uids (bytes or hex) of the chips enrolled to it. A chip belongs to at most one
   * account. Default: one account, `alice`, owning every chip in {@link ReferencePlatformOptions.chips} (also those
   * enrolled later).
   */
  readonly accounts?: Readonly<Record<string, readonly (Uint8Array | string)[]>>;
  /** The salt of the accounts' pairwise subjects (see {@link pairwiseSubject}). Default: 32 random bytes. */
  readonly pairwiseSalt?: Uint8Array | string;
  /** Relying parties besides `default-rp` (which uses {@link ReferencePlatformOptions.apiKey}). */
  readonly relyingParties?: readonly RelyingPartyRegistration[];
  /** Public device-flow clients besides `tapline-desktop`, e.g. to compare pairwise subjects. Default none. */
  readonly deviceClients?: readonly PlatformDeviceClient[];
  /** Access-token lifetime in seconds, a positive integer. Default 600. */
  readonly accessTokenTtlSec?: number;
  /** Refresh-token lifetime in seconds, from each rotation, a positive integer. Default 30 days. */
  readonly refreshTokenTtlSec?: number;
  /** Device-code (and user-code) lifetime in seconds, a positive integer. Default 600. */
  readonly deviceCodeTtlSec?: number;
  /** The `interval` the device authorization endpoint announces, in seconds. Default 1. */
  readonly deviceInterval?: number;
  /** The lifetime of a scan request made without one (`ttl_sec`, `ttlMs`), in ms. Default 300 000. */
  readonly scanRequestTtlMs?: number;
}

/** Counters of the scan-request endpoints. */
export interface ScanRequestStats {
  /** Requests created (by relying parties and by {@link ReferencePlatform.createScanRequest}). */
  readonly created: number;
  /** Claims handed out. */
  readonly claims: number;
  /** Answers that were verified (`succeeded`) or consumed a claim without verifying (`failed`). */
  readonly answers: { readonly succeeded: number; readonly failed: number };
  /** Requests cancelled (over HTTP and by {@link ReferencePlatform.cancelScanRequest}). */
  readonly cancelled: number;
}

/** Counters for tests. A snapshot: read `platform.stats` again for fresh values. */
export interface PlatformStats {
  /**
   * Requests per route: the path for fixed ones (`/challenge`, `/oidc/token`, …), the template for those with an id
   * (`/scan-requests/{id}/claim`, `/rp/scan-requests/{id}`, `/oidc/device/{uid}`); any other path counts as `other`.
   * The page requests of {@link ReferencePlatform.approveDevice} and {@link ReferencePlatform.denyDevice} are not
   * counted.
   */
  readonly requests: Readonly<Record<string, number>>;
  /** Challenge tokens issued by `/challenge`. */
  readonly challengesIssued: number;
  /** Challenge tokens consumed by `/session` (each at most once, whatever the outcome). */
  readonly tokensConsumed: number;
  readonly sessions: { readonly succeeded: number; readonly failed: number };
  readonly validations: { readonly success: number; readonly expired: number; readonly invalid: number };
  /** JWTs signed (by `/session`, `/validate` and verified scan-request answers). */
  readonly jwtsIssued: number;
  /** Fault hits (see {@link FaultControl.injected}). */
  readonly faultsInjected: number;
  /** The OpenID Provider. */
  readonly oidc: OidcStats;
  readonly scanRequests: ScanRequestStats;
}

/** Options of {@link ReferencePlatform.approveDevice}. */
export interface ApproveDeviceOptions {
  /** The account that approves. Default: the owner of `chipUid`, else `alice`. */
  readonly account?: string;
  /** The chip scanned on the phone to approve (bytes or hex): its owner is the account. */
  readonly chipUid?: Uint8Array | string;
}

/** Options of {@link ReferencePlatform.createScanRequest}. */
export interface CreateScanRequestOptions {
  /** The account whose chips can answer. Default `alice`. */
  readonly account?: string;
  /** Who asks. Default: `default-rp`, the relying party of the platform's API key. */
  readonly relyingParty?: ScanRequestRelyingParty;
  /** What for, 1–200 characters. Default `Reference scan request`. */
  readonly purpose?: string;
  /** The chip families that may answer. Default: any. */
  readonly acceptedChips?: readonly PlatformChipKind[];
  /** Lifetime in ms. Default {@link ReferencePlatformOptions.scanRequestTtlMs}. */
  readonly ttlMs?: number;
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
  /** The OpenID Provider's issuer, `<url>oidc`; discovery is at `<issuer>/.well-known/openid-configuration`. */
  readonly issuerUrl: URL;
  /** The desktop's public client id. */
  readonly desktopClientId: 'tapline-desktop';
  /** Account id → the uids (lower-case hex) of its chips; a snapshot. */
  readonly accounts: ReadonlyMap<string, readonly string[]>;
  /** The registered relying parties (`default-rp` first), without their keys. */
  readonly relyingParties: readonly ScanRequestRelyingParty[];
  /** The `sub` this platform gives the chip enrolled under `uid`; undefined when none is. */
  subFor(uid: Uint8Array | string): string | undefined;
  /**
   * The pairwise subject of `account` for a client (`sector` = its client id, e.g. `tapline-desktop`) or a relying
   * party (`sector` = its id): the ID token's `sub`, or what an RP addresses scan requests to.
   */
  accountSubject(account: string, sector: string): string;
  /**
   * Makes `next` (default: a fresh key) the signing key. The previous one stays published for tokens already out,
   * up to `retainedSigningKeys`; older ones leave the JWKS. Returns the new `kid`.
   */
  rotateSigningKey(next?: PlatformSigningKey): Promise<string>;
  /** Removes an earlier key from the JWKS (the current key cannot be retired). True when it was published. */
  retireSigningKey(kid: string): boolean;
  /**
   * Plays the phone app approving a device login: "the user scans the chip to approve". The account is the owner of
   * `chipUid` when given, else `account`, else `alice`; the approval grants `openid offline_access scan_requests`.
   * Rejects with an Error saying why for an unknown, expired or already used user code, an unknown account, or a
   * chip nobody owns.
   */
  approveDevice(userCode: string, options?: ApproveDeviceOptions): Promise<void>;
  /** Plays the phone app declining a device login: the client's next poll gets `access_denied`. */
  denyDevice(userCode: string): Promise<void>;
  /** Files a scan request, as a relying party would (without the HTTP round trip). */
  createScanRequest(options?: CreateScanRequestOptions): ScanRequestRecord;
  /** A snapshot of scan request `id`, its state up to date; undefined when unknown or forgotten. */
  scanRequest(id: string): ScanRequestRecord | undefined;
  /** Cancels scan request `id`; false when it is unknown or already closed. */
  cancelScanRequest(id: string): boolean;
  /** Zeroes the counters of {@link ReferencePlatform.stats}. */
  resetStats(): void;
  /**
   * Stops listening, answers every held long poll (304, or 200 when its list changed) and then drops every open
   * connection. Idempotent.
   */
  close(): Promise<void>;
}

/**
 * The `sub` of a chip: `hex(HMAC-SHA256(subSalt, UTF-8(devId) ‖ UTF-8(identity)))`, 64 hex digits, like the real
 * platform's. Per developer (devId), per chip (identity, `<kind>:<uid hex>` by default), and not reversible to the
 * uid without the salt: it says "this genuine chip again", never whose. Scan-request results use the relying party's
 * id as `devId`.
 */
export function chipSubject(subSalt: Uint8Array | string, devId: string, identity: string): string {
  const key = typeof subSalt === 'string' ? Buffer.from(subSalt, 'utf8') : Buffer.from(subSalt);
  return createHmac('sha256', key).update(devId, 'utf8').update(identity, 'utf8').digest('hex');
}

/**
 * Starts a reference platform on 127.0.0.1, an ephemeral port by default.
 *
 * The Auth API, answering JSON (`Content-Type: application/json`, `Cache-Control: no-store`):
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
 * Auth API errors are `{"error": "<sentence>"}`: 401 for a missing or wrong `X-API-VIVOKEY` and for a chip answer
 * that does not verify (`authentication failed`); 400 for a challenge token that is unknown, already used, expired
 * or for another chip (start over with a new challenge) and for a body that is not a JSON object of the documented
 * shape (unknown fields are refused too, to catch client bugs); 404 for an unknown path and for a chip that is not
 * enrolled; 405 for a wrong method; 413 for a body over the limit; 415 for a non-JSON `Content-Type`.
 *
 * Tokens: header `{typ: 'JWT', alg: 'ES256', kid}`, claims `{dev_id, type, product, atp, cld?, aud?, sub, iss,
 * iat, exp}`; `atp` is `mutual` (or `sessionAtp`) for `/session` and `cmac` for `/validate`; `type`/`product` per
 * chip family, see `PLATFORM_CHIP_CLAIMS`.
 *
 * The OpenID Provider (oidc-provider 9) under `/oidc`, issuer {@link ReferencePlatform.issuerUrl}: discovery at
 * `/oidc/.well-known/openid-configuration`, device authorization `/oidc/device/auth` (with `interval`), the user's
 * verification page `/oidc/device`, token `/oidc/token` (device code and refresh token grants; refresh tokens rotate
 * on every use, and a rotated one presented again is `invalid_grant` and revokes the grant), revocation
 * `/oidc/token/revocation`, userinfo `/oidc/me`, the ID-token keys `/oidc/jwks` (ES256). One public client,
 * `tapline-desktop` (plus {@link ReferencePlatformOptions.deviceClients}); scopes `openid offline_access
 * scan_requests`; subjects are pairwise per client ({@link pairwiseSubject} with the client id as sector). The user
 * approves or declines on the phone: {@link ReferencePlatform.approveDevice}, {@link ReferencePlatform.denyDevice}.
 *
 * The scan-request resource (docs/scan-request-protocol.md §4), errors `{"error": "<code>", "error_description":
 * "<sentence>"}`:
 * - `GET /scan-requests?wait=<0..30>` (bearer token with scope `scan_requests`): the account's pending and claimed
 *   requests with a strong `ETag`; with `If-None-Match` equal to it, held up to `wait` seconds → 304, or 200 as soon
 *   as the list changes (API calls wake it at once, expiries and claim lapses at their instant).
 * - `POST /scan-requests/{id}/claim` `{chip, uid, scheme, message?}` → `{claim, scheme, payload, expires_at}`: the
 *   same challenge `/challenge` makes, bound to the request and the chip.
 * - `POST /scan-requests/{id}/answer` `{claim, uid, response}` → `{state: "answered", answered_at}`: the same
 *   verification as `/session`; idempotent per claim.
 * - `POST /scan-requests/{id}/cancel` → `{state: "cancelled"}`.
 * - `POST /rp/scan-requests` (`X-API-VIVOKEY` of a relying party) `{subject, purpose, accepted_chips?, ttl_sec?}` →
 *   201 ScanRequest; `GET /rp/scan-requests/{id}` → the ScanRequest with `result: {token, chip}` once answered,
 *   `token` signed like `/session`'s with `dev_id` = the RP's id and `sub` = {@link chipSubject} for the RP.
 *
 * Faults ({@link ReferencePlatform.faults}) hit every path, the OpenID Provider's and the approval pages' included;
 * see {@link PlatformFaultBase.path} for the names a fault can target.
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
const SCAN_REQUESTS = '/scan-requests';
const RP_SCAN_REQUESTS = '/rp/scan-requests';

const ROUTES: ReadonlyMap<string, readonly string[]> = new Map([
  [CHALLENGE, ['POST']],
  [SESSION, ['POST']],
  [VALIDATE, ['POST']],
  [VALIDATE_JSON, ['POST']],
  [JWKS, ['GET', 'HEAD']],
]);

/** The provider's fixed routes (oidc-provider's defaults), counted under their own names. */
const OIDC_ROUTES = new Set([
  '/.well-known/openid-configuration',
  '/jwks',
  '/device/auth',
  '/device',
  '/token',
  '/token/revocation',
  '/token/introspection',
  '/me',
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
/** The longest long poll (protocol §4.1). */
const MAX_WAIT_SEC = 30;
/** RP-chosen scan-request lifetimes (protocol §4.5). */
const MIN_TTL_SEC = 10;
const MAX_TTL_SEC = 3600;
const MAX_PURPOSE_LENGTH = 200;
/** How long close() waits for requests in flight (held long polls answer at once) before dropping connections. */
const CLOSE_GRACE_MS = 2000;
const DEFAULT_RP_ID = 'default-rp';
const DEFAULT_RP_NAME = 'Reference relying party';
const INTERNAL_HEADER = 'x-reference-platform-internal';
const CHIP_KINDS: readonly PlatformChipKind[] = ['spark1', 'spark2', 'apex'];
const UID_LENGTHS: Readonly<Record<PlatformChipKind, number>> = { spark1: 8, spark2: 7, apex: 8 };
const NO_FAULTS: FaultPlan = { latencyMs: 0, answer: undefined, malformed: false, slowBody: undefined };

type Body = Record<string, unknown>;

interface Reply {
  readonly status: number;
  /** Sent as JSON. */
  readonly body?: unknown;
  /** Sent as is, instead of `body` (the OpenID Provider's pages and answers). */
  readonly text?: string;
  readonly headers?: OutgoingHttpHeaders;
}

/**
 * A refusal with an HTTP status. The Auth API sends `{"error": message}`; the scan-request endpoints send
 * `{"error": code, "error_description": message}`, the code defaulting by status.
 */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code?: string,
    readonly headers?: Readonly<Record<string, string>>,
  ) {
    super(message);
  }
}

interface ChallengeRecord {
  readonly scheme: 1 | 2;
  /** The chip the challenge was made for (scheme 2, and claims); `/challenge` scheme 1 learns it at `/session`. */
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

/** What a scan-request claim carries: the chip it was made for and the challenge it handed out. */
interface ClaimData {
  readonly chip: EnrolledChip;
  readonly challenge: ChallengeRecord;
}

/** The recorded first answer of a claim: the body it came with (normalised) and the reply it got. */
interface ClaimOutcome {
  readonly fingerprint: string;
  readonly reply: Reply;
}

type Claim = ClaimSlot<ClaimData, ClaimOutcome>;
type StoredRequest = StoredScanRequest<ClaimData, ClaimOutcome>;

interface RelyingParty {
  readonly id: string;
  readonly name: string;
  readonly keyDigest: Uint8Array;
}

/** Where a path leads, its name in stats, and the names a fault can target it by. */
type Target =
  | { readonly kind: 'auth' }
  | { readonly kind: 'oidc' }
  | { readonly kind: 'scan-list' }
  | { readonly kind: 'scan-action'; readonly id: string; readonly action: 'claim' | 'answer' | 'cancel' }
  | { readonly kind: 'rp-create' }
  | { readonly kind: 'rp-read'; readonly id: string }
  | { readonly kind: 'unknown' };

interface Route {
  readonly name: string;
  readonly faultNames: readonly string[];
  readonly target: Target;
}

function classify(path: string): Route {
  if (ROUTES.has(path)) return { name: path, faultNames: [path], target: { kind: 'auth' } };
  if (path === OIDC_PREFIX || path.startsWith(`${OIDC_PREFIX}/`)) {
    const inner = path.slice(OIDC_PREFIX.length);
    const template = /^\/device\/(?!auth$)[^/]+$/.test(inner)
      ? '/device/{uid}'
      : /^\/interaction\/[^/]+$/.test(inner)
        ? '/interaction/{uid}'
        : undefined;
    const name = template !== undefined ? `${OIDC_PREFIX}${template}` : OIDC_ROUTES.has(inner) ? path : 'other';
    return { name, faultNames: [...new Set([path, name, OIDC_PREFIX])], target: { kind: 'oidc' } };
  }
  if (path === SCAN_REQUESTS) return { name: path, faultNames: [path], target: { kind: 'scan-list' } };
  const action = /^\/scan-requests\/([^/]+)\/(claim|answer|cancel)$/.exec(path);
  if (action !== null) {
    const name = `${SCAN_REQUESTS}/{id}/${action[2]}`;
    const target = { kind: 'scan-action', id: action[1]!, action: action[2] as 'claim' | 'answer' | 'cancel' } as const;
    return { name, faultNames: [path, name, SCAN_REQUESTS], target };
  }
  if (path === RP_SCAN_REQUESTS) return { name: path, faultNames: [path], target: { kind: 'rp-create' } };
  const read = /^\/rp\/scan-requests\/([^/]+)$/.exec(path);
  if (read !== null) {
    const name = `${RP_SCAN_REQUESTS}/{id}`;
    return { name, faultNames: [path, name, RP_SCAN_REQUESTS], target: { kind: 'rp-read', id: read[1]! } };
  }
  return { name: 'other', faultNames: [path], target: { kind: 'unknown' } };
}

interface MutableStats {
  requests: Record<string, number>;
  challengesIssued: number;
  tokensConsumed: number;
  sessions: { succeeded: number; failed: number };
  validations: { success: number; expired: number; invalid: number };
  jwtsIssued: number;
  scanRequests: { created: number; claims: number; answers: { succeeded: number; failed: number }; cancelled: number };
}

function emptyStats(): MutableStats {
  return {
    requests: {},
    challengesIssued: 0,
    tokensConsumed: 0,
    sessions: { succeeded: 0, failed: 0 },
    validations: { success: 0, expired: 0, invalid: 0 },
    jwtsIssued: 0,
    scanRequests: { created: 0, claims: 0, answers: { succeeded: 0, failed: 0 }, cancelled: 0 },
  };
}

function sha256(text: string): Uint8Array {
  return createHash('sha256').update(text, 'utf8').digest();
}

function invalidOption(message: string): TaplineError {
  return new TaplineError(ErrorCode.InvalidArgument, message);
}

function checkPositive(value: number, what: string): number {
  if (!Number.isFinite(value) || value <= 0) throw invalidOption(`${what} must be a positive number, not ${value}.`);
  return value;
}

function checkPositiveInteger(value: number, what: string): number {
  if (!Number.isSafeInteger(value) || value <= 0)
    throw invalidOption(`${what} must be a positive integer, not ${value}.`);
  return value;
}

function checkPurpose(purpose: string): string {
  if (purpose.length < 1 || purpose.length > MAX_PURPOSE_LENGTH) {
    throw invalidOption(`A purpose has 1 to ${MAX_PURPOSE_LENGTH} characters, not ${purpose.length}.`);
  }
  return purpose;
}

function checkChipKinds(kinds: readonly PlatformChipKind[]): readonly PlatformChipKind[] {
  for (const kind of kinds) {
    if (!CHIP_KINDS.includes(kind)) throw invalidOption(`Unknown chip kind "${String(kind)}".`);
  }
  return kinds;
}

/** A sentence for `error_description`: capitalised, with a full stop. */
function sentence(message: string): string {
  const text = message.charAt(0).toUpperCase() + message.slice(1);
  return /[.!?]$/.test(text) ? text : `${text}.`;
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

function chipKindField(body: Body, name: string): PlatformChipKind {
  const value = body[name];
  if (typeof value !== 'string' || !CHIP_KINDS.includes(value as PlatformChipKind)) {
    throw new HttpError(400, `${name} must be one of ${CHIP_KINDS.join(', ')}`);
  }
  return value as PlatformChipKind;
}

/** 405 for a scan-request endpoint called with the wrong method. */
function checkMethod(method: string, allowed: string): void {
  if (method !== allowed) {
    throw new HttpError(405, `${method} is not allowed here`, 'invalid_request', { allow: allowed });
  }
}

/** The `If-None-Match` entity tags, `W/` stripped (a list, or `*`). */
function entityTags(header: string | undefined): readonly string[] {
  if (header === undefined) return [];
  return header
    .split(',')
    .map((tag) => tag.trim().replace(/^W\//, ''))
    .filter((tag) => tag !== '');
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
  readonly desktopClientId = DESKTOP_CLIENT_ID;
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
  readonly #accounts: PlatformAccounts;
  readonly #relyingParties: readonly RelyingParty[];
  readonly #book: ScanRequestBook<ClaimData, ClaimOutcome>;
  readonly #scanRequestTtlMs: number;
  readonly #oidcOptions: Pick<
    OidcSetup,
    'clients' | 'accessTokenTtlSec' | 'refreshTokenTtlSec' | 'deviceCodeTtlSec' | 'deviceInterval'
  >;
  /** The provider's counters, zeroed in place by resetStats() (the provider holds on to the object). */
  readonly #oidcStats: MutableOidcStats = emptyOidcStats();
  /** Marks the approval pages' own requests, which neither faults nor stats see. */
  readonly #internalDigest: Uint8Array;
  readonly #internalSecret: string;
  /** Requests being handled, so that close() can let held long polls answer first. */
  readonly #inFlight = new Set<Promise<void>>();
  /** The OpenID Provider, created (and oidc-provider loaded) by the first request that needs it. */
  #oidc: Promise<ReferenceOidc> | undefined;
  #keys: PlatformSigningKey[];
  #stats = emptyStats();
  #url: URL | undefined;
  #closed: Promise<void> | undefined;

  constructor(options: ReferencePlatformOptions, keys: PlatformSigningKey[]) {
    this.apiKey = options.apiKey ?? randomBytes(32).toString('hex');
    if (this.apiKey === '') throw invalidOption('The API key must not be empty.');
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
      throw invalidOption('retainedSigningKeys must be an integer ≥ 0.');
    }
    this.#keys = keys;
    this.#accounts = new PlatformAccounts(
      this.chips,
      options.pairwiseSalt ?? new Uint8Array(randomBytes(32)),
      options.accounts,
    );
    this.#relyingParties = this.#registerRelyingParties(options.relyingParties ?? []);
    this.#book = new ScanRequestBook(this.#clock);
    this.#scanRequestTtlMs = checkPositive(options.scanRequestTtlMs ?? 300_000, 'scanRequestTtlMs');
    const clients: DeviceClient[] = [{ clientId: DESKTOP_CLIENT_ID, clientName: 'Tapline' }];
    for (const client of options.deviceClients ?? []) {
      if (client.clientId === '' || clients.some((known) => known.clientId === client.clientId)) {
        throw invalidOption(`The device client id "${client.clientId}" is empty or registered twice.`);
      }
      clients.push({ clientId: client.clientId, clientName: client.clientName ?? client.clientId });
    }
    this.#oidcOptions = {
      clients,
      accessTokenTtlSec: checkPositiveInteger(options.accessTokenTtlSec ?? 600, 'accessTokenTtlSec'),
      refreshTokenTtlSec: checkPositiveInteger(options.refreshTokenTtlSec ?? 30 * 24 * 60 * 60, 'refreshTokenTtlSec'),
      deviceCodeTtlSec: checkPositiveInteger(options.deviceCodeTtlSec ?? 600, 'deviceCodeTtlSec'),
      deviceInterval: checkPositive(options.deviceInterval ?? 1, 'deviceInterval'),
    };
    this.#internalSecret = randomBytes(32).toString('base64url');
    this.#internalDigest = sha256(this.#internalSecret);
    this.#server = createServer((req, res) => {
      const handling = this.#handle(req, res)
        .catch(() => {
          // A failure here is a bug or a connection that went away; the client must see it rather than hang.
          if (this.#closed !== undefined || res.headersSent) res.destroy();
          else res.end(this.#writeNow(res, 500, JSON.stringify({ error: 'internal error' })));
        })
        .finally(() => this.#inFlight.delete(handling));
      this.#inFlight.add(handling);
    });
  }

  #registerRelyingParties(extra: readonly RelyingPartyRegistration[]): readonly RelyingParty[] {
    const parties: RelyingParty[] = [{ id: DEFAULT_RP_ID, name: DEFAULT_RP_NAME, keyDigest: this.#apiKeyDigest }];
    for (const party of extra) {
      if (party.id === '' || party.name === '' || party.apiKey === '') {
        throw invalidOption('A relying party needs a non-empty id, name and apiKey.');
      }
      const keyDigest = sha256(party.apiKey);
      if (parties.some((known) => known.id === party.id || constantTimeEqual(known.keyDigest, keyDigest))) {
        throw invalidOption(`The relying party "${party.id}" repeats the id or the API key of another one.`);
      }
      parties.push({ id: party.id, name: party.name, keyDigest });
    }
    return parties;
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

  /**
   * The OpenID Provider. Made on first use (after listen(): the issuer names the port), so that a platform used only
   * for the Auth API never loads oidc-provider.
   */
  #provider(): Promise<ReferenceOidc> {
    this.#oidc ??= import('./oidc.js').then(({ ReferenceOidc }) =>
      ReferenceOidc.create({
        ...this.#oidcOptions,
        issuer: this.issuerUrl,
        hasAccount: (account) => this.#accounts.has(account),
        accountIds: () => this.#accounts.ids(),
        subject: (account, sector) => this.#accounts.subject(account, sector),
        internalHeaders: { [INTERNAL_HEADER]: this.#internalSecret },
        stats: this.#oidcStats,
      }),
    );
    return this.#oidc;
  }

  get url(): URL {
    return new URL(this.#url!.href);
  }

  get jwksUrl(): URL {
    return new URL(JWKS, this.#url);
  }

  get issuerUrl(): URL {
    return new URL(OIDC_PREFIX, this.#url);
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

  get accounts(): ReadonlyMap<string, readonly string[]> {
    return this.#accounts.snapshot();
  }

  get relyingParties(): readonly ScanRequestRelyingParty[] {
    return this.#relyingParties.map(({ id, name }) => ({ id, name }));
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
      oidc: { ...this.#oidcStats },
      scanRequests: { ...s.scanRequests, answers: { ...s.scanRequests.answers } },
    };
  }

  resetStats(): void {
    this.#stats = emptyStats();
    Object.assign(this.#oidcStats, emptyOidcStats());
  }

  subFor(uid: Uint8Array | string): string | undefined {
    const chip = this.chips.get(uid);
    return chip === undefined ? undefined : chipSubject(this.#subSalt, this.devId, chip.identity);
  }

  accountSubject(account: string, sector: string): string {
    return this.#accounts.subject(account, sector);
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

  async approveDevice(userCode: string, options: ApproveDeviceOptions = {}): Promise<void> {
    let account = options.account;
    if (options.chipUid !== undefined) {
      const owner = this.#accounts.ownerOf(options.chipUid);
      const uid = typeof options.chipUid === 'string' ? options.chipUid : toHex(options.chipUid);
      if (owner === undefined) throw new Error(`Cannot approve with chip ${uid}: no account owns it.`);
      if (account !== undefined && account !== owner) {
        throw new Error(`Cannot approve with chip ${uid} as "${account}": the chip belongs to "${owner}".`);
      }
      account = owner;
    }
    account ??= DEFAULT_ACCOUNT;
    if (!this.#accounts.has(account)) throw new Error(`Cannot approve as "${account}": there is no such account.`);
    await (await this.#provider()).approve(userCode, account);
  }

  async denyDevice(userCode: string): Promise<void> {
    await (await this.#provider()).deny(userCode);
  }

  createScanRequest(options: CreateScanRequestOptions = {}): ScanRequestRecord {
    const account = options.account ?? DEFAULT_ACCOUNT;
    if (!this.#accounts.has(account)) throw invalidOption(`There is no account "${account}".`);
    const relyingParty = options.relyingParty ?? this.#relyingParties[0]!;
    if (relyingParty.id === '' || relyingParty.name === '') {
      throw invalidOption('A relying party needs a non-empty id and name.');
    }
    const request = this.#newScanRequest({
      account,
      relyingParty: { id: relyingParty.id, name: relyingParty.name },
      purpose: checkPurpose(options.purpose ?? 'Reference scan request'),
      acceptedChips: checkChipKinds(options.acceptedChips ?? []),
      ttlMs: checkPositive(options.ttlMs ?? this.#scanRequestTtlMs, 'ttlMs'),
    });
    return this.#book.toRecord(request);
  }

  scanRequest(id: string): ScanRequestRecord | undefined {
    const request = this.#book.get(id);
    return request === undefined ? undefined : this.#book.toRecord(request);
  }

  cancelScanRequest(id: string): boolean {
    const request = this.#book.get(id);
    if (request === undefined || !this.#book.cancel(request)) return false;
    this.#stats.scanRequests.cancelled += 1;
    return true;
  }

  close(): Promise<void> {
    this.#closed ??= (async () => {
      // Held long polls wake on this and answer; latency and slow-body faults stop.
      this.#closing.abort();
      const grace = new AbortController();
      await Promise.race([
        Promise.allSettled([...this.#inFlight]),
        sleep(CLOSE_GRACE_MS, undefined, { signal: grace.signal }).catch(() => undefined),
      ]);
      grace.abort();
      await new Promise<void>((resolve) => {
        this.#server.close(() => resolve());
        this.#server.closeAllConnections();
      });
    })();
    return this.#closed;
  }

  // -------------------------------------------------------------------------------------------------------------
  // HTTP

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://platform.invalid');
    const route = classify(url.pathname);
    const internal = route.target.kind === 'oidc' && this.#isInternal(req);
    if (!internal) this.#stats.requests[route.name] = (this.#stats.requests[route.name] ?? 0) + 1;
    const plan = internal ? NO_FAULTS : this.#faults.take(route.faultNames);
    if (plan.latencyMs > 0) await this.#sleep(plan.latencyMs);
    const injected = plan.answer;
    if (injected !== undefined && injected.processed !== true) {
      await this.#answerFault(req, res, plan);
      return;
    }
    const reply = await this.#route(req, res, route, url);
    // The provider answered by itself (an error Koa handled), or the client of a long poll went away.
    if (reply === undefined) return;
    if (injected !== undefined) {
      await this.#answerFault(req, res, plan);
      return;
    }
    let text = reply.text ?? (reply.body === undefined ? '' : JSON.stringify(reply.body));
    // Half of a JSON object never parses: it lacks at least its closing brace.
    if (plan.malformed) text = text.slice(0, Math.max(1, Math.floor(text.length / 2)));
    await this.#write(res, reply.status, text, reply.headers, plan.slowBody);
  }

  #isInternal(req: IncomingMessage): boolean {
    const given = req.headers[INTERNAL_HEADER];
    return typeof given === 'string' && constantTimeEqual(sha256(given), this.#internalDigest);
  }

  async #answerFault(req: IncomingMessage, res: ServerResponse, plan: FaultPlan): Promise<void> {
    const fault = plan.answer!;
    if (fault.kind === 'reset') {
      req.socket.resetAndDestroy();
      return;
    }
    await this.#write(res, fault.status, fault.body ?? '{"error":"injected fault"}', undefined, plan.slowBody);
  }

  #writeNow(res: ServerResponse, status: number, text: string, headers?: OutgoingHttpHeaders): Buffer {
    const body = Buffer.from(text, 'utf8');
    // A 304 (and a 204) has no body, so neither a type nor a length.
    const bodiless = status === 304 || status === 204;
    res.writeHead(status, {
      ...(bodiless ? {} : { 'content-type': 'application/json; charset=utf-8', 'content-length': String(body.length) }),
      'cache-control': 'no-store',
      ...headers,
    });
    return bodiless ? Buffer.alloc(0) : body;
  }

  async #write(
    res: ServerResponse,
    status: number,
    text: string,
    headers: OutgoingHttpHeaders | undefined,
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

  async #route(req: IncomingMessage, res: ServerResponse, route: Route, url: URL): Promise<Reply | undefined> {
    const { target } = route;
    switch (target.kind) {
      case 'auth':
        return this.#authApi(req, url.pathname);
      case 'oidc':
        return (await this.#provider()).handle(req, res);
      case 'unknown':
        return { status: 404, body: { error: `no such endpoint: ${url.pathname}` } };
      default:
        return this.#scanApi(req, res, target, url);
    }
  }

  async #authApi(req: IncomingMessage, path: string): Promise<Reply> {
    const methods = ROUTES.get(path)!;
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
      const { payload, record } = this.#scheme1Challenge(undefined, this.#clock.now() + this.#tokenTtlMs);
      return { status: 200, body: { payload: toHex(payload), token: this.#issue(record) } };
    }
    if (scheme !== 2) throw new HttpError(400, 'scheme must be 1 or 2');
    refuseUnknownFields(body, ['scheme', 'message', 'uid']);
    const message = hexField(body, 'message', [16]);
    const chip = this.#enrolled(hexField(body, 'uid', [7, 8]));
    if (chip.scheme !== 2) throw new HttpError(400, 'this chip answers scheme 1');
    const { payload, record } = this.#scheme2Challenge(chip, message, this.#clock.now() + this.#tokenTtlMs);
    return { status: 200, body: { payload: toHex(payload), token: this.#issue(record) } };
  }

  /** Scheme 1: a random 16-byte payload whose first 10 bytes are the TAM1 IChallenge. */
  #scheme1Challenge(uid: string | undefined, expiresAt: number): { payload: Uint8Array; record: ChallengeRecord } {
    const payload = this.#randomBytes(SCHEME1_PAYLOAD_LENGTH);
    const record: ChallengeRecord = {
      scheme: 1,
      uid,
      rndA: new Uint8Array(0),
      rndB: new Uint8Array(0),
      ichallenge: payload.slice(0, TAM1_ICHALLENGE_LENGTH),
      expiresAt,
    };
    return { payload, record };
  }

  /** Scheme 2: the PCD's answer to the chip's AuthenticateEV2First part 1 (`message`), with a random RndA. */
  #scheme2Challenge(
    chip: EnrolledChip,
    message: Uint8Array,
    expiresAt: number,
  ): { payload: Uint8Array; record: ChallengeRecord } {
    const rndA = this.#randomBytes(RND_LENGTH);
    const { response32, rndB } = pcdAnswerChallenge(chip.authKey, message, rndA);
    const record: ChallengeRecord = {
      scheme: 2,
      uid: chip.uid,
      rndA,
      rndB,
      ichallenge: new Uint8Array(0),
      expiresAt,
    };
    return { payload: response32, record };
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
    if (!this.#verifyAnswer(chip, record, response)) throw new HttpError(401, 'authentication failed');
    const token = await this.#sign(chip, this.#sessionAtp, { cld });
    return { status: 200, body: { token } };
  }

  /**
   * Whether `response` is the chip's genuine answer to the challenge of `record`: what `/session` and scan-request
   * answers both check. Throws a 400 {@link HttpError} for a response of the wrong shape.
   */
  #verifyAnswer(chip: EnrolledChip, record: ChallengeRecord, response: Uint8Array): boolean {
    return record.scheme === 2 ? this.#verifyEv2(chip, record, response) : this.#verifyTam1(chip, record, response);
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
  // The scan-request resource

  async #scanApi(
    req: IncomingMessage,
    res: ServerResponse,
    target: Exclude<Target, { readonly kind: 'auth' | 'oidc' | 'unknown' }>,
    url: URL,
  ): Promise<Reply | undefined> {
    try {
      const method = req.method ?? 'GET';
      const allowed = target.kind === 'scan-list' || target.kind === 'rp-read' ? 'GET' : 'POST';
      // Authentication first (protocol §3.1): nothing about a request is said to a caller who may not see it.
      if (target.kind === 'rp-create' || target.kind === 'rp-read') {
        const party = this.#relyingParty(req);
        checkMethod(method, allowed);
        return target.kind === 'rp-create' ? await this.#rpCreate(req, party) : this.#rpRead(party.id, target.id);
      }
      const account = await this.#bearer(req);
      checkMethod(method, allowed);
      return target.kind === 'scan-list'
        ? await this.#listScanRequests(req, res, account, url)
        : await this.#scanAction(req, account, target.id, target.action);
    } catch (error) {
      if (!(error instanceof HttpError)) throw error;
      const code = error.code ?? (error.status === 404 ? 'not_found' : 'invalid_request');
      return {
        status: error.status,
        body: { error: code, error_description: sentence(error.message) },
        ...(error.headers === undefined ? {} : { headers: error.headers }),
      };
    }
  }

  /** The account of a valid bearer token with the `scan_requests` scope (RFC 6750). */
  async #bearer(req: IncomingMessage): Promise<string> {
    const invalidToken = (message: string): HttpError =>
      new HttpError(401, message, 'invalid_token', { 'www-authenticate': 'Bearer error="invalid_token"' });
    const header = req.headers.authorization;
    const match = header === undefined ? null : /^Bearer +([A-Za-z0-9\-._~+/]+=*)$/i.exec(header);
    if (match === null) throw invalidToken('an access token is required: Authorization: Bearer <token>');
    const token = await (await this.#provider()).accessToken(match[1]!);
    if (token === undefined) throw invalidToken('the access token is unknown, expired or revoked');
    if (!token.scopes.has(SCAN_REQUESTS_SCOPE)) {
      throw new HttpError(403, `the access token lacks the ${SCAN_REQUESTS_SCOPE} scope`, 'insufficient_scope', {
        'www-authenticate': `Bearer error="insufficient_scope", scope="${SCAN_REQUESTS_SCOPE}"`,
      });
    }
    return token.account;
  }

  /** The relying party whose key `X-API-VIVOKEY` carries. */
  #relyingParty(req: IncomingMessage): RelyingParty {
    const given = req.headers['x-api-vivokey'];
    if (typeof given === 'string') {
      const digest = sha256(given);
      // Every key is compared, so that the time taken does not say which one matched.
      let found: RelyingParty | undefined;
      for (const party of this.#relyingParties) if (constantTimeEqual(digest, party.keyDigest)) found ??= party;
      if (found !== undefined) return found;
    }
    throw new HttpError(401, 'X-API-VIVOKEY is missing or not the key of a relying party', 'invalid_api_key');
  }

  /** A request of `account` by id, or 404: another account's requests do not exist for this one. */
  #requestOf(account: string, id: string): StoredRequest {
    const request = this.#book.get(id);
    if (request?.account !== account) throw new HttpError(404, `there is no scan request ${id}`);
    return request;
  }

  async #listScanRequests(
    req: IncomingMessage,
    res: ServerResponse,
    account: string,
    url: URL,
  ): Promise<Reply | undefined> {
    const waitText = url.searchParams.get('wait') ?? '0';
    if (!/^\d{1,2}$/.test(waitText) || Number(waitText) > MAX_WAIT_SEC) {
      throw new HttpError(400, `wait must be an integer from 0 to ${MAX_WAIT_SEC}`);
    }
    const known = entityTags(req.headers['if-none-match']);
    const deadline = performance.now() + Number(waitText) * 1000;
    const gone = new AbortController();
    const onClose = (): void => gone.abort();
    res.once('close', onClose);
    const signal = AbortSignal.any([this.#closing.signal, gone.signal]);
    try {
      for (;;) {
        const { requests, etag } = this.#book.list(account);
        if (!known.includes(etag) && !known.includes('*')) {
          return { status: 200, body: { requests }, headers: { etag } };
        }
        const left = deadline - performance.now();
        if (left <= 0 || this.#closing.signal.aborted) return { status: 304, headers: { etag } };
        // Woken by an API call that changes the account's list, or at the next expiry or claim lapse (+1 ms, so
        // that the platform clock has passed the instant when it is looked at again).
        const untilChange = this.#book.msUntilNextChange(account);
        const ms = untilChange === undefined ? left : Math.min(left, untilChange + 1);
        await this.#book.waitForChange(account, ms, signal);
        if (gone.signal.aborted) return undefined;
      }
    } finally {
      res.off('close', onClose);
    }
  }

  async #scanAction(
    req: IncomingMessage,
    account: string,
    id: string,
    action: 'claim' | 'answer' | 'cancel',
  ): Promise<Reply> {
    if (action === 'cancel') {
      // No body (any is ignored): Node drops what is left of it once the answer is out.
      const request = this.#requestOf(account, id);
      if (!this.#book.cancel(request)) throw this.#closedError(request);
      this.#stats.scanRequests.cancelled += 1;
      return { status: 200, body: { state: 'cancelled' } };
    }
    const body = await this.#jsonBody(req);
    return action === 'claim' ? this.#claim(body, account, id) : await this.#answer(body, account, id);
  }

  #closedError(request: StoredRequest): HttpError {
    return new HttpError(410, `the scan request is ${this.#book.stateOf(request)}`, 'request_closed');
  }

  /** The checks of protocol §4.2, in its order. */
  #claim(body: Body, account: string, id: string): Reply {
    refuseUnknownFields(body, ['chip', 'uid', 'scheme', 'message']);
    const kind = chipKindField(body, 'chip');
    const scheme = body['scheme'];
    if (scheme !== 1 && scheme !== 2) throw new HttpError(400, 'scheme must be 1 or 2');
    if ((kind === 'spark1') !== (scheme === 1))
      throw new HttpError(400, `a ${kind} answers scheme ${kind === 'spark1' ? 1 : 2}`);
    const uid = toHex(hexField(body, 'uid', [UID_LENGTHS[kind]]));
    let message: Uint8Array | undefined;
    if (scheme === 2) message = hexField(body, 'message', [16]);
    else if (body['message'] !== undefined) throw new HttpError(400, 'scheme 1 takes no message');

    const request = this.#requestOf(account, id);
    if (request.closed !== undefined) throw this.#closedError(request);
    const chip = this.chips.get(uid);
    if (chip === undefined || !this.#accounts.owns(account, uid)) {
      throw new HttpError(403, 'this chip is not enrolled to the account', 'chip_not_owned');
    }
    if (chip.kind !== kind) throw new HttpError(400, `the chip is a ${chip.kind}, not a ${kind}`);
    if (request.acceptedChips.length > 0 && !request.acceptedChips.includes(kind)) {
      throw new HttpError(
        422,
        `the request accepts ${request.acceptedChips.join(', ')}, not ${kind}`,
        'chip_not_accepted',
      );
    }

    const expiresAt = Math.min(this.#clock.now() + this.#tokenTtlMs, request.expiresAt);
    const { payload, record } =
      message === undefined
        ? this.#scheme1Challenge(chip.uid, expiresAt)
        : this.#scheme2Challenge(chip, message, expiresAt);
    const claim: Claim = {
      secret: randomBytes(32).toString('base64url'),
      uid,
      expiresAt,
      data: { chip, challenge: record },
    };
    this.#book.claim(request, claim);
    this.#stats.scanRequests.claims += 1;
    return {
      status: 200,
      body: { claim: claim.secret, scheme, payload: toHex(payload), expires_at: rfc3339(expiresAt) },
    };
  }

  /** The checks of protocol §4.3, in its order. */
  async #answer(body: Body, account: string, id: string): Promise<Reply> {
    refuseUnknownFields(body, ['claim', 'uid', 'response']);
    const secret = body['claim'];
    if (typeof secret !== 'string' || secret === '')
      throw new HttpError(400, 'claim must be the non-empty string claim returned');
    const uid = toHex(hexField(body, 'uid', [7, 8]));
    const response = hexField(body, 'response');
    const fingerprint = `${uid}:${toHex(response)}`;

    const request = this.#requestOf(account, id);
    const claim = request.claims.get(secret);
    if (claim?.outcome !== undefined) {
      // The first outcome of a claim is final: the identical retry hears it again, anything else is refused.
      if (claim.outcome.fingerprint === fingerprint) return claim.outcome.reply;
      throw new HttpError(409, 'this claim was already answered with another response', 'claim_used');
    }
    if (request.closed !== undefined) throw this.#closedError(request);
    if (claim === undefined || claim !== request.current || claim.uid !== uid) {
      throw new HttpError(
        400,
        'the claim is unknown, lapsed, replaced, or for another request or chip',
        'claim_invalid',
      );
    }

    const reply = await this.#verifyClaimAnswer(request, claim, response);
    claim.outcome = { fingerprint, reply };
    return reply;
  }

  /** Consumes the claim with the chip's response: the request is answered, or pending again. */
  async #verifyClaimAnswer(request: StoredRequest, claim: Claim, response: Uint8Array): Promise<Reply> {
    const { chip, challenge } = claim.data;
    let authentic: boolean;
    try {
      authentic = this.#verifyAnswer(chip, challenge, response);
    } catch (error) {
      if (!(error instanceof HttpError)) throw error;
      this.#book.claimFailed(request, claim);
      this.#stats.scanRequests.answers.failed += 1;
      return { status: 400, body: { error: 'invalid_request', error_description: sentence(error.message) } };
    }
    if (!authentic) {
      this.#book.claimFailed(request, claim);
      this.#stats.scanRequests.answers.failed += 1;
      return {
        status: 401,
        body: { error: 'authentication_failed', error_description: "The chip's answer did not verify." },
      };
    }
    const token = await this.#sign(chip, this.#sessionAtp, {}, request.relyingParty.id);
    const at = this.#clock.now();
    this.#book.answer(request, { token, chip: chip.kind }, at);
    this.#stats.scanRequests.answers.succeeded += 1;
    return { status: 200, body: { state: 'answered', answered_at: rfc3339(at) } };
  }

  /** `POST /rp/scan-requests` (protocol §4.5). */
  async #rpCreate(req: IncomingMessage, party: RelyingParty): Promise<Reply> {
    const body = await this.#jsonBody(req);
    refuseUnknownFields(body, ['subject', 'purpose', 'accepted_chips', 'ttl_sec']);
    const subject = body['subject'];
    if (typeof subject !== 'string' || subject === '')
      throw new HttpError(400, "subject must be the account's subject for this relying party");
    const purpose = body['purpose'];
    if (typeof purpose !== 'string' || purpose.length < 1 || purpose.length > MAX_PURPOSE_LENGTH) {
      throw new HttpError(400, `purpose must be a string of 1 to ${MAX_PURPOSE_LENGTH} characters`);
    }
    const accepted: unknown = body['accepted_chips'] ?? [];
    if (!Array.isArray(accepted)) throw new HttpError(400, 'accepted_chips must be an array');
    const acceptedChips = accepted.map((kind: unknown) => {
      if (typeof kind !== 'string' || !CHIP_KINDS.includes(kind as PlatformChipKind)) {
        throw new HttpError(400, `accepted_chips holds only ${CHIP_KINDS.join(', ')}`);
      }
      return kind as PlatformChipKind;
    });
    let ttlMs = this.#scanRequestTtlMs;
    const ttl = body['ttl_sec'];
    if (ttl !== undefined) {
      if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < MIN_TTL_SEC || ttl > MAX_TTL_SEC) {
        throw new HttpError(400, `ttl_sec must be an integer from ${MIN_TTL_SEC} to ${MAX_TTL_SEC}`);
      }
      ttlMs = ttl * 1000;
    }
    const account = this.#accounts.bySubject(party.id, subject);
    if (account === undefined) throw new HttpError(404, 'no account has this subject for this relying party');
    const request = this.#newScanRequest({
      account,
      relyingParty: { id: party.id, name: party.name },
      purpose,
      acceptedChips,
      ttlMs,
    });
    return {
      status: 201,
      body: this.#book.toWire(request),
      headers: { location: `${RP_SCAN_REQUESTS}/${request.id}` },
    };
  }

  /** `GET /rp/scan-requests/{id}` (protocol §4.6): only the relying party's own requests exist for it. */
  #rpRead(partyId: string, id: string): Reply {
    const request = this.#book.get(id);
    if (request?.relyingParty.id !== partyId) throw new HttpError(404, `there is no scan request ${id}`);
    const result = request.result;
    return {
      status: 200,
      body: {
        ...this.#book.toWire(request),
        ...(result === undefined ? {} : { result: { token: result.token, chip: result.chip } }),
      },
    };
  }

  #newScanRequest(request: NewScanRequest): StoredRequest {
    const stored = this.#book.create(request);
    this.#stats.scanRequests.created += 1;
    return stored;
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

  /** The claims of a token; `devId` is the developer (Auth API) or the relying party (scan-request results). */
  #claims(
    chip: EnrolledChip,
    atp: string,
    extra: { readonly aud?: string | undefined; readonly cld?: string | undefined },
    devId: string = this.devId,
  ): JWTPayload {
    const iat = Math.floor(this.#clock.now() / 1000);
    // The order of VivoKey's sample token, for readers who compare decoded tokens by eye.
    return {
      dev_id: devId,
      type: chip.type,
      product: chip.product,
      atp,
      ...(extra.cld === undefined ? {} : { cld: extra.cld }),
      ...(extra.aud === undefined ? {} : { aud: extra.aud }),
      sub: chipSubject(this.#subSalt, devId, chip.identity),
      iss: this.issuer,
      iat,
      exp: iat + this.#jwtTtlSec,
    };
  }

  async #sign(
    chip: EnrolledChip,
    atp: string,
    extra: { readonly aud?: string | undefined; readonly cld?: string | undefined },
    devId?: string,
  ): Promise<string> {
    const key = this.#keys[0]!;
    const jwt = await new SignJWT(this.#claims(chip, atp, extra, devId))
      .setProtectedHeader({ typ: 'JWT', alg: 'ES256', kid: key.kid })
      .sign(key.privateKey);
    this.#stats.jwtsIssued += 1;
    return jwt;
  }
}
