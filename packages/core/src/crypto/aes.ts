import { createCipheriv, createDecipheriv, timingSafeEqual, type Cipher, type Decipher } from 'node:crypto';
import { ErrorCode, TaplineError } from '../model/errors.js';

/** AES block size in bytes. */
export const AES_BLOCK = 16;

const ZERO_BLOCK = new Uint8Array(AES_BLOCK);

function assertKey(key: Uint8Array): void {
  if (key.length !== 16) {
    throw new TaplineError(ErrorCode.InvalidArgument, `An AES-128 key has 16 bytes, not ${key.length}.`);
  }
}

function assertBlocks(data: Uint8Array, what: string): void {
  if (data.length % AES_BLOCK !== 0) {
    throw new TaplineError(ErrorCode.InvalidArgument, `${what} must be a multiple of 16 bytes, not ${data.length}.`);
  }
}

/**
 * An AES-128 key with the operations the NXP protocols use: single blocks (ECB), CBC without padding, and
 * AES-CMAC (RFC 4493). Every block operation goes through node:crypto; the ECB cipher objects and the CMAC subkeys
 * are created once per key, because creating a cipher costs more than encrypting a block.
 */
export class AesKey {
  readonly #key: Uint8Array;
  #encryptor: Cipher | undefined;
  #decryptor: Decipher | undefined;
  #subkeys: readonly [Uint8Array, Uint8Array] | undefined;

  constructor(key: Uint8Array) {
    assertKey(key);
    this.#key = Uint8Array.from(key);
  }

  /** E(K, block) for one or more whole blocks, each encrypted on its own (ECB). */
  encryptEcb(blocks: Uint8Array): Uint8Array {
    assertBlocks(blocks, 'ECB input');
    this.#encryptor ??= createCipheriv('aes-128-ecb', this.#key, null).setAutoPadding(false);
    return new Uint8Array(this.#encryptor.update(blocks));
  }

  /** D(K, block) for one or more whole blocks (ECB). */
  decryptEcb(blocks: Uint8Array): Uint8Array {
    assertBlocks(blocks, 'ECB input');
    this.#decryptor ??= createDecipheriv('aes-128-ecb', this.#key, null).setAutoPadding(false);
    return new Uint8Array(this.#decryptor.update(blocks));
  }

  /** AES-CBC encryption without padding; `data` must be whole blocks. Default IV: zero. */
  encryptCbc(data: Uint8Array, iv: Uint8Array = ZERO_BLOCK): Uint8Array {
    assertBlocks(data, 'CBC input');
    const cipher = createCipheriv('aes-128-cbc', this.#key, iv).setAutoPadding(false);
    return new Uint8Array(Buffer.concat([cipher.update(data), cipher.final()]));
  }

  /** AES-CBC decryption without padding; `data` must be whole blocks. Default IV: zero. */
  decryptCbc(data: Uint8Array, iv: Uint8Array = ZERO_BLOCK): Uint8Array {
    assertBlocks(data, 'CBC input');
    const decipher = createDecipheriv('aes-128-cbc', this.#key, iv).setAutoPadding(false);
    return new Uint8Array(Buffer.concat([decipher.update(data), decipher.final()]));
  }

  /** AES-CMAC (RFC 4493, NIST SP 800-38B) of `message`: 16 bytes. */
  cmac(message: Uint8Array): Uint8Array {
    const [k1, k2] = (this.#subkeys ??= cmacSubkeys(this.encryptEcb(ZERO_BLOCK)));
    const complete = message.length > 0 && message.length % AES_BLOCK === 0;
    const blocks = complete ? message.length / AES_BLOCK : Math.floor(message.length / AES_BLOCK) + 1;
    const state = new Uint8Array(AES_BLOCK);
    let x: Uint8Array = state;
    for (let b = 0; b < blocks; b++) {
      const offset = b * AES_BLOCK;
      if (b < blocks - 1) {
        for (let i = 0; i < AES_BLOCK; i++) state[i] = x[i]! ^ message[offset + i]!;
      } else {
        const last = message.subarray(offset);
        for (let i = 0; i < AES_BLOCK; i++) {
          const m = i < last.length ? last[i]! : i === last.length ? 0x80 : 0x00;
          state[i] = x[i]! ^ m ^ (complete ? k1[i]! : k2[i]!);
        }
      }
      x = this.encryptEcb(state);
    }
    return x;
  }
}

/** The two CMAC subkeys from L = E(K, 0^128). */
function cmacSubkeys(l: Uint8Array): readonly [Uint8Array, Uint8Array] {
  const k1 = doubleBlock(l);
  return [k1, doubleBlock(k1)];
}

/** Multiplication by x in GF(2^128) with the CMAC polynomial (Rb = 0x87). */
function doubleBlock(block: Uint8Array): Uint8Array {
  const out = new Uint8Array(AES_BLOCK);
  for (let i = 0; i < AES_BLOCK; i++)
    out[i] = ((block[i]! << 1) | (i + 1 < AES_BLOCK ? block[i + 1]! >>> 7 : 0)) & 0xff;
  if (block[0]! & 0x80) out[AES_BLOCK - 1]! ^= 0x87;
  return out;
}

/** AES-CMAC of `message` under `key` (16 bytes). For many MACs under one key, keep an {@link AesKey}. */
export function aesCmac(key: Uint8Array, message: Uint8Array): Uint8Array {
  return new AesKey(key).cmac(message);
}

/**
 * NXP's truncated MAC (MACt): the 8 odd-indexed bytes (1, 3, …, 15) of a 16-byte CMAC, as NTAG 4xx secure
 * messaging and SUN use it.
 */
export function truncateMac(cmac: Uint8Array): Uint8Array {
  const out = new Uint8Array(8);
  for (let i = 0; i < 8; i++) out[i] = cmac[2 * i + 1]!;
  return out;
}

/**
 * Compares two byte strings in time that depends only on their lengths. Use it for every MAC, tag and challenge
 * comparison.
 */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  return timingSafeEqual(a, b);
}

/** ISO/IEC 9797-1 padding method 2: `80` then zeros up to a whole block, always added. */
export function padIso9797M2(data: Uint8Array): Uint8Array {
  const padded = new Uint8Array((Math.floor(data.length / AES_BLOCK) + 1) * AES_BLOCK);
  padded.set(data);
  padded[data.length] = 0x80;
  return padded;
}

/** Removes ISO/IEC 9797-1 method 2 padding; fails with `PROTOCOL_ERROR` when there is none. */
export function unpadIso9797M2(data: Uint8Array): Uint8Array {
  let end = data.length - 1;
  while (end >= 0 && data[end] === 0x00) end--;
  if (end < 0 || data[end] !== 0x80 || data.length - end > AES_BLOCK) {
    throw new TaplineError(ErrorCode.ProtocolError, 'Decrypted data has no valid ISO 9797-1 M2 padding.');
  }
  return data.subarray(0, end);
}

/** Rotates bytes left by one (RndA → RndA′ in NXP authentication). */
export function rotateLeft(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.length);
  out.set(bytes.subarray(1));
  if (bytes.length > 0) out[bytes.length - 1] = bytes[0]!;
  return out;
}

/** Rotates bytes right by one. */
export function rotateRight(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.length);
  if (bytes.length > 0) out[0] = bytes[bytes.length - 1]!;
  out.set(bytes.subarray(0, bytes.length - 1), 1);
  return out;
}
