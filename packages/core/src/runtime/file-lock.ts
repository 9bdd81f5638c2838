/**
 * An exclusive lock shared by every process that uses the same file, for the files Tapline keeps (the
 * `--once-per-chip` store, the association's credentials).
 *
 * The lock is a file (`FILE.lock`) created exclusively: its content (owner pid, host, time, a nonce) is written to a
 * private file first and hard-linked to the lock name, so that the lock is complete from its first instant (where
 * hard links are not supported it is created with `wx` and then written). Callers in one process queue in memory
 * ({@link InProcessLock}) instead of polling the lock file against each other; callers in different processes poll
 * it with a jittered backoff.
 *
 * A lock left behind by a crashed process is taken over when its owner is gone (same host), when it is older than
 * `staleLockMs` (its owner cannot be checked: another host on a shared disk), or when it stays unreadable for a short
 * grace. The take-over renames the lock aside first and puts it back if what it moved is not the lock it judged
 * stale, so that a waiter never deletes a fresh lock by mistake.
 *
 * Every wait is bounded: waiting longer than `timeoutMs` (in this process and for other processes together) fails
 * with `TIMEOUT`, naming the lock file and its owner.
 *
 * @packageDocumentation
 */
import { randomBytes } from 'node:crypto';
import { link, open, readFile, readdir, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, dirname, join, resolve as resolvePath } from 'node:path';
import { ErrorCode, TaplineError, abortError } from '../model/errors.js';

/** Default of {@link FileLockOptions.timeoutMs}. */
export const DEFAULT_LOCK_TIMEOUT_MS = 5000;
/** Default of {@link FileLockOptions.staleLockMs}. */
export const DEFAULT_STALE_LOCK_MS = 10_000;

/** Options of {@link withFileLock}. */
export interface FileLockOptions {
  /**
   * How long to wait for the lock (behind other callers in this process and other processes together) before failing
   * with `TIMEOUT`. Default {@link DEFAULT_LOCK_TIMEOUT_MS}. 0 means one attempt.
   */
  readonly timeoutMs?: number;
  /**
   * Age after which a lock counts as left behind by a crash even when its owner cannot be checked (another host on a
   * shared disk), and after which the lock's own temporary files are removed. A holder is not heartbeating, so this
   * must exceed the longest the function under the lock can run. Default {@link DEFAULT_STALE_LOCK_MS}.
   */
  readonly staleLockMs?: number;
  /** Stops waiting for the lock (`ABORTED`). Once the lock is held, the function runs to its end. */
  readonly signal?: AbortSignal | undefined;
  /** What the lock protects, as messages name it. Default: the lock file's path without its `.lock` suffix. */
  readonly resource?: string;
  /**
   * Ends a timeout message ("…for the 5000 ms Tapline waited; `notDone`."), saying what was left undone. Default
   * `nothing was changed`.
   */
  readonly notDone?: string;
  /** The hint of a timeout. Default: delete the lock file if no other Tapline is using the resource. */
  readonly timeoutHint?: string;
  /**
   * Maps a failure to create, read or take over the lock file to the caller's error. `what` completes "Could not …"
   * (for example `create the lock file /x/y.lock`). Default: `STORAGE_FAILED` naming the lock file.
   */
  readonly ioError?: (what: string, cause: unknown) => TaplineError;
}

/**
 * Runs `fn` while holding the exclusive lock `lockFile`, and releases the lock when `fn` settles (whatever it does).
 * Resolves or rejects with `fn`'s outcome.
 *
 * The lock file's directory must exist. The lock and its temporary files (`.<lock name>.*.tmp` next to it) are
 * created with mode 0600. Fails, without running `fn`, with `TIMEOUT` when the lock is not free within `timeoutMs`
 * (the message names the lock file and its owner), `ABORTED` when `signal` fires first, or the error of
 * {@link FileLockOptions.ioError} (default `STORAGE_FAILED`) when the lock file cannot be created or read.
 */
export async function withFileLock<T>(
  lockFile: string,
  fn: () => Promise<T>,
  options: FileLockOptions = {},
): Promise<T> {
  const lock = settingsOf(lockFile, options);
  const started = Date.now();
  let local = inProcess.get(lock.path);
  if (local === undefined) {
    local = new InProcessLock();
    inProcess.set(lock.path, local);
  }
  try {
    return await local.run(
      async () => {
        const held = await acquire(lock, started);
        try {
          return await fn();
        } finally {
          await release(lock, held);
        }
      },
      {
        timeoutMs: lock.timeoutMs,
        signal: options.signal,
        timeoutError: (waitedMs) => lockTimeout(lock, 'Another operation in this process', '', waitedMs),
        what: `Waiting for the lock ${lock.path}`,
      },
    );
  } finally {
    if (!local.busy && inProcess.get(lock.path) === local) inProcess.delete(lock.path);
  }
}

