import type { Observable } from 'rxjs';

/** How to share a PC/SC connection. `direct` reaches the reader without a card (escape commands). */
export type PcscShareMode = 'shared' | 'exclusive' | 'direct';

/** What to do with the card on disconnect. */
export type PcscDisposition = 'leave' | 'reset' | 'unpower' | 'eject';

/** The state of one PC/SC reader slot, from SCardGetStatusChange. */
export interface PcscReaderStatus {
  /** True when a card (tag) is in the field. */
  readonly present: boolean;
  /** The ATR while present. */
  readonly atr?: Uint8Array;
  /** The raw `dwEventState` bits, for drivers that need more (MUTE, INUSE, EXCLUSIVE). */
  readonly state: number;
}

/** Options of {@link PcscReaderPort.connect}. */
export interface PcscConnectOptions {
  readonly share: PcscShareMode;
  /** Milliseconds before connect fails with `TIMEOUT`. */
  readonly timeoutMs?: number;
}

/** Options of one transmit or control call. */
export interface PcscCallOptions {
  /** Milliseconds before the call fails with `TIMEOUT`. */
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
}

/** A connection to the card in a reader (or to the reader itself, in direct mode). */
export interface PcscCard {
  /** The negotiated protocol: `T0`, `T1`, `RAW`, or `none` for a direct connection without a card. */
  readonly protocol: 'T0' | 'T1' | 'RAW' | 'none';
  /**
   * SCardTransmit. A response shorter than two bytes (what pcscd returns when the card leaves mid-call) fails with
   * `TAG_LOST`, never resolves.
   */
  transmit(command: Uint8Array, options: PcscCallOptions): Promise<Uint8Array>;
  /** SCardControl with a control code already mapped for this platform (see {@link PcscReaderPort.controlCode}). */
  control(code: number, data: Uint8Array, options: PcscCallOptions): Promise<Uint8Array>;
  /** SCardDisconnect. Never throws: a failure is logged, the handle is gone either way. */
  disconnect(disposition?: PcscDisposition): Promise<void>;
}

/** One PC/SC reader as the transport presents it to a driver. */
export interface PcscReaderPort {
  /** The reader name pcsc-lite built (`ACS ACR122U PICC Interface 00 00`). */
  readonly name: string;
  /** Status changes, starting with the current one. Completes when the reader goes away. */
  readonly status$: Observable<PcscReaderStatus>;
  /** SCardConnect. Fails with `TAG_LOST` when no card is present (share modes other than `direct`). */
  connect(options: PcscConnectOptions): Promise<PcscCard>;
  /** `SCARD_CTL_CODE(functionNumber)` for the platform this runs on. */
  controlCode(functionNumber: number): number;
}

/** A reader attaching or detaching. After a pcscd restart every reader detaches and attaches again. */
export type PcscReaderEvent =
  { readonly type: 'attached'; readonly reader: PcscReaderPort } | { readonly type: 'detached'; readonly name: string };

/**
 * The PC/SC transport. `readers$` is cold: subscribing establishes a context (and loads the native binding);
 * unsubscribing releases it. Failures to reach the binding or pcscd are `TRANSPORT_UNAVAILABLE` errors on the
 * stream, raised without blocking the event loop.
 */
export interface PcscTransport {
  readonly readers$: Observable<PcscReaderEvent>;
}

/** The platform numbering of `SCARD_CTL_CODE`: pcsc-lite `0x42000000 + n`, Windows `(0x31 << 16) | (n << 2)`. */
export function scardCtlCode(functionNumber: number, platform: NodeJS.Platform = process.platform): number {
  return platform === 'win32' ? ((0x31 << 16) | (functionNumber << 2)) >>> 0 : (0x42000000 + functionNumber) >>> 0;
}

/** Well-known control function numbers (pass them through {@link scardCtlCode}). */
export const PcscControlFunction = {
  /** IOCTL_SMARTCARD_VENDOR_IFD_EXCHANGE (libccid escape, needs ifdDriverOptions 0x01). */
  VendorIfdExchange: 1,
  /** CM_IOCTL_GET_FEATURE_REQUEST (PC/SC part 10). */
  GetFeatureRequest: 3400,
  /** IOCTL_CCID_ESCAPE (ACS and Windows drivers). */
  CcidEscape: 3500,
} as const;
