/**
 * PC/SC 2.02 Part 3 transparent-session commands: `FF C2 00 <function> Lc <BER-TLV data objects> 00`
 * (readers.md §4.1; ACS ACM1252U-Y3 §5.2.3, Identiv CLOUD 47x0 F §6.2.9–6.2.10). Pure builders; no I/O.
 *
 * Byte order, where the sources differ: the timer object `5F 46` carries its microseconds least significant byte
 * first (the ACR1552U manual's note quoted by public clients, and Sony's RC-S660/S sample), while the 16-bit
 * transmission/reception flags of object `90` go most significant byte first (Sony's sample `90 02 00 1C` sets
 * b2–b4). The wsrf2009 firmware reads the flags the other way round; no reader in Tapline's set is known to.
 *
 * @packageDocumentation
 */
import { ErrorCode, TaplineError } from '../../model/errors.js';
import { concatBytes } from '../../util/bytes.js';
import { encodeBerTlv } from './tlv.js';

/** P2 of `FF C2 00 P2`: what the command does. */
export const Part3Function = {
  /** Version, start/end session, RF off/on, timer, get/set parameters. */
  ManageSession: 0x00,
  /** Flags, bit framing, transmit, receive, transceive. */
  TransparentExchange: 0x01,
  /** Switch to another standard and layer. */
  SwitchProtocol: 0x02,
} as const;

/** One Part 3 function; see {@link Part3Function}. */
export type Part3Function = (typeof Part3Function)[keyof typeof Part3Function];

/** Data object tags, of commands and of responses. */
export const Part3Tag = {
  /** Command: ask for the version (empty); response: `80 03 <major> <minor> <build>`. */
  Version: 0x80,
  StartSession: 0x81,
  EndSession: 0x82,
  /** Only inside a session. */
  RfOff: 0x83,
  /** Only inside a session. */
  RfOn: 0x84,
  /** 32-bit microseconds, LSB first: RF-off time between `83` and `84`, or the response timeout before `95`. */
  Timer: 0x5f46,
  GetParameter: 0xff6d,
  SetParameter: 0xff6e,
  /** 16 bits, see {@link Part3Flag}. */
  Flags: 0x90,
  /** Valid bits of the last byte sent (0 = all). */
  TxBitFraming: 0x91,
  /** Command: bit framing of the answer; response: valid bits of the last byte received. */
  RxBitFraming: 0x92,
  Transmit: 0x93,
  Receive: 0x94,
  Transceive: 0x95,
  /** Command: `8F 02 <standard> <layer>`; response: layer-3 result (`8F 01 <SAK>` for Type A). */
  SwitchProtocol: 0x8f,
  /** Response: `C0 03 <object number> SW1 SW2`, the generic error status. */
  GenericError: 0xc0,
  /** Response: 2 bytes, byte 0 b0 CRC error, b1 collision, b2 parity error, b3 framing error. */
  ResponseStatus: 0x96,
  /** Response: the tag's answer. */
  IccResponse: 0x97,
  /** Response of a layer-4 switch: the ATR. */
  Atr: 0x5f51,
} as const;

/** Bits of the transmission and reception flags (object `90`); the reader's defaults are all clear. */
export const Part3Flag = {
  /** Do not append a CRC to what is sent. */
  NoTxCrc: 0x0001,
  /** Do not check or strip the CRC of what is received (it stays in the answer). */
  NoRxCrc: 0x0002,
  NoTxParity: 0x0004,
  NoRxParity: 0x0008,
  /** Do not add or strip the protocol prologue (PCB, CID, NAD). */
  NoPrologue: 0x0010,
} as const;

/** The standards of the switch-protocol object (implementation constants, readers.md §4.1). */
export const Part3Standard = {
  Iso14443A: 0x00,
  Iso14443B: 0x01,
  Iso15693: 0x02,
  Felica: 0x03,
  IcodeEpcUid: 0x04,
  Icode1: 0x05,
  HfEpcG2: 0x06,
  Innovatron: 0x07,
} as const;

/** One standard; see {@link Part3Standard}. */
export type Part3Standard = (typeof Part3Standard)[keyof typeof Part3Standard];

/** The layers of the switch-protocol object. */
export const Part3Layer = {
  NoSeparation: 0x00,
  Layer2: 0x02,
  /** Anticollision and selection done by the reader; frames go to the selected tag. */
  Layer3: 0x03,
  Layer4: 0x04,
  HigherLevel: 0x40,
} as const;

/** One layer; see {@link Part3Layer}. */
export type Part3Layer = (typeof Part3Layer)[keyof typeof Part3Layer];

/** The largest command data a short APDU carries. */
const MAX_LC = 0xff;

function invalid(message: string): TaplineError {
  return new TaplineError(ErrorCode.InvalidArgument, message);
}

function checkInteger(what: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw invalid(`${what} must be an integer from 0 to ${max}, not ${String(value)}.`);
  }
}

/**
 * `FF C2 00 <function> Lc <objects> 00`. Fails with `INVALID_ARGUMENT` when the objects do not fit a short APDU.
 */
export function part3Command(fn: Part3Function, ...objects: readonly Uint8Array[]): Uint8Array {
  const data = concatBytes(...objects);
  if (data.length === 0 || data.length > MAX_LC) {
    throw invalid(`A PC/SC Part 3 command carries 1 to ${MAX_LC} bytes of data objects, not ${data.length}.`);
  }
  return concatBytes(Uint8Array.of(0xff, 0xc2, 0x00, fn, data.length), data, Uint8Array.of(0x00));
}

