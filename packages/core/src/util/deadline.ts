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
 */
export async function withDeadline<T>(
  options: DeadlineOptions,
  operation: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const { what, timeoutMs, signal: outer } = options;
  if (outer?.aborted) throw abortError(what, outer.reason);
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const stopped = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const error = timeoutError(what, timeoutMs);
      controller.abort(error);
      reject(error);
    }, timeoutMs);
    if (outer) {
      onAbort = () => {
        const error = abortError(what, outer.reason);
        controller.abort(error);
        reject(error);
      };
      outer.addEventListener('abort', onAbort, { once: true });
    }
  });
  try {
    return await Promise.race([operation(controller.signal), stopped]);
  } finally {
    clearTimeout(timer);
    if (onAbort) outer?.removeEventListener('abort', onAbort);
    // A late rejection of `stopped` must never surface as unhandled.
    stopped.catch(() => undefined);
  }
}
