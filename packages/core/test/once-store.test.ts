import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ErrorCode, OnceStore, type TaplineError } from '../src/index.js';
import { deadPid, failure } from './helpers.js';

const SUB_A = '1bae684d39b946ee61bad21655355fc5eff0ecc78c273343d4b208942346df1c';
const SUB_B = 'c0ffee4d39b946ee61bad21655355fc5eff0ecc78c273343d4b208942346df1c';

/** The built module, for child processes (they run plain node; the test task builds core first). */
const BUILT = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'runtime', 'once-store.js');

function scratch(): string {
  return join(mkdtempSync(join(tmpdir(), 'tapline-once-')), 'dispensed.jsonl');
}

describe('OnceStore', () => {
  it('records a chip, then refuses it with ALREADY_USED and a hint naming the file', async () => {
    const file = scratch();
    const store = new OnceStore(file, { clock: { now: () => Date.UTC(2025, 0, 2, 3, 4, 5) } });
    expect(await store.record(SUB_A)).toEqual({ sub: SUB_A, at: '2025-01-02T03:04:05.000Z' });
    const error = await failure(store.record(SUB_A));
    expect(error.code).toBe(ErrorCode.AlreadyUsed);
    expect(error.message).toMatch(/already verified on 2025-01-02T03:04:05.000Z/);
    expect(error.hint).toBe(`To allow it again, delete the line with "sub":"${SUB_A}" from ${file}.`);
    expect(error.details).toMatchObject({ sub: SUB_A, file });
    // Another chip is still welcome.
    await store.record(SUB_B);
    expect(readFileSync(file, 'utf8')).toBe(
      `{"sub":"${SUB_A}","at":"2025-01-02T03:04:05.000Z"}\n{"sub":"${SUB_B}","at":"2025-01-02T03:04:05.000Z"}\n`,
    );
    // The lock is gone once a call is over.
    expect(existsSync(`${file}.lock`)).toBe(false);
  });

  it('survives a reload: a new store on the same file remembers', async () => {
    const file = scratch();
    await new OnceStore(file).record(SUB_A);
    const reloaded = new OnceStore(file);
    expect((await reloaded.list()).map((r) => r.sub)).toEqual([SUB_A]);
    expect(await reloaded.get(SUB_A)).toMatchObject({ sub: SUB_A });
    expect(await reloaded.get(SUB_B)).toBeUndefined();
    expect((await failure(reloaded.record(SUB_A))).code).toBe(ErrorCode.AlreadyUsed);
  });

  it('allows a chip again once its line is deleted by hand', async () => {
    const file = scratch();
    const store = new OnceStore(file);
    await store.record(SUB_A);
    await store.record(SUB_B);
    writeFileSync(file, readFileSync(file, 'utf8').split('\n').slice(1).join('\n'));
    await store.record(SUB_A);
    expect((await store.list()).map((r) => r.sub)).toEqual([SUB_B, SUB_A]);
  });

  it('a missing file is an empty store; a file without a final newline is appended to correctly', async () => {
    const file = scratch();
    expect(await new OnceStore(file).list()).toEqual([]);
    writeFileSync(file, `{"sub":"${SUB_A}","at":"x"}`);
    await new OnceStore(file).record(SUB_B);
    expect((await new OnceStore(file).list()).map((r) => r.sub)).toEqual([SUB_A, SUB_B]);
  });

  it('refuses a file that is not a store (INVALID_ARGUMENT) and leaves it untouched', async () => {
    const file = scratch();
    writeFileSync(file, `{"sub":"${SUB_A}","at":"x"}\nthis is my shopping list\n`);
    const error = await failure(new OnceStore(file).record(SUB_B));
    expect(error.code).toBe(ErrorCode.InvalidArgument);
    expect(error.message).toMatch(/Line 2 of .*dispensed\.jsonl/);
    expect(readFileSync(file, 'utf8')).toBe(`{"sub":"${SUB_A}","at":"x"}\nthis is my shopping list\n`);
  });

  it('says INVALID_ARGUMENT for a directory that does not exist', async () => {
    const file = join(scratch(), 'missing', 'store.jsonl');
    const error = await failure(new OnceStore(file).record(SUB_A));
    expect(error.code).toBe(ErrorCode.InvalidArgument);
    expect(error.hint).toMatch(/directory/);
  });

  it('a simulated crash mid-write (torn and truncated temporary files, a dead lock owner) loses nothing', async () => {
    const file = scratch();
    const store = new OnceStore(file);
    await store.record(SUB_A);
    const dir = dirname(file);
    // What a writer killed before its rename leaves: temporary files, one torn mid-line, one empty, and its lock.
    writeFileSync(
      join(dir, '.dispensed.jsonl.4242.aaaaaaaaaaaa.tmp'),
      `{"sub":"${SUB_A}","at":"x"}\n{"sub":"${SUB_B}","a`,
    );
    writeFileSync(join(dir, '.dispensed.jsonl.4243.bbbbbbbbbbbb.tmp'), '');
    writeFileSync(
      `${file}.lock`,
      JSON.stringify({ pid: deadPid(), host: (await import('node:os')).hostname(), at: 'then', nonce: 'n' }),
    );

    const reloaded = new OnceStore(file, { lockTimeoutMs: 2000 });
    expect((await reloaded.list()).map((r) => r.sub)).toEqual([SUB_A]);
    // The torn write never happened: SUB_B is still new, SUB_A still refused.
    await reloaded.record(SUB_B);
    expect((await failure(reloaded.record(SUB_A))).code).toBe(ErrorCode.AlreadyUsed);
    expect((await reloaded.list()).map((r) => r.sub)).toEqual([SUB_A, SUB_B]);
    // The next writer cleaned up.
    expect(readdirSync(dir).sort()).toEqual(['dispensed.jsonl']);
  });

  it('takes over a lock older than staleLockMs even when its owner cannot be checked', async () => {
    const file = scratch();
    writeFileSync(`${file}.lock`, JSON.stringify({ pid: 1, host: 'another-host', at: 'then', nonce: 'n' }));
    const old = (Date.now() - 60_000) / 1000;
    utimesSync(`${file}.lock`, old, old);
    await new OnceStore(file, { staleLockMs: 30_000, lockTimeoutMs: 1000 }).record(SUB_A);
    expect(existsSync(`${file}.lock`)).toBe(false);
  });

  it('takes over an unreadable lock (an owner that died before writing it) after a short grace', async () => {
    const file = scratch();
    writeFileSync(`${file}.lock`, '');
    const fresh = await failure(new OnceStore(file, { lockTimeoutMs: 100 }).record(SUB_A));
    expect(fresh.code).toBe(ErrorCode.Timeout);
    const old = (Date.now() - 5000) / 1000;
    utimesSync(`${file}.lock`, old, old);
    await new OnceStore(file, { lockTimeoutMs: 1000 }).record(SUB_A);
    expect((await new OnceStore(file).list()).map((r) => r.sub)).toEqual([SUB_A]);
  });

  it('fails with TIMEOUT naming the lock file when another live process holds it', async () => {
    const file = scratch();
    writeFileSync(`${file}.lock`, JSON.stringify({ pid: 1, host: 'another-host', at: 'now', nonce: 'n' }));
    const error = await failure(new OnceStore(file, { lockTimeoutMs: 150 }).record(SUB_A));
    expect(error.code).toBe(ErrorCode.Timeout);
    expect(error.message).toMatch(/process 1 on another-host/);
    expect(error.hint).toContain(`delete ${file}.lock`);
    expect(existsSync(file)).toBe(false);
    expect(existsSync(`${file}.lock`)).toBe(true);
  });

  it('keeps the mode of an existing file', async () => {
    const file = scratch();
    writeFileSync(file, '', { mode: 0o640 });
    await new OnceStore(file).record(SUB_A);
    if (process.platform !== 'win32') expect(statSync(file).mode & 0o777).toBe(0o640);
  });

  it('refuses an empty sub', async () => {
    expect((await failure(new OnceStore(scratch()).record(''))).code).toBe(ErrorCode.InvalidArgument);
  });

  it('two async callers in one process recording the same chip: exactly one wins', async () => {
    const file = scratch();
    const results = await Promise.allSettled([
      new OnceStore(file).record(SUB_A),
      new OnceStore(file).record(SUB_A),
      new OnceStore(file).record(SUB_B),
      new OnceStore(file).record(SUB_A),
    ]);
    const outcomes = results.map((r) => (r.status === 'fulfilled' ? r.value.sub : (r.reason as TaplineError).code));
    expect(outcomes.filter((o) => o === SUB_A)).toHaveLength(1);
    expect(outcomes.filter((o) => o === ErrorCode.AlreadyUsed)).toHaveLength(2);
    expect(outcomes).toContain(SUB_B);
    expect((await new OnceStore(file).list()).map((r) => r.sub).sort()).toEqual([SUB_A, SUB_B].sort());
  });
});

