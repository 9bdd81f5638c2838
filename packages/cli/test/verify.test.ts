import { createPublicKey, verify as verifySignature, type JsonWebKey } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ErrorCode,
  ReaderManager,
  createContainer,
  createVivoKeyAuthClient,
  isTaplineError,
  silentLogger,
  verifyChip,
  waitForTag,
  type PlatformClient,
  type ReaderHold,
  type RelayStep,
  type Tag,
  type TaplineError,
  type VerifyChipOptions,
} from '@tapline/core';
import {
  createSimulation,
  createVirtualChip,
  startReferencePlatform,
  type ReferencePlatform,
  type Simulation,
  type VirtualChip,
  type VirtualChipKind,
} from '@tapline/test-fixtures';
import { parseJson, runCli } from './helpers/run-cli.js';

// The spawned tests need the built CLI (`npx tsc -b && npx oclif manifest`; turbo's test task builds first).

const EXPECTED = {
  spark2: { uid: '04517ca23b6e80', apdus: 3 },
  spark1: { uid: 'e004011809a73b5c', apdus: 1 },
  apex: { uid: 'a5e1d0c3b2a19081', apdus: 3 },
} as const;
type Kind = keyof typeof EXPECTED;
const KINDS = Object.keys(EXPECTED) as Kind[];

const JSON_KEYS = ['result', 'chip', 'uid', 'sub', 'token', 'claims', 'timings', 'apdus'];
const TIMING_KEYS = [
  'inFieldMs',
  'relayInFieldMs',
  'chipMs',
  'networkMs',
  'networkInFieldMs',
  'challengeMs',
  'sessionMs',
  'verifyMs',
  'tapToResultMs',
];

interface VerifyJsonShape {
  result: string;
  chip: string;
  uid: string;
  sub: string;
  token: string;
  claims: Record<string, unknown>;
  timings: Record<string, number>;
  apdus: number;
}

interface ErrorJsonShape {
  error: { code: string; message: string; hint?: string; details?: Record<string, unknown> };
}

function decodePart(part: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as Record<string, unknown>;
}

/** An address nothing listens on: a port the OS just handed out and took back. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** For tests that spawn the CLI more than once: each run takes about a second, more on a loaded machine. */
const MULTI_RUN_MS = 30_000;

function scratchFile(name: string): string {
  return join(mkdtempSync(join(tmpdir(), 'tapline-verify-')), name);
}

