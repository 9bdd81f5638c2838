/**
 * The agent's local control channel: `tapline agent status` and `tapline agent choose ID` talk to the running agent
 * over a Unix socket (a named pipe on Windows) that only the user who runs it can open.
 *
 * Wire format, version 1: one JSON object per line, one request per connection.
 *
 * - `{"v":1,"op":"status"}` → `{"v":1,"ok":true,"status":{…AgentStatus}}`
 * - `{"v":1,"op":"choose","id":"…"}` → `{"v":1,"ok":true,"chosen":"…"}`
 * - `{"v":1,"op":"ping"}` → `{"v":1,"ok":true,"pid":1234}` (how a starting agent recognises a running one)
 * - any failure → `{"v":1,"ok":false,"error":{"code":"…","message":"…","hint"?:"…","details"?:{…}}}`, where `code`
 *   is a Tapline error code.
 *
 * The CLI's `agent status` and `agent choose` load this module alone (`@tapline/agent/control`), not the whole agent:
 * keep its imports to Node built-ins and `@tapline/core`.
 *
 * @packageDocumentation
 */
import { randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { homedir, userInfo } from 'node:os';
import { dirname, isAbsolute, join, posix } from 'node:path';
import {
  ErrorCode,
  TaplineError,
  abortError,
  silentLogger,
  toTaplineError,
  withFileLock,
  type Logger,
  type TaplineErrorCode,
} from '@tapline/core';

/** The control protocol version this agent speaks. */
export const CONTROL_PROTOCOL_VERSION = 1;

/** Largest request the server reads, in bytes (requests are tiny; anything bigger is not a client of ours). */
export const MAX_REQUEST_BYTES = 4096;

/** Largest reply the client reads, in bytes (a status with many requests and scans stays far below). */
export const MAX_REPLY_BYTES = 1024 * 1024;

/** Default time a connection may take to deliver its request to the server. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 2000;

/** Default time the client waits for the agent's reply. */
export const DEFAULT_CONTROL_TIMEOUT_MS = 3000;

/** How long a starting agent waits for an agent that may already listen on the socket. */
const PROBE_TIMEOUT_MS = 1000;

/**
 * How long a starting agent waits for the start-up lock (see {@link startControlServer}). Its holder only probes (at
 * most {@link PROBE_TIMEOUT_MS}), removes a stale socket and binds, so a longer wait means a stuck lock, not a queue.
 */
const START_LOCK_TIMEOUT_MS = 3 * PROBE_TIMEOUT_MS;

/** A connection that has its reply (or never reads it) is closed after this long at the latest. */
const LINGER_MS = 1000;

/** At most this many control connections at once; only the user can connect, this only bounds a runaway script. */
const MAX_CONNECTIONS = 32;

/** What `tapline agent status --json` prints: the running agent's view of itself. JSON-serialisable. */
export interface AgentStatus {
  /** The version of this shape; a change that breaks readers of it gets a new one. */
  readonly v: 1;
  /** The agent's process id. */
  readonly pid: number;
  /** ISO 8601. */
  readonly startedAt: string;
  /** The VivoKey profile the agent answers for (its pairwise subject), or null when not associated. */
  readonly associated: { readonly sub: string; readonly issuer: string } | null;
  /** The VivoKey platform the agent polls for scan requests. */
  readonly platform: {
    /** Its base URL; empty when none is configured. */
    readonly url: string;
    /** True once an exchange with it succeeded; false before, and again after an exchange fails. */
    readonly reachable: boolean;
    /** ISO 8601: the last successful exchange with the platform. */
    readonly lastContactAt?: string;
    readonly lastError?: { readonly code: string; readonly message: string };
  };
  /** The readers attached now. */
  readonly readers: readonly {
    readonly name: string;
    /** The id of the driver that opened it. */
    readonly driver: string;
    readonly capabilities: readonly string[];
    /** The tag on the reader now, if any: UID in lower-case hex, and the chip class when identified. */
    readonly tag?: { readonly uid: string; readonly chip?: string };
  }[];
  /** The scan requests waiting for a tap. */
  readonly pending: readonly {
    /** The id `tapline agent choose` takes. */
    readonly id: string;
    /** Who asked for the scan. */
    readonly relyingParty?: string;
    /** What the scan is for, to show to the person holding the tag. */
    readonly purpose?: string;
    /** ISO 8601. */
    readonly createdAt?: string;
    /** ISO 8601. */
    readonly expiresAt?: string;
    /** The chip classes the request can be answered with; absent or empty: any chip. */
    readonly acceptedChips?: readonly string[];
    /** True for the request the next tap answers after a choice. */
    readonly chosen?: boolean;
  }[];
  /** Most recent first. */
  readonly lastScans: readonly {
    readonly requestId: string;
    /** ISO 8601. */
    readonly at: string;
    readonly outcome: 'answered' | 'failed';
    readonly chip?: string;
    readonly error?: { readonly code: string; readonly message: string };
  }[];
}

/** Why a `choose` was refused: nothing (or only one request) to choose between, or no such request on offer. */
export type ChooseErrorCode = 'NOTHING_TO_CHOOSE' | 'UNKNOWN_REQUEST';

/** What the agent made of `tapline agent choose ID`. */
export type ChooseOutcome =
  | { readonly chosen: string }
  | { readonly error: { readonly code: ChooseErrorCode; readonly message: string; readonly hint?: string } };

/** What the running agent answers with; see {@link startControlServer}. Either may return a promise. */
export interface ControlHandlers {
  /**
   * The agent's status now, for `tapline agent status`. Called once per request; a throw (or rejection) goes back to
   * the client as the error, `INTERNAL` unless it is a Tapline error.
   */
  status(): AgentStatus | Promise<AgentStatus>;
  /**
   * Makes `id` the request the next tap answers (`tapline agent choose ID`). `id` is a non-empty string of at most 256
   * characters (the server refuses anything else before calling this). Returns `{ chosen }` when the choice stands, or
   * `{ error }` when it cannot be made, which reaches the client as `INVALID_ARGUMENT` with `details.reason`; a throw
   * is a failure of the agent instead, as for {@link ControlHandlers.status}.
   */
  choose(id: string): ChooseOutcome | Promise<ChooseOutcome>;
}

/** A request on the control channel. */
export type ControlRequest =
  | { readonly v: 1; readonly op: 'status' }
  | { readonly v: 1; readonly op: 'choose'; readonly id: string }
  | { readonly v: 1; readonly op: 'ping' };

/** The successful reply to each operation (without `v` and `ok`). */
export interface ControlReplies {
  /** The agent's status. */
  readonly status: { readonly status: AgentStatus };
  /** The id of the request the next tap answers. */
  readonly choose: { readonly chosen: string };
  /** The agent's process id. */
  readonly ping: { readonly pid: number };
}

/** The error object of a failed reply: a {@link TaplineError} without its causes. */
export interface ControlErrorJson {
  readonly code: TaplineErrorCode;
  readonly message: string;
  /** What the person should do next. */
  readonly hint?: string;
  /** Machine-readable details (for a refused choice: `reason` and `id`). */
  readonly details?: Readonly<Record<string, unknown>>;
}

/** Options of {@link startControlServer}. */
export interface ControlServerOptions {
  /** Where to listen; see {@link controlSocketPath}. */
  readonly path: string;
  /** What the requests are answered with. */
  readonly handlers: ControlHandlers;
  /** Diagnostics: stale sockets removed, refused requests, failing handlers. Default: silent. */
  readonly logger?: Logger;
  /** How long a connection may take to deliver its request. Default {@link DEFAULT_REQUEST_TIMEOUT_MS}. */
  readonly requestTimeoutMs?: number;
  /** Largest request accepted, in bytes. Default {@link MAX_REQUEST_BYTES}. */
  readonly maxRequestBytes?: number;
}

/** A listening control server. */
export interface ControlServer {
  /** The socket path or pipe name it listens on. */
  readonly path: string;
  /** Stops listening, drops open connections and removes the socket file. Idempotent. */
  close(): Promise<void>;
}

/** Options of {@link sendControl}. */
export interface SendControlOptions {
  /** Default: {@link controlSocketPath} of this process's environment. */
  readonly path?: string;
  /** How long to wait for the whole exchange. Default {@link DEFAULT_CONTROL_TIMEOUT_MS}. */
  readonly timeoutMs?: number;
  /** Stops waiting (`ABORTED`); the request may still have reached the agent. */
  readonly signal?: AbortSignal;
}

/** Who the socket path is for; defaults to the user running this process. Tests pass their own. */
export interface ControlSocketUser {
  /** POSIX user id, for the fallback folder `tapline-<uid>`. */
  readonly uid?: number;
  /** Login name, for the Windows pipe name. */
  readonly username?: string;
  /** Home folder (macOS socket folder; Windows: where `AppData\Local` is when `LOCALAPPDATA` is unset). */
  readonly home?: string;
}

/**
 * Where the agent's control socket lives, for the user running this process:
 *
 * - `TAPLINE_AGENT_SOCKET`, when set, on every platform;
 * - Windows: the named pipe `\\.\pipe\tapline-agent-<username>-<random>`, where `<random>` is this user's pipe id
 *   (see below);
 * - macOS: `~/Library/Application Support/tapline/agent.sock` (the temporary folders are swept of files unused for
 *   three days, which would take the socket of an agent that runs for weeks);
 * - Linux and other Unixes: `$XDG_RUNTIME_DIR/tapline/agent.sock` (a per-user folder that systemd creates at login
 *   and removes at logout), or `<TMPDIR or /tmp>/tapline-<uid>/agent.sock` without one.
 *
 * Windows pipes live in one namespace shared by every local user, and Node can neither set a pipe's access rights nor
 * tell a client who created the pipe it connects to. With a name made of the user name alone, another user could
 * create the pipe first: the agent would then fail to start, and `tapline agent status` and `choose` would talk to
 * the impostor. The pipe id makes the name unguessable: 128 random bits (base64url), made on first use by the agent
 * or a client and kept in `%LOCALAPPDATA%\tapline\agent-pipe-id` (`<home>\AppData\Local` without `LOCALAPPDATA`),
 * which Windows' inherited profile permissions let only the user (and administrators) read. What remains: the pipe
 * keeps Windows' default access rights (read access for Everyone; the protocol needs writing, so that lets no one
 * send a request), and any local user can list the names of existing pipes, so someone who saw the name while the
 * agent ran could take it while the agent is stopped. Delete the id file (then restart the agent) to get a new name;
 * only a service-side access check (an ACL on the pipe, a client check of the server's owner) would close that gap.
 *
 * The id file is read (or created) on the host this runs on, whatever `platform` says: that is where the agent runs.
 * Fails with `STORAGE_FAILED` when it can be neither read nor created, or does not hold an id.
 */
export function controlSocketPath(
  env: NodeJS.ProcessEnv = process.env,
  platform: NodeJS.Platform = process.platform,
  user: ControlSocketUser = {},
): string {
  const override = env['TAPLINE_AGENT_SOCKET'];
  if (override) return override;
  if (platform === 'win32') {
    const name = user.username ?? env['USERNAME'] ?? safeUserInfo()?.username ?? 'user';
    // A backslash would make a sub-path of the pipe namespace; keep the name to characters every shell leaves alone.
    // The id is base64url, which already is.
    return `\\\\.\\pipe\\tapline-agent-${name.replace(/[^A-Za-z0-9._-]/g, '_')}-${pipeId(pipeIdFile(env, user))}`;
  }
  if (platform === 'darwin') {
    const home = user.home ?? env['HOME'] ?? safeUserInfo()?.homedir ?? '/';
    return posix.join(home, 'Library', 'Application Support', 'tapline', 'agent.sock');
  }
  const runtime = env['XDG_RUNTIME_DIR'];
  if (runtime && posix.isAbsolute(runtime)) return posix.join(runtime, 'tapline', 'agent.sock');
  const uid = user.uid ?? process.getuid?.() ?? safeUserInfo()?.uid ?? 0;
  // The same rule as os.tmpdir() on POSIX, but from `env`, so that the path can be computed for another environment.
  const tmp = (env['TMPDIR'] || env['TMP'] || env['TEMP'] || '/tmp').replace(/(.)\/+$/, '$1');
  return posix.join(tmp, `tapline-${uid}`, 'agent.sock');
}

/** The file holding this user's Windows pipe id: `<LOCALAPPDATA>/tapline/agent-pipe-id`. */
function pipeIdFile(env: NodeJS.ProcessEnv, user: ControlSocketUser): string {
  const local = env['LOCALAPPDATA'];
  // Host paths: the file is read where this process runs (see controlSocketPath).
  const base =
    local && isAbsolute(local)
      ? local
      : join(user.home ?? env['USERPROFILE'] ?? safeUserInfo()?.homedir ?? homedir(), 'AppData', 'Local');
  return join(base, 'tapline', 'agent-pipe-id');
}

/** 128 bits in base64url, without padding. */
const PIPE_ID = /^[A-Za-z0-9_-]{22}$/;

/** Reads the pipe id from `file`, creating the file with a new random id when there is none yet. */
function pipeId(file: string): string {
  // Two rounds at most: a lost race to create the file means the winner's id is there to read the second time.
  for (let attempt = 0; attempt < 2; attempt++) {
    const existing = readPipeId(file);
    if (existing !== undefined) return existing;
    const id = randomBytes(16).toString('base64url');
    if (createPipeIdFile(file, id)) return id;
  }
  throw pipeIdError(file, 'keeps changing');
}

function readPipeId(file: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw pipeIdError(file, 'cannot be read', error);
  }
  const id = text.trim();
  if (!PIPE_ID.test(id)) throw pipeIdError(file, 'does not hold a pipe id');
  return id;
}

