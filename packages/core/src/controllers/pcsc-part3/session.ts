/**
 * {@link Part3Session}: a PC/SC Part 3 transparent session over one card connection, and {@link probePart3}, the
 * version-object probe that tells a Part 3 reader from one without `FF C2`.
 *
 * @packageDocumentation
 */
import { ErrorCode, TaplineError, hasErrorCode, isTaplineError } from '../../model/errors.js';
import type { Logger } from '../../runtime/logger.js';
import type { PcscCard } from '../../transport/pcsc.js';
import { stripCrcA } from '../pn53x/crc.js';
import {
  Part3Flag,
  Part3Layer,
  Part3Standard,
  part3EndSessionCommand,
  part3RfCommand,
  part3StartSessionCommand,
  part3SwitchProtocolCommand,
  part3TransceiveCommand,
  part3VersionCommand,
  type Part3TransceiveOptions,
} from './commands.js';
import {
  checkPart3Response,
  parsePart3Response,
  part3Answer,
  type Part3Answer,
  type Part3Context,
  type Part3Response,
  type Part3Version,
} from './response.js';

/** Options of {@link Part3Session}. */
export interface Part3SessionOptions {
  /** The reader's name, for messages. */
  readonly readerName: string;
  /** How long one APDU may take, in milliseconds. */
  readonly timeoutMs: number;
  /**
   * Idle time after the last exchange before the session is ended, in milliseconds; default 250. A reader inside a
   * transparent session leaves the tag to the host, so it may stop noticing its removal: the session is closed as
   * soon as nobody uses it. Tag state that a new switch-protocol resets (a Type 2 PWD_AUTH) does not outlive it.
   */
  readonly idleEndMs?: number;
  /** Traces every APDU at `trace` level when given. */
  readonly logger?: Logger;
}

/** Options of {@link Part3Session.exchange}. */
export interface Part3ExchangeOptions extends Part3TransceiveOptions {
  /** The standard to switch to (see `Part3Standard`). */
  readonly standard: number;
  /** The layer to switch to (see `Part3Layer`). */
  readonly layer: number;
  readonly signal?: AbortSignal;
}

/** Per-call options of the session's single steps. */
export interface Part3CallOptions {
  readonly signal?: AbortSignal;
}

const DEFAULT_IDLE_END_MS = 250;

/**
 * Type 2 commands whose only answer is a 4-bit ACK or NAK: WRITE `A2`, COMPATIBILITY WRITE `A0`, WRITE_SIG `A9`,
 * LOCK_SIG `AC`, SECTOR_SELECT `C2`.
 */
export const ISO14443A_ACK_COMMANDS: ReadonlySet<number> = new Set([0xa2, 0xa0, 0xa9, 0xac, 0xc2]);
/** How long the tag may take to answer a raw Type A frame (a Type 2 WRITE needs about 5 ms). */
const ISO14443A_TIMEOUT_US = 50_000;
/** How long an ISO 15693 tag may take; the crypto commands (AUTHENTICATE) get more. */
const ISO15693_TIMEOUT_US = 100_000;
const ISO15693_CRYPTO_TIMEOUT_US = 300_000;
const ISO15693_CRYPTO_COMMANDS: ReadonlySet<number> = new Set([0x35, 0x39, 0x3a]);

/** Errors after which the connection (or the tag) is gone, so there is no session to end any more. */
function connectionGone(error: unknown): boolean {
  return (
    hasErrorCode(error, ErrorCode.TagLost) ||
    hasErrorCode(error, ErrorCode.ReaderGone) ||
    hasErrorCode(error, ErrorCode.TransportUnavailable)
  );
}

/**
 * A transparent session on one card connection (readers.md §4.1). Every step is one `FF C2` APDU, checked with
 * `checkPart3Response`; the steps run one at a time. {@link Part3Session.exchange} starts the session and switches
 * the protocol on first use, and the session ends itself after `idleEndMs` without exchanges (or on
 * {@link Part3Session.close}).
 */
export class Part3Session {
  readonly #card: PcscCard;
  readonly #options: Part3SessionOptions;
  readonly #idleEndMs: number;
  #queue: Promise<unknown> = Promise.resolve();
  #active = false;
  /** `standard:layer` after a successful switch, until the session ends or a switch fails. */
  #protocol: string | undefined;
  #idleTimer: NodeJS.Timeout | undefined;
  #closed = false;
  /** The layer an ISO 15693 switch worked with on this connection. */
  #iso15693Layer: number | undefined;

  constructor(card: PcscCard, options: Part3SessionOptions) {
    this.#card = card;
    this.#options = options;
    this.#idleEndMs = Math.max(0, options.idleEndMs ?? DEFAULT_IDLE_END_MS);
  }

  /** True between a successful start and the end of the session. */
  get active(): boolean {
    return this.#active;
  }

