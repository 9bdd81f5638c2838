import { createPublicKey, verify as nodeVerify } from 'node:crypto';
import { ErrorCode, TaplineError } from '../model/errors.js';

/**
 * ECDSA signature verification for the short-Weierstrass curves NXP and VivoKey sign originality data with
 * (secp224r1, secp128r1).
 *
 * node:crypto verifies ECDSA only over a message it hashes itself (even the `null` algorithm hashes), so schemes
 * that sign the raw UID need the verification equation done here, with BigInt over the SEC 2 domain parameters.
 * Verification handles public data only (public key, message, signature), so nothing here needs to be
 * constant-time. Wherever a hash is part of the scheme, node:crypto does the whole job ({@link verifyEcdsaSha256}).
 *
 * @packageDocumentation
 */

/** The name of a curve this module knows. */
export type EcCurveName = 'secp224r1' | 'secp128r1';

/** Domain parameters of a prime-field short-Weierstrass curve y² = x³ + ax + b (SEC 2), cofactor 1. */
export interface EcCurve {
  readonly name: EcCurveName;
  /** The curve's object identifier, DER content bytes (no tag or length), as hex. */
  readonly oidHex: string;
  readonly p: bigint;
  readonly a: bigint;
  readonly b: bigint;
  readonly gx: bigint;
  readonly gy: bigint;
  /** The order of G. */
  readonly n: bigint;
  /** Bytes of a field element (the length of x and of y in an uncompressed point). */
  readonly fieldBytes: number;
  /** Bytes of a scalar mod n (the length of r and of s in a raw `r ‖ s` signature). */
  readonly orderBytes: number;
}

/** secp224r1 (NIST P-224), SEC 2 v2 §2.6.2; OID 1.3.132.0.33. */
export const SECP224R1: EcCurve = Object.freeze({
  name: 'secp224r1',
  oidHex: '2b81040021',
  p: 0xffffffffffffffffffffffffffffffff000000000000000000000001n,
  a: 0xfffffffffffffffffffffffffffffffefffffffffffffffffffffffen,
  b: 0xb4050a850c04b3abf54132565044b0b7d7bfd8ba270b39432355ffb4n,
  gx: 0xb70e0cbd6bb4bf7f321390b94a03c1d356c21122343280d6115c1d21n,
  gy: 0xbd376388b5f723fb4c22dfe6cd4375a05a07476444d5819985007e34n,
  n: 0xffffffffffffffffffffffffffff16a2e0b8f03e13dd29455c5c2a3dn,
  fieldBytes: 28,
  orderBytes: 28,
});

/** secp128r1, SEC 2 v1 §2.3.1; OID 1.3.132.0.28. */
export const SECP128R1: EcCurve = Object.freeze({
  name: 'secp128r1',
  oidHex: '2b8104001c',
  p: 0xfffffffdffffffffffffffffffffffffn,
  a: 0xfffffffdfffffffffffffffffffffffcn,
  b: 0xe87579c11079f43dd824993c2cee5ed3n,
  gx: 0x161ff7528b899b2d0c28607ca52c5b86n,
  gy: 0xcf5ac8395bafeb13c02da292dded7a83n,
  n: 0xfffffffe0000000075a30d1b9038a115n,
  fieldBytes: 16,
  orderBytes: 16,
});

/** The curves by name. */
export const EC_CURVES: Readonly<Record<EcCurveName, EcCurve>> = Object.freeze({
  secp224r1: SECP224R1,
  secp128r1: SECP128R1,
});

/** An affine point with both coordinates reduced mod p. */
interface AffinePoint {
  readonly x: bigint;
  readonly y: bigint;
}

/** A point in Jacobian coordinates (x = X/Z², y = Y/Z³); Z = 0 is the point at infinity. */
interface JacobianPoint {
  readonly x: bigint;
  readonly y: bigint;
  readonly z: bigint;
}

const INFINITY: JacobianPoint = { x: 1n, y: 1n, z: 0n };

function mod(value: bigint, m: bigint): bigint {
  const r = value % m;
  return r < 0n ? r + m : r;
}

/** Inverse of `value` mod `m` (extended Euclid); `value` must be invertible. */
function modInverse(value: bigint, m: bigint): bigint {
  let [oldR, r] = [mod(value, m), m];
  let [oldS, s] = [1n, 0n];
  while (r !== 0n) {
    const q = oldR / r;
    [oldR, r] = [r, oldR - q * r];
    [oldS, s] = [s, oldS - q * s];
  }
  return mod(oldS, m);
}

function bytesToBigInt(bytes: Uint8Array): bigint {
  let value = 0n;
  for (const byte of bytes) value = (value << 8n) | BigInt(byte);
  return value;
}

function bitLength(value: bigint): number {
  return value.toString(2).length;
}

function isOnCurve(curve: EcCurve, point: AffinePoint): boolean {
  const { p, a, b } = curve;
  const { x, y } = point;
  return mod(y * y - (x * x * x + a * x + b), p) === 0n;
}

