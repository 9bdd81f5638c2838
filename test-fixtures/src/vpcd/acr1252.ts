import { Capability, concatBytes, type CommandApdu } from '@tapline/core';
import type { VirtualChip } from '../sim/virtual-chip.js';
import {
  ReaderSw,
  acsLedControl,
  ask,
  decodeShortApdu,
  getData,
  isType2,
  plainApdu,
  powerCycle,
  rawExchange,
  synthesiseAtr,
  type2ReadBinary,
  type2UpdateBinary,
  withSw,
  type EmulationStep,
  type ReaderEmulation,
} from './emulation.js';

/** The ACR1252U's own state between APDUs. */
export interface Acr1252State {
  /** LED state as `FF 00 40` reports it: bit 0 red, bit 1 green. */
  readonly led: number;
  /** Inside a PC/SC Part 3 transparent session (`81` start … `82` end). */
  readonly session: boolean;
  /** Whether the PN512's field is on (`83`/`84` inside a session). */
  readonly rfOn: boolean;
  /** The transmission and reception flags of object `90` (b1 set: the reader does not check the RX CRC). */
  readonly flags: number;
}

/** Part 3 error status words (readers.md §4.1, the `C0` object). */
const Part3Sw = {
  NoInformation: 0x6300,
  /** "Execution stopped": an object that needs a transparent session outside one. */
  Stopped: 0x6301,
  WrongLength: 0x6700,
  ObjectNotSupported: 0x6a81,
  NoIccResponse: 0x6401,
} as const;

/** The version data object the emulation reports (`80 03 <major> <minor> <build>`). */
const PART3_VERSION = Uint8Array.of(0x01, 0x00, 0x00);

/**
 * ACS ACR1252U (PN512, readers.md §2): PC/SC and pseudo-APDUs, no PN532. Modelled:
 *
 * - `FF CA 00 00 Le` UID, `FF CA 01 00 00` ATS with its length byte;
 * - the PC/SC 2.02 Part 3 transparent session `FF C2 00 <function> Lc <BER-TLV objects> [00]` (readers.md §4.1):
 *   function 00 Manage Session (`80` version, `81` start, `82` end, `83`/`84` field off/on, `5F 46` timer), 01
 *   Transparent Exchange (`90` flags, `91`/`92` bit framing, `93` transmit, `94` receive, `95` transceive), 02 Switch
 *   Protocol (`8F 02 00 <layer>`: ISO 14443-A layer 3 answers `8F 01 <SAK>`, layer 4 `5F 51 <length> <ATR>`). The
 *   answer is `C0 03 <object number or 00> SW1 SW2`, then the data objects (a transceive gives `92 01 <valid bits>
 *   96 02 <status> 00 97 <length> <frame>`), then `90 00`; processing stops at the first failing object (the layout of
 *   the wsrf2009 implementation). Raw Type 2 frames reach the chip this way; a 4-bit ACK reports 4 valid bits (and a
 *   CRC error unless flag b1 turned RX CRC checking off);
 * - `FF 00 00 00 Lc …` is a FeliCa pass-through here, **not** a PN532 tunnel: without a FeliCa chip it is `63 00`;
 * - `FF 00 40 …` the ACR122U-compatible LED/buzzer command, `FF B0`/`FF D6` on Type 2 tags;
 * - plain APDUs go to an ISO-DEP chip; a silent chip is `63 00`;
 * - the ATR uses Part 3 card names; ISO 15693 chips are invisible (the PN512 polls A, B, FeliCa and Topaz only).
 *
 * Not modelled: escape commands (`E0 00 00 …` go through SCardControl, which vpcd cannot carry), the get/set
 * parameter objects `FF 6D`/`FF 6E` (answered "object not supported"), timing.
 */
export const acr1252Emulation: ReaderEmulation<Acr1252State> = {
  id: 'acr1252u',
  // libccid's name for 072f:223b with its PICC interface string (readers.md §7.3).
  friendlyName: 'ACS ACR1252 Dual Reader [ACR1252 Dual Reader PICC]',
  initialState: { led: 0x00, session: false, rfOn: true, flags: 0x0000 },
  atr: (chip) => synthesiseAtr(chip, { technologies: ['iso14443a', 'iso14443b', 'felica'], names: 'part3' }),
  transmit: (state, chip, apdu) => acr1252Transmit(state, chip, apdu),
};

