import { createCipheriv, type Cipher } from 'node:crypto';
import { AES_BLOCK, constantTimeEqual, type AesKey } from '../../crypto/aes.js';
import { ErrorCode, TaplineError } from '../../model/errors.js';
import { parseSunMessage, type ParseSunOptions, type SunMessage, type SunMode } from './parse.js';
import {
  SDM_MAC_LENGTH,
  SDM_UID_LENGTH,
  assertSdmCounter,
  computeApexSignature,
  decryptSdmFileData,
  readPiccData,
  toAesKey,
  writeCounterLe,
} from './session.js';

/**
 * SUN verification: one {@link SunVerifier} per key set, reused for many messages.
 *
 * @packageDocumentation
 */

/** Why a SUN message did not verify. */
export type SunFailureReason =
  /** The MAC (SDMMAC, or the Apex CMAC) does not match: wrong key, or the message was altered or forged. */
  | 'bad-mac'
  /**
   * Encrypted PICCData did not decrypt to a usable tag byte (UID and counter mirrored, 7-byte UID): wrong
   * meta-read key, altered data, or a tag configured without UID or counter mirroring.
   */
  | 'bad-picc-data'
  /** Authentic, but its counter is not above the last one accepted for this UID (see `createCounterGuard`). */
  | 'replayed';

/** One sentence per {@link SunFailureReason}, for people (no secrets, no data). */
export const SUN_FAILURE_MESSAGES: Readonly<Record<SunFailureReason, string>> = Object.freeze({
  'bad-mac': 'The MAC does not match: wrong key, or the message was altered or forged.',
  'bad-picc-data':
    'The encrypted PICCData did not decrypt to a valid UID and counter: wrong meta-read key, or the data was altered.',
  replayed: 'The counter is not above the last one accepted for this UID: the message was replayed.',
});

/** The outcome of verifying one SUN message. A bad MAC is `valid: false` with a reason, never an exception. */
export interface SunResult {
  readonly valid: boolean;
  /**
   * The UID, from the message (authenticated only when `valid`). Empty when encrypted PICCData did not decrypt
   * (`reason: 'bad-picc-data'`).
   */
  readonly uid: Uint8Array;
  /** The read counter, from the message (authenticated only when `valid`); -1 with `reason: 'bad-picc-data'`. */
  readonly counter: number;
  readonly mode: SunMode;
  /** Decrypted SDM file data; present only when the message carries it and the MAC verified. */
  readonly fileData?: Uint8Array;
  /** Present when `valid` is false. */
  readonly reason?: SunFailureReason;
}

/**
 * The keys for SUN verification. Which key is `key` depends on the form:
 *
 * - SDM forms (`e=`/`picc_data=`, `uid=&ctr=`, VivoKey `sun=`, bare `UID-CTR-MAC`): K_SDMFileRead, the key
 *   SDMMAC's session key is derived from.
 * - Apex NDEF (`s=`): the applet's AES-128 CMAC key; `salt` is then required.
 */
export interface SunKeys {
  /** K_SDMFileRead for SDM messages; the CMAC key for Apex `s=` messages. 16 bytes. */
  readonly key: Uint8Array;
  /**
   * K_SDMMetaRead, which decrypts PICCData (`e=`, `picc_data=`). Default: `key` (AN12196's examples, and many
   * deployments, use one key for both).
   */
  readonly metaKey?: Uint8Array;
  /**
   * The key K_SesSDMFileReadENC is derived from, to decrypt `enc=` file data. The chip derives it from
   * K_SDMFileRead, like the MAC key, so the default `key` is right for NTAG 424 DNA; set it only for a backend that
   * differs.
   */
  readonly fileKey?: Uint8Array;
  /** The Apex NDEF signature salt (16 bytes in the applet's install parameters). Required for `s=` messages. */
  readonly salt?: Uint8Array;
}

const EMPTY = new Uint8Array(0);
const ZERO_BLOCK = new Uint8Array(AES_BLOCK);
const MAC_SV_PREFIX = [0x3c, 0xc3, 0x00, 0x01, 0x00, 0x80] as const;

/** `out = block · x` in GF(2^128) with the CMAC polynomial (RFC 4493 subkey generation), without allocating. */
function doubleInto(out: Uint8Array, block: Uint8Array): void {
  const carry = block[0]! & 0x80;
  for (let i = 0; i < AES_BLOCK - 1; i++) out[i] = ((block[i]! << 1) | (block[i + 1]! >>> 7)) & 0xff;
  out[AES_BLOCK - 1] = ((block[AES_BLOCK - 1]! << 1) & 0xff) ^ (carry ? 0x87 : 0);
}

function ecbCipher(key: Uint8Array): Cipher {
  return createCipheriv('aes-128-ecb', key, null).setAutoPadding(false);
}

/**
 * The SDMMAC computation of the hot path, on node:crypto ECB ciphers and preallocated scratch blocks: the
 * general-purpose {@link AesKey} allocates per block and builds a full key object per session key, which is most
 * of the cost of a plain-mirror verification. Same RFC 4493 CMAC; the tests hold it to AesKey's results.
 */
