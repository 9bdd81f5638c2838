import { ErrorCode, TaplineError } from '../../model/errors.js';
import { toSpacedHex } from '../../util/bytes.js';

/**
 * CRC_A of ISO/IEC 14443-3 (preset 0x6363, reflected polynomial 0x8408, no final XOR), as the two bytes that follow
 * the frame on air: least significant byte first. `30 00` gives `02 A8`.
 */
export function crcA(data: Uint8Array): Uint8Array {
  let crc = 0x6363;
  for (const byte of data) {
    let ch = (byte ^ crc) & 0xff;
    ch = (ch ^ (ch << 4)) & 0xff;
    crc = ((crc >> 8) ^ (ch << 8) ^ (ch << 3) ^ (ch >> 4)) & 0xffff;
  }
  return Uint8Array.of(crc & 0xff, crc >> 8);
}

/**
 * Checks and strips the CRC_A of a Type A answer that the PN53x passed through with its RX-CRC check off. A one-byte
 * answer is a 4-bit ACK/NAK, which carries no CRC, and comes back unchanged. Fails with `PROTOCOL_ERROR` when the
 * answer is too short for a CRC or the CRC does not match (radio noise, or a tag that left mid-frame).
 */
export function stripCrcA(answer: Uint8Array): Uint8Array {
  if (answer.length === 1) return answer.slice();
  if (answer.length < 3) {
    throw new TaplineError(
      ErrorCode.ProtocolError,
      `The tag's answer (${answer.length} bytes) is too short to carry a CRC_A.`,
      { details: { reason: 'crc_a', answer: toSpacedHex(answer) } },
    );
  }
  const body = answer.subarray(0, answer.length - 2);
  const expected = crcA(body);
  if (expected[0] !== answer[answer.length - 2] || expected[1] !== answer[answer.length - 1]) {
    throw new TaplineError(ErrorCode.ProtocolError, "The tag's answer failed its CRC_A check.", {
      details: {
        reason: 'crc_a',
        received: toSpacedHex(answer.subarray(-2)),
        expected: toSpacedHex(expected),
      },
      hint: 'Hold the tag still on the reader and try again.',
    });
  }
  return body.slice();
}
