/**
 * The ACR122U's own pseudo-APDUs (class FF; readers.md §1.1): Direct Transmit to the PN532, Get Response, firmware
 * version, LED and buzzer, PICC operating parameter, and the reader's status words. Pure builders and parsers; every
 * answer that breaks the documented shape is a `TaplineError`, never a guess.
 *
 * @packageDocumentation
 */
import { ErrorCode, TaplineError, toSpacedHex, type ReaderFeedback } from '@tapline/core';

/** `FF 00 48 00 00`: the firmware version, answered in ASCII without a status word (`ACR122U203`). */
export const ACR122_GET_FIRMWARE: Uint8Array = Uint8Array.of(0xff, 0x00, 0x48, 0x00, 0x00);

function invalid(message: string): TaplineError {
  return new TaplineError(ErrorCode.InvalidArgument, message);
}

function byte(what: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xff) {
    throw invalid(`${what} must be a byte (0–255), not ${String(value)}.`);
  }
  return value;
}

/** `FF 00 00 00 Lc <payload>`: Direct Transmit of a PN532 command payload (`D4 …`, 1–255 bytes). */
export function acr122DirectTransmit(payload: Uint8Array): Uint8Array {
  if (payload.length === 0 || payload.length > 0xff) {
    throw invalid(`A Direct Transmit carries 1 to 255 bytes, not ${payload.length}.`);
  }
  const apdu = new Uint8Array(5 + payload.length);
  apdu.set([0xff, 0x00, 0x00, 0x00, payload.length]);
  apdu.set(payload, 5);
  return apdu;
}

/** `FF C0 00 00 LL`: fetches the `LL` bytes a `61 LL` announced (256 is written `00`). */
export function acr122GetResponse(length: number): Uint8Array {
  if (!Number.isInteger(length) || length < 1 || length > 256) {
    throw invalid(`Get Response fetches 1 to 256 bytes, not ${String(length)}.`);
  }
  return Uint8Array.of(0xff, 0xc0, 0x00, 0x00, length & 0xff);
}

/** What the ACR122U's status words mean (readers.md §1.1, the AET62 table of the same PN532 family). */
const STATUS: ReadonlyMap<
  number,
  { readonly code: (typeof ErrorCode)[keyof typeof ErrorCode]; readonly text: string }
> = new Map([
  [0x6300, { code: ErrorCode.ProtocolError, text: 'the operation failed' }],
  [0x6301, { code: ErrorCode.ProtocolError, text: 'the PN532 did not respond' }],
  [0x6327, { code: ErrorCode.ProtocolError, text: 'the contactless checksum was wrong' }],
  [0x637f, { code: ErrorCode.ProtocolError, text: 'the PN532 rejected the command' }],
  [0x6a81, { code: ErrorCode.UnsupportedCapability, text: 'the function is not supported' }],
]);

/** The typed error for ACR122U status word `sw` in answer to `what`. */
export function acr122StatusError(sw: number, what: string, readerName: string): TaplineError {
  const info = STATUS.get(sw);
  const hex = toSpacedHex(Uint8Array.of(sw >> 8, sw & 0xff));
  return new TaplineError(
    info?.code ?? ErrorCode.ProtocolError,
    `${readerName} answered ${what} with ${hex}: ${info?.text ?? 'an undocumented status'}.`,
    {
      details: { reader: readerName, sw: hex },
      ...(sw === 0x6300 || sw === 0x6327 ? { hint: 'Hold the tag flat and still on the reader, then try again.' } : {}),
    },
  );
}

/** The firmware version the reader reported. */
export interface Acr122Firmware {
  /** The ASCII text, `ACR122U203`. */
  readonly text: string;
  /** Major and minor version (`2`, `3` for `ACR122U203`) when the text has the usual form. */
  readonly version?: { readonly major: number; readonly minor: number };
}

/**
 * Parses the answer to `FF 00 48 00 00`: printable ASCII, without a status word (readers.md §1.1; a trailing `90 00`
 * is tolerated). Fails with `PROTOCOL_ERROR` for an empty or non-ASCII answer.
 */
export function parseAcr122Firmware(answer: Uint8Array, readerName = 'The ACR122U'): Acr122Firmware {
  let bytes = answer;
  if (bytes.length > 2 && bytes[bytes.length - 2] === 0x90 && bytes[bytes.length - 1] === 0x00) {
    bytes = bytes.subarray(0, -2);
  }
  if (bytes.length === 0 || bytes.length > 32 || !bytes.every((b) => b >= 0x20 && b < 0x7f)) {
    throw new TaplineError(
      ErrorCode.ProtocolError,
      `${readerName} answered the firmware request with something that is no version text.`,
      { details: { reader: readerName, answer: toSpacedHex(answer.subarray(0, 32)) } },
    );
  }
  const text = String.fromCharCode(...bytes);
  const match = /^ACR122U?(\d)(\d\d)/.exec(text);
  return match ? { text, version: { major: Number(match[1]), minor: Number(match[2]) } } : { text };
}

/**
 * Why a firmware is worth a warning: older than 2.00 (nfcpy refuses anything below `ACR122U2xx`), or older than 2.06
 * (the CCID driver lists it as bogus: APDUs with Le 0x7B fail with `63 00`; readers.md §1.2).
 */
export function acr122FirmwareWarning(firmware: Acr122Firmware): string | undefined {
  const v = firmware.version;
  if (!v) return `the firmware "${firmware.text}" is not an ACR122U firmware Tapline knows`;
  if (v.major < 2) return `the firmware ${firmware.text} is older than 2.00, which nfcpy refuses to drive`;
  if (v.major === 2 && v.minor < 6)
    return `the firmware ${firmware.text} is older than 2.06, which the CCID driver calls bogus`;
  return undefined;
}

