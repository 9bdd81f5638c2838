import { createCipheriv } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  AesKey,
  ErrorCode,
  TAM1_CONSTANT,
  TaplineError,
  computeTam1Response,
  fromHex,
  openTam1Response,
  tam1Decrypt,
  tam1Encrypt,
  tam1Plaintext,
  toHex,
  verifyTam1Response,
} from '../src/index.js';

const KEY = fromHex('000102030405060708090A0B0C0D0E0F');
const bytes = (length: number) => fc.uint8Array({ minLength: length, maxLength: length });

describe('TAM1 emulation (protocols.md §1.2)', () => {
  it('reproduces rev(AES_K(rev(challenge16))) = 4D96CA87FC552877FD4F5F797823871B byte for byte', () => {
    const challenge = fromHex('00112233445566778899AABBCCDDEEFF');
    expect(toHex(tam1Encrypt(KEY, challenge)).toUpperCase()).toBe('4D96CA87FC552877FD4F5F797823871B');
    expect(toHex(tam1Encrypt(new AesKey(KEY), challenge)).toUpperCase()).toBe('4D96CA87FC552877FD4F5F797823871B');
  });

  it('agrees with an independent rev-AES-rev computed directly on node:crypto', () => {
    fc.assert(
      fc.property(bytes(16), bytes(16), (key, block) => {
        const cipher = createCipheriv('aes-128-ecb', key, null).setAutoPadding(false);
        const direct = Uint8Array.from(cipher.update(Uint8Array.from(block).reverse())).reverse();
        expect(tam1Encrypt(key, block)).toEqual(direct);
      }),
    );
  });

  it('composes the tag model: P = IChallenge ‖ rev(TRnd) ‖ rev(C_TAM1), TResponse = rev(E(rev(P)))', () => {
    // The emulation vector's challenge read as P: IChallenge 0011…99, rev(TRnd) = AA BB CC DD, rev(C) = EE FF.
    const ichallenge = fromHex('00112233445566778899');
    const trnd = fromHex('DDCCBBAA');
    expect(toHex(tam1Plaintext(ichallenge, trnd, 0xffee))).toBe('00112233445566778899aabbccddeeff');
    expect(toHex(computeTam1Response(KEY, ichallenge, trnd, 0xffee)).toUpperCase()).toBe(
      '4D96CA87FC552877FD4F5F797823871B',
    );
    expect(toHex(tam1Plaintext(ichallenge, trnd))).toBe('00112233445566778899aabbccddc596');
    expect(TAM1_CONSTANT).toBe(0x96c5);
  });

  it('opens a TResponse into IChallenge, TRnd and constant', () => {
    const opened = openTam1Response(KEY, fromHex('4D96CA87FC552877FD4F5F797823871B'));
    expect(toHex(opened.plaintext)).toBe('00112233445566778899aabbccddeeff');
    expect(toHex(opened.ichallenge)).toBe('00112233445566778899');
    expect(toHex(opened.trnd)).toBe('ddccbbaa');
    expect(opened.constant).toBe(0xffee);
  });
});

describe('verifyTam1Response', () => {
  it('accepts the answer to its own challenge and refuses others', () => {
    const ichallenge = fromHex('00112233445566778899');
    const tresponse = computeTam1Response(KEY, ichallenge, fromHex('01020304'));
    expect(verifyTam1Response(KEY, ichallenge, tresponse)).toBe(true);
    expect(verifyTam1Response(KEY, ichallenge, tresponse, { constant: TAM1_CONSTANT })).toBe(true);
    expect(verifyTam1Response(KEY, ichallenge, tresponse, { constant: 0x1234 })).toBe(false);
    expect(verifyTam1Response(KEY, fromHex('00112233445566778898'), tresponse)).toBe(false);
    expect(verifyTam1Response(fromHex('000102030405060708090A0B0C0D0E0E'), ichallenge, tresponse)).toBe(false);
    // The legacy emulation's 16-byte challenge verifies on its first 10 bytes, whatever the constant there.
    expect(verifyTam1Response(KEY, ichallenge, fromHex('4D96CA87FC552877FD4F5F797823871B'))).toBe(true);
  });

  it('round-trips for any key, IChallenge, TRnd and constant', () => {
    fc.assert(
      fc.property(bytes(16), bytes(10), bytes(4), fc.integer({ min: 0, max: 0xffff }), (key, ich, trnd, constant) => {
        const tresponse = computeTam1Response(key, ich, trnd, constant);
        expect(verifyTam1Response(key, ich, tresponse, { constant })).toBe(true);
        const opened = openTam1Response(key, tresponse);
        expect(opened.ichallenge).toEqual(ich);
        expect(opened.trnd).toEqual(trnd);
        expect(opened.constant).toBe(constant);
        expect(tam1Decrypt(key, tresponse)).toEqual(tam1Plaintext(ich, trnd, constant));
      }),
    );
  });

  it('refuses wrong lengths with INVALID_ARGUMENT', () => {
    const cases = [
      () => verifyTam1Response(KEY, new Uint8Array(16), new Uint8Array(16)),
      () => verifyTam1Response(KEY, new Uint8Array(10), new Uint8Array(15)),
      () => verifyTam1Response(new Uint8Array(15), new Uint8Array(10), new Uint8Array(16)),
      () => tam1Plaintext(new Uint8Array(10), new Uint8Array(3)),
      () => tam1Plaintext(new Uint8Array(10), new Uint8Array(4), 0x10000),
      () => tam1Encrypt(KEY, new Uint8Array(10)),
    ];
    for (const run of cases) {
      try {
        run();
        expect.unreachable('should have thrown');
      } catch (error) {
        expect(error).toBeInstanceOf(TaplineError);
        expect((error as TaplineError).code).toBe(ErrorCode.InvalidArgument);
      }
    }
  });
});
