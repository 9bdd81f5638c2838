/**
 * The PN533 reader through the fake WebUSB device and the PN533 emulator, with the virtual chips the simulator uses:
 * polling, tag data, every transmit path, removal, time-outs, device loss and release.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Capability, ErrorCode, fromHex, identifyTag, toHex, type Reader, type TagInfo } from '@tapline/core';
import { nextTagEvent } from '@tapline/core/testing';
import { createVirtualChip, type VirtualChip } from '@tapline/test-fixtures';
import { delay, openFakeReader, until, type FakeReader } from './support/fake-reader.js';

const opened: Reader[] = [];
async function open(...args: Parameters<typeof openFakeReader>): Promise<FakeReader> {
  const fake = await openFakeReader(...args);
  opened.push(fake.reader);
  return fake;
}

afterEach(async () => {
  for (const reader of opened.splice(0)) await reader.close();
});

const hex = (text: string): Uint8Array => fromHex(text.replace(/\s+/g, ''));
const commandsOf = (fake: FakeReader): string[] => fake.emulator.commands.map((c) => toHex(c).toUpperCase());

function testChip(
  info: Partial<TagInfo> & Pick<TagInfo, 'technology' | 'uid' | 'protocols'>,
  handle: VirtualChip['handle'],
): VirtualChip {
  return { info: { ...info }, handle };
}

describe('Pn53xReader over the PN533 emulator', () => {
  it('reports a Spark 2 with UID, ATQA, SAK, ATS and protocols, and carries APDUs (InDataExchange)', async () => {
    const chip = createVirtualChip('spark2');
    const fake = await open(chip);
    const tag = await nextTagEvent(fake.reader);
    expect(tag).toMatchObject({
      technology: 'iso14443a',
      uid: chip.info.uid,
      atqa: hex('44 03'),
      sak: 0x20,
      ats: hex('77 77 71 02 80'),
      protocols: [Capability.Iso14443_4, Capability.Iso14443aRaw],
    });
    const answer = await fake.reader.transmit(
      tag,
      Capability.Iso14443_4,
      hex('00 A4 04 00 07 D2 76 00 00 85 01 01 00'),
    );
    expect(answer.subarray(-2)).toEqual(hex('90 00'));
    await expect(identifyTag(tag, { detail: 'full' })).resolves.toMatchObject({
      chip: 'spark2',
      model: 'NTAG 424 DNA',
    });
  });

  it('reads and writes a Type 2 tag with raw frames: RX-CRC off, CRC_A checked, 4-bit ACK passed through', async () => {
    const fake = await open(createVirtualChip('ntag215'));
    const tag = await nextTagEvent(fake.reader);
    expect(tag).toMatchObject({ sak: 0x00, atqa: hex('44 00'), protocols: [Capability.Iso14443aRaw] });
    expect(tag.ats).toBeUndefined();
    const cc = await fake.reader.transmit(tag, Capability.Iso14443aRaw, hex('30 03'));
    expect(cc.length).toBe(16);
    expect(fake.emulator.register(0x6303) & 0x80).toBe(0);
    expect(commandsOf(fake)).toContain('D408630300');
    await expect(fake.reader.transmit(tag, Capability.Iso14443aRaw, hex('A2 04 DE AD BE EF'))).resolves.toEqual(
      hex('0A'),
    );
    const page4 = await fake.reader.transmit(tag, Capability.Iso14443aRaw, hex('30 04'));
    expect(page4.subarray(0, 4)).toEqual(hex('DE AD BE EF'));
    await expect(identifyTag(tag, { detail: 'full' })).resolves.toMatchObject({ chip: 'ntag21x', model: 'NTAG215' });
  });

  it('reports removal, and an exchange with the gone tag fails with TAG_LOST', async () => {
    const fake = await open(createVirtualChip('ntag215'));
    const tag = await nextTagEvent(fake.reader);
    const left = nextTagEvent(fake.reader, 'tag-left', 2000);
    fake.emulator.remove();
    await expect(left).resolves.toBe(tag);
    await expect(fake.reader.transmit(tag, Capability.Iso14443aRaw, hex('30 00'))).rejects.toMatchObject({
      code: ErrorCode.TagLost,
    });
    // The next tap is a new presence.
    fake.emulator.present(createVirtualChip('spark2'));
    const next = await nextTagEvent(fake.reader, 'tag-arrived', 2000);
    expect(next.id).not.toBe(tag.id);
  });

  it('a tag that leaves mid-exchange makes the exchange fail with TAG_LOST, not TIMEOUT', async () => {
    const fake = await open(createVirtualChip('spark2'));
    const tag = await nextTagEvent(fake.reader);
    fake.emulator.remove();
    await expect(
      fake.reader.transmit(tag, Capability.Iso14443_4, hex('00 A4 04 00 07 D2 76 00 00 85 01 01 00')),
    ).rejects.toMatchObject({ code: ErrorCode.TagLost });
    expect(fake.reader.currentTag).toBeUndefined();
  });

  it('a raw frame a layer-4 chip ignores is a TIMEOUT while the chip stays present', async () => {
    const fake = await open(createVirtualChip('spark2'));
    const tag = await nextTagEvent(fake.reader);
    await expect(fake.reader.transmit(tag, Capability.Iso14443aRaw, hex('60'))).rejects.toMatchObject({
      code: ErrorCode.Timeout,
    });
    expect(fake.reader.currentTag).toBe(tag);
  });

  it('refuses ISO 15693 with UNSUPPORTED_CAPABILITY naming readers that can read a Spark 1, and never sees one', async () => {
    const fake = await open(createVirtualChip('spark1'));
    await delay(120);
    expect(fake.reader.currentTag).toBeUndefined();
    expect(fake.reader.capabilities.has(Capability.Iso15693)).toBe(false);
    fake.emulator.present(createVirtualChip('spark2'));
    const tag = await nextTagEvent(fake.reader, 'tag-arrived', 2000);
    const error = await fake.reader.transmit(tag, Capability.Iso15693, hex('26 01 00')).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: ErrorCode.UnsupportedCapability });
    expect(String((error as Error).message)).toMatch(/ISO 15693/);
    expect((error as { hint: string }).hint).toMatch(/uTrust 3720 F or 3721 F/);
  });

  it('runs Type B: ISO-DEP through the firmware, raw frames after undoing its ATTRIB, ISO-DEP again after', async () => {
    const seen: string[] = [];
    const chip = testChip(
      { technology: 'iso14443b', uid: hex('11 22 33 44'), protocols: [Capability.Iso14443_4, Capability.Iso14443b] },
      (capability, frame) => {
        seen.push(`${capability}:${toHex(frame)}`);
        return capability === Capability.Iso14443_4 ? hex('90 00') : hex('1D 00');
      },
    );
    const fake = await open(chip);
    const tag = await nextTagEvent(fake.reader);
    expect(tag).toMatchObject({ technology: 'iso14443b', uid: hex('11 22 33 44') });
    expect(tag.protocols).toEqual([Capability.Iso14443_4, Capability.Iso14443b]);
    // readers.md §6 vector 19: a Type 4B SELECT over InDataExchange.
    await expect(
      fake.reader.transmit(tag, Capability.Iso14443_4, hex('00 A4 04 00 08 31 54 49 43 2E 49 43 41')),
    ).resolves.toEqual(hex('90 00'));
    await expect(fake.reader.transmit(tag, Capability.Iso14443b, hex('1D 11 22 33 44 00 08 01 00'))).resolves.toEqual(
      hex('1D 00'),
    );
    const sent = commandsOf(fake);
    expect(sent).toContain('D442C2');
    expect(sent).toContain('D442050008');
    await expect(fake.reader.transmit(tag, Capability.Iso14443_4, hex('00 B2 01 04 1D'))).resolves.toEqual(
      hex('90 00'),
    );
    expect(seen).toEqual([
      'iso14443-4:00a4040008315449432e494341',
      'iso14443b:1d1122334400080100',
      'iso14443-4:00b201041d',
    ]);
  });

  it('polls FeliCa and carries FeliCa frames with their length byte', async () => {
    const idm = hex('01 2E 3D 4C 5B 6A 79 88');
    const chip = testChip({ technology: 'felica', uid: idm, protocols: [Capability.Felica] }, (_c, frame) =>
      Uint8Array.of(12, frame[1]! + 1, ...idm, 0x00, 0x00),
    );
    const fake = await open(chip);
    const tag = await nextTagEvent(fake.reader);
    expect(tag).toMatchObject({ technology: 'felica', uid: idm, protocols: [Capability.Felica] });
    const answer = await fake.reader.transmit(tag, Capability.Felica, Uint8Array.of(10, 0x06, ...idm));
    expect(answer).toEqual(Uint8Array.of(12, 0x07, ...idm, 0x00, 0x00));
    expect(commandsOf(fake)).toContain('D44A010100FFFF0100');
  });

  it('polls at a bounded rate while no tag is present', async () => {
    const fake = await open();
    const before = fake.emulator.commands.length;
    await delay(300);
    const polls = fake.emulator.commands.slice(before).filter((c) => c[1] === 0x4a).length;
    // 20 ms between cycles of three modulations: about 40, never a busy loop.
    expect(polls).toBeGreaterThan(3);
    expect(polls).toBeLessThan(3 * (300 / 20 + 2));
  });

  it('an exchange the chip never answers times out, is aborted with an ACK, and the reader carries on', async () => {
    const fake = await open(createVirtualChip('spark2'));
    const tag = await nextTagEvent(fake.reader);
    await delay(30);
    fake.emulator.inject('hang');
    const select = hex('00 A4 04 00 07 D2 76 00 00 85 01 01 00');
    await expect(fake.reader.transmit(tag, Capability.Iso14443_4, select, { timeoutMs: 150 })).rejects.toMatchObject({
      code: ErrorCode.Timeout,
    });
    const acks = fake.device.frames.filter((f) => toHex(f) === '0000ff00ff00').length;
    expect(acks).toBeGreaterThanOrEqual(2);
    await expect(fake.reader.transmit(tag, Capability.Iso14443_4, select)).resolves.toBeInstanceOf(Uint8Array);
  });

  it('recovers from a corrupted answer with a NACK, invisibly to the caller', async () => {
    const fake = await open(createVirtualChip('spark2'));
    const tag = await nextTagEvent(fake.reader);
    await delay(30);
    fake.emulator.inject('corrupt-answer');
    const answer = await fake.reader.transmit(
      tag,
      Capability.Iso14443_4,
      hex('00 A4 04 00 07 D2 76 00 00 85 01 01 00'),
    );
    expect(answer.subarray(-2)).toEqual(hex('90 00'));
    expect(fake.device.frames.some((f) => toHex(f) === '0000ffff0000')).toBe(true);
  });

  it('device loss mid-command is READER_GONE, and the reader closes itself', async () => {
    const fake = await open(createVirtualChip('spark2'));
    const tag = await nextTagEvent(fake.reader);
    fake.device.failNextTransferIn(new Error('LIBUSB_ERROR_NO_DEVICE: device disconnected'));
    await expect(
      fake.reader.transmit(tag, Capability.Iso14443_4, hex('00 A4 04 00 07 D2 76 00 00 85 01 01 00')),
    ).rejects.toMatchObject({ code: ErrorCode.ReaderGone });
    await until(() => fake.reader.closed);
  });

  it('unplugging while it polls closes the reader and releases the device', async () => {
    const fake = await open();
    await delay(40);
    fake.device.disconnect();
    await until(() => fake.reader.closed, 2000);
  });

  it('close() switches the field off and releases interface and device, once', async () => {
    const fake = await open(createVirtualChip('spark2'));
    await nextTagEvent(fake.reader);
    await fake.reader.close();
    await fake.reader.close();
    expect(fake.emulator.fieldOn).toBe(false);
    expect(commandsOf(fake).slice(-2)).toEqual(['D45200', 'D4320100']);
    expect(fake.device.stats).toEqual({ opens: 1, closes: 1, claims: 1, releases: 1 });
    expect(fake.device.opened).toBe(false);
  });
});
