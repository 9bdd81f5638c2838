import {
  Capability,
  ISO15693_SIGNATURE_LENGTH,
  Iso15693Command,
  Iso15693CryptoSuite,
  Iso15693ErrorCode,
  Iso15693InfoFlag,
  Iso15693RequestFlag,
  NXP_MANUFACTURER_CODE,
  TAM1_ICHALLENGE_LENGTH,
  TAM1_MESSAGE_LENGTH,
  TAM1_TRND_LENGTH,
  computeTam1Response,
  concatBytes,
  fromHex,
  iso15693UidToAir,
  type FrameCapability,
} from '@tapline/core';
import {
  cryptoRandom,
  invalidOption,
  requireLength,
  statefulChip,
  storageCardAtr,
  type ChipModel,
  type ChipStep,
  type RandomSource,
  type StatefulChip,
} from './chip-model.js';
import { SPARK1_SIGNATURE_KEY, signUidWithFixtureKey, spark1FixtureKeys, type UidSigner } from './keys.js';
import { ndefTlv, uriNdefMessage } from './ndef.js';

/**
 * VivoKey Spark 1: an NXP ICODE DNA (ISO 15693) as VivoKey personalises it (protocols.md §2, §4, §6.4). Frames are
 * Tapline's `iso15693` capability: request flags first, no CRC (the reader adds and checks it).
 *
 * Modelled from sources: INVENTORY (one slot, AFI, mask), READ SINGLE BLOCK and READ MULTIPLE BLOCKS with 4-byte
 * blocks and optional security status, GET SYSTEM INFORMATION, SELECT and RESET TO READY, addressed and selected
 * modes (a frame addressed to another UID gets no answer), NXP READ SIGNATURE (`BD`, manufacturer 04) with a
 * secp128r1 signature over SHA-256 of the UID MSB first (VivoKey's Spark 1 scheme), error replies `01 <code>`.
 *
 * Inferred: AUTHENTICATE `35` (CSI 00, TAM1) answers with core's TAM1 model (`computeTam1Response`: the byte order,
 * the C_TAM1 constant and the layout are core's documented inferences), with reply flags 00 and a leading byte 00
 * (the byte's meaning is not public); the signature goes on air byte-reversed (proxmark3 prints VivoKey's
 * signatures reversed against `r ‖ s`); memory size (63 blocks), IC reference 01 and the memory content.
 */

/** Options of {@link createSpark1Chip}. */
export interface Spark1ChipOptions {
  /** 8-byte UID, MSB first (`E0 04 01 18 …`). Default: a fixture UID with the ICODE DNA prefix. */
  readonly uid?: Uint8Array;
  /** The AES key slots 0–3 (slot 2 is VivoKey's TAM1 key). Default: the fixture keys. */
  readonly keys?: readonly Uint8Array[];
  /** TRnd. Default: node:crypto. */
  readonly random?: RandomSource;
  /**
   * The originality signature (`r ‖ s`, 32 bytes) of the UID. Default: the fixture secp128r1 key over SHA-256 of the
   * UID MSB first. Computed once, as the chip stores it.
   */
  readonly signer?: UidSigner;
  /** User memory, a multiple of 4 bytes, at most 256 blocks. Default: 63 blocks with a T5T CC and an NDEF URL. */
  readonly memory?: Uint8Array;
}

/** The state of a virtual Spark 1 between frames (ISO 15693 state machine: ready or selected). */
export interface Spark1State {
  readonly selected: boolean;
}

/** Block size of ICODE DNA. */
const BLOCK_SIZE = 4;
const DEFAULT_BLOCKS = 63;
const DSFID = 0x00;
const AFI = 0x00;
const IC_REFERENCE = 0x01;
/** Reply flags and the unexplained byte before the TResponse (see the module notes). */
const TAM1_REPLY_FLAGS = 0x00;
const TAM1_LEADING_BYTE = 0x00;

const SELECT = 0x25;
const RESET_TO_READY = 0x26;

interface Spark1Config {
  readonly uid: Uint8Array;
  readonly airUid: Uint8Array;
  readonly keys: readonly Uint8Array[];
  readonly random: RandomSource;
  readonly wireSignature: Uint8Array;
  readonly memory: Uint8Array;
}

function defaultMemory(): Uint8Array {
  const memory = new Uint8Array(DEFAULT_BLOCKS * BLOCK_SIZE);
  // T5T capability container: magic E1, version 1.0 with free read/write, data area in 8-byte units, multi-block read.
  memory.set([0xe1, 0x40, (DEFAULT_BLOCKS * BLOCK_SIZE) / 8, 0x01]);
  memory.set(ndefTlv(uriNdefMessage('https://vivokey.com/spark')), 4);
  return memory;
}

