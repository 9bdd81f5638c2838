import { describe, expect, it } from 'vitest';
import {
  Capability,
  ErrorCode,
  type PcscReader,
  fromHex,
  ReaderManager,
  createContainer,
  genericPcscDriver,
  openPcscReader,
  silentLogger,
  waitForTag,
  parseContactlessAtr,
  parseGetDataResponse,
  toSpacedHex,
  type Reader,
  type ReadersEvent,
  type TaplineError,
} from '../src/index.js';
import {
  CMD,
  FAIL,
  HANG,
  REMOVE_CARD,
  RSP,
  nextTagEvent,
  scriptedPcsc,
  testDriverContext,
  type ScriptedPcscReader,
} from '../src/testing/index.js';

/** readers.md §7.4: MIFARE Classic 1K [ACR122L p.13]. */
const ATR_CLASSIC_1K = '3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 01 00 00 00 00 6A';
/** pcsc-stack.md §2: the virtual card's Ultralight ATR (pcsc_scan: "MIFARE Ultralight (as per PCSC std part3)"). */
const ATR_ULTRALIGHT = '3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 03 00 00 00 00 68';
/** readers.md §7.4: DESFire, ISO 14443-4 [ACR1255 p.38]. */
const ATR_DESFIRE = '3B 81 80 01 80 80';
const UID = '04 A1 B2 C3 D4 E5 F6';
const GET_UID = CMD('FF CA 00 00 00');

function setup(): { reader: ScriptedPcscReader } {
  const pcsc = scriptedPcsc();
  return { reader: pcsc.addReader('ACS ACR122U PICC Interface 00 00') };
}

async function open(scripted: ScriptedPcscReader, timeoutMs = 300): Promise<Reader> {
  return genericPcscDriver.open(scripted.device, testDriverContext({ timeoutMs }));
}

describe('parseContactlessAtr (readers.md §7.4)', () => {
  it('decodes the MIFARE Classic 1K storage-card ATR', () => {
    const atr = parseContactlessAtr(fromHex(ATR_CLASSIC_1K));
    expect(atr).toMatchObject({
      kind: 'storage',
      technology: 'iso14443a',
      standard: 0x03,
      cardName: 0x0001,
      cardLabel: 'MIFARE Classic 1K',
      protocols: ['iso14443a-raw'],
      checksumValid: true,
    });
    expect(toSpacedHex(atr.historicalBytes)).toBe('80 4F 0C A0 00 00 03 06 03 00 01 00 00 00 00');
  });

  it('decodes the Ultralight ATR of the virtual card', () => {
    expect(parseContactlessAtr(fromHex(ATR_ULTRALIGHT))).toMatchObject({
      kind: 'storage',
      cardName: 0x0003,
      cardLabel: 'MIFARE Ultralight',
      checksumValid: true,
    });
  });

  it('decodes an ISO 14443-4 ATR (3B 8n 80 01 …) and keeps the historical bytes', () => {
    const atr = parseContactlessAtr(fromHex(ATR_DESFIRE));
    expect(atr).toMatchObject({ kind: 'iso14443-4', protocols: ['iso14443-4'], checksumValid: true });
    expect(atr.technology).toBeUndefined();
    expect(toSpacedHex(atr.historicalBytes)).toBe('80');
  });

  it.each([
    // SS 11 FeliCa, NN 00 3B (readers.md §2.2: "FeliCa ATR … 03 06 11 00 3B …").
    ['3B 8F 80 01 80 4F 0C A0 00 00 03 06 11 00 3B 00 00 00 00 42', 'felica', ['felica'], 'FeliCa'],
    // SS 0B ISO 15693 part 3, NN 00 14 ICODE SLI.
    ['3B 8F 80 01 80 4F 0C A0 00 00 03 06 0B 00 14 00 00 00 00 77', 'iso15693', ['iso15693'], 'ICODE SLI'],
    // SS 07 ISO 14443-B part 3.
    ['3B 8F 80 01 80 4F 0C A0 00 00 03 06 07 00 00 00 00 00 00 6F', 'iso14443b', ['iso14443b'], undefined],
    // ACR122 card name F0 11 (FeliCa 212) under SS 03.
    ['3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 F0 11 00 00 00 00 8A', 'iso14443a', ['iso14443a-raw'], 'FeliCa 212 kbps'],
    // FF 28 (JCOP30): the SAK 28 has bit 0x20, so the card also speaks ISO 14443-4.
    [
      '3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 FF 28 00 00 00 00 BC',
      'iso14443a',
      ['iso14443a-raw', 'iso14443-4'],
      undefined,
    ],
  ])('decodes %s', (hex, technology, protocols, label) => {
    const atr = parseContactlessAtr(fromHex(hex));
    expect(atr.kind).toBe('storage');
    expect(atr.technology).toBe(technology);
    expect(atr.protocols).toEqual(protocols);
    expect(atr.cardLabel).toBe(label);
    expect(atr.checksumValid).toBe(true);
  });

  it('reports a wrong TCK but still decodes', () => {
    const atr = parseContactlessAtr(fromHex('3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 01 00 00 00 00 00'));
    expect(atr).toMatchObject({ kind: 'storage', cardName: 1, checksumValid: false });
  });

  it.each(['', '3B', '3B 00', '3B 8F 80 01 80', '3B 65 00 00 9C 11 01 01 03', '00 11 22'])(
    'calls %s unknown without throwing',
    (hex) => {
      const atr = parseContactlessAtr(fromHex(hex));
      expect(atr.kind).toBe('unknown');
      expect(atr.protocols).toEqual([]);
    },
  );
});

