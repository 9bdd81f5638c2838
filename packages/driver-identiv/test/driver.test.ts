import { describe, expect, it, vi } from 'vitest';
import {
  DriverRegistry,
  ErrorCode,
  Iso15693Tag,
  PcscEscape,
  buildIso15693Inventory,
  buildIso15693ReadMultipleBlocks,
  buildIso15693ReadSignature,
  buildTam1Authenticate,
  fromHex,
  genericPcscDriver,
  matchScore,
  toSpacedHex,
  type AttachedDevice,
  type Reader,
} from '@tapline/core';
import { nextTagEvent, scriptedPcsc, testDriverContext, type ScriptedPcscReader } from '@tapline/core/testing';
import {
  IDENTIV_USB_IDS,
  IdentivEscapes,
  IdentivIso15693,
  createIdentivDriver,
  drivers,
  identivControlSend,
  identivDriver,
  identivModelFromName,
  identivTraverseCommand,
  identivTunnelSend,
  identivVendorCarries,
  identivVendorCommand,
  parseIdentivCardInfo,
} from '../src/index.js';
import hook from '../src/hooks/drivers.js';

const hex = toSpacedHex;
const pcsc = (name: string): AttachedDevice => ({ transport: 'pcsc', name, port: scriptedPcsc().addReader(name).port });

/** The name libccid gives 04e6:5612 (readers.md §7.3, the vpcd emulation's name). */
const UT3720 = 'Identiv uTrust 3720 Contactless Reader 00 00';
const UT3700 = 'Identiv uTrust 3700 F CL Reader [uTrust 3700 F CL Reader] (55041912200000) 00 00';
const UT4701 = 'Identiv Identiv uTrust 4701 F Dual Interface Reader [uTrust 4701 F CL Reader] (53691324212792) 01 00';
const GET_UID = 'FF CA 00 00 00';
/** A Spark 1 (ICODE DNA) UID as text, and as it travels on air (LSB first). */
const SPARK1_UID = 'E0 04 01 18 00 9C 87 0C';
const SPARK1_AIR = '0C 87 9C 00 18 01 04 E0';
/** ISO 15693 part 3 storage ATR, card name 00 14 (ICODE SLI family; readers.md §7.4). */
const ATR_ICODE = '3B 8F 80 01 80 4F 0C A0 00 00 03 06 0B 00 14 00 00 00 00 77';
const ATR_ULTRALIGHT = '3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 03 00 00 00 00 68';
const ATR_ISO_DEP = '3B 81 80 01 80 80';
const BLOCKS = 'E1 40 0E 01 03 0D D1 01 09 55 04 76 69 76 6F 6B';
const SIGNATURE = Array.from({ length: 32 }, (_, i) => (0xa0 + i).toString(16))
  .join(' ')
  .toUpperCase();
const ICHALLENGE = '01 02 03 04 05 06 07 08 09 0A';
const TRESPONSE = '4D 96 CA 87 FC 55 28 77 FD 4F 5F 79 78 23 87 1B';
const OK = 'C0 03 00 90 00';

async function arrive(reader: Reader, slot: ScriptedPcscReader, atr: string, ...steps: [string, string][]) {
  const next = nextTagEvent(reader);
  slot.insert(atr, ...steps);
  return next;
}

describe('identivDriver matching and models', () => {
  it.each([
    UT3700,
    UT4701,
    UT3720,
    'Identiv uTrust 3721 Contactless Reader 00 00',
    'SCM Microsystems Inc. SCL011G Contactless Reader [Vendor Interface] 00 00',
  ])('claims %s with score 50', (name) => {
    expect(matchScore(identivDriver, pcsc(name))).toBe(50);
  });

  it.each([
    // The contact interface of the dual reader, and a SAM slot.
    'Identiv Identiv uTrust 4701 F Dual Interface Reader [uTrust 4701 F Contact Reader] (53691324212792) 00 00',
    'Identiv uTrust 4700 F SAM Reader 02 00',
    'Identiv uTrust 2700 R Smart Card Reader 00 00',
    'ACS ACR122U PICC Interface 00 00',
  ])('leaves %s alone', (name) => {
    expect(matchScore(identivDriver, pcsc(name))).toBe(0);
  });

  it('beats the generic PC/SC driver in a registry', () => {
    expect(new DriverRegistry([genericPcscDriver, identivDriver]).select(pcsc(UT3700))?.driver.id).toBe('identiv');
  });

  it('is what the package and its oclif hook export, with what it now implements', async () => {
    expect(drivers).toEqual([identivDriver]);
    expect(await hook()).toBe(drivers);
    expect(identivDriver.capabilities).toEqual(['iso14443a-raw', 'iso14443-4', 'iso15693']);
    expect(IDENTIV_USB_IDS.map((d) => d.productId.toString(16))).toEqual([
      '5790',
      '5791',
      '5612',
      '5613',
      '5724',
      '5725',
    ]);
  });

  it.each([
    [UT3700, '3700F', false],
    ['Identiv uTrust 3701 F CL Reader 00 00', '3701F', false],
    [UT3720, '3720F', true],
    ['Identiv uTrust 3721 Contactless Reader 00 00', '3721F', true],
    [UT4701, '4701F', false],
    ['Identiv uTrust 4711 F CL + SAM Reader 00 00', '4711F', false],
    ['SCM Microsystems Inc. SCL011G Contactless Reader 00 00', 'SCL01x', false],
    ['Identiv uTrust 3799 X 00 00', 'unknown', false],
  ])('tells %s apart: %s, vendor ISO 15693 %s', (name, model, iso15693) => {
    expect(identivModelFromName(name)).toMatchObject({ model, iso15693 });
  });
});

