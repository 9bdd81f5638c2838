/**
 * Where the association's tokens live between runs: `credentials.json` in the configuration directory, readable by
 * its owner only, replaced atomically so that a crash never leaves half a refresh token behind, with a lock
 * (`credentials.json.lock`) that lets one process at a time rotate the refresh token.
 *
 * @packageDocumentation
 */
import { chmod, mkdir, readFile, readdir, stat, unlink } from 'node:fs/promises';
import { dirname, join, resolve as resolvePath } from 'node:path';
import { ErrorCode, TaplineError } from '../model/errors.js';
import {
  AtomicReplaceError,
  atomicTemporaryPrefix,
  replaceFileAtomically,
  syncDirectory,
} from '../runtime/atomic-file.js';
import { credentialsFilePath } from '../runtime/config.js';
import { InProcessLock, withFileLock } from '../runtime/file-lock.js';
import { silentLogger, type Logger } from '../runtime/logger.js';

/** The version of the credentials file format this Tapline writes and reads. */
export const CREDENTIALS_FORMAT_VERSION = 1;

/**
 * One association, as stored. Holds secrets (`accessToken`, `refreshToken`): never log it, never print it.
 * Times are milliseconds since the epoch.
 */
export interface StoredCredentials {
  /** The format version, {@link CREDENTIALS_FORMAT_VERSION}; a file with another one is refused, not guessed at. */
  readonly version: typeof CREDENTIALS_FORMAT_VERSION;
  /** The OpenID Provider's issuer identifier (URL) the tokens belong to. */
  readonly issuer: string;
  /** The OAuth client id the tokens were issued to. */
  readonly clientId: string;
  /** The account's subject identifier for this client. */
  readonly sub: string;
  /** The scopes granted, space-separated. */
  readonly scope: string;
  /** The bearer token for the platform's resource endpoints (opaque; it lives minutes). Secret. */
  readonly accessToken: string;
  /**
   * When {@link accessToken} expires, stamped with this computer's clock when it was issued (issue time plus the
   * provider's `expires_in`), so that it compares with the same clock without trusting the provider's.
   */
  readonly accessTokenExpiresAt: number;
  /** The current refresh token; it rotates on every use. Secret, and the one that matters: it outlives the other. */
  readonly refreshToken: string;
  /** When this computer was associated (the device login completed). */
  readonly associatedAt: number;
}

/** Options of {@link TokenStore.exclusive}. */
export interface ExclusiveOptions {
  /** Stops waiting for the lock (`ABORTED`). Once the function runs, it runs to its end. */
  readonly signal?: AbortSignal | undefined;
  /** How long to wait for the lock before failing with `TIMEOUT`. Default: the store's own (30 s for both stores). */
  readonly timeoutMs?: number;
}

/** Default of {@link FileTokenStoreOptions.lockTimeoutMs}, and of the wait of {@link MemoryTokenStore.exclusive}. */
export const CREDENTIALS_LOCK_TIMEOUT_MS = 30_000;
/**
 * Default of {@link FileTokenStoreOptions.staleLockMs}. Twice the longest refresh (`REFRESH_TIMEOUT_MS`, 60 s, which
 * the session runs while holding the lock): a lock is never taken over from a process whose refresh is still in
 * flight, which would let two processes send the same refresh token.
 */
export const CREDENTIALS_STALE_LOCK_MS = 120_000;

/** Keeps the credentials of one association. */
export interface TokenStore {
  /** Where the credentials are kept, for messages (a file path, or `memory`). */
  readonly location: string;
  /**
   * The stored credentials, or `undefined` when there are none. Unreadable or malformed storage fails with
   * `STORAGE_FAILED` (with a hint), never with a crash.
   */
  load(): Promise<StoredCredentials | undefined>;
  /** Replaces the stored credentials. Resolves only once they are durable; fails with `STORAGE_FAILED`. */
  save(credentials: StoredCredentials): Promise<void>;
  /** Deletes the stored credentials; nothing stored is fine. Fails with `STORAGE_FAILED`. */
  clear(): Promise<void>;
  /**
   * Runs `fn` while no other user of these credentials (another process sharing the file, another caller in this
   * process) runs an `exclusive` function of its own, and resolves or rejects with its outcome. For read-modify-write
   * sequences such as a refresh-token rotation: `fn` loads, decides, and saves, and nobody else does in between.
   * `load`, `save` and `clear` themselves do not wait for the lock, so `fn` calls them freely; `fn` must not call
   * `exclusive` again (it would wait for itself until the timeout).
   *
   * Fails without running `fn` with `TIMEOUT` when the lock is not free in time (the hint names the lock), `ABORTED`,
   * or `STORAGE_FAILED` when the lock cannot be created.
   */
  exclusive<T>(fn: () => Promise<T>, options?: ExclusiveOptions): Promise<T>;
}

