import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FRAME_CAPABILITIES, concatBytes, encodeApdu, fromHex, type FrameCapability } from '@tapline/core';
import {
  NoAnswerError,
  apexModel,
  createVirtualChip,
  ntag215Model,
  seededRandom,
  spark1Model,
  spark2Model,
  type ChipModel,
  type VirtualChipKind,
} from '../src/index.js';
import { hex, run } from './chips-support.js';

/** Frames a fuzzer should throw at ISO-DEP chips: noise, and APDUs with the classes and instructions they know. */
const isoDepFrame = fc.oneof(
  fc.uint8Array({ maxLength: 48 }),
  fc
    .tuple(
      fc.constantFrom(0x00, 0x90, 0x80),
      fc.constantFrom(0xa4, 0xb0, 0xd6, 0x60, 0xaf, 0x71, 0x51, 0xad, 0x3c, 0xf5, 0xa1, 0x77),
      fc.integer({ min: 0, max: 255 }),
      fc.integer({ min: 0, max: 255 }),
      fc.option(fc.uint8Array({ minLength: 1, maxLength: 40 }), { nil: undefined }),
      fc.option(fc.integer({ min: 1, max: 256 }), { nil: undefined }),
    )
    .map(([cla, ins, p1, p2, data, le]) =>
      encodeApdu({ cla, ins, p1, p2, ...(data === undefined ? {} : { data }), ...(le === undefined ? {} : { le }) }),
    ),
  fc.constantFrom(
    fromHex('00A4040C07D276000085010100'),
    fromHex('00A4000C02E104'),
    fromHex('00B0000000'),
    fromHex('9071000002020000'),
    fromHex('00A404000CA000000846737061726B3201FF'),
  ),
);

/** ISO 15693 requests: noise, and flags/command pairs the Spark 1 knows with random parameters. */
const iso15693Frame = fc.oneof(
  fc.uint8Array({ maxLength: 32 }),
  fc
    .tuple(
      fc.integer({ min: 0, max: 255 }),
      fc.constantFrom(0x01, 0x20, 0x23, 0x2b, 0xbd, 0x35, 0x25, 0x26, 0xa0),
      fc.uint8Array({ maxLength: 24 }),
    )
    .map(([flags, cmd, rest]) => concatBytes(Uint8Array.of(flags, cmd), rest)),
);

/** Type 2 commands: noise, and the NTAG commands with random arguments. */
const rawFrame = fc.oneof(
  fc.uint8Array({ maxLength: 20 }),
  fc
    .tuple(fc.constantFrom(0x30, 0x3a, 0x60, 0x3c, 0xa2, 0x1b, 0x39), fc.uint8Array({ maxLength: 6 }))
    .map(([cmd, rest]) => concatBytes(Uint8Array.of(cmd), rest)),
);

const anyExchange = fc.tuple(
  fc.constantFrom<FrameCapability>(...FRAME_CAPABILITIES),
  fc.oneof(isoDepFrame, iso15693Frame, rawFrame),
);

function pureNeverThrows<S>(model: ChipModel<S>): fc.IPropertyWithHooks<[[FrameCapability, Uint8Array][]]> {
  return fc.property(fc.array(anyExchange, { maxLength: 24 }), (exchanges) => {
    let state = model.initialState;
    for (const [capability, frame] of exchanges) {
      const step = model.respond(state, capability, frame);
      expect(step.response === undefined || step.response instanceof Uint8Array).toBe(true);
      state = step.state;
    }
  });
}

/** What each chip must still answer after any sequence of frames: its basic selection or identification. */
const healthCheck: Readonly<Record<VirtualChipKind, (handle: (c: FrameCapability, f: string) => string) => void>> = {
  spark2: (handle) => {
    expect(handle('iso14443-4', '00A4040C07D276000085010100')).toBe('9000');
    expect(handle('iso14443-4', '9071000002020000').slice(-4)).toBe('91AF');
  },
  'spark2-413': (handle) => {
    expect(handle('iso14443-4', '00A4040C07D276000085010100')).toBe('9000');
    expect(handle('iso14443-4', '9060000000')).toBe('04040210000F0591AF');
  },
  apex: (handle) => {
    expect(handle('iso14443-4', '00A404000CA000000846737061726B3201FF')).toBe('A5E1D0C3B2A190819000');
  },
  spark1: (handle) => {
    expect(handle('iso15693', '260100')).toBe('00005C3BA709180104E0');
    expect(handle('iso15693', '022000')).toBe('00E1401F01');
  },
  ntag215: (handle) => {
    expect(handle('iso14443a-raw', '60')).toBe('0004040201001103');
    expect(handle('iso14443a-raw', '3000')).toBe('04E1412C2A6F3D80F8480000E1103E00');
  },
};

describe('virtual chips under random frames', () => {
  it.each([
    ['spark2', () => spark2Model({ random: seededRandom('fuzz') })],
    ['spark2-413', () => spark2Model({ model: 'ntag413', random: seededRandom('fuzz') })],
    ['apex', () => apexModel({ random: seededRandom('fuzz') })],
    ['spark1', () => spark1Model({ random: seededRandom('fuzz') })],
    ['ntag215', () => ntag215Model()],
  ] as const)('%s: respond never throws on any frame sequence', (_kind, make) => {
    fc.assert(pureNeverThrows(make() as ChipModel<unknown>), { numRuns: 150 });
  });

  it.each(['spark2', 'spark2-413', 'apex', 'spark1', 'ntag215'] as const)(
    '%s: the adapter throws nothing but NoAnswerError, and the chip still answers a valid SELECT afterwards',
    (kind) => {
      fc.assert(
        fc.property(fc.array(anyExchange, { maxLength: 24 }), (exchanges) => {
          const chip =
            kind === 'ntag215' ? createVirtualChip(kind) : createVirtualChip(kind, { random: seededRandom('fuzz') });
          for (const [capability, frame] of exchanges) {
            try {
              chip.handle(capability, frame);
            } catch (error) {
              expect(error).toBeInstanceOf(NoAnswerError);
            }
          }
          healthCheck[kind]((capability, frame) => hex(chip.handle(capability, fromHex(frame))));
        }),
        { numRuns: 150 },
      );
    },
  );

  it('spark2: the SUN counter never goes down, and a fresh read after random frames verifies the next value', () => {
    const model = spark2Model({ random: seededRandom('fuzz-counter') });
    fc.assert(
      fc.property(fc.array(anyExchange, { maxLength: 24 }), (exchanges) => {
        let state = model.initialState;
        for (const [capability, frame] of exchanges) {
          const next = model.respond(state, capability, frame).state;
          expect(next.sdmReadCtr).toBeGreaterThanOrEqual(state.sdmReadCtr);
          state = next;
        }
        const before = state.sdmReadCtr;
        const read = run(model, ['00A4040C07D276000085010100', '00A4000C02E104', '00B0000000'], 'iso14443-4', state);
        expect(read.state.sdmReadCtr).toBe(before + 1);
        expect(Buffer.from(fromHex(read.answers[2]!)).toString('latin1')).toContain(
          `-${(before + 1).toString(16).toUpperCase().padStart(6, '0')}-`,
        );
      }),
      { numRuns: 100 },
    );
  });
});