function buildConfig(options: Spark1ChipOptions): Spark1Config {
  const uid = requireLength(options.uid ?? fromHex('E004011809A73B5C'), 8, 'A Spark 1 UID');
  const keys = (options.keys ?? spark1FixtureKeys()).map((k, i) => requireLength(k, 16, `Spark 1 key ${i}`));
  if (keys.length === 0 || keys.length > 4) throw invalidOption(`A Spark 1 has 1 to 4 key slots, not ${keys.length}.`);
  const memory = Uint8Array.from(options.memory ?? defaultMemory());
  if (memory.length === 0 || memory.length % BLOCK_SIZE !== 0 || memory.length > 256 * BLOCK_SIZE) {
    throw invalidOption('Spark 1 memory must be 1 to 256 blocks of 4 bytes.');
  }
  const signer = options.signer ?? ((u: Uint8Array) => signUidWithFixtureKey(SPARK1_SIGNATURE_KEY, u));
  const signature = requireLength(signer(uid), ISO15693_SIGNATURE_LENGTH, 'A Spark 1 signature');
  return {
    uid,
    airUid: iso15693UidToAir(uid),
    keys,
    random: options.random ?? cryptoRandom,
    wireSignature: Uint8Array.from(signature).reverse(),
    memory,
  };
}

/** The pure model of a Spark 1; {@link createSpark1Chip} wraps it for the simulator. */
export function spark1Model(options: Spark1ChipOptions = {}): ChipModel<Spark1State> {
  const config = buildConfig(options);
  const initialState: Spark1State = { selected: false };
  return {
    info: {
      technology: 'iso15693',
      uid: Uint8Array.from(config.uid),
      // PC/SC Part 3 storage-card ATR: standard ISO 15693 part 3 (0B), card name ICODE SLI (00 14).
      atr: storageCardAtr(0x0b, 0x0014),
      protocols: [Capability.Iso15693],
    },
    initialState,
    respond: (state, capability, frame) => respond(config, state, capability, frame),
    powerUp: () => initialState,
  };
}

/** A virtual Spark 1 for the simulator (see {@link spark1Model} for what it models). */
export function createSpark1Chip(options: Spark1ChipOptions = {}): StatefulChip<Spark1State> {
  return statefulChip(spark1Model(options));
}

function silent(state: Spark1State): ChipStep<Spark1State> {
  return { state, response: undefined };
}

function reply(state: Spark1State, ...parts: Uint8Array[]): ChipStep<Spark1State> {
  return { state, response: concatBytes(Uint8Array.of(0x00), ...parts) };
}

function error(state: Spark1State, code: number): ChipStep<Spark1State> {
  return { state, response: Uint8Array.of(0x01, code) };
}

function respond(
  config: Spark1Config,
  state: Spark1State,
  capability: FrameCapability,
  frame: Uint8Array,
): ChipStep<Spark1State> {
  // A frame too short to carry flags and a command is noise to a tag: it stays silent.
  if (capability !== Capability.Iso15693 || frame.length < 2) return silent(state);
  const flags = frame[0]!;
  const command = frame[1]!;
  if (flags & Iso15693RequestFlag.Inventory) {
    return command === Iso15693Command.Inventory ? inventory(config, state, flags, frame.subarray(2)) : silent(state);
  }
  let at = 2;
  const custom = command >= 0xa0 && command <= 0xdf;
  if (custom) {
    // Custom commands of another manufacturer are not for this tag.
    if (frame[at] !== NXP_MANUFACTURER_CODE) return silent(state);
    at += 1;
  }
  if (flags & Iso15693RequestFlag.Address) {
    if (frame.length < at + 8) return silent(state);
    if (!Buffer.from(frame.subarray(at, at + 8)).equals(Buffer.from(config.airUid))) return silent(state);
    at += 8;
  } else if (flags & Iso15693RequestFlag.Select && !state.selected) {
    return silent(state);
  }
  const params = frame.subarray(at);
  const option = (flags & Iso15693RequestFlag.Option) !== 0;
  switch (command) {
    case Iso15693Command.ReadSingleBlock:
      if (params.length !== 1) return error(state, Iso15693ErrorCode.NotRecognised);
      return readBlocks(config, state, params[0]!, 1, option);
    case Iso15693Command.ReadMultipleBlocks:
      if (params.length !== 2) return error(state, Iso15693ErrorCode.NotRecognised);
      return readBlocks(config, state, params[0]!, params[1]! + 1, option);
    case Iso15693Command.GetSystemInformation:
      if (params.length !== 0) return error(state, Iso15693ErrorCode.NotRecognised);
      return systemInformation(config, state);
    case Iso15693Command.NxpReadSignature:
      if (params.length !== 0) return error(state, Iso15693ErrorCode.NotRecognised);
      return reply(state, config.wireSignature);
    case Iso15693Command.Authenticate:
      return authenticate(config, state, params);
    case SELECT:
      // SELECT is addressed by definition; it puts this tag in the selected state.
      if (!(flags & Iso15693RequestFlag.Address) || params.length !== 0) {
        return error(state, Iso15693ErrorCode.NotRecognised);
      }
      return reply({ selected: true });
    case RESET_TO_READY:
      if (params.length !== 0) return error(state, Iso15693ErrorCode.NotRecognised);
      return reply({ selected: false });
    default:
      return error(state, Iso15693ErrorCode.NotSupported);
  }
}