function acr1252Transmit(state: Acr1252State, chip: VirtualChip, apdu: Uint8Array): EmulationStep<Acr1252State> {
  const done = (response: Uint8Array, next: Acr1252State = state): EmulationStep<Acr1252State> => ({
    state: next,
    response,
  });
  const command = decodeShortApdu(apdu);
  if (!command) return done(withSw(ReaderSw.WrongLength));
  if (command.cla !== 0xff) return done(state.rfOn ? plainApdu(chip, apdu) : withSw(ReaderSw.Failed));
  switch (command.ins) {
    case 0xca:
      return done(getData(chip, command, { ats: true }));
    case 0xc2:
      if (command.p1 !== 0x00 || command.p2 > 0x02) return done(withSw(ReaderSw.NotSupported));
      return transparentSession(state, chip, command.p2, command.data ?? new Uint8Array(0));
    case 0x00:
      return pseudoApdu(state, chip, command);
    case 0xb0:
      return done(state.rfOn ? type2ReadBinary(chip, command, 'acs') : withSw(ReaderSw.Failed));
    case 0xd6:
      return done(state.rfOn ? type2UpdateBinary(chip, command) : withSw(ReaderSw.Failed));
    default:
      return done(withSw(ReaderSw.NotSupported));
  }
}

function pseudoApdu(state: Acr1252State, chip: VirtualChip, command: CommandApdu): EmulationStep<Acr1252State> {
  if (command.p1 === 0x40) {
    const { led, response } = acsLedControl(state.led, command);
    return { state: { ...state, led }, response };
  }
  if (command.p1 === 0x00 && command.p2 === 0x00 && command.data) {
    // FeliCa pass-through (readers.md §2.2): the data is a FeliCa command with its own length byte.
    const answer = chip.info.technology === 'felica' ? ask(chip, Capability.Felica, command.data) : undefined;
    return { state, response: answer ? withSw(ReaderSw.Ok, answer) : withSw(ReaderSw.Failed) };
  }
  return { state, response: withSw(ReaderSw.NotSupported) };
}

// ---------------------------------------------------------------------------------------------------------------
// PC/SC Part 3 transparent session
// ---------------------------------------------------------------------------------------------------------------

interface Tlv {
  /** One- or two-byte tag as a number (`0x95`, `0x5f46`). */
  readonly tag: number;
  readonly value: Uint8Array;
  readonly next: number;
}

/** One BER-TLV object at `offset`, or `undefined` when it runs past the end. */
function readTlv(bytes: Uint8Array, offset: number): Tlv | undefined {
  let at = offset;
  let tag = bytes[at++];
  if (tag === undefined) return undefined;
  if ((tag & 0x1f) === 0x1f) {
    const second = bytes[at++];
    if (second === undefined) return undefined;
    tag = (tag << 8) | second;
  }
  let length = bytes[at++];
  if (length === undefined) return undefined;
  if (length === 0x81 || length === 0x82) {
    const count = length - 0x80;
    length = 0;
    for (let i = 0; i < count; i++) {
      const byte = bytes[at++];
      if (byte === undefined) return undefined;
      length = (length << 8) | byte;
    }
  } else if (length > 0x7f) {
    return undefined;
  }
  if (at + length > bytes.length) return undefined;
  return { tag, value: bytes.slice(at, at + length), next: at + length };
}

/** A BER-TLV object with a one- or two-byte tag. */
function tlv(tag: number, value: Uint8Array): Uint8Array {
  const tagBytes = tag > 0xff ? [tag >>> 8, tag & 0xff] : [tag];
  const length =
    value.length < 0x80
      ? [value.length]
      : value.length < 0x100
        ? [0x81, value.length]
        : [0x82, value.length >>> 8, value.length & 0xff];
  return concatBytes(Uint8Array.from([...tagBytes, ...length]), value);
}

type ObjectResult = { readonly state: Acr1252State; readonly data?: Uint8Array } | { readonly error: number };

function transparentSession(
  state: Acr1252State,
  chip: VirtualChip,
  fn: number,
  objects: Uint8Array,
): EmulationStep<Acr1252State> {
  let current = state;
  const out: Uint8Array[] = [];
  let objectNumber = 0;
  let error: number | undefined;
  for (let offset = 0; offset < objects.length;) {
    objectNumber++;
    const object = readTlv(objects, offset);
    if (!object) {
      error = Part3Sw.WrongLength;
      break;
    }
    offset = object.next;
    const result = dataObject(current, chip, fn, object);
    if ('error' in result) {
      error = result.error;
      break;
    }
    current = result.state;
    if (result.data) out.push(result.data);
  }
  const status =
    error === undefined
      ? Uint8Array.of(0xc0, 0x03, 0x00, 0x90, 0x00)
      : Uint8Array.of(0xc0, 0x03, objectNumber, error >>> 8, error & 0xff);
  // The APDU itself was carried out: object errors travel in C0, the status word stays 90 00.
  return { state: current, response: withSw(ReaderSw.Ok, concatBytes(status, ...out)) };
}

