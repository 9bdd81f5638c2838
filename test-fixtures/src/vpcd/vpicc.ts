import { connect, type Socket } from 'node:net';
import { ErrorCode, TaplineError, toSpacedHex, type FrameCapability } from '@tapline/core';
import type { VirtualChip } from '../sim/virtual-chip.js';
import { powerCycle, type ReaderEmulation } from './emulation.js';

// ---------------------------------------------------------------------------------------------------------------
// The vpicc wire protocol (pcsc-stack.md §2)
// ---------------------------------------------------------------------------------------------------------------

/** Largest vpicc payload: the length prefix is 16 bits. */
export const VPICC_MAX_PAYLOAD = 0xffff;

/** The one-byte messages vpcd sends to the card. Only {@link VpiccControl.GetAtr} is answered. */
export const VpiccControl = {
  PowerOff: 0x00,
  PowerOn: 0x01,
  Reset: 0x02,
  GetAtr: 0x04,
} as const;

/**
 * One vpicc message: a big-endian 16-bit length, then the payload. Fails with `INVALID_ARGUMENT` for an empty payload
 * (vpcd 3.3 would wait forever in a zero-length receive) or one longer than {@link VPICC_MAX_PAYLOAD}.
 */
export function encodeVpiccFrame(payload: Uint8Array): Uint8Array {
  if (payload.length === 0 || payload.length > VPICC_MAX_PAYLOAD) {
    throw new TaplineError(
      ErrorCode.InvalidArgument,
      `A vpicc payload must be 1 to ${VPICC_MAX_PAYLOAD} bytes, not ${payload.length}.`,
    );
  }
  const frame = new Uint8Array(payload.length + 2);
  frame[0] = payload.length >>> 8;
  frame[1] = payload.length & 0xff;
  frame.set(payload, 2);
  return frame;
}

/** Splits a TCP byte stream into vpicc payloads, whatever the segment boundaries were. */
export class VpiccFrameDecoder {
  #buffer: Uint8Array = new Uint8Array(0);

  /** Bytes received that do not make up a whole message yet. */
  get pending(): number {
    return this.#buffer.length;
  }