describe('parseGetDataResponse', () => {
  it('returns the data of 90 00 and maps the error status words', () => {
    expect(toSpacedHex(parseGetDataResponse(RSP('04 A1 B2 C3 90 00'), 'R'))).toBe('04 A1 B2 C3');
    expect(() => parseGetDataResponse(RSP('6A 81'), 'R')).toThrow(
      expect.objectContaining({ code: ErrorCode.UnsupportedCapability }),
    );
    expect(() => parseGetDataResponse(RSP('63 00'), 'R')).toThrow(
      expect.objectContaining({ code: ErrorCode.ProtocolError }),
    );
    expect(() => parseGetDataResponse(RSP('90 00'), 'R')).toThrow(
      expect.objectContaining({ code: ErrorCode.ProtocolError }),
    );
    expect(() => parseGetDataResponse(RSP('90'), 'R')).toThrow(expect.objectContaining({ code: ErrorCode.TagLost }));
  });
});

describe('PcscReader', () => {
  it('reads the UID with FF CA 00 00 00 when a tag arrives and describes it from the ATR', async () => {
    const { reader } = setup();
    const pcscReader = await open(reader);
    const arrived = nextTagEvent(pcscReader);
    reader.insert(ATR_DESFIRE, [GET_UID, RSP(`${UID} 90 00`)]);
    const tag = await arrived;
    expect(toSpacedHex(tag.uid)).toBe(UID);
    expect(tag.technology).toBe('iso14443a');
    expect(tag.protocols).toEqual(['iso14443-4']);
    expect(toSpacedHex(tag.atr!)).toBe(ATR_DESFIRE);
    expect(pcscReader.driverId).toBe('pcsc');
    expect(reader.connects).toEqual(['shared']);
    expect(reader.sent).toEqual(['FF CA 00 00 00']);
    reader.assertDone();
    await pcscReader.close();
    expect(reader.openConnections).toBe(0);
  });

  it('announces a tag that is already on the reader when it opens', async () => {
    const { reader } = setup();
    reader.insert(ATR_DESFIRE, [GET_UID, RSP(`${UID} 90 00`)]);
    const pcscReader = await open(reader);
    const tag = await nextTagEvent(pcscReader);
    expect(pcscReader.currentTag?.id).toBe(tag.id);
    reader.assertDone();
    await pcscReader.close();
  });

  it('sends ISO 14443-4 APDUs with SCardTransmit and returns the answer', async () => {
    const { reader } = setup();
    const pcscReader = await open(reader);
    const arrived = nextTagEvent(pcscReader);
    reader.insert(ATR_DESFIRE, [GET_UID, RSP(`${UID} 90 00`)]);
    const tag = await arrived;
    reader.expect(['00 A4 04 00 07 D2 76 00 00 85 01 01 00', '90 00'], ['00 B0 00 00 02', 'E1 04 90 00']);
    expect(toSpacedHex(await pcscReader.transmit(tag, 'iso14443-4', fromHex('00A4040007D276000085010100')))).toBe(
      '90 00',
    );
    expect(toSpacedHex(await pcscReader.transmit(tag, 'iso14443-4', fromHex('00B0000002')))).toBe('E1 04 90 00');
    reader.assertDone();
    await pcscReader.close();
  });

  it('fails an exchange in flight with TAG_LOST when the tag leaves, reports tag-left and disconnects', async () => {
    const { reader } = setup();
    const pcscReader = await open(reader);
    const arrived = nextTagEvent(pcscReader);
    reader.insert(ATR_DESFIRE, [GET_UID, RSP(`${UID} 90 00`)], ['00 A4 04 00 00', HANG]);
    const tag = await arrived;
    const left = nextTagEvent(pcscReader, 'tag-left');
    const pending = pcscReader.transmit(tag, 'iso14443-4', fromHex('00A4040000'), { timeoutMs: 2000 });
    setTimeout(() => reader.remove(), 10);
    await expect(pending).rejects.toMatchObject({ code: ErrorCode.TagLost });
    expect((await left).id).toBe(tag.id);
    await expectEventually(() => reader.openConnections === 0);
    expect(reader.disconnects).toEqual(['leave']);
    reader.assertDone();
    await pcscReader.close();
  });

  it('fails with TAG_LOST when pcscd answers the pending transmit with zero bytes (card pulled mid-APDU)', async () => {
    const { reader } = setup();
    const pcscReader = await open(reader);
    const arrived = nextTagEvent(pcscReader);
    reader.insert(ATR_DESFIRE, [GET_UID, RSP(`${UID} 90 00`)], ['00 A4 04 00 00', REMOVE_CARD]);
    const tag = await arrived;
    await expect(pcscReader.transmit(tag, 'iso14443-4', fromHex('00A4040000'))).rejects.toMatchObject({
      code: ErrorCode.TagLost,
    });
    expect(pcscReader.currentTag).toBeUndefined();
    reader.assertDone();
    await pcscReader.close();
  });

  it('refuses capabilities the tag or the reader lacks with UNSUPPORTED_CAPABILITY, sending nothing', async () => {
    const { reader } = setup();
    const pcscReader = await open(reader);
    const arrived = nextTagEvent(pcscReader);
    // An Ultralight is a storage card: ISO 14443-3 only, which the generic driver cannot reach.
    reader.insert(ATR_ULTRALIGHT, [GET_UID, RSP(`${UID} 90 00`)]);
    const tag = await arrived;
    expect(tag.protocols).toEqual([]);
    await expect(pcscReader.transmit(tag, 'iso14443-4', fromHex('00A4040000'))).rejects.toMatchObject({
      code: ErrorCode.UnsupportedCapability,
    });
    await expect(pcscReader.transmit(tag, 'iso14443a-raw', fromHex('3004'))).rejects.toMatchObject({
      code: ErrorCode.UnsupportedCapability,
    });
    await expect(pcscReader.feedback({ beepMs: 100 })).rejects.toMatchObject({ code: ErrorCode.UnsupportedCapability });
    expect(reader.sent).toEqual(['FF CA 00 00 00']);
    reader.assertDone();
    await pcscReader.close();
  });

  it('times out a silent tag with TIMEOUT and keeps working', async () => {
    const { reader } = setup();
    const pcscReader = await open(reader);
    const arrived = nextTagEvent(pcscReader);
    reader.insert(ATR_DESFIRE, [GET_UID, RSP(`${UID} 90 00`)], ['00 A4 04 00 00', HANG], ['00 A4 04 00 00', '6A 82']);
    const tag = await arrived;
    await expect(
      pcscReader.transmit(tag, 'iso14443-4', fromHex('00A4040000'), { timeoutMs: 30 }),
    ).rejects.toMatchObject({
      code: ErrorCode.Timeout,
    });
    expect(toSpacedHex(await pcscReader.transmit(tag, 'iso14443-4', fromHex('00A4040000')))).toBe('6A 82');
    reader.assertDone();
    await pcscReader.close();
  });

  it('skips a tag whose UID the reader cannot give (6A 81) without announcing it, and releases the connection', async () => {
    const { reader } = setup();
    const pcscReader = (await open(reader)) as PcscReader;
    let announced = 0;
    pcscReader.events$.subscribe(() => announced++);
    reader.insert(ATR_DESFIRE, [GET_UID, RSP('6A 81')]);
    await expectEventually(() => pcscReader.skippedTags.length === 1);
    expect(pcscReader.skippedTags[0]!.error.code).toBe(ErrorCode.UnsupportedCapability);
    expect(announced).toBe(0);
    await expectEventually(() => reader.openConnections === 0);
    reader.assertDone();
    await pcscReader.close();
  });

  it('reconnects once and retries when the first identification fails (63 00)', async () => {
    const { reader } = setup();
    const pcscReader = await open(reader);
    const arrived = nextTagEvent(pcscReader);
    reader.insert(ATR_DESFIRE, [GET_UID, RSP('63 00')], [GET_UID, RSP(`${UID} 90 00`)]);
    expect(toSpacedHex((await arrived).uid)).toBe(UID);
    expect(reader.connects).toEqual(['shared', 'shared']);
    expect(reader.disconnects).toEqual(['leave']);
    reader.assertDone();
    await pcscReader.close();
  });

  it('asks again with the right Le after 6C XX', async () => {
    const { reader } = setup();
    const pcscReader = await open(reader);
    const arrived = nextTagEvent(pcscReader);
    reader.insert(ATR_DESFIRE, [GET_UID, RSP('6C 07')], ['FF CA 00 00 07', `${UID} 90 00`]);
    expect(toSpacedHex((await arrived).uid)).toBe(UID);
    reader.assertDone();
    await pcscReader.close();
  });

  it('survives connect failures while a tag is present, and serves the next tag', async () => {
    const { reader } = setup();
    const pcscReader = (await open(reader)) as PcscReader;
    const sharing = new Error('SCardConnect error: Sharing violation.(0x8010000b)');
    reader.failNextConnect(sharing).failNextConnect(sharing);
    reader.insert(ATR_DESFIRE);
    await expectEventually(() => pcscReader.skippedTags.length === 1);
    expect(pcscReader.closed).toBe(false);
    const arrived = nextTagEvent(pcscReader);
    reader.remove();
    reader.insert(ATR_DESFIRE, [GET_UID, RSP(`${UID} 90 00`)]);
    expect(toSpacedHex((await arrived).uid)).toBe(UID);
    reader.assertDone();
    await pcscReader.close();
  });

  it('reports a swap of tags as tag-left then tag-arrived', async () => {
    const { reader } = setup();
    const pcscReader = await open(reader);
    const first = nextTagEvent(pcscReader);
    reader.insert(ATR_DESFIRE, [GET_UID, RSP('04 01 02 03 04 05 06 90 00')]);
    const a = await first;
    const types: string[] = [];
    // events$ replays the tag in the field first, then follows changes.
    pcscReader.events$.subscribe((e) => types.push(`${e.type}:${toSpacedHex(e.tag.uid)}`));
    reader.insert(ATR_DESFIRE, [GET_UID, RSP('04 0A 0B 0C 0D 0E 0F 90 00')]);
    await expectEventually(() => types.length === 3);
    expect(types).toEqual([
      'tag-arrived:04 01 02 03 04 05 06',
      'tag-left:04 01 02 03 04 05 06',
      'tag-arrived:04 0A 0B 0C 0D 0E 0F',
    ]);
    expect(pcscReader.currentTag?.id).not.toBe(a.id);
    reader.assertDone();
    await pcscReader.close();
  });

  it('closes when the reader goes away and releases its connection', async () => {
    const pcsc = scriptedPcsc();
    const reader = pcsc.addReader('R');
    const pcscReader = await open(reader);
    const arrived = nextTagEvent(pcscReader);
    reader.insert(ATR_DESFIRE, [GET_UID, RSP(`${UID} 90 00`)]);
    await arrived;
    expect(reader.openConnections).toBe(1);
    pcsc.removeReader('R');
    await expectEventually(() => pcscReader.closed && reader.openConnections === 0);
  });

  it('lets a driver add vendor paths through hooks', async () => {
    const { reader } = setup();
    const pcscReader = await openPcscReader(reader.device, testDriverContext(), {
      driverId: 'vendor',
      capabilities: [Capability.Iso14443_4, Capability.Iso14443aRaw],
      hooks: {
        identify: async ({ card, info, timeoutMs, signal }) => {
          const ats = parseGetDataResponse(await card.transmit(CMD('FF CA 01 00 00'), { timeoutMs, signal }), 'R');
          return { ...info, ats, protocols: [...info.protocols, Capability.Iso14443aRaw] };
        },
        exchange: ({ card, capability, frame, signal }) =>
          capability === Capability.Iso14443aRaw
            ? card.transmit(Uint8Array.of(0xff, 0x00, 0x00, 0x00, frame.length, ...frame), { timeoutMs: 500, signal })
            : undefined,
      },
    });
    const arrived = nextTagEvent(pcscReader);
    reader.insert(ATR_DESFIRE, [GET_UID, RSP(`${UID} 90 00`)], ['FF CA 01 00 00', '06 75 77 81 02 80 90 00']);
    const tag = await arrived;
    expect(toSpacedHex(tag.ats!)).toBe('06 75 77 81 02 80');
    expect(tag.protocols).toEqual(['iso14443-4', 'iso14443a-raw']);
    reader.expect(['FF 00 00 00 02 30 04', '01 02 03 04 90 00'], ['00 A4 04 00 00', '90 00']);
    expect(toSpacedHex(await pcscReader.transmit(tag, 'iso14443a-raw', fromHex('3004')))).toBe('01 02 03 04 90 00');
    expect(toSpacedHex(await pcscReader.transmit(tag, 'iso14443-4', fromHex('00A4040000')))).toBe('90 00');
    reader.assertDone();
    await pcscReader.close();
  });

  it('refuses a device of another transport', async () => {
    await expect(
      genericPcscDriver.open({ transport: 'virtual', name: 'sim', kind: 'sim', port: undefined }, testDriverContext()),
    ).rejects.toMatchObject({ code: ErrorCode.InvalidArgument });
  });

  it('makes the scripted card fail loudly on an unexpected command', async () => {
    const { reader } = setup();
    const pcscReader = (await open(reader)) as PcscReader;
    reader.insert(ATR_DESFIRE, ['FF CA 01 00 00', '90 00']);
    await expectEventually(() => pcscReader.skippedTags.length === 1);
    expect(() => reader.assertDone()).toThrow(
      /received transmit FF CA 00 00 00 but the script expected transmit FF CA 01 00 00/,
    );
    await pcscReader.close();
  });

  it('maps a scripted binding failure through the reader as a skipped tag', async () => {
    const { reader } = setup();
    const pcscReader = (await open(reader)) as PcscReader;
    reader.insert(ATR_DESFIRE, [GET_UID, FAIL(new Error('boom'))], [GET_UID, FAIL(new Error('boom again'))]);
    await expectEventually(() => pcscReader.skippedTags.length === 1);
    const error: TaplineError = pcscReader.skippedTags[0]!.error;
    expect(error.code).toBe(ErrorCode.ProtocolError);
    reader.assertDone();
    await pcscReader.close();
  });
});

