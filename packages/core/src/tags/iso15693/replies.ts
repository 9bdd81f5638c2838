/**
 * ISO 15693 reply parsing. Every parser takes the reply as the reader hands it back (flags first, no CRC; pass
 * `crc: true` when it still ends with one), returns a typed result, and otherwise throws a `TaplineError`:
 * `TAG_STATUS` for an error reply, `PROTOCOL_ERROR` for a reply that is truncated, too long or carries flags the
 * command does not use, `INTEGRITY_ERROR` for a wrong CRC.
 *
 * @packageDocumentation
 */
import { ErrorCode, TaplineError } from '../../model/errors.js';
import { stripIso15693Crc } from './crc.js';
import {
  ISO15693_CRYPTO_RESPONSE_FLAGS,
  Iso15693ErrorCode,
  Iso15693InfoFlag,
  Iso15693ResponseFlag,
  describeIso15693Error,
} from './flags.js';
import { assertInteger, formatByte, replyError } from './internal.js';
import { ISO15693_UID_LENGTH, iso15693UidFromAir } from './uid.js';

/** Bytes in an ICODE block, the default block size of the block parsers. */
export const ICODE_BLOCK_SIZE = 4;

/** Bytes in the NXP originality signature returned by READ SIGNATURE. */
export const ISO15693_SIGNATURE_LENGTH = 32;

/** Bytes in a TAM1 TResponse. */
export const TAM1_TRESPONSE_LENGTH = 16;

/** Command names as they appear in error messages and `details.command`. */
export const Iso15693CommandName = {
  Inventory: 'INVENTORY',
  ReadSingleBlock: 'READ SINGLE BLOCK',
  ReadMultipleBlocks: 'READ MULTIPLE BLOCKS',
  GetSystemInformation: 'GET SYSTEM INFORMATION',
  ReadSignature: 'READ SIGNATURE',
  Authenticate: 'AUTHENTICATE',
} as const;

/** Options every parser takes. */
export interface Iso15693ParseOptions {
  /** The reply still ends with its CRC: check it and strip it first. Default false (the reader checked it). */
  readonly crc?: boolean;
}

/** Options of the block-read parsers. */
export interface Iso15693BlockParseOptions extends Iso15693ParseOptions {
  /** Bytes per block, 1–32. Default {@link ICODE_BLOCK_SIZE} (4). */
  readonly blockSize?: number;
  /** The request set the option flag, so each block starts with its security status byte. Default false. */
  readonly withSecurityStatus?: boolean;
}

/** The answer to INVENTORY. */
export interface Iso15693InventoryReply {
  /** Response flags (0 for a plain reply). */
  readonly flags: number;
  /** Data storage format identifier. */
  readonly dsfid: number;
  /** The UID in text order (MSB first). */
  readonly uid: Uint8Array;
}

/** One block of a read. */
export interface Iso15693Block {
  /** The block security status (bit 0 set: locked), present when the request asked for it. */
  readonly securityStatus?: number;
  /** The block's bytes. */
  readonly data: Uint8Array;
}

/** The answer to READ SINGLE BLOCK. */
export interface Iso15693BlockReply extends Iso15693Block {
  /** Response flags. */
  readonly flags: number;
}

/** The answer to READ MULTIPLE BLOCKS. */
export interface Iso15693BlocksReply {
  /** Response flags. */
  readonly flags: number;
  /** The blocks, in order from the first block requested. */
  readonly blocks: readonly Iso15693Block[];
  /** All block data concatenated, without security status bytes. */
  readonly data: Uint8Array;
}

/** Memory size from GET SYSTEM INFORMATION. */
export interface Iso15693MemorySize {
  /** Number of blocks (1–256). */
  readonly blockCount: number;
  /** Bytes per block (1–32). */
  readonly blockSize: number;
}

/** The answer to GET SYSTEM INFORMATION; the optional fields are present when the information flags say so. */
export interface Iso15693SystemInformation {
  /** Response flags. */
  readonly flags: number;
  /** The information flags, see {@link Iso15693InfoFlag}. */
  readonly infoFlags: number;
  /** The UID in text order (MSB first). */
  readonly uid: Uint8Array;
  /** Data storage format identifier. */
  readonly dsfid?: number;
  /** Application family identifier. */
  readonly afi?: number;
  /** Memory organisation. */
  readonly memory?: Iso15693MemorySize;
  /** IC reference (manufacturer-defined chip revision). */
  readonly icReference?: number;
}