  /** The version data object (`80`): undefined when the reader answers `90 00` without one. */
  version(options: Part3CallOptions = {}): Promise<Part3Version | undefined> {
    return this.#run(async () => {
      const response = await this.#send(part3VersionCommand(), 'the Part 3 version request', options.signal);
      return response.version;
    });
  }

  /** Starts the transparent session. */
  start(options: Part3CallOptions = {}): Promise<void> {
    return this.#run(() => this.#start(options.signal));
  }

  /** Ends the transparent session (the reader resumes its own polling). */
  end(options: Part3CallOptions = {}): Promise<void> {
    return this.#run(() => this.#end(options.signal));
  }

  /** Switches the field on or off (inside a session only). */
  rf(on: boolean, options: Part3CallOptions = {}): Promise<void> {
    return this.#run(async () => {
      await this.#send(part3RfCommand(on), `switching the field ${on ? 'on' : 'off'}`, options.signal);
      if (!on) this.#protocol = undefined;
    });
  }

  /** Switches to `standard` and `layer` (inside a session only); returns the response for its result objects. */
  switchProtocol(standard: number, layer: number, options: Part3CallOptions = {}): Promise<Part3Response> {
    return this.#run(() => this.#switch(standard, layer, options.signal));
  }

  /** One transceive inside the session as it stands. */
  transceive(frame: Uint8Array, options: Part3TransceiveOptions & Part3CallOptions = {}): Promise<Part3Answer> {
    return this.#run(() => this.#transceive(frame, options, options.signal));
  }

  /**
   * Starts the session and switches to `standard`/`layer` if that is not done yet, transceives `frame`, and ends the
   * session after `idleEndMs` unless another exchange follows.
   */
  exchange(frame: Uint8Array, options: Part3ExchangeOptions): Promise<Part3Answer> {
    this.#cancelIdleEnd();
    return this.#run(async () => {
      try {
        if (!this.#active) await this.#start(options.signal);
        const wanted = `${options.standard}:${options.layer}`;
        if (this.#protocol !== wanted) await this.#switch(options.standard, options.layer, options.signal);
        return await this.#transceive(frame, options, options.signal);
      } finally {
        this.#scheduleIdleEnd();
      }
    });
  }

  /**
   * A raw ISO 14443-A frame (Type 2 commands) to the tag at layer 3; the reader appends the CRC_A. As readers.md §4.1
   * suggests, the reader checks and strips the answer's CRC, except for the commands that answer nothing but a 4-bit
   * ACK/NAK ({@link ISO14443A_ACK_COMMANDS}): for those RX-CRC checking is off (`90 02 00 02`), so that the nibble
   * is not refused as a CRC error, and a longer answer's CRC_A is checked here. A 4-bit answer comes back as one byte.
   */
  async iso14443aRaw(frame: Uint8Array, options: Part3CallOptions = {}): Promise<Uint8Array> {
    const ackOnly = ISO14443A_ACK_COMMANDS.has(frame[0] ?? -1);
    const answer = await this.exchange(frame, {
      standard: Part3Standard.Iso14443A,
      layer: Part3Layer.Layer3,
      flags: ackOnly ? Part3Flag.NoRxCrc : 0,
      timeoutMicroseconds: ISO14443A_TIMEOUT_US,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    if (answer.data.length === 1 && answer.validBits === 4) return Uint8Array.of(answer.data[0]! & 0x0f);
    return ackOnly ? stripCrcA(answer.data) : answer.data.slice();
  }

  /**
   * An ISO 15693 request frame (flags first, no CRC) to the tag; the reader adds and checks the CRC. The switch goes to
   * layer 3 and, if the reader refuses that, to layer 2 (which one a reader wants is not documented).
   */
  async iso15693(frame: Uint8Array, options: Part3CallOptions = {}): Promise<Uint8Array> {
    const command = frame[1] ?? -1;
    const call = {
      standard: Part3Standard.Iso15693,
      flags: 0,
      timeoutMicroseconds: ISO15693_CRYPTO_COMMANDS.has(command) ? ISO15693_CRYPTO_TIMEOUT_US : ISO15693_TIMEOUT_US,
      ...(options.signal ? { signal: options.signal } : {}),
    };
    const layer = this.#iso15693Layer ?? Part3Layer.Layer3;
    try {
      const answer = await this.exchange(frame, { ...call, layer });
      this.#iso15693Layer = layer;
      return answer.data;
    } catch (error) {
      const refused =
        isTaplineError(error) &&
        error.details['object'] !== undefined &&
        (error.code === ErrorCode.ProtocolError || error.code === ErrorCode.UnsupportedCapability) &&
        this.#protocol === undefined;
      if (this.#iso15693Layer !== undefined || !refused) throw error;
      const answer = await this.exchange(frame, { ...call, layer: Part3Layer.Layer2 });
      this.#iso15693Layer = Part3Layer.Layer2;
      return answer.data;
    }
  }

  /** Ends the session if it is active (best effort) and refuses further use. Idempotent. */
  close(): Promise<void> {
    this.#cancelIdleEnd();
    const ending = this.#run(() => this.#endQuietly());
    this.#closed = true;
    return ending;
  }

  #context(what: string): Part3Context {
    return { reader: this.#options.readerName, what };
  }

  async #send(apdu: Uint8Array, what: string, signal: AbortSignal | undefined): Promise<Part3Response> {
    const logger = this.#options.logger;
    logger?.frame('>', apdu, { purpose: 'part3' });
    let response: Uint8Array;
    try {
      response = await this.#card.transmit(apdu, {
        timeoutMs: this.#options.timeoutMs,
        ...(signal ? { signal } : {}),
      });
    } catch (error) {
      if (connectionGone(error)) {
        this.#active = false;
        this.#protocol = undefined;
      }
      throw error;
    }
    logger?.frame('<', response, { purpose: 'part3' });
    return checkPart3Response(response, this.#context(what));
  }

  async #start(signal: AbortSignal | undefined): Promise<void> {
    await this.#send(part3StartSessionCommand(), 'starting a transparent session', signal);
    this.#active = true;
    this.#protocol = undefined;
  }

  async #end(signal: AbortSignal | undefined): Promise<void> {
    this.#protocol = undefined;
    try {
      await this.#send(part3EndSessionCommand(), 'ending the transparent session', signal);
    } finally {
      this.#active = false;
    }
  }

  async #endQuietly(): Promise<void> {
    if (!this.#active) return;
    try {
      await this.#end(undefined);
    } catch (error) {
      this.#options.logger?.debug('ending the transparent session failed', { error });
    }
  }

  async #switch(standard: number, layer: number, signal: AbortSignal | undefined): Promise<Part3Response> {
    this.#protocol = undefined;
    const response = await this.#send(part3SwitchProtocolCommand(standard, layer), 'switching the protocol', signal);
    this.#protocol = `${standard}:${layer}`;
    return response;
  }

  async #transceive(
    frame: Uint8Array,
    options: Part3TransceiveOptions,
    signal: AbortSignal | undefined,
  ): Promise<Part3Answer> {
    const what = 'a transparent exchange';
    const response = await this.#send(part3TransceiveCommand(frame, options), what, signal);
    return part3Answer(response, this.#context(what));
  }

  #run<T>(operation: () => Promise<T>): Promise<T> {
    if (this.#closed) {
      return Promise.reject(
        new TaplineError(ErrorCode.TagLost, `The transparent session on ${this.#options.readerName} was closed.`),
      );
    }
    const run = this.#queue.then(operation, operation);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  #scheduleIdleEnd(): void {
    this.#cancelIdleEnd();
    if (this.#closed) return;
    const end = (): void => {
      this.#idleTimer = undefined;
      if (!this.#closed) void this.#run(() => this.#endQuietly());
    };
    if (this.#idleEndMs === 0) {
      void this.#queue.then(end);
      return;
    }
    this.#idleTimer = setTimeout(end, this.#idleEndMs);
    this.#idleTimer.unref();
  }

  #cancelIdleEnd(): void {
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
  }
}