describe('tapline verify --sim (spawned)', () => {
  it.each(KINDS)('--sim-tag %s --json: success, the right chip, a three-part JWT and a hex sub', async (kind) => {
    const run = await runCli(['verify', '--sim', '--sim-tag', kind, '--json']);
    expect(run.code, run.stderr).toBe(0);
    const json = parseJson(run.stdout) as VerifyJsonShape;
    expect(Object.keys(json)).toEqual(JSON_KEYS);
    expect(json).toMatchObject({ result: 'success', chip: kind, uid: EXPECTED[kind].uid, apdus: EXPECTED[kind].apdus });
    expect(json.sub).toMatch(/^[0-9a-f]{64}$/);
    // The reference platform is gone with the process: check the token's shape, its kid and its sub.
    const parts = json.token.split('.');
    expect(parts).toHaveLength(3);
    expect(decodePart(parts[0]!)).toMatchObject({ alg: 'ES256', kid: expect.stringMatching(/.+/) });
    expect(decodePart(parts[1]!)).toMatchObject({ sub: json.sub, atp: 'mutual' });
    expect(json.claims['sub']).toBe(json.sub);
    expect(Object.keys(json.timings)).toEqual(TIMING_KEYS);
    for (const value of Object.values(json.timings)) expect(value).toBeGreaterThanOrEqual(0);
    expect(json.timings['inFieldMs']).toBeGreaterThanOrEqual(json.timings['networkInFieldMs']!);
    // Nothing but the JSON on stdout, no spinner on stderr.
    expect(run.stderr).not.toMatch(/Waiting for a tag/);
    expect(run.stderr).not.toMatch(/kept the process alive/);
  });

  it('verifies a Spark 2 through the raw-USB PN533 driver (fake stick, emulator, no pcscd)', async () => {
    const run = await runCli(['verify', '--sim', '--sim-reader', 'pn533-usb', '--json']);
    expect(run.code, run.stderr).toBe(0);
    const json = parseJson(run.stdout) as VerifyJsonShape;
    expect(json).toMatchObject({ result: 'success', chip: 'spark2', uid: EXPECTED.spark2.uid, apdus: 3 });
    expect(json.sub).toMatch(/^[0-9a-f]{64}$/);
    expect(json.token.split('.')).toHaveLength(3);
  });

  it('prints one clear line and the timings for people, and no token', async () => {
    const run = await runCli(['verify', '--sim']);
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^Genuine VivoKey Spark 2 — chip [0-9a-f]{4}…[0-9a-f]{4} \(verified by the platform\)$/);
    expect(lines[1]).toMatch(
      /^ {2}in field [\d.]+ ms \(3 exchanges, [\d.]+ ms of it waiting for the platform\) · network [\d.]+ ms · tap to result [\d.]+ ms$/,
    );
    expect(lines[2]).toMatch(/^ {2}sub [0-9a-f]{64}$/);
    expect(run.stdout).not.toMatch(/eyJ/);
    expect(run.stderr).toMatch(/keep it on the reader/);
  });

  it(
    'gives a chip the same sub on every run (the reference platform plays one developer account)',
    async () => {
      const [one, two] = await Promise.all([
        runCli(['verify', '--sim', '--sim-tag', 'apex', '--json']),
        runCli(['verify', '--sim', '--sim-tag', 'apex', '--json']),
      ]);
      expect((parseJson(one.stdout) as VerifyJsonShape).sub).toBe((parseJson(two.stdout) as VerifyJsonShape).sub);
    },
    MULTI_RUN_MS,
  );

  it(
    '--once-per-chip: the second verification of a chip fails with ALREADY_USED (exit 1), another chip passes',
    async () => {
      const file = scratchFile('dispensed.jsonl');
      const first = await runCli(['verify', '--sim', '--once-per-chip', file, '--json']);
      expect(first.code, first.stderr).toBe(0);
      const { sub } = parseJson(first.stdout) as VerifyJsonShape;
      // The record is on disk by the time success is printed.
      expect(readFileSync(file, 'utf8')).toContain(`"sub":"${sub}"`);

      const second = await runCli(['verify', '--sim', '--once-per-chip', file, '--json']);
      expect(second.code).toBe(1);
      const { error } = parseJson(second.stdout) as ErrorJsonShape;
      expect(error.code).toBe('ALREADY_USED');
      expect(error.hint).toContain(file);
      expect(error.details).toMatchObject({ sub });

      const human = await runCli(['verify', '--sim', '--once-per-chip', file]);
      expect(human.code).toBe(1);
      expect(human.stderr).toMatch(/^Error \[ALREADY_USED\]: This chip was already verified/m);
      expect(human.stdout).not.toMatch(/Genuine/);

      const other = await runCli(['verify', '--sim', '--sim-tag', 'spark1', '--once-per-chip', file]);
      expect(other.code, other.stderr).toBe(0);
      expect(other.stdout).toMatch(/recorded in /);
      expect(readFileSync(file, 'utf8').trimEnd().split('\n')).toHaveLength(2);
    },
    MULTI_RUN_MS,
  );

  it('--once-per-chip with a file that is not a store: INVALID_ARGUMENT (exit 2) before anyone taps', async () => {
    const file = scratchFile('notes.txt');
    writeFileSync(file, 'my shopping list\n');
    const run = await runCli(['verify', '--sim', '--sim-tap-after', 'never', '--once-per-chip', file, '--json']);
    expect(run.code).toBe(2);
    expect((parseJson(run.stdout) as ErrorJsonShape).error.code).toBe('INVALID_ARGUMENT');
    expect(readFileSync(file, 'utf8')).toBe('my shopping list\n');
  });

  it(
    'the tag leaving between /challenge and the second APDU: TAG_LOST (exit 1) saying so, with the hint',
    async () => {
      const run = await runCli(['verify', '--sim', '--sim-remove-at', 'chip-answer']);
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(
        /^Error \[TAG_LOST\]: The tag left the reader after the platform's challenge, before the chip answered; nothing was submitted\.$/m,
      );
      expect(run.stderr).toMatch(/^Hint: Keep the implant on the reader until Tapline says it is done/m);
      expect(run.stdout).toBe('');

      const json = await runCli(['verify', '--sim', '--sim-tag', 'spark1', '--json'], {
        env: { TAPLINE_SIM_REMOVE_AT: 'chip-answer' },
      });
      expect(json.code).toBe(1);
      expect((parseJson(json.stdout) as ErrorJsonShape).error).toMatchObject({
        code: 'TAG_LOST',
        details: { step: 'chip-answer' },
      });
    },
    MULTI_RUN_MS,
  );

  it('the tag leaving after the chip answered does not matter', async () => {
    const run = await runCli(['verify', '--sim', '--sim-remove-at', 'chip-released', '--json']);
    expect(run.code, run.stderr).toBe(0);
  });

  it('refuses a chip the platform cannot verify with UNSUPPORTED_CAPABILITY (exit 1)', async () => {
    const run = await runCli(['verify', '--sim', '--sim-tag', 'ntag215', '--json']);
    expect(run.code).toBe(1);
    const { error } = parseJson(run.stdout) as ErrorJsonShape;
    expect(error.code).toBe('UNSUPPORTED_CAPABILITY');
    expect(error.message).toMatch(/Spark 1, Spark 2 and Apex/);
  });

  it('hides the test-only flag from --help', async () => {
    const run = await runCli(['verify', '--help']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/--api-key/);
    expect(run.stdout).toMatch(/--once-per-chip/);
    expect(run.stdout).not.toMatch(/sim-remove-at/);
  });
});

