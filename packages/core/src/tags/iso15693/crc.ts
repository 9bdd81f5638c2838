/**
 * CRC-16 of ISO/IEC 15693 frames (CRC-16/ISO-IEC 13239, also known as X.25). Readers with the `iso15693` capability
 * add and check it themselves; these functions are for raw paths (a simulator, a reader that hands back whole
 * frames, trace decoding).
 *
 * @packageDocumentation
 */
import { ErrorCode, TaplineError } from '../../model/errors.js';
import { toSpacedHex } from '../../util/bytes.js';
import { describeBytes } from './internal.js';

/** The CRC of the ASCII bytes `123456789`, the catalogue check value of CRC-16/ISO-IEC 13239. */
export const ISO15693_CRC_CHECK_VALUE = 0x906e;

/**
 * The CRC register, before the final XOR, after running over a frame and its own CRC: any intact frame leaves this
 * value, which is how hardware checks a frame without knowing where the data ends.
 */
export const ISO15693_CRC_RESIDUE = 0xf0b8;

const INIT = 0xffff;
const XOROUT = 0xffff;
/** 0x1021 bit-reversed: the CRC is computed LSB first, the order the bits go on air. */
const POLY_REFLECTED = 0x8408;

const TABLE: Uint16Array = (() => {
  const table = new Uint16Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let bit = 0; bit < 8; bit++) c = c & 1 ? (c >>> 1) ^ POLY_REFLECTED : c >>> 1;
    table[n] = c;
  }
  return table;
})();

function register(data: Uint8Array): number {
  let crc = INIT;
  for (const byte of data) crc = (crc >>> 8) ^ TABLE[(crc ^ byte) & 0xff]!;
  return crc;
}

/** CRC-16/ISO-IEC 13239 of `data` (reflected polynomial 0x8408, init 0xFFFF, final XOR 0xFFFF) as a number. */
export function crc16Iso15693(data: Uint8Array): number {
  return register(data) ^ XOROUT;
}

/** `frame` followed by its CRC, low byte first as ISO 15693 sends it (`26 01 00` → `26 01 00 F6 0A`). */
export function appendIso15693Crc(frame: Uint8Array): Uint8Array {
  const crc = crc16Iso15693(frame);
  const out = new Uint8Array(frame.length + 2);
  out.set(frame);
  out[frame.length] = crc & 0xff;
  out[frame.length + 1] = crc >>> 8;
  return out;
}

/** True when the last two bytes of `frameWithCrc` are the CRC of the bytes before them. */
export function checkIso15693Crc(frameWithCrc: Uint8Array): boolean {
  return frameWithCrc.length >= 2 && register(frameWithCrc) === ISO15693_CRC_RESIDUE;
}

/**
 * `frameWithCrc` without its CRC, after checking it. Fails with `PROTOCOL_ERROR` when the frame is too short to
 * hold a CRC and `INTEGRITY_ERROR` when the CRC does not match (a corrupted frame, typically a tag moving in the
 * field).
 *
 * @param what - what the frame is, for the error message ("the reply to INVENTORY").
 */
export function stripIso15693Crc(frameWithCrc: Uint8Array, what = 'the ISO 15693 frame'): Uint8Array {
  if (frameWithCrc.length < 3) {
    throw new TaplineError(
      ErrorCode.ProtocolError,
      `${capitalise(what)} is too short to carry a CRC (${frameWithCrc.length} bytes): ${describeBytes(frameWithCrc)}.`,
      { details: { frame: toSpacedHex(frameWithCrc) } },
    );
  }
  if (!checkIso15693Crc(frameWithCrc)) {
    const body = frameWithCrc.subarray(0, frameWithCrc.length - 2);
    const expected = crc16Iso15693(body);
    throw new TaplineError(
      ErrorCode.IntegrityError,
      `${capitalise(what)} has a wrong CRC (expected ${toSpacedHex(Uint8Array.of(expected & 0xff, expected >>> 8))}): ${describeBytes(frameWithCrc)}.`,
      {
        details: { frame: toSpacedHex(frameWithCrc) },
        hint: 'The frame was corrupted on air: hold the tag still on the reader and try again.',
      },
    );
  }
  return frameWithCrc.slice(0, frameWithCrc.length - 2);
}

function capitalise(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
