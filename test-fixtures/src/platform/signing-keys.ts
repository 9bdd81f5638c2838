import { calculateJwkThumbprint, exportJWK, generateKeyPair, type CryptoKey, type JWK, type KeyObject } from 'jose';

/**
 * The reference platform's token signing keys: ES256 (P-256) pairs identified by a `kid`, as VivoKey's tokens are
 * (`{"typ":"JWT","alg":"ES256","kid":"FuUj226f…"}`, protocols.md §1.1).
 *
 * @packageDocumentation
 */

/** An ES256 signing key and the public JWK the platform publishes for it. */
export interface PlatformSigningKey {
  /** The key id in token headers and the JWKS. */
  readonly kid: string;
  /** The P-256 private key. Never leaves the platform. */
  readonly privateKey: CryptoKey | KeyObject;
  /** The public key as published: `kty`, `crv`, `x`, `y`, `kid`, `alg: ES256`, `use: sig`. */
  readonly publicJwk: JWK;
}

/** Options of {@link generatePlatformSigningKey}. */
export interface GeneratePlatformSigningKeyOptions {
  /**
   * The key id. Default: the RFC 7638 SHA-256 thumbprint of the public key, base64url (43 characters, the shape of
   * VivoKey's own kids).
   */
  readonly kid?: string;
}

/** Generates a fresh ES256 signing key. */
export async function generatePlatformSigningKey(
  options: GeneratePlatformSigningKeyOptions = {},
): Promise<PlatformSigningKey> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const { kty, crv, x, y } = await exportJWK(publicKey);
  const bare: JWK = { kty, crv, x, y };
  const kid = options.kid ?? (await calculateJwkThumbprint(bare, 'sha256'));
  return Object.freeze({
    kid,
    privateKey,
    publicJwk: Object.freeze({ ...bare, kid, alg: 'ES256', use: 'sig' }),
  });
}
