import { Observable } from 'rxjs';
import { ErrorCode, TaplineError, isTaplineError } from '../model/errors.js';
import type { Logger } from '../runtime/logger.js';
import { withDeadline } from '../util/deadline.js';
import type {
  UsbDeviceEvent,
  UsbDeviceLike,
  UsbInTransferResult,
  UsbInterfaceLike,
  UsbOutTransferResult,
  UsbTransport,
} from './usb.js';

/**
 * A device as `usb` 3.x hands it out (WebUSB `USBDevice` plus `handle`). String descriptors are `null` when the
 * device has none, which is why Tapline wraps it before drivers see it.
 */
export interface NativeUsbDeviceLike {
  readonly vendorId: number;
  readonly productId: number;
  /** Stable per attachment; `usb` uses it to pair 'disconnect' with 'connect'. */
  readonly handle?: string;
  readonly manufacturerName?: string | null | undefined;
  readonly productName?: string | null | undefined;
  readonly serialNumber?: string | null | undefined;
  readonly opened: boolean;
  readonly configuration?: { readonly interfaces: readonly UsbInterfaceLike[] } | null | undefined;
  open(): Promise<void>;
  close(): Promise<void>;
  selectConfiguration(configurationValue: number): Promise<void>;
  claimInterface(interfaceNumber: number): Promise<void>;
  releaseInterface(interfaceNumber: number): Promise<void>;
  transferIn(endpointNumber: number, length: number): Promise<UsbInTransferResult>;
  transferOut(endpointNumber: number, data: Uint8Array): Promise<UsbOutTransferResult>;
}

/** The `connect` / `disconnect` event of WebUSB. */
export interface UsbConnectionEventLike {
  readonly device: NativeUsbDeviceLike;
}

/** The part of `usb` 3.x's `WebUSB` object (its `usb` export) that Tapline uses. */
export interface WebUsbLike {
  getDevices(): Promise<readonly NativeUsbDeviceLike[]>;
  addEventListener(type: 'connect' | 'disconnect', listener: (event: UsbConnectionEventLike) => void): void;
  removeEventListener(type: 'connect' | 'disconnect', listener: (event: UsbConnectionEventLike) => void): void;
}

/** The `usb` module as far as Tapline uses it. */
export interface UsbModuleLike {
  readonly usb: WebUsbLike;
}

/** The error for a `usb` module that cannot be loaded. */
export function usbBindingMissingError(cause?: unknown): TaplineError {
  return new TaplineError(
    ErrorCode.TransportUnavailable,
    'The USB binding is not available: install the optional dependency `usb` (it ships prebuilt binaries for Linux, macOS and Windows).',
    {
      cause,
      hint: 'Reinstall with optional dependencies enabled (`pnpm install`), or use PC/SC readers only (`transports: ["pcsc"]`).',
    },
  );
}

/** The error for a machine on which the USB bus cannot be read. */
export function usbBusUnavailableError(cause?: unknown): TaplineError {
  const text = cause instanceof Error ? cause.message : String(cause);
  const noBus = /not found|no such file|ENOENT|errno 2/i.test(text);
  return new TaplineError(
    ErrorCode.TransportUnavailable,
    noBus
      ? 'No USB bus is visible on this machine (/sys/bus/usb is missing), so USB readers cannot be used.'
      : `The USB bus could not be read: ${text}`,
    {
      cause,
      hint: noBus
        ? 'In a VM or container, pass the USB controller or device through; otherwise use a PC/SC reader.'
        : 'Check the permissions on the USB devices (Linux: a udev rule for the reader), then replug the reader.',
    },
  );
}

/**
 * Loads the `usb` binding (3.x, WebUSB API). Fails with `TRANSPORT_UNAVAILABLE`, the loader's error attached,
 * when the module is missing or not a `usb` 3.x.
 */
export async function loadUsbBinding(): Promise<UsbModuleLike> {
  // A computed specifier keeps TypeScript (and bundlers) from requiring the optional dependency at build time.
  const specifier = 'usb';
  let loaded: unknown;
  try {
    loaded = await import(specifier);
  } catch (error) {
    throw usbBindingMissingError(error);
  }
  const candidates = [loaded, (loaded as { default?: unknown }).default];
  for (const candidate of candidates) {
    const usb = (candidate as { usb?: unknown } | undefined)?.usb;
    if (typeof usb === 'object' && usb !== null && typeof (usb as { getDevices?: unknown }).getDevices === 'function') {
      return { usb: usb as WebUsbLike };
    }
  }
  throw usbBindingMissingError(new Error('the usb module has no WebUSB `usb` export (usb 3.x is required)'));
}

/** Options of {@link createNativeUsbTransport}. */
export interface NativeUsbOptions {
  readonly logger: Logger;
  /** Loads the binding; default {@link loadUsbBinding}. Tests inject a fake or a failing loader. */
  readonly loadBinding?: () => Promise<UsbModuleLike>;
  /** How long listing the devices may take, in milliseconds. Default 10000. */
  readonly listTimeoutMs?: number;
}

