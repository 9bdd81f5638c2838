import { setTimeout as delay } from 'node:timers/promises';
import { ReplaySubject, type Observable } from 'rxjs';
import {
  ErrorCode,
  backoffDelay,
  toTaplineError,
  type BackoffOptions,
  type Logger,
  type PlatformScanRequest,
  type ScanRequest,
  type ScanRequestClient,
  type ScanRequestSource,
  type TaplineError,
} from '@tapline/core';

/** Between polls when the platform gives no etag (so cannot hold the poll): 1–2 s. */
const UNTAGGED_POLL_INTERVAL_MS = 1000;

/** The longest Retry-After honoured: a platform asking for more is still asked again after five minutes. */
const MAX_RETRY_AFTER_SEC = 300;

/** Options of {@link PlatformRequestSource}. */
export interface PlatformRequestSourceOptions {
  /** The platform's scan-request endpoints, already associated. */
  readonly client: ScanRequestClient;
  readonly logger: Logger;
  /** Seconds the platform may hold a long poll. Default 25 (the protocol allows up to 30). */
  readonly waitSec?: number;
  /**
   * Delays between failed polls: doubling with jitter, so that a fleet of agents does not hammer a platform that
   * is coming back. Default 1 s doubling to 30 s.
   */
  readonly backoff?: BackoffOptions;
  /**
   * Delay after the platform said the client is no longer associated (`NOT_ASSOCIATED`): the agent keeps running
   * and picks up a new `tapline login` by itself. Default 30 s.
   */
  readonly notAssociatedRetryMs?: number;
  /**
   * Called when the platform becomes reachable or unreachable, or fails differently than before (not on every
   * retry), with the delay before the next attempt after a failure.
   */
  readonly onReachability?: (reachability: PlatformReachability, retryInMs?: number) => void;
}

/** Whether the platform answered lately, for `tapline agent status`. */
export interface PlatformReachability {
  /** True after a successful poll, false after a failed one (and before the first). */
  readonly reachable: boolean;
  /** Epoch milliseconds of the last successful poll. */
  readonly lastContactAt?: number;
  /** The last failure, cleared by a success. */
  readonly lastError?: TaplineError;
}

/**
 * Pending scan requests from the platform's long poll (`GET /scan-requests?wait=…` with `If-None-Match`), as a
 * {@link ScanRequestSource} for core's pipeline.
 *
 * Nothing is emitted before the first successful poll, so that "no request pending" is never claimed before the
 * platform was asked. Failures (network, 5xx, resets) are retried with backoff and jitter for as long as the agent
 * runs; the last good list stays offered meanwhile, because a request the platform can no longer be reached for
 * fails at its claim anyway, with a clear error, and is still pending when the platform is back.
 */
export class PlatformRequestSource implements ScanRequestSource {
  readonly pending$: Observable<readonly ScanRequest[]>;
  readonly #subject = new ReplaySubject<readonly ScanRequest[]>(1);
  readonly #options: PlatformRequestSourceOptions;
  readonly #stopped = new AbortController();
  /** Aborts the poll or the backoff sleep in progress, so that {@link PlatformRequestSource.refresh} polls at once. */
  #wake = new AbortController();
  #requests: readonly PlatformScanRequest[] = [];
  /** Requests answered here that the platform may still list for a moment; never offered again. */
  readonly #answered = new Set<string>();
  #etag: string | undefined;
  #reachability: PlatformReachability = { reachable: false };
  /** The platform's clock minus ours, from the last listing's `Date` header (to about a second). */
  #serverOffsetMs = 0;
  #listed = false;
  #running: Promise<void> | undefined;

  constructor(options: PlatformRequestSourceOptions) {
    this.#options = options;
    this.pending$ = this.#subject.asObservable();
  }

  /** The requests as the platform last listed them, answered ones left out. */
  get requests(): readonly PlatformScanRequest[] {
    return this.#requests.filter((r) => !this.#answered.has(r.id));
  }

  /** The platform's clock minus this machine's, from the last listing (0 before one); to about a second. */
  get serverOffsetMs(): number {
    return this.#serverOffsetMs;
  }

  get reachability(): PlatformReachability {
    return this.#reachability;
  }

  /** True once the platform answered a first poll. */
  get listed(): boolean {
    return this.#listed;
  }

