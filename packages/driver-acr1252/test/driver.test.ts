import { describe, expect, it, vi } from 'vitest';
import {
  DriverRegistry,
  ErrorCode,
  PcscEscape,
  TaplineError,
  fromHex,
  genericPcscDriver,
  matchScore,
  toSpacedHex,
  type AttachedDevice,
} from '@tapline/core';
import { FAIL, nextTagEvent, scriptedPcsc, testDriverContext, type ScriptedPcscReader } from '@tapline/core/testing';
import {
  ACR1252_USB_IDS,
  Acr1252Behaviour,
  acr1252Driver,
  acr1252EscapesOver,
  decodeAcr1252Polling,
  drivers,
  encodeAcr1252Polling,
  parseAcr1252EscapeResponse,
} from '../src/index.js';
import hook from '../src/hooks/drivers.js';

const hex = toSpacedHex;
const NAME = 'ACS ACR1252 Dual Reader [ACR1252 Dual Reader PICC] 00 00';
const pcsc = (name: string): AttachedDevice => ({ transport: 'pcsc', name, port: scriptedPcsc().addReader(name).port });

const FEATURES = 0x42000d48;
const ESCAPE = 0x42000dac;
const VENDOR_IFD = 0x42000001;
/** libccid with escapes allowed: GET_TLV_PROPERTIES (0x42330012), then FEATURE_CCID_ESC_COMMAND = SCARD_CTL_CODE(1). */
const LIBCCID_FEATURES = '12 04 42 33 00 12 13 04 42 00 00 01';
/** readers.md §2.1: `E0 00 00 18 00` → "ACR1252U_V202.2". */
const FIRMWARE: [string, string] = ['E0 00 00 18 00', 'E1 00 00 00 0F 41 43 52 31 32 35 32 55 5F 56 32 30 32 2E 32'];
const GET_UID = 'FF CA 00 00 00';
const UID = '04 11 22 33 44 55 66';
const ATR_ULTRALIGHT = '3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 03 00 00 00 00 68';
/** readers.md §2.2: the ACR1252U's FeliCa ATR, SS 11 and card name 00 3B. */
const ATR_FELICA = '3B 8F 80 01 80 4F 0C A0 00 00 03 06 11 00 3B 00 00 00 00 42';
const OK = 'C0 03 00 90 00';

function refused(): ReturnType<typeof FAIL> {
  return FAIL(new TaplineError(ErrorCode.ProtocolError, 'The reader did not carry out the control.'));
}

/** A reader whose driver advertises its escape code (libccid with escapes allowed) and answers the firmware request. */
function opened(): ScriptedPcscReader {
  const slot = scriptedPcsc().addReader(NAME);
  slot.expectControl(FEATURES, ['', LIBCCID_FEATURES]);
  slot.expectControl(VENDOR_IFD, FIRMWARE);
  return slot;
}

describe('acr1252Driver matching', () => {
  it.each([
    // readers.md §7.3: acsccid on macOS, and the CCID name derived from the pcsc-lite naming rule.
    'ACS ACR1252 1S CL Reader(1)',
    NAME,
    'ACS ACR1252 Reader 00 00',
  ])('claims %s with score 50', (name) => {
    expect(matchScore(acr1252Driver, pcsc(name))).toBe(50);
  });

  it.each(['ACS ACR1252 Dual Reader [ACR1252 Dual Reader SAM] 01 00', 'ACS ACR122U PICC Interface 00 00'])(
    'leaves %s alone',
    (name) => {
      expect(matchScore(acr1252Driver, pcsc(name))).toBe(0);
    },
  );

  it('beats the generic PC/SC driver in a registry, and neither takes the SAM slot', () => {
    const registry = new DriverRegistry([genericPcscDriver, acr1252Driver]);
    expect(registry.select(pcsc(NAME))?.driver.id).toBe('acr1252');
    expect(registry.select(pcsc('ACS ACR1252 Dual Reader [ACR1252 Dual Reader SAM] 01 00'))).toBeUndefined();
  });

  it('is what the package and its oclif hook export, with what it now implements', async () => {
    expect(drivers).toEqual([acr1252Driver]);
    expect(await hook()).toBe(drivers);
    expect(acr1252Driver.capabilities).toEqual(['iso14443a-raw', 'iso14443-4', 'felica', 'led', 'buzzer']);
    expect(ACR1252_USB_IDS.map((d) => d.productId)).toEqual([0x223b, 0x223e, 0x2259]);
  });
});

