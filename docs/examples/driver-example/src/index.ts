/**
 * Example community driver: the Feitian R502 over PC/SC.
 *
 * Read docs/writing-a-driver.md first; this file is the complete code that page walks through.
 */
import {
  Capability,
  ErrorCode,
  ReaderBase,
  TaplineError,
  hasErrorCode,
  tagLostError,
  toSpacedHex,
  toTaplineError,
  type AttachedDevice,
  type DriverContext,
  type FrameCapability,
  type PcscCard,
  type PcscReaderPort,
  type PcscReaderStatus,
  type Reader,
  type ReaderDriver,
  type Tag,
  type TagInfo,
  type Technology,
} from '@tapline/core';

/** The id users pass to `--driver`: lower-case letters, digits and dashes, unique among installed drivers. */
export const DRIVER_ID = 'feitian-r502';

/** What this driver can offer. Plain PC/SC carries ISO-DEP APDUs, nothing else (no LED, no raw frames). */
const CAPABILITIES = [Capability.Iso14443_4] as const;

/** PC/SC part 3 pseudo-APDU: GET DATA, UID of the tag in the field. */
const GET_UID = Uint8Array.of(0xff, 0xca, 0x00, 0x00, 0x00);

/** The registered application provider id of PC/SC part 3 in a storage-card ATR (`A0 00 00 03 06`). */
const PCSC_PART3_RID = [0xa0, 0x00, 0x00, 0x03, 0x06] as const;

/**
 * Backstop for single PC/SC calls. The real per-call deadline is enforced by ReaderBase, which aborts `signal`
 * first; this only guarantees that no call can hang forever if a signal is lost.
 */
const BACKSTOP_MS = 30_000;

/** What the ATR that pcsc-lite synthesised for a contactless tag tells us. */
function describeAtr(atr: Uint8Array): { technology: Technology; isoDep: boolean } {
  const at = atr.findIndex((_, i) => PCSC_PART3_RID.every((b, j) => atr[i + j] === b));
  if (at < 0) {
    // Not a storage card: the historical bytes come from an ATS (type A) or ATQB (type B); either way ISO-DEP.
    return { technology: 'iso14443a', isoDep: true };
  }
  // Storage card: the byte after the RID is the standard (SS), 0x03 = ISO 14443-A part 3, 0x0B-0x0C = ISO 15693.
  const standard = atr[at + PCSC_PART3_RID.length];
  const technology: Technology = standard === 0x0b || standard === 0x0c ? 'iso15693' : 'iso14443a';
  return { technology, isoDep: false };
}

/** One opened R502 contactless slot. */
class FeitianR502Reader extends ReaderBase {
  readonly #port: PcscReaderPort;
  /** The connection to the tag in the field, while there is one. */
  #card: PcscCard | undefined;
  #status: { unsubscribe(): void } | undefined;
  /** Status changes are handled one after the other (connecting is asynchronous). */
  #pending: Promise<void> = Promise.resolve();

  private constructor(port: PcscReaderPort, context: DriverContext) {
    super({
      name: port.name,
      driverId: DRIVER_ID,
      capabilities: CAPABILITIES,
      logger: context.logger,
      clock: context.clock,
      defaultTimeoutMs: context.timeoutMs,
    });
    this.#port = port;
  }