function double(curve: EcCurve, q: JacobianPoint): JacobianPoint {
  const { p, a } = curve;
  if (q.z === 0n || q.y === 0n) return INFINITY;
  const yy = mod(q.y * q.y, p);
  const zz = mod(q.z * q.z, p);
  const s = mod(4n * q.x * yy, p);
  const m = mod(3n * q.x * q.x + a * zz * zz, p);
  const x = mod(m * m - 2n * s, p);
  const y = mod(m * (s - x) - 8n * yy * yy, p);
  const z = mod(2n * q.y * q.z, p);
  return { x, y, z };
}

function add(curve: EcCurve, q1: JacobianPoint, q2: JacobianPoint): JacobianPoint {
  const { p } = curve;
  if (q1.z === 0n) return q2;
  if (q2.z === 0n) return q1;
  const z1z1 = mod(q1.z * q1.z, p);
  const z2z2 = mod(q2.z * q2.z, p);
  const u1 = mod(q1.x * z2z2, p);
  const u2 = mod(q2.x * z1z1, p);
  const s1 = mod(q1.y * q2.z * z2z2, p);
  const s2 = mod(q2.y * q1.z * z1z1, p);
  if (u1 === u2) return s1 === s2 ? double(curve, q1) : INFINITY;
  const h = mod(u2 - u1, p);
  const r = mod(s2 - s1, p);
  const hh = mod(h * h, p);
  const hhh = mod(h * hh, p);
  const v = mod(u1 * hh, p);
  const x = mod(r * r - hhh - 2n * v, p);
  const y = mod(r * (v - x) - s1 * hhh, p);
  const z = mod(h * q1.z * q2.z, p);
  return { x, y, z };
}

/** u1·G + u2·Q by Shamir's trick (one shared chain of doublings). */
function doubleScalarMultiply(curve: EcCurve, u1: bigint, u2: bigint, q: AffinePoint): JacobianPoint {
  const g: JacobianPoint = { x: curve.gx, y: curve.gy, z: 1n };
  const qj: JacobianPoint = { x: q.x, y: q.y, z: 1n };
  const gq = add(curve, g, qj);
  let acc = INFINITY;
  for (let bit = Math.max(bitLength(u1), bitLength(u2)) - 1; bit >= 0; bit--) {
    acc = double(curve, acc);
    const b1 = (u1 >> BigInt(bit)) & 1n;
    const b2 = (u2 >> BigInt(bit)) & 1n;
    if (b1 === 1n && b2 === 1n) acc = add(curve, acc, gq);
    else if (b1 === 1n) acc = add(curve, acc, g);
    else if (b2 === 1n) acc = add(curve, acc, qj);
  }
  return acc;
}

/**
 * The integer SEC 1 §4.1.3 step 5 (RFC 6979 `bits2int`) makes of a message or digest: big-endian, cut to the bit
 * length of n.
 */
export function ecMessageToInteger(curve: EcCurve, message: Uint8Array): bigint {
  const excess = message.length * 8 - bitLength(curve.n);
  return excess > 0 ? bytesToBigInt(message) >> BigInt(excess) : bytesToBigInt(message);
}

/**
 * k·G in affine coordinates. Plain double-and-add, so NOT constant-time: for public data and the test fixtures'
 * own keys only (core itself only verifies).
 *
 * @throws TaplineError `INVALID_ARGUMENT` when k is a multiple of the group order.
 */
export function ecMultiplyBase(curve: EcCurve, k: bigint): { readonly x: bigint; readonly y: bigint } {
  let acc = INFINITY;
  let addend: JacobianPoint = { x: curve.gx, y: curve.gy, z: 1n };
  for (let rest = k; rest > 0n; rest >>= 1n) {
    if (rest & 1n) acc = add(curve, acc, addend);
    addend = double(curve, addend);
  }
  if (acc.z === 0n) throw new TaplineError(ErrorCode.InvalidArgument, 'The scalar is a multiple of the group order.');
  const zInv = modInverse(acc.z, curve.p);
  const zInv2 = mod(zInv * zInv, curve.p);
  return { x: mod(acc.x * zInv2, curve.p), y: mod(acc.y * zInv2 * zInv, curve.p) };
}

/** The inverse of `value` modulo `m` (extended Euclid); `value` must be invertible. */
export function ecModInverse(value: bigint, m: bigint): bigint {
  return modInverse(value, m);
}

/**
 * Decodes and validates an uncompressed public key `04 ‖ X ‖ Y`: right length, coordinates below p, on the curve.
 * The curves here have cofactor 1, so every such point other than infinity is in the group generated by G.
 *
 * @throws TaplineError `INVALID_ARGUMENT` when the key is not a valid point of `curve`.
 */
function decodePublicKey(curve: EcCurve, publicKey: Uint8Array): AffinePoint {
  const size = curve.fieldBytes;
  if (publicKey.length !== 1 + 2 * size || publicKey[0] !== 0x04) {
    throw new TaplineError(
      ErrorCode.InvalidArgument,
      `A ${curve.name} public key is ${1 + 2 * size} bytes, 04 ‖ X ‖ Y (uncompressed); got ${publicKey.length} bytes` +
        (publicKey.length > 0 ? ` starting with ${publicKey[0]!.toString(16).padStart(2, '0')}.` : '.'),
    );
  }
  const point = {
    x: bytesToBigInt(publicKey.subarray(1, 1 + size)),
    y: bytesToBigInt(publicKey.subarray(1 + size)),
  };
  if (point.x >= curve.p || point.y >= curve.p || !isOnCurve(curve, point)) {
    throw new TaplineError(ErrorCode.InvalidArgument, `The public key is not a point on ${curve.name}.`);
  }
  return point;
}

