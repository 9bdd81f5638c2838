import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { sortCapabilities, toHex, type Capability, type ReaderDriver } from '@tapline/core';
import { acr1252Driver } from '@tapline/driver-acr1252';
import { acr122Driver } from '@tapline/driver-acr122';
import { identivDriver } from '@tapline/driver-identiv';
import {
  createChipRegistry,
  createVirtualChip,
  startReferencePlatform,
  type ReferencePlatform,
  type VirtualChipKind,
} from '@tapline/test-fixtures';
import {
  acr1252Emulation,
  acr122Emulation,
  skipUnlessPcsc,
  startPcscd,
  utrust3720Emulation,
  type PcscdOptions,
  type PrivatePcscd,
} from '@tapline/test-fixtures/vpcd';
import { parseJson, runCli, type CliRun, type RunCliOptions } from './helpers/run-cli.js';

// End to end through a real pcscd: a private pcscd (its own mount namespace, never the machine's) with a vpcd reader
// that carries a real reader model's name, virtual cards that emulate the reader's firmware in front of the virtual
// chips (in worker threads), and the built CLI spawned with the pcscd's socket in its environment. Needs the built
// CLI (`npx tsc -b && npx oclif manifest`) and built test-fixtures (the card worker runs from its dist).
//
// One private pcscd per process at a time (libpcsclite keeps the socket path it read first), so the tests run one
// after another and each one stops its pcscd before the next starts another reader model.

/** Each test is a pcscd start (0.1–0.4 s) and one to four CLI runs (0.5–1.5 s each): 1–5 s on a 2-CPU machine. */
const TEST_MS = 20_000;
/** A CLI run that is stuck is killed well before the test times out, so that its output reaches the failure. */
const RUN_MS = 12_000;

const ACR122_READERS = ['ACS ACR122U PICC Interface 00 00', 'ACS ACR122U PICC Interface 00 01'];
const ACR1252_PICC = 'ACS ACR1252 Dual Reader [ACR1252 Dual Reader PICC]';
const UTRUST_READER = 'Identiv uTrust 3720 Contactless Reader 00 00';

// Only the PC/SC transport: the machine's USB readers (or its lack of a USB bus) must not change what these tests
// see, and the TRANSPORT_UNAVAILABLE warning the pcscd test looks for must be the PC/SC one.
const configDir = mkdtempSync(join(tmpdir(), 'tapline-pcscd-e2e-config-'));
writeFileSync(join(configDir, 'config.json'), JSON.stringify({ transports: ['pcsc'] }));
afterAll(() => rmSync(configDir, { recursive: true, force: true }));

interface ReaderJson {
  name: string;
  driver: string;
  capabilities: string[];
  forced?: boolean;
}

interface ScanJson {
  reader: string;
  uid: string;
  technology: string;
  driver: string;
  chip?: string;
  model?: string;
}

interface VerifyJson {
  result: string;
  chip: string;
  uid: string;
  sub: string;
  token: string;
  apdus: number;
}

interface ErrorJson {
  error: { code: string; message: string; details?: Record<string, unknown> };
}

/** The UID (hex) of the default virtual chip of `kind`: what the worker-thread card puts on the reader. */
function defaultUid(kind: VirtualChipKind): string {
  return toHex(createVirtualChip(kind).info.uid);
}

/** Starts a private pcscd for this test and stops it when the test ends, however it ends (its log on failure). */
async function pcscdFor(options: PcscdOptions): Promise<PrivatePcscd> {
  const pcscd = await startPcscd({ debug: true, ...options });
  onTestFinished(async (context) => {
    if (context.task.result?.state === 'fail') {
      console.error(`pcscd log (${pcscd.friendlyName}), last 4 KB:\n${pcscd.log().slice(-4096)}`);
    }
    await pcscd.stop();
  });
  return pcscd;
}

/** A reference platform that knows exactly the chips enrolled here (none by default), closed when the test ends. */
async function platformFor(kinds: readonly VirtualChipKind[]): Promise<ReferencePlatform> {
  const reference = await startReferencePlatform({ chips: createChipRegistry() });
  onTestFinished(() => reference.close());
  // The worker-thread card builds its chip by kind with default options, so the default chip's keys and UID match.
  for (const kind of kinds) reference.chips.enrollVirtualChip(createVirtualChip(kind));
  return reference;
}

