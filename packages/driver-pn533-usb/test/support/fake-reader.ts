import type { AttachedDevice, Reader } from '@tapline/core';
import { testDriverContext } from '@tapline/core/testing';
import {
  FakeUsbDevice,
  Pn533Emulator,
  type FakeUsbDeviceOptions,
  type Pn533EmulatorOptions,
  type VirtualChip,
} from '@tapline/test-fixtures';
import { createPn533UsbDriver } from '../../src/index.js';

/** The attached-device record the USB device source would make for `device`. */
export function attachedUsb(device: FakeUsbDevice): AttachedDevice {
  return {
    transport: 'usb',
    name: `${device.manufacturerName ?? ''} ${device.productName ?? ''} (04e6:5591)`.trim(),
    vendorId: device.vendorId,
    productId: device.productId,
    port: device,
  };
}

/** A fast-polling driver for tests. */
export const testDriver = createPn533UsbDriver({ pollIntervalMs: 20, ackTimeoutMs: 200 });

/** What {@link openFakeReader} returns. */
export interface FakeReader {
  readonly emulator: Pn533Emulator;
  readonly device: FakeUsbDevice;
  readonly reader: Reader;
}

/** Opens the driver on a fake PN533 with `chip` in its field. */
export async function openFakeReader(
  chip?: VirtualChip,
  options: { emulator?: Pn533EmulatorOptions; device?: FakeUsbDeviceOptions; timeoutMs?: number } = {},
): Promise<FakeReader> {
  const emulator = new Pn533Emulator(chip, options.emulator);
  const device = new FakeUsbDevice(emulator, options.device);
  const reader = await testDriver.open(
    attachedUsb(device),
    testDriverContext({ timeoutMs: options.timeoutMs ?? 1000 }),
  );
  return { emulator, device, reader };
}

/** Resolves after `ms`. */
export const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `condition` holds, polling every 5 ms; fails after `timeoutMs` so that no test hangs. */
export async function until(condition: () => boolean, timeoutMs = 1000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms`);
    await delay(5);
  }
}
