import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import {
  AssociatedSession,
  ErrorCode,
  FileTokenStore,
  ReaderManager,
  answerScanRequest,
  createContainer,
  createDeviceAssociation,
  createScanRequestClient,
  isTaplineError,
  silentLogger,
  waitForTag,
  type Tag,
  type TaplineError,
} from '@tapline/core';
import {
  createSimulation,
  createVirtualChip,
  startReferencePlatform,
  type ReferencePlatform,
  type ReferencePlatformOptions,
  type VirtualChipKind,
} from '../src/index.js';

// End to end, through core's real client stack: the device login against the reference OpenID Provider (the phone's
// approval played by approveDevice), the associated session with a token file on disk, the scan-request API over
// HTTP, and the relay answering with a simulated chip on a simulated reader. It lives here rather than in core's
// tests because @tapline/core may not depend on @tapline/test-fixtures.

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function platform(options: ReferencePlatformOptions = {}): Promise<ReferencePlatform> {
  const reference = await startReferencePlatform(options);
  cleanups.push(() => reference.close());
  return reference;
}

async function tap(kind: VirtualChipKind): Promise<Tag> {
  const simulation = createSimulation({ chip: createVirtualChip(kind), tapAfterMs: 1 });
  cleanups.push(() => simulation.stop());
  const container = createContainer({
    logger: silentLogger,
    withoutGenericPcsc: true,
    drivers: simulation.drivers,
    deviceSources: simulation.deviceSources,
    config: { transports: [] },
  });
  const hold = container.resolve(ReaderManager).hold();
  cleanups.push(() => hold.release());
  return waitForTag(container.resolve(ReaderManager).tags$, { timeoutMs: 2000 });
}

/** Logs in with the device flow (approved as alice on the "phone") and returns a session over a token file. */
async function login(reference: ReferencePlatform) {
  const association = createDeviceAssociation({
    issuer: reference.issuerUrl,
    clientId: reference.desktopClientId,
    allowInsecureHttp: true,
  });
  const started = await association.start();
  const waiting = association.wait(started.handle, { signal: AbortSignal.timeout(10_000) });
  await reference.approveDevice(started.userCode);
  const tokens = await waiting;
  const file = join(mkdtempSync(join(tmpdir(), 'tapline-e2e-')), 'tapline', 'credentials.json');
  const store = new FileTokenStore({ file });
  const session = new AssociatedSession({ store, association });
  await session.associate(tokens);
  return { association, tokens, store, session, file, started };
}

async function failure(promise: Promise<unknown>): Promise<TaplineError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isTaplineError(error)) throw new Error(`expected a TaplineError, got ${String(error)}`);
  return error;
}

