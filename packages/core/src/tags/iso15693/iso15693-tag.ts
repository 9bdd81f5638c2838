/**
 * {@link Iso15693Tag}: the ISO 15693 commands Tapline needs, run over a frame exchange.
 *
 * @packageDocumentation
 */
import { Capability } from '../../model/capabilities.js';
import { ErrorCode, toTaplineError } from '../../model/errors.js';
import type { Tag } from '../../model/tag.js';
import { tagExchange, type ExchangeOptions, type FrameExchange } from '../channel.js';
import { appendIso15693Crc } from './crc.js';
import {
  buildIso15693GetSystemInformation,
  buildIso15693Inventory,
  buildIso15693ReadMultipleBlocks,
  buildIso15693ReadSignature,
  buildIso15693ReadSingleBlock,
  buildTam1Authenticate,
  type Iso15693RequestOptions,
} from './frames.js';
import { invalidArgument } from './internal.js';
import {
  ICODE_BLOCK_SIZE,
  parseIso15693Inventory,
  parseIso15693ReadMultipleBlocks,
  parseIso15693ReadSignature,
  parseIso15693ReadSingleBlock,
  parseIso15693SystemInformation,
  parseTam1Authenticate,
  type Iso15693BlockReply,
  type Iso15693BlocksReply,
  type Iso15693InventoryReply,
  type Iso15693ParseOptions,
  type Iso15693SignatureReply,
  type Iso15693SystemInformation,
  type Tam1AuthenticateReply,
} from './replies.js';
import { ISO15693_UID_LENGTH } from './uid.js';

/** Options of {@link Iso15693Tag}. */
export interface Iso15693TagOptions {
  /** The tag's UID in text order (MSB first). Required for addressed mode. */
  readonly uid?: Uint8Array;
  /** Address every command (except INVENTORY) to `uid`. Default: true when a UID is given. */
  readonly addressed?: boolean;
  /** Ask for the high data rate. Default true; AUTHENTICATE keeps its own default (low), see `authenticate`. */
  readonly highDataRate?: boolean;
  /** The exchange carries raw frames: append the CRC to requests and check and strip it on replies. Default false. */
  readonly rawCrc?: boolean;
  /** Bytes per block for the block reads. Default {@link ICODE_BLOCK_SIZE} (4). */
  readonly blockSize?: number;
}

/** Options of {@link Iso15693Tag.readBlock} and {@link Iso15693Tag.readBlocks}. */
export interface Iso15693ReadCallOptions extends ExchangeOptions {
  /** Ask for each block's security status byte. Default false. */
  readonly withSecurityStatus?: boolean;
}

/** Options of {@link Iso15693Tag.authenticate}. */
export interface Tam1AuthenticateCallOptions extends ExchangeOptions {
  /** Set the option flag. Default false (the frame VivoKey's Android client sends). */
  readonly option?: boolean;
  /** Ask for the high data rate. Default false (the same frame). */
  readonly highDataRate?: boolean;
}

/**
 * The ISO 15693 commands of an ICODE DNA (VivoKey Spark 1), each sent as one frame and parsed into a typed result.
 * Commands are addressed to the tag's UID by default; failures are `TaplineError`s (`TAG_STATUS` for an error reply,
 * `PROTOCOL_ERROR` for a malformed one, and whatever the exchange raises: `TIMEOUT`, `TAG_LOST`, …).
 */
export class Iso15693Tag {
  /** Frames sent so far (identification reports its cost with it). */
  exchanges = 0;
  /** The UID in text order, when known. */
  readonly uid: Uint8Array | undefined;
  readonly #exchange: FrameExchange;
  readonly #addressed: boolean;
  readonly #highDataRate: boolean;
  readonly #rawCrc: boolean;
  readonly #blockSize: number;

  /**
   * Wraps a frame exchange. Fails with `INVALID_ARGUMENT` for a UID that is not 8 bytes, or addressed mode without
   * one.
   *
   * @param exchange - sends one frame and returns the reply, such as `tagExchange(tag, 'iso15693')`.
   */
  constructor(exchange: FrameExchange, options: Iso15693TagOptions = {}) {
    if (options.uid !== undefined && options.uid.length !== ISO15693_UID_LENGTH) {
      throw invalidArgument(`An ISO 15693 UID must be 8 bytes, not ${options.uid.length}.`);
    }
    this.#addressed = options.addressed ?? options.uid !== undefined;
    if (this.#addressed && options.uid === undefined) {
      throw invalidArgument(
        'Addressed mode needs the tag UID.',
        'Pass uid (MSB first, as in TagInfo.uid), or addressed: false to talk to whichever tag is in the field.',
      );
    }
    this.#exchange = exchange;
    this.uid = options.uid === undefined ? undefined : Uint8Array.from(options.uid);
    this.#highDataRate = options.highDataRate ?? true;
    this.#rawCrc = options.rawCrc ?? false;
    this.#blockSize = options.blockSize ?? ICODE_BLOCK_SIZE;
  }

