import { afterEach, describe, expect, it } from 'vitest';
import {
  Capability,
  PN53X_ACK_FRAME,
  PN53X_ERROR_FRAME,
  PN53X_NACK_FRAME,
  buildInformationFrame,
  crcA,
  fromHex,
  parseFrame,
  type Pn53xFrame,
  type TagInfo,
  type UsbInTransferResult,
} from '@tapline/core';
import { FakeUsbDevice, Pn533Emulator, createVirtualChip, type VirtualChip } from '../src/index.js';

const hex = (text: string): Uint8Array => fromHex(text.replace(/\s+/g, ''));
const cmd = (text: string): Uint8Array => buildInformationFrame(Uint8Array.of(0xd4, ...hex(text)));

const devices: FakeUsbDevice[] = [];
async function host(emulator: Pn533Emulator): Promise<FakeUsbDevice> {
  const device = new FakeUsbDevice(emulator, { corruptStrings: false });
  devices.push(device);
  await device.open();
  await device.claimInterface(0);
  return device;
}

afterEach(async () => {
  for (const device of devices.splice(0)) await device.close();
});

/** A read outliving a `silence` verdict stays pending and serves the next call, as a WebUSB read would. */
const pendingReads = new WeakMap<FakeUsbDevice, Promise<UsbInTransferResult>>();