/** An empty data object (`81 00`, `83 00`, …). */
export function part3EmptyObject(tag: number): Uint8Array {
  return encodeBerTlv(tag);
}

/** `5F 46 04 <microseconds, LSB first>`. */
export function part3TimerObject(microseconds: number): Uint8Array {
  checkInteger('The Part 3 timer', microseconds, 0xffffffff);
  const value = new Uint8Array(4);
  new DataView(value.buffer).setUint32(0, microseconds, true);
  return encodeBerTlv(Part3Tag.Timer, value);
}

/** `90 02 <flags, MSB first>`; see {@link Part3Flag}. */
export function part3FlagsObject(flags: number): Uint8Array {
  checkInteger('The Part 3 flags', flags, 0xffff);
  return encodeBerTlv(Part3Tag.Flags, Uint8Array.of(flags >> 8, flags & 0xff));
}

/** `8F 02 <standard> <layer>`. */
export function part3SwitchObject(standard: number, layer: number): Uint8Array {
  checkInteger('The Part 3 standard', standard, 0xff);
  checkInteger('The Part 3 layer', layer, 0xff);
  return encodeBerTlv(Part3Tag.SwitchProtocol, Uint8Array.of(standard, layer));
}

/** `FF C2 00 00 02 80 00 00`: asks for the version data object; what a probe for Part 3 sends. */
export function part3VersionCommand(): Uint8Array {
  return part3Command(Part3Function.ManageSession, part3EmptyObject(Part3Tag.Version));
}

/** `FF C2 00 00 02 81 00 00`: start a transparent session. */
export function part3StartSessionCommand(): Uint8Array {
  return part3Command(Part3Function.ManageSession, part3EmptyObject(Part3Tag.StartSession));
}

/** `FF C2 00 00 02 82 00 00`: end the transparent session. */
export function part3EndSessionCommand(): Uint8Array {
  return part3Command(Part3Function.ManageSession, part3EmptyObject(Part3Tag.EndSession));
}

/** `FF C2 00 00 02 84 00 00` (on) or `… 83 00 00` (off); only inside a session. */
export function part3RfCommand(on: boolean): Uint8Array {
  return part3Command(Part3Function.ManageSession, part3EmptyObject(on ? Part3Tag.RfOn : Part3Tag.RfOff));
}

/** `83 00 5F 46 04 <µs> 84 00`: the field off for `microseconds`, then on again (resets every tag in it). */
export function part3RfResetCommand(microseconds: number): Uint8Array {
  return part3Command(
    Part3Function.ManageSession,
    part3EmptyObject(Part3Tag.RfOff),
    part3TimerObject(microseconds),
    part3EmptyObject(Part3Tag.RfOn),
  );
}

/** `FF C2 00 02 04 8F 02 <standard> <layer> 00`. */
export function part3SwitchProtocolCommand(standard: number, layer: number): Uint8Array {
  return part3Command(Part3Function.SwitchProtocol, part3SwitchObject(standard, layer));
}

/** `FF C2 00 00 Lc FF 6D <len> <tag 00>… 00`: reads IFD parameters (inner tags 01 FSDI … 0A Type B params). */
export function part3GetParameterCommand(tags: readonly number[]): Uint8Array {
  if (tags.length === 0) throw invalid('Ask for at least one Part 3 parameter.');
  const inner = tags.flatMap((tag) => {
    checkInteger('A Part 3 parameter tag', tag, 0xff);
    return [tag, 0x00];
  });
  return part3Command(Part3Function.ManageSession, encodeBerTlv(Part3Tag.GetParameter, Uint8Array.from(inner)));
}

/** Options of {@link part3TransceiveCommand}. */
export interface Part3TransceiveOptions {
  /** Transmission and reception flags (`90`), sent before the frame when given; see {@link Part3Flag}. */
  readonly flags?: number;
  /** Response timeout in microseconds (`5F 46`), sent before the frame when given. */
  readonly timeoutMicroseconds?: number;
  /** Valid bits of the last byte (`91`), 1–7; omit for whole bytes. */
  readonly txLastBits?: number;
}

/**
 * `FF C2 00 01 Lc [90 02 <flags>] [5F 46 04 <µs>] [91 01 <bits>] 95 <len> <frame> 00`: sends `frame` to the tag
 * and asks for its answer.
 */
export function part3TransceiveCommand(frame: Uint8Array, options: Part3TransceiveOptions = {}): Uint8Array {
  if (frame.length === 0) throw invalid('Refusing to transceive an empty frame.');
  const objects: Uint8Array[] = [];
  if (options.flags !== undefined) objects.push(part3FlagsObject(options.flags));
  if (options.timeoutMicroseconds !== undefined) objects.push(part3TimerObject(options.timeoutMicroseconds));
  if (options.txLastBits !== undefined) {
    checkInteger('The valid bits of the last byte', options.txLastBits, 7);
    objects.push(encodeBerTlv(Part3Tag.TxBitFraming, Uint8Array.of(options.txLastBits)));
  }
  objects.push(encodeBerTlv(Part3Tag.Transceive, frame));
  return part3Command(Part3Function.TransparentExchange, ...objects);
}
