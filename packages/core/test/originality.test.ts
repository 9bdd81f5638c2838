import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ORIGINALITY_KEYS,
  SECP128R1,
  SECP224R1,
  ecPublicKeyToSpki,
  fromHex,
  isValidEcPublicKey,
  toHex,
  verifyEcdsaRaw,
  verifyEcdsaSha256,
  verifyOriginalitySignature,
  type EcCurve,
} from '../src/index.js';

// Research notes protocols.md §3.4 and §4.3; the second sample of each family is from proxmark3
// tools/recover_pk.py, which the notes quote the first ones from.
const NTAG424 = {
  uid: '0463474AA26A80',
  sig: '27E9A50E6CA4BA9037C02F7D20A80D0284D0C1D83C67F5A5AC1D8A4EF86C9508417E4E9C6F85AA7920F0ABDED984CAF20467D66EA54BBF08',
};
const NTAG424_B = {
  uid: '04C46C222A6380',
  sig: '344A806EBF704C05C19215D2F840529CE365AAD2D08A469A95896D75D477D9FAB02A0C827E9F215BD8EB0E56A3A9A008FB75D706AABBD4DA',
};
// The UID of VivoKey's example Spark 2 SUN URL.
const NTAG413 = {
  uid: '042468222F5C80',
  sig: 'B9211E320F321BD1D0E158E10FF15109B389638BAE15D9909D7725BF1250ED236D66F1AF75C94D60330E4E92535F5E6997675281A5687173',
};
// Published LSB-first (EE5F9B00180104E0); Tapline's order is MSB-first.
const ICODE = { uid: 'E0040118009B5FEE', sig: '32D9E7579CD77E6F1FA11419231E874826984C5F189FDE1421684563A9663377' };
const ICODE_B = { uid: 'E00401082AD28E83', sig: 'CAE8183CB4823C765AFDEB78C9D66C959990FD52A5820E76E1D6E025D76EAD79' };
const SPARK1 = { uid: 'E0040118009C870C', sig: '4B4E03E1211952EF6A5F9D84AB218CD4D7549D0CDF8CA8779F9AD16C9A9CBF3B' };
const SPARK1_B = { uid: 'E0040118009B4D62', sig: '25CF13747C3389EC7889DE916E3747584978511CC78B51CFB1883B494CBED7AB' };

const verify = (v: { uid: string; sig: string }, chip?: Parameters<typeof verifyOriginalitySignature>[0]['chip']) =>
  verifyOriginalitySignature({ uid: fromHex(v.uid), signature: fromHex(v.sig), ...(chip ? { chip } : {}) });

function flipped(hex: string, bit: number): string {
  const bytes = fromHex(hex);
  bytes[bit >> 3]! ^= 1 << (bit & 7);
  return toHex(bytes);
}

describe('originality signature vectors', () => {
  it('NTAG 424 DNA verifies with the 424 key and not with the 413 key', () => {
    expect(verify(NTAG424)).toEqual({ valid: true, key: 'ntag424dna' });
    expect(verify(NTAG424, 'ntag424dna')).toEqual({ valid: true, key: 'ntag424dna' });
    expect(verify(NTAG424, 'ntag413dna')).toEqual({ valid: false });
    expect(verify(NTAG424_B)).toEqual({ valid: true, key: 'ntag424dna' });
  });

  it('NTAG 413 DNA (the Spark 2 of VivoKey’s SUN example) verifies with the 413 key only', () => {
    expect(verify(NTAG413)).toEqual({ valid: true, key: 'ntag413dna' });
    expect(verify(NTAG413, 'ntag424dna')).toEqual({ valid: false });
  });

  it('ICODE DNA signs the raw UID LSB-first; either written order of the UID is accepted', () => {
    expect(verify(ICODE)).toEqual({ valid: true, key: 'icode-dna' });
    expect(verify({ ...ICODE, uid: 'EE5F9B00180104E0' }, 'icode-dna')).toEqual({ valid: true, key: 'icode-dna' });
    expect(verify(ICODE_B)).toEqual({ valid: true, key: 'icode-dna' });
    expect(verify(ICODE, 'vivokey-spark1')).toEqual({ valid: false });
  });

  it('VivoKey Spark 1 signs SHA-256 of the UID MSB-first', () => {
    expect(verify(SPARK1)).toEqual({ valid: true, key: 'vivokey-spark1' });
    expect(verify(SPARK1_B)).toEqual({ valid: true, key: 'vivokey-spark1' });
    expect(verify(SPARK1, 'icode-dna')).toEqual({ valid: false });
    // The same check by hand with node:crypto, the way the research notes measured it.
    const key = ORIGINALITY_KEYS.find((k) => k.id === 'vivokey-spark1')!;
    expect(
      verifyEcdsaSha256({
        curve: SECP128R1,
        publicKey: fromHex(key.publicKeyHex),
        message: fromHex(SPARK1.uid),
        signature: fromHex(SPARK1.sig),
      }),
    ).toBe(true);
  });

  it('any flipped bit of UID or signature fails', () => {
    for (const vector of [NTAG424, NTAG413, ICODE, SPARK1]) {
      const uidBits = vector.uid.length * 4;
      const sigBits = vector.sig.length * 4;
      for (let bit = 0; bit < uidBits; bit++) {
        expect(verify({ uid: flipped(vector.uid, bit), sig: vector.sig }).valid).toBe(false);
      }
      for (let bit = 0; bit < sigBits; bit += 7)
        expect(verify({ uid: vector.uid, sig: flipped(vector.sig, bit) }).valid).toBe(false);
    }
    // About a thousand BigInt verifications (1 ms each alone): generous room for a loaded CI machine.
  }, 60_000);
});

