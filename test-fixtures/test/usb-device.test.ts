import { describe, expect, it } from 'vitest';
import { firstValueFrom, take, toArray } from 'rxjs';
import { buildInformationFrame, type UsbDeviceEvent } from '@tapline/core';
import { FakeUsbDevice, Pn533Emulator, fakeUsbTransport } from '../src/index.js';

const GET_FIRMWARE = buildInformationFrame(Uint8Array.of(0xd4, 0x02));

async function ready(device: FakeUsbDevice): Promise<FakeUsbDevice> {
  await device.open();
  await device.claimInterface(0);
  return device;
}

describe('FakeUsbDevice', () => {
  it('describes one vendor interface with bulk endpoints 0x04 and 0x84', () => {
    const device = new FakeUsbDevice();
    expect(device.configuration?.interfaces).toEqual([
      {
        interfaceNumber: 0,
        claimed: false,
        alternate: {
          endpoints: [
            { endpointNumber: 4, direction: 'in', type: 'bulk', packetSize: 64 },
            { endpointNumber: 4, direction: 'out', type: 'bulk', packetSize: 64 },
          ],
        },
      },
    ]);
    expect([device.vendorId, device.productId, device.manufacturerName]).toEqual([0x04e6, 0x5591, 'SCM Micro']);
    expect(new FakeUsbDevice(undefined, { configured: false }).configuration).toBeNull();
    expect(new FakeUsbDevice(undefined, { missingDescriptors: true }).configuration?.interfaces).toEqual([]);
  });

  it('refuses transfers before open and claim, and claims that another driver holds', async () => {
    const device = new FakeUsbDevice();
    await expect(device.transferOut(4, GET_FIRMWARE)).rejects.toThrow(/opened/);
    await device.open();
    await expect(device.transferIn(4, 64)).rejects.toThrow(/claimed/);
    const kernel = new FakeUsbDevice(undefined, { heldBy: 'kernel' });
    await kernel.open();
    await expect(kernel.claimInterface(0)).rejects.toThrow(/busy/i);
    const pcscd = new FakeUsbDevice(undefined, { heldBy: 'pcscd' });
    await pcscd.open();
    await expect(pcscd.claimInterface(0)).rejects.toThrow(/LIBUSB_ERROR_BUSY/);
    await expect(new FakeUsbDevice(undefined, { permissionDenied: true }).open()).rejects.toThrow(/Permission denied/);
  });

  it('delivers a write that fills its last packet only after the zero-length packet', async () => {
    const emulator = new Pn533Emulator();
    const device = await ready(new FakeUsbDevice(emulator));
    // D4 00 + 55 bytes = 57 payload bytes = a 64-byte frame.
    const frame = buildInformationFrame(Uint8Array.of(0xd4, 0x00, 0x00, ...new Uint8Array(54).fill(0x41)));
    expect(frame.length).toBe(64);
    await device.transferOut(4, frame);
    expect(emulator.commands).toEqual([]);
    await device.transferOut(4, new Uint8Array(0));
    expect(emulator.commands.length).toBe(1);
    expect(device.writes.map((w) => w.length)).toEqual([64, 0]);
    await device.close();
  });

  it('hands out long frames in pieces when the read is short, and times out idle reads like usb 3.x', async () => {
    const device = await ready(new FakeUsbDevice(new Pn533Emulator(), { readTimeoutMs: 20 }));
    await device.transferOut(4, GET_FIRMWARE);
    const ack = await device.transferIn(4, 64);
    expect(ack.data?.byteLength).toBe(6);
    const head = await device.transferIn(4, 5);
    const tail = await device.transferIn(4, 64);
    expect([head.data?.byteLength, tail.data?.byteLength]).toEqual([5, 8]);
    await expect(device.transferIn(4, 64)).rejects.toThrow(/timed out/);
    await device.close();
  });

  it('fails pending and later transfers when unplugged, and can fail one read on demand', async () => {
    const device = await ready(new FakeUsbDevice(new Pn533Emulator()));
    device.failNextTransferIn(new Error('LIBUSB_ERROR_IO'));
    await expect(device.transferIn(4, 64)).rejects.toThrow(/LIBUSB_ERROR_IO/);
    const pending = device.transferIn(4, 64);
    device.disconnect();
    await expect(pending).rejects.toThrow(/NO_DEVICE/);
    await expect(device.transferOut(4, GET_FIRMWARE)).rejects.toThrow(/NO_DEVICE/);
    expect(device.connected).toBe(false);
  });

  it('loses its strings after the first frame longer than 17 bytes, as a PN533 does', async () => {
    const device = await ready(new FakeUsbDevice(new Pn533Emulator()));
    await device.transferOut(4, GET_FIRMWARE);
    expect(device.productName).toBe('SCL3711-NFC&RW');
    await device.transferOut(4, buildInformationFrame(Uint8Array.of(0xd4, 0x00, 0x00, ...new Uint8Array(12))));
    expect([device.manufacturerName, device.productName]).toEqual([undefined, undefined]);
    await device.close();
  });

  it('counts opens, closes, claims and releases', async () => {
    const device = await ready(new FakeUsbDevice());
    await device.releaseInterface(0);
    await device.close();
    expect(device.stats).toEqual({ opens: 1, closes: 1, claims: 1, releases: 1 });
  });
});

describe('fakeUsbTransport', () => {
  it('lists present devices to every subscriber, then follows plugging and unplugging', async () => {
    const first = new FakeUsbDevice();
    const second = new FakeUsbDevice(undefined, { productId: 0x5594 });
    const transport = fakeUsbTransport([first]);
    const seen = firstValueFrom(transport.devices$.pipe(take(4), toArray()));
    transport.plug(second);
    transport.unplug(first);
    second.disconnect();
    const events: UsbDeviceEvent[] = await seen;
    expect(events.map((e) => `${e.type}:${e.device.productId.toString(16)}`)).toEqual([
      'attached:5591',
      'attached:5594',
      'detached:5591',
      'detached:5594',
    ]);
    expect(transport.devices).toEqual([]);
    // Like the native transport: one handle per attachment, its strings read at attach time.
    expect(events[2]!.device).toBe(events[0]!.device);
    expect(events[0]!.device.productName).toBe('SCL3711-NFC&RW');
    // An unplugged device never shows up again.
    expect(fakeUsbTransport([second]).devices).toEqual([]);
  });
});
