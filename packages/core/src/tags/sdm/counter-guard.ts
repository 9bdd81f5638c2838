import type { SunResult } from './verify.js';

/**
 * Replay protection for SUN messages: a message is fresh only if its counter is above the last one accepted for
 * its UID. The chip increments the counter on every read, so a copied URL (or a reloaded page) carries a counter
 * that has been seen.
 *
 * @packageDocumentation
 */

/**
 * Where the last accepted counter per UID is kept. Methods may be synchronous or return promises (a database).
 * Keys are the UID as lower-case hex.
 */
export interface CounterStore {
  get(uidHex: string): number | undefined | Promise<number | undefined>;
  set(uidHex: string, counter: number): void | Promise<void>;
}

/** Checks verified SUN results for replays; see {@link createCounterGuard}. */
export interface CounterGuard {
  /**
   * Passes an invalid result through unchanged. For a valid one: if its counter is not above the last accepted
   * for its UID, returns it as `valid: false, reason: 'replayed'` (file data removed); otherwise records the
   * counter and returns it unchanged.
   */
  check(result: SunResult): Promise<SunResult>;
}

/** A {@link CounterStore} in a Map: per process, forgotten on exit. */
export function createMemoryCounterStore(): CounterStore {
  const counters = new Map<string, number>();
  return {
    get: (uidHex) => counters.get(uidHex),
    set: (uidHex, counter) => void counters.set(uidHex, counter),
  };
}

/**
 * Builds a replay guard over `store` (default: in memory). Checks for one UID run one after another, so two
 * concurrent checks of the same message cannot both pass, even with an asynchronous store; the store must give
 * the same guarantee if several processes share it.
 */
export function createCounterGuard(store: CounterStore = createMemoryCounterStore()): CounterGuard {
  const queues = new Map<string, Promise<unknown>>();

  const checkOne = async (uidHex: string, result: SunResult): Promise<SunResult> => {
    const last = await store.get(uidHex);
    if (last !== undefined && result.counter <= last) {
      const { fileData: _dropped, ...rest } = result;
      return { ...rest, valid: false, reason: 'replayed' };
    }
    await store.set(uidHex, result.counter);
    return result;
  };

  return {
    check(result) {
      if (!result.valid) return Promise.resolve(result);
      const uidHex = Buffer.from(result.uid).toString('hex');
      const previous = queues.get(uidHex) ?? Promise.resolve();
      const next = previous.then(
        () => checkOne(uidHex, result),
        () => checkOne(uidHex, result),
      );
      queues.set(uidHex, next);
      // Forget the queue once it drains, so that the map does not grow with every UID ever seen.
      const forget = (): void => {
        if (queues.get(uidHex) === next) queues.delete(uidHex);
      };
      next.then(forget, forget);
      return next;
    },
  };
}
