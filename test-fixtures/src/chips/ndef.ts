import { concatBytes } from '@tapline/core';

/** NFC Forum URI record prefix codes (URI RTD §3.2.2) that the fixtures' URLs use, longest first. */
const URI_PREFIXES: readonly (readonly [string, number])[] = [
  ['https://www.', 0x02],
  ['http://www.', 0x01],
  ['https://', 0x04],
  ['http://', 0x03],
];

/** A URI record's payload: the prefix code and the rest of the URI as bytes. */
export function uriPayload(uri: string): Uint8Array {
  const found = URI_PREFIXES.find(([prefix]) => uri.startsWith(prefix));
  const code = found?.[1] ?? 0x00;
  const rest = found ? uri.slice(found[0].length) : uri;
  return concatBytes(Uint8Array.of(code), Buffer.from(rest, 'utf8'));
}

/**
 * An NDEF message of one well-known URI record (`U`), short-record form when the payload fits (MB, ME, SR, TNF 1):
 * `D1 01 <len> 55 <prefix code> <rest>`.
 */
export function uriNdefMessage(uri: string): Uint8Array {
  const payload = uriPayload(uri);
  if (payload.length < 256) return concatBytes(Uint8Array.of(0xd1, 0x01, payload.length, 0x55), payload);
  const length = Uint8Array.of(
    payload.length >>> 24,
    (payload.length >>> 16) & 0xff,
    (payload.length >>> 8) & 0xff,
    payload.length & 0xff,
  );
  return concatBytes(Uint8Array.of(0xc1, 0x01), length, Uint8Array.of(0x55), payload);
}

/** Where the text after the prefix code of {@link uriNdefMessage} starts, for a short record. */
export const SHORT_URI_TEXT_OFFSET = 5;

/** A Type 4 Tag NDEF file: NLEN (2 bytes, big-endian), the message, zeros up to `size`. */
export function t4tNdefFile(message: Uint8Array, size: number): Uint8Array {
  const file = new Uint8Array(size);
  file[0] = message.length >>> 8;
  file[1] = message.length & 0xff;
  file.set(message, 2);
  return file;
}

/** The NDEF TLV of Type 2 and Type 5 tags: `03 <len> <message> FE` (one-byte length form). */
export function ndefTlv(message: Uint8Array): Uint8Array {
  return concatBytes(Uint8Array.of(0x03, message.length), message, Uint8Array.of(0xfe));
}

/** Writes `text` as ASCII into `target` at `offset`. */
export function writeAscii(target: Uint8Array, offset: number, text: string): void {
  target.set(Buffer.from(text, 'ascii'), offset);
}

/** Upper-case hex of `bytes`, the form NXP's mirrors and VivoKey's URLs print. */
export function upperHex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex').toUpperCase();
}
