import { Capability, concatBytes, decodeApdu, type CommandApdu, type FrameCapability } from '@tapline/core';
import { isoDepAtr, storageCardAtr } from '../chips/chip-model.js';
import type { VirtualChip } from '../sim/virtual-chip.js';

/** What one APDU does to a reader emulation: its state afterwards and the R-APDU (never empty). */
export interface EmulationStep<S> {
  readonly state: S;
  readonly response: Uint8Array;
}

/**
 * A PC/SC reader's firmware as a pure function: what the reader answers when an application sends an APDU with
 * SCardTransmit while `chip` is in its field. The only side effect is `chip.handle` (the chip keeps its own state);
 * the reader's own state (LEDs, RF field, a Part 3 session) is passed in and returned, as in the chip models.
 *
 * A {@link VirtualCard} serves an emulation to vpcd, so that pcscd presents it as the real reader would.
 */
export interface ReaderEmulation<S = unknown> {
  /** Short id, for logs and test names: `acr122u`, `acr1252u`, `utrust3720f`. */
  readonly id: string;
  /** The vpcd FRIENDLYNAME; pcsc-lite appends ` 00 00` and ` 00 01` for the two slots. */
  readonly friendlyName: string;
  /** The reader state when a chip enters the field. */
  readonly initialState: S;
  /**
   * The ATR the reader synthesises for `chip` (readers.md §7.4), or `undefined` when the reader cannot see that kind
   * of chip at all (an ISO 15693 tag on a PN532 reader): such a chip never shows up as present.
   */
  atr(chip: VirtualChip): Uint8Array | undefined;
  /** Answers one C-APDU. Errors are status words, never exceptions. */
  transmit(state: S, chip: VirtualChip, apdu: Uint8Array): EmulationStep<S>;
}

/** Status words the reader firmwares answer with (readers.md §1.1, §3.2, §4). */
export const ReaderSw = {
  Ok: 0x9000,
  /** Le is longer than the data. */
  EndBeforeLe: 0x6282,
  /** The operation failed (ACS, Identiv); also "the tag did not answer" here. */
  Failed: 0x6300,
  /** ACR122U direct transmit: the PN532 command was wrong. */
  Pn532CommandWrong: 0x637f,
  WrongLength: 0x6700,
  /** Function not supported. */
  NotSupported: 0x6a81,
} as const;

/** `data ‖ SW1 SW2`. */
export function withSw(sw: number, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(data.length + 2);
  out.set(data);
  out[data.length] = sw >>> 8;
  out[data.length + 1] = sw & 0xff;
  return out;
}

/** A short APDU as the reader firmwares accept it, or `undefined` (length fields wrong, or extended length). */
export function decodeShortApdu(apdu: Uint8Array): CommandApdu | undefined {
  let command: CommandApdu;
  try {
    command = decodeApdu(apdu);
  } catch {
    return undefined;
  }
  // ACS and Identiv contactless firmwares take short APDUs only (CCID descriptors: "short APDU exchange").
  if ((command.data?.length ?? 0) > 255 || (command.le ?? 0) > 256) return undefined;
  return command;
}

/** True when `chip` speaks ISO-DEP (its APDUs go out with plain SCardTransmit). */
export function speaksIsoDep(chip: VirtualChip): boolean {
  return chip.info.protocols.includes(Capability.Iso14443_4);
}

/** What the chip answers, or `undefined` when it stays silent (the chip threw). */
export function ask(chip: VirtualChip, capability: FrameCapability, frame: Uint8Array): Uint8Array | undefined {
  try {
    return chip.handle(capability, frame);
  } catch {
    return undefined;
  }
}

/** Calls the chip's `powerUp` where it has one: the reader switched the field off and on, or re-selected the chip. */
export function powerCycle(chip: VirtualChip): void {
  const withPower = chip as VirtualChip & { powerUp?: unknown };
  if (typeof withPower.powerUp === 'function') (withPower.powerUp as () => void).call(chip);
}

/**
 * A plain (non class FF) APDU: the reader wraps it in ISO-DEP and sends it to the chip, as SCardTransmit does on
 * every PC/SC contactless reader. A chip that stays silent (or does not speak ISO-DEP) is `63 00`.
 */
export function plainApdu(chip: VirtualChip, apdu: Uint8Array): Uint8Array {
  if (!speaksIsoDep(chip)) return withSw(ReaderSw.Failed);
  const answer = ask(chip, Capability.Iso14443_4, apdu);
  return answer && answer.length >= 2 ? answer : withSw(ReaderSw.Failed);
}

// ---------------------------------------------------------------------------------------------------------------
// ATR (PC/SC Part 3, readers.md §7.4)
// ---------------------------------------------------------------------------------------------------------------