const sessions = new WeakMap<PcscCard, Part3Session>();

/**
 * The {@link Part3Session} of `card`, made on first use with `options` (later options are ignored). Keyed by the
 * connection, so a new connection (a new tag) gets a new session.
 */
export function part3SessionFor(card: PcscCard, options: Part3SessionOptions): Part3Session {
  let session = sessions.get(card);
  if (!session) {
    session = new Part3Session(card, options);
    sessions.set(card, session);
  }
  return session;
}

/** What {@link probePart3} found. */
export type Part3Probe =
  | { readonly supported: true; readonly version: Part3Version | undefined }
  | { readonly supported: false; readonly reason: TaplineError };

/** Options of {@link probePart3}. */
export interface Part3ProbeOptions {
  readonly readerName: string;
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
  readonly logger?: Logger;
}

/**
 * Sends the version request `FF C2 00 00 02 80 00 00` once. A reader that answers with a `C0` status object speaks
 * Part 3 (whatever the status: a reader without the version object still has sessions); an error status word or an
 * answer that is no Part 3 response means it does not. Errors that say nothing about the reader (the tag left, a
 * timeout, an abort, the reader or pcscd gone) are thrown, so that the caller can ask again later.
 */
export async function probePart3(card: PcscCard, options: Part3ProbeOptions): Promise<Part3Probe> {
  const context = { reader: options.readerName, what: 'the Part 3 version request' };
  const apdu = part3VersionCommand();
  options.logger?.frame('>', apdu, { purpose: 'part3-probe' });
  const response = await card.transmit(apdu, {
    timeoutMs: options.timeoutMs,
    ...(options.signal ? { signal: options.signal } : {}),
  });
  options.logger?.frame('<', response, { purpose: 'part3-probe' });
  try {
    const parsed = parsePart3Response(response, context);
    return { supported: true, version: parsed.status.sw === 0x9000 ? parsed.version : undefined };
  } catch (error) {
    if (isTaplineError(error)) return { supported: false, reason: error };
    throw error;
  }
}