/** The answer to NXP READ SIGNATURE. */
export interface Iso15693SignatureReply {
  /** Response flags. */
  readonly flags: number;
  /** The 32-byte signature as the tag sends it. */
  readonly signature: Uint8Array;
}

/** The answer to AUTHENTICATE with a TAM1 message. */
export interface Tam1AuthenticateReply {
  /** Response flags. */
  readonly flags: number;
  /** Flag 0x02: the tag's response buffer holds a valid result. */
  readonly responseBufferValid: boolean;
  /** Flag 0x04: this is the final reply. */
  readonly finalResponse: boolean;
  /** Flag 0x40: the tag asked for more time. */
  readonly waitTimeExtension: boolean;
  /**
   * The byte between the flags and the TResponse. Its meaning is not public; VivoKey's iOS client drops it before
   * posting the TResponse to the legacy API.
   */
  readonly leadingByte: number;
  /** The 16-byte TResponse, as sent. */
  readonly tresponse: Uint8Array;
  /** The whole reply without CRC, flags included: what VivoKey's `/session` endpoint takes. */
  readonly reply: Uint8Array;
}

/**
 * The `TAG_STATUS` error for ISO 15693 error `code` in reply to `command`; `details.iso15693Error` holds the code
 * as a number.
 */
export function iso15693StatusError(command: string, code: number): TaplineError {
  const meaning = describeIso15693Error(code);
  return new TaplineError(
    ErrorCode.TagStatus,
    `The tag refused ${command} with ISO 15693 error ${formatByte(code)} (${meaning}).`,
    { details: { command, iso15693Error: code, meaning }, hint: statusHint(command, code) },
  );
}

function statusHint(command: string, code: number): string {
  switch (code) {
    case Iso15693ErrorCode.NotSupported:
    case Iso15693ErrorCode.NotRecognised:
      return `This tag does not implement ${command}: check that it is the chip you expect (a VivoKey Spark 1 is an NXP ICODE DNA).`;
    case Iso15693ErrorCode.OptionNotSupported:
      return `Retry ${command} without the option flag (for block reads: without block security status).`;
    case Iso15693ErrorCode.BlockNotAvailable:
      return 'The block is outside the tag memory or read-protected: GET SYSTEM INFORMATION gives the number of blocks.';
    case Iso15693ErrorCode.BlockAlreadyLocked:
    case Iso15693ErrorCode.BlockLocked:
    case Iso15693ErrorCode.BlockNotProgrammed:
    case Iso15693ErrorCode.BlockNotLocked:
      return 'The block is locked or the tag could not program it; locked blocks never change again.';
    default:
      if (command === Iso15693CommandName.Authenticate) {
        return 'The tag gave no usable reason. Check the key id (VivoKey uses 2) and that a fresh 10-byte IChallenge was sent, then try again.';
      }
      return 'The tag gave no usable reason: hold it still on the reader and try again.';
  }
}

/**
 * Checks the flags of a reply to `command` and returns them: an error reply becomes `TAG_STATUS` (or
 * `PROTOCOL_ERROR` if it is not exactly flags plus one code byte), an empty reply or flags outside `allowedFlags`
 * (plain commands allow none) become `PROTOCOL_ERROR`.
 */
export function assertIso15693Reply(reply: Uint8Array, command: string, allowedFlags = 0): number {
  if (reply.length === 0) throw replyError(command, 'is empty', reply);
  const flags = reply[0]!;
  if (flags & Iso15693ResponseFlag.Error) {
    if (reply.length !== 2) {
      throw replyError(
        command,
        `sets the error flag but is ${reply.length} bytes long, not 2 (flags, error code)`,
        reply,
      );
    }
    throw iso15693StatusError(command, reply[1]!);
  }
  const unexpected = flags & ~allowedFlags;
  if (unexpected !== 0) {
    throw replyError(command, `has response flags ${formatByte(flags)}, which ${command} does not use`, reply, {
      flags,
    });
  }
  return flags;
}

