import type { ChildProcess } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stripVTControlCharacters } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  ErrorCode,
  createDeviceAssociation,
  isTaplineError,
  type DeviceAssociation,
  type TaplineError,
} from '@tapline/core';
import { startReferencePlatform, type ReferencePlatform, type ReferencePlatformOptions } from '@tapline/test-fixtures';
import { parseJson, runCli, type CliRun } from './helpers/run-cli.js';

// End to end: the built CLI (`npx tsc -b && npx oclif manifest`) associates with a reference platform on 127.0.0.1
// by the device flow, the test playing the phone (approveDevice / denyDevice), then lists scan requests, refreshes
// an expired access token, and logs out. Every run gets its own TAPLINE_CONFIG_DIR, so credentials.json is the
// run's own.

const posixOnly = process.platform === 'win32' ? describe.skip : describe;
/** Each test takes 1–4 s (a login waits for one device-flow poll, 1 s); the bound leaves room for a busy machine. */
const SUITE = { timeout: 10_000 };

/** How long one CLI run may take before it is killed (the test then fails on its exit code). */
const KILL_AFTER_MS = 8000;
/** How long a test waits for a line of output. */
const OUTPUT_WAIT_MS = 5000;

const SUB = /^[0-9a-f]{64}$/;
const ISO_DATE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

interface StoredCredentials {
  readonly issuer: string;
  readonly clientId: string;
  readonly sub: string;
  readonly scope: string;
  readonly accessToken: string;
  readonly accessTokenExpiresAt: number;
  readonly refreshToken: string;
  readonly associatedAt: number;
}

interface ErrorJson {
  readonly error: { readonly code: string; readonly message: string; readonly hint?: string };
}

interface AuthorizeEvent {
  readonly event: 'authorize';
  readonly verificationUri: string;
  readonly verificationUriComplete?: string;
  readonly userCode: string;
  readonly expiresAt: string;
}

interface LoginResult {
  readonly associated: true;
  readonly sub: string;
  readonly issuer: string;
  readonly scope: string;
  readonly already?: true;
}

// A preload for the spawned CLI that only observes: it records every device code the OpenID Provider hands out, so
// that the test can check that none reaches the output. The code is a secret of the CLI process; nothing else
// exposes it.
const DEVICE_CODE_HOOK = `
import { appendFileSync } from 'node:fs';
const out = process.env.ASSOCIATION_TEST_DEVICE_CODES;
const original = globalThis.fetch;
globalThis.fetch = async (input, init) => {
  const response = await original(input, init);
  const url = String(input instanceof Request ? input.url : input);
  if (out && url.includes('/device/auth')) {
    try {
      const body = await response.clone().json();
      if (typeof body.device_code === 'string') appendFileSync(out, body.device_code + '\\n');
    } catch {}
  }
  return response;
};
`;

let scratch: string;
let hook: string;

beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), 'tapline-cli-association-'));
  hook = join(scratch, 'device-code-hook.mjs');
  writeFileSync(hook, DEVICE_CODE_HOOK);
});

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function platform(options: ReferencePlatformOptions = {}): Promise<ReferencePlatform> {
  const reference = await startReferencePlatform(options);
  cleanups.push(() => reference.close());
  return reference;
}

/** A configuration folder that does not exist yet (so that the CLI creates it), and where its device codes go. */
interface Home {
  readonly dir: string;
  readonly credentials: string;
  readonly deviceCodes: string;
  readonly env: Readonly<Record<string, string>>;
}

let homes = 0;
function home(): Home {
  const root = join(scratch, `home-${++homes}`);
  mkdirSync(root);
  const dir = join(root, 'config');
  const deviceCodes = join(root, 'device-codes.txt');
  return {
    dir,
    credentials: join(dir, 'credentials.json'),
    deviceCodes,
    env: { TAPLINE_CONFIG_DIR: dir, ASSOCIATION_TEST_DEVICE_CODES: deviceCodes },
  };
}

function credentials(at: Home): StoredCredentials {
  return JSON.parse(readFileSync(at.credentials, 'utf8')) as StoredCredentials;
}

function deviceCodes(at: Home): string[] {
  return existsSync(at.deviceCodes) ? readFileSync(at.deviceCodes, 'utf8').split('\n').filter(Boolean) : [];
}

