import {
  NEVER,
  Observable,
  ReplaySubject,
  asyncScheduler,
  catchError,
  defer,
  finalize,
  map,
  mergeMap,
  of,
  race,
  take,
  tap,
  throwIfEmpty,
  timer,
  type ObservableInput,
  type SchedulerLike,
  type Subscription,
} from 'rxjs';
import { ErrorCode, TaplineError, abortError, tagLostError, timeoutError, toTaplineError } from '../model/errors.js';
import type { Tag } from '../model/tag.js';
import type { TagEvent } from './reader-manager.js';

/** A request, from the platform or another relying party, to scan a tag. */
export interface ScanRequest {
  /** Unique id of the request; picks on `choices$` name it. */
  readonly id: string;
  /** What the scan is for, to show to the person holding the tag. */
  readonly purpose?: string;
  /** Who asked for the scan. */
  readonly relyingParty?: string;
  /** When the request was made, in milliseconds of the pipeline's scheduler clock. */
  readonly createdAt?: number;
  /** When the request stops being answerable, in milliseconds of the pipeline's scheduler clock. */
  readonly expiresAt?: number;
  /**
   * The chip classes (see `TagIdentification.chip`) the request can be answered with. Absent or empty: any chip.
   */
  readonly acceptedChips?: readonly string[];
}

/** Where pending scan requests come from (the platform's long poll, a local queue, a test). */
export interface ScanRequestSource {
  /**
   * The pending requests. Every emission is the complete current list, not a delta, so that the pipeline never has
   * to reconcile; the order is the order in which the requests are offered for a choice.
   */
  readonly pending$: Observable<readonly ScanRequest[]>;
}

/** What a {@link ScanHandler} is given for one dialogue. */
export interface ScanDialogueContext {
  /** The request being answered. */
  readonly request: ScanRequest;
  /** The tag that was tapped. */
  readonly tag: Tag;
  /**
   * Fires when the dialogue is over for any reason: removal (reason `TAG_LOST`), timeout (`TIMEOUT`), expiry
   * (`REQUEST_EXPIRED`), unsubscription (`ABORTED`), or after the result was taken. Pass it to every exchange.
   */
  readonly signal: AbortSignal;
  /**
   * Says that the chip has given its last answer and may leave: from then on a removal no longer fails the
   * dialogue, and neither do the dialogue timeout and the request's expiry, so that submitting the answer (which
   * has deadlines of its own) is never cut off by a person lifting the implant. `signal` still fires on
   * unsubscription. Idempotent.
   */
  readonly release: () => void;
}

/**
 * The dialogue with the tapped tag for one request. Its first value is the result; the pipeline then unsubscribes.
 * Completing without a value, throwing or erroring fails the dialogue.
 */
export type ScanHandler<R> = (context: ScanDialogueContext) => ObservableInput<R>;

/** Default of {@link ScanPipelineOptions.choiceTimeoutMs}: one minute. */
export const DEFAULT_CHOICE_TIMEOUT_MS = 60_000;

/** Options of {@link runScanRequests}. */
export interface ScanPipelineOptions<R> {
  /** The pending requests. */
  readonly source: ScanRequestSource;
  /** Tag arrivals and removals, usually `ReaderManager.tags$`. */
  readonly tags$: Observable<TagEvent>;
  /** Ids of requests the person picked when several are pending; each pick applies to the next tap only. */
  readonly choices$?: Observable<string>;
  /** Runs the dialogue for one request with one tag. */
  readonly handler: ScanHandler<R>;
  /** Milliseconds a dialogue may take before it fails with `TIMEOUT`. */
  readonly dialogueTimeoutMs: number;
  /** Milliseconds a pick stays valid without a tap. Default {@link DEFAULT_CHOICE_TIMEOUT_MS}. */
  readonly choiceTimeoutMs?: number;
  /** Runs every timer and is the clock for `expiresAt`; a TestScheduler in marble tests. Default `asyncScheduler`. */
  readonly scheduler?: SchedulerLike;
}

/** Why a `choice-needed` event was emitted. */
export type ChoiceNeededReason =
  /** The offered requests changed (or are offered again after a dialogue) and no pick is valid. */
  | 'pending-changed'
  /** A tag was tapped while several requests are pending and none was picked; the tap was not used. */
  | 'tap-without-choice'
  /** The pick ran out ({@link ScanPipelineOptions.choiceTimeoutMs}) before a tap. */
  | 'choice-expired';

/** Why a tap did not start a dialogue. */
export type TapIgnoredReason =
  /** A dialogue is already running; there is only ever one. */
  | 'busy'
  /** No request is pending. */
  | 'no-request'
  /** The tag's identified chip is not in the request's `acceptedChips`. */
  | 'not-accepted';

