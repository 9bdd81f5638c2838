import {
  ErrorCode,
  PN53X_ACK_FRAME,
  PN53X_NACK_FRAME,
  Pn53xFrameDecoder,
  TaplineError,
  abortError,
  buildInformationFrame,
  isTaplineError,
  pn53xCommandName,
  pn53xSyntaxError,
  timeoutError,
  withDeadline,
  type Logger,
  type Pn53xDecoded,
  type Pn53xLink,
  type Pn53xLinkOptions,
  type UsbDeviceLike,
  type UsbInTransferResult,
} from '@tapline/core';

/** The interface and bulk endpoints the link talks through. */
export interface UsbBulkEndpoints {
  readonly interfaceNumber: number;
  /** Bulk IN endpoint number (WebUSB numbering: 4 for address 0x84). */
  readonly in: number;
  /** Bulk OUT endpoint number. */
  readonly out: number;
  /** wMaxPacketSize of the OUT endpoint: a write of a multiple of it needs a zero-length packet after it. */
  readonly packetSize: number;
}

/** Options of {@link Pn533UsbLink}. */
export interface Pn533UsbLinkOptions {
  readonly device: UsbDeviceLike;
  readonly endpoints: UsbBulkEndpoints;
  readonly logger: Logger;
  /** The device's name, for messages. */
  readonly name: string;
  /** How long the chip may take to acknowledge a command, in milliseconds. Default 250. */
  readonly ackTimeoutMs?: number;
  /** How often a corrupted or out-of-order frame is asked for again (NACK) within one exchange. Default 2. */
  readonly maxResends?: number;
  /** The largest frame LEN (TFI included) the chip sends or accepts. Default 265 (PN533). */
  readonly maxFrameLength?: number;
}

/** How long one USB write may take. */
const WRITE_TIMEOUT_MS = 1000;
/** How long the ACK that aborts a command may take to go out. */
const ABORT_TIMEOUT_MS = 250;
/** Consecutive read failures (other than time-outs) after which the device counts as gone. */
const MAX_READ_FAILURES = 4;

/**
 * `usb` 3.x ends an idle read after its default 1 s (nusb cancels it: "transferIn error: transfer was cancelled"),
 * libusb says LIBUSB_ERROR_TIMEOUT; such a read is simply repeated.
 */
const READ_TIMED_OUT = /timed? ?out|LIBUSB_ERROR_TIMEOUT|ETIMEDOUT|TimeoutError|cancell?ed/i;
/** Errors that mean the device is no longer on the bus. */
const DEVICE_GONE =
  /disconnect|no (such )?device|not found|ENODEV|errno 19|os error 19|LIBUSB_ERROR_NO_DEVICE|NotFoundError|device (is )?gone|unplugged/i;

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

