import { describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import {
  ErrorCode,
  Part3Flag,
  Part3Function,
  Part3Layer,
  Part3Session,
  Part3Standard,
  Part3Tag,
  checkPart3Response,
  decodeBerTlvs,
  encodeBerTlv,
  fromHex,
  isTaplineError,
  parsePart3Response,
  part3Answer,
  part3Command,
  part3EndSessionCommand,
  part3FlagsObject,
  part3GetParameterCommand,
  part3RfCommand,
  part3RfResetCommand,
  part3SessionFor,
  part3StartSessionCommand,
  part3SwitchProtocolCommand,
  part3TimerObject,
  part3TransceiveCommand,
  part3VersionCommand,
  probePart3,
  toSpacedHex,
} from '../src/index.js';
import { HANG, REMOVE_CARD, scriptedPcsc, type ScriptedPcscReader } from '../src/testing/index.js';

const hex = toSpacedHex;
const CONTEXT = { reader: 'R', what: 'the test' };
/** readers.md §7.4: the Ultralight storage-card ATR. */
const ATR_ULTRALIGHT = '3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 03 00 00 00 00 68';
/** readers.md §6 vector 10: page 0 of a Type 2 tag and its CRC_A. */
const PAGE0 = '00 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F';
const PAGE0_CRC = '77 F5';

const OK = 'C0 03 00 90 00';
const START = 'FF C2 00 00 02 81 00 00';
const END = 'FF C2 00 00 02 82 00 00';
const SWITCH_A3 = 'FF C2 00 02 04 8F 02 00 03 00';
/** READ page 0 with the reader checking the CRC: flags 0000, timer 50 ms. */
const READ0 = 'FF C2 00 01 0F 90 02 00 00 5F 46 04 50 C3 00 00 95 02 30 00 00';

describe('BER-TLV', () => {
  it('encodes one- and two-byte tags and the three length forms', () => {
    expect(hex(encodeBerTlv(0x81))).toBe('81 00');
    expect(hex(encodeBerTlv(0x5f46, fromHex('10270000')))).toBe('5F 46 04 10 27 00 00');
    expect(hex(encodeBerTlv(0xff6d, fromHex('0100')))).toBe('FF 6D 02 01 00');
    expect(hex(encodeBerTlv(0x97, new Uint8Array(200)).subarray(0, 3))).toBe('97 81 C8');
    expect(hex(encodeBerTlv(0x97, new Uint8Array(300)).subarray(0, 4))).toBe('97 82 01 2C');
  });

  it('refuses tags that are not one or two bytes of BER', () => {
    expect(() => encodeBerTlv(0x5f)).toThrow(expect.objectContaining({ code: ErrorCode.InvalidArgument }));
    expect(() => encodeBerTlv(0x1234)).toThrow(expect.objectContaining({ code: ErrorCode.InvalidArgument }));
  });

  it('decodes a Part 3 answer into its objects', () => {
    expect(decodeBerTlvs(fromHex('C0 03 00 90 00 92 01 04 5F 51 02 3B 00'))).toEqual([
      { tag: 0xc0, value: fromHex('00 90 00') },
      { tag: 0x92, value: fromHex('04') },
      { tag: 0x5f51, value: fromHex('3B 00') },
    ]);
  });

  it.each([
    ['C0 03 00 90', 'an object running past the end'],
    ['5F', 'a two-byte tag cut short'],
    ['C0', 'a missing length'],
    ['97 83 00 00 01 00', 'a four-byte length form'],
    ['97 81', 'a long length cut short'],
    ['5F 80 00', 'a three-byte tag'],
  ])('fails with PROTOCOL_ERROR on %s (%s)', (bytes) => {
    expect(() => decodeBerTlvs(fromHex(bytes))).toThrow(expect.objectContaining({ code: ErrorCode.ProtocolError }));
  });

  it('round-trips any object, and never throws anything but a Tapline error on arbitrary bytes', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.integer({ min: 0, max: 0xfe }).filter((t) => t % 0x20 !== 0x1f),
          fc.constant(0x5f46),
        ),
        fc.uint8Array({ maxLength: 300 }),
        (tag, value) => {
          expect(decodeBerTlvs(encodeBerTlv(tag, value))).toEqual([{ tag, value }]);
        },
      ),
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        try {
          decodeBerTlvs(bytes);
          parsePart3Response(bytes, CONTEXT);
        } catch (error) {
          expect(isTaplineError(error)).toBe(true);
        }
      }),
    );
  });
});

