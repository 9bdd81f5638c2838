import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { firstValueFrom, toArray, take, type Subscription } from 'rxjs';
import {
  ErrorCode,
  createNativeUsbTransport,
  loadUsbBinding,
  silentLogger,
  type NativeUsbDeviceLike,
  type TaplineError,
  type UsbConnectionEventLike,
  type UsbDeviceEvent,
  type UsbModuleLike,
  type WebUsbLike,
} from '../src/index.js';

type Listener = (event: UsbConnectionEventLike) => void;

/** A WebUSB-shaped fake of `usb` 3.x's `usb` object. */
class FakeWebUsb implements WebUsbLike {
  devices: NativeUsbDeviceLike[] = [];
  listError: Error | undefined;
  lists = 0;
  readonly listeners = new Map<string, Set<Listener>>();

  getDevices(): Promise<readonly NativeUsbDeviceLike[]> {
    this.lists++;
    return this.listError ? Promise.reject(this.listError) : Promise.resolve([...this.devices]);
  }
  addEventListener(type: 'connect' | 'disconnect', listener: Listener): void {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type)!.add(listener);
  }
  removeEventListener(type: 'connect' | 'disconnect', listener: Listener): void {
    this.listeners.get(type)?.delete(listener);
  }
  get listenerCount(): number {
    return [...this.listeners.values()].reduce((n, s) => n + s.size, 0);
  }
  fire(type: 'connect' | 'disconnect', device: NativeUsbDeviceLike): void {
    for (const listener of this.listeners.get(type) ?? []) listener({ device });
  }
}

function nativeDevice(
  vendorId: number,
  productId: number,
  handle: string,
  strings: Partial<Record<'manufacturerName' | 'productName' | 'serialNumber', string | null>> = {},
): NativeUsbDeviceLike {
  const never = (): Promise<never> => Promise.reject(new Error('not in this test'));
  return {
    vendorId,
    productId,
    handle,
    manufacturerName: null,
    productName: null,
    serialNumber: null,
    ...strings,
    opened: false,
    configuration: null,
    open: never,
    close: never,
    selectConfiguration: never,
    claimInterface: never,
    releaseInterface: never,
    transferIn: never,
    transferOut: never,
  };
}

async function until(check: () => boolean, ms = 1000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((resolve) => setImmediate(resolve));
  }
}

