import { describe, expect, it } from 'vitest';
import {
  ErrorCode,
  ISO15693_CRC_CHECK_VALUE,
  ISO15693_CRC_RESIDUE,
  Iso15693ErrorCode,
  Iso15693RequestFlag,
  Iso15693ResponseFlag,
  TaplineError,
  appendIso15693Crc,
  buildIso15693GetSystemInformation,
  buildIso15693Inventory,
  buildIso15693ReadMultipleBlocks,
  buildIso15693ReadSignature,
  buildIso15693ReadSingleBlock,
  buildTam1Authenticate,
  buildTam1Message,
  checkIso15693Crc,
  crc16Iso15693,
  describeIso15693Error,
  formatIso15693Uid,
  fromHex,
  inspectIso15693Uid,
  isIso15693Uid,
  iso15693StatusError,
  iso15693UidFromAir,
  iso15693UidToAir,
  parseIso15693Inventory,
  parseIso15693ReadMultipleBlocks,
  parseIso15693ReadSignature,
  parseIso15693ReadSingleBlock,
  parseIso15693SystemInformation,
  parseIso15693Uid,
  parseTam1Authenticate,
  stripIso15693Crc,
  toSpacedHex,
} from '../src/index.js';

const hex = (bytes: Uint8Array): string => toSpacedHex(bytes);
const SPARK1_UID = fromHex('E0040118009C870C');
const ICHALLENGE = fromHex('00112233445566778899');

/** Runs `fn` and returns the TaplineError it throws; fails the test if it throws anything else or nothing. */
function thrown(fn: () => unknown): TaplineError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(TaplineError);
    return error as TaplineError;
  }
  throw new Error('expected a TaplineError, nothing was thrown');
}

describe('CRC-16/ISO-IEC 13239 (X.25)', () => {
  it('has the catalogue check value 0x906E for "123456789", appended as 6E 90', () => {
    const ascii = new TextEncoder().encode('123456789');
    expect(crc16Iso15693(ascii)).toBe(0x906e);
    expect(ISO15693_CRC_CHECK_VALUE).toBe(0x906e);
    expect(hex(appendIso15693Crc(ascii).subarray(9))).toBe('6E 90');
  });

  it('leaves the residue 0xF0B8 in the register over data and CRC', () => {
    const framed = appendIso15693Crc(new TextEncoder().encode('123456789'));
    expect(crc16Iso15693(framed) ^ 0xffff).toBe(ISO15693_CRC_RESIDUE);
    expect(ISO15693_CRC_RESIDUE).toBe(0xf0b8);
    expect(checkIso15693Crc(framed)).toBe(true);
  });

  it('checks the inventory reply of the ST CR95HF thread (CRC D0 60)', () => {
    const reply = fromHex('00 00 02 28 E0 6D 58 01 04 E0 D0 60');
    expect(crc16Iso15693(reply.subarray(0, 10))).toBe(0x60d0);
    expect(checkIso15693Crc(reply)).toBe(true);
    expect(hex(stripIso15693Crc(reply))).toBe('00 00 02 28 E0 6D 58 01 04 E0');
  });

  it('rejects a corrupted frame with INTEGRITY_ERROR and a too-short one with PROTOCOL_ERROR', () => {
    const bad = fromHex('00 00 02 28 E0 6D 58 01 04 E0 D0 61');
    expect(checkIso15693Crc(bad)).toBe(false);
    const corrupted = thrown(() => stripIso15693Crc(bad, 'the reply to INVENTORY'));
    expect(corrupted.code).toBe(ErrorCode.IntegrityError);
    expect(corrupted.message).toContain('D0 60');
    expect(thrown(() => stripIso15693Crc(fromHex('6E 90'))).code).toBe(ErrorCode.ProtocolError);
    expect(checkIso15693Crc(new Uint8Array())).toBe(false);
  });
});

