import { spawnSync } from 'node:child_process';
import { Subject } from 'rxjs';
import { expect } from 'vitest';
import {
  ApduChannel,
  ReaderBase,
  isTaplineError,
  fromHex,
  toHex,
  silentLogger,
  systemClock,
  type AttachedDevice,
  type Capability,
  type DeviceEvent,
  type DeviceSource,
  type FrameCapability,
  type FrameExchange,
  type ReaderDriver,
  type ReaderFeedback,
  type Tag,
  type TagInfo,
  type TaplineError,
} from '../src/index.js';

/** One scripted exchange: the frame expected (hex) and what to do. */
export type ScriptedStep =
  | { readonly expect: string; readonly answer: string; readonly afterMs?: number }
  | { readonly expect: string; readonly never: true };

/**
 * A reader whose exchanges follow a script; an unexpected frame fails the exchange (and is recorded), so a test
 * cannot pass by accident.
 */
export class ScriptedReader extends ReaderBase {
  readonly sent: string[] = [];
  /** The signal each exchange was given, in order. */
  readonly signals: AbortSignal[] = [];
  readonly feedbackLog: ReaderFeedback[] = [];
  released = 0;

  constructor(
    private readonly script: ScriptedStep[],
    capabilities: Iterable<Capability> = ['iso14443-4', 'iso14443a-raw', 'led'],
    name = 'Scripted Reader',
  ) {
    super({
      name,
      driverId: 'scripted',
      capabilities,
      logger: silentLogger,
      clock: systemClock,
      defaultTimeoutMs: 200,
    });
  }

  arrive(info: Partial<TagInfo> = {}): Tag {
    return this.tagArrived({
      technology: 'iso14443a',
      uid: Uint8Array.of(4, 1, 2, 3, 4, 5, 6),
      protocols: ['iso14443-4', 'iso14443a-raw'],
      ...info,
    });
  }

  leave(): void {
    this.tagLeft();
  }

  protected override exchange(
    _tag: Tag,
    _c: FrameCapability,
    frame: Uint8Array,
    signal: AbortSignal,
  ): Promise<Uint8Array> {
    const hex = Buffer.from(frame).toString('hex');
    this.sent.push(hex);
    this.signals.push(signal);
    const step = this.script.shift();
    if (!step || step.expect !== hex) {
      return Promise.reject(new Error(`unexpected frame ${hex}; script expected ${step?.expect ?? 'nothing'}`));
    }
    if ('never' in step) return new Promise(() => undefined);
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(signal.reason as Error);
      };
      const timer = setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve(Uint8Array.from(Buffer.from(step.answer, 'hex')));
      }, step.afterMs ?? 0);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  protected override applyFeedback(feedback: ReaderFeedback): Promise<void> {
    this.feedbackLog.push(feedback);
    return Promise.resolve();
  }

  protected override release(): Promise<void> {
    this.released += 1;
    return Promise.resolve();
  }

  assertDone(): void {
    if (this.script.length > 0) throw new Error(`${this.script.length} scripted exchanges not used`);
  }
}

/** A device source driven by the test. */
export function manualSource(transport: DeviceSource['transport'] = 'virtual') {
  const events = new Subject<DeviceEvent>();
  const source: DeviceSource = { transport, devices$: events.asObservable() };
  const device = (name: string, kind = 'test'): AttachedDevice => ({ transport: 'virtual', name, kind, port: name });
  return { source, events, device };
}

/** A driver for virtual devices of `kind` whose `open` is given by the test. */
export function testDriver(id: string, open: ReaderDriver['open'], kind = 'test', score?: number): ReaderDriver {
  return {
    id,
    displayName: `Test ${id}`,
    description: 'test driver',
    matches: [{ transport: 'virtual', kind, ...(score === undefined ? {} : { score }) }],
    capabilities: ['iso14443-4'],
    open,
  };
}

/**
 * A card that answers frames from a script of `[command hex, response hex]` pairs (spaces allowed), records what
 * was sent, and fails any frame it did not expect, so a test cannot pass by accident.
 */
export function scriptedCard(steps: readonly (readonly [string, string])[]) {
  const queue = steps.map(([c, r]) => [toHex(fromHex(c)), toHex(fromHex(r))] as const);
  const sent: string[] = [];
  const exchange: FrameExchange = (frame) => {
    const hex = toHex(frame);
    sent.push(hex);
    const step = queue.shift();
    if (!step || step[0] !== hex) {
      return Promise.reject(new Error(`unexpected ${hex}, expected ${step?.[0] ?? 'nothing'}`));
    }
    return Promise.resolve(fromHex(step[1]));
  };
  return { exchange, channel: new ApduChannel(exchange), sent, done: () => expect(queue).toEqual([]) };
}

/** The TaplineError `promise` rejects with; fails the test when it resolves or rejects with anything else. */
export async function failure(promise: Promise<unknown>): Promise<TaplineError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isTaplineError(error)) throw new Error(`expected a TaplineError, got ${String(error)}`);
  return error;
}

/** A pid that certainly belonged to a process that has exited. */
export function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(child.stdout);
}
