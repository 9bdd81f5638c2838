import { Capability, concatBytes, type CommandApdu } from '@tapline/core';
import type { VirtualChip } from '../sim/virtual-chip.js';
import {
  ReaderSw,
  acsLedControl,
  ask,
  decodeShortApdu,
  getData,
  plainApdu,
  powerCycle,
  rawExchange,
  speaksIsoDep,
  synthesiseAtr,
  type2ReadBinary,
  type2UpdateBinary,
  withSw,
  type EmulationStep,
  type ReaderEmulation,
} from './emulation.js';

/** The ACR122U's own state between APDUs. */
export interface Acr122State {
  /** LED state as `FF 00 40` reports it: bit 0 red, bit 1 green. */
  readonly led: number;
  /** Whether the PN532's RF field is on (RFConfiguration item 01). */
  readonly rfOn: boolean;
  /** The last PICC operating parameter set with `FF 00 51` (default FF: every card type, auto polling). */
  readonly piccParameter: number;
}

const FIRMWARE = 'ACR122U203';
/** GetFirmwareVersion: IC 32 (PN532), version 1, revision 6, support 07 (ISO 14443-A, -B, ISO 18092). */
const PN532_FIRMWARE = Uint8Array.of(0x32, 0x01, 0x06, 0x07);

/**
 * ACS ACR122U: a PN532 behind a CCID microcontroller (readers.md §1). Modelled:
 *
 * - `FF CA 00 00 Le` UID, `FF CA 01 00 00` ATS with its length byte;
 * - `FF 00 00 00 Lc D4 <cmd> …` Direct Transmit to the PN532, answered `D5 <cmd+1> … 90 00` (T=1, as vpcd reports):
 *   GetFirmwareVersion `02` (→ `32 01 06 07`, PN532 v1.6), InListPassiveTarget `4A` (106 kbps type A only: SENS_RES,
 *   SEL_RES, NFCID and the ATS the PN532 fetches itself), InDataExchange `40` (ISO-DEP APDUs, or Type 2 commands to a
 *   Type 2 tag), InCommunicateThru `42` (raw frames, see {@link rawExchange}), RFConfiguration `32` (item 01 switches
 *   the field: off, exchanges time out; on again, the chip powers up), ReadRegister `06` (zeros), WriteRegister `08`,
 *   SetParameters `12`, SAMConfiguration `14`, Diagnose `00` (echo), InDeselect `44`, InRelease `52`, InSelect `54`;
 *   PN532 status byte `01` (timeout) when the tag stays silent; another command is `63 7F`;
 * - `FF 00 40 …` LED/buzzer → `90 <LED state>`, `FF 00 48 00 00` firmware `ACR122U203` without status word,
 *   `FF 00 51 <p> 00` PICC operating parameter → `90 <p>`, `FF 00 52 …` buzzer on detection → `90 00`;
 * - `FF B0`/`FF D6` Read/Update Binary on Type 2 tags;
 * - plain APDUs go to an ISO-DEP chip as SCardTransmit sends them; a silent chip is `63 00`;
 * - the ATR uses the ACR122 card names (readers.md §1.2); ISO 15693 chips are invisible (the PN532 has no 15693).
 *
 * Not modelled: T=0 (`61 LL` + `FF C0`; vpcd always reports T=1), PN532 chaining (MI), FeliCa and type B targets,
 * timing. Status words of failures the manuals leave open are `63 00`.
 */
export const acr122Emulation: ReaderEmulation<Acr122State> = {
  id: 'acr122u',
  friendlyName: 'ACS ACR122U PICC Interface',
  initialState: { led: 0x00, rfOn: true, piccParameter: 0xff },
  atr: (chip) => synthesiseAtr(chip, { technologies: ['iso14443a'], names: 'acr122' }),
  transmit: (state, chip, apdu) => acr122Transmit(state, chip, apdu),
};

