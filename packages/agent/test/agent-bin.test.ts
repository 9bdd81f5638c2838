import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { AgentLine } from '../src/index.js';

const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'tapline-agent.js');
// An empty config folder: the developer's own config must not change what the tests see.
const CONFIG_DIR = mkdtempSync(join(tmpdir(), 'tapline-agent-bin-'));

interface Spawned {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function spawnAgent(
  args: readonly string[],
  onSpawn?: (child: ChildProcess, stdout: () => string) => void,
): Promise<Spawned> {
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TAPLINE_')) env[k] = v;
    const child = spawn(process.execPath, [BIN, ...args], {
      env: {
        ...env,
        TAPLINE_CONFIG_DIR: CONFIG_DIR,
        TAPLINE_AGENT_SOCKET: join(CONFIG_DIR, `agent-${Math.random()}.sock`),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr });
    });
    onSpawn?.(child, () => stdout);
  });
}

const jsonLines = (text: string): AgentLine[] =>
  text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as AgentLine);

describe('tapline-agent', () => {
  it('--sim --sim-requests 2 --exit-when-idle --json: associates, answers both, last line {"answered":2,"failed":0,…}', async () => {
    const run = await spawnAgent(['--sim', '--sim-requests', '2', '--exit-when-idle', '--json']);
    expect(run.code, run.stderr).toBe(0);
    const lastLine = run.stdout.trimEnd().split('\n').at(-1) ?? '';
    expect(lastLine).toMatch(/^\{"answered":2,"failed":0,/);
    expect(JSON.parse(lastLine)).toMatchObject({
      answered: 2,
      failed: 0,
      pending: 0,
      reason: 'idle',
      event: 'stopped',
    });
    expect(jsonLines(run.stdout).filter((l) => l.event === 'completed')).toHaveLength(2);
  });

  it('exits 0 within 2 s of SIGTERM while waiting for requests', async () => {
    let sentAt = 0;
    const run = await spawnAgent(['--sim', '--sim-requests', '0', '--json'], (child, stdout) => {
      const poll = setInterval(() => {
        if (!stdout().includes('"idle"')) return;
        clearInterval(poll);
        sentAt = Date.now();
        child.kill('SIGTERM');
      }, 20);
    });
    expect(run.code, run.stderr).toBe(0);
    expect(sentAt).toBeGreaterThan(0);
    expect(Date.now() - sentAt).toBeLessThan(2000);
    expect(jsonLines(run.stdout).at(-1)).toMatchObject({ event: 'stopped', reason: 'aborted' });
  });

  it('without an association it keeps running and says how to associate', async () => {
    const run = await spawnAgent(
      ['--sim-readers', '1', '--platform', 'http://127.0.0.1:9', '--json'],
      (child, stdout) => {
        const poll = setInterval(() => {
          if (!stdout().includes('"reader-attached"')) return;
          clearInterval(poll);
          setTimeout(() => child.kill('SIGTERM'), 300);
        }, 20);
      },
    );
    expect(run.code, run.stderr).toBe(0);
    const unreachable = jsonLines(run.stdout).find((l) => l.event === 'platform-unreachable');
    expect(unreachable?.['error']).toMatchObject({
      code: 'NOT_ASSOCIATED',
      hint: expect.stringContaining('tapline login') as unknown,
    });
  });

  it('exits 2 with the usage on an unknown flag', async () => {
    const run = await spawnAgent(['--bogus']);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/Unknown option '--bogus'/);
    expect(run.stderr).toMatch(/^Usage: tapline-agent/m);
  });
});