/** LED control bits (P2 of `FF 00 40`; readers.md §1.1). */
export const Acr122LedControl = {
  FinalRed: 0x01,
  FinalGreen: 0x02,
  /** Change the red LED. */
  RedMask: 0x04,
  /** Change the green LED. */
  GreenMask: 0x08,
  InitialRedBlink: 0x10,
  InitialGreenBlink: 0x20,
  RedBlinkMask: 0x40,
  GreenBlinkMask: 0x80,
} as const;

/** When the buzzer sounds during an LED blink sequence. */
export const Acr122BuzzerLink = { Off: 0x00, T1: 0x01, T2: 0x02, Both: 0x03 } as const;

/** The fields of `FF 00 40`. */
export interface Acr122LedBuzzer {
  /** P2, see {@link Acr122LedControl}. */
  readonly ledControl: number;
  /** T1 duration in units of 100 ms. */
  readonly t1: number;
  /** T2 duration in units of 100 ms. */
  readonly t2: number;
  readonly repetitions: number;
  /** See {@link Acr122BuzzerLink}. */
  readonly buzzer: number;
}

/** `FF 00 40 <LED control> 04 <T1> <T2> <repetitions> <buzzer link>`. */
export function acr122LedBuzzerCommand(fields: Acr122LedBuzzer): Uint8Array {
  return Uint8Array.of(
    0xff,
    0x00,
    0x40,
    byte('The LED control', fields.ledControl),
    0x04,
    byte('T1', fields.t1),
    byte('T2', fields.t2),
    byte('The repetitions', fields.repetitions),
    byte('The buzzer link', fields.buzzer),
  );
}

/**
 * The `FF 00 40` command for a {@link ReaderFeedback}: the LED as asked (both LEDs masked in, so `off` switches both
 * off), and a beep as one T1 period with the buzzer on, rounded up to 100 ms (at most 25.5 s). Green alone is nfcpy's
 * `FF 00 40 0E 04 00 00 00 00`, red with a 300 ms beep its `FF 00 40 0D 04 03 00 01 01`.
 */
export function acr122FeedbackCommand(feedback: ReaderFeedback): Uint8Array {
  const { FinalRed, FinalGreen, RedMask, GreenMask } = Acr122LedControl;
  const led =
    feedback.led === undefined
      ? 0
      : RedMask |
        GreenMask |
        (feedback.led === 'red' || feedback.led === 'orange' ? FinalRed : 0) |
        (feedback.led === 'green' || feedback.led === 'orange' ? FinalGreen : 0);
  const beep =
    feedback.beepMs === undefined || feedback.beepMs <= 0 ? 0 : Math.min(0xff, Math.ceil(feedback.beepMs / 100));
  return acr122LedBuzzerCommand({
    ledControl: led,
    t1: beep,
    t2: 0,
    repetitions: beep === 0 ? 0 : 1,
    buzzer: beep === 0 ? Acr122BuzzerLink.Off : Acr122BuzzerLink.T1,
  });
}

/** Parses `90 <LED state>` (bit 0 red, bit 1 green); other answers fail with the status's error. */
export function parseAcr122LedResponse(answer: Uint8Array, readerName = 'The ACR122U'): number {
  if (answer.length === 2 && answer[0] === 0x90) return answer[1]!;
  if (answer.length === 2) return failWith(answer, 'the LED/buzzer command', readerName);
  throw new TaplineError(
    ErrorCode.ProtocolError,
    `${readerName} answered the LED/buzzer command with ${answer.length} bytes.`,
    {
      details: { reader: readerName, answer: toSpacedHex(answer.subarray(0, 16)) },
    },
  );
}

function failWith(answer: Uint8Array, what: string, readerName: string): never {
  throw acr122StatusError((answer[0]! << 8) | answer[1]!, what, readerName);
}

/**
 * Bits of the PICC operating parameter (`FF 00 51`; ACR122U API "Set the PICC Operating Parameter", not re-checked
 * byte by byte, readers.md §1.1). The default is `FF`; nfcpy's `7F` clears automatic polling only.
 */
export const Acr122PiccParameter = {
  Iso14443A: 0x01,
  Iso14443B: 0x02,
  Topaz: 0x04,
  Felica212: 0x08,
  Felica424: 0x10,
  /** Set: poll every 250 ms, clear: every 500 ms. */
  PollInterval250ms: 0x20,
  /** The firmware sends RATS itself and builds the ATR from the ATS. */
  AutoAts: 0x40,
  /** The firmware polls for tags by itself: what makes a tag visible to PC/SC. */
  AutoPolling: 0x80,
} as const;

/** `FF 00 51 <parameter> 00`. */
export function acr122PiccParameterCommand(parameter: number): Uint8Array {
  return Uint8Array.of(0xff, 0x00, 0x51, byte('The PICC operating parameter', parameter), 0x00);
}

/** Parses `90 <parameter>` (shape not confirmed on hardware; the reader's emulation answers so). */
export function parseAcr122PiccParameterResponse(answer: Uint8Array, readerName = 'The ACR122U'): number {
  if (answer.length === 2 && answer[0] === 0x90) return answer[1]!;
  if (answer.length === 2) return failWith(answer, 'the PICC operating parameter', readerName);
  throw new TaplineError(
    ErrorCode.ProtocolError,
    `${readerName} answered the PICC operating parameter with ${answer.length} bytes.`,
    { details: { reader: readerName, answer: toSpacedHex(answer.subarray(0, 16)) } },
  );
}
