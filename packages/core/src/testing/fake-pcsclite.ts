import { EventEmitter } from 'node:events';
import type {
  PcscliteCallback,
  PcscliteContextLike,
  PcscliteModuleLike,
  PcscliteReaderLike,
  PcscliteStatusLike,
} from '../transport/pcsc-native.js';
import { PcscState } from '../transport/pcsc-native.js';

/** Binding error messages, exactly as `pcsclite` 1.0.1 on Linux formats them. */
export const PcscliteErrors = {
  noService: () => new Error('SCardEstablishContext error: Service not available.(0x8010001d)'),
  rpcTransport: () => new Error('SCardGetStatusChange error: RPC transport error.(0x80100013)'),
  cancelled: () => new Error('SCardGetStatusChange error: Command cancelled.(0x80100002)'),
  noSmartcard: () => new Error('SCardConnect error: No smart card inserted.(0x8010000c)'),
  cardRemoved: () => new Error('SCardTransmit error: Card was removed.(0x80100069)'),
  notConnected: () => new Error('Card Reader not connected'),
} as const;

/** What a fake reader answers to a transmit: bytes, an error, or nothing ever (`'hang'`). */
export type FakeAnswer = Uint8Array | Error | 'hang';

/** One call the code under test made on a fake reader. */
export interface FakeReaderCall {
  readonly method: 'connect' | 'disconnect' | 'transmit' | 'control' | 'close';
  readonly args: readonly unknown[];
}

/**
 * A fake `pcsclite` CardReader: an EventEmitter with the binding's constants, callbacks and quirks (a connect on a
 * connected reader is a silent no-op; a transmit pending at removal answers with zero bytes; 'end' follows close).
 * Like the real one it throws (crashing the process) if it emits 'error' with nobody listening. Calls that would
 * deadlock the real binding (`close()` from inside one of its events, or while a native call is pending) are
 * refused and recorded in {@link FakePcscliteReader.violations}.
 */
export class FakePcscliteReader extends EventEmitter implements PcscliteReaderLike {
  readonly SCARD_SHARE_SHARED = 2;
  readonly SCARD_SHARE_EXCLUSIVE = 1;
  readonly SCARD_SHARE_DIRECT = 3;
  readonly SCARD_PROTOCOL_T0 = 1;
  readonly SCARD_PROTOCOL_T1 = 2;
  readonly SCARD_PROTOCOL_RAW = 4;
  readonly SCARD_LEAVE_CARD = 0;
  readonly SCARD_RESET_CARD = 1;
  readonly SCARD_UNPOWER_CARD = 2;
  readonly SCARD_EJECT_CARD = 3;
  readonly name: string;
  connected = false;
  /** True once `close()` was called. */
  closed = false;
  /** Every call, in order. */
  readonly calls: FakeReaderCall[] = [];
  /** Misuse that would hang the real binding; a correct client leaves this empty. */
  readonly violations: string[] = [];
  /** Answers transmits; the default refuses everything, so a test must say what the card does. */
  onTransmit: (data: Uint8Array) => FakeAnswer = (data) =>
    new Error(`unexpected transmit ${Buffer.from(data).toString('hex')}`);
  /** Answers control calls; the default is the answer of a driver without escape support. */
  onControl: (code: number, data: Uint8Array) => FakeAnswer = () =>
    new Error('SCardControl error: Feature not supported.(0x8010001f)');
  #atr: Uint8Array | undefined;
  #events = 0;
  readonly #pending = new Set<() => void>();
  /** Events being emitted now: the real binding holds the reader mutex meanwhile. */
  #emitting = 0;
  /** Native calls whose callback has not come yet: the real binding's worker holds the mutex meanwhile. */
  #inFlight = 0;

  constructor(name: string) {
    super();
    this.name = name;
  }

  override emit(event: string | symbol, ...args: unknown[]): boolean {
    this.#emitting++;
    try {
      return super.emit(event, ...args);
    } finally {
      this.#emitting--;
    }
  }

  /** Emits a raw 'status' event. */
  status(state: number, atr?: Uint8Array): void {
    const status: PcscliteStatusLike = atr ? { state, atr: Buffer.from(atr) } : { state, atr: Buffer.alloc(0) };
    this.emit('status', status);
  }