/** How a reader names storage cards in its ATR: ACR122U-era names (`F0 11` FeliCa) or Part 3 names (`00 3B`). */
export type CardNameScheme = 'acr122' | 'part3';

/** Options of {@link synthesiseAtr}. */
export interface AtrOptions {
  /** The air interfaces the reader's RF chip has; a chip on any other is invisible to it. */
  readonly technologies: readonly VirtualChip['info']['technology'][];
  readonly names: CardNameScheme;
}

/** The historical bytes of an ATS given without its length byte: what follows T0 and the interface bytes it flags. */
export function atsHistoricalBytes(ats: Uint8Array): Uint8Array {
  const t0 = ats[0];
  if (t0 === undefined) return new Uint8Array(0);
  const interfaceBytes = ((t0 >> 4) & 1) + ((t0 >> 5) & 1) + ((t0 >> 6) & 1);
  // The ATR has room for 15 historical bytes (T0's low nibble); longer ones are cut, as the readers do.
  return ats.slice(1 + interfaceBytes, 1 + interfaceBytes + 15);
}

/** The Part 3 card name (NN NN) of an ISO 14443-A storage card, by SAK. */
function typeACardName(sak: number): number {
  switch (sak) {
    case 0x00:
      return 0x0003; // MIFARE Ultralight, NTAG
    case 0x08:
      return 0x0001;
    case 0x18:
      return 0x0002;
    case 0x09:
      return 0x0026;
    default:
      return 0xff00 | sak;
  }
}

/** The Part 3 card name of an ISO 15693 tag, by the IC manufacturer byte of its UID. */
function iso15693CardName(uid: Uint8Array): number {
  if (uid[1] === 0x04) return 0x0014; // NXP ICODE SLI family (ICODE DNA reports itself this way too)
  if (uid[1] === 0x07) return 0x0012; // TI Tag-it
  return 0x0000;
}

/**
 * The ATR a PC/SC contactless reader synthesises (readers.md §7.4): `3B 8n 80 01 <ATS historical bytes> TCK` for
 * ISO-DEP chips, the storage-card ATR `3B 8F 80 01 80 4F 0C A0 00 00 03 06 SS NN NN 00 00 00 00 TCK` otherwise
 * (SS 03 for ISO 14443-A part 3, 0B for ISO 15693 part 3, 11 for FeliCa). `undefined` when the reader's RF chip
 * cannot see the chip.
 */
