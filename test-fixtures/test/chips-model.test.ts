import { createECDH, createHash, createPublicKey, verify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  ReaderManager,
  SECP128R1,
  SECP224R1,
  createContainer,
  ecPublicKeyToSpki,
  fromHex,
  silentLogger,
  verifyEcdsaRaw,
  waitForTag,
  type EcCurve,
} from '@tapline/core';
import {
  APEX_NDEF_KEY_HEX,
  APEX_NDEF_SALT_HEX,
  APEX_VERIFY_KEY_HEX,
  NTAG21X_SIGNATURE_KEY,
  NoAnswerError,
  SPARK1_KEYS_HEX,
  SPARK1_SIGNATURE_KEY,
  SPARK2_KEYS_HEX,
  SPARK2_SIGNATURE_KEY,
  VIRTUAL_CHIP_KINDS,
  createSimulation,
  createVirtualChip,
  ecPublicKey,
  fixtureKeyCurve,
  fixtureKeyIsConsistent,
  isoDepAtr,
  seededRandom,
  signEcdsaRaw,
  signUidWithFixtureKey,
  storageCardAtr,
  type FixtureSigningKey,
} from '../src/index.js';
import { hex } from './chips-support.js';

const SIGNING_KEYS: readonly FixtureSigningKey[] = [SPARK2_SIGNATURE_KEY, SPARK1_SIGNATURE_KEY, NTAG21X_SIGNATURE_KEY];

function nodePublicKey(curve: EcCurve, publicKey: Uint8Array) {
  return createPublicKey({ key: Buffer.from(ecPublicKeyToSpki(curve, publicKey)), format: 'der', type: 'spki' });
}

describe('fixture keys', () => {
  it('every ECDSA key derives from its label, and its public key is d·G by node:crypto and by the BigInt signer', () => {
    for (const key of SIGNING_KEYS) {
      const curve = fixtureKeyCurve(key);
      const digest = BigInt(`0x${createHash('sha512').update(`tapline/test-fixtures/${key.label}`).digest('hex')}`);
      const d = (digest % (curve.n - 1n)) + 1n;
      expect(
        d
          .toString(16)
          .toUpperCase()
          .padStart(curve.orderBytes * 2, '0'),
      ).toBe(key.privateKeyHex);
      const ecdh = createECDH(key.curve);
      ecdh.setPrivateKey(Buffer.from(key.privateKeyHex, 'hex'));
      expect(ecdh.getPublicKey('hex').toUpperCase()).toBe(key.publicKeyHex);
      expect(fixtureKeyIsConsistent(key)).toBe(true);
    }
  });

  it('every AES key and the salt are the first 16 bytes of SHA-256 of their label', () => {
    const derive = (label: string) =>
      createHash('sha256').update(`tapline/test-fixtures/${label}`).digest('hex').slice(0, 32).toUpperCase();
    expect(SPARK2_KEYS_HEX).toEqual([0, 1, 2, 3, 4].map((n) => derive(`spark2-key-${n}`)));
    expect(SPARK1_KEYS_HEX).toEqual([0, 1, 2, 3].map((n) => derive(`spark1-key-${n}`)));
    expect([APEX_VERIFY_KEY_HEX, APEX_NDEF_KEY_HEX, APEX_NDEF_SALT_HEX]).toEqual(
      ['apex-verify-key', 'apex-ndef-key', 'apex-ndef-salt'].map(derive),
    );
  });

  it('are not NXP’s or VivoKey’s published public keys', () => {
    const published = [
      '048A9B380AF2EE1B98DC417FECC263F8449C7625CECE82D9B916C992DA209D68422B81EC20B65A66B5102A61596AF3379200599316A00A1410',
      '04BB5D514F7050025C7D0F397310360EEC91EAF792E96FC7E0F496CB4E669D414F877B7B27901FE67C2E3B33CD39D1C797715189AC951C2ADD',
      '04D64BB732C0D214E7EC580736ACF847284B502C25C0F7F2FA86AACE1DADA4387A',
      '048878A2A2D3EEC336B4F261A082BD71F9BE11C4E2E896648B32EFA59CEA6E59F0',
    ];
    for (const key of SIGNING_KEYS) expect(published).not.toContain(key.publicKeyHex);
  });
});

