import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { ErrorCode, TaplineError } from '@tapline/core';
import type { ReaderEmulation } from './emulation.js';
import { nodelayShim, type NodelayShim } from './nodelay.js';
import { findExecutable, missingStackError, pcscStackAvailability, type PcscStackPaths } from './stack.js';
import { IsolatedVirtualCard, type ApduRule } from './isolated-card.js';
import { VirtualCard, type ApduHook } from './vpicc.js';

/**
 * How a private pcscd is kept apart from the machine's own (pcscd 1.9.9 has one compiled-in socket path and ignores
 * `PCSCLITE_CSOCK_NAME`, pcsc-stack.md §1):
 *
 * - `mount-namespace`: pcscd runs under `unshare --mount` (as root, or in a user namespace) with a private directory
 *   bound over the parent of its IPC directory, so its socket and pid file live in a temporary directory, and with
 *   an empty directory bound over its USB driver directory, so it never claims a real reader. Nothing of the machine
 *   is touched. Preferred.
 * - `socket-activation`: `systemd-socket-activate -l <tmp>/pcscd.comm pcscd …` gives pcscd a private socket, but it
 *   still writes (and on exit deletes) the machine's `pcscd.pid`, and it may claim USB readers nobody holds.
 * - `default-socket`: plain `pcscd -f`, on the machine's socket path; used only when no pcscd socket exists there.
 *
 * `TAPLINE_PCSCD_ISOLATION` forces one of them.
 */
export type PcscdIsolation = 'mount-namespace' | 'socket-activation' | 'default-socket';

/** Options of {@link startPcscd}. */
export interface PcscdOptions {
  /** The reader model: its name becomes the vpcd FRIENDLYNAME, and cards made by {@link PrivatePcscd.card} use it. */
  readonly emulation: ReaderEmulation;
  /** Overrides the emulation's name (no `"`). pcsc-lite appends ` 00 00` and ` 00 01`. */
  readonly friendlyName?: string;
  /** vpcd's CHANNELID: slot 0 listens on this port, slot 1 on the next. Default: a free pair in 20000–31999. */
  readonly channelId?: number;
  /** Run pcscd with `-d` (its log is in {@link PrivatePcscd.log}). Default false. */
  readonly debug?: boolean;
  /** Run pcscd with `-a`, logging every APDU and SW. Default false. */
  readonly logApdus?: boolean;
  /** Preload the TCP_NODELAY shim (about 0.1 ms per APDU instead of 44 ms). Default true. */
  readonly nodelay?: boolean;
  /** How long to wait for pcscd's socket and vpcd's ports. Default 5000 ms. */
  readonly startTimeoutMs?: number;
}

/** Options of {@link PrivatePcscd.card}. */
export interface PcscdCardOptions {
  /** vpcd slot: 0 is reader `… 00 00`, 1 is `… 00 01`. Default 0. */
  readonly slot?: 0 | 1;
  /** Per-APDU rules (delays, "never answer", replaced answers). */
  readonly rules?: readonly ApduRule[];
  readonly insertTimeoutMs?: number;
  readonly history?: number;
  /** See {@link IsolatedVirtualCardOptions.observe}. Default true. */
  readonly observe?: boolean;
}

/** Options of {@link PrivatePcscd.inProcessCard}. */
export interface PcscdInProcessCardOptions {
  readonly slot?: 0 | 1;
  readonly onApdu?: ApduHook;
  readonly insertTimeoutMs?: number;
  readonly history?: number;
}

/** What {@link PrivatePcscd} needs of its cards to restart and stop them. */
type PcscdCard = Pick<VirtualCard, 'wanted' | 'remove'> & { insert(): Promise<boolean> };

/** How one private pcscd process ended. */
export interface PcscdExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** Everything shared by the private pcscd instances of this process. */
interface ProcessContext {
  readonly stack: PcscStackPaths;
  readonly dir: string;
  readonly isolation: PcscdIsolation;
  /** Stable for the whole process: libpcsclite reads PCSCLITE_CSOCK_NAME once and keeps it. */
  readonly socketPath: string;
  /** The private directory bound over the parent of pcscd's IPC directory (`mount-namespace`). */
  readonly runDir: string;
  readonly emptyDir: string;
  readonly vpcdDriver: string;
}

let processContext: ProcessContext | undefined;
let isolation: PcscdIsolation | undefined;
let exitHookInstalled = false;
let active: PrivatePcscd | undefined;
let instances = 0;
const children = new Set<ChildProcess>();

