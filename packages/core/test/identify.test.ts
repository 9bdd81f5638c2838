import { describe, expect, it } from 'vitest';
import { ErrorCode, fromHex, historicalBytes, identifyFromReaderData, identifyTag, toHex } from '../src/index.js';
import { ScriptedReader, type ScriptedStep } from './helpers.js';

const NTAG424_UID = fromHex('04A1B2C3D4E5F6');
const ISO_DEP = { technology: 'iso14443a' as const, uid: NTAG424_UID, protocols: ['iso14443-4' as const] };
const GET_VERSION_424: ScriptedStep[] = [
  { expect: '9060000000', answer: '0404023000110591af' },
  { expect: '90af000000', answer: '0404020102110591af' },
  { expect: '90af000000', answer: '04a1b2c3d4e5f6cd9b6b3a80101f9100' },
];

describe('identification from reader data', () => {
  it('finds the historical bytes in an ATS and in a PC/SC ATR', () => {
    expect(toHex(historicalBytes({ ...ISO_DEP, ats: fromHex('77777102 80') })!)).toBe('80');
    expect(toHex(historicalBytes({ ...ISO_DEP, atr: fromHex('3B8180018080') })!)).toBe('80');
    expect(toHex(historicalBytes({ ...ISO_DEP, atr: fromHex('3B8A80010031C173C8400000900090') })!)).toBe(
      '0031c173c84000009000',
    );
    expect(historicalBytes({ ...ISO_DEP })).toBeUndefined();
  });

  it('names a Spark 1 by its ICODE DNA UID, and nothing else by an ISO 15693 UID', () => {
    expect(
      identifyFromReaderData({ technology: 'iso15693', uid: fromHex('E0040118009C870C'), protocols: ['iso15693'] }),
    ).toMatchObject({
      chip: 'spark1',
      model: 'ICODE DNA',
      exchanges: 0,
    });
    expect(
      identifyFromReaderData({ technology: 'iso15693', uid: fromHex('E004015800000000'), protocols: ['iso15693'] }),
    ).toMatchObject({
      chip: 'unknown',
    });
  });

  it('names a Spark 2 and an Apex from their ATS without an exchange', () => {
    expect(identifyFromReaderData({ ...ISO_DEP, ats: fromHex('7777710280') })).toMatchObject({
      chip: 'spark2',
      exchanges: 0,
    });
    expect(
      identifyFromReaderData({ ...ISO_DEP, uid: fromHex('08112233'), atr: fromHex('3B8A80010031C173C8400000900090') }),
    ).toMatchObject({
      chip: 'apex',
      exchanges: 0,
    });
    expect(
      identifyFromReaderData({ ...ISO_DEP, uid: fromHex('08112233'), ats: fromHex('7777710280') }),
    ).toBeUndefined();
  });
});

describe('identifyTag', () => {
  it('spends no exchange on a Spark 2 in fast mode', async () => {
    const reader = new ScriptedReader([]);
    const tag = reader.arrive({ ats: fromHex('7777710280'), protocols: ['iso14443-4'] });
    expect(await identifyTag(tag)).toMatchObject({ chip: 'spark2', exchanges: 0 });
    expect(tag.identification?.chip).toBe('spark2');
    expect(reader.sent).toEqual([]);
  });

  it('reads the model with GetVersion in full mode (three frames)', async () => {
    const reader = new ScriptedReader([...GET_VERSION_424]);
    const tag = reader.arrive({ ats: fromHex('7777710280'), protocols: ['iso14443-4'] });
    expect(await identifyTag(tag, { detail: 'full' })).toMatchObject({
      chip: 'spark2',
      model: 'NTAG 424 DNA',
      exchanges: 3,
    });
    reader.assertDone();
  });

  it('tells an NTAG 413 DNA by its hardware major version', async () => {
    const reader = new ScriptedReader([
      { expect: '9060000000', answer: '040402100011 0591af'.replace(' ', '') },
      { expect: '90af000000', answer: '0404020102110591af' },
      { expect: '90af000000', answer: '04a1b2c3d4e5f6cd9b6b3a80101f9100' },
    ]);
    const tag = reader.arrive({ protocols: ['iso14443-4'] });
    expect(await identifyTag(tag)).toMatchObject({ chip: 'spark2', model: 'NTAG 413 DNA', exchanges: 3 });
  });

  it('finds an Apex with an unfamiliar ATS by GetVersion 6E00 and the Verify applet', async () => {
    const reader = new ScriptedReader([
      { expect: '9060000000', answer: '6e00' },
      { expect: '00a404000ca000000846737061726b320100', answer: '01020304050607089000' },
    ]);
    const tag = reader.arrive({ uid: fromHex('08010203'), protocols: ['iso14443-4'] });
    const result = await identifyTag(tag);
    expect(result).toMatchObject({ chip: 'apex', exchanges: 2 });
    expect(toHex(result.apexChipId!)).toBe('0102030405060708');
  });

  it('calls a JavaCard without the Verify applet unknown', async () => {
    const reader = new ScriptedReader([
      { expect: '9060000000', answer: '6d00' },
      { expect: '00a404000ca000000846737061726b320100', answer: '6a82' },
    ]);
    const tag = reader.arrive({ uid: fromHex('08010203'), protocols: ['iso14443-4'] });
    expect(await identifyTag(tag)).toMatchObject({ chip: 'unknown', exchanges: 2 });
  });

  it('names an NTAG215 with one GET_VERSION', async () => {
    const reader = new ScriptedReader([{ expect: '60', answer: '0004040201001103' }], ['iso14443a-raw']);
    const tag = reader.arrive({ protocols: ['iso14443a-raw'], sak: 0 });
    expect(await identifyTag(tag)).toMatchObject({ chip: 'ntag21x', model: 'NTAG215', exchanges: 1 });
  });

  it('calls a Type 2 tag unknown when the reader cannot send raw frames', async () => {
    const reader = new ScriptedReader([], ['iso14443-4']);
    const tag = reader.arrive({ protocols: ['iso14443a-raw'] });
    expect(await identifyTag(tag)).toMatchObject({ chip: 'unknown', exchanges: 0 });
  });

  it('lets TAG_LOST through when the chip leaves mid-identification', async () => {
    const reader = new ScriptedReader([{ expect: '9060000000', answer: '0404023000110591af', afterMs: 50 }]);
    const tag = reader.arrive({ protocols: ['iso14443-4'] });
    const pending = identifyTag(tag);
    setTimeout(() => reader.leave(), 5);
    await expect(pending).rejects.toMatchObject({ code: ErrorCode.TagLost });
  });
});
