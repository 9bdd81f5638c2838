import type { Subscription } from 'rxjs';
import { Capability, sortCapabilities, type FrameCapability } from '../model/capabilities.js';
import type { AttachedDevice, DriverContext } from '../model/driver.js';
import { ErrorCode, TaplineError, hasErrorCode, tagLostError, toTaplineError } from '../model/errors.js';
import { ReaderBase, type ReaderFeedback } from '../model/reader.js';
import type { Tag, TagInfo } from '../model/tag.js';
import type { PcscCallOptions, PcscCard, PcscReaderPort, PcscReaderStatus } from '../transport/pcsc.js';
import { PcscControlFunction, scardCtlCode } from '../transport/pcsc.js';
import type { Logger } from '../runtime/logger.js';
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
  /** What the reader offers now. */
  readonly capabilities: ReadonlySet<Capability>;
  /**
   * Changes what the reader offers from now on, for drivers that learn what a reader can do by asking it (a PC/SC
   * Part 3 probe). Capabilities beyond {@link PcscReaderOptions.maxCapabilities} are ignored. The tag being
   * identified keeps the protocols the hook returns.
   */
  offer(capabilities: Iterable<Capability>): void;
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
   * Carries frames for capabilities other than `iso14443-4`; return `undefined` for a capability the hook does not
   * serve. ISO 14443-4 APDUs always go straight to SCardTransmit: every contactless PC/SC firmware runs ISO-DEP
   * itself, and the APDU path is kept free of per-frame hook work (bench/apdu-overhead).
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
  /**
   * The most the reader may come to offer through {@link PcscIdentifyContext.offer}; default `capabilities`. Lets a
   * driver open a reader with what it knows works and widen it once a probe found more.
   */
  readonly maxCapabilities?: readonly Capability[];
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
const BACKSTOP_CALL = { timeoutMs: EXCHANGE_BACKSTOP_MS } as const;

/**
 * A contactless reader behind PC/SC. It follows the reader's status: when a tag arrives it connects (shared),
 * reads the UID with `FF CA 00 00 00`, decodes the ATR and announces the tag; when the tag leaves it disconnects.
 * ISO 14443-4 APDUs go out with SCardTransmit; vendor drivers add other paths through {@link PcscReaderHooks}.
 */