describe('UID byte order', () => {
  it('sends E0040118009C870C LSB first and reads it back MSB first', () => {
    expect(hex(iso15693UidToAir(SPARK1_UID))).toBe('0C 87 9C 00 18 01 04 E0');
    expect(formatIso15693Uid(iso15693UidFromAir(fromHex('0C 87 9C 00 18 01 04 E0')))).toBe('E0040118009C870C');
  });

  it('parses text, validates the length, and only warns about a missing E0', () => {
    expect(hex(parseIso15693Uid('e0:04:01:18:00:9c:87:0c'))).toBe('E0 04 01 18 00 9C 87 0C');
    expect(thrown(() => parseIso15693Uid('E0040118009C87')).code).toBe(ErrorCode.InvalidArgument);
    expect(thrown(() => iso15693UidToAir(new Uint8Array(7))).code).toBe(ErrorCode.InvalidArgument);

    const spark = inspectIso15693Uid(SPARK1_UID);
    expect(spark).toMatchObject({ valid: true, manufacturerCode: 0x04, manufacturer: 'NXP Semiconductors', icType: 1 });
    expect(spark.warnings).toEqual([]);
    expect(isIso15693Uid(SPARK1_UID)).toBe(true);

    const backwards = inspectIso15693Uid(iso15693UidToAir(SPARK1_UID));
    expect(backwards.valid).toBe(false);
    expect(backwards.warnings[0]).toContain('air order');
    expect(isIso15693Uid(iso15693UidToAir(SPARK1_UID))).toBe(false);
  });
});

describe('request frames', () => {
  it('builds INVENTORY 26 01 00, with CRC F6 0A', () => {
    expect(hex(buildIso15693Inventory())).toBe('26 01 00');
    expect(hex(buildIso15693Inventory({ crc: true }))).toBe('26 01 00 F6 0A');
    expect(hex(buildIso15693Inventory({ afi: 0x07 }))).toBe('36 01 07 00');
    expect(hex(buildIso15693Inventory({ highDataRate: false }))).toBe('24 01 00');
  });

  it('builds READ SINGLE BLOCK addressed (22 20 <UID LSB first> 00 + CRC 67 07) and non-addressed', () => {
    expect(hex(buildIso15693ReadSingleBlock(0, { uid: SPARK1_UID }))).toBe('22 20 0C 87 9C 00 18 01 04 E0 00');
    expect(hex(buildIso15693ReadSingleBlock(0, { uid: SPARK1_UID, crc: true }))).toBe(
      '22 20 0C 87 9C 00 18 01 04 E0 00 67 07',
    );
    expect(hex(buildIso15693ReadSingleBlock(5))).toBe('02 20 05');
    expect(hex(buildIso15693ReadSingleBlock(5, { withSecurityStatus: true, selected: true }))).toBe('52 20 05');
  });

  it('builds READ MULTIPLE BLOCKS with the count minus one', () => {
    expect(hex(buildIso15693ReadMultipleBlocks(4, 8, { uid: SPARK1_UID }))).toBe('22 23 0C 87 9C 00 18 01 04 E0 04 07');
    expect(hex(buildIso15693ReadMultipleBlocks(0, 256))).toBe('02 23 00 FF');
    expect(thrown(() => buildIso15693ReadMultipleBlocks(255, 2)).code).toBe(ErrorCode.InvalidArgument);
    expect(thrown(() => buildIso15693ReadMultipleBlocks(0, 0)).code).toBe(ErrorCode.InvalidArgument);
  });

  it('builds GET SYSTEM INFORMATION', () => {
    expect(hex(buildIso15693GetSystemInformation({ uid: SPARK1_UID }))).toBe('22 2B 0C 87 9C 00 18 01 04 E0');
    expect(hex(buildIso15693GetSystemInformation())).toBe('02 2B');
  });

  it('builds NXP READ SIGNATURE 22 BD 04 <UID LSB first> + CRC 50 A0', () => {
    expect(hex(buildIso15693ReadSignature({ uid: SPARK1_UID }))).toBe('22 BD 04 0C 87 9C 00 18 01 04 E0');
    expect(hex(buildIso15693ReadSignature({ uid: SPARK1_UID, crc: true }))).toBe(
      '22 BD 04 0C 87 9C 00 18 01 04 E0 50 A0',
    );
    expect(hex(buildIso15693ReadSignature())).toBe('02 BD 04');
  });

  it('builds AUTHENTICATE TAM1 as VivoKey Intra does: 20 35 <UID LSB first> 00 00 02 <IChallenge>', () => {
    expect(hex(buildTam1Message(2, ICHALLENGE))).toBe('00 02 00 11 22 33 44 55 66 77 88 99');
    expect(hex(buildTam1Authenticate(ICHALLENGE, { uid: SPARK1_UID }))).toBe(
      '20 35 0C 87 9C 00 18 01 04 E0 00 00 02 00 11 22 33 44 55 66 77 88 99',
    );
    expect(
      hex(buildTam1Authenticate(ICHALLENGE, { uid: SPARK1_UID, keyId: 0, option: true, highDataRate: true })),
    ).toBe('62 35 0C 87 9C 00 18 01 04 E0 00 00 00 00 11 22 33 44 55 66 77 88 99');
    const framed = buildTam1Authenticate(ICHALLENGE, { crc: true });
    expect(hex(framed.subarray(0, 15))).toBe('00 35 00 00 02 00 11 22 33 44 55 66 77 88 99');
    expect(checkIso15693Crc(framed)).toBe(true);
  });

  it('refuses bad caller input with INVALID_ARGUMENT', () => {
    for (const build of [
      () => buildIso15693ReadSingleBlock(256),
      () => buildIso15693ReadSingleBlock(1.5),
      () => buildIso15693ReadSingleBlock(0, { uid: new Uint8Array(7) }),
      () => buildIso15693ReadSingleBlock(0, { uid: SPARK1_UID, selected: true }),
      () => buildIso15693Inventory({ afi: 0x100 }),
      () => buildTam1Authenticate(new Uint8Array(16)),
      () => buildTam1Authenticate(ICHALLENGE, { keyId: -1 }),
    ]) {
      expect(thrown(build).code).toBe(ErrorCode.InvalidArgument);
    }
  });

  it('names the flag bits as ISO 15693-3 does', () => {
    expect(Iso15693RequestFlag.HighDataRate | Iso15693RequestFlag.Address).toBe(0x22);
    expect(Iso15693RequestFlag.Inventory | Iso15693RequestFlag.OneSlot | Iso15693RequestFlag.HighDataRate).toBe(0x26);
    expect(Iso15693ResponseFlag).toMatchObject({
      Error: 0x01,
      ResponseBufferValid: 0x02,
      FinalResponse: 0x04,
      WaitTimeExtension: 0x40,
    });
  });
});