describe('tapline verify against a platform (spawned)', () => {
  it(
    'without --sim and without an API key: INVALID_ARGUMENT (exit 2) with a hint, before waiting',
    async () => {
      const run = await runCli(['verify', '--timeout', '60000']);
      expect(run.code).toBe(2);
      expect(run.ms).toBeLessThan(5000);
      expect(run.stderr).toMatch(/^Error \[INVALID_ARGUMENT\]: `tapline verify` needs a VivoKey API key\.$/m);
      expect(run.stderr).toMatch(/^Hint: Pass --api-key KEY, set TAPLINE_API_KEY/m);
      const json = await runCli(['verify', '--json']);
      expect(json.code).toBe(2);
      expect((parseJson(json.stdout) as ErrorJsonShape).error.code).toBe('INVALID_ARGUMENT');
    },
    MULTI_RUN_MS,
  );

  it('refuses a plain-http platform that is not this machine (exit 2)', async () => {
    const run = await runCli(['verify', '--api-key', 'k', '--platform', 'http://auth.example.com', '--json']);
    expect(run.code).toBe(2);
    expect((parseJson(run.stdout) as ErrorJsonShape).error.message).toMatch(/https/);
  });

  it(
    'never prints the API key: a recognisable key against a closed port gives PLATFORM_UNAVAILABLE (exit 1)',
    async () => {
      const key = 'TAPLINE-TEST-KEY-5d41402abc4b2a76b9719d911017c592';
      const platform = `http://127.0.0.1:${await closedPort()}`;
      const runs = await Promise.all([
        runCli(['verify', '--sim', '--api-key', key, '--platform', platform, '--json']),
        runCli(['verify', '--sim', '--api-key', key, '--platform', platform, '--trace'], {
          env: { TAPLINE_LOG_LEVEL: 'debug' },
        }),
        runCli(['verify', '--sim', '--platform', platform], {
          env: { TAPLINE_API_KEY: key, TAPLINE_LOG_LEVEL: 'trace' },
        }),
      ]);
      for (const run of runs) {
        expect(run.code, run.stderr).toBe(1);
        expect(run.stdout + run.stderr).toMatch(/PLATFORM_UNAVAILABLE/);
        expect(run.stdout).not.toContain(key);
        expect(run.stderr).not.toContain(key);
        expect(run.stdout + run.stderr).not.toContain(key.slice(-16));
      }
      expect((parseJson(runs[0].stdout) as ErrorJsonShape).error.details).toMatchObject({ step: 'platform-challenge' });
    },
    MULTI_RUN_MS,
  );
});

