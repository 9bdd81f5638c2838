import { BehaviorSubject, type Observable } from 'rxjs';
import type { ScanRequest, ScanRequestSource } from '@tapline/core';

/**
 * An in-memory scan-request source that offers its requests one at a time, oldest first.
 *
 * An unattended agent has nobody to pick between several pending requests (the pipeline would answer
 * `choice-needed` and ignore taps), so the queue shows the pipeline only its head: each tap answers the oldest
 * request. Stand-in for the platform's long poll, which arrives with the platform relay.
 */
export class RequestQueue implements ScanRequestSource {
  readonly #queue: ScanRequest[] = [];
  readonly #head = new BehaviorSubject<readonly ScanRequest[]>([]);

  /** The head of the queue as a one-element list, or an empty list. */
  readonly pending$: Observable<readonly ScanRequest[]> = this.#head.asObservable();

  /** Adds requests at the end. */
  add(...requests: readonly ScanRequest[]): void {
    this.#queue.push(...requests);
    this.#publish();
  }

  /** Removes a request (answered, say); unknown ids are ignored. */
  remove(id: string): void {
    const index = this.#queue.findIndex((r) => r.id === id);
    if (index < 0) return;
    this.#queue.splice(index, 1);
    this.#publish();
  }

  /** How many requests wait, the offered one included. */
  get size(): number {
    return this.#queue.length;
  }

  #publish(): void {
    const head = this.#queue[0];
    const current = this.#head.value[0];
    if (head === current) return;
    this.#head.next(head ? [head] : []);
  }
}

/** `count` simulated requests, ids `sim-1` … `sim-N`. */
export function simulatedRequests(count: number, now: number = Date.now()): ScanRequest[] {
  return Array.from({ length: count }, (_, i) => ({
    id: `sim-${i + 1}`,
    purpose: `Simulated scan request ${i + 1} of ${count}`,
    relyingParty: 'tapline-agent (simulated)',
    createdAt: now,
  }));
}