export function synthesiseAtr(chip: VirtualChip, options: AtrOptions): Uint8Array | undefined {
  const { info } = chip;
  if (!options.technologies.includes(info.technology)) return undefined;
  switch (info.technology) {
    case 'iso14443a':
      if (speaksIsoDep(chip) || ((info.sak ?? 0) & 0x20) !== 0) {
        return isoDepAtr(atsHistoricalBytes(info.ats ?? new Uint8Array(0)));
      }
      return storageCardAtr(0x03, typeACardName(info.sak ?? 0));
    case 'iso14443b':
      // No virtual chip is type B yet; the ATQB bytes that would go here are not in TagInfo.
      return isoDepAtr(new Uint8Array(0));
    case 'iso15693':
      return storageCardAtr(0x0b, iso15693CardName(info.uid));
    case 'felica':
      return storageCardAtr(0x11, options.names === 'acr122' ? 0xf011 : 0x003b);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Pseudo-APDUs several readers share
// ---------------------------------------------------------------------------------------------------------------

/**
 * Get Data `FF CA P1 00 Le` (readers.md §4.2): P1 00 the UID, P1 01 the ATS with its length byte (where the reader
 * offers it). Le 00 (or none) is "all of it"; a longer Le gets the data with `62 82`, a shorter one `6C <length>`.
 */
export function getData(chip: VirtualChip, command: CommandApdu, options: { readonly ats: boolean }): Uint8Array {
  if (command.p2 !== 0x00 || command.data !== undefined) return withSw(ReaderSw.NotSupported);
  let data: Uint8Array;
  if (command.p1 === 0x00) {
    data = chip.info.uid;
  } else if (command.p1 === 0x01 && options.ats && speaksIsoDep(chip) && chip.info.ats) {
    data = concatBytes(Uint8Array.of(chip.info.ats.length + 1), chip.info.ats);
  } else {
    return withSw(ReaderSw.NotSupported);
  }
  const le = command.le;
  if (le === undefined || le === 256 || le === data.length) return withSw(ReaderSw.Ok, data);
  if (le > data.length) return withSw(ReaderSw.EndBeforeLe, data);
  return withSw(0x6c00 | data.length);
}

/** True for a chip that takes NFC Forum Type 2 commands (READ `30`, WRITE `A2`) directly. */
export function isType2(chip: VirtualChip): boolean {
  return chip.info.technology === 'iso14443a' && !speaksIsoDep(chip);
}

/**
 * Read Binary `FF B0 00 <page> Le` on a Type 2 tag: one READ `30` (16 bytes). ACS readers return the first Le bytes
 * (at most 16); Identiv readers return one page of 4 bytes "regardless of Le" (readers.md §3.2).
 */
export function type2ReadBinary(chip: VirtualChip, command: CommandApdu, style: 'acs' | 'identiv'): Uint8Array {
  if (!isType2(chip) || command.p1 !== 0x00) return withSw(ReaderSw.NotSupported);
  const page = ask(chip, Capability.Iso14443aRaw, Uint8Array.of(0x30, command.p2));
  if (!page || page.length !== 16) return withSw(ReaderSw.Failed);
  if (style === 'identiv') return withSw(ReaderSw.Ok, page.slice(0, 4));
  const le = command.le === undefined || command.le === 256 ? 16 : command.le;
  return le > 16 ? withSw(0x6c10) : withSw(ReaderSw.Ok, page.slice(0, le));
}

/** Update Binary `FF D6 00 <page> 04 <4 bytes>` on a Type 2 tag: one WRITE `A2`, `90 00` on the 4-bit ACK. */
export function type2UpdateBinary(chip: VirtualChip, command: CommandApdu): Uint8Array {
  if (!isType2(chip) || command.p1 !== 0x00) return withSw(ReaderSw.NotSupported);
  if (command.data?.length !== 4) return withSw(ReaderSw.WrongLength);
  const ack = ask(chip, Capability.Iso14443aRaw, concatBytes(Uint8Array.of(0xa2, command.p2), command.data));
  return ack?.length === 1 && ack[0] === 0x0a ? withSw(ReaderSw.Ok) : withSw(ReaderSw.Failed);
}

/**
 * LED and buzzer `FF 00 40 <LED control> 04 <T1> <T2> <repetitions> <buzzer link>` (ACR122U, also accepted by the
 * ACR1252U): the answer is `90 <LED state>` (bit 0 red, bit 1 green). P2 bits 2/3 mask which LED changes, bits 0/1
 * give its final state; blinking is not modelled.
 */
export function acsLedControl(
  led: number,
  command: CommandApdu,
): { readonly led: number; readonly response: Uint8Array } {
  if (command.data?.length !== 4) return { led, response: withSw(ReaderSw.WrongLength) };
  const control = command.p2;
  let next = led;
  if (control & 0x04) next = (next & ~0x01) | (control & 0x01);
  if (control & 0x08) next = (next & ~0x02) | (control & 0x02);
  return { led: next, response: Uint8Array.of(0x90, next) };
}

/**
 * A raw ISO 14443-A frame as the RF chip puts it on air (CRC added and checked by the reader): Type 2 commands go to
 * the chip as they are; for an ISO-DEP chip the reader does not do the ISO-DEP layer, so the frame is a RATS
 * (`E0 xx` → TL ‖ ATS), an I-block (`02`/`03` [CID] [NAD] INF → the same PCB with the chip's answer) or an
 * S(DESELECT) (`C2`, echoed). `undefined` when the chip stays silent.
 */
export function rawExchange(chip: VirtualChip, frame: Uint8Array): Uint8Array | undefined {
  const pcb = frame[0];
  if (pcb === undefined) return undefined;
  if (chip.info.technology === 'iso15693') return ask(chip, Capability.Iso15693, frame);
  if (!speaksIsoDep(chip)) return ask(chip, Capability.Iso14443aRaw, frame);
  if (pcb === 0xe0 && frame.length === 2) {
    powerCycle(chip);
    const ats = chip.info.ats ?? new Uint8Array(0);
    return concatBytes(Uint8Array.of(ats.length + 1), ats);
  }
  if ((pcb & 0xf7) === 0xc2) return frame.slice(0, pcb & 0x08 ? 2 : 1);
  // I-block without chaining: b8..b6 000, b2 1, b5 (chaining) 0; b4 CID and b3 NAD add one byte each.
  if ((pcb & 0xe2) === 0x02 && (pcb & 0x10) === 0) {
    const prologue = 1 + (pcb & 0x08 ? 1 : 0) + (pcb & 0x04 ? 1 : 0);
    if (frame.length <= prologue) return undefined;
    const answer = ask(chip, Capability.Iso14443_4, frame.subarray(prologue));
    return answer && concatBytes(frame.subarray(0, prologue), answer);
  }
  return ask(chip, Capability.Iso14443aRaw, frame);
}