function messageOf(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

interface Waiter {
  deliver(decoded: Pn53xDecoded): void;
  fail(error: TaplineError): void;
}

/**
 * The PN53x link over USB bulk endpoints (libnfc's `pn53x_usb.c`, nfcpy's `Chipset.command`): it frames the
 * command, writes it (plus a zero-length packet when its length is a multiple of the packet size), waits for the
 * ACK, then for the answer; it asks for a corrupted answer again with a NACK, answers a response that came without
 * an ACK with a NACK (the chip then sends it again, in order), and aborts the chip's command with an ACK when the wait
 * ends or the caller aborts.
 *
 * One read is always pending (a pump): WebUSB cannot cancel a read, so a read outliving its exchange simply feeds the
 * decoder, and stale frames are dropped before the next command goes out. A failed transfer marks the link lost;
 * from then on every exchange fails with `READER_GONE`.
 */
export class Pn533UsbLink implements Pn53xLink {
  readonly #device: UsbDeviceLike;
  readonly #endpoints: UsbBulkEndpoints;
  readonly #logger: Logger;
  readonly #name: string;
  readonly #ackTimeoutMs: number;
  readonly #maxResends: number;
  readonly #maxFrameLength: number;
  readonly #readLength: number;
  readonly #decoder: Pn53xFrameDecoder;
  readonly #stop = new AbortController();
  readonly #frames: Pn53xDecoded[] = [];
  #waiter: Waiter | undefined;
  #lost: TaplineError | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #started = false;

  constructor(options: Pn533UsbLinkOptions) {
    this.#device = options.device;
    this.#endpoints = options.endpoints;
    this.#logger = options.logger;
    this.#name = options.name;
    this.#ackTimeoutMs = options.ackTimeoutMs ?? 250;
    this.#maxResends = options.maxResends ?? 2;
    this.#maxFrameLength = options.maxFrameLength ?? 265;
    this.#decoder = new Pn53xFrameDecoder({ maxLength: this.#maxFrameLength });
    const packet = Math.max(8, options.endpoints.packetSize);
    // A whole extended frame (LEN + 10 framing bytes) fits one read, rounded up to whole packets.
    this.#readLength = Math.ceil((this.#maxFrameLength + 10) / packet) * packet;
  }

  /** The error that ended the link, if the device was lost. */
  get lostError(): TaplineError | undefined {
    return this.#lost;
  }

  /** Starts reading from the IN endpoint. Call once, after the interface is claimed. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    this.#runPump().catch((error: unknown) => this.#fail(this.#goneError(error)));
  }

  /** Stops reading and fails whatever waits; the caller then releases the interface and closes the device. */
  close(): Promise<void> {
    if (!this.#stop.signal.aborted) {
      this.#stop.abort();
      this.#fail(new TaplineError(ErrorCode.ReaderGone, `The link to ${this.#name} was closed.`));
    }
    // The pending read ends when the device closes, which comes after this; waiting for it here would deadlock.
    return Promise.resolve();
  }

  exchange(commandPayload: Uint8Array, options: Pn53xLinkOptions): Promise<Uint8Array> {
    const run = this.#queue.then(
      () => this.#exchange(commandPayload, options),
      () => this.#exchange(commandPayload, options),
    );
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** Aborts the chip's running command by writing an ACK frame. */
  async abort(): Promise<void> {
    this.#assertUsable();
    await this.#write(PN53X_ACK_FRAME, 'ACK');
  }

  async #exchange(payload: Uint8Array, options: Pn53xLinkOptions): Promise<Uint8Array> {
    this.#assertUsable();
    if (payload.length < 2 || payload[0] !== 0xd4) {
      throw new TaplineError(ErrorCode.InvalidArgument, 'A PN53x command payload starts with D4 and a command code.');
    }
    const command = payload[1]!;
    const what = `${pn53xCommandName(command)} on ${this.#name}`;
    const { timeoutMs, signal } = options;
    if (signal?.aborted) throw abortError(what, signal.reason);
    const frame = buildInformationFrame(payload, { maxLength: this.#maxFrameLength });
    const deadline = performance.now() + timeoutMs;
    const left = (): number => Math.max(0, deadline - performance.now());

    // Whatever arrived before this command (a late answer to an aborted one) belongs to no one.
    this.#frames.length = 0;
    this.#decoder.reset();
    await this.#write(frame, pn53xCommandName(command));

    try {
      let resends = 0;
      let acknowledged = false;
      while (!acknowledged) {
        const next = await this.#nextFrame(Math.min(this.#ackTimeoutMs, left()), signal, what);
        if (!next) throw timeoutError(`${what} (the chip sent no ACK)`, Math.min(this.#ackTimeoutMs, timeoutMs));
        if (next.status === 'invalid') {
          // Could be a damaged ACK or a damaged answer: either way NACK makes the chip send its last frame again.
          if (resends++ >= this.#maxResends) throw next.error;
          await this.#write(PN53X_NACK_FRAME, 'NACK');
          continue;
        }
        switch (next.frame.type) {
          case 'ack':
            acknowledged = true;
            break;
          case 'nack':
            // The chip did not get the command right: send it once more.
            if (resends++ >= this.#maxResends)
              throw this.#protocol(`${what}: the chip keeps asking for the command again`);
            await this.#write(frame, pn53xCommandName(command));
            break;
          case 'error':
            throw pn53xSyntaxError(command, next.frame.errorCode);
          case 'information':
            // An answer before (or instead of) the ACK happens when commands overlap (libnfc pn53x_usb_send): NACK
            // makes the chip send it again, now after the ACK it owes us.
            if (resends++ >= this.#maxResends) throw this.#protocol(`${what}: the chip answers without acknowledging`);
            await this.#write(PN53X_NACK_FRAME, 'NACK');
            acknowledged = true;
            break;
        }
      }
      for (;;) {
        const next = await this.#nextFrame(left(), signal, what);
        if (!next) throw timeoutError(what, timeoutMs);
        if (next.status === 'invalid') {
          if (resends++ >= this.#maxResends) throw next.error;
          await this.#write(PN53X_NACK_FRAME, 'NACK');
          continue;
        }
        if (next.frame.type === 'information') return next.frame.payload;
        if (next.frame.type === 'error') throw pn53xSyntaxError(command, next.frame.errorCode);
        // A repeated ACK, or a NACK after the chip already took the command: neither is the answer.
      }
    } catch (error) {
      // After a time-out or an abort the chip may still be running the command: stop it, so that its answer cannot
      // meet the next command. After an error frame or a broken answer it is done already.
      const running = signal?.aborted === true || (isTaplineError(error) && error.code === ErrorCode.Timeout);
      if (running && !this.#lost) await this.#abortQuietly();
      throw error;
    }
  }

  #protocol(message: string): TaplineError {
    return new TaplineError(ErrorCode.ProtocolError, `${message}.`, {
      hint: 'Replug the reader; if it keeps happening, another program may be talking to it.',
    });
  }

  async #abortQuietly(): Promise<void> {
    try {
      await withDeadline({ what: `aborting the command on ${this.#name}`, timeoutMs: ABORT_TIMEOUT_MS }, () =>
        this.#write(PN53X_ACK_FRAME, 'ACK'),
      );
    } catch (error) {
      this.#logger.debug('aborting the running command failed', { error });
    }
  }

  #assertUsable(): void {
    if (this.#lost) throw this.#lost;
  }

  async #write(bytes: Uint8Array, label: string): Promise<void> {
    this.#assertUsable();
    this.#logger.frame('>', bytes, { layer: 'usb', frame: label });
    try {
      await this.#transferOut(bytes);
      // A bulk transfer ends with a short packet; one that fills its last packet needs a zero-length one to end.
      if (bytes.length > 0 && bytes.length % this.#endpoints.packetSize === 0)
        await this.#transferOut(new Uint8Array(0));
    } catch (error) {
      const gone = this.#goneError(error);
      this.#fail(gone);
      throw gone;
    }
  }

  async #transferOut(bytes: Uint8Array): Promise<void> {
    const result = await withDeadline({ what: `writing to ${this.#name}`, timeoutMs: WRITE_TIMEOUT_MS }, () =>
      this.#device.transferOut(this.#endpoints.out, bytes),
    );
    if (result.status !== undefined && result.status !== 'ok') {
      throw new Error(`USB write ended with status ${result.status}`);
    }
    if (result.bytesWritten !== bytes.length) {
      throw new Error(`USB write took ${result.bytesWritten} of ${bytes.length} bytes`);
    }
  }

  #nextFrame(timeoutMs: number, signal: AbortSignal | undefined, what: string): Promise<Pn53xDecoded | undefined> {
    const queued = this.#frames.shift();
    if (queued) return Promise.resolve(queued);
    if (this.#lost) return Promise.reject(this.#lost);
    if (signal?.aborted) return Promise.reject(abortError(what, signal.reason));
    return new Promise((resolve, reject) => {
      const finish = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.#waiter = undefined;
      };
      const onAbort = (): void => {
        finish();
        reject(abortError(what, signal?.reason));
      };
      const timer = setTimeout(() => {
        finish();
        resolve(undefined);
      }, timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiter = {
        deliver: (decoded) => {
          finish();
          resolve(decoded);
        },
        fail: (error) => {
          finish();
          reject(error);
        },
      };
    });
  }

  #deliver(decoded: readonly Pn53xDecoded[]): void {
    for (const item of decoded) {
      if (item.status === 'invalid') this.#logger.debug('malformed frame from the chip', { error: item.error });
      const waiter = this.#waiter;
      if (waiter) waiter.deliver(item);
      else this.#frames.push(item);
    }
  }

  #goneError(cause: unknown): TaplineError {
    if (isTaplineError(cause) && cause.code === ErrorCode.ReaderGone) return cause;
    return new TaplineError(ErrorCode.ReaderGone, `${this.#name} stopped answering on USB (${messageOf(cause)}).`, {
      cause,
      hint: 'Check the cable and replug the reader; run `tapline readers` to see what is attached.',
    });
  }

  #fail(error: TaplineError): void {
    if (this.#lost) return;
    this.#lost = error;
    this.#stop.abort();
    this.#frames.length = 0;
    this.#waiter?.fail(error);
  }

  async #runPump(): Promise<void> {
    let failures = 0;
    let empty = 0;
    const stop = this.#stop.signal;
    while (!stop.aborted) {
      let result: UsbInTransferResult;
      try {
        result = await this.#device.transferIn(this.#endpoints.in, this.#readLength);
      } catch (error) {
        if (stop.aborted) return;
        const text = messageOf(error);
        if (READ_TIMED_OUT.test(text) && !DEVICE_GONE.test(text)) {
          failures = 0;
          continue;
        }
        failures += 1;
        if (DEVICE_GONE.test(text) || failures >= MAX_READ_FAILURES) {
          this.#fail(this.#goneError(error));
          return;
        }
        this.#logger.debug('USB read failed; retrying', { error, failures });
        await sleep(10 * 2 ** failures, stop);
        continue;
      }
      failures = 0;
      if (stop.aborted) return;
      const view = result.data;
      const bytes = view ? new Uint8Array(view.buffer, view.byteOffset, view.byteLength).slice() : new Uint8Array(0);
      if (bytes.length === 0) {
        // Never spin on empty reads (a zero-length packet, or `usb` 3.x reporting an idle read as a stall).
        empty += 1;
        if (empty > 1) await sleep(Math.min(50, empty * 5), stop);
        continue;
      }
      empty = 0;
      this.#logger.frame('<', bytes, { layer: 'usb' });
      this.#deliver(this.#decoder.push(bytes));
    }
  }
}
