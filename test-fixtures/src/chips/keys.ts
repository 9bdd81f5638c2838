import { createPrivateKey, sign, type KeyObject } from 'node:crypto';
import { SECP128R1, SECP224R1, fromHex, type EcCurve, type EcCurveName } from '@tapline/core';
import { ecPublicKey, signEcdsaRaw } from './ecdsa-signer.js';

/**
 * The secrets the virtual chips are personalised with. None of them is NXP's or VivoKey's (only their public keys
 * are known): every value here was derived once from a label and is stored as a constant so that it never changes
 * under a test —
 *
 * - ECDSA private keys: `(SHA-512("tapline/test-fixtures/<label>") mod (n − 1)) + 1`, big-endian, curve order size;
 * - AES keys and the salt: the first 16 bytes of `SHA-256("tapline/test-fixtures/<label>")`.
 *
 * Values are hex strings rather than shared byte arrays, so that no test can change a key for the others by writing
 * into it; the accessor functions hand out fresh copies.
 */

/** An ECDSA key pair the fixtures own, and the scheme the chip signs its UID with. */
export interface FixtureSigningKey {
  /** The label the private key was derived from. */
  readonly label: string;
  readonly curve: EcCurveName;
  /** Private scalar, big-endian hex. Fixtures only. */
  readonly privateKeyHex: string;
  /** Uncompressed public key `04 ‖ X ‖ Y`, hex: what a verifier (tests, the reference platform) checks against. */
  readonly publicKeyHex: string;
  /** What is signed: the raw UID (NXP's scheme) or SHA-256 of the UID (VivoKey's Spark 1 scheme). */
  readonly message: 'uid' | 'sha256-uid';
}

/**
 * Spark 2 (NTAG 413/424 DNA) Read_Sig: secp224r1 over the raw 7-byte UID, as NXP signs these chips (protocols.md
 * §3.4), but under this fixture key.
 */
export const SPARK2_SIGNATURE_KEY: FixtureSigningKey = Object.freeze({
  label: 'spark2-read-sig',
  curve: 'secp224r1',
  privateKeyHex: '9F389646D1A89531B0D9498AB7C177A94AE0418D081791DE0A906D05',
  publicKeyHex:
    '04F032E6CF4D536E65E64089EA3CB57829A841D532D8409F0C150034D04738442BEC21D806DF6592D05739D8EC7484B756B72B274AB2749BFC',
  message: 'uid',
});

/**
 * Spark 1 (ICODE DNA) READ SIGNATURE: secp128r1 over SHA-256 of the UID MSB first, the scheme of VivoKey's own Spark
 * 1 key (protocols.md §4.3), under this fixture key.
 */
export const SPARK1_SIGNATURE_KEY: FixtureSigningKey = Object.freeze({
  label: 'spark1-read-signature',
  curve: 'secp128r1',
  privateKeyHex: '415EA95DA4BC582921A707A464DD51A2',
  publicKeyHex: '049F7CA1B94541D855A693F7AD822EBE2A9F2011217BA0902B1061E59EE70EEDA6',
  message: 'sha256-uid',
});

/** NTAG215 READ_SIG: secp128r1 over the raw 7-byte UID (NXP's NTAG21x scheme), under this fixture key. */
export const NTAG21X_SIGNATURE_KEY: FixtureSigningKey = Object.freeze({
  label: 'ntag21x-read-sig',
  curve: 'secp128r1',
  privateKeyHex: '041E4A506035A7C61A087AE8DCE3713F',
  publicKeyHex: '0402E4ED29C2CE4DC4924A245D9E4A9390C51ED19217BF21E0FD9C9635EFCDF91C',
  message: 'uid',
});

/**
 * The AES keys of a fixture Spark 2, indexed by key number (labels `spark2-key-<n>`). The roles follow
 * {@link Spark2KeyNo}: 0 application master, 1 SDM file-read (SUN MAC), 2 VivoKey platform (AuthenticateEV2First
 * with the VivoKey Auth API), 3 and 4 spare.
 */
export const SPARK2_KEYS_HEX: readonly string[] = Object.freeze([
  '7E146695ECE694D71B79E4A51EEA6993',
  'D8BE4CF8CC78DB4F54912074859FF1BE',
  '7B6E525AA2C5DF3DCB1496294D735267',
  'EE9DD70535086E535C5F2D77A483CEC4',
  '6C43BB05BB09BBC748E9B6B707EF768F',
]);

