import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  ApduChannel,
  ErrorCode,
  Iso15693Tag,
  authenticateEv2First,
  selectNdefApplication,
  isTaplineError,
  verifyTam1Response,
  type FrameCapability,
  type FrameExchange,
} from '@tapline/core';
import { createVirtualChip, type VirtualChip } from '../src/index.js';

/** Talks to a virtual chip directly, the way a reader would relay frames; silence is a failed exchange. */
function exchangeWith(
  chip: VirtualChip,
  capability: FrameCapability,
  tamper?: (answer: Uint8Array) => Uint8Array,
): FrameExchange {
  return (frame) => {
    try {
      const answer = chip.handle(capability, frame);
      return Promise.resolve(tamper ? tamper(answer) : answer);
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  };
}

const key16 = fc.uint8Array({ minLength: 16, maxLength: 16 });

function flipBit(bytes: Uint8Array, bit: number): Uint8Array {
  const out = Uint8Array.from(bytes);
  out[Math.floor(bit / 8) % out.length]! ^= 1 << (bit % 8);
  return out;
}

describe('local authentication against every virtual chip (property)', () => {
  it.each(['spark2', 'spark2-413'] as const)(
    '%s: AuthenticateEV2First with key 2 succeeds with the right key and fails with any flipped key bit',
    async (kind) => {
      await fc.assert(
        fc.asyncProperty(key16, fc.integer({ min: 0, max: 127 }), async (key, bit) => {
          const keys = [0, 1, 2, 3, 4].map((n) => (n === 2 ? key : new Uint8Array(16).fill(n)));
          const channel = new ApduChannel(exchangeWith(createVirtualChip(kind, { keys }), 'iso14443-4'));
          await selectNdefApplication(channel);
          const session = await authenticateEv2First(channel, { keyNo: 2, key });
          expect(session.ti).toHaveLength(4);
          const other = new ApduChannel(exchangeWith(createVirtualChip(kind, { keys }), 'iso14443-4'));
          await selectNdefApplication(other);
          const wrong = await authenticateEv2First(other, { keyNo: 2, key: flipBit(key, bit) }).catch(
            (error: unknown) => error,
          );
          expect(isTaplineError(wrong) && wrong.code === ErrorCode.AuthenticationFailed).toBe(true);
        }),
        { numRuns: 40 },
      );
    },
  );

  it('spark2: any flipped bit in the chip final answer fails authentication', async () => {
    await fc.assert(
      fc.asyncProperty(key16, fc.integer({ min: 0, max: 255 }), async (key, bit) => {
        const keys = [0, 1, 2, 3, 4].map((n) => (n === 2 ? key : new Uint8Array(16)));
        let frames = 0;
        // Frame 3 is the chip's final answer, E(K, TI ‖ RndA′ ‖ caps) ‖ 91 00: flip a bit of the cryptogram only.
        const tamper = (answer: Uint8Array): Uint8Array =>
          ++frames === 3 ? Uint8Array.from([...flipBit(answer.subarray(0, 32), bit), ...answer.subarray(32)]) : answer;
        const channel = new ApduChannel(exchangeWith(createVirtualChip('spark2', { keys }), 'iso14443-4', tamper));
        await selectNdefApplication(channel);
        const result = await authenticateEv2First(channel, { keyNo: 2, key }).catch((error: unknown) => error);
        expect(isTaplineError(result) && result.code === ErrorCode.AuthenticationFailed).toBe(true);
      }),
      { numRuns: 40 },
    );
  });

  it('apex: the Verify applet authenticates key 2 after SELECT and refuses a flipped key', async () => {
    await fc.assert(
      fc.asyncProperty(key16, fc.integer({ min: 0, max: 127 }), async (key, bit) => {
        for (const [candidate, ok] of [
          [key, true],
          [flipBit(key, bit), false],
        ] as const) {
          const channel = new ApduChannel(exchangeWith(createVirtualChip('apex', { verifyKey: key }), 'iso14443-4'));
          await channel.send({
            cla: 0,
            ins: 0xa4,
            p1: 4,
            p2: 0,
            data: Uint8Array.from(Buffer.from('A000000846737061726B3201', 'hex')),
            le: 256,
          });
          const result = await authenticateEv2First(channel, { keyNo: 2, key: candidate }).then(
            () => 'ok',
            (error: unknown) => (isTaplineError(error) ? error.code : 'other'),
          );
          expect(result).toBe(ok ? 'ok' : ErrorCode.AuthenticationFailed);
        }
      }),
      { numRuns: 40 },
    );
  });

  it('spark1: TAM1 on key 2 verifies with the right key, and not with a flipped key or a flipped response bit', async () => {
    await fc.assert(
      fc.asyncProperty(
        key16,
        fc.uint8Array({ minLength: 10, maxLength: 10 }),
        fc.integer({ min: 0, max: 127 }),
        async (key, ichallenge, bit) => {
          const keys = [0, 1, 2, 3].map((n) => (n === 2 ? key : new Uint8Array(16).fill(n)));
          const chip = createVirtualChip('spark1', { keys });
          const tag = new Iso15693Tag(exchangeWith(chip, 'iso15693'), { uid: chip.info.uid });
          const reply = await tag.authenticate(2, ichallenge);
          expect(verifyTam1Response(key, ichallenge, reply.tresponse)).toBe(true);
          expect(verifyTam1Response(flipBit(key, bit), ichallenge, reply.tresponse)).toBe(false);
          expect(verifyTam1Response(key, ichallenge, flipBit(reply.tresponse, bit))).toBe(false);
        },
      ),
      { numRuns: 40 },
    );
  });
});