/** Options of {@link FileTokenStore}. */
export interface FileTokenStoreOptions {
  /** The credentials file. Default: `credentials.json` in the configuration directory (`credentialsFilePath`). */
  readonly file?: string | undefined;
  /** The environment the default file is derived from. Default `process.env`. */
  readonly env?: NodeJS.ProcessEnv;
  /** Where warnings go (a file readable by others, a directory writable by others). Never gets a token. */
  readonly logger?: Logger;
  /** How long {@link FileTokenStore.exclusive} waits for the lock. Default {@link CREDENTIALS_LOCK_TIMEOUT_MS}. */
  readonly lockTimeoutMs?: number;
  /**
   * Age after which a lock whose owner cannot be checked (another host on a shared disk) counts as abandoned. It must
   * exceed the longest an exclusive function runs: a refresh or a logout, network timeouts included. Default
   * {@link CREDENTIALS_STALE_LOCK_MS}.
   */
  readonly staleLockMs?: number;
}

const FILE_MODE = 0o600;
const DIRECTORY_MODE = 0o700;
/** Far above any real credentials file (a few kilobytes): a bigger file is not one. */
const MAX_FILE_BYTES = 256 * 1024;
const MAX_FIELD_CHARS = 16 * 1024;
/** `<pid>.<hex>.tmp` after the prefix: what `replaceFileAtomically` names its temporary files. */
const DATA_TEMPORARY = /^(\d+)\.[0-9a-f]+\.tmp$/;
/** Only POSIX file modes mean anything; Windows keeps a read-only bit. */
const POSIX_MODES = process.platform !== 'win32';

/** Saves in flight in this process, per file: they run one after the other, the last one wins. */
const inProcess = new Map<string, Promise<unknown>>();

/**
 * The association's credentials in a JSON file (`{ version: 1, issuer, clientId, sub, scope, accessToken,
 * accessTokenExpiresAt, refreshToken, associatedAt }`):
 *
 * - its directory is created with mode 0700, the file is written with mode 0600, and the mode is checked after every
 *   write (and tightened, with a warning, when a file is found readable by others on load);
 * - every save replaces the file atomically (temporary file, fsync, rename, directory fsync), so a crash leaves the
 *   old credentials or the new ones; temporary files left by a crashed writer are removed;
 * - a corrupt or unreadable file fails with `STORAGE_FAILED` and a hint, never a crash; its content is never quoted.
 *
 * Concurrent saves in one process run in order; between processes the last rename wins, and the file is always
 * whole. {@link exclusive} serialises whole read-modify-write sequences across processes with a lock file next to
 * the credentials (`credentials.json.lock`, mode 0600, see `withFileLock`).
 */
export class FileTokenStore implements TokenStore {
  /** The credentials file, as an absolute path. */
  readonly file: string;
  /** The lock file of {@link exclusive}: the credentials file's path with `.lock` appended. */
  readonly lockFile: string;
  readonly #log: Logger;
  readonly #lockTimeoutMs: number;
  readonly #staleLockMs: number;

  /** Fails with `INVALID_ARGUMENT` for an empty path; touches no file (the first call does). */
  constructor(options: FileTokenStoreOptions = {}) {
    const file = options.file ?? credentialsFilePath({}, options.env);
    if (typeof file !== 'string' || file.trim() === '') {
      throw new TaplineError(ErrorCode.InvalidArgument, 'The credentials file needs a path.', {
        hint: 'Set credentialsFile (TAPLINE_CREDENTIALS_FILE) to a file path, or leave it unset.',
      });
    }
    this.file = resolvePath(file);
    this.lockFile = `${this.file}.lock`;
    this.#log = (options.logger ?? silentLogger).child({ component: 'token-store' });
    this.#lockTimeoutMs = options.lockTimeoutMs ?? CREDENTIALS_LOCK_TIMEOUT_MS;
    this.#staleLockMs = options.staleLockMs ?? CREDENTIALS_STALE_LOCK_MS;
  }

  /** The credentials file's path. */
  get location(): string {
    return this.file;
  }