/** The four AES key slots of a fixture Spark 1 (labels `spark1-key-<n>`); slot 2 is VivoKey's TAM1 key. */
export const SPARK1_KEYS_HEX: readonly string[] = Object.freeze([
  'DC828304A834947323BE743378021BFE',
  'AB3244F9304564F4CAC8F8399E132E1E',
  '00A82A4987AC82F33E344F376F392816',
  '8DDE9EAFA60A7AD830D2E78CBCB1B677',
]);

/** The Apex Verify applet's AES key (label `apex-verify-key`). */
export const APEX_VERIFY_KEY_HEX = '6ABA484C7D4E3DF7E42EDBB9947D5BB8';
/** The Apex NDEF applet's CMAC key (label `apex-ndef-key`). */
export const APEX_NDEF_KEY_HEX = 'A30D13FB87C97D7D47FDE6F2003CEFC2';
/** The Apex NDEF applet's salt (label `apex-ndef-salt`). */
export const APEX_NDEF_SALT_HEX = 'F19B97A5D912B7B731758A09525D30C4';

/** Fresh copies of the fixture Spark 2 keys 0–4. */
export function spark2FixtureKeys(): Uint8Array[] {
  return SPARK2_KEYS_HEX.map((hex) => fromHex(hex));
}

/** Fresh copies of the fixture Spark 1 key slots 0–3. */
export function spark1FixtureKeys(): Uint8Array[] {
  return SPARK1_KEYS_HEX.map((hex) => fromHex(hex));
}

/** The public key of a fixture signing key, as bytes. */
export function fixturePublicKey(key: FixtureSigningKey): Uint8Array {
  return fromHex(key.publicKeyHex);
}

/** The curve parameters of a fixture key. */
export function fixtureKeyCurve(key: FixtureSigningKey): EcCurve {
  return key.curve === 'secp224r1' ? SECP224R1 : SECP128R1;
}

/**
 * The private key as a node:crypto KeyObject (SEC 1 `ECPrivateKey` DER), for the hashed scheme, which node:crypto
 * signs itself. Every DER structure here is under 128 bytes, so short length forms suffice.
 */
export function fixturePrivateKeyObject(key: FixtureSigningKey): KeyObject {
  const der = (tag: number, ...parts: Uint8Array[]): Uint8Array => {
    const body = Uint8Array.from(parts.flatMap((part) => [...part]));
    return Uint8Array.from([tag, body.length, ...body]);
  };
  const ecPrivateKey = der(
    0x30,
    der(0x02, Uint8Array.of(0x01)),
    der(0x04, fromHex(key.privateKeyHex)),
    der(0xa0, der(0x06, fromHex(fixtureKeyCurve(key).oidHex))),
    der(0xa1, der(0x03, Uint8Array.of(0x00), fixturePublicKey(key))),
  );
  return createPrivateKey({ key: Buffer.from(ecPrivateKey), format: 'der', type: 'sec1' });
}

/** Checks that the stored public key belongs to the stored private key (a guard against a mistyped constant). */
export function fixtureKeyIsConsistent(key: FixtureSigningKey): boolean {
  const derived = ecPublicKey(fixtureKeyCurve(key), fromHex(key.privateKeyHex));
  return Buffer.from(derived).toString('hex').toUpperCase() === key.publicKeyHex;
}

/**
 * Signs `uid` (MSB first) the way `key`'s chip does, returning `r ‖ s` big-endian. The raw-UID scheme goes through
 * the fixtures' BigInt signer with deterministic nonces (node:crypto cannot sign without hashing); the SHA-256 scheme
 * goes through node:crypto, whose nonces are random, so callers sign once and store the result, as the chip's
 * personalisation does.
 */
export function signUidWithFixtureKey(key: FixtureSigningKey, uid: Uint8Array): Uint8Array {
  if (key.message === 'uid') return signEcdsaRaw(fixtureKeyCurve(key), fromHex(key.privateKeyHex), uid);
  return new Uint8Array(sign('sha256', uid, { key: fixturePrivateKeyObject(key), dsaEncoding: 'ieee-p1363' }));
}

/** A chip's signing function: the originality signature (`r ‖ s`, big-endian) for a UID given MSB first. */
export type UidSigner = (uid: Uint8Array) => Uint8Array;