/**
 * Creates `file` holding `id`, unless it exists (false then). The id goes to a private file first, hard-linked to the
 * name: `link` fails on an existing name like an exclusive create, and the file is complete from its first instant,
 * so that a client reading at that moment never sees it empty. Without hard links, an exclusive create and write.
 */
function createPipeIdFile(file: string, id: string): boolean {
  const own = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    // 0700/0600 matter on POSIX only; on Windows the profile folder's inherited permissions keep others out.
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    writeFileSync(own, id, { flag: 'wx', mode: 0o600 });
  } catch (error) {
    throw pipeIdError(file, 'cannot be created', error);
  }
  try {
    linkSync(own, file);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (!['EPERM', 'ENOTSUP', 'ENOSYS', 'EOPNOTSUPP'].includes(code ?? '')) {
      throw pipeIdError(file, 'cannot be created', error);
    }
  } finally {
    try {
      unlinkSync(own);
    } catch {
      // Already gone; a leftover would only be a stray 22-byte file.
    }
  }
  try {
    writeFileSync(file, id, { flag: 'wx', mode: 0o600 });
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw pipeIdError(file, 'cannot be created', error);
  }
}

function pipeIdError(file: string, why: string, cause?: unknown): TaplineError {
  return new TaplineError(ErrorCode.StorageFailed, `The agent's pipe id file ${file} ${why}.`, {
    cause,
    hint: 'Delete it (the agent and the CLI make a new one; restart the agent then), or set TAPLINE_AGENT_SOCKET to a pipe name for the agent and the CLI alike.',
    details: { path: file },
  });
}

