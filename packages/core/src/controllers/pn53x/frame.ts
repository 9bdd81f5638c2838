/**
 * The PN53x host-link frame codec (PN533 user manual §6.2; readers.md §5.2): normal and extended information
 * frames, ACK, NACK and the application-level error frame, with the LCS and DCS checks.
 *
 * Pure: no I/O, no clock. {@link decodeFrame} never throws and always reports how many bytes it used, so a transport
 * can feed it whatever arrives (a USB transfer, part of one, or garbage) and make progress; {@link parseFrame} is the
 * strict form for exactly one frame. Over PC/SC (ACR122U) there is no framing at all; this codec serves the raw-USB
 * and serial transports.
 *
 * @packageDocumentation
 */
import { ErrorCode, TaplineError } from '../../model/errors.js';
import { toSpacedHex } from '../../util/bytes.js';

/** TFI of a frame from the host to the chip. */
export const PN53X_HOST_TFI = 0xd4;
/** TFI of a frame from the chip to the host. */
export const PN53X_CHIP_TFI = 0xd5;
/** TFI of the application-level error frame. */
export const PN53X_ERROR_TFI = 0x7f;

/** `00 00 FF 00 FF 00`: acknowledges a command; from the host it aborts the command running in the chip. */
export const PN53X_ACK_FRAME: Uint8Array = Uint8Array.of(0x00, 0x00, 0xff, 0x00, 0xff, 0x00);
/** `00 00 FF FF 00 00`: asks the other side to send its last frame again. */
export const PN53X_NACK_FRAME: Uint8Array = Uint8Array.of(0x00, 0x00, 0xff, 0xff, 0x00, 0x00);
/** `00 00 FF 01 FF 7F 81 00`: the chip's "syntax error" answer to a command it cannot take. */
export const PN53X_ERROR_FRAME: Uint8Array = Uint8Array.of(0x00, 0x00, 0xff, 0x01, 0xff, 0x7f, 0x81, 0x00);

/** The largest LEN of a normal frame (TFI included). */
export const PN53X_NORMAL_FRAME_MAX_LENGTH = 0xff;
/** The largest LEN an extended frame can express. */
export const PN53X_EXTENDED_FRAME_MAX_LENGTH = 0xffff;

/** One decoded frame. */
export type Pn53xFrame =
  | { readonly type: 'ack' }
  | { readonly type: 'nack' }
  /** The application-level error frame; `errorCode` is its data byte (0x7F: syntax error). */
  | { readonly type: 'error'; readonly errorCode: number }
  /** An information frame; `payload` starts with the TFI (`D4` from the host, `D5` from the chip). */
  | { readonly type: 'information'; readonly payload: Uint8Array; readonly extended: boolean };

/** Why a frame was rejected (in {@link TaplineError.details} as `reason`). */
export type Pn53xFrameFault = 'lcs' | 'dcs' | 'length' | 'tfi' | 'incomplete' | 'trailing' | 'empty';

/**
 * What {@link decodeFrame} found at the start of a buffer:
 * - `frame`: a valid frame, and `consumed` bytes (leading noise, preamble and postamble included) to drop;
 * - `incomplete`: no complete frame yet; `discard` leading bytes can never start one and may be dropped now;
 * - `invalid`: a frame that failed a check (`error` says which), and `consumed` bytes to drop to resynchronise.
 */
export type Pn53xDecodeResult =
  | { readonly status: 'frame'; readonly frame: Pn53xFrame; readonly consumed: number }
  | { readonly status: 'incomplete'; readonly discard: number }
  | { readonly status: 'invalid'; readonly error: TaplineError; readonly consumed: number };

/** Options of {@link decodeFrame}, {@link parseFrame} and {@link Pn53xFrameDecoder}. */
export interface Pn53xDecodeOptions {
  /**
   * The largest LEN accepted (TFI included). A header announcing more is rejected at once instead of waiting for
   * bytes no PN53x sends. Default {@link PN53X_EXTENDED_FRAME_MAX_LENGTH}.
   */
  readonly maxLength?: number;
}

/** Options of {@link buildInformationFrame}. */
export interface Pn53xBuildOptions {
  /** The largest LEN the chip accepts (TFI included). Default {@link PN53X_EXTENDED_FRAME_MAX_LENGTH}. */
  readonly maxLength?: number;
  /** Whether the chip understands extended frames (PN531 does not). Default true. */
  readonly extendedFrames?: boolean;
}

/** DCS: the byte that makes the sum of the payload and itself 0 modulo 256. */
export function pn53xChecksum(payload: Uint8Array): number {
  let sum = 0;
  for (const byte of payload) sum += byte;
  return (0x100 - (sum & 0xff)) & 0xff;
}

