import { describe, expect, it } from 'vitest';
import { SECP128R1, fromHex, parseContactlessAtr, verifyEcdsaRaw } from '@tapline/core';
import { NTAG21X_SIGNATURE_KEY, createNtag215Chip, fixturePublicKey, ntag215Model } from '../src/index.js';
import { hex, run, tapInSimulator } from './chips-support.js';

const RAW = 'iso14443a-raw' as const;
const PAGES_0_TO_3 = '04E1412C2A6F3D80F8480000E1103E00';

describe('NTAG215 through its pure respond', () => {
  it('reports a Type 2 tag: SAK 00, ATQA 44 00, the PC/SC storage-card ATR, raw frames only', () => {
    const { info } = ntag215Model();
    expect(hex(info.atr!)).toBe('3B8F8001804F0CA0000003060300030000000068');
    expect(info).toMatchObject({ technology: 'iso14443a', sak: 0x00, protocols: ['iso14443a-raw'] });
    expect(hex(info.atqa!)).toBe('4400');
    expect(info.ats).toBeUndefined();
    expect(parseContactlessAtr(info.atr!)).toMatchObject({ kind: 'storage', cardLabel: 'MIFARE Ultralight' });
  });

  it('answers GET_VERSION 60 with 00 04 04 02 01 00 11 03', () => {
    expect(run(ntag215Model(), ['60'], RAW).answers).toEqual(['0004040201001103']);
  });

  it('READ 30 returns four pages: UID with BCC0/BCC1, internal 48, CC E1 10 3E 00, and rolls over at the end', () => {
    const { answers } = run(ntag215Model(), ['3000', '3085', '3087', '3A0003', '3A0300', '3004'], RAW);
    expect(answers.slice(0, 5)).toEqual([PAGES_0_TO_3, `${'00'.repeat(8)}04E1412C2A6F3D80`, null, PAGES_0_TO_3, null]);
    // NDEF TLV with one URI record: 03 len D1 01 plen 55 04 "tapline.dev/ntag215".
    expect(answers[5]).toBe(`0318D101145504${hex(Buffer.from('tapline.d'))}`);
  });

  it('READ_SIG 3C 00 returns 32 bytes verifying over the raw UID under the fixture key', () => {
    const model = ntag215Model();
    const { answers } = run(model, ['3C00', '3C01'], RAW);
    expect(answers[1]).toBeNull();
    const signature = fromHex(answers[0]!);
    expect(signature.length).toBe(32);
    expect(
      verifyEcdsaRaw({
        curve: SECP128R1,
        publicKey: fixturePublicKey(NTAG21X_SIGNATURE_KEY),
        message: model.info.uid,
        signature,
      }),
    ).toBe(true);
  });

  it('WRITE A2 to user memory answers the ACK 0A and changes the page; protected pages and unknown commands get no answer', () => {
    const { answers, state } = run(
      ntag215Model(),
      ['A204DEADBEEF', '3004', 'A20300000000', 'A28200000000', 'A204DEAD', '1BFFFFFFFF', '5000'],
      RAW,
    );
    expect(answers[0]).toBe('0A');
    expect(answers[1]!.slice(0, 8)).toBe('DEADBEEF');
    expect(answers.slice(2)).toEqual([null, null, null, null, null]);
    expect(hex(state.memory.subarray(16, 20))).toBe('DEADBEEF');
  });

  it('is silent on ISO-DEP and other air interfaces', () => {
    expect(run(ntag215Model(), ['00A4040000'], 'iso14443-4').answers).toEqual([null]);
    expect(run(ntag215Model(), ['260100'], 'iso15693').answers).toEqual([null]);
  });
});

describe('NTAG215 through the simulator', () => {
  it('reads and identifies over a simulated reader; ISO-DEP is refused before any frame goes out', async () => {
    const chip = createNtag215Chip();
    const tag = await tapInSimulator(chip);
    expect(tag.sak).toBe(0);
    expect(hex(await tag.reader.transmit(tag, RAW, fromHex('3000')))).toBe(PAGES_0_TO_3);
    expect(hex(await tag.reader.transmit(tag, RAW, fromHex('60')))).toBe('0004040201001103');
    await expect(tag.reader.transmit(tag, 'iso14443-4', fromHex('00A4040000'))).rejects.toMatchObject({
      code: 'UNSUPPORTED_CAPABILITY',
    });
    await expect(tag.reader.transmit(tag, RAW, fromHex('3090'), { timeoutMs: 30 })).rejects.toMatchObject({
      code: 'TIMEOUT',
    });
  });
});
