import { describe, expect, it, vi } from 'vitest';
import {
  DriverRegistry,
  ErrorCode,
  TaplineError,
  createLogger,
  fromHex,
  genericPcscDriver,
  matchScore,
  toSpacedHex,
  type AttachedDevice,
  type LogRecord,
} from '@tapline/core';
import { FAIL, nextTagEvent, scriptedPcsc, testDriverContext, type ScriptedPcscReader } from '@tapline/core/testing';
import { ACR122_PCSC_CAPABILITIES, ACR122_USB_IDS, acr122Driver, createAcr122Driver, drivers } from '../src/index.js';
import hook from '../src/hooks/drivers.js';

const hex = toSpacedHex;
const NAME = 'ACS ACR122U PICC Interface 00 00';
const pcsc = (name: string): AttachedDevice => ({ transport: 'pcsc', name, port: scriptedPcsc().addReader(name).port });

/** pcsc-lite numbering (the scripted fake's default platform is linux). */
const FEATURES = 0x42000d48;
const ESCAPE = 0x42000dac;
const VENDOR_IFD = 0x42000001;
/** The feature list a driver that advertises its escape returns: tag 13, length 4, 0x42000DAC. */
const FEATURE_LIST = '13 04 42 00 0D AC';

const GET_UID = 'FF CA 00 00 00';
const UID = '04 A1 B2 C3 D4 E5 F6';
/** readers.md §6 vector 16: "ACR122U203", no status word. */
const FIRMWARE = ['FF 00 48 00 00', '41 43 52 31 32 32 55 32 30 33'] as [string, string];
/** RFConfiguration 05, nfcpy's retries (vector 7), tunnelled. */
const RETRIES = ['FF 00 00 00 06 D4 32 05 01 00 01', 'D5 33 90 00'] as [string, string];
const ATR_ULTRALIGHT = '3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 03 00 00 00 00 68';
const ATR_ISO_DEP = '3B 81 80 01 80 80';
/** ACR122 card name F0 11: FeliCa 212 kbps under SS 03 (readers.md §1.2). */
const ATR_FELICA = '3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 F0 11 00 00 00 00 8A';
/** readers.md §6 vector 10: page 0 and its CRC_A. */
const PAGE0 = '00 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F';

function refused(message = 'The reader did not carry out the control on R.'): ReturnType<typeof FAIL> {
  return FAIL(new TaplineError(ErrorCode.ProtocolError, message));
}

/** A reader whose driver advertises the escape code, and an ACR122U that starts up through it. */
function withEscapes(): ScriptedPcscReader {
  const slot = scriptedPcsc().addReader(NAME);
  slot.expectControl(FEATURES, ['', FEATURE_LIST]);
  slot.expectControl(ESCAPE, FIRMWARE, RETRIES);
  return slot;
}

/** A reader whose CCID driver blocks escapes (libccid's default). */
function withoutEscapes(): ScriptedPcscReader {
  const slot = scriptedPcsc().addReader(NAME);
  slot.expectControl(FEATURES, ['', FAIL(new TaplineError(ErrorCode.UnsupportedCapability, 'no feature request'))]);
  slot.expectControl(ESCAPE, ['FF 00 48 00 00', refused()]);
  slot.expectControl(VENDOR_IFD, ['FF 00 48 00 00', refused()]);
  return slot;
}

