import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createConnection, createServer, type Server } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, TaplineError, createLogger, type TaplineErrorCode } from '@tapline/core';
import {
  controlSocketPath,
  sendControl,
  startControlServer,
  type AgentStatus,
  type ChooseOutcome,
  type ControlHandlers,
} from '../src/control.js';

// Real Unix sockets in private temporary folders; nothing here is mocked below the socket.
const posixOnly = process.platform === 'win32' ? it.skip : it;

const STATUS: AgentStatus = {
  v: 1,
  pid: process.pid,
  startedAt: '2026-11-27T05:00:00.000Z',
  associated: { sub: 'a1b2c3', issuer: 'http://127.0.0.1:1234/oidc' },
  platform: { url: 'http://127.0.0.1:1234', reachable: true, lastContactAt: '2026-11-27T05:01:00.000Z' },
  readers: [{ name: 'Tapline Simulated Reader', driver: 'sim', capabilities: ['iso14443a-raw'], tag: { uid: '04a1' } }],
  pending: [
    { id: 'sr_1', relyingParty: 'Front door', purpose: 'Open the front door', chosen: true },
    { id: 'sr_2', relyingParty: 'Workshop', purpose: 'Unlock the laser cutter' },
  ],
  lastScans: [{ requestId: 'sr_0', at: '2026-11-27T05:00:30.000Z', outcome: 'answered', chip: 'spark2' }],
};

const handlers: ControlHandlers = {
  status: () => STATUS,
  choose: (id): ChooseOutcome =>
    id === 'sr_1' || id === 'sr_2'
      ? { chosen: id }
      : { error: { code: 'UNKNOWN_REQUEST', message: `No pending request has the id ${id}.` } },
};

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const step of cleanups.splice(0).reverse()) await step();
});

/** A fresh private folder (mkdtemp makes it 0700) and a socket path inside it. */
function socketInTempDir(): { dir: string; path: string } {
  const dir = mkdtempSync(join(tmpdir(), 'tapline-ctl-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return { dir, path: join(dir, 'agent.sock') };
}

async function start(path: string, extra: Partial<Parameters<typeof startControlServer>[0]> = {}) {
  const server = await startControlServer({ path, handlers, ...extra });
  cleanups.push(() => server.close());
  return server;
}

/** Sends `text` as is and returns everything the server answered before it closed the connection. */
function raw(path: string, text: string | undefined, { end = false } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    let received = '';
    socket.setEncoding('utf8');
    socket.on('connect', () => {
      if (text !== undefined) socket.write(text);
      if (end) socket.end();
    });
    socket.on('data', (chunk: string) => (received += chunk));
    socket.on('close', () => resolve(received));
    socket.on('error', reject);
  });
}

function reply(text: string): Record<string, unknown> {
  expect(text.endsWith('\n')).toBe(true);
  return JSON.parse(text) as Record<string, unknown>;
}

async function rejectsWith(promise: Promise<unknown>, code: TaplineErrorCode): Promise<TaplineError> {
  const error: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(TaplineError);
  expect((error as TaplineError).code).toBe(code);
  return error as TaplineError;
}