/**
 * What the scan-request pipeline reports. `idle`, `ready`, `choice-needed` and `chosen` describe what the next tap
 * will do; they are not repeated while nothing changes, and are not emitted while a dialogue runs (the state after
 * the dialogue is emitted when it ends).
 */
export type ScanEvent<R> =
  /** No request is pending; a tap does nothing. */
  | { readonly type: 'idle' }
  /** Exactly one request is pending; the next tap answers it. */
  | { readonly type: 'ready'; readonly request: ScanRequest }
  /** Several requests are pending and none is picked; the next tap is not used until one is. */
  | {
      readonly type: 'choice-needed';
      readonly requests: readonly ScanRequest[];
      readonly reason: ChoiceNeededReason;
    }
  /** Several requests are pending and `request` was picked; the next tap answers it. */
  | { readonly type: 'chosen'; readonly request: ScanRequest }
  /** A tap started the dialogue for `request`. */
  | { readonly type: 'started'; readonly request: ScanRequest; readonly tag: Tag }
  /** The dialogue produced `result`. */
  | { readonly type: 'completed'; readonly request: ScanRequest; readonly tag: Tag; readonly result: R }
  /**
   * The dialogue failed: `TAG_LOST` (the tag left), `TIMEOUT` (longer than `dialogueTimeoutMs`), `REQUEST_EXPIRED`
   * (the request expired meanwhile), or the handler's own error. The request stays pending if the source says so.
   */
  | { readonly type: 'failed'; readonly request: ScanRequest; readonly tag: Tag; readonly error: TaplineError }
  /** A pending request passed its `expiresAt` while waiting for a tap; it is no longer offered. Once per id. */
  | { readonly type: 'expired'; readonly request: ScanRequest }
  /** A tap that did not start a dialogue. */
  | { readonly type: 'tap-ignored'; readonly tag: Tag; readonly reason: TapIgnoredReason };

type Outcome<R> = { readonly ok: true; readonly result: R } | { readonly ok: false; readonly error: TaplineError };

interface Dialogue {
  readonly request: ScanRequest;
  readonly tag: Tag;
  /** Replays, so that a removal reported before the dialogue is subscribed still cancels it. */
  readonly cancel: ReplaySubject<TaplineError>;
}

interface Pick {
  readonly id: string;
  readonly until: number;
  readonly timer: Subscription;
}

/**
 * Answers scan requests with taps: exactly one dialogue at a time, started by a tap when exactly one request is
 * pending, or when several are and one was picked on `choices$`. Cold: subscribing starts it, unsubscribing cancels
 * everything, an in-flight dialogue included (its signal aborts with `ABORTED`). Errors of `pending$`, `tags$` or
 * `choices$` end the stream as a {@link TaplineError}; it completes when `tags$` completes and no dialogue runs.
 *
 * Throws `INVALID_ARGUMENT` at once for a timeout that is not a positive number.
 */
