/**
 * Opening a PN533 on USB: claim conflicts with the kernel driver or pcscd, permissions, configuration and
 * descriptor quirks, start-up failures, and release of everything on every path.
 */
import { describe, expect, it } from 'vitest';
import { ErrorCode, type AttachedDevice, type TaplineError, type UsbDeviceLike } from '@tapline/core';
import { scriptedPcsc, testDriverContext } from '@tapline/core/testing';
import { FakeUsbDevice, Pn533Emulator, createVirtualChip } from '@tapline/test-fixtures';
import { STOP_PCSCD, UNLOAD_KERNEL_DRIVER, findBulkEndpoints, readUsbStrings } from '../src/index.js';
import { attachedUsb, testDriver } from './support/fake-reader.js';

const context = testDriverContext({ timeoutMs: 1000 });

async function openFailure(device: FakeUsbDevice | AttachedDevice): Promise<TaplineError> {
  const attached = device instanceof FakeUsbDevice ? attachedUsb(device) : device;
  return testDriver.open(attached, context).then(
    async (reader) => {
      await reader.close();
      throw new Error('expected open to fail');
    },
    (error: unknown) => error as TaplineError,
  );
}

function released(device: FakeUsbDevice): void {
  expect(device.opened).toBe(false);
  expect(device.claimed).toBe(false);
  expect(device.stats.opens).toBe(device.stats.closes);
  expect(device.stats.claims).toBe(device.stats.releases);
}

describe('opening a PN533 on USB', () => {
  it('held by the pn533 kernel module: TRANSPORT_UNAVAILABLE with the modprobe fix, device closed again', async () => {
    const device = new FakeUsbDevice(new Pn533Emulator(), { heldBy: 'kernel' });
    const error = await openFailure(device);
    expect(error).toMatchObject({ code: ErrorCode.TransportUnavailable, details: { reason: 'device-busy' } });
    expect(error.message).toContain('sudo modprobe -r pn533_usb pn533');
    expect(error.message).toContain('blacklist pn533_usb');
    expect(error.hint).toContain(UNLOAD_KERNEL_DRIVER);
    expect(error.hint).toContain('docs/drivers/pn533-usb.md');
    released(device);
  });

  it('held by pcscd: the same error, naming how to stop pcscd', async () => {
    const device = new FakeUsbDevice(new Pn533Emulator(), { heldBy: 'pcscd' });
    const error = await openFailure(device);
    expect(error.code).toBe(ErrorCode.TransportUnavailable);
    expect(error.message).toContain(STOP_PCSCD);
    expect(error.hint).toContain(STOP_PCSCD);
    released(device);
  });

  it.each([
    'Access denied (insufficient permissions)',
    'claimInterface error: interface is busy',
    'claimInterface error: failed to claim interface: Device or resource busy (os error 16)',
  ])('"%s" from claimInterface counts as held by another driver', async (message) => {
    const device = new FakeUsbDevice(new Pn533Emulator(), { heldBy: new Error(message) });
    await expect(openFailure(device)).resolves.toMatchObject({ details: { reason: 'device-busy' } });
  });

  it('no permission: TRANSPORT_UNAVAILABLE with a udev rule for the device', async () => {
    const device = new FakeUsbDevice(new Pn533Emulator(), { permissionDenied: true });
    const error = await openFailure(device);
    expect(error).toMatchObject({ code: ErrorCode.TransportUnavailable, details: { reason: 'permission' } });
    expect(error.hint).toContain('ATTRS{idVendor}=="04e6", ATTRS{idProduct}=="5591"');
    released(device);
  });

  it('selects configuration 1 on an unconfigured device, and falls back to 0x04/0x84 without descriptors', async () => {
    for (const options of [{ configured: false }, { missingDescriptors: true }]) {
      const device = new FakeUsbDevice(new Pn533Emulator(createVirtualChip('spark2')), options);
      const reader = await testDriver.open(attachedUsb(device), context);
      expect(device.configuration).not.toBeNull();
      expect(device.claimed).toBe(true);
      await reader.close();
      released(device);
    }
    expect(findBulkEndpoints(new FakeUsbDevice(undefined, { missingDescriptors: true }))).toEqual({
      interfaceNumber: 0,
      in: 4,
      out: 4,
      packetSize: 64,
    });
  });

  it('starts although the first command after the ACK is lost (GetFirmwareVersion resync)', async () => {
    const emulator = new Pn533Emulator(undefined, { loseFirstCommand: true });
    const device = new FakeUsbDevice(emulator);
    const reader = await testDriver.open(attachedUsb(device), context);
    expect(emulator.commands.slice(0, 2).map((c) => c[1])).toEqual([0x02, 0x12]);
    // The chip now polls with a bounded retry count (D4 32 05 01 00 01), never forever.
    expect(emulator.commands.some((c) => Buffer.from(c).toString('hex') === 'd43205010001')).toBe(true);
    await reader.close();
    released(device);
  });

  it('a chip that never answers fails with DRIVER_FAILED within the start-up budget, releasing everything', async () => {
    const emulator = new Pn533Emulator();
    for (let i = 0; i < 5; i++) emulator.inject('ignore-command');
    const device = new FakeUsbDevice(emulator);
    const started = performance.now();
    const error = await openFailure(device);
    expect(error.code).toBe(ErrorCode.DriverFailed);
    expect(error.cause).toMatchObject({ code: ErrorCode.Timeout });
    expect(performance.now() - started).toBeLessThan(3000);
    released(device);
  });

  it('a chip that is no PN533 is refused with DRIVER_FAILED', async () => {
    const device = new FakeUsbDevice(new Pn533Emulator(undefined, { firmware: Uint8Array.of(0x32, 0x01, 0x06, 0x07) }));
    const error = await openFailure(device);
    expect(error.code).toBe(ErrorCode.DriverFailed);
    expect(error.message).toContain('PN532 v1.6');
    released(device);
  });

  it('a device unplugged before it opens is READER_GONE', async () => {
    const device = new FakeUsbDevice(new Pn533Emulator());
    device.disconnect();
    await expect(openFailure(device)).resolves.toMatchObject({ code: ErrorCode.ReaderGone });
  });

  it('refuses a PC/SC device with INVALID_ARGUMENT', async () => {
    const name = 'SCM SCL011 00 00';
    const error = await openFailure({ transport: 'pcsc', name, port: scriptedPcsc().addReader(name).port });
    expect(error.code).toBe(ErrorCode.InvalidArgument);
  });

  it('reads the USB strings before the first PN53x command (the PN533 may corrupt them later)', async () => {
    const events: string[] = [];
    const device = new FakeUsbDevice(new Pn533Emulator());
    const spy = new Proxy(device, {
      get(target, property) {
        if (property === 'manufacturerName' || property === 'productName') events.push(`read ${property}`);
        if (property === 'transferOut') events.push('write');
        const value: unknown = Reflect.get(target, property, target);
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    }) as UsbDeviceLike;
    const attached: AttachedDevice = {
      transport: 'usb',
      name: 'spied PN533',
      vendorId: device.vendorId,
      productId: device.productId,
      port: spy,
    };
    const reader = await testDriver.open(attached, context);
    expect(events.indexOf('read manufacturerName')).toBeLessThan(events.indexOf('write'));
    expect(events.indexOf('read productName')).toBeLessThan(events.indexOf('write'));
    expect(readUsbStrings(device)).toEqual({ manufacturer: undefined, product: undefined, serialNumber: undefined });
    await reader.close();
  });
});
