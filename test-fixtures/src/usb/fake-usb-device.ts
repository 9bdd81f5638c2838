import type {
  UsbDeviceLike,
  UsbEndpointLike,
  UsbInTransferResult,
  UsbInterfaceLike,
  UsbOutTransferResult,
} from '@tapline/core';
import { Pn533Emulator } from './pn533-emulator.js';

/** Options of {@link FakeUsbDevice}. */
export interface FakeUsbDeviceOptions {
  /** Default 0x04e6 (SCM). */
  readonly vendorId?: number;
  /** Default 0x5591 (SCL3711). */
  readonly productId?: number;
  /** Default `SCM Micro`. */
  readonly manufacturerName?: string;
  /** Default `SCL3711-NFC&RW`. */
  readonly productName?: string;
  readonly serialNumber?: string;
  /** wMaxPacketSize of both bulk endpoints. Default 64. */
  readonly packetSize?: number;
  /** Whether configuration 1 is already selected when the device is opened (Linux does that). Default true. */
  readonly configured?: boolean;
  /**
   * Another driver holds the interface: `claimInterface` rejects with this error (`kernel`: Linux's pn533_usb,
   * `pcscd`: the PC/SC daemon), or with the given error.
   */
  readonly heldBy?: 'kernel' | 'pcscd' | Error;
  /** `open` rejects with EACCES, as without a udev rule. */
  readonly permissionDenied?: boolean;
  /**
   * Like `usb` 3.x: a read that gets no data rejects with a time-out error after this many milliseconds. Default:
   * reads wait until data comes, the device closes or it is unplugged (WebUSB).
   */
  readonly readTimeoutMs?: number;
  /** The configuration descriptor has no interfaces (corrupted), so the driver must fall back to 0x04/0x84. */
  readonly missingDescriptors?: boolean;
  /**
   * The PN533's descriptor bug (readers.md §5.4): after a frame longer than 17 bytes, the manufacturer and product
   * strings read as undefined. Default true.
   */
  readonly corruptStrings?: boolean;
}

/** Counters of what was done to the device, for leak checks. */
export interface FakeUsbDeviceStats {
  opens: number;
  closes: number;
  claims: number;
  releases: number;
}

interface PendingRead {
  readonly length: number;
  resolve(result: UsbInTransferResult): void;
  reject(error: Error): void;
  cancelTimer(): void;
}

const ENDPOINT = 4;

/**
 * A WebUSB device (the {@link UsbDeviceLike} subset Tapline uses) in front of a {@link Pn533Emulator}: one vendor
 * interface with bulk endpoints 0x04/0x84, transfer queues, claim conflicts, unplugging, and the PN533's need for a
 * zero-length packet after a write that fills its last packet (without it the frame never reaches the chip).
 */
export class FakeUsbDevice implements UsbDeviceLike {
  readonly vendorId: number;
  readonly productId: number;
  readonly serialNumber: string | undefined;
  readonly emulator: Pn533Emulator;
  /** Every OUT transfer, zero-length packets included, in order. */
  readonly writes: Uint8Array[] = [];
  readonly stats: FakeUsbDeviceStats = { opens: 0, closes: 0, claims: 0, releases: 0 };
  readonly #options: FakeUsbDeviceOptions;
  readonly #packetSize: number;
  readonly #in: Uint8Array[] = [];
  readonly #reads: PendingRead[] = [];
  readonly #disconnectListeners = new Set<() => void>();
  readonly #failNextIn: Error[] = [];
  #opened = false;
  #configured: boolean;
  #claimed = false;
  #connected = true;
  #stringsCorrupted = false;
  #awaitingZlp: Uint8Array | undefined;
  #unsubscribe: (() => void) | undefined;

  constructor(emulator: Pn533Emulator = new Pn533Emulator(), options: FakeUsbDeviceOptions = {}) {
    this.emulator = emulator;
    this.#options = options;
    this.vendorId = options.vendorId ?? 0x04e6;
    this.productId = options.productId ?? 0x5591;
    this.serialNumber = options.serialNumber;
    this.#packetSize = options.packetSize ?? 64;
    this.#configured = options.configured ?? true;
  }