describe('reply parsing', () => {
  it('parses the INVENTORY reply 00 00 02 28 E0 6D 58 01 04 E0 D0 60 to UID E00401586DE02802', () => {
    const reply = fromHex('00 00 02 28 E0 6D 58 01 04 E0 D0 60');
    const parsed = parseIso15693Inventory(reply, { crc: true });
    expect(parsed.flags).toBe(0);
    expect(parsed.dsfid).toBe(0);
    expect(formatIso15693Uid(parsed.uid)).toBe('E00401586DE02802');
    expect(formatIso15693Uid(parseIso15693Inventory(reply.subarray(0, 10)).uid)).toBe('E00401586DE02802');
  });

  it('parses block reads with and without security status', () => {
    expect(parseIso15693ReadSingleBlock(fromHex('00 DE AD BE EF'))).toEqual({ flags: 0, data: fromHex('DEADBEEF') });
    expect(parseIso15693ReadSingleBlock(fromHex('00 01 DE AD BE EF'), { withSecurityStatus: true })).toEqual({
      flags: 0,
      securityStatus: 1,
      data: fromHex('DEADBEEF'),
    });
    expect(parseIso15693ReadSingleBlock(fromHex('00 01 02 03 04 05 06 07 08'), { blockSize: 8 }).data).toEqual(
      fromHex('0102030405060708'),
    );

    const plain = parseIso15693ReadMultipleBlocks(fromHex('00 01 02 03 04 05 06 07 08'), 2);
    expect(plain.blocks).toEqual([{ data: fromHex('01020304') }, { data: fromHex('05060708') }]);
    expect(hex(plain.data)).toBe('01 02 03 04 05 06 07 08');

    const secured = parseIso15693ReadMultipleBlocks(fromHex('00 00 01 02 03 04 01 05 06 07 08'), 2, {
      withSecurityStatus: true,
    });
    expect(secured.blocks).toEqual([
      { securityStatus: 0, data: fromHex('01020304') },
      { securityStatus: 1, data: fromHex('05060708') },
    ]);
    expect(hex(secured.data)).toBe('01 02 03 04 05 06 07 08');
  });

  it('parses GET SYSTEM INFORMATION with every optional field present or absent', () => {
    const uidAir = '0C 87 9C 00 18 01 04 E0';
    const full = parseIso15693SystemInformation(fromHex(`00 0F ${uidAir} 00 00 3F 03 01`));
    expect(full).toEqual({
      flags: 0,
      infoFlags: 0x0f,
      uid: SPARK1_UID,
      dsfid: 0,
      afi: 0,
      memory: { blockCount: 64, blockSize: 4 },
      icReference: 1,
    });
    expect(parseIso15693SystemInformation(fromHex(`00 00 ${uidAir}`))).toEqual({
      flags: 0,
      infoFlags: 0,
      uid: SPARK1_UID,
    });
    expect(parseIso15693SystemInformation(fromHex(`00 0A ${uidAir} 07 55`))).toEqual({
      flags: 0,
      infoFlags: 0x0a,
      uid: SPARK1_UID,
      afi: 0x07,
      icReference: 0x55,
    });
    // The three RFU bits of the block-size byte are masked off.
    expect(parseIso15693SystemInformation(fromHex(`00 04 ${uidAir} FF E3`)).memory).toEqual({
      blockCount: 256,
      blockSize: 4,
    });
    const short = thrown(() => parseIso15693SystemInformation(fromHex(`00 0F ${uidAir} 00 00 3F 03`)));
    expect(short.code).toBe(ErrorCode.ProtocolError);
    expect(short.message).toContain('GET SYSTEM INFORMATION');
    const long = thrown(() => parseIso15693SystemInformation(fromHex(`00 01 ${uidAir} 00 00`)));
    expect(long.code).toBe(ErrorCode.ProtocolError);
    expect(long.message).toContain('too long');
  });

  it('parses READ SIGNATURE (32 bytes)', () => {
    const signature = fromHex('4B4E03E1211952EF6A5F9D84AB218CD4D7549D0CDF8CA8779F9AD16C9A9CBF3B');
    const reply = appendIso15693Crc(Uint8Array.of(0x00, ...signature));
    expect(parseIso15693ReadSignature(reply, { crc: true })).toEqual({ flags: 0, signature });
    expect(thrown(() => parseIso15693ReadSignature(reply.subarray(0, 32))).code).toBe(ErrorCode.ProtocolError);
  });

  it('parses the AUTHENTICATE reply: flags, the unknown byte, 16-byte TResponse', () => {
    const tresponse = fromHex('4D96CA87FC552877FD4F5F797823871B');
    const reply = Uint8Array.of(0x00, 0x5a, ...tresponse);
    const parsed = parseTam1Authenticate(reply);
    expect(parsed).toMatchObject({
      flags: 0,
      responseBufferValid: false,
      finalResponse: false,
      waitTimeExtension: false,
      leadingByte: 0x5a,
    });
    expect(parsed.tresponse).toEqual(tresponse);
    expect(parsed.reply).toEqual(reply);

    const buffered = parseTam1Authenticate(appendIso15693Crc(Uint8Array.of(0x06, 0x00, ...tresponse)), { crc: true });
    expect(buffered).toMatchObject({ flags: 0x06, responseBufferValid: true, finalResponse: true });
    expect(buffered.reply).toEqual(Uint8Array.of(0x06, 0x00, ...tresponse));

    const waiting = thrown(() => parseTam1Authenticate(Uint8Array.of(0x40)));
    expect(waiting.code).toBe(ErrorCode.ProtocolError);
    expect(waiting.message).toContain('wait time extension');
    expect(thrown(() => parseTam1Authenticate(Uint8Array.of(0x08, 0x00, ...tresponse))).code).toBe(
      ErrorCode.ProtocolError,
    );
    expect(thrown(() => parseTam1Authenticate(Uint8Array.of(0x00, 0x00, ...tresponse, 0x00))).code).toBe(
      ErrorCode.ProtocolError,
    );
  });

  it('reports truncated, over-long and wrong-flag replies as PROTOCOL_ERROR naming the command and the hex', () => {
    const truncated = thrown(() => parseIso15693ReadSingleBlock(fromHex('00 01 02')));
    expect(truncated.code).toBe(ErrorCode.ProtocolError);
    expect(truncated.message).toBe(
      "The tag's reply to READ SINGLE BLOCK is truncated: 3 bytes instead of 5 (flags, 4-byte block): 00 01 02.",
    );
    expect(truncated.details).toMatchObject({ command: 'READ SINGLE BLOCK', reply: '00 01 02', expectedLength: 5 });

    const long = thrown(() => parseIso15693Inventory(fromHex('00 00 02 28 E0 6D 58 01 04 E0 D0 60')));
    expect(long.code).toBe(ErrorCode.ProtocolError);
    expect(long.message).toContain('INVENTORY is too long');
    expect(long.message).toContain('00 00 02 28 E0 6D 58 01 04 E0 D0 60');

    const flagged = thrown(() => parseIso15693ReadSingleBlock(fromHex('08 01 02 03 04')));
    expect(flagged.code).toBe(ErrorCode.ProtocolError);
    expect(flagged.message).toContain('response flags 0x08');

    const crypto = thrown(() => parseIso15693ReadSingleBlock(fromHex('04 01 02 03 04')));
    expect(crypto.code).toBe(ErrorCode.ProtocolError);

    const empty = thrown(() => parseIso15693ReadSignature(new Uint8Array()));
    expect(empty.code).toBe(ErrorCode.ProtocolError);
    expect(empty.message).toContain('READ SIGNATURE is empty');
  });
});

