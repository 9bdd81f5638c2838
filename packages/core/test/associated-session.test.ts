import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  AssociatedSession,
  ErrorCode,
  FileTokenStore,
  MemoryTokenStore,
  REFRESH_TIMEOUT_MS,
  TaplineError,
  createDeviceAssociation,
  credentialsFromTokens,
  isTaplineError,
  type ExclusiveOptions,
  type StoredCredentials,
  type TokenStore,
} from '../src/index.js';
import { ScriptedHttpServer, ScriptedProvider, recordingLogger } from './scripted-http.js';

const SUB = 'e'.repeat(64);
const NOW = 1_700_000_000_000;

const servers: ScriptedHttpServer[] = [];
afterEach(async () => {
  vi.useRealTimers();
  for (const server of servers.splice(0)) await server.close();
});

/** Lets real I/O run until `done` holds (for fake-timer tests, where virtual time stands still meanwhile). */
async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 5000 && !done(); i++) await new Promise((r) => setImmediate(r));
  if (!done()) throw new Error('the condition never held');
}

const NEW_TOKENS = {
  accessToken: 'access-new',
  accessTokenExpiresAt: NOW + 600_000,
  refreshToken: 'refresh-new',
  scope: 'openid offline_access scan_requests',
  sub: 'd'.repeat(64),
} as const;

function revokedTokens(server: ScriptedHttpServer): string[] {
  return server.to('/oidc/token/revocation').map((r) => new URLSearchParams(r.body).get('token') ?? '(none)');
}

/** A token store whose saves the test can fail or hold, and which records what was saved. */
class ControlledStore implements TokenStore {
  readonly location = 'test store';
  readonly inner = new MemoryTokenStore();
  readonly saved: StoredCredentials[] = [];
  failSaves = false;
  hold: Promise<void> | undefined;
  clears = 0;
  exclusives = 0;

  load(): Promise<StoredCredentials | undefined> {
    return this.inner.load();
  }

  async save(credentials: StoredCredentials): Promise<void> {
    await this.hold;
    if (this.failSaves) throw new TaplineError(ErrorCode.StorageFailed, 'Disk full (ENOSPC).', { hint: 'Free space.' });
    await this.inner.save(credentials);
    this.saved.push(credentials);
  }

  clear(): Promise<void> {
    this.clears += 1;
    return this.inner.clear();
  }

  exclusive<T>(fn: () => Promise<T>, options?: ExclusiveOptions): Promise<T> {
    this.exclusives += 1;
    return this.inner.exclusive(fn, options);
  }
}

/** `null`: nothing stored. */
async function bench(stored: Partial<StoredCredentials> | null = {}) {
  const server = await new ScriptedHttpServer().start();
  servers.push(server);
  const provider = await ScriptedProvider.start(server);
  let now = NOW;
  const clock = { now: () => now };
  const log = recordingLogger();
  const association = createDeviceAssociation({
    issuer: provider.issuer,
    clientId: 'tapline-desktop',
    allowInsecureHttp: true,
    timeoutMs: 2000,
    clock,
  });
  const store = new ControlledStore();
  if (stored !== null) {
    await store.inner.save({
      version: 1,
      issuer: provider.issuer.href,
      clientId: 'tapline-desktop',
      sub: SUB,
      scope: 'openid offline_access scan_requests',
      accessToken: 'access-0',
      accessTokenExpiresAt: NOW + 20_000, // inside the 30 s margin: the first call refreshes
      refreshToken: 'refresh-0',
      associatedAt: NOW - 86_400_000,
      ...stored,
    });
  }
  const session = new AssociatedSession({ store, association, clock, logger: log.logger });
  let issued = 0;
  /** Rotates on every refresh: refresh-N → refresh-(N+1), access-(N+1). */
  const rotate = async (delayMs = 0) => {
    if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
    issued += 1;
    return provider.tokens({ accessToken: `access-${issued}`, refreshToken: `refresh-${issued}`, sub: SUB });
  };
  return { server, provider, store, session, log, rotate, advance: (ms: number) => (now += ms) };
}