describe('ISO 15693 on the uTrust 3720 F (Spark 1)', () => {
  async function spark1(driver = identivDriver) {
    const slot = scriptedPcsc().addReader(UT3720);
    const reader = await driver.open(slot.device, testDriverContext());
    expect([...reader.capabilities]).toEqual(['iso14443-4', 'iso15693']);
    const tag = await arrive(reader, slot, ATR_ICODE, [GET_UID, `${SPARK1_UID} 90 00`]);
    expect(tag.technology).toBe('iso15693');
    expect(tag.protocols).toEqual(['iso15693']);
    return { slot, reader, tag, iso: Iso15693Tag.fromTag(tag) };
  }

  it('routes by what the manual documents: FF FC for reads, Traverse for INVENTORY, READ SIGNATURE, AUTHENTICATE', async () => {
    const { slot, reader, iso } = await spark1();
    // Core's builders, for the record: the frames the exchanges below carry.
    expect(hex(buildIso15693Inventory())).toBe('26 01 00');
    expect(hex(buildIso15693ReadMultipleBlocks(0, 4, { uid: fromHex(SPARK1_UID) }))).toBe(`22 23 ${SPARK1_AIR} 00 03`);
    expect(hex(buildIso15693ReadSignature({ uid: fromHex(SPARK1_UID) }))).toBe(`22 BD 04 ${SPARK1_AIR}`);
    expect(hex(buildTam1Authenticate(fromHex(ICHALLENGE), { uid: fromHex(SPARK1_UID) }))).toBe(
      `20 35 ${SPARK1_AIR} 00 00 02 ${ICHALLENGE}`,
    );
    slot.expect(
      // INVENTORY: the flags are the inventory flags, so Traverse (FWT 06 = 50 ms, standard frame).
      ['FF FD 06 01 03 26 01 00 00', `00 00 ${SPARK1_AIR} 90 00`],
      // READ MULTIPLE BLOCKS, addressed: FF FC drops flags and UID (manual §6.3.7.4: "FF FC 00 00 03 23 10 03 00").
      ['FF FC 00 00 03 23 00 03 00', `${BLOCKS} 90 00`],
      // NXP READ SIGNATURE (custom): Traverse, the whole frame.
      [`FF FD 06 01 0B 22 BD 04 ${SPARK1_AIR} 00`, `00 ${SIGNATURE} 90 00`],
      // AUTHENTICATE (TAM1, key 2): Traverse with FWT 09 (250 ms); the reply flags (04, final) survive.
      [`FF FD 09 01 17 20 35 ${SPARK1_AIR} 00 00 02 ${ICHALLENGE} 00`, `04 00 ${TRESPONSE} 90 00`],
    );
    expect(hex((await iso.inventory()).uid)).toBe(SPARK1_UID);
    const blocks = await iso.readBlocks(0, 4);
    expect(blocks.blocks.map((b) => hex(b.data)).join(' ')).toBe(BLOCKS);
    expect(hex((await iso.readSignature()).signature)).toBe(SIGNATURE);
    const auth = await iso.authenticate(2, fromHex(ICHALLENGE));
    expect(auth).toMatchObject({ flags: 0x04, finalResponse: true });
    expect(hex(auth.tresponse)).toBe(TRESPONSE);
    slot.assertDone();
    await reader.close();
  });

  it('sends every command through FF FC with iso15693Path "vendor", AUTHENTICATE included', async () => {
    const { slot, reader, iso } = await spark1(createIdentivDriver({ iso15693Path: 'vendor' }));
    slot.expect(
      ['FF FC 00 00 02 01 00 00', `00 ${SPARK1_AIR} 90 00`],
      ['FF FC 00 00 03 23 00 03 00', `${BLOCKS} 90 00`],
      ['FF FC 00 00 02 20 05 00', '01 02 03 04 90 00'],
      ['FF FC 00 00 02 BD 04 00', `${SIGNATURE} 90 00`],
      [`FF FC 00 00 0E 35 00 00 02 ${ICHALLENGE} 00`, `00 ${TRESPONSE} 90 00`],
      // Manual §6.3.7.2: a write carries no Le and answers a bare status word.
      ['FF FC 00 00 06 21 0F 01 02 03 04', '90 00'],
      // No error status words are documented; 63 00 is read as "failed".
      ['FF FC 00 00 02 20 05 00', '63 00'],
    );
    expect(hex((await iso.inventory()).uid)).toBe(SPARK1_UID);
    expect((await iso.readBlocks(0, 4)).blocks).toHaveLength(4);
    expect(hex((await iso.readBlock(5)).data)).toBe('01 02 03 04');
    expect(hex((await iso.readSignature()).signature)).toBe(SIGNATURE);
    // The reader drops the reply flags: the driver puts 00 in front (inferred).
    expect((await iso.authenticate(2, fromHex(ICHALLENGE))).flags).toBe(0x00);
    const tag = reader.currentTag!;
    expect(hex(await reader.transmit(tag, 'iso15693', fromHex(`22 21 ${SPARK1_AIR} 0F 01 02 03 04`)))).toBe('00');
    await expect(iso.readBlock(5)).rejects.toMatchObject({ code: ErrorCode.ProtocolError });
    slot.assertDone();
    await reader.close();
  });

  it('falls back to FF FC when the reader refuses Traverse, and remembers it', async () => {
    const { slot, reader, iso } = await spark1();
    slot.expect(
      ['FF FD 06 01 03 26 01 00 00', '6D 00'],
      ['FF FC 00 00 02 01 00 00', `00 ${SPARK1_AIR} 90 00`],
      ['FF FC 00 00 02 BD 04 00', `${SIGNATURE} 90 00`],
    );
    expect(hex((await iso.inventory()).uid)).toBe(SPARK1_UID);
    expect(hex((await iso.readSignature()).signature)).toBe(SIGNATURE);
    slot.assertDone();
    await reader.close();
  });

  it('maps a silent tag under Traverse to TIMEOUT', async () => {
    const { slot, reader, iso } = await spark1();
    slot.expect([`FF FD 06 01 0B 22 BD 04 ${SPARK1_AIR} 00`, '63 00']);
    await expect(iso.readSignature()).rejects.toMatchObject({ code: ErrorCode.Timeout });
    slot.assertDone();
    await reader.close();
  });

  it('carries ISO 15693 through PC/SC Part 3 with iso15693Path "part3" after the probe', async () => {
    const slot = scriptedPcsc().addReader(UT3720);
    const reader = await createIdentivDriver({ iso15693Path: 'part3' }).open(slot.device, testDriverContext());
    expect([...reader.capabilities]).toEqual(['iso14443-4']);
    const tag = await arrive(
      reader,
      slot,
      ATR_ICODE,
      [GET_UID, `${SPARK1_UID} 90 00`],
      ['FF C2 00 00 02 80 00 00', `${OK} 80 03 01 00 00 90 00`],
    );
    expect([...reader.capabilities]).toEqual(['iso14443a-raw', 'iso14443-4', 'iso15693']);
    slot.expect(
      ['FF C2 00 00 02 81 00 00', `${OK} 90 00`],
      ['FF C2 00 02 04 8F 02 02 03 00', `${OK} 90 00`],
      [
        'FF C2 00 01 24 90 02 00 00 5F 46 04 E0 93 04 00 95 17 20 35 ' + `${SPARK1_AIR} 00 00 02 ${ICHALLENGE} 00`,
        `${OK} 97 12 00 00 ${TRESPONSE} 90 00`,
      ],
      ['FF C2 00 00 02 82 00 00', `${OK} 90 00`],
    );
    const auth = await Iso15693Tag.fromTag(tag).authenticate(2, fromHex(ICHALLENGE));
    expect(hex(auth.tresponse)).toBe(TRESPONSE);
    await vi.waitFor(() => expect(slot.sent.at(-1)).toBe('FF C2 00 00 02 82 00 00'));
    slot.assertDone();
    await reader.close();
  });

  it('builds the vendor APDUs byte for byte, and knows which frames FF FC can carry', () => {
    expect(hex(identivVendorCommand(fromHex('02 2B')))).toBe('FF FC 00 00 01 2B 00');
    expect(hex(identivVendorCommand(fromHex('02 22 0F')))).toBe('FF FC 00 00 02 22 0F');
    expect(hex(identivVendorCommand(fromHex('02 2C 10 03')))).toBe('FF FC 00 00 03 2C 10 03 00');
    expect(hex(identivVendorCommand(fromHex('02 24 10 01 AA AA AA AA BB BB BB BB')))).toBe(
      'FF FC 00 00 0B 24 10 01 AA AA AA AA BB BB BB BB',
    );
    expect(hex(identivTraverseCommand(fromHex('02 2B'), 0x14))).toBe('FF FD 14 01 02 02 2B 00');
    expect(identivVendorCarries(fromHex('22 23 0C 87 9C 00 18 01 04 E0 00 03'))).toBe(true);
    expect(identivVendorCarries(fromHex('62 20 0C 87 9C 00 18 01 04 E0 00'))).toBe(false);
    expect(identivVendorCarries(fromHex('20 35 0C 87 9C 00 18 01 04 E0 00'))).toBe(false);
    expect(identivVendorCarries(fromHex('26 01 00'))).toBe(false);
    const invalid = expect.objectContaining({ code: ErrorCode.InvalidArgument });
    expect(() => identivVendorCommand(fromHex('42 20 05'))).toThrow(invalid);
    expect(() => identivVendorCommand(fromHex('22 20 0C 87'))).toThrow(invalid);
    expect(() => identivVendorCommand(fromHex('02'))).toThrow(invalid);
    expect(() => identivTraverseCommand(fromHex('02 2B'), 0x15)).toThrow(invalid);
  });

  it('answers a frame FF FC cannot carry with UNSUPPORTED_CAPABILITY when Traverse is refused too', async () => {
    const sent: string[] = [];
    const iso = new IdentivIso15693('auto', 'R');
    const transmit = (apdu: Uint8Array) => {
      sent.push(hex(apdu));
      return Promise.resolve(fromHex('6E 00'));
    };
    await expect(iso.exchange(fromHex('62 20 0C 87 9C 00 18 01 04 E0 00'), transmit)).rejects.toMatchObject({
      code: ErrorCode.UnsupportedCapability,
    });
    await expect(iso.exchange(fromHex('62 20 0C 87 9C 00 18 01 04 E0 00'), transmit)).rejects.toMatchObject({
      code: ErrorCode.UnsupportedCapability,
    });
    expect(sent).toEqual(['FF FD 06 01 0B 62 20 0C 87 9C 00 18 01 04 E0 00 00']);
  });
});