function safeUserInfo(): { uid: number; username: string; homedir: string } | undefined {
  try {
    return userInfo();
  } catch {
    // No passwd entry (a container running under an arbitrary uid): fall back to the other sources.
    return undefined;
  }
}

function isWindowsPipe(path: string): boolean {
  return /^[\\/]{2}[.?][\\/]pipe[\\/]/i.test(path);
}

/**
 * Starts listening on `path` and answers control requests with `handlers`.
 *
 * Only the user can open it: on POSIX the socket's folder is created with mode 0700 (an existing one must belong to
 * the user and be closed to group and others, since some systems ignore a socket file's own mode) and the socket gets
 * mode 0600. A socket left by an agent that died is removed; if another agent answers on it, starting fails.
 *
 * On POSIX, checking for a running agent, removing a stale socket and binding happen under an exclusive lock,
 * `<path>.lock` in the same folder, shared with every other agent starting on `path`: otherwise two agents starting
 * at once could both find the stale socket dead, and the second would remove the first one's live socket and bind
 * its own, leaving two agents running. (A Windows pipe needs no lock: creating its first instance is atomic.)
 *
 * Rejects with `AGENT_ALREADY_RUNNING` when an agent already listens on `path` (details: `path`, and `pid` when it
 * answered as an agent; without it, something else listens there, a hung agent perhaps), `TIMEOUT` when another
 * process holds the start-up lock for more than a few seconds, `STORAGE_FAILED` when the folder is unsafe, the path
 * is taken by something that is not a socket, or the lock file cannot be made, `INVALID_ARGUMENT` for a path too long
 * for a Unix socket.
 */
