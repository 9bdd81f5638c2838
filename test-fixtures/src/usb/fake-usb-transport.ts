import { Observable, Subject } from 'rxjs';
import type {
  UsbDeviceEvent,
  UsbDeviceLike,
  UsbInTransferResult,
  UsbInterfaceLike,
  UsbOutTransferResult,
  UsbTransport,
} from '@tapline/core';
import type { FakeUsbDevice } from './fake-usb-device.js';

/**
 * The device as the native transport hands it out: its strings read once, at attach time (a PN533 may lose them
 * later), so that the detach event names it as the attach event did; everything else goes to the fake.
 */
class AttachedUsbDevice implements UsbDeviceLike {
  readonly vendorId: number;
  readonly productId: number;
  readonly manufacturerName: string | undefined;
  readonly productName: string | undefined;
  readonly serialNumber: string | undefined;

  constructor(readonly device: FakeUsbDevice) {
    this.vendorId = device.vendorId;
    this.productId = device.productId;
    this.manufacturerName = device.manufacturerName;
    this.productName = device.productName;
    this.serialNumber = device.serialNumber;
  }

  get opened(): boolean {
    return this.device.opened;
  }

  get configuration(): { readonly interfaces: readonly UsbInterfaceLike[] } | null {
    return this.device.configuration;
  }

  open(): Promise<void> {
    return this.device.open();
  }

  close(): Promise<void> {
    return this.device.close();
  }

  selectConfiguration(value: number): Promise<void> {
    return this.device.selectConfiguration(value);
  }

  claimInterface(interfaceNumber: number): Promise<void> {
    return this.device.claimInterface(interfaceNumber);
  }

  releaseInterface(interfaceNumber: number): Promise<void> {
    return this.device.releaseInterface(interfaceNumber);
  }

  transferIn(endpointNumber: number, length: number): Promise<UsbInTransferResult> {
    return this.device.transferIn(endpointNumber, length);
  }

  transferOut(endpointNumber: number, data: Uint8Array): Promise<UsbOutTransferResult> {
    return this.device.transferOut(endpointNumber, data);
  }
}

/** A {@link UsbTransport} over fake devices, with hot-plug. Inject it with `createContainer({ usbTransport })`. */
export interface FakeUsbTransport extends UsbTransport {
  /** The devices plugged in now. */
  readonly devices: readonly FakeUsbDevice[];
  /** Plugs `device` in (the `usb` binding's `connect` event). */
  plug(device: FakeUsbDevice): void;
  /** Unplugs `device`: its transfers fail and subscribers see it detach (the `disconnect` event). */
  unplug(device: FakeUsbDevice): void;
}

/**
 * A USB transport whose bus holds `devices`. Like the native one, `devices$` is cold: each subscription first gets
 * every present device as attached, then follows {@link FakeUsbTransport.plug} and unplugging (also when a test calls
 * `device.disconnect()` directly).
 */
export function fakeUsbTransport(devices: readonly FakeUsbDevice[] = []): FakeUsbTransport {
  const present: FakeUsbDevice[] = [];
  const attached = new Map<FakeUsbDevice, AttachedUsbDevice>();
  const events = new Subject<UsbDeviceEvent>();
  const unwatch = new Map<FakeUsbDevice, () => void>();

  const plug = (device: FakeUsbDevice): void => {
    if (present.includes(device) || !device.connected) return;
    present.push(device);
    unwatch.set(
      device,
      device.onDisconnect(() => {
        const index = present.indexOf(device);
        if (index < 0) return;
        present.splice(index, 1);
        unwatch.get(device)?.();
        unwatch.delete(device);
        const handle = attached.get(device);
        attached.delete(device);
        if (handle) events.next({ type: 'detached', device: handle });
      }),
    );
    const handle = new AttachedUsbDevice(device);
    attached.set(device, handle);
    events.next({ type: 'attached', device: handle });
  };

  for (const device of devices) plug(device);

  const devices$ = new Observable<UsbDeviceEvent>((subscriber) => {
    const live = events.subscribe(subscriber);
    for (const device of [...present]) {
      const handle = attached.get(device);
      if (handle) subscriber.next({ type: 'attached', device: handle });
    }
    return live;
  });

  return {
    devices$,
    get devices() {
      return [...present];
    },
    plug,
    unplug: (device) => device.disconnect(),
  };
}