export class PcscReader extends ReaderBase {
  readonly #port: PcscReaderPort;
  readonly #hooks: PcscReaderHooks;
  readonly #timeoutMs: number;
  readonly #maxCapabilities: ReadonlySet<Capability>;
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
      // Every exchange is a native SCardTransmit/SCardControl, which holds the event loop while it runs.
      exchangesKeepProcessAlive: true,
    });
    this.#port = port;
    this.#hooks = options.hooks ?? {};
    this.#timeoutMs = context.timeoutMs;
    this.#maxCapabilities = new Set(options.maxCapabilities ?? options.capabilities ?? [Capability.Iso14443_4]);
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

  protected override exchange(
    tag: Tag,
    capability: FrameCapability,
    frame: Uint8Array,
    signal: AbortSignal,
  ): Promise<Uint8Array> {
    const card = this.#card;
    if (!card) return Promise.reject(tagLostError(`${capability} exchange`));
    if (capability === Capability.Iso14443_4) {
      // No signal: ReaderBase already settles this exchange on abort, removal or timeout, and a signal would cost
      // the transport a listener per frame. The backstop only bounds a native call that never returns.
      return card.transmit(frame, BACKSTOP_CALL);
    }
    const hooked = this.#hooks.exchange?.({ port: this.#port, card, tag, capability, frame, signal });
    return hooked ?? Promise.reject(this.unsupported(capability));
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
    return refine({
      port: this.#port,
      card,
      status,
      info,
      signal,
      timeoutMs: this.#timeoutMs,
      capabilities: this.capabilities,
      offer: (capabilities) => this.offer(capabilities),
    });
  }

  private offer(capabilities: Iterable<Capability>): void {
    const next = sortCapabilities([...capabilities].filter((c) => this.#maxCapabilities.has(c)));
    // ReaderBase builds `capabilities` as a Set and only this class changes it afterwards; clearing and refilling in
    // the sorted order keeps the stable order every listing relies on.
    const current = this.capabilities as Set<Capability>;
    current.clear();
    for (const capability of next) current.add(capability);
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
 * The PC/SC port of `device`, for a driver's `open`: fails with `INVALID_ARGUMENT` naming `driverId` for a device of
 * another transport (a driver forced onto the wrong one).
 */
export function pcscPortOf(device: AttachedDevice, driverId: string): PcscReaderPort {
  if (device.transport !== 'pcsc') {
    throw new TaplineError(
      ErrorCode.InvalidArgument,
      `Driver ${driverId} serves PC/SC readers only, not "${device.name}" (${device.transport}).`,
    );
  }
  return device.port;
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
  let port: PcscReaderPort;
  try {
    port = pcscPortOf(device, options.driverId);
  } catch (error) {
    return Promise.reject(error instanceof Error ? error : new Error(String(error)));
  }
  const reader = new PcscReader(port, context, options);
  reader.start();
  return Promise.resolve(reader);
}

// ---------------------------------------------------------------------------------------------------------------
// Direct connections and escape commands (for vendor hooks)
// ---------------------------------------------------------------------------------------------------------------

/**
 * Runs `run` on a direct connection to the reader (`SCARD_SHARE_DIRECT`, no card needed; readers.md §7.2) and
 * disconnects afterwards, whatever happens. What vendor drivers use for escape commands while no tag is present.
 */
export async function withDirectConnection<T>(
  port: PcscReaderPort,
  options: { readonly timeoutMs: number },
  run: (card: PcscCard) => Promise<T>,
): Promise<T> {
  const card = await port.connect({ share: 'direct', timeoutMs: options.timeoutMs });
  try {
    return await run(card);
  } finally {
    await card.disconnect('leave');
  }
}

/** PC/SC Part 10 feature tags that `CM_IOCTL_GET_FEATURE_REQUEST` reports (readers.md §7.1). */
export const PcscFeature = {
  VerifyPinDirect: 0x06,
  ModifyPinDirect: 0x07,
  IfdPinProperties: 0x0a,
  GetTlvProperties: 0x12,
  /** FEATURE_CCID_ESC_COMMAND: the control code under which the reader driver takes escape commands. */
  CcidEscCommand: 0x13,
} as const;

/**
 * Parses the answer to `CM_IOCTL_GET_FEATURE_REQUEST`: 6-byte TLVs `tag 04 <control code, big-endian>` (the CCID
 * driver writes the codes with htonl). Fails with `PROTOCOL_ERROR` for anything else.
 */
export function parsePcscFeatures(response: Uint8Array, readerName = 'The reader'): Map<number, number> {
  const features = new Map<number, number>();
  const fail = (why: string): TaplineError =>
    new TaplineError(ErrorCode.ProtocolError, `${readerName} answered the feature request with ${why}.`, {
      details: { response: toSpacedHex(response.subarray(0, 64)) },
    });
  if (response.length % 6 !== 0) throw fail(`${response.length} bytes, no whole number of 6-byte entries`);
  for (let at = 0; at < response.length; at += 6) {
    if (response[at + 1] !== 0x04) throw fail(`an entry of length ${response[at + 1]}`);
    const code = new DataView(response.buffer, response.byteOffset + at + 2, 4).getUint32(0, false);
    features.set(response[at]!, code);
  }
  return features;
}

/**
 * The escape control codes worth trying when the feature request names none (readers.md §7.1): `SCARD_CTL_CODE(3500)`
 * (ACS drivers, acsccid, Windows), and on pcsc-lite also `SCARD_CTL_CODE(1)` (libccid, when its Info.plist allows
 * escapes). On Windows `SCARD_CTL_CODE(1)` is IOCTL_SMARTCARD_POWER, so it is never sent there.
 */
export function escapeControlCodes(port: PcscReaderPort): number[] {
  const escape = port.controlCode(PcscControlFunction.CcidEscape);
  const windowsNumbering = escape === scardCtlCode(PcscControlFunction.CcidEscape, 'win32');
  return windowsNumbering ? [escape] : [escape, port.controlCode(PcscControlFunction.VendorIfdExchange)];
}

/** Options of {@link PcscEscape}. */
export interface PcscEscapeOptions {
  readonly logger?: Logger;
  /** Codes to try after the one the feature request names; default {@link escapeControlCodes}. */
  readonly fallbackCodes?: readonly number[];
}

/** Errors that say the driver refused the control code (try the next one), as opposed to the reader or tag failing. */
function refusedControl(error: unknown): boolean {
  return hasErrorCode(error, ErrorCode.UnsupportedCapability) || hasErrorCode(error, ErrorCode.ProtocolError);
}

/**
 * Escape commands (SCardControl) to one reader. The control code differs per platform and per driver, so it is found
 * once: the code the reader driver reports for FEATURE_CCID_ESC_COMMAND (tag 0x13) first, then the per-platform
 * fallbacks, each tried with the first real command; the first code that works is kept.
 */
export class PcscEscape {
  readonly #port: PcscReaderPort;
  readonly #options: PcscEscapeOptions;
  #code: number | undefined;
  #candidates: number[] | undefined;

  constructor(port: PcscReaderPort, options: PcscEscapeOptions = {}) {
    this.#port = port;
    this.#options = options;
  }

  /** The control code that worked, once one did. */
  get code(): number | undefined {
    return this.#code;
  }

  /**
   * Sends `data` as an escape command over `card` (a direct connection, or the card connection) and returns the
   * answer. Fails with `UNSUPPORTED_CAPABILITY` when no control code gets through, with the last refusal as cause.
   */
  async send(card: PcscCard, data: Uint8Array, call: PcscCallOptions): Promise<Uint8Array> {
    const logger = this.#options.logger;
    if (this.#code !== undefined) return this.#control(card, this.#code, data, call);
    const candidates = this.#candidates ?? (await this.#discover(card, call));
    let lastError: unknown;
    for (const code of candidates) {
      try {
        const answer = await this.#control(card, code, data, call);
        this.#code = code;
        return answer;
      } catch (error) {
        if (!refusedControl(error)) throw error;
        logger?.debug('the escape control code was refused', { code, error });
        lastError = error;
      }
    }
    throw new TaplineError(
      ErrorCode.UnsupportedCapability,
      `Escape commands do not reach ${this.#port.name} (control codes tried: ${candidates.map(hexCode).join(', ')}).`,
      {
        cause: lastError,
        details: { reader: this.#port.name, codes: candidates.map(hexCode) },
        hint: 'The CCID driver allows escapes only with ifdDriverOptions 0x0001 in its Info.plist (Windows: the EscapeCommandEnable registry value); the vendor driver (acsccid) allows them by default.',
      },
    );
  }

  async #control(card: PcscCard, code: number, data: Uint8Array, call: PcscCallOptions): Promise<Uint8Array> {
    const logger = this.#options.logger;
    logger?.frame('>', data, { purpose: 'escape', code: hexCode(code) });
    const answer = await card.control(code, data, call);
    logger?.frame('<', answer, { purpose: 'escape', code: hexCode(code) });
    return answer;
  }

  async #discover(card: PcscCard, call: PcscCallOptions): Promise<number[]> {
    const fallbacks = this.#options.fallbackCodes ?? escapeControlCodes(this.#port);
    let reported: number | undefined;
    try {
      const answer = await card.control(
        this.#port.controlCode(PcscControlFunction.GetFeatureRequest),
        new Uint8Array(0),
        call,
      );
      reported = parsePcscFeatures(answer, this.#port.name).get(PcscFeature.CcidEscCommand);
    } catch (error) {
      if (!refusedControl(error)) throw error;
      this.#options.logger?.debug('the feature request failed; trying the usual escape codes', { error });
    }
    this.#candidates = [...new Set([...(reported === undefined ? [] : [reported]), ...fallbacks])];
    return this.#candidates;
  }
}

function hexCode(code: number): string {
  return `0x${code.toString(16).padStart(8, '0')}`;
}
