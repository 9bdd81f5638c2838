import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import {
  ErrorCode,
  TaplineError,
  bytesEqual,
  concatBytes,
  fromHex,
  toHex,
  toSpacedHex,
  SerialDeadline,
  withDeadline,
} from '../src/index.js';

describe('withDeadline', () => {
  it('resolves with the operation result and clears its timer', async () => {
    await expect(withDeadline({ what: 'x', timeoutMs: 1000 }, () => Promise.resolve(7))).resolves.toBe(7);
  });

  it('times out an operation that ignores its signal, and aborts that signal', async () => {
    let seen: AbortSignal | undefined;
    const started = Date.now();
    const result = withDeadline({ what: 'Reading the ATR', timeoutMs: 20 }, (signal) => {
      seen = signal;
      return new Promise<never>(() => undefined);
    });
    await expect(result).rejects.toMatchObject({
      code: ErrorCode.Timeout,
      message: 'Reading the ATR did not finish within 20 ms.',
    });
    expect(Date.now() - started).toBeLessThan(500);
    expect(seen?.aborted).toBe(true);
  });

  it('keeps a Tapline abort reason and wraps any other as ABORTED', async () => {
    const lost = new TaplineError(ErrorCode.TagLost, 'gone');
    const a = new AbortController();
    const pending = withDeadline(
      { what: 'x', timeoutMs: 1000, signal: a.signal },
      () => new Promise<never>(() => undefined),
    );
    a.abort(lost);
    await expect(pending).rejects.toBe(lost);
    const b = new AbortController();
    b.abort();
    await expect(
      withDeadline({ what: 'x', timeoutMs: 1000, signal: b.signal }, () => Promise.resolve(1)),
    ).rejects.toMatchObject({
      code: ErrorCode.Aborted,
    });
  });

  it('passes an operation failure through unchanged', async () => {
    const failure = new RangeError('bad');
    await expect(withDeadline({ what: 'x', timeoutMs: 1000 }, () => Promise.reject(failure))).rejects.toBe(failure);
  });
});

describe('bytes', () => {
  it('converts hex both ways, tolerating separators', () => {
    expect(toHex(fromHex('04:A1 b2 0xC3'.replace('0x', '')))).toBe('04a1b2c3');
    expect(toHex(fromHex('0x04A1'))).toBe('04a1');
    expect(toSpacedHex(Uint8Array.of(0xff, 0xca, 0, 0, 0))).toBe('FF CA 00 00 00');
    expect(toSpacedHex(new Uint8Array())).toBe('');
  });

  it('rejects malformed hex with INVALID_ARGUMENT', () => {
    expect(() => fromHex('abc')).toThrow(expect.objectContaining({ code: ErrorCode.InvalidArgument }));
    expect(() => fromHex('zz')).toThrow(expect.objectContaining({ code: ErrorCode.InvalidArgument }));
  });

  it('concatenates and compares', () => {
    expect(toHex(concatBytes(Uint8Array.of(1), new Uint8Array(), Uint8Array.of(2, 3)))).toBe('010203');
    expect(bytesEqual(Uint8Array.of(1, 2), Uint8Array.of(1, 2))).toBe(true);
    expect(bytesEqual(Uint8Array.of(1, 2), Uint8Array.of(1, 3))).toBe(false);
    expect(bytesEqual(Uint8Array.of(1), Uint8Array.of(1, 2))).toBe(false);
  });
});

describe('SerialDeadline', () => {
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  it('fires once for an operation that overruns, and not for one stopped in time', async () => {
    const deadline = new SerialDeadline();
    const fired: string[] = [];
    deadline.start(20, () => fired.push('first'));
    deadline.stop();
    deadline.start(30, () => fired.push('second'));
    await sleep(60);
    expect(fired).toEqual(['second']);
    await sleep(40);
    expect(fired).toEqual(['second']);
    deadline.dispose();
  });

  it('re-arms a timer set for an earlier operation instead of firing early', async () => {
    const deadline = new SerialDeadline();
    let firedAt = 0;
    const started = performance.now();
    deadline.start(20, () => undefined);
    await sleep(10);
    deadline.stop();
    const second = performance.now();
    deadline.start(60, () => (firedAt = performance.now()));
    await sleep(120);
    expect(firedAt).toBeGreaterThan(0);
    expect(firedAt - second).toBeGreaterThanOrEqual(58);
    expect(firedAt - started).toBeGreaterThan(60);
    deadline.dispose();
  });

  it('moves the timer forward for an operation due before the running timer', async () => {
    const deadline = new SerialDeadline();
    deadline.start(5000, () => undefined);
    deadline.stop();
    let fired = false;
    deadline.start(20, () => (fired = true));
    await sleep(80);
    expect(fired).toBe(true);
    deadline.dispose();
  });

  it('never fires after dispose', async () => {
    const deadline = new SerialDeadline();
    let fired = false;
    deadline.start(10, () => (fired = true));
    deadline.dispose();
    await sleep(40);
    expect(fired).toBe(false);
  });

  // Whether a timer holds the process open only shows in a process of its own.
  const BUILT = new URL('../dist/util/deadline.js', import.meta.url).href;
  const runNode = (code: string): { out: string; ms: number } => {
    const started = Date.now();
    const out = execFileSync(
      process.execPath,
      ['--input-type=module', '-e', `import { SerialDeadline } from '${BUILT}';\n${code}`],
      {
        encoding: 'utf8',
        timeout: 10_000,
      },
    );
    return { out, ms: Date.now() - started };
  };

  it('keeps the process alive while an operation runs, so that it ends in its timeout, not in a silent exit', () => {
    expect(runNode(`new SerialDeadline().start(150, () => console.log('expired'));`).out).toBe('expired\n');
    // Without keepAlive (for native calls, which hold the process themselves) nothing waits for it.
    expect(runNode(`new SerialDeadline({ keepAlive: false }).start(150, () => console.log('expired'));`).out).toBe('');
  });

  it('never keeps an idle process alive: after stop() it exits at once, not when the timer would fire', () => {
    const { out, ms } = runNode(
      `const d = new SerialDeadline(); d.start(5000, () => console.log('expired')); d.stop();`,
    );
    expect(out).toBe('');
    expect(ms).toBeLessThan(4000);
  });

  it('caps a timeout beyond what a timer holds instead of spinning every millisecond', async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning);
    process.on('warning', onWarning);
    const deadline = new SerialDeadline();
    let fired = false;
    // 2^32 ms is past a timer's range (and finite, so that it is armed at all).
    deadline.start(2 ** 32, () => (fired = true));
    await sleep(50);
    deadline.dispose();
    process.off('warning', onWarning);
    expect(fired).toBe(false);
    expect(warnings.map((w) => w.name)).not.toContain('TimeoutOverflowWarning');
  });
});
