import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseJson, runCli } from './helpers/run-cli.js';

// These tests spawn the built CLI (`npx tsc -b && npx oclif manifest`; turbo's test task builds first).

describe('tapline drivers', () => {
  it('--json lists the built-in drivers with their match rules', async () => {
    const run = await runCli(['drivers', '--json']);
    expect(run.code, run.stderr).toBe(0);
    const { drivers } = parseJson(run.stdout) as {
      drivers: {
        id: string;
        name: string;
        description: string;
        capabilities: string[];
        matches: Record<string, unknown>[];
      }[];
    };
    const ids = drivers.map((d) => d.id);
    expect(ids).toEqual(expect.arrayContaining(['pcsc', 'acr122', 'acr1252', 'identiv', 'pn533-usb']));
    expect(new Set(ids).size).toBe(ids.length);
    for (const driver of drivers) {
      expect(driver).toMatchObject({
        id: expect.any(String),
        name: expect.any(String),
        description: expect.any(String),
        capabilities: expect.any(Array),
      });
      expect(driver.matches.length).toBeGreaterThan(0);
      for (const match of driver.matches) {
        expect(match['score']).toEqual(expect.any(Number));
        if (match['transport'] === 'pcsc') expect(match['nameIncludes']).toEqual(expect.any(String));
        else if (match['transport'] === 'usb') expect(match['usb']).toMatch(/^[0-9a-f]{4}:[0-9a-f]{4}$/);
        else expect(match).toMatchObject({ transport: 'virtual', kind: expect.any(String) });
      }
    }
    expect(drivers.find((d) => d.id === 'pcsc')?.matches).toMatchObject([
      { transport: 'pcsc', nameIncludes: '', score: 1 },
    ]);
    expect(drivers.find((d) => d.id === 'pn533-usb')?.matches.some((m) => m['transport'] === 'usb')).toBe(true);
  });

  it('prints a table in human mode', async () => {
    const run = await runCli(['drivers']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout.split('\n')[0]).toMatch(/^ID\s+NAME\s+CAPABILITIES\s+MATCHES$/);
    expect(run.stdout).toMatch(/^pcsc\s+/m);
  });
});

describe('community driver plugins', () => {
  // What `tapline plugins link <dir>` records, written directly: a linked oclif plugin whose `tapline:drivers` hook
  // returns one new driver, one whose id clashes with a built-in, and one with an invalid id.
  function linkedPlugin(): Record<string, string> {
    const plugin = mkdtempSync(join(tmpdir(), 'tapline-plugin-acme-'));
    writeFileSync(
      join(plugin, 'package.json'),
      JSON.stringify({
        name: 'tapline-plugin-acme',
        version: '1.0.0',
        type: 'module',
        oclif: { hooks: { 'tapline:drivers': './hook.js' } },
      }),
    );
    writeFileSync(
      join(plugin, 'hook.js'),
      `const driver = (id, name) => ({
        id, displayName: name, description: name + ' (test plugin)',
        matches: [{ transport: 'pcsc', nameIncludes: 'ACME' }], capabilities: ['iso14443-4'],
        open: () => Promise.reject(new Error('not in tests')),
      });
      export default async () => [driver('acme', 'Acme reader'), driver('acr122', 'Impostor'), driver('Bad Id', 'Bad')];\n`,
    );
    const data = mkdtempSync(join(tmpdir(), 'tapline-cli-data-'));
    writeFileSync(
      join(data, 'package.json'),
      JSON.stringify({
        private: true,
        oclif: { schema: 1, plugins: [{ name: 'tapline-plugin-acme', type: 'link', root: plugin }] },
      }),
    );
    return { TAPLINE_DATA_DIR: data };
  }

  it("adds a plugin's drivers through the tapline:drivers hook; a clash keeps the built-in, with a warning", async () => {
    const run = await runCli(['drivers', '--json'], { env: linkedPlugin() });
    expect(run.code, run.stderr).toBe(0);
    const { drivers } = parseJson(run.stdout) as { drivers: { id: string; name: string; package: string }[] };
    expect(drivers.find((d) => d.id === 'acme')).toMatchObject({ name: 'Acme reader', package: 'tapline-plugin-acme' });
    expect(drivers.filter((d) => d.id === 'acr122')).toEqual([
      expect.objectContaining({ name: 'ACS ACR122U', package: '@tapline/driver-acr122' }),
    ]);
    expect(drivers.some((d) => d.id === 'Bad Id')).toBe(false);
    expect(run.stderr).toMatch(
      /Driver id "acr122" from tapline-plugin-acme is already provided by @tapline\/driver-acr122/,
    );
    expect(run.stderr).toMatch(/Bad Id/);
  });
});