/** A server that accepts connections and does whatever `onConnection` says (for client-side failure tests). */
async function fakeServer(path: string, onConnection: (socket: import('node:net').Socket) => void): Promise<Server> {
  const sockets = new Set<import('node:net').Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    // Read (and drop) what the client sends, so that its closing is noticed.
    socket.resume();
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  cleanups.push(() => {
    for (const socket of sockets) socket.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return server;
}

describe('controlSocketPath', () => {
  it('honours TAPLINE_AGENT_SOCKET on every platform', () => {
    for (const platform of ['linux', 'darwin', 'win32'] as const) {
      expect(controlSocketPath({ TAPLINE_AGENT_SOCKET: '/x/y.sock' }, platform)).toBe('/x/y.sock');
    }
  });

  it('Linux: $XDG_RUNTIME_DIR/tapline/agent.sock, else <TMPDIR or /tmp>/tapline-<uid>/agent.sock', () => {
    expect(controlSocketPath({ XDG_RUNTIME_DIR: '/run/user/1000' }, 'linux', { uid: 1000 })).toBe(
      '/run/user/1000/tapline/agent.sock',
    );
    expect(controlSocketPath({}, 'linux', { uid: 1000 })).toBe('/tmp/tapline-1000/agent.sock');
    expect(controlSocketPath({ TMPDIR: '/var/tmp/' }, 'freebsd', { uid: 7 })).toBe('/var/tmp/tapline-7/agent.sock');
    // A relative XDG_RUNTIME_DIR is invalid by the spec and ignored.
    expect(controlSocketPath({ XDG_RUNTIME_DIR: 'run' }, 'linux', { uid: 5 })).toBe('/tmp/tapline-5/agent.sock');
  });

  it('macOS: under ~/Library/Application Support, which is not swept like the temporary folders', () => {
    expect(controlSocketPath({ TMPDIR: '/var/folders/x/T/' }, 'darwin', { home: '/Users/ada lovelace' })).toBe(
      '/Users/ada lovelace/Library/Application Support/tapline/agent.sock',
    );
  });

  it('Windows: a named pipe per user, with a name every shell leaves alone and a random id no one can guess', () => {
    const { dir: local } = socketInTempDir();
    const env = { LOCALAPPDATA: local };
    const first = controlSocketPath(env, 'win32', { username: 'ada' });
    const match = /^\\\\\.\\pipe\\tapline-agent-ada-([A-Za-z0-9_-]{22})$/.exec(first);
    expect(match, first).not.toBeNull();
    const id = match![1]!;
    // 128 random bits, kept where the agent and every client of this user read them.
    expect(Buffer.from(id, 'base64url')).toHaveLength(16);
    const file = join(local, 'tapline', 'agent-pipe-id');
    expect(readFileSync(file, 'utf8')).toBe(id);
    if (process.platform !== 'win32') {
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(statSync(dirname(file)).mode & 0o777).toBe(0o700);
    }
    // No temporary file left next to it.
    expect(readdirSync(dirname(file))).toEqual(['agent-pipe-id']);

    // The agent and the CLI compute the same name; the user name part is still sanitised.
    expect(controlSocketPath(env, 'win32', { username: 'ada' })).toBe(first);
    expect(controlSocketPath(env, 'win32', { username: 'Ada Lovelace\\x' })).toBe(
      `\\\\.\\pipe\\tapline-agent-Ada_Lovelace_x-${id}`,
    );
    expect(controlSocketPath({ ...env, USERNAME: 'bob' }, 'win32')).toBe(`\\\\.\\pipe\\tapline-agent-bob-${id}`);

    // Another user (another profile folder) gets another id.
    const { dir: otherLocal } = socketInTempDir();
    expect(controlSocketPath({ LOCALAPPDATA: otherLocal }, 'win32', { username: 'ada' })).not.toBe(first);
  });

  it('Windows: without LOCALAPPDATA the id lives in <home>/AppData/Local; an existing id file is used as is', () => {
    const { dir: home } = socketInTempDir();
    const file = join(home, 'AppData', 'Local', 'tapline', 'agent-pipe-id');
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, 'AAAAAAAAAAAAAAAAAAAAAA\n');
    expect(controlSocketPath({}, 'win32', { username: 'ada', home })).toBe(
      '\\\\.\\pipe\\tapline-agent-ada-AAAAAAAAAAAAAAAAAAAAAA',
    );
    // TAPLINE_AGENT_SOCKET wins, and then the id file is not even looked at.
    const { dir: untouched } = socketInTempDir();
    expect(controlSocketPath({ TAPLINE_AGENT_SOCKET: '\\\\.\\pipe\\mine', LOCALAPPDATA: untouched }, 'win32')).toBe(
      '\\\\.\\pipe\\mine',
    );
    expect(readdirSync(untouched)).toEqual([]);
  });

  it('Windows: an id file that holds no id is STORAGE_FAILED with the hint to delete it, never replaced', () => {
    const { dir: local } = socketInTempDir();
    const file = join(local, 'tapline', 'agent-pipe-id');
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, 'not an id');
    let thrown: unknown;
    try {
      controlSocketPath({ LOCALAPPDATA: local }, 'win32', { username: 'ada' });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(TaplineError);
    expect((thrown as TaplineError).code).toBe(ErrorCode.StorageFailed);
    expect((thrown as TaplineError).message).toBe(`The agent's pipe id file ${file} does not hold a pipe id.`);
    expect((thrown as TaplineError).hint).toMatch(/^Delete it/);
    expect(readFileSync(file, 'utf8')).toBe('not an id');
  });

  it('defaults to this process (and stays the same between calls)', () => {
    expect(controlSocketPath()).toBe(controlSocketPath(process.env, process.platform));
  });
});

/** Leaves a real stale socket at `path`: a process that listens and is killed with SIGKILL, so nothing unlinks it. */
async function staleSocket(path: string): Promise<void> {
  const child = spawn(
    process.execPath,
    ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => process.stdout.write('up'))`],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
  child.kill('SIGKILL');
  await new Promise<void>((resolve) => child.once('exit', () => resolve()));
  expect(statSync(path).isSocket()).toBe(true);
}

/** The built module, for agents in child processes (the tests run after `tsc -b`, like the package's `test` task). */
const DIST_CONTROL = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'control.js');

/**
 * A child process that imports the built control module, says `ready`, starts a control server on `path` when it
 * reads `go`, and prints the outcome as one JSON line: `{"started":true,"pid":…}` or `{"code":…,"pid"?:…}`. A
 * child that started keeps serving until its stdin ends.
 */
const CHILD_AGENT = `
const [url, path] = process.argv.slice(1);
const { startControlServer } = await import(url);
const handlers = { status: () => { throw new Error('not in this test'); }, choose: () => ({ chosen: 'x' }) };
const say = (value) => process.stdout.write(JSON.stringify(value) + '\\n');
process.stdin.setEncoding('utf8');
process.stdin.once('data', async () => {
  try {
    const server = await startControlServer({ path, handlers });
    say({ started: true, pid: process.pid });
    process.stdin.once('end', () => void server.close().then(() => process.exit(0)));
    process.stdin.resume();
  } catch (error) {
    say({ code: error.code, pid: error.details?.pid });
    process.exit(0);
  }
});
say('ready');
`;

/** Settles when `child` has exited (at once if it has). */
function exited(child: ChildProcessWithoutNullStreams): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

type ChildOutcome = { started: true; pid: number } | { code: string; pid?: number };

function childAgent(path: string): { child: ChildProcessWithoutNullStreams; lines: AsyncIterator<string> } {
  const child = spawn(
    process.execPath,
    ['--input-type=module', '-e', CHILD_AGENT, pathToFileURL(DIST_CONTROL).href, path],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  cleanups.push(() => {
    const done = exited(child);
    child.kill('SIGKILL');
    return done;
  });
  let buffered = '';
  const waiting: ((line: string) => void)[] = [];
  const ready: string[] = [];
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    for (let newline = buffered.indexOf('\n'); newline >= 0; newline = buffered.indexOf('\n')) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      const waiter = waiting.shift();
      if (waiter) waiter(line);
      else ready.push(line);
    }
  });
  const lines: AsyncIterator<string> = {
    next: () =>
      new Promise((resolve, reject) => {
        const early = ready.shift();
        if (early !== undefined) return resolve({ value: early, done: false });
        const timer = setTimeout(() => reject(new Error(`the child agent said nothing; stderr: ${stderr}`)), 5000);
        waiting.push((value) => {
          clearTimeout(timer);
          resolve({ value, done: false });
        });
      }),
  };
  return { child, lines };
}

describe('control server and client', () => {
  posixOnly('status and choose round trip; close() removes the socket', async () => {
    const { path } = socketInTempDir();
    const server = await start(path);
    expect(server.path).toBe(path);

    const { status } = await sendControl({ v: 1, op: 'status' }, { path });
    expect(status).toEqual(STATUS);
    expect(await sendControl({ v: 1, op: 'choose', id: 'sr_2' }, { path })).toEqual({ chosen: 'sr_2' });
    expect(await sendControl({ v: 1, op: 'ping' }, { path })).toEqual({ pid: process.pid });

    await server.close();
    expect(existsSync(path)).toBe(false);
    await server.close(); // idempotent
    await rejectsWith(sendControl({ v: 1, op: 'status' }, { path }), ErrorCode.AgentNotRunning);
  });

  posixOnly('a refused choice comes back as INVALID_ARGUMENT with the reason and a hint', async () => {
    const { path } = socketInTempDir();
    await start(path);
    const error = await rejectsWith(
      sendControl({ v: 1, op: 'choose', id: 'sr_9' }, { path }),
      ErrorCode.InvalidArgument,
    );
    expect(error.message).toBe('No pending request has the id sr_9.');
    expect(error.details).toEqual({ reason: 'UNKNOWN_REQUEST', id: 'sr_9' });
    expect(error.hint).toMatch(/tapline agent status/);

    // On the wire, exactly: one JSON line, versioned, closed afterwards.
    expect(reply(await raw(path, '{"v":1,"op":"choose","id":"sr_9"}\n'))).toEqual({
      v: 1,
      ok: false,
      error: {
        code: 'INVALID_ARGUMENT',
        message: 'No pending request has the id sr_9.',
        hint: 'Run `tapline agent status` to see the pending requests and their ids.',
        details: { reason: 'UNKNOWN_REQUEST', id: 'sr_9' },
      },
    });
    expect(reply(await raw(path, '{"v":1,"op":"choose","id":""}\n'))).toMatchObject({
      ok: false,
      error: { code: 'INVALID_ARGUMENT' },
    });
  });

  posixOnly('answers malformed requests with PROTOCOL_ERROR, and keeps serving', async () => {
    const { path } = socketInTempDir();
    await start(path);
    const cases: [string, RegExp][] = [
      ['{"v":1,"op":"reboot"}\n', /does not know the operation "reboot"/],
      ['{"v":1,"op":\n', /not valid JSON/],
      ['[1,2]\n', /not a JSON object/],
      ['{"v":2,"op":"status"}\n', /version 2; this agent speaks version 1/],
      ['{"op":"status"}\n', /version null/],
    ];
    for (const [request, message] of cases) {
      const answer = reply(await raw(path, request));
      expect(answer).toMatchObject({ v: 1, ok: false, error: { code: 'PROTOCOL_ERROR' } });
      expect((answer['error'] as { message: string }).message).toMatch(message);
    }
    expect((await sendControl({ v: 1, op: 'status' }, { path })).status.pid).toBe(process.pid);
  });

  posixOnly('a request without its newline is taken when the client closes its side', async () => {
    const { path } = socketInTempDir();
    await start(path);
    expect(reply(await raw(path, '{"v":1,"op":"ping"}', { end: true }))).toEqual({ v: 1, ok: true, pid: process.pid });
    expect(reply(await raw(path, undefined, { end: true }))).toMatchObject({
      ok: false,
      error: { code: 'PROTOCOL_ERROR', message: 'The connection ended before a request.' },
    });
  });

  posixOnly('refuses an oversized request and closes the connection', async () => {
    const { path } = socketInTempDir();
    await start(path, { maxRequestBytes: 64 });
    const answer = reply(await raw(path, `{"v":1,"op":"choose","id":"${'x'.repeat(100)}"}\n`));
    expect(answer).toMatchObject({ ok: false, error: { code: 'PROTOCOL_ERROR', details: { limit: 64 } } });
    // Also without any newline at all: the limit counts what arrived, the server does not wait for the end.
    const endless = reply(await raw(path, 'y'.repeat(10_000)));
    expect(endless).toMatchObject({ ok: false, error: { code: 'PROTOCOL_ERROR' } });
  });

  posixOnly('a client that sends nothing is answered TIMEOUT and dropped after the request timeout', async () => {
    const { path } = socketInTempDir();
    await start(path, { requestTimeoutMs: 100 });
    const started = Date.now();
    const answer = reply(await raw(path, '{"v":1,'));
    expect(answer).toMatchObject({ ok: false, error: { code: 'TIMEOUT', details: { timeoutMs: 100 } } });
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(90);
    // The reply closes our connection; even a client that never closes its end is dropped within the linger time.
    expect(elapsed).toBeLessThan(2000);
  });

  posixOnly('a slow handler still answers: the request timeout is for receiving the request only', async () => {
    const { path } = socketInTempDir();
    await start(path, {
      requestTimeoutMs: 50,
      handlers: { ...handlers, status: () => new Promise((resolve) => setTimeout(() => resolve(STATUS), 200)) },
    });
    expect((await sendControl({ v: 1, op: 'status' }, { path })).status).toEqual(STATUS);
  });

  posixOnly('a handler that throws is reported, not fatal', async () => {
    const { path } = socketInTempDir();
    await start(path, {
      handlers: {
        status: () => {
          throw new TaplineError(ErrorCode.NotConfigured, 'Not ready yet.', { hint: 'Wait.' });
        },
        choose: () => Promise.reject(new Error('boom')),
      },
    });
    const error = await rejectsWith(sendControl({ v: 1, op: 'status' }, { path }), ErrorCode.NotConfigured);
    expect(error.hint).toBe('Wait.');
    await rejectsWith(sendControl({ v: 1, op: 'choose', id: 'x' }, { path }), ErrorCode.Internal);
    expect((await sendControl({ v: 1, op: 'ping' }, { path })).pid).toBe(process.pid);
  });

  posixOnly('creates the socket folder 0700 and the socket 0600', async () => {
    const { dir } = socketInTempDir();
    const nested = join(dir, 'runtime', 'tapline');
    const path = join(nested, 'agent.sock');
    const previous = process.umask(0o022);
    try {
      await start(path);
    } finally {
      process.umask(previous);
    }
    expect(statSync(nested).mode & 0o777).toBe(0o700);
    expect(statSync(path).isSocket()).toBe(true);
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  posixOnly('refuses a folder open to others, and one that is not a directory', async () => {
    const { dir } = socketInTempDir();
    const open = join(dir, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    const error = await rejectsWith(
      startControlServer({ path: join(open, 'agent.sock'), handlers }),
      ErrorCode.StorageFailed,
    );
    expect(error.message).toMatch(/is open to other users \(mode 777\)/);
    expect(error.hint).toMatch(/chmod 700/);
    expect(existsSync(join(open, 'agent.sock'))).toBe(false);

    const readable = join(dir, 'readable');
    mkdirSync(readable);
    chmodSync(readable, 0o755);
    await rejectsWith(startControlServer({ path: join(readable, 'agent.sock'), handlers }), ErrorCode.StorageFailed);

    const file = join(dir, 'file');
    writeFileSync(file, '');
    const notDir = await rejectsWith(
      startControlServer({ path: join(file, 'agent.sock'), handlers }),
      ErrorCode.StorageFailed,
    );
    expect(notDir.message).toMatch(/is not a directory/);
  });

  posixOnly('never deletes a file that is not a socket', async () => {
    const { path } = socketInTempDir();
    writeFileSync(path, 'precious');
    const error = await rejectsWith(startControlServer({ path, handlers }), ErrorCode.StorageFailed);
    expect(error.message).toMatch(/is not a socket/);
    expect(existsSync(path)).toBe(true);
  });

  posixOnly(
    'a second agent on the same path fails with AGENT_ALREADY_RUNNING (pid N); the first keeps serving',
    async () => {
      const { path } = socketInTempDir();
      await start(path);
      const error = await rejectsWith(startControlServer({ path, handlers }), ErrorCode.AgentAlreadyRunning);
      expect(error.message).toBe(`An agent is already running (pid ${process.pid}).`);
      expect(error.details).toEqual({ path, pid: process.pid });
      expect((await sendControl({ v: 1, op: 'status' }, { path })).status).toEqual(STATUS);
      // The start-up lock is released either way.
      expect(existsSync(`${path}.lock`)).toBe(false);
    },
  );

  posixOnly(
    'something that listens but does not answer as an agent is not removed either',
    async () => {
      const { path } = socketInTempDir();
      await fakeServer(path, () => undefined);
      const error = await rejectsWith(startControlServer({ path, handlers }), ErrorCode.AgentAlreadyRunning);
      expect(error.message).toMatch(/does not answer as a Tapline agent/);
      expect(existsSync(path)).toBe(true);
    },
    10_000,
  );

  posixOnly('removes the socket of an agent that was killed, and takes its place', async () => {
    const { path } = socketInTempDir();
    await staleSocket(path);
    await rejectsWith(sendControl({ v: 1, op: 'ping' }, { path }), ErrorCode.AgentNotRunning);

    const logged: string[] = [];
    const logger = createLogger({ level: 'info', sink: (record) => void logged.push(record.message) });
    await start(path, { logger });
    expect(logged).toEqual(['removed the control socket of an agent that is no longer running']);
    expect((await sendControl({ v: 1, op: 'ping' }, { path })).pid).toBe(process.pid);
  });

  posixOnly('two agents starting at once over a stale socket: exactly one starts, the other is refused', async () => {
    // Without the lock, about one round in eight lost the race (both started); the next test pins it down exactly.
    for (let round = 0; round < 10; round++) {
      const { dir, path } = socketInTempDir();
      await staleSocket(path);
      // Each agent answers status with its own start time, so that the live socket shows whose it is.
      const statusOf = (startedAt: string): ControlHandlers => ({
        ...handlers,
        status: () => ({ ...STATUS, startedAt }),
      });
      const outcomes = await Promise.allSettled([
        startControlServer({ path, handlers: statusOf('A') }),
        startControlServer({ path, handlers: statusOf('B') }),
      ]);
      const started = outcomes.flatMap((o, i) =>
        o.status === 'fulfilled' ? [{ server: o.value, who: 'AB'[i]! }] : [],
      );
      const refused = outcomes.flatMap((o) => (o.status === 'rejected' ? [o.reason as unknown] : []));
      for (const { server } of started) cleanups.push(() => server.close());
      expect(started).toHaveLength(1);
      expect(refused).toHaveLength(1);
      expect(refused[0]).toBeInstanceOf(TaplineError);
      expect((refused[0] as TaplineError).code).toBe(ErrorCode.AgentAlreadyRunning);
      expect((refused[0] as TaplineError).details).toEqual({ path, pid: process.pid });
      // The socket on disk is the winner's, and it answers.
      expect((await sendControl({ v: 1, op: 'status' }, { path })).status.startedAt).toBe(started[0]!.who);
      // Nothing of the lock is left next to the socket.
      expect(readdirSync(dir)).toEqual(['agent.sock']);
    }
  });

  posixOnly(
    'two agent processes starting at once over a stale socket: exactly one starts, the other names its pid',
    async () => {
      expect(existsSync(DIST_CONTROL), `${DIST_CONTROL} is missing: build the package first (npx tsc -b)`).toBe(true);
      for (let round = 0; round < 3; round++) {
        const { path } = socketInTempDir();
        await staleSocket(path);
        const agents = [childAgent(path), childAgent(path)];
        for (const { lines } of agents) expect(JSON.parse((await lines.next()).value as string)).toBe('ready');
        // As close to the same moment as two processes get: both have loaded everything and only wait for this.
        for (const { child } of agents) child.stdin.write('go\n');
        const outcomes = await Promise.all(
          agents.map(async ({ lines }) => JSON.parse((await lines.next()).value as string) as ChildOutcome),
        );
        const started = outcomes.filter((o): o is { started: true; pid: number } => 'started' in o);
        const refused = outcomes.filter((o): o is { code: string; pid?: number } => 'code' in o);
        expect(started, JSON.stringify(outcomes)).toHaveLength(1);
        expect(refused).toEqual([{ code: 'AGENT_ALREADY_RUNNING', pid: started[0]!.pid }]);
        expect((await sendControl({ v: 1, op: 'ping' }, { path })).pid).toBe(started[0]!.pid);
        for (const { child } of agents) child.stdin.end();
        await Promise.all(agents.map(({ child }) => exited(child)));
        // The winner removed its socket on the way out.
        expect(existsSync(path)).toBe(false);
      }
    },
    30_000,
  );

  posixOnly(
    'while another agent holds the start-up lock, a starting one waits instead of removing the socket',
    async () => {
      const { path } = socketInTempDir();
      await staleSocket(path);
      const stale = statSync(path).ino;
      // Another agent, in another process, between its probe and its bind: it holds the lock (a live pid on this host).
      const lockFile = `${path}.lock`;
      writeFileSync(
        lockFile,
        JSON.stringify({ pid: process.pid, host: hostname(), at: new Date().toISOString(), nonce: 'the-other-agent' }),
      );
      const second = startControlServer({ path, handlers }).then(
        (server) => {
          cleanups.push(() => server.close());
          return server;
        },
        (error: unknown) => error,
      );
      await new Promise((resolve) => setTimeout(resolve, 300));
      // The stale socket is untouched: this agent did not probe and remove it behind the other one's back.
      expect(statSync(path).ino).toBe(stale);
      // The other agent removes the stale socket, binds, and releases the lock.
      rmSync(path);
      await fakeServer(path, (socket) => socket.end('{"v":1,"ok":true,"pid":4242}\n'));
      rmSync(lockFile);
      const outcome = await second;
      expect(outcome).toBeInstanceOf(TaplineError);
      expect((outcome as TaplineError).code).toBe(ErrorCode.AgentAlreadyRunning);
      expect((outcome as TaplineError).details).toEqual({ path, pid: 4242 });
      // The other agent's socket is still there, and still answers.
      expect((await sendControl({ v: 1, op: 'ping' }, { path })).pid).toBe(4242);
    },
  );

  posixOnly(
    'a start-up lock held by a live process: TIMEOUT after a few seconds, naming the lock file',
    async () => {
      const { path } = socketInTempDir();
      // This process is alive and on this host, so its lock is not stale; another nonce makes it not ours either.
      writeFileSync(
        `${path}.lock`,
        JSON.stringify({ pid: process.pid, host: hostname(), at: new Date().toISOString(), nonce: 'someone-else' }),
      );
      const started = Date.now();
      const error = await rejectsWith(startControlServer({ path, handlers }), ErrorCode.Timeout);
      expect(Date.now() - started).toBeGreaterThanOrEqual(2900);
      expect(error.message).toMatch(
        /^Another process has held the lock on the control socket .* this agent did not start\.$/,
      );
      expect(error.hint).toBe(
        `Another agent may be starting; try again. If none is, delete ${path}.lock and start the agent again.`,
      );
      expect(existsSync(path)).toBe(false);
    },
    10_000,
  );

  posixOnly('refuses a path too long for a Unix socket with a hint', async () => {
    const { dir } = socketInTempDir();
    const path = join(dir, `${'d'.repeat(120)}.sock`);
    const error = await rejectsWith(startControlServer({ path, handlers }), ErrorCode.InvalidArgument);
    expect(error.hint).toMatch(/TAPLINE_AGENT_SOCKET/);
  });
});

describe('sendControl failures', () => {
  posixOnly('no agent: AGENT_NOT_RUNNING with the hint to start one', async () => {
    const { path } = socketInTempDir();
    const error = await rejectsWith(sendControl({ v: 1, op: 'status' }, { path }), ErrorCode.AgentNotRunning);
    expect(error.message).toBe('No agent is running.');
    expect(error.hint).toMatch(/^Start it with `tapline agent`/);
    // The folder does not even exist.
    await rejectsWith(
      sendControl({ v: 1, op: 'status' }, { path: join(path, 'nested', 'agent.sock') }),
      ErrorCode.AgentNotRunning,
    );
  });

  posixOnly('an agent that does not answer: TIMEOUT within the budget', async () => {
    const { path } = socketInTempDir();
    await fakeServer(path, () => undefined);
    const started = Date.now();
    const error = await rejectsWith(sendControl({ v: 1, op: 'status' }, { path, timeoutMs: 150 }), ErrorCode.Timeout);
    expect(Date.now() - started).toBeLessThan(1500);
    expect(error.message).toBe('The agent did not answer within 150 ms.');
  });

  posixOnly('replies that are not replies: PROTOCOL_ERROR', async () => {
    const answers = [
      'hello\n',
      '[]\n',
      '{"v":2,"ok":true}\n',
      '{"v":1}\n',
      '{"v":1,"ok":true}\n', // no status
      '{"v":1,"ok":false}\n', // no error
      '', // closed without a word
    ];
    for (const answer of answers) {
      const { path } = socketInTempDir();
      await fakeServer(path, (socket) => socket.end(answer));
      await rejectsWith(sendControl({ v: 1, op: 'status' }, { path }), ErrorCode.ProtocolError);
    }
  });

  posixOnly('an oversized reply is cut off as PROTOCOL_ERROR', async () => {
    const { path } = socketInTempDir();
    const big = Buffer.alloc(1024 * 1024 + 10, 'a');
    await fakeServer(path, (socket) => socket.write(big));
    const error = await rejectsWith(sendControl({ v: 1, op: 'status' }, { path }), ErrorCode.ProtocolError);
    expect(error.message).toMatch(/larger than/);
  });

  posixOnly('an error code this copy does not know becomes INTERNAL, keeping the agent code', async () => {
    const { path } = socketInTempDir();
    await fakeServer(path, (socket) =>
      socket.end('{"v":1,"ok":false,"error":{"code":"FROM_THE_FUTURE","message":"Newer agent."}}\n'),
    );
    const error = await rejectsWith(sendControl({ v: 1, op: 'status' }, { path }), ErrorCode.Internal);
    expect(error.message).toBe('Newer agent.');
    expect(error.details).toEqual({ agentCode: 'FROM_THE_FUTURE' });
  });

  posixOnly('aborts through the signal', async () => {
    const { path } = socketInTempDir();
    await fakeServer(path, () => undefined);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    await rejectsWith(
      sendControl({ v: 1, op: 'status' }, { path, timeoutMs: 5000, signal: controller.signal }),
      ErrorCode.Aborted,
    );
  });
});