  /**
   * An {@link Iso15693Tag} for a tag on a reader, addressed to its UID and sending through
   * `tag.reader.transmit(tag, 'iso15693', …)` (the reader handles the CRC).
   */
  static fromTag(tag: Tag, options: Omit<Iso15693TagOptions, 'uid' | 'rawCrc'> = {}): Iso15693Tag {
    if (tag.technology !== 'iso15693') {
      throw invalidArgument(
        `The tag on ${tag.readerName} is an ${tag.technology} tag, not ISO 15693.`,
        'Spark 1 (ICODE DNA) implants answer on ISO 15693; use the ISO 14443 commands for other chips.',
      );
    }
    return new Iso15693Tag(tagExchange(tag, Capability.Iso15693), { ...options, uid: tag.uid });
  }

  /** INVENTORY (one slot, never addressed): the DSFID and UID of the tag in the field. */
  async inventory(options: ExchangeOptions & { readonly afi?: number } = {}): Promise<Iso15693InventoryReply> {
    const frame = buildIso15693Inventory({
      highDataRate: this.#highDataRate,
      ...(options.afi === undefined ? {} : { afi: options.afi }),
    });
    return parseIso15693Inventory(await this.#send(frame, 'INVENTORY', options), this.#parse());
  }

  /** READ SINGLE BLOCK `block` (0–255). */
  async readBlock(block: number, options: Iso15693ReadCallOptions = {}): Promise<Iso15693BlockReply> {
    const withSecurityStatus = options.withSecurityStatus ?? false;
    const frame = buildIso15693ReadSingleBlock(block, { ...this.#request(), withSecurityStatus });
    const reply = await this.#send(frame, 'READ SINGLE BLOCK', options);
    return parseIso15693ReadSingleBlock(reply, { ...this.#parse(), blockSize: this.#blockSize, withSecurityStatus });
  }

  /** READ MULTIPLE BLOCKS: `count` blocks from `firstBlock`, in one exchange. */
  async readBlocks(
    firstBlock: number,
    count: number,
    options: Iso15693ReadCallOptions = {},
  ): Promise<Iso15693BlocksReply> {
    const withSecurityStatus = options.withSecurityStatus ?? false;
    const frame = buildIso15693ReadMultipleBlocks(firstBlock, count, { ...this.#request(), withSecurityStatus });
    const reply = await this.#send(frame, 'READ MULTIPLE BLOCKS', options);
    return parseIso15693ReadMultipleBlocks(reply, count, {
      ...this.#parse(),
      blockSize: this.#blockSize,
      withSecurityStatus,
    });
  }

  /** GET SYSTEM INFORMATION: UID, DSFID, AFI, memory size and IC reference, as far as the tag reports them. */
  async getSystemInfo(options: ExchangeOptions = {}): Promise<Iso15693SystemInformation> {
    const frame = buildIso15693GetSystemInformation(this.#request());
    return parseIso15693SystemInformation(await this.#send(frame, 'GET SYSTEM INFORMATION', options), this.#parse());
  }

  /** NXP READ SIGNATURE: the 32-byte originality signature (on a Spark 1, signed by VivoKey). */
  async readSignature(options: ExchangeOptions = {}): Promise<Iso15693SignatureReply> {
    const frame = buildIso15693ReadSignature(this.#request());
    return parseIso15693ReadSignature(await this.#send(frame, 'READ SIGNATURE', options), this.#parse());
  }

  /**
   * AUTHENTICATE with crypto suite AES-128 and a TAM1 message: the tag encrypts `ichallenge` (10 bytes) under key
   * `keyId` (VivoKey: 2) and returns the TResponse. Checking it needs the key, which VivoKey's server holds; the
   * reply's `reply` field is what its `/session` endpoint takes.
   */
  async authenticate(
    keyId: number,
    ichallenge: Uint8Array,
    options: Tam1AuthenticateCallOptions = {},
  ): Promise<Tam1AuthenticateReply> {
    const frame = buildTam1Authenticate(ichallenge, {
      ...this.#request(),
      keyId,
      highDataRate: options.highDataRate ?? false,
      option: options.option ?? false,
    });
    return parseTam1Authenticate(await this.#send(frame, 'AUTHENTICATE', options), this.#parse());
  }

  #request(): Iso15693RequestOptions {
    return this.#addressed && this.uid !== undefined
      ? { uid: this.uid, highDataRate: this.#highDataRate }
      : { highDataRate: this.#highDataRate };
  }

  #parse(): Iso15693ParseOptions {
    return { crc: this.#rawCrc };
  }

  async #send(frame: Uint8Array, command: string, options: ExchangeOptions): Promise<Uint8Array> {
    const exchangeOptions: ExchangeOptions = {
      ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    };
    this.exchanges += 1;
    try {
      return await this.#exchange(this.#rawCrc ? appendIso15693Crc(frame) : frame, exchangeOptions);
    } catch (error) {
      // Readers already throw TaplineErrors; a hand-written exchange (simulator, test) might not.
      throw toTaplineError(error, ErrorCode.ProtocolError, `The ${command} exchange failed: ${describe(error)}`);
    }
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
