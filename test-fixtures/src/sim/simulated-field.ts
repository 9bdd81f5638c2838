import { BehaviorSubject, type Observable, type SchedulerLike, asyncScheduler, type Subscription } from 'rxjs';
import type { VirtualChip } from './virtual-chip.js';

/** One step of a tap script: at `atMs` after the script starts, put a chip on the reader or take it off. */
export type SimulationStep =
  { readonly atMs: number; readonly present: VirtualChip } | { readonly atMs: number; readonly remove: true };

/** Options of {@link SimulatedField}. */
export interface SimulatedFieldOptions {
  /** Simulated air-and-reader latency per exchange, in milliseconds. Default 1. */
  readonly latencyMs?: number;
}

/**
 * The physical side of a simulated reader: which chip is in its field. Tests and the `--sim` flag drive it; the
 * simulated reader only watches it. Pass it to {@link simDeviceSource} to make it appear as a reader.
 */
export class SimulatedField {
  readonly latencyMs: number;
  readonly #chip = new BehaviorSubject<VirtualChip | undefined>(undefined);

  constructor(
    readonly name: string,
    options: SimulatedFieldOptions = {},
  ) {
    this.latencyMs = options.latencyMs ?? 1;
  }

  /** The chip in the field, as it changes. */
  get chip$(): Observable<VirtualChip | undefined> {
    return this.#chip.asObservable();
  }

  /** The chip in the field now. */
  get chip(): VirtualChip | undefined {
    return this.#chip.value;
  }

  /** Puts `chip` on the reader (taking off whatever was there). */
  present(chip: VirtualChip): void {
    if (this.#chip.value) this.#chip.next(undefined);
    this.#chip.next(chip);
  }

  /** Takes the chip off the reader. */
  remove(): void {
    if (this.#chip.value) this.#chip.next(undefined);
  }

  /** Plays a tap script; unsubscribe to stop it. */
  play(steps: readonly SimulationStep[], scheduler: SchedulerLike = asyncScheduler): Subscription {
    const subscriptions = steps.map((step) =>
      scheduler.schedule(() => ('present' in step ? this.present(step.present) : this.remove()), step.atMs),
    );
    const all = subscriptions[0] ?? scheduler.schedule(() => undefined);
    for (const s of subscriptions.slice(1)) all.add(s);
    return all;
  }
}
