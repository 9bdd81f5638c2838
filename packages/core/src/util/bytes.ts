import { ErrorCode, TaplineError } from '../model/errors.js';

/** Bytes as lower-case hex without separators (`04a1b2`). */
export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** Bytes as spaced upper-case hex (`04 A1 B2`), the form datasheets and trace logs use. */
export function toSpacedHex(bytes: Uint8Array): string {
  return toHex(bytes)
    .toUpperCase()
    .replace(/(..)(?!$)/g, '$1 ');
}

/**
 * Parses hex, tolerating spaces, colons and a `0x` prefix. Throws `INVALID_ARGUMENT` on odd length or a non-hex
 * character.
 */
export function fromHex(text: string): Uint8Array {
  const clean = text.trim().replace(/^0x/i, '').replace(/[\s:]/g, '');
  if (clean.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(clean)) {
    throw new TaplineError(ErrorCode.InvalidArgument, `"${text}" is not an even-length hex string.`, {
      hint: 'Write bytes as hex pairs, for example 04A1B2C3 or "04 A1 B2 C3".',
    });
  }
  return Uint8Array.from(Buffer.from(clean, 'hex'));
}

/** Concatenates byte arrays. */
export function concatBytes(...parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Byte-wise equality (not constant-time: never use it for MACs). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
