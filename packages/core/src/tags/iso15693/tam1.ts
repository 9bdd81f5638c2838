/**
 * TAM1 (ISO/IEC 29167-10 tag authentication, AES-128) as an ICODE DNA answers it: an offline model for the virtual
 * chip and the reference platform, which play the tag and the verifier.
 *
 * What is confirmed, from public sources (research notes protocols.md §1.2 and §4.2):
 * - The request: AUTHENTICATE `35`, CSI `00` (AES-128), message `00 ‖ KeyID ‖ IChallenge(10)`, key id 2 for VivoKey
 *   (VivoKey's Android client Intra).
 * - The reply: flags, one byte of unpublished meaning, a 16-byte TResponse (VivoKey's iOS client chipscanlib-ios
 *   drops the byte and posts the 16).
 * - The decrypted TResponse holds C_TAM1(2) ‖ TRnd(4) ‖ IChallenge(10), most significant field first: ThingMagic's
 *   Gen2 TAM1 sample AES-decrypts the reply and reads the IChallenge from bytes 6..15. That is Gen2, not ICODE DNA.
 * - VivoKey's legacy API accepted `resp = rev(AES-128-ECB_K(rev(challenge16)))` from chipscanlib-ios' Spark 1
 *   emulation test; the synthetic vector K = 000102…0F, challenge 00112233…FF → 4D96CA87FC552877FD4F5F797823871B was
 *   recomputed independently.
 *
 * What is inferred (no ICODE DNA AUTHENTICATE wire vector is public):
 * - That the chip sends every field least significant byte first, so that the TResponse is `rev(E_K(rev(P)))` with
 *   `P = IChallenge as sent ‖ rev(TRnd) ‖ rev(C_TAM1)`; `rev(P)` is then exactly the ISO plaintext
 *   `C_TAM1 ‖ TRnd ‖ IChallenge` with the IChallenge read as a number whose first byte on air is its least
 *   significant. This is the one model consistent with both the emulation formula and the ISO layout.
 * - The value of C_TAM1, {@link TAM1_CONSTANT} (commonly quoted as 0x96C5; not confirmed).
 * - How VivoKey's server treats P[10..15]; {@link verifyTam1Response} therefore checks only the IChallenge unless told
 *   the constant.
 *
 * @packageDocumentation
 */
import { AES_BLOCK, AesKey, constantTimeEqual } from '../../crypto/aes.js';
import { TAM1_ICHALLENGE_LENGTH } from './frames.js';
import { assertInteger, assertLength, reversed } from './internal.js';
import { TAM1_TRESPONSE_LENGTH } from './replies.js';

/**
 * C_TAM1, the constant in the TAM1 plaintext. UNCONFIRMED: 0x96C5 is the value commonly quoted for ISO/IEC 29167-10,
 * but no public source could be checked. It goes into the plaintext most significant byte first (`96 C5` in the ISO
 * layout, `C5 96` at the end of the air-order block P).
 */
export const TAM1_CONSTANT = 0x96c5;

/** Bytes in TRnd, the tag's random number. */
export const TAM1_TRND_LENGTH = 4;

/** An AES-128 key as bytes, or an {@link AesKey} to reuse its cipher across many operations. */
export type Tam1Key = Uint8Array | AesKey;

/** The fields of a decrypted TResponse; see {@link openTam1Response}. */
export interface Tam1Plaintext {
  /** P, the decrypted block in air order: `IChallenge ‖ rev(TRnd) ‖ rev(C_TAM1)`. */
  readonly plaintext: Uint8Array;
  /** The IChallenge the tag answered, as sent in the request (P[0..10]). */
  readonly ichallenge: Uint8Array;
  /** TRnd, most significant byte first (P[10..14] reversed). */
  readonly trnd: Uint8Array;
  /** The constant the tag used (P[14..16] read little-endian); compare with {@link TAM1_CONSTANT}. */
  readonly constant: number;
}

function aesKey(key: Tam1Key): AesKey {
  return key instanceof AesKey ? key : new AesKey(key);
}

/**
 * The air-order plaintext block P = `ichallenge ‖ rev(trnd) ‖ rev(constant)` (inferred layout, see the module
 * notes). `ichallenge` is 10 bytes as sent in AUTHENTICATE, `trnd` 4 bytes most significant first.
 */
