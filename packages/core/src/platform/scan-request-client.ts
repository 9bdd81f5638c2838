/**
 * The client of the platform's scan-request API: the requests relying parties made to the account this computer is
 * associated with, waiting for a tap of the account's chip (`GET /scan-requests`, `POST /scan-requests/{id}/claim`,
 * `/answer`, `/cancel`).
 *
 * @packageDocumentation
 */
import { ErrorCode, LOGIN_HINT, TaplineError, abortError, isTaplineError } from '../model/errors.js';
import type { ChallengeScheme } from '../model/platform.js';
import { silentLogger, type Logger } from '../runtime/logger.js';
import { DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_PLATFORM_TIMEOUT_MS } from './auth-client.js';
import type { AccessTokenOptions } from './associated-session.js';
import {
  BodyTooLargeError,
  checkTimeout,
  isTokenSafeUrl,
  networkErrorCode,
  parseBaseUrl,
  parseJsonBytes,
  readBodyLimited,
  sanitizeCause,
  scrubText,
  withCallDeadline,
  type FetchLike,
} from './http.js';
import type { VerifiableChip } from './relay.js';

/** Where a scan request is in its life. Only `pending` and `claimed` ones are listed. */
export type ScanRequestState = 'pending' | 'claimed' | 'answered' | 'cancelled' | 'expired';

/**
 * A scan request as the platform lists it. Times are milliseconds since the epoch, on the platform's clock (see
 * {@link ScanRequestList} `serverTime`).
 *
 * The texts come from relying parties and reach terminals and notifications, so they arrive here already made safe
 * to print as plain text (protocol §7): control characters (C0, C1, DEL) and bidirectional controls (LRM, RLM, ALM,
 * the embeddings, overrides and isolates) removed, line breaks and other runs of white space turned into one space,
 * and the length capped ({@link MAX_PURPOSE_CHARS}, {@link MAX_RELYING_PARTY_NAME_CHARS}) with a trailing `…`. Ids
 * are checked against their shapes instead; a request whose ids do not fit fails the list with `PROTOCOL_ERROR`.
 */
export interface PlatformScanRequest {
  /** The request's id: `sr_` and base64url characters, 128 at most in all (see {@link isScanRequestId}). */
  readonly id: string;
  /**
   * Who asked, as registered with the platform. `id` is 1 to 64 letters, digits, `.`, `_` or `-`; `name` is
   * non-empty, plain text of at most {@link MAX_RELYING_PARTY_NAME_CHARS} characters.
   */
  readonly relyingParty: { readonly id: string; readonly name: string };
  /** What the scan is for, to show to the person next to the relying party's name; plain text, possibly empty. */
  readonly purpose: string;
  /** When the relying party created the request. */
  readonly createdAt: number;
  /** When the request expires, claimed or not: for display; the platform decides. */
  readonly expiresAt: number;
  /** The chip kinds (`spark1`, `spark2`, `apex`, …) the request accepts; empty means any. */
  readonly acceptedChips: readonly string[];
  /** `pending` (nobody is answering it) or `claimed` (a chip is being asked); closed requests are not listed. */
  readonly state: ScanRequestState;
}

/** Options of {@link ScanRequestClient.list}. */
export interface ListScanRequestsOptions {
  /**
   * With `etag`: how long the platform may hold the request while nothing changes, 0 to 30 seconds. The call's
   * timeout is this plus the client's timeout.
   */
  readonly waitSec?: number;
  /** The `etag` of the previous list: the platform answers "not modified" until the list changes. */
  readonly etag?: string | undefined;
  /** Cancels the call (`ABORTED`), including a long poll the platform is holding. */
  readonly signal?: AbortSignal;
}

/**
 * The answer of {@link ScanRequestClient.list}.
 *
 * `serverTime` is the platform's clock when it sent the answer (its HTTP `Date` header, ms since the epoch), absent
 * when the header is missing or not an HTTP date. The request times (`expiresAt`, …) are on the platform's clock, and
 * a computer's clock may be minutes off: to show how long a request has left, convert with the difference, for
 * example `expiresAt - serverTime + localNowWhenListReturned`. The header has one-second resolution and is stamped
 * before the answer travels, so the result is good to a second or two, which is enough for display (the platform
 * decides expiry, protocol §3.1). On a long poll it is the time the platform ended the hold, not when it began.
 */
export type ScanRequestList =
  | {
      readonly notModified: false;
      /** The pending and claimed requests, oldest first. */
      readonly requests: readonly PlatformScanRequest[];
      /** Opaque; pass it to the next {@link ScanRequestClient.list}. `undefined` when the platform sent none. */
      readonly etag: string | undefined;
      /** The platform's clock when it answered, ms since the epoch; see {@link ScanRequestList}. */
      readonly serverTime?: number;
    }
  | {
      /** Nothing changed since `etag`. */
      readonly notModified: true;
      /** The etag to send next: the platform's, or the one sent when it repeated none. */
      readonly etag: string | undefined;
      /** The platform's clock when it answered, ms since the epoch; see {@link ScanRequestList}. */
      readonly serverTime?: number;
    };