/** Runs the CLI against `pcscd` (its socket, PC/SC only, a clean config). */
function cli(pcscd: PrivatePcscd, args: readonly string[], options: RunCliOptions = {}): Promise<CliRun> {
  return runCli(args, {
    killAfterMs: RUN_MS,
    ...options,
    env: { ...pcscd.env, TAPLINE_CONFIG_DIR: configDir, ...options.env },
  });
}

/** The arguments that point `verify` at the reference platform. */
function platformArgs(reference: ReferencePlatform): string[] {
  return ['--platform', reference.url.href, '--api-key', reference.apiKey];
}

/** `run` exited 0 and printed one JSON document. */
function okJson<T>(run: CliRun): T {
  expect(run.code, `exit ${run.code}\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`).toBe(0);
  return parseJson(run.stdout) as T;
}

/** A CLI run in the background, for tests that act on the reader while the CLI waits. */
interface BackgroundRun {
  readonly done: Promise<CliRun>;
  stderr(): string;
  /**
   * Resolves once `predicate` holds (polling every 10 ms); fails early, with the CLI's output, if the CLI ends
   * first, and after `timeoutMs`.
   */
  until(what: string, predicate: () => boolean | Promise<boolean>, timeoutMs?: number): Promise<void>;
}

function background(pcscd: PrivatePcscd, args: readonly string[], options: RunCliOptions = {}): BackgroundRun {
  let stderr = (): string => '';
  let ended: CliRun | undefined;
  const done = cli(pcscd, args, {
    ...options,
    onSpawn: (child, output) => {
      stderr = output.stderr;
      options.onSpawn?.(child, output);
    },
  });
  void done.then((run) => (ended = run));
  return {
    done,
    stderr: () => stderr(),
    async until(what, predicate, timeoutMs = 8000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        if (await predicate()) return;
        const output = ended && `exit ${ended.code}\nstdout:\n${ended.stdout}\nstderr:\n${ended.stderr}`;
        if (output !== undefined) throw new Error(`The CLI ended before ${what}:\n${output}`);
        if (Date.now() > deadline) throw new Error(`Not within ${timeoutMs} ms: ${what}. stderr so far:\n${stderr()}`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    },
  };
}

/**
 * The reader's capabilities as the CLI prints them: in core's stable order, with ISO 14443-4 (every PC/SC
 * contactless reader passes APDUs to an ISO-DEP chip), and nothing its driver does not declare.
 */
function expectCapabilities(reader: ReaderJson, driver: ReaderDriver): void {
  expect(reader.capabilities).toEqual(sortCapabilities(reader.capabilities as Capability[]));
  expect(reader.capabilities).toContain('iso14443-4');
  expect(driver.capabilities).toEqual(expect.arrayContaining(reader.capabilities));
}

describe.sequential('tapline through a real pcscd (vpcd reader emulations, spawned CLI)', { timeout: TEST_MS }, () => {
  // -------------------------------------------------------------------------------------------------------------
  // ACS ACR122U

  it('ACR122U: readers --json lists both slots by their real names, matched by the acr122 driver', async (context) => {
    skipUnlessPcsc(context);
    const pcscd = await pcscdFor({ emulation: acr122Emulation });
    expect(pcscd.readerNames).toEqual(ACR122_READERS);

    const json = okJson<{ readers: ReaderJson[]; warnings?: unknown[] }>(await cli(pcscd, ['readers', '--json']));
    expect(json.warnings).toBeUndefined();
    expect(json.readers.map((r) => r.name).sort()).toEqual(ACR122_READERS);
    for (const reader of json.readers) {
      expect(reader.driver).toBe('acr122');
      expect(reader.forced).toBeUndefined();
      expectCapabilities(reader, acr122Driver);
    }
    expect(json.readers[0]!.capabilities).toEqual(json.readers[1]!.capabilities);

    // The human form: NAME, DRIVER, capabilities, tab-separated.
    const human = await cli(pcscd, ['readers', '--reader', 'interface 00 01']);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toBe(`${ACR122_READERS[1]}\tacr122\t${json.readers[1]!.capabilities.join(',')}\n`);
  });

  it('ACR122U: scan --json of a Spark 2 names the chip, the driver and the default virtual UID', async (context) => {
    skipUnlessPcsc(context);
    const pcscd = await pcscdFor({ emulation: acr122Emulation });
    await pcscd.card().insert({ kind: 'spark2' });

    const json = okJson<ScanJson>(await cli(pcscd, ['scan', '--json']));
    expect(json).toMatchObject({
      reader: ACR122_READERS[0],
      uid: defaultUid('spark2'),
      technology: 'iso14443a',
      driver: 'acr122',
      chip: 'spark2',
      model: 'NTAG 424 DNA',
    });
  });

  it('ACR122U: scan --reader NAME picks the slot; a name that matches no reader is READER_NOT_FOUND', async (context) => {
    skipUnlessPcsc(context);
    const pcscd = await pcscdFor({ emulation: acr122Emulation });
    // Different chips on the two slots, so that a filter that does not filter shows.
    await pcscd.card({ slot: 0 }).insert({ kind: 'spark2' });
    await pcscd.card({ slot: 1 }).insert({ kind: 'apex' });

    const slot0 = okJson<ScanJson>(await cli(pcscd, ['scan', '--json', '--reader', 'ACR122U PICC Interface 00 00']));
    expect(slot0).toMatchObject({ reader: ACR122_READERS[0], uid: defaultUid('spark2'), driver: 'acr122' });
    expect(slot0.chip).toBe('spark2');

    // Case-insensitive, like every --reader.
    const slot1 = okJson<ScanJson>(await cli(pcscd, ['scan', '--json', '--reader', 'acr122u picc interface 00 01']));
    expect(slot1).toMatchObject({ reader: ACR122_READERS[1], uid: defaultUid('apex'), driver: 'acr122' });
    expect(slot1.chip).toBe('apex');

    // The scan says so instead of waiting for a tap that cannot come.
    const none = await cli(pcscd, ['scan', '--json', '--reader', 'no such reader', '--timeout', '1500']);
    expect(none.code, none.stderr).toBe(1);
    expect((parseJson(none.stdout) as ErrorJson).error.code).toBe('READER_NOT_FOUND');
  });

  it('ACR122U: --driver pcsc forces the generic driver onto both slots, and scan still reads the Spark 2', async (context) => {
    skipUnlessPcsc(context);
    const pcscd = await pcscdFor({ emulation: acr122Emulation });
    await pcscd.card().insert({ kind: 'spark2' });

    const forced = okJson<{ readers: ReaderJson[] }>(await cli(pcscd, ['readers', '--json', '--driver', 'pcsc']));
    expect(forced.readers.map((r) => [r.name, r.driver, r.forced]).sort()).toEqual(
      ACR122_READERS.map((name) => [name, 'pcsc', true]),
    );

    const generic = okJson<ScanJson>(await cli(pcscd, ['scan', '--json', '--driver', 'pcsc']));
    expect(generic).toMatchObject({
      reader: ACR122_READERS[0],
      uid: defaultUid('spark2'),
      technology: 'iso14443a',
      driver: 'pcsc',
      chip: 'spark2',
    });
  });

  it('ACR122U: verify --json of a Spark 2 against the reference platform succeeds in 3 APDUs', async (context) => {
    skipUnlessPcsc(context);
    const reference = await platformFor(['spark2']);
    const pcscd = await pcscdFor({ emulation: acr122Emulation });
    const card = pcscd.card();
    await card.insert({ kind: 'spark2' });

    const json = okJson<VerifyJson>(await cli(pcscd, ['verify', '--json', ...platformArgs(reference)]));
    expect(json).toMatchObject({ result: 'success', chip: 'spark2', uid: defaultUid('spark2'), apdus: 3 });
    expect(json.sub).toBe(reference.subFor(defaultUid('spark2')));
    expect(json.token.split('.')).toHaveLength(3);
    expect(reference.stats.sessions).toEqual({ succeeded: 1, failed: 0 });
    expect(reference.stats.requests['/challenge']).toBe(1);

    // The relay went through the reader: select, AuthenticateEV2First part 1 and part 2 reached the virtual card.
    const { apdus, errors } = await card.snapshot();
    const commands = apdus.map((a) => toHex(a.command));
    expect(commands.some((c) => c.startsWith('9071'))).toBe(true);
    expect(commands.some((c) => c.startsWith('90af'))).toBe(true);
    expect(errors).toEqual([]);
  });

  it('ACR122U: the Spark 2 removed mid-relay (its answer to 90 AF pending) fails verify with TAG_LOST, no session', async (context) => {
    skipUnlessPcsc(context);
    const reference = await platformFor(['spark2']);
    const pcscd = await pcscdFor({ emulation: acr122Emulation });
    // The second AuthenticateEV2First APDU never gets an answer: the chip is taken off while the reader waits for it.
    const card = pcscd.card({ rules: [{ prefix: '90AF', action: 'never' }] });
    await card.insert({ kind: 'spark2' });

    let reached = false;
    const seen = card.nextApdu('90AF', RUN_MS).then(
      () => (reached = true),
      () => undefined,
    );
    const verify = background(pcscd, ['verify', '--json', ...platformArgs(reference)]);
    await verify.until('the second authentication APDU (90 AF) reached the card', () => reached);
    await card.remove();
    const run = await verify.done;
    await seen;

    expect(run.code, `stdout:\n${run.stdout}\nstderr:\n${run.stderr}`).toBe(1);
    const { error } = parseJson(run.stdout) as ErrorJson;
    expect(error.code).toBe('TAG_LOST');
    expect(error.details).toMatchObject({ step: 'chip-answer', reader: ACR122_READERS[0] });
    // The platform issued its challenge, but nothing was submitted for it.
    expect(reference.stats.requests['/challenge']).toBe(1);
    expect(reference.stats.requests['/session'] ?? 0).toBe(0);
    expect(reference.stats.sessions.succeeded).toBe(0);
    expect(reference.stats.jwtsIssued).toBe(0);
  });

  it('ACR122U: pcscd killed and restarted while scan waits for a tap; the scan warns, reconnects and succeeds', async (context) => {
    skipUnlessPcsc(context);
    const pcscd = await pcscdFor({ emulation: acr122Emulation });
    const card = pcscd.card();

    const scan = background(pcscd, ['scan', '--json', '--timeout', '20000'], {
      // Debug logs say when the CLI holds the reader; they go to stderr, stdout stays one JSON document.
      env: { TAPLINE_LOG_LEVEL: 'debug' },
      killAfterMs: 17_000,
    });
    const warning = /^Warning \[TRANSPORT_UNAVAILABLE\]: .*pcscd/m;
    await scan.until('the CLI holds the ACR122U through the acr122 driver', () =>
      /reader attached \{"driver":"acr122","name":"ACS ACR122U PICC Interface 00 00"/.test(scan.stderr()),
    );
    expect(scan.stderr()).not.toMatch(warning);

    await pcscd.kill();
    await scan.until('the TRANSPORT_UNAVAILABLE warning', () => warning.test(scan.stderr()), 5000);
    await pcscd.restart();
    await card.insert({ kind: 'spark2' });
    const run = await scan.done;

    const json = okJson<ScanJson>(run);
    expect(json).toMatchObject({
      reader: ACR122_READERS[0],
      uid: defaultUid('spark2'),
      driver: 'acr122',
      chip: 'spark2',
    });
    // The warning came before the tag: between the kill and the result.
    const lines = run.stderr.split('\n');
    const warnedAt = lines.findIndex((line) => warning.test(line));
    const arrivedAt = lines.findIndex((line) => /tag arrived/.test(line));
    expect(warnedAt).toBeGreaterThanOrEqual(0);
    expect(arrivedAt).toBeGreaterThan(warnedAt);
  });

  // -------------------------------------------------------------------------------------------------------------
  // ACS ACR1252U

  it('ACR1252U: readers --json matches the PICC interface with acr1252, and scan reads a Spark 2', async (context) => {
    skipUnlessPcsc(context);
    const pcscd = await pcscdFor({ emulation: acr1252Emulation });
    expect(pcscd.readerNames).toEqual([`${ACR1252_PICC} 00 00`, `${ACR1252_PICC} 00 01`]);

    const json = okJson<{ readers: ReaderJson[] }>(await cli(pcscd, ['readers', '--json']));
    expect(json.readers.map((r) => r.name).sort()).toEqual([...pcscd.readerNames]);
    for (const reader of json.readers) {
      expect(reader.driver).toBe('acr1252');
      expectCapabilities(reader, acr1252Driver);
    }

    await pcscd.card().insert({ kind: 'spark2' });
    const scan = okJson<ScanJson>(await cli(pcscd, ['scan', '--json']));
    expect(scan).toMatchObject({
      reader: pcscd.readerName,
      uid: defaultUid('spark2'),
      technology: 'iso14443a',
      driver: 'acr1252',
      chip: 'spark2',
    });
  });

  it('ACR1252U: its SAM interface is no contactless reader: not listed, and not taken by the acr1252 driver', async (context) => {
    skipUnlessPcsc(context);
    // One vpcd entry per pcscd: the SAM interface gets a pcscd of its own, under libccid's name for it.
    const pcscd = await pcscdFor({
      emulation: acr1252Emulation,
      friendlyName: 'ACS ACR1252 Dual Reader [ACR1252 Dual Reader SAM]',
    });
    const run = await cli(pcscd, ['readers', '--json']);
    const json = okJson<{ readers: ReaderJson[] }>(run);
    expect(json.readers.filter((r) => r.driver === 'acr1252')).toEqual([]);
    // No driver serves a SAM slot (the generic one excludes them too), so the list is empty.
    expect(json.readers).toEqual([]);
  });

  // -------------------------------------------------------------------------------------------------------------
  // Identiv uTrust 3720 F

  it('uTrust 3720 F: readers --json shows the identiv driver, scan --json reads a Spark 1 (ISO 15693)', async (context) => {
    skipUnlessPcsc(context);
    const pcscd = await pcscdFor({ emulation: utrust3720Emulation });
    expect(pcscd.readerName).toBe(UTRUST_READER);

    const json = okJson<{ readers: ReaderJson[] }>(await cli(pcscd, ['readers', '--json']));
    expect(json.readers.map((r) => r.name).sort()).toEqual([...pcscd.readerNames]);
    for (const reader of json.readers) {
      expect(reader.driver).toBe('identiv');
      expectCapabilities(reader, identivDriver);
    }

    await pcscd.card().insert({ kind: 'spark1' });
    const scan = okJson<ScanJson>(await cli(pcscd, ['scan', '--json']));
    expect(scan).toMatchObject({
      reader: UTRUST_READER,
      uid: defaultUid('spark1'),
      technology: 'iso15693',
      driver: 'identiv',
      chip: 'spark1',
    });
  });

  it('uTrust 3720 F: verify --json of a Spark 1 (ISO 15693 AUTHENTICATE through the reader) succeeds in 1 APDU', async (context) => {
    skipUnlessPcsc(context);
    const reference = await platformFor(['spark1']);
    const pcscd = await pcscdFor({ emulation: utrust3720Emulation });
    const card = pcscd.card();
    await card.insert({ kind: 'spark1' });

    const readers = okJson<{ readers: ReaderJson[] }>(await cli(pcscd, ['readers', '--json', '--reader', '00 00']));
    expect(readers.readers).toHaveLength(1);
    expect(readers.readers[0]!.capabilities).toContain('iso15693');

    const json = okJson<VerifyJson>(await cli(pcscd, ['verify', '--json', ...platformArgs(reference)]));
    expect(json).toMatchObject({ result: 'success', chip: 'spark1', uid: defaultUid('spark1'), apdus: 1 });
    expect(json.sub).toBe(reference.subFor(defaultUid('spark1')));
    expect(reference.stats.sessions).toEqual({ succeeded: 1, failed: 0 });

    // The AUTHENTICATE (ISO 15693 command 35) reached the chip through one of the reader's ISO 15693 pseudo-APDUs
    // (FF FC, or the Traverse FF FD the driver prefers for custom commands).
    const { apdus, chipExchanges, errors } = await card.snapshot();
    expect(chipExchanges.some((e) => e.capability === 'iso15693' && e.frame[1] === 0x35)).toBe(true);
    expect(apdus.some((a) => /^ff(fc|fd)/.test(toHex(a.command)))).toBe(true);
    expect(errors).toEqual([]);
  });
});