async function readBytes(device: FakeUsbDevice, timeoutMs = 200): Promise<Uint8Array | 'silence'> {
  const pending = pendingReads.get(device) ?? device.transferIn(4, 512);
  pendingReads.set(device, pending);
  const result = await Promise.race([
    pending,
    new Promise<'silence'>((resolve) => setTimeout(() => resolve('silence'), timeoutMs)),
  ]);
  if (result === 'silence') return result;
  pendingReads.delete(device);
  const view = result.data!;
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

async function read(device: FakeUsbDevice, timeoutMs = 200): Promise<Pn53xFrame | 'silence'> {
  const bytes = await readBytes(device, timeoutMs);
  return bytes === 'silence' ? bytes : parseFrame(bytes);
}

/** Sends `D4 <text>` and returns the payload of the answer after the ACK. */
async function command(device: FakeUsbDevice, text: string): Promise<Uint8Array> {
  await device.transferOut(4, cmd(text));
  expect(await read(device)).toEqual({ type: 'ack' });
  const answer = await read(device);
  if (answer === 'silence' || answer.type !== 'information') throw new Error(`no answer to ${text}`);
  return answer.payload;
}

const info = (overrides: Partial<TagInfo>): TagInfo => ({
  technology: 'iso14443a',
  uid: hex('04 11 22 33 44 55 66'),
  protocols: [Capability.Iso14443aRaw],
  ...overrides,
});

describe('Pn533Emulator', () => {
  it('answers GetFirmwareVersion with ACK, then PN533 v2.7 (readers.md §6 vector 6)', async () => {
    const usb = await host(new Pn533Emulator());
    await usb.transferOut(4, hex('00 00 FF 02 FE D4 02 2A 00'));
    expect(await readBytes(usb)).toEqual(PN53X_ACK_FRAME);
    expect(await readBytes(usb)).toEqual(hex('00 00 FF 06 FA D5 03 33 02 07 07 E5 00'));
  });

  it('resends its last frame on NACK', async () => {
    const usb = await host(new Pn533Emulator());
    expect(await command(usb, '02')).toEqual(hex('D5 03 33 02 07 07'));
    await usb.transferOut(4, PN53X_NACK_FRAME);
    expect(await read(usb)).toEqual({ type: 'information', payload: hex('D5 03 33 02 07 07'), extended: false });
  });

  it('answers a frame with a bad checksum, or an unknown command, with the error frame', async () => {
    const usb = await host(new Pn533Emulator());
    await usb.transferOut(4, hex('00 00 FF 02 FE D4 02 2B 00'));
    expect(await read(usb)).toEqual({ type: 'error', errorCode: 0x7f });
    await usb.transferOut(4, cmd('14 01'));
    expect(await read(usb)).toEqual({ type: 'ack' });
    expect(await read(usb)).toEqual({ type: 'error', errorCode: 0x7f });
    expect(PN53X_ERROR_FRAME).toEqual(hex('00 00 FF 01 FF 7F 81 00'));
  });

  it('stops a running command on the host ACK: no answer follows', async () => {
    const emulator = new Pn533Emulator(undefined, { latencyMs: 30 });
    const usb = await host(emulator);
    await usb.transferOut(4, cmd('02'));
    expect(await read(usb)).toEqual({ type: 'ack' });
    await usb.transferOut(4, PN53X_ACK_FRAME);
    expect(await read(usb, 80)).toBe('silence');
    expect(emulator.busy).toBe(false);
  });

  it('with the default infinite retries a poll without tag never ends; with one retry it reports none', async () => {
    const emulator = new Pn533Emulator();
    const usb = await host(emulator);
    await usb.transferOut(4, cmd('4A 01 00'));
    expect(await read(usb)).toEqual({ type: 'ack' });
    expect(await read(usb, 60)).toBe('silence');
    await usb.transferOut(4, PN53X_ACK_FRAME);
    expect(await command(usb, '32 05 01 00 01')).toEqual(hex('D5 33'));
    expect(await command(usb, '4A 01 00')).toEqual(hex('D5 4B 00'));
  });

  it("lists a Spark 2 with SENS_RES in the PN53x's byte order and the ATS after AutoRATS", async () => {
    const chip = createVirtualChip('spark2');
    const usb = await host(new Pn533Emulator(chip));
    await command(usb, '32 05 01 00 01');
    await command(usb, '12 14');
    const uid = chip.info.uid;
    expect(await command(usb, '4A 01 00')).toEqual(
      Uint8Array.of(...hex('D5 4B 01 01 03 44 20 07'), ...uid, ...hex('06 77 77 71 02 80')),
    );
    // ISO-DEP through InDataExchange: SELECT of the NDEF application.
    const select = await command(usb, '40 01 00 A4 04 00 07 D2 76 00 00 85 01 01 00');
    expect(select.subarray(0, 3)).toEqual(hex('D5 41 00'));
    expect(select.subarray(-2)).toEqual(hex('90 00'));
    expect(await command(usb, '00 06')).toEqual(hex('D5 01 00'));
  });

  it('without AutoRATS lists the same chip without ATS', async () => {
    const usb = await host(new Pn533Emulator(createVirtualChip('spark2')));
    await command(usb, '32 05 01 00 01');
    const answer = await command(usb, '4A 01 00');
    expect(answer.length).toBe(2 + 1 + 1 + 2 + 1 + 1 + 7);
  });

  it('filters a 106A poll by the cascaded UID given as initiator data', async () => {
    const chip = createVirtualChip('ntag215');
    const usb = await host(new Pn533Emulator(chip));
    await command(usb, '32 05 01 00 01');
    const cascaded = Buffer.from([0x88, ...chip.info.uid]).toString('hex');
    expect((await command(usb, `4A 01 00 ${cascaded}`))[2]).toBe(1);
    expect(await command(usb, '4A 01 00 88 01 02 03 04 05 06 07')).toEqual(hex('D5 4B 00'));
  });

  it('handles RX-CRC as CIU_RxMode says: stripped when on, appended (CRC_A) when off; 4-bit ACK as CRC error when on', async () => {
    const chip = createVirtualChip('ntag215');
    const emulator = new Pn533Emulator(chip);
    const usb = await host(emulator);
    await command(usb, '32 05 01 00 01');
    await command(usb, '4A 01 00');
    const page0 = await command(usb, '42 30 00');
    expect(page0.subarray(0, 3)).toEqual(hex('D5 43 00'));
    expect(page0.length).toBe(3 + 16);
    expect(await command(usb, '42 A2 04 01 02 03 04')).toEqual(hex('D5 43 02'));
    expect(await command(usb, '08 63 03 00')).toEqual(hex('D5 09 00'));
    expect(emulator.register(0x6303)).toBe(0x00);
    const withCrc = await command(usb, '42 30 00');
    const data = withCrc.subarray(3, 19);
    expect(withCrc.subarray(19)).toEqual(crcA(data));
    expect(await command(usb, '42 A2 04 01 02 03 04')).toEqual(hex('D5 43 00 0A'));
    expect(await command(usb, '06 63 03')).toEqual(hex('D5 07 00 00'));
  });

  it('reports status 01 when the tag has left, and 27 when there is no target', async () => {
    const emulator = new Pn533Emulator(createVirtualChip('spark2'));
    const usb = await host(emulator);
    await command(usb, '32 05 01 00 01');
    await command(usb, '12 14');
    await command(usb, '4A 01 00');
    emulator.remove();
    expect(await command(usb, '40 01 00 A4 04 00 00')).toEqual(hex('D5 41 01'));
    expect(await command(usb, '00 06')).toEqual(hex('D5 01 01'));
    expect(await command(usb, '52 00')).toEqual(hex('D5 53 00'));
    expect(await command(usb, '40 01 00')).toEqual(hex('D5 41 27'));
    expect(await command(usb, '00 06')).toEqual(hex('D5 01 27'));
  });

  it('chains answers longer than 262 bytes with MI', async () => {
    const big: VirtualChip = {
      info: info({ sak: 0x20, ats: hex('75 77 81 02 80'), protocols: [Capability.Iso14443_4] }),
      handle: () => Uint8Array.of(...new Uint8Array(300).fill(0x5a), 0x90, 0x00),
    };
    const usb = await host(new Pn533Emulator(big));
    await command(usb, '32 05 01 00 01');
    await command(usb, '12 10');
    await command(usb, '4A 01 00');
    const first = await command(usb, '40 01 00 B0 00 00 00');
    expect(first.subarray(0, 3)).toEqual(hex('D5 41 40'));
    expect(first.length).toBe(3 + 262);
    const rest = await command(usb, '40 01');
    expect(rest.subarray(0, 3)).toEqual(hex('D5 41 00'));
    expect(rest.length).toBe(3 + 40);
  });

  it('runs Type B: ATTRIB by the firmware, S(DESELECT) and WUPB back to READY, raw frames to the chip', async () => {
    const seen: string[] = [];
    const chipB: VirtualChip = {
      info: info({
        technology: 'iso14443b',
        uid: hex('11 22 33 44'),
        protocols: [Capability.Iso14443_4, Capability.Iso14443b],
      }),
      handle: (capability, frame) => {
        seen.push(`${capability}:${Buffer.from(frame).toString('hex')}`);
        return capability === Capability.Iso14443_4 ? hex('90 00') : hex('AB');
      },
    };
    const usb = await host(new Pn533Emulator(chipB));
    await command(usb, '32 05 01 00 01');
    expect(await command(usb, '4A 01 03 00')).toEqual(hex('D5 4B 01 01 50 11 22 33 44 00 00 00 00 00 81 80 01 00'));
    expect(await command(usb, '40 01 00 B2 01 04 1D')).toEqual(hex('D5 41 00 90 00'));
    expect(await command(usb, '42 C2')).toEqual(hex('D5 43 00 C2'));
    expect(await command(usb, '42 05 00 08')).toEqual(hex('D5 43 00 50 11 22 33 44 00 00 00 00 00 81 80'));
    expect(await command(usb, '42 1D 11 22 33 44')).toEqual(hex('D5 43 00 AB'));
    expect(seen).toEqual(['iso14443-4:00b201041d', 'iso14443b:1d11223344']);
  });

  it('polls FeliCa with SENSF_REQ and passes frames with their length byte', async () => {
    const idm = hex('01 2E 3D 4C 5B 6A 79 88');
    const chipF: VirtualChip = {
      info: info({ technology: 'felica', uid: idm, protocols: [Capability.Felica] }),
      handle: (_c, frame) => Uint8Array.of(frame.length, frame[1]! + 1, ...idm),
    };
    const usb = await host(new Pn533Emulator(chipF));
    await command(usb, '32 05 01 00 01');
    expect(await command(usb, '4A 01 03 00')).toEqual(hex('D5 4B 00'));
    const polled = await command(usb, '4A 01 01 00 FF FF 01 00');
    expect(polled).toEqual(Uint8Array.of(...hex('D5 4B 01 01 14 01'), ...idm, ...hex('01 20 22 04 27 67 4E FF 12 FC')));
    expect(await command(usb, `42 0A 06 ${Buffer.from(idm).toString('hex')}`)).toEqual(
      Uint8Array.of(...hex('D5 43 00 0A 07'), ...idm),
    );
  });

  it('never lists an ISO 15693 chip (Spark 1): the PN533 cannot see it', async () => {
    const usb = await host(new Pn533Emulator(createVirtualChip('spark1')));
    await command(usb, '32 05 01 00 01');
    for (const brTy of ['00', '03 00', '01 00 FF FF 01 00'])
      expect(await command(usb, `4A 01 ${brTy}`)).toEqual(hex('D5 4B 00'));
  });

  it('applies injected faults: corrupt answer, answer without ACK, ignored command, hang', async () => {
    const emulator = new Pn533Emulator();
    const usb = await host(emulator);
    emulator.inject('corrupt-answer');
    await usb.transferOut(4, cmd('02'));
    expect(await read(usb)).toEqual({ type: 'ack' });
    const bad = await readBytes(usb);
    expect(() => parseFrame(bad as Uint8Array)).toThrow();
    await usb.transferOut(4, PN53X_NACK_FRAME);
    expect(await read(usb)).toMatchObject({ type: 'information' });

    emulator.inject('answer-without-ack');
    await usb.transferOut(4, cmd('02'));
    expect(await read(usb)).toMatchObject({ type: 'information' });

    emulator.inject('ignore-command');
    await usb.transferOut(4, cmd('02'));
    expect(await read(usb, 50)).toBe('silence');

    emulator.inject('hang');
    await usb.transferOut(4, cmd('02'));
    expect(await read(usb)).toEqual({ type: 'ack' });
    expect(await read(usb, 50)).toBe('silence');
    expect(emulator.commands.length).toBe(3);
  });

  it('ignores the first command after power-up when asked to (the start-up quirk)', async () => {
    const emulator = new Pn533Emulator(undefined, { loseFirstCommand: true });
    const usb = await host(emulator);
    await usb.transferOut(4, cmd('02'));
    expect(await read(usb, 50)).toBe('silence');
    expect(await command(usb, '02')).toEqual(hex('D5 03 33 02 07 07'));
  });
});