export async function startControlServer(options: ControlServerOptions): Promise<ControlServer> {
  const { path, handlers } = options;
  const logger = options.logger ?? silentLogger;
  const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const maxRequestBytes = options.maxRequestBytes ?? MAX_REQUEST_BYTES;
  const pipe = process.platform === 'win32' || isWindowsPipe(path);

  const connections = new Set<Socket>();
  // Half-open: a client may end its side right after the request (`printf … | nc -U`) and still read the reply.
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    connections.add(socket);
    socket.on('close', () => connections.delete(socket));
    serveConnection(socket, handlers, logger, requestTimeoutMs, maxRequestBytes);
  });
  server.maxConnections = MAX_CONNECTIONS;

  let identity: SocketIdentity | undefined;
  if (pipe) {
    await listenOrFail(server, path);
  } else {
    assertSocketPathLength(path);
    const dir = posix.dirname(path);
    await ensurePrivateDirectory(dir);
    const lockFile = `${path}.lock`;
    identity = await withFileLock(
      lockFile,
      async () => {
        await clearStaleSocket(path, logger);
        await listenOrFail(server, path);
        return restrictToOwner(server, path);
      },
      {
        timeoutMs: START_LOCK_TIMEOUT_MS,
        resource: `the control socket ${path}`,
        notDone: 'this agent did not start',
        timeoutHint: `Another agent may be starting; try again. If none is, delete ${lockFile} and start the agent again.`,
        ioError: (what, cause) =>
          new TaplineError(ErrorCode.StorageFailed, `Could not ${what}, so the agent did not start.`, {
            cause,
            hint: `Check that you may create files in ${dir}, or set TAPLINE_AGENT_SOCKET to a path in a folder only you can open.`,
            details: { path, lockFile },
          }),
      },
    );
  }
  // After listening, a server error (rare: the file system under the socket failing) must not crash the agent.
  server.on('error', (error) => logger.warn('the control socket failed', { error, path }));
  logger.debug('control socket listening', { path });

  let closing: Promise<void> | undefined;
  return {
    path,
    close: () =>
      (closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const socket of connections) socket.destroy();
        await closed;
        // Node unlinks the socket on close; do it here as well in case it did not, but only if the file is still
        // ours (someone may have removed it and started another agent meanwhile).
        if (identity) {
          try {
            const stat = await lstat(path);
            if (stat.dev === identity.dev && stat.ino === identity.ino) await unlink(path);
          } catch {
            // Gone already: nothing to clean up.
          }
        }
      })()),
  };
}

