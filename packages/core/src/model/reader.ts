import { Subject, defer, startWith, type Observable } from 'rxjs';
import { Capability, sortCapabilities, type FrameCapability } from './capabilities.js';
import { ErrorCode, TaplineError, tagLostError, toTaplineError } from './errors.js';
import type { Tag, TagInfo } from './tag.js';
import { withDeadline } from '../util/deadline.js';
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
  /** Aborted when the current tag leaves; every exchange with that tag listens to it. */
  #presence = new AbortController();
  /** Presence and lifetime in one signal, built once per tag rather than once per frame. */
  #tagSignal: AbortSignal | undefined;
  /** Aborted on close. */
  readonly #lifetime = new AbortController();
  #queue: Promise<unknown> = Promise.resolve();
  #closing: Promise<void> | undefined;

  protected constructor(options: ReaderBaseOptions) {
    this.name = options.name;
    this.driverId = options.driverId;
    this.capabilities = new Set(sortCapabilities(options.capabilities));
    this.logger = options.logger.child({ reader: options.name });
    this.clock = options.clock;
    this.defaultTimeoutMs = options.defaultTimeoutMs ?? 2000;
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

  /** Sends `frame` and returns the raw answer. Called one at a time; `signal` fires on timeout, abort or removal. */
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
    this.#presence = new AbortController();
    this.#tagSignal = AbortSignal.any([this.#presence.signal, this.#lifetime.signal]);
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
    this.#presence.abort(tagLostError('the exchange'));
    this.logger.debug('tag left', { uid: tag.uid });
    this.#events.next({ type: 'tag-left', tag });
  }

  async transmit(
    tag: Tag,
    capability: FrameCapability,
    frame: Uint8Array,
    options: TransmitOptions = {},
  ): Promise<Uint8Array> {
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
    return this.serialize(async () => {
      if (this.#currentTag?.id !== tag.id) throw tagLostError(`${capability} exchange`);
      const presence = this.#presence.signal;
      const tagSignal = this.#tagSignal ?? combineSignals(presence, this.#lifetime.signal);
      const signal = options.signal ? combineSignals(options.signal, tagSignal) : tagSignal;
      const timeoutMs = options.timeoutMs ?? this.defaultTimeoutMs;
      const tracing = this.logger.enabled('trace');
      if (tracing) this.logger.frame('>', frame, { capability });
      try {
        const answer = await withDeadline(
          { what: `${capability} exchange with ${this.name}`, timeoutMs, signal },
          (s) => this.exchange(tag, capability, frame, s),
        );
        if (tracing) this.logger.frame('<', answer, { capability });
        return answer;
      } catch (error) {
        if (this.#lifetime.signal.aborted) throw this.goneError(error);
        if (presence.aborted) throw tagLostError(`${capability} exchange`, error);
        throw toTaplineError(error, ErrorCode.ProtocolError);
      }
    });
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

  private serialize<T>(operation: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(operation, operation);
    this.#queue = run.catch(() => undefined);
    return run;
  }
}

/** An AbortSignal that fires when any of `signals` fires, keeping that signal's reason. */
export function combineSignals(...signals: readonly (AbortSignal | undefined)[]): AbortSignal {
  const present = signals.filter((s): s is AbortSignal => s !== undefined);
  return present.length === 1 ? present[0]! : AbortSignal.any(present);
}
