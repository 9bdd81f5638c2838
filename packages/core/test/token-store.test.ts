import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  ErrorCode,
  FileTokenStore,
  MemoryTokenStore,
  isTaplineError,
  type StoredCredentials,
  type TaplineError,
} from '../src/index.js';

const POSIX = process.platform !== 'win32';
/** The built module, for child processes (they run plain node; the test task builds core first). */
const BUILT = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'platform', 'token-store.js');

function credentials(n = 1): StoredCredentials {
  return {
    version: 1,
    issuer: 'http://127.0.0.1:4000/oidc',
    clientId: 'tapline-desktop',
    sub: 'a'.repeat(64),
    scope: 'openid offline_access scan_requests',
    accessToken: `access-token-${n}-${'x'.repeat(40)}`,
    accessTokenExpiresAt: 1_700_000_000_000 + n,
    refreshToken: `refresh-token-${n}-${'y'.repeat(40)}`,
    associatedAt: 1_699_999_000_000,
  };
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'tapline-tokens-'));
}

async function failure(promise: Promise<unknown>): Promise<TaplineError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isTaplineError(error)) throw new Error(`expected a TaplineError, got ${String(error)}`);
  return error;
}

describe('FileTokenStore', () => {
  it('defaults to credentials.json in the config directory', () => {
    expect(new FileTokenStore({ env: { TAPLINE_CONFIG_DIR: '/cfg' } }).file).toBe('/cfg/credentials.json');
  });

  it('saves and loads the credentials; nothing stored is undefined; clear deletes', async () => {
    const file = join(tempDir(), 'credentials.json');
    const store = new FileTokenStore({ file });
    expect(await store.load()).toBeUndefined();
    await store.save(credentials());
    expect(await store.load()).toEqual(credentials());
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual(credentials());
    await store.clear();
    expect(await store.load()).toBeUndefined();
    expect(readdirSync(join(file, '..'))).toEqual([]);
    await store.clear(); // nothing to delete is fine
  });

  it.runIf(POSIX)('creates the directory with mode 0700 and the file with mode 0600, whatever the umask', async () => {
    const dir = join(tempDir(), 'nested', 'tapline');
    const file = join(dir, 'credentials.json');
    const previous = process.umask(0o000);
    try {
      await new FileTokenStore({ file }).save(credentials());
    } finally {
      process.umask(previous);
    }
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it.runIf(POSIX)('replacing a file that others could read leaves it 0600', async () => {
    const file = join(tempDir(), 'credentials.json');
    writeFileSync(file, JSON.stringify(credentials()), { mode: 0o644 });
    await chmod(file, 0o644);
    await new FileTokenStore({ file }).save(credentials(2));
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it.runIf(POSIX)('tightens a stored file that others can read when loading it', async () => {
    const file = join(tempDir(), 'credentials.json');
    writeFileSync(file, JSON.stringify(credentials()));
    await chmod(file, 0o644);
    expect(await new FileTokenStore({ file }).load()).toEqual(credentials());
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('writes atomically: no temporary file is left, and torn ones of dead writers are removed', async () => {
    const dir = tempDir();
    const file = join(dir, 'credentials.json');
    // What a writer killed before its rename leaves (pid 999999999 is never alive).
    writeFileSync(join(dir, '.credentials.json.999999999.aaaaaaaaaaaa.tmp'), '{"version":1,"accessTo');
    await new FileTokenStore({ file }).save(credentials());
    expect(readdirSync(dir)).toEqual(['credentials.json']);
  });

  it('concurrent saves end in one whole, valid file and no temporary files', async () => {
    const dir = tempDir();
    const file = join(dir, 'credentials.json');
    const stores = [new FileTokenStore({ file }), new FileTokenStore({ file })];
    await Promise.all(Array.from({ length: 20 }, (_, i) => stores[i % 2]!.save(credentials(i))));
    const loaded = await new FileTokenStore({ file }).load();
    expect(loaded).toEqual(credentials(19)); // in one process, saves apply in call order
    expect(readdirSync(dir)).toEqual(['credentials.json']);
  });

  it('a corrupt file fails with STORAGE_FAILED and a hint, without quoting the file', async () => {
    const dir = tempDir();
    const file = join(dir, 'credentials.json');
    const store = new FileTokenStore({ file });
    const broken = [
      '{"version":1,"refreshToken":"secret-refresh-tok',
      '[]',
      'null',
      JSON.stringify({ ...credentials(), version: 2 }),
      JSON.stringify({ ...credentials(), refreshToken: '' }),
      JSON.stringify({ ...credentials(), refreshToken: 'has space' }),
      JSON.stringify({ ...credentials(), accessTokenExpiresAt: 'tomorrow' }),
      JSON.stringify({ ...credentials(), issuer: 'not a url' }),
      JSON.stringify({ ...credentials(), sub: undefined }),
    ];
    for (const content of broken) {
      writeFileSync(file, content);
      const error = await failure(store.load());
      expect(error.code).toBe(ErrorCode.StorageFailed);
      expect(error.message).toContain(file);
      expect(error.hint).toMatch(/tapline logout.*tapline login/);
      const printed = JSON.stringify(error.toJSON());
      expect(printed).not.toContain('secret-refresh-tok');
      expect(printed).not.toContain('refresh-token-1');
      expect(printed).not.toContain('access-token-1');
    }
    // clear() still removes it, so that `tapline logout` can recover.
    await store.clear();
    expect(await store.load()).toBeUndefined();
  });

  it('a directory in place of the file, or an unwritable directory, is STORAGE_FAILED', async () => {
    const dir = tempDir();
    const error = await failure(new FileTokenStore({ file: dir }).load());
    expect(error.code).toBe(ErrorCode.StorageFailed);
    if (POSIX && process.getuid?.() !== 0) {
      const locked = join(tempDir(), 'locked');
      await new FileTokenStore({ file: join(locked, 'credentials.json') }).save(credentials());
      await chmod(locked, 0o500);
      try {
        const refused = await failure(
          new FileTokenStore({ file: join(locked, 'credentials.json') }).save(credentials(2)),
        );
        expect(refused.code).toBe(ErrorCode.StorageFailed);
        expect(refused.details['errno']).toBe('EACCES');
        expect(refused.hint).toMatch(/TAPLINE_CREDENTIALS_FILE/);
      } finally {
        await chmod(locked, 0o700);
      }
      expect(await new FileTokenStore({ file: join(locked, 'credentials.json') }).load()).toEqual(credentials());
    }
  });

  it('refuses to save malformed credentials (INVALID_ARGUMENT) and stores only the known fields', async () => {
    const file = join(tempDir(), 'credentials.json');
    const store = new FileTokenStore({ file });
    const error = await failure(store.save({ ...credentials(), refreshToken: '' }));
    expect(error.code).toBe(ErrorCode.InvalidArgument);
    await store.save({ ...credentials(), extra: 'dropped' } as StoredCredentials);
    expect(Object.keys(JSON.parse(readFileSync(file, 'utf8')) as object)).toEqual(Object.keys(credentials()));
  });
});

describe('FileTokenStore.exclusive', () => {
  it.runIf(POSIX)(
    'holds credentials.json.lock (0600, in a directory created 0700) while fn runs, and removes it after',
    async () => {
      const dir = join(tempDir(), 'nested', 'tapline');
      const file = join(dir, 'credentials.json');
      const store = new FileTokenStore({ file });
      expect(store.lockFile).toBe(`${file}.lock`);
      const previous = process.umask(0o000);
      let seen: { dir: number; lock: number } | undefined;
      try {
        const value = await store.exclusive(async () => {
          seen = { dir: statSync(dir).mode & 0o777, lock: statSync(`${file}.lock`).mode & 0o777 };
          await store.save(credentials()); // save and load do not wait for the lock held here
          return (await store.load())?.refreshToken;
        });
        expect(value).toBe(credentials().refreshToken);
      } finally {
        process.umask(previous);
      }
      expect(seen).toEqual({ dir: 0o700, lock: 0o600 });
      expect(readdirSync(dir)).toEqual(['credentials.json']);
    },
  );

  it('two stores over one file: their exclusive functions never overlap, and no read-modify-write is lost', async () => {
    const file = join(tempDir(), 'credentials.json');
    const stores = [new FileTokenStore({ file }), new FileTokenStore({ file })];
    await stores[0]!.save({ ...credentials(), accessTokenExpiresAt: 0 });
    let inside = 0;
    await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        stores[i % 2]!.exclusive(async () => {
          inside += 1;
          expect(inside).toBe(1);
          const stored = (await stores[i % 2]!.load())!;
          await new Promise((r) => setTimeout(r, 2));
          await stores[i % 2]!.save({ ...stored, accessTokenExpiresAt: stored.accessTokenExpiresAt + 1 });
          inside -= 1;
        }),
      ),
    );
    expect((await stores[0]!.load())?.accessTokenExpiresAt).toBe(10);
  });

  it('a lock another process holds: TIMEOUT after lockTimeoutMs, with a hint naming the lock file; fn not run', async () => {
    const file = join(tempDir(), 'credentials.json');
    const store = new FileTokenStore({ file, lockTimeoutMs: 100 });
    await store.save(credentials());
    writeFileSync(`${file}.lock`, JSON.stringify({ pid: 1, host: 'another-host', at: 'now', nonce: 'n' }));
    let ran = false;
    const error = await failure(store.exclusive(() => Promise.resolve((ran = true))));
    expect(error.code).toBe(ErrorCode.Timeout);
    expect(error.message).toContain(`the credentials ${file} (process 1 on another-host`);
    expect(error.message).toMatch(/the credentials were left as they were\.$/);
    expect(error.hint).toContain(`delete ${file}.lock`);
    expect(error.details).toMatchObject({ lockFile: `${file}.lock` });
    expect(ran).toBe(false);
    // A per-call timeout overrides the store's.
    const started = Date.now();
    expect((await failure(store.exclusive(() => Promise.resolve(), { timeoutMs: 300 }))).code).toBe(ErrorCode.Timeout);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(await store.load()).toEqual(credentials());
  });

  it('a lock file that cannot be created is STORAGE_FAILED naming it', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'not-a-directory'), '');
    const file = join(dir, 'not-a-directory', 'credentials.json');
    const error = await failure(new FileTokenStore({ file }).exclusive(() => Promise.resolve()));
    expect(error.code).toBe(ErrorCode.StorageFailed);
    expect(error.message).toContain(file);

    const lockFile = join(dir, 'credentials.json.lock');
    mkdirSync(lockFile); // something that is not a lock file in its place
    const unreadable = await failure(
      new FileTokenStore({ file: join(dir, 'credentials.json') }).exclusive(() => Promise.resolve()),
    );
    expect(unreadable.code).toBe(ErrorCode.StorageFailed);
    expect(unreadable.message).toContain(lockFile);
    expect(unreadable.hint).toContain(lockFile);
  });
});

describe('FileTokenStore across processes', () => {
  function saver(file: string, tag: string): Promise<void> {
    const script = `
      const { FileTokenStore } = await import(${JSON.stringify(pathToFileURL(BUILT).href)});
      const store = new FileTokenStore({ file: ${JSON.stringify(file)} });
      for (let i = 0; i < 30; i++) {
        await store.save({ ...${JSON.stringify(credentials())}, accessToken: '${tag}-' + i, accessTokenExpiresAt: i });
      }
    `;
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let err = '';
      child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
      child.on('error', reject);
      child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`child exited ${code}: ${err}`))));
    });
  }

  /** A child that, `rounds` times under `exclusive`, loads the credentials and saves them with a counter + 1. */
  function incrementer(file: string, rounds: number): Promise<void> {
    const script = `
      const { FileTokenStore } = await import(${JSON.stringify(pathToFileURL(BUILT).href)});
      const store = new FileTokenStore({ file: ${JSON.stringify(file)} });
      for (let i = 0; i < ${rounds}; i++) {
        await store.exclusive(async () => {
          const stored = await store.load();
          await new Promise((r) => setTimeout(r, 1));
          await store.save({ ...stored, accessTokenExpiresAt: stored.accessTokenExpiresAt + 1 });
        });
      }
    `;
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let err = '';
      child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
      child.on('error', reject);
      child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`child exited ${code}: ${err}`))));
    });
  }

  it.runIf(existsSync(BUILT))(
    'two processes doing load-then-save under exclusive at once: no update is lost',
    async () => {
      const dir = tempDir();
      const file = join(dir, 'credentials.json');
      await new FileTokenStore({ file }).save({ ...credentials(), accessTokenExpiresAt: 0 });
      await Promise.all([incrementer(file, 25), incrementer(file, 25)]);
      expect((await new FileTokenStore({ file }).load())?.accessTokenExpiresAt).toBe(50);
      expect(readdirSync(dir)).toEqual(['credentials.json']);
    },
    30_000,
  );

  it.runIf(existsSync(BUILT))(
    'three processes saving at once: the file is always whole and ends as one of the last saves',
    async () => {
      const dir = tempDir();
      const file = join(dir, 'credentials.json');
      const store = new FileTokenStore({ file });
      const savers = Promise.all(['one', 'two', 'three'].map((tag) => saver(file, tag)));
      // Read while they write: every read sees nothing yet or a whole, valid file (a torn one would throw).
      let done = false;
      void savers.finally(() => (done = true));
      while (!done) {
        await store.load();
        await new Promise((r) => setImmediate(r));
      }
      await savers;
      const final = await store.load();
      expect(final?.accessToken).toMatch(/^(one|two|three)-29$/);
      expect(readdirSync(dir)).toEqual(['credentials.json']);
    },
    30_000,
  );
});

