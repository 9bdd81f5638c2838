import { Observable } from 'rxjs';
import type { DeviceEvent, DeviceSource, ReaderDriver } from '@tapline/core';
import { SimulatedField } from './simulated-field.js';
import { simDeviceSource, simDriver } from './sim-driver.js';
import type { VirtualChip } from './virtual-chip.js';
import { createVirtualChip, type VirtualChipKind } from '../chips/index.js';

/** Options of {@link createSimulation}. */
export interface SimulationOptions {
  /** The chip to tap, or the kind of virtual chip to create. Default: a Spark 2 (NTAG 424 DNA). */
  readonly chip?: VirtualChip | VirtualChipKind;
  /** When the chip is tapped, in milliseconds after the reader attaches; `false` never taps. Default 300. */
  readonly tapAfterMs?: number | false;
  /** How long the chip stays on the reader; default: until the process ends. */
  readonly holdMs?: number;
  /** Per-exchange latency in milliseconds. Default 1. */
  readonly latencyMs?: number;
  /** Reader name. Default `Tapline Simulated Reader`. */
  readonly readerName?: string;
}

/** A ready-to-use simulation: the field to drive, and what to put into the container. */
export interface Simulation {
  readonly field: SimulatedField;
  readonly chip: VirtualChip;
  readonly deviceSources: readonly DeviceSource[];
  readonly drivers: readonly ReaderDriver[];
  /** Cancels pending scripted taps. */
  stop(): void;
}

/**
 * What `--sim` uses: one simulated reader that a chip is tapped on shortly after it attaches.
 */
export function createSimulation(options: SimulationOptions = {}): Simulation {
  const field = new SimulatedField(options.readerName ?? 'Tapline Simulated Reader', {
    latencyMs: options.latencyMs ?? 1,
  });
  const chip = typeof options.chip === 'object' ? options.chip : createVirtualChip(options.chip ?? 'spark2');
  const timers: NodeJS.Timeout[] = [];
  const tapAfterMs = options.tapAfterMs ?? 300;
  const source = simDeviceSource([field]);
  const deviceSources: DeviceSource[] = [
    {
      transport: source.transport,
      devices$: new Observable<DeviceEvent>((subscriber) => {
        const inner = source.devices$.subscribe(subscriber);
        if (tapAfterMs !== false) {
          // unref: a pending tap must never keep the process alive on its own.
          timers.push(setTimeout(() => field.present(chip), tapAfterMs).unref());
          if (options.holdMs !== undefined) {
            timers.push(setTimeout(() => field.remove(), tapAfterMs + options.holdMs).unref());
          }
        }
        return () => {
          inner.unsubscribe();
          for (const t of timers.splice(0)) clearTimeout(t);
        };
      }),
    },
  ];
  return {
    field,
    chip,
    deviceSources,
    drivers: [simDriver],
    stop: () => {
      for (const t of timers.splice(0)) clearTimeout(t);
    },
  };
}
