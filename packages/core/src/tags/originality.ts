import { SECP128R1, SECP224R1, verifyEcdsaRaw, verifyEcdsaSha256, type EcCurve } from '../crypto/ecdsa.js';
import { ErrorCode, TaplineError } from '../model/errors.js';

/**
 * Originality signatures: the ECDSA signature over the UID that the chip maker (or VivoKey) wrote at production,
 * read with READ_SIG (NTAG 4xx DNA) or READ SIGNATURE (ICODE). A valid one shows the UID was signed by the holder
 * of the private key; it does not prove the chip is not a clone (the signature is readable and copyable), so use it
 * alongside a key-based check such as SUN or mutual authentication.
 *
 * @packageDocumentation
 */

/** The known originality keys. */
export type OriginalityKeyId = 'ntag424dna' | 'ntag413dna' | 'icode-dna' | 'vivokey-spark1';

/** How the signed message is formed from the UID (given MSB-first, as Tapline writes UIDs). */
export type OriginalityMessage =
  /** The UID bytes as given, no hash. */
  | 'uid'
  /** The UID bytes reversed (ISO 15693 order on air, LSB first), no hash. */
  | 'uid-lsb-first'
  /** SHA-256 of the UID as given. */
  | 'sha256-uid';

/** One originality key and the scheme it signs with. */
export interface OriginalityKey {
  readonly id: OriginalityKeyId;
  /** What it belongs to, for people. */
  readonly description: string;
  readonly curve: EcCurve;
  /** Uncompressed `04 ‖ X ‖ Y`, hex (a string, so that nobody can swap the key by writing into shared bytes). */
  readonly publicKeyHex: string;
  readonly message: OriginalityMessage;
  /** UID length in bytes that this chip family has. */
  readonly uidLength: number;
}

/**
 * The known keys, with sources (research notes, protocols.md §3.4 and §4.3; each recomputed against published
 * samples):
 *
 * - `ntag424dna`: NTAG 424 DNA, secp224r1 over the raw 7-byte UID (proxmark3 originality.c, "ref: AN12196").
 * - `ntag413dna`: NTAG 413 DNA, same scheme, its own key (proxmark3 originality.c). A Spark 2 reports as this chip.
 * - `icode-dna`: NXP ICODE DNA / SLIX2, secp128r1 over the raw 8-byte UID LSB-first.
 * - `vivokey-spark1`: VivoKey Spark 1 (an ICODE DNA that VivoKey signs), secp128r1 over SHA-256 of the UID
 *   MSB-first.
 */
export const ORIGINALITY_KEYS: readonly OriginalityKey[] = Object.freeze(
  (
    [
      {
        id: 'ntag424dna',
        description: 'NXP NTAG 424 DNA',
        curve: SECP224R1,
        publicKeyHex:
          '048A9B380AF2EE1B98DC417FECC263F8449C7625CECE82D9B916C992DA209D68422B81EC20B65A66B5102A61596AF3379200599316A00A1410',
        message: 'uid',
        uidLength: 7,
      },
      {
        id: 'ntag413dna',
        description: 'NXP NTAG 413 DNA',
        curve: SECP224R1,
        publicKeyHex:
          '04BB5D514F7050025C7D0F397310360EEC91EAF792E96FC7E0F496CB4E669D414F877B7B27901FE67C2E3B33CD39D1C797715189AC951C2ADD',
        message: 'uid',
        uidLength: 7,
      },
      {
        id: 'icode-dna',
        description: 'NXP ICODE DNA / ICODE SLIX2',
        curve: SECP128R1,
        publicKeyHex: '048878A2A2D3EEC336B4F261A082BD71F9BE11C4E2E896648B32EFA59CEA6E59F0',
        message: 'uid-lsb-first',
        uidLength: 8,
      },
      {
        id: 'vivokey-spark1',
        description: 'VivoKey Spark 1',
        curve: SECP128R1,
        publicKeyHex: '04D64BB732C0D214E7EC580736ACF847284B502C25C0F7F2FA86AACE1DADA4387A',
        message: 'sha256-uid',
        uidLength: 8,
      },
    ] satisfies OriginalityKey[]
  ).map((key) => Object.freeze(key)),
);

