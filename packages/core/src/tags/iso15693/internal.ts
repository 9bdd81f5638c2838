/**
 * Helpers shared by the ISO 15693 modules. Not re-exported from the package: the names are too generic for the flat
 * `@tapline/core` namespace.
 *
 * @packageDocumentation
 */
import { ErrorCode, TaplineError } from '../../model/errors.js';
import { toSpacedHex } from '../../util/bytes.js';

/** `0x0F`, the form datasheets use for one byte. */
export function formatByte(value: number): string {
  return `0x${value.toString(16).padStart(2, '0').toUpperCase()}`;
}

/** Spaced hex for error messages, cut at 64 bytes so a garbage reply cannot flood a log line. */
export function describeBytes(bytes: Uint8Array): string {
  if (bytes.length === 0) return '(no bytes)';
  return toSpacedHex(bytes.subarray(0, 64)) + (bytes.length > 64 ? ' …' : '');
}

/** The PROTOCOL_ERROR for a malformed reply to `command`, with the reply's hex in the message and the details. */
export function replyError(
  command: string,
  problem: string,
  reply: Uint8Array,
  extra: Readonly<Record<string, unknown>> = {},
): TaplineError {
  return new TaplineError(
    ErrorCode.ProtocolError,
    `The tag's reply to ${command} ${problem}: ${describeBytes(reply)}.`,
    {
      details: { command, reply: toSpacedHex(reply), ...extra },
      hint: 'Hold the tag still on the reader and try again; if it keeps happening, the reader or the tag is not speaking plain ISO 15693.',
    },
  );
}

/** The INVALID_ARGUMENT error. */
export function invalidArgument(message: string, hint?: string): TaplineError {
  return new TaplineError(ErrorCode.InvalidArgument, message, hint === undefined ? {} : { hint });
}

/** Checks that `value` is an integer in `[min, max]`; `what` names it in the message. */
export function assertInteger(what: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw invalidArgument(`${what} must be an integer from ${min} to ${max}, not ${String(value)}.`);
  }
}

/** Checks that `bytes` has exactly `length` bytes; `what` names it in the message. */
export function assertLength(what: string, bytes: Uint8Array, length: number): void {
  if (bytes.length !== length) {
    throw invalidArgument(`${what} must be ${length} bytes, not ${bytes.length}.`);
  }
}

/** A copy of `bytes` in reverse order. */
export function reversed(bytes: Uint8Array): Uint8Array {
  return Uint8Array.from(bytes).reverse();
}