describe('Part 3 commands (readers.md §4.1)', () => {
  it('builds the manage-session commands, as seen in the wild', () => {
    expect(hex(part3VersionCommand())).toBe('FF C2 00 00 02 80 00 00');
    expect(hex(part3StartSessionCommand())).toBe(START);
    expect(hex(part3EndSessionCommand())).toBe(END);
    expect(hex(part3RfCommand(false))).toBe('FF C2 00 00 02 83 00 00');
    expect(hex(part3RfCommand(true))).toBe('FF C2 00 00 02 84 00 00');
    // 10 ms off: 10000 µs = 0x2710, least significant byte first.
    expect(hex(part3RfResetCommand(10_000))).toBe('FF C2 00 00 0B 83 00 5F 46 04 10 27 00 00 84 00 00');
    expect(hex(part3GetParameterCommand([0x01, 0x03]))).toBe('FF C2 00 00 07 FF 6D 04 01 00 03 00 00');
  });

  it('builds switch-protocol commands (FeliCa as seen in the wild; ISO 14443-A layer 3; ISO 15693)', () => {
    expect(hex(part3SwitchProtocolCommand(Part3Standard.Felica, Part3Layer.NoSeparation))).toBe(
      'FF C2 00 02 04 8F 02 03 00 00',
    );
    expect(hex(part3SwitchProtocolCommand(Part3Standard.Iso14443A, Part3Layer.Layer3))).toBe(SWITCH_A3);
    expect(hex(part3SwitchProtocolCommand(Part3Standard.Iso15693, Part3Layer.Layer3))).toBe(
      'FF C2 00 02 04 8F 02 02 03 00',
    );
  });

  it('encodes the timer LSB first and the flags MSB first (public samples)', () => {
    // ACR1552U sample: 50 ms = 0xC350; Sony RC-S660/S sample: 10 ms, and flags 001C (no parity, no prologue).
    expect(hex(part3TimerObject(50_000))).toBe('5F 46 04 50 C3 00 00');
    expect(hex(part3TimerObject(10_000))).toBe('5F 46 04 10 27 00 00');
    expect(hex(part3FlagsObject(Part3Flag.NoTxParity | Part3Flag.NoRxParity | Part3Flag.NoPrologue))).toBe(
      '90 02 00 1C',
    );
  });

  it('builds transceive commands, with the optional flags, timer and bit framing in front of the frame', () => {
    expect(hex(part3TransceiveCommand(fromHex('3004')))).toBe('FF C2 00 01 04 95 02 30 04 00');
    expect(hex(part3TransceiveCommand(fromHex('3004'), { flags: Part3Flag.NoRxCrc }))).toBe(
      'FF C2 00 01 08 90 02 00 02 95 02 30 04 00',
    );
    expect(
      hex(part3TransceiveCommand(fromHex('26'), { flags: 0x0003, timeoutMicroseconds: 50_000, txLastBits: 7 })),
    ).toBe('FF C2 00 01 11 90 02 00 03 5F 46 04 50 C3 00 00 91 01 07 95 01 26 00');
  });

  it('refuses what does not fit a short APDU or is no valid value', () => {
    const invalid = expect.objectContaining({ code: ErrorCode.InvalidArgument });
    expect(() => part3TransceiveCommand(new Uint8Array(253))).toThrow(invalid);
    expect(() => part3TransceiveCommand(new Uint8Array(0))).toThrow(invalid);
    expect(() => part3Command(Part3Function.ManageSession)).toThrow(invalid);
    expect(() => part3TimerObject(-1)).toThrow(invalid);
    expect(() => part3FlagsObject(0x10000)).toThrow(invalid);
    expect(() => part3TransceiveCommand(fromHex('26'), { txLastBits: 8 })).toThrow(invalid);
    expect(hex(part3TransceiveCommand(new Uint8Array(252)).subarray(0, 8))).toBe('FF C2 00 01 FF 95 81 FC');
  });
});