describe('acr122Driver matching', () => {
  it.each([
    // readers.md §7.3, observed with the CCID driver.
    'ACS ACR122U PICC Interface 00 00',
    'ACS ACR122U PICC Interface 01 00',
    // The ACR1222 family shares the PN532 API and the name fragment.
    'ACS ACR1222 3S PICC Reader 00 00',
  ])('claims %s with score 50', (name) => {
    expect(matchScore(acr122Driver, pcsc(name))).toBe(50);
  });

  it.each([
    'ACS ACR1222 3S PICC Reader [ACR1222 SAM] 01 00',
    'ACS ACR1252 Dual Reader [ACR1252 Dual Reader PICC] 00 00',
    'Identiv uTrust 3700 F CL Reader [uTrust 3700 F CL Reader] (55041912200000) 00 00',
  ])('leaves %s alone', (name) => {
    expect(matchScore(acr122Driver, pcsc(name))).toBe(0);
  });

  it('beats the generic PC/SC driver in a registry', () => {
    const registry = new DriverRegistry([genericPcscDriver, acr122Driver]);
    expect(registry.select(pcsc(NAME))).toMatchObject({ driver: { id: 'acr122' }, forced: false });
  });

  it('is what the package and its oclif hook export, with what it now implements', async () => {
    expect(drivers).toEqual([acr122Driver]);
    expect(await hook()).toBe(drivers);
    expect(acr122Driver.capabilities).toEqual(['iso14443a-raw', 'iso14443-4', 'felica', 'led', 'buzzer']);
    expect(createAcr122Driver({ mode: 'pn532' }).capabilities).toEqual([
      'iso14443a-raw',
      'iso14443-4',
      'iso14443b',
      'felica',
    ]);
    expect(ACR122_USB_IDS.map((d) => d.productId)).toEqual([0x2200, 0x90cc, 0x2214]);
  });
});