describe('MemoryTokenStore', () => {
  it('keeps a copy, validates, and clears', async () => {
    const store = new MemoryTokenStore();
    expect(await store.load()).toBeUndefined();
    const value = { ...credentials() };
    await store.save(value);
    value.accessToken = 'changed-afterwards';
    expect(await store.load()).toEqual(credentials());
    expect((await failure(store.save({ ...credentials(), sub: '' }))).code).toBe(ErrorCode.InvalidArgument);
    await store.clear();
    expect(await store.load()).toBeUndefined();
    expect(await new MemoryTokenStore(credentials(3)).load()).toEqual(credentials(3));
  });

  it('exclusive runs one function at a time, and times out (TIMEOUT) a caller that waits too long', async () => {
    const store = new MemoryTokenStore(credentials());
    const events: string[] = [];
    let release!: () => void;
    const first = store.exclusive(async () => {
      events.push('first in');
      await new Promise<void>((r) => (release = r));
      events.push('first out');
    });
    const late = failure(store.exclusive(() => Promise.resolve(events.push('late')), { timeoutMs: 30 }));
    const second = store.exclusive(() => Promise.resolve(events.push('second')), { timeoutMs: 5000 });
    expect((await late).code).toBe(ErrorCode.Timeout);
    release();
    await Promise.all([first, second]);
    expect(events).toEqual(['first in', 'first out', 'second']);
  });
});
