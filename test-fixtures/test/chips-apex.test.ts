import { describe, expect, it } from 'vitest';
import {
  AesKey,
  ApduChannel,
  authenticateEv2First,
  concatBytes,
  fromHex,
  parseContactlessAtr,
  rotateLeft,
  verifySun,
} from '@tapline/core';
import {
  APEX_NDEF_KEY_HEX,
  APEX_NDEF_SALT_HEX,
  APEX_VERIFY_KEY_HEX,
  apexModel,
  createApexChip,
  seededRandom,
} from '../src/index.js';
import { directExchange, hex, readerExchange, run, tapInSimulator } from './chips-support.js';

const ISO = 'iso14443-4' as const;
const CHIP_ID = 'A5E1D0C3B2A19081';
const SELECT_VERIFY = '00A404000CA000000846737061726B3201FF';
const SELECT_NDEF = '00A4040007D276000085010100';
const SELECT_OTP = '00A404000DA000000527210101415045580100';

function readUrl(model: ReturnType<typeof apexModel>, state: ReturnType<typeof apexModel>['initialState']) {
  const { answers, state: next } = run(model, ['00A4000C02E104', '00B0000000'], ISO, state);
  expect(answers[0]).toBe('9000');
  const file = fromHex(answers[1]!.slice(0, -4));
  const nlen = (file[0]! << 8) | file[1]!;
  return { url: `https://${Buffer.from(file.subarray(7, 2 + nlen)).toString('ascii')}`, state: next };
}

