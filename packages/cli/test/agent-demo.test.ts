import { describe, expect, it } from 'vitest';
import { runCli } from './helpers/run-cli.js';

describe('tapline agent (the demo)', () => {
  it('--sim --sim-requests 3 --exit-when-idle --json: answers all three, one JSON line per event, summary last', async () => {
    const run = await runCli(
      ['agent', '--sim', '--sim-requests', '3', '--exit-when-idle', '--json', '--no-control-socket'],
      {
        killAfterMs: 20_000,
      },
    );
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stdout.trimEnd().split('\n');
    expect(lines.at(-1)).toMatch(/^\{"answered":3,"failed":0,"pending":0,/);
    const events = lines.map((line) => (JSON.parse(line) as { event: string }).event);
    expect(events.filter((e) => e === 'completed')).toHaveLength(3);
    expect(events).toContain('choice-needed');
    expect(events).not.toContain('failed');
  }, 25_000);

  it('human output says who asks and why, and how to pick when several are pending', async () => {
    const run = await runCli(['agent', '--sim', '--sim-requests', '2', '--exit-when-idle', '--no-control-socket'], {
      killAfterMs: 20_000,
    });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/choice needed: 2 requests are pending \(pick one with `tapline agent choose ID`\):/);
    expect(run.stdout).toMatch(/Tapline demo: Demo scan request 1 of 2 \(sr_[\w-]+\)/);
    expect(run.stdout).toMatch(/completed: request sr_[\w-]+ answered with a Spark 2 in \d+ ms/);
    expect(run.stdout.trimEnd().split('\n').at(-1)).toBe('stopped: idle, 2 answered, 0 failed');
  }, 25_000);

  it('--sim-tag spark1 answers with a Spark 1 (ISO 15693) through the same relay', async () => {
    const run = await runCli(
      [
        'agent',
        '--sim',
        '--sim-tag',
        'spark1',
        '--sim-requests',
        '1',
        '--exit-when-idle',
        '--json',
        '--no-control-socket',
      ],
      { killAfterMs: 20_000 },
    );
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stdout
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines.find((l) => l['event'] === 'completed')?.['result']).toMatchObject({ chip: 'spark1' });
    expect(lines.at(-1)).toMatchObject({ answered: 1, failed: 0 });
  }, 25_000);
});