describe('scripted PC/SC fake', () => {
  it('scripts control calls on a direct connection and checks the control code', async () => {
    const { reader } = setup();
    const code = reader.port.controlCode(3500);
    reader.expectControl(code, ['E0 00 00 18 00', 'E1 00 00 00 0F 41 43 52 31 32 35 32 55 5F 56 32 30 32 2E 32']);
    const card = await reader.port.connect({ share: 'direct' });
    expect(card.protocol).toBe('none');
    const answer = await card.control(code, fromHex('E000001800'), { timeoutMs: 100 });
    expect(Buffer.from(answer.subarray(5)).toString('ascii')).toBe('ACR1252U_V202.2');
    await expect(card.control(code + 1, fromHex('E000001800'), { timeoutMs: 100 })).rejects.toThrow(
      /script expected nothing more/,
    );
    await card.disconnect();
    expect(reader.connects).toEqual(['direct']);
    expect(() => reader.assertDone()).toThrow(/control 0x42000dad/);
  });
});

describe('PcscReader in the pipeline', () => {
  it('serves a scripted PC/SC reader end to end: container, device source, generic driver, tag', async () => {
    const pcsc = scriptedPcsc();
    const scripted = pcsc.addReader('Virtual PCD 00 00');
    const container = createContainer({
      pcscTransport: pcsc.transport,
      config: { transports: ['pcsc'], exchangeTimeoutMs: 500 },
      logger: silentLogger,
    });
    const manager = container.resolve(ReaderManager);
    const seen: ReadersEvent[] = [];
    const hold = manager.hold((e) => seen.push(e));
    const arrival = waitForTag(manager.tags$, { timeoutMs: 2000 });
    scripted.insert(ATR_DESFIRE, [GET_UID, RSP(`${UID} 90 00`)], ['00 A4 04 00 00', '90 00']);
    const tag = await arrival;
    expect(seen[0]).toMatchObject({ type: 'attached', driver: { id: 'pcsc' }, reader: { name: 'Virtual PCD 00 00' } });
    expect(toSpacedHex(tag.uid)).toBe(UID);
    expect(toSpacedHex(await tag.reader.transmit(tag, 'iso14443-4', fromHex('00A4040000')))).toBe('90 00');
    scripted.assertDone();
    hold.unsubscribe();
    await expectEventually(() => pcsc.subscribers === 0 && scripted.openConnections === 0 && tag.reader.closed);
  });
});

async function expectEventually(check: () => boolean, ms = 1000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}
