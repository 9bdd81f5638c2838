import { inspect } from 'node:util';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  AssociatedSession,
  CREDENTIALS_STALE_LOCK_MS,
  ErrorCode,
  MemoryTokenStore,
  REFRESH_TIMEOUT_MS,
  REQUIRED_ASSOCIATION_SCOPES,
  createDeviceAssociation,
  isTaplineError,
  type DeviceAssociationOptions,
  type TaplineError,
} from '../src/index.js';
import { ScriptedHttpServer, ScriptedProvider, recordingLogger } from './scripted-http.js';

const DEVICE_CODE = 'dc-SECRET-device-code-0123456789abcdefghijklmnop';
const USER_CODE = 'WDJB-MJHT';
const SUB = 'f'.repeat(64);
const ACCESS = 'at-SECRET-access-token-0123456789abcdefghijkl';
const REFRESH = 'rt-SECRET-refresh-token-0123456789abcdefghijk';
const REFRESH_2 = 'rt-SECRET-rotated-token-0123456789abcdefghijk';

const servers: ScriptedHttpServer[] = [];
afterEach(async () => {
  vi.useRealTimers();
  for (const server of servers.splice(0)) await server.close();
});

/**
 * Fakes only the timers (the call deadlines and the scripted provider's delays), not `setImmediate`, so that the
 * real sockets keep working while virtual seconds pass.
 */
function fakeTimers(): void {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
}

/** Lets real I/O run until `done` holds (for fake-timer tests, where virtual time stands still meanwhile). */
async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 5000 && !done(); i++) await new Promise((r) => setImmediate(r));
  if (!done()) throw new Error('the condition never held');
}

/** A provider, an association on it whose pauses are recorded instead of spent, and a log recorder. */
async function bench(options: Partial<DeviceAssociationOptions> = {}) {
  const server = await new ScriptedHttpServer().start();
  servers.push(server);
  const provider = await ScriptedProvider.start(server);
  const pauses: number[] = [];
  let now = 1_700_000_000_000;
  const clock = { now: () => now };
  const log = recordingLogger();
  const association = createDeviceAssociation({
    issuer: provider.issuer,
    clientId: 'tapline-desktop',
    allowInsecureHttp: true,
    timeoutMs: 2000,
    clock,
    logger: log.logger,
    sleep: (ms) => {
      pauses.push(ms);
      now += ms;
      return Promise.resolve();
    },
    ...options,
  });
  server.on('POST', '/oidc/device/auth', () => ({
    json: {
      device_code: DEVICE_CODE,
      user_code: USER_CODE,
      verification_uri: `${provider.issuer.href}/device`,
      verification_uri_complete: `${provider.issuer.href}/device?user_code=${USER_CODE}`,
      expires_in: 600,
      interval: 1,
    },
  }));
  return { server, provider, association, pauses, log, advance: (ms: number) => (now += ms), clock };
}

async function failure(promise: Promise<unknown>): Promise<TaplineError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isTaplineError(error)) throw new Error(`expected a TaplineError, got ${String(error)}`);
  return error;
}

function form(body: string): Record<string, string> {
  return Object.fromEntries(new URLSearchParams(body));
}

function expectNoSecrets(text: string): void {
  for (const secret of [DEVICE_CODE, ACCESS, REFRESH, REFRESH_2]) expect(text).not.toContain(secret);
}