describe('the fixtures’ ECDSA signer', () => {
  it('reproduces RFC 6979 A.2.4 (P-224, SHA-256, "sample") for key and signature', () => {
    const d = fromHex('F220266E1105BFE3083E03EC7A3A654651F45E37167E88600BF257C1');
    expect(hex(ecPublicKey(SECP224R1, d))).toBe(
      '0400CF08DA5AD719E42707FA431292DEA11244D64FC51610D94B130D6CEEAB6F3DEBE455E3DBF85416F7030CBD94F34F2D6F232C69F3C1385A',
    );
    const digest = createHash('sha256').update('sample').digest();
    expect(hex(signEcdsaRaw(SECP224R1, d, digest))).toBe(
      '61AA3DA010E8E8406C656BC477A7A7189895E7E840CDFE8FF42307BA' +
        'BC814050DAB5D23770879494F9E0A680DC1AF7161991BDE692B10101',
    );
  });

  it('given a digest, produces ECDSA-SHA256 signatures node:crypto accepts, on both curves', () => {
    for (const key of [SPARK2_SIGNATURE_KEY, NTAG21X_SIGNATURE_KEY]) {
      const curve = fixtureKeyCurve(key);
      for (const text of ['', 'a', 'tapline fixtures', 'x'.repeat(100)]) {
        const digest = createHash('sha256').update(text).digest();
        const signature = signEcdsaRaw(curve, fromHex(key.privateKeyHex), digest);
        const publicKey = nodePublicKey(curve, fromHex(key.publicKeyHex));
        expect(verify('sha256', Buffer.from(text), { key: publicKey, dsaEncoding: 'ieee-p1363' }, signature)).toBe(
          true,
        );
      }
    }
  });

  it('signs raw UIDs deterministically, and core verifies them', () => {
    const uid = fromHex('04517CA23B6E80');
    const first = signUidWithFixtureKey(SPARK2_SIGNATURE_KEY, uid);
    expect(hex(signUidWithFixtureKey(SPARK2_SIGNATURE_KEY, uid))).toBe(hex(first));
    expect(
      verifyEcdsaRaw({
        curve: SECP224R1,
        publicKey: fromHex(SPARK2_SIGNATURE_KEY.publicKeyHex),
        message: uid,
        signature: first,
      }),
    ).toBe(true);
    const ntag = signUidWithFixtureKey(NTAG21X_SIGNATURE_KEY, uid);
    expect(
      verifyEcdsaRaw({
        curve: SECP128R1,
        publicKey: fromHex(NTAG21X_SIGNATURE_KEY.publicKeyHex),
        message: uid,
        signature: ntag,
      }),
    ).toBe(true);
  });
});

describe('chip helpers', () => {
  it('synthesises PC/SC ATRs with a correct TCK', () => {
    expect(hex(isoDepAtr(Uint8Array.of(0x80)))).toBe('3B8180018080');
    expect(hex(storageCardAtr(0x03, 0x0003))).toBe('3B8F8001804F0CA0000003060300030000000068');
  });

  it('seededRandom repeats per seed and differs across seeds', () => {
    const a = seededRandom('one');
    const b = seededRandom('one');
    expect(hex(a(5)) + hex(a(40))).toBe(hex(b(45)));
    expect(hex(seededRandom('two')(16))).not.toBe(hex(seededRandom('one')(16)));
  });

  it('the adapter turns silence into NoAnswerError and copies frames both ways', () => {
    const chip = createVirtualChip('ntag215');
    expect(() => chip.handle('iso14443a-raw', fromHex('FF'))).toThrow(NoAnswerError);
    const frame = fromHex('60');
    const answer = chip.handle('iso14443a-raw', frame);
    answer.fill(0);
    expect(hex(chip.handle('iso14443a-raw', frame))).toBe('0004040201001103');
  });
});

describe('createVirtualChip', () => {
  it('builds every kind by name, and refuses unknown names with INVALID_ARGUMENT', () => {
    const technologies = VIRTUAL_CHIP_KINDS.map((kind) => [kind, createVirtualChip(kind).info.technology]);
    expect(technologies).toEqual([
      ['spark1', 'iso15693'],
      ['spark2', 'iso14443a'],
      ['spark2-413', 'iso14443a'],
      ['apex', 'iso14443a'],
      ['ntag215', 'iso14443a'],
    ]);
    expect(() => createVirtualChip('spark3' as never)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => createVirtualChip('spark2', { uid: fromHex('0401') })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
  });

  it('feeds createSimulation, by object or by name, which defaults to a Spark 2', async () => {
    const sim = createSimulation({ chip: createVirtualChip('spark2-413'), tapAfterMs: 5 });
    const container = createContainer({
      config: { transports: [] },
      drivers: sim.drivers,
      deviceSources: sim.deviceSources,
      logger: silentLogger,
    });
    const tag = await waitForTag(container.resolve(ReaderManager).tags$, { timeoutMs: 1000 });
    expect(hex(tag.uid)).toBe('04517CA23B6F80');
    sim.stop();
    expect(hex(createSimulation().chip.info.uid)).toBe(hex(createVirtualChip('spark2').info.uid));
    expect(hex(createSimulation({ chip: 'spark1' }).chip.info.uid)).toBe(hex(createVirtualChip('spark1').info.uid));
  });
});
