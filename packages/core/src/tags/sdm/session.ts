import { randomBytes } from 'node:crypto';
import { AES_BLOCK, AesKey, truncateMac } from '../../crypto/aes.js';
import { ErrorCode, TaplineError } from '../../model/errors.js';

/**
 * The AES-mode SDM/SUN primitives of NTAG 424/413 DNA (AN12196 §3, NT4H2421Gx §9.3), in both directions: the
 * verifier uses the decrypting and MACing side, tests and simulators build messages with the encrypting side.
 *
 * Byte order: the chip stores SDMReadCtr little-endian, and that is the order inside PICCData, the session vectors
 * and the file-data IV. A counter printed in a URL (`ctr=`, `sun=`) is the same value written as big-endian hex.
 * Here a counter is always a number (0 … 0xFFFFFF) and each function lays it out as its structure needs.
 *
 * @packageDocumentation
 */

/** Length of an SDMMAC (MACt) in bytes. */
export const SDM_MAC_LENGTH = 8;
/** Length of the SDMReadCtr in bytes. */
export const SDM_COUNTER_LENGTH = 3;
/** Largest SDMReadCtr value. */
export const SDM_COUNTER_MAX = 0xffffff;
/** UID length of NTAG 4xx DNA chips (the only one PICCData announces). */
export const SDM_UID_LENGTH = 7;

/** A 16-byte AES key, or an {@link AesKey} built once and reused (which saves creating ciphers on every call). */
export type AesKeyInput = Uint8Array | AesKey;

/** Which SDM session key a session vector derives: SV1 for file-data encryption, SV2 for the MAC. */
export type SdmSessionKeyPurpose = 'enc' | 'mac';

const SV_PREFIX: Readonly<Record<SdmSessionKeyPurpose, readonly number[]>> = {
  enc: [0xc3, 0x3c, 0x00, 0x01, 0x00, 0x80],
  mac: [0x3c, 0xc3, 0x00, 0x01, 0x00, 0x80],
};

/** The PICCDataTag bits (NT4H2421Gx §9.3.4). */
const PICC_TAG_UID = 0x80;
const PICC_TAG_COUNTER = 0x40;
const PICC_TAG_RFU = 0x30;
const PICC_TAG_UID_LENGTH = 0x0f;

/** Wraps a key input into an {@link AesKey}, naming the key in the error (never its value). */
export function toAesKey(key: AesKeyInput, what: string): AesKey {
  if (key instanceof AesKey) return key;
  if (!(key instanceof Uint8Array) || key.length !== 16) {
    const got = key instanceof Uint8Array ? `${key.length} bytes` : typeof key;
    throw new TaplineError(
      ErrorCode.InvalidArgument,
      `The ${what} must be an AES-128 key of 16 bytes (32 hex digits); got ${got}.`,
    );
  }
  return new AesKey(key);
}

/** Checks a counter value; the message names `what` so that a caller can tell which input was wrong. */
export function assertSdmCounter(counter: number, what = 'SDMReadCtr'): void {
  if (!Number.isInteger(counter) || counter < 0 || counter > SDM_COUNTER_MAX) {
    throw new TaplineError(
      ErrorCode.InvalidArgument,
      `The ${what} must be an integer from 0 to ${SDM_COUNTER_MAX} (3 bytes); got ${String(counter)}.`,
    );
  }
}

/** Writes `counter` little-endian into `out` at `offset` (3 bytes). */
export function writeCounterLe(out: Uint8Array, offset: number, counter: number): void {
  out[offset] = counter & 0xff;
  out[offset + 1] = (counter >>> 8) & 0xff;
  out[offset + 2] = (counter >>> 16) & 0xff;
}

/**
 * Session vector SV1 (`enc`) or SV2 (`mac`): `C3 3C | 3C C3`, `00 01 00 80`, then the UID and the counter
 * (little-endian) when mirrored, zero-padded to a whole block. With a 7-byte UID and a counter it is exactly 16
 * bytes (AN12196 Table 2-4: `3CC30001008004DE5F1EACC0403D0000`).
 */
export function sdmSessionVector(purpose: SdmSessionKeyPurpose, uid: Uint8Array, counter?: number): Uint8Array {
  if (counter !== undefined) assertSdmCounter(counter);
  const used = 6 + uid.length + (counter === undefined ? 0 : SDM_COUNTER_LENGTH);
  const sv = new Uint8Array(Math.ceil(used / AES_BLOCK) * AES_BLOCK);
  sv.set(SV_PREFIX[purpose]);
  sv.set(uid, 6);
  if (counter !== undefined) writeCounterLe(sv, 6 + uid.length, counter);
  return sv;
}

/**
 * The two SDM session keys: K_SesSDMFileReadENC = CMAC(K_SDMFileRead, SV1) and K_SesSDMFileReadMAC =
 * CMAC(K_SDMFileRead, SV2).
 */