describe('Part 3 responses', () => {
  it('decodes the status, the version and the transceive objects', () => {
    expect(parsePart3Response(fromHex(`${OK} 80 03 01 02 03 90 00`), CONTEXT)).toMatchObject({
      status: { objectNumber: 0, sw: 0x9000 },
      version: { major: 1, minor: 2, build: 3 },
    });
    const read = checkPart3Response(fromHex(`${OK} 92 01 00 96 02 00 00 97 12 ${PAGE0} ${PAGE0_CRC} 90 00`), CONTEXT);
    expect(read.validBits).toBe(0);
    expect(read.responseStatus).toBe(0);
    expect(hex(read.iccResponse!)).toBe(`${PAGE0} ${PAGE0_CRC}`);
    expect(hex(part3Answer(read, CONTEXT).data)).toBe(`${PAGE0} ${PAGE0_CRC}`);
    expect(parsePart3Response(fromHex(`${OK} 8F 01 00 90 00`), CONTEXT).switchResult).toEqual(fromHex('00'));
    expect(parsePart3Response(fromHex(`${OK} 5F 51 02 3B 00 90 00`), CONTEXT).atr).toEqual(fromHex('3B 00'));
  });

  it.each([
    ['C0 03 01 64 01 90 00', ErrorCode.Timeout, '64 01'],
    ['C0 03 02 63 01 90 00', ErrorCode.ProtocolError, '63 01'],
    ['C0 03 01 6A 81 90 00', ErrorCode.UnsupportedCapability, '6A 81'],
    ['C0 03 01 67 00 90 00', ErrorCode.ProtocolError, '67 00'],
    ['C0 03 00 6F 00 90 00', ErrorCode.ProtocolError, '6F 00'],
    ['C0 03 01 12 34 90 00', ErrorCode.ProtocolError, '12 34'],
  ])('maps the generic error status %s to %s', (bytes, code, status) => {
    const parsed = parsePart3Response(fromHex(bytes), CONTEXT);
    expect(parsed.status.sw).not.toBe(0x9000);
    expect(() => checkPart3Response(fromHex(bytes), CONTEXT)).toThrow(
      expect.objectContaining({ code, details: expect.objectContaining({ part3Status: status }) }),
    );
  });

  it.each([
    ['6A 81', ErrorCode.UnsupportedCapability],
    ['6D 00', ErrorCode.UnsupportedCapability],
    ['6E 00', ErrorCode.UnsupportedCapability],
    ['63 00', ErrorCode.ProtocolError],
    ['90', ErrorCode.ProtocolError],
    ['90 00', ErrorCode.ProtocolError],
    ['97 01 00 90 00', ErrorCode.ProtocolError],
    [`${OK} ${OK} 90 00`, ErrorCode.ProtocolError],
    ['C0 02 90 00 90 00', ErrorCode.ProtocolError],
    [`${OK} 80 02 01 00 90 00`, ErrorCode.ProtocolError],
    [`${OK} 92 01 09 90 00`, ErrorCode.ProtocolError],
    [`${OK} 97 05 00 90 00`, ErrorCode.ProtocolError],
  ])('refuses the answer %s with %s', (bytes, code) => {
    expect(() => parsePart3Response(fromHex(bytes), CONTEXT)).toThrow(expect.objectContaining({ code }));
  });

  it('reports air errors of the response status, except a CRC error on a 4-bit ACK/NAK', () => {
    const crc = checkPart3Response(fromHex(`${OK} 92 01 00 96 02 01 00 97 02 AA BB 90 00`), CONTEXT);
    expect(() => part3Answer(crc, CONTEXT)).toThrow(
      expect.objectContaining({ code: ErrorCode.ProtocolError, details: expect.objectContaining({ reason: 'crc' }) }),
    );
    const collision = checkPart3Response(fromHex(`${OK} 96 02 02 00 97 01 0A 90 00`), CONTEXT);
    expect(() => part3Answer(collision, CONTEXT)).toThrow(expect.objectContaining({ code: ErrorCode.ProtocolError }));
    const ack = checkPart3Response(fromHex(`${OK} 92 01 04 96 02 01 00 97 01 0A 90 00`), CONTEXT);
    expect(part3Answer(ack, CONTEXT)).toEqual({ data: fromHex('0A'), validBits: 4 });
    expect(() => part3Answer(checkPart3Response(fromHex(`${OK} 90 00`), CONTEXT), CONTEXT)).toThrow(
      expect.objectContaining({ code: ErrorCode.ProtocolError }),
    );
  });
});

async function cardOn(reader: ScriptedPcscReader) {
  await vi.waitFor(() => expect(reader.present).toBe(true));
  return reader.port.connect({ share: 'shared', timeoutMs: 200 });
}

