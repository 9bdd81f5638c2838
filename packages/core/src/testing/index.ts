/**
 * `@tapline/core/testing`: test doubles for driver authors. A scripted PC/SC transport whose cards answer from a
 * script of command/response pairs (nfcpy style), a fake of the `pcsclite` binding, and small helpers. Use it in
 * tests only; nothing here talks to hardware.
 *
 * @packageDocumentation
 */
import { filter, firstValueFrom, map, timeout } from 'rxjs';
import type { DriverContext } from '../model/driver.js';
import { ErrorCode, TaplineError } from '../model/errors.js';
import type { Reader, ReaderEvent } from '../model/reader.js';
import type { Tag } from '../model/tag.js';
import { systemClock } from '../runtime/clock.js';
import { silentLogger, type Logger } from '../runtime/logger.js';

export * from './scripted-pcsc.js';
export * from './fake-pcsclite.js';

/** A {@link DriverContext} for tests: silent logger, wall clock, short timeout. */
export function testDriverContext(
  overrides: Partial<DriverContext> & { readonly logger?: Logger } = {},
): DriverContext {
  return { logger: silentLogger, clock: systemClock, timeoutMs: 500, ...overrides };
}

/**
 * Resolves with the tag of the first `type` event on `reader` (default `tag-arrived`; since `events$` replays the
 * tag in the field, that is the current tag if there is one); fails with `TIMEOUT` after `timeoutMs` so that a test
 * never hangs.
 */
export function nextTagEvent(
  reader: Reader,
  type: ReaderEvent['type'] = 'tag-arrived',
  timeoutMs = 1000,
): Promise<Tag> {
  return firstValueFrom(
    reader.events$.pipe(
      filter((event) => event.type === type),
      map((event) => event.tag),
      timeout({
        first: timeoutMs,
        with: () => {
          throw new TaplineError(ErrorCode.Timeout, `No ${type} event on ${reader.name} within ${timeoutMs} ms.`);
        },
      }),
    ),
  );
}