function prepare(reply: Uint8Array, command: string, options: Iso15693ParseOptions): Uint8Array {
  return options.crc === true ? stripIso15693Crc(reply, `the reply to ${command}`) : reply;
}

function expectLength(reply: Uint8Array, command: string, expected: number, layout: string): void {
  if (reply.length !== expected) {
    const problem = reply.length < expected ? 'is truncated' : 'is too long';
    throw replyError(command, `${problem}: ${reply.length} bytes instead of ${expected} (${layout})`, reply, {
      expectedLength: expected,
    });
  }
}

/** Parses the answer to INVENTORY: flags, DSFID, UID (LSB first on air; returned MSB first). */
export function parseIso15693Inventory(reply: Uint8Array, options: Iso15693ParseOptions = {}): Iso15693InventoryReply {
  const command = Iso15693CommandName.Inventory;
  const body = prepare(reply, command, options);
  const flags = assertIso15693Reply(body, command);
  expectLength(body, command, 2 + ISO15693_UID_LENGTH, 'flags, DSFID, 8-byte UID');
  return { flags, dsfid: body[1]!, uid: iso15693UidFromAir(body.subarray(2)) };
}

function blockLayout(options: Iso15693BlockParseOptions): { blockSize: number; stride: number; status: boolean } {
  const blockSize = options.blockSize ?? ICODE_BLOCK_SIZE;
  assertInteger('The block size', blockSize, 1, 32);
  const status = options.withSecurityStatus ?? false;
  return { blockSize, stride: blockSize + (status ? 1 : 0), status };
}

function readBlock(body: Uint8Array, offset: number, status: boolean, blockSize: number): Iso15693Block {
  if (!status) return { data: body.slice(offset, offset + blockSize) };
  return { securityStatus: body[offset]!, data: body.slice(offset + 1, offset + 1 + blockSize) };
}

/** Parses the answer to READ SINGLE BLOCK: flags, [security status], block data. */
export function parseIso15693ReadSingleBlock(
  reply: Uint8Array,
  options: Iso15693BlockParseOptions = {},
): Iso15693BlockReply {
  const command = Iso15693CommandName.ReadSingleBlock;
  const { blockSize, stride, status } = blockLayout(options);
  const body = prepare(reply, command, options);
  const flags = assertIso15693Reply(body, command);
  expectLength(body, command, 1 + stride, `flags, ${status ? 'security status, ' : ''}${blockSize}-byte block`);
  return { flags, ...readBlock(body, 1, status, blockSize) };
}

/** Parses the answer to READ MULTIPLE BLOCKS for `count` blocks: flags, then per block [security status], data. */
export function parseIso15693ReadMultipleBlocks(
  reply: Uint8Array,
  count: number,
  options: Iso15693BlockParseOptions = {},
): Iso15693BlocksReply {
  const command = Iso15693CommandName.ReadMultipleBlocks;
  assertInteger('The block count', count, 1, 256);
  const { blockSize, stride, status } = blockLayout(options);
  const body = prepare(reply, command, options);
  const flags = assertIso15693Reply(body, command);
  expectLength(
    body,
    command,
    1 + count * stride,
    `flags, ${count} × (${status ? 'security status, ' : ''}${blockSize}-byte block)`,
  );
  const blocks: Iso15693Block[] = [];
  const data = new Uint8Array(count * blockSize);
  for (let i = 0; i < count; i++) {
    const block = readBlock(body, 1 + i * stride, status, blockSize);
    blocks.push(block);
    data.set(block.data, i * blockSize);
  }
  return { flags, blocks, data };
}

/**
 * Parses the answer to GET SYSTEM INFORMATION: flags, information flags, UID, then DSFID, AFI, memory size and IC
 * reference, each only when its information flag is set. Information flag bits 4–7 are RFU; they are kept in
 * `infoFlags`, and a reply with bytes beyond the fields the flags announce is rejected.
 */
