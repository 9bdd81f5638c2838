import { Observable, type Subscription } from 'rxjs';
import {
  ALL_CAPABILITIES,
  ErrorCode,
  ReaderBase,
  TaplineError,
  type AttachedDevice,
  type Capability,
  type DeviceSource,
  type DriverContext,
  type FrameCapability,
  type ReaderDriver,
  type ReaderFeedback,
  type Tag,
} from '@tapline/core';
import { SimulatedField } from './simulated-field.js';

/** The `kind` of virtual device the sim driver serves. */
export const SIM_DEVICE_KIND = 'tapline-sim';

/** Everything a simulated reader did besides exchanging frames, for assertions. */
export interface SimulatedReaderLog {
  readonly feedback: ReaderFeedback[];
}

/**
 * A reader over a {@link SimulatedField}: chips arrive and leave as the field says, exchanges take the field's
 * latency and are answered by the chip in the field.
 */
export class SimulatedReader extends ReaderBase {
  readonly log: SimulatedReaderLog = { feedback: [] };
  readonly #field: SimulatedField;
  readonly #watch: Subscription;

  constructor(field: SimulatedField, context: DriverContext, capabilities: Iterable<Capability> = ALL_CAPABILITIES) {
    super({
      name: field.name,
      driverId: simDriver.id,
      capabilities,
      logger: context.logger,
      clock: context.clock,
      defaultTimeoutMs: context.timeoutMs,
    });
    this.#field = field;
    this.#watch = field.chip$.subscribe((chip) => {
      if (chip) this.tagArrived(chip.info);
      else this.tagLeft();
    });
  }

  protected override exchange(
    _tag: Tag,
    capability: FrameCapability,
    frame: Uint8Array,
    signal: AbortSignal,
  ): Promise<Uint8Array> {
    const chip = this.#field.chip;
    return new Promise<Uint8Array>((resolve, reject) => {
      const finish = (): void => {
        signal.removeEventListener('abort', onAbort);
        if (this.#field.chip !== chip || !chip) return; // removal is reported through the abort signal
        try {
          resolve(chip.handle(capability, frame));
        } catch {
          // A chip that does not answer looks, to a reader, like silence until the timeout.
        }
      };
      // setTimeout(0) rounds up to a millisecond; a zero-latency field answers on the next turn instead.
      const latency = this.#field.latencyMs;
      const timer = latency > 0 ? setTimeout(finish, latency) : undefined;
      const immediate = latency > 0 ? undefined : setImmediate(finish);
      const onAbort = (): void => {
        clearTimeout(timer);
        clearImmediate(immediate);
        reject(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason)));
      };
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  protected override applyFeedback(feedback: ReaderFeedback): Promise<void> {
    this.log.feedback.push(feedback);
    return Promise.resolve();
  }

  protected override release(): Promise<void> {
    this.#watch.unsubscribe();
    return Promise.resolve();
  }
}

/** The simulator's driver (id `sim`): serves {@link SimulatedField}s presented by {@link simDeviceSource}. */
export const simDriver: ReaderDriver = {
  id: 'sim',
  displayName: 'Tapline simulator',
  description: 'A simulated reader with virtual chips; no hardware needed (--sim).',
  matches: [{ transport: 'virtual', kind: SIM_DEVICE_KIND }],
  capabilities: ALL_CAPABILITIES,
  open(device: AttachedDevice, context: DriverContext) {
    if (device.transport !== 'virtual' || !(device.port instanceof SimulatedField)) {
      return Promise.reject(
        new TaplineError(ErrorCode.DriverFailed, `The sim driver only serves simulated readers, not "${device.name}".`),
      );
    }
    return Promise.resolve(new SimulatedReader(device.port, context));
  },
};

/** A device source that presents `fields` as attached readers, and detaches them when unsubscribed. */
export function simDeviceSource(fields: readonly SimulatedField[]): DeviceSource {
  return {
    transport: 'virtual',
    devices$: new Observable((subscriber) => {
      for (const field of fields) {
        subscriber.next({
          type: 'attached',
          device: { transport: 'virtual', name: field.name, kind: SIM_DEVICE_KIND, port: field },
        });
      }
    }),
  };
}