describe('PC/SC Part 3 and card type on the other uTrust models', () => {
  it('reads a Type 2 page on a uTrust 3700 F through Part 3 once the probe answered', async () => {
    const slot = scriptedPcsc().addReader(UT3700);
    const reader = await identivDriver.open(slot.device, testDriverContext());
    expect([...reader.capabilities]).toEqual(['iso14443-4']);
    const tag = await arrive(
      reader,
      slot,
      ATR_ULTRALIGHT,
      [GET_UID, '04 11 22 33 44 55 66 90 00'],
      ['FF C2 00 00 02 80 00 00', `${OK} 90 00`],
    );
    expect(tag.protocols).toEqual(['iso14443a-raw']);
    slot.expect(
      ['FF C2 00 00 02 81 00 00', `${OK} 90 00`],
      ['FF C2 00 02 04 8F 02 00 03 00', `${OK} 8F 01 00 90 00`],
      [
        'FF C2 00 01 0F 90 02 00 00 5F 46 04 50 C3 00 00 95 02 30 00 00',
        `${OK} 92 01 00 96 02 00 00 97 10 00 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F 90 00`,
      ],
      ['FF C2 00 00 02 82 00 00', `${OK} 90 00`],
    );
    expect(hex(await reader.transmit(tag, 'iso14443a-raw', fromHex('3000')))).toBe(
      '00 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F',
    );
    await vi.waitFor(() => slot.assertDone());
    await reader.close();
  });

  it('refuses ISO 15693 on a uTrust 4701 F whose Part 3 probe failed', async () => {
    const slot = scriptedPcsc().addReader(UT4701);
    const reader = await identivDriver.open(slot.device, testDriverContext());
    const tag = await arrive(
      reader,
      slot,
      ATR_ICODE,
      [GET_UID, `${SPARK1_UID} 90 00`],
      ['FF C2 00 00 02 80 00 00', '6D 00'],
    );
    expect(tag.protocols).toEqual([]);
    await expect(reader.transmit(tag, 'iso15693', fromHex('260100'))).rejects.toMatchObject({
      code: ErrorCode.UnsupportedCapability,
    });
    slot.assertDone();
    await reader.close();
  });

  it('tells a Type B ISO-DEP tag from the GET_CARD_INFO escape through FF CC, and stops asking a reader without it', async () => {
    const slot = scriptedPcsc().addReader(UT3700);
    const reader = await identivDriver.open(slot.device, testDriverContext());
    const b = await arrive(
      reader,
      slot,
      ATR_ISO_DEP,
      [GET_UID, '11 22 33 44 90 00'],
      ['FF CC 00 00 01 11 00', '01 B3 11 90 00'],
    );
    expect(b.technology).toBe('iso14443b');
    slot.remove();
    const a = await arrive(
      reader,
      slot,
      ATR_ISO_DEP,
      [GET_UID, '04 11 22 33 44 55 66 90 00'],
      ['FF CC 00 00 01 11 00', '01 77 10 90 00'],
    );
    expect(a.technology).toBe('iso14443a');
    slot.assertDone();
    await reader.close();

    const other = scriptedPcsc().addReader(UT4701);
    const r2 = await identivDriver.open(other.device, testDriverContext());
    await arrive(r2, other, ATR_ISO_DEP, [GET_UID, '04 11 22 33 44 55 66 90 00'], ['FF CC 00 00 01 11 00', '6D 00']);
    other.remove();
    await arrive(r2, other, ATR_ISO_DEP, [GET_UID, '04 11 22 33 44 55 66 90 00']);
    other.assertDone();
    await r2.close();
  });
});