export function parseIso15693SystemInformation(
  reply: Uint8Array,
  options: Iso15693ParseOptions = {},
): Iso15693SystemInformation {
  const command = Iso15693CommandName.GetSystemInformation;
  const body = prepare(reply, command, options);
  const flags = assertIso15693Reply(body, command);
  const fixed = 2 + ISO15693_UID_LENGTH;
  if (body.length < fixed) {
    throw replyError(
      command,
      `is truncated: ${body.length} bytes, at least ${fixed} needed (flags, info flags, UID)`,
      body,
    );
  }
  const infoFlags = body[1]!;
  const has = (flag: number): boolean => (infoFlags & flag) !== 0;
  const expected =
    fixed +
    (has(Iso15693InfoFlag.Dsfid) ? 1 : 0) +
    (has(Iso15693InfoFlag.Afi) ? 1 : 0) +
    (has(Iso15693InfoFlag.MemorySize) ? 2 : 0) +
    (has(Iso15693InfoFlag.IcReference) ? 1 : 0);
  expectLength(body, command, expected, `information flags ${formatByte(infoFlags)} announce ${expected} bytes`);
  let offset = fixed;
  const next = (): number => body[offset++]!;
  const uid = iso15693UidFromAir(body.subarray(2, fixed));
  const dsfid = has(Iso15693InfoFlag.Dsfid) ? next() : undefined;
  const afi = has(Iso15693InfoFlag.Afi) ? next() : undefined;
  let memory: Iso15693MemorySize | undefined;
  if (has(Iso15693InfoFlag.MemorySize)) {
    const blocks = next();
    const size = next();
    memory = { blockCount: blocks + 1, blockSize: (size & 0x1f) + 1 };
  }
  const icReference = has(Iso15693InfoFlag.IcReference) ? next() : undefined;
  return {
    flags,
    infoFlags,
    uid,
    ...(dsfid === undefined ? {} : { dsfid }),
    ...(afi === undefined ? {} : { afi }),
    ...(memory === undefined ? {} : { memory }),
    ...(icReference === undefined ? {} : { icReference }),
  };
}

/** Parses the answer to NXP READ SIGNATURE: flags and the 32-byte signature. */
export function parseIso15693ReadSignature(
  reply: Uint8Array,
  options: Iso15693ParseOptions = {},
): Iso15693SignatureReply {
  const command = Iso15693CommandName.ReadSignature;
  const body = prepare(reply, command, options);
  const flags = assertIso15693Reply(body, command);
  expectLength(body, command, 1 + ISO15693_SIGNATURE_LENGTH, 'flags, 32-byte signature');
  return { flags, signature: body.slice(1) };
}

/**
 * Parses the answer to AUTHENTICATE with a TAM1 message: flags, one byte of unpublished meaning, the 16-byte
 * TResponse. The ISO 15693-3:2019 crypto flags (response buffer valid, final response, wait time extension) are
 * accepted and reported; a reply of flags alone (the tag asked for more time and the reader did not pass on its
 * final reply) is a `PROTOCOL_ERROR`.
 */
export function parseTam1Authenticate(reply: Uint8Array, options: Iso15693ParseOptions = {}): Tam1AuthenticateReply {
  const command = Iso15693CommandName.Authenticate;
  const body = prepare(reply, command, options);
  const flags = assertIso15693Reply(body, command, ISO15693_CRYPTO_RESPONSE_FLAGS);
  const expected = 2 + TAM1_TRESPONSE_LENGTH;
  if (body.length === 1) {
    const why =
      flags & Iso15693ResponseFlag.WaitTimeExtension
        ? 'asks for more time (wait time extension) and carries no TResponse; the reader did not pass on the final reply'
        : 'carries only flags and no TResponse';
    throw replyError(command, why, body, { flags });
  }
  expectLength(body, command, expected, 'flags, one byte, 16-byte TResponse');
  return {
    flags,
    responseBufferValid: (flags & Iso15693ResponseFlag.ResponseBufferValid) !== 0,
    finalResponse: (flags & Iso15693ResponseFlag.FinalResponse) !== 0,
    waitTimeExtension: (flags & Iso15693ResponseFlag.WaitTimeExtension) !== 0,
    leadingByte: body[1]!,
    tresponse: body.slice(2),
    reply: Uint8Array.from(body),
  };
}
