/**
 * A durable "seen chips" store for `tapline verify --once-per-chip FILE`: each chip (by the `sub` of its authenticity
 * token) is allowed once, for example by a dispenser that hands out one item per implant.
 *
 * File format: JSON Lines, one `{"sub":"…","at":"<ISO time>"}` per chip, so that a person can allow a chip again by
 * deleting its line. `sub` is stored as the platform issued it. It is already a pseudonym: VivoKey derives it per
 * developer account, it is not the chip's UID and says nothing about the owner, and hashing it again would only make
 * the file harder to edit. Nothing else about the chip (UID, token) is stored.
 *
 * Durability: the file is only ever replaced whole — the new content goes to a temporary file in the same directory,
 * which is fsynced and renamed over the old one, and then the directory is fsynced. A crash at any point leaves either
 * the old file or the new one, never a mix; a torn temporary file is never read and is removed by the next writer.
 *
 * Concurrency: a check-and-record holds an exclusive lock file (`FILE.lock`, created with `wx`), so that two
 * processes verifying the same chip at once cannot both win. A lock left behind by a crashed process is taken over
 * when its owner is gone (same host) or when it is older than `staleLockMs`; waiting longer than `lockTimeoutMs`
 * fails with `TIMEOUT`, naming the lock file.
 *
 * @packageDocumentation
 */
import { randomBytes } from 'node:crypto';
import { link, open, readFile, readdir, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, dirname, join, resolve as resolvePath } from 'node:path';
import { ErrorCode, TaplineError } from '../model/errors.js';
import { systemClock, type Clock } from './clock.js';

/** One chip the store remembers. */
export interface OnceRecord {
  /** The `sub` of the chip's authenticity token. */
  readonly sub: string;
  /** When it was recorded, ISO 8601 UTC. */
  readonly at: string;
}

/** Options of {@link OnceStore}. */
export interface OnceStoreOptions {
  /** How long to wait for another process's lock before failing with `TIMEOUT`. Default 5000 ms. */
  readonly lockTimeoutMs?: number;
  /**
   * Age after which a lock is taken to be left behind by a crash, even if its owner cannot be checked (another host
   * on a shared disk). It must exceed the longest a write can take. Default 10000 ms.
   */
  readonly staleLockMs?: number;
  /** Stamps {@link OnceRecord.at}. Default: the system clock. */
  readonly clock?: Clock;
}

/** Longest `sub` accepted: VivoKey's are 64 hex digits; anything near this limit is not a token subject. */
const MAX_SUB_LENGTH = 1024;
const LOCK_SUFFIX = '.lock';
/** How long a lock file may stay unreadable before it counts as abandoned (its owner writes it at once). */
const UNREADABLE_LOCK_GRACE_MS = 2000;
/** `<pid>.<random>.tmp` after the prefix: a data temporary (lock candidates say `lock.`, set-aside locks `stale.`). */
const DATA_TEMPORARY = /^\d+\.[0-9a-f]+\.tmp$/;

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

/** Writers in this process, per file: they queue here instead of polling the lock file against each other. */
const inProcess = new Map<string, Promise<unknown>>();

/**
 * The `--once-per-chip` store. {@link OnceStore.record} is the one operation that matters: it records a chip, or
 * refuses with `ALREADY_USED` if the chip is already there, atomically against crashes and against other processes.
 */
export class OnceStore {
  /** The store's file, as an absolute path. */
  readonly file: string;
  /** The lock file next to it. */
  readonly lockFile: string;
  readonly #lockTimeoutMs: number;
  readonly #staleLockMs: number;
  readonly #clock: Clock;

  constructor(file: string, options: OnceStoreOptions = {}) {
    if (typeof file !== 'string' || file.trim() === '') {
      throw new TaplineError(ErrorCode.InvalidArgument, 'The once-per-chip store needs a file name.', {
        hint: 'Pass a path such as --once-per-chip ./dispensed.jsonl.',
      });
    }
    this.file = resolvePath(file);
    this.lockFile = this.file + LOCK_SUFFIX;
    this.#lockTimeoutMs = options.lockTimeoutMs ?? 5000;
    this.#staleLockMs = options.staleLockMs ?? 10_000;
    this.#clock = options.clock ?? systemClock;
  }