/**
 * Wraps `payload` (TFI first, e.g. `D4 02`) into an information frame: a normal frame up to LEN 255, an extended
 * frame beyond. Fails with `INVALID_ARGUMENT` for an empty payload, one longer than `maxLength`, or one that needs an
 * extended frame the chip does not understand.
 */
export function buildInformationFrame(payload: Uint8Array, options: Pn53xBuildOptions = {}): Uint8Array {
  const maxLength = options.maxLength ?? PN53X_EXTENDED_FRAME_MAX_LENGTH;
  const extendedFrames = options.extendedFrames ?? true;
  const length = payload.length;
  if (length === 0) throw new TaplineError(ErrorCode.InvalidArgument, 'A PN53x frame needs at least its TFI byte.');
  const limit = Math.min(maxLength, extendedFrames ? PN53X_EXTENDED_FRAME_MAX_LENGTH : PN53X_NORMAL_FRAME_MAX_LENGTH);
  if (length > limit) {
    throw new TaplineError(
      ErrorCode.InvalidArgument,
      `A PN53x frame of ${length} bytes (TFI included) is longer than the chip accepts (${limit}).`,
      { details: { length, limit } },
    );
  }
  const dcs = pn53xChecksum(payload);
  if (length <= PN53X_NORMAL_FRAME_MAX_LENGTH) {
    const frame = new Uint8Array(length + 7);
    frame.set([0x00, 0x00, 0xff, length, (0x100 - length) & 0xff]);
    frame.set(payload, 5);
    frame[5 + length] = dcs;
    frame[6 + length] = 0x00;
    return frame;
  }
  const high = length >> 8;
  const low = length & 0xff;
  const frame = new Uint8Array(length + 10);
  frame.set([0x00, 0x00, 0xff, 0xff, 0xff, high, low, (0x100 - ((high + low) & 0xff)) & 0xff]);
  frame.set(payload, 8);
  frame[8 + length] = dcs;
  frame[9 + length] = 0x00;
  return frame;
}

function frameError(reason: Pn53xFrameFault, message: string, bytes: Uint8Array): TaplineError {
  return new TaplineError(ErrorCode.ProtocolError, `The PN53x sent a malformed frame: ${message}.`, {
    details: { reason, frame: toSpacedHex(bytes.subarray(0, 48)) + (bytes.length > 48 ? ' …' : '') },
    hint: 'Replug the reader; if it keeps happening, try another USB port or cable.',
  });
}

/** Index of the start code `00 FF` at or after `from`, or -1. */
function findStartCode(bytes: Uint8Array, from: number): number {
  for (let i = from; i + 1 < bytes.length; i++) {
    if (bytes[i] === 0x00 && bytes[i + 1] === 0xff) return i;
  }
  return -1;
}

/**
 * Decodes the first frame in `bytes`. Never throws: malformed input comes back as `invalid` with a `PROTOCOL_ERROR`,
 * and every `frame` or `invalid` result consumes at least one byte, so a loop over it always ends.
 */
