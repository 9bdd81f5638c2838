import { ErrorCode, TaplineError } from '../../model/errors.js';

/** A status word `SW1 SW2` as one number (`0x9000`). */
export type StatusWord = number;

/** ISO 7816-4 success. */
export const SW_SUCCESS = 0x9000;
/** NXP native (DESFire-style) success, `91 00`. */
export const SW_NXP_OK = 0x9100;
/** NXP native "additional frame" (`91 AF`): the next part follows. */
export const SW_NXP_ADDITIONAL_FRAME = 0x91af;

const ISO_STATUS: Readonly<Record<number, string>> = {
  0x6281: 'part of the returned data may be corrupted',
  0x6282: 'end of file reached before reading Le bytes',
  0x6300: 'verification failed',
  0x6581: 'memory failure',
  0x6700: 'wrong length',
  0x6881: 'logical channel not supported',
  0x6882: 'secure messaging not supported',
  0x6982: 'security status not satisfied',
  0x6983: 'authentication method blocked',
  0x6984: 'reference data not usable',
  0x6985: 'conditions of use not satisfied',
  0x6986: 'command not allowed (no current EF)',
  0x6a80: 'incorrect parameters in the data field',
  0x6a81: 'function not supported',
  0x6a82: 'file or application not found',
  0x6a83: 'record not found',
  0x6a84: 'not enough memory space in the file',
  0x6a86: 'incorrect parameters P1-P2',
  0x6a88: 'referenced data not found',
  0x6b00: 'wrong parameters P1-P2',
  0x6d00: 'instruction not supported',
  0x6e00: 'class not supported',
  0x6f00: 'no precise diagnosis',
};

/** NXP native status bytes after `91` (NTAG 4xx, DESFire). */
const NXP_STATUS: Readonly<Record<number, string>> = {
  0x00: 'OK',
  0x0c: 'no changes',
  0x0e: 'out of EEPROM',
  0x1c: 'illegal command code',
  0x1e: 'integrity error (CRC or MAC does not match)',
  0x40: 'no such key',
  0x7e: 'length error',
  0x90: 'signature follows',
  0x9d: 'permission denied',
  0x9e: 'parameter error',
  0xa0: 'application not found',
  0xae: 'authentication error',
  0xaf: 'additional frame',
  0xbe: 'boundary error',
  0xca: 'command aborted',
  0xee: 'memory error',
  0xf0: 'file not found',
};

/** Formats a status word as four lower-case hex digits. */
export function formatStatusWord(sw: StatusWord): string {
  return sw.toString(16).padStart(4, '0');
}

/** What a status word means, in words (ISO 7816-4 and NXP native statuses). */
export function describeStatusWord(sw: StatusWord): string {
  const sw1 = sw >>> 8;
  const sw2 = sw & 0xff;
  if (sw === SW_SUCCESS) return 'success';
  const known = ISO_STATUS[sw];
  if (known) return known;
  if (sw1 === 0x91) return `NXP status: ${NXP_STATUS[sw2] ?? 'unknown'}`;
  if (sw1 === 0x61) return `${sw2 === 0 ? 256 : sw2} more bytes available`;
  if (sw1 === 0x6c) return `wrong Le, ${sw2 === 0 ? 256 : sw2} bytes available`;
  if (sw1 === 0x63 && (sw2 & 0xf0) === 0xc0) return `verification failed, ${sw2 & 0x0f} tries left`;
  if (sw1 === 0x62 || sw1 === 0x63) return 'warning';
  if (sw1 >= 0x64 && sw1 <= 0x6f) return 'error';
  return 'unknown status';
}

/**
 * The error for a tag that answered `sw` to `command` (a short name such as "SELECT NDEF application"):
 * `AUTHENTICATION_FAILED` for NXP `91 AE`, `INTEGRITY_ERROR` for `91 1E`, otherwise `TAG_STATUS`. The status is in
 * `details.sw` as hex.
 */
export function statusWordError(sw: StatusWord, command: string): TaplineError {
  const meaning = describeStatusWord(sw);
  const details = { sw: formatStatusWord(sw), meaning };
  const message = `The tag refused ${command}: ${formatStatusWord(sw).toUpperCase()} (${meaning}).`;
  if (sw === 0x91ae) {
    return new TaplineError(ErrorCode.AuthenticationFailed, message, {
      details,
      hint: 'The key does not match the one on the chip.',
    });
  }
  if (sw === 0x911e) return new TaplineError(ErrorCode.IntegrityError, message, { details });
  return new TaplineError(ErrorCode.TagStatus, message, { details });
}
