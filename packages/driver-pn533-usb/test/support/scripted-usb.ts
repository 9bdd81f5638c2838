/**
 * nfcpy-style scripted USB for frame-level tests: the test lists what the host must write and what the "chip" answers
 * to each write; the device checks the writes byte for byte. Frame builders here are written independently of core's
 * codec, so that the tests check it rather than repeat it.
 */
import { silentLogger, type UsbDeviceLike, type UsbInTransferResult, type UsbOutTransferResult } from '@tapline/core';
import { Pn533UsbLink } from '../../src/usb-link.js';

/** Bytes from spaced or plain hex. */
export function hex(text: string): Uint8Array {
  const clean = text.replace(/\s+/g, '');
  return Uint8Array.from(clean.match(/../g) ?? [], (b) => parseInt(b, 16));
}

function frame(payload: Uint8Array): Uint8Array {
  const sum = payload.reduce((a, b) => a + b, 0);
  const dcs = (0x100 - (sum & 0xff)) & 0xff;
  if (payload.length < 256) {
    return Uint8Array.of(0, 0, 0xff, payload.length, (0x100 - payload.length) & 0xff, ...payload, dcs, 0);
  }
  const hi = payload.length >> 8;
  const lo = payload.length & 0xff;
  return Uint8Array.of(0, 0, 0xff, 0xff, 0xff, hi, lo, (0x100 - ((hi + lo) & 0xff)) & 0xff, ...payload, dcs, 0);
}

/** The frame of host command `D4 <hex>`. */
export const CMD = (text: string): Uint8Array => frame(Uint8Array.of(0xd4, ...hex(text)));
/** The frame of chip answer `D5 <hex>`. */
export const RSP = (text: string): Uint8Array => frame(Uint8Array.of(0xd5, ...hex(text)));
/** ACK. */
export const ACK = (): Uint8Array => hex('00 00 FF 00 FF 00');
/** NACK. */
export const NACK = (): Uint8Array => hex('00 00 FF FF 00 00');
/** The error frame (syntax error). */
export const ERR = (): Uint8Array => hex('00 00 FF 01 FF 7F 81 00');

/** What the scripted chip sends after a write: bytes now, bytes later, or a failed read. */
export type Reply = Uint8Array | { readonly delayMs: number; readonly data: Uint8Array } | { readonly error: Error };

/** One scripted step: the write expected next (zero-length packets aside) and the replies to it. */
export interface Step {
  readonly write: Uint8Array;
  readonly reply?: readonly Reply[];
}

/** A {@link UsbDeviceLike} that plays a script. */
export class ScriptedUsbDevice implements UsbDeviceLike {
  readonly vendorId = 0x04e6;
  readonly productId = 0x5591;
  readonly manufacturerName = 'SCM Micro';
  readonly productName = 'SCL3711-NFC&RW';
  readonly serialNumber = undefined;
  readonly opened = true;
  readonly configuration = null;
  /** Every OUT transfer, zero-length packets included. */
  readonly written: Uint8Array[] = [];
  /** Writes that did not match the script. */
  readonly unexpected: string[] = [];
  /** How many IN transfers were started. */
  reads = 0;
  readonly #steps: Step[];
  readonly #in: Reply[] = [];
  readonly #waiting: { resolve(r: UsbInTransferResult): void; reject(e: Error): void }[] = [];
  #gone: Error | undefined;
  #outError: Error | undefined;
  #emptyReads = false;

  constructor(steps: readonly Step[] = []) {
    this.#steps = [...steps];
  }

  /** Queues IN data (or a read failure) without waiting for a write. */
  push(...replies: Reply[]): void {
    for (const reply of replies) this.#queue(reply);
  }

  /** Adds steps to the script. */
  expect(...steps: Step[]): void {
    this.#steps.push(...steps);
  }

