/**
 * HTTP plumbing shared by the platform client and the JWKS fetcher: one deadline over headers and body, a body size
 * cap, and the scrubbing that keeps secrets out of error messages and causes.
 *
 * @packageDocumentation
 */
import { ErrorCode, TaplineError, abortError, isTaplineError } from '../model/errors.js';

/**
 * The subset of WHATWG `fetch` Tapline uses. `globalThis.fetch` fits; tests and proxies may pass their own.
 * The implementation must honour `init.signal` for the connection; the body is read under the same signal.
 */
export type FetchLike = (input: string | URL, init: RequestInit) => Promise<Response>;

/** What a deadline is for, and the hint a `TIMEOUT` carries. */
export interface CallDeadline {
  /** For the error message: "POST /challenge to auth.vivokey.com". */
  readonly what: string;
  readonly timeoutMs: number;
  readonly signal?: AbortSignal | undefined;
  readonly timeoutHint: string;
}

/**
 * Runs `run` with a signal that fires on timeout or when `deadline.signal` aborts, and settles as soon as either
 * happens even if `run` ignores the signal. Timeout → `TIMEOUT`; caller abort → `ABORTED` (or the caller's Tapline
 * reason, such as `TAG_LOST`).
 */
export async function withCallDeadline<T>(
  deadline: CallDeadline,
  run: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const { what, timeoutMs, signal: outer } = deadline;
  if (outer?.aborted) throw abortError(what, outer.reason);
  const timer = new AbortController();
  // A cleared setTimeout rather than AbortSignal.timeout: the timer must not outlive a call that already finished.
  const handle = setTimeout(() => timer.abort(), timeoutMs);
  const signal = outer ? AbortSignal.any([outer, timer.signal]) : timer.signal;
  const failure = (cause?: unknown): TaplineError =>
    outer?.aborted
      ? abortError(what, outer.reason)
      : new TaplineError(ErrorCode.Timeout, `${what} did not finish within ${timeoutMs} ms.`, {
          cause,
          details: { timeoutMs },
          hint: deadline.timeoutHint,
        });
  let onAbort: (() => void) | undefined;
  const stopped = new Promise<never>((_, reject) => {
    onAbort = () => reject(failure());
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([run(signal), stopped]);
  } catch (error) {
    // The operation may notice the abort first (fetch rejecting with AbortError): report it as what it is.
    if (signal.aborted && !isDeadlineError(error)) throw failure(error);
    throw error;
  } finally {
    clearTimeout(handle);
    if (onAbort) signal.removeEventListener('abort', onAbort);
    stopped.catch(() => undefined);
  }
}

function isDeadlineError(error: unknown): boolean {
  return isTaplineError(error) && (error.code === ErrorCode.Timeout || error.code === ErrorCode.Aborted);
}

/** Thrown by {@link readBodyLimited} when a body is larger than allowed; callers map it to their own error. */
export class BodyTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`The response body is larger than ${limit} bytes.`);
    this.name = 'BodyTooLargeError';
  }
}

/**
 * Reads a response body into memory, refusing more than `maxBytes` (declared or actual), and cancelling the stream
 * when `signal` aborts so a trickling body cannot hold the socket past the deadline.
 */
export async function readBodyLimited(response: Response, signal: AbortSignal, maxBytes: number): Promise<Uint8Array> {
  const declared = Number(response.headers.get('content-length') ?? Number.NaN);
  const body = response.body;
  if (Number.isFinite(declared) && declared > maxBytes) {
    await body?.cancel().catch(() => undefined);
    throw new BodyTooLargeError(maxBytes);
  }
  if (!body) return new Uint8Array(0);
  if (signal.aborted) {
    await body.cancel().catch(() => undefined);
    throw new Error('The response body was not read: the call was already aborted.', { cause: signal.reason });
  }
  const reader = (body as ReadableStream<Uint8Array>).getReader();
  const onAbort = (): void => void reader.cancel(signal.reason).catch(() => undefined);
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    const chunks: Uint8Array[] = [];
    let total = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) {
        await reader.cancel().catch(() => undefined);
        throw new BodyTooLargeError(maxBytes);
      }
      chunks.push(value);
    }
    const out = new Uint8Array(total);
    let offset = 0;
    for (const chunk of chunks) {
      out.set(chunk, offset);
      offset += chunk.byteLength;
    }
    return out;
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

/** The first system error code in a cause chain (`ECONNREFUSED`, `ENOTFOUND`, `UND_ERR_SOCKET`, …), if any. */
export function networkErrorCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 8 && typeof current === 'object' && current !== null; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && /^[A-Z][A-Z0-9_]{2,40}$/.test(code)) return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

