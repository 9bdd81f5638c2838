import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI_ROOT, runCli } from './helpers/run-cli.js';

// These tests spawn the built CLI (`npx tsc -b && npx oclif manifest`; turbo's test task builds first).

describe('start-up', () => {
  const heavy = /rxjs|tsyringe|reflect-metadata|packages\/core\/|@tapline\/core|test-fixtures|driver-/;

  async function loadedModules(
    args: string[],
  ): Promise<{ run: Awaited<ReturnType<typeof runCli>>; modules: string[] }> {
    const log = join(mkdtempSync(join(tmpdir(), 'tapline-imports-')), 'imports.log');
    const run = await runCli(args, {
      env: { TAPLINE_IMPORT_LOG: log },
      nodeArgs: ['--import', join(CLI_ROOT, 'test', 'helpers', 'record-imports.mjs')],
    });
    return { run, modules: readFileSync(log, 'utf8').split('\n').filter(Boolean) };
  }

  it('--version prints tapline/<version> <platform>-<arch> node-<version> without loading core', async () => {
    const { run, modules } = await loadedModules(['--version']);
    expect(run.code).toBe(0);
    const { version } = JSON.parse(readFileSync(join(CLI_ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(run.stdout).toBe(`tapline/${version} ${process.platform}-${process.arch} node-${process.version}\n`);
    expect(modules.filter((m) => heavy.test(m))).toEqual([]);
  });

  it('--help and scan --help do not load rxjs, tsyringe, reflect-metadata or core', async () => {
    for (const args of [['--help'], ['scan', '--help']]) {
      const { run, modules } = await loadedModules(args);
      expect(run.code).toBe(0);
      expect(run.stdout).toMatch(/tapline/);
      expect(modules.filter((m) => heavy.test(m))).toEqual([]);
    }
  });

  it('the import recorder does see core when a command runs (control)', async () => {
    const { run, modules } = await loadedModules(['readers', '--sim', '--json']);
    expect(run.code).toBe(0);
    expect(modules.some((m) => /rxjs/.test(m))).toBe(true);
  });
});