  /**
   * Reads and checks the file; `undefined` when there is none. A file readable by others is tightened to 0600 (with a
   * warning) before it is read. See {@link TokenStore.load}.
   */
  async load(): Promise<StoredCredentials | undefined> {
    let text: string;
    try {
      const stats = await stat(this.file);
      if (!stats.isFile()) throw Object.assign(new Error('not a regular file'), { code: 'EISDIR' });
      if (stats.size > MAX_FILE_BYTES) return this.#corrupt(`is larger than ${MAX_FILE_BYTES} bytes`);
      if (POSIX_MODES && (stats.mode & 0o077) !== 0) await this.#tighten(stats.mode);
      text = await readFile(this.file, 'utf8');
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return undefined;
      if (error instanceof TaplineError) throw error;
      throw storageError(`read the credentials file ${this.file}`, error, this.file);
    }
    let value: unknown;
    try {
      value = JSON.parse(text) as unknown;
    } catch {
      // The parser's message quotes the file, which holds tokens: only the fact is reported.
      return this.#corrupt('is not JSON');
    }
    const problem = credentialsProblem(value);
    if (problem !== undefined) return this.#corrupt(problem);
    return Object.freeze({ ...(value as StoredCredentials) });
  }

  /** Replaces the file atomically (mode 0600); malformed credentials fail with `INVALID_ARGUMENT`. */
  save(credentials: StoredCredentials): Promise<void> {
    const problem = credentialsProblem(credentials);
    if (problem !== undefined) {
      return Promise.reject(
        new TaplineError(ErrorCode.InvalidArgument, `Credentials not saved: the value ${problem}.`, {
          details: { file: this.file },
        }),
      );
    }
    const content = `${JSON.stringify(pickFields(credentials), null, 2)}\n`;
    return this.#serialised(() => this.#write(content));
  }