/** The body of {@link ScanRequestClient.claim}: the chip about to answer, and for scheme 2 its first answer. */
export type ClaimRequest =
  | {
      /** The kind of chip on the reader: `spark1` for scheme 1. */
      readonly chip: VerifiableChip;
      /** The chip's id as the platform knows it, lower-case hex (see `VerificationResult.uid`). */
      readonly uid: string;
      /** Scheme 1: ICODE DNA (Spark 1), TAM1 challenge and response. */
      readonly scheme: 1;
    }
  | {
      /** The kind of chip on the reader: `spark2` or `apex` for scheme 2. */
      readonly chip: VerifiableChip;
      /** The chip's id as the platform knows it, lower-case hex. */
      readonly uid: string;
      /** Scheme 2: AES mutual authentication (NTAG 424 DNA, Apex's Verify applet). */
      readonly scheme: 2;
      /** The 16 bytes the chip answered to AuthenticateEV2First part 1, hex. */
      readonly message: string;
    };

/** What a claim returns: the challenge for the chip, and the claim that the answer must carry. */
export interface ScanRequestClaim {
  /** Opaque single-use secret for {@link ScanRequestClient.answer}. Never log it. */
  readonly claim: string;
  readonly scheme: ChallengeScheme;
  /** What to send to the chip, lower-case hex (scheme 1: ≥ 10 bytes, the IChallenge first; scheme 2: 32 bytes). */
  readonly payload: string;
  /** When the claim stops being answerable, ms since the epoch. */
  readonly expiresAt: number;
}

/** The body of {@link ScanRequestClient.answer}. */
export interface ScanRequestAnswer {
  /** The claim from {@link ScanRequestClient.claim}. */
  readonly claim: string;
  /** The chip's id, lower-case hex. */
  readonly uid: string;
  /** The chip's answer, hex (scheme 2: 32 bytes + `9100`; scheme 1: the whole AUTHENTICATE reply). */
  readonly response: string;
}

/** The platform's confirmation of an answer. */
export interface ScanRequestAnswered {
  /** Always `answered`: the chip's answer verified and the relying party has its result. */
  readonly state: 'answered';
  /** When the platform recorded the answer, ms since the epoch (the platform's clock). */
  readonly answeredAt: number;
}

/** Per-call options. */
export interface ScanRequestCallOptions {
  /** Timeout of each HTTP attempt, in ms. Default: the client's. */
  readonly timeoutMs?: number;
  /** Cancels the call (`ABORTED`); for `answer`, also the retries. */
  readonly signal?: AbortSignal;
}

/** The scan-request API; see {@link createScanRequestClient}. */
export interface ScanRequestClient {
  /** The platform's base URL. */
  readonly baseUrl: URL;
  /** `GET /scan-requests`, long-polling when given an `etag` and `waitSec`. */
  list(options?: ListScanRequestsOptions): Promise<ScanRequestList>;
  /** `POST /scan-requests/{id}/claim`: reserves the request for one chip and returns its challenge. */
  claim(requestId: string, request: ClaimRequest, options?: ScanRequestCallOptions): Promise<ScanRequestClaim>;
  /** `POST /scan-requests/{id}/answer`: submits the chip's answer; idempotent per claim. */
  answer(requestId: string, answer: ScanRequestAnswer, options?: ScanRequestCallOptions): Promise<ScanRequestAnswered>;
  /** `POST /scan-requests/{id}/cancel`: declines the request. */
  cancel(requestId: string, options?: ScanRequestCallOptions): Promise<{ readonly state: 'cancelled' }>;
}

/** Where the client gets its bearer token; an `AssociatedSession` fits. */
export interface AccessTokenSource {
  /** A valid access token; with `forceRefresh`, a new one (the platform just refused the last). */
  accessToken(options?: AccessTokenOptions): Promise<string>;
}

/** Options of {@link createScanRequestClient}. */
export interface ScanRequestClientOptions {
  /**
   * The platform's base URL (the same server as the Auth API); a path prefix is kept. It must be `https:`, or `http:`
   * on this computer only (`localhost`, `127.x.y.z`, `[::1]`): every request carries the bearer token. Anything else
   * fails with `INVALID_ARGUMENT`.
   */
  readonly platformUrl: string | URL;
  /** The associated session that provides access tokens. */
  readonly session: AccessTokenSource;
  /** Timeout of each HTTP attempt in ms (a long poll gets `waitSec` on top). Default 10 s. */
  readonly timeoutMs?: number;
  /** Where debug lines about calls go (never with a token, claim or chip answer). Default: nowhere. */
  readonly logger?: Logger;
  /** Used for every request. Default `globalThis.fetch`. */
  readonly fetch?: FetchLike;
  /** Largest response body accepted. Default 1 MiB. */
  readonly maxResponseBytes?: number;
  /** Pause before the first retry of an ambiguous `answer` failure (doubled for the second). Default 250 ms. */
  readonly answerRetryDelayMs?: number;
}

/** Longest long poll the platform allows. */
export const MAX_SCAN_REQUEST_WAIT_SEC = 30;
/** Retries of an `answer` whose outcome is unknown (network failure, 5xx, timeout). */
export const ANSWER_RETRIES = 2;
/** Longest `purpose` handed out, in characters (code points) with the `…` of a cut; the protocol's own limit. */
export const MAX_PURPOSE_CHARS = 200;
/** Longest relying-party `name` handed out, in characters (code points) with the `…` of a cut. */
export const MAX_RELYING_PARTY_NAME_CHARS = 100;