describe('DeviceAssociation: the device login', () => {
  it('discovers the provider, then POSTs client_id and scope to the device authorization endpoint', async () => {
    const { server, association, clock } = await bench();
    const login = await association.start();
    expect(login).toMatchObject({
      userCode: USER_CODE,
      verificationUri: `${association.issuer.href}/device`,
      verificationUriComplete: `${association.issuer.href}/device?user_code=${USER_CODE}`,
      expiresAt: clock.now() + 600_000,
      intervalSec: 1,
    });
    expect(server.requests.map((r) => `${r.method} ${r.url}`)).toEqual([
      'GET /oidc/.well-known/openid-configuration',
      'POST /oidc/device/auth',
    ]);
    const request = server.to('/oidc/device/auth')[0]!;
    expect(request.headers['content-type']).toBe('application/x-www-form-urlencoded;charset=UTF-8');
    expect(request.headers['authorization']).toBeUndefined();
    expect(form(request.body)).toEqual({ client_id: 'tapline-desktop', scope: 'openid offline_access scan_requests' });
    // The handle carries nothing: the device code stays inside the association.
    expect(JSON.stringify(login)).not.toContain(DEVICE_CODE);
    expect(inspect(login, { depth: 10, showHidden: true })).not.toContain(DEVICE_CODE);
  });

  it('polls at the provider interval, adds 5 s after slow_down, and returns the tokens with the ID token sub', async () => {
    const { server, provider, association, pauses, clock, log } = await bench();
    server.sequence('POST', '/oidc/token', [
      () => ScriptedProvider.error('authorization_pending'),
      () => ScriptedProvider.error('slow_down'),
      () => ScriptedProvider.error('authorization_pending'),
      () => provider.tokens({ accessToken: ACCESS, refreshToken: REFRESH, sub: SUB, expiresIn: 600 }),
    ]);
    const login = await association.start();
    const tokens = await association.wait(login.handle);
    expect(pauses).toEqual([1000, 1000, 6000, 6000]);
    expect(tokens).toEqual({
      accessToken: ACCESS,
      accessTokenExpiresAt: clock.now() + 600_000,
      refreshToken: REFRESH,
      scope: 'openid offline_access scan_requests',
      sub: SUB,
    });
    const polls = server.to('/oidc/token');
    expect(polls).toHaveLength(4);
    for (const poll of polls) {
      expect(poll.method).toBe('POST');
      expect(form(poll.body)).toEqual({
        grant_type: 'urn:ietf:params:oauth:grant-type:device_code',
        device_code: DEVICE_CODE,
        client_id: 'tapline-desktop',
      });
    }
    expectNoSecrets(log.text());
    // A handle is waited on once.
    expect((await failure(association.wait(login.handle))).code).toBe(ErrorCode.InvalidArgument);
  });

  it('access_denied → ASSOCIATION_DENIED; expired_token → ASSOCIATION_EXPIRED', async () => {
    const { server, association } = await bench();
    server.on('POST', '/oidc/token', () =>
      ScriptedProvider.error('access_denied', 400, 'End-User aborted interaction'),
    );
    const denied = await failure(association.wait((await association.start()).handle));
    expect(denied.code).toBe(ErrorCode.AssociationDenied);
    expect(denied.details).toMatchObject({ error: 'access_denied', status: 400 });
    server.on('POST', '/oidc/token', () => ScriptedProvider.error('expired_token'));
    expect((await failure(association.wait((await association.start()).handle))).code).toBe(
      ErrorCode.AssociationExpired,
    );
  });

  it('stops at the code expiry without another poll (ASSOCIATION_EXPIRED)', async () => {
    const { server, association, advance } = await bench();
    server.on('POST', '/oidc/token', () => {
      advance(400_000);
      return ScriptedProvider.error('authorization_pending');
    });
    const error = await failure(association.wait((await association.start()).handle));
    expect(error.code).toBe(ErrorCode.AssociationExpired);
    expect(server.to('/oidc/token')).toHaveLength(2); // at 1 s and 400 s; the code is gone at 600 s
  });

  it('rides out one unreachable poll (503) and keeps waiting; gives up after three in a row', async () => {
    const { server, provider, association, pauses } = await bench();
    server.sequence('POST', '/oidc/token', [
      () => ({ status: 503, raw: 'busy' }),
      () => provider.tokens({ accessToken: ACCESS, refreshToken: REFRESH, sub: SUB }),
    ]);
    expect((await association.wait((await association.start()).handle)).accessToken).toBe(ACCESS);
    expect(pauses).toEqual([1000, 2000]);

    server.on('POST', '/oidc/token', () => ({ status: 502, raw: 'bad gateway' }));
    const error = await failure(association.wait((await association.start()).handle));
    expect(error.code).toBe(ErrorCode.PlatformUnavailable);
    expect(error.details).toMatchObject({ status: 502, operation: 'device-poll' });
  });

  it('aborts at once when the signal fires during a pause', async () => {
    const server = await new ScriptedHttpServer().start();
    servers.push(server);
    const provider = await ScriptedProvider.start(server);
    server.on('POST', '/oidc/device/auth', () => ({
      json: { device_code: DEVICE_CODE, user_code: USER_CODE, verification_uri: 'https://x/device', expires_in: 600 },
    }));
    // The real timer this time: the provider sent no interval, so the pause is 5 s.
    const association = createDeviceAssociation({
      issuer: provider.issuer,
      clientId: 'tapline-desktop',
      allowInsecureHttp: true,
    });
    const login = await association.start();
    expect(login.intervalSec).toBe(5);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 30);
    const started = Date.now();
    const error = await failure(association.wait(login.handle, { signal: controller.signal }));
    expect(error.code).toBe(ErrorCode.Aborted);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(server.to('/oidc/token')).toEqual([]);
  });

  it('refuses a grant without scan_requests or offline_access: PLATFORM_REJECTED insufficient_scope, nothing stored', async () => {
    const { server, provider, association, log } = await bench();
    const store = new MemoryTokenStore();
    const session = new AssociatedSession({ store, association });
    const cases: [scope: string, refreshToken: string | undefined, missing: string[]][] = [
      ['openid offline_access', REFRESH, ['scan_requests']],
      ['openid scan_requests', REFRESH, ['offline_access']],
      // No offline_access and so no refresh token: the scope is the better explanation.
      ['openid scan_requests', undefined, ['offline_access']],
      ['openid', undefined, ['scan_requests', 'offline_access']],
    ];
    for (const [scope, refreshToken, missing] of cases) {
      server.on('POST', '/oidc/token', () =>
        provider.tokens({ accessToken: ACCESS, sub: SUB, scope, ...(refreshToken ? { refreshToken } : {}) }),
      );
      // What `tapline login` does: wait, then associate. The wait fails, so associate never runs.
      const error = await failure(
        (async () => session.associate(await association.wait((await association.start()).handle)))(),
      );
      expect(error.code, scope).toBe(ErrorCode.PlatformRejected);
      expect(error.details, scope).toMatchObject({ error: 'insufficient_scope', operation: 'device-poll', missing });
      expect(error.hint).toMatch(/approve all the permissions/);
      expectNoSecrets(JSON.stringify(error.toJSON()));
      expect(await store.load()).toBeUndefined();
    }
    // A scope answer listing more than asked, in any order, is fine.
    server.on('POST', '/oidc/token', () =>
      provider.tokens({
        accessToken: ACCESS,
        refreshToken: REFRESH,
        sub: SUB,
        scope: 'scan_requests profile offline_access openid',
      }),
    );
    expect((await association.wait((await association.start()).handle)).scope).toBe(
      'scan_requests profile offline_access openid',
    );
    expect(REQUIRED_ASSOCIATION_SCOPES).toEqual(['scan_requests', 'offline_access']);
    expectNoSecrets(log.text());
  });

  it('refuses a grant without a refresh token or without an ID token', async () => {
    const { server, provider, association } = await bench();
    server.on('POST', '/oidc/token', () => provider.tokens({ accessToken: ACCESS, sub: SUB }));
    const noRefresh = await failure(association.wait((await association.start()).handle));
    expect(noRefresh.code).toBe(ErrorCode.PlatformRejected);
    expect(noRefresh.details['error']).toBe('no_refresh_token');
    server.on('POST', '/oidc/token', () => provider.tokens({ accessToken: ACCESS, refreshToken: REFRESH }));
    expect((await failure(association.wait((await association.start()).handle))).code).toBe(ErrorCode.ProtocolError);
  });
});

