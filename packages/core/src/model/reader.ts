import { Subject, defer, startWith, type Observable } from 'rxjs';
import { Capability, sortCapabilities, type FrameCapability } from './capabilities.js';
import { ErrorCode, TaplineError, abortError, tagLostError, timeoutError, toTaplineError } from './errors.js';
import type { Tag, TagInfo } from './tag.js';
import { SerialDeadline, withDeadline } from '../util/deadline.js';
import { toSpacedHex } from '../util/bytes.js';
import type { Logger } from '../runtime/logger.js';
import type { Clock } from '../runtime/clock.js';

/** Per-call options of {@link Reader.transmit}. */
export interface TransmitOptions {
  /** Milliseconds before the exchange fails with `TIMEOUT`. Default: the reader's default (see {@link ReaderBaseOptions}). */
  readonly timeoutMs?: number;
  /** Cancels the exchange; it then fails with `ABORTED` (or the signal's Tapline reason). */
  readonly signal?: AbortSignal;
}

/** Feedback a reader with an LED or a buzzer can give. */
export interface ReaderFeedback {
  /** LED state; needs the `led` capability. */
  readonly led?: 'off' | 'green' | 'red' | 'orange';
  /** Beep length in milliseconds; needs the `buzzer` capability. */
  readonly beepMs?: number;
}

/** A tag arriving at or leaving a reader. */
export type ReaderEvent =
  { readonly type: 'tag-arrived'; readonly tag: Tag } | { readonly type: 'tag-left'; readonly tag: Tag };

/**
 * A contactless reader, as every layer above the drivers sees it. Obtain readers from the pipeline's `readers$`
 * or from a driver's `open`; never construct a driver's class directly.
 */
export interface Reader {
  /** The reader's name as the transport reports it (PC/SC name, USB product string). */
  readonly name: string;
  /** The id of the driver that serves it. */
  readonly driverId: string;
  /** What this reader can do. */
  readonly capabilities: ReadonlySet<Capability>;
  /**
   * Tag arrivals and removals; completes when the reader closes. A subscriber first receives `tag-arrived` for a tag
   * already in the field, so a tag resting on the reader before anyone listened is not lost.
   */
  readonly events$: Observable<ReaderEvent>;
  /** The tag in the field now, if any. */
  readonly currentTag: Tag | undefined;
  /** True once {@link Reader.close} has been called or the device went away. */
  readonly closed: boolean;
  /**
   * Sends one frame to `tag` and returns the tag's answer. For `iso14443-4` the frame is a command APDU and the
   * answer ends with SW1 SW2; for the raw capabilities the reader adds and strips the CRC.
   *
   * Fails with `UNSUPPORTED_CAPABILITY` when the reader lacks `capability`, `TAG_LOST` when the tag leaves (also
   * mid-exchange), `TIMEOUT`, `ABORTED`, `READER_GONE`, or `PROTOCOL_ERROR` for malformed reader answers.
   */
  transmit(tag: Tag, capability: FrameCapability, frame: Uint8Array, options?: TransmitOptions): Promise<Uint8Array>;
  /** LED and buzzer; fails with `UNSUPPORTED_CAPABILITY` when the reader has neither. */
  feedback(feedback: ReaderFeedback, options?: TransmitOptions): Promise<void>;
  /** Releases the device. Idempotent; in-flight exchanges fail with `READER_GONE`. */
  close(): Promise<void>;
}

/** Constructor options of {@link ReaderBase}. */
export interface ReaderBaseOptions {
  readonly name: string;
  readonly driverId: string;
  readonly capabilities: Iterable<Capability>;
  readonly logger: Logger;
  readonly clock: Clock;
  /** Default per-exchange timeout in milliseconds. Default 2000. */
  readonly defaultTimeoutMs?: number;
  /**
   * True when every exchange is I/O that keeps the process alive by itself (a native PC/SC call, a USB transfer):
   * the exchange deadline then never holds the process open, which saves work on every frame. Default false: the
   * deadline holds the process open while an exchange runs, so that an exchange nothing else keeps alive still ends
   * in `TIMEOUT` instead of a silent exit.
   */
  readonly exchangesKeepProcessAlive?: boolean;
}

