/**
 * The BER-TLV subset PC/SC Part 3 data objects use (readers.md §4.1): one- or two-byte tags (`95`, `5F 46`,
 * `FF 6D`), lengths in the short form or as `81 xx` / `82 xx xx`. Pure; the decoder never reads past its input and
 * fails with `PROTOCOL_ERROR` instead of guessing, because its input comes from a reader.
 *
 * @packageDocumentation
 */
import { ErrorCode, TaplineError } from '../../model/errors.js';
import { toSpacedHex } from '../../util/bytes.js';

/** One data object. */
export interface BerTlv {
  /** The tag as a number: `0x95`, `0x5f46`. */
  readonly tag: number;
  readonly value: Uint8Array;
}

function invalid(message: string): TaplineError {
  return new TaplineError(ErrorCode.InvalidArgument, message);
}

/** The tag's bytes: two when its first byte says "more tag bytes follow" (low five bits all set). */
function tagBytes(tag: number): number[] {
  if (!Number.isInteger(tag) || tag < 0 || tag > 0xffff)
    throw invalid(`A BER-TLV tag is one or two bytes, not ${tag}.`);
  if (tag > 0xff) {
    if ((tag >> 8) % 0x20 !== 0x1f || (tag & 0x80) !== 0) {
      throw invalid(`0x${tag.toString(16)} is not a two-byte BER-TLV tag.`);
    }
    return [tag >> 8, tag & 0xff];
  }
  if (tag % 0x20 === 0x1f) throw invalid(`0x${tag.toString(16)} starts a multi-byte tag; give both bytes.`);
  return [tag];
}

/** Encodes one data object. Values longer than 65535 bytes fail with `INVALID_ARGUMENT`. */
export function encodeBerTlv(tag: number, value: Uint8Array = new Uint8Array(0)): Uint8Array {
  const length = value.length;
  let lengthBytes: number[];
  if (length < 0x80) lengthBytes = [length];
  else if (length <= 0xff) lengthBytes = [0x81, length];
  else if (length <= 0xffff) lengthBytes = [0x82, length >> 8, length & 0xff];
  else throw invalid(`A BER-TLV value of ${length} bytes is too long.`);
  const head = [...tagBytes(tag), ...lengthBytes];
  const out = new Uint8Array(head.length + length);
  out.set(head);
  out.set(value, head.length);
  return out;
}

/**
 * Decodes a sequence of data objects that fills `bytes` exactly. Fails with `PROTOCOL_ERROR` for a tag of more than
 * two bytes, a length form other than short, `81` or `82`, or an object that runs past the end.
 */
export function decodeBerTlvs(bytes: Uint8Array): BerTlv[] {
  const objects: BerTlv[] = [];
  const fail = (why: string): TaplineError =>
    new TaplineError(ErrorCode.ProtocolError, `Malformed BER-TLV data from the reader: ${why}.`, {
      details: { data: toSpacedHex(bytes.subarray(0, 64)) },
    });
  let at = 0;
  while (at < bytes.length) {
    let tag = bytes[at++]!;
    if (tag % 0x20 === 0x1f) {
      const second = bytes[at++];
      if (second === undefined) throw fail('a two-byte tag is cut short');
      if ((second & 0x80) !== 0) throw fail('a tag longer than two bytes');
      tag = (tag << 8) | second;
    }
    const first = bytes[at++];
    if (first === undefined) throw fail(`the object 0x${tag.toString(16)} has no length`);
    let length = first;
    if (first === 0x81 || first === 0x82) {
      const count = first - 0x80;
      if (at + count > bytes.length) throw fail(`the length of 0x${tag.toString(16)} is cut short`);
      length = 0;
      for (let i = 0; i < count; i++) length = (length << 8) | bytes[at++]!;
    } else if (first > 0x7f) {
      throw fail(`the length form 0x${first.toString(16)} of 0x${tag.toString(16)}`);
    }
    if (at + length > bytes.length) {
      throw fail(`the object 0x${tag.toString(16)} announces ${length} bytes, ${bytes.length - at} remain`);
    }
    objects.push({ tag, value: bytes.slice(at, at + length) });
    at += length;
  }
  return objects;
}
