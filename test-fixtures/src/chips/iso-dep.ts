import { decodeApdu, encodeResponseApdu, type CommandApdu, type StatusWord } from '@tapline/core';

/** ISO 7816-4 and NXP status words the virtual ISO-DEP chips answer with. */
export const Sw = {
  Ok: 0x9000,
  WrongLength: 0x6700,
  SecurityNotSatisfied: 0x6982,
  NoCurrentEf: 0x6986,
  FileNotFound: 0x6a82,
  WrongP1P2: 0x6b00,
  EndOfFile: 0x6282,
  InsNotSupported: 0x6d00,
  ClaNotSupported: 0x6e00,
  NxpOk: 0x9100,
  NxpAdditionalFrame: 0x91af,
  NxpSignature: 0x9190,
  NxpIllegalCommand: 0x911c,
  NxpIntegrityError: 0x911e,
  NxpNoSuchKey: 0x9140,
  NxpLengthError: 0x917e,
  NxpPermissionDenied: 0x919d,
  NxpParameterError: 0x919e,
  NxpAuthenticationError: 0x91ae,
  NxpBoundaryError: 0x91be,
  NxpFileNotFound: 0x91f0,
} as const;

/** A response APDU: `data ‖ SW1 SW2`. */
export function answer(sw: StatusWord, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  return encodeResponseApdu(data, sw);
}

/** Decodes a command APDU, or `undefined` when its length fields do not add up (a chip answers that with 6700). */
export function tryDecodeApdu(frame: Uint8Array): CommandApdu | undefined {
  try {
    return decodeApdu(frame);
  } catch {
    return undefined;
  }
}

/** The Le of a command as a chip uses it: the number of bytes wanted, with 0 (absent) meaning "all there is". */
export function wanted(apdu: CommandApdu): number {
  return apdu.le ?? 0;
}

/**
 * Reads `le` bytes at `offset` of `file` as ISO READ BINARY answers: Le 0 (or 256) reads to the end of the file, at
 * most 256 bytes; an offset past the end is `6B 00`; fewer bytes than asked for come with the warning `62 82`.
 */
export function readBinary(file: Uint8Array, offset: number, le: number): Uint8Array {
  if (offset > file.length) return answer(Sw.WrongP1P2);
  const rest = file.length - offset;
  const all = le === 0 || le === 256;
  const count = all ? Math.min(rest, 256) : Math.min(rest, le);
  const data = file.slice(offset, offset + count);
  return answer(!all && count < le ? Sw.EndOfFile : Sw.Ok, data);
}

/** True when `aid` starts with `prefix` (JavaCard partial selection). */
export function startsWith(aid: Uint8Array, prefix: Uint8Array): boolean {
  if (prefix.length > aid.length) return false;
  for (let i = 0; i < prefix.length; i++) if (aid[i] !== prefix[i]) return false;
  return true;
}