  /** Opens the slot and starts following tag presence. */
  static open(port: PcscReaderPort, context: DriverContext): Promise<Reader> {
    const reader = new FeitianR502Reader(port, context);
    try {
      reader.#status = port.status$.subscribe({
        next: (status) => {
          reader.#pending = reader.#pending.then(() => reader.onStatus(status));
        },
        // The reader went away or the service stopped: close, so that exchanges fail with READER_GONE.
        error: (error: unknown) => {
          reader.logger.debug('status stream failed', { error });
          void reader.close();
        },
        complete: () => void reader.close(),
      });
    } catch (error) {
      // Release on every path: a failed open must not leave anything behind.
      return reader.close().then(() => {
        throw toTaplineError(error, ErrorCode.DriverFailed, `Could not watch ${port.name}.`);
      });
    }
    return Promise.resolve(reader);
  }

  /** Follows one status change; never throws (failures are logged and leave the slot empty). */
  private async onStatus(status: PcscReaderStatus): Promise<void> {
    if (this.closed) return;
    if (!status.present || status.atr === undefined) {
      await this.dropCard();
      return;
    }
    if (this.#card) return; // Same tag, another state bit changed (INUSE, say).
    let card: PcscCard | undefined;
    try {
      card = await this.#port.connect({ share: 'shared', timeoutMs: this.defaultTimeoutMs });
      const answer = await card.transmit(GET_UID, { timeoutMs: this.defaultTimeoutMs });
      const uid = parseUid(answer);
      if (this.closed) {
        await card.disconnect('leave');
        return;
      }
      const { technology, isoDep } = describeAtr(status.atr);
      const info: TagInfo = {
        technology,
        uid,
        atr: status.atr,
        protocols: isoDep ? [Capability.Iso14443_4] : [],
      };
      this.#card = card;
      this.tagArrived(info);
    } catch (error) {
      // Release on every path: the connection must not outlive a failed arrival.
      await card?.disconnect('leave');
      if (hasErrorCode(error, ErrorCode.TagLost)) {
        this.logger.debug('the tag left before its UID was read');
      } else {
        this.logger.warn('could not read the tag UID', { error: toTaplineError(error) });
      }
    }
  }

  /** Forgets the tag in the field: pending exchanges fail with TAG_LOST, the connection is released. */
  private async dropCard(): Promise<void> {
    const card = this.#card;
    this.#card = undefined;
    this.tagLeft();
    await card?.disconnect('reset');
  }

  protected override exchange(
    _tag: Tag,
    capability: FrameCapability,
    frame: Uint8Array,
    signal: AbortSignal,
  ): Promise<Uint8Array> {
    const card = this.#card;
    if (!card) return Promise.reject(tagLostError(`${capability} exchange`));
    // An ISO-DEP APDU goes through SCardTransmit unchanged; the reader handles blocks, chaining and WTX.
    return card.transmit(frame, { timeoutMs: BACKSTOP_MS, signal });
  }

  protected override async release(): Promise<void> {
    this.#status?.unsubscribe();
    this.#status = undefined;
    await this.#pending.catch(() => undefined);
    const card = this.#card;
    this.#card = undefined;
    await card?.disconnect('leave');
  }
}

/** Checks the answer to GET DATA (UID `90 00`) and returns the UID. */
function parseUid(answer: Uint8Array): Uint8Array {
  const sw = answer.length >= 2 ? (answer[answer.length - 2]! << 8) | answer[answer.length - 1]! : -1;
  const uid = answer.subarray(0, answer.length - 2);
  if (sw !== 0x9000 || uid.length < 4 || uid.length > 10) {
    throw new TaplineError(ErrorCode.ProtocolError, `The reader answered GET UID with ${toSpacedHex(answer)}.`, {
      details: { answer: toSpacedHex(answer) },
    });
  }
  return Uint8Array.from(uid);
}

/** The driver. */
export const feitianR502Driver: ReaderDriver = {
  id: DRIVER_ID,
  displayName: 'Feitian R502',
  description: 'Feitian R502 contactless slot over PC/SC: ISO-DEP APDUs, UID by GET DATA.',
  // 60 beats the default name score (50) of a broader vendor driver; the generic PC/SC driver scores 1.
  // The contact slot of the same reader is vetoed by name.
  matches: [{ transport: 'pcsc', nameIncludes: 'R502', nameExcludes: ['Contact Reader', 'SAM'], score: 60 }],
  capabilities: CAPABILITIES,
  open(device: AttachedDevice, context: DriverContext): Promise<Reader> {
    // The registry hands a driver only devices of a transport it declares, but `--driver` users are inventive.
    if (device.transport !== 'pcsc') {
      return Promise.reject(
        new TaplineError(ErrorCode.DriverFailed, `${DRIVER_ID} serves PC/SC readers only, not ${device.name}.`),
      );
    }
    return FeitianR502Reader.open(device.port, context);
  },
};

/** The export every driver package provides (see package.json `tapline.drivers`). */
export const drivers: readonly ReaderDriver[] = [feitianR502Driver];