export function tam1Plaintext(ichallenge: Uint8Array, trnd: Uint8Array, constant: number = TAM1_CONSTANT): Uint8Array {
  assertLength('A TAM1 IChallenge', ichallenge, TAM1_ICHALLENGE_LENGTH);
  assertLength('A TAM1 TRnd', trnd, TAM1_TRND_LENGTH);
  assertInteger('The TAM1 constant', constant, 0, 0xffff);
  const block = new Uint8Array(AES_BLOCK);
  block.set(ichallenge, 0);
  block.set(reversed(trnd), TAM1_ICHALLENGE_LENGTH);
  block[14] = constant & 0xff;
  block[15] = constant >>> 8;
  return block;
}

/**
 * `rev(AES-128-ECB_K(rev(block)))`: AES on the byte-reversed block, byte-reversed back. This is the formula of
 * VivoKey's legacy Spark 1 emulation (confirmed against their API) and, in Tapline's model, what the tag does to P.
 */
export function tam1Encrypt(key: Tam1Key, block: Uint8Array): Uint8Array {
  assertLength('A TAM1 block', block, AES_BLOCK);
  return reversed(aesKey(key).encryptEcb(reversed(block)));
}

/** `rev(AES-128-ECB⁻¹_K(rev(tresponse)))`, the inverse of {@link tam1Encrypt}. */
export function tam1Decrypt(key: Tam1Key, tresponse: Uint8Array): Uint8Array {
  assertLength('A TAM1 TResponse', tresponse, TAM1_TRESPONSE_LENGTH);
  return reversed(aesKey(key).decryptEcb(reversed(tresponse)));
}

/**
 * The TResponse a tag holding `key` returns for `ichallenge` (10 bytes as sent) with its random `trnd` (4 bytes,
 * most significant first), under the inferred model: `tam1Encrypt(key, tam1Plaintext(ichallenge, trnd, constant))`.
 */
export function computeTam1Response(
  key: Tam1Key,
  ichallenge: Uint8Array,
  trnd: Uint8Array,
  constant: number = TAM1_CONSTANT,
): Uint8Array {
  return tam1Encrypt(key, tam1Plaintext(ichallenge, trnd, constant));
}

/** Decrypts a TResponse and splits it into the fields of the inferred layout. */
export function openTam1Response(key: Tam1Key, tresponse: Uint8Array): Tam1Plaintext {
  const plaintext = tam1Decrypt(key, tresponse);
  return {
    plaintext,
    ichallenge: plaintext.slice(0, TAM1_ICHALLENGE_LENGTH),
    trnd: reversed(plaintext.subarray(TAM1_ICHALLENGE_LENGTH, 14)),
    constant: plaintext[14]! | (plaintext[15]! << 8),
  };
}

/** Options of {@link verifyTam1Response}. */
export interface Tam1VerifyOptions {
  /**
   * Also require this C_TAM1 value. Default: not checked, because neither the constant nor how VivoKey's server
   * treats those bytes is confirmed; the IChallenge alone already proves knowledge of the key.
   */
  readonly constant?: number;
}

/**
 * True when `tresponse` is the answer of a tag holding `key` to `ichallenge` (10 bytes as sent): the decrypted
 * block must start with the IChallenge (and end with `options.constant` when given). Comparisons are constant-time.
 * Wrong lengths fail with `INVALID_ARGUMENT`.
 */
export function verifyTam1Response(
  key: Tam1Key,
  ichallenge: Uint8Array,
  tresponse: Uint8Array,
  options: Tam1VerifyOptions = {},
): boolean {
  assertLength('A TAM1 IChallenge', ichallenge, TAM1_ICHALLENGE_LENGTH);
  if (options.constant !== undefined) assertInteger('The TAM1 constant', options.constant, 0, 0xffff);
  const plaintext = tam1Decrypt(key, tresponse);
  const challengeMatches = constantTimeEqual(plaintext.subarray(0, TAM1_ICHALLENGE_LENGTH), ichallenge);
  if (options.constant === undefined) return challengeMatches;
  const expected = Uint8Array.of(options.constant & 0xff, options.constant >>> 8);
  const constantMatches = constantTimeEqual(plaintext.subarray(14, 16), expected);
  // Both comparisons always run, so the timing does not tell which part failed.
  return challengeMatches && constantMatches;
}