export function deriveSdmSessionKeys(
  fileReadKey: AesKeyInput,
  uid: Uint8Array,
  counter: number,
): { readonly enc: Uint8Array; readonly mac: Uint8Array } {
  const key = toAesKey(fileReadKey, 'SDM file-read key');
  return { enc: key.cmac(sdmSessionVector('enc', uid, counter)), mac: key.cmac(sdmSessionVector('mac', uid, counter)) };
}

/** What {@link computeSdmMac} takes. */
export interface SdmMacInput {
  /** K_SDMFileRead. */
  readonly fileReadKey: AesKeyInput;
  readonly uid: Uint8Array;
  readonly counter: number;
  /**
   * DynamicData: the file's bytes from SDMMACInputOffset up to the MAC, as the chip MACs them (ASCII in a URL).
   * Empty (the default) when SDMMACInputOffset equals SDMMACOffset, as in `?e=…&c=…`.
   */
  readonly macInput?: Uint8Array;
}

/** SDMMAC = MACt(K_SesSDMFileReadMAC, DynamicData): 8 bytes. */
export function computeSdmMac(input: SdmMacInput): Uint8Array {
  const key = toAesKey(input.fileReadKey, 'SDM file-read key');
  const session = new AesKey(key.cmac(sdmSessionVector('mac', input.uid, input.counter)));
  return truncateMac(session.cmac(input.macInput ?? new Uint8Array()));
}

/**
 * The DynamicData of the usual layout with encrypted file data: the file data as upper-case hex, then
 * `&<macParam>=` (AN12196 §3.4: `"<ENC hex>&cmac="`). Pass `macParam: ''` for a MAC that starts right after the
 * file data.
 */
export function sdmFileDataMacInput(encFileData: Uint8Array, macParam = 'cmac'): Uint8Array {
  const text = Buffer.from(encFileData).toString('hex').toUpperCase() + (macParam === '' ? '' : `&${macParam}=`);
  return Uint8Array.from(Buffer.from(text, 'ascii'));
}

/** Decrypted PICCData, when its tag byte is well formed. */
export interface PiccData {
  /** PICCDataTag. */
  readonly tag: number;
  /** The UID, when bit 7 (UID mirroring) is set. */
  readonly uid?: Uint8Array;
  /** SDMReadCtr, when bit 6 (counter mirroring) is set. */
  readonly counter?: number;
}

/**
 * Encrypts PICCData as the chip does: AES-CBC(K_SDMMetaRead, IV 0) of `C7 ‖ UID ‖ SDMReadCtr(LE) ‖ random(5)`.
 * `padding` (5 bytes) replaces the random tail, for reproducible tests.
 */
export function encryptPiccData(
  metaReadKey: AesKeyInput,
  uid: Uint8Array,
  counter: number,
  padding?: Uint8Array,
): Uint8Array {
  if (uid.length !== SDM_UID_LENGTH) {
    throw new TaplineError(ErrorCode.InvalidArgument, `PICCData holds a 7-byte UID; got ${uid.length} bytes.`);
  }
  assertSdmCounter(counter);
  const tail = padding ?? randomBytes(5);
  if (tail.length !== 5) {
    throw new TaplineError(ErrorCode.InvalidArgument, `PICCData padding is 5 bytes; got ${tail.length}.`);
  }
  const block = new Uint8Array(AES_BLOCK);
  block[0] = PICC_TAG_UID | PICC_TAG_COUNTER | SDM_UID_LENGTH;
  block.set(uid, 1);
  writeCounterLe(block, 8, counter);
  block.set(tail, 11);
  return toAesKey(metaReadKey, 'SDM meta-read key').encryptCbc(block);
}

/**
 * Decrypts 16 bytes of PICCData (AES mode) and reads it by its tag byte. Returns undefined when the tag byte is not
 * well formed (RFU bits set, or a UID length other than 7), which is what a wrong K_SDMMetaRead gives almost
 * always.
 *
 * @throws TaplineError `INVALID_ARGUMENT` when `piccData` is not 16 bytes (24 bytes is LRP mode).
 */
export function decryptPiccData(metaReadKey: AesKeyInput, piccData: Uint8Array): PiccData | undefined {
  if (piccData.length !== AES_BLOCK) {
    throw new TaplineError(
      ErrorCode.InvalidArgument,
      piccData.length === 24
        ? 'This PICCData is 24 bytes, which is LRP mode; Tapline verifies AES-mode SUN only.'
        : `Encrypted PICCData is 16 bytes (AES mode); got ${piccData.length}.`,
    );
  }
  // CBC with a zero IV over one block is a single block decryption; the ECB path reuses the key's cipher.
  return readPiccData(toAesKey(metaReadKey, 'SDM meta-read key').decryptEcb(piccData));
}