/** Options of {@link InProcessLock.run}. */
export interface InProcessLockOptions {
  /** How long to wait for the callers ahead before failing with {@link InProcessLockOptions.timeoutError}. */
  readonly timeoutMs: number;
  /** Stops waiting (`ABORTED`); a function already running is not interrupted. */
  readonly signal?: AbortSignal | undefined;
  /** The error of a wait longer than {@link InProcessLockOptions.timeoutMs}. */
  readonly timeoutError: (waitedMs: number) => TaplineError;
  /** Names the wait in an `ABORTED` error. Default `Waiting for the lock`. */
  readonly what?: string;
}

/**
 * A lock between the async callers of one process: {@link InProcessLock.run} runs functions one at a time, in call
 * order. A caller that gives up waiting (timeout, abort) leaves the queue without running its function and without
 * letting the callers behind it overtake the one ahead.
 */
export class InProcessLock {
  /** Settles when the last caller queued so far is done: the next caller waits for it. */
  #tail: Promise<void> = Promise.resolve();
  #queued = 0;

  /** True while a function runs or callers wait. */
  get busy(): boolean {
    return this.#queued > 0;
  }

  /** Runs `fn` once every earlier caller is done; rejects without running it when the wait times out or aborts. */
  async run<T>(fn: () => Promise<T>, options: InProcessLockOptions): Promise<T> {
    checkWait(options.timeoutMs, 'timeoutMs');
    const started = Date.now();
    const ahead = this.#tail;
    let done!: () => void;
    const mine = new Promise<void>((resolve) => (done = resolve));
    // The next caller waits for the one ahead of us too: if we leave early, the order still holds.
    this.#tail = ahead.then(() => mine);
    this.#queued += 1;
    try {
      const outcome = await settledWithin(ahead, options.timeoutMs, options.signal);
      if (outcome === 'aborted') throw abortError(options.what ?? 'Waiting for the lock', options.signal?.reason);
      if (outcome === 'timeout') throw options.timeoutError(Date.now() - started);
      return await fn();
    } finally {
      this.#queued -= 1;
      done();
    }
  }
}

/** How long a lock file may stay unreadable before it counts as abandoned (its owner writes it at once). */
const UNREADABLE_LOCK_GRACE_MS = 2000;
/** `setTimeout` fires at once above 2^31 - 1 ms, which would turn a long wait into none. */
const MAX_TIMER_MS = 2_147_483_647;

/** Callers in this process, per lock file: they queue here instead of polling the lock file against each other. */
const inProcess = new Map<string, InProcessLock>();

/** What the lock file says about its owner. */
interface LockInfo {
  readonly pid: number;
  readonly host: string;
  readonly at: string;
  readonly nonce: string;
}

/** A lock as seen by a waiter: its owner (when readable), its age and identity on disk. */
interface LockSighting {
  readonly info: LockInfo | undefined;
  readonly ageMs: number;
  readonly ino: number;
}

interface LockSettings {
  /** The lock file, absolute. */
  readonly path: string;
  readonly timeoutMs: number;
  readonly staleLockMs: number;
  readonly signal: AbortSignal | undefined;
  readonly resource: string;
  readonly notDone: string;
  readonly timeoutHint: string;
  readonly ioError: (what: string, cause: unknown) => TaplineError;
}

function settingsOf(lockFile: string, options: FileLockOptions): LockSettings {
  if (typeof lockFile !== 'string' || lockFile.trim() === '') {
    throw new TaplineError(ErrorCode.InvalidArgument, 'A file lock needs the path of its lock file.');
  }
  const path = resolvePath(lockFile);
  const timeoutMs = options.timeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
  checkWait(timeoutMs, 'timeoutMs');
  const staleLockMs = options.staleLockMs ?? DEFAULT_STALE_LOCK_MS;
  checkWait(staleLockMs, 'staleLockMs');
  const resource = options.resource ?? (path.endsWith('.lock') ? path.slice(0, -'.lock'.length) : path);
  return {
    path,
    timeoutMs,
    staleLockMs,
    signal: options.signal,
    resource,
    notDone: options.notDone ?? 'nothing was changed',
    timeoutHint: options.timeoutHint ?? `If no other Tapline is using ${resource}, delete ${path} and try again.`,
    ioError: options.ioError ?? ((what, cause) => defaultIoError(what, cause, path)),
  };
}