function acr122Transmit(state: Acr122State, chip: VirtualChip, apdu: Uint8Array): EmulationStep<Acr122State> {
  const done = (response: Uint8Array, next: Acr122State = state): EmulationStep<Acr122State> => ({
    state: next,
    response,
  });
  const command = decodeShortApdu(apdu);
  if (!command) return done(withSw(ReaderSw.WrongLength));
  if (command.cla !== 0xff) return done(state.rfOn ? plainApdu(chip, apdu) : withSw(ReaderSw.Failed));
  switch (command.ins) {
    case 0xca:
      return done(getData(chip, command, { ats: true }));
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

/** `FF 00 P1 P2 …`: the ACR122U's own pseudo-APDUs, Direct Transmit among them. */
function pseudoApdu(state: Acr122State, chip: VirtualChip, command: CommandApdu): EmulationStep<Acr122State> {
  const done = (response: Uint8Array, next: Acr122State = state): EmulationStep<Acr122State> => ({
    state: next,
    response,
  });
  const { p1, p2, data } = command;
  switch (p1) {
    case 0x00: {
      if (p2 !== 0x00 || !data) return done(withSw(ReaderSw.NotSupported));
      if (data[0] !== 0xd4 || data.length < 2) return done(withSw(ReaderSw.Pn532CommandWrong));
      const result = pn532(state, chip, data[1]!, data.subarray(2));
      return result
        ? {
            state: result.state,
            response: withSw(ReaderSw.Ok, concatBytes(Uint8Array.of(0xd5, data[1]! + 1), result.data)),
          }
        : done(withSw(ReaderSw.Pn532CommandWrong));
    }
    case 0x40: {
      const { led, response } = acsLedControl(state.led, command);
      return done(response, { ...state, led });
    }
    case 0x48:
      // The one ACR122U answer without a status word (libnfc and nfcpy read it this way).
      return done(new TextEncoder().encode(FIRMWARE));
    case 0x51:
      return done(Uint8Array.of(0x90, p2), { ...state, piccParameter: p2 });
    case 0x52:
      return done(withSw(ReaderSw.Ok));
    default:
      return done(withSw(ReaderSw.NotSupported));
  }
}

/** One PN532 command: its answer after `D5 <cmd+1>`, or `undefined` for a command the PN532 rejects. */
function pn532(
  state: Acr122State,
  chip: VirtualChip,
  code: number,
  params: Uint8Array,
): { readonly state: Acr122State; readonly data: Uint8Array } | undefined {
  const ok = (data: Uint8Array = new Uint8Array(0), next: Acr122State = state) => ({ state: next, data });
  switch (code) {
    case 0x00: // Diagnose: the communication line test echoes its parameters.
      return ok(Uint8Array.from(params));
    case 0x02:
      return params.length === 0 ? ok(PN532_FIRMWARE) : undefined;
    case 0x06: // ReadRegister: two address bytes per register, one value byte back.
      return params.length > 0 && params.length % 2 === 0 ? ok(new Uint8Array(params.length / 2)) : undefined;
    case 0x08:
    case 0x12:
    case 0x14:
      return params.length > 0 ? ok() : undefined;
    case 0x32:
      return rfConfiguration(state, chip, params);
    case 0x4a:
      return inListPassiveTarget(state, chip, params);
    case 0x40: {
      if (params.length < 2) return undefined;
      if (params[0] !== 0x01) return ok(Uint8Array.of(0x27)); // wrong context: no such target
      if (!state.rfOn) return ok(Uint8Array.of(0x01));
      const capability = speaksIsoDep(chip) ? Capability.Iso14443_4 : Capability.Iso14443aRaw;
      const answer = ask(chip, capability, params.subarray(1));
      return ok(answer ? concatBytes(Uint8Array.of(0x00), answer) : Uint8Array.of(0x01));
    }
    case 0x42: {
      if (params.length < 1) return undefined;
      const answer = state.rfOn ? rawExchange(chip, params) : undefined;
      return ok(answer ? concatBytes(Uint8Array.of(0x00), answer) : Uint8Array.of(0x01));
    }
    case 0x44:
    case 0x52:
    case 0x54:
      return params.length === 1
        ? ok(Uint8Array.of(params[0] === 0x01 || params[0] === 0x00 ? 0x00 : 0x27))
        : undefined;
    default:
      return undefined;
  }
}

/** RFConfiguration: item 01 switches the field; every other item (timings, retries, analog settings) is accepted. */
function rfConfiguration(state: Acr122State, chip: VirtualChip, params: Uint8Array) {
  if (params.length < 2) return undefined;
  if (params[0] !== 0x01) return { state, data: new Uint8Array(0) };
  const rfOn = (params[1]! & 0x01) !== 0;
  if (rfOn && !state.rfOn) powerCycle(chip);
  return { state: { ...state, rfOn }, data: new Uint8Array(0) };
}

/**
 * InListPassiveTarget `4A MaxTg BrTy [initiator data]`. Only BrTy 00 (106 kbps type A) finds anything; the answer is
 * `NbTg [Tg SENS_RES(2, MSB first) SEL_RES NFCIDLength NFCID [ATS with TL]]` (readers.md §5.3, vector 9). Selecting
 * the chip again resets it, as a fresh activation does; the PN532 switches the field on for this.
 */
function inListPassiveTarget(state: Acr122State, chip: VirtualChip, params: Uint8Array) {
  const [maxTg, brTy] = params;
  if (maxTg === undefined || brTy === undefined || maxTg < 1 || maxTg > 2 || brTy > 0x04) return undefined;
  const next = state.rfOn ? state : { ...state, rfOn: true };
  const none = { state: next, data: Uint8Array.of(0x00) };
  const { info } = chip;
  if (brTy !== 0x00 || info.technology !== 'iso14443a') return none;
  const wantedUid = params.subarray(2);
  if (wantedUid.length > 0 && !sameBytes(stripCascadeTags(wantedUid), info.uid)) return none;
  powerCycle(chip);
  const atqa = info.atqa ?? Uint8Array.of(0x44, 0x00);
  const target = [0x01, atqa[1] ?? 0x00, atqa[0] ?? 0x00, info.sak ?? 0x00, info.uid.length, ...info.uid];
  const ats = speaksIsoDep(chip) && info.ats ? [info.ats.length + 1, ...info.ats] : [];
  return { state: next, data: Uint8Array.from([0x01, ...target, ...ats]) };
}

/** A UID as InListPassiveTarget takes it may carry the cascade tag 88 before each of the first levels. */
function stripCascadeTags(uid: Uint8Array): Uint8Array {
  if (uid.length === 8 && uid[0] === 0x88) return uid.subarray(1);
  if (uid.length === 12 && uid[0] === 0x88 && uid[4] === 0x88) return concatBytes(uid.subarray(1, 4), uid.subarray(5));
  return uid;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}