const STATES: readonly ScanRequestState[] = ['pending', 'claimed', 'answered', 'cancelled', 'expired'];
const CHIPS: readonly VerifiableChip[] = ['spark1', 'spark2', 'apex'];
const REQUEST_ID = /^[A-Za-z0-9_-]{1,128}$/;
/** A listed request's id as the protocol defines it (§3.2): `sr_` and base64url, 128 characters at most in all. */
const LISTED_REQUEST_ID = /^sr_[A-Za-z0-9_-]{1,125}$/;
/** A relying party's id: it lands in the result JWT's `dev_id`, so it is a plain identifier. */
const RELYING_PARTY_ID = /^[A-Za-z0-9._-]{1,64}$/;
/**
 * Removed from relying-party text: every control character (C0, DEL, C1: ESC and CSI start terminal escape
 * sequences) and every bidirectional control (U+061C, U+200E/F, U+202A–E, U+2066–9), which can make a terminal show
 * text in another order than it reads. White-space controls are turned into spaces first, so words stay apart.
 */
const UNPRINTABLE = /[\p{Cc}\p{Bidi_Control}]/gu;
/** IMF-fixdate, the HTTP `Date` format every server must send (RFC 9110 §5.6.7). */
const HTTP_DATE =
  /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/;
const HEX = /^(?:[0-9a-fA-F]{2})+$/;
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})$/;
const ETAG = /^(?:W\/)?"[\x21\x23-\x7e]{0,256}"$/;
const CHIP_KIND = /^[a-z0-9_-]{1,32}$/;
const MAX_CLAIM_CHARS = 16 * 1024;
const MAX_ERROR_BODY_BYTES = 16 * 1024;
const MAX_LISTED_REQUESTS = 1000;

const NETWORK_HINT = 'Check the network connection and the platform URL; Tapline will try again.';
const TIMEOUT_HINT = 'The VivoKey platform is slow or unreachable: check the network, then try again.';
const PROTOCOL_HINT = 'Check that the platform URL points at the VivoKey platform; if it does, please report this.';

type Endpoint = 'list' | 'claim' | 'answer' | 'cancel';

/** One HTTP request of the API. */
interface ApiRequest {
  readonly endpoint: Endpoint;
  readonly method: 'GET' | 'POST';
  readonly url: URL;
  readonly requestId?: string;
  readonly body?: Readonly<Record<string, string | number>>;
  readonly headers?: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
  /** Values that must never appear in an error (the claim). */
  readonly secrets: readonly string[];
}

/** A response the API answered (any status), with its body when there is one. */
interface ApiResponse {
  readonly status: number;
  readonly headers: Headers;
  readonly json: unknown;
}

/**
 * True when `value` can be passed as a scan request id: 1 to 128 letters, digits, `_` or `-`, safe in a URL path.
 * Looser than what {@link ScanRequestClient.list} accepts from the platform (`sr_…`, see {@link PlatformScanRequest}).
 */
export function isScanRequestId(value: unknown): value is string {
  return typeof value === 'string' && REQUEST_ID.test(value);
}

/** Creates a {@link ScanRequestClient} over HTTP. Invalid options fail at once with `INVALID_ARGUMENT`. */
export function createScanRequestClient(options: ScanRequestClientOptions): ScanRequestClient {
  return new HttpScanRequestClient(options);
}

/**
 * {@link ScanRequestClient} over HTTP, with a bearer token from the associated session. Every failure is typed:
 *
 * - 401 `invalid_token` → the token is refreshed once (forced) and the call repeated once; a second 401 →
 *   `PLATFORM_REJECTED` (`details.error: invalid_token`);
 * - 410 → `REQUEST_EXPIRED` (`details.error`, `details.state` when the platform says);
 * - network failure, 5xx, 408, 429 → `PLATFORM_UNAVAILABLE`; other 4xx → `PLATFORM_REJECTED` with the platform's
 *   `error` code in `details.error`;
 * - non-JSON or malformed answers, redirects → `PROTOCOL_ERROR`; deadline → `TIMEOUT`; the signal → `ABORTED`;
 * - the session's own failures (`NOT_ASSOCIATED`, `STORAGE_FAILED`, …) pass through.
 *
 * Retries. `answer` is idempotent per claim: the platform answers a repeat of the identical body with the same 200,
 * and a verification runs at most once per claim. So when an answer's fate is unknown (the connection broke, a 5xx, a
 * timeout), the client sends the identical body again, up to {@link ANSWER_RETRIES} times: a retry can only confirm
 * the first attempt or complete it, never make the chip answer count twice. The Auth API's `/session` is the
 * opposite: its token is single-use and carries no such promise, so it is never retried (see `VivoKeyAuthClient`).
 * `list` and `cancel` are safe to repeat but not retried here (the agent's poll loop repeats `list`); `claim` is not
 * retried (a new claim replaces the earlier one; the caller starts over).
 *
 * Redirects are not followed, so the bearer token is never sent to another address; no token, claim or chip answer
 * ever reaches a log line or an error.
 */
class HttpScanRequestClient implements ScanRequestClient {
  readonly baseUrl: URL;
  readonly #session: AccessTokenSource;
  readonly #fetch: FetchLike;
  readonly #timeoutMs: number;
  readonly #maxBytes: number;
  readonly #retryDelayMs: number;
  readonly #log: Logger;