  /** Adds received bytes; returns the payloads completed by them, in order (copies, safe to keep). */
  push(chunk: Uint8Array): Uint8Array[] {
    // A view as a plain Uint8Array: Buffer#slice would share memory and hand out Buffers.
    let buffer = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (this.#buffer.length > 0) {
      buffer = new Uint8Array(this.#buffer.length + chunk.length);
      buffer.set(this.#buffer);
      buffer.set(chunk, this.#buffer.length);
    }
    const payloads: Uint8Array[] = [];
    let offset = 0;
    while (buffer.length - offset >= 2) {
      const length = (buffer[offset]! << 8) | buffer[offset + 1]!;
      if (buffer.length - offset - 2 < length) break;
      payloads.push(buffer.slice(offset + 2, offset + 2 + length));
      offset += 2 + length;
    }
    this.#buffer = buffer.slice(offset);
    return payloads;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The virtual card
// ---------------------------------------------------------------------------------------------------------------

/**
 * What a per-APDU hook decides: `undefined` answers normally; `'never'` leaves the APDU unanswered (SCardTransmit
 * blocks until the card is removed, pcsc-stack.md §4); an object delays the answer and/or replaces it.
 */
export type ApduHookResult = undefined | 'never' | { readonly delayMs?: number; readonly response?: Uint8Array };

/** What a hook learns besides the APDU. */
export interface ApduHookContext {
  /** 0 for the first APDU after the chip was inserted. */
  readonly index: number;
  readonly chip: VirtualChip;
  readonly card: VirtualCard;
}

/** Called for every C-APDU before the emulation answers it; see {@link ApduHookResult}. */
export type ApduHook = (apdu: Uint8Array, context: ApduHookContext) => ApduHookResult;

/** Options of {@link VirtualCard}. */
export interface VirtualCardOptions {
  /** vpcd's port for the slot (CHANNELID for slot 0, CHANNELID + 1 for slot 1); a function is read on every insert. */
  readonly port: number | (() => number);
  /** Default `127.0.0.1`. */
  readonly host?: string;
  /** The reader the card sits in: it synthesises the ATR and answers the APDUs. */
  readonly emulation: ReaderEmulation;
  readonly onApdu?: ApduHook;
  /** How long {@link VirtualCard.insert} waits for vpcd to ask for the ATR. Default 3000 ms. */
  readonly insertTimeoutMs?: number;
  /** How many APDU and chip exchanges to keep for inspection. Default 64; 0 keeps none. */
  readonly history?: number;
}

/** What vpcd sent since the last insert. */
export interface VirtualCardCounters {
  readonly powerOff: number;
  readonly powerOn: number;
  readonly reset: number;
  readonly getAtr: number;
  readonly apdus: number;
}

/** One APDU and its answer (`undefined`: never answered). */
export interface VirtualCardApdu {
  readonly command: Uint8Array;
  readonly response: Uint8Array | undefined;
}

/** One frame the reader emulation passed on to the chip, and the chip's answer (`undefined`: silence). */
export interface VirtualChipExchange {
  readonly capability: FrameCapability;
  readonly frame: Uint8Array;
  readonly answer: Uint8Array | undefined;
}

interface Session {
  readonly socket: Socket;
  readonly chip: VirtualChip;
  closed: boolean;
  /** Frames are answered strictly in order, as vpcd waits for each answer. */
  queue: Promise<void>;
  readonly closedPromise: Promise<void>;
}

/** What the card answers when an emulation or hook fails: "no precise diagnosis". */
const SW_INTERNAL = Uint8Array.of(0x6f, 0x00);

/**
 * A contactless chip on a vpcd virtual reader: a vpicc client (pcsc-stack.md §2) that connects to vpcd when the chip
 * is put on the reader and disconnects when it is taken off. vpcd's control bytes are handled as a card does (00, 01,
 * 02 silently, 04 with the ATR, also while powered off); APDUs go through the reader emulation to the chip, so that
 * an ACR122U pseudo-APDU reaches the chip the way the PN532 would pass it on.
 *
 * A power cycle from vpcd (power off and on again, or a reset) powers the chip up again.
 *
 * It answers from the thread it was made in. With a `pcsclite` client in that same thread the process can deadlock
 * (see {@link IsolatedVirtualCard}); {@link PrivatePcscd.card} therefore runs one of these in a worker thread.
 */
export class VirtualCard {
  /** The per-APDU hook; may be replaced at any time. */
  onApdu: ApduHook | undefined;
  readonly emulation: ReaderEmulation;
  readonly #options: VirtualCardOptions;
  readonly #history: number;
  #chip: VirtualChip | undefined;
  #wanted = false;
  #session: Session | undefined;
  #state: unknown;
  #powered = false;
  #counters = { powerOff: 0, powerOn: 0, reset: 0, getAtr: 0, apdus: 0 };
  readonly #apdus: VirtualCardApdu[] = [];
  readonly #chipExchanges: VirtualChipExchange[] = [];
  readonly #errors: Error[] = [];
  #atrWaiters: (() => void)[] = [];

  constructor(options: VirtualCardOptions) {
    this.#options = options;
    this.emulation = options.emulation;
    this.onApdu = options.onApdu;
    this.#history = options.history ?? 64;
    this.#state = options.emulation.initialState;
  }

  /** The chip on the reader (or last put on it). */
  get chip(): VirtualChip | undefined {
    return this.#chip;
  }

  /** True while the TCP connection to vpcd is up. */
  get connected(): boolean {
    return this.#session !== undefined && !this.#session.closed;
  }

  /**
   * True from {@link VirtualCard.insert} until {@link VirtualCard.remove}, also when vpcd dropped the connection
   * (pcscd died): the chip is still "on the reader", and a restart of pcscd puts it back.
   */
  get wanted(): boolean {
    return this.#wanted;
  }

  /** Whether vpcd has the card powered (01 after 00). */
  get powered(): boolean {
    return this.#powered;
  }

  /** vpcd's messages since the last insert. */
  get counters(): VirtualCardCounters {
    return { ...this.#counters };
  }

  /** The last APDUs and answers, oldest first. */
  get apdus(): readonly VirtualCardApdu[] {
    return this.#apdus;
  }

  /** The last frames the emulation passed to the chip, oldest first. */
  get chipExchanges(): readonly VirtualChipExchange[] {
    return this.#chipExchanges;
  }

  /** Emulation, hook and socket failures; a test should expect none. */
  get errors(): readonly Error[] {
    return this.#errors;
  }

  /** The reader state of the emulation (for tests of stateful readers). */
  get readerState(): unknown {
    return this.#state;
  }

  /**
   * Puts `chip` (default: the last one) on the reader: connects to vpcd and resolves once vpcd has asked for the ATR,
   * i.e. once the reader has seen it. Resolves `false` without connecting when the reader cannot see that kind of
   * chip (the emulation has no ATR for it). Fails with `TRANSPORT_UNAVAILABLE` when nothing listens on the port, and
   * with `TIMEOUT` when vpcd does not poll within `insertTimeoutMs`.
   */
  async insert(chip: VirtualChip | undefined = this.#chip): Promise<boolean> {
    if (!chip) throw new TaplineError(ErrorCode.InvalidArgument, 'VirtualCard.insert needs a chip the first time.');
    if (this.connected && this.#session?.chip === chip) return true;
    if (this.#session) await this.disconnect();
    this.#chip = chip;
    this.#wanted = true;
    const atr = this.emulation.atr(chip);
    if (atr === undefined) return false;
    if (atr.length === 0) {
      // A zero-length ATR wedges vpcd 3.3's slot (pcsc-stack.md §2); refuse it here rather than hang a test.
      throw new TaplineError(ErrorCode.InvalidArgument, `Emulation ${this.emulation.id} produced an empty ATR.`);
    }
    this.#state = this.emulation.initialState;
    this.#powered = false;
    this.#counters = { powerOff: 0, powerOn: 0, reset: 0, getAtr: 0, apdus: 0 };
    const session = await this.open(chip);
    try {
      await this.waitForAtrRequest(session);
    } catch (error) {
      await this.disconnect();
      throw error;
    }
    return true;
  }

  /** Takes the chip off the reader: closes the connection; vpcd reports the card removed on its next check. */
  async remove(): Promise<void> {
    this.#wanted = false;
    await this.disconnect();
  }

  /** Resolves when the current connection closes (at once when there is none). */
  whenDisconnected(): Promise<void> {
    return this.#session?.closedPromise ?? Promise.resolve();
  }

  private async disconnect(): Promise<void> {
    const session = this.#session;
    if (!session) return;
    if (!session.closed) session.socket.destroy();
    await session.closedPromise;
  }

  private open(chip: VirtualChip): Promise<Session> {
    const host = this.#options.host ?? '127.0.0.1';
    const port = typeof this.#options.port === 'function' ? this.#options.port() : this.#options.port;
    return new Promise<Session>((resolve, reject) => {
      const socket = connect({ host, port });
      socket.setNoDelay(true);
      let markClosed: () => void = () => undefined;
      const session: Session = {
        socket,
        chip,
        closed: false,
        queue: Promise.resolve(),
        closedPromise: new Promise<void>((done) => (markClosed = done)),
      };
      const decoder = new VpiccFrameDecoder();
      const onConnectError = (error: Error): void => {
        reject(
          new TaplineError(ErrorCode.TransportUnavailable, `No vpcd listens on ${host}:${port}.`, {
            cause: error,
            hint: 'Start pcscd with a vpcd entry for this port first (startPcscd).',
          }),
        );
      };
      socket.once('error', onConnectError);
      socket.once('connect', () => {
        socket.off('error', onConnectError);
        socket.on('error', (error) => {
          // A reset from vpcd (pcscd killed) is an ordinary way for the connection to end.
          if ((error as NodeJS.ErrnoException).code !== 'ECONNRESET') this.#errors.push(error);
        });
        this.#session = session;
        resolve(session);
      });
      socket.on('data', (chunk: Buffer) => {
        for (const payload of decoder.push(chunk)) {
          session.queue = session.queue.then(() => this.handle(session, payload));
        }
      });
      socket.once('close', () => {
        session.closed = true;
        if (this.#session === session) this.#powered = false;
        markClosed();
      });
    });
  }

  private waitForAtrRequest(session: Session): Promise<void> {
    if (this.#counters.getAtr > 0) return Promise.resolve();
    const timeoutMs = this.#options.insertTimeoutMs ?? 3000;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#atrWaiters = this.#atrWaiters.filter((w) => w !== onAtr);
        reject(
          new TaplineError(ErrorCode.Timeout, `vpcd did not poll the virtual card within ${timeoutMs} ms.`, {
            hint: 'Is the pcscd serving this port still running?',
          }),
        );
      }, timeoutMs);
      const onAtr = (): void => {
        clearTimeout(timer);
        resolve();
      };
      this.#atrWaiters.push(onAtr);
      void session.closedPromise.then(() => {
        if (!this.#atrWaiters.includes(onAtr)) return;
        this.#atrWaiters = this.#atrWaiters.filter((w) => w !== onAtr);
        clearTimeout(timer);
        reject(new TaplineError(ErrorCode.TransportUnavailable, 'vpcd closed the connection before polling the card.'));
      });
    });
  }

  private async handle(session: Session, payload: Uint8Array): Promise<void> {
    if (session.closed) return;
    if (payload.length === 1) {
      this.control(session, payload[0]!);
      return;
    }
    const index = this.#counters.apdus++;
    let decision: ApduHookResult;
    try {
      decision = this.onApdu?.(payload, { index, chip: session.chip, card: this });
    } catch (error) {
      this.#errors.push(asError(error));
      decision = { response: SW_INTERNAL };
    }
    if (decision === 'never') {
      this.remember(this.#apdus, { command: payload, response: undefined });
      // Hold the queue until the card leaves: vpcd sends nothing else while it waits for this answer.
      await session.closedPromise;
      return;
    }
    let response = decision?.response ?? this.answer(session.chip, payload);
    if (response.length === 0) {
      this.#errors.push(new Error(`an empty answer to ${toSpacedHex(payload)} was replaced by 6F 00`));
      response = SW_INTERNAL;
    }
    const delayMs = decision?.delayMs ?? 0;
    if (delayMs > 0) {
      await Promise.race([new Promise((resolve) => setTimeout(resolve, delayMs)), session.closedPromise]);
    }
    this.remember(this.#apdus, { command: payload, response });
    this.send(session, response);
  }

  private control(session: Session, code: number): void {
    switch (code) {
      case VpiccControl.GetAtr: {
        this.#counters.getAtr++;
        const atr = this.emulation.atr(session.chip);
        // Presence checks must be answered at any time, also while powered off (pcsc-stack.md §2).
        this.send(session, atr && atr.length > 0 ? atr : Uint8Array.of(0x3b, 0x00));
        const waiters = this.#atrWaiters;
        this.#atrWaiters = [];
        for (const wake of waiters) wake();
        return;
      }
      case VpiccControl.PowerOff:
        this.#counters.powerOff++;
        this.#powered = false;
        return;
      case VpiccControl.PowerOn:
        // The first power-on after insertion meets a fresh chip; later ones follow a power-off: a new activation.
        if (!this.#powered && this.#counters.powerOn > 0) powerCycle(session.chip);
        this.#counters.powerOn++;
        this.#powered = true;
        return;
      case VpiccControl.Reset:
        this.#counters.reset++;
        powerCycle(session.chip);
        this.#powered = true;
        return;
      default:
        this.#errors.push(new Error(`unknown vpicc control byte ${code.toString(16).padStart(2, '0')}`));
    }
  }

  private answer(chip: VirtualChip, apdu: Uint8Array): Uint8Array {
    try {
      const step = this.emulation.transmit(this.#state, this.recording(chip), apdu);
      this.#state = step.state;
      return step.response;
    } catch (error) {
      this.#errors.push(asError(error));
      return SW_INTERNAL;
    }
  }

  /** The chip as the emulation sees it, with every frame recorded for {@link VirtualCard.chipExchanges}. */
  private recording(chip: VirtualChip): VirtualChip {
    if (this.#history === 0) return chip;
    const proxy: VirtualChip & { powerUp(): void } = {
      info: chip.info,
      handle: (capability, frame) => {
        let answer: Uint8Array | undefined;
        try {
          answer = chip.handle(capability, frame);
          return answer;
        } finally {
          this.remember(this.#chipExchanges, { capability, frame: Uint8Array.from(frame), answer });
        }
      },
      powerUp: () => powerCycle(chip),
    };
    return proxy;
  }

  private send(session: Session, payload: Uint8Array): void {
    if (session.closed) return;
    session.socket.write(encodeVpiccFrame(payload));
  }

  private remember<T>(list: T[], entry: T): void {
    if (this.#history === 0) return;
    list.push(entry);
    if (list.length > this.#history) list.shift();
  }
}

function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}
