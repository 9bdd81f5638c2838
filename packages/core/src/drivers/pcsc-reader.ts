import type { Subscription } from 'rxjs';
import { Capability, type FrameCapability } from '../model/capabilities.js';
import type { AttachedDevice, DriverContext } from '../model/driver.js';
import { ErrorCode, TaplineError, hasErrorCode, tagLostError, toTaplineError } from '../model/errors.js';
import { ReaderBase, type ReaderFeedback } from '../model/reader.js';
import type { Tag, TagInfo } from '../model/tag.js';
import type { PcscCard, PcscReaderPort, PcscReaderStatus } from '../transport/pcsc.js';
import { toSpacedHex } from '../util/bytes.js';
import { parseContactlessAtr } from '../model/atr.js';
import { withDeadline } from '../util/deadline.js';

// ---------------------------------------------------------------------------------------------------------------
// Get Data (FF CA)
// ---------------------------------------------------------------------------------------------------------------

/** `FF CA 00 00 00`: PC/SC Part 3 Get Data, UID (or PUPI / IDm), full length. */
export const GET_UID_APDU: Uint8Array = Uint8Array.of(0xff, 0xca, 0x00, 0x00, 0x00);

/**
 * Interprets the answer to a Get Data command (`FF CA P1 00 Le`): the data on `90 00` (or `62 82`, end of data
 * before Le), `UNSUPPORTED_CAPABILITY` on `6A 81`, `PROTOCOL_ERROR` for every other status word.
 */
export function parseGetDataResponse(response: Uint8Array, readerName: string): Uint8Array {
  if (response.length < 2) throw tagLostError('Get Data', new Error(`short response (${response.length} bytes)`));
  const sw1 = response[response.length - 2]!;
  const sw2 = response[response.length - 1]!;
  const data = response.slice(0, -2);
  const sw = toSpacedHex(response.subarray(-2));
  if ((sw1 === 0x90 && sw2 === 0x00) || (sw1 === 0x62 && sw2 === 0x82)) {
    if (data.length === 0) {
      throw new TaplineError(ErrorCode.ProtocolError, `${readerName} answered Get Data with ${sw} but no data.`);
    }
    return data;
  }
  const details = { reader: readerName, sw };
  if (sw1 === 0x6a && sw2 === 0x81) {
    throw new TaplineError(
      ErrorCode.UnsupportedCapability,
      `${readerName} does not support Get Data (FF CA) for this tag (SW ${sw}).`,
      {
        details,
        hint: 'Use the vendor driver for this reader, or a tag type the reader can report.',
      },
    );
  }
  if (sw1 === 0x63 && sw2 === 0x00) {
    throw new TaplineError(ErrorCode.ProtocolError, `${readerName} could not read the tag's UID (SW ${sw}).`, {
      details,
      hint: 'Hold the tag still on the reader and try again.',
    });
  }
  throw new TaplineError(ErrorCode.ProtocolError, `${readerName} answered Get Data with SW ${sw}.`, { details });
}

// ---------------------------------------------------------------------------------------------------------------
// The reader
// ---------------------------------------------------------------------------------------------------------------

/** What {@link PcscReaderHooks.identify} receives. */
export interface PcscIdentifyContext {
  readonly port: PcscReaderPort;
  readonly card: PcscCard;
  readonly status: PcscReaderStatus;
  /** What the generic identification found (ATR, UID); the hook returns a refined copy. */
  readonly info: TagInfo;
  readonly signal: AbortSignal;
  /** Per-call timeout for exchanges the hook makes. */
  readonly timeoutMs: number;
}

/** What {@link PcscReaderHooks.exchange} receives. */
export interface PcscExchangeContext {
  readonly port: PcscReaderPort;
  readonly card: PcscCard;
  readonly tag: Tag;
  readonly capability: FrameCapability;
  readonly frame: Uint8Array;
  readonly signal: AbortSignal;
}

