import { describe, expect, it } from 'vitest';
import { createLocalJWKSet, createRemoteJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import { createSpark2Chip, generatePlatformSigningKey, type ReferencePlatform } from '../src/index.js';
import { call, platformForTest, scheme2Dialogue, verifyAgainstJwks } from './platform-support.js';

async function sessionToken(platform: ReferencePlatform): Promise<string> {
  const session = await call(platform, '/session', await scheme2Dialogue(platform, createSpark2Chip(), 'spark2'));
  return session.json!['token'] as string;
}

async function servedKids(platform: ReferencePlatform): Promise<string[]> {
  const jwks = (await (await fetch(platform.jwksUrl)).json()) as JSONWebKeySet;
  return jwks.keys.map((key) => key.kid!);
}

describe('reference platform: signing keys', () => {
  it('keeps old tokens verifiable while their key is in the JWKS, and not after it leaves', async () => {
    const platform = await platformForTest();
    const firstKid = platform.currentKid;
    const old = await sessionToken(platform);

    const secondKid = await platform.rotateSigningKey();
    expect(secondKid).not.toBe(firstKid);
    expect(await servedKids(platform)).toEqual([secondKid, firstKid]);
    const fresh = await sessionToken(platform);
    expect(decodeProtectedHeader(fresh).kid).toBe(secondKid);
    await expect(verifyAgainstJwks(platform, old)).resolves.toBeDefined();
    await expect(verifyAgainstJwks(platform, fresh)).resolves.toBeDefined();

    // One earlier key is retained by default: the next rotation retires the first.
    const thirdKid = await platform.rotateSigningKey();
    expect(await servedKids(platform)).toEqual([thirdKid, secondKid]);
    await expect(verifyAgainstJwks(platform, old)).rejects.toMatchObject({ code: 'ERR_JWKS_NO_MATCHING_KEY' });
    await expect(verifyAgainstJwks(platform, fresh)).resolves.toBeDefined();

    expect(platform.retireSigningKey(secondKid)).toBe(true);
    expect(platform.retireSigningKey(thirdKid)).toBe(false);
    await expect(verifyAgainstJwks(platform, fresh)).rejects.toMatchObject({ code: 'ERR_JWKS_NO_MATCHING_KEY' });
  });

  it('verifies through a remote JWKS as a relying party would', async () => {
    const platform = await platformForTest();
    const token = await sessionToken(platform);
    const { payload } = await jwtVerify(token, createRemoteJWKSet(platform.jwksUrl), {
      issuer: platform.issuer,
      algorithms: ['ES256'],
    });
    expect(payload.dev_id).toBe(platform.devId);
  });

  it('signs with keys given in the options and publishes the others as earlier keys', async () => {
    const current = await generatePlatformSigningKey({ kid: 'current-key' });
    const earlier = await generatePlatformSigningKey();
    expect(earlier.kid).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const platform = await platformForTest({ signingKeys: [current, earlier], retainedSigningKeys: 2 });
    expect(platform.currentKid).toBe('current-key');
    expect(platform.jwks.keys.map((k) => k.kid)).toEqual(['current-key', earlier.kid]);
    const token = await sessionToken(platform);
    expect(decodeProtectedHeader(token)).toEqual({ typ: 'JWT', alg: 'ES256', kid: 'current-key' });
    const { payload } = await jwtVerify(token, createLocalJWKSet({ keys: [current.publicJwk] }), {
      algorithms: ['ES256'],
    });
    expect(payload.atp).toBe('mutual');

    await platform.rotateSigningKey(earlier);
    expect(platform.jwks.keys.map((k) => k.kid)).toEqual([earlier.kid, 'current-key']);
  });

  it('does not publish private key material', async () => {
    const platform = await platformForTest();
    for (const key of platform.jwks.keys)
      expect(Object.keys(key).sort()).toEqual(['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
  });
});