  /** Deletes the file and every temporary file a writer left, then syncs the directory. */
  clear(): Promise<void> {
    return this.#serialised(async () => {
      try {
        await unlink(this.file);
      } catch (error) {
        if (errnoCode(error) !== 'ENOENT')
          throw storageError(`delete the credentials file ${this.file}`, error, this.file);
      }
      // Temporary files hold tokens too: after a logout none may remain.
      await this.#removeTemporaries(true);
      try {
        await syncDirectory(dirname(this.file));
      } catch (error) {
        if (errnoCode((error as AtomicReplaceError).cause) !== 'ENOENT') {
          throw storageError(`sync the directory of ${this.file}`, error, this.file);
        }
      }
    });
  }

  /**
   * Runs `fn` holding the lock file `credentials.json.lock` (created in the credentials directory, which is created
   * with mode 0700 if needed; the lock file has mode 0600). See {@link TokenStore.exclusive}.
   */
  async exclusive<T>(fn: () => Promise<T>, options: ExclusiveOptions = {}): Promise<T> {
    try {
      await this.#ensureDirectory();
    } catch (error) {
      throw storageError(`create the directory of ${this.file}`, error, this.file);
    }
    return withFileLock(this.lockFile, fn, {
      timeoutMs: options.timeoutMs ?? this.#lockTimeoutMs,
      staleLockMs: this.#staleLockMs,
      signal: options.signal,
      resource: `the credentials ${this.file}`,
      notDone: 'the credentials were left as they were',
      timeoutHint:
        'Another Tapline (the agent or a command) is using the credentials, probably refreshing the access token; try ' +
        `again. If no other Tapline is running, delete ${this.lockFile}.`,
      ioError: (what, cause) => lockError(what, cause, this.lockFile),
    });
  }

  /** Creates the credentials directory (0700) if needed; warns when others may write it. Throws raw errors. */
  async #ensureDirectory(): Promise<void> {
    const dir = dirname(this.file);
    const created = await mkdir(dir, { recursive: true, mode: DIRECTORY_MODE });
    if (POSIX_MODES && created !== undefined) await chmod(dir, DIRECTORY_MODE);
    if (POSIX_MODES) {
      const mode = (await stat(dir)).mode;
      if ((mode & 0o022) !== 0) {
        // Whoever may write the directory may replace the file: worth knowing, not worth refusing.
        this.#log.warn('the directory of the credentials file is writable by other users', {
          directory: dir,
          mode: (mode & 0o777).toString(8),
        });
      }
    }
  }

  async #write(content: string): Promise<void> {
    const dir = dirname(this.file);
    try {
      await this.#ensureDirectory();
      await replaceFileAtomically(this.file, content, FILE_MODE);
    } catch (error) {
      const what =
        error instanceof AtomicReplaceError && error.stage === 'sync-directory'
          ? `sync the directory ${dir}`
          : `write the credentials file ${this.file}`;
      throw storageError(what, error instanceof AtomicReplaceError ? error.cause : error, this.file);
    }
    await this.#verifyMode();
    await this.#removeTemporaries(false);
  }

  /** Checks that the file just written is the owner's only; fixes it, or fails when it cannot. */
  async #verifyMode(): Promise<void> {
    if (!POSIX_MODES) return;
    try {
      let mode = (await stat(this.file)).mode & 0o777;
      if (mode === FILE_MODE) return;
      this.#log.warn('the credentials file had the wrong mode after writing; fixing it', { mode: mode.toString(8) });
      await chmod(this.file, FILE_MODE);
      mode = (await stat(this.file)).mode & 0o777;
      if (mode === FILE_MODE) return;
      throw new Error(`the mode is ${mode.toString(8)}`);
    } catch (error) {
      throw new TaplineError(
        ErrorCode.StorageFailed,
        `The credentials file ${this.file} could not be made readable by its owner only (mode 0600).`,
        {
          cause: error,
          details: { file: this.file },
          hint: `Check the file system of ${dirname(this.file)} (it must support Unix permissions), or set TAPLINE_CREDENTIALS_FILE to a file elsewhere.`,
        },
      );
    }
  }

  async #tighten(mode: number): Promise<void> {
    this.#log.warn('the credentials file was readable by other users; restricting it to its owner', {
      file: this.file,
      mode: (mode & 0o777).toString(8),
    });
    await chmod(this.file, FILE_MODE);
  }

  /**
   * Removes temporary files crashed writers left (they hold tokens). A temporary of a live process other than this
   * one may be a save in progress and is kept, unless `all` (a logout) is asked for.
   */
  async #removeTemporaries(all: boolean): Promise<void> {
    const dir = dirname(this.file);
    const prefix = atomicTemporaryPrefix(this.file);
    const names = await readdir(dir).catch(() => [] as string[]);
    await Promise.all(
      names.map(async (name) => {
        if (!name.startsWith(prefix)) return;
        const match = DATA_TEMPORARY.exec(name.slice(prefix.length));
        if (!match) return;
        const pid = Number(match[1]);
        if (!all && pid !== process.pid && processAlive(pid)) return;
        await unlink(join(dir, name)).catch(() => undefined);
      }),
    );
  }

  #corrupt(problem: string): never {
    throw new TaplineError(
      ErrorCode.StorageFailed,
      `The credentials file ${this.file} ${problem}; it is not a Tapline credentials file (version ${CREDENTIALS_FORMAT_VERSION}).`,
      {
        details: { file: this.file },
        hint: 'Run `tapline logout` to delete it (or delete it by hand), then `tapline login` to associate again.',
      },
    );
  }

  /** Runs `operation` after every earlier save or clear of this file in this process. */
  async #serialised(operation: () => Promise<void>): Promise<void> {
    const previous = inProcess.get(this.file) ?? Promise.resolve();
    const mine = previous.then(operation, operation);
    const settled = mine.catch(() => undefined);
    inProcess.set(this.file, settled);
    try {
      await mine;
    } finally {
      if (inProcess.get(this.file) === settled) inProcess.delete(this.file);
    }
  }
}

/**
 * A {@link TokenStore} in memory, for tests and the simulator: nothing survives the process. Saves and loads copy, so
 * a caller cannot change what is stored by keeping a reference.
 */
export class MemoryTokenStore implements TokenStore {
  /** Always `memory`. */
  readonly location = 'memory';
  #credentials: StoredCredentials | undefined;
  /** Nothing outside this process can see the credentials: an in-process queue is the whole lock. */
  readonly #lock = new InProcessLock();

  /** Starts with `initial` stored (checked like a save), or nothing. */
  constructor(initial?: StoredCredentials) {
    if (initial !== undefined) this.#credentials = checked(initial);
  }

