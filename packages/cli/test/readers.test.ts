import { describe, expect, it } from 'vitest';
import { ALL_CAPABILITIES, SIM_READER, parseJson, runCli } from './helpers/run-cli.js';

// These tests spawn the built CLI (`npx tsc -b && npx oclif manifest`; turbo's test task builds first).

describe('tapline readers', () => {
  it('--sim --json lists the simulated reader exactly', async () => {
    const run = await runCli(['readers', '--sim', '--json']);
    expect(run.code, run.stderr).toBe(0);
    expect(parseJson(run.stdout)).toEqual({
      readers: [{ name: SIM_READER, driver: 'sim', capabilities: ALL_CAPABILITIES }],
    });
  });

  it('--sim prints NAME, DRIVER and capabilities, tab-separated', async () => {
    const run = await runCli(['readers', '--sim']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toBe(`${SIM_READER}\tsim\t${ALL_CAPABILITIES.join(',')}\n`);
  });

  it('--reader filters, and zero readers is exit 0 with a hint', async () => {
    const run = await runCli(['readers', '--sim', '--reader', 'nothing like it']);
    expect(run.code).toBe(0);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(/No readers found/);
    expect(run.stderr).toMatch(/^Hint: /m);
  });

  it('--driver forces a driver and says so in JSON', async () => {
    const run = await runCli(['readers', '--sim', '--driver', 'sim', '--json']);
    expect(run.code, run.stderr).toBe(0);
    expect(parseJson(run.stdout)).toEqual({
      readers: [{ name: SIM_READER, driver: 'sim', capabilities: ALL_CAPABILITIES, forced: true }],
    });
  });

  // On this machine pcscd is not running and there is no USB bus: both are warnings, never a crash.
  it('without --sim, reports unavailable transports as warnings and exits 0 quickly', async () => {
    const human = await runCli(['readers'], { killAfterMs: 8000 });
    expect(human.code, human.stderr).toBe(0);
    expect(human.ms).toBeLessThan(5000);
    expect(human.stderr).toMatch(/^Warning \[TRANSPORT_UNAVAILABLE\]/m);
    expect(human.stderr).not.toMatch(/kept the process alive/);

    const json = await runCli(['readers', '--json'], { killAfterMs: 8000 });
    expect(json.code, json.stderr).toBe(0);
    const parsed = parseJson(json.stdout) as { readers: unknown[]; warnings?: { code: string }[] };
    expect(Array.isArray(parsed.readers)).toBe(true);
    expect(parsed.warnings?.map((w) => w.code)).toContain('TRANSPORT_UNAVAILABLE');
  });
});
