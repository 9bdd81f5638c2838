/**
 * PC/SC Part 3 responses: `C0 03 <object number> SW1 SW2`, then the data objects, then the APDU's own status word
 * (readers.md §4.1; the layout of ACS and of the wsrf2009 firmware, which fill in the objects that succeeded before
 * the one that failed). Pure; every malformed answer is a `PROTOCOL_ERROR`, never a guess.
 *
 * @packageDocumentation
 */
import { ErrorCode, TaplineError, type TaplineErrorCode } from '../../model/errors.js';
import { toSpacedHex } from '../../util/bytes.js';
import { Part3Tag } from './commands.js';
import { decodeBerTlvs, type BerTlv } from './tlv.js';

/** The generic error status (`C0`). */
export interface Part3Status {
  /** 0 for the whole command, else the (1-based) data object the status is about. */
  readonly objectNumber: number;
  /** SW1 SW2 as one number: `0x9000` for success. */
  readonly sw: number;
}

/** The version data object (`80 03 <major> <minor> <build>`). */
export interface Part3Version {
  readonly major: number;
  readonly minor: number;
  readonly build: number;
}

/** A decoded Part 3 response. */
export interface Part3Response {
  readonly status: Part3Status;
  /** Every data object after the status, in order. */
  readonly objects: readonly BerTlv[];
  readonly version?: Part3Version;
  /** Valid bits of the last byte received (`92`); 0 means all eight. */
  readonly validBits?: number;
  /** Byte 0 of the response status (`96`): b0 CRC, b1 collision, b2 parity, b3 framing error. */
  readonly responseStatus?: number;
  /** The tag's answer (`97`). */
  readonly iccResponse?: Uint8Array;
  /** The value of a layer-3 switch result (`8F`): the SAK for Type A, the ATQB protocol info for Type B. */
  readonly switchResult?: Uint8Array;
  /** The ATR of a layer-4 switch (`5F 51`). */
  readonly atr?: Uint8Array;
}

/** Where a Part 3 status came from, for messages. */
export interface Part3Context {
  /** The reader's name. */
  readonly reader: string;
  /** What was being done ("starting a transparent session"). */
  readonly what: string;
}

interface StatusInfo {
  readonly code: TaplineErrorCode;
  readonly text: string;
}

/** The generic error statuses of readers.md §4.1 (ACM1252U-Y3 §5.2.3.1, CLOUD 47x0 F p.41). */
const STATUS_TEXT: ReadonlyMap<number, StatusInfo> = new Map([
  [0x6282, { code: ErrorCode.ProtocolError, text: 'the information is not available' }],
  [0x6300, { code: ErrorCode.ProtocolError, text: 'the reader gave no information' }],
  [0x6301, { code: ErrorCode.ProtocolError, text: 'execution stopped because another data object failed' }],
  [0x6400, { code: ErrorCode.ProtocolError, text: "the reader's RF front end did not respond" }],
  [0x6401, { code: ErrorCode.Timeout, text: 'the tag did not answer' }],
  [0x6700, { code: ErrorCode.ProtocolError, text: 'a data object had an unexpected length' }],
  [0x6a80, { code: ErrorCode.ProtocolError, text: 'a data object had an unexpected value' }],
  [0x6a81, { code: ErrorCode.UnsupportedCapability, text: 'the reader does not support the data object' }],
  [0x6f00, { code: ErrorCode.ProtocolError, text: 'the reader gave no precise diagnosis' }],
]);

/** Status words at APDU level that mean "this reader has no FF C2 at all". */
const NOT_PART3_SW: ReadonlySet<number> = new Set([0x6a81, 0x6d00, 0x6e00, 0x6800, 0x6a86, 0x6b00]);

function hex16(sw: number): string {
  return toSpacedHex(Uint8Array.of(sw >> 8, sw & 0xff));
}

/** The typed error for a failed Part 3 status (from `C0`, or an APDU status word). */
export function part3StatusError(status: Part3Status, context: Part3Context): TaplineError {
  const info = STATUS_TEXT.get(status.sw);
  const where = status.objectNumber === 0 ? '' : ` (data object ${status.objectNumber})`;
  return new TaplineError(
    info?.code ?? ErrorCode.ProtocolError,
    `${context.reader} failed ${context.what}${where}: ${info?.text ?? 'an undocumented status'} (${hex16(status.sw)}).`,
    {
      details: { reader: context.reader, part3Status: hex16(status.sw), object: status.objectNumber },
      ...(info?.code === ErrorCode.Timeout || status.sw === 0x6300
        ? { hint: 'Hold the tag flat and still on the reader, then try again.' }
        : {}),
    },
  );
}

function malformed(context: Part3Context, why: string, response: Uint8Array): TaplineError {
  return new TaplineError(ErrorCode.ProtocolError, `${context.reader} answered ${context.what} with ${why}.`, {
    details: { reader: context.reader, response: toSpacedHex(response.subarray(0, 64)) },
  });
}

