import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package folder (tests spawn the built CLI: run `npx tsc -b && npx oclif manifest` first). */
export const CLI_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = join(CLI_ROOT, 'bin', 'run.js');

/** What a CLI run produced. */
export interface CliRun {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Wall time from spawn to exit, in milliseconds. */
  readonly ms: number;
}

/** Options of {@link runCli}. */
export interface RunCliOptions {
  readonly env?: Readonly<Record<string, string>>;
  /** Extra node flags (before the script), such as `--import`. */
  readonly nodeArgs?: readonly string[];
  /** Kill the child after this many milliseconds (the test then fails on the exit code). Default 10000. */
  readonly killAfterMs?: number;
  /** Called with the child once it runs, e.g. to send it a signal. */
  readonly onSpawn?: (child: import('node:child_process').ChildProcess, output: { stderr: () => string }) => void;
}

// Every run gets an empty config folder and oclif data folder (where `tapline plugins install` puts plugins), so
// that a developer's own config and plugins never change what the tests see.
const configDir = mkdtempSync(join(tmpdir(), 'tapline-cli-config-'));
const dataDir = mkdtempSync(join(tmpdir(), 'tapline-cli-data-'));

/** A clean environment: no TAPLINE_* variables from the developer's shell. */
function cleanEnv(extra: Readonly<Record<string, string>> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('TAPLINE_')) env[key] = value;
  return { ...env, TAPLINE_CONFIG_DIR: configDir, TAPLINE_DATA_DIR: dataDir, NO_COLOR: '1', ...extra };
}

/** Runs `node bin/run.js …args` and collects its output. */
export function runCli(args: readonly string[], options: RunCliOptions = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(process.execPath, [...(options.nodeArgs ?? []), BIN, ...args], {
      cwd: CLI_ROOT,
      env: cleanEnv(options.env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const killer = setTimeout(() => child.kill('SIGKILL'), options.killAfterMs ?? 10_000);
    child.on('error', (error) => {
      clearTimeout(killer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(killer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started });
    });
    options.onSpawn?.(child, { stderr: () => stderr });
  });
}

/** Resolves once `predicate` holds, polling every 20 ms; rejects after `timeoutMs`. */
export async function until(predicate: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The simulator's reader name. */
export const SIM_READER = 'Tapline Simulated Reader';

/** Every capability, in core's stable order (what the simulated reader offers). */
export const ALL_CAPABILITIES = ['iso14443a-raw', 'iso14443-4', 'iso14443b', 'iso15693', 'felica', 'led', 'buzzer'];

/** Parses stdout that must be exactly one JSON document. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`stdout is not one JSON document:\n${text}`);
  }
}