/** Which file a socket is, so that closing removes only our own. */
interface SocketIdentity {
  readonly dev: number;
  readonly ino: number;
}

/** Listens on `path`; a path in use means another agent (or something else) is there. */
async function listenOrFail(server: Server, path: string): Promise<void> {
  try {
    await listen(server, path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      // A Windows pipe that is taken, or a socket bound by something that does not take our lock.
      const pid = await probeAgent(path);
      throw alreadyRunningError(path, pid, error);
    }
    throw new TaplineError(ErrorCode.StorageFailed, `Cannot listen on the control socket ${path}.`, {
      cause: error,
      details: { path },
    });
  }
}

/** Gives the socket mode 0600 and returns its identity; closes the server when that fails. */
async function restrictToOwner(server: Server, path: string): Promise<SocketIdentity> {
  try {
    // The private folder already keeps others out; 0600 is the second lock, for systems that honour it.
    await chmod(path, 0o600);
    const stat = await lstat(path);
    return { dev: stat.dev, ino: stat.ino };
  } catch (error) {
    server.close();
    throw new TaplineError(ErrorCode.StorageFailed, `Cannot restrict the control socket ${path} to its owner.`, {
      cause: error,
      details: { path },
    });
  }
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error): void => reject(error);
    server.once('error', onError);
    server.listen(path, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/** The longest Unix socket path: `sun_path` is 108 bytes on Linux and 104 on macOS and the BSDs, with its NUL. */
function assertSocketPathLength(path: string): void {
  const limit = (process.platform === 'linux' ? 108 : 104) - 1;
  const length = Buffer.byteLength(path);
  if (length > limit) {
    throw new TaplineError(
      ErrorCode.InvalidArgument,
      `The control socket path ${path} is too long for a Unix socket (${length} bytes, at most ${limit}).`,
      {
        hint: 'Set TAPLINE_AGENT_SOCKET to a shorter path in a folder only you can open, for the agent and the CLI alike.',
        details: { path, length, limit },
      },
    );
  }
}

/** Creates `dir` with mode 0700, or checks that the existing one is a directory of this user closed to others. */
async function ensurePrivateDirectory(dir: string): Promise<void> {
  const uid = process.getuid?.();
  let stat;
  try {
    stat = await lstat(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw unsafeDirectory(dir, 'cannot be examined', error);
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      // The umask can only take bits away; set the mode explicitly so that it is exactly 0700.
      await chmod(dir, 0o700);
    } catch (cause) {
      throw new TaplineError(ErrorCode.StorageFailed, `Cannot create the control socket folder ${dir}.`, {
        cause,
        hint: 'Check that its parent folder exists and is writable, or set TAPLINE_AGENT_SOCKET to another path.',
        details: { path: dir },
      });
    }
    return;
  }
  // A symbolic link could be swapped for someone else's folder between this check and the bind; refuse it outright.
  if (!stat.isDirectory()) throw unsafeDirectory(dir, 'is not a directory');
  if (uid !== undefined && stat.uid !== uid) throw unsafeDirectory(dir, `belongs to another user (uid ${stat.uid})`);
  if ((stat.mode & 0o077) !== 0) {
    const mode = (stat.mode & 0o777).toString(8).padStart(3, '0');
    throw unsafeDirectory(dir, `is open to other users (mode ${mode})`);
  }
}

function unsafeDirectory(dir: string, why: string, cause?: unknown): TaplineError {
  return new TaplineError(
    ErrorCode.StorageFailed,
    `The control socket folder ${dir} ${why}; the agent will not listen where others could reach it.`,
    {
      cause,
      hint: `Make it yours and private (\`chmod 700 '${dir}'\`), remove it so that the agent creates it, or set TAPLINE_AGENT_SOCKET to a path in a folder only you can open.`,
      details: { path: dir },
    },
  );
}

/**
 * Removes a socket left by an agent that died; fails if an agent (or anything else) still listens on it. Only under
 * the start-up lock: between the probe and the unlink, another agent must not be able to bind the path.
 */
async function clearStaleSocket(path: string, logger: Logger): Promise<void> {
  let stat;
  try {
    stat = await lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new TaplineError(ErrorCode.StorageFailed, `Cannot examine the control socket ${path}.`, {
      cause: error,
      details: { path },
    });
  }
  if (!stat.isSocket()) {
    // Never delete a file we did not make.
    throw new TaplineError(ErrorCode.StorageFailed, `${path} exists and is not a socket.`, {
      hint: 'Remove it if it is not needed, or set TAPLINE_AGENT_SOCKET to another path.',
      details: { path },
    });
  }
  const probe = await probeSocket(path);
  if (probe.kind === 'refused') {
    await unlink(path).catch((error: unknown) => {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new TaplineError(ErrorCode.StorageFailed, `Cannot remove the stale control socket ${path}.`, {
          cause: error,
          details: { path },
        });
      }
    });
    logger.info('removed the control socket of an agent that is no longer running', { path });
    return;
  }
  throw alreadyRunningError(path, probe.kind === 'agent' ? probe.pid : undefined);
}