// ---------------------------------------------------------------------------------------------------------------
// In process: the simulator, the reference platform and the HTTP client, with verifyChip.

interface Stack {
  readonly reference: ReferencePlatform;
  readonly simulation: Simulation;
  readonly tag: Tag;
  readonly client: PlatformClient;
  /** Every frame the chip received, as hex. */
  readonly frames: string[];
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function stack(kind: VirtualChipKind, jwksFrom?: ReferencePlatform): Promise<Stack> {
  const reference = await startReferencePlatform();
  cleanups.push(() => reference.close());
  const frames: string[] = [];
  const inner = createVirtualChip(kind);
  const chip: VirtualChip = {
    info: inner.info,
    handle: (capability, frame) => {
      frames.push(Buffer.from(frame).toString('hex'));
      return inner.handle(capability, frame);
    },
  };
  const simulation = createSimulation({ chip, tapAfterMs: 1 });
  cleanups.push(() => simulation.stop());
  const container = createContainer({
    logger: silentLogger,
    withoutGenericPcsc: true,
    drivers: simulation.drivers,
    deviceSources: simulation.deviceSources,
    config: { transports: [] },
  });
  const manager = container.resolve(ReaderManager);
  const hold: ReaderHold = manager.hold();
  cleanups.push(() => hold.release());
  const tag = await waitForTag(manager.tags$, { timeoutMs: 2000 });
  const client = createVivoKeyAuthClient({
    baseUrl: reference.url,
    apiKey: reference.apiKey,
    jwksUrl: (jwksFrom ?? reference).jwksUrl,
  });
  return { reference, simulation, tag, client, frames };
}

async function failure(promise: Promise<unknown>): Promise<TaplineError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isTaplineError(error)) throw new Error(`expected a TaplineError, got ${String(error)}`);
  return error;
}

/** Checks an ES256 JWT's signature with node:crypto alone, against the JWKS the platform serves over HTTP. */
async function verifyWithJwks(token: string, jwksUrl: URL): Promise<Record<string, unknown>> {
  const jwks = (await (await fetch(jwksUrl)).json()) as { keys: (JsonWebKey & { kid?: string })[] };
  const [header, payload, signature] = token.split('.') as [string, string, string];
  const { kid, alg } = decodePart(header);
  expect(alg).toBe('ES256');
  const jwk = jwks.keys.find((k) => k.kid === kid);
  expect(jwk, `kid ${String(kid)} in the JWKS`).toBeDefined();
  const valid = verifySignature(
    'sha256',
    Buffer.from(`${header}.${payload}`),
    { key: createPublicKey({ key: jwk!, format: 'jwk' }), dsaEncoding: 'ieee-p1363' },
    Buffer.from(signature, 'base64url'),
  );
  expect(valid).toBe(true);
  return decodePart(payload);
}

