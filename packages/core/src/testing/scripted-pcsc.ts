import { BehaviorSubject, Observable, type Subscriber } from 'rxjs';
import type { AttachedDevice } from '../model/driver.js';
import { ErrorCode, TaplineError, tagLostError } from '../model/errors.js';
import {
  scardCtlCode,
  type PcscCallOptions,
  type PcscCard,
  type PcscConnectOptions,
  type PcscDisposition,
  type PcscReaderEvent,
  type PcscReaderPort,
  type PcscReaderStatus,
  type PcscShareMode,
  type PcscTransport,
} from '../transport/pcsc.js';
import { PcscState } from '../transport/pcsc-native.js';
import { fromHex, toSpacedHex } from '../util/bytes.js';
import { withDeadline } from '../util/deadline.js';

/** Bytes, as hex text (`"FF CA 00 00 00"`) or as an array. */
export type Hex = string | Uint8Array;

/** What the scripted card does with one command. */
export type ScriptedReply =
  | Uint8Array
  | { readonly kind: 'hang' }
  | { readonly kind: 'remove' }
  | { readonly kind: 'fail'; readonly error: Error }
  | { readonly kind: 'delay'; readonly ms: number; readonly bytes: Uint8Array };

/** One scripted exchange: the command the code under test must send, and the reply. */
export type ScriptStep = readonly [command: Hex, reply: Hex | ScriptedReply];

/** A command frame, nfcpy style: `CMD('FF CA 00 00 00')`. */
export function CMD(hex: string): Uint8Array {
  return fromHex(hex);
}

/** A response frame, nfcpy style: `RSP('04 A1 B2 C3 90 00')`. */
export function RSP(hex: string): Uint8Array {
  return fromHex(hex);
}

/** The card never answers (until it is removed or the caller gives up). */
export const HANG: ScriptedReply = Object.freeze({ kind: 'hang' });

/** The card leaves the field while the command is in flight (pcscd then answers with zero bytes). */
export const REMOVE_CARD: ScriptedReply = Object.freeze({ kind: 'remove' });

/** The call fails with `error` (for example a binding error carrying a PC/SC code). */
export function FAIL(error: Error): ScriptedReply {
  return { kind: 'fail', error };
}

/** The card answers after `ms` milliseconds. */
export function DELAYED(ms: number, hex: Hex): ScriptedReply {
  return { kind: 'delay', ms, bytes: toBytes(hex) };
}

/** One frame the code under test wrote. */
export interface ScriptedFrame {
  readonly reader: string;
  readonly kind: 'transmit' | 'control';
  /** The control code, for control frames. */
  readonly code?: number;
  readonly bytes: Uint8Array;
  /** The bytes as spaced upper-case hex, for readable assertions. */
  readonly hex: string;
}

/** Raised (and recorded) when the code under test sends something the script did not expect. */
export class ScriptMismatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ScriptMismatchError';
  }
}

/** What a scripted card needs from its reader; kept off the reader's public surface. */
interface ReaderLink {
  readonly name: string;
  /** The insertion now in the field, or -1. */
  insertionId(): number;
  connectionClosed(card: ScriptedCard, disposition: PcscDisposition): void;
  later<T>(run: () => T, ms?: number): Promise<T>;
  take(kind: 'transmit' | 'control', bytes: Uint8Array, code?: number): ScriptedReply;
  remove(): void;
}

interface Entry {
  readonly kind: 'transmit' | 'control';
  readonly code?: number;
  readonly command: Uint8Array;
  readonly reply: ScriptedReply;
}

function toBytes(hex: Hex): Uint8Array {
  return typeof hex === 'string' ? fromHex(hex) : hex;
}