function checkWait(value: number, name: string): void {
  if (!Number.isFinite(value) || value < 0 || value > MAX_TIMER_MS) {
    throw new TaplineError(ErrorCode.InvalidArgument, `${name} must be between 0 and ${MAX_TIMER_MS} milliseconds.`, {
      details: { [name]: value },
    });
  }
}

/** Takes the lock file, polling while another process holds it, until `started + timeoutMs`. */
async function acquire(lock: LockSettings, started: number): Promise<LockInfo> {
  for (let attempt = 0; ; attempt++) {
    if (lock.signal?.aborted) throw abortError(`Waiting for the lock ${lock.path}`, lock.signal.reason);
    const info: LockInfo = {
      pid: process.pid,
      host: hostname(),
      at: new Date().toISOString(),
      nonce: randomBytes(12).toString('hex'),
    };
    if (await tryCreate(lock, info)) {
      await removeLeftovers(lock);
      return info;
    }
    const sighting = await sight(lock);
    if (!sighting) continue; // released between our attempt and the look
    if (isStale(lock, sighting)) {
      await takeOver(lock, sighting);
      continue;
    }
    const waited = Date.now() - started;
    if (waited >= lock.timeoutMs) throw lockTimeout(lock, 'Another process', ownerText(sighting), waited);
    // Jittered backoff, so that two waiters do not retry in lockstep; never past the deadline.
    const backoff = Math.min(50, 2 + attempt * 3) * (0.5 + Math.random());
    await pause(Math.min(backoff, lock.timeoutMs - waited), lock.signal);
  }
}

/** `.<lock name>.`: the prefix of the lock's temporary files (the owner's details before the link, set-aside locks). */
function temporaryPrefix(lock: LockSettings): string {
  return `.${basename(lock.path)}.`;
}

/**
 * Creates the lock file exclusively, with its content complete from the first instant: the owner's details go to a
 * private file (created with `wx`), which is hard-linked to the lock name; `link` fails with `EEXIST` exactly like
 * an exclusive create. Where hard links are not supported, the lock is created with `wx` and then written.
 */
async function tryCreate(lock: LockSettings, info: LockInfo): Promise<boolean> {
  const text = JSON.stringify(info);
  const own = join(dirname(lock.path), `${temporaryPrefix(lock)}${process.pid}.${info.nonce}.tmp`);
  try {
    await writeFile(own, text, { flag: 'wx', mode: 0o600 });
  } catch (error) {
    throw lock.ioError(`create the lock file ${lock.path}`, error);
  }
  try {
    await link(own, lock.path);
    return true;
  } catch (error) {
    const code = errnoCode(error);
    if (code === 'EEXIST' || code === 'ENOENT') return false;
    if (!['EPERM', 'ENOTSUP', 'ENOSYS', 'EOPNOTSUPP'].includes(code ?? '')) {
      throw lock.ioError(`create the lock file ${lock.path}`, error);
    }
  } finally {
    await unlink(own).catch(() => undefined);
  }
  try {
    const handle = await open(lock.path, 'wx', 0o600);
    try {
      await handle.writeFile(text, 'utf8');
    } finally {
      await handle.close();
    }
    return true;
  } catch (error) {
    if (errnoCode(error) === 'EEXIST') return false;
    throw lock.ioError(`create the lock file ${lock.path}`, error);
  }
}

async function sight(lock: LockSettings): Promise<LockSighting | undefined> {
  try {
    const [text, stats] = await Promise.all([readFile(lock.path, 'utf8'), stat(lock.path)]);
    return { info: parseLock(text), ageMs: Date.now() - stats.mtimeMs, ino: stats.ino };
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined;
    throw lock.ioError(`read the lock file ${lock.path}`, error);
  }
}

function isStale(lock: LockSettings, sighting: LockSighting): boolean {
  if (sighting.ageMs > lock.staleLockMs) return true;
  const owner = sighting.info;
  // Unreadable: an owner (without hard links) that died between creating the lock and writing it.
  if (owner === undefined) return sighting.ageMs > Math.min(lock.staleLockMs, UNREADABLE_LOCK_GRACE_MS);
  return owner.host === hostname() && !processAlive(owner.pid);
}

/**
 * Removes a stale lock without removing a fresh one by mistake: the lock is renamed aside first, and put back if
 * what was renamed is not the lock judged stale (another waiter replaced it in between).
 */