describe('Apex through its pure respond', () => {
  it("reports Intra's APEX_ATR, 3B 8A 80 01 00 31 C1 73 C8 40 00 00 90 00 90, and the matching ATS", () => {
    const { info } = apexModel();
    expect(hex(info.atr!)).toBe('3B8A80010031C173C8400000900090');
    expect(hex(info.ats!)).toBe('787771020031C173C84000009000');
    expect(parseContactlessAtr(info.atr!)).toMatchObject({ kind: 'iso14443-4', checksumValid: true });
  });

  it('answers 6E 00 to GetVersion, native and wrapped, before and after selecting the Verify applet', () => {
    const { answers } = run(apexModel(), ['60', '9060000000', SELECT_VERIFY, '60', '9060000000'], ISO);
    expect(answers).toEqual(['6E00', '6E00', `${CHIP_ID}9000`, '6E00', '6E00']);
  });

  it('answers SELECT of the Verify applet, full AID or its 11-byte prefix, with the 8-byte chip id; 6A 82 to others', () => {
    const model = apexModel({ chipId: fromHex('0102030405060708') });
    const { answers } = run(
      model,
      [SELECT_VERIFY, '00A404000BA000000846737061726B3200', '00A4040007A000000846FFFF00', '00A4040003A0000000'],
      ISO,
    );
    expect(answers).toEqual(['01020304050607089000', '01020304050607089000', '6A82', '6A82']);
  });

  it('authenticates the Verify applet like a Spark 2 with its key: right key 91 00, wrong key 91 AE, key 0 91 40', () => {
    const model = apexModel({ random: seededRandom('apex') });
    const selected = run(model, [SELECT_VERIFY], ISO).state;
    const attempt = (keyHex: string): string | null => {
      const key = new AesKey(fromHex(keyHex));
      const part1 = run(model, ['9071000002020000'], ISO, selected);
      expect(part1.answers[0]!.slice(-4)).toBe('91AF');
      const rndB = key.decryptCbc(fromHex(part1.answers[0]!.slice(0, 32)));
      const rndA = fromHex('F0E0D0C0B0A090807060504030201000');
      const data = hex(key.encryptCbc(concatBytes(rndA, rotateLeft(rndB))));
      const part2 = run(model, [`90AF000020${data}00`], ISO, part1.state);
      const answer = part2.answers[0]!;
      if (answer.endsWith('9100')) {
        expect(hex(key.decryptCbc(fromHex(answer.slice(0, 64))).subarray(4, 20))).toBe(hex(rotateLeft(rndA)));
      }
      return answer.slice(-4);
    };
    expect(attempt(APEX_VERIFY_KEY_HEX)).toBe('9100');
    expect(attempt(APEX_NDEF_KEY_HEX)).toBe('91AE');
    expect(run(model, ['9071000002000000'], ISO, selected).answers).toEqual(['9140']);
  });

  it('NDEF applet: the s= signature is the CMAC over salt, chip id and counter, and the counter rises per read', () => {
    const model = apexModel();
    let state = run(model, [SELECT_NDEF], ISO).state;
    const counters: number[] = [];
    for (let i = 0; i < 3; i++) {
      const read = readUrl(model, state);
      state = read.state;
      expect(read.url).toMatch(
        new RegExp(`^https://vivokey\\.com/demo/sigtest/\\?s=${CHIP_ID}-[0-9A-F]{6}-[0-9A-F]{32}$`),
      );
      const verdict = verifySun(read.url, { key: fromHex(APEX_NDEF_KEY_HEX), salt: fromHex(APEX_NDEF_SALT_HEX) });
      expect(verdict).toMatchObject({ valid: true, mode: 'apex-cmac' });
      expect(verifySun(read.url, { key: fromHex(APEX_VERIFY_KEY_HEX), salt: fromHex(APEX_NDEF_SALT_HEX) }).valid).toBe(
        false,
      );
      counters.push(verdict.counter);
    }
    expect(counters).toEqual([1, 2, 3]);
    expect(run(model, ['00A4000C02E103', '00B000000F'], ISO, state).answers).toEqual([
      '9000',
      '000F2000FF00FF0406E104010000FF9000',
    ]);
  });

  it('OTP applet: SELECT answers the YKOATH version and name; LIST answers one credential', () => {
    const { answers } = run(apexModel(), [SELECT_OTP, '00A1000000', '00A4000000', '80A1000000'], ISO);
    expect(answers[0]).toBe(`79030500007108${CHIP_ID}9000`);
    expect(answers[1]).toBe(`721021${hex(Buffer.from('Tapline:fixture'))}9000`);
    expect(answers.slice(2)).toEqual(['6D00', '6E00']);
  });

  it('the GlobalPlatform ISD answers SELECT with its FCI; a failed SELECT keeps the current applet', () => {
    const { answers, state } = run(
      apexModel(),
      ['00A4040008A00000015100000000', SELECT_VERIFY, '00A4040005A0FFFFFFFF00'],
      ISO,
    );
    expect(answers[0]).toBe('6F108408A000000151000000A5049F6501FF9000');
    expect(answers[2]).toBe('6A82');
    expect(state.applet).toBe('verify');
  });
});

describe('Apex through the simulator', () => {
  it("is told apart as Intra does (6E 00), and core's AuthenticateEV2First passes against the Verify applet", async () => {
    const chip = createApexChip({ random: seededRandom('apex-sim') });
    const tag = await tapInSimulator(chip);
    expect(hex(tag.atr!)).toBe('3B8A80010031C173C8400000900090');
    const channel = new ApduChannel(readerExchange(tag, ISO));
    expect(hex(await channel.raw(fromHex('60')))).toBe('6E00');
    const chipId = await channel.send({
      cla: 0,
      ins: 0xa4,
      p1: 4,
      p2: 0,
      data: fromHex('A000000846737061726B3201'),
      le: 256,
    });
    expect(hex(chipId)).toBe(CHIP_ID);
    const session = await authenticateEv2First(channel, { keyNo: 2, key: fromHex(APEX_VERIFY_KEY_HEX) });
    expect(session.cmdCtr).toBe(0);
  });

  it('answers the same frames as its pure model (the adapter adds nothing)', async () => {
    const chip = createApexChip({ random: seededRandom('same') });
    const direct = new ApduChannel(directExchange(chip, ISO));
    expect(hex(await direct.raw(fromHex(SELECT_VERIFY)))).toBe(`${CHIP_ID}9000`);
    expect(chip.state.applet).toBe('verify');
  });
});