  /** Every chip recorded so far, in file order. A missing file is an empty store. */
  async list(): Promise<readonly OnceRecord[]> {
    return [...(await this.#load()).records.values()];
  }

  /** The record of `sub`, if the chip was seen. */
  async get(sub: string): Promise<OnceRecord | undefined> {
    return (await this.#load()).records.get(sub);
  }

  /**
   * Records `sub`, or fails with `ALREADY_USED` (hint: which line of which file to delete to allow it again) when it
   * is already recorded. When this resolves, the record is on disk (fsynced file and directory).
   *
   * Fails with `INVALID_ARGUMENT` for an unusable path or a file that is not a once-per-chip store (it is then left
   * untouched), `TIMEOUT` when another process holds the lock for longer than `lockTimeoutMs`, `INTERNAL` for other
   * I/O failures (a full disk).
   */
  async record(sub: string): Promise<OnceRecord> {
    checkSub(sub);
    const previous = inProcess.get(this.file) ?? Promise.resolve();
    const mine = previous.then(
      () => this.#recordLocked(sub),
      () => this.#recordLocked(sub),
    );
    const settled = mine.catch(() => undefined);
    inProcess.set(this.file, settled);
    try {
      return await mine;
    } finally {
      if (inProcess.get(this.file) === settled) inProcess.delete(this.file);
    }
  }

  async #recordLocked(sub: string): Promise<OnceRecord> {
    const lock = await this.#acquire();
    try {
      await this.#removeTornTemporaries();
      const { text, records } = await this.#load();
      const seen = records.get(sub);
      if (seen) throw alreadyUsed(this.file, seen);
      const record: OnceRecord = { sub, at: new Date(this.#clock.now()).toISOString() };
      const separator = text.length === 0 || text.endsWith('\n') ? '' : '\n';
      await this.#replace(`${text}${separator}${JSON.stringify(record)}\n`);
      return record;
    } finally {
      await this.#release(lock);
    }
  }

  async #load(): Promise<{ readonly text: string; readonly records: Map<string, OnceRecord> }> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return { text: '', records: new Map() };
      throw ioError(`read ${this.file}`, error);
    }
    const records = new Map<string, OnceRecord>();
    const lines = text.split('\n');
    lines.forEach((line, index) => {
      const trimmed = line.trim();
      if (trimmed === '') return;
      const record = parseLine(trimmed);
      if (!record) {
        throw new TaplineError(
          ErrorCode.InvalidArgument,
          `Line ${index + 1} of ${this.file} is not a once-per-chip record; the file was left untouched.`,
          {
            hint: 'Each line must be {"sub":"…","at":"…"}: fix or delete that line, or point --once-per-chip at another file.',
            details: { file: this.file, line: index + 1 },
          },
        );
      }
      if (!records.has(record.sub)) records.set(record.sub, record);
    });
    return { text, records };
  }

  /** Replaces the file with `content`: temporary file, fsync, rename, fsync of the directory. */
  async #replace(content: string): Promise<void> {
    const dir = dirname(this.file);
    const temporary = join(dir, `${temporaryPrefix(this.file)}${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
    const mode = await stat(this.file).then(
      (s) => s.mode & 0o777,
      () => 0o600,
    );
    try {
      const handle = await open(temporary, 'wx', mode);
      try {
        await handle.writeFile(content, 'utf8');
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temporary, this.file);
    } catch (error) {
      await unlink(temporary).catch(() => undefined);
      throw ioError(`write ${this.file}`, error);
    }
    await syncDirectory(dir);
  }

  /**
   * Removes temporary files that crashed writers left. Only lock holders create data temporaries, and we hold the
   * lock, so every one found is torn. Lock candidates and stale locks set aside belong to waiters that may still be
   * working with them, so those go only when older than `staleLockMs`.
   */
  async #removeTornTemporaries(): Promise<void> {
    const dir = dirname(this.file);
    const prefix = temporaryPrefix(this.file);
    const names = await readdir(dir).catch(() => [] as string[]);
    await Promise.all(
      names
        .filter((name) => name.startsWith(prefix) && name.endsWith('.tmp'))
        .map(async (name) => {
          const path = join(dir, name);
          if (!DATA_TEMPORARY.test(name.slice(prefix.length))) {
            const age = await stat(path).then(
              (s) => Date.now() - s.mtimeMs,
              () => 0,
            );
            if (age <= this.#staleLockMs) return;
          }
          await unlink(path).catch(() => undefined);
        }),
    );
  }

  async #acquire(): Promise<LockInfo> {
    const started = Date.now();
    for (let attempt = 0; ; attempt++) {
      const info: LockInfo = {
        pid: process.pid,
        host: hostname(),
        at: new Date().toISOString(),
        nonce: randomBytes(12).toString('hex'),
      };
      if (await this.#tryCreateLock(info)) return info;
      const sighting = await this.#sight();
      if (!sighting) continue; // released between our attempt and the look
      if (this.#isStale(sighting)) {
        await this.#takeOver(sighting);
        continue;
      }
      const waited = Date.now() - started;
      if (waited >= this.#lockTimeoutMs) throw lockTimeout(this.file, this.lockFile, sighting, waited);
      // Jittered backoff: two waiters must not retry in lockstep.
      await sleep(Math.min(50, 2 + attempt * 3) * (0.5 + Math.random()));
    }
  }

  /**
   * Creates the lock file exclusively, with its content complete from the first instant: the owner's details go to a
   * private file (created with `wx`), which is hard-linked to the lock name; `link` fails with `EEXIST` exactly like
   * an exclusive create. Where hard links are not supported, the lock is created with `wx` and then written.
   */
  async #tryCreateLock(info: LockInfo): Promise<boolean> {
    const text = JSON.stringify(info);
    const own = join(dirname(this.file), `${temporaryPrefix(this.file)}lock.${process.pid}.${info.nonce}.tmp`);
    try {
      await writeFile(own, text, { flag: 'wx', mode: 0o600 });
    } catch (error) {
      throw ioError(`create the lock file ${this.lockFile}`, error);
    }
    try {
      await link(own, this.lockFile);
      return true;
    } catch (error) {
      const code = errnoCode(error);
      if (code === 'EEXIST' || code === 'ENOENT') return false;
      if (!['EPERM', 'ENOTSUP', 'ENOSYS', 'EOPNOTSUPP'].includes(code ?? '')) {
        throw ioError(`create the lock file ${this.lockFile}`, error);
      }
    } finally {
      await unlink(own).catch(() => undefined);
    }
    try {
      const handle = await open(this.lockFile, 'wx', 0o600);
      try {
        await handle.writeFile(text, 'utf8');
      } finally {
        await handle.close();
      }
      return true;
    } catch (error) {
      if (errnoCode(error) === 'EEXIST') return false;
      throw ioError(`create the lock file ${this.lockFile}`, error);
    }
  }

  async #sight(): Promise<LockSighting | undefined> {
    try {
      const [text, stats] = await Promise.all([readFile(this.lockFile, 'utf8'), stat(this.lockFile)]);
      return { info: parseLock(text), ageMs: Date.now() - stats.mtimeMs, ino: stats.ino };
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return undefined;
      throw ioError(`read the lock file ${this.lockFile}`, error);
    }
  }

  #isStale(sighting: LockSighting): boolean {
    if (sighting.ageMs > this.#staleLockMs) return true;
    const owner = sighting.info;
    // Unreadable: an owner (without hard links) that died between creating the lock and writing it.
    if (owner === undefined) return sighting.ageMs > Math.min(this.#staleLockMs, UNREADABLE_LOCK_GRACE_MS);
    return owner.host === hostname() && !processAlive(owner.pid);
  }

  /**
   * Removes a stale lock without removing a fresh one by mistake: the lock is renamed aside first, and put back if
   * what was renamed is not the lock judged stale (another waiter replaced it in between).
   */
  async #takeOver(stale: LockSighting): Promise<void> {
    const aside = join(dirname(this.file), `${temporaryPrefix(this.file)}stale.${randomBytes(6).toString('hex')}.tmp`);
    try {
      await rename(this.lockFile, aside);
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return;
      throw ioError(`take over the stale lock ${this.lockFile}`, error);
    }
    const [text, stats] = await Promise.all([readFile(aside, 'utf8').catch(() => ''), stat(aside).catch(() => null)]);
    const moved = parseLock(text);
    const same = stale.info !== undefined ? moved?.nonce === stale.info.nonce : stats?.ino === stale.ino;
    if (!same) await link(aside, this.lockFile).catch(() => undefined);
    await unlink(aside).catch(() => undefined);
  }

  async #release(lock: LockInfo): Promise<void> {
    const current = parseLock(await readFile(this.lockFile, 'utf8').catch(() => ''));
    // A lock that is no longer ours was taken over as stale; deleting it would release someone else's.
    if (current?.nonce === lock.nonce) await unlink(this.lockFile).catch(() => undefined);
  }
}

function checkSub(sub: string): void {
  if (typeof sub !== 'string' || sub.length === 0 || sub.length > MAX_SUB_LENGTH) {
    throw new TaplineError(
      ErrorCode.InvalidArgument,
      `A chip's sub must be a non-empty string of at most ${MAX_SUB_LENGTH} characters.`,
    );
  }
}

function parseLine(line: string): OnceRecord | undefined {
  try {
    const value = JSON.parse(line) as unknown;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
    const { sub, at } = value as Record<string, unknown>;
    if (typeof sub !== 'string' || sub.length === 0) return undefined;
    return { sub, at: typeof at === 'string' ? at : '' };
  } catch {
    return undefined;
  }
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

function temporaryPrefix(file: string): string {
  return `.${basename(file)}.`;
}

async function syncDirectory(dir: string): Promise<void> {
  // Windows cannot open a directory for fsync, and its rename is already durable once it returns.
  if (process.platform === 'win32') return;
  let handle;
  try {
    handle = await open(dir, 'r');
    await handle.sync();
  } catch (error) {
    // Some file systems do not fsync directories; the rename is then as durable as they make it.
    if (!['EINVAL', 'ENOTSUP', 'EISDIR', 'EBADF'].includes(errnoCode(error) ?? '')) {
      throw ioError(`sync the directory ${dir}`, error);
    }
  } finally {
    await handle?.close();
  }
}

function alreadyUsed(file: string, seen: OnceRecord): TaplineError {
  return new TaplineError(
    ErrorCode.AlreadyUsed,
    `This chip was already verified${seen.at ? ` on ${seen.at}` : ''}; --once-per-chip allows each chip once.`,
    {
      hint: `To allow it again, delete the line with "sub":"${seen.sub}" from ${file}.`,
      details: { sub: seen.sub, at: seen.at, file },
    },
  );
}

function lockTimeout(file: string, lockFile: string, sighting: LockSighting, waitedMs: number): TaplineError {
  const owner = sighting.info
    ? ` (process ${sighting.info.pid} on ${sighting.info.host}, since ${sighting.info.at})`
    : '';
  return new TaplineError(
    ErrorCode.Timeout,
    `Another process has held the lock on ${file}${owner} for the ${waitedMs} ms Tapline waited; nothing was recorded.`,
    {
      hint: `If no other Tapline is using ${file}, delete ${lockFile} and try again.`,
      details: { file, lockFile, waitedMs },
    },
  );
}

const PATH_PROBLEMS = ['ENOENT', 'ENOTDIR', 'EACCES', 'EPERM', 'EISDIR', 'EROFS', 'ENAMETOOLONG'];

function ioError(what: string, error: unknown): TaplineError {
  const code = errnoCode(error);
  const pathProblem = code !== undefined && PATH_PROBLEMS.includes(code);
  return new TaplineError(
    pathProblem ? ErrorCode.InvalidArgument : ErrorCode.StorageFailed,
    `Could not ${what}${code ? ` (${code})` : ''}.`,
    {
      cause: error,
      hint: pathProblem
        ? 'Check that the directory of the --once-per-chip file exists and that Tapline may write there.'
        : 'Check the disk (space, health); the store file itself was left as it was.',
      details: { ...(code === undefined ? {} : { errno: code }) },
    },
  );
}

function errnoCode(error: unknown): string | undefined {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
