import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SIM_READER, parseJson, runCli, until } from './helpers/run-cli.js';

// These tests spawn the built CLI (`npx tsc -b && npx oclif manifest`; turbo's test task builds first).

describe('tapline scan', () => {
  it('--sim --json prints the tapped tag, and nothing else, on stdout', async () => {
    const run = await runCli(['scan', '--sim', '--json']);
    expect(run.code, run.stderr).toBe(0);
    const json = parseJson(run.stdout) as Record<string, unknown>;
    expect(json).toEqual({
      reader: SIM_READER,
      uid: '04a1b2c3d4e5f6',
      technology: 'iso14443a',
      driver: 'sim',
      atr: '3b8180018080',
      ats: '7777710280',
      sak: 0x20,
      atqa: '4403',
      protocols: ['iso14443-4', 'iso14443a-raw'],
    });
    expect(Object.keys(json)).toEqual([
      'reader',
      'uid',
      'technology',
      'driver',
      'atr',
      'ats',
      'sak',
      'atqa',
      'protocols',
    ]);
    // No spinner in JSON mode.
    expect(run.stderr).not.toMatch(/Waiting for a tag/);
    // The process ended on its own: bin/run.js's safety net for leaked handles did not have to fire.
    expect(run.stderr).not.toMatch(/kept the process alive/);
  });

  it('--sim prints a human headline with the UID', async () => {
    const run = await runCli(['scan', '--sim']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout.split('\n')[0]).toBe(`UID 04A1B2C3D4E5F6  iso14443a  on ${SIM_READER}`);
    expect(run.stdout).toMatch(/^ {2}ATR {3}3B8180018080$/m);
    expect(run.stdout).toMatch(/^ {2}SAK {3}20$/m);
    expect(run.stderr).toMatch(/Waiting for a tag/);
  });

  it('fails with DRIVER_NOT_FOUND (exit 1) for an unknown --driver, before waiting', async () => {
    const run = await runCli(['scan', '--sim', '--driver', 'nope']);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^Error \[DRIVER_NOT_FOUND\]: .*"nope"/m);
    expect(run.stderr).toMatch(/^Hint: Installed drivers: /m);
    expect(run.stdout).toBe('');
  });

  it('prints the error as JSON on stdout with --json', async () => {
    const run = await runCli(['scan', '--sim', '--driver', 'nope', '--json']);
    expect(run.code).toBe(1);
    expect(parseJson(run.stdout)).toMatchObject({ error: { code: 'DRIVER_NOT_FOUND', hint: expect.any(String) } });
  });

  it('times out with TIMEOUT (exit 1) and core hint when nothing is tapped', async () => {
    const run = await runCli(['scan', '--sim', '--sim-tap-after', 'never', '--timeout', '300', '--json']);
    expect(run.code).toBe(1);
    expect(run.ms).toBeLessThan(2000);
    const json = parseJson(run.stdout) as { error: { code: string; hint: string; details: { timeoutMs: number } } };
    expect(json.error.code).toBe('TIMEOUT');
    expect(json.error.hint).toMatch(/--timeout/);
    expect(json.error.details.timeoutMs).toBe(300);
  });

  it('accepts the simulator tap delay from TAPLINE_SIM_TAP_AFTER_MS', async () => {
    const run = await runCli(['scan', '--sim', '--timeout', '300', '--json'], {
      env: { TAPLINE_SIM_TAP_AFTER_MS: 'never' },
    });
    expect(run.code).toBe(1);
    expect(parseJson(run.stdout)).toMatchObject({ error: { code: 'TIMEOUT' } });
  });

  it('says READER_NOT_FOUND rather than TIMEOUT when no reader matches --reader', async () => {
    const run = await runCli(['scan', '--sim', '--reader', 'no such reader', '--timeout', '300']);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^Error \[READER_NOT_FOUND\]/m);
    expect(run.stderr).toMatch(/no such reader/);
  });

  it('exits 2 on an unknown flag, and on --timeout 0', async () => {
    const unknown = await runCli(['scan', '--sim', '--bogus']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/Nonexistent flag: --bogus/);
    const zero = await runCli(['scan', '--sim', '--timeout', '0']);
    expect(zero.code).toBe(2);
    expect(zero.stderr).toMatch(/--timeout/);
  });

  it('reports a parse error as INVALID_ARGUMENT JSON with --json (exit 2)', async () => {
    const run = await runCli(['scan', '--sim', '--timeout', 'soon', '--json']);
    expect(run.code).toBe(2);
    expect(parseJson(run.stdout)).toMatchObject({ error: { code: 'INVALID_ARGUMENT' } });
  });

  it('maps a malformed config file to INVALID_ARGUMENT (exit 2)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tapline-bad-config-'));
    writeFileSync(join(dir, 'config.json'), '{ not json');
    const run = await runCli(['scan', '--sim'], { env: { TAPLINE_CONFIG_DIR: dir } });
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^Error \[INVALID_ARGUMENT\]: The config file .* is not a JSON object\./m);
  });

  it('--trace logs to stderr and leaves the stdout JSON intact', async () => {
    const run = await runCli(['scan', '--sim', '--json', '--trace']);
    expect(run.code, run.stderr).toBe(0);
    expect(parseJson(run.stdout)).toMatchObject({ uid: '04a1b2c3d4e5f6' });
    // The tag's arrival, with its UID as spaced hex (frame lines `> …`/`< …` join once scan exchanges frames).
    expect(run.stderr).toMatch(/^\S+ (trace|debug) .*04 A1 B2 C3 D4 E5 F6/m);

    const viaEnv = await runCli(['scan', '--sim', '--json'], { env: { TAPLINE_TRACE: '1' } });
    expect(viaEnv.stderr).toMatch(/04 A1 B2 C3 D4 E5 F6/);
    const quiet = await runCli(['scan', '--sim', '--json']);
    expect(quiet.stderr).not.toMatch(/04 A1 B2 C3 D4 E5 F6/);
  });

  it('exits 130 on SIGINT while waiting for a tap, promptly', async () => {
    let sent = 0;
    const run = await runCli(['scan', '--sim', '--sim-tap-after', 'never', '--timeout', '60000'], {
      onSpawn: (child, output) => {
        void until(() => output.stderr().includes('Waiting for a tag')).then(() => {
          sent = Date.now();
          child.kill('SIGINT');
        });
      },
    });
    expect(run.code).toBe(130);
    expect(Date.now() - sent).toBeLessThan(1500);
    expect(run.stderr).toMatch(/\[ABORTED\]/);
  });
});