/**
 * The USB transport over the native `usb` binding (WebUSB API), loaded lazily on the first subscription.
 * `devices$` lists the present devices, then follows 'connect' and 'disconnect'.
 */
export function createNativeUsbTransport(options: NativeUsbOptions): UsbTransport {
  const logger = options.logger.child({ transport: 'usb' });
  const load = options.loadBinding ?? loadUsbBinding;
  const listTimeoutMs = options.listTimeoutMs ?? 10_000;
  const devices$ = new Observable<UsbDeviceEvent>((subscriber) => {
    let stopped = false;
    let detach: (() => void) | undefined;
    const known = new Map<string, WrappedUsbDevice>();
    const keyOf = (device: NativeUsbDeviceLike): string =>
      device.handle ?? `${device.vendorId}:${device.productId}:${safeString(() => device.serialNumber) ?? ''}`;

    const attach = (device: NativeUsbDeviceLike): void => {
      const key = keyOf(device);
      if (known.has(key)) return;
      const wrapped = new WrappedUsbDevice(device);
      known.set(key, wrapped);
      subscriber.next({ type: 'attached', device: wrapped });
    };

    const start = async (): Promise<void> => {
      let usb: WebUsbLike;
      try {
        ({ usb } = await load());
      } catch (error) {
        throw isTaplineError(error) ? error : usbBindingMissingError(error);
      }
      if (stopped) return;
      const list = (): Promise<readonly NativeUsbDeviceLike[]> =>
        withDeadline({ what: 'listing USB devices', timeoutMs: listTimeoutMs }, () => usb.getDevices()).catch(
          (error: unknown) => {
            throw usbBusUnavailableError(error);
          },
        );
      // Probe first: `usb` 3.x starts an unguarded device scan when the first listener is added, and that scan's
      // rejection (no USB bus) would crash the process.
      const initial = await list();
      if (stopped) return;
      const onConnect = (event: UsbConnectionEventLike): void => {
        if (!stopped) attach(event.device);
      };
      const onDisconnect = (event: UsbConnectionEventLike): void => {
        if (stopped) return;
        const key = keyOf(event.device);
        const wrapped = known.get(key);
        if (!wrapped) return;
        known.delete(key);
        subscriber.next({ type: 'detached', device: wrapped });
      };
      usb.addEventListener('connect', onConnect);
      usb.addEventListener('disconnect', onDisconnect);
      detach = () => {
        usb.removeEventListener('connect', onConnect);
        usb.removeEventListener('disconnect', onDisconnect);
      };
      for (const device of initial) attach(device);
      // A device plugged in between the probe and the listeners is caught by a second look.
      for (const device of await list()) if (!stopped) attach(device);
    };

    start().catch((error: unknown) => {
      if (stopped) return;
      stopped = true;
      detach?.();
      detach = undefined;
      subscriber.error(isTaplineError(error) ? error : usbBusUnavailableError(error));
    });

    return () => {
      stopped = true;
      try {
        detach?.();
      } catch (error) {
        logger.debug('removing the USB listeners failed', { error });
      }
      detach = undefined;
      known.clear();
    };
  });
  return { devices$ };
}

function safeString(read: () => string | null | undefined): string | undefined {
  try {
    return read() ?? undefined;
  } catch {
    return undefined;
  }
}

/**
 * Presents a native device as {@link UsbDeviceLike}: `null` strings become `undefined`, and the strings are read
 * once at attach time so that the detach event names the device the same way.
 */
class WrappedUsbDevice implements UsbDeviceLike {
  readonly vendorId: number;
  readonly productId: number;
  readonly manufacturerName: string | undefined;
  readonly productName: string | undefined;
  readonly serialNumber: string | undefined;
  readonly #device: NativeUsbDeviceLike;

  constructor(device: NativeUsbDeviceLike) {
    this.#device = device;
    this.vendorId = device.vendorId;
    this.productId = device.productId;
    this.manufacturerName = safeString(() => device.manufacturerName);
    this.productName = safeString(() => device.productName);
    this.serialNumber = safeString(() => device.serialNumber);
  }

  get opened(): boolean {
    return this.#device.opened;
  }

  get configuration(): { readonly interfaces: readonly UsbInterfaceLike[] } | null | undefined {
    return this.#device.configuration;
  }

  open(): Promise<void> {
    return this.#device.open();
  }

  close(): Promise<void> {
    return this.#device.close();
  }

  selectConfiguration(configurationValue: number): Promise<void> {
    return this.#device.selectConfiguration(configurationValue);
  }

  claimInterface(interfaceNumber: number): Promise<void> {
    return this.#device.claimInterface(interfaceNumber);
  }

  releaseInterface(interfaceNumber: number): Promise<void> {
    return this.#device.releaseInterface(interfaceNumber);
  }

  transferIn(endpointNumber: number, length: number): Promise<UsbInTransferResult> {
    return this.#device.transferIn(endpointNumber, length);
  }

  transferOut(endpointNumber: number, data: Uint8Array): Promise<UsbOutTransferResult> {
    return this.#device.transferOut(endpointNumber, data);
  }
}
