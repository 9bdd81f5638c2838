import { ErrorCode, TaplineError } from '../../model/errors.js';
import type { ExchangeOptions, FrameExchange } from '../channel.js';
import { SHORT_MAX_DATA, encodeApdu, parseResponseApdu, type CommandApdu, type ResponseApdu } from './apdu.js';
import { SW_SUCCESS, statusWordError, type StatusWord } from './status.js';

/** Options of {@link ApduChannel}. */
export interface ApduChannelOptions {
  /** Use extended-length APDUs instead of command chaining for long data. Default false: many readers and NTAG 4xx refuse them. */
  readonly extendedLength?: boolean;
  /** Most GET RESPONSE rounds before giving up. Default 64. */
  readonly maxGetResponse?: number;
}

/** Options of one {@link ApduChannel.send}. */
export interface SendOptions extends ExchangeOptions {
  /** What the command is, for error messages ("SELECT NDEF application"). */
  readonly name?: string;
  /** Status words that count as success. Default `90 00`. */
  readonly expect?: readonly StatusWord[];
}

const CLA_CHAINING = 0x10;

/**
 * ISO 14443-4 / ISO 7816-4 APDU transport over a {@link FrameExchange}: fetches `61 xx` remainders with GET
 * RESPONSE, repeats a command once with the right Le on `6C xx`, and chains commands whose data exceed a short APDU.
 * It counts every frame it sends ({@link ApduChannel.exchanges}), which is how identification reports its cost.
 */
export class ApduChannel {
  /** Frames sent so far. */
  exchanges = 0;
  readonly #exchange: FrameExchange;
  readonly #options: ApduChannelOptions;

  constructor(exchange: FrameExchange, options: ApduChannelOptions = {}) {
    this.#exchange = exchange;
    this.#options = options;
  }

  /** Sends raw bytes as one frame and returns the raw answer (no status handling). */
  async raw(frame: Uint8Array, options?: ExchangeOptions): Promise<Uint8Array> {
    this.exchanges += 1;
    return this.#exchange(frame, options);
  }

  /**
   * Sends a command and returns the complete response, whatever its status: `61 xx` and `6C xx` are handled here,
   * everything else is for the caller to judge.
   */
  async transmit(
    command: CommandApdu,
    options: ExchangeOptions & { readonly name?: string } = {},
  ): Promise<ResponseApdu> {
    const name = options.name ?? `INS ${command.ins.toString(16).padStart(2, '0').toUpperCase()}`;
    const data = command.data ?? new Uint8Array();
    if (data.length > SHORT_MAX_DATA && !this.#options.extendedLength) {
      return this.chained(command, name, options);
    }
    let response = await this.once(command, name, options);
    if (response.sw >>> 8 === 0x6c) {
      // Wrong Le: the card says how many bytes it has; ask again exactly once.
      response = await this.once({ ...command, le: response.sw & 0xff || 256 }, name, options);
    }
    return this.collect(response, command.cla, name, options);
  }

  /**
   * Sends a command and returns its data when the status is one of `expect` (default `90 00`); any other status
   * fails with the typed error from {@link statusWordError}.
   */
  async send(command: CommandApdu, options: SendOptions = {}): Promise<Uint8Array> {
    const name = options.name ?? `INS ${command.ins.toString(16).padStart(2, '0').toUpperCase()}`;
    const response = await this.transmit(command, { ...options, name });
    if (!(options.expect ?? [SW_SUCCESS]).includes(response.sw)) throw statusWordError(response.sw, name);
    return response.data;
  }

  private async once(command: CommandApdu, name: string, options: ExchangeOptions): Promise<ResponseApdu> {
    const frame = encodeApdu(command, {
      extended: this.#options.extendedLength === true && (command.data?.length ?? 0) > SHORT_MAX_DATA,
    });
    return parseResponseApdu(await this.raw(frame, options), name);
  }

  private async collect(
    first: ResponseApdu,
    cla: number,
    name: string,
    options: ExchangeOptions,
  ): Promise<ResponseApdu> {
    let response = first;
    const parts: Uint8Array[] = [];
    const limit = this.#options.maxGetResponse ?? 64;
    for (let round = 0; response.sw >>> 8 === 0x61; round++) {
      if (round >= limit) {
        throw new TaplineError(
          ErrorCode.ProtocolError,
          `The tag kept answering 61 xx to ${name} after ${limit} GET RESPONSE rounds.`,
        );
      }
      parts.push(response.data);
      const available = response.sw & 0xff || 256;
      response = await this.once(
        { cla: cla & 0x03, ins: 0xc0, p1: 0, p2: 0, le: available },
        `GET RESPONSE for ${name}`,
        options,
      );
    }
    if (parts.length === 0) return response;
    parts.push(response.data);
    const total = parts.reduce((n, p) => n + p.length, 0);
    const data = new Uint8Array(total);
    let offset = 0;
    for (const part of parts) {
      data.set(part, offset);
      offset += part.length;
    }
    return { data, sw: response.sw };
  }

  private async chained(command: CommandApdu, name: string, options: ExchangeOptions): Promise<ResponseApdu> {
    const data = command.data ?? new Uint8Array();
    for (let offset = 0; ; offset += SHORT_MAX_DATA) {
      const chunk = data.subarray(offset, offset + SHORT_MAX_DATA);
      const last = offset + SHORT_MAX_DATA >= data.length;
      if (last) {
        const response = await this.once({ ...command, data: chunk }, name, options);
        return this.collect(response, command.cla, name, options);
      }
      const link = await this.once(
        { cla: command.cla | CLA_CHAINING, ins: command.ins, p1: command.p1, p2: command.p2, data: chunk },
        name,
        options,
      );
      if (link.sw !== SW_SUCCESS) throw statusWordError(link.sw, `${name} (chained part at byte ${offset})`);
    }
  }
}
