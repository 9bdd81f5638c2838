import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ErrorCode, isTaplineError } from '../src/model/errors.js';
import type { FrameExchange } from '../src/tags/channel.js';
import { ApduChannel } from '../src/tags/iso7816/channel.js';
import {
  Ev2Session,
  NTAG4XX_CC_FILE_ID,
  NTAG4XX_NDEF_FILE_ID,
  SecureChannel,
  authenticateEv2First,
  beginSplitAuthentication,
  decryptFullData,
  finishSplitAuthentication,
  getCardUid,
  getFileSettings,
  getVersion,
  parseFileSettings,
  parseNtag4xxVersion,
  parseProductionInfo,
  parseVersionInfo,
  pcdAnswerChallenge,
  readData,
  readSignature,
  selectFile,
  selectNdefApplication,
  verifyPiccAnswer,
  writeData,
} from '../src/tags/ntag4xx/index.js';
import { fromHex, toHex } from '../src/util/bytes.js';
import { scriptedCard } from './helpers.js';

const HW_424 = '04 04 02 30 00 11 05';
const SW_424 = '04 04 02 01 02 11 05';
// UID 0463474AA26A80, batch CF19D24E, batch bits 2 / FabKey 0b00001 (byte 11 = 0x20, bit 7 of byte 12), week 48, 2021.
const PRODUCTION = '0463474AA26A80 CF19D24E 20 C8 21';

describe('selection', () => {
  it('selects the NDEF application and the CC and NDEF files with the exact APDUs', async () => {
    const card = scriptedCard([
      ['00A4040C07D276000085010100', '9000'],
      ['00A4000C02E103', '9000'],
      ['00A4000C02E104', '9000'],
    ]);
    await selectNdefApplication(card.channel);
    await selectFile(card.channel, NTAG4XX_CC_FILE_ID);
    await selectFile(card.channel, NTAG4XX_NDEF_FILE_ID);
    card.done();
  });

  it('reports a refused SELECT as TAG_STATUS', async () => {
    const card = scriptedCard([['00A4000C02E105', '6A82']]);
    await expect(selectFile(card.channel, 0xe105)).rejects.toMatchObject({
      code: ErrorCode.TagStatus,
      details: { sw: '6a82' },
    });
  });
});

describe('GetVersion', () => {
  it('parses the genuine NTAG 424 DNA example over three frames', async () => {
    const card = scriptedCard([
      ['9060000000', `${HW_424} 91AF`],
      ['90AF000000', `${SW_424} 91AF`],
      ['90AF000000', `${PRODUCTION} 9100`],
    ]);
    const version = await getVersion(card.channel);
    card.done();
    expect(version.model).toBe('ntag424dna');
    expect(version.hardware).toMatchObject({
      vendorId: 0x04,
      type: 0x04,
      subtype: 0x02,
      majorVersion: 0x30,
      minorVersion: 0x00,
      storageSize: 0x11,
      storageBytes: 256,
      protocol: 0x05,
    });
    expect(version.software).toMatchObject({ majorVersion: 0x01, minorVersion: 0x02 });
    expect(toHex(version.production.uid)).toBe('0463474aa26a80');
    expect(toHex(version.production.batchNo)).toBe('cf19d24e');
    expect(version.production).toMatchObject({ batchNoBits: 2, fabKey: 1, week: 48, year: 2021, fabKeyId: undefined });
    expect(toHex(version.raw)).toBe(toHex(fromHex(HW_424 + SW_424 + PRODUCTION)));
  });

  it('recognises an NTAG 413 DNA hardware block (major 0x10) and leaves others unknown with the raw bytes', () => {
    const production = fromHex(PRODUCTION);
    expect(parseNtag4xxVersion(fromHex('04 04 02 10 00 0F 05'), fromHex(SW_424), production).model).toBe('ntag413dna');
    const desfire = parseNtag4xxVersion(fromHex('04 01 01 12 00 1A 05'), fromHex(SW_424), production);
    expect(desfire.model).toBe('unknown');
    expect(toHex(desfire.hardware.raw)).toBe('04010112001a05');
    expect(parseNtag4xxVersion(fromHex('04 04 02 30 01 11 05'), fromHex(SW_424), production).model).toBe('unknown');
    expect(parseNtag4xxVersion(fromHex('05 04 02 30 00 11 05'), fromHex(SW_424), production).model).toBe('unknown');
  });

  it('keeps a FabKeyID and reports non-BCD dates as undefined', () => {
    const info = parseProductionInfo(fromHex('04112233445566 00000000 00 FF AA 07'));
    expect(info).toMatchObject({ week: undefined, year: undefined, fabKeyId: 7, fabKey: 1 });
  });

  it('fails with PROTOCOL_ERROR on truncated frames and on a chain that ends early', async () => {
    const short = scriptedCard([['9060000000', '04 04 02 30 00 11 91AF']]);
    await expect(getVersion(short.channel)).rejects.toMatchObject({ code: ErrorCode.ProtocolError });
    const early = scriptedCard([['9060000000', `${HW_424} 9100`]]);
    await expect(getVersion(early.channel)).rejects.toMatchObject({ code: ErrorCode.ProtocolError });
    const truncated = scriptedCard([
      ['9060000000', `${HW_424} 91AF`],
      ['90AF000000', `${SW_424} 91AF`],
      ['90AF000000', '0463474AA26A80 CF19D24E 20 9100'],
    ]);
    await expect(getVersion(truncated.channel)).rejects.toMatchObject({ code: ErrorCode.ProtocolError });
    const apex = scriptedCard([['9060000000', '6E00']]);
    await expect(getVersion(apex.channel)).rejects.toMatchObject({ code: ErrorCode.TagStatus });
  });
});

