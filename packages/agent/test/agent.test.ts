import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { silentLogger, type Reader } from '@tapline/core';
import { createSimulation } from '@tapline/test-fixtures';
import { runAgent, type AgentLine } from '../src/index.js';

const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'tapline-agent.js');
// An empty config folder: the developer's own config must not change what the tests see.
const CONFIG_DIR = mkdtempSync(join(tmpdir(), 'tapline-agent-test-'));
process.env['TAPLINE_CONFIG_DIR'] = CONFIG_DIR;

describe('runAgent', () => {
  it('answers two simulated requests, one tap each, then exits when idle', async () => {
    const simulation = createSimulation({ tapAfterMs: 10 });
    const lines: AgentLine[] = [];
    const summary = await runAgent({
      simulation,
      requests: 2,
      exitWhenIdle: true,
      logger: silentLogger,
      write: () => undefined,
      onLine: (line) => {
        lines.push(line);
        // The chip stays on the reader; lift it and tap again for the next request (later, not from inside
        // the event: a real person cannot re-tap within the same instant either).
        if (line.event === 'completed') {
          setTimeout(() => {
            simulation.field.remove();
            simulation.field.present(simulation.chip);
          }, 5);
        }
      },
    });
    expect(summary).toEqual({ reason: 'idle', answered: 2, failed: 0, pending: 0 });
    const completed = lines.filter((l) => l.event === 'completed');
    expect(completed.map((l) => l['request'])).toEqual(['sim-1', 'sim-2']);
    expect(completed.map((l) => l['result'])).toEqual(['04517ca23b6e80', '04517ca23b6e80']);
    const scanEvents = lines.map((l) => l.event).filter((e) => e !== 'reader-attached');
    expect(scanEvents).toEqual(['ready', 'started', 'completed', 'ready', 'started', 'completed', 'idle', 'stopped']);
  });

  it('stops promptly when its signal aborts, with the readers closed', async () => {
    const simulation = createSimulation({ tapAfterMs: false });
    const controller = new AbortController();
    const readers: Reader[] = [];
    let attached!: () => void;
    const readerAttached = new Promise<void>((r) => (attached = r));
    const run = runAgent({
      simulation,
      requests: 1,
      signal: controller.signal,
      logger: silentLogger,
      write: () => undefined,
      onReaderEvent: (event) => {
        if (event.type !== 'attached') return;
        readers.push(event.reader);
        attached();
      },
    });
    await readerAttached;
    expect(readers[0]?.closed).toBe(false);
    const abortedAt = Date.now();
    controller.abort();
    const summary = await run;
    expect(Date.now() - abortedAt).toBeLessThan(500);
    expect(summary).toEqual({ reason: 'aborted', answered: 0, failed: 0, pending: 1 });
    expect(readers).toHaveLength(1);
    expect(readers.every((r) => r.closed)).toBe(true);
  });

  it('resolves at once when aborted before it starts', async () => {
    const controller = new AbortController();
    controller.abort();
    const summary = await runAgent({
      sim: true,
      signal: controller.signal,
      logger: silentLogger,
      write: () => undefined,
    });
    expect(summary.reason).toBe('aborted');
  });
});

interface Spawned {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

function spawnAgent(
  args: readonly string[],
  onSpawn?: (child: import('node:child_process').ChildProcess, stdout: () => string) => void,
): Promise<Spawned> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TAPLINE_')) env[k] = v;
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { ...env, TAPLINE_CONFIG_DIR: CONFIG_DIR },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
    onSpawn?.(child, () => stdout);
  });
}

function jsonLines(text: string): AgentLine[] {
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as AgentLine);
}

describe('tapline-agent', () => {
  it('--sim --sim-requests 1 --exit-when-idle --json answers the request and exits 0', async () => {
    const run = await spawnAgent(['--sim', '--sim-requests', '1', '--exit-when-idle', '--json']);
    expect(run.code, run.stderr).toBe(0);
    const lines = jsonLines(run.stdout);
    expect(lines.find((l) => l.event === 'completed')).toMatchObject({ request: 'sim-1', result: '04517ca23b6e80' });
    expect(lines.at(-1)).toMatchObject({ event: 'stopped', reason: 'idle', answered: 1 });
  });

  it('exits 0 within 2 s of SIGTERM while waiting for requests', async () => {
    let sentAt = 0;
    const run = await spawnAgent(['--sim', '--sim-requests', '0', '--json'], (child, stdout) => {
      const poll = setInterval(() => {
        if (!stdout().includes('"reader-attached"')) return;
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

  it('exits 2 with the usage on an unknown flag', async () => {
    const run = await spawnAgent(['--bogus']);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/Unknown option '--bogus'/);
    expect(run.stderr).toMatch(/^Usage: tapline-agent/m);
  });
});
