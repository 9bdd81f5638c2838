import { Capability, fromHex, type FrameCapability } from '@tapline/core';
import {
  requireLength,
  statefulChip,
  storageCardAtr,
  type ChipModel,
  type ChipStep,
  type StatefulChip,
} from './chip-model.js';
import { NTAG21X_SIGNATURE_KEY, signUidWithFixtureKey, type UidSigner } from './keys.js';
import { ndefTlv, uriNdefMessage } from './ndef.js';

/**
 * A plain NXP NTAG215 (NFC Forum Type 2), for contrast with the implants: ISO 14443-3A only, no ISO-DEP. Raw frames
 * without CRC (Tapline's `iso14443a-raw` capability).
 *
 * Modelled (NTAG213/215/216 datasheet): READ `30 pp` (16 bytes, four pages, rolling over at the end of memory),
 * FAST_READ `3A`, GET_VERSION `60` → `00 04 04 02 01 00 11 03`, READ_SIG `3C 00` (32 bytes, secp128r1 over the raw
 * UID, here under a fixture key), WRITE `A2` to user memory with the 4-bit ACK as the byte `0A`, PWD and PACK
 * reading as zeros, the 135-page layout with UID and check bytes, CC and an NDEF URL.
 *
 * The chip's 4-bit NAK cannot be a byte on PC/SC, where a reader reports it as a failed exchange; so every NAK
 * (unknown command, address out of range, write to a protected page) is "no answer", which the simulated reader turns
 * into a timeout. Not modelled: the IDLE state a real tag falls into after a NAK, passwords, counters, locking.
 */

/** Options of {@link createNtag215Chip}. */
export interface Ntag215ChipOptions {
  /** 7-byte UID, MSB first. Default: a fixture UID. */
  readonly uid?: Uint8Array;
  /** The originality signature (`r ‖ s`, 32 bytes) of the UID. Default: the fixture secp128r1 key over the raw UID. */
  readonly signer?: UidSigner;
  /** The URL in the NDEF message. Default a Tapline page. */
  readonly url?: string;
}

/** The state of a virtual NTAG215: its memory (135 pages of 4 bytes). */
export interface Ntag215State {
  readonly memory: Uint8Array;
}

/** Pages in an NTAG215. */
export const NTAG215_PAGES = 135;
const PAGE = 4;
const FIRST_USER_PAGE = 4;
const LAST_USER_PAGE = 0x81;
const PWD_PAGE = 0x85;
const PACK_PAGE = 0x86;
const ACK = 0x0a;

const READ = 0x30;
const FAST_READ = 0x3a;
const GET_VERSION = 0x60;
const READ_SIG = 0x3c;
const WRITE = 0xa2;

const VERSION = fromHex('0004040201001103');

function initialMemory(uid: Uint8Array, url: string): Uint8Array {
  const memory = new Uint8Array(NTAG215_PAGES * PAGE);
  const [u0, u1, u2, u3, u4, u5, u6] = uid as unknown as [number, number, number, number, number, number, number];
  // Page 0–2: UID with its two check bytes (BCC0 includes the cascade tag 88), internal byte 48, lock bytes 00 00.
  memory.set([u0, u1, u2, 0x88 ^ u0 ^ u1 ^ u2, u3, u4, u5, u6, u3 ^ u4 ^ u5 ^ u6, 0x48, 0x00, 0x00], 0);
  // Page 3: CC, NDEF 1.0, 496-byte data area, read/write.
  memory.set([0xe1, 0x10, 0x3e, 0x00], 3 * PAGE);
  const tlv = ndefTlv(uriNdefMessage(url));
  memory.set(tlv.subarray(0, (LAST_USER_PAGE - FIRST_USER_PAGE + 1) * PAGE), FIRST_USER_PAGE * PAGE);
  // Pages 82h–86h: dynamic lock, CFG0 (AUTH0 FF: no password), CFG1, PWD FFFFFFFF, PACK.
  memory.set([0x00, 0x00, 0x00, 0xbd], 0x82 * PAGE);
  memory.set([0x04, 0x00, 0x00, 0xff], 0x83 * PAGE);
  memory.set([0x00, 0x05, 0x00, 0x00], 0x84 * PAGE);
  memory.set([0xff, 0xff, 0xff, 0xff], PWD_PAGE * PAGE);
  return memory;
}