  /** Starts polling; idempotent. */
  start(): void {
    // The loop catches what it expects; anything else is logged rather than left as an unhandled rejection.
    this.#running ??= this.#loop().catch((error: unknown) => {
      this.#options.logger.error('the scan-request poll loop stopped', { error: toTaplineError(error) });
    });
  }

  /** Polls again now instead of waiting for the platform's long poll to end (after an answer, say). */
  refresh(): void {
    this.#wake.abort();
  }

  /** Stops offering `id` at once (it was answered); the next poll confirms it. */
  forget(id: string): void {
    this.#answered.add(id);
    this.#publish();
  }

  /** Stops polling and completes `pending$`. Resolves when the poll in progress has unwound. */
  async stop(): Promise<void> {
    this.#stopped.abort();
    this.#wake.abort();
    await this.#running;
    this.#subject.complete();
  }

  async #loop(): Promise<void> {
    const { client, logger } = this.#options;
    const waitSec = this.#options.waitSec ?? 25;
    let failures = 0;
    while (!this.#stopped.signal.aborted) {
      const wake = this.#wake.signal.aborted ? (this.#wake = new AbortController()) : this.#wake;
      try {
        const listing = await client.list({
          // The first poll returns at once: the agent must know what is pending before it can say "idle".
          waitSec: this.#listed ? waitSec : 0,
          ...(this.#etag === undefined ? {} : { etag: this.#etag }),
          signal: AbortSignal.any([wake.signal, this.#stopped.signal]),
        });
        failures = 0;
        // "Reachable again" only after a failure: the first success is no news.
        const recovered = this.#reachability.lastError !== undefined;
        this.#reachability = { reachable: true, lastContactAt: Date.now() };
        if (recovered) this.#report(this.#reachability);
        this.#etag = listing.etag;
        // The platform's clock decides expiry; its `Date` header lets the pipeline's timers run on ours.
        if (listing.serverTime !== undefined) this.#serverOffsetMs = listing.serverTime - Date.now();
        if ('requests' in listing) {
          this.#requests = listing.requests;
          const listed = new Set(listing.requests.map((r) => r.id));
          for (const id of this.#answered) if (!listed.has(id)) this.#answered.delete(id);
        }
        this.#listed = true;
        this.#publish();
        // Without an etag the platform cannot hold the next poll: pace it, or it would run flat out.
        if (this.#etag === undefined) {
          await delay(UNTAGGED_POLL_INTERVAL_MS * (1 + Math.random()), undefined, {
            signal: AbortSignal.any([wake.signal, this.#stopped.signal]),
          }).catch(() => undefined);
        }
      } catch (error) {
        if (this.#stopped.signal.aborted) break;
        // A refresh aborted the poll: poll again at once.
        if (wake.signal.aborted) continue;
        const failure = toTaplineError(error);
        failures += 1;
        const before = this.#reachability;
        this.#reachability = { ...before, reachable: false, lastError: failure };
        // A platform that says when to come back (429/503 with Retry-After) is taken at its word, at the least.
        const retryAfterSec = failure.details['retryAfterSec'];
        const askedMs = typeof retryAfterSec === 'number' ? Math.min(retryAfterSec, MAX_RETRY_AFTER_SEC) * 1000 : 0;
        const delayMs =
          failure.code === ErrorCode.NotAssociated
            ? (this.#options.notAssociatedRetryMs ?? 30_000)
            : Math.max(backoffDelay(failures, this.#options.backoff), askedMs);
        if (before.reachable || before.lastError?.code !== failure.code) {
          this.#report(this.#reachability, Math.round(delayMs));
        }
        logger.debug('polling the platform for scan requests failed; retrying', {
          error: failure,
          retryInMs: Math.round(delayMs),
        });
        // Woken early by refresh() or stop(); either way the loop looks again.
        await delay(delayMs, undefined, { signal: AbortSignal.any([wake.signal, this.#stopped.signal]) }).catch(
          () => undefined,
        );
      }
    }
  }

  /** Tells the owner about a reachability change; a failing callback must not stop the polling. */
  #report(reachability: PlatformReachability, retryInMs?: number): void {
    try {
      this.#options.onReachability?.(reachability, retryInMs);
    } catch (error) {
      this.#options.logger.warn('a reachability listener failed', { error: toTaplineError(error) });
    }
  }

  #publish(): void {
    if (!this.#listed || this.#stopped.signal.aborted) return;
    const offset = this.#serverOffsetMs;
    this.#subject.next(this.requests.map((request) => toPipelineRequest(request, offset)));
  }
}

/**
 * The pipeline's view of a platform request: the same fields, with its times moved from the platform's clock to
 * ours (`serverOffsetMs`: the platform's clock minus ours), so that a skewed clock here neither hides a live request
 * nor offers an expired one.
 */
export function toPipelineRequest(request: PlatformScanRequest, serverOffsetMs = 0): ScanRequest {
  return {
    id: request.id,
    ...(request.purpose === undefined ? {} : { purpose: request.purpose }),
    ...(request.relyingParty === undefined
      ? {}
      : { relyingParty: request.relyingParty.name ?? request.relyingParty.id }),
    ...(request.createdAt === undefined ? {} : { createdAt: request.createdAt - serverOffsetMs }),
    ...(request.expiresAt === undefined ? {} : { expiresAt: request.expiresAt - serverOffsetMs }),
    ...(request.acceptedChips === undefined ? {} : { acceptedChips: request.acceptedChips }),
  };
}