describe('ACR1252U escape commands', () => {
  it('uses the control code the reader driver reports for FEATURE_CCID_ESC_COMMAND (tag 0x13)', async () => {
    const slot = opened();
    const reader = await acr1252Driver.open(slot.device, testDriverContext());
    expect(slot.connects).toEqual(['direct']);
    expect(slot.disconnects).toEqual(['leave']);
    slot.assertDone();
    await reader.close();
  });

  it('falls back to SCARD_CTL_CODE(3500), then SCARD_CTL_CODE(1), on pcsc-lite when the feature list has no escape', async () => {
    const slot = scriptedPcsc().addReader(NAME);
    slot.expectControl(FEATURES, ['', '12 04 42 33 00 12']);
    slot.expectControl(ESCAPE, ['E0 00 00 18 00', refused()]);
    slot.expectControl(VENDOR_IFD, FIRMWARE);
    const reader = await acr1252Driver.open(slot.device, testDriverContext());
    slot.assertDone();
    await reader.close();
  });

  it('uses the Windows numbering of SCARD_CTL_CODE(3500) on Windows, and never SCARD_CTL_CODE(1) there', async () => {
    const slot = scriptedPcsc({ platform: 'win32' }).addReader('ACS ACR1252 1S CL Reader PICC 0');
    expect(slot.port.controlCode(3500)).toBe(0x003136b0);
    slot.expectControl(0x00313520, ['', refused()]);
    slot.expectControl(0x003136b0, FIRMWARE);
    const reader = await acr1252Driver.open(slot.device, testDriverContext());
    slot.assertDone();
    await reader.close();
  });

  it('runs every escape of readers.md §2.1 with the documented bytes', async () => {
    const slot = scriptedPcsc().addReader(NAME);
    slot.expectControl(FEATURES, ['', LIBCCID_FEATURES]);
    slot.expectControl(
      VENDOR_IFD,
      FIRMWARE,
      ['E0 00 00 29 01 02', 'E1 00 00 00 01 02'],
      ['E0 00 00 29 00', 'E1 00 00 00 01 03'],
      ['E0 00 00 28 01 14', 'E1 00 00 00 01 00'],
      ['E0 00 00 23 00', 'E1 00 00 00 01 8B'],
      ['E0 00 00 23 01 8A', 'E1 00 00 00 01 8A'],
      ['E0 00 00 20 00', 'E1 00 00 00 01 1F'],
      ['E0 00 00 20 01 01', 'E1 00 00 00 01 01'],
      ['E0 00 00 21 00', 'E1 00 00 00 01 7F'],
      ['E0 00 00 21 01 77', 'E1 00 00 00 01 77'],
    );
    const escapes = acr1252EscapesOver(slot.port, new PcscEscape(slot.port));
    expect(await escapes.firmware()).toBe('ACR1252U_V202.2');
    expect(await escapes.setLed(0x02)).toBe(0x02);
    expect(await escapes.led()).toBe(0x03);
    await escapes.beep(200);
    const polling = await escapes.polling();
    expect(polling).toEqual({
      autoPolling: true,
      fieldOffWithoutTag: true,
      fieldOffWhenInactive: false,
      intervalMs: 250,
      enforceIso14443_4: true,
      raw: 0x8b,
    });
    expect((await escapes.setPolling(encodeAcr1252Polling({ autoPolling: false }, polling.raw))).autoPolling).toBe(
      false,
    );
    expect(await escapes.piccParameter()).toBe(0x1f);
    expect(await escapes.setPiccParameter(0x01)).toBe(0x01);
    const behaviour = await escapes.ledBuzzerBehaviour();
    expect(behaviour).toBe(0x7f);
    expect(await escapes.setLedBuzzerBehaviour(behaviour & ~Acr1252Behaviour.CardEventBeep)).toBe(0x77);
    slot.assertDone();
    expect(slot.openConnections).toBe(0);
  });

  it('decodes and encodes the polling setting', () => {
    expect(decodeAcr1252Polling(0x8f).fieldOffWhenInactive).toBe(true);
    expect(decodeAcr1252Polling(0x3b).intervalMs).toBe(2500);
    expect(encodeAcr1252Polling({ intervalMs: 1000, enforceIso14443_4: false }, 0x8b)).toBe(0x2b);
    expect(() => encodeAcr1252Polling({ intervalMs: 300 as 250 })).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidArgument }),
    );
  });

  it.each([
    ['E1 00 00 00 02 01', ErrorCode.ProtocolError],
    ['E1 00 00 00', ErrorCode.ProtocolError],
    ['63 00', ErrorCode.ProtocolError],
    ['6A 81', ErrorCode.UnsupportedCapability],
    ['', ErrorCode.ProtocolError],
  ])('refuses the escape answer %s with %s', (answer, code) => {
    expect(() => parseAcr1252EscapeResponse(fromHex(answer), 'the test')).toThrow(expect.objectContaining({ code }));
  });
});