  /** Unplugs the device: reads and writes fail from now on. */
  disconnect(): void {
    this.#gone = new Error('LIBUSB_ERROR_NO_DEVICE: device disconnected');
    for (const w of this.#waiting.splice(0)) w.reject(this.#gone);
  }

  /** The next write fails with `error`. */
  failNextWrite(error: Error): void {
    this.#outError = error;
  }

  /** Reads complete at once with no data (like a device sending zero-length packets). */
  answerEmptyReads(): void {
    this.#emptyReads = true;
    for (const w of this.#waiting.splice(0)) w.resolve({ data: new DataView(new ArrayBuffer(0)), status: 'ok' });
  }

  /** Fails the test unless the script was played to the end without surprises. */
  assertDone(): void {
    if (this.unexpected.length > 0) throw new Error(`unexpected writes:\n${this.unexpected.join('\n')}`);
    if (this.#steps.length > 0) {
      throw new Error(`writes never made: ${this.#steps.map((s) => Buffer.from(s.write).toString('hex')).join(', ')}`);
    }
  }

  /** The non-empty writes. */
  get frames(): Uint8Array[] {
    return this.written.filter((w) => w.length > 0);
  }

  open(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    this.disconnect();
    return Promise.resolve();
  }
  selectConfiguration(): Promise<void> {
    return Promise.resolve();
  }
  claimInterface(): Promise<void> {
    return Promise.resolve();
  }
  releaseInterface(): Promise<void> {
    return Promise.resolve();
  }

  transferOut(_endpoint: number, data: Uint8Array): Promise<UsbOutTransferResult> {
    if (this.#gone) return Promise.reject(this.#gone);
    const error = this.#outError;
    if (error) {
      this.#outError = undefined;
      return Promise.reject(error);
    }
    const bytes = Uint8Array.from(data);
    this.written.push(bytes);
    if (bytes.length > 0) {
      const step = this.#steps.shift();
      const got = Buffer.from(bytes).toString('hex');
      if (!step) this.unexpected.push(`(no step left) ${got}`);
      else if (Buffer.compare(Buffer.from(step.write), Buffer.from(bytes)) !== 0) {
        this.unexpected.push(`expected ${Buffer.from(step.write).toString('hex')}, got ${got}`);
      } else {
        for (const reply of step.reply ?? []) this.#queue(reply);
      }
    }
    return Promise.resolve({ bytesWritten: bytes.length, status: 'ok' });
  }

  transferIn(): Promise<UsbInTransferResult> {
    this.reads += 1;
    if (this.#gone) return Promise.reject(this.#gone);
    if (this.#emptyReads) return Promise.resolve({ data: new DataView(new ArrayBuffer(0)), status: 'ok' });
    return new Promise((resolve, reject) => {
      this.#waiting.push({ resolve, reject });
      this.#serve();
    });
  }

  #queue(reply: Reply): void {
    if (reply instanceof Uint8Array || 'error' in reply) {
      this.#in.push(reply);
      this.#serve();
      return;
    }
    setTimeout(() => {
      this.#in.push(reply.data);
      this.#serve();
    }, reply.delayMs);
  }

  #serve(): void {
    while (this.#waiting.length > 0 && this.#in.length > 0) {
      const waiter = this.#waiting.shift()!;
      const reply = this.#in.shift()!;
      if (reply instanceof Uint8Array) {
        const copy = Uint8Array.from(reply);
        waiter.resolve({ data: new DataView(copy.buffer), status: 'ok' });
      } else if ('error' in reply) {
        waiter.reject(reply.error);
      }
    }
  }
}

/** A started link over `device`, with short waits so that failing tests fail fast. */
export function scriptedLink(device: UsbDeviceLike, ackTimeoutMs = 100): Pn533UsbLink {
  const link = new Pn533UsbLink({
    device,
    endpoints: { interfaceNumber: 0, in: 4, out: 4, packetSize: 64 },
    logger: silentLogger,
    name: 'scripted PN533',
    ackTimeoutMs,
  });
  link.start();
  return link;
}