function refreshTokensSent(server: ScriptedHttpServer): string[] {
  return server.to('/oidc/token').map((r) => new URLSearchParams(r.body).get('refresh_token') ?? '(none)');
}

async function failure(promise: Promise<unknown>): Promise<TaplineError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isTaplineError(error)) throw new Error(`expected a TaplineError, got ${String(error)}`);
  return error;
}

describe('AssociatedSession.accessToken', () => {
  it('hands out the stored token while it is valid for more than 30 s, without a network call', async () => {
    const { server, session } = await bench({ accessTokenExpiresAt: NOW + 31_000 });
    expect(await session.accessToken()).toBe('access-0');
    expect(server.requests).toEqual([]);
  });

  it('refreshes a token that expires within 30 s, and stores the rotated refresh token', async () => {
    const { server, store, session, rotate } = await bench();
    server.on('POST', '/oidc/token', () => rotate());
    expect(await session.accessToken()).toBe('access-1');
    expect(refreshTokensSent(server)).toEqual(['refresh-0']);
    expect(await store.load()).toMatchObject({
      accessToken: 'access-1',
      refreshToken: 'refresh-1',
      accessTokenExpiresAt: NOW + 600_000,
      sub: SUB,
      associatedAt: NOW - 86_400_000,
    });
    // Now fresh: no second refresh.
    expect(await session.accessToken()).toBe('access-1');
    expect(server.to('/oidc/token')).toHaveLength(1);
  });

  it('single-flight: five concurrent callers share exactly one refresh request', async () => {
    const { server, session, rotate } = await bench();
    server.on('POST', '/oidc/token', () => rotate(50));
    const tokens = await Promise.all(Array.from({ length: 5 }, () => session.accessToken()));
    expect(tokens).toEqual(Array(5).fill('access-1'));
    expect(server.to('/oidc/token')).toHaveLength(1);
    // Forced refreshes at the same moment share one too.
    const forced = await Promise.all(Array.from({ length: 5 }, () => session.accessToken({ forceRefresh: true })));
    expect(forced).toEqual(Array(5).fill('access-2'));
    expect(refreshTokensSent(server)).toEqual(['refresh-0', 'refresh-1']);
  });

  it('saves the rotated refresh token before it hands out the new access token', async () => {
    const { server, store, session, rotate } = await bench();
    server.on('POST', '/oidc/token', () => rotate());
    let release!: () => void;
    store.hold = new Promise((resolve) => (release = resolve));
    let handedOut = false;
    const pending = session.accessToken().then((token) => {
      handedOut = true;
      return token;
    });
    while (server.to('/oidc/token').length === 0) await new Promise((r) => setTimeout(r, 2));
    await new Promise((r) => setTimeout(r, 30));
    expect(handedOut).toBe(false); // the save is still held
    release();
    expect(await pending).toBe('access-1');
    expect(store.saved.map((c) => c.refreshToken)).toEqual(['refresh-1']);
  });

  it('a failing save: STORAGE_FAILED, the new token kept in memory only, the old refresh token never sent again', async () => {
    const { server, store, session, rotate, log } = await bench();
    server.on('POST', '/oidc/token', () => rotate());
    store.failSaves = true;
    const first = await failure(session.accessToken());
    expect(first.code).toBe(ErrorCode.StorageFailed);
    expect(first.hint).toMatch(/Free space\. .*tapline login/);
    expect((await store.load())?.refreshToken).toBe('refresh-0'); // the store still has the spent one

    // The store still fails: the save is tried again, nothing is sent, nothing handed out.
    expect((await failure(session.accessToken())).code).toBe(ErrorCode.StorageFailed);
    expect((await failure(session.accessToken({ forceRefresh: true }))).code).toBe(ErrorCode.StorageFailed);
    expect(refreshTokensSent(server)).toEqual(['refresh-0']);

    // The disk recovers: the credentials held in memory are saved, and their token handed out.
    store.failSaves = false;
    expect(await session.accessToken()).toBe('access-1');
    expect((await store.load())?.refreshToken).toBe('refresh-1');
    expect(refreshTokensSent(server)).toEqual(['refresh-0']);
    // The next refresh uses the rotated token, never refresh-0.
    expect(await session.accessToken({ forceRefresh: true })).toBe('access-2');
    expect(refreshTokensSent(server)).toEqual(['refresh-0', 'refresh-1']);
    for (const secret of ['refresh-0', 'refresh-1', 'access-1', 'access-2']) {
      expect(log.text()).not.toContain(`"${secret}"`);
    }
  });

  it('invalid_grant: the store is cleared and the call fails with NOT_ASSOCIATED; later calls too, offline', async () => {
    const { server, store, session } = await bench();
    server.on('POST', '/oidc/token', () => ScriptedProvider.error('invalid_grant', 400, 'grant request is invalid'));
    const error = await failure(session.accessToken());
    expect(error.code).toBe(ErrorCode.NotAssociated);
    expect(error.hint).toMatch(/tapline login/);
    expect(await store.load()).toBeUndefined();
    expect(store.clears).toBe(1);
    expect((await failure(session.accessToken())).code).toBe(ErrorCode.NotAssociated);
    expect(server.to('/oidc/token')).toHaveLength(1);
  });

  it('a refresh that did not get through can be tried again with the same refresh token', async () => {
    const { server, session, rotate } = await bench();
    server.sequence('POST', '/oidc/token', [() => ({ status: 503, raw: 'busy' }), () => rotate()]);
    expect((await failure(session.accessToken())).code).toBe(ErrorCode.PlatformUnavailable);
    expect(await session.accessToken()).toBe('access-1');
    // Without a new refresh token there is nothing else to send; a provider that had rotated would say invalid_grant.
    expect(refreshTokensSent(server)).toEqual(['refresh-0', 'refresh-0']);
  });

  it("a caller's abort does not abandon the refresh: it completes and is saved for the next call", async () => {
    const { server, store, session, rotate } = await bench();
    server.on('POST', '/oidc/token', () => rotate(80));
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 10);
    expect((await failure(session.accessToken({ signal: controller.signal }))).code).toBe(ErrorCode.Aborted);
    await new Promise((r) => setTimeout(r, 150));
    expect((await store.load())?.refreshToken).toBe('refresh-1');
    expect(await session.accessToken()).toBe('access-1');
    expect(server.to('/oidc/token')).toHaveLength(1);
  });

  it('a refresh the provider answers only after 12 s still completes, and the rotated token is stored', async () => {
    const { server, store, session, rotate } = await bench();
    // Discovery first, on real timers (its own timeout is a real AbortSignal.timeout).
    server.on('POST', '/oidc/token/revocation', () => ({ status: 200 }));
    await createDeviceAssociation({
      issuer: new URL('oidc', server.url),
      clientId: 'tapline-desktop',
      allowInsecureHttp: true,
    }).revoke('warm-up');
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    server.on('POST', '/oidc/token', () => rotate(12_000)); // the association's own timeout is 2 s
    let settled = false;
    const pending = session.accessToken().finally(() => (settled = true));
    await until(() => server.to('/oidc/token').length === 1);
    await vi.advanceTimersByTimeAsync(12_000);
    await until(() => settled);
    expect(await pending).toBe('access-1');
    expect(await store.load()).toMatchObject({ accessToken: 'access-1', refreshToken: 'refresh-1' });
    expect(refreshTokensSent(server)).toEqual(['refresh-0']);
  });

  it('a refresh lost without an answer: not marked spent, sent again by the next call, never two at a time', async () => {
    const { server, store, session, rotate } = await bench();
    let answer = false;
    server.on('POST', '/oidc/token', () => (answer ? rotate() : new Promise<never>(() => undefined)));
    await session.whoami();
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    // Three callers while the provider is silent: one request between them.
    const outcomes: unknown[] = [];
    const calls = Array.from({ length: 3 }, () =>
      session.accessToken().then(
        (token) => outcomes.push(token),
        (error: unknown) => outcomes.push(error),
      ),
    );
    await until(() => server.to('/oidc/token').length === 1);
    await vi.advanceTimersByTimeAsync(REFRESH_TIMEOUT_MS);
    await until(() => outcomes.length === 3);
    await Promise.all(calls);
    expect(outcomes.map((o) => isTaplineError(o) && o.code)).toEqual(Array(3).fill(ErrorCode.Timeout));
    expect(refreshTokensSent(server)).toEqual(['refresh-0']);
    vi.useRealTimers();
    // Nothing came back, so nothing to adopt: the same token is the only one to try, and it is not refused here.
    answer = true;
    expect(await session.accessToken()).toBe('access-1');
    expect(refreshTokensSent(server)).toEqual(['refresh-0', 'refresh-0']);
    expect((await store.load())?.refreshToken).toBe('refresh-1');
  });

  it('adopts credentials another process rotated instead of sending the old refresh token', async () => {
    const { server, store, session, rotate, advance } = await bench({ accessTokenExpiresAt: NOW + 60_000 });
    server.on('POST', '/oidc/token', () => rotate());
    expect(await session.accessToken()).toBe('access-0');
    // Another process refreshed meanwhile.
    await store.inner.save({
      ...(await store.load())!,
      accessToken: 'access-other',
      accessTokenExpiresAt: NOW + 600_000,
      refreshToken: 'refresh-other',
    });
    advance(40_000); // our copy of access-0 is now inside the margin
    expect(await session.accessToken()).toBe('access-other');
    expect(server.to('/oidc/token')).toEqual([]);
    expect(await session.accessToken({ forceRefresh: true })).toBe('access-1');
    expect(refreshTokensSent(server)).toEqual(['refresh-other']);
  });

  it('adopts rotated credentials inside the margin, but refreshes with them once their access token has expired', async () => {
    const { server, store, session, rotate } = await bench({ accessTokenExpiresAt: NOW + 60_000 });
    server.on('POST', '/oidc/token', () => rotate());
    expect(await session.accessToken({ forceRefresh: true })).toBe('access-1');
    const stored = (await store.load())!;
    // Another process rotated, and its provider issues tokens shorter-lived than the 30 s margin.
    await store.inner.save({
      ...stored,
      accessToken: 'access-a',
      accessTokenExpiresAt: NOW + 5000,
      refreshToken: 'refresh-a',
    });
    expect(await session.accessToken({ forceRefresh: true })).toBe('access-a');
    // Rotated again elsewhere, but long ago: that access token is dead, so the adopted refresh token is used.
    await store.inner.save({
      ...stored,
      accessToken: 'access-b',
      accessTokenExpiresAt: NOW - 1,
      refreshToken: 'refresh-b',
    });
    expect(await session.accessToken({ forceRefresh: true })).toBe('access-2');
    expect(refreshTokensSent(server)).toEqual(['refresh-0', 'refresh-b']);
    expect((await store.load())?.refreshToken).toBe('refresh-2');
    expect(store.exclusives).toBe(3);
  });

  it('NOT_ASSOCIATED when nothing is stored, or the credentials belong to another issuer', async () => {
    const empty = await bench(null);
    const none = await failure(empty.session.accessToken());
    expect(none.code).toBe(ErrorCode.NotAssociated);
    expect(none.hint).toMatch(/tapline login/);
    expect((await failure(empty.session.whoami())).code).toBe(ErrorCode.NotAssociated);

    const other = await bench({ issuer: 'https://elsewhere.example/oidc' });
    const error = await failure(other.session.accessToken());
    expect(error.code).toBe(ErrorCode.NotAssociated);
    expect(error.message).toMatch(/elsewhere\.example/);
    expect(other.server.requests).toEqual([]);
  });
});