class SdmMacEngine {
  /** ECB cipher under K_SDMFileRead; SV2 is exactly one complete block, so its CMAC needs only subkey K1. */
  readonly #static: Cipher;
  readonly #staticK1 = new Uint8Array(AES_BLOCK);
  readonly #sv = new Uint8Array(AES_BLOCK);
  readonly #block = new Uint8Array(AES_BLOCK);
  readonly #k1 = new Uint8Array(AES_BLOCK);
  readonly #k2 = new Uint8Array(AES_BLOCK);

  constructor(fileReadKey: Uint8Array) {
    this.#static = ecbCipher(fileReadKey);
    doubleInto(this.#staticK1, this.#static.update(ZERO_BLOCK));
    this.#sv.set(MAC_SV_PREFIX);
  }

  /** MACt(CMAC(K_SDMFileRead, SV2(uid, counter)), macInput) for a 7-byte UID. */
  mac(uid: Uint8Array, counter: number, macInput: Uint8Array): Uint8Array {
    const sv = this.#sv;
    sv.set(uid, 6);
    writeCounterLe(sv, 13, counter);
    const block = this.#block;
    for (let i = 0; i < AES_BLOCK; i++) block[i] = sv[i]! ^ this.#staticK1[i]!;
    const session = ecbCipher(this.#static.update(block));

    const k1 = this.#k1;
    doubleInto(k1, session.update(ZERO_BLOCK));
    const complete = macInput.length > 0 && macInput.length % AES_BLOCK === 0;
    let last = k1;
    if (!complete) {
      doubleInto(this.#k2, k1);
      last = this.#k2;
    }
    const blocks = complete ? macInput.length / AES_BLOCK : Math.floor(macInput.length / AES_BLOCK) + 1;
    let x: Uint8Array = ZERO_BLOCK;
    for (let b = 0; b < blocks; b++) {
      const offset = b * AES_BLOCK;
      if (b < blocks - 1) {
        for (let i = 0; i < AES_BLOCK; i++) block[i] = x[i]! ^ macInput[offset + i]!;
      } else {
        const rest = macInput.length - offset;
        for (let i = 0; i < AES_BLOCK; i++) {
          const m = i < rest ? macInput[offset + i]! : i === rest ? 0x80 : 0x00;
          block[i] = x[i]! ^ m ^ last[i]!;
        }
      }
      x = session.update(block);
    }
    const out = new Uint8Array(SDM_MAC_LENGTH);
    for (let i = 0; i < SDM_MAC_LENGTH; i++) out[i] = x[2 * i + 1]!;
    return out;
  }
}

/**
 * Verifies SUN messages under one set of keys. Build it once: it keeps the static keys' AES ciphers and CMAC
 * subkeys, so a plain-mirror verification costs one block under the static key, then one cipher set-up and two
 * blocks under the session key.
 *
 * Not safe to call re-entrantly from inside its own methods (it reuses a scratch buffer), which plain synchronous
 * use never does.
 */
export class SunVerifier {
  readonly #key: AesKey;
  readonly #metaKey: AesKey;
  readonly #fileKey: AesKey;
  readonly #salt: Uint8Array | undefined;
  readonly #parseOptions: ParseSunOptions;
  readonly #macEngine: SdmMacEngine;

  /**
   * @throws TaplineError `INVALID_ARGUMENT` when a key is not 16 bytes (the message names the key, never its value).
   */
  constructor(keys: SunKeys, parseOptions: ParseSunOptions = {}) {
    if (!(keys.key instanceof Uint8Array)) {
      throw new TaplineError(ErrorCode.InvalidArgument, 'The SUN key must be 16 bytes (a Uint8Array).');
    }
    this.#key = toAesKey(keys.key, 'SUN key');
    this.#metaKey = keys.metaKey === undefined ? this.#key : toAesKey(keys.metaKey, 'SDM meta-read key');
    this.#fileKey = keys.fileKey === undefined ? this.#key : toAesKey(keys.fileKey, 'SDM file-data key');
    this.#salt = keys.salt === undefined ? undefined : Uint8Array.from(keys.salt);
    this.#parseOptions = parseOptions;
    this.#macEngine = new SdmMacEngine(keys.key);
  }

  /**
   * Verifies a SUN message: a URL or `UID-CTR-MAC` string (parsed with {@link parseSunMessage} and this verifier's
   * parse options), or a message parsed before.
   *
   * @throws TaplineError `INVALID_ARGUMENT` for malformed input, or an Apex message without a salt. Never for a
   *   message that is merely not authentic: that is `valid: false`.
   */
  verify(input: string | SunMessage): SunResult {
    const message = typeof input === 'string' ? parseSunMessage(input, this.#parseOptions) : input;
    switch (message.mode) {
      case 'sdm-plain':
        return this.#verifySdm(
          'sdm-plain',
          message.uid,
          message.counter,
          message.mac,
          message.macInput,
          message.encFileData,
        );
      case 'sdm-encrypted':
        return this.#verifyEncrypted(message.piccData, message.mac, message.macInput, message.encFileData);
      case 'apex-cmac':
        return this.#verifyApex(message.uid, message.counter, message.signature);
      default:
        throw new TaplineError(
          ErrorCode.InvalidArgument,
          `Unknown SUN message mode "${String((message as { mode: unknown }).mode)}".`,
        );
    }
  }

  /**
   * The fast path for the plain mirror (VivoKey `sun=`, `uid=&ctr=&cmac=`): UID, counter and MAC already decoded.
   *
   * @throws TaplineError `INVALID_ARGUMENT` for a UID that is not 7 bytes, a MAC that is not 8, or a counter out of
   *   range.
   */
  verifyPlain(uid: Uint8Array, counter: number, mac: Uint8Array, macInput?: Uint8Array): SunResult {
    return this.#verifySdm('sdm-plain', uid, counter, mac, macInput, undefined);
  }

  #verifyEncrypted(
    piccData: Uint8Array,
    mac: Uint8Array,
    macInput: Uint8Array | undefined,
    encFileData: Uint8Array | undefined,
  ): SunResult {
    if (piccData.length !== AES_BLOCK) {
      throw new TaplineError(
        ErrorCode.InvalidArgument,
        piccData.length === 24
          ? 'This PICCData is 24 bytes, which is LRP mode; Tapline verifies AES-mode SUN only.'
          : `Encrypted PICCData is 16 bytes (AES mode); got ${piccData.length}.`,
      );
    }
    // CBC with a zero IV over one block is one block decryption.
    const picc = readPiccData(this.#metaKey.decryptEcb(piccData));
    if (picc?.uid === undefined || picc.counter === undefined) {
      // Spend the MAC's time anyway, so that timing does not tell a well-formed plaintext from a bad one.
      this.#macEngine.mac(ZERO_BLOCK.subarray(0, SDM_UID_LENGTH), 0, macInput ?? EMPTY);
      return { valid: false, uid: EMPTY, counter: -1, mode: 'sdm-encrypted', reason: 'bad-picc-data' };
    }
    return this.#verifySdm('sdm-encrypted', picc.uid, picc.counter, mac, macInput, encFileData);
  }

  #verifySdm(
    mode: 'sdm-plain' | 'sdm-encrypted',
    uid: Uint8Array,
    counter: number,
    mac: Uint8Array,
    macInput: Uint8Array | undefined,
    encFileData: Uint8Array | undefined,
  ): SunResult {
    if (uid.length !== SDM_UID_LENGTH) {
      throw new TaplineError(ErrorCode.InvalidArgument, `An SDM UID is 7 bytes; got ${uid.length}.`);
    }
    if (mac.length !== SDM_MAC_LENGTH) {
      throw new TaplineError(ErrorCode.InvalidArgument, `An SDMMAC is 8 bytes; got ${mac.length}.`);
    }
    assertSdmCounter(counter);
    const expected = this.#macEngine.mac(uid, counter, macInput ?? EMPTY);
    if (!constantTimeEqual(expected, mac)) return { valid: false, uid, counter, mode, reason: 'bad-mac' };
    if (encFileData === undefined) return { valid: true, uid, counter, mode };
    const fileData = decryptSdmFileData({ fileReadKey: this.#fileKey, uid, counter, data: encFileData });
    return { valid: true, uid, counter, mode, fileData };
  }

  #verifyApex(uid: Uint8Array, counter: number, signature: Uint8Array): SunResult {
    if (this.#salt === undefined) {
      throw new TaplineError(
        ErrorCode.InvalidArgument,
        'An Apex NDEF signature (s=UID-CTR-CMAC) needs the salt it was made with.',
        { hint: 'Pass the 16-byte CMAC signature salt from the applet install parameters (the CLI takes --salt).' },
      );
    }
    if (signature.length !== 16) {
      throw new TaplineError(ErrorCode.InvalidArgument, `An Apex CMAC is 16 bytes; got ${signature.length}.`);
    }
    const expected = computeApexSignature({ key: this.#key, salt: this.#salt, uid, counter });
    return constantTimeEqual(expected, signature)
      ? { valid: true, uid, counter, mode: 'apex-cmac' }
      : { valid: false, uid, counter, mode: 'apex-cmac', reason: 'bad-mac' };
  }
}

/** Builds a {@link SunVerifier}; see {@link SunKeys} for which key each form needs. */
export function createSunVerifier(keys: SunKeys, parseOptions?: ParseSunOptions): SunVerifier {
  return new SunVerifier(keys, parseOptions);
}

/**
 * Verifies one SUN message. For many messages under the same keys, keep a {@link SunVerifier} instead: it reuses
 * the static keys' ciphers.
 *
 * @throws TaplineError `INVALID_ARGUMENT` for malformed input or keys; never for a message that is merely not
 *   authentic (that is `valid: false` with a `reason`).
 */
export function verifySun(input: string | SunMessage, keys: SunKeys, parseOptions?: ParseSunOptions): SunResult {
  return new SunVerifier(keys, parseOptions).verify(input);
}
