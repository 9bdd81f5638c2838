import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  AesKey,
  aesCmac,
  constantTimeEqual,
  fromHex,
  padIso9797M2,
  rotateLeft,
  rotateRight,
  toHex,
  truncateMac,
  unpadIso9797M2,
} from '../src/index.js';

const RFC4493_KEY = fromHex('2b7e151628aed2a6abf7158809cf4f3c');
const RFC4493_MESSAGE = fromHex(
  '6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710',
);

describe('AES-CMAC (RFC 4493 vectors)', () => {
  it.each([
    [0, 'bb1d6929e95937287fa37d129b756746'],
    [16, '070a16b46b4d4144f79bdd9dd04a287c'],
    [40, 'dfa66747de9ae63030ca32611497c827'],
    [64, '51f0bebf7e3b9d92fc49741779363cfe'],
  ])('CMAC of the first %i bytes', (length, expected) => {
    expect(toHex(aesCmac(RFC4493_KEY, RFC4493_MESSAGE.subarray(0, length)))).toBe(expected);
  });

  it('derives the NTAG 424 SDM session MAC key of AN12196 Table 2-4 and its MACt', () => {
    const kses = aesCmac(new Uint8Array(16), fromHex('3CC30001008004DE5F1EACC0403D0000'));
    expect(toHex(kses)).toBe('3fb5f6e3a807a03d5e3570ace393776f');
    const mac = aesCmac(kses, new Uint8Array());
    expect(toHex(mac)).toBe('e194c7ee12d9f7ee8a65c8331b704386');
    expect(toHex(truncateMac(mac))).toBe('94eed9ee65337086');
  });

  it('matches AN12196 Table 1 session-vector CMACs', () => {
    const key = new AesKey(fromHex('5ACE7E50AB65D5D51FD5BF5A16B8205B'));
    expect(toHex(key.cmac(fromHex('C33C0001008004C767F2066180010000')))).toBe('66da61797e23deca5d8eca13bbadf7a9');
    expect(toHex(key.cmac(fromHex('3CC30001008004C767F2066180010000')))).toBe('3a3e8110e05311f7a3fcf0d969bf2b48');
  });

  it('gives the same CMAC from a reused key object and a fresh one (property)', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.array(fc.uint8Array({ maxLength: 70 }), { maxLength: 5 }),
        (k, messages) => {
          const reused = new AesKey(k);
          for (const m of messages) expect(toHex(reused.cmac(m))).toBe(toHex(aesCmac(k, m)));
        },
      ),
    );
  });
});

describe('AES modes', () => {
  it('encrypts CBC with zero IV as AN12196 Table 14 does (E(K0, RndB) for the PICC)', () => {
    const key = new AesKey(new Uint8Array(16));
    const rndB = fromHex('B9E2FC789B64BF237CCCAA20EC7E6E48');
    expect(toHex(key.encryptCbc(rndB))).toBe('a04c124213c186f22399d33ac2a30215');
    expect(toHex(key.decryptCbc(fromHex('A04C124213C186F22399D33AC2A30215')))).toBe(toHex(rndB));
  });

  it('round-trips ECB and CBC for whole blocks and refuses partial ones', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.integer({ min: 1, max: 4 }),
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        (k, n, iv) => {
          const key = new AesKey(k);
          const data = new Uint8Array(16 * n).map((_, i) => (i * 7 + k[0]!) & 0xff);
          expect(key.decryptEcb(key.encryptEcb(data))).toEqual(data);
          expect(key.decryptCbc(key.encryptCbc(data, iv), iv)).toEqual(data);
        },
      ),
    );
    expect(() => new AesKey(new Uint8Array(16)).encryptCbc(new Uint8Array(15))).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
    expect(() => new AesKey(new Uint8Array(15))).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});

describe('helpers', () => {
  it('pads and unpads ISO 9797-1 M2, always adding a block when aligned', () => {
    expect(toHex(padIso9797M2(fromHex('0102')))).toBe('01028000000000000000000000000000');
    expect(padIso9797M2(new Uint8Array(16))).toHaveLength(32);
    expect(toHex(unpadIso9797M2(padIso9797M2(fromHex('0102'))))).toBe('0102');
    expect(() => unpadIso9797M2(new Uint8Array(16))).toThrow(expect.objectContaining({ code: 'PROTOCOL_ERROR' }));
  });

  it('rotates RndA/RndB by one byte', () => {
    expect(toHex(rotateLeft(fromHex('B9E2FC789B64BF237CCCAA20EC7E6E48')))).toBe('e2fc789b64bf237cccaa20ec7e6e48b9');
    expect(toHex(rotateRight(fromHex('E2FC789B64BF237CCCAA20EC7E6E48B9')))).toBe('b9e2fc789b64bf237cccaa20ec7e6e48');
  });

  it('compares in constant time and rejects different lengths', () => {
    expect(constantTimeEqual(fromHex('0102'), fromHex('0102'))).toBe(true);
    expect(constantTimeEqual(fromHex('0102'), fromHex('0103'))).toBe(false);
    expect(constantTimeEqual(fromHex('0102'), fromHex('010200'))).toBe(false);
  });
});