/** What {@link PcscReaderHooks.feedback} receives. */
export interface PcscFeedbackContext {
  readonly port: PcscReaderPort;
  /** The card connection while a tag is present (pseudo-APDUs can go through it). */
  readonly card: PcscCard | undefined;
  readonly feedback: ReaderFeedback;
  readonly signal: AbortSignal;
}

/**
 * Where a vendor driver plugs its own paths into {@link PcscReader} (escape commands, pseudo-APDUs, LED/buzzer).
 */
export interface PcscReaderHooks {
  /** Refines the tag description after the UID read (ATS, SAK, protocols the vendor path adds). */
  readonly identify?: (context: PcscIdentifyContext) => Promise<TagInfo>;
  /**
   * Carries frames for capabilities other than `iso14443-4` (and may take over `iso14443-4`). Return
   * `undefined` to leave the frame to the default path.
   */
  readonly exchange?: (context: PcscExchangeContext) => Promise<Uint8Array> | undefined;
  /** Drives LED and buzzer (declare the `led` / `buzzer` capabilities too). */
  readonly feedback?: (context: PcscFeedbackContext) => Promise<void>;
}

/** Options of {@link PcscReader} and {@link openPcscReader}. */
export interface PcscReaderOptions {
  /** The id of the driver that serves the reader. */
  readonly driverId: string;
  /** What the reader offers; default `['iso14443-4']`. Declare only what the driver really implements. */
  readonly capabilities?: readonly Capability[];
  /** Vendor paths. */
  readonly hooks?: PcscReaderHooks;
}

/** A tag the reader saw but could not identify. */
export interface PcscSkippedTag {
  readonly atr: Uint8Array | undefined;
  readonly error: TaplineError;
}

/** A safety net under the per-call deadline ReaderBase already enforces. */
const EXCHANGE_BACKSTOP_MS = 60_000;

/**
 * A contactless reader behind PC/SC. It follows the reader's status: when a tag arrives it connects (shared),
 * reads the UID with `FF CA 00 00 00`, decodes the ATR and announces the tag; when the tag leaves it disconnects.
 * ISO 14443-4 APDUs go out with SCardTransmit; vendor drivers add other paths through {@link PcscReaderHooks}.
 */
export class PcscReader extends ReaderBase {
  readonly #port: PcscReaderPort;
  readonly #hooks: PcscReaderHooks;
  readonly #timeoutMs: number;
  #subscription: Subscription | undefined;
  #card: PcscCard | undefined;
  /** Identity of the presence the status reports now (undefined: no tag). */
  #wantedKey: string | undefined;
  #wantedStatus: PcscReaderStatus | undefined;
  /** Identity of the presence the reader has dealt with (announced or skipped). */
  #activeKey: string | undefined;
  #arrival: AbortController | undefined;
  #reconciling: Promise<void> | undefined;
  #running = false;
  readonly #skipped: PcscSkippedTag[] = [];

  constructor(port: PcscReaderPort, context: DriverContext, options: PcscReaderOptions) {
    super({
      name: port.name,
      driverId: options.driverId,
      capabilities: options.capabilities ?? [Capability.Iso14443_4],
      logger: context.logger,
      clock: context.clock,
      defaultTimeoutMs: context.timeoutMs,
    });
    this.#port = port;
    this.#hooks = options.hooks ?? {};
    this.#timeoutMs = context.timeoutMs;
  }

  /** Tags seen but not announced, most recent last (at most 16 kept), for diagnostics. */
  get skippedTags(): readonly PcscSkippedTag[] {
    return this.#skipped;
  }