describe('probePart3', () => {
  function setup(...steps: [string, string | typeof HANG][]) {
    const reader = scriptedPcsc().addReader('Some Reader 00 00');
    reader.insert(ATR_ULTRALIGHT, ...steps);
    return reader;
  }
  const probe = (card: Awaited<ReturnType<typeof cardOn>>) => probePart3(card, { readerName: 'R', timeoutMs: 100 });

  it('says yes, with the version, when the reader answers the version object', async () => {
    const reader = setup(['FF C2 00 00 02 80 00 00', `${OK} 80 03 01 00 00 90 00`]);
    expect(await probe(await cardOn(reader))).toEqual({ supported: true, version: { major: 1, minor: 0, build: 0 } });
    reader.assertDone();
  });

  it('says yes when the reader has sessions but no version object (C0 with an object error)', async () => {
    const reader = setup(['FF C2 00 00 02 80 00 00', 'C0 03 01 6A 81 90 00']);
    expect(await probe(await cardOn(reader))).toEqual({ supported: true, version: undefined });
  });

  it.each(['6A 81', '6D 00', '63 00', '41 43 52 31 32 32 55 32 30 33', '00 90 00'])(
    'says no when the reader answers %s',
    async (answer) => {
      const reader = setup(['FF C2 00 00 02 80 00 00', answer]);
      const result = await probe(await cardOn(reader));
      expect(result.supported).toBe(false);
      expect(result.supported === false && isTaplineError(result.reason)).toBe(true);
    },
  );

  it('throws what says nothing about the reader: the tag leaving, a timeout', async () => {
    const gone = setup(['FF C2 00 00 02 80 00 00', REMOVE_CARD]);
    await expect(probe(await cardOn(gone))).rejects.toMatchObject({ code: ErrorCode.TagLost });
    const silent = setup(['FF C2 00 00 02 80 00 00', HANG]);
    await expect(probe(await cardOn(silent))).rejects.toMatchObject({ code: ErrorCode.Timeout });
  });
});

