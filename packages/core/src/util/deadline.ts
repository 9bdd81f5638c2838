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
