import { Observable, ReplaySubject } from 'rxjs';
import { ErrorCode, TaplineError, isTaplineError, tagLostError, timeoutError } from '../model/errors.js';
import type { Logger } from '../runtime/logger.js';
import { SerialDeadline, settleWithin, withDeadline } from '../util/deadline.js';
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
} from './pcsc.js';

// ---------------------------------------------------------------------------------------------------------------
// The binding, as far as Tapline uses it
// ---------------------------------------------------------------------------------------------------------------

/** The `{ state, atr }` object a `pcsclite` CardReader emits with its 'status' event. */
export interface PcscliteStatusLike {
  readonly state: number;
  readonly atr?: Uint8Array | undefined;
}

/** Node-style callback of the binding: an error, or `null`/`undefined` and a value. */
export type PcscliteCallback<T> = (error: Error | null | undefined, value?: T) => void;

/**
 * The part of a `pcsclite` 1.x `CardReader` that Tapline uses. Test doubles implement exactly this (see
 * `@tapline/core/testing`).
 */
export interface PcscliteReaderLike {
  readonly name: string;
  /** The binding's own idea of whether it holds a card handle; it stays `true` for a stale handle. */
  readonly connected: boolean;
  readonly SCARD_SHARE_SHARED: number;
  readonly SCARD_SHARE_EXCLUSIVE: number;
  readonly SCARD_SHARE_DIRECT: number;
  readonly SCARD_PROTOCOL_T0: number;
  readonly SCARD_PROTOCOL_T1: number;
  readonly SCARD_PROTOCOL_RAW: number;
  readonly SCARD_LEAVE_CARD: number;
  readonly SCARD_RESET_CARD: number;
  readonly SCARD_UNPOWER_CARD: number;
  readonly SCARD_EJECT_CARD: number;
  on(event: 'status', listener: (status: PcscliteStatusLike) => void): unknown;
  on(event: 'end', listener: () => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
  connect(options: { share_mode: number; protocol: number }, callback: PcscliteCallback<number>): void;
  disconnect(disposition: number, callback: PcscliteCallback<void>): void;
  transmit(data: Uint8Array, responseLength: number, protocol: number, callback: PcscliteCallback<Buffer>): void;
  control(data: Buffer, controlCode: number, responseLength: number, callback: PcscliteCallback<Buffer>): void;
  close(): void;
}

/** The part of a `pcsclite` 1.x `PCSCLite` context that Tapline uses. */
export interface PcscliteContextLike {
  on(event: 'reader', listener: (reader: PcscliteReaderLike) => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
  close(): void;
}

/**
 * The `pcsclite` module itself: a factory that establishes a context. It throws synchronously when pcscd is not
 * running (`SCardEstablishContext error: Service not available.(0x8010001d)`).
 */
export type PcscliteModuleLike = () => PcscliteContextLike;

// ---------------------------------------------------------------------------------------------------------------
// Constants and error mapping
// ---------------------------------------------------------------------------------------------------------------

/** `dwEventState` bits of SCardGetStatusChange (identical in pcsc-lite, macOS and Windows). */
export const PcscState = {
  Ignore: 0x0001,
  Changed: 0x0002,
  Unknown: 0x0004,
  Unavailable: 0x0008,
  Empty: 0x0010,
  Present: 0x0020,
  AtrMatch: 0x0040,
  Exclusive: 0x0080,
  InUse: 0x0100,
  Mute: 0x0200,
  Unpowered: 0x0400,
} as const;

/** PC/SC return codes that Tapline tells apart. */
export const PcscReturnCode = {
  Cancelled: 0x80100002,
  InvalidHandle: 0x80100003,
  UnknownReader: 0x80100009,
  Timeout: 0x8010000a,
  SharingViolation: 0x8010000b,
  NoSmartcard: 0x8010000c,
  CommError: 0x80100013,
  NotTransacted: 0x80100016,
  ReaderUnavailable: 0x80100017,
  NoService: 0x8010001d,
  ServiceStopped: 0x8010001e,
  UnsupportedFeature: 0x8010001f,
  UnresponsiveCard: 0x80100066,
  UnpoweredCard: 0x80100067,
  ResetCard: 0x80100068,
  RemovedCard: 0x80100069,
} as const;

/** The PC/SC return code in a binding error message (`… error: Card was removed.(0x80100069)`), if any. */
export function pcscReturnCode(error: unknown): number | undefined {
  const message = error instanceof Error ? error.message : typeof error === 'string' ? error : '';
  const match = /\(0x([0-9a-f]{1,8})\)/i.exec(message);
  return match ? Number.parseInt(match[1]!, 16) >>> 0 : undefined;
}

const SERVICE_HINT =
  'Start the PC/SC service: `sudo systemctl start pcscd.socket` on Linux; on Windows start the "Smart Card" service (services.msc); on macOS it starts when a reader is plugged in.';

/** The error for a PC/SC service that is not running (or died). */
export function pcscServiceUnavailableError(cause?: unknown): TaplineError {
  return new TaplineError(
    ErrorCode.TransportUnavailable,
    'The PC/SC service (pcscd) is not running or stopped answering; start it (`sudo systemctl start pcscd.socket`, or the "Smart Card" service on Windows).',
    { cause, hint: SERVICE_HINT, details: codeDetails(cause) },
  );
}

/** The error for a `pcsclite` module that is not installed or not built. */
export function pcscBindingMissingError(cause?: unknown): TaplineError {
  return new TaplineError(
    ErrorCode.TransportUnavailable,
    'The PC/SC binding `pcsclite` is not installed or not built: install libpcsclite-dev (Debian/Ubuntu; pcsc-lite-devel on Fedora), then run `pnpm rebuild pcsclite`.',
    {
      cause,
      hint: 'Install the PC/SC development headers and rebuild the native binding with `pnpm rebuild pcsclite` (again after every Node.js upgrade).',
    },
  );
}

function codeDetails(cause: unknown): Readonly<Record<string, unknown>> {
  const code = pcscReturnCode(cause);
  return code === undefined ? {} : { pcscCode: `0x${code.toString(16).padStart(8, '0')}` };
}

/** Which PC/SC call failed; it changes what some return codes mean. */
export type PcscOperation = 'connect' | 'transmit' | 'control' | 'disconnect' | 'context';

/**
 * Maps an error of the `pcsclite` binding to a {@link TaplineError}: card gone → `TAG_LOST`, pcscd gone →
 * `TRANSPORT_UNAVAILABLE`, reader gone → `READER_GONE`, everything else → `PROTOCOL_ERROR` (or a closer code).
 */
export function mapPcscError(error: unknown, operation: PcscOperation, readerName: string): TaplineError {
  if (isTaplineError(error)) return error;
  const code = pcscReturnCode(error);
  const where = `${operation} on ${readerName}`;
  const details = { reader: readerName, operation, ...codeDetails(error) };
  switch (code) {
    case PcscReturnCode.NoSmartcard:
    case PcscReturnCode.RemovedCard:
    case PcscReturnCode.UnpoweredCard:
    case PcscReturnCode.UnresponsiveCard:
      // For a contactless reader these all mean the tag is no longer (properly) in the field.
      return tagLostError(where, error);
    case PcscReturnCode.NoService:
    case PcscReturnCode.ServiceStopped:
    case PcscReturnCode.CommError:
      return pcscServiceUnavailableError(error);
    case PcscReturnCode.UnknownReader:
    case PcscReturnCode.ReaderUnavailable:
      return new TaplineError(ErrorCode.ReaderGone, `The reader ${readerName} is no longer available (${where}).`, {
        cause: error,
        details,
        hint: 'Check the cable, then run `tapline readers` to see what is attached.',
      });
    case PcscReturnCode.Timeout:
      return new TaplineError(ErrorCode.Timeout, `PC/SC timed out during ${where}.`, { cause: error, details });
    case PcscReturnCode.Cancelled:
      return new TaplineError(ErrorCode.Aborted, `PC/SC cancelled ${where}.`, { cause: error, details });
    case PcscReturnCode.SharingViolation:
      return new TaplineError(ErrorCode.DriverFailed, `Another application holds ${readerName} exclusively.`, {
        cause: error,
        details,
        hint: 'Close the other smart-card application (or stop its service) and try again.',
      });
    case PcscReturnCode.UnsupportedFeature:
      return new TaplineError(
        ErrorCode.UnsupportedCapability,
        `${readerName} does not support this ${operation} call.`,
        {
          cause: error,
          details,
          hint: 'The reader driver rejects this control code; a vendor driver package may know another way in.',
        },
      );
    case PcscReturnCode.NotTransacted:
      return new TaplineError(ErrorCode.ProtocolError, `The reader did not carry out the ${where}.`, {
        cause: error,
        details,
        hint:
          operation === 'control'
            ? 'The CCID driver blocks escape commands unless ifdDriverOptions 0x0001 is set in its Info.plist (Windows: EscapeCommandEnable).'
            : 'Hold the tag still on the reader and try again.',
      });
    default:
      break;
  }
  if (code === undefined && error instanceof Error && /not connected/i.test(error.message)) {
    // The binding's own refusal after the handle was dropped; for the caller the tag is as good as gone.
    return tagLostError(where, error);
  }
  const text = error instanceof Error ? error.message : String(error);
  return new TaplineError(ErrorCode.ProtocolError, `PC/SC ${where} failed: ${text}`, { cause: error, details });
}

/** Decodes a binding status into the transport's {@link PcscReaderStatus}. */
export function decodePcscStatus(state: number, atr?: Uint8Array): PcscReaderStatus {
  // A mute card is in the field but did not answer activation; it cannot be connected, so it counts as absent.
  const present = (state & PcscState.Present) !== 0 && (state & PcscState.Mute) === 0;
  return present && atr && atr.length > 0 ? { present, atr: Uint8Array.from(atr), state } : { present, state };
}

// ---------------------------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------------------------

/**
 * Loads the `pcsclite` binding. Fails with `TRANSPORT_UNAVAILABLE` (and the loader's error as cause) when the
 * module is missing or its native part was never built.
 */
export async function loadPcscBinding(): Promise<PcscliteModuleLike> {
  // A computed specifier keeps TypeScript (and bundlers) from requiring the optional dependency at build time.
  const specifier = 'pcsclite';
  let loaded: unknown;
  try {
    loaded = await import(specifier);
  } catch (error) {
    throw pcscBindingMissingError(error);
  }
  const factory = (loaded as { default?: unknown }).default ?? loaded;
  if (typeof factory !== 'function') {
    throw pcscBindingMissingError(new Error('the pcsclite module does not export a function'));
  }
  return factory as PcscliteModuleLike;
}

// ---------------------------------------------------------------------------------------------------------------
// The transport
// ---------------------------------------------------------------------------------------------------------------

/** Options of {@link createNativePcscTransport}. */
export interface NativePcscOptions {
  readonly logger: Logger;
  /** Loads the binding; default {@link loadPcscBinding}. Tests inject a fake or a failing loader. */
  readonly loadBinding?: () => Promise<PcscliteModuleLike>;
  /** Default SCardConnect timeout in milliseconds when the caller gives none. Default 5000. */
  readonly connectTimeoutMs?: number;
  /** Platform for `SCARD_CTL_CODE`; default `process.platform`. */
  readonly platform?: NodeJS.Platform;
}

/** Room for an extended APDU response (65536 data bytes + SW1 SW2); pcsc-lite caps buffers just above this. */
const MAX_RESPONSE_BYTES = 65_538;
/** SCardDisconnect never waits on the card, only on pcscd; longer means pcscd is stuck. */
const DISCONNECT_TIMEOUT_MS = 2000;

/**
 * The PC/SC transport over the native `pcsclite` binding, loaded lazily on the first subscription. Each
 * subscription to `readers$` owns one PC/SC context; unsubscribing closes it and every reader.
 */
export function createNativePcscTransport(options: NativePcscOptions): PcscTransport {
  const logger = options.logger.child({ transport: 'pcsc' });
  const load = options.loadBinding ?? loadPcscBinding;
  const settings: PortSettings = {
    logger,
    connectTimeoutMs: options.connectTimeoutMs ?? 5000,
    platform: options.platform ?? process.platform,
  };
  const readers$ = new Observable<PcscReaderEvent>((subscriber) => {
    let stopped = false;
    let context: PcscliteContextLike | undefined;
    const ports = new Map<string, NativeReaderPort>();

    const closeContext = (): void => {
      const ctx = context;
      context = undefined;
      if (!ctx) return;
      // Closing before the binding's deferred start() ran would leave its status thread behind: close a tick later.
      setImmediate(() => {
        try {
          ctx.close();
        } catch (error) {
          logger.debug('closing the PC/SC context failed', { error });
        }
      });
    };

    const shutDown = (): void => {
      for (const port of ports.values()) port.dispose();
      ports.clear();
      closeContext();
    };

    const onReader = (raw: PcscliteReaderLike): void => {
      // Listeners stay for the object's lifetime: the binding emits 'error' after close, and unheard errors kill the process.
      raw.on('error', (error: Error) => {
        if (stopped) logger.debug('PC/SC reader error after close', { reader: raw.name, error });
        else logger.debug('PC/SC reader error', { reader: raw.name, error });
      });
      if (stopped) {
        closeQuietly(raw, logger);
        return;
      }
      const previous = ports.get(raw.name);
      if (previous) {
        // Same name again without an 'end' in between: treat the old one as gone.
        previous.dispose();
        ports.delete(raw.name);
        subscriber.next({ type: 'detached', name: raw.name });
      }
      const port = new NativeReaderPort(raw, settings);
      ports.set(raw.name, port);
      raw.on('status', (status: PcscliteStatusLike) => {
        if (!stopped) port.pushStatus(status);
      });
      raw.on('end', () => {
        if (ports.get(raw.name) !== port) return;
        ports.delete(raw.name);
        port.dispose();
        if (!stopped) subscriber.next({ type: 'detached', name: raw.name });
      });
      logger.debug('PC/SC reader attached', { reader: raw.name });
      subscriber.next({ type: 'attached', reader: port });
    };

    const onContextError = (error: Error): void => {
      if (stopped) {
        // pcsc.close() always ends with 'Command cancelled'; it means nothing here.
        logger.debug('PC/SC context error after close', { error });
        return;
      }
      stopped = true;
      logger.debug('PC/SC context failed', { error });
      for (const name of ports.keys()) subscriber.next({ type: 'detached', name });
      shutDown();
      subscriber.error(contextError(error));
    };

    load().then(
      (factory) => {
        if (stopped) return;
        let created: PcscliteContextLike;
        try {
          created = factory();
        } catch (error) {
          stopped = true;
          subscriber.error(contextError(error));
          return;
        }
        context = created;
        created.on('error', onContextError);
        created.on('reader', onReader);
      },
      (error: unknown) => {
        if (stopped) return;
        stopped = true;
        subscriber.error(isTaplineError(error) ? error : pcscBindingMissingError(error));
      },
    );

    return () => {
      if (stopped && context === undefined && ports.size === 0) return;
      stopped = true;
      shutDown();
    };
  });
  return { readers$ };
}

/** Whatever stops a PC/SC context is, for the device source, a transport that must be re-established. */
function contextError(error: unknown): TaplineError {
  const code = pcscReturnCode(error);
  if (
    code === PcscReturnCode.NoService ||
    code === PcscReturnCode.ServiceStopped ||
    code === PcscReturnCode.CommError
  ) {
    return pcscServiceUnavailableError(error);
  }
  const text = error instanceof Error ? error.message : String(error);
  return new TaplineError(ErrorCode.TransportUnavailable, `The PC/SC context failed: ${text}`, {
    cause: error,
    hint: SERVICE_HINT,
    details: codeDetails(error),
  });
}

/**
 * Closes a binding reader on a later turn. The binding emits 'status', 'error' and 'end' while holding the reader's
 * mutex, and `close()` takes that same mutex: closing from inside any of those events (or from anything they trigger
 * synchronously, such as an unsubscribe) would deadlock the main thread.
 */
function closeQuietly(raw: PcscliteReaderLike, logger: Logger): void {
  setImmediate(() => {
    try {
      raw.close();
    } catch (error) {
      logger.debug('closing a PC/SC reader failed', { reader: raw.name, error });
    }
  });
}

interface PortSettings {
  readonly logger: Logger;
  readonly connectTimeoutMs: number;
  readonly platform: NodeJS.Platform;
}

/**
 * One reader of the binding. The binding keeps a single card handle per reader, so a port has at most one live
 * {@link PcscCard}: a new `connect` replaces the previous connection.
 */
class NativeReaderPort implements PcscReaderPort {
  readonly name: string;
  readonly status$: Observable<PcscReaderStatus>;
  readonly #status = new ReplaySubject<PcscReaderStatus>(1);
  readonly #raw: PcscliteReaderLike;
  readonly #settings: PortSettings;
  #card: NativeCard | undefined;
  #gone = false;
  /** Bumped per connect, so that a connect finishing after its deadline can tell whether it is still wanted. */
  #generation = 0;
  #lock: Promise<unknown> = Promise.resolve();
  /** Native calls whose callback has not come yet; the reader is closed only when there are none. */
  #inFlight = 0;
  #closeWhenIdle = false;