let presenceCounter = 0;

/**
 * The shared half of every reader: capability checks, per-call timeouts and aborts, one exchange at a time,
 * tag-presence bookkeeping, frame tracing and idempotent close. A driver extends it and supplies
 * {@link ReaderBase.exchange} and {@link ReaderBase.release}; it reports tags with {@link ReaderBase.tagArrived} and
 * {@link ReaderBase.tagLeft}.
 */
export abstract class ReaderBase implements Reader {
  readonly name: string;
  readonly driverId: string;
  readonly capabilities: ReadonlySet<Capability>;
  readonly events$: Observable<ReaderEvent>;
  protected readonly logger: Logger;
  protected readonly clock: Clock;
  protected readonly defaultTimeoutMs: number;

  readonly #events = new Subject<ReaderEvent>();
  #currentTag: Tag | undefined;
  /** Aborted on close. */
  readonly #lifetime = new AbortController();
  /**
   * The signal drivers get for an exchange: aborted when that exchange times out, its tag leaves, its caller aborts
   * or the reader closes. One controller serves exchange after exchange until one of those happens, so the frame
   * path makes no controller, timer or listener per frame (bench/apdu-overhead).
   */
  #exchangeController = new AbortController();
  /** The exchange in flight, settled by its own answer or by {@link ReaderBase.failExchange}, whichever comes first. */
  #inFlight: InFlightExchange | undefined;
  readonly #deadline: SerialDeadline;
  /** True while an exchange or a feedback call runs; the others wait in {@link ReaderBase.#waiting}. */
  #busy = false;
  readonly #waiting: (() => void)[] = [];
  #closing: Promise<void> | undefined;

  protected constructor(options: ReaderBaseOptions) {
    this.name = options.name;
    this.driverId = options.driverId;
    this.capabilities = new Set(sortCapabilities(options.capabilities));
    this.logger = options.logger.child({ reader: options.name });
    this.clock = options.clock;
    this.defaultTimeoutMs = options.defaultTimeoutMs ?? 2000;
    this.#deadline = new SerialDeadline({ keepAlive: options.exchangesKeepProcessAlive !== true });
    this.events$ = defer(() => {
      const present = this.#currentTag;
      const live = this.#events.asObservable();
      return present ? live.pipe(startWith<ReaderEvent>({ type: 'tag-arrived', tag: present })) : live;
    });
  }

  get currentTag(): Tag | undefined {
    return this.#currentTag;
  }

  get closed(): boolean {
    return this.#lifetime.signal.aborted;
  }

  /**
   * Sends `frame` and returns the raw answer. Called one at a time; `signal` fires on timeout, abort or removal.
   * The same signal serves consecutive exchanges until it fires, so a listener added to it must be removed when the
   * exchange ends (as with any `{ once: true }` listener that may never fire).
   */
  protected abstract exchange(
    tag: Tag,
    capability: FrameCapability,
    frame: Uint8Array,
    signal: AbortSignal,
  ): Promise<Uint8Array>;

  /** Drives LED and buzzer. The default refuses; drivers with the capabilities override it. */
  protected applyFeedback(_feedback: ReaderFeedback, _signal: AbortSignal): Promise<void> {
    return Promise.reject(this.unsupported('LED and buzzer control'));
  }

  /** Releases the device and every handle. Called once, from {@link ReaderBase.close}. */
  protected abstract release(): Promise<void>;