describe('Read_Sig, ReadData and file settings in plain', () => {
  const signature = 'AB'.repeat(56);

  it('reads the 56-byte signature with 91 90 and with 91 00', async () => {
    const card = scriptedCard([
      ['903C0000010000', `${signature} 9190`],
      ['903C0000010000', `${signature} 9100`],
    ]);
    expect(toHex(await readSignature(card.channel))).toBe(toHex(fromHex(signature)));
    expect(await readSignature(card.channel)).toHaveLength(56);
    card.done();
  });

  it('fails Read_Sig with PROTOCOL_ERROR on 55 bytes and TAG_STATUS on a refusal', async () => {
    const card = scriptedCard([
      ['903C0000010000', `${'AB'.repeat(55)} 9190`],
      ['903C0000010000', '919D'],
    ]);
    await expect(readSignature(card.channel)).rejects.toMatchObject({ code: ErrorCode.ProtocolError });
    await expect(readSignature(card.channel)).rejects.toMatchObject({ code: ErrorCode.TagStatus });
  });

  it('reads and writes data in plain with 3-byte little-endian offset and length', async () => {
    const card = scriptedCard([
      ['90AD000007 02 200100 030000 00', '010203 9100'],
      ['90AD000007 02 000000 040000 00', '010203 9100'],
      ['908D00000A 01 050000 030000 AABBCC 00', '9100'],
    ]);
    expect(toHex(await readData(card.channel, { fileNo: 2, offset: 0x120, length: 3 }))).toBe('010203');
    await expect(readData(card.channel, { fileNo: 2, length: 4 })).rejects.toMatchObject({
      code: ErrorCode.ProtocolError,
    });
    await writeData(card.channel, { fileNo: 1, offset: 5, data: fromHex('AABBCC') });
    card.done();
  });

  it('refuses out-of-range arguments with INVALID_ARGUMENT', async () => {
    const card = scriptedCard([]);
    await expect(readData(card.channel, { fileNo: 32 })).rejects.toMatchObject({ code: ErrorCode.InvalidArgument });
    await expect(readData(card.channel, { fileNo: 1, offset: 0x1000000 })).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
    });
    await expect(writeData(card.channel, { fileNo: 1, data: new Uint8Array() })).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
    });
    expect(card.sent).toEqual([]);
  });

  it('parses plain file settings and refuses inconsistent lengths', async () => {
    const card = scriptedCard([['90F5000001 01 00', '00 00 E0 EE 20 00 00 9100']]);
    expect(await getFileSettings(card.channel, 1)).toMatchObject({
      commMode: 'plain',
      sdmEnabled: false,
      fileSize: 32,
      accessRights: { readWrite: 0xe, change: 0x0, read: 0xe, write: 0xe },
    });
    expect(parseFileSettings(fromHex('00 03 30 23 80 00 00')).commMode).toBe('full');
    expect(() => parseFileSettings(fromHex('00 00 E0 EE 20 00 00 01'))).toThrow(
      expect.objectContaining({ code: ErrorCode.ProtocolError }),
    );
    expect(() => parseFileSettings(fromHex('00 40 E0 EE 20 00 00'))).toThrow(
      expect.objectContaining({ code: ErrorCode.ProtocolError }),
    );
  });
});