type Probe = { kind: 'refused' } | { kind: 'agent'; pid: number } | { kind: 'other' };

/** Asks whoever listens on `path` for its pid. */
async function probeSocket(path: string): Promise<Probe> {
  try {
    const { pid } = await sendControl({ v: 1, op: 'ping' }, { path, timeoutMs: PROBE_TIMEOUT_MS });
    return { kind: 'agent', pid };
  } catch (error) {
    const code = toTaplineError(error).code;
    return code === ErrorCode.AgentNotRunning ? { kind: 'refused' } : { kind: 'other' };
  }
}

async function probeAgent(path: string): Promise<number | undefined> {
  const probe = await probeSocket(path);
  return probe.kind === 'agent' ? probe.pid : undefined;
}

function alreadyRunningError(path: string, pid: number | undefined, cause?: unknown): TaplineError {
  return new TaplineError(
    ErrorCode.AgentAlreadyRunning,
    pid === undefined
      ? `Another process listens on the control socket ${path} and does not answer as a Tapline agent (a hung agent?).`
      : `An agent is already running (pid ${pid}).`,
    {
      cause,
      hint:
        pid === undefined
          ? 'Stop that process, or set TAPLINE_AGENT_SOCKET to another path for this agent and the CLI alike.'
          : 'Use that one (`tapline agent status`), or stop it first; a second agent would compete for the same taps.',
      details: { path, ...(pid === undefined ? {} : { pid }) },
    },
  );
}

/** Reads one request line from `socket`, answers it, and closes the connection. */
function serveConnection(
  socket: Socket,
  handlers: ControlHandlers,
  logger: Logger,
  requestTimeoutMs: number,
  maxRequestBytes: number,
): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let received = false;
  let answered = false;
  let linger: NodeJS.Timeout | undefined;

  const reply = (body: Readonly<Record<string, unknown>>): void => {
    if (answered) return;
    answered = true;
    clearTimeout(deadline);
    socket.off('data', onData);
    socket.end(`${JSON.stringify({ v: CONTROL_PROTOCOL_VERSION, ...body })}\n`);
    // A client that never reads its reply or never closes its end must not hold the connection open.
    linger = setTimeout(() => socket.destroy(), LINGER_MS);
    linger.unref();
  };
  const fail = (error: TaplineError): void => reply({ ok: false, error: errorJson(error) });

  const deadline = setTimeout(() => {
    logger.debug('control connection sent no complete request in time', { timeoutMs: requestTimeoutMs });
    fail(
      new TaplineError(ErrorCode.Timeout, `No complete request arrived within ${requestTimeoutMs} ms.`, {
        details: { timeoutMs: requestTimeoutMs },
      }),
    );
  }, requestTimeoutMs);
  deadline.unref();

  const handleRequest = (): void => {
    received = true;
    // The deadline is for receiving; a slow handler is bounded by the client's own timeout, which closes the socket.
    clearTimeout(deadline);
    // One request per connection: whatever follows the first line is ignored.
    socket.off('data', onData);
    const line = Buffer.concat(chunks).toString('utf8');
    answer(line, handlers).then(reply, (error: unknown) => {
      const failure = toTaplineError(error);
      // A refused choice is an answer, not a problem of the agent.
      if (failure.code !== ErrorCode.InvalidArgument) logger.warn('a control request failed', { error: failure });
      fail(failure);
    });
  };

  const onData = (chunk: Buffer): void => {
    const newline = chunk.indexOf(0x0a);
    const take = newline < 0 ? chunk : chunk.subarray(0, newline);
    size += take.length;
    if (size > maxRequestBytes) {
      fail(
        new TaplineError(ErrorCode.ProtocolError, `The request is larger than ${maxRequestBytes} bytes.`, {
          details: { limit: maxRequestBytes },
        }),
      );
      return;
    }
    chunks.push(take);
    if (newline >= 0) handleRequest();
  };

  socket.on('data', onData);
  socket.on('end', () => {
    if (received || answered) return;
    // The client closed its side after a last line without its newline: that line is the request.
    if (size > 0) handleRequest();
    else fail(new TaplineError(ErrorCode.ProtocolError, 'The connection ended before a request.'));
  });
  socket.on('error', (error) => logger.debug('control connection error', { error }));
  socket.on('close', () => {
    clearTimeout(deadline);
    clearTimeout(linger);
  });
}