/** INVENTORY: `flags 01 [AFI] maskLength mask`; the tag answers when AFI and mask match its own. */
function inventory(config: Spark1Config, state: Spark1State, flags: number, body: Uint8Array): ChipStep<Spark1State> {
  let at = 0;
  if (flags & Iso15693RequestFlag.Afi) {
    const afi = body[at++];
    if (afi === undefined || (afi !== 0x00 && afi !== AFI)) return silent(state);
  }
  const maskBits = body[at++];
  if (maskBits === undefined || maskBits > 64) return silent(state);
  const mask = body.subarray(at);
  if (mask.length !== Math.ceil(maskBits / 8)) return silent(state);
  // The mask is compared with the UID's least significant bits, which go first on air.
  for (let bit = 0; bit < maskBits; bit++) {
    const byte = bit >>> 3;
    const m = 1 << (bit & 7);
    if ((mask[byte]! & m) !== (config.airUid[byte]! & m)) return silent(state);
  }
  // With sixteen slots a lone tag answers in the slot its UID picks; the simulated reader sees that answer.
  return { state, response: concatBytes(Uint8Array.of(0x00, DSFID), config.airUid) };
}

function readBlocks(
  config: Spark1Config,
  state: Spark1State,
  first: number,
  count: number,
  withSecurityStatus: boolean,
): ChipStep<Spark1State> {
  const blocks = config.memory.length / BLOCK_SIZE;
  if (first + count > blocks) return error(state, Iso15693ErrorCode.BlockNotAvailable);
  const parts: Uint8Array[] = [];
  for (let b = first; b < first + count; b++) {
    if (withSecurityStatus) parts.push(Uint8Array.of(0x00));
    parts.push(config.memory.subarray(b * BLOCK_SIZE, (b + 1) * BLOCK_SIZE));
  }
  return reply(state, ...parts);
}

function systemInformation(config: Spark1Config, state: Spark1State): ChipStep<Spark1State> {
  const infoFlags =
    Iso15693InfoFlag.Dsfid | Iso15693InfoFlag.Afi | Iso15693InfoFlag.MemorySize | Iso15693InfoFlag.IcReference;
  const blocks = config.memory.length / BLOCK_SIZE;
  return reply(
    state,
    Uint8Array.of(infoFlags),
    config.airUid,
    Uint8Array.of(DSFID, AFI, blocks - 1, BLOCK_SIZE - 1, IC_REFERENCE),
  );
}

/** AUTHENTICATE: `CSI ‖ message`, the message `00 ‖ KeyID ‖ IChallenge(10)` for TAM1. */
function authenticate(config: Spark1Config, state: Spark1State, params: Uint8Array): ChipStep<Spark1State> {
  if (params.length !== 1 + TAM1_MESSAGE_LENGTH) return error(state, Iso15693ErrorCode.NotRecognised);
  if (params[0] !== Iso15693CryptoSuite.Aes128) return error(state, Iso15693ErrorCode.OptionNotSupported);
  // Byte 1 holds AuthMethod (top two bits, 00 = TAM), CustomData and RFU bits: only plain TAM1 is modelled.
  if (params[1] !== 0x00) return error(state, Iso15693ErrorCode.Unknown);
  const key = config.keys[params[2]!];
  if (key === undefined) return error(state, Iso15693ErrorCode.Unknown);
  const ichallenge = params.slice(3, 3 + TAM1_ICHALLENGE_LENGTH);
  const tresponse = computeTam1Response(key, ichallenge, config.random(TAM1_TRND_LENGTH));
  return {
    state,
    response: concatBytes(Uint8Array.of(TAM1_REPLY_FLAGS, TAM1_LEADING_BYTE), tresponse),
  };
}
