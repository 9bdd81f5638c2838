import type { Observable } from 'rxjs';

/** The part of WebUSB's `USBInTransferResult` that drivers use. */
export interface UsbInTransferResult {
  readonly data?: DataView;
  readonly status?: 'ok' | 'stall' | 'babble';
}

/** The part of WebUSB's `USBOutTransferResult` that drivers use. */
export interface UsbOutTransferResult {
  readonly bytesWritten: number;
  readonly status?: 'ok' | 'stall' | 'babble';
}

/** A USB endpoint, as WebUSB describes it. */
export interface UsbEndpointLike {
  readonly endpointNumber: number;
  readonly direction: 'in' | 'out';
  readonly type: 'bulk' | 'interrupt' | 'isochronous';
  readonly packetSize: number;
}

/** A USB interface, as WebUSB describes it. */
export interface UsbInterfaceLike {
  readonly interfaceNumber: number;
  readonly claimed: boolean;
  readonly alternate: { readonly endpoints: readonly UsbEndpointLike[] };
}

/**
 * The subset of WebUSB's `USBDevice` (as `usb` 3.x implements it) that drivers may use. Test fakes implement
 * exactly this.
 */
export interface UsbDeviceLike {
  readonly vendorId: number;
  readonly productId: number;
  readonly manufacturerName?: string | undefined;
  readonly productName?: string | undefined;
  readonly serialNumber?: string | undefined;
  readonly opened: boolean;
  readonly configuration?: { readonly interfaces: readonly UsbInterfaceLike[] } | null | undefined;
  open(): Promise<void>;
  close(): Promise<void>;
  selectConfiguration(configurationValue: number): Promise<void>;
  claimInterface(interfaceNumber: number): Promise<void>;
  releaseInterface(interfaceNumber: number): Promise<void>;
  transferIn(endpointNumber: number, length: number): Promise<UsbInTransferResult>;
  transferOut(endpointNumber: number, data: Uint8Array): Promise<UsbOutTransferResult>;
}

/** A USB device attaching or detaching. */
export type UsbDeviceEvent =
  | { readonly type: 'attached'; readonly device: UsbDeviceLike }
  | { readonly type: 'detached'; readonly device: UsbDeviceLike };

/**
 * The USB transport. `devices$` is cold: subscribing loads the `usb` binding, emits every present device as
 * attached, then follows hot-plug. A missing binding or USB bus is a `TRANSPORT_UNAVAILABLE` error on the stream.
 */
export interface UsbTransport {
  readonly devices$: Observable<UsbDeviceEvent>;
}