  /** Starts following the reader's status. Called once by {@link openPcscReader}. */
  start(): void {
    if (this.#subscription || this.closed) return;
    this.#subscription = this.#port.status$.subscribe({
      next: (status) => this.onStatus(status),
      error: (error: unknown) => {
        this.logger.warn('reader status failed', { error });
        void this.close();
      },
      complete: () => void this.close(),
    });
  }

  protected override async exchange(
    tag: Tag,
    capability: FrameCapability,
    frame: Uint8Array,
    signal: AbortSignal,
  ): Promise<Uint8Array> {
    const card = this.#card;
    if (!card) throw tagLostError(`${capability} exchange`);
    const hooked = this.#hooks.exchange?.({ port: this.#port, card, tag, capability, frame, signal });
    if (hooked) return hooked;
    if (capability !== Capability.Iso14443_4) throw this.unsupported(capability);
    return card.transmit(frame, { timeoutMs: EXCHANGE_BACKSTOP_MS, signal });
  }

  protected override applyFeedback(feedback: ReaderFeedback, signal: AbortSignal): Promise<void> {
    const hook = this.#hooks.feedback;
    if (!hook) return super.applyFeedback(feedback, signal);
    return hook({ port: this.#port, card: this.#card, feedback, signal });
  }

  protected override async release(): Promise<void> {
    this.#subscription?.unsubscribe();
    this.#arrival?.abort(new TaplineError(ErrorCode.ReaderGone, `The reader ${this.name} was closed.`));
    // Let an identification in progress unwind first, so it cannot connect again behind our back.
    await this.#reconciling?.catch(() => undefined);
    await this.dropCard();
  }

  private onStatus(status: PcscReaderStatus): void {
    if (this.closed) return;
    const key = presenceKey(status);
    this.#wantedStatus = status;
    if (key === this.#wantedKey) return;
    this.#wantedKey = key;
    // Leave at once so that exchanges in flight fail with TAG_LOST instead of waiting for a dead tag.
    this.tagLeft();
    this.#arrival?.abort(tagLostError('tag identification'));
    if (this.#running) return;
    this.#running = true;
    this.#reconciling = this.reconcile();
  }

  /** Brings the connection in line with the latest status; one run at a time (see {@link PcscReader.onStatus}). */
  private async reconcile(): Promise<void> {
    try {
      while (!this.closed && this.#activeKey !== this.#wantedKey) {
        if (this.#activeKey !== undefined) {
          this.tagLeft();
          await this.dropCard();
          this.#activeKey = undefined;
          continue;
        }
        const key = this.#wantedKey;
        const status = this.#wantedStatus;
        if (key === undefined || !status) break;
        await this.arrive(key, status);
      }
    } catch (error) {
      this.logger.warn('following the reader status failed', { error });
    } finally {
      // Runs in the same turn as the last loop check, so a status arriving afterwards starts a new run.
      this.#running = false;
    }
  }

  private async arrive(key: string, status: PcscReaderStatus): Promise<void> {
    const arrival = new AbortController();
    this.#arrival = arrival;
    try {
      const info = await this.identifyWithRetry(status, arrival.signal);
      if (arrival.signal.aborted || this.closed) {
        await this.dropCard();
        return;
      }
      this.#activeKey = key;
      this.tagArrived(info);
    } catch (error) {
      await this.dropCard();
      if (arrival.signal.aborted || this.closed) return;
      // The tag stays in the field but cannot be used: remember the presence so we do not loop on it.
      this.#activeKey = key;
      this.skip(status, toTaplineError(error, ErrorCode.ProtocolError));
    } finally {
      if (this.#arrival === arrival) this.#arrival = undefined;
    }
  }

  private async identifyWithRetry(status: PcscReaderStatus, signal: AbortSignal): Promise<TagInfo> {
    try {
      return await this.identify(status, signal);
    } catch (error) {
      if (
        signal.aborted ||
        hasErrorCode(error, ErrorCode.TagLost) ||
        hasErrorCode(error, ErrorCode.UnsupportedCapability)
      ) {
        throw error;
      }
      // pcsc-stack §4: a handle that outlived a removal stays broken until it is disconnected and connected again.
      this.logger.debug('identification failed, reconnecting once', { error });
      await this.dropCard();
      return this.identify(status, signal);
    }
  }

  private async identify(status: PcscReaderStatus, signal: AbortSignal): Promise<TagInfo> {
    const card = await this.connectCard(signal);
    const atr = status.atr ?? new Uint8Array(0);
    const parsed = parseContactlessAtr(atr);
    const uid = await this.readUid(card, signal);
    const protocols = parsed.protocols.filter((p) => this.capabilities.has(p));
    const info: TagInfo = {
      // ISO 14443-4 ATRs do not name A or B; A is by far the common case on these readers.
      technology: parsed.technology ?? 'iso14443a',
      uid,
      ...(atr.length > 0 ? { atr } : {}),
      protocols,
    };
    const refine = this.#hooks.identify;
    if (!refine) return info;
    return refine({ port: this.#port, card, status, info, signal, timeoutMs: this.#timeoutMs });
  }

  private async connectCard(signal: AbortSignal): Promise<PcscCard> {
    await this.dropCard();
    const connecting = this.#port.connect({ share: 'shared', timeoutMs: this.#timeoutMs });
    try {
      const card = await withDeadline(
        { what: `connecting to the tag on ${this.name}`, timeoutMs: this.#timeoutMs, signal },
        () => connecting,
      );
      this.#card = card;
      return card;
    } catch (error) {
      // A connect that completes after we gave up must not keep the handle.
      connecting.then(
        (late) => late.disconnect('leave'),
        () => undefined,
      );
      throw error;
    }
  }

  private async readUid(card: PcscCard, signal: AbortSignal): Promise<Uint8Array> {
    const call = { timeoutMs: this.#timeoutMs, signal };
    this.logger.frame('>', GET_UID_APDU, { purpose: 'uid' });
    let response = await card.transmit(GET_UID_APDU, call);
    this.logger.frame('<', response, { purpose: 'uid' });
    if (response.length === 2 && response[0] === 0x6c) {
      // 6C XX: wrong Le, XX is the right one.
      const retry = Uint8Array.of(0xff, 0xca, 0x00, 0x00, response[1]!);
      this.logger.frame('>', retry, { purpose: 'uid' });
      response = await card.transmit(retry, call);
      this.logger.frame('<', response, { purpose: 'uid' });
    }
    return parseGetDataResponse(response, this.name);
  }

  private async dropCard(): Promise<void> {
    const card = this.#card;
    this.#card = undefined;
    if (card) await card.disconnect('leave');
  }

  private skip(status: PcscReaderStatus, error: TaplineError): void {
    // A tag that left during identification is routine (the EMPTY status follows); anything else deserves a warning.
    const level = error.code === ErrorCode.TagLost ? 'debug' : 'warn';
    this.logger[level]('a tag was seen but could not be identified', { atr: status.atr, code: error.code, error });
    this.#skipped.push({ atr: status.atr, error });
    if (this.#skipped.length > 16) this.#skipped.shift();
  }
}

/**
 * One presence of a tag: pcsc-lite counts card events in the upper 16 bits of the state, so a quick swap of tags
 * changes the key even when no EMPTY status was seen in between. INUSE and similar flags do not.
 */
function presenceKey(status: PcscReaderStatus): string | undefined {
  if (!status.present) return undefined;
  return `${status.state >>> 16}:${status.atr ? toSpacedHex(status.atr) : ''}`;
}

/**
 * Opens a {@link PcscReader} on a PC/SC device: what the generic driver and the thin vendor drivers call from
 * `open`. Fails with `INVALID_ARGUMENT` for a device of another transport.
 */
export function openPcscReader(
  device: AttachedDevice,
  context: DriverContext,
  options: PcscReaderOptions,
): Promise<PcscReader> {
  if (device.transport !== 'pcsc') {
    return Promise.reject(
      new TaplineError(
        ErrorCode.InvalidArgument,
        `Driver ${options.driverId} serves PC/SC readers only, not "${device.name}" (${device.transport}).`,
      ),
    );
  }
  const reader = new PcscReader(device.port, context, options);
  reader.start();
  return Promise.resolve(reader);
}