describe('Identiv escapes', () => {
  it('runs card info, RF switch and polling through SCardControl with the advertised code', async () => {
    const slot = scriptedPcsc().addReader(UT3720);
    slot.expectControl(0x42000d48, ['', '13 04 42 00 0D AC']);
    slot.expectControl(
      0x42000dac,
      ['11', '01 77 10'],
      ['96 00', ''],
      ['96 FF', '01'],
      ['96 01', ''],
      ['96 FF', '00'],
      ['AC 01', ''],
      ['AC FF', '01'],
      ['11', '00'],
    );
    const escapes = new IdentivEscapes(identivControlSend(slot.port, new PcscEscape(slot.port), 200), UT3720);
    expect(await escapes.cardInfo()).toEqual({ present: true, baudRates: 0x77, kind: 't=cl', technology: 'iso14443a' });
    await escapes.setRfField(false);
    // The manual's inverted answer: 01 means off.
    expect(await escapes.rfField()).toBe(false);
    await escapes.setRfField(true);
    expect(await escapes.rfField()).toBe(true);
    await escapes.setPolling(false);
    expect(await escapes.polling()).toBe(false);
    expect(await escapes.cardInfo()).toEqual({ present: false });
    slot.assertDone();
    expect(slot.openConnections).toBe(0);
  });

  it('tunnels escapes through FF CC 00 00 on the tag connection', async () => {
    const slot = scriptedPcsc().addReader(UT4701);
    slot.insert(
      ATR_ISO_DEP,
      ['FF CC 00 00 02 96 FF 00', '00 90 00'],
      ['FF CC 00 00 02 AC 00 00', '90 00'],
      ['FF CC 00 00 01 11 00', '63 00'],
      ['FF CC 00 00 01 11 00', '6D 00'],
    );
    await vi.waitFor(() => expect(slot.present).toBe(true));
    const card = await slot.port.connect({ share: 'shared' });
    const escapes = new IdentivEscapes(identivTunnelSend(card, UT4701, 200), UT4701);
    expect(await escapes.rfField()).toBe(true);
    await escapes.setPolling(true);
    await expect(escapes.cardInfo()).rejects.toMatchObject({ code: ErrorCode.ProtocolError });
    await expect(escapes.cardInfo()).rejects.toMatchObject({ code: ErrorCode.UnsupportedCapability });
    await card.disconnect();
    slot.assertDone();
  });

  it.each(['01 77', '02 77 10', '01 77 10 00'])('refuses the card info %s with PROTOCOL_ERROR', (output) => {
    expect(() => parseIdentivCardInfo(fromHex(output))).toThrow(
      expect.objectContaining({ code: ErrorCode.ProtocolError }),
    );
  });
});