describe('ACR122U in PC/SC mode', () => {
  it('starts up through escape commands on a direct connection: firmware check and PN532 retries (vector 16)', async () => {
    const slot = withEscapes();
    const reader = await acr122Driver.open(slot.device, testDriverContext());
    expect([...reader.capabilities]).toEqual([...ACR122_PCSC_CAPABILITIES]);
    expect(slot.connects).toEqual(['direct']);
    expect(slot.disconnects).toEqual(['leave']);
    slot.assertDone();
    await reader.close();
  });

  it('falls back to the first tag for the start-up when the driver blocks escapes, and warns about old firmware', async () => {
    const slot = withoutEscapes();
    const records: LogRecord[] = [];
    const logger = createLogger({ level: 'warn', sink: (r) => records.push(r) });
    const reader = await acr122Driver.open(slot.device, testDriverContext({ logger }));
    const arrived = nextTagEvent(reader);
    slot.insert(
      ATR_ULTRALIGHT,
      [GET_UID, `${UID} 90 00`],
      ['FF 00 48 00 00', hex(new TextEncoder().encode('ACR122U201'))],
      RETRIES,
    );
    const tag = await arrived;
    expect(tag.protocols).toEqual(['iso14443a-raw']);
    expect(records.map((r) => r.message)).toEqual([expect.stringMatching(/older than 2\.06/)]);
    slot.assertDone();
    await reader.close();
    expect(slot.openConnections).toBe(0);
  });

  it('reads a Type 2 page raw: RX-CRC off, InCommunicateThru, CRC_A checked here, register restored (vectors 9, 10)', async () => {
    const slot = withEscapes();
    const reader = await acr122Driver.open(slot.device, testDriverContext());
    const arrived = nextTagEvent(reader);
    slot.insert(ATR_ULTRALIGHT, [GET_UID, `${UID} 90 00`]);
    const tag = await arrived;
    slot.expect(
      // ReadRegister CIU_RxMode: the PN532 answers without a status byte (vector 8/9, PN532 shape).
      ['FF 00 00 00 04 D4 06 63 03', 'D5 07 80 90 00'],
      ['FF 00 00 00 05 D4 08 63 03 00', 'D5 09 90 00'],
      ['FF 00 00 00 04 D4 42 30 00', `D5 43 00 ${PAGE0} 77 F5 90 00`],
      ['FF 00 00 00 05 D4 08 63 03 80', 'D5 09 90 00'],
      // A WRITE answered by the 4-bit ACK: one byte, no CRC, and no second register read.
      ['FF 00 00 00 05 D4 08 63 03 00', 'D5 09 90 00'],
      ['FF 00 00 00 08 D4 42 A2 04 01 02 03 04', 'D5 43 00 0A 90 00'],
      ['FF 00 00 00 05 D4 08 63 03 80', 'D5 09 90 00'],
      // CRC_A 00 00 is wrong: "crc_a check error", and the register still goes back.
      ['FF 00 00 00 05 D4 08 63 03 00', 'D5 09 90 00'],
      ['FF 00 00 00 04 D4 42 30 00', `D5 43 00 ${PAGE0} 00 00 90 00`],
      ['FF 00 00 00 05 D4 08 63 03 80', 'D5 09 90 00'],
      // Vector 14: status 01 is the PN532's timeout.
      ['FF 00 00 00 05 D4 08 63 03 00', 'D5 09 90 00'],
      ['FF 00 00 00 04 D4 42 30 00', 'D5 43 01 90 00'],
      ['FF 00 00 00 05 D4 08 63 03 80', 'D5 09 90 00'],
    );
    expect(hex(await reader.transmit(tag, 'iso14443a-raw', fromHex('3000')))).toBe(PAGE0);
    expect(hex(await reader.transmit(tag, 'iso14443a-raw', fromHex('A204 01020304')))).toBe('0A');
    await expect(reader.transmit(tag, 'iso14443a-raw', fromHex('3000'))).rejects.toMatchObject({
      code: ErrorCode.ProtocolError,
      details: expect.objectContaining({ reason: 'crc_a' }),
    });
    await expect(reader.transmit(tag, 'iso14443a-raw', fromHex('3000'))).rejects.toMatchObject({
      code: ErrorCode.Timeout,
    });
    slot.assertDone();
    await reader.close();
  });

  it('maps the reader status words of Direct Transmit to typed errors', async () => {
    const slot = withEscapes();
    const reader = await acr122Driver.open(slot.device, testDriverContext());
    const arrived = nextTagEvent(reader);
    slot.insert(ATR_ULTRALIGHT, [GET_UID, `${UID} 90 00`], ['FF 00 00 00 04 D4 06 63 03', '63 7F']);
    const tag = await arrived;
    await expect(reader.transmit(tag, 'iso14443a-raw', fromHex('3000'))).rejects.toMatchObject({
      code: ErrorCode.ProtocolError,
      message: expect.stringMatching(/63 7F: the PN532 rejected the command/),
    });
    slot.assertDone();
    await reader.close();
  });

  it('takes a FeliCa tag the firmware found (ATR F0 11) and answers through 61 LL + Get Response (T=0)', async () => {
    const slot = withEscapes();
    const reader = await acr122Driver.open(slot.device, testDriverContext());
    const arrived = nextTagEvent(reader);
    slot.insert(ATR_FELICA, [GET_UID, '01 2E 3D 4C 5B 6A 79 88 90 00']);
    const tag = await arrived;
    expect(tag.technology).toBe('felica');
    expect(tag.protocols).toEqual(['felica']);
    const polling = '06 00 FF FF 01 00';
    const answer = '14 01 01 2E 3D 4C 5B 6A 79 88 00 F1 00 00 00 01 43 00 88 B4';
    slot.expect([`FF 00 00 00 08 D4 42 ${polling}`, '61 19'], ['FF C0 00 00 19', `D5 43 00 ${answer} 90 00`]);
    expect(hex(await reader.transmit(tag, 'felica', fromHex(polling)))).toBe(answer);
    slot.assertDone();
    await reader.close();
  });

  it('sends APDUs plainly, fetches the ATS, and refuses ISO 15693 naming readers that can read a Spark 1', async () => {
    const slot = withEscapes();
    const reader = await acr122Driver.open(slot.device, testDriverContext());
    const arrived = nextTagEvent(reader);
    slot.insert(
      ATR_ISO_DEP,
      [GET_UID, `${UID} 90 00`],
      // readers.md §1.1: Get ATS answers with the length byte TL.
      ['FF CA 01 00 00', '06 75 77 81 02 80 90 00'],
      ['00 A4 04 00 07 D2 76 00 00 85 01 01 00', '90 00'],
    );
    const tag = await arrived;
    expect(hex(tag.ats!)).toBe('75 77 81 02 80');
    expect(tag.protocols).toEqual(['iso14443-4']);
    expect(hex(await reader.transmit(tag, 'iso14443-4', fromHex('00A4040007D276000085010100')))).toBe('90 00');
    const refusal = reader.transmit(tag, 'iso15693', fromHex('260100'));
    await expect(refusal).rejects.toMatchObject({
      code: ErrorCode.UnsupportedCapability,
      message: expect.stringMatching(/Spark 1.*uTrust 3720 F or uTrust 3721 F/),
    });
    slot.assertDone();
    await reader.close();
  });

  it('drives LED and buzzer as escape commands without a tag and through the tag connection with one', async () => {
    const slot = withEscapes();
    const reader = await acr122Driver.open(slot.device, testDriverContext());
    // nfcpy: green only → 90 02; red with a 300 ms beep; both off.
    slot.expectControl(ESCAPE, ['FF 00 40 0E 04 00 00 00 00', '90 02'], ['FF 00 40 0D 04 03 00 01 01', '90 01']);
    await reader.feedback({ led: 'green' });
    await reader.feedback({ led: 'red', beepMs: 300 });
    const arrived = nextTagEvent(reader);
    slot.insert(
      ATR_ISO_DEP,
      [GET_UID, `${UID} 90 00`],
      ['FF CA 01 00 00', '6A 81'],
      ['FF 00 40 0C 04 00 00 00 00', '90 00'],
      ['FF 00 40 00 04 01 00 01 01', '63 00'],
    );
    await arrived;
    await reader.feedback({ led: 'off' });
    await expect(reader.feedback({ beepMs: 50 })).rejects.toMatchObject({ code: ErrorCode.ProtocolError });
    slot.assertDone();
    await reader.close();
    expect(slot.openConnections).toBe(0);
  });

  it('says why LED and buzzer fail without a tag when the driver blocks escapes', async () => {
    const slot = withoutEscapes();
    const reader = await acr122Driver.open(slot.device, testDriverContext());
    slot.expectControl(ESCAPE, ['FF 00 40 0E 04 00 00 00 00', refused()]);
    slot.expectControl(VENDOR_IFD, ['FF 00 40 0E 04 00 00 00 00', refused()]);
    await expect(reader.feedback({ led: 'green' })).rejects.toMatchObject({
      code: ErrorCode.UnsupportedCapability,
      hint: expect.stringMatching(/ifdDriverOptions/),
    });
    slot.assertDone();
    await reader.close();
  });
});

