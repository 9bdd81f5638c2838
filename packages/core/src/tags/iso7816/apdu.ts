import { ErrorCode, TaplineError } from '../../model/errors.js';
import { toSpacedHex } from '../../util/bytes.js';
import type { StatusWord } from './status.js';

/**
 * A command APDU (ISO/IEC 7816-4 §5.1). `le` is the number of response bytes expected: absent means none (case 1 or
 * 3); 256 in short form and 65536 in extended form are encoded as zero.
 */
export interface CommandApdu {
  readonly cla: number;
  readonly ins: number;
  readonly p1: number;
  readonly p2: number;
  readonly data?: Uint8Array;
  readonly le?: number;
}

/** A response APDU: data and status word. */
export interface ResponseApdu {
  readonly data: Uint8Array;
  readonly sw: StatusWord;
}

/** Largest data field and Le of short APDUs. */
export const SHORT_MAX_DATA = 255;
const SHORT_MAX_LE = 256;
const EXTENDED_MAX = 65535;
const EXTENDED_MAX_LE = 65536;

function checkByte(value: number, name: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xff) {
    throw new TaplineError(ErrorCode.InvalidArgument, `APDU ${name} must be a byte, not ${value}.`);
  }
}

/** True when `command` needs the extended length encoding. */
export function needsExtendedLength(command: CommandApdu): boolean {
  return (command.data?.length ?? 0) > SHORT_MAX_DATA || (command.le ?? 0) > SHORT_MAX_LE;
}

/**
 * Encodes a command APDU: short form when it fits, extended form when it does not or when `extended` is set.
 * Fails with `INVALID_ARGUMENT` for out-of-range fields.
 */
export function encodeApdu(command: CommandApdu, options: { readonly extended?: boolean } = {}): Uint8Array {
  const { cla, ins, p1, p2, data = new Uint8Array(), le } = command;
  checkByte(cla, 'CLA');
  checkByte(ins, 'INS');
  checkByte(p1, 'P1');
  checkByte(p2, 'P2');
  if (le !== undefined && (!Number.isInteger(le) || le < 0 || le > EXTENDED_MAX_LE)) {
    throw new TaplineError(ErrorCode.InvalidArgument, `APDU Le must be 0 to 65536, not ${le}.`);
  }
  if (data.length > EXTENDED_MAX) {
    throw new TaplineError(ErrorCode.InvalidArgument, `APDU data of ${data.length} bytes is longer than 65535.`);
  }
  const extended = options.extended === true || needsExtendedLength(command);
  const header = [cla, ins, p1, p2];
  const out: number[] = [...header];
  if (!extended) {
    if (data.length > 0) out.push(data.length, ...data);
    if (le !== undefined) out.push(le === SHORT_MAX_LE ? 0 : le);
    return Uint8Array.from(out);
  }
  if (data.length > 0) out.push(0x00, data.length >>> 8, data.length & 0xff, ...data);
  if (le !== undefined) {
    const value = le === EXTENDED_MAX_LE ? 0 : le;
    if (data.length === 0) out.push(0x00);
    out.push(value >>> 8, value & 0xff);
  }
  return Uint8Array.from(out);
}

/**
 * Decodes a command APDU in any of the seven ISO 7816-4 cases (1, 2S, 3S, 4S, 2E, 3E, 4E). Fails with
 * `PROTOCOL_ERROR` when the length fields do not add up. Virtual chips use it to read what a reader sent.
 */
export function decodeApdu(bytes: Uint8Array): CommandApdu {
  const fail = (why: string): never => {
    throw new TaplineError(ErrorCode.ProtocolError, `Malformed command APDU (${why}): ${toSpacedHex(bytes)}.`);
  };
  if (bytes.length < 4) fail('shorter than its 4-byte header');
  const [cla, ins, p1, p2] = bytes as unknown as [number, number, number, number];
  const base = { cla, ins, p1, p2 };
  const body = bytes.subarray(4);
  if (body.length === 0) return base;
  if (body.length === 1) return { ...base, le: body[0] === 0 ? SHORT_MAX_LE : body[0]! };
  if (body[0] !== 0 || body.length < 3) {
    const lc = body[0]!;
    if (lc === 0) fail('Lc of zero');
    if (body.length === 1 + lc) return { ...base, data: body.slice(1) };
    if (body.length === 2 + lc)
      return { ...base, data: body.slice(1, 1 + lc), le: body[1 + lc] === 0 ? SHORT_MAX_LE : body[1 + lc]! };
    return fail(`Lc ${lc} does not match ${body.length - 1} remaining bytes`);
  }
  // Extended: body starts with 00.
  if (body.length === 3) {
    const le = (body[1]! << 8) | body[2]!;
    return { ...base, le: le === 0 ? EXTENDED_MAX_LE : le };
  }
  const lc = (body[1]! << 8) | body[2]!;
  if (lc === 0) fail('extended Lc of zero');
  if (body.length === 3 + lc) return { ...base, data: body.slice(3) };
  if (body.length === 5 + lc) {
    const le = (body[3 + lc]! << 8) | body[4 + lc]!;
    return { ...base, data: body.slice(3, 3 + lc), le: le === 0 ? EXTENDED_MAX_LE : le };
  }
  return fail(`extended Lc ${lc} does not match ${body.length - 3} remaining bytes`);
}

/** Splits a response into data and status word; fewer than two bytes fail with `PROTOCOL_ERROR`. */
export function parseResponseApdu(bytes: Uint8Array, command = 'a command'): ResponseApdu {
  if (bytes.length < 2) {
    throw new TaplineError(
      ErrorCode.ProtocolError,
      `The answer to ${command} has no status word (${bytes.length} byte${bytes.length === 1 ? '' : 's'}).`,
    );
  }
  const n = bytes.length;
  return { data: bytes.slice(0, n - 2), sw: (bytes[n - 2]! << 8) | bytes[n - 1]! };
}

/** Encodes a response APDU (for virtual chips). */
export function encodeResponseApdu(data: Uint8Array, sw: StatusWord): Uint8Array {
  const out = new Uint8Array(data.length + 2);
  out.set(data);
  out[data.length] = sw >>> 8;
  out[data.length + 1] = sw & 0xff;
  return out;
}