describe('association end to end: device login → session → list → answerScanRequest', () => {
  it.each(['spark2', 'apex', 'spark1'] as const)(
    '%s: the request created for alice is listed, claimed, answered and closed',
    async (kind) => {
      const reference = await platform();
      const { tokens, session, file } = await login(reference);
      expect(tokens.sub).toBe(reference.accountSubject('alice', reference.desktopClientId));
      expect(tokens.scope.split(' ').sort()).toEqual(['offline_access', 'openid', 'scan_requests']);
      if (process.platform !== 'win32') expect(statSync(file).mode & 0o777).toBe(0o600);

      const client = createScanRequestClient({ platformUrl: reference.url, session });
      const record = reference.createScanRequest({ purpose: 'Open the front door' });
      const list = await client.list();
      expect(list.notModified).toBe(false);
      const listed = list.notModified ? [] : list.requests;
      expect(listed).toEqual([
        expect.objectContaining({
          id: record.id,
          purpose: 'Open the front door',
          state: 'pending',
          expiresAt: record.expiresAt.getTime(),
        }),
      ]);

      const tag = await tap(kind);
      const result = await answerScanRequest(tag, client, record.id);
      expect(result).toMatchObject({ requestId: record.id, chip: kind });
      expect(reference.scanRequest(record.id)?.state).toBe('answered');
      expect(reference.stats.scanRequests.answers).toEqual({ succeeded: 1, failed: 0 });

      // Answered requests leave the list.
      const after = await client.list();
      expect(after.notModified ? undefined : after.requests).toEqual([]);
    },
  );

  it('long poll: a list held with the etag returns as soon as a request arrives', async () => {
    const reference = await platform();
    const { session } = await login(reference);
    const client = createScanRequestClient({ platformUrl: reference.url, session });
    const first = await client.list();
    const held = client.list({ etag: first.etag, waitSec: 10 });
    setTimeout(() => reference.createScanRequest({ purpose: 'Late' }), 100);
    const started = Date.now();
    const next = await held;
    expect(Date.now() - started).toBeLessThan(5000);
    expect(next.notModified).toBe(false);
    expect(next.etag).not.toBe(first.etag);
  });

  it('refresh rotates against the real provider; the rotated token is on disk; a reused one ends the grant', async () => {
    const reference = await platform({ accessTokenTtlSec: 2 });
    const { association, tokens, session, store } = await login(reference);
    // A 2 s token is always inside the 30 s margin: every call refreshes.
    const access = await session.accessToken();
    expect(access).not.toBe(tokens.accessToken);
    const stored = await store.load();
    expect(stored?.refreshToken).not.toBe(tokens.refreshToken);
    expect(stored?.accessToken).toBe(access);
    // The first refresh token, presented again, is reuse: the provider revokes the whole grant.
    expect((await failure(association.refresh(tokens.refreshToken))).code).toBe(ErrorCode.NotAssociated);
    const gone = await failure(session.accessToken());
    expect(gone.code).toBe(ErrorCode.NotAssociated);
    expect(await store.load()).toBeUndefined();
  });

  it('two processes whose access token expired refresh at the same moment: one refresh, both succeed, no reuse', async () => {
    // 1 s tokens: expired by the time both processes ask, and always inside the 30 s refresh margin.
    const reference = await platform({ accessTokenTtlSec: 1 });
    const { file, store } = await login(reference);
    expect(reference.stats.oidc.refreshes).toBe(0);
    // Each child is a Tapline process of its own over the same credentials file (the agent and a CLI command).
    const core = pathToFileURL(createRequire(import.meta.url).resolve('@tapline/core')).href;
    const child = (name: string) => {
      const script = `
          const { AssociatedSession, FileTokenStore, createDeviceAssociation } = await import(${JSON.stringify(core)});
          const { createHash } = await import('node:crypto');
          const give = setTimeout(() => { process.stderr.write('no go within 20 s'); process.exit(2); }, 20000);
          const association = createDeviceAssociation({
            issuer: new URL(${JSON.stringify(reference.issuerUrl.href)}),
            clientId: ${JSON.stringify(reference.desktopClientId)},
            allowInsecureHttp: true,
          });
          const session = new AssociatedSession({ store: new FileTokenStore({ file: ${JSON.stringify(file)} }), association });
          await session.whoami(); // holds the stored refresh token, like a process that has been running
          process.stdout.write('ready\\n');
          process.stdin.once('data', async () => {
            clearTimeout(give);
            try {
              const token = await session.accessToken();
              // A digest, not the token: secrets do not go to logs, not even a test's.
              process.stdout.write('ok ' + createHash('sha256').update(token).digest('hex') + '\\n');
            } catch (e) {
              process.stdout.write('failed ' + (e && e.code) + ' ' + (e && e.message) + '\\n');
            }
            process.exit(0);
          });
        `;
      const proc = spawn(process.execPath, ['--input-type=module', '-e', script], {
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      cleanups.push(() => {
        if (proc.exitCode === null && proc.signalCode === null) proc.kill();
      });
      let out = '';
      let err = '';
      proc.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
      proc.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
      let exited = false;
      const closed = new Promise<void>((resolve, reject) => {
        proc.on('error', reject);
        proc.on('close', (code) => {
          exited = true;
          if (code === 0) resolve();
          else reject(new Error(`${name} exited ${code}: ${err}`));
        });
      });
      // Observed here so that a child dying early fails the test through `said`, not as an unhandled rejection.
      closed.catch(() => undefined);
      const said = async (text: string): Promise<void> => {
        const deadline = Date.now() + 15_000;
        while (!out.includes(text)) {
          if (exited || Date.now() > deadline) throw new Error(`${name} did not say ${text}: ${err}`);
          await new Promise((r) => setTimeout(r, 10));
        }
      };
      return { proc, closed, said, result: () => out.split('\n').find((line) => /^(ok|failed) /.test(line)) };
    };
    const agent = child('agent');
    const command = child('command');
    await Promise.all([agent.said('ready'), command.said('ready')]);
    // Both hold the same refresh token and an access token that has expired.
    const stored = await store.load();
    const wait = (stored?.accessTokenExpiresAt ?? 0) - Date.now() + 50;
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    expect(Date.now()).toBeGreaterThan(stored?.accessTokenExpiresAt ?? Infinity);
    agent.proc.stdin.write('go\n');
    command.proc.stdin.write('go\n');
    await Promise.all([agent.closed, command.closed]);

    const results = [agent.result(), command.result()];
    expect(results).toEqual([expect.stringMatching(/^ok /), expect.stringMatching(/^ok /)]);
    const now = await store.load();
    const digest = createHash('sha256')
      .update(now?.accessToken ?? '')
      .digest('hex');
    // The one who refreshed and the one who adopted hand out the same token, which is the one on disk.
    expect(results).toEqual([`ok ${digest}`, `ok ${digest}`]);
    expect(now?.refreshToken).not.toBe(stored?.refreshToken);
    expect(reference.stats.oidc.refreshReuseDetected).toBe(0);
    expect(reference.stats.oidc.refreshes).toBe(1);
    expect(readdirSync(dirname(file))).toEqual(['credentials.json']); // no lock left behind
  }, 30_000);

  it('a declined login is ASSOCIATION_DENIED; logout revokes and deletes the token file', async () => {
    const reference = await platform();
    const association = createDeviceAssociation({
      issuer: reference.issuerUrl,
      clientId: reference.desktopClientId,
      allowInsecureHttp: true,
    });
    const started = await association.start();
    const waiting = association.wait(started.handle, { signal: AbortSignal.timeout(10_000) });
    await reference.denyDevice(started.userCode);
    expect((await failure(waiting)).code).toBe(ErrorCode.AssociationDenied);

    const { session, store } = await login(reference);
    const result = await session.logout();
    expect(result).toMatchObject({ wasAssociated: true, revoked: true });
    expect(await store.load()).toBeUndefined();
    const client = createScanRequestClient({ platformUrl: reference.url, session });
    expect((await failure(client.list())).code).toBe(ErrorCode.NotAssociated);
  });
});
