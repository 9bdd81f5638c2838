import { spawn, type ChildProcess } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, InProcessLock, TaplineError, withFileLock } from '../src/index.js';
import { deadPid, failure } from './helpers.js';

const POSIX = process.platform !== 'win32';
/** The built module, for child processes (they run plain node; the test task builds core first). */
const BUILT = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'runtime', 'file-lock.js');

function scratch(): string {
  return join(mkdtempSync(join(tmpdir(), 'tapline-lock-')), 'data.json.lock');
}

function foreignLock(lockFile: string, owner: { pid: number; host: string }, ageMs = 0): void {
  writeFileSync(lockFile, JSON.stringify({ ...owner, at: 'then', nonce: 'foreign' }));
  if (ageMs > 0) {
    const then = (Date.now() - ageMs) / 1000;
    utimesSync(lockFile, then, then);
  }
}

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

describe('withFileLock in one process', () => {
  it('holds the lock file (mode 0600, owner recorded) while fn runs, removes it after, and returns fn’s value', async () => {
    const lockFile = scratch();
    const value = await withFileLock(lockFile, () => {
      const owner = JSON.parse(readFileSync(lockFile, 'utf8')) as Record<string, unknown>;
      expect(owner).toMatchObject({ pid: process.pid, host: hostname() });
      if (POSIX) expect(statSync(lockFile).mode & 0o777).toBe(0o600);
      return Promise.resolve(42);
    });
    expect(value).toBe(42);
    expect(readdirSync(dirname(lockFile))).toEqual([]);
  });

  it('releases the lock when fn fails, and passes the failure on', async () => {
    const lockFile = scratch();
    await expect(withFileLock(lockFile, () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(existsSync(lockFile)).toBe(false);
    expect(await withFileLock(lockFile, () => Promise.resolve('again'))).toBe('again');
  });

  it('callers in one process run one at a time, in call order', async () => {
    const lockFile = scratch();
    const events: string[] = [];
    let inside = 0;
    await Promise.all(
      [1, 2, 3, 4].map((n) =>
        withFileLock(lockFile, async () => {
          inside += 1;
          expect(inside).toBe(1);
          events.push(`in ${n}`);
          await tick(5);
          events.push(`out ${n}`);
          inside -= 1;
        }),
      ),
    );
    expect(events).toEqual(['in 1', 'out 1', 'in 2', 'out 2', 'in 3', 'out 3', 'in 4', 'out 4']);
  });

  it('a caller queued in this process times out (TIMEOUT, no fn) without letting later callers overtake', async () => {
    const lockFile = scratch();
    let release!: () => void;
    const first = withFileLock(lockFile, () => new Promise<void>((r) => (release = r)));
    await tick(5);
    const ran: string[] = [];
    const started = Date.now();
    const second = failure(withFileLock(lockFile, () => Promise.resolve(ran.push('second')), { timeoutMs: 60 }));
    const third = withFileLock(lockFile, () => Promise.resolve(ran.push('third')), { timeoutMs: 5000 });
    const error = await second;
    expect(Date.now() - started).toBeGreaterThanOrEqual(55);
    expect(error.code).toBe(ErrorCode.Timeout);
    expect(error.message).toMatch(
      /^Another operation in this process has held the lock on .*data\.json for the \d+ ms/,
    );
    expect(error.details).toMatchObject({ lockFile });
    await tick(20);
    expect(ran).toEqual([]); // the third still waits for the first
    release();
    await first;
    await third;
    expect(ran).toEqual(['third']);
  });

  it('an abort while waiting fails with ABORTED and does not run fn', async () => {
    const lockFile = scratch();
    foreignLock(lockFile, { pid: 1, host: 'another-host' });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 30);
    let ran = false;
    const error = await failure(
      withFileLock(lockFile, () => Promise.resolve((ran = true)), { timeoutMs: 5000, signal: controller.signal }),
    );
    expect(error.code).toBe(ErrorCode.Aborted);
    expect(ran).toBe(false);
    expect(JSON.parse(readFileSync(lockFile, 'utf8'))).toMatchObject({ nonce: 'foreign' });
  });

  it('fails with TIMEOUT naming the lock file and its owner when another live process holds it', async () => {
    const lockFile = scratch();
    foreignLock(lockFile, { pid: 1, host: 'another-host' });
    const started = Date.now();
    let ran = false;
    const error = await failure(
      withFileLock(lockFile, () => Promise.resolve((ran = true)), { timeoutMs: 150, notDone: 'nothing was sent' }),
    );
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(145);
    expect(waited).toBeLessThan(2000);
    expect(error.code).toBe(ErrorCode.Timeout);
    expect(error.message).toMatch(/process 1 on another-host.*; nothing was sent\.$/);
    expect(error.hint).toContain(`delete ${lockFile}`);
    expect(ran).toBe(false);
    expect(existsSync(lockFile)).toBe(true);
  });

  it('takes over a lock whose owner on this host is gone, at once', async () => {
    const lockFile = scratch();
    foreignLock(lockFile, { pid: deadPid(), host: hostname() });
    const started = Date.now();
    expect(await withFileLock(lockFile, () => Promise.resolve('mine'), { timeoutMs: 2000 })).toBe('mine');
    expect(Date.now() - started).toBeLessThan(1000);
    expect(readdirSync(dirname(lockFile))).toEqual([]);
  });

  it('takes over a lock older than staleLockMs even when its owner cannot be checked', async () => {
    const lockFile = scratch();
    foreignLock(lockFile, { pid: 1, host: 'another-host' }, 60_000);
    await withFileLock(lockFile, () => Promise.resolve(), { staleLockMs: 30_000, timeoutMs: 1000 });
    expect(existsSync(lockFile)).toBe(false);
  });

  it('takes over an unreadable lock only after a short grace', async () => {
    const lockFile = scratch();
    writeFileSync(lockFile, '');
    expect((await failure(withFileLock(lockFile, () => Promise.resolve(), { timeoutMs: 100 }))).code).toBe(
      ErrorCode.Timeout,
    );
    const old = (Date.now() - 5000) / 1000;
    utimesSync(lockFile, old, old);
    await withFileLock(lockFile, () => Promise.resolve(), { timeoutMs: 1000 });
    expect(existsSync(lockFile)).toBe(false);
  });

  it('removes temporary files of the lock that a killed waiter left, once they are older than staleLockMs', async () => {
    const lockFile = scratch();
    const dir = dirname(lockFile);
    const old = join(dir, '.data.json.lock.4242.aaaaaaaaaaaaaaaaaaaaaaaa.tmp');
    const aside = join(dir, '.data.json.lock.stale.bbbbbbbbbbbb.tmp');
    const young = join(dir, '.data.json.lock.4243.cccccccccccccccccccccccc.tmp');
    const unrelated = join(dir, '.data.json.4244.dddddddddddd.tmp');
    for (const file of [old, aside, young, unrelated]) writeFileSync(file, '{}');
    for (const file of [old, aside, unrelated]) {
      const then = (Date.now() - 60_000) / 1000;
      utimesSync(file, then, then);
    }
    await withFileLock(lockFile, () => Promise.resolve(), { staleLockMs: 30_000 });
    expect(readdirSync(dir).sort()).toEqual([
      '.data.json.4244.dddddddddddd.tmp', // not the lock's: its owner cleans it
      '.data.json.lock.4243.cccccccccccccccccccccccc.tmp',
    ]);
  });

  it('maps I/O failures: STORAGE_FAILED naming the lock file by default, or the caller’s error', async () => {
    const lockFile = join(dirname(scratch()), 'missing', 'data.json.lock');
    const error = await failure(withFileLock(lockFile, () => Promise.resolve()));
    expect(error.code).toBe(ErrorCode.StorageFailed);
    expect(error.message).toContain(`create the lock file ${lockFile} (ENOENT)`);
    expect(error.hint).toContain(lockFile);
    const mapped = await failure(
      withFileLock(lockFile, () => Promise.resolve(), {
        ioError: (what) => new TaplineError(ErrorCode.InvalidArgument, `mapped: ${what}`),
      }),
    );
    expect(mapped.code).toBe(ErrorCode.InvalidArgument);
    expect(mapped.message).toBe(`mapped: create the lock file ${lockFile}`);
  });

  it('a lock file that cannot be read (a directory in its place) is STORAGE_FAILED, not a wait', async () => {
    const lockFile = scratch();
    mkdirSync(lockFile);
    const error = await failure(withFileLock(lockFile, () => Promise.resolve(), { timeoutMs: 5000 }));
    expect(error.code).toBe(ErrorCode.StorageFailed);
    expect(error.message).toContain(`read the lock file ${lockFile}`);
  });

  it('refuses unusable options with INVALID_ARGUMENT', async () => {
    const lockFile = scratch();
    for (const options of [{ timeoutMs: -1 }, { timeoutMs: Number.NaN }, { staleLockMs: Infinity }]) {
      await expect(withFileLock(lockFile, () => Promise.resolve(), options)).rejects.toMatchObject({
        code: ErrorCode.InvalidArgument,
      });
    }
    await expect(withFileLock('', () => Promise.resolve())).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
    });
  });
});

