import { Capability, concatBytes, type CommandApdu } from '@tapline/core';
import type { VirtualChip } from '../sim/virtual-chip.js';
import {
  ReaderSw,
  ask,
  decodeShortApdu,
  getData,
  plainApdu,
  rawExchange,
  synthesiseAtr,
  type2ReadBinary,
  type2UpdateBinary,
  withSw,
  type ReaderEmulation,
} from './emulation.js';

/** The uTrust 3720 F keeps no state of its own that the emulation models. */
export type Utrust3720State = null;

/** ISO 15693 request flags the reader puts in front of an `FF FC` command: high data rate, not addressed. */
const FLAGS_HIGH_RATE = 0x02;
/** INVENTORY needs the inventory flag and one slot (a single tag is in the field). */
const FLAGS_INVENTORY_ONE_SLOT = 0x26;
const INVENTORY = 0x01;

/**
 * Identiv uTrust 3720 F (readers.md §3), the reader in this set that speaks ISO 15693. Modelled:
 *
 * - `FF CA 00 00 Le` UID: 4/7/10 bytes for type A, 8 bytes MSB first for ISO 15693; `FF CA 01 …` is `6A 81` for HF
 *   tags (manual §6.1.2);
 * - `FF FC 00 00 Lc <ISO 15693 command> <parameters> [Le]` (manual §6.3.7): the reader puts the request flags in
 *   front (`02`: high data rate, not addressed; INVENTORY `26`, one slot, with an empty mask if none is given) and
 *   returns the tag's reply without its flags byte, with `90 00`. Any command goes through, custom ones (NXP READ
 *   SIGNATURE `BD 04`) and AUTHENTICATE `35` included. A tag error reply (`01 <code>`) or silence is `63 00`
 *   (the manual gives no error status words; inferred);
 * - `FF FD <FWT> <frame type> Lc <raw frame>` Traverse (manual §6.3.7.12): the whole frame, flags included, goes to
 *   the tag and its whole reply comes back with `90 00`; silence is `63 00`;
 * - `FF B0`/`FF D6` on Type 2 tags (Read Binary returns 4 bytes regardless of Le, manual §6.2);
 * - plain APDUs go to an ISO-DEP chip; a silent chip is `63 00`;
 * - the ATR is the Part 3 one, SS `0B` (ISO 15693 part 3) for 15693 tags.
 *
 * Not modelled: escapes (`FF CC`, `FF 70 04 E6`; SCardControl cannot reach vpcd), LF tags, FeliCa, timing.
 */
export const utrust3720Emulation: ReaderEmulation<Utrust3720State> = {
  id: 'utrust3720f',
  // The name libccid gives 04e6:5612 ("Identiv uTrust 3720 Contactless Reader 00 00" in pcsc-lite).
  friendlyName: 'Identiv uTrust 3720 Contactless Reader',
  initialState: null,
  atr: (chip) => synthesiseAtr(chip, { technologies: ['iso14443a', 'iso14443b', 'iso15693'], names: 'part3' }),
  transmit: (state, chip, apdu) => ({ state, response: utrust3720Transmit(chip, apdu) }),
};

function utrust3720Transmit(chip: VirtualChip, apdu: Uint8Array): Uint8Array {
  const command = decodeShortApdu(apdu);
  if (!command) return withSw(ReaderSw.WrongLength);
  if (command.cla !== 0xff) return plainApdu(chip, apdu);
  switch (command.ins) {
    case 0xca:
      return getData(chip, command, { ats: false });
    case 0xfc:
      return iso15693Command(chip, command);
    case 0xfd:
      return traverse(chip, command);
    case 0xb0:
      return type2ReadBinary(chip, command, 'identiv');
    case 0xd6:
      return type2UpdateBinary(chip, command);
    default:
      return withSw(ReaderSw.NotSupported);
  }
}

function iso15693Command(chip: VirtualChip, command: CommandApdu): Uint8Array {
  if (command.p1 !== 0x00 || command.p2 !== 0x00) return withSw(ReaderSw.NotSupported);
  if (chip.info.technology !== 'iso15693') return withSw(ReaderSw.NotSupported);
  const body = command.data;
  if (!body) return withSw(ReaderSw.WrongLength);
  const code = body[0]!;
  const frame =
    code === INVENTORY
      ? concatBytes(
          Uint8Array.of(FLAGS_INVENTORY_ONE_SLOT, INVENTORY),
          body.length > 1 ? body.subarray(1) : Uint8Array.of(0x00),
        )
      : concatBytes(Uint8Array.of(FLAGS_HIGH_RATE), body);
  const reply = ask(chip, Capability.Iso15693, frame);
  if (!reply || reply.length === 0 || (reply[0]! & 0x01) !== 0) return withSw(ReaderSw.Failed);
  return withSw(ReaderSw.Ok, reply.subarray(1));
}

function traverse(chip: VirtualChip, command: CommandApdu): Uint8Array {
  if (command.p2 > 0x02 || !command.data) return withSw(ReaderSw.NotSupported);
  const reply = rawExchange(chip, command.data);
  return reply && reply.length > 0 ? withSw(ReaderSw.Ok, reply) : withSw(ReaderSw.Failed);
}
