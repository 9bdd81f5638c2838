import { onTestFinished } from 'vitest';
import {
  ReaderManager,
  createContainer,
  fromHex,
  silentLogger,
  toHex,
  waitForTag,
  type FrameCapability,
  type FrameExchange,
  type Tag,
} from '@tapline/core';
import { SimulatedField, simDeviceSource, simDriver, type ChipModel, type VirtualChip } from '../src/index.js';

/** Upper-case hex, the way datasheets print frames. */
export function hex(bytes: Uint8Array): string {
  return toHex(bytes).toUpperCase();
}

/** Runs `frames` (hex) through a pure model from its initial state; returns the answers (hex or null) and state. */
export function run<S>(
  model: ChipModel<S>,
  frames: readonly string[],
  capability: FrameCapability,
  from: S = model.initialState,
): { answers: (string | null)[]; state: S } {
  let state = from;
  const answers: (string | null)[] = [];
  for (const frame of frames) {
    const step = model.respond(state, capability, fromHex(frame));
    state = step.state;
    answers.push(step.response === undefined ? null : hex(step.response));
  }
  return { answers, state };
}

/** A {@link FrameExchange} straight onto a chip (no reader): what core's protocol code runs over in unit tests. */
export function directExchange(chip: VirtualChip, capability: FrameCapability): FrameExchange {
  return (frame) => {
    try {
      return Promise.resolve(chip.handle(capability, frame));
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  };
}

/** Taps `chip` on a simulated reader inside a real container (sim driver, reader manager) and returns the tag. */
export async function tapInSimulator(chip: VirtualChip): Promise<Tag> {
  const field = new SimulatedField('Sim chips', { latencyMs: 1 });
  const container = createContainer({
    config: { transports: [] },
    drivers: [simDriver],
    deviceSources: [simDeviceSource([field])],
    logger: silentLogger,
  });
  const manager = container.resolve(ReaderManager);
  const hold = manager.hold();
  onTestFinished(() => hold.unsubscribe());
  const tagPromise = waitForTag(manager.tags$, { timeoutMs: 2000 });
  setTimeout(() => field.present(chip), 5);
  return tagPromise;
}

/** A {@link FrameExchange} through the simulated reader the tag is on. */
export function readerExchange(tag: Tag, capability: FrameCapability): FrameExchange {
  return (frame, options) => tag.reader.transmit(tag, capability, frame, options);
}

/** A RandomSource that hands out the given hex values in order, then fails (a test that needs more is wrong). */
export function scriptedRandom(...values: string[]): (length: number) => Uint8Array {
  const queue = values.map((v) => fromHex(v));
  return (length) => {
    const next = queue.shift();
    if (next === undefined || next.length !== length) {
      throw new Error(`scriptedRandom: no ${length}-byte value left`);
    }
    return next;
  };
}
