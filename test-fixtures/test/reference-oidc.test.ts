import { describe, expect, it } from 'vitest';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import { toHex } from '@tapline/core';
import { createSpark1Chip, createSpark2Chip, pairwiseSubject } from '../src/index.js';
import { platformForTest } from './platform-support.js';
import { DESKTOP_SCOPE, associate, clientFor, eventually, openIdClient } from './oidc-support.js';

const HEX64 = /^[0-9a-f]{64}$/;
const SALT = 'pairwise salt of this test';

/** The OAuth error code of an openid-client rejection. */
async function oauthError(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    const code = (error as { error?: unknown }).error;
    if (typeof code === 'string') return code;
    throw error;
  }
  throw new Error('Expected an OAuth error, but the call succeeded.');
}

/** GET /scan-requests with a bearer token: how the resource server judges an access token. */
async function listStatus(platform: { url: URL }, accessToken: string): Promise<number> {
  const response = await fetch(new URL('/scan-requests', platform.url), {
    headers: { authorization: `Bearer ${accessToken}` },
    signal: AbortSignal.timeout(3000),
  });
  await response.body?.cancel();
  return response.status;
}

describe('reference platform: OpenID Provider under /oidc', () => {
  it('advertises its endpoints under /oidc in discovery, and openid-client discovers them', async () => {
    const platform = await platformForTest();
    const issuer = platform.issuerUrl.href;
    expect(issuer).toBe(new URL('/oidc', platform.url).href);
    const config = await clientFor(platform);
    const metadata = config.serverMetadata();
    expect(metadata).toMatchObject({
      issuer,
      device_authorization_endpoint: `${issuer}/device/auth`,
      token_endpoint: `${issuer}/token`,
      revocation_endpoint: `${issuer}/token/revocation`,
      userinfo_endpoint: `${issuer}/me`,
      jwks_uri: `${issuer}/jwks`,
    });
    expect(metadata['grant_types_supported']).toEqual(
      expect.arrayContaining(['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token']),
    );
    expect(metadata['scopes_supported']).toEqual(expect.arrayContaining(DESKTOP_SCOPE.split(' ')));
    expect(metadata['id_token_signing_alg_values_supported']).toContain('ES256');
    expect(platform.desktopClientId).toBe('tapline-desktop');
    expect(platform.stats.requests['/oidc/.well-known/openid-configuration']).toBe(1);
  });

  it('runs the device flow: approval on the phone, then tokens with a refresh token and an ES256 ID token', async () => {
    const platform = await platformForTest({ pairwiseSalt: SALT, deviceInterval: 0.05 });
    const { tokens, config, authorization } = await associate(platform);

    expect(authorization.verification_uri).toBe(`${platform.issuerUrl.href}/device`);
    expect(authorization.user_code).toMatch(/^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
    expect(authorization).toMatchObject({ expires_in: 600, interval: 0.05 });
    expect(tokens.token_type.toLowerCase()).toBe('bearer');
    expect(tokens.scope?.split(' ').sort()).toEqual(DESKTOP_SCOPE.split(' ').sort());
    expect(tokens.expires_in).toBe(600);
    expect(tokens.refresh_token).toEqual(expect.any(String));

    // The ID token is signed with the provider's real ES256 key, published at jwks_uri.
    const jwks = (await (await fetch(config.serverMetadata()['jwks_uri'] as string)).json()) as JSONWebKeySet;
    expect(jwks.keys).toHaveLength(1);
    expect(jwks.keys[0]).not.toHaveProperty('d');
    expect(decodeProtectedHeader(tokens.id_token!)).toMatchObject({ alg: 'ES256', kid: jwks.keys[0]!.kid });
    const { payload } = await jwtVerify(tokens.id_token!, createLocalJWKSet(jwks), {
      issuer: platform.issuerUrl.href,
      audience: 'tapline-desktop',
    });
    expect(payload.sub).toMatch(HEX64);
    expect(payload.sub).toBe(pairwiseSubject(SALT, 'tapline-desktop', 'alice'));
    expect(payload.sub).toBe(platform.accountSubject('alice', 'tapline-desktop'));

    const client = await openIdClient();
    expect((await client.fetchUserInfo(config, tokens.access_token, payload.sub!)).sub).toBe(payload.sub);
    expect(await listStatus(platform, tokens.access_token)).toBe(200);
    expect(platform.stats.oidc).toMatchObject({ deviceAuthorizations: 1, approvals: 1, tokenGrants: 1, refreshes: 0 });
  });

  it('rotates the refresh token on every use', async () => {
    const platform = await platformForTest({ deviceInterval: 0.05 });
    const client = await openIdClient();
    const { tokens, config } = await associate(platform);
    const seen = new Set([tokens.refresh_token!]);
    let current = tokens;
    for (let i = 0; i < 3; i++) {
      const next = await client.refreshTokenGrant(config, current.refresh_token!);
      expect(next.refresh_token).toEqual(expect.any(String));
      expect(seen.has(next.refresh_token!)).toBe(false);
      expect(next.access_token).not.toBe(current.access_token);
      expect(next.claims()?.sub).toBe(tokens.claims()?.sub);
      expect(await listStatus(platform, next.access_token)).toBe(200);
      seen.add(next.refresh_token!);
      current = next;
    }
    expect(platform.stats.oidc.refreshes).toBe(3);
  });

  it('detects reuse of a rotated refresh token: invalid_grant, and the whole grant is revoked', async () => {
    const platform = await platformForTest({ deviceInterval: 0.05 });
    const client = await openIdClient();
    const { tokens, config } = await associate(platform);
    const rotated = await client.refreshTokenGrant(config, tokens.refresh_token!);

    expect(await oauthError(client.refreshTokenGrant(config, tokens.refresh_token!))).toBe('invalid_grant');
    // The thief's reuse killed the legitimate client's tokens too.
    expect(await oauthError(client.refreshTokenGrant(config, rotated.refresh_token!))).toBe('invalid_grant');
    expect(await listStatus(platform, rotated.access_token)).toBe(401);
    expect(platform.stats.oidc).toMatchObject({ refreshes: 1, refreshReuseDetected: 1 });
  });

  it('revokes the grant when the refresh token is revoked (RFC 7009)', async () => {
    const platform = await platformForTest({ deviceInterval: 0.05 });
    const client = await openIdClient();
    const { tokens, config } = await associate(platform);
    await client.tokenRevocation(config, tokens.refresh_token!, { token_type_hint: 'refresh_token' });
    expect(await oauthError(client.refreshTokenGrant(config, tokens.refresh_token!))).toBe('invalid_grant');
    expect(await listStatus(platform, tokens.access_token)).toBe(401);
    expect(platform.stats.oidc.revocations).toBe(1);
  });

  it('gives every client its own stable pairwise sub, and every account its own', async () => {
    const spark1 = createSpark1Chip();
    const spark2 = createSpark2Chip();
    const platform = await platformForTest({
      pairwiseSalt: SALT,
      deviceInterval: 0.05,
      deviceClients: [{ clientId: 'other-desktop', clientName: 'Another desktop' }],
      accounts: { alice: [spark2.info.uid], bob: [spark1.info.uid] },
    });
    const subOf = async (options: Parameters<typeof associate>[1]): Promise<string> =>
      (await associate(platform, options)).tokens.claims()!.sub;

    const desktop = await subOf({});
    expect(await subOf({})).toBe(desktop);
    const other = await subOf({ clientId: 'other-desktop' });
    expect(other).not.toBe(desktop);
    expect(other).toBe(pairwiseSubject(SALT, 'other-desktop', 'alice'));
    // The chip scanned on the phone decides the account.
    const bob = await subOf({ chipUid: spark1.info.uid });
    expect(bob).toBe(pairwiseSubject(SALT, 'tapline-desktop', 'bob'));
    expect(await subOf({ chipUid: toHex(spark2.info.uid) })).toBe(desktop);
    expect(await subOf({ account: 'bob' })).toBe(bob);
    expect(new Set([desktop, other, bob]).size).toBe(3);
    expect(platform.accounts).toEqual(
      new Map([
        ['alice', [toHex(spark2.info.uid)]],
        ['bob', [toHex(spark1.info.uid)]],
      ]),
    );
  });

  it('denyDevice: the next poll gets access_denied, and the user code cannot be approved any more', async () => {
    const platform = await platformForTest({ deviceInterval: 0.05 });
    const client = await openIdClient();
    const config = await clientFor(platform);
    const authorization = await client.initiateDeviceAuthorization(config, { scope: DESKTOP_SCOPE });
    await platform.denyDevice(authorization.user_code);
    const poll = client.pollDeviceAuthorizationGrant(config, authorization, undefined, {
      signal: AbortSignal.timeout(3000),
    });
    expect(await oauthError(poll)).toBe('access_denied');
    await expect(platform.approveDevice(authorization.user_code)).rejects.toThrow(/already been used/);
    expect(platform.stats.oidc).toMatchObject({ denials: 1, approvals: 0, tokenGrants: 0 });
  });

  it('refuses unknown user codes, unknown accounts and unowned chips with clear errors', async () => {
    const platform = await platformForTest({ accounts: { alice: [] } });
    await expect(platform.approveDevice('BCDF-GHJK')).rejects.toThrow(
      'Cannot approve the device login with user code "BCDF-GHJK": the code was not found.',
    );
    await expect(platform.denyDevice('BCDF-GHJK')).rejects.toThrow(/Cannot deny .*the code was not found/);
    await expect(platform.approveDevice('BCDF-GHJK', { account: 'mallory' })).rejects.toThrow(/no such account/);
    await expect(platform.approveDevice('BCDF-GHJK', { chipUid: createSpark2Chip().info.uid })).rejects.toThrow(
      /no account owns it/,
    );
  });

  it('expires device codes: the poll ends with expired_token and the code cannot be approved', async () => {
    const platform = await platformForTest({ deviceCodeTtlSec: 1, deviceInterval: 0.1 });
    const client = await openIdClient();
    const config = await clientFor(platform);
    const authorization = await client.initiateDeviceAuthorization(config, { scope: DESKTOP_SCOPE });
    expect(authorization.expires_in).toBe(1);
    // Polled until the platform says so (authorization_pending until then), bounded by the signal.
    const poll = client.pollDeviceAuthorizationGrant(config, authorization, undefined, {
      signal: AbortSignal.timeout(3000),
    });
    expect(await oauthError(poll)).toBe('expired_token');
    await expect(platform.approveDevice(authorization.user_code)).rejects.toThrow(/the code has expired/);
  });

  it('issues no refresh token without offline_access, and no scan_requests access without its scope', async () => {
    const platform = await platformForTest({ deviceInterval: 0.05 });
    const { tokens } = await associate(platform, { scope: 'openid' });
    expect(tokens.refresh_token).toBeUndefined();
    expect(tokens.scope).toBe('openid');
    expect(await listStatus(platform, tokens.access_token)).toBe(403);
  });

  it('expires access tokens after accessTokenTtlSec: the resource server then answers 401 invalid_token', async () => {
    const platform = await platformForTest({ accessTokenTtlSec: 1, deviceInterval: 0.05 });
    const { tokens } = await associate(platform);
    expect(tokens.expires_in).toBe(1);
    await eventually(
      async () => (await listStatus(platform, tokens.access_token)) === 401,
      3000,
      'the token to expire',
    );
  });

  it('applies faults to the provider: a lost refresh answer leaves the client with a spent refresh token', async () => {
    const platform = await platformForTest({ deviceInterval: 0.05 });
    const client = await openIdClient();
    const { tokens, config } = await associate(platform);

    platform.faults.add({ kind: 'status', status: 503, path: '/oidc', times: 1 });
    await expect(client.refreshTokenGrant(config, tokens.refresh_token!)).rejects.toThrow();
    // The request never reached the provider: the refresh token is still good.
    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token!);

    // Now the provider rotates, but the answer is lost on the way back.
    platform.faults.add({ kind: 'reset', path: '/oidc/token', processed: true, times: 1 });
    await expect(client.refreshTokenGrant(config, refreshed.refresh_token!)).rejects.toThrow();
    expect(await oauthError(client.refreshTokenGrant(config, refreshed.refresh_token!))).toBe('invalid_grant');
    expect(platform.stats.oidc).toMatchObject({ refreshes: 2, refreshReuseDetected: 1 });
    expect(platform.stats.faultsInjected).toBe(2);
  });

  it("does not let faults hit the phone's approval pages", async () => {
    const platform = await platformForTest({ deviceInterval: 0.05 });
    const client = await openIdClient();
    const config = await clientFor(platform);
    const authorization = await client.initiateDeviceAuthorization(config, { scope: DESKTOP_SCOPE });
    platform.faults.set({ kind: 'reset', path: '/oidc' });
    await platform.approveDevice(authorization.user_code);
    expect(platform.stats.faultsInjected).toBe(0);
    platform.faults.clear();
    const tokens = await client.pollDeviceAuthorizationGrant(config, authorization, undefined, {
      signal: AbortSignal.timeout(3000),
    });
    expect(tokens.refresh_token).toEqual(expect.any(String));
  });

  it('shows a person with a browser the verification page, and the approval pages mark their outcome', async () => {
    const platform = await platformForTest();
    const page = await fetch(new URL('/oidc/device', platform.url), { headers: { accept: 'text/html' } });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(await page.text()).toMatch(/name="user_code"/);
    const missing = await fetch(new URL('/oidc/interaction/nope', platform.url), { headers: { accept: 'text/html' } });
    expect(missing.status).toBe(400);
    expect(await missing.text()).toMatch(/unknown or has expired/);
  });
});
