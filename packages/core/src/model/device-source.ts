import type { Observable } from 'rxjs';
import type { AttachedDevice, TransportKind } from './driver.js';
import type { TaplineError } from './errors.js';

/** A device appearing or disappearing, or the transport reporting trouble it is recovering from. */
export type DeviceEvent =
  | { readonly type: 'attached'; readonly device: AttachedDevice }
  | { readonly type: 'detached'; readonly transport: TransportKind; readonly name: string }
  | {
      readonly type: 'unavailable';
      readonly transport: TransportKind;
      readonly error: TaplineError;
      readonly retryInMs?: number;
    };

/**
 * Where devices come from: the PC/SC service, the USB bus, the simulator. `devices$` is cold; subscribing starts
 * watching and unsubscribing releases everything.
 */
export interface DeviceSource {
  readonly transport: TransportKind;
  readonly devices$: Observable<DeviceEvent>;
}
