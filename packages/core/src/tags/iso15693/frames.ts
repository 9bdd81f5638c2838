/**
 * ISO 15693 request frames. Builders return the frame WITHOUT CRC, which is what `Reader.transmit(tag, 'iso15693',
 * …)` takes (the reader adds and checks the CRC); pass `crc: true` for raw paths that need it appended.
 *
 * @packageDocumentation
 */
import { appendIso15693Crc } from './crc.js';
import { Iso15693Command, Iso15693CryptoSuite, Iso15693RequestFlag, NXP_MANUFACTURER_CODE } from './flags.js';
import { assertInteger, assertLength, invalidArgument } from './internal.js';
import { iso15693UidToAir } from './uid.js';

/** Bytes in a TAM1 IChallenge (80 bits). */
export const TAM1_ICHALLENGE_LENGTH = 10;

/** Bytes in the TAM1 message of AUTHENTICATE: method byte, key id, IChallenge. */
export const TAM1_MESSAGE_LENGTH = 12;

/** The TAM1 key slot VivoKey authenticates a Spark 1 with (ICODE DNA has more slots). */
export const VIVOKEY_TAM1_KEY_ID = 2;

/** Options every builder takes. */
export interface Iso15693FrameOptions {
  /** Append the CRC (low byte first) for raw paths. Default false: the reader adds it. */
  readonly crc?: boolean;
}

/** How a request picks its tag, and at which data rate the tag answers. */
export interface Iso15693RequestOptions extends Iso15693FrameOptions {
  /**
   * Addressed mode: the UID in text order (MSB first); the frame carries it LSB first and only that tag answers.
   * Omit it for non-addressed mode, where every tag in the field answers (fine with one tag, wrong with several).
   */
  readonly uid?: Uint8Array;
  /** Selected mode: only the tag put into the selected state earlier answers. Cannot be combined with `uid`. */
  readonly selected?: boolean;
  /** Ask for the high data rate (flag 0x02). Default true, except for AUTHENTICATE. */
  readonly highDataRate?: boolean;
}

/** Options of {@link buildIso15693Inventory}. */
export interface Iso15693InventoryOptions extends Iso15693FrameOptions {
  /** Only tags with this application family identifier answer. Default: any. */
  readonly afi?: number;
  /** Ask for the high data rate. Default true. */
  readonly highDataRate?: boolean;
}

/** Options of the block reads. */
export interface Iso15693ReadOptions extends Iso15693RequestOptions {
  /** Set the option flag, so that the tag returns each block's security status byte before its data. */
  readonly withSecurityStatus?: boolean;
}

/** Options of {@link buildTam1Authenticate}. */
export interface Tam1AuthenticateOptions extends Iso15693RequestOptions {
  /** The key slot. Default {@link VIVOKEY_TAM1_KEY_ID} (2). */
  readonly keyId?: number;
  /** Set the option flag (VivoKey's iOS client does, its Android client does not). Default false. */
  readonly option?: boolean;
}

/**
 * INVENTORY with one slot and no mask: `26 01 00` (flags: inventory, one slot, high data rate; mask length 0). With
 * one tag in the field it answers with its DSFID and UID.
 */
export function buildIso15693Inventory(options: Iso15693InventoryOptions = {}): Uint8Array {
  let flags = Iso15693RequestFlag.Inventory | Iso15693RequestFlag.OneSlot;
  if (options.highDataRate ?? true) flags |= Iso15693RequestFlag.HighDataRate;
  const bytes = [flags, Iso15693Command.Inventory];
  if (options.afi !== undefined) {
    assertInteger('The AFI', options.afi, 0, 0xff);
    bytes[0]! |= Iso15693RequestFlag.Afi;
    bytes.push(options.afi);
  }
  bytes.push(0x00);
  return finish(Uint8Array.from(bytes), options);
}

/** READ SINGLE BLOCK of `block` (0–255): `22 20 <UID LSB first> <block>` when addressed. */
export function buildIso15693ReadSingleBlock(block: number, options: Iso15693ReadOptions = {}): Uint8Array {
  assertInteger('The block number', block, 0, 0xff);
  return request(Iso15693Command.ReadSingleBlock, [], [block], options, options.withSecurityStatus ?? false);
}