describe('error responses', () => {
  it.each([
    ['0x01', 0x01, 'command not supported'],
    ['0x02', 0x02, 'command not recognised (format error)'],
    ['0x03', 0x03, 'option not supported'],
    ['0x0F', 0x0f, 'unknown error'],
    ['0x10', 0x10, 'block not available'],
    ['0x11', 0x11, 'block already locked'],
    ['0x12', 0x12, 'block locked, content cannot change'],
    ['0x13', 0x13, 'block not programmed successfully'],
    ['0x14', 0x14, 'block not locked successfully'],
    ['0xA7', 0xa7, 'manufacturer-specific error'],
    ['0x55', 0x55, 'reserved error code'],
  ])('decodes error %s (%i) as TAG_STATUS "%s"', (_label, code, name) => {
    expect(describeIso15693Error(code)).toBe(name);
    const error = thrown(() => parseIso15693ReadSingleBlock(Uint8Array.of(0x01, code)));
    expect(error.code).toBe(ErrorCode.TagStatus);
    expect(error.message).toContain('READ SINGLE BLOCK');
    expect(error.message).toContain(name);
    expect(error.details).toMatchObject({ iso15693Error: code, command: 'READ SINGLE BLOCK' });
    expect(error.hint).toBeTruthy();
  });

  it('decodes an error reply to every command, with its CRC when asked', () => {
    const reply = Uint8Array.of(0x01, Iso15693ErrorCode.Unknown);
    const framed = appendIso15693Crc(reply);
    const parsers: ((r: Uint8Array, crc: boolean) => unknown)[] = [
      (r, crc) => parseIso15693Inventory(r, { crc }),
      (r, crc) => parseIso15693ReadSingleBlock(r, { crc }),
      (r, crc) => parseIso15693ReadMultipleBlocks(r, 4, { crc }),
      (r, crc) => parseIso15693SystemInformation(r, { crc }),
      (r, crc) => parseIso15693ReadSignature(r, { crc }),
      (r, crc) => parseTam1Authenticate(r, { crc }),
    ];
    for (const parse of parsers) {
      for (const [bytes, crc] of [
        [reply, false],
        [framed, true],
      ] as const) {
        const error = thrown(() => parse(bytes, crc));
        expect(error.code).toBe(ErrorCode.TagStatus);
        expect(error.details['iso15693Error']).toBe(0x0f);
      }
    }
    const authError = iso15693StatusError('AUTHENTICATE', 0x0f);
    expect(authError.message).toBe('The tag refused AUTHENTICATE with ISO 15693 error 0x0F (unknown error).');
    expect(authError.hint).toContain('key id');
  });

  it('rejects malformed error replies (no code, trailing bytes) as PROTOCOL_ERROR', () => {
    expect(thrown(() => parseIso15693Inventory(Uint8Array.of(0x01))).code).toBe(ErrorCode.ProtocolError);
    expect(thrown(() => parseIso15693Inventory(Uint8Array.of(0x01, 0x0f, 0x00))).code).toBe(ErrorCode.ProtocolError);
  });
});
