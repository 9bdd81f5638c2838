import { createHmac } from 'node:crypto';
import { ErrorCode, TaplineError, type EcCurve } from '@tapline/core';

/**
 * A minimal ECDSA *signer* for the fixtures' own keys.
 *
 * Why it exists: NXP's originality scheme signs the raw UID with no hash, and node:crypto always hashes what it
 * signs, so it cannot produce those signatures. Core verifies them (crypto/ecdsa.ts) but has no reason to sign, so
 * the signing half lives here, in test code, with keys the fixtures own. It is not constant-time and must never hold
 * a real key.
 *
 * Nonces are deterministic (RFC 6979 with HMAC-SHA-256), so a chip's stored signature is the same on every run and
 * no randomness has to be injected. The curve parameters are core's (`SECP224R1`, `SECP128R1`).
 */

interface Jacobian {
  readonly x: bigint;
  readonly y: bigint;
  readonly z: bigint;
}

const INFINITY: Jacobian = { x: 1n, y: 1n, z: 0n };

function mod(value: bigint, m: bigint): bigint {
  const r = value % m;
  return r < 0n ? r + m : r;
}

function invert(value: bigint, m: bigint): bigint {
  let [oldR, r] = [mod(value, m), m];
  let [oldS, s] = [1n, 0n];
  while (r !== 0n) {
    const q = oldR / r;
    [oldR, r] = [r, oldR - q * r];
    [oldS, s] = [s, oldS - q * s];
  }
  return mod(oldS, m);
}

function double(c: EcCurve, q: Jacobian): Jacobian {
  if (q.z === 0n || q.y === 0n) return INFINITY;
  const { p } = c;
  const yy = mod(q.y * q.y, p);
  const zz = mod(q.z * q.z, p);
  const s = mod(4n * q.x * yy, p);
  const m = mod(3n * q.x * q.x + c.a * zz * zz, p);
  const x = mod(m * m - 2n * s, p);
  return { x, y: mod(m * (s - x) - 8n * yy * yy, p), z: mod(2n * q.y * q.z, p) };
}

function add(c: EcCurve, q1: Jacobian, q2: Jacobian): Jacobian {
  if (q1.z === 0n) return q2;
  if (q2.z === 0n) return q1;
  const { p } = c;
  const z1z1 = mod(q1.z * q1.z, p);
  const z2z2 = mod(q2.z * q2.z, p);
  const u1 = mod(q1.x * z2z2, p);
  const u2 = mod(q2.x * z1z1, p);
  const s1 = mod(q1.y * q2.z * z2z2, p);
  const s2 = mod(q2.y * q1.z * z1z1, p);
  if (u1 === u2) return s1 === s2 ? double(c, q1) : INFINITY;
  const h = mod(u2 - u1, p);
  const r = mod(s2 - s1, p);
  const hh = mod(h * h, p);
  const hhh = mod(h * hh, p);
  const v = mod(u1 * hh, p);
  const x = mod(r * r - hhh - 2n * v, p);
  return { x, y: mod(r * (v - x) - s1 * hhh, p), z: mod(h * q1.z * q2.z, p) };
}

/** k·G in affine coordinates (plain double-and-add: fixtures sign public test data, timing does not matter). */
function multiplyBase(c: EcCurve, k: bigint): { x: bigint; y: bigint } {
  let acc = INFINITY;
  let addend: Jacobian = { x: c.gx, y: c.gy, z: 1n };
  for (let rest = k; rest > 0n; rest >>= 1n) {
    if (rest & 1n) acc = add(c, acc, addend);
    addend = double(c, addend);
  }
  if (acc.z === 0n) throw new TaplineError(ErrorCode.InvalidArgument, 'The scalar is a multiple of the group order.');
  const zInv = invert(acc.z, c.p);
  const zInv2 = mod(zInv * zInv, c.p);
  return { x: mod(acc.x * zInv2, c.p), y: mod(acc.y * zInv2 * zInv, c.p) };
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

function bitLength(value: bigint): number {
  return value.toString(2).length;
}

/** SEC 1 §4.1.3 step 5 / RFC 6979 bits2int: the message as an integer, cut to the bit length of n. */
function bitsToInt(c: EcCurve, message: Uint8Array): bigint {
  const excess = message.length * 8 - bitLength(c.n);
  const value = toBigInt(message);
  return excess > 0 ? value >> BigInt(excess) : value;
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
  const { x, y } = multiplyBase(c, privateScalar(c, privateKey));
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
  const e = bitsToInt(c, message);
  const nextK = rfc6979Nonces(c, privateKey, toBytes(mod(e, c.n), c.orderBytes));
  for (;;) {
    const k = nextK();
    const r = mod(multiplyBase(c, k).x, c.n);
    if (r === 0n) continue;
    const s = mod(invert(k, c.n) * (e + r * d), c.n);
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
      const candidate = bitsToInt(c, Uint8Array.from(t.slice(0, c.orderBytes)));
      if (candidate >= 1n && candidate < c.n) return candidate;
    }
  };
}