const LOG_LIMIT = 256 * 1024;
const STOP_TIMEOUT_MS = 3000;
const KILL_TIMEOUT_MS = 2000;
const POLL_MS = 10;
const SHELL = 'sh';
/** Binds the private directories, then execs pcscd: same pid, so our SIGTERM and SIGKILL reach pcscd itself. */
const NAMESPACE_SCRIPT =
  'mount --bind "$1" "$2" && { [ ! -d "$4" ] || mount --bind "$3" "$4"; } && shift 4 && exec "$@"';

/**
 * Starts a private pcscd with one vpcd entry for `options.emulation` (pcsc-stack.md §7: one vpcd entry per pcscd, two
 * slots), preloads the TCP_NODELAY shim, and waits until its socket exists and vpcd listens on both ports. It sets
 * `process.env.PCSCLITE_CSOCK_NAME` so that the `pcsclite` binding in this process talks to it; child processes
 * need {@link PrivatePcscd.env}.
 *
 * One private pcscd runs per process at a time (its socket path is fixed per process, because libpcsclite reads the
 * variable only once); start the next reader model after `stop()`. Fails with `TRANSPORT_UNAVAILABLE` when pcscd
 * or vpcd is missing or pcscd does not come up, and with `INVALID_ARGUMENT` while another one runs.
 */
export function startPcscd(options: PcscdOptions): Promise<PrivatePcscd> {
  return PrivatePcscd.start(options);
}

/**
 * One private pcscd with a vpcd reader (see {@link startPcscd}). Its readers are {@link PrivatePcscd.readerNames};
 * put chips on them with {@link PrivatePcscd.card}.
 */
export class PrivatePcscd {
  /** The vpcd FRIENDLYNAME. */
  readonly friendlyName: string;
  readonly emulation: ReaderEmulation;
  /** The pcscd socket; `PCSCLITE_CSOCK_NAME` for clients. */
  readonly socketPath: string;
  readonly isolation: PcscdIsolation;
  /** Whether the TCP_NODELAY shim is preloaded, and if not why. */
  readonly nodelay: NodelayShim;
  readonly #context: ProcessContext;
  readonly #options: PcscdOptions;
  readonly #confDir: string;
  readonly #cards: PcscdCard[] = [];
  readonly #isolated: IsolatedVirtualCard[] = [];
  #ports: readonly [number, number] = [0, 0];
  #child: ChildProcess | undefined;
  #exit: Promise<PcscdExit> = Promise.resolve({ code: null, signal: null });
  #exited = true;
  #log: string[] = [];
  #logSize = 0;
  #stopped = false;
  #previousSocketEnv: string | undefined;

  /** See {@link startPcscd}. */
  static async start(options: PcscdOptions): Promise<PrivatePcscd> {
    const stack = pcscStackAvailability();
    if (!stack.available) throw missingStackError(stack.reason);
    if (active) {
      throw new TaplineError(
        ErrorCode.InvalidArgument,
        `A private pcscd (${active.friendlyName}) is still running in this process; stop() it before starting another.`,
      );
    }
    const friendlyName = options.friendlyName ?? options.emulation.friendlyName;
    if (friendlyName.includes('"') || friendlyName.length === 0 || friendlyName.length > 100) {
      throw new TaplineError(ErrorCode.InvalidArgument, `Unusable reader name for reader.conf: ${friendlyName}`);
    }
    const context = ensureProcessContext(stack);
    if (context.isolation === 'default-socket' && (await socketAnswers(context.socketPath))) {
      releaseProcessContext();
      throw new TaplineError(
        ErrorCode.TransportUnavailable,
        `Cannot start a private pcscd: ${context.socketPath} belongs to the machine's pcscd (or systemd's pcscd.socket), and neither a mount namespace (unshare) nor systemd-socket-activate is usable here.`,
        { hint: 'Install util-linux (unshare) or systemd (systemd-socket-activate), or stop the system pcscd.' },
      );
    }
    const shim: NodelayShim =
      options.nodelay === false ? { path: undefined, reason: 'disabled by the caller' } : nodelayShim();
    if (!shim.path && options.nodelay !== false)
      warnOnce(`Tapline vpcd stack: ${shim.reason ?? 'no TCP_NODELAY shim'}`);
    const pcscd = new PrivatePcscd(context, options, friendlyName, shim);
    active = pcscd;
    try {
      await pcscd.launch(options.channelId);
    } catch (error) {
      await pcscd.stop();
      throw error;
    }
    return pcscd;
  }

