// PLACEHOLDER — replaced by the PC/SC transport work.
import type { Logger } from '../runtime/logger.js';
import type { PcscTransport } from './pcsc.js';
/** Options of {@link createNativePcscTransport}. */
export interface NativePcscOptions {
  readonly logger: Logger;
}
/** The PC/SC transport over the native `pcsclite` binding, loaded lazily. */
export function createNativePcscTransport(_options: NativePcscOptions): PcscTransport {
  throw new Error('not yet');
}
