import { createHmac } from 'node:crypto';
import { ErrorCode, TaplineError, ecMessageToInteger, ecModInverse, ecMultiplyBase, type EcCurve } from '@tapline/core';

/**
 * A minimal ECDSA *signer* for the fixtures' own keys.
 *
 * Why it exists: NXP's originality scheme signs the raw UID with no hash, and node:crypto always hashes what it
 * signs, so it cannot produce those signatures. Core verifies them (crypto/ecdsa.ts) but has no reason to sign, so
 * the signing half lives here, in test code, with keys the fixtures own. It is not constant-time and must never hold
 * a real key.
 *
 * Nonces are deterministic (RFC 6979 with HMAC-SHA-256), so a chip's stored signature is the same on every run and
 * no randomness has to be injected. The curve parameters and arithmetic are core's (`SECP224R1`, `SECP128R1`,
 * `ecMultiplyBase`).
 */

function mod(value: bigint, m: bigint): bigint {
  const r = value % m;
  return r < 0n ? r + m : r;
}

function toBigInt(bytes: Uint8Array): bigint {
  let value = 0n;
  for (const byte of bytes) value = (value << 8n) | BigInt(byte);
  return value;
}

function toBytes(value: bigint, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let rest = value;
  for (let i = length - 1; i >= 0; i--) {
    out[i] = Number(rest & 0xffn);
    rest >>= 8n;
  }
  return out;
}

function privateScalar(c: EcCurve, privateKey: Uint8Array): bigint {
  const d = toBigInt(privateKey);
  if (privateKey.length !== c.orderBytes || d <= 0n || d >= c.n) {
    throw new TaplineError(
      ErrorCode.InvalidArgument,
      `A ${c.name} private key is ${c.orderBytes} bytes encoding an integer in [1, n−1].`,
    );
  }
  return d;
}

/** The uncompressed public key `04 ‖ X ‖ Y` of `privateKey` (big-endian scalar). */
export function ecPublicKey(c: EcCurve, privateKey: Uint8Array): Uint8Array {
  const { x, y } = ecMultiplyBase(c, privateScalar(c, privateKey));
  const out = new Uint8Array(1 + 2 * c.fieldBytes);
  out[0] = 0x04;
  out.set(toBytes(x, c.fieldBytes), 1);
  out.set(toBytes(y, c.fieldBytes), 1 + c.fieldBytes);
  return out;
}

/**
 * ECDSA over `message` itself (no hash: the message stands where the digest would, cut to the bit length of n),
 * returning `r ‖ s` (IEEE P1363). Pass a digest as `message` to get an ordinary hashed ECDSA signature.
 */
export function signEcdsaRaw(c: EcCurve, privateKey: Uint8Array, message: Uint8Array): Uint8Array {
  const d = privateScalar(c, privateKey);
  const e = ecMessageToInteger(c, message);
  const nextK = rfc6979Nonces(c, privateKey, toBytes(mod(e, c.n), c.orderBytes));
  for (;;) {
    const k = nextK();
    const r = mod(ecMultiplyBase(c, k).x, c.n);
    if (r === 0n) continue;
    const s = mod(ecModInverse(k, c.n) * (e + r * d), c.n);
    if (s === 0n) continue;
    const out = new Uint8Array(2 * c.orderBytes);
    out.set(toBytes(r, c.orderBytes), 0);
    out.set(toBytes(s, c.orderBytes), c.orderBytes);
    return out;
  }
}

/** RFC 6979 §3.2 with HMAC-SHA-256: the sequence of candidate nonces for one (key, message). */
function rfc6979Nonces(c: EcCurve, privateKey: Uint8Array, h1: Uint8Array): () => bigint {
  const hmac = (key: Uint8Array, ...parts: Uint8Array[]): Uint8Array => {
    const mac = createHmac('sha256', key);
    for (const part of parts) mac.update(part);
    return new Uint8Array(mac.digest());
  };
  let v: Uint8Array = new Uint8Array(32).fill(0x01);
  let k: Uint8Array = new Uint8Array(32);
  k = hmac(k, v, Uint8Array.of(0x00), privateKey, h1);
  v = hmac(k, v);
  k = hmac(k, v, Uint8Array.of(0x01), privateKey, h1);
  v = hmac(k, v);
  let first = true;
  return () => {
    for (;;) {
      if (!first) {
        k = hmac(k, v, Uint8Array.of(0x00));
        v = hmac(k, v);
      }
      first = false;
      const t: number[] = [];
      while (t.length < c.orderBytes) {
        v = hmac(k, v);
        t.push(...v);
      }
      const candidate = ecMessageToInteger(c, Uint8Array.from(t.slice(0, c.orderBytes)));
      if (candidate >= 1n && candidate < c.n) return candidate;
    }
  };
}