describe('DeviceAssociation: refresh, revoke, userinfo', () => {
  it('refresh sends grant_type, the refresh token and client_id, and reports the rotation', async () => {
    const { server, provider, association, clock } = await bench();
    server.on('POST', '/oidc/token', () =>
      provider.tokens({ accessToken: ACCESS, refreshToken: REFRESH_2, sub: SUB, expiresIn: 300 }),
    );
    const refreshed = await association.refresh(REFRESH);
    expect(refreshed).toEqual({
      accessToken: ACCESS,
      accessTokenExpiresAt: clock.now() + 300_000,
      refreshToken: REFRESH_2,
      refreshTokenRotated: true,
      scope: 'openid offline_access scan_requests',
      sub: SUB,
    });
    expect(form(server.to('/oidc/token')[0]!.body)).toEqual({
      grant_type: 'refresh_token',
      refresh_token: REFRESH,
      client_id: 'tapline-desktop',
    });
    // No rotation: the same refresh token stays current; no expires_in: a short assumed lifetime.
    server.on('POST', '/oidc/token', () => ({ json: { access_token: ACCESS, token_type: 'bearer' } }));
    expect(await association.refresh(REFRESH)).toMatchObject({
      refreshToken: REFRESH,
      refreshTokenRotated: false,
      sub: undefined,
      accessTokenExpiresAt: clock.now() + 60_000,
    });
  });

  it('maps refresh failures: invalid_grant → NOT_ASSOCIATED, 5xx → PLATFORM_UNAVAILABLE, other → PLATFORM_REJECTED', async () => {
    const { server, association } = await bench();
    // The provider quotes the token back: it must not reach the error.
    server.on('POST', '/oidc/token', () => ScriptedProvider.error('invalid_grant', 400, `grant ${REFRESH} revoked`));
    const gone = await failure(association.refresh(REFRESH));
    expect(gone.code).toBe(ErrorCode.NotAssociated);
    expect(gone.hint).toMatch(/tapline login/);
    expectNoSecrets(JSON.stringify(gone.toJSON()));

    server.on('POST', '/oidc/token', () => ({ status: 500, json: { error: 'server_error' } }));
    const down = await failure(association.refresh(REFRESH));
    expect(down.code).toBe(ErrorCode.PlatformUnavailable);
    expect(down.details).toMatchObject({ status: 500 });

    server.on('POST', '/oidc/token', () => ScriptedProvider.error('invalid_client', 401, `client ${REFRESH}`));
    const refused = await failure(association.refresh(REFRESH));
    expect(refused.code).toBe(ErrorCode.PlatformRejected);
    expect(refused.details).toMatchObject({ error: 'invalid_client', operation: 'refresh' });
    expect(refused.hint).toMatch(/client id/);
    expectNoSecrets(JSON.stringify(refused.toJSON()));

    server.on('POST', '/oidc/token', () => ({
      raw: `{"access_token":"${ACCESS}", oops`,
      headers: { 'Content-Type': 'application/json' },
    }));
    const garbled = await failure(association.refresh(REFRESH));
    expect(garbled.code).toBe(ErrorCode.ProtocolError);
    expectNoSecrets(JSON.stringify(garbled.toJSON()));

    server.on('POST', '/oidc/token', () => ({ destroy: true }));
    const broken = await failure(association.refresh(REFRESH));
    expect(broken.code).toBe(ErrorCode.PlatformUnavailable);
    expect(broken.cause).toBeDefined();
  });

  it('an unreachable provider is PLATFORM_UNAVAILABLE with the network error attached', async () => {
    const server = await new ScriptedHttpServer().start();
    const issuer = new URL('oidc', server.url);
    await server.close(); // nothing listens on the port any more
    const association = createDeviceAssociation({ issuer, clientId: 'tapline-desktop', allowInsecureHttp: true });
    const error = await failure(association.start());
    expect(error.code).toBe(ErrorCode.PlatformUnavailable);
    expect(error.details['networkError']).toBe('ECONNREFUSED');
    expect(error.cause).toBeInstanceOf(Error);
    expect(error.hint).toMatch(/network/);
  });

  it('a provider that never answers: TIMEOUT at the deadline', async () => {
    const { server, association } = await bench({ timeoutMs: 200 });
    server.on('POST', '/oidc/token/revocation', () => new Promise(() => undefined));
    const started = Date.now();
    const error = await failure(association.revoke(REFRESH));
    expect(error.code).toBe(ErrorCode.Timeout);
    expect(Date.now() - started).toBeLessThan(1500);
  });

  it('a refresh is not abandoned at the ordinary timeout: an answer after 12 s is taken', async () => {
    const { server, provider, association } = await bench({ timeoutMs: 2000 });
    await association.revoke(ACCESS).catch(() => undefined); // discovery, with real timers
    fakeTimers();
    server.on('POST', '/oidc/token', async () => {
      await new Promise((r) => setTimeout(r, 12_000));
      return provider.tokens({ accessToken: ACCESS, refreshToken: REFRESH_2, sub: SUB });
    });
    let settled = false;
    const refreshing = association.refresh(REFRESH).finally(() => (settled = true));
    await until(() => server.to('/oidc/token').length === 1);
    await vi.advanceTimersByTimeAsync(11_000);
    expect(settled).toBe(false); // past the 2 s timeout, still waiting
    await vi.advanceTimersByTimeAsync(1_000);
    await until(() => settled);
    expect(await refreshing).toMatchObject({ refreshToken: REFRESH_2, refreshTokenRotated: true });
  });

  it("a refresh outlives openid-client's own backstop timer too (real time)", async () => {
    // The backstop is a real AbortSignal.timeout of whole seconds (timeoutMs 200 → 2 s if it followed the ordinary
    // timeout), which fake timers cannot reach: this one waits for real.
    const { server, provider, association } = await bench({ timeoutMs: 200 });
    server.on('POST', '/oidc/token', async () => {
      await new Promise((r) => setTimeout(r, 2300));
      return provider.tokens({ accessToken: ACCESS, refreshToken: REFRESH_2, sub: SUB });
    });
    expect((await association.refresh(REFRESH)).refreshToken).toBe(REFRESH_2);
  });

  it('a refresh that never answers: TIMEOUT at REFRESH_TIMEOUT_MS (60 s), not before', async () => {
    const { server, association } = await bench({ timeoutMs: 2000 });
    await association.revoke(ACCESS).catch(() => undefined);
    fakeTimers();
    server.on('POST', '/oidc/token', () => new Promise(() => undefined));
    let outcome: unknown;
    const refreshing = association.refresh(REFRESH).then(
      () => (outcome = 'resolved'),
      (error: unknown) => (outcome = error),
    );
    await until(() => server.to('/oidc/token').length === 1);
    await vi.advanceTimersByTimeAsync(REFRESH_TIMEOUT_MS - 1);
    expect(outcome).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    await refreshing;
    expect(isTaplineError(outcome) && outcome.code).toBe(ErrorCode.Timeout);
    expect(isTaplineError(outcome) && outcome.details['timeoutMs']).toBe(60_000);
    // The session refreshes holding the credentials lock: the lock must not look abandoned before it gives up.
    expect(REFRESH_TIMEOUT_MS).toBeLessThan(CREDENTIALS_STALE_LOCK_MS);
  });

  it('a refresh still stops at once when the caller shuts down', async () => {
    const { server, association } = await bench({ timeoutMs: 2000 });
    server.on('POST', '/oidc/token', () => new Promise(() => undefined));
    const controller = new AbortController();
    const refreshing = failure(association.refresh(REFRESH, { signal: controller.signal }));
    await until(() => server.to('/oidc/token').length === 1);
    controller.abort();
    expect((await refreshing).code).toBe(ErrorCode.Aborted);
  });

  it('revoke POSTs token, token_type_hint and client_id; userinfo GETs with the bearer token', async () => {
    const { server, association } = await bench();
    server.on('POST', '/oidc/token/revocation', () => ({ status: 200 }));
    server.on('GET', '/oidc/me', () => ({ json: { sub: SUB, email: 'a@example.test' } }));
    await association.revoke(REFRESH, { tokenTypeHint: 'refresh_token' });
    expect(form(server.to('/oidc/token/revocation')[0]!.body)).toEqual({
      token: REFRESH,
      token_type_hint: 'refresh_token',
      client_id: 'tapline-desktop',
    });
    expect(await association.userinfo(ACCESS, { expectedSubject: SUB })).toEqual({ sub: SUB, email: 'a@example.test' });
    const me = server.to('/oidc/me')[0]!;
    expect(me.method).toBe('GET');
    expect(me.headers['authorization']).toBe(`Bearer ${ACCESS}`);
    expect((await failure(association.userinfo(ACCESS, { expectedSubject: 'someone-else' }))).code).toBe(
      ErrorCode.ProtocolError,
    );
  });
});