/** Checks that `publicKey` is a valid uncompressed point of `curve`; see {@link verifyEcdsaRaw} for the format. */
export function isValidEcPublicKey(curve: EcCurve, publicKey: Uint8Array): boolean {
  try {
    decodePublicKey(curve, publicKey);
    return true;
  } catch {
    return false;
  }
}

function splitSignature(curve: EcCurve, signature: Uint8Array): { r: bigint; s: bigint } {
  const size = curve.orderBytes;
  if (signature.length !== 2 * size) {
    throw new TaplineError(
      ErrorCode.InvalidArgument,
      `A ${curve.name} signature is ${2 * size} bytes (r ‖ s, ${size} bytes each); got ${signature.length}.`,
    );
  }
  return { r: bytesToBigInt(signature.subarray(0, size)), s: bytesToBigInt(signature.subarray(size)) };
}

/** What {@link verifyEcdsaRaw} and {@link verifyEcdsaSha256} take. */
export interface EcdsaVerifyInput {
  readonly curve: EcCurve;
  /** Uncompressed public key `04 ‖ X ‖ Y`, big-endian coordinates. */
  readonly publicKey: Uint8Array;
  /** The signed message. */
  readonly message: Uint8Array;
  /** `r ‖ s`, each big-endian and {@link EcCurve.orderBytes} long (IEEE P1363 form). */
  readonly signature: Uint8Array;
}

/**
 * Verifies an ECDSA signature over `message` itself, not a hash of it: the message takes the place of the hash in
 * the verification equation, and like a hash it is read as a big-endian integer and truncated to the bit length of
 * n (SEC 1 v2 §4.1.4 steps 4–5). Returns false for r or s outside [1, n−1] and for any mismatch.
 *
 * @throws TaplineError `INVALID_ARGUMENT` for a malformed public key or a signature of the wrong length.
 */
export function verifyEcdsaRaw(input: EcdsaVerifyInput): boolean {
  const { curve, message } = input;
  const q = decodePublicKey(curve, input.publicKey);
  const { r, s } = splitSignature(curve, input.signature);
  const { n } = curve;
  if (r <= 0n || r >= n || s <= 0n || s >= n) return false;

  const e = ecMessageToInteger(curve, message);
  const w = modInverse(s, n);
  const point = doubleScalarMultiply(curve, mod(e * w, n), mod(r * w, n), q);
  if (point.z === 0n) return false;
  const zInv = modInverse(point.z, curve.p);
  const x = mod(point.x * zInv * zInv, curve.p);
  return mod(x, n) === r;
}

/** DER SubjectPublicKeyInfo (RFC 5480) for an uncompressed point, which node:crypto loads for any named curve. */
export function ecPublicKeyToSpki(curve: EcCurve, publicKey: Uint8Array): Uint8Array {
  decodePublicKey(curve, publicKey);
  const der = (tag: number, body: Uint8Array): Uint8Array => {
    // Every structure here is shorter than 128 bytes, so the short length form is enough.
    const out = new Uint8Array(2 + body.length);
    out[0] = tag;
    out[1] = body.length;
    out.set(body, 2);
    return out;
  };
  const cat = (...parts: Uint8Array[]): Uint8Array => Uint8Array.from(parts.flatMap((part) => [...part]));
  const idEcPublicKey = Uint8Array.from([0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]); // 1.2.840.10045.2.1
  const algorithm = der(
    0x30,
    cat(der(0x06, idEcPublicKey), der(0x06, Uint8Array.from(Buffer.from(curve.oidHex, 'hex')))),
  );
  return der(0x30, cat(algorithm, der(0x03, cat(Uint8Array.of(0x00), publicKey))));
}

/**
 * Verifies an ECDSA-with-SHA-256 signature with node:crypto (which hashes `message`, truncating the digest to the
 * bit length of n as SEC 1 requires).
 *
 * @throws TaplineError `INVALID_ARGUMENT` for a malformed public key or a signature of the wrong length.
 */
export function verifyEcdsaSha256(input: EcdsaVerifyInput): boolean {
  const { curve } = input;
  const { r, s } = splitSignature(curve, input.signature);
  // OpenSSL would reject these too; checking first keeps the bounds rule visible and identical to verifyEcdsaRaw.
  if (r <= 0n || r >= curve.n || s <= 0n || s >= curve.n) return false;
  const key = createPublicKey({
    key: Buffer.from(ecPublicKeyToSpki(curve, input.publicKey)),
    format: 'der',
    type: 'spki',
  });
  return nodeVerify('sha256', input.message, { key, dsaEncoding: 'ieee-p1363' }, input.signature);
}