/** What {@link verifyOriginalitySignature} takes. */
export interface OriginalitySignatureInput {
  /**
   * The UID, MSB first as Tapline writes UIDs (`04…` for NTAG, `E0 04 …` for ISO 15693). An 8-byte UID that ends
   * in `E0` and does not start with it can only be an ISO 15693 UID written LSB-first (the way proxmark3's
   * recover_pk.py lists ICODE samples), and is turned round before use.
   */
  readonly uid: Uint8Array;
  /**
   * `r ‖ s`, big-endian: 56 bytes for NTAG 4xx DNA, 32 for ICODE DNA and Spark 1. For ICODE, this is the order of
   * the published samples, which proxmark3 prints reversed.
   */
  readonly signature: Uint8Array;
  /** Check against this key only; without it every key whose lengths fit is tried. */
  readonly chip?: OriginalityKeyId;
}

/** The outcome of {@link verifyOriginalitySignature}. */
export interface OriginalitySignatureResult {
  readonly valid: boolean;
  /** The key that verified the signature (present only when `valid`). */
  readonly key?: OriginalityKeyId;
}

/** The ids of the known keys, for validating user input. */
export const ORIGINALITY_KEY_IDS: readonly OriginalityKeyId[] = Object.freeze(ORIGINALITY_KEYS.map((k) => k.id));

function signedMessage(key: OriginalityKey, uidMsbFirst: Uint8Array): Uint8Array {
  return key.message === 'uid-lsb-first' ? uidMsbFirst.slice().reverse() : uidMsbFirst;
}

function fits(key: OriginalityKey, uid: Uint8Array, signature: Uint8Array): boolean {
  return uid.length === key.uidLength && signature.length === 2 * key.curve.orderBytes;
}

function describeLengths(key: OriginalityKey): string {
  return `a ${key.uidLength}-byte UID with a ${2 * key.curve.orderBytes}-byte signature`;
}

/**
 * Verifies a chip's originality signature against the known keys ({@link ORIGINALITY_KEYS}), or only against
 * `chip`'s. A signature that does not verify is `{ valid: false }`, never an exception.
 *
 * @throws TaplineError `INVALID_ARGUMENT` when the UID and signature lengths fit no candidate key (or not `chip`'s),
 *   or `chip` is unknown.
 */
export function verifyOriginalitySignature(input: OriginalitySignatureInput): OriginalitySignatureResult {
  const { signature, chip } = input;
  const uid = normaliseUid(input.uid);
  let candidates: readonly OriginalityKey[];
  if (chip !== undefined) {
    const key = ORIGINALITY_KEYS.find((k) => k.id === chip);
    if (!key) {
      throw new TaplineError(ErrorCode.InvalidArgument, `Unknown chip "${String(chip)}".`, {
        hint: `Use one of: ${ORIGINALITY_KEY_IDS.join(', ')}.`,
      });
    }
    if (!fits(key, uid, signature)) {
      throw new TaplineError(
        ErrorCode.InvalidArgument,
        `${key.description} signs ${describeLengths(key)}; got a ${uid.length}-byte UID and a ${signature.length}-byte signature.`,
      );
    }
    candidates = [key];
  } else {
    candidates = ORIGINALITY_KEYS.filter((k) => fits(k, uid, signature));
    if (candidates.length === 0) {
      throw new TaplineError(
        ErrorCode.InvalidArgument,
        `No known originality key takes a ${uid.length}-byte UID with a ${signature.length}-byte signature.`,
        {
          hint: 'NTAG 413/424 DNA: 7-byte UID and 56-byte signature; ICODE DNA and Spark 1: 8-byte UID and 32-byte signature.',
        },
      );
    }
  }
  for (const key of candidates) {
    const message = signedMessage(key, uid);
    const publicKey = Uint8Array.from(Buffer.from(key.publicKeyHex, 'hex'));
    const ecdsa = { curve: key.curve, publicKey, message, signature };
    const ok = key.message === 'sha256-uid' ? verifyEcdsaSha256(ecdsa) : verifyEcdsaRaw(ecdsa);
    if (ok) return { valid: true, key: key.id };
  }
  return { valid: false };
}

/** Turns an ISO 15693 UID written LSB-first (`… 04 E0`) into Tapline's MSB-first order. */
function normaliseUid(uid: Uint8Array): Uint8Array {
  if (uid.length === 8 && uid[7] === 0xe0 && uid[0] !== 0xe0) return uid.slice().reverse();
  return uid;
}