/**
 * Decodes a response to `FF C2`. Fails with `UNSUPPORTED_CAPABILITY` when the APDU's status word says the reader has
 * no such command (`6A 81`, `6D 00`, `6E 00`, …), the status's error for other status words, and `PROTOCOL_ERROR`
 * for a body that is no TLV list with exactly one well-formed `C0` object. The `C0` status itself is returned, not
 * checked (see {@link checkPart3Response}).
 */
export function parsePart3Response(response: Uint8Array, context: Part3Context): Part3Response {
  if (response.length < 2) throw malformed(context, `${response.length} bytes`, response);
  const sw = (response[response.length - 2]! << 8) | response[response.length - 1]!;
  if (sw !== 0x9000) {
    if (NOT_PART3_SW.has(sw)) {
      throw new TaplineError(
        ErrorCode.UnsupportedCapability,
        `${context.reader} does not support PC/SC Part 3 transparent sessions (FF C2 answered ${hex16(sw)}).`,
        { details: { reader: context.reader, sw: hex16(sw) } },
      );
    }
    throw part3StatusError({ objectNumber: 0, sw }, context);
  }
  const body = response.subarray(0, -2);
  const objects = decodeBerTlvs(body);
  const statuses = objects.filter((o) => o.tag === Part3Tag.GenericError);
  if (statuses.length !== 1 || statuses[0]!.value.length !== 3) {
    throw malformed(context, 'no single generic status object (C0 03 …)', response);
  }
  const c0 = statuses[0]!.value;
  const status: Part3Status = { objectNumber: c0[0]!, sw: (c0[1]! << 8) | c0[2]! };
  const rest = objects.filter((o) => o.tag !== Part3Tag.GenericError);
  const find = (tag: number): Uint8Array | undefined => rest.find((o) => o.tag === tag)?.value;
  const version = find(Part3Tag.Version);
  if (version !== undefined && version.length !== 3) {
    throw malformed(context, `a version object of ${version.length} bytes`, response);
  }
  const validBits = find(Part3Tag.RxBitFraming);
  if (validBits !== undefined && (validBits.length !== 1 || validBits[0]! > 7)) {
    throw malformed(context, 'a malformed valid-bits object (92)', response);
  }
  const responseStatus = find(Part3Tag.ResponseStatus);
  if (responseStatus !== undefined && responseStatus.length < 1) {
    throw malformed(context, 'an empty response status object (96)', response);
  }
  const iccResponse = find(Part3Tag.IccResponse);
  const switchResult = find(Part3Tag.SwitchProtocol);
  const atr = find(Part3Tag.Atr);
  return {
    status,
    objects: rest,
    ...(version ? { version: { major: version[0]!, minor: version[1]!, build: version[2]! } } : {}),
    ...(validBits ? { validBits: validBits[0]! } : {}),
    ...(responseStatus ? { responseStatus: responseStatus[0]! } : {}),
    ...(iccResponse ? { iccResponse } : {}),
    ...(switchResult ? { switchResult } : {}),
    ...(atr ? { atr } : {}),
  };
}

/** {@link parsePart3Response}, then fails with {@link part3StatusError} unless `C0` says `90 00`. */
export function checkPart3Response(response: Uint8Array, context: Part3Context): Part3Response {
  const parsed = parsePart3Response(response, context);
  if (parsed.status.sw !== 0x9000) throw part3StatusError(parsed.status, context);
  return parsed;
}

/** What a tag answered inside a transparent session. */
export interface Part3Answer {
  /** The answer as the reader passed it on (with its CRC when RX-CRC checking was off). */
  readonly data: Uint8Array;
  /** Valid bits of the last byte, 0 meaning all eight (a Type 2 ACK/NAK has 4). */
  readonly validBits: number;
}

const AIR_ERRORS: readonly [bit: number, name: string][] = [
  [0x01, 'CRC'],
  [0x02, 'collision'],
  [0x04, 'parity'],
  [0x08, 'framing'],
];

/**
 * The tag's answer from a checked transceive response. Fails with `PROTOCOL_ERROR` when the answer is missing or the
 * response status (`96`) reports an air error; a CRC error on a 4-bit answer (a Type 2 ACK/NAK, which carries no
 * CRC) is no error.
 */
export function part3Answer(response: Part3Response, context: Part3Context): Part3Answer {
  const data = response.iccResponse;
  if (!data) {
    throw new TaplineError(
      ErrorCode.ProtocolError,
      `${context.reader} returned no tag answer (97) for ${context.what}.`,
      {
        details: { reader: context.reader },
      },
    );
  }
  const validBits = response.validBits ?? 0;
  const nibble = data.length === 1 && validBits === 4;
  const status = (response.responseStatus ?? 0) & (nibble ? 0x0e : 0x0f);
  if (status !== 0) {
    const names = AIR_ERRORS.filter(([bit]) => (status & bit) !== 0).map(([, name]) => name);
    throw new TaplineError(
      ErrorCode.ProtocolError,
      `${context.reader} reported a ${names.join(' and ')} error in the tag's answer to ${context.what}.`,
      {
        details: { reader: context.reader, responseStatus: status, reason: names.join(',').toLowerCase() },
        hint: 'Hold the tag flat and still on the reader, then try again.',
      },
    );
  }
  return { data, validBits };
}
