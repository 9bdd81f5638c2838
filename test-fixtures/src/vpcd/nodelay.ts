import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findExecutable } from './stack.js';

/**
 * The TCP_NODELAY preload shim (`test-fixtures/native/nodelay.c`, pcsc-stack.md §3). With it an APDU through vpcd
 * takes about 0.1 ms; without it about 44 ms, because vpcd 3.3 writes length and payload separately and Nagle holds
 * the payload for the card's delayed ACK.
 */
export interface NodelayShim {
  /** The built library, for `LD_PRELOAD`; `undefined` when it could not be built. */
  readonly path: string | undefined;
  /** Why there is no library (no C compiler, a compile error). */
  readonly reason: string | undefined;
}

/** `src/vpcd` and `dist/vpcd` both sit two levels below the package root. */
const NATIVE_DIR = fileURLToPath(new URL('../../native/', import.meta.url));

let cached: NodelayShim | undefined;

/**
 * Builds the shim into `test-fixtures/native/build/nodelay.so` when it is missing or older than its source (about
 * 0.1 s with gcc), once per process. Never throws: without a compiler the stack still works, only slowly, and
 * `reason` says why.
 */
export function nodelayShim(): NodelayShim {
  cached ??= build();
  return cached;
}

function build(): NodelayShim {
  const source = join(NATIVE_DIR, 'nodelay.c');
  const output = join(NATIVE_DIR, 'build', 'nodelay.so');
  if (!existsSync(source)) return { path: undefined, reason: `${source} is missing` };
  if (existsSync(output) && statSync(output).mtimeMs >= statSync(source).mtimeMs) {
    return { path: output, reason: undefined };
  }
  const compiler = [process.env['CC'], 'gcc', 'cc']
    .filter((name): name is string => Boolean(name))
    .map((name) => (name.includes('/') ? name : findExecutable(name)))
    .find((path): path is string => path !== undefined);
  if (!compiler) {
    return {
      path: undefined,
      reason: 'no C compiler (gcc) to build the TCP_NODELAY shim: every APDU through vpcd will take about 44 ms',
    };
  }
  mkdirSync(join(NATIVE_DIR, 'build'), { recursive: true });
  // Test workers may build at the same time: each writes its own file, and the rename is atomic.
  const temporary = `${output}.${process.pid}.tmp`;
  const result = spawnSync(compiler, ['-shared', '-fPIC', '-O2', '-o', temporary, source, '-ldl'], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (result.status !== 0) {
    rmSync(temporary, { force: true });
    const detail = (result.stderr || result.error?.message || `exit ${String(result.status)}`).trim();
    return { path: undefined, reason: `building the TCP_NODELAY shim failed: ${detail}` };
  }
  renameSync(temporary, output);
  return { path: output, reason: undefined };
}
