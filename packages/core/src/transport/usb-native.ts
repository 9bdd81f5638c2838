// PLACEHOLDER — replaced by the USB transport work.
import type { Logger } from '../runtime/logger.js';
import type { UsbTransport } from './usb.js';
/** Options of {@link createNativeUsbTransport}. */
export interface NativeUsbOptions {
  readonly logger: Logger;
}
/** The USB transport over the native `usb` binding (WebUSB API), loaded lazily. */
export function createNativeUsbTransport(_options: NativeUsbOptions): UsbTransport {
  throw new Error('not yet');
}