describe('AssociatedSession: associate, whoami, logout', () => {
  it('associate saves the tokens of a device login; whoami reads them without the network', async () => {
    const { server, store, session } = await bench(null);
    const identity = await session.associate({
      accessToken: 'access-new',
      accessTokenExpiresAt: NOW + 600_000,
      refreshToken: 'refresh-new',
      scope: 'openid offline_access scan_requests',
      sub: SUB,
    });
    expect(identity).toEqual({
      sub: SUB,
      issuer: `${server.url.href}oidc`,
      scope: 'openid offline_access scan_requests',
      associatedAt: NOW,
    });
    expect(await store.load()).toEqual(
      credentialsFromTokens(
        {
          accessToken: 'access-new',
          accessTokenExpiresAt: NOW + 600_000,
          refreshToken: 'refresh-new',
          scope: 'openid offline_access scan_requests',
          sub: SUB,
        },
        { issuer: new URL('oidc', server.url), clientId: 'tapline-desktop', associatedAt: NOW },
      ),
    );
    expect(await session.whoami()).toEqual(identity);
    expect(await session.accessToken()).toBe('access-new');
    expect(server.requests).toEqual([]);
    // The save ran under the store's lock, so that another process's refresh cannot overwrite it.
    expect(store.exclusives).toBe(1);
  });

  it('userinfo confirms the association with a valid token; a refused token is refreshed once', async () => {
    const { server, session, rotate } = await bench({ accessTokenExpiresAt: NOW + 600_000 });
    server.on('POST', '/oidc/token', () => rotate());
    server.on('GET', '/oidc/me', (request) =>
      request.headers['authorization'] === 'Bearer access-1'
        ? { json: { sub: SUB } }
        : { status: 401, headers: { 'WWW-Authenticate': 'Bearer error="invalid_token"' } },
    );
    expect(await session.userinfo()).toEqual({ sub: SUB });
    expect(server.to('/oidc/me').map((r) => r.headers['authorization'])).toEqual([
      'Bearer access-0',
      'Bearer access-1',
    ]);
    expect(refreshTokensSent(server)).toEqual(['refresh-0']);
    // Another subject is not this association.
    server.on('GET', '/oidc/me', () => ({ json: { sub: 'someone-else' } }));
    expect((await failure(session.userinfo())).code).toBe(ErrorCode.ProtocolError);
  });

  it('logout revokes the refresh token, then the access token, then deletes the credentials', async () => {
    const { server, store, session } = await bench();
    server.on('POST', '/oidc/token/revocation', () => ({ status: 200 }));
    expect(await session.logout()).toEqual({ wasAssociated: true, revoked: true, revocationError: undefined });
    expect(server.to('/oidc/token/revocation').map((r) => Object.fromEntries(new URLSearchParams(r.body)))).toEqual([
      { token: 'refresh-0', token_type_hint: 'refresh_token', client_id: 'tapline-desktop' },
      { token: 'access-0', token_type_hint: 'access_token', client_id: 'tapline-desktop' },
    ]);
    expect(await store.load()).toBeUndefined();
    expect((await failure(session.accessToken())).code).toBe(ErrorCode.NotAssociated);
    expect(await session.logout()).toEqual({ wasAssociated: false, revoked: false, revocationError: undefined });
  });

  it('logout deletes the credentials even when revocation fails, and says so', async () => {
    const { server, store, session } = await bench();
    server.on('POST', '/oidc/token/revocation', () => ({ status: 503, raw: 'down' }));
    const result = await session.logout();
    expect(result.wasAssociated).toBe(true);
    expect(result.revoked).toBe(false);
    expect(result.revocationError?.code).toBe(ErrorCode.PlatformUnavailable);
    expect(server.to('/oidc/token/revocation')).toHaveLength(2);
    expect(await store.load()).toBeUndefined();
  });

  it('associate with revokePrevious: saves the new tokens under the lock, then revokes what was stored then', async () => {
    const { server, store, session, log } = await bench({ accessTokenExpiresAt: NOW + 600_000 });
    expect(await session.accessToken()).toBe('access-0'); // this process holds refresh-0
    // Another process rotated meanwhile: the newest token of the old grant is refresh-other.
    await store.inner.save({ ...(await store.load())!, accessToken: 'access-other', refreshToken: 'refresh-other' });
    const storedAtRevocation: (string | undefined)[] = [];
    server.on('POST', '/oidc/token/revocation', async () => {
      storedAtRevocation.push((await store.load())?.refreshToken);
      return { status: 200 };
    });
    const result = await session.associate(NEW_TOKENS, { revokePrevious: true });
    expect(result).toEqual({
      identity: { sub: NEW_TOKENS.sub, issuer: `${server.url.href}oidc`, scope: NEW_TOKENS.scope, associatedAt: NOW },
      previous: {
        sub: SUB,
        issuer: `${server.url.href}oidc`,
        scope: 'openid offline_access scan_requests',
        associatedAt: NOW - 86_400_000,
      },
      previousRevoked: true,
    });
    expect(server.to('/oidc/token/revocation').map((r) => Object.fromEntries(new URLSearchParams(r.body)))).toEqual([
      { token: 'refresh-other', token_type_hint: 'refresh_token', client_id: 'tapline-desktop' },
      { token: 'access-other', token_type_hint: 'access_token', client_id: 'tapline-desktop' },
    ]);
    // Saved first: the revocation never runs while the old tokens are still the stored ones.
    expect(storedAtRevocation).toEqual(['refresh-new', 'refresh-new']);
    expect(store.exclusives).toBe(1);
    expect(await session.accessToken()).toBe('access-new');
    expect(await session.whoami()).toEqual(result.identity);
    for (const secret of ['refresh-0', 'refresh-other', 'access-other', 'refresh-new', 'access-new']) {
      expect(log.text()).not.toContain(secret);
    }
  });

  it('associate with revokePrevious: a failed revocation keeps the new association and says why', async () => {
    const { server, store, session, log } = await bench();
    server.on('POST', '/oidc/token/revocation', () => ({ status: 503, raw: 'down' }));
    const result = await session.associate(NEW_TOKENS, { revokePrevious: true });
    expect(result.previousRevoked).toBe(false);
    expect(result.previous?.sub).toBe(SUB);
    expect(result.previousRevocationError?.code).toBe(ErrorCode.PlatformUnavailable);
    expect(revokedTokens(server)).toEqual(['refresh-0', 'access-0']);
    expect((await store.load())?.refreshToken).toBe('refresh-new');
    // Reported in the result; logged at debug only.
    expect(log.records.filter((r) => r.message.startsWith('revocation failed')).map((r) => r.level)).toEqual(['debug']);
  });

  it('associate with revokePrevious: nothing stored, the same grant again, or another issuer: nothing revoked here', async () => {
    const empty = await bench(null);
    expect(await empty.session.associate(NEW_TOKENS, { revokePrevious: true })).toMatchObject({
      previous: undefined,
      previousRevoked: false,
    });
    // The very tokens just stored, handed in again: revoking them would end the association being saved.
    const again = await empty.session.associate(NEW_TOKENS, { revokePrevious: true });
    expect(again).toMatchObject({ previous: undefined, previousRevoked: false });
    expect('previousRevocationError' in again).toBe(false);
    expect(empty.server.requests).toEqual([]);

    const foreign = await bench({ issuer: 'https://elsewhere.example/oidc' });
    const result = await foreign.session.associate(NEW_TOKENS, { revokePrevious: true });
    expect(result.previous?.issuer).toBe('https://elsewhere.example/oidc');
    expect(result.previousRevoked).toBe(false);
    expect(result.previousRevocationError?.code).toBe(ErrorCode.NotAssociated);
    expect(foreign.server.requests).toEqual([]);
    expect((await foreign.store.load())?.refreshToken).toBe('refresh-new');
  });

  it('associate without revokePrevious overwrites and revokes nothing', async () => {
    const { server, store, session } = await bench();
    expect(await session.associate(NEW_TOKENS)).toMatchObject({ sub: NEW_TOKENS.sub });
    expect(server.requests).toEqual([]);
    expect((await store.load())?.refreshToken).toBe('refresh-new');
  });

  it('logout never sends tokens of another issuer to this one', async () => {
    const { server, store, session } = await bench({ issuer: 'https://elsewhere.example/oidc' });
    const result = await session.logout();
    expect(result).toMatchObject({ wasAssociated: true, revoked: false });
    expect(result.revocationError?.code).toBe(ErrorCode.NotAssociated);
    expect(server.requests).toEqual([]);
    expect(await store.load()).toBeUndefined();
  });
});