async function takeOver(lock: LockSettings, stale: LockSighting): Promise<void> {
  const aside = join(dirname(lock.path), `${temporaryPrefix(lock)}stale.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await rename(lock.path, aside);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return;
    throw lock.ioError(`take over the stale lock ${lock.path}`, error);
  }
  const [text, stats] = await Promise.all([readFile(aside, 'utf8').catch(() => ''), stat(aside).catch(() => null)]);
  const moved = parseLock(text);
  const same = stale.info !== undefined ? moved?.nonce === stale.info.nonce : stats?.ino === stale.ino;
  if (!same) await link(aside, lock.path).catch(() => undefined);
  await unlink(aside).catch(() => undefined);
}

async function release(lock: LockSettings, held: LockInfo): Promise<void> {
  const current = parseLock(await readFile(lock.path, 'utf8').catch(() => ''));
  // A lock that is no longer ours was taken over as stale; deleting it would release someone else's.
  if (current?.nonce === held.nonce) await unlink(lock.path).catch(() => undefined);
}

/**
 * Removes the lock's temporary files that a waiter killed mid-attempt left behind. Live waiters keep theirs for
 * milliseconds, so only files older than `staleLockMs` go (a set-aside lock keeps its old mtime, but its taker
 * copes with it vanishing).
 */
async function removeLeftovers(lock: LockSettings): Promise<void> {
  const dir = dirname(lock.path);
  const prefix = temporaryPrefix(lock);
  const names = await readdir(dir).catch(() => [] as string[]);
  await Promise.all(
    names
      .filter((name) => name.startsWith(prefix) && name.endsWith('.tmp'))
      .map(async (name) => {
        const path = join(dir, name);
        const age = await stat(path).then(
          (s) => Date.now() - s.mtimeMs,
          () => 0,
        );
        if (age > lock.staleLockMs) await unlink(path).catch(() => undefined);
      }),
  );
}

function parseLock(text: string): LockInfo | undefined {
  try {
    const value = JSON.parse(text) as Partial<LockInfo> | null;
    if (
      value !== null &&
      typeof value.pid === 'number' &&
      typeof value.host === 'string' &&
      typeof value.at === 'string' &&
      typeof value.nonce === 'string'
    ) {
      return { pid: value.pid, host: value.host, at: value.at, nonce: value.nonce };
    }
  } catch {
    // A lock file caught between its creation and its first write reads as empty: its age decides.
  }
  return undefined;
}

function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return errnoCode(error) === 'EPERM';
  }
}

function ownerText(sighting: LockSighting): string {
  return sighting.info ? ` (process ${sighting.info.pid} on ${sighting.info.host}, since ${sighting.info.at})` : '';
}

function lockTimeout(lock: LockSettings, who: string, owner: string, waitedMs: number): TaplineError {
  return new TaplineError(
    ErrorCode.Timeout,
    `${who} has held the lock on ${lock.resource}${owner} for the ${waitedMs} ms Tapline waited; ${lock.notDone}.`,
    { hint: lock.timeoutHint, details: { file: lock.resource, lockFile: lock.path, waitedMs } },
  );
}

function defaultIoError(what: string, cause: unknown, lockFile: string): TaplineError {
  const code = errnoCode(cause);
  return new TaplineError(ErrorCode.StorageFailed, `Could not ${what}${code === undefined ? '' : ` (${code})`}.`, {
    cause,
    hint: `Check that Tapline may create and delete ${lockFile} (its directory must exist and be writable).`,
    details: { lockFile, ...(code === undefined ? {} : { errno: code }) },
  });
}

/** Waits for `promise` (which must not reject) at most `ms`, or until `signal` fires. */
function settledWithin(
  promise: Promise<void>,
  ms: number,
  signal: AbortSignal | undefined,
): Promise<'settled' | 'timeout' | 'aborted'> {
  if (signal?.aborted) return Promise.resolve('aborted');
  return new Promise((resolve) => {
    const finish = (outcome: 'settled' | 'timeout' | 'aborted'): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve(outcome);
    };
    const onAbort = (): void => finish('aborted');
    const timer = setTimeout(() => finish('timeout'), ms);
    signal?.addEventListener('abort', onAbort, { once: true });
    void promise.then(() => finish('settled'));
  });
}

/** Sleeps `ms`, or less when `signal` fires (the caller checks it). */
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return settledWithin(new Promise<void>(() => undefined), ms, signal).then(() => undefined);
}

function errnoCode(error: unknown): string | undefined {
  const code = (error as NodeJS.ErrnoException | null | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}
