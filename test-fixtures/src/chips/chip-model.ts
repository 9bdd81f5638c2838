import { createHash, randomBytes } from 'node:crypto';
import { ErrorCode, TaplineError, type FrameCapability, type TagInfo } from '@tapline/core';
import type { VirtualChip } from '../sim/virtual-chip.js';

/**
 * The source of a chip's random numbers (RndB, TI, TRnd): `length` fresh bytes per call. Chips take it as an option
 * so that tests can make every answer reproducible.
 */
export type RandomSource = (length: number) => Uint8Array;

/** What a chip model does with one frame: the state afterwards, and its answer (`undefined`: it stays silent). */
export interface ChipStep<S> {
  readonly state: S;
  readonly response: Uint8Array | undefined;
}

/**
 * A virtual chip as a pure function of its state: no I/O, no clock, randomness only through the {@link RandomSource}
 * it was built with. `respond` never throws and never mutates `state`; the same model therefore serves the
 * simulator, the PC/SC virtual readers and the USB fakes, each keeping the state the way it needs.
 */
export interface ChipModel<S> {
  /** What a reader reports when the chip arrives. */
  readonly info: TagInfo;
  /** The state of a chip fresh from the factory (as the options configured it), just powered. */
  readonly initialState: S;
  /** Answers one frame sent with `capability`. */
  respond(state: S, capability: FrameCapability, frame: Uint8Array): ChipStep<S>;
  /**
   * The state after the field went off and on again: volatile state (selection, authentication, pending frames) is
   * gone, non-volatile state (counters, memory) stays.
   */
  powerUp(state: S): S;
}

/** Thrown by {@link statefulChip} adapters when the chip does not answer: the reader sees silence until its timeout. */
export class NoAnswerError extends Error {
  constructor(message = 'The virtual chip does not answer this frame.') {
    super(message);
    this.name = 'NoAnswerError';
  }
}

/** A {@link VirtualChip} that keeps the state of a {@link ChipModel} between frames. */
export interface StatefulChip<S> extends VirtualChip {
  /** The pure model behind this chip. */
  readonly model: ChipModel<S>;
  /** The state after the last frame. */
  readonly state: S;
  /** Simulates the chip leaving the field and coming back (see {@link ChipModel.powerUp}). */
  powerUp(): void;
}

/**
 * Wraps a pure {@link ChipModel} into the simulator's {@link VirtualChip} interface: the adapter holds the current
 * state, feeds every frame through `respond`, and turns "no answer" into a thrown {@link NoAnswerError}, which is how
 * the simulated readers learn that a chip stayed silent.
 */
export function statefulChip<S>(model: ChipModel<S>): StatefulChip<S> {
  let state = model.initialState;
  return {
    info: model.info,
    model,
    get state() {
      return state;
    },
    handle(capability, frame) {
      // Copies on the way in and out: a caller reusing its buffer must not reach into the chip, nor the chip into it.
      const step = model.respond(state, capability, Uint8Array.from(frame));
      state = step.state;
      if (step.response === undefined) throw new NoAnswerError();
      return Uint8Array.from(step.response);
    },
    powerUp() {
      state = model.powerUp(state);
    },
  };
}

/** The default {@link RandomSource}: node:crypto's CSPRNG, as unpredictable as a real chip's TRNG. */
export const cryptoRandom: RandomSource = (length) => Uint8Array.from(randomBytes(length));

/**
 * A deterministic {@link RandomSource} for tests: SHA-256 in counter mode over `seed`. Two sources with the same seed
 * produce the same sequence; it is not a CSPRNG and is for fixtures only.
 */
export function seededRandom(seed: string | Uint8Array): RandomSource {
  const seedBytes = typeof seed === 'string' ? Buffer.from(seed, 'utf8') : Buffer.from(seed);
  let block = 0;
  let pool = new Uint8Array(0);
  return (length) => {
    while (pool.length < length) {
      const counter = Buffer.alloc(4);
      counter.writeUInt32BE(block++);
      const next = createHash('sha256').update(seedBytes).update(counter).digest();
      const grown = new Uint8Array(pool.length + next.length);
      grown.set(pool);
      grown.set(next, pool.length);
      pool = grown;
    }
    const out = pool.slice(0, length);
    pool = pool.slice(length);
    return out;
  };
}

/**
 * The ATR a PC/SC reader synthesises for an ISO 14443-4 card (PC/SC Part 3 §3.1.3.2.3):
 * `3B 8n 80 01 <historical bytes> TCK`.
 */
export function isoDepAtr(historicalBytes: Uint8Array): Uint8Array {
  return withTck([0x3b, 0x80 | historicalBytes.length, 0x80, 0x01, ...historicalBytes]);
}

/**
 * The ATR a PC/SC reader synthesises for a storage card (PC/SC Part 3): `3B 8F 80 01 80 4F 0C A0 00 00 03 06 SS NN
 * NN 00 00 00 00 TCK`, with standard byte `ss` and card name `cardName`.
 */
export function storageCardAtr(ss: number, cardName: number): Uint8Array {
  return withTck([
    0x3b,
    0x8f,
    0x80,
    0x01,
    0x80,
    0x4f,
    0x0c,
    0xa0,
    0x00,
    0x00,
    0x03,
    0x06,
    ss,
    cardName >>> 8,
    cardName & 0xff,
    0x00,
    0x00,
    0x00,
    0x00,
  ]);
}

/** Appends TCK, the XOR of every byte after TS (ISO 7816-3 §8.2.5). */
function withTck(bytes: readonly number[]): Uint8Array {
  const tck = bytes.slice(1).reduce((x, b) => x ^ b, 0);
  return Uint8Array.from([...bytes, tck]);
}

/** The `INVALID_ARGUMENT` error for a malformed chip option. */
export function invalidOption(message: string): TaplineError {
  return new TaplineError(ErrorCode.InvalidArgument, message);
}

/**
 * Checks a fixed-length byte option and returns a copy (so that the caller's buffer cannot change the chip later).
 * Fails with `INVALID_ARGUMENT`, naming the option.
 */
export function requireLength(value: Uint8Array, length: number, what: string): Uint8Array {
  if (!(value instanceof Uint8Array) || value.length !== length) {
    const got = value instanceof Uint8Array ? `${value.length} bytes` : typeof value;
    throw invalidOption(`${what} must be ${length} bytes, not ${got}.`);
  }
  return Uint8Array.from(value);
}