function dataObject(state: Acr1252State, chip: VirtualChip, fn: number, object: Tlv): ObjectResult {
  const { tag, value } = object;
  const empty = (next: Acr1252State = state): ObjectResult =>
    value.length === 0 ? { state: next } : { error: Part3Sw.WrongLength };
  switch (tag) {
    case 0x80:
      return value.length === 0 ? { state, data: tlv(0x80, PART3_VERSION) } : { error: Part3Sw.WrongLength };
    case 0x81:
      return empty({ ...state, session: true, rfOn: true, flags: 0 });
    case 0x82:
      return empty({ ...state, session: false, rfOn: true, flags: 0 });
    case 0x83:
      return state.session ? empty({ ...state, rfOn: false }) : { error: Part3Sw.Stopped };
    case 0x84:
      if (!state.session) return { error: Part3Sw.Stopped };
      if (!state.rfOn) powerCycle(chip);
      return empty({ ...state, rfOn: true });
    case 0x5f46:
      return value.length === 4 ? { state } : { error: Part3Sw.WrongLength };
    case 0x90:
    case 0x91:
    case 0x92:
    case 0x93:
    case 0x94:
    case 0x95:
      if (fn !== 0x01) return { error: Part3Sw.NoInformation };
      if (!state.session) return { error: Part3Sw.Stopped };
      return exchangeObject(state, chip, object);
    case 0x8f:
      if (fn !== 0x02) return { error: Part3Sw.NoInformation };
      if (!state.session) return { error: Part3Sw.Stopped };
      return switchProtocol(state, chip, value);
    default:
      return { error: Part3Sw.ObjectNotSupported };
  }
}

function exchangeObject(state: Acr1252State, chip: VirtualChip, { tag, value }: Tlv): ObjectResult {
  switch (tag) {
    case 0x90:
      return value.length === 2
        ? { state: { ...state, flags: (value[0]! << 8) | value[1]! } }
        : { error: Part3Sw.WrongLength };
    case 0x91:
    case 0x92:
      return value.length === 1 ? { state } : { error: Part3Sw.WrongLength };
    case 0x93:
      if (value.length === 0) return { error: Part3Sw.WrongLength };
      if (state.rfOn) rawExchange(chip, value);
      return { state };
    case 0x94:
      // Nothing is ever left to receive: every transmit above already took the chip's answer.
      return { error: Part3Sw.NoIccResponse };
    default: {
      if (value.length === 0) return { error: Part3Sw.WrongLength };
      const answer = state.rfOn ? rawExchange(chip, value) : undefined;
      if (!answer) return { error: Part3Sw.NoIccResponse };
      // A Type 2 ACK/NAK is 4 bits; with RX CRC checking on, the PN512 reports it as a CRC error.
      const fourBits = isType2(chip) && answer.length === 1 && answer[0]! <= 0x0f;
      const rxCrcChecked = (state.flags & 0x0002) === 0;
      const status = fourBits && rxCrcChecked ? 0x01 : 0x00;
      return {
        state,
        data: concatBytes(
          tlv(0x92, Uint8Array.of(fourBits ? 0x04 : 0x00)),
          tlv(0x96, Uint8Array.of(status, 0x00)),
          tlv(0x97, answer),
        ),
      };
    }
  }
}

function switchProtocol(state: Acr1252State, chip: VirtualChip, value: Uint8Array): ObjectResult {
  if (value.length !== 2) return { error: Part3Sw.WrongLength };
  const [standard, layer] = value as unknown as [number, number];
  // Only ISO 14443-A is modelled (the PN512's B and FeliCa have no virtual chips); 15693 and the rest it cannot do.
  if (standard !== 0x00) return { error: standard === 0x01 ? Part3Sw.NoIccResponse : Part3Sw.NoInformation };
  if (chip.info.technology !== 'iso14443a') return { error: Part3Sw.NoIccResponse };
  const next = { ...state, rfOn: true };
  if (layer === 0x02 || (layer & 0xf0) === 0x20) return { state: next };
  if (layer === 0x03 || (layer & 0xf0) === 0x30) {
    powerCycle(chip);
    return { state: next, data: tlv(0x8f, Uint8Array.of(chip.info.sak ?? 0x00)) };
  }
  if (layer === 0x04 || layer === 0x40) {
    powerCycle(chip);
    const atr = acr1252Emulation.atr(chip) ?? Uint8Array.of(0x3b, 0x00);
    return { state: next, data: tlv(0x5f51, atr) };
  }
  return { error: Part3Sw.NoInformation };
}