const REDACTED = '[redacted]';
// A JWT's header always starts with `{"`, which base64url-encodes to `eyJ`.
const JWT_LIKE = /eyJ[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*){1,2}/g;
// Opaque tokens and keys are long unbroken runs; ordinary words, hostnames and error codes are not.
const LONG_RUN = /[A-Za-z0-9_+/=-]{24,}/g;

/** Replaces every known secret, and anything that looks like a token, in `text`. */
export function scrubText(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) {
    if (secret !== '') out = out.split(secret).join(REDACTED);
  }
  return out.replace(JWT_LIKE, REDACTED).replace(LONG_RUN, REDACTED);
}

/**
 * Returns `cause` unchanged when no message in its chain carries a secret or token-like text, otherwise a copy of the
 * chain with scrubbed messages: causes are printed by `--json` and must be as safe as the message itself.
 */
export function sanitizeCause(cause: unknown, secrets: readonly string[], depth = 0): unknown {
  if (!(cause instanceof Error) || depth > 8) return cause;
  const message = scrubText(cause.message, secrets);
  const inner = sanitizeCause(cause.cause, secrets, depth + 1);
  if (message === cause.message && inner === cause.cause) return cause;
  const copy = new Error(message, inner === undefined ? undefined : { cause: inner });
  copy.name = cause.name;
  const code = (cause as { code?: unknown }).code;
  if (typeof code === 'string') Object.defineProperty(copy, 'code', { value: code, enumerable: true });
  return copy;
}

const MAX_TIMER_MS = 2_147_483_647;

/** Validates a timeout option: a positive, finite number of milliseconds. */
export function checkTimeout(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  // setTimeout fires at once for anything above 2^31 - 1 ms, which would turn a long timeout into none.
  if (!Number.isFinite(value) || value <= 0 || value > MAX_TIMER_MS) {
    throw new TaplineError(ErrorCode.InvalidArgument, `${name} must be between 1 and ${MAX_TIMER_MS} milliseconds.`, {
      details: { [name]: value },
    });
  }
  return value;
}

/**
 * Decodes UTF-8 JSON. On failure throws a `SyntaxError` whose message has the quoted excerpts V8 includes removed:
 * they are bytes of a response that may carry a token.
 */
export function parseJsonBytes(bytes: Uint8Array): unknown {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (error) {
    throw new SyntaxError('The body is not valid UTF-8.', { cause: error });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    // eslint-disable-next-line preserve-caught-error -- the original quotes the body, which may carry a token
    throw new SyntaxError(message.replace(/"(?:[^"\\]|\\.)*"?|'[^']*'/g, '…'));
  }
}

/**
 * Parses a platform base URL: http or https, no credentials, query or fragment (they would be copied into every request
 * URL and every log line that names it), the path ending in `/` so that endpoints resolve beneath it. Fails with
 * `INVALID_ARGUMENT`.
 */
export function parseBaseUrl(value: string | URL): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch (cause) {
    throw new TaplineError(ErrorCode.InvalidArgument, 'The platform URL is not a valid URL.', {
      cause,
      hint: 'Pass an absolute URL such as https://auth.vivokey.com (--platform).',
    });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new TaplineError(ErrorCode.InvalidArgument, 'The platform URL must use https:// (or http:// for testing).', {
      details: { protocol: url.protocol },
    });
  }
  if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') {
    // Credentials or a query would be copied into every request URL and every log line that names it.
    throw new TaplineError(
      ErrorCode.InvalidArgument,
      'The platform URL must not carry credentials, a query or a fragment; pass the API key separately.',
    );
  }
  const base = new URL(url.href);
  if (!base.pathname.endsWith('/')) base.pathname = `${base.pathname}/`;
  return base;
}

/** True for `localhost`, `127.x.y.z` and `[::1]`: addresses that never leave this computer. */
export function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

/**
 * True when a bearer token may be sent to `url`: `https:`, or, when `allowLoopbackHttp`, plain `http:` to an address
 * that never leaves this computer ({@link isLoopback}). The one rule for every client that sends tokens (the OpenID
 * Provider's endpoints, the scan-request API), so that they cannot drift apart.
 */
export function isTokenSafeUrl(url: URL, allowLoopbackHttp: boolean): boolean {
  if (url.protocol === 'https:') return true;
  return url.protocol === 'http:' && allowLoopbackHttp && isLoopback(url.hostname);
}