describe('input checks', () => {
  it('rejects lengths that fit no key, or not the named chip, with INVALID_ARGUMENT', () => {
    expect(() => verify({ uid: '0463474AA26A', sig: NTAG424.sig })).toThrow(
      expect.objectContaining({
        code: 'INVALID_ARGUMENT',
        message: expect.stringMatching(/6-byte UID with a 56-byte/),
      }),
    );
    expect(() => verify({ uid: NTAG424.uid, sig: SPARK1.sig })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
    expect(() => verify(NTAG424, 'icode-dna')).toThrow(
      expect.objectContaining({
        code: 'INVALID_ARGUMENT',
        message: expect.stringMatching(/8-byte UID with a 32-byte/),
      }),
    );
    expect(() =>
      verifyOriginalitySignature({
        uid: fromHex(NTAG424.uid),
        signature: fromHex(NTAG424.sig),
        chip: 'nope' as 'ntag424dna',
      }),
    ).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', hint: expect.stringMatching(/ntag424dna/) }));
  });

  it('treats r or s of 0 or ≥ n as invalid, not as an error', () => {
    const key = fromHex(ORIGINALITY_KEYS[0]!.publicKeyHex);
    const n = SECP224R1.n.toString(16).padStart(56, '0');
    const s = NTAG424.sig.slice(56);
    for (const r of ['0'.repeat(56), n, 'f'.repeat(56)]) {
      const input = { curve: SECP224R1, publicKey: key, message: fromHex(NTAG424.uid), signature: fromHex(r + s) };
      expect(verifyEcdsaRaw(input)).toBe(false);
      expect(verifyEcdsaSha256(input)).toBe(false);
    }
  });

  it('rejects public keys that are not points of the curve', () => {
    const good = ORIGINALITY_KEYS[0]!.publicKeyHex;
    expect(isValidEcPublicKey(SECP224R1, fromHex(good))).toBe(true);
    expect(isValidEcPublicKey(SECP224R1, fromHex(flipped(good, 100)))).toBe(false);
    expect(isValidEcPublicKey(SECP224R1, fromHex('02' + good.slice(2)))).toBe(false);
    expect(isValidEcPublicKey(SECP128R1, fromHex(good))).toBe(false);
    expect(() =>
      verifyEcdsaRaw({
        curve: SECP224R1,
        publicKey: fromHex(flipped(good, 100)),
        message: new Uint8Array(7),
        signature: fromHex(NTAG424.sig),
      }),
    ).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/not a point/) }));
  });
});

describe('the curve arithmetic against OpenSSL (node:crypto)', () => {
  /** SEC 1 ECPrivateKey DER for a small scalar, to get k·G from OpenSSL. */
  function publicPointOf(curve: EcCurve, d: number): Uint8Array {
    const scalar = Buffer.alloc(curve.orderBytes);
    scalar.writeUInt32BE(d, curve.orderBytes - 4);
    const oid = Buffer.from(curve.oidHex, 'hex');
    const body = Buffer.concat([
      Buffer.from([0x02, 0x01, 0x01, 0x04, scalar.length]),
      scalar,
      Buffer.from([0xa0, oid.length + 2, 0x06, oid.length]),
      oid,
    ]);
    const der = Buffer.concat([Buffer.from([0x30, body.length]), body]);
    const spki = createPublicKey(createPrivateKey({ key: der, format: 'der', type: 'sec1' })).export({
      format: 'der',
      type: 'spki',
    });
    return new Uint8Array(spki.subarray(spki.length - (1 + 2 * curve.fieldBytes)));
  }

  it.each([SECP224R1, SECP128R1])('$name: G from OpenSSL equals the SEC 2 constants, and the SPKI loads', (curve) => {
    const g = publicPointOf(curve, 1);
    const hex = (v: bigint): string => v.toString(16).padStart(curve.fieldBytes * 2, '0');
    expect(toHex(g)).toBe(`04${hex(curve.gx)}${hex(curve.gy)}`);
    const spki = ecPublicKeyToSpki(curve, g);
    expect(createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' }).asymmetricKeyDetails).toEqual({
      namedCurve: curve.name,
    });
  });

  it.each([SECP224R1, SECP128R1])(
    '$name: OpenSSL ECDSA-SHA-256 signatures verify as raw signatures over the digest (truncated to n)',
    (curve) => {
      const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: curve.name });
      const spki = publicKey.export({ format: 'der', type: 'spki' });
      const point = new Uint8Array(spki.subarray(spki.length - (1 + 2 * curve.fieldBytes)));
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 40 }), fc.nat(), (message, pick) => {
          const signature = new Uint8Array(sign('sha256', message, { key: privateKey, dsaEncoding: 'ieee-p1363' }));
          const digest = new Uint8Array(createHash('sha256').update(message).digest());
          expect(verifyEcdsaRaw({ curve, publicKey: point, message: digest, signature })).toBe(true);
          expect(verifyEcdsaSha256({ curve, publicKey: point, message, signature })).toBe(true);
          const bad = signature.slice();
          bad[pick % bad.length]! ^= 1 << (pick % 8);
          expect(verifyEcdsaRaw({ curve, publicKey: point, message: digest, signature: bad })).toBe(false);
        }),
        { numRuns: 25 },
      );
    },
  );
});
