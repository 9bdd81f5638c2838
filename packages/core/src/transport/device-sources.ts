import {
  type Observable,
  catchError,
  concat,
  defer,
  map,
  of,
  retry,
  throwError,
  timer,
  type SchedulerLike,
} from 'rxjs';
import type { DeviceEvent, DeviceSource } from '../model/device-source.js';
import type { TransportKind } from '../model/driver.js';
import { ErrorCode, toTaplineError } from '../model/errors.js';
import type { Logger } from '../runtime/logger.js';
import type { PcscTransport } from './pcsc.js';
import type { UsbTransport } from './usb.js';
import { usbId } from '../model/driver.js';

/** Backoff of a device source that lost its transport. */
export interface BackoffOptions {
  /** First delay in milliseconds. Default 1000. */
  readonly initialMs?: number;
  /** Longest delay in milliseconds. Default 30000. */
  readonly maxMs?: number;
  /** Random spread as a fraction of the delay (0 = none). Default 0.2. */
  readonly jitter?: number;
  /** Random source in [0, 1); injectable for tests. */
  readonly random?: () => number;
}

/** Options shared by the device sources. */
export interface DeviceSourceOptions {
  readonly logger: Logger;
  readonly scheduler: SchedulerLike;
  readonly backoff?: BackoffOptions;
}

/** The delay before retry number `attempt` (1-based): doubling from `initialMs`, capped, with jitter; at least 1 ms. */
export function backoffDelay(attempt: number, options: BackoffOptions = {}): number {
  const { initialMs = 1000, maxMs = 30_000, jitter = 0.2, random = Math.random } = options;
  const base = Math.min(maxMs, initialMs * 2 ** Math.max(0, attempt - 1));
  const spread = Math.min(1, Math.max(0, jitter));
  // Never 0: a zero delay would re-subscribe a failing transport in a tight loop.
  return Math.max(1, Math.round(base * (1 - spread + 2 * spread * random())));
}

/**
 * Wraps a transport's event stream so that failures become `unavailable` events followed by a retry with backoff,
 * instead of ending the stream. Each retry re-subscribes `events$`, which re-establishes the transport.
 */
function resilient(
  transport: TransportKind,
  events$: Observable<DeviceEvent>,
  options: DeviceSourceOptions,
): Observable<DeviceEvent> {
  // The attempt count belongs to one subscription: a later subscriber must not inherit an old outage's backoff.
  return defer(() => {
    let attempt = 0;
    return defer(() => events$).pipe(
      map((event) => {
        if (event.type === 'attached') attempt = 0;
        return event;
      }),
      catchError((error: unknown) => {
        attempt += 1;
        const failure = toTaplineError(error, ErrorCode.TransportUnavailable);
        const retryInMs = backoffDelay(attempt, options.backoff);
        options.logger.debug('transport unavailable, will retry', { transport, retryInMs, code: failure.code });
        // Announce the outage, then fail so that `retry` re-subscribes after the delay.
        return concat(
          of<DeviceEvent>({ type: 'unavailable', transport, error: failure, retryInMs }),
          throwError(() => retryInMs),
        );
      }),
      retry({ delay: (retryInMs: number) => timer(retryInMs, options.scheduler) }),
    );
  });
}

/** Devices from the PC/SC service. */
export function pcscDeviceSource(pcsc: PcscTransport, options: DeviceSourceOptions): DeviceSource {
  const events$ = pcsc.readers$.pipe(
    map((event): DeviceEvent =>
      event.type === 'attached'
        ? { type: 'attached', device: { transport: 'pcsc', name: event.reader.name, port: event.reader } }
        : { type: 'detached', transport: 'pcsc', name: event.name },
    ),
  );
  return { transport: 'pcsc', devices$: resilient('pcsc', events$, options) };
}

/** Devices from the USB bus. */
export function usbDeviceSource(usb: UsbTransport, options: DeviceSourceOptions): DeviceSource {
  const nameOf = (d: {
    manufacturerName?: string | undefined;
    productName?: string | undefined;
    vendorId: number;
    productId: number;
    serialNumber?: string | undefined;
  }): string => {
    const label = [d.manufacturerName, d.productName].filter(Boolean).join(' ') || 'USB device';
    return `${label} (${usbId(d.vendorId, d.productId)}${d.serialNumber ? ` ${d.serialNumber}` : ''})`;
  };
  const events$ = usb.devices$.pipe(
    map((event): DeviceEvent =>
      event.type === 'attached'
        ? {
            type: 'attached',
            device: {
              transport: 'usb',
              name: nameOf(event.device),
              vendorId: event.device.vendorId,
              productId: event.device.productId,
              port: event.device,
            },
          }
        : { type: 'detached', transport: 'usb', name: nameOf(event.device) },
    ),
  );
  return { transport: 'usb', devices$: resilient('usb', events$, options) };
}