describe('ACR122U in PN532 mode (nfcpy style)', () => {
  const pn532Driver = createAcr122Driver({ mode: 'pn532', pollIntervalMs: 60_000 });
  const START_UP: [string, string][] = [
    FIRMWARE,
    RETRIES,
    // SetParameters: AutoATR_RES | AutoRATS.
    ['FF 00 00 00 03 D4 12 14', 'D5 13 90 00'],
    // Automatic polling off, every tag type kept (nfcpy, vector 16).
    ['FF 00 51 7F 00', '90 7F'],
  ];
  const CLOSE: [string, string][] = [
    ['FF 00 00 00 03 D4 52 00', 'D5 53 00 90 00'],
    ['FF 00 00 00 04 D4 32 01 00', 'D5 33 90 00'],
    ['FF 00 51 FF 00', '90 FF'],
  ];

  it('polls through escapes, finds a Type B tag and exchanges APDUs with InDataExchange (vectors 17, 19)', async () => {
    const slot = scriptedPcsc().addReader(NAME);
    slot.expectControl(FEATURES, ['', FEATURE_LIST]);
    slot.expectControl(
      ESCAPE,
      ...START_UP,
      // Vector 17: Type A, no tag.
      ['FF 00 00 00 04 D4 4A 01 00', 'D5 4B 00 90 00'],
      // Vector 19: Type B with AFI 00; ATQB 50 PUPI(4) app(4) protocol info 00 71 85 (ISO 14443-4), ATTRIB_RES 00.
      ['FF 00 00 00 05 D4 4A 01 03 00', 'D5 4B 01 01 50 11 22 33 44 00 00 00 00 00 71 85 01 00 90 00'],
      ['FF 00 00 00 10 D4 40 01 00 A4 04 00 08 31 54 49 43 2E 49 43 41', 'D5 41 00 90 00 90 00'],
      ['FF 00 00 00 08 D4 40 01 00 B2 01 04 1D', 'D5 41 00 6A 83 90 00'],
      ...CLOSE,
    );
    const reader = await pn532Driver.open(slot.device, testDriverContext());
    const tag = await nextTagEvent(reader);
    expect(tag.technology).toBe('iso14443b');
    expect(hex(tag.uid)).toBe('11 22 33 44');
    expect(tag.protocols).toEqual(['iso14443-4', 'iso14443b']);
    expect(hex(await reader.transmit(tag, 'iso14443-4', fromHex('00A4040008315449432E494341')))).toBe('90 00');
    expect(hex(await reader.transmit(tag, 'iso14443-4', fromHex('00B201041D')))).toBe('6A 83');
    await expect(reader.transmit(tag, 'iso15693', fromHex('260100'))).rejects.toMatchObject({
      code: ErrorCode.UnsupportedCapability,
      message: expect.stringMatching(/uTrust 3720 F/),
    });
    await reader.close();
    slot.assertDone();
    expect(slot.connects).toEqual(['direct']);
    expect(slot.openConnections).toBe(0);
  });

  it('reads a Type 2 page of a polled Type A tag raw (vectors 9, 10)', async () => {
    const slot = scriptedPcsc().addReader(NAME);
    slot.expectControl(FEATURES, ['', FEATURE_LIST]);
    slot.expectControl(
      ESCAPE,
      ...START_UP,
      // Vector 9's target (SENS_RES 0044, SAK 00, UID 04 16 C6 C2 D7 38 81).
      ['FF 00 00 00 04 D4 4A 01 00', 'D5 4B 01 01 00 44 00 07 04 16 C6 C2 D7 38 81 90 00'],
      ['FF 00 00 00 04 D4 06 63 03', 'D5 07 80 90 00'],
      ['FF 00 00 00 05 D4 08 63 03 00', 'D5 09 90 00'],
      ['FF 00 00 00 04 D4 42 30 00', `D5 43 00 ${PAGE0} 77 F5 90 00`],
      ...CLOSE,
    );
    const reader = await pn532Driver.open(slot.device, testDriverContext());
    const tag = await nextTagEvent(reader);
    expect(hex(tag.uid)).toBe('04 16 C6 C2 D7 38 81');
    expect(hex(tag.atqa!)).toBe('44 00');
    expect(hex(await reader.transmit(tag, 'iso14443a-raw', fromHex('3000')))).toBe(PAGE0);
    await reader.close();
    slot.assertDone();
  });

  it('fails with DRIVER_FAILED, releasing the connection, when escapes do not reach the reader', async () => {
    const slot = withoutEscapes();
    await expect(pn532Driver.open(slot.device, testDriverContext())).rejects.toMatchObject({
      code: ErrorCode.DriverFailed,
      hint: expect.stringMatching(/PC\/SC mode/),
    });
    slot.assertDone();
    expect(slot.openConnections).toBe(0);
  });

  it('closes when the reader is unplugged', async () => {
    const pcscs = scriptedPcsc();
    const slot = pcscs.addReader(NAME);
    slot.expectControl(FEATURES, ['', FEATURE_LIST]);
    slot.expectControl(ESCAPE, ...START_UP, ['FF 00 00 00 04 D4 4A 01 00', 'D5 4B 00 90 00']);
    slot.expectControl(ESCAPE, ['FF 00 00 00 05 D4 4A 01 03 00', 'D5 4B 00 90 00']);
    slot.expectControl(ESCAPE, ['FF 00 00 00 09 D4 4A 01 01 00 FF FF 01 00', 'D5 4B 00 90 00']);
    const reader = await pn532Driver.open(slot.device, testDriverContext());
    await vi.waitFor(() => slot.assertDone());
    pcscs.removeReader(NAME);
    await vi.waitFor(() => expect(reader.closed).toBe(true));
    await vi.waitFor(() => expect(slot.openConnections).toBe(0));
  });
});