  /** A card arrives: status PRESENT with `atr` (and the event counter bumped, like pcsc-lite). */
  insert(atr: Uint8Array): void {
    this.#atr = atr;
    this.#events++;
    this.status(((this.#events << 16) | PcscState.Present | PcscState.Changed) >>> 0, atr);
  }

  /** The card leaves: pending transmits answer with zero bytes, then status EMPTY. */
  remove(): void {
    this.#atr = undefined;
    this.#events++;
    for (const finish of this.#pending) finish();
    this.#pending.clear();
    this.status(((this.#events << 16) | PcscState.Empty | PcscState.Changed) >>> 0);
  }

  connect(options: { share_mode: number; protocol: number }, callback: PcscliteCallback<number>): void {
    this.calls.push({ method: 'connect', args: [options.share_mode, options.protocol] });
    if (this.connected) {
      // The binding's own shortcut: no error, no protocol.
      callback(undefined);
      return;
    }
    this.#inFlight++;
    setImmediate(() => {
      this.#inFlight--;
      if (options.share_mode === this.SCARD_SHARE_DIRECT) {
        this.connected = true;
        callback(null, 0);
      } else if (!this.#atr) {
        callback(PcscliteErrors.noSmartcard());
      } else {
        this.connected = true;
        callback(null, this.SCARD_PROTOCOL_T1);
      }
    });
  }

  disconnect(disposition: number, callback: PcscliteCallback<void>): void {
    this.calls.push({ method: 'disconnect', args: [disposition] });
    if (!this.connected) {
      callback(null);
      return;
    }
    this.#inFlight++;
    setImmediate(() => {
      this.#inFlight--;
      this.connected = false;
      callback(null);
    });
  }

  transmit(data: Buffer, responseLength: number, protocol: number, callback: PcscliteCallback<Buffer>): void {
    this.calls.push({ method: 'transmit', args: [Buffer.from(data).toString('hex'), responseLength, protocol] });
    if (!this.connected) {
      callback(PcscliteErrors.notConnected());
      return;
    }
    this.answer(this.onTransmit(Uint8Array.from(data)), callback);
  }

  control(data: Buffer, controlCode: number, responseLength: number, callback: PcscliteCallback<Buffer>): void {
    this.calls.push({ method: 'control', args: [Buffer.from(data).toString('hex'), controlCode, responseLength] });
    if (!this.connected) {
      callback(PcscliteErrors.notConnected());
      return;
    }
    this.answer(this.onControl(controlCode, Uint8Array.from(data)), callback);
  }

  close(): void {
    this.calls.push({ method: 'close', args: [] });
    if (this.#emitting > 0 || this.#inFlight > 0) {
      const why = this.#emitting > 0 ? 'from inside one of its events' : 'while a native call is pending';
      const message = `close() called ${why}: the real binding blocks the event loop here`;
      this.violations.push(message);
      throw new Error(message);
    }
    if (this.closed) return;
    this.closed = true;
    // The binding's status thread ends on the next turn and the reader then emits 'end'.
    setImmediate(() => this.emit('end'));
  }

  private answer(answer: FakeAnswer, callback: PcscliteCallback<Buffer>): void {
    this.#inFlight++;
    const finish = (error: Error | null, response?: Buffer): void => {
      this.#inFlight--;
      callback(error, response);
    };
    if (answer === 'hang') {
      this.#pending.add(() => finish(null, Buffer.alloc(0)));
      return;
    }
    setImmediate(() => (answer instanceof Error ? finish(answer) : finish(null, Buffer.from(answer))));
  }
}

/**
 * A fake `pcsclite` context (`PCSCLite`): announces readers with 'reader', fails with 'error', and, like the real
 * one, emits 'error' ("Command cancelled") after `close()`.
 */
export class FakePcscliteContext extends EventEmitter implements PcscliteContextLike {
  readonly readers = new Map<string, FakePcscliteReader>();
  closed = false;

  /** Adds a reader and announces it. */
  addReader(name: string): FakePcscliteReader {
    const reader = new FakePcscliteReader(name);
    this.readers.set(name, reader);
    this.emit('reader', reader);
    return reader;
  }

  /** The binding's reaction to a reader leaving the reader list: it closes the CardReader, which then ends. */
  removeReader(name: string): void {
    const reader = this.readers.get(name);
    if (!reader) return;
    this.readers.delete(name);
    reader.close();
  }

  /** pcscd died: the context emits 'error', and every reader emits 'error' then 'end'. */
  die(error: Error = PcscliteErrors.rpcTransport()): void {
    this.emit('error', error);
    for (const reader of this.readers.values()) {
      reader.emit('error', PcscliteErrors.rpcTransport());
      reader.emit('end');
    }
  }

  close(): void {
    this.closed = true;
    setImmediate(() => this.emit('error', PcscliteErrors.cancelled()));
  }
}

/** Options of {@link fakePcsclite}. */
export interface FakePcscliteOptions {
  /** Readers every new context announces (on the next tick, like the binding's first reader scan). */
  readonly readers?: readonly string[];
  /** Make the factory throw this, as `pcsclite` 1.0.1 does when pcscd is not running. */
  readonly throwOnCreate?: Error;
}

/** A fake `pcsclite` module plus the contexts it created. */
export interface FakePcsclite {
  /** Pass it to `createNativePcscTransport({ loadBinding: () => Promise.resolve(fake.module) })`. */
  readonly module: PcscliteModuleLike;
  /** Every context created, oldest first. */
  readonly contexts: readonly FakePcscliteContext[];
  /** The newest context. */
  readonly last: FakePcscliteContext | undefined;
}

/** A `pcsclite`-shaped fake, for testing code that sits directly on the binding (the native transport). */
export function fakePcsclite(options: FakePcscliteOptions = {}): FakePcsclite {
  const contexts: FakePcscliteContext[] = [];
  const module: PcscliteModuleLike = () => {
    if (options.throwOnCreate) throw options.throwOnCreate;
    const context = new FakePcscliteContext();
    contexts.push(context);
    process.nextTick(() => {
      if (context.closed) return;
      for (const name of options.readers ?? []) context.addReader(name);
    });
    return context;
  };
  return {
    module,
    contexts,
    get last() {
      return contexts[contexts.length - 1];
    },
  };
}
