import { createPublicKey, verify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  Iso15693Tag,
  SECP128R1,
  TAM1_CONSTANT,
  buildTam1Authenticate,
  ecPublicKeyToSpki,
  fromHex,
  openTam1Response,
  parseContactlessAtr,
  parseIso15693Inventory,
  parseIso15693SystemInformation,
  parseTam1Authenticate,
  verifyEcdsaSha256,
  verifyTam1Response,
} from '@tapline/core';
import {
  SPARK1_SIGNATURE_KEY,
  createSpark1Chip,
  fixturePublicKey,
  seededRandom,
  spark1FixtureKeys,
  spark1Model,
} from '../src/index.js';
import { directExchange, hex, readerExchange, run, scriptedRandom, tapInSimulator } from './chips-support.js';

const V = 'iso15693' as const;
const UID = 'E004011809A73B5C';
const AIR_UID = '5C3BA709180104E0';

/** Verifies a Spark 1 signature as sent on air (reversed r ‖ s) with node:crypto alone. */
function nodeVerifies(uid: Uint8Array, wireSignature: Uint8Array): boolean {
  const spki = ecPublicKeyToSpki(SECP128R1, fixturePublicKey(SPARK1_SIGNATURE_KEY));
  const key = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
  const signature = Uint8Array.from(wireSignature).reverse();
  return verify('sha256', uid, { key, dsaEncoding: 'ieee-p1363' }, signature);
}

describe('Spark 1 (ICODE DNA) through its pure respond', () => {
  it('reports an ISO 15693 tag with a PC/SC storage-card ATR', () => {
    const { info } = spark1Model();
    expect(info).toMatchObject({ technology: 'iso15693', protocols: ['iso15693'] });
    expect(hex(info.uid)).toBe(UID);
    expect(parseContactlessAtr(info.atr!)).toMatchObject({
      kind: 'storage',
      technology: 'iso15693',
      cardLabel: 'ICODE SLI',
      checksumValid: true,
    });
  });

  it('answers INVENTORY with flags, DSFID and the UID LSB first, and honours mask and AFI', () => {
    const model = spark1Model();
    const { answers } = run(model, ['260100', '2601085C', '2601085D', '2601105C3B', '36010000', '36010700'], V);
    expect(answers).toEqual([`0000${AIR_UID}`, `0000${AIR_UID}`, null, `0000${AIR_UID}`, `0000${AIR_UID}`, null]);
    expect(hex(parseIso15693Inventory(fromHex(answers[0]!)).uid)).toBe(UID);
  });

  it('reads single and multiple 4-byte blocks, addressed or not, with optional security status', () => {
    const model = spark1Model();
    const { answers } = run(
      model,
      [`2220${AIR_UID}00`, '022000', '422000', '02230001', '02233E00', '02203F', '02233E01', '0220'],
      V,
    );
    expect(answers).toEqual([
      '00E1401F01',
      '00E1401F01',
      '0000E1401F01',
      '00E1401F010316D101',
      '0000000000',
      '0110',
      '0110',
      '0102',
    ]);
  });

  it('answers GET SYSTEM INFORMATION with DSFID, AFI, 63 blocks of 4 bytes and the IC reference', () => {
    const { answers } = run(spark1Model(), ['022B'], V);
    expect(answers[0]).toBe(`000F${AIR_UID}00003E0301`);
    expect(parseIso15693SystemInformation(fromHex(answers[0]!))).toMatchObject({
      memory: { blockCount: 63, blockSize: 4 },
      icReference: 1,
    });
  });

  it('READ SIGNATURE: 32 bytes that node:crypto verifies as ECDSA-SHA256 over the UID MSB first (sent reversed)', () => {
    const model = spark1Model();
    const { answers } = run(model, [`22BD04${AIR_UID}`, '02BD04'], V);
    expect(answers[0]).toBe(answers[1]);
    const reply = fromHex(answers[0]!);
    expect(reply.length).toBe(33);
    expect(reply[0]).toBe(0x00);
    expect(nodeVerifies(model.info.uid, reply.subarray(1))).toBe(true);
    expect(nodeVerifies(fromHex('E004011809A73B5D'), reply.subarray(1))).toBe(false);
    const rs = Uint8Array.from(reply.subarray(1)).reverse();
    expect(
      verifyEcdsaSha256({
        curve: SECP128R1,
        publicKey: fixturePublicKey(SPARK1_SIGNATURE_KEY),
        message: model.info.uid,
        signature: rs,
      }),
    ).toBe(true);
  });

  it('ignores frames addressed to another UID and custom commands of other manufacturers; 01 01 for unknown ones', () => {
    const { answers } = run(
      spark1Model(),
      [`2220${'5D3BA709180104E0'}00`, '02BD05', '0299', '02', '', '0221000102030405'],
      V,
    );
    expect(answers).toEqual([null, null, '0101', null, null, '0101']);
  });

  it('SELECT puts the tag in the selected state; RESET TO READY takes it out', () => {
    const { answers } = run(spark1Model(), ['122000', `2225${AIR_UID}`, '122000', '0226', '122000'], V);
    expect(answers).toEqual([null, '00', '00E1401F01', '00', null]);
  });

  it('AUTHENTICATE (TAM1, key 2) answers a TResponse that core verifies under key 2 only', () => {
    const model = spark1Model({ random: scriptedRandom('0A0B0C0D') });
    const ichallenge = fromHex('00112233445566778899');
    const frame = buildTam1Authenticate(ichallenge, { uid: model.info.uid });
    expect(hex(frame)).toBe(`2035${AIR_UID}000002${hex(ichallenge)}`);
    const { answers } = run(model, [hex(frame)], V);
    const reply = parseTam1Authenticate(fromHex(answers[0]!));
    expect(reply).toMatchObject({ flags: 0, leadingByte: 0 });
    const keys = spark1FixtureKeys();
    expect(verifyTam1Response(keys[2]!, ichallenge, reply.tresponse, { constant: TAM1_CONSTANT })).toBe(true);
    expect(verifyTam1Response(keys[1]!, ichallenge, reply.tresponse)).toBe(false);
    expect(hex(openTam1Response(keys[2]!, reply.tresponse).trnd)).toBe('0A0B0C0D');
  });

  it('refuses AUTHENTICATE with another crypto suite, an unknown key slot or a short message', () => {
    const { answers } = run(
      spark1Model(),
      [`0235010002${'00'.repeat(10)}`, `0235000009${'00'.repeat(10)}`, '023500000200'],
      V,
    );
    expect(answers).toEqual(['0103', '010F', '0102']);
  });
});