  private constructor(context: ProcessContext, options: PcscdOptions, friendlyName: string, shim: NodelayShim) {
    this.#context = context;
    this.#options = options;
    this.friendlyName = friendlyName;
    this.emulation = options.emulation;
    this.socketPath = context.socketPath;
    this.isolation = context.isolation;
    this.nodelay = shim;
    this.#confDir = join(context.dir, `conf-${++instances}`);
    this.#previousSocketEnv = process.env['PCSCLITE_CSOCK_NAME'];
  }

  /** The reader names pcsc-lite gives the two vpcd slots: `<name> 00 00` and `<name> 00 01`. */
  get readerNames(): readonly [string, string] {
    return [`${this.friendlyName} 00 00`, `${this.friendlyName} 00 01`];
  }

  /** The reader of slot 0. */
  get readerName(): string {
    return this.readerNames[0];
  }

  /** The environment a client in another process needs. */
  get env(): { readonly PCSCLITE_CSOCK_NAME: string } {
    return { PCSCLITE_CSOCK_NAME: this.socketPath };
  }

  /** vpcd's ports for slot 0 and slot 1 (they may change on {@link PrivatePcscd.restart}). */
  get ports(): readonly [number, number] {
    return this.#ports;
  }

  /** pcscd's process id while it runs. */
  get pid(): number | undefined {
    return this.#exited ? undefined : this.#child?.pid;
  }

  get running(): boolean {
    return !this.#exited;
  }

  /** Resolves when the current pcscd process has exited. */
  get exited(): Promise<PcscdExit> {
    return this.#exit;
  }

  /** pcscd's output so far (the last 256 KB): with `debug`, the first place to look when a test fails. */
  log(): string {
    return this.#log.join('');
  }

  /**
   * A virtual card for one slot of this reader, using the reader's emulation, running in a worker thread (see
   * {@link IsolatedVirtualCard} for why). Put a chip on the reader with `card.insert({ kind: 'ntag215' })`. Cards
   * follow {@link PrivatePcscd.restart} and are removed by {@link PrivatePcscd.stop}.
   */
  card(options: PcscdCardOptions = {}): IsolatedVirtualCard {
    const slot = options.slot ?? 0;
    const card = new IsolatedVirtualCard({
      port: () => this.#ports[slot],
      emulation: this.emulation,
      ...(options.rules ? { rules: options.rules } : {}),
      ...(options.insertTimeoutMs === undefined ? {} : { insertTimeoutMs: options.insertTimeoutMs }),
      ...(options.history === undefined ? {} : { history: options.history }),
      ...(options.observe === undefined ? {} : { observe: options.observe }),
    });
    this.#cards.push(card);
    this.#isolated.push(card);
    return card;
  }

  /**
   * A virtual card in this thread, for chips and hooks that cannot cross threads (custom chip objects, hook
   * functions, a custom emulation). With the `pcsclite` binding in the same thread this can deadlock the process
   * whenever a status event (a connect, INUSE) meets a pending APDU (see {@link IsolatedVirtualCard}); use it when
   * the PC/SC client runs in another process or thread.
   */
  inProcessCard(options: PcscdInProcessCardOptions = {}): VirtualCard {
    const slot = options.slot ?? 0;
    const card = new VirtualCard({
      port: () => this.#ports[slot],
      emulation: this.emulation,
      ...(options.onApdu ? { onApdu: options.onApdu } : {}),
      ...(options.insertTimeoutMs === undefined ? {} : { insertTimeoutMs: options.insertTimeoutMs }),
      ...(options.history === undefined ? {} : { history: options.history }),
    });
    this.#cards.push(card);
    return card;
  }

  /**
   * Kills pcscd with SIGKILL, as a crash would: clients see `RPC transport error`, vpcd's connections drop. Cards stay
   * "on the reader" ({@link VirtualCard.wanted}) for {@link PrivatePcscd.restart}.
   */
  async kill(): Promise<void> {
    await this.terminate('SIGKILL');
  }