export function decodeFrame(bytes: Uint8Array, options: Pn53xDecodeOptions = {}): Pn53xDecodeResult {
  const maxLength = options.maxLength ?? PN53X_EXTENDED_FRAME_MAX_LENGTH;
  const start = findStartCode(bytes, 0);
  if (start < 0) {
    // A trailing 00 may be the first half of a start code still on its way.
    const keep = bytes.length > 0 && bytes[bytes.length - 1] === 0x00 ? 1 : 0;
    return { status: 'incomplete', discard: bytes.length - keep };
  }
  const incomplete: Pn53xDecodeResult = { status: 'incomplete', discard: start };
  const at = start + 2;
  if (bytes.length < at + 2) return incomplete;
  const len = bytes[at]!;
  const lcs = bytes[at + 1]!;
  const withPostamble = (end: number): number => (bytes[end] === 0x00 ? end + 1 : end);
  // A frame that fails its length checks says nothing about where the next one starts: skip its start code only.
  const skipStart = start + 2;

  if (len === 0x00 && lcs === 0xff) return { status: 'frame', frame: { type: 'ack' }, consumed: withPostamble(at + 2) };
  if (len === 0xff && lcs === 0x00)
    return { status: 'frame', frame: { type: 'nack' }, consumed: withPostamble(at + 2) };

  let length: number;
  let dataStart: number;
  let extended: boolean;
  if (len === 0xff && lcs === 0xff) {
    if (bytes.length < at + 5) return incomplete;
    const high = bytes[at + 2]!;
    const low = bytes[at + 3]!;
    const lcs2 = bytes[at + 4]!;
    if (((high + low + lcs2) & 0xff) !== 0) {
      return {
        status: 'invalid',
        error: frameError('lcs', 'the length checksum of an extended frame is wrong', bytes.subarray(start)),
        consumed: skipStart,
      };
    }
    length = (high << 8) | low;
    dataStart = at + 5;
    extended = true;
  } else {
    if (((len + lcs) & 0xff) !== 0) {
      return {
        status: 'invalid',
        error: frameError('lcs', 'the length checksum (LCS) is wrong', bytes.subarray(start)),
        consumed: skipStart,
      };
    }
    length = len;
    dataStart = at + 2;
    extended = false;
  }
  if (length === 0) {
    return {
      status: 'invalid',
      error: frameError('empty', 'an information frame without a TFI byte', bytes.subarray(start)),
      consumed: skipStart,
    };
  }
  if (length > maxLength) {
    return {
      status: 'invalid',
      error: frameError('length', `a frame announces ${length} bytes, more than ${maxLength}`, bytes.subarray(start)),
      consumed: skipStart,
    };
  }
  const dcsAt = dataStart + length;
  if (bytes.length <= dcsAt) return incomplete;
  const payload = bytes.slice(dataStart, dcsAt);
  const consumed = withPostamble(dcsAt + 1);
  if (((pn53xChecksum(payload) - bytes[dcsAt]!) & 0xff) !== 0) {
    return {
      status: 'invalid',
      error: frameError('dcs', 'the data checksum (DCS) is wrong', bytes.subarray(start, consumed)),
      consumed,
    };
  }
  const tfi = payload[0]!;
  if (tfi === PN53X_ERROR_TFI && length === 1) {
    return { status: 'frame', frame: { type: 'error', errorCode: tfi }, consumed };
  }
  if (tfi !== PN53X_HOST_TFI && tfi !== PN53X_CHIP_TFI) {
    return {
      status: 'invalid',
      error: frameError(
        'tfi',
        `unknown frame identifier ${toSpacedHex(payload.subarray(0, 1))}`,
        bytes.subarray(start),
      ),
      consumed,
    };
  }
  return { status: 'frame', frame: { type: 'information', payload, extended }, consumed };
}

/**
 * Parses exactly one frame (a preamble before it and a postamble after it allowed). Fails with `PROTOCOL_ERROR` for
 * anything else: a checksum error, a truncated frame, or bytes after the frame.
 */
export function parseFrame(bytes: Uint8Array, options: Pn53xDecodeOptions = {}): Pn53xFrame {
  const result = decodeFrame(bytes, options);
  if (result.status === 'invalid') throw result.error;
  if (result.status === 'incomplete') throw frameError('incomplete', 'the frame is truncated', bytes);
  if (result.consumed !== bytes.length) {
    throw frameError('trailing', `${bytes.length - result.consumed} bytes follow the frame`, bytes);
  }
  return result.frame;
}

/** What {@link Pn53xFrameDecoder.push} yields: a frame, or the error of a malformed one. */
export type Pn53xDecoded =
  | { readonly status: 'frame'; readonly frame: Pn53xFrame }
  | { readonly status: 'invalid'; readonly error: TaplineError };

/**
 * An incremental decoder: push bytes as they arrive, get the frames completed so far. Noise between frames is
 * dropped, and the buffer never holds more than one frame's worth of bytes.
 */
export class Pn53xFrameDecoder {
  readonly #options: Pn53xDecodeOptions;
  #buffer = new Uint8Array(0);

  constructor(options: Pn53xDecodeOptions = {}) {
    this.#options = options;
  }

  /** Bytes waiting for the rest of their frame. */
  get pending(): number {
    return this.#buffer.length;
  }

  /** Adds `chunk` and returns every frame (or malformed frame) it completed, in order. */
  push(chunk: Uint8Array): Pn53xDecoded[] {
    const joined = new Uint8Array(this.#buffer.length + chunk.length);
    joined.set(this.#buffer);
    joined.set(chunk, this.#buffer.length);
    let rest = joined;
    const out: Pn53xDecoded[] = [];
    for (;;) {
      const result = decodeFrame(rest, this.#options);
      if (result.status === 'incomplete') {
        rest = rest.subarray(result.discard);
        break;
      }
      out.push(result.status === 'frame' ? result : { status: 'invalid', error: result.error });
      rest = rest.subarray(result.consumed);
    }
    this.#buffer = rest.slice();
    return out;
  }

  /** Drops every buffered byte (before a new command, so that a stale half frame cannot spoil its answer). */
  reset(): void {
    this.#buffer = new Uint8Array(0);
  }
}