/** The reply body (without `v`) to one request line. Rejects with the error to send back. */
async function answer(line: string, handlers: ControlHandlers): Promise<Record<string, unknown>> {
  let request: unknown;
  try {
    request = JSON.parse(line);
  } catch (error) {
    throw new TaplineError(ErrorCode.ProtocolError, 'The request is not valid JSON.', { cause: error });
  }
  if (typeof request !== 'object' || request === null || Array.isArray(request)) {
    throw new TaplineError(ErrorCode.ProtocolError, 'The request is not a JSON object.');
  }
  const fields = request as Record<string, unknown>;
  if (fields['v'] !== CONTROL_PROTOCOL_VERSION) {
    throw new TaplineError(
      ErrorCode.ProtocolError,
      `The request is for control protocol version ${JSON.stringify(fields['v'] ?? null)}; this agent speaks version ${CONTROL_PROTOCOL_VERSION}.`,
      {
        hint: 'Use a `tapline` of the same release as the running agent.',
        details: { supported: [CONTROL_PROTOCOL_VERSION] },
      },
    );
  }
  switch (fields['op']) {
    case 'ping':
      return { ok: true, pid: process.pid };
    case 'status':
      return { ok: true, status: await handlers.status() };
    case 'choose': {
      const id = fields['id'];
      if (typeof id !== 'string' || id.length === 0 || id.length > 256) {
        throw new TaplineError(ErrorCode.InvalidArgument, 'choose needs the id of a pending request (a string).');
      }
      const outcome = await handlers.choose(id);
      if ('chosen' in outcome) return { ok: true, chosen: outcome.chosen };
      throw chooseError(id, outcome.error);
    }
    default:
      throw new TaplineError(
        ErrorCode.ProtocolError,
        `This agent does not know the operation ${JSON.stringify(fields['op'] ?? null)}.`,
        { hint: 'Use a `tapline` of the same release as the running agent.', details: { ops: ['status', 'choose'] } },
      );
  }
}

/**
 * A refused choice as a Tapline error. `INVALID_ARGUMENT`: the id given does not name a request the agent can choose
 * now; the precise reason stays in `details.reason`.
 */
function chooseError(id: string, error: Extract<ChooseOutcome, { error: unknown }>['error']): TaplineError {
  return new TaplineError(ErrorCode.InvalidArgument, error.message, {
    hint: error.hint ?? 'Run `tapline agent status` to see the pending requests and their ids.',
    details: { reason: error.code, id },
  });
}

function errorJson(error: TaplineError): ControlErrorJson {
  return {
    code: error.code,
    message: error.message,
    ...(error.hint === undefined ? {} : { hint: error.hint }),
    ...(Object.keys(error.details).length === 0 ? {} : { details: error.details }),
  };
}

const KNOWN_CODES: ReadonlySet<string> = new Set(Object.values(ErrorCode));

/**
 * Sends one request to the running agent and resolves with its reply.
 *
 * Rejects with `AGENT_NOT_RUNNING` when nothing listens on the socket, `TIMEOUT` when the agent does not answer in
 * time, `PROTOCOL_ERROR` for a reply that is not one, `STORAGE_FAILED` when the socket belongs to someone else or
 * cannot be opened, `ABORTED` through `signal`, and the agent's own error when it refuses the request.
 */
export async function sendControl<R extends ControlRequest>(
  request: R,
  options: SendControlOptions = {},
): Promise<ControlReplies[R['op']]> {
  const path = options.path ?? controlSocketPath();
  const timeoutMs = options.timeoutMs ?? DEFAULT_CONTROL_TIMEOUT_MS;
  const signal = options.signal;
  if (signal?.aborted) throw abortError('The control request', signal.reason);
  if (process.platform !== 'win32' && !isWindowsPipe(path)) await assertOwnSocket(path);

  const text = await exchange(path, `${JSON.stringify(request)}\n`, timeoutMs, signal);
  return parseReply(request.op, text) as ControlReplies[R['op']];
}