  get manufacturerName(): string | undefined {
    return this.#stringsCorrupted ? undefined : (this.#options.manufacturerName ?? 'SCM Micro');
  }

  get productName(): string | undefined {
    return this.#stringsCorrupted ? undefined : (this.#options.productName ?? 'SCL3711-NFC&RW');
  }

  get opened(): boolean {
    return this.#opened;
  }

  /** Whether an interface is claimed now. */
  get claimed(): boolean {
    return this.#claimed;
  }

  /** Whether the device is still plugged in. */
  get connected(): boolean {
    return this.#connected;
  }

  /** OUT transfers with data (zero-length packets left out). */
  get frames(): Uint8Array[] {
    return this.writes.filter((w) => w.length > 0);
  }

  get configuration(): { readonly interfaces: readonly UsbInterfaceLike[] } | null {
    if (!this.#configured) return null;
    if (this.#options.missingDescriptors) return { interfaces: [] };
    const endpoint = (direction: 'in' | 'out'): UsbEndpointLike => ({
      endpointNumber: ENDPOINT,
      direction,
      type: 'bulk',
      packetSize: this.#packetSize,
    });
    const claimed = this.#claimed;
    return {
      interfaces: [{ interfaceNumber: 0, claimed, alternate: { endpoints: [endpoint('in'), endpoint('out')] } }],
    };
  }

  /** Calls `listener` when the device is unplugged; returns the function that removes it. */
  onDisconnect(listener: () => void): () => void {
    this.#disconnectListeners.add(listener);
    return () => this.#disconnectListeners.delete(listener);
  }

  /** Makes the next IN transfer fail with `error` (device trouble mid-command). */
  failNextTransferIn(error: Error): void {
    this.#failNextIn.push(error);
    this.#serveReads();
  }

  /** Unplugs the device: pending and later transfers fail, and the transport hears of it. */
  disconnect(): void {
    if (!this.#connected) return;
    this.#connected = false;
    this.#stop();
    const error = new Error('LIBUSB_ERROR_NO_DEVICE: the device was disconnected');
    for (const read of this.#reads.splice(0)) {
      read.cancelTimer();
      read.reject(error);
    }
    for (const listener of [...this.#disconnectListeners]) listener();
  }

  open(): Promise<void> {
    if (!this.#connected) return Promise.reject(new Error('LIBUSB_ERROR_NO_DEVICE: the device was disconnected'));
    if (this.#options.permissionDenied)
      return Promise.reject(new Error('LIBUSB_ERROR_ACCESS: Permission denied (os error 13)'));
    if (this.#opened) return Promise.resolve();
    this.#opened = true;
    this.stats.opens += 1;
    this.#in.length = 0;
    this.#unsubscribe = this.emulator.onOutput((frame) => {
      this.#in.push(frame);
      this.#serveReads();
    });
    return Promise.resolve();
  }

  close(): Promise<void> {
    if (!this.#opened) return Promise.resolve();
    this.stats.closes += 1;
    this.#stop();
    const error = new Error('LIBUSB_ERROR_INTERRUPTED: the transfer was cancelled because the device closed');
    for (const read of this.#reads.splice(0)) {
      read.cancelTimer();
      read.reject(error);
    }
    return Promise.resolve();
  }

  selectConfiguration(configurationValue: number): Promise<void> {
    const problem = this.#check(false);
    if (problem) return Promise.reject(problem);
    if (configurationValue !== 1)
      return Promise.reject(new Error(`LIBUSB_ERROR_NOT_FOUND: no configuration ${configurationValue}`));
    this.#configured = true;
    return Promise.resolve();
  }

  claimInterface(interfaceNumber: number): Promise<void> {
    const problem = this.#check(false);
    if (problem) return Promise.reject(problem);
    if (!this.#configured) return Promise.reject(new Error('LIBUSB_ERROR_NOT_FOUND: the device is not configured'));
    if (interfaceNumber !== 0)
      return Promise.reject(new Error(`LIBUSB_ERROR_NOT_FOUND: no interface ${interfaceNumber}`));
    const held = this.#options.heldBy;
    if (held instanceof Error) return Promise.reject(held);
    if (held === 'kernel') {
      return Promise.reject(new Error('claimInterface error: Device or resource busy (os error 16)'));
    }
    if (held === 'pcscd') return Promise.reject(new Error('LIBUSB_ERROR_BUSY: Resource busy'));
    this.#claimed = true;
    this.stats.claims += 1;
    return Promise.resolve();
  }

  releaseInterface(interfaceNumber: number): Promise<void> {
    const problem = this.#check(false);
    if (problem) return Promise.reject(problem);
    if (interfaceNumber !== 0 || !this.#claimed) {
      return Promise.reject(new Error(`LIBUSB_ERROR_NOT_FOUND: interface ${interfaceNumber} is not claimed`));
    }
    this.#claimed = false;
    this.stats.releases += 1;
    return Promise.resolve();
  }

  transferIn(endpointNumber: number, length: number): Promise<UsbInTransferResult> {
    const problem = this.#check(true) ?? (endpointNumber === ENDPOINT ? undefined : new Error('LIBUSB_ERROR_PIPE'));
    if (problem) return Promise.reject(problem);
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const read: PendingRead = {
        length,
        resolve,
        reject,
        cancelTimer: () => clearTimeout(timer),
      };
      const timeoutMs = this.#options.readTimeoutMs;
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          const index = this.#reads.indexOf(read);
          if (index >= 0) this.#reads.splice(index, 1);
          reject(new Error('transferIn error: Transfer timed out (LIBUSB_ERROR_TIMEOUT)'));
        }, timeoutMs);
      }
      this.#reads.push(read);
      this.#serveReads();
    });
  }

  transferOut(endpointNumber: number, data: Uint8Array): Promise<UsbOutTransferResult> {
    const problem = this.#check(true) ?? (endpointNumber === ENDPOINT ? undefined : new Error('LIBUSB_ERROR_PIPE'));
    if (problem) return Promise.reject(problem);
    const bytes = Uint8Array.from(data);
    this.writes.push(bytes);
    if (bytes.length > 17 && (this.#options.corruptStrings ?? true)) this.#stringsCorrupted = true;
    // A transfer that fills its last packet is not over until a short (here: zero-length) packet follows.
    const pending = this.#awaitingZlp;
    const joined = pending ? Uint8Array.of(...pending, ...bytes) : bytes;
    if (bytes.length > 0 && bytes.length % this.#packetSize === 0) {
      this.#awaitingZlp = joined;
    } else {
      this.#awaitingZlp = undefined;
      if (joined.length > 0) this.emulator.receive(joined);
    }
    return Promise.resolve({ bytesWritten: bytes.length, status: 'ok' });
  }

  #check(needClaim: boolean): Error | undefined {
    if (!this.#connected) return new Error('LIBUSB_ERROR_NO_DEVICE: the device was disconnected');
    if (!this.#opened) return new Error('InvalidStateError: the device must be opened first');
    if (needClaim && !this.#claimed) return new Error('InvalidStateError: the interface must be claimed first');
    return undefined;
  }

  #stop(): void {
    this.#opened = false;
    this.#claimed = false;
    this.#awaitingZlp = undefined;
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
  }

  #serveReads(): void {
    while (this.#reads.length > 0) {
      const failure = this.#failNextIn.shift();
      if (failure) {
        const read = this.#reads.shift()!;
        read.cancelTimer();
        read.reject(failure);
        continue;
      }
      const chunk = this.#in.shift();
      if (!chunk) return;
      const read = this.#reads.shift()!;
      read.cancelTimer();
      const out = chunk.subarray(0, read.length);
      if (chunk.length > read.length) this.#in.unshift(chunk.subarray(read.length));
      const copy = Uint8Array.from(out);
      read.resolve({ data: new DataView(copy.buffer), status: 'ok' });
    }
  }
}