/** A CLI run in progress, its output readable while it runs. */
interface LiveRun {
  readonly child: ChildProcess;
  stdout(): string;
  readonly done: Promise<CliRun>;
}

function start(at: Home, args: readonly string[]): LiveRun {
  let child: ChildProcess | undefined;
  let stdout = '';
  let exited = false;
  const done = runCli(args, {
    env: at.env,
    nodeArgs: ['--import', hook],
    killAfterMs: KILL_AFTER_MS,
    onSpawn: (spawned) => {
      child = spawned;
      spawned.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    },
  }).finally(() => (exited = true));
  cleanups.push(() => {
    if (!exited) child?.kill('SIGKILL');
  });
  return { child: child!, stdout: () => stdout, done };
}

/** Waits for stdout to match `pattern`; fails early, with the output, when the CLI exits first. */
async function waitForOutput(run: LiveRun, pattern: RegExp, timeoutMs = OUTPUT_WAIT_MS): Promise<RegExpExecArray> {
  let exited: CliRun | undefined;
  void run.done.then((result) => (exited = result));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const match = pattern.exec(run.stdout());
    if (match) return match;
    if (exited) {
      throw new Error(
        `the CLI exited (${exited.code}) before printing ${pattern}:\n${exited.stdout}\n${exited.stderr}`,
      );
    }
    if (Date.now() > deadline) throw new Error(`no ${pattern} within ${timeoutMs} ms; stdout so far:\n${run.stdout()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function lines(text: string): string[] {
  return text.split('\n').filter((line) => line !== '');
}

/** `login --json` approved on the "phone": the authorize event, the last line parsed, and the run. */
async function login(
  reference: ReferencePlatform,
  at: Home,
  extra: readonly string[] = [],
): Promise<{ authorize: AuthorizeEvent; result: LoginResult; run: CliRun }> {
  const live = start(at, ['login', '--json', '--platform', reference.url.href, ...extra]);
  const [first] = await waitForOutput(live, /^.*\n/);
  const authorize = JSON.parse(first) as AuthorizeEvent;
  await reference.approveDevice(authorize.userCode);
  const run = await live.done;
  expect(run.code, run.stdout + run.stderr).toBe(0);
  const result = parseJson(lines(run.stdout).at(-1) ?? '') as LoginResult;
  return { authorize, result, run };
}

/** A run of `args` against `reference` with the configuration folder of `at`. */
function cli(reference: ReferencePlatform, at: Home, args: readonly string[]): Promise<CliRun> {
  return runCli([...args, '--platform', reference.url.href], {
    env: at.env,
    killAfterMs: KILL_AFTER_MS,
  });
}

function mode(path: string): number {
  return statSync(path).mode & 0o777;
}

/** The platform's OpenID Provider as the CLI's client, to check tokens from the test. */
function association(reference: ReferencePlatform): DeviceAssociation {
  return createDeviceAssociation({
    issuer: reference.issuerUrl,
    clientId: reference.desktopClientId,
    allowInsecureHttp: true,
  });
}

/** Whether the platform still honours `refreshToken` (it must not after a logout). */
async function refreshRefused(reference: ReferencePlatform, refreshToken: string): Promise<TaplineError> {
  try {
    await association(reference).refresh(refreshToken);
  } catch (error) {
    if (isTaplineError(error)) return error;
    throw error;
  }
  throw new Error('the refresh token still works');
}

posixOnly('tapline login', SUITE, () => {
  it('--json: the authorize event first, then the association; the tokens land in a 0600 file and nowhere else', async () => {
    const reference = await platform();
    const at = home();
    const before = Date.now();
    const live = start(at, ['login', '--json', '--platform', reference.url.href]);

    // The first line arrives while the command still waits for the approval, and is compact JSON.
    const [first] = await waitForOutput(live, /^.*\n/);
    const authorize = parseJson(first) as AuthorizeEvent;
    expect(first).toBe(`${JSON.stringify(authorize)}\n`);
    expect(Object.keys(authorize)).toEqual(
      authorize.verificationUriComplete === undefined
        ? ['event', 'verificationUri', 'userCode', 'expiresAt']
        : ['event', 'verificationUri', 'verificationUriComplete', 'userCode', 'expiresAt'],
    );
    expect(authorize.event).toBe('authorize');
    expect(authorize.verificationUri.startsWith(reference.issuerUrl.href)).toBe(true);
    if (authorize.verificationUriComplete !== undefined) {
      expect(authorize.verificationUriComplete.startsWith(authorize.verificationUri)).toBe(true);
      expect(authorize.verificationUriComplete).toContain(encodeURIComponent(authorize.userCode));
    }
    expect(authorize.userCode).toMatch(/^[A-Z]{4}-[A-Z]{4}$/);
    expect(authorize.expiresAt).toMatch(ISO_DATE);
    expect(Date.parse(authorize.expiresAt)).toBeGreaterThan(before + 60_000);
    expect(existsSync(at.credentials)).toBe(false);

    await reference.approveDevice(authorize.userCode);
    const run = await live.done;
    expect(run.code, run.stderr).toBe(0);
    const output = lines(run.stdout);
    expect(output).toHaveLength(2);
    const result = parseJson(output[1]!) as LoginResult;
    expect(result).toEqual({
      associated: true,
      sub: reference.accountSubject('alice', 'tapline-desktop'),
      issuer: reference.issuerUrl.href,
      scope: expect.any(String) as string,
    });
    expect(result.sub).toMatch(SUB);
    expect(result.scope.split(' ')).toEqual(expect.arrayContaining(['openid', 'scan_requests', 'offline_access']));
    expect(reference.stats.oidc).toMatchObject({ deviceAuthorizations: 1, approvals: 1, tokenGrants: 1 });

    // The file: the owner's only, in a folder that is the owner's only, and no temporary file left beside it.
    expect(mode(at.credentials)).toBe(0o600);
    expect(mode(at.dir)).toBe(0o700);
    expect(readdirSync(at.dir)).toEqual(['credentials.json']);
    const stored = credentials(at);
    expect(stored).toMatchObject({ issuer: result.issuer, clientId: 'tapline-desktop', sub: result.sub });
    expect(stored.associatedAt).toBeGreaterThanOrEqual(before);

    // No secret in the output: not the tokens, not the device code.
    const secrets = [stored.accessToken, stored.refreshToken, ...deviceCodes(at)];
    expect(deviceCodes(at)).toHaveLength(1);
    for (const secret of secrets) {
      expect(secret.length).toBeGreaterThan(20);
      expect(run.stdout).not.toContain(secret);
      expect(run.stderr).not.toContain(secret);
    }
  });

  it('prints the URL, the code and a QR code, and "Associated as …" once approved', async () => {
    const reference = await platform();
    const at = home();
    const live = start(at, ['login', '--platform', reference.url.href]);
    const [, userCode] = await waitForOutput(live, /enter the code +(\S+)\n[\s\S]*never asks for your PIN\.\n/);
    // The QR code keeps its colours (dark modules on a light background) even without a terminal.
    const out = stripVTControlCharacters(live.stdout());
    expect(out).toMatch(new RegExp(`^ {2}${reference.issuerUrl.href.replace(/[.]/g, '\\.')}/device$`, 'm'));
    // The QR code: rows of half-block characters.
    expect(out).toMatch(/^[ █▀▄]{20,}$/m);
    expect(lines(out).filter((line) => /[█▀▄]/.test(line)).length).toBeGreaterThan(10);

    await reference.approveDevice(userCode!);
    const run = await live.done;
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(
      new RegExp(`^Associated as ${reference.accountSubject('alice', 'tapline-desktop')}\\.$`, 'm'),
    );
    expect(run.stderr).toBe('');
    expect(mode(at.credentials)).toBe(0o600);
  });

  it('says so when already associated, without a new device login; --force associates again', async () => {
    const reference = await platform();
    const at = home();
    const first = await login(reference, at);
    const stored = credentials(at);
    const authorizations = reference.stats.oidc.deviceAuthorizations;

    const [json, human] = await Promise.all([cli(reference, at, ['login', '--json']), cli(reference, at, ['login'])]);
    expect(json.code, json.stderr).toBe(0);
    expect(parseJson(lines(json.stdout).at(-1) ?? '')).toEqual({
      associated: true,
      sub: first.result.sub,
      already: true,
    });
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toBe(
      `This computer is already associated (as ${first.result.sub}). Use --force to associate again.\n`,
    );
    expect(reference.stats.oidc.deviceAuthorizations).toBe(authorizations);
    expect(credentials(at)).toEqual(stored);

    const revocations = reference.stats.oidc.revocations;
    const again = await login(reference, at, ['--force']);
    expect(again.result).toMatchObject({ associated: true, sub: first.result.sub });
    expect(again.result.already).toBeUndefined();
    expect(again.run.stderr).toBe('');
    expect(reference.stats.oidc.deviceAuthorizations).toBe(authorizations + 1);
    const replaced = credentials(at);
    expect(replaced.refreshToken).not.toBe(stored.refreshToken);
    expect(mode(at.credentials)).toBe(0o600);
    // The association it replaced is revoked at the platform; the new one works.
    expect(reference.stats.oidc.revocations).toBeGreaterThan(revocations);
    expect((await refreshRefused(reference, stored.refreshToken)).code).toBe(ErrorCode.NotAssociated);
    expect(await association(reference).userinfo(replaced.accessToken)).toMatchObject({ sub: first.result.sub });
  });

  it('tokens of another client are not "already associated": login replaces them', async () => {
    const reference = await platform();
    const at = home();
    // As if TAPLINE_CLIENT_ID had named another client when these were stored.
    mkdirSync(at.dir, { mode: 0o700 });
    const other = {
      version: 1,
      issuer: reference.issuerUrl.href,
      clientId: 'someone-else',
      sub: 'f'.repeat(64),
      scope: 'openid offline_access scan_requests',
      accessToken: 'other-client-access-token',
      accessTokenExpiresAt: Date.now() + 600_000,
      refreshToken: 'other-client-refresh-token',
      associatedAt: Date.now() - 60_000,
    };
    writeFileSync(at.credentials, JSON.stringify(other), { mode: 0o600 });

    const { result } = await login(reference, at);
    expect(result.already).toBeUndefined();
    expect(credentials(at)).toMatchObject({ clientId: 'tapline-desktop', sub: result.sub });
    // Tokens of another client are replaced, never sent anywhere (not even to be revoked).
    expect(reference.stats.oidc.revocations).toBe(0);
  });

  it('declined on the phone: exit 1, ASSOCIATION_DENIED, nothing stored', async () => {
    const reference = await platform();
    const json = home();
    const human = home();
    const deny = async (at: Home, args: readonly string[], pattern: RegExp): Promise<CliRun> => {
      const live = start(at, ['login', ...args, '--platform', reference.url.href]);
      const [, userCode] = await waitForOutput(live, pattern);
      await reference.denyDevice(userCode!);
      return live.done;
    };
    const [jsonRun, humanRun] = await Promise.all([
      deny(json, ['--json'], /"userCode":"([^"]+)"/),
      deny(human, [], /enter the code +(\S+)\n/),
    ]);

    expect(jsonRun.code, jsonRun.stderr).toBe(1);
    const error = parseJson(lines(jsonRun.stdout).at(-1) ?? '') as ErrorJson;
    expect(error.error.code).toBe('ASSOCIATION_DENIED');
    expect(error.error.hint).toContain('tapline login');

    expect(humanRun.code).toBe(1);
    expect(humanRun.stderr).toMatch(/^Error \[ASSOCIATION_DENIED\]: /m);
    expect(humanRun.stdout).not.toMatch(/Associated as/);

    for (const at of [json, human]) expect(existsSync(at.credentials)).toBe(false);
    expect(reference.stats.oidc).toMatchObject({ deviceAuthorizations: 2, tokenGrants: 0 });
  });
});

posixOnly('tapline whoami', SUITE, () => {
  it('--json after login: the same sub, confirmed by the platform', async () => {
    const reference = await platform();
    const at = home();
    const before = Date.now();
    const { result } = await login(reference, at);

    const run = await cli(reference, at, ['whoami', '--json']);
    expect(run.code, run.stderr).toBe(0);
    const whoami = parseJson(run.stdout) as Record<string, unknown>;
    expect(whoami).toEqual({
      sub: result.sub,
      issuer: reference.issuerUrl.href,
      scope: result.scope,
      associatedAt: expect.stringMatching(ISO_DATE) as string,
      confirmed: true,
    });
    expect(Date.parse(whoami['associatedAt'] as string)).toBeGreaterThanOrEqual(before - 1);
    expect(Date.parse(whoami['associatedAt'] as string)).toBeLessThanOrEqual(Date.now());
    expect(run.stderr).toBe('');

    const human = await cli(reference, at, ['whoami']);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(new RegExp(`^Associated with ${reference.issuerUrl.href} as ${result.sub}$`, 'm'));
    expect(human.stdout).toMatch(/, confirmed by the platform$/m);
  });

  it('without credentials: whoami (and requests) exit 1, NOT_ASSOCIATED with the hint to run `tapline login`', async () => {
    const reference = await platform();
    const at = home();
    const [json, human, requests] = await Promise.all([
      cli(reference, at, ['whoami', '--json']),
      cli(reference, at, ['whoami']),
      cli(reference, at, ['requests', '--json']),
    ]);
    expect(requests.code).toBe(1);
    expect((parseJson(requests.stdout) as ErrorJson).error.code).toBe('NOT_ASSOCIATED');
    expect(json.code).toBe(1);
    const error = (parseJson(json.stdout) as ErrorJson).error;
    expect(error.code).toBe('NOT_ASSOCIATED');
    expect(error.hint).toContain('`tapline login`');

    expect(human.code).toBe(1);
    expect(human.stdout).toBe('');
    expect(human.stderr).toMatch(/^Error \[NOT_ASSOCIATED\]: /m);
    expect(human.stderr).toMatch(/^Hint: .*`tapline login`/m);
    expect(reference.stats.oidc.deviceAuthorizations).toBe(0);
    expect(existsSync(at.dir)).toBe(false);
  });
});

posixOnly('tapline requests', SUITE, () => {
  it('lists the pending scan requests in creation order; none is an empty list', async () => {
    const reference = await platform();
    const at = home();
    await login(reference, at);

    const [none, noneHuman] = await Promise.all([
      cli(reference, at, ['requests', '--json']),
      cli(reference, at, ['requests']),
    ]);
    expect(none.code, none.stderr).toBe(0);
    expect(parseJson(none.stdout)).toEqual({ requests: [] });
    expect(noneHuman.code, noneHuman.stderr).toBe(0);
    expect(noneHuman.stdout).toBe('No scan request is pending.\n');

    const door = reference.createScanRequest({
      purpose: 'Open the front door',
      relyingParty: { id: 'front-door', name: 'Front door' },
      acceptedChips: ['spark2', 'apex'],
      ttlMs: 120_000,
    });
    const laser = reference.createScanRequest({ purpose: 'Unlock the laser cutter', ttlMs: 60_000 });
    const [json, human] = await Promise.all([
      cli(reference, at, ['requests', '--json']),
      cli(reference, at, ['requests']),
    ]);
    expect(json.code, json.stderr).toBe(0);
    const expected = [door, laser].map((r) => ({
      id: r.id,
      relyingParty: { id: r.relyingParty.id, name: r.relyingParty.name },
      purpose: r.purpose,
      createdAt: r.createdAt.toISOString(),
      expiresAt: r.expiresAt.toISOString(),
      acceptedChips: [...r.acceptedChips],
      state: 'pending',
    }));
    expect(parseJson(json.stdout)).toEqual({ requests: expected });
    expect(expected[0]!.acceptedChips).toEqual(['spark2', 'apex']);

    expect(human.code, human.stderr).toBe(0);
    expect(lines(human.stdout)).toEqual([
      `${door.id}  Front door: Open the front door, expires ${door.expiresAt.toISOString()}, chips spark2/apex`,
      `${laser.id}  ${laser.relyingParty.name}: Unlock the laser cutter, expires ${laser.expiresAt.toISOString()}`,
    ]);
  });

  it('refreshes an expired access token and stores the rotated refresh token', async () => {
    const reference = await platform({ accessTokenTtlSec: 1 });
    const at = home();
    await login(reference, at);
    const stored = credentials(at);
    const request = reference.createScanRequest({ purpose: 'After the refresh' });

    // Let the access token expire (it lives one second).
    const expiredIn = stored.accessTokenExpiresAt - Date.now() + 50;
    if (expiredIn > 0) await new Promise((resolve) => setTimeout(resolve, Math.min(expiredIn, 1500)));
    expect(Date.now()).toBeGreaterThan(stored.accessTokenExpiresAt);
    const before = reference.stats.oidc;

    const run = await cli(reference, at, ['requests', '--json']);
    expect(run.code, run.stderr).toBe(0);
    const listed = (parseJson(run.stdout) as { requests: { id: string }[] }).requests;
    expect(listed.map((r) => r.id)).toEqual([request.id]);

    expect(reference.stats.oidc.refreshes).toBe(before.refreshes + 1);
    expect(reference.stats.oidc.refreshReuseDetected).toBe(0);
    const refreshed = credentials(at);
    expect(refreshed.refreshToken).not.toBe(stored.refreshToken);
    expect(refreshed.accessToken).not.toBe(stored.accessToken);
    expect(refreshed.accessTokenExpiresAt).toBeGreaterThan(stored.accessTokenExpiresAt);
    expect(refreshed).toMatchObject({ sub: stored.sub, associatedAt: stored.associatedAt });
    expect(mode(at.credentials)).toBe(0o600);
    expect(readdirSync(at.dir)).toEqual(['credentials.json']);
    for (const secret of [refreshed.accessToken, refreshed.refreshToken]) {
      expect(run.stdout + run.stderr).not.toContain(secret);
    }
  });
});

posixOnly('tapline logout', SUITE, () => {
  it('--json revokes at the platform and deletes the file; a second logout has nothing to do', async () => {
    const reference = await platform();
    const at = home();
    await login(reference, at);
    const stored = credentials(at);
    const revocations = reference.stats.oidc.revocations;

    const run = await cli(reference, at, ['logout', '--json']);
    expect(run.code, run.stderr).toBe(0);
    expect(parseJson(run.stdout)).toEqual({ loggedOut: true, revoked: true });
    expect(run.stderr).toBe('');
    expect(existsSync(at.credentials)).toBe(false);
    expect(readdirSync(at.dir)).toEqual([]);
    expect(reference.stats.oidc.revocations).toBeGreaterThan(revocations);
    expect((await refreshRefused(reference, stored.refreshToken)).code).toBe(ErrorCode.NotAssociated);

    const [again, human, whoami] = await Promise.all([
      cli(reference, at, ['logout', '--json']),
      cli(reference, at, ['logout']),
      cli(reference, at, ['whoami', '--json']),
    ]);
    expect(again.code, again.stderr).toBe(0);
    expect(parseJson(again.stdout)).toEqual({ loggedOut: false, revoked: false });
    expect(again.stderr).toBe('');
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toBe('This computer was not associated; nothing to do.\n');
    expect(whoami.code).toBe(1);
    expect((parseJson(whoami.stdout) as ErrorJson).error.code).toBe('NOT_ASSOCIATED');
  });

  it('with the platform unreachable: the tokens are still deleted, exit 0, revoked false and a warning', async () => {
    const reference = await platform();
    const json = home();
    await login(reference, json);
    // A second copy of the same association, for the human output.
    const human = home();
    mkdirSync(human.dir, { mode: 0o700 });
    copyFileSync(json.credentials, human.credentials);
    await reference.close();

    const [jsonRun, humanRun] = await Promise.all([
      cli(reference, json, ['logout', '--json']),
      cli(reference, human, ['logout']),
    ]);
    expect(jsonRun.code, jsonRun.stderr).toBe(0);
    expect(parseJson(jsonRun.stdout)).toEqual({ loggedOut: true, revoked: false });
    expect(jsonRun.stderr).toMatch(/^Warning \[PLATFORM_UNAVAILABLE\]: /m);

    expect(humanRun.code, humanRun.stderr).toBe(0);
    expect(humanRun.stdout).toBe(
      'Logged out here: the tokens were deleted, but the platform did not confirm the revocation.\n',
    );
    expect(humanRun.stderr).toMatch(/^Warning \[PLATFORM_UNAVAILABLE\]: /m);
    expect(humanRun.stderr).toMatch(/^Hint: Remove this device from your VivoKey profile/m);

    for (const at of [json, human]) {
      expect(existsSync(at.credentials)).toBe(false);
      expect(readdirSync(at.dir)).toEqual([]);
    }
  });
});