describe('ACR1252U reader', () => {
  it('drives LED and buzzer with escape commands, with or without a tag', async () => {
    const slot = opened();
    const reader = await acr1252Driver.open(slot.device, testDriverContext());
    slot.expectControl(
      VENDOR_IFD,
      ['E0 00 00 29 01 02', 'E1 00 00 00 01 02'],
      ['E0 00 00 28 01 14', 'E1 00 00 00 01 00'],
    );
    await reader.feedback({ led: 'green', beepMs: 200 });
    slot.expectControl(VENDOR_IFD, ['E0 00 00 29 01 00', 'E1 00 00 00 01 00']);
    await reader.feedback({ led: 'off' });
    slot.assertDone();
    await reader.close();
    expect(slot.openConnections).toBe(0);
  });

  it('falls back to FF 00 40 through the tag connection when escapes are blocked', async () => {
    const slot = scriptedPcsc().addReader(NAME);
    slot.expectControl(FEATURES, ['', refused()]);
    slot.expectControl(ESCAPE, ['E0 00 00 18 00', refused()]);
    slot.expectControl(VENDOR_IFD, ['E0 00 00 18 00', refused()]);
    const reader = await acr1252Driver.open(slot.device, testDriverContext());
    const arrived = nextTagEvent(reader);
    slot.insert('3B 81 80 01 80 80', [GET_UID, `${UID} 90 00`]);
    await arrived;
    slot.expectControl(ESCAPE, ['E0 00 00 29 01 01', refused()]);
    slot.expectControl(VENDOR_IFD, ['E0 00 00 29 01 01', refused()]);
    slot.expect(['FF 00 40 0D 04 03 00 01 01', '90 01']);
    await reader.feedback({ led: 'red', beepMs: 300 });
    slot.assertDone();
    await reader.close();
  });

  it('reads a Type 2 page through a PC/SC Part 3 transparent session, never through FF 00 00 00', async () => {
    const slot = opened();
    const reader = await acr1252Driver.open(slot.device, testDriverContext());
    const arrived = nextTagEvent(reader);
    slot.insert(ATR_ULTRALIGHT, [GET_UID, `${UID} 90 00`]);
    const tag = await arrived;
    expect(tag.protocols).toEqual(['iso14443a-raw']);
    const page = '04 05 06 07 08 09 0A 0B 0C 0D 0E 0F 10 11 12 13';
    slot.expect(
      ['FF C2 00 00 02 81 00 00', `${OK} 90 00`],
      ['FF C2 00 02 04 8F 02 00 03 00', `${OK} 8F 01 00 90 00`],
      [
        'FF C2 00 01 0F 90 02 00 00 5F 46 04 50 C3 00 00 95 02 30 04 00',
        `${OK} 92 01 00 96 02 00 00 97 10 ${page} 90 00`,
      ],
      // WRITE: the 4-bit ACK, 4 valid bits, no CRC.
      [
        'FF C2 00 01 13 90 02 00 02 5F 46 04 50 C3 00 00 95 06 A2 04 01 02 03 04 00',
        `${OK} 92 01 04 96 02 00 00 97 01 0A 90 00`,
      ],
      ['FF C2 00 00 02 82 00 00', `${OK} 90 00`],
    );
    expect(hex(await reader.transmit(tag, 'iso14443a-raw', fromHex('3004')))).toBe(page);
    expect(hex(await reader.transmit(tag, 'iso14443a-raw', fromHex('A204 01020304')))).toBe('0A');
    await vi.waitFor(() => expect(slot.sent.at(-1)).toBe('FF C2 00 00 02 82 00 00'));
    expect(slot.sent.filter((f) => f.startsWith('FF 00 00 00'))).toEqual([]);
    slot.assertDone();
    await reader.close();
  });

  it('reports a reader without Part 3 (6A 81) as UNSUPPORTED_CAPABILITY', async () => {
    const slot = opened();
    const reader = await acr1252Driver.open(slot.device, testDriverContext());
    const arrived = nextTagEvent(reader);
    slot.insert(ATR_ULTRALIGHT, [GET_UID, `${UID} 90 00`], ['FF C2 00 00 02 81 00 00', '6A 81']);
    const tag = await arrived;
    await expect(reader.transmit(tag, 'iso14443a-raw', fromHex('3004'))).rejects.toMatchObject({
      code: ErrorCode.UnsupportedCapability,
      message: expect.stringMatching(/Part 3/),
    });
    slot.assertDone();
    await reader.close();
  });

  it('passes FeliCa commands through FF 00 00 00 (its FeliCa pass-through)', async () => {
    const slot = opened();
    const reader = await acr1252Driver.open(slot.device, testDriverContext());
    const arrived = nextTagEvent(reader);
    slot.insert(ATR_FELICA, [GET_UID, '01 2E 3D 4C 5B 6A 79 88 90 00']);
    const tag = await arrived;
    expect(tag.technology).toBe('felica');
    expect(tag.protocols).toEqual(['felica']);
    // Read Without Encryption, one service (0x0009), block 0 (readers.md §2.2).
    const read = '10 06 01 2E 3D 4C 5B 6A 79 88 01 09 00 01 80 00';
    const answer = '1D 07 01 2E 3D 4C 5B 6A 79 88 00 00 01 00 11 22 33 44 55 66 77 88 99 AA BB CC DD EE FF';
    slot.expect([`FF 00 00 00 10 ${read}`, `${answer} 90 00`], [`FF 00 00 00 10 ${read}`, '63 00']);
    expect(hex(await reader.transmit(tag, 'felica', fromHex(read)))).toBe(answer);
    await expect(reader.transmit(tag, 'felica', fromHex(read))).rejects.toMatchObject({ code: ErrorCode.Timeout });
    slot.assertDone();
    await reader.close();
  });

  it('refuses ISO 15693 naming the readers that can read a Spark 1', async () => {
    const slot = opened();
    const reader = await acr1252Driver.open(slot.device, testDriverContext());
    const arrived = nextTagEvent(reader);
    slot.insert(ATR_ULTRALIGHT, [GET_UID, `${UID} 90 00`]);
    const tag = await arrived;
    await expect(reader.transmit(tag, 'iso15693', fromHex('260100'))).rejects.toMatchObject({
      code: ErrorCode.UnsupportedCapability,
      message: expect.stringMatching(/uTrust 3720 F or uTrust 3721 F/),
    });
    await reader.close();
  });
});
