import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SIM_READER, parseJson, runCli, until } from './helpers/run-cli.js';

// These tests spawn the built CLI (`npx tsc -b && npx oclif manifest`; turbo's test task builds first).

describe('tapline scan', () => {
  it.each([
    ['spark1', { chip: 'spark1', model: 'ICODE DNA', technology: 'iso15693', identificationExchanges: 0 }],
    ['spark2', { chip: 'spark2', model: 'NTAG 424 DNA', technology: 'iso14443a' }],
    ['spark2-413', { chip: 'spark2', model: 'NTAG 413 DNA' }],
    ['apex', { chip: 'apex', model: 'VivoKey Apex' }],
    ['ntag215', { chip: 'ntag21x', model: 'NTAG215', identificationExchanges: 1 }],
  ])('--sim --sim-tag %s reports the right chip', async (kind, expected) => {
    const run = await runCli(['scan', '--sim', '--sim-tag', kind, '--json']);
    expect(run.code, run.stderr).toBe(0);
    expect(parseJson(run.stdout)).toMatchObject(expected);
  });

  it('refuses an unknown --sim-tag as a usage error', async () => {
    const run = await runCli(['scan', '--sim', '--sim-tag', 'spark9']);
    expect(run.code).toBe(2);
  });

  it('--sim --json prints the tapped tag, and nothing else, on stdout', async () => {
    const run = await runCli(['scan', '--sim', '--json']);
    expect(run.code, run.stderr).toBe(0);
    const json = parseJson(run.stdout) as Record<string, unknown>;
    expect(json).toEqual({
      reader: SIM_READER,
      uid: '04517ca23b6e80',
      technology: 'iso14443a',
      driver: 'sim',
      atr: '3b8180018080',
      ats: '7777710280',
      sak: 0x20,
      atqa: '4403',
      protocols: ['iso14443-4', 'iso14443a-raw'],
      chip: 'spark2',
      model: 'NTAG 424 DNA',
      identificationExchanges: 3,
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
      'chip',
      'model',
      'identificationExchanges',
    ]);
    // No spinner in JSON mode.
    expect(run.stderr).not.toMatch(/Waiting for a tag/);
    // The process ended on its own: bin/run.js's safety net for leaked handles did not have to fire.
    expect(run.stderr).not.toMatch(/kept the process alive/);
  });

  it('--sim prints a human headline with the UID', async () => {
    const run = await runCli(['scan', '--sim']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout.split('\n')[0]).toBe(`UID 04517CA23B6E80  iso14443a  on ${SIM_READER}`);
    expect(run.stdout).toMatch(/^ {2}chip {2}spark2 \(NTAG 424 DNA\)$/m);
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
    expect(parseJson(run.stdout)).toMatchObject({ uid: '04517ca23b6e80' });
    // The tag's arrival with its UID as spaced hex, then identification's GetVersion frames both ways.
    expect(run.stderr).toMatch(/^\S+ (trace|debug) .*04 51 7C A2 3B 6E 80/m);
    expect(run.stderr).toMatch(/^\S+ trace +> 90 60 00 00 00\b/m);
    expect(run.stderr).toMatch(/^\S+ trace +< 04 04 02 30 00 11 05 91 AF\b/m);

    const viaEnv = await runCli(['scan', '--sim', '--json'], { env: { TAPLINE_TRACE: '1' } });
    expect(viaEnv.stderr).toMatch(/> 90 60 00 00 00/);
    const quiet = await runCli(['scan', '--sim', '--json']);
    expect(quiet.stderr).not.toMatch(/90 60 00 00 00|04 51 7C A2/);
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

describe('tapline scan through the raw-USB PN533 driver', () => {
  it('identifies a Spark 2 presented by the fake PN533 stick (driver pn533-usb, no pcscd)', async () => {
    const run = await runCli(['scan', '--sim', '--sim-reader', 'pn533-usb', '--json']);
    expect(run.code, run.stderr).toBe(0);
    expect(parseJson(run.stdout)).toMatchObject({
      driver: 'pn533-usb',
      uid: '04517ca23b6e80',
      chip: 'spark2',
      model: 'NTAG 424 DNA',
      protocols: ['iso14443-4', 'iso14443a-raw'],
    });
  });
});