  constructor(raw: PcscliteReaderLike, settings: PortSettings) {
    this.#raw = raw;
    this.#settings = settings;
    this.name = raw.name;
    this.status$ = this.#status.asObservable();
  }

  pushStatus(status: PcscliteStatusLike): void {
    if (this.#gone) return;
    this.#status.next(decodePcscStatus(status.state, status.atr));
  }

  controlCode(functionNumber: number): number {
    return scardCtlCode(functionNumber, this.#settings.platform);
  }

  connect(options: PcscConnectOptions): Promise<PcscCard> {
    const timeoutMs = options.timeoutMs ?? this.#settings.connectTimeoutMs;
    return this.exclusive(async () => {
      if (this.#gone) throw this.goneError();
      const generation = ++this.#generation;
      this.#card?.markReleased();
      this.#card = undefined;
      if (this.#raw.connected) {
        // A handle left from a removed card (or a late connect) must go before SCardConnect works again.
        await this.nativeDisconnect('leave');
        if (this.#raw.connected) {
          throw pcscServiceUnavailableError(new Error(`the stale card handle of ${this.name} could not be released`));
        }
      }
      const { share, protocols } = this.shareParameters(options.share);
      const native = this.call<number>((done) => this.#raw.connect({ share_mode: share, protocol: protocols }, done));
      let protocol: number | undefined;
      try {
        protocol = await settleWithin({ what: `connecting to ${this.name}`, timeoutMs }, () => native);
      } catch (error) {
        native.then(
          () => {
            // Nobody asked again meanwhile: give the late handle back.
            if (this.#generation === generation) void this.exclusive(() => this.nativeDisconnect('leave'));
          },
          () => undefined,
        );
        throw mapPcscError(error, 'connect', this.name);
      }
      if (protocol === undefined) {
        throw new TaplineError(ErrorCode.ProtocolError, `SCardConnect on ${this.name} reported no protocol.`, {
          hint: 'Unplug and replug the reader; if it persists, restart pcscd.',
        });
      }
      const card = new NativeCard(this, this.#raw, this.protocolName(protocol, options.share), protocol);
      this.#card = card;
      return card;
    });
  }

  /** Called by a card that disconnects itself. */
  releaseCard(card: NativeCard, disposition: PcscDisposition): Promise<void> {
    if (this.#card !== card) return Promise.resolve();
    this.#card = undefined;
    return this.exclusive(() => this.nativeDisconnect(disposition));
  }

  dispose(): void {
    if (this.#gone) return;
    this.#gone = true;
    this.#card?.markReleased();
    this.#card = undefined;
    this.#status.complete();
    const raw = this.#raw;
    if (raw.connected) {
      this.call<void>((done) => raw.disconnect(raw.SCARD_LEAVE_CARD, done)).catch((error: unknown) => {
        this.#settings.logger.debug('disconnect during close failed', { reader: this.name, error });
      });
    }
    this.#closeWhenIdle = true;
    if (this.#inFlight === 0) closeQuietly(raw, this.#settings.logger);
    else
      this.#settings.logger.debug('closing the reader once its native calls return', {
        reader: this.name,
        inFlight: this.#inFlight,
      });
  }

  /**
   * Runs one native call and counts it: the binding's `close()` waits for a mutex that a pending SCardTransmit holds,
   * so closing while a call hangs would block the event loop for as long as the card stays silent.
   */
  call<T>(start: (done: PcscliteCallback<T>) => void): Promise<T | undefined> {
    return new Promise<T | undefined>((resolve, reject) => {
      this.invoke(start, (error, value) => {
        if (error) reject(error);
        else resolve(value);
      });
    });
  }

  /** {@link NativeReaderPort.call} without the promise, for the per-frame path. `callback` runs once. */
  invoke<T>(start: (done: PcscliteCallback<T>) => void, callback: PcscliteCallback<T>): void {
    this.#inFlight++;
    let settled = false;
    const done: PcscliteCallback<T> = (error, value) => {
      if (settled) return;
      settled = true;
      this.#inFlight--;
      if (this.#inFlight === 0 && this.#closeWhenIdle) closeQuietly(this.#raw, this.#settings.logger);
      callback(error, value);
    };
    try {
      start(done);
    } catch (error) {
      done(error instanceof Error ? error : new Error(String(error)));
    }
  }

  goneError(): TaplineError {
    return new TaplineError(ErrorCode.ReaderGone, `The reader ${this.name} is no longer available.`, {
      hint: 'Check the cable, then run `tapline readers` to see what is attached.',
    });
  }

  /** Never throws: the handle is treated as gone either way. */
  private async nativeDisconnect(disposition: PcscDisposition): Promise<void> {
    const raw = this.#raw;
    const code = {
      leave: raw.SCARD_LEAVE_CARD,
      reset: raw.SCARD_RESET_CARD,
      unpower: raw.SCARD_UNPOWER_CARD,
      eject: raw.SCARD_EJECT_CARD,
    }[disposition];
    try {
      await withDeadline({ what: `disconnecting from ${this.name}`, timeoutMs: DISCONNECT_TIMEOUT_MS }, () =>
        this.call<void>((done) => raw.disconnect(code, done)),
      );
    } catch (error) {
      this.#settings.logger.debug('SCardDisconnect failed', { reader: this.name, error });
    }
  }

  private shareParameters(mode: PcscShareMode): { share: number; protocols: number } {
    const raw = this.#raw;
    switch (mode) {
      case 'shared':
        return { share: raw.SCARD_SHARE_SHARED, protocols: raw.SCARD_PROTOCOL_T0 | raw.SCARD_PROTOCOL_T1 };
      case 'exclusive':
        return { share: raw.SCARD_SHARE_EXCLUSIVE, protocols: raw.SCARD_PROTOCOL_T0 | raw.SCARD_PROTOCOL_T1 };
      case 'direct':
        // Protocol 0 (UNDEFINED) is what lets pcsc-lite connect to a reader without a card.
        return { share: raw.SCARD_SHARE_DIRECT, protocols: 0 };
    }
  }

  private protocolName(protocol: number, mode: PcscShareMode): PcscCard['protocol'] {
    const raw = this.#raw;
    if (protocol === raw.SCARD_PROTOCOL_T0) return 'T0';
    if (protocol === raw.SCARD_PROTOCOL_T1) return 'T1';
    if (protocol === raw.SCARD_PROTOCOL_RAW) return 'RAW';
    if (protocol === 0 || mode === 'direct') return 'none';
    return 'RAW';
  }

  private exclusive<T>(operation: () => Promise<T>): Promise<T> {
    const run = this.#lock.then(operation, operation);
    this.#lock = run.catch(() => undefined);
    return run;
  }
}

/** A connection made by {@link NativeReaderPort.connect}. */
class NativeCard implements PcscCard {
  readonly protocol: PcscCard['protocol'];
  readonly #port: NativeReaderPort;
  readonly #raw: PcscliteReaderLike;
  readonly #protocolNumber: number;
  #released = false;
  /** True while a transmit on the fast path runs; {@link NativeCard.#deadline} serves one transmit at a time. */
  #transmitting = false;
  readonly #deadline = new SerialDeadline({ keepAlive: false });

  constructor(port: NativeReaderPort, raw: PcscliteReaderLike, protocol: PcscCard['protocol'], protocolNumber: number) {
    this.#port = port;
    this.#raw = raw;
    this.protocol = protocol;
    this.#protocolNumber = protocolNumber;
  }

  markReleased(): void {
    this.#released = true;
  }

  transmit(command: Uint8Array, options: PcscCallOptions): Promise<Uint8Array> {
    // The common case (one call at a time, no signal) takes a path with no timer or listener of its own per frame:
    // those alone cost more than the rest of Tapline's work on an APDU (bench/apdu-overhead).
    if (this.#transmitting || options.signal || this.#released) {
      return this.guarded(
        'transmit',
        options,
        () => new Promise((resolve, reject) => this.send(command, resolve, reject)),
      );
    }
    this.#transmitting = true;
    return new Promise<Uint8Array>((resolve, reject) => {
      let settled = false;
      const finish = (): boolean => {
        if (settled) return false;
        settled = true;
        this.#transmitting = false;
        this.#deadline.stop();
        return true;
      };
      this.#deadline.start(options.timeoutMs, () => {
        if (finish()) reject(timeoutError(`transmit on ${this.#port.name}`, options.timeoutMs));
      });
      this.send(
        command,
        (answer) => {
          if (finish()) resolve(answer);
        },
        (error) => {
          if (finish()) reject(error);
        },
      );
    });
  }

  /** One SCardTransmit; a late answer after the caller gave up is dropped by the caller's own settle guard. */
  private send(
    command: Uint8Array,
    resolve: (answer: Uint8Array) => void,
    reject: (error: TaplineError) => void,
  ): void {
    const name = this.#port.name;
    // The binding takes any Uint8Array and copies it before returning, and it answers with a fresh buffer: no copies
    // on either side.
    this.#port.invoke<Buffer>(
      (done) => this.#raw.transmit(command, MAX_RESPONSE_BYTES, this.#protocolNumber, done),
      (error, response) => {
        if (error) {
          reject(mapPcscError(error, 'transmit', name));
          return;
        }
        // pcscd answers a transmit pending at removal with success and no bytes.
        if (!response || response.length < 2) {
          reject(tagLostError(`transmit on ${name}`, new Error(`short response (${response?.length ?? 0} bytes)`)));
          return;
        }
        resolve(new Uint8Array(response.buffer, response.byteOffset, response.length));
      },
    );
  }

  control(code: number, data: Uint8Array, options: PcscCallOptions): Promise<Uint8Array> {
    const name = this.#port.name;
    return this.guarded('control', options, async () => {
      const input = Buffer.from(data);
      try {
        const response = await this.#port.call<Buffer>((done) =>
          this.#raw.control(input, code, MAX_RESPONSE_BYTES, done),
        );
        return Uint8Array.from(response ?? []);
      } catch (error) {
        throw mapPcscError(error, 'control', name);
      }
    });
  }

  disconnect(disposition: PcscDisposition = 'leave'): Promise<void> {
    if (this.#released) return Promise.resolve();
    this.#released = true;
    return this.#port.releaseCard(this, disposition);
  }

  private async guarded<T>(
    operation: 'transmit' | 'control',
    options: PcscCallOptions,
    run: () => Promise<T>,
  ): Promise<T> {
    if (this.#released) {
      throw tagLostError(`${operation} on ${this.#port.name}`, new Error('the connection was closed'));
    }
    // The native call cannot be cancelled; the deadline settles our promise and the late answer is dropped.
    return settleWithin(
      { what: `${operation} on ${this.#port.name}`, timeoutMs: options.timeoutMs, signal: options.signal },
      run,
    );
  }
}