function toReply(reply: Hex | ScriptedReply): ScriptedReply {
  if (typeof reply === 'string') return fromHex(reply);
  return reply;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function describeEntry(entry: Entry | undefined): string {
  if (!entry) return 'nothing more';
  return entry.kind === 'control'
    ? `control 0x${(entry.code ?? 0).toString(16)} ${toSpacedHex(entry.command)}`
    : `transmit ${toSpacedHex(entry.command)}`;
}

/** Options of {@link scriptedPcsc}. */
export interface ScriptedPcscOptions {
  /** Milliseconds every call takes. Default 0 (the answer still comes on a later turn of the event loop, like the binding's). */
  readonly latencyMs?: number;
  /** Platform for control codes; default `linux`. */
  readonly platform?: NodeJS.Platform;
}

/**
 * A virtual PC/SC reader whose card answers from a script. Every frame written is recorded; a frame the script
 * does not expect fails the call with {@link ScriptMismatchError} and is reported again by
 * {@link ScriptedPcscReader.assertDone}, so a test cannot pass by accident.
 */
export class ScriptedPcscReader {
  readonly name: string;
  /** The port a driver receives. */
  readonly port: PcscReaderPort;
  /** Every frame written, in order. */
  readonly frames: ScriptedFrame[] = [];
  /** The share mode of every connect, in order. */
  readonly connects: PcscShareMode[] = [];
  /** The disposition of every disconnect, in order. */
  readonly disconnects: PcscDisposition[] = [];
  /** Commands the script did not expect. */
  readonly mismatches: ScriptMismatchError[] = [];

  readonly #script: Entry[] = [];
  readonly #status: BehaviorSubject<PcscReaderStatus>;
  readonly #latencyMs: number;
  readonly #platform: NodeJS.Platform;
  readonly #connectFailures: Error[] = [];
  /** Cards (connections) that are open now. */
  readonly #open = new Set<ScriptedCard>();
  #events = 0;
  #insertion = 0;
  #atr: Uint8Array | undefined;
  #gone = false;
  readonly #link: ReaderLink;

  constructor(name: string, options: ScriptedPcscOptions = {}) {
    this.name = name;
    this.#latencyMs = options.latencyMs ?? 0;
    this.#platform = options.platform ?? 'linux';
    this.#status = new BehaviorSubject<PcscReaderStatus>({ present: false, state: PcscState.Empty });
    this.#link = {
      name,
      insertionId: () => this.#insertionId(),
      connectionClosed: (card, disposition) => {
        if (this.#open.delete(card)) this.disconnects.push(disposition);
      },
      later: (run, ms) => this.#later(run, ms),
      take: (kind, bytes, code) => this.#take(kind, bytes, code),
      remove: () => void this.remove(),
    };
    this.port = {
      name,
      status$: this.#status.asObservable(),
      connect: (options) => this.connect(options),
      controlCode: (n) => scardCtlCode(n, this.#platform),
    };
  }

  /** The device as a transport would attach it, for calling a driver's `open` directly. */
  get device(): AttachedDevice {
    return { transport: 'pcsc', name: this.name, port: this.port };
  }

  /** True while a card is in the field. */
  get present(): boolean {
    return this.#atr !== undefined;
  }

  /** Connections that were opened and not yet disconnected. */
  get openConnections(): number {
    return this.#open.size;
  }

  /** The frames written, as spaced hex. */
  get sent(): readonly string[] {
    return this.frames.map((f) => f.hex);
  }

  /** Puts a card with `atr` into the field and appends `steps` to the transmit script. */
  insert(atr: Hex, ...steps: readonly ScriptStep[]): this {
    if (this.#atr) this.remove();
    this.expect(...steps);
    this.#atr = toBytes(atr);
    this.#insertion++;
    this.#events++;
    this.emitStatus();
    return this;
  }

  /** Takes the card out of the field; calls in flight end as pcscd ends them (zero bytes, so `TAG_LOST`). */
  remove(): this {
    if (!this.#atr) return this;
    this.#atr = undefined;
    this.#events++;
    for (const card of this.#open) card.cardRemoved();
    this.emitStatus();
    return this;
  }

  /** Appends transmit exchanges to the script. */
  expect(...steps: readonly ScriptStep[]): this {
    for (const [command, reply] of steps)
      this.#script.push({ kind: 'transmit', command: toBytes(command), reply: toReply(reply) });
    return this;
  }

  /** Appends control exchanges with control code `code` (already mapped, see `port.controlCode`). */
  expectControl(code: number, ...steps: readonly ScriptStep[]): this {
    for (const [command, reply] of steps) {
      this.#script.push({ kind: 'control', code, command: toBytes(command), reply: toReply(reply) });
    }
    return this;
  }

  /** The next connect fails with `error`. */
  failNextConnect(error: Error): this {
    this.#connectFailures.push(error);
    return this;
  }

  /** Throws unless every scripted exchange was used and nothing unexpected was sent. */
  assertDone(): void {
    const problems: string[] = this.mismatches.map((m) => m.message);
    if (this.#script.length > 0) {
      problems.push(
        `${this.#script.length} scripted exchange(s) on "${this.name}" never happened, next: ${describeEntry(this.#script[0])}`,
      );
    }
    if (problems.length > 0) throw new ScriptMismatchError(problems.join('\n'));
  }

  /** Detaches the reader: its status stream completes. */
  detach(): void {
    if (this.#gone) return;
    this.remove();
    this.#gone = true;
    this.#status.complete();
  }

  /** True once the reader was detached. */
  get gone(): boolean {
    return this.#gone;
  }

  #insertionId(): number {
    return this.#atr ? this.#insertion : -1;
  }

  #later<T>(run: () => T, ms = this.#latencyMs): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const fire = (): void => {
        try {
          resolve(run());
        } catch (error) {
          reject(error instanceof Error ? error : new Error(String(error)));
        }
      };
      if (ms > 0) setTimeout(fire, ms);
      else setImmediate(fire);
    });
  }

  /** Matches one call against the script; a mismatch is recorded and thrown. */
  #take(kind: 'transmit' | 'control', bytes: Uint8Array, code?: number): ScriptedReply {
    this.frames.push({
      reader: this.name,
      kind,
      ...(code === undefined ? {} : { code }),
      bytes,
      hex: toSpacedHex(bytes),
    });
    const next = this.#script[0];
    const got: Entry = { kind, ...(code === undefined ? {} : { code }), command: bytes, reply: HANG };
    if (!next || next.kind !== kind || next.code !== code || !sameBytes(next.command, bytes)) {
      const error = new ScriptMismatchError(
        `"${this.name}" received ${describeEntry(got)} but the script expected ${describeEntry(next)} (frame ${this.frames.length}).`,
      );
      this.mismatches.push(error);
      throw error;
    }
    this.#script.shift();
    return next.reply;
  }

  private async connect(options: PcscConnectOptions): Promise<PcscCard> {
    const failure = this.#connectFailures.shift();
    return this.#later(() => {
      if (this.#gone) throw new TaplineError(ErrorCode.ReaderGone, `The reader ${this.name} is no longer available.`);
      if (failure) throw failure;
      if (options.share !== 'direct' && !this.#atr) {
        throw tagLostError(
          `connect on ${this.name}`,
          new Error('SCardConnect error: No smart card inserted.(0x8010000c)'),
        );
      }
      this.connects.push(options.share);
      const card = new ScriptedCard(
        this.#link,
        options.share === 'direct' ? 'none' : 'T1',
        options.share === 'direct' ? -1 : this.#insertionId(),
      );
      this.#open.add(card);
      return card;
    });
  }

  private emitStatus(): void {
    if (this.#gone) return;
    const counter = (this.#events & 0xffff) << 16;
    this.#status.next(
      this.#atr
        ? { present: true, atr: this.#atr, state: (counter | PcscState.Present | PcscState.Changed) >>> 0 }
        : { present: false, state: (counter | PcscState.Empty | PcscState.Changed) >>> 0 },
    );
  }
}

/** A connection to a {@link ScriptedPcscReader}. */
class ScriptedCard implements PcscCard {
  readonly protocol: PcscCard['protocol'];
  readonly #reader: ReaderLink;
  /** The insertion this connection belongs to (-1: direct, no card). */
  readonly #insertion: number;
  readonly #pending = new Set<() => void>();
  #closed = false;

  constructor(reader: ReaderLink, protocol: PcscCard['protocol'], insertion: number) {
    this.#reader = reader;
    this.protocol = protocol;
    this.#insertion = insertion;
  }

  transmit(command: Uint8Array, options: PcscCallOptions): Promise<Uint8Array> {
    return this.call('transmit', command, options);
  }

  control(code: number, data: Uint8Array, options: PcscCallOptions): Promise<Uint8Array> {
    return this.call('control', data, options, code);
  }

  disconnect(disposition: PcscDisposition = 'leave'): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    this.cardRemoved();
    this.#reader.connectionClosed(this, disposition);
    return this.#reader.later(() => undefined);
  }

  /** Calls in flight end like pcscd ends them at removal: success with zero bytes. */
  cardRemoved(): void {
    for (const finish of this.#pending) finish();
    this.#pending.clear();
  }

  private call(
    kind: 'transmit' | 'control',
    bytes: Uint8Array,
    options: PcscCallOptions,
    code?: number,
  ): Promise<Uint8Array> {
    const what = `${kind} on ${this.#reader.name}`;
    return withDeadline({ what, timeoutMs: options.timeoutMs, signal: options.signal }, async () => {
      if (this.#closed) throw tagLostError(what, new Error('the connection was closed'));
      if (kind === 'transmit' && this.#insertion !== this.#reader.insertionId()) {
        throw tagLostError(what, new Error('SCardTransmit error: Card was removed.(0x80100069)'));
      }
      const reply = this.#reader.take(kind, Uint8Array.from(bytes), code);
      const answer = await this.answer(reply);
      if (kind === 'transmit' && answer.length < 2)
        throw tagLostError(what, new Error(`short response (${answer.length} bytes)`));
      return answer;
    });
  }

  private answer(reply: ScriptedReply): Promise<Uint8Array> {
    if (reply instanceof Uint8Array) return this.#reader.later(() => Uint8Array.from(reply));
    switch (reply.kind) {
      case 'delay':
        return this.#reader.later(() => Uint8Array.from(reply.bytes), reply.ms);
      case 'fail':
        return this.#reader.later(() => {
          throw reply.error;
        });
      case 'remove':
        return this.#reader.later(() => {
          this.#reader.remove();
          return new Uint8Array(0);
        });
      case 'hang':
        return new Promise<Uint8Array>((resolve) => {
          const finish = (): void => resolve(new Uint8Array(0));
          this.#pending.add(finish);
        });
    }
  }
}