export function runScanRequests<R>(options: ScanPipelineOptions<R>): Observable<ScanEvent<R>> {
  const { source, tags$, choices$, handler, dialogueTimeoutMs, scheduler = asyncScheduler } = options;
  const choiceTimeoutMs = options.choiceTimeoutMs ?? DEFAULT_CHOICE_TIMEOUT_MS;
  assertPositive('dialogueTimeoutMs', dialogueTimeoutMs);
  assertPositive('choiceTimeoutMs', choiceTimeoutMs);

  return new Observable<ScanEvent<R>>((subscriber) => {
    let pending: readonly ScanRequest[] = [];
    let dialogue: Dialogue | undefined;
    let pick: Pick | undefined;
    /** Identity of the last state event, so that an unchanged state is not announced twice in a row. */
    let lastState: string | undefined;
    let tagsDone = false;
    const expiryTimers = new Map<string, { readonly expiresAt: number; readonly timer: Subscription }>();
    /** Ids whose expiry was reported (as `expired` or as a `REQUEST_EXPIRED` failure): never twice. */
    const reportedExpired = new Set<string>();

    const emit = (event: ScanEvent<R>): void => subscriber.next(event);
    // Compared against the clock rather than trusting the timers alone: a tap in the same instant as an expiry may
    // be delivered before the timer fires.
    const isLive = (request: ScanRequest): boolean =>
      request.expiresAt === undefined || request.expiresAt > scheduler.now();
    const offered = (): readonly ScanRequest[] => pending.filter(isLive);

    const clearPick = (): void => {
      pick?.timer.unsubscribe();
      pick = undefined;
    };

    const validPick = (live: readonly ScanRequest[]): ScanRequest | undefined => {
      const request = pick && pick.until > scheduler.now() ? live.find((r) => r.id === pick?.id) : undefined;
      if (!request) clearPick();
      return request;
    };

    const choiceNeeded = (live: readonly ScanRequest[], reason: ChoiceNeededReason): void => {
      lastState = stateKey('choice', live);
      emit({ type: 'choice-needed', requests: live, reason });
    };

    const publishState = (reason: ChoiceNeededReason = 'pending-changed'): void => {
      if (dialogue || subscriber.closed) return;
      const live = offered();
      const picked = validPick(live);
      const [only] = live;
      if (live.length === 0) {
        if (lastState === 'idle') return;
        lastState = 'idle';
        emit({ type: 'idle' });
      } else if (live.length === 1 && only) {
        const key = stateKey('ready', live);
        if (lastState === key) return;
        lastState = key;
        emit({ type: 'ready', request: only });
      } else if (picked) {
        const key = stateKey('chosen', [picked]);
        if (lastState === key) return;
        lastState = key;
        emit({ type: 'chosen', request: picked });
      } else if (lastState !== stateKey('choice', live)) {
        choiceNeeded(live, reason);
      }
    };

    const reportExpired = (request: ScanRequest): void => {
      if (reportedExpired.has(request.id)) return;
      reportedExpired.add(request.id);
      emit({ type: 'expired', request });
    };

    const onExpiryTimer = (id: string): void => {
      expiryTimers.delete(id);
      // The dialogue has its own expiry timer and reports the expiry as its failure.
      if (dialogue?.request.id === id) return;
      const request = pending.find((r) => r.id === id);
      if (request) reportExpired(request);
      publishState();
    };

    const onPending = (list: readonly ScanRequest[]): void => {
      const seen = new Set<string>();
      pending = list.filter((r) => !seen.has(r.id) && seen.add(r.id));
      for (const [id, entry] of expiryTimers) {
        const current = pending.find((r) => r.id === id);
        if (current?.expiresAt !== entry.expiresAt) {
          entry.timer.unsubscribe();
          expiryTimers.delete(id);
        }
      }
      const stale: ScanRequest[] = [];
      for (const request of pending) {
        const { id, expiresAt } = request;
        if (expiresAt === undefined || expiryTimers.has(id)) continue;
        const delay = expiresAt - scheduler.now();
        if (delay > 0) {
          expiryTimers.set(id, { expiresAt, timer: timer(delay, scheduler).subscribe(() => onExpiryTimer(id)) });
        } else if (dialogue?.request.id !== id) {
          stale.push(request);
        }
      }
      stale.forEach(reportExpired);
      publishState();
    };

    const runDialogue = (request: ScanRequest, tag: Tag, cancel: Observable<TaplineError>): Observable<Outcome<R>> => {
      const controller = new AbortController();
      let settled = false;
      let released = false;
      const failure = (error: TaplineError): Outcome<R> => ({ ok: false, error });
      // After release() these stay silent instead of completing: in `race`, a completion would win too.
      const unlessReleased = (outcome: Outcome<R>): Observable<Outcome<R>> => (released ? NEVER : of(outcome));
      const expiry$ =
        request.expiresAt === undefined
          ? []
          : [
              timer(request.expiresAt - scheduler.now(), scheduler).pipe(
                mergeMap(() => unlessReleased(failure(requestExpiredError(request)))),
              ),
            ];
      const release = (): void => {
        released = true;
      };
      // The handler goes last: a removal that already happened wins without the handler ever being called.
      return race(
        cancel.pipe(mergeMap((error) => unlessReleased(failure(error)))),
        timer(dialogueTimeoutMs, scheduler).pipe(
          mergeMap(() => unlessReleased(failure(timeoutError('The scan dialogue', dialogueTimeoutMs)))),
        ),
        ...expiry$,
        defer(() => handler({ request, tag, signal: controller.signal, release })).pipe(
          take(1),
          map((result): Outcome<R> => ({ ok: true, result })),
        ),
      ).pipe(
        throwIfEmpty(() => new TaplineError(ErrorCode.Internal, 'The scan handler finished without a result.')),
        catchError((error: unknown) => of(failure(toTaplineError(error)))),
        tap((outcome) => {
          settled = true;
          // Abort before the failure is reported, so that whoever reacts to `failed` sees a cancelled signal.
          if (!outcome.ok) controller.abort(outcome.error);
        }),
        finalize(() => {
          if (controller.signal.aborted) return;
          // Also after a result: whatever the handler left running must stop, it has nobody to report to.
          controller.abort(
            settled
              ? new TaplineError(ErrorCode.Aborted, 'The scan dialogue has ended.')
              : abortError('The scan dialogue'),
          );
        }),
      );
    };

    const finish = (current: Dialogue, outcome: Outcome<R>): void => {
      if (dialogue !== current) return;
      dialogue = undefined;
      const { request, tag } = current;
      if (outcome.ok) {
        if (!isLive(request)) reportedExpired.add(request.id);
        emit({ type: 'completed', request, tag, result: outcome.result });
      } else {
        if (outcome.error.code === ErrorCode.RequestExpired) reportedExpired.add(request.id);
        emit({ type: 'failed', request, tag, error: outcome.error });
        // The pending-list timer stayed silent for the request in flight; if the dialogue failed for another reason
        // after the expiry, the expiry still has to be reported once.
        const stillPending = pending.find((r) => r.id === request.id);
        if (stillPending && !isLive(stillPending)) reportExpired(stillPending);
      }
      if (tagsDone) subscriber.complete();
      else publishState();
    };

    const start = (request: ScanRequest, tag: Tag): void => {
      clearPick();
      // Whatever the state after the dialogue, it is worth announcing again.
      lastState = undefined;
      const current: Dialogue = { request, tag, cancel: new ReplaySubject<TaplineError>(1) };
      dialogue = current;
      emit({ type: 'started', request, tag });
      if (subscriber.closed) return;
      subscriber.add(runDialogue(request, tag, current.cancel).subscribe((outcome) => finish(current, outcome)));
    };

    const onTag = (event: TagEvent): void => {
      const { tag } = event;
      if (event.type === 'left') {
        if (dialogue?.tag.id === tag.id) dialogue.cancel.next(tagLostError('the scan dialogue'));
        return;
      }
      if (dialogue) return emit({ type: 'tap-ignored', tag, reason: 'busy' });
      const live = offered();
      if (live.length === 0) return emit({ type: 'tap-ignored', tag, reason: 'no-request' });
      const request = live.length === 1 ? live[0] : validPick(live);
      if (!request) return choiceNeeded(live, 'tap-without-choice');
      if (!accepts(request, tag)) return emit({ type: 'tap-ignored', tag, reason: 'not-accepted' });
      start(request, tag);
    };

    const onChoice = (id: string): void => {
      // A pick only counts for a request that can still be answered; anything else is stale UI and ignored.
      if (!offered().some((r) => r.id === id)) return;
      clearPick();
      pick = {
        id,
        until: scheduler.now() + choiceTimeoutMs,
        timer: timer(choiceTimeoutMs, scheduler).subscribe(() => {
          pick = undefined;
          publishState('choice-expired');
        }),
      };
      publishState();
    };

    const fail = (what: string) => (error: unknown) =>
      subscriber.error(toTaplineError(error, ErrorCode.Internal, `${what} failed: ${describe(error)}`));

    subscriber.add(source.pending$.subscribe({ next: onPending, error: fail('The scan request source') }));
    if (choices$) subscriber.add(choices$.subscribe({ next: onChoice, error: fail('The choice input') }));
    subscriber.add(
      tags$.subscribe({
        next: onTag,
        error: fail('The tag stream'),
        complete: () => {
          tagsDone = true;
          if (!dialogue) subscriber.complete();
        },
      }),
    );

    return () => {
      clearPick();
      for (const { timer: expiry } of expiryTimers.values()) expiry.unsubscribe();
      expiryTimers.clear();
    };
  });
}

/**
 * Only a chip that identification already named can be refused: identification may not have run yet when the tag
 * arrives, and then the handler is the one to decide.
 */
function accepts(request: ScanRequest, tag: Tag): boolean {
  const accepted = request.acceptedChips;
  const chip = tag.identification?.chip;
  return accepted === undefined || accepted.length === 0 || chip === undefined || accepted.includes(chip);
}

function stateKey(kind: string, requests: readonly ScanRequest[]): string {
  return `${kind}\u0000${requests.map((r) => r.id).join('\u0000')}`;
}

function requestExpiredError(request: ScanRequest): TaplineError {
  return new TaplineError(ErrorCode.RequestExpired, `The scan request ${request.id} expired during the dialogue.`, {
    hint: 'Ask for a new scan, then tap again.',
    details: { requestId: request.id, expiresAt: request.expiresAt },
  });
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function assertPositive(name: string, value: number): void {
  if (!Number.isFinite(value) || value <= 0) {
    throw new TaplineError(ErrorCode.InvalidArgument, `${name} must be a positive number of milliseconds.`, {
      details: { [name]: value },
    });
  }
}