describe('OnceStore across processes', () => {
  const childScript = (file: string, subs: readonly string[]): string => `
    const { OnceStore } = await import(${JSON.stringify(new URL(`file://${BUILT}`).href)});
    const store = new OnceStore(${JSON.stringify(file)}, { lockTimeoutMs: 20000 });
    const out = [];
    for (const sub of ${JSON.stringify(subs)}) {
      try { await store.record(sub); out.push('won ' + sub); }
      catch (e) { out.push((e && e.code) + ' ' + sub); }
    }
    process.stdout.write(out.join('\\n'));
  `;

  function runChild(script: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
      child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
      child.on('error', reject);
      child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`child exited ${code}: ${err}`))));
    });
  }

  it.runIf(existsSync(BUILT))(
    'two processes racing over the same chips: exactly one wins per chip, and nothing is lost',
    async () => {
      const file = scratch();
      const subs = Array.from({ length: 40 }, (_, i) => i.toString(16).padStart(64, '0'));
      const [one, two] = await Promise.all([
        runChild(childScript(file, subs)),
        runChild(childScript(file, [...subs].reverse())),
      ]);
      const lines = [...one.split('\n'), ...two.split('\n')];
      for (const sub of subs) {
        const won = lines.filter((l) => l === `won ${sub}`);
        const refused = lines.filter((l) => l === `ALREADY_USED ${sub}`);
        expect([won.length, refused.length], sub).toEqual([1, 1]);
      }
      expect((await new OnceStore(file).list()).map((r) => r.sub).sort()).toEqual([...subs].sort());
    },
    30_000,
  );

  it.runIf(existsSync(BUILT))(
    'a process killed (SIGKILL) in the middle of writing loses nothing it had recorded',
    async () => {
      const file = scratch();
      const subs = Array.from({ length: 5000 }, (_, i) => `chip-${i}`);
      const child = spawn(process.execPath, ['--input-type=module', '-e', childScript(file, subs)], {
        stdio: 'ignore',
      });
      // Kill it once it has written a few records, most likely inside a write.
      for (let i = 0; i < 2000 && !(existsSync(file) && readFileSync(file, 'utf8').split('\n').length > 20); i++) {
        await new Promise((r) => setTimeout(r, 5));
      }
      child.kill('SIGKILL');
      await new Promise((r) => child.once('close', r));

      const text = readFileSync(file, 'utf8');
      expect(text.endsWith('\n')).toBe(true);
      const recorded = (await new OnceStore(file).list()).map((r) => r.sub);
      expect(recorded.length).toBeGreaterThanOrEqual(20);
      // A prefix of the sequence, in order: every record the child completed is there, and nothing torn.
      expect(recorded).toEqual(subs.slice(0, recorded.length));
      // The dead child's lock (if it died holding it) does not block the next writer.
      await new OnceStore(file, { lockTimeoutMs: 2000 }).record('after-the-crash');
      expect((await new OnceStore(file).list()).length).toBe(recorded.length + 1);
    },
    30_000,
  );
});