describe('verifyChip through the simulator, the reference platform and the HTTP client', () => {
  it.each(KINDS)(
    '%s: success, the expected APDU count, a token whose signature verifies with the JWKS',
    async (kind) => {
      const { reference, tag, client, frames } = await stack(kind);
      const result = await verifyChip(tag, client);
      expect(result).toMatchObject({
        result: 'success',
        chip: kind,
        uid: EXPECTED[kind].uid,
        apdus: EXPECTED[kind].apdus,
      });
      expect(frames).toHaveLength(EXPECTED[kind].apdus);
      const claims = await verifyWithJwks(result.token, reference.jwksUrl);
      expect(claims).toMatchObject({ sub: result.sub, iss: reference.issuer, dev_id: reference.devId });
      expect(result.sub).toBe(reference.subFor(EXPECTED[kind].uid));
      expect(reference.stats.sessions).toEqual({ succeeded: 1, failed: 0 });
    },
  );

  it('the tag leaving between /challenge and the second APDU: TAG_LOST, and the platform saw no /session', async () => {
    const { reference, simulation, tag, client, frames } = await stack('spark2');
    const onStep = (step: RelayStep): void => {
      if (step === 'chip-answer') simulation.field.remove();
    };
    const error = await failure(verifyChip(tag, client, { onStep }));
    expect(error.code).toBe(ErrorCode.TagLost);
    expect(error.message).toMatch(/after the platform's challenge, before the chip answered; nothing was submitted/);
    expect(frames).toHaveLength(2);
    expect(reference.stats.requests['/challenge']).toBe(1);
    expect(reference.stats.requests['/session'] ?? 0).toBe(0);
    expect(reference.stats.tokensConsumed).toBe(0);
  });

  it('the tag leaving while the platform is slow to challenge: TAG_LOST without waiting for it, no /session', async () => {
    const { reference, simulation, tag, client } = await stack('spark2');
    reference.faults.set({ kind: 'latency', ms: 3000, path: '/challenge' });
    const options: VerifyChipOptions = {
      onStep: (step) => {
        if (step === 'platform-challenge') setTimeout(() => simulation.field.remove(), 30);
      },
    };
    const started = Date.now();
    const error = await failure(verifyChip(tag, client, options));
    expect(Date.now() - started).toBeLessThan(2000);
    expect(error.code).toBe(ErrorCode.TagLost);
    expect(error.details['step']).toBe('platform-challenge');
    expect(reference.stats.requests['/session'] ?? 0).toBe(0);
  });

  it('a 5xx at /challenge: PLATFORM_UNAVAILABLE, the chip left alone after SELECT and part 1', async () => {
    const { reference, tag, client, frames } = await stack('spark2');
    reference.faults.set({ kind: 'status', status: 503, path: '/challenge' });
    const error = await failure(verifyChip(tag, client));
    expect(error.code).toBe(ErrorCode.PlatformUnavailable);
    expect(frames).toEqual(['00a4040c07d276000085010100', '9071000002020000']);
    expect(reference.stats.requests['/session'] ?? 0).toBe(0);
  });

  it('a /session that failed after the platform consumed the token is not sent again', async () => {
    const { reference, tag, client } = await stack('apex');
    reference.faults.set({ kind: 'status', status: 502, path: '/session', processed: true });
    const error = await failure(verifyChip(tag, client));
    expect(error.code).toBe(ErrorCode.PlatformUnavailable);
    expect(reference.stats.requests['/session']).toBe(1);
  });

  it('a token that does not verify against the JWKS in use: TOKEN_INVALID', async () => {
    const impostor = await startReferencePlatform();
    cleanups.push(() => impostor.close());
    const { tag, client } = await stack('spark1', impostor);
    const error = await failure(verifyChip(tag, client));
    expect(error.code).toBe(ErrorCode.TokenInvalid);
    expect(error.details['step']).toBe('verify-token');
  });

  it.each([
    ['spark2', ErrorCode.AuthenticationFailed, 5],
    ['spark1', ErrorCode.PlatformRejected, 4],
  ] as const)('a %s holding another key fails with %s, never with a token', async (kind, code, slots) => {
    const reference = await startReferencePlatform();
    cleanups.push(() => reference.close());
    const keys = Array.from({ length: slots }, (_, n) => new Uint8Array(16).fill(n + 1));
    const simulation = createSimulation({ chip: createVirtualChip(kind, { keys }), tapAfterMs: 1 });
    cleanups.push(() => simulation.stop());
    const container = createContainer({
      logger: silentLogger,
      withoutGenericPcsc: true,
      drivers: simulation.drivers,
      deviceSources: simulation.deviceSources,
      config: { transports: [] },
    });
    const manager = container.resolve(ReaderManager);
    const hold = manager.hold();
    cleanups.push(() => hold.release());
    const tag = await waitForTag(manager.tags$, { timeoutMs: 2000 });
    const client = createVivoKeyAuthClient({ baseUrl: reference.url, apiKey: reference.apiKey });
    // Spark 2: the chip refuses the platform's half (91 AE). Spark 1: the platform refuses the chip's TResponse.
    expect((await failure(verifyChip(tag, client))).code).toBe(code);
    expect(reference.stats.sessions.succeeded).toBe(0);
    expect(reference.stats.jwtsIssued).toBe(0);
  });
});

describe('tapline verify leaves nothing behind', () => {
  it('the store file has no leftovers after a run', async () => {
    const file = scratchFile('once.jsonl');
    const run = await runCli(['verify', '--sim', '--once-per-chip', file, '--json']);
    expect(run.code, run.stderr).toBe(0);
    expect(existsSync(`${file}.lock`)).toBe(false);
  });
});