/** The agent is not running, or the socket is someone else's: checked before connecting, so nothing is sent. */
async function assertOwnSocket(path: string): Promise<void> {
  let stat;
  try {
    stat = await lstat(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw notRunningError(path, error);
    throw cannotOpenError(path, error);
  }
  const uid = process.getuid?.();
  // Someone else's socket at our path could answer anything; the choice of request must only reach our own agent.
  if (uid !== undefined && stat.uid !== uid) {
    throw new TaplineError(
      ErrorCode.StorageFailed,
      `The control socket ${path} belongs to another user (uid ${stat.uid}); not talking to it.`,
      { hint: 'Remove it, or set TAPLINE_AGENT_SOCKET to a path in a folder only you can open.', details: { path } },
    );
  }
}

function notRunningError(path: string, cause?: unknown): TaplineError {
  return new TaplineError(ErrorCode.AgentNotRunning, 'No agent is running.', {
    cause,
    hint: 'Start it with `tapline agent` (or install it as a service: `tapline agent service --print`).',
    details: { path },
  });
}

function cannotOpenError(path: string, cause: unknown): TaplineError {
  return new TaplineError(ErrorCode.StorageFailed, `Cannot open the control socket ${path}.`, {
    cause,
    hint: 'The agent may run as another user; run this command as the user who runs the agent.',
    details: { path },
  });
}

/** Connects, writes `text`, and resolves with the first line of the answer. */
function exchange(path: string, text: string, timeoutMs: number, signal: AbortSignal | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const finish = (error: TaplineError | undefined, line?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      if (error) reject(error);
      else resolve(line ?? '');
    };
    const onAbort = (): void => finish(abortError('The control request', signal?.reason));
    const timer = setTimeout(
      () =>
        finish(
          new TaplineError(ErrorCode.Timeout, `The agent did not answer within ${timeoutMs} ms.`, {
            hint: 'It may be busy or hung: check its log, or restart it.',
            details: { path, timeoutMs },
          }),
        ),
      timeoutMs,
    );
    signal?.addEventListener('abort', onAbort, { once: true });

    socket.on('connect', () => socket.write(text));
    socket.on('data', (chunk: Buffer) => {
      const newline = chunk.indexOf(0x0a);
      const take = newline < 0 ? chunk : chunk.subarray(0, newline);
      size += take.length;
      if (size > MAX_REPLY_BYTES) {
        finish(new TaplineError(ErrorCode.ProtocolError, `The agent's reply is larger than ${MAX_REPLY_BYTES} bytes.`));
        return;
      }
      chunks.push(take);
      if (newline >= 0) finish(undefined, Buffer.concat(chunks).toString('utf8'));
    });
    socket.on('end', () => {
      if (size === 0) {
        finish(new TaplineError(ErrorCode.ProtocolError, 'The agent closed the connection without answering.'));
      } else {
        // A reply without its final newline is still complete once the agent has closed the connection.
        finish(undefined, Buffer.concat(chunks).toString('utf8'));
      }
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      switch (error.code) {
        case 'ENOENT':
        case 'ECONNREFUSED':
          finish(notRunningError(path, error));
          return;
        case 'EACCES':
        case 'EPERM':
          finish(cannotOpenError(path, error));
          return;
        default:
          finish(
            new TaplineError(ErrorCode.ProtocolError, `The connection to the agent failed: ${error.message}`, {
              cause: error,
              details: { path },
            }),
          );
      }
    });
  });
}

function malformed(what: string): TaplineError {
  return new TaplineError(ErrorCode.ProtocolError, `The agent's reply is malformed: ${what}.`, {
    hint: 'Use a `tapline` of the same release as the running agent.',
  });
}

/** Checks a reply line and returns the part the caller wants, or throws the error it carries. */
function parseReply(op: ControlRequest['op'], line: string): ControlReplies[ControlRequest['op']] {
  let reply: unknown;
  try {
    reply = JSON.parse(line);
  } catch {
    throw malformed('not JSON');
  }
  if (typeof reply !== 'object' || reply === null || Array.isArray(reply)) throw malformed('not a JSON object');
  const fields = reply as Record<string, unknown>;
  if (fields['v'] !== CONTROL_PROTOCOL_VERSION) {
    throw malformed(`protocol version ${JSON.stringify(fields['v'] ?? null)}, expected ${CONTROL_PROTOCOL_VERSION}`);
  }
  if (fields['ok'] === false) throw remoteError(fields['error']);
  if (fields['ok'] !== true) throw malformed('no "ok"');
  switch (op) {
    case 'status': {
      const status = fields['status'];
      if (!isRecord(status) || status['v'] !== 1 || typeof status['pid'] !== 'number') throw malformed('no status');
      return { status: status as unknown as AgentStatus };
    }
    case 'choose': {
      if (typeof fields['chosen'] !== 'string') throw malformed('no "chosen"');
      return { chosen: fields['chosen'] };
    }
    case 'ping': {
      if (typeof fields['pid'] !== 'number') throw malformed('no "pid"');
      return { pid: fields['pid'] };
    }
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The agent's error as a Tapline error; a code this copy does not know (a newer agent) becomes `INTERNAL`. */
function remoteError(error: unknown): TaplineError {
  if (!isRecord(error) || typeof error['code'] !== 'string' || typeof error['message'] !== 'string') {
    throw malformed('a failure without an error');
  }
  const known = KNOWN_CODES.has(error['code']);
  const details = isRecord(error['details']) ? error['details'] : {};
  return new TaplineError(known ? (error['code'] as TaplineErrorCode) : ErrorCode.Internal, error['message'], {
    ...(typeof error['hint'] === 'string' ? { hint: error['hint'] } : {}),
    details: known ? details : { ...details, agentCode: error['code'] },
  });
}