/**
 * Two sessions over one credentials file, each with its own FileTokenStore and association instance: two Tapline
 * processes (the agent and a command) as far as the session can tell. The provider rotates like oidc-provider: a
 * refresh token works once, and presented again it revokes the whole grant.
 */
async function sharedFile(options: { readonly expiresIn?: number; readonly lockTimeoutMs?: number } = {}) {
  const server = await new ScriptedHttpServer().start();
  servers.push(server);
  const provider = await ScriptedProvider.start(server);
  let now = NOW;
  const clock = { now: () => now };
  let issued = 0;
  let revoked = false;
  const used = new Set<string>();
  /** What each refresh request got: `rotated`, or `invalid_grant` (reuse detected, the grant is gone). */
  const outcomes: string[] = [];
  server.on('POST', '/oidc/token', async (request) => {
    const token = new URLSearchParams(request.body).get('refresh_token') ?? '';
    if (revoked || used.has(token) || token !== `refresh-${issued}`) {
      revoked = true;
      outcomes.push('invalid_grant');
      return ScriptedProvider.error('invalid_grant', 400, 'grant request is invalid');
    }
    used.add(token);
    // A slow answer: the window in which another process would send the same refresh token.
    await new Promise((r) => setTimeout(r, 50));
    issued += 1;
    outcomes.push('rotated');
    return provider.tokens({
      accessToken: `access-${issued}`,
      refreshToken: `refresh-${issued}`,
      sub: SUB,
      expiresIn: options.expiresIn ?? 600,
    });
  });
  const file = join(mkdtempSync(join(tmpdir(), 'tapline-session-')), 'tapline', 'credentials.json');
  await new FileTokenStore({ file }).save({
    version: 1,
    issuer: provider.issuer.href,
    clientId: 'tapline-desktop',
    sub: SUB,
    scope: 'openid offline_access scan_requests',
    accessToken: 'access-0',
    accessTokenExpiresAt: NOW + 20_000, // inside the margin: both refresh on their first call
    refreshToken: 'refresh-0',
    associatedAt: NOW - 86_400_000,
  });
  const open = () =>
    new AssociatedSession({
      store: new FileTokenStore({
        file,
        ...(options.lockTimeoutMs === undefined ? {} : { lockTimeoutMs: options.lockTimeoutMs }),
      }),
      association: createDeviceAssociation({
        issuer: provider.issuer,
        clientId: 'tapline-desktop',
        allowInsecureHttp: true,
        timeoutMs: 2000,
        clock,
      }),
      clock,
    });
  return { server, file, outcomes, open, advance: (ms: number) => (now += ms) };
}