  /** Records a tag arrival and announces it. A tag still present is reported as left first. */
  protected tagArrived(info: TagInfo): Tag {
    if (this.#currentTag) this.tagLeft();
    const tag: Tag = {
      ...info,
      id: `${this.name}#${++presenceCounter}`,
      readerName: this.name,
      reader: this,
      arrivedAt: this.clock.now(),
    };
    this.#currentTag = tag;
    this.logger.debug('tag arrived', { uid: info.uid, technology: info.technology });
    this.#events.next({ type: 'tag-arrived', tag });
    return tag;
  }

  /** Records that the current tag left; exchanges with it fail with `TAG_LOST`. */
  protected tagLeft(): void {
    const tag = this.#currentTag;
    if (!tag) return;
    this.#currentTag = undefined;
    if (this.#inFlight?.tag.id === tag.id) this.failExchange(tagLostError(`${this.#inFlight.capability} exchange`));
    this.logger.debug('tag left', { uid: tag.uid });
    this.#events.next({ type: 'tag-left', tag });
  }

  transmit(
    tag: Tag,
    capability: FrameCapability,
    frame: Uint8Array,
    options: TransmitOptions = {},
  ): Promise<Uint8Array> {
    try {
      this.assertCanSend(tag, capability, frame);
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    if (!this.#busy) {
      this.#busy = true;
      return this.runExchange(tag, capability, frame, options);
    }
    return new Promise<void>((resolve) => this.#waiting.push(resolve)).then(() =>
      this.runExchange(tag, capability, frame, options),
    );
  }

  /** Runs one exchange; the caller holds the turn ({@link ReaderBase.#busy}), which is handed on when it settles. */
  private runExchange(
    tag: Tag,
    capability: FrameCapability,
    frame: Uint8Array,
    options: TransmitOptions,
  ): Promise<Uint8Array> {
    return new Promise<Uint8Array>((resolve, reject) => {
      const outer = options.signal;
      const refusal = this.closed
        ? this.goneError()
        : this.#currentTag?.id !== tag.id
          ? tagLostError(`${capability} exchange`)
          : outer?.aborted
            ? abortError(`${capability} exchange with ${this.name}`, outer.reason)
            : undefined;
      if (refusal) {
        this.passTurn();
        reject(refusal);
        return;
      }
      const exchange = new InFlightExchange(
        tag,
        capability,
        options.timeoutMs ?? this.defaultTimeoutMs,
        resolve,
        reject,
      );
      this.#inFlight = exchange;
      this.#deadline.start(exchange.timeoutMs, this.#onDeadline);
      if (outer) {
        exchange.outer = outer;
        outer.addEventListener('abort', this.#onOuterAbort, { once: true });
      }
      const tracing = this.logger.enabled('trace');
      if (tracing) this.logger.frame('>', frame, { capability });
      let running: Promise<Uint8Array>;
      try {
        running = this.exchange(tag, capability, frame, this.#exchangeController.signal);
      } catch (error) {
        running = Promise.reject(error instanceof Error ? error : new Error(String(error)));
      }
      running.then(
        (answer) => {
          if (!this.settle(exchange)) return;
          if (tracing) this.logger.frame('<', answer, { capability });
          resolve(answer);
        },
        (error: unknown) => {
          if (!this.settle(exchange)) return;
          if (this.closed) reject(this.goneError(error));
          else if (this.#currentTag?.id !== tag.id) reject(tagLostError(`${capability} exchange`, error));
          else reject(toTaplineError(error, ErrorCode.ProtocolError));
        },
      );
    });
  }

  readonly #onDeadline = (): void => {
    const exchange = this.#inFlight;
    if (exchange) {
      this.failExchange(timeoutError(`${exchange.capability} exchange with ${this.name}`, exchange.timeoutMs));
    }
  };

  readonly #onOuterAbort = (): void => {
    const exchange = this.#inFlight;
    if (exchange)
      this.failExchange(abortError(`${exchange.capability} exchange with ${this.name}`, exchange.outer?.reason));
  };

  /** Ends `exchange` if it is still the one in flight; false when something else settled it first. */
  private settle(exchange: InFlightExchange): boolean {
    if (this.#inFlight !== exchange) return false;
    this.#inFlight = undefined;
    this.#deadline.stop();
    exchange.outer?.removeEventListener('abort', this.#onOuterAbort);
    this.passTurn();
    return true;
  }

  /**
   * Fails the exchange in flight with `error` and aborts the signal its driver holds (a fresh one serves the next
   * exchange). The driver's late answer, if any, is dropped.
   */
  private failExchange(error: TaplineError): void {
    const exchange = this.#inFlight;
    if (!exchange || !this.settle(exchange)) return;
    const controller = this.#exchangeController;
    this.#exchangeController = new AbortController();
    exchange.reject(error);
    controller.abort(error);
  }

  /** Hands the turn to the next waiting exchange or feedback call. */
  private passTurn(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#busy = false;
  }

  private assertCanSend(tag: Tag, capability: FrameCapability, frame: Uint8Array): void {
    this.assertOpen();
    if (!this.capabilities.has(capability)) throw this.unsupportedCapability(capability);
    if (!tag.protocols.includes(capability)) {
      throw new TaplineError(
        ErrorCode.UnsupportedCapability,
        `The tag on ${this.name} does not answer ${capability} frames (it speaks ${tag.protocols.join(', ') || 'nothing this reader can reach'}).`,
        { details: { capability, protocols: tag.protocols } },
      );
    }
    if (frame.length === 0) {
      throw new TaplineError(ErrorCode.InvalidArgument, 'Refusing to send an empty frame.');
    }
  }

  async feedback(feedback: ReaderFeedback, options: TransmitOptions = {}): Promise<void> {
    this.assertOpen();
    if (feedback.led !== undefined && !this.capabilities.has(Capability.Led)) throw this.unsupported('LED control');
    if (feedback.beepMs !== undefined && !this.capabilities.has(Capability.Buzzer)) {
      throw this.unsupported('buzzer control');
    }
    const signal = combineSignals(options.signal, this.#lifetime.signal);
    await this.serialize(() =>
      withDeadline(
        { what: `feedback on ${this.name}`, timeoutMs: options.timeoutMs ?? this.defaultTimeoutMs, signal },
        (s) => this.applyFeedback(feedback, s),
      ),
    );
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#lifetime.abort(this.goneError());
      this.failExchange(this.goneError());
      this.#deadline.dispose();
      this.tagLeft();
      this.#events.complete();
      try {
        await this.release();
      } catch (error) {
        this.logger.warn('releasing the reader failed', { error });
      }
    })();
    return this.#closing;
  }

  /** Formats a frame for error messages. */
  protected describe(frame: Uint8Array): string {
    return toSpacedHex(frame.subarray(0, 32)) + (frame.length > 32 ? ' …' : '');
  }

  private assertOpen(): void {
    if (this.closed) throw this.goneError();
  }

  private goneError(cause?: unknown): TaplineError {
    return new TaplineError(ErrorCode.ReaderGone, `The reader ${this.name} is no longer available.`, {
      cause,
      hint: 'Check the cable, then run `tapline readers` to see what is attached.',
    });
  }

  /**
   * The error for a frame capability this reader lacks. Drivers override it to say more than "cannot", for example
   * which readers can read a Spark 1 when the RF front end has no ISO 15693.
   */
  protected unsupportedCapability(capability: FrameCapability): TaplineError {
    return this.unsupported(capability);
  }

  /** The error for something this reader cannot do. */
  protected unsupported(what: string): TaplineError {
    return new TaplineError(
      ErrorCode.UnsupportedCapability,
      `${this.name} (driver ${this.driverId}) cannot do ${what}.`,
      { details: { reader: this.name, driver: this.driverId, capabilities: [...this.capabilities] } },
    );
  }

  private async serialize<T>(operation: () => Promise<T>): Promise<T> {
    if (this.#busy) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    else this.#busy = true;
    try {
      return await operation();
    } finally {
      this.passTurn();
    }
  }
}

/** The bookkeeping of the exchange in flight: a class, so that every exchange has the same shape. */
class InFlightExchange {
  outer: AbortSignal | undefined = undefined;
  constructor(
    readonly tag: Tag,
    readonly capability: FrameCapability,
    readonly timeoutMs: number,
    readonly resolve: (answer: Uint8Array) => void,
    readonly reject: (error: TaplineError) => void,
  ) {}
}

/** An AbortSignal that fires when any of `signals` fires, keeping that signal's reason. */
export function combineSignals(...signals: readonly (AbortSignal | undefined)[]): AbortSignal {
  const present = signals.filter((s): s is AbortSignal => s !== undefined);
  return present.length === 1 ? present[0]! : AbortSignal.any(present);
}