describe('InProcessLock', () => {
  it('runs functions one at a time and survives a failing one', async () => {
    const lock = new InProcessLock();
    const timeoutError = () => new TaplineError(ErrorCode.Timeout, 'late');
    const order: number[] = [];
    const results = await Promise.allSettled([
      lock.run(
        async () => {
          await tick(10);
          order.push(1);
        },
        { timeoutMs: 1000, timeoutError },
      ),
      lock.run(() => Promise.reject(new Error('second fails')), { timeoutMs: 1000, timeoutError }),
      lock.run(() => Promise.resolve(order.push(3)), { timeoutMs: 1000, timeoutError }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(order).toEqual([1, 3]);
    expect(lock.busy).toBe(false);
  });
});

describe('withFileLock across processes', () => {
  /**
   * A child that increments a counter file `rounds` times, each time under the lock, with a pause between the read
   * and the write (so that an unlocked pair would lose updates), and flags any overlap with an `inside` marker.
   */
  const incrementer = (lockFile: string, rounds: number): string => `
    const { withFileLock } = await import(${JSON.stringify(pathToFileURL(BUILT).href)});
    const { readFile, writeFile, unlink } = await import('node:fs/promises');
    const counter = ${JSON.stringify(`${lockFile}.counter`)};
    const inside = ${JSON.stringify(`${lockFile}.inside`)};
    for (let i = 0; i < ${rounds}; i++) {
      await withFileLock(${JSON.stringify(lockFile)}, async () => {
        await writeFile(inside, String(process.pid), { flag: 'wx' }); // EEXIST: someone else is inside
        const n = Number(await readFile(counter, 'utf8').catch(() => '0'));
        await new Promise((r) => setTimeout(r, 1));
        await writeFile(counter, String(n + 1));
        await unlink(inside);
      }, { timeoutMs: 20000 });
    }
  `;

  /** A child that takes the lock, says "held", and keeps it for `holdMs` (or until killed). */
  const holder = (lockFile: string, holdMs: number): string => `
    const { withFileLock } = await import(${JSON.stringify(pathToFileURL(BUILT).href)});
    await withFileLock(${JSON.stringify(lockFile)}, async () => {
      process.stdout.write('held\\n');
      await new Promise((r) => setTimeout(r, ${holdMs}));
    });
  `;

  const children: ChildProcess[] = [];
  afterEach(() => {
    // A test that failed early must not leave a holder running for a minute.
    for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill();
  });

  function start(script: string) {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
    const exited = new Promise<number | null>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code) => resolve(code));
    });
    children.push(child);
    /** Resolves when the child exited with 0. */
    const done = () =>
      exited.then((code) => {
        if (code !== 0) throw new Error(`child exited ${code}: ${err}`);
      });
    /** Resolves once the child printed `text` (bounded: a child that never does fails the test). */
    const said = async (text: string, timeoutMs = 10_000): Promise<void> => {
      const deadline = Date.now() + timeoutMs;
      while (!out.includes(text)) {
        if (Date.now() > deadline) throw new Error(`child did not say ${text}: ${err}`);
        await tick(5);
      }
    };
    return { child, done, exited, said };
  }

  it.runIf(existsSync(BUILT))(
    'two processes incrementing a counter under the lock: never both inside, no update lost',
    async () => {
      const lockFile = scratch();
      const rounds = 60;
      await Promise.all([start(incrementer(lockFile, rounds)).done(), start(incrementer(lockFile, rounds)).done()]);
      expect(Number(readFileSync(`${lockFile}.counter`, 'utf8'))).toBe(2 * rounds);
      expect(readdirSync(dirname(lockFile))).toEqual(['data.json.lock.counter']);
    },
    30_000,
  );

  it.runIf(existsSync(BUILT))(
    'a lock held by another live process: TIMEOUT naming it when it stays, the lock once it is released',
    async () => {
      const lockFile = scratch();
      const other = start(holder(lockFile, 400));
      await other.said('held');
      const error = await failure(withFileLock(lockFile, () => Promise.resolve(), { timeoutMs: 100 }));
      expect(error.code).toBe(ErrorCode.Timeout);
      expect(error.message).toContain(`process ${other.child.pid} on ${hostname()}`);
      expect(error.hint).toContain(lockFile);
      const started = Date.now();
      await withFileLock(lockFile, () => Promise.resolve(), { timeoutMs: 5000 });
      expect(Date.now() - started).toBeLessThan(4000);
      await other.done();
    },
    30_000,
  );

  it.runIf(existsSync(BUILT))(
    'a process killed (SIGKILL) while holding the lock: the next taker takes it over without waiting it out',
    async () => {
      const lockFile = scratch();
      const other = start(holder(lockFile, 60_000));
      await other.said('held');
      other.child.kill('SIGKILL');
      await other.exited;
      expect(existsSync(lockFile)).toBe(true);
      const started = Date.now();
      await withFileLock(lockFile, () => Promise.resolve(), { timeoutMs: 5000, staleLockMs: 60_000 });
      expect(Date.now() - started).toBeLessThan(2000);
      expect(existsSync(lockFile)).toBe(false);
    },
    30_000,
  );
});