/** The scripted transport and its readers. */
export interface ScriptedPcsc {
  /** The transport to hand to `pcscDeviceSource` or `createContainer({ pcscTransport })`. */
  readonly transport: PcscTransport;
  /** Adds (attaches) a reader. */
  addReader(name: string): ScriptedPcscReader;
  /** Detaches a reader. */
  removeReader(name: string): void;
  /** The reader called `name`; throws when there is none. */
  reader(name: string): ScriptedPcscReader;
  /** Makes every current subscription fail as if pcscd died: all readers detach, then the stream errors. */
  fail(error?: TaplineError): void;
  /** How many subscriptions to `readers$` are open (to check that consumers let go). */
  readonly subscribers: number;
  /** `assertDone` of every reader. */
  assertDone(): void;
}

/**
 * A scripted fake of the PC/SC transport, in the style of nfcpy's tests:
 *
 * ```ts
 * const pcsc = scriptedPcsc();
 * const reader = pcsc.addReader('ACS ACR122U PICC Interface 00 00');
 * reader.insert(ATR, [CMD('FF CA 00 00 00'), RSP('04 A1 B2 C3 D4 E5 F6 90 00')]);
 * // … open the reader, use it …
 * reader.assertDone();
 * ```
 */
export function scriptedPcsc(options: ScriptedPcscOptions = {}): ScriptedPcsc {
  const readers = new Map<string, ScriptedPcscReader>();
  const subscribers = new Set<Subscriber<PcscReaderEvent>>();
  const readers$ = new Observable<PcscReaderEvent>((subscriber) => {
    subscribers.add(subscriber);
    for (const reader of readers.values()) subscriber.next({ type: 'attached', reader: reader.port });
    return () => subscribers.delete(subscriber);
  });
  const api: ScriptedPcsc = {
    transport: { readers$ },
    addReader(name) {
      if (readers.has(name)) throw new Error(`scriptedPcsc already has a reader called "${name}"`);
      const reader = new ScriptedPcscReader(name, options);
      readers.set(name, reader);
      for (const s of [...subscribers]) s.next({ type: 'attached', reader: reader.port });
      return reader;
    },
    removeReader(name) {
      const reader = readers.get(name);
      if (!reader) return;
      readers.delete(name);
      reader.detach();
      for (const s of [...subscribers]) s.next({ type: 'detached', name });
    },
    reader(name) {
      const reader = readers.get(name);
      if (!reader) throw new Error(`scriptedPcsc has no reader called "${name}"`);
      return reader;
    },
    fail(error) {
      const failure =
        error ??
        new TaplineError(ErrorCode.TransportUnavailable, 'The scripted PC/SC service stopped.', {
          cause: new Error('SCardGetStatusChange error: RPC transport error.(0x80100013)'),
        });
      for (const s of [...subscribers]) {
        for (const name of readers.keys()) s.next({ type: 'detached', name });
        s.error(failure);
      }
    },
    get subscribers() {
      return subscribers.size;
    },
    assertDone() {
      for (const reader of readers.values()) reader.assertDone();
    },
  };
  return api;
}