describe('AssociatedSession: several processes sharing the credentials file', () => {
  it('two sessions refreshing at the same moment: one refresh, both get the new token, no invalid_grant', async () => {
    // 1 s tokens, shorter than the 30 s margin, like the reference platform in the end-to-end test.
    const { server, file, outcomes, open } = await sharedFile({ expiresIn: 1 });
    const [agent, command] = [open(), open()];
    // Both have loaded refresh-0 already, as two running processes would have.
    await Promise.all([agent.whoami(), command.whoami()]);
    const tokens = await Promise.all([agent.accessToken(), command.accessToken()]);
    expect(tokens).toEqual(['access-1', 'access-1']);
    expect(outcomes).toEqual(['rotated']);
    expect(refreshTokensSent(server)).toEqual(['refresh-0']);
    expect((await new FileTokenStore({ file }).load())?.refreshToken).toBe('refresh-1');
    expect(readdirSync(dirname(file))).toEqual(['credentials.json']); // the lock is gone
  });

  it('round after round, whichever session refreshes, the other adopts: never a reused refresh token', async () => {
    const { server, outcomes, open, advance } = await sharedFile();
    const sessions = [open(), open(), open()];
    for (let round = 1; round <= 5; round++) {
      const tokens = await Promise.all(sessions.map((s) => s.accessToken()));
      expect(tokens).toEqual(Array(3).fill(`access-${round}`));
      advance(600_000); // every copy of the access token is now expired
    }
    expect(outcomes).toEqual(Array(5).fill('rotated'));
    expect(refreshTokensSent(server)).toEqual(['refresh-0', 'refresh-1', 'refresh-2', 'refresh-3', 'refresh-4']);
  });

  it('a lock another process holds too long: TIMEOUT naming the lock file, and no refresh sent', async () => {
    const { server, file, open } = await sharedFile({ lockTimeoutMs: 150 });
    writeFileSync(`${file}.lock`, JSON.stringify({ pid: 1, host: 'another-host', at: 'now', nonce: 'n' }));
    const session = open();
    const error = await failure(session.accessToken());
    expect(error.code).toBe(ErrorCode.Timeout);
    expect(error.hint).toContain(`${file}.lock`);
    expect(server.requests).toEqual([]);
    expect((await new FileTokenStore({ file }).load())?.refreshToken).toBe('refresh-0');
    // Once the lock is free, the same session refreshes normally.
    const { unlinkSync } = await import('node:fs');
    unlinkSync(`${file}.lock`);
    expect(await session.accessToken()).toBe('access-1');
    expect(refreshTokensSent(server)).toEqual(['refresh-0']);
  });

  it('a lock file that cannot be created: STORAGE_FAILED naming it, and no refresh sent', async () => {
    const { server, file, open } = await sharedFile();
    mkdirSync(`${file}.lock`);
    const error = await failure(open().accessToken());
    expect(error.code).toBe(ErrorCode.StorageFailed);
    expect(error.message).toContain(`${file}.lock`);
    expect(server.requests).toEqual([]);
  });

  it('logout waits for a refresh in progress elsewhere, then revokes the rotated token, and nothing comes back', async () => {
    const { server, file, open } = await sharedFile();
    server.on('POST', '/oidc/token/revocation', () => ({ status: 200 }));
    const [agent, command] = [open(), open()];
    await Promise.all([agent.whoami(), command.whoami()]);
    const refreshing = agent.accessToken();
    while (server.to('/oidc/token').length === 0) await new Promise((r) => setTimeout(r, 2));
    // The command logs out while the agent's refresh is on the wire.
    const result = await command.logout();
    expect(await refreshing).toBe('access-1');
    expect(result).toMatchObject({ wasAssociated: true, revoked: true });
    expect(server.to('/oidc/token/revocation').map((r) => new URLSearchParams(r.body).get('token'))).toEqual([
      'refresh-1',
      'access-1',
    ]);
    expect(await new FileTokenStore({ file }).load()).toBeUndefined();
    expect(readdirSync(dirname(file))).toEqual([]);
    // The agent finds out at its next refresh.
    expect((await failure(agent.accessToken({ forceRefresh: true }))).code).toBe(ErrorCode.NotAssociated);
  });
});