  /** The stored credentials (a frozen copy), or `undefined`. */
  load(): Promise<StoredCredentials | undefined> {
    return Promise.resolve(this.#credentials);
  }

  /** Stores a frozen copy of the known fields; malformed credentials reject with `INVALID_ARGUMENT`. */
  save(credentials: StoredCredentials): Promise<void> {
    // A refused value rejects like a failed write, instead of throwing at the call.
    return new Promise((resolve) => {
      this.#credentials = checked(credentials);
      resolve();
    });
  }

  /** Forgets the stored credentials. */
  clear(): Promise<void> {
    this.#credentials = undefined;
    return Promise.resolve();
  }

  /** Runs `fn` after every earlier `exclusive` function of this store has settled; see {@link TokenStore.exclusive}. */
  exclusive<T>(fn: () => Promise<T>, options: ExclusiveOptions = {}): Promise<T> {
    const timeoutMs = options.timeoutMs ?? CREDENTIALS_LOCK_TIMEOUT_MS;
    return this.#lock.run(fn, {
      timeoutMs,
      signal: options.signal,
      what: 'Waiting for the credentials',
      timeoutError: (waitedMs) =>
        new TaplineError(
          ErrorCode.Timeout,
          `Another operation has held the credentials (in memory) for the ${waitedMs} ms Tapline waited; they were left as they were.`,
          { details: { location: this.location, waitedMs }, hint: 'Try again once the refresh in progress is over.' },
        ),
    });
  }
}

function checked(credentials: StoredCredentials): StoredCredentials {
  const problem = credentialsProblem(credentials);
  if (problem !== undefined) {
    throw new TaplineError(ErrorCode.InvalidArgument, `Credentials not saved: the value ${problem}.`);
  }
  return Object.freeze(pickFields(credentials));
}

/** Only the known fields, in a fixed order: nothing a caller adds at run time is stored. */
function pickFields(credentials: StoredCredentials): StoredCredentials {
  return {
    version: credentials.version,
    issuer: credentials.issuer,
    clientId: credentials.clientId,
    sub: credentials.sub,
    scope: credentials.scope,
    accessToken: credentials.accessToken,
    accessTokenExpiresAt: credentials.accessTokenExpiresAt,
    refreshToken: credentials.refreshToken,
    associatedAt: credentials.associatedAt,
  };
}

/** Why `value` is not valid credentials (a phrase that completes "the file …"), or `undefined` when it is. */
function credentialsProblem(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'is not a JSON object';
  const record = value as Record<string, unknown>;
  if (record['version'] !== CREDENTIALS_FORMAT_VERSION) return `has no "version": ${CREDENTIALS_FORMAT_VERSION}`;
  for (const field of ['issuer', 'clientId', 'sub', 'scope'] as const) {
    const text = record[field];
    if (typeof text !== 'string' || text.length > MAX_FIELD_CHARS || (field !== 'scope' && text === '')) {
      return `has no valid "${field}"`;
    }
  }
  if (!URL.canParse(record['issuer'] as string)) return 'has an "issuer" that is not a URL';
  for (const field of ['accessToken', 'refreshToken'] as const) {
    const token = record[field];
    if (typeof token !== 'string' || token === '' || token.length > MAX_FIELD_CHARS || !/^[\x21-\x7e]+$/.test(token)) {
      return `has no valid "${field}"`;
    }
  }
  for (const field of ['accessTokenExpiresAt', 'associatedAt'] as const) {
    const time = record[field];
    if (typeof time !== 'number' || !Number.isFinite(time) || time < 0) return `has no valid "${field}"`;
  }
  return undefined;
}

function storageError(what: string, error: unknown, file: string): TaplineError {
  const code = errnoCode(error);
  const permission = code === 'EACCES' || code === 'EPERM' || code === 'EROFS';
  return new TaplineError(ErrorCode.StorageFailed, `Could not ${what}${code === undefined ? '' : ` (${code})`}.`, {
    cause: error,
    details: { file, ...(code === undefined ? {} : { errno: code }) },
    hint: permission
      ? `Check that Tapline may write ${dirname(file)}, or set TAPLINE_CREDENTIALS_FILE to a file elsewhere.`
      : 'Check the disk (space, health); the previous credentials file was left as it was.',
  });
}

/** A failure to create or read the lock file of {@link FileTokenStore.exclusive}: `STORAGE_FAILED`, naming it. */
function lockError(what: string, error: unknown, lockFile: string): TaplineError {
  const code = errnoCode(error);
  const permission = code === 'EACCES' || code === 'EPERM' || code === 'EROFS';
  return new TaplineError(ErrorCode.StorageFailed, `Could not ${what}${code === undefined ? '' : ` (${code})`}.`, {
    cause: error,
    details: { lockFile, ...(code === undefined ? {} : { errno: code }) },
    hint: permission
      ? `Check that Tapline may create and delete ${lockFile}, or set TAPLINE_CREDENTIALS_FILE to a file elsewhere.`
      : `Check the disk (space, health) and ${lockFile}; the credentials were left as they were.`,
  });
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return errnoCode(error) === 'EPERM';
  }
}

function errnoCode(error: unknown): string | undefined {
  const code = (error as NodeJS.ErrnoException | null | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}
