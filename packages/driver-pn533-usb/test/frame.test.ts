/**
 * The PN53x frame codec (core's `controllers/pn53x/frame.ts`), checked against readers.md §6 byte for byte and
 * fed random bytes.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  ErrorCode,
  PN53X_ACK_FRAME,
  PN53X_ERROR_FRAME,
  PN53X_NACK_FRAME,
  Pn53xFrameDecoder,
  buildInformationFrame,
  decodeFrame,
  isTaplineError,
  parseFrame,
  type Pn53xFrame,
} from '@tapline/core';
import { hex } from './support/scripted-usb.js';

const info = (payload: string): Pn53xFrame => ({ type: 'information', payload: hex(payload), extended: false });

describe('PN53x frames: readers.md §6 vectors', () => {
  it('vector 1: builds the Diagnose "123" command frame', () => {
    expect(buildInformationFrame(hex('D4 00 31 32 33'))).toEqual(hex('00 00 FF 05 FB D4 00 31 32 33 96 00'));
  });

  it('vector 1: parses the answer frame to data 34 35 36', () => {
    expect(parseFrame(hex('00 00 FF 05 FB D5 01 34 35 36 8B 00'))).toEqual(info('D5 01 34 35 36'));
  });

  it('vector 2: builds an extended frame for 261 payload bytes', () => {
    const payload = Uint8Array.of(...hex('D4 00 31 32 33'), ...new Uint8Array(256));
    const expected = Uint8Array.of(...hex('00 00 FF FF FF 01 05 FA D4 00 31 32 33'), ...new Uint8Array(256), 0x96, 0);
    expect(buildInformationFrame(payload)).toEqual(expected);
  });

  it('vector 2: parses the extended answer frame', () => {
    const bytes = Uint8Array.of(...hex('00 00 FF FF FF 01 05 FA D5 01 34 35 36'), ...new Uint8Array(256), 0x8b, 0);
    const frame = parseFrame(bytes);
    expect(frame).toMatchObject({ type: 'information', extended: true });
    expect(frame.type === 'information' && frame.payload.subarray(0, 5)).toEqual(hex('D5 01 34 35 36'));
    expect(frame.type === 'information' && frame.payload.length).toBe(261);
  });

  it('vector 3: the error frame 00 00 FF 01 FF 7F 81 00 is error 0x7F', () => {
    expect(parseFrame(hex('00 00 FF 01 FF 7F 81 00'))).toEqual({ type: 'error', errorCode: 0x7f });
    expect(PN53X_ERROR_FRAME).toEqual(hex('00 00 FF 01 FF 7F 81 00'));
  });

  it('vector 4: a bad DCS is a PROTOCOL_ERROR with reason dcs', () => {
    const result = decodeFrame(hex('00 00 FF 05 FB D5 01 34 35 36 8A 00'));
    expect(result.status).toBe('invalid');
    expect(result.status === 'invalid' && result.error).toMatchObject({
      code: ErrorCode.ProtocolError,
      details: { reason: 'dcs' },
    });
    expect(result.status === 'invalid' && result.consumed).toBe(12);
  });

  it('vector 6: GetFirmwareVersion frames of a PN533 v2.7', () => {
    expect(buildInformationFrame(hex('D4 02'))).toEqual(hex('00 00 FF 02 FE D4 02 2A 00'));
    expect(parseFrame(hex('00 00 FF 06 FA D5 03 33 02 07 07 E5 00'))).toEqual(info('D5 03 33 02 07 07'));
  });

  it.each([
    ['D4 4A 01 00', '00 00 FF 04 FC D4 4A 01 00 E1 00'],
    ['D4 4A 01 03 00', '00 00 FF 05 FB D4 4A 01 03 00 DE 00'],
    ['D4 32 05 01 00 01', '00 00 FF 06 FA D4 32 05 01 00 01 F3 00'],
    ['D4 52 00', '00 00 FF 03 FD D4 52 00 DA 00'],
  ])('computed frame of %s', (payload, frame) => {
    expect(buildInformationFrame(hex(payload))).toEqual(hex(frame));
    expect(parseFrame(hex(frame))).toEqual(info(payload));
  });

  it('ACK and NACK are the documented six bytes and parse as such', () => {
    expect(PN53X_ACK_FRAME).toEqual(hex('00 00 FF 00 FF 00'));
    expect(PN53X_NACK_FRAME).toEqual(hex('00 00 FF FF 00 00'));
    expect(parseFrame(PN53X_ACK_FRAME)).toEqual({ type: 'ack' });
    expect(parseFrame(PN53X_NACK_FRAME)).toEqual({ type: 'nack' });
  });
});

describe('PN53x frames: malformed input', () => {
  it('rejects a bad LCS, skipping only the start code', () => {
    const result = decodeFrame(hex('00 00 FF 05 FA D5 01 34 35 36 8B 00'));
    expect(result).toMatchObject({ status: 'invalid', consumed: 3, error: { details: { reason: 'lcs' } } });
  });

  it('rejects a bad LCS of an extended frame', () => {
    const result = decodeFrame(hex('00 00 FF FF FF 01 05 FB D5 01'));
    expect(result).toMatchObject({ status: 'invalid', error: { details: { reason: 'lcs' } } });
  });

  it('rejects an extended frame that announces more than maxLength', () => {
    const result = decodeFrame(hex('00 00 FF FF FF 10 00 F0'), { maxLength: 265 });
    expect(result).toMatchObject({ status: 'invalid', error: { details: { reason: 'length' } } });
  });

  it('rejects an unknown TFI and an empty information frame', () => {
    expect(decodeFrame(hex('00 00 FF 02 FE D6 01 29 00'))).toMatchObject({
      status: 'invalid',
      error: { details: { reason: 'tfi' } },
    });
    expect(decodeFrame(hex('00 00 FF 00 00 00'))).toMatchObject({
      status: 'invalid',
      error: { details: { reason: 'empty' } },
    });
  });

  it('waits for the rest of a truncated frame, and parseFrame refuses it', () => {
    expect(decodeFrame(hex('00 00 FF 05 FB D5 01 34'))).toEqual({ status: 'incomplete', discard: 1 });
    expect(() => parseFrame(hex('00 00 FF 05 FB D5 01 34'))).toThrow(
      expect.objectContaining({ details: expect.objectContaining({ reason: 'incomplete' }) }),
    );
    expect(() => parseFrame(hex('00 00 FF 00 FF 00 12'))).toThrow(
      expect.objectContaining({ details: expect.objectContaining({ reason: 'trailing' }) }),
    );
  });

  it('skips noise before a frame and accepts a missing postamble', () => {
    expect(decodeFrame(hex('13 37 00 00 FF 00 FF'))).toEqual({ status: 'frame', frame: { type: 'ack' }, consumed: 7 });
    expect(decodeFrame(hex('12 34 56'))).toEqual({ status: 'incomplete', discard: 3 });
    expect(decodeFrame(hex('12 34 00'))).toEqual({ status: 'incomplete', discard: 2 });
  });

  it('refuses to build frames the chip cannot take', () => {
    expect(() => buildInformationFrame(new Uint8Array(0))).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
    expect(() => buildInformationFrame(new Uint8Array(266), { maxLength: 265 })).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidArgument }),
    );
    expect(() => buildInformationFrame(new Uint8Array(256).fill(0xd4), { extendedFrames: false })).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidArgument }),
    );
  });

  it('decodes frames fed one byte at a time, dropping noise between them', () => {
    const stream = Uint8Array.of(
      ...hex('00 00 FF 00 FF 00'),
      ...hex('AA BB'),
      ...hex('00 00 FF 06 FA D5 03 33 02 07 07 E5 00'),
      ...hex('00 00 FF 05 FB D5 01 34 35 36 8A 00'),
    );
    const decoder = new Pn53xFrameDecoder();
    const out = [...stream].flatMap((b) => decoder.push(Uint8Array.of(b)));
    expect(out.map((d) => (d.status === 'frame' ? d.frame.type : d.error.details['reason']))).toEqual([
      'ack',
      'information',
      'dcs',
    ]);
    // Only the last postamble may wait, as the possible start of another frame.
    expect(decoder.pending).toBe(1);
  });
});

describe('PN53x frames: random input (fast-check)', () => {
  it('decodeFrame never throws and always makes progress on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        const result = decodeFrame(bytes, { maxLength: 265 });
        if (result.status === 'incomplete') {
          expect(result.discard).toBeGreaterThanOrEqual(0);
          expect(result.discard).toBeLessThanOrEqual(bytes.length);
        } else {
          expect(result.consumed).toBeGreaterThan(0);
          expect(result.consumed).toBeLessThanOrEqual(bytes.length);
          if (result.status === 'invalid') expect(result.error.code).toBe(ErrorCode.ProtocolError);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('parseFrame returns a frame or throws a TaplineError, nothing else', () => {
    const framed = fc
      .uint8Array({ minLength: 1, maxLength: 300 })
      .map((p) => buildInformationFrame(Uint8Array.of(0xd5, ...p)))
      .chain((f) => fc.tuple(fc.constant(f), fc.nat({ max: f.length - 1 }), fc.integer({ min: 1, max: 255 })))
      .map(([f, at, delta]) => {
        const copy = f.slice();
        copy[at] = (copy[at]! + delta) & 0xff;
        return copy;
      });
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 300 }), framed), (bytes) => {
        try {
          const frame = parseFrame(bytes);
          expect(['ack', 'nack', 'error', 'information']).toContain(frame.type);
        } catch (error) {
          expect(isTaplineError(error)).toBe(true);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('round-trips every payload through build and decode', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 400 }), fc.constantFrom(0xd4, 0xd5), (data, tfi) => {
        const payload = Uint8Array.of(tfi, ...data);
        const frame = buildInformationFrame(payload);
        expect(parseFrame(frame)).toEqual({ type: 'information', payload, extended: payload.length > 255 });
      }),
    );
  });

  it('the incremental decoder finds every frame however the stream is cut, and ends on any input', () => {
    const payload = fc.uint8Array({ minLength: 1, maxLength: 300 }).map((p) => Uint8Array.of(0xd5, ...p));
    fc.assert(
      fc.property(
        fc.array(payload, { minLength: 1, maxLength: 5 }),
        fc.array(fc.integer({ min: 1, max: 70 }), { minLength: 1, maxLength: 20 }),
        fc.uint8Array({ maxLength: 40 }),
        (payloads, cuts, noise) => {
          const stream = Uint8Array.of(...payloads.flatMap((p) => [...buildInformationFrame(p)]));
          const decoder = new Pn53xFrameDecoder();
          const out = [];
          let at = 0;
          for (let i = 0; at < stream.length; i++) {
            const size = cuts[i % cuts.length]!;
            out.push(...decoder.push(stream.subarray(at, at + size)));
            at += size;
          }
          expect(
            out.map((d) => (d.status === 'frame' && d.frame.type === 'information' ? d.frame.payload : d)),
          ).toEqual(payloads);
          // Random noise afterwards may yield anything, but only frames or Tapline errors, and it ends.
          for (const item of decoder.push(noise)) {
            if (item.status === 'invalid') expect(isTaplineError(item.error)).toBe(true);
          }
          expect(decoder.pending).toBeLessThanOrEqual(noise.length + 1);
        },
      ),
      { numRuns: 300 },
    );
  });
});
