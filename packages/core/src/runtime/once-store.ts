/**
 * A durable "seen chips" store for `tapline verify --once-per-chip FILE`: each chip (by the `sub` of its authenticity
 * token) is allowed once, for example by a dispenser that hands out one item per implant.
 *
 * File format: JSON Lines, one `{"sub":"…","at":"<ISO time>"}` per chip, so that a person can allow a chip again by
 * deleting its line. `sub` is stored as the platform issued it. It is already a pseudonym: VivoKey derives it per
 * developer account, it is not the chip's UID and says nothing about the owner, and hashing it again would only make
 * the file harder to edit. Nothing else about the chip (UID, token) is stored.
 *
 * Durability: the file is only ever replaced whole (`replaceFileAtomically`) — the new content goes to a temporary
 * file in the same directory, which is fsynced and renamed over the old one, and then the directory is fsynced. A crash
 * at any point leaves either the old file or the new one, never a mix; a torn temporary file is never read and is
 * removed by the next writer.
 *
 * Concurrency: a check-and-record holds an exclusive lock file (`FILE.lock`, see `withFileLock`), so that two
 * processes verifying the same chip at once cannot both win. A lock left behind by a crashed process is taken over
 * when its owner is gone (same host) or when it is older than `staleLockMs`; waiting longer than `lockTimeoutMs`
 * fails with `TIMEOUT`, naming the lock file.
 *
 * @packageDocumentation
 */
import { readFile, readdir, stat, unlink } from 'node:fs/promises';
import { dirname, join, resolve as resolvePath } from 'node:path';
import { ErrorCode, TaplineError } from '../model/errors.js';
import { AtomicReplaceError, atomicTemporaryPrefix, replaceFileAtomically } from './atomic-file.js';
import { systemClock, type Clock } from './clock.js';
import { DEFAULT_LOCK_TIMEOUT_MS, DEFAULT_STALE_LOCK_MS, withFileLock } from './file-lock.js';

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
/**
 * `<pid>.<random>.tmp` after the prefix: a data temporary. The lock's own temporaries start with `lock.` (they are
 * `.FILE.lock.*.tmp`, see `withFileLock`), and older Taplines set stale locks aside as `stale.*.tmp`.
 */
const DATA_TEMPORARY = /^\d+\.[0-9a-f]+\.tmp$/;

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
    this.#lockTimeoutMs = options.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
    this.#staleLockMs = options.staleLockMs ?? DEFAULT_STALE_LOCK_MS;
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
    return withFileLock(this.lockFile, () => this.#recordLocked(sub), {
      timeoutMs: this.#lockTimeoutMs,
      staleLockMs: this.#staleLockMs,
      resource: this.file,
      notDone: 'nothing was recorded',
      ioError,
    });
  }

  /** The check-and-record itself; runs only while this process holds the lock. */
  async #recordLocked(sub: string): Promise<OnceRecord> {
    await this.#removeTornTemporaries();
    const { text, records } = await this.#load();
    const seen = records.get(sub);
    if (seen) throw alreadyUsed(this.file, seen);
    const record: OnceRecord = { sub, at: new Date(this.#clock.now()).toISOString() };
    const separator = text.length === 0 || text.endsWith('\n') ? '' : '\n';
    await this.#replace(`${text}${separator}${JSON.stringify(record)}\n`);
    return record;
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

  /** Replaces the file with `content` (see `replaceFileAtomically`), keeping the mode of an existing file. */
  async #replace(content: string): Promise<void> {
    const mode = await stat(this.file).then(
      (s) => s.mode & 0o777,
      () => 0o600,
    );
    try {
      await replaceFileAtomically(this.file, content, mode);
    } catch (error) {
      if (error instanceof AtomicReplaceError) {
        throw ioError(error.stage === 'write' ? `write ${this.file}` : `sync the directory ${error.path}`, error.cause);
      }
      throw error;
    }
  }

  /**
   * Removes temporary files that crashed writers left. Only lock holders create data temporaries, and we hold the
   * lock, so every one found is torn. Lock candidates and stale locks set aside belong to waiters that may still be
   * working with them, so those go only when older than `staleLockMs`.
   */
  async #removeTornTemporaries(): Promise<void> {
    const dir = dirname(this.file);
    const prefix = atomicTemporaryPrefix(this.file);
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
