import { abortError, timeoutError } from '../model/errors.js';

/** Options for {@link withDeadline}. */
export interface DeadlineOptions {
  /** What is being waited for, for the error message ("ATR read", "transmit to ACR122U"). */
  readonly what: string;
  /** Milliseconds before the wait fails with `TIMEOUT`. */
  readonly timeoutMs: number;
  /** Aborts the wait; the signal's reason is kept when it is a Tapline error (for example TAG_LOST). */
  readonly signal?: AbortSignal | undefined;
}

/**
 * Runs `operation` with a signal that fires on timeout or when `options.signal` aborts, and settles as soon as either
 * happens, even if `operation` ignores its signal. The timer is always cleared and the listener always removed.
 *
 * It sits on every frame's path, so it is written for speed: one promise, one timer, one listener, no
 * `Promise.race` (measured with bench/apdu-overhead).
 */
export function withDeadline<T>(options: DeadlineOptions, operation: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  return settleWithin(options, () => operation(controller.signal)).catch((error: unknown) => {
    // Tell the operation to stop: after a timeout or an abort nobody waits for it any more.
    controller.abort(error);
    throw error;
  });
}

/**
 * Settles with `operation`'s result, or fails with `TIMEOUT` / `ABORTED` when the deadline or `options.signal` comes
 * first. For operations that cannot be cancelled (a native call in flight): it hands out no signal, so it needs no
 * AbortController, which matters on the per-frame path. A late result is dropped.
 */
export function settleWithin<T>(options: DeadlineOptions, operation: () => Promise<T>): Promise<T> {
  const { what, timeoutMs, signal: outer } = options;
  if (outer?.aborted) return Promise.reject(abortError(what, outer.reason));
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const settle = (): boolean => {
      if (settled) return false;
      settled = true;
      clearTimeout(timer);
      outer?.removeEventListener('abort', onAbort);
      return true;
    };
    const onAbort = (): void => {
      if (settle()) reject(abortError(what, outer?.reason));
    };
    const timer = setTimeout(() => {
      if (settle()) reject(timeoutError(what, timeoutMs));
    }, timeoutMs);
    outer?.addEventListener('abort', onAbort, { once: true });
    operation().then(
      (value) => {
        if (settle()) resolve(value);
      },
      (error: unknown) => {
        if (settle()) reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}

/** The longest delay a Node timer takes (2^31 − 1 ms); longer ones fire after 1 ms with a warning. */
const MAX_TIMER_DELAY_MS = 0x7fffffff;

/**
 * The deadline of one operation at a time, for the per-frame paths (a reader's exchanges, one PC/SC connection's
 * transmits), where a timer and an abort listener per frame measurably slow every APDU (bench/apdu-overhead).
 *
 * One timer serves many operations: {@link SerialDeadline.start} only records when the current operation is due and
 * creates a timer when none is running or the running one would fire too late; when the timer fires early for the
 * current operation (it was set for an earlier one) it re-arms for the time left. While operations keep finishing in
 * time, there is about one timer per `timeoutMs`, not one per frame.
 *
 * With `keepAlive` (the default) the timer holds the process open while an operation runs, so that an operation
 * nothing else keeps alive (a driver whose promise never settles) still ends in its timeout rather than in a silent
 * exit; between operations it never does, so that an idle reader cannot keep a finished CLI from exiting. Without
 * `keepAlive` it never does: for operations that are I/O (a native call) and keep the process alive themselves.
 */
export class SerialDeadline {
  readonly #keepAlive: boolean;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** When the running timer fires, on the `performance.now()` clock. */
  #timerDue = Number.POSITIVE_INFINITY;
  /** When the current operation is due; infinite when none runs. */
  #due = Number.POSITIVE_INFINITY;
  #onExpire: (() => void) | undefined;
  readonly #fire = (): void => {
    this.#timer = undefined;
    this.#timerDue = Number.POSITIVE_INFINITY;
    const onExpire = this.#onExpire;
    if (!onExpire) return;
    const left = this.#due - performance.now();
    // Timers run on the loop's millisecond clock and may fire a fraction of a millisecond before our clock agrees.
    if (left > 1) {
      this.#arm(left);
      return;
    }
    this.stop();
    onExpire();
  };

  constructor(options: { readonly keepAlive?: boolean } = {}) {
    this.#keepAlive = options.keepAlive ?? true;
  }

  /**
   * Starts the deadline of the next operation: `onExpire` runs once unless {@link SerialDeadline.stop} comes first.
   * A timeout beyond what a Node timer can hold (about 24.8 days, or not finite) is capped there; NaN expires at once.
   */
  start(timeoutMs: number, onExpire: () => void): void {
    const ms = Number.isNaN(timeoutMs) ? 0 : Math.min(Math.max(0, timeoutMs), MAX_TIMER_DELAY_MS);
    this.#onExpire = onExpire;
    this.#due = performance.now() + ms;
    if (this.#due < this.#timerDue) this.#arm(ms);
    else if (this.#keepAlive) this.#timer?.ref();
  }

  /** The current operation finished: its deadline no longer applies. The timer is left to lapse. */
  stop(): void {
    this.#onExpire = undefined;
    this.#due = Number.POSITIVE_INFINITY;
    this.#timer?.unref();
  }

  /** Stops the current deadline and clears the timer. */
  dispose(): void {
    this.stop();
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerDue = Number.POSITIVE_INFINITY;
  }

  #arm(delayMs: number): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    const delay = Math.min(Math.max(1, Math.ceil(delayMs)), MAX_TIMER_DELAY_MS);
    this.#timerDue = performance.now() + delay;
    this.#timer = setTimeout(this.#fire, delay);
    // Re-armed only while an operation runs (from start() or for the time it has left).
    if (!this.#keepAlive || this.#onExpire === undefined) this.#timer.unref();
  }
}