describe('native USB transport', () => {
  it('reports a missing usb module as TRANSPORT_UNAVAILABLE saying what to install', async () => {
    const missing = Object.assign(new Error("Cannot find package 'usb'"), { code: 'ERR_MODULE_NOT_FOUND' });
    const transport = createNativeUsbTransport({ logger: silentLogger, loadBinding: () => Promise.reject(missing) });
    const error = await firstValueFrom(transport.devices$).catch((e: unknown) => e as TaplineError);
    expect(error).toMatchObject({ code: ErrorCode.TransportUnavailable });
    expect((error as TaplineError).message).toContain('install the optional dependency `usb`');
    expect((error as TaplineError).cause).toBe(missing);
  });

  it('reports a machine without a USB bus as TRANSPORT_UNAVAILABLE, and adds no listeners', async () => {
    const usb = new FakeWebUsb();
    usb.listError = Object.assign(new Error('getDevices error: /sys/bus/usb/devices/ not found (errno 2)'), {
      code: 'GenericFailure',
    });
    const transport = createNativeUsbTransport({ logger: silentLogger, loadBinding: () => Promise.resolve({ usb }) });
    const error = await firstValueFrom(transport.devices$).catch((e: unknown) => e as TaplineError);
    expect(error).toMatchObject({ code: ErrorCode.TransportUnavailable });
    expect((error as TaplineError).message).toContain('No USB bus is visible');
    expect((error as TaplineError).cause).toBe(usb.listError);
    expect(usb.listenerCount).toBe(0);
  });

  it('does not load the binding before devices$ is subscribed', async () => {
    let loads = 0;
    const usb = new FakeWebUsb();
    const transport = createNativeUsbTransport({
      logger: silentLogger,
      loadBinding: () => {
        loads++;
        return Promise.resolve({ usb });
      },
    });
    expect(loads).toBe(0);
    const subscription = transport.devices$.subscribe();
    await until(() => usb.listenerCount === 2);
    expect(loads).toBe(1);
    subscription.unsubscribe();
  });

  it('lists present devices, follows connect and disconnect, and removes its listeners on unsubscribe', async () => {
    const usb = new FakeWebUsb();
    usb.devices = [nativeDevice(0x04e6, 0x5591, 'h1', { productName: 'SCL3711-NFC&RW', serialNumber: null })];
    const transport = createNativeUsbTransport({ logger: silentLogger, loadBinding: () => Promise.resolve({ usb }) });
    const events: UsbDeviceEvent[] = [];
    const subscription: Subscription = transport.devices$.subscribe((e) => events.push(e));
    await until(() => usb.lists === 2);
    expect(events).toHaveLength(1);
    const first = events[0]!;
    expect(first.type).toBe('attached');
    expect(first.device).toMatchObject({ vendorId: 0x04e6, productId: 0x5591, productName: 'SCL3711-NFC&RW' });
    // `usb` gives null for absent strings; drivers see undefined.
    expect(first.device.serialNumber).toBeUndefined();
    expect(first.device.manufacturerName).toBeUndefined();

    const second = nativeDevice(0x04cc, 0x2533, 'h2');
    usb.fire('connect', second);
    usb.fire('connect', second);
    usb.fire('disconnect', nativeDevice(0x04e6, 0x5591, 'h1'));
    expect(events.map((e) => `${e.type} ${e.device.vendorId.toString(16)}:${e.device.productId.toString(16)}`)).toEqual(
      ['attached 4e6:5591', 'attached 4cc:2533', 'detached 4e6:5591'],
    );
    // The detach carries the very object that was attached, so names built from it match.
    expect(events[2]!.device).toBe(first.device);

    subscription.unsubscribe();
    expect(usb.listenerCount).toBe(0);
  });

  it('catches a device plugged in between the first listing and the listeners', async () => {
    const usb = new FakeWebUsb();
    const late = nativeDevice(0x1fd3, 0x0608, 'h3');
    const original = usb.getDevices.bind(usb);
    usb.getDevices = () => {
      const result = original();
      usb.devices = [late];
      return result;
    };
    const transport = createNativeUsbTransport({ logger: silentLogger, loadBinding: () => Promise.resolve({ usb }) });
    const events = await firstValueFrom(transport.devices$.pipe(take(1), toArray()));
    expect(events[0]).toMatchObject({ type: 'attached', device: { vendorId: 0x1fd3, productId: 0x0608 } });
  });
});

describe('native USB transport: the real usb module', () => {
  it('reports that this machine has no USB bus', async (context) => {
    if (existsSync('/sys/bus/usb/devices')) {
      context.skip('this machine has a USB bus; the no-bus case cannot be observed here');
      return;
    }
    let binding: UsbModuleLike | undefined;
    let loadError: unknown;
    try {
      binding = await loadUsbBinding();
    } catch (error) {
      loadError = error;
    }
    if (!binding) {
      if (process.env['CI']) throw loadError;
      context.skip(`the usb module cannot be loaded here: ${(loadError as Error).message}`);
      return;
    }
    const transport = createNativeUsbTransport({ logger: silentLogger, loadBinding: () => Promise.resolve(binding) });
    const error = await firstValueFrom(transport.devices$).catch((e: unknown) => e as TaplineError);
    expect(error).toMatchObject({ code: ErrorCode.TransportUnavailable });
    expect((error as TaplineError).message).toContain('No USB bus is visible');
    expect(String(((error as TaplineError).cause as Error).message)).toContain('/sys/bus/usb');
    // `usb` would reject an unguarded scan if a listener had been added; give such a rejection time to surface.
    await new Promise((resolve) => setTimeout(resolve, 50));
  });
});