/**
 * READ MULTIPLE BLOCKS: `count` blocks from `firstBlock`. The count goes on air minus one, so one request reads 1 to
 * 256 blocks; ICODE DNA answers at most as many as its memory has.
 */
export function buildIso15693ReadMultipleBlocks(
  firstBlock: number,
  count: number,
  options: Iso15693ReadOptions = {},
): Uint8Array {
  assertInteger('The first block number', firstBlock, 0, 0xff);
  assertInteger('The block count', count, 1, 0x100 - firstBlock);
  return request(
    Iso15693Command.ReadMultipleBlocks,
    [],
    [firstBlock, count - 1],
    options,
    options.withSecurityStatus ?? false,
  );
}

/** GET SYSTEM INFORMATION: `22 2B <UID LSB first>` when addressed. */
export function buildIso15693GetSystemInformation(options: Iso15693RequestOptions = {}): Uint8Array {
  return request(Iso15693Command.GetSystemInformation, [], [], options, false);
}

/**
 * NXP READ SIGNATURE (custom command 0xBD): `22 BD 04 <UID LSB first>` when addressed. As in every NXP custom
 * command, the manufacturer code comes before the UID.
 */
export function buildIso15693ReadSignature(options: Iso15693RequestOptions = {}): Uint8Array {
  return request(Iso15693Command.NxpReadSignature, [NXP_MANUFACTURER_CODE], [], options, false);
}

/**
 * The 12-byte TAM1 message of AUTHENTICATE (ISO/IEC 29167-10): one byte holding AuthMethod `00` (TAM), CustomData
 * `0` and five RFU bits, then KeyID, then the 10-byte IChallenge as given.
 */
export function buildTam1Message(keyId: number, ichallenge: Uint8Array): Uint8Array {
  assertInteger('The TAM1 key id', keyId, 0, 0xff);
  assertLength('A TAM1 IChallenge', ichallenge, TAM1_ICHALLENGE_LENGTH);
  const message = new Uint8Array(TAM1_MESSAGE_LENGTH);
  message[0] = 0x00;
  message[1] = keyId;
  message.set(ichallenge, 2);
  return message;
}

/**
 * AUTHENTICATE (0x35) with crypto suite AES-128 and a TAM1 message: `20 35 <UID LSB first> 00 00 02 <IChallenge>`
 * with the defaults and a UID, byte for byte the frame VivoKey's Android client sends. The command is standard
 * ISO 15693-3, so no manufacturer byte follows the command code.
 *
 * The data rate defaults to low (flags 0x20) because that is the frame known to work against VivoKey's service; set
 * `highDataRate` for readers that cannot receive the slow rate.
 */
export function buildTam1Authenticate(ichallenge: Uint8Array, options: Tam1AuthenticateOptions = {}): Uint8Array {
  const message = buildTam1Message(options.keyId ?? VIVOKEY_TAM1_KEY_ID, ichallenge);
  return request(
    Iso15693Command.Authenticate,
    [],
    [Iso15693CryptoSuite.Aes128, ...message],
    { ...options, highDataRate: options.highDataRate ?? false },
    options.option ?? false,
  );
}

/** `flags command [beforeUid] [UID] [params]`, with the addressing flags from `options`. */
function request(
  command: number,
  beforeUid: readonly number[],
  params: readonly number[],
  options: Iso15693RequestOptions,
  option: boolean,
): Uint8Array {
  if (options.uid !== undefined && options.selected === true) {
    throw invalidArgument(
      'A request is either addressed (uid) or for the selected tag (selected), not both.',
      'Pass a uid to address one tag, or selected: true after a SELECT, but not both.',
    );
  }
  let flags = 0;
  if (options.highDataRate ?? true) flags |= Iso15693RequestFlag.HighDataRate;
  if (options.uid !== undefined) flags |= Iso15693RequestFlag.Address;
  if (options.selected === true) flags |= Iso15693RequestFlag.Select;
  if (option) flags |= Iso15693RequestFlag.Option;
  const uid = options.uid === undefined ? [] : [...iso15693UidToAir(options.uid)];
  return finish(Uint8Array.from([flags, command, ...beforeUid, ...uid, ...params]), options);
}

function finish(frame: Uint8Array, options: Iso15693FrameOptions): Uint8Array {
  return options.crc === true ? appendIso15693Crc(frame) : frame;
}