  /**
   * Starts pcscd again (after stopping it if it still runs), on the same socket and, if they are still free, the
   * same ports, and puts back every card that was on the reader. Clients need a new PC/SC context afterwards.
   */
  async restart(): Promise<void> {
    if (this.#stopped) throw new TaplineError(ErrorCode.InvalidArgument, 'This private pcscd was stopped for good.');
    await this.terminate('SIGTERM');
    await this.launch(this.#options.channelId ?? this.#ports[0]);
    for (const card of this.#cards) {
      if (card.wanted) await card.insert();
    }
  }

  /** Takes every card off, stops pcscd (SIGTERM, then SIGKILL), removes its files. Safe to call more than once. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await Promise.allSettled(this.#cards.map((card) => card.remove()));
    await Promise.allSettled(this.#isolated.map((card) => card.terminate()));
    await this.terminate('SIGTERM');
    rmSync(this.#confDir, { recursive: true, force: true });
    if (active === this) active = undefined;
    releaseProcessContext();
    if (this.#previousSocketEnv === undefined) delete process.env['PCSCLITE_CSOCK_NAME'];
    else process.env['PCSCLITE_CSOCK_NAME'] = this.#previousSocketEnv;
  }

  /** Starts the process; tries other ports when vpcd cannot listen on the chosen ones. */
  private async launch(preferredChannel: number | undefined): Promise<void> {
    const attempts = this.#options.channelId === undefined ? 3 : 1;
    let lastError: unknown;
    for (let attempt = 0; attempt < attempts; attempt++) {
      const channel = attempt === 0 && preferredChannel !== undefined ? preferredChannel : await pickChannel();
      this.#ports = [channel, channel + 1];
      try {
        await this.spawnOnce();
        process.env['PCSCLITE_CSOCK_NAME'] = this.socketPath;
        return;
      } catch (error) {
        lastError = error;
        await this.terminate('SIGKILL');
      }
    }
    throw lastError;
  }

  private async spawnOnce(): Promise<void> {
    const context = this.#context;
    const [port] = this.#ports;
    const hex = `0x${port.toString(16).toUpperCase()}`;
    mkdirSync(this.#confDir, { recursive: true });
    writeFileSync(
      join(this.#confDir, 'vpcd'),
      [
        `FRIENDLYNAME "${this.friendlyName}"`,
        `DEVICENAME   /dev/null:${hex}`,
        `LIBPATH      ${context.vpcdDriver}`,
        `CHANNELID    ${hex}`,
        '',
      ].join('\n'),
    );
    removeStaleFiles(context);
    const pcscdArgs = ['-f', '-c', this.#confDir];
    if (this.#options.debug) pcscdArgs.push('-d');
    if (this.#options.logApdus) pcscdArgs.push('-a');
    const [command, args] = commandLine(context, pcscdArgs);
    const preload = [this.nodelay.path, process.env['LD_PRELOAD']].filter(Boolean).join(' ');
    const child = spawn(command, args, {
      env: { ...process.env, ...(preload ? { LD_PRELOAD: preload } : {}) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.#child = child;
    this.#exited = false;
    children.add(child);
    this.#exit = new Promise<PcscdExit>((resolve) => {
      const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
        this.#exited = true;
        children.delete(child);
        resolve({ code, signal });
      };
      child.once('exit', finish);
      child.once('error', (error) => {
        this.append(`spawn failed: ${error.message}\n`);
        finish(null, null);
      });
    });
    child.stdout?.on('data', (chunk: Buffer) => this.append(chunk.toString('utf8')));
    child.stderr?.on('data', (chunk: Buffer) => this.append(chunk.toString('utf8')));
    // A test that forgets stop() must not keep its worker alive; the exit hook and the shim's parent-death signal
    // still end pcscd.
    child.unref();
    await this.waitUntilReady(child);
  }

  private async waitUntilReady(child: ChildProcess): Promise<void> {
    const timeoutMs = this.#options.startTimeoutMs ?? 5000;
    const deadline = Date.now() + timeoutMs;
    let poked = false;
    for (;;) {
      if (this.#exited) throw this.startError('pcscd exited during startup');
      if (existsSync(this.socketPath)) {
        if (this.isolation === 'socket-activation' && !poked) {
          // systemd-socket-activate execs pcscd only once a client connects.
          poked = true;
          await poke(this.socketPath);
        }
        if (child.pid !== undefined && portsListening(child.pid, this.#ports)) return;
      }
      if (Date.now() > deadline) {
        throw this.startError(
          `pcscd's socket and vpcd's ports ${this.#ports.join('/')} were not ready in ${timeoutMs} ms`,
        );
      }
      await sleep(POLL_MS);
    }
  }

  private startError(what: string): TaplineError {
    const tail = this.log().slice(-2000);
    return new TaplineError(ErrorCode.TransportUnavailable, `Starting a private pcscd failed: ${what}.`, {
      details: { isolation: this.isolation, socket: this.socketPath, ports: this.#ports, log: tail },
      hint: 'Run with debug: true and read pcscd.log(); is another process using the vpcd ports?',
    });
  }

  private async terminate(signal: NodeJS.Signals): Promise<void> {
    const child = this.#child;
    if (!child || this.#exited) return;
    child.kill(signal);
    if (await settlesWithin(this.#exit, signal === 'SIGKILL' ? KILL_TIMEOUT_MS : STOP_TIMEOUT_MS)) return;
    child.kill('SIGKILL');
    if (!(await settlesWithin(this.#exit, KILL_TIMEOUT_MS))) {
      throw new TaplineError(ErrorCode.Internal, `pcscd (pid ${child.pid}) did not exit after SIGKILL.`);
    }
  }

  private append(text: string): void {
    this.#log.push(text);
    this.#logSize += text.length;
    while (this.#logSize > LOG_LIMIT && this.#log.length > 1) this.#logSize -= this.#log.shift()!.length;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Process-wide setup
// ---------------------------------------------------------------------------------------------------------------

/**
 * The process's private directory has a fixed name (`tapline-pcscd-<pid>`), so that the socket path stays the same
 * when the directory is removed after one pcscd and made again for the next: libpcsclite keeps the first path.
 */
function ensureProcessContext(stack: PcscStackPaths): ProcessContext {
  if (processContext) return processContext;
  const dir = join(tmpdir(), `tapline-pcscd-${process.pid}`);
  makePrivateDirectory(dir);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // Only a plain exit runs this; a test worker that is killed relies on stop() having run, and the shim's
    // parent-death signal ends pcscd.
    process.once('exit', () => {
      for (const child of children) {
        try {
          child.kill('SIGKILL');
        } catch {
          // already gone
        }
      }
      if (processContext) rmSync(processContext.dir, { recursive: true, force: true });
    });
  }
  const runDir = join(dir, 'run');
  const emptyDir = join(dir, 'empty');
  mkdirSync(runDir);
  mkdirSync(emptyDir);
  // A copy, because the namespace hides the driver directory it normally lives in.
  const vpcdDriver = join(dir, 'libifdvpcd.so');
  copyFileSync(stack.vpcdDriver, vpcdDriver);
  isolation ??= chooseIsolation(stack, dir);
  const socketPath =
    isolation === 'mount-namespace'
      ? join(runDir, basename(stack.ipcDir), 'pcscd.comm')
      : isolation === 'socket-activation'
        ? join(dir, 'pcscd.comm')
        : join(stack.ipcDir, 'pcscd.comm');
  processContext = { stack, dir, isolation, socketPath, runDir, emptyDir, vpcdDriver };
  return processContext;
}

/** Removes the private directory once no pcscd of this process runs any more. */
function releaseProcessContext(): void {
  if (!processContext || active || children.size > 0) return;
  rmSync(processContext.dir, { recursive: true, force: true });
  processContext = undefined;
}

/** Creates `dir` for this user only; a leftover of an earlier process with the same pid is replaced. */
function makePrivateDirectory(dir: string): void {
  try {
    mkdirSync(dir, { mode: 0o700 });
    return;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  const existing = lstatSync(dir);
  if (!existing.isDirectory() || existing.uid !== process.getuid?.()) {
    throw new TaplineError(ErrorCode.TransportUnavailable, `${dir} exists and is not this user's directory.`);
  }
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { mode: 0o700 });
}

/** The unshare flags that worked in {@link chooseIsolation}. */
let namespaceFlags: readonly string[] = [];

function namespaceArgs(): string[] {
  return [...namespaceFlags, '--mount', '--propagation', 'private', '--'];
}

function chooseIsolation(stack: PcscStackPaths, dir: string): PcscdIsolation {
  const forced = process.env['TAPLINE_PCSCD_ISOLATION'];
  if (forced === 'mount-namespace' || forced === 'socket-activation' || forced === 'default-socket') return forced;
  const unshare = findExecutable('unshare');
  if (unshare) {
    const probe = join(dir, 'probe');
    mkdirSync(probe);
    // Root may still lack CAP_SYS_ADMIN (a container); a user namespace can then grant it, as it does for non-root.
    const candidates = process.getuid?.() === 0 ? [[], ['--user', '--map-root-user']] : [['--user', '--map-root-user']];
    for (const flags of candidates) {
      namespaceFlags = flags;
      const result = spawnSync(
        unshare,
        [...namespaceArgs(), SHELL, '-c', 'mount --bind "$1" "$2"', SHELL, probe, dirname(stack.ipcDir)],
        { stdio: 'ignore', timeout: 5000 },
      );
      if (result.status === 0) {
        rmSync(probe, { recursive: true, force: true });
        return 'mount-namespace';
      }
    }
    rmSync(probe, { recursive: true, force: true });
  }
  if (findExecutable('systemd-socket-activate')) return 'socket-activation';
  return 'default-socket';
}

function commandLine(context: ProcessContext, pcscdArgs: readonly string[]): [string, string[]] {
  const { stack } = context;
  switch (context.isolation) {
    case 'mount-namespace':
      return [
        findExecutable('unshare') ?? 'unshare',
        [
          ...namespaceArgs(),
          SHELL,
          '-c',
          NAMESPACE_SCRIPT,
          SHELL,
          context.runDir,
          dirname(stack.ipcDir),
          context.emptyDir,
          stack.usbDropDir,
          stack.pcscd,
          ...pcscdArgs,
        ],
      ];
    case 'socket-activation':
      return [
        findExecutable('systemd-socket-activate') ?? 'systemd-socket-activate',
        ['-l', context.socketPath, stack.pcscd, ...pcscdArgs],
      ];
    case 'default-socket':
      return [stack.pcscd, [...pcscdArgs]];
  }
}

/** A killed pcscd leaves its socket and pid file; the next one (or the readiness check) must not see them. */
function removeStaleFiles(context: ProcessContext): void {
  if (context.isolation === 'default-socket') return;
  rmSync(context.socketPath, { force: true });
  if (context.isolation === 'mount-namespace') rmSync(join(dirname(context.socketPath), 'pcscd.pid'), { force: true });
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------

const warned = new Set<string>();

function warnOnce(message: string): void {
  if (warned.has(message)) return;
  warned.add(message);
  process.emitWarning(message, 'TaplineVpcdWarning');
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([promise.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** True when something accepts connections on the Unix socket (a stale socket file refuses them). */
function socketAnswers(socketPath: string): Promise<boolean> {
  if (!existsSync(socketPath)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const socket = connect(socketPath);
    const done = (answers: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answers);
    };
    const timer = setTimeout(() => done(true), 1000);
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** One connection that is closed at once: what makes systemd-socket-activate exec pcscd. */
function poke(socketPath: string): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect(socketPath);
    const done = (): void => {
      socket.destroy();
      resolve();
    };
    socket.once('connect', done);
    socket.once('error', done);
  });
}

/** A random even port pair below Linux's ephemeral range whose ports both look free (vpcd listens on 0.0.0.0). */
async function pickChannel(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 20_000 + 2 * Math.floor(Math.random() * 6000);
    if ((await portFree(port)) && (await portFree(port + 1))) return port;
  }
  throw new TaplineError(ErrorCode.TransportUnavailable, 'No free port pair for vpcd in 20000–31999.');
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '0.0.0.0', exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/**
 * True when both ports are in LISTEN state, held by `pid` where /proc lets us see its descriptors: a port that
 * another process holds would send our cards to the wrong pcscd.
 */
function portsListening(pid: number, ports: readonly [number, number]): boolean {
  const listeners = listeningInodes();
  const own = socketInodesOf(pid);
  return ports.every((port) => {
    const inodes = listeners.get(port);
    if (!inodes || inodes.size === 0) return false;
    return own === undefined || [...inodes].some((inode) => own.has(inode));
  });
}

function listeningInodes(): Map<number, Set<string>> {
  const byPort = new Map<number, Set<string>>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode; st 0A is LISTEN.
      if (fields.length < 10 || fields[3] !== '0A') continue;
      const port = Number.parseInt(fields[1]!.split(':').pop() ?? '', 16);
      const set = byPort.get(port) ?? new Set<string>();
      set.add(fields[9]!);
      byPort.set(port, set);
    }
  }
  return byPort;
}

function socketInodesOf(pid: number): Set<string> | undefined {
  try {
    const inodes = new Set<string>();
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (match) inodes.add(match[1]!);
      } catch {
        // the descriptor closed meanwhile
      }
    }
    return inodes;
  } catch {
    return undefined;
  }
}