/** Expects `run` to finish or to fail with a TaplineError, nothing else. */
async function onlyTaplineErrors(run: () => Promise<unknown>): Promise<void> {
  try {
    await run();
  } catch (error) {
    if (!isTaplineError(error)) throw error;
  }
}

function randomCard(replies: readonly Uint8Array[]): ApduChannel {
  let i = 0;
  const exchange: FrameExchange = () => Promise.resolve(replies[i++ % replies.length]!);
  return new ApduChannel(exchange, { maxGetResponse: 4 });
}

function session(): Ev2Session {
  return new Ev2Session({
    keyNo: 0,
    ti: fromHex('9D00C4DF'),
    keys: { enc: fromHex('1309C877509E5A215007FF0ED19CA564'), mac: fromHex('4C6626F5E72EA694202139295C7A7FC7') },
    pdCap2: new Uint8Array(6),
    pcdCap2: new Uint8Array(6),
  });
}

describe('random bytes from a tag give a TaplineError, never another exception (properties)', () => {
  const anyBytes = fc.uint8Array({ maxLength: 80 });

  it('for every reply parser', () => {
    fc.assert(
      fc.property(anyBytes, anyBytes, anyBytes, (a, b, c) => {
        for (const parse of [
          () => parseVersionInfo(a),
          () => parseProductionInfo(a),
          () => parseFileSettings(a),
          () => parseNtag4xxVersion(a, b, c),
          () => pcdAnswerChallenge(new Uint8Array(16), a, new Uint8Array(16)),
          () => verifyPiccAnswer(new Uint8Array(16), new Uint8Array(16), new Uint8Array(16), a),
          () => decryptFullData(new Uint8Array(16), new Uint8Array(16), a),
        ]) {
          try {
            parse();
          } catch (error) {
            expect(isTaplineError(error)).toBe(true);
          }
        }
      }),
      { numRuns: 500 },
    );
  });

  it('for every command, whatever the tag answers', async () => {
    // Bias the status word towards NXP statuses so the parsers behind them get exercised, not just the status check.
    const reply = fc
      .tuple(
        fc.uint8Array({ maxLength: 70 }),
        fc.oneof(fc.constantFrom(0x9100, 0x91af, 0x9190, 0x9000, 0x917e, 0x91ae), fc.integer({ min: 0, max: 0xffff })),
      )
      .map(([data, sw]) => Uint8Array.from([...data, sw >>> 8, sw & 0xff]));
    const garbage = fc.oneof(reply, fc.uint8Array({ maxLength: 3 }));
    await fc.assert(
      fc.asyncProperty(fc.array(garbage, { minLength: 1, maxLength: 4 }), async (replies) => {
        const commands: (() => Promise<unknown>)[] = [
          () => getVersion(randomCard(replies)),
          () => selectNdefApplication(randomCard(replies)),
          () => readSignature(randomCard(replies)),
          () => readData(randomCard(replies), { fileNo: 2 }),
          () => getFileSettings(randomCard(replies), 2),
          () => authenticateEv2First(randomCard(replies), { keyNo: 0, key: new Uint8Array(16) }),
          () => beginSplitAuthentication(randomCard(replies), 2),
          () => finishSplitAuthentication(randomCard(replies), new Uint8Array(32)),
          () => getCardUid(new SecureChannel(randomCard(replies), session())),
          () => readSignature(new SecureChannel(randomCard(replies), session())),
          () => readData(new SecureChannel(randomCard(replies), session()), { fileNo: 2, mode: 'mac' }),
          () => readData(new SecureChannel(randomCard(replies), session()), { fileNo: 2, mode: 'full' }),
          () => getFileSettings(new SecureChannel(randomCard(replies), session()), 2),
        ];
        for (const command of commands) await onlyTaplineErrors(command);
      }),
      { numRuns: 300 },
    );
  });
});