  constructor(options: ScanRequestClientOptions) {
    this.baseUrl = parseBaseUrl(options.platformUrl);
    if (typeof options.session?.accessToken !== 'function') {
      throw new TaplineError(ErrorCode.InvalidArgument, 'The scan-request client needs an associated session.');
    }
    this.#session = options.session;
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.#timeoutMs = checkTimeout(options.timeoutMs, DEFAULT_PLATFORM_TIMEOUT_MS, 'timeoutMs');
    this.#maxBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    if (!Number.isInteger(this.#maxBytes) || this.#maxBytes <= 0) {
      throw new TaplineError(ErrorCode.InvalidArgument, 'maxResponseBytes must be a positive integer.');
    }
    this.#retryDelayMs = options.answerRetryDelayMs ?? 250;
    if (!Number.isFinite(this.#retryDelayMs) || this.#retryDelayMs < 0) {
      throw new TaplineError(ErrorCode.InvalidArgument, 'answerRetryDelayMs must be a non-negative number.');
    }
    this.#log = (options.logger ?? silentLogger).child({ component: 'scan-requests' });
    // Every request carries the bearer token: in clear text across a network it is anybody's. The rule is the
    // device association's (the issuer), so that the two clients of one association agree.
    if (!isTokenSafeUrl(this.baseUrl, true)) {
      throw new TaplineError(
        ErrorCode.InvalidArgument,
        `The platform URL ${this.baseUrl.origin} uses plain http; Tapline sends access tokens only over https ` +
          '(http is allowed only on this computer: localhost, 127.x.y.z, [::1]).',
        {
          details: { platformUrl: this.baseUrl.origin },
          hint: 'Use the https:// address of the VivoKey platform (--platform or TAPLINE_PLATFORM_URL).',
        },
      );
    }
  }