describe('Part3Session', () => {
  function setup(idleEndMs = 0) {
    const reader = scriptedPcsc().addReader('Some Reader 00 00');
    reader.insert(ATR_ULTRALIGHT);
    return {
      reader,
      session: async () => new Part3Session(await cardOn(reader), { readerName: 'R', timeoutMs: 200, idleEndMs }),
    };
  }

  it('starts, switches to ISO 14443-A layer 3, reads a Type 2 page (the reader checks the CRC), and ends', async () => {
    const { reader, session } = setup();
    reader.expect(
      [START, `${OK} 90 00`],
      [SWITCH_A3, `${OK} 8F 01 00 90 00`],
      [READ0, `${OK} 92 01 00 96 02 00 00 97 10 ${PAGE0} 90 00`],
      [END, `${OK} 90 00`],
    );
    const s = await session();
    expect(hex(await s.iso14443aRaw(fromHex('3000')))).toBe(PAGE0);
    await vi.waitFor(() => expect(s.active).toBe(false));
    reader.assertDone();
  });

  it('fails on a CRC error the reader reports, and checks the CRC_A itself where RX-CRC checking is off (vector 10)', async () => {
    const { reader, session } = setup(10_000);
    const write = 'FF C2 00 01 13 90 02 00 02 5F 46 04 50 C3 00 00 95 06 A2 04 01 02 03 04 00';
    reader.expect(
      [START, `${OK} 90 00`],
      [SWITCH_A3, `${OK} 8F 01 00 90 00`],
      [READ0, `${OK} 92 01 00 96 02 01 00 97 10 ${PAGE0} 90 00`],
      // An ACK-only command answered with whole bytes: their CRC_A is checked here, pass then fail.
      [write, `${OK} 92 01 00 96 02 00 00 97 12 ${PAGE0} ${PAGE0_CRC} 90 00`],
      [write, `${OK} 92 01 00 96 02 00 00 97 12 ${PAGE0} 00 00 90 00`],
      [END, `${OK} 90 00`],
    );
    const s = await session();
    await expect(s.iso14443aRaw(fromHex('3000'))).rejects.toMatchObject({
      code: ErrorCode.ProtocolError,
      details: expect.objectContaining({ reason: 'crc' }),
    });
    expect(hex(await s.iso14443aRaw(fromHex('A204 01020304')))).toBe(PAGE0);
    await expect(s.iso14443aRaw(fromHex('A204 01020304'))).rejects.toMatchObject({
      code: ErrorCode.ProtocolError,
      details: expect.objectContaining({ reason: 'crc_a' }),
    });
    await s.close();
    reader.assertDone();
  });

  it('passes a 4-bit ACK through as one byte and keeps the session for the next frame', async () => {
    const { reader, session } = setup(10_000);
    const write = 'FF C2 00 01 13 90 02 00 02 5F 46 04 50 C3 00 00 95 06 A2 04 01 02 03 04 00';
    reader.expect(
      [START, `${OK} 90 00`],
      [SWITCH_A3, `${OK} 8F 01 00 90 00`],
      [write, `${OK} 92 01 04 96 02 00 00 97 01 0A 90 00`],
      [write, `${OK} 92 01 04 96 02 00 00 97 01 0A 90 00`],
      [END, `${OK} 90 00`],
    );
    const s = await session();
    expect(hex(await s.iso14443aRaw(fromHex('A204 01020304')))).toBe('0A');
    expect(hex(await s.iso14443aRaw(fromHex('A204 01020304')))).toBe('0A');
    expect(s.active).toBe(true);
    await s.close();
    expect(s.active).toBe(false);
    reader.assertDone();
    await expect(s.iso14443aRaw(fromHex('3000'))).rejects.toMatchObject({ code: ErrorCode.TagLost });
  });

  it('switches again after a failed switch, and reports a silent tag as TIMEOUT (64 01)', async () => {
    const { reader, session } = setup(10_000);
    reader.expect(
      [START, `${OK} 90 00`],
      [SWITCH_A3, 'C0 03 01 64 01 90 00'],
      [SWITCH_A3, `${OK} 8F 01 00 90 00`],
      [READ0, 'C0 03 04 64 01 90 00'],
      [END, `${OK} 90 00`],
    );
    const s = await session();
    await expect(s.iso14443aRaw(fromHex('3000'))).rejects.toMatchObject({ code: ErrorCode.Timeout });
    await expect(s.iso14443aRaw(fromHex('3000'))).rejects.toMatchObject({ code: ErrorCode.Timeout });
    await s.close();
    reader.assertDone();
  });

  it('carries ISO 15693 frames (layer 3, reader CRC) and falls back to layer 2 when layer 3 is refused', async () => {
    const { reader, session } = setup(10_000);
    reader.expect(
      [START, `${OK} 90 00`],
      ['FF C2 00 02 04 8F 02 02 03 00', 'C0 03 01 6A 80 90 00'],
      ['FF C2 00 02 04 8F 02 02 02 00', `${OK} 90 00`],
      [
        'FF C2 00 01 10 90 02 00 00 5F 46 04 A0 86 01 00 95 03 26 01 00 00',
        `${OK} 97 0A 00 00 0C 87 9C 00 18 01 04 E0 90 00`,
      ],
      // AUTHENTICATE gets the longer timer (300 ms = 0x0493E0).
      [
        'FF C2 00 01 1C 90 02 00 00 5F 46 04 E0 93 04 00 95 0F 00 35 00 00 02 01 02 03 04 05 06 07 08 09 0A 00',
        `${OK} 97 02 00 AA 90 00`,
      ],
      [END, `${OK} 90 00`],
    );
    const s = await session();
    expect(hex(await s.iso15693(fromHex('260100')))).toBe('00 00 0C 87 9C 00 18 01 04 E0');
    expect(hex(await s.iso15693(fromHex('0035000002 0102030405060708090A')))).toBe('00 AA');
    await s.close();
    reader.assertDone();
  });

  it('ends nothing when the tag left, and gives one session per connection', async () => {
    const { reader, session } = setup(5);
    reader.expect([START, REMOVE_CARD]);
    const s = await session();
    await expect(s.iso14443aRaw(fromHex('3000'))).rejects.toMatchObject({ code: ErrorCode.TagLost });
    expect(s.active).toBe(false);
    await s.close();
    reader.assertDone();
    const other = scriptedPcsc().addReader('X');
    other.insert(ATR_ULTRALIGHT);
    const card = await cardOn(other);
    const options = { readerName: 'X', timeoutMs: 100 };
    expect(part3SessionFor(card, options)).toBe(part3SessionFor(card, options));
    expect(Part3Tag.Transceive).toBe(0x95);
  });
});
