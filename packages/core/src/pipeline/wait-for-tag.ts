import {
  filter,
  firstValueFrom,
  map,
  timeout,
  type Observable,
  type SchedulerLike,
  asyncScheduler,
  takeUntil,
  fromEvent,
} from 'rxjs';
import { ErrorCode, TaplineError, abortError } from '../model/errors.js';
import type { Tag } from '../model/tag.js';
import type { TagEvent } from './reader-manager.js';

/** Options of {@link waitForTag}. */
export interface WaitForTagOptions {
  /** Milliseconds to wait for a tap; fails with `TIMEOUT` after. */
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
  readonly scheduler?: SchedulerLike;
}

/**
 * Resolves with the next tag that arrives on any reader (or the one already resting on a reader). Hold a
 * subscription to the readers (`ReaderManager.hold`) while you use the tag: this function unsubscribes when it
 * resolves.
 */
export async function waitForTag(tags$: Observable<TagEvent>, options: WaitForTagOptions): Promise<Tag> {
  const { timeoutMs, signal, scheduler = asyncScheduler } = options;
  if (signal?.aborted) throw abortError('Waiting for a tag', signal.reason);
  const aborted$ = signal ? fromEvent(signal, 'abort') : undefined;
  const arrival$ = tags$.pipe(
    filter((e): e is Extract<TagEvent, { type: 'arrived' }> => e.type === 'arrived'),
    map((e) => e.tag),
    timeout({
      first: timeoutMs,
      scheduler,
      with: () => {
        throw new TaplineError(ErrorCode.Timeout, `No tag was presented within ${timeoutMs} ms.`, {
          hint: 'Hold the tag flat on the reader (implants: find the sweet spot, it can be a few millimetres), or allow more time (the CLI takes --timeout).',
          details: { timeoutMs },
        });
      },
    }),
  );
  try {
    return await firstValueFrom(aborted$ ? arrival$.pipe(takeUntil(aborted$)) : arrival$);
  } catch (error) {
    if (signal?.aborted) throw abortError('Waiting for a tag', signal.reason);
    throw error;
  }
}