  /**
   * `GET /scan-requests?wait=<waitSec>` with `If-None-Match: <etag>` when an etag is given. Every request is checked
   * (id, relying party, purpose, times, accepted chips, state) and its texts made safe to print (see
   * {@link PlatformScanRequest}); one malformed request fails the whole list with `PROTOCOL_ERROR`. Both answers carry
   * the platform's clock in `serverTime` when it sent a `Date` header.
   */
  async list(options: ListScanRequestsOptions = {}): Promise<ScanRequestList> {
    const waitSec = options.waitSec ?? 0;
    if (!Number.isInteger(waitSec) || waitSec < 0 || waitSec > MAX_SCAN_REQUEST_WAIT_SEC) {
      throw new TaplineError(
        ErrorCode.InvalidArgument,
        `waitSec must be a whole number of seconds from 0 to ${MAX_SCAN_REQUEST_WAIT_SEC}.`,
        { details: { waitSec } },
      );
    }
    const etag = options.etag;
    if (etag !== undefined && (typeof etag !== 'string' || !ETAG.test(etag))) {
      throw new TaplineError(ErrorCode.InvalidArgument, 'etag must be an entity tag as list() returned it.');
    }
    const url = new URL('scan-requests', this.baseUrl);
    url.searchParams.set('wait', String(waitSec));
    const response = await this.#authorized(
      {
        endpoint: 'list',
        method: 'GET',
        url,
        ...(etag === undefined ? {} : { headers: { 'If-None-Match': etag } }),
        // The platform holds the request up to waitSec before it even starts to answer.
        timeoutMs: this.#timeoutMs + waitSec * 1000,
        secrets: [],
      },
      options.signal,
      [200, 304],
    );
    const received = response.headers.get('etag');
    const nextEtag = received !== null && ETAG.test(received) ? received : undefined;
    const serverTime = httpDate(response.headers.get('date'));
    const clock = serverTime === undefined ? {} : { serverTime };
    if (response.status === 304) return { notModified: true, etag: nextEtag ?? etag, ...clock };
    const body = objectBody('list', response.json);
    const list = body['requests'];
    if (!Array.isArray(list) || list.length > MAX_LISTED_REQUESTS) {
      throw badAnswer('list', 'requests', `must be an array of at most ${MAX_LISTED_REQUESTS} scan requests`);
    }
    const requests = Object.freeze(list.map((item: unknown, index) => parseScanRequest(item, index)));
    return { notModified: false, requests, etag: nextEtag, ...clock };
  }

  /**
   * `POST /scan-requests/{id}/claim`. The answer is checked: the scheme must be the one asked for, the payload at
   * least 10 bytes (scheme 1) or exactly 32 (scheme 2). Not retried: a repeated claim replaces the first.
   */
  async claim(
    requestId: string,
    request: ClaimRequest,
    options: ScanRequestCallOptions = {},
  ): Promise<ScanRequestClaim> {
    const id = checkRequestId(requestId);
    const body = claimBody(request);
    const response = await this.#authorized(
      {
        endpoint: 'claim',
        method: 'POST',
        url: this.#requestUrl(id, 'claim'),
        requestId: id,
        body,
        timeoutMs: checkTimeout(options.timeoutMs, this.#timeoutMs, 'timeoutMs'),
        secrets: [],
      },
      options.signal,
      [200],
    );
    const answer = objectBody('claim', response.json);
    const claim = answer['claim'];
    if (typeof claim !== 'string' || claim === '' || claim.length > MAX_CLAIM_CHARS) {
      throw badAnswer('claim', 'claim', 'must be a non-empty string');
    }
    if (answer['scheme'] !== request.scheme) throw badAnswer('claim', 'scheme', `must be ${request.scheme} as asked`);
    const payload = answer['payload'];
    if (typeof payload !== 'string' || !HEX.test(payload) || payload.length > 1024) {
      throw badAnswer('claim', 'payload', 'must be hex of even length');
    }
    if (request.scheme === 1 && payload.length < 20) {
      throw badAnswer('claim', 'payload', 'must be at least 10 bytes for scheme 1');
    }
    if (request.scheme === 2 && payload.length !== 64) {
      throw badAnswer('claim', 'payload', 'must be exactly 32 bytes for scheme 2');
    }
    return {
      claim,
      scheme: request.scheme,
      payload: payload.toLowerCase(),
      expiresAt: timeField('claim', answer, 'expires_at'),
    };
  }

  /**
   * `POST /scan-requests/{id}/answer`. When the outcome is unknown (network failure, 5xx, 408/429, timeout of one
   * attempt), the identical body is sent again, at most {@link ANSWER_RETRIES} times; see the class documentation for
   * why that is safe. `401 authentication_failed` (the chip's answer did not verify; the request stays pending) and
   * `409 claim_used` are `PLATFORM_REJECTED`.
   */
  async answer(
    requestId: string,
    answer: ScanRequestAnswer,
    options: ScanRequestCallOptions = {},
  ): Promise<ScanRequestAnswered> {
    const id = checkRequestId(requestId);
    const body = answerBody(answer);
    const request: ApiRequest = {
      endpoint: 'answer',
      method: 'POST',
      url: this.#requestUrl(id, 'answer'),
      requestId: id,
      body,
      timeoutMs: checkTimeout(options.timeoutMs, this.#timeoutMs, 'timeoutMs'),
      secrets: [body['claim'] as string, body['response'] as string],
    };
    for (let attempt = 0; ; attempt++) {
      try {
        const response = await this.#authorized(request, options.signal, [200]);
        const confirmation = objectBody('answer', response.json);
        if (confirmation['state'] !== 'answered') throw badAnswer('answer', 'state', 'must be "answered"');
        return { state: 'answered', answeredAt: timeField('answer', confirmation, 'answered_at') };
      } catch (error) {
        if (attempt >= ANSWER_RETRIES || !outcomeUnknown(error) || options.signal?.aborted === true) throw error;
        this.#log.info('answer outcome unknown; sending the identical answer again', {
          requestId: id,
          code: (error as TaplineError).code,
          retry: attempt + 1,
        });
        await pause(this.#retryDelayMs * 2 ** attempt, options.signal);
      }
    }
  }

  /** `POST /scan-requests/{id}/cancel` (no body). */
  async cancel(requestId: string, options: ScanRequestCallOptions = {}): Promise<{ readonly state: 'cancelled' }> {
    const id = checkRequestId(requestId);
    const response = await this.#authorized(
      {
        endpoint: 'cancel',
        method: 'POST',
        url: this.#requestUrl(id, 'cancel'),
        requestId: id,
        timeoutMs: checkTimeout(options.timeoutMs, this.#timeoutMs, 'timeoutMs'),
        secrets: [],
      },
      options.signal,
      [200],
    );
    const body = objectBody('cancel', response.json);
    if (body['state'] !== 'cancelled') throw badAnswer('cancel', 'state', 'must be "cancelled"');
    return { state: 'cancelled' };
  }

  #requestUrl(id: string, action: 'claim' | 'answer' | 'cancel'): URL {
    return new URL(`scan-requests/${encodeURIComponent(id)}/${action}`, this.baseUrl);
  }

  /**
   * Sends `request` with the session's access token; on `401 invalid_token` gets a fresh token (forced refresh) and
   * sends it once more. Any status outside `expected` becomes a typed error.
   */
  async #authorized(
    request: ApiRequest,
    signal: AbortSignal | undefined,
    expected: readonly number[],
  ): Promise<ApiResponse> {
    const tokenOptions = signal === undefined ? {} : { signal };
    let token = await this.#session.accessToken(tokenOptions);
    let response = await this.#send(request, token, signal);
    if (response.status === 401 && bearerError(response.headers) === 'invalid_token') {
      this.#log.debug('access token refused; refreshing once', { endpoint: request.endpoint });
      token = await this.#session.accessToken({ ...tokenOptions, forceRefresh: true });
      response = await this.#send(request, token, signal);
    }
    if (!expected.includes(response.status)) throw statusError(request, response);
    return response;
  }

  /** One HTTP exchange under one deadline; the body of any status is read (capped) and parsed when it is JSON. */
  async #send(request: ApiRequest, token: string, outer: AbortSignal | undefined): Promise<ApiResponse> {
    const secrets = [token, ...request.secrets];
    const what = `${request.method} ${request.url.pathname} at ${this.baseUrl.host}`;
    const started = Date.now();
    try {
      const response = await withCallDeadline(
        { what, timeoutMs: request.timeoutMs, signal: outer, timeoutHint: TIMEOUT_HINT },
        (signal) => this.#exchange(request, token, signal, secrets),
      );
      this.#log.debug('scan-request call', {
        endpoint: request.endpoint,
        requestId: request.requestId,
        status: response.status,
        elapsedMs: Date.now() - started,
      });
      return response;
    } catch (error) {
      const failure = isTaplineError(error)
        ? error
        : new TaplineError(ErrorCode.PlatformUnavailable, `${what} failed unexpectedly.`, {
            cause: sanitizeCause(error, secrets),
            hint: NETWORK_HINT,
          });
      this.#log.debug('scan-request call failed', {
        endpoint: request.endpoint,
        requestId: request.requestId,
        code: failure.code,
        elapsedMs: Date.now() - started,
      });
      throw failure;
    }
  }

  async #exchange(
    request: ApiRequest,
    token: string,
    signal: AbortSignal,
    secrets: readonly string[],
  ): Promise<ApiResponse> {
    const headers: Record<string, string> = {
      Accept: 'application/json',
      Authorization: `Bearer ${token}`,
      ...request.headers,
    };
    if (request.body !== undefined) headers['Content-Type'] = 'application/json';
    let response: Response;
    try {
      response = await this.#fetch(request.url, {
        method: request.method,
        headers,
        ...(request.body === undefined ? {} : { body: JSON.stringify(request.body) }),
        signal,
        redirect: 'manual',
      });
    } catch (cause) {
      throw unreachable(request, this.baseUrl, cause, secrets, 'could not be reached');
    }
    const status = response.status;
    if (status >= 300 && status < 400 && status !== 304) {
      await response.body?.cancel().catch(() => undefined);
      throw new TaplineError(
        ErrorCode.ProtocolError,
        `The VivoKey platform answered ${request.method} ${request.url.pathname} with a redirect (HTTP ${status}); ` +
          'Tapline does not follow redirects, so that the access token is never sent to another address.',
        {
          details: { endpoint: request.endpoint, status },
          hint: 'Use the final address as the platform URL, for example https:// rather than http://.',
        },
      );
    }
    const ok = status >= 200 && status < 300;
    let bytes: Uint8Array;
    try {
      bytes = await readBodyLimited(response, signal, ok ? this.#maxBytes : MAX_ERROR_BODY_BYTES);
    } catch (cause) {
      if (cause instanceof BodyTooLargeError) {
        if (!ok) return { status, headers: response.headers, json: undefined };
        throw new TaplineError(
          ErrorCode.ProtocolError,
          `The VivoKey platform answered ${request.endpoint} with a body larger than ${this.#maxBytes} bytes.`,
          { cause, details: { endpoint: request.endpoint, status, maxBytes: this.#maxBytes }, hint: PROTOCOL_HINT },
        );
      }
      throw unreachable(request, this.baseUrl, cause, secrets, 'broke off while sending its answer');
    }
    if (status === 304 || bytes.byteLength === 0) {
      if (ok && status !== 204) {
        throw new TaplineError(
          ErrorCode.ProtocolError,
          `The VivoKey platform answered ${request.endpoint} with an empty body.`,
          {
            details: { endpoint: request.endpoint, status },
            hint: PROTOCOL_HINT,
          },
        );
      }
      return { status, headers: response.headers, json: undefined };
    }
    let json: unknown;
    try {
      json = parseJsonBytes(bytes);
    } catch (cause) {
      // An error page need not be JSON; a success must be.
      if (!ok) return { status, headers: response.headers, json: undefined };
      throw new TaplineError(
        ErrorCode.ProtocolError,
        `The VivoKey platform answered ${request.endpoint} with a body that is not JSON.`,
        {
          cause: sanitizeCause(cause, secrets),
          details: { endpoint: request.endpoint, status, bytes: bytes.byteLength },
          hint: PROTOCOL_HINT,
        },
      );
    }
    return { status, headers: response.headers, json: ok ? json : scrubErrorBody(json, secrets) };
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------------

/** True for a failure after which the platform may or may not have processed the request. */
function outcomeUnknown(error: unknown): boolean {
  return isTaplineError(error) && (error.code === ErrorCode.PlatformUnavailable || error.code === ErrorCode.Timeout);
}

/** The `error` parameter of a `WWW-Authenticate: Bearer …` challenge. */
function bearerError(headers: Headers): string | undefined {
  const challenge = headers.get('www-authenticate');
  if (challenge === null || !/^\s*bearer\b/i.test(challenge)) return undefined;
  return /\berror="([^"]*)"/i.exec(challenge)?.[1];
}

/** The platform's `{error, error_description, state}`, kept only when the pieces are short and token-free. */
function scrubErrorBody(json: unknown, secrets: readonly string[]): unknown {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return undefined;
  const record = json as Record<string, unknown>;
  const error = record['error'];
  const description = record['error_description'];
  const state = record['state'];
  return {
    ...(typeof error === 'string' && /^[a-z0-9_.-]{1,64}$/i.test(error) ? { error } : {}),
    ...(typeof description === 'string' ? { error_description: flatten(scrubText(description, secrets)) } : {}),
    ...(typeof state === 'string' && (STATES as readonly string[]).includes(state) ? { state } : {}),
  };
}

function flatten(text: string): string {
  const flat = text
    .replace(/\p{Cc}+/gu, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  return flat.length > 200 ? `${flat.slice(0, 197)}...` : flat;
}

const ERROR_HINTS: Readonly<Record<string, string>> = {
  not_found: 'The scan request no longer exists; refresh the list.',
  chip_not_accepted: 'This request does not accept this kind of chip; tap one of the chips it lists.',
  chip_not_owned: 'Tap a chip enrolled to the VivoKey account this computer is associated with.',
  claim_invalid: 'The claim expired or belongs to another request or chip: tap the chip again.',
  claim_used: 'This claim was already answered differently: tap the chip again.',
  authentication_failed:
    'The chip did not prove it holds its VivoKey key: it may not be a genuine VivoKey chip, or it moved. The request is still pending: tap again.',
  insufficient_scope: `This association does not include scan requests. ${LOGIN_HINT}`,
  invalid_token: `The platform does not accept this computer's access token. ${LOGIN_HINT}`,
};

function statusError(request: ApiRequest, response: ApiResponse): TaplineError {
  const { status } = response;
  const body = (response.json ?? {}) as { error?: string; error_description?: string; state?: string };
  const challenge = status === 401 || status === 403 ? bearerError(response.headers) : undefined;
  const error = body.error ?? challenge;
  const said =
    body.error_description === undefined || body.error_description === '' ? '' : `: ${body.error_description}`;
  const on = `${request.endpoint}${request.requestId === undefined ? '' : ` of scan request ${request.requestId}`}`;
  const details = {
    endpoint: request.endpoint,
    status,
    ...(request.requestId === undefined ? {} : { requestId: request.requestId }),
    ...(error === undefined ? {} : { error }),
    ...(body.state === undefined ? {} : { state: body.state }),
  };
  if (status === 410) {
    return new TaplineError(
      ErrorCode.RequestExpired,
      `The scan request is closed${body.state === undefined ? '' : ` (${body.state})`}; ${request.endpoint} is no longer possible${said}.`,
      { details, hint: 'The request was answered, cancelled or expired; refresh the list.' },
    );
  }
  if (status >= 500 || status === 408 || status === 429) {
    const retryAfter = response.headers.get('retry-after');
    return new TaplineError(
      ErrorCode.PlatformUnavailable,
      `The VivoKey platform could not answer ${on} (HTTP ${status})${said}.`,
      {
        details: {
          ...details,
          ...(retryAfter !== null && /^\d{1,6}$/.test(retryAfter) ? { retryAfterSec: Number(retryAfter) } : {}),
        },
        hint: 'The platform is having trouble: try again in a moment.',
      },
    );
  }
  return new TaplineError(
    ErrorCode.PlatformRejected,
    `The VivoKey platform rejected ${on} (HTTP ${status}${error === undefined ? '' : `, ${error}`})${said}.`,
    {
      details,
      hint:
        (error === undefined ? undefined : ERROR_HINTS[error]) ??
        (status === 404 || status === 405
          ? 'Check the platform URL: it should be the VivoKey platform root.'
          : PROTOCOL_HINT),
    },
  );
}

function unreachable(
  request: ApiRequest,
  baseUrl: URL,
  cause: unknown,
  secrets: readonly string[],
  what: string,
): TaplineError {
  const code = networkErrorCode(cause);
  return new TaplineError(
    ErrorCode.PlatformUnavailable,
    `The VivoKey platform at ${baseUrl.host} ${what} (${request.endpoint}${code === undefined ? '' : `, ${code}`}).`,
    {
      cause: sanitizeCause(cause, secrets),
      details: {
        endpoint: request.endpoint,
        host: baseUrl.host,
        ...(request.requestId === undefined ? {} : { requestId: request.requestId }),
        ...(code === undefined ? {} : { networkError: code }),
      },
      hint: NETWORK_HINT,
    },
  );
}

function badAnswer(endpoint: Endpoint, field: string, problem: string): TaplineError {
  // The value stays out: it may be a claim.
  return new TaplineError(
    ErrorCode.ProtocolError,
    `The VivoKey platform answered ${endpoint} with an invalid ${field === '(body)' ? 'body' : `"${field}"`}: it ${problem}.`,
    { details: { endpoint, field }, hint: PROTOCOL_HINT },
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------------------------

function invalidArgument(field: string, problem: string): TaplineError {
  return new TaplineError(ErrorCode.InvalidArgument, `Invalid scan-request call: "${field}" ${problem}.`, {
    details: { field },
  });
}

function checkRequestId(value: unknown): string {
  if (!isScanRequestId(value)) {
    throw invalidArgument('requestId', 'must be 1 to 128 letters, digits, "_" or "-"');
  }
  return value;
}

function hexArgument(field: string, value: unknown, minBytes: number, maxBytes: number): string {
  if (typeof value !== 'string' || !HEX.test(value) || value.length < minBytes * 2 || value.length > maxBytes * 2) {
    const size = minBytes === maxBytes ? `${minBytes}` : `${minBytes} to ${maxBytes}`;
    throw invalidArgument(field, `must be ${size} bytes of hex`);
  }
  return value.toLowerCase();
}

function claimBody(request: ClaimRequest): Readonly<Record<string, string | number>> {
  if (typeof request !== 'object' || request === null) throw invalidArgument('(body)', 'must be an object');
  if (!(CHIPS as readonly unknown[]).includes(request.chip))
    throw invalidArgument('chip', `must be ${CHIPS.join(', ')}`);
  const uid = hexArgument('uid', request.uid, 1, 32);
  // Built field by field so that nothing a caller adds at run time reaches the wire.
  if (request.scheme === 1) return { chip: request.chip, uid, scheme: 1 };
  if (request.scheme === 2) {
    return { chip: request.chip, uid, scheme: 2, message: hexArgument('message', request.message, 16, 16) };
  }
  throw invalidArgument('scheme', 'must be 1 (Spark 1) or 2 (Spark 2, Apex)');
}

function answerBody(answer: ScanRequestAnswer): Readonly<Record<string, string>> {
  if (typeof answer !== 'object' || answer === null) throw invalidArgument('(body)', 'must be an object');
  const claim = answer.claim;
  if (typeof claim !== 'string' || claim === '' || claim.length > MAX_CLAIM_CHARS) {
    throw invalidArgument('claim', 'must be the claim returned by claim()');
  }
  return {
    claim,
    uid: hexArgument('uid', answer.uid, 1, 32),
    response: hexArgument('response', answer.response, 1, 512),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------------------------------

function objectBody(endpoint: Endpoint, json: unknown): Record<string, unknown> {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw badAnswer(endpoint, '(body)', 'must be a JSON object');
  }
  return json as Record<string, unknown>;
}

/** An RFC 3339 date-time field as ms since the epoch; `where` prefixes the field's name in the error. */
function timeField(endpoint: Endpoint, record: Record<string, unknown>, field: string, where?: string): number {
  const value = record[field];
  const ms = typeof value === 'string' && RFC3339.test(value) ? Date.parse(value) : Number.NaN;
  if (!Number.isFinite(ms)) {
    throw badAnswer(endpoint, where === undefined ? field : `${where}.${field}`, 'must be an RFC 3339 date-time');
  }
  return ms;
}

/** The milliseconds of an HTTP `Date` header, or `undefined` when there is none or it is not an IMF-fixdate. */
function httpDate(value: string | null): number | undefined {
  if (value === null || !HTTP_DATE.test(value)) return undefined;
  const ms = Date.parse(value);
  return Number.isFinite(ms) ? ms : undefined;
}

/**
 * Relying-party text made safe to print as one line of plain text: controls and bidi controls out (see
 * {@link UNPRINTABLE}), white space collapsed, at most `maxChars` code points (a cut ends in `…`; code points rather
 * than UTF-16 units, so that a cut never splits a surrogate pair into something unprintable).
 */
function displayText(text: string, maxChars: number): string {
  const clean = text
    .replace(/[\t\n\v\f\r\u0085]/g, ' ')
    .replace(UNPRINTABLE, '')
    .replace(/\s+/g, ' ')
    .trim();
  const chars = Array.from(clean);
  if (chars.length <= maxChars) return clean;
  return `${chars
    .slice(0, maxChars - 1)
    .join('')
    .trimEnd()}…`;
}

/** A relying-party text field, made safe to print; `allowEmpty` false also refuses one that is empty once cleaned. */
function textField(
  record: Record<string, unknown>,
  field: string,
  where: string,
  maxChars: number,
  allowEmpty: boolean,
): string {
  const value = record[field];
  const text = typeof value === 'string' ? displayText(value, maxChars) : undefined;
  if (text === undefined || (!allowEmpty && text === '')) {
    throw badAnswer('list', `${where}.${field}`, `must be a ${allowEmpty ? '' : 'non-empty '}string of printable text`);
  }
  return text;
}

function parseScanRequest(item: unknown, index: number): PlatformScanRequest {
  const where = `requests[${index}]`;
  if (typeof item !== 'object' || item === null || Array.isArray(item)) {
    throw badAnswer('list', where, 'must be a JSON object');
  }
  const record = item as Record<string, unknown>;
  const id = record['id'];
  if (typeof id !== 'string' || !LISTED_REQUEST_ID.test(id)) {
    throw badAnswer('list', `${where}.id`, 'must be "sr_" followed by base64url characters, 128 at most in all');
  }
  const party = record['relying_party'];
  if (typeof party !== 'object' || party === null || Array.isArray(party)) {
    throw badAnswer('list', `${where}.relying_party`, 'must be an object with id and name');
  }
  const partyId = (party as Record<string, unknown>)['id'];
  if (typeof partyId !== 'string' || !RELYING_PARTY_ID.test(partyId)) {
    // An id is matched, never cleaned: two relying parties must not end up with the same id after cleaning.
    throw badAnswer('list', `${where}.relying_party.id`, 'must be 1 to 64 letters, digits, ".", "_" or "-"');
  }
  const relyingParty = Object.freeze({
    id: partyId,
    name: textField(
      party as Record<string, unknown>,
      'name',
      `${where}.relying_party`,
      MAX_RELYING_PARTY_NAME_CHARS,
      false,
    ),
  });
  const chips = record['accepted_chips'] ?? [];
  if (!Array.isArray(chips) || chips.length > 16 || chips.some((c) => typeof c !== 'string' || !CHIP_KIND.test(c))) {
    throw badAnswer('list', `${where}.accepted_chips`, 'must be an array of chip kinds');
  }
  const state = record['state'];
  if (typeof state !== 'string' || !(STATES as readonly string[]).includes(state)) {
    throw badAnswer('list', `${where}.state`, `must be one of ${STATES.join(', ')}`);
  }
  return Object.freeze({
    id,
    relyingParty,
    purpose: textField(record, 'purpose', where, MAX_PURPOSE_CHARS, true),
    createdAt: timeField('list', record, 'created_at', where),
    expiresAt: timeField('list', record, 'expires_at', where),
    acceptedChips: Object.freeze([...(chips as string[])]),
    state: state as ScanRequestState,
  });
}

/** Waits before a retry; the caller's signal ends the wait with `ABORTED`. */
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (signal?.aborted) return Promise.reject(abortError('The answer', signal.reason));
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortError('The answer', signal?.reason));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