/** Reads a decrypted PICCData block; undefined when its tag byte is not well formed. */
export function readPiccData(plain: Uint8Array): PiccData | undefined {
  const tag = plain[0]!;
  const uidMirrored = (tag & PICC_TAG_UID) !== 0;
  const uidLength = tag & PICC_TAG_UID_LENGTH;
  if ((tag & PICC_TAG_RFU) !== 0) return undefined;
  if (uidMirrored ? uidLength !== SDM_UID_LENGTH : uidLength !== 0) return undefined;
  let offset = 1;
  let uid: Uint8Array | undefined;
  if (uidMirrored) {
    uid = plain.slice(offset, offset + uidLength);
    offset += uidLength;
  }
  let counter: number | undefined;
  if ((tag & PICC_TAG_COUNTER) !== 0) {
    counter = plain[offset]! | (plain[offset + 1]! << 8) | (plain[offset + 2]! << 16);
  }
  return { tag, ...(uid ? { uid } : {}), ...(counter === undefined ? {} : { counter }) };
}

/** What {@link encryptSdmFileData} and {@link decryptSdmFileData} take. */
export interface SdmFileDataInput {
  /** K_SDMFileRead (the session key K_SesSDMFileReadENC is derived from it). */
  readonly fileReadKey: AesKeyInput;
  readonly uid: Uint8Array;
  readonly counter: number;
  /** Whole blocks: the plaintext to encrypt, or SDMEncFileData to decrypt. */
  readonly data: Uint8Array;
}

function fileDataCipher(input: SdmFileDataInput): { key: AesKey; iv: Uint8Array } {
  if (input.data.length === 0 || input.data.length % AES_BLOCK !== 0) {
    throw new TaplineError(
      ErrorCode.InvalidArgument,
      `SDM file data is a non-empty multiple of 16 bytes (32 hex digits); got ${input.data.length} bytes.`,
    );
  }
  const fileReadKey = toAesKey(input.fileReadKey, 'SDM file-read key');
  const key = new AesKey(fileReadKey.cmac(sdmSessionVector('enc', input.uid, input.counter)));
  const ivInput = new Uint8Array(AES_BLOCK);
  writeCounterLe(ivInput, 0, input.counter);
  return { key, iv: key.encryptEcb(ivInput) };
}

/**
 * Encrypts file data as the chip does: AES-CBC(K_SesSDMFileReadENC, IV = E(K_SesSDMFileReadENC, CTR(LE) ‖ 13×00)).
 */
export function encryptSdmFileData(input: SdmFileDataInput): Uint8Array {
  const { key, iv } = fileDataCipher(input);
  return key.encryptCbc(input.data, iv);
}

/** Decrypts SDMEncFileData; the inverse of {@link encryptSdmFileData}. */
export function decryptSdmFileData(input: SdmFileDataInput): Uint8Array {
  const { key, iv } = fileDataCipher(input);
  return key.decryptCbc(input.data, iv);
}

/** What {@link computeApexSignature} takes. */
export interface ApexSignatureInput {
  /** The apex-ndef CMAC key (16 bytes at offset 9 of its install parameters). */
  readonly key: AesKeyInput;
  /** The CMAC signature salt (16 bytes at offset 25 of the install parameters). */
  readonly salt: Uint8Array;
  /** The chip ID as printed in the `s=` value. */
  readonly uid: Uint8Array;
  readonly counter: number;
}

/**
 * The VivoKey Apex NDEF ("NFC Share") signature: AES128-CMAC(SALT ‖ UID ‖ COUNTER), all 16 bytes, no truncation.
 *
 * Reading of the sources (flexsecure-applets ndef.md; unverified, the applet is closed and no keyed vector is
 * public): UID and COUNTER are the bytes as printed in the URL, so the 3-byte counter is big-endian (JavaCard's
 * natural order, and what the printed hex shows). "ISO9797-M2 padding" is taken to be CMAC's own final-block
 * padding (`80 00 …` on an incomplete block, RFC 4493 §2.4), which is that padding method; no separate padding is
 * added before the CMAC.
 */
export function computeApexSignature(input: ApexSignatureInput): Uint8Array {
  assertSdmCounter(input.counter, 'Apex counter');
  const message = new Uint8Array(input.salt.length + input.uid.length + SDM_COUNTER_LENGTH);
  message.set(input.salt);
  message.set(input.uid, input.salt.length);
  const at = input.salt.length + input.uid.length;
  message[at] = (input.counter >>> 16) & 0xff;
  message[at + 1] = (input.counter >>> 8) & 0xff;
  message[at + 2] = input.counter & 0xff;
  return toAesKey(input.key, 'Apex CMAC key').cmac(message);
}