describe('Spark 1 through core and the simulator', () => {
  it("serves core's Iso15693Tag directly: inventory, blocks, system information, signature, authenticate", async () => {
    const chip = createSpark1Chip({ random: seededRandom('tam1') });
    const tag = new Iso15693Tag(directExchange(chip, V), { uid: chip.info.uid });
    expect(hex((await tag.inventory()).uid)).toBe(UID);
    expect(hex((await tag.readBlocks(0, 2)).data)).toBe('E1401F010316D101');
    expect((await tag.getSystemInfo()).memory).toEqual({ blockCount: 63, blockSize: 4 });
    expect(nodeVerifies(chip.info.uid, (await tag.readSignature()).signature)).toBe(true);
    const ichallenge = fromHex('A1A2A3A4A5A6A7A8A9AA');
    const auth = await tag.authenticate(2, ichallenge);
    expect(verifyTam1Response(spark1FixtureKeys()[2]!, ichallenge, auth.tresponse)).toBe(true);
  });

  it('inventories, reads the signature and authenticates over a simulated reader', async () => {
    const chip = createSpark1Chip();
    const simTag = await tapInSimulator(chip);
    expect(simTag.technology).toBe('iso15693');
    expect(hex(simTag.uid)).toBe(UID);
    const tag = new Iso15693Tag(readerExchange(simTag, V), { uid: simTag.uid });
    expect(hex((await tag.inventory()).uid)).toBe(UID);
    expect(nodeVerifies(simTag.uid, (await tag.readSignature()).signature)).toBe(true);
    const ichallenge = fromHex('0102030405060708090A');
    const auth = await tag.authenticate(2, ichallenge);
    expect(verifyTam1Response(spark1FixtureKeys()[2]!, ichallenge, auth.tresponse)).toBe(true);
    // A frame addressed to another tag is silence, which the reader reports as a timeout.
    const other = new Iso15693Tag(readerExchange(simTag, V), { uid: fromHex('E004011809A73B5D') });
    await expect(other.readBlock(0, { timeoutMs: 30 })).rejects.toMatchObject({ code: 'TIMEOUT' });
  });
});