describe('DeviceAssociation: options', () => {
  it('refuses http issuers except on this computer with allowInsecureHttp', () => {
    const make = (issuer: string, allowInsecureHttp?: boolean) => () =>
      createDeviceAssociation({ issuer: new URL(issuer), clientId: 'tapline-desktop', allowInsecureHttp });
    expect(make('http://auth.example/oidc', true)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(make('http://127.0.0.1:4000/oidc')).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(make('ftp://auth.example/oidc')).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(make('http://localhost:4000/oidc', true)).not.toThrow();
    expect(make('https://auth.example/oidc')).not.toThrow();
  });

  it('refuses an endpoint the metadata puts on another http host', async () => {
    const { server, association } = await bench();
    server.on('GET', '/oidc/.well-known/openid-configuration', () => ({
      json: {
        issuer: association.issuer.href,
        token_endpoint: 'http://evil.example/token',
        device_authorization_endpoint: 'http://evil.example/device',
      },
    }));
    const error = await failure(association.start());
    expect(error.code).toBe(ErrorCode.InvalidArgument);
    expect(error.message).toMatch(/evil\.example/);
  });

  it('a discovery whose issuer does not match is PROTOCOL_ERROR; a missing provider PLATFORM_REJECTED', async () => {
    const { server, association } = await bench();
    server.on('GET', '/oidc/.well-known/openid-configuration', () => ({ json: { issuer: 'https://other.example/' } }));
    expect((await failure(association.start())).code).toBe(ErrorCode.ProtocolError);
    server.on('GET', '/oidc/.well-known/openid-configuration', () => ({ status: 404, raw: 'not found' }));
    const missing = await failure(association.start());
    expect(missing.code).toBe(ErrorCode.PlatformRejected);
    expect(missing.hint).toMatch(/issuer/);
  });
});