/** The pure model of an NTAG215; {@link createNtag215Chip} wraps it for the simulator. */
export function ntag215Model(options: Ntag215ChipOptions = {}): ChipModel<Ntag215State> {
  const uid = requireLength(options.uid ?? fromHex('04E1412A6F3D80'), 7, 'An NTAG215 UID');
  const signer = options.signer ?? ((u: Uint8Array) => signUidWithFixtureKey(NTAG21X_SIGNATURE_KEY, u));
  const signature = requireLength(signer(uid), 32, 'An NTAG215 signature');
  const initialState: Ntag215State = { memory: initialMemory(uid, options.url ?? 'https://tapline.dev/ntag215') };
  return {
    info: {
      technology: 'iso14443a',
      uid: Uint8Array.from(uid),
      // PC/SC Part 3 storage-card ATR: ISO 14443-A part 3 (03), card name MIFARE Ultralight (00 03).
      atr: storageCardAtr(0x03, 0x0003),
      sak: 0x00,
      atqa: Uint8Array.of(0x44, 0x00),
      protocols: [Capability.Iso14443aRaw],
    },
    initialState,
    respond: (state, capability, frame) => respond(signature, state, capability, frame),
    powerUp: (state) => state,
  };
}

/** A virtual NTAG215 for the simulator (see {@link ntag215Model} for what it models). */
export function createNtag215Chip(options: Ntag215ChipOptions = {}): StatefulChip<Ntag215State> {
  return statefulChip(ntag215Model(options));
}

/** Pages as the chip returns them: PWD and PACK always read as zeros. */
function readPages(memory: Uint8Array, first: number, count: number): Uint8Array {
  const out = new Uint8Array(count * PAGE);
  for (let i = 0; i < count; i++) {
    const page = (first + i) % NTAG215_PAGES;
    if (page === PWD_PAGE || page === PACK_PAGE) continue;
    out.set(memory.subarray(page * PAGE, (page + 1) * PAGE), i * PAGE);
  }
  return out;
}

function respond(
  signature: Uint8Array,
  state: Ntag215State,
  capability: FrameCapability,
  frame: Uint8Array,
): ChipStep<Ntag215State> {
  const nak: ChipStep<Ntag215State> = { state, response: undefined };
  if (capability !== Capability.Iso14443aRaw || frame.length === 0) return nak;
  const [cmd, a, b] = [frame[0]!, frame[1], frame[2]];
  switch (cmd) {
    case READ:
      if (frame.length !== 2 || a === undefined || a >= NTAG215_PAGES) return nak;
      return { state, response: readPages(state.memory, a, 4) };
    case FAST_READ:
      if (frame.length !== 3 || a === undefined || b === undefined || a > b || b >= NTAG215_PAGES) return nak;
      return { state, response: readPages(state.memory, a, b - a + 1) };
    case GET_VERSION:
      return frame.length === 1 ? { state, response: Uint8Array.from(VERSION) } : nak;
    case READ_SIG:
      return frame.length === 2 && a === 0x00 ? { state, response: Uint8Array.from(signature) } : nak;
    case WRITE: {
      if (frame.length !== 6 || a === undefined || a < FIRST_USER_PAGE || a > LAST_USER_PAGE) return nak;
      const memory = Uint8Array.from(state.memory);
      memory.set(frame.subarray(2, 6), a * PAGE);
      return { state: { memory }, response: Uint8Array.of(ACK) };
    }
    default:
      return nak;
  }
}
