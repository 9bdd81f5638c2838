import type { Capability } from './capabilities.js';
import type { Reader } from './reader.js';
import type { PcscReaderPort } from '../transport/pcsc.js';
import type { UsbDeviceLike } from '../transport/usb.js';
import type { Logger } from '../runtime/logger.js';
import type { Clock } from '../runtime/clock.js';

/** A device a transport found: a PC/SC reader slot, a USB device, or a virtual reader (simulator, test fake). */
export type AttachedDevice =
  | {
      readonly transport: 'pcsc';
      /** The PC/SC reader name. */
      readonly name: string;
      readonly port: PcscReaderPort;
    }
  | {
      readonly transport: 'usb';
      /** `manufacturer product` or `vvvv:pppp` when the device has no strings. */
      readonly name: string;
      readonly vendorId: number;
      readonly productId: number;
      readonly port: UsbDeviceLike;
    }
  | {
      readonly transport: 'virtual';
      readonly name: string;
      /** What the virtual device's own driver understands; other drivers never see it. */
      readonly kind: string;
      readonly port: unknown;
    };

/** The transport kinds. */
export type TransportKind = AttachedDevice['transport'];

/**
 * One rule by which a driver claims devices, with a score: the registry gives a device to the matching driver with
 * the highest score. Vendor drivers score 100 on a USB id and 50 on a name; the generic PC/SC driver scores 1.
 */
export type DeviceMatcher =
  | {
      readonly transport: 'pcsc';
      /** Case-insensitive substring of the PC/SC reader name (never an exact name: names carry slot numbers). */
      readonly nameIncludes: string;
      /** Substrings that veto the match, such as `SAM` for the SAM slot of a dual reader. */
      readonly nameExcludes?: readonly string[];
      readonly score?: number;
    }
  | {
      readonly transport: 'usb';
      readonly vendorId: number;
      readonly productId: number;
      readonly score?: number;
    }
  | {
      readonly transport: 'virtual';
      /** The `kind` of virtual device. */
      readonly kind: string;
      readonly score?: number;
    };

/** What a driver receives when it opens a device. */
export interface DriverContext {
  readonly logger: Logger;
  readonly clock: Clock;
  /** Default per-exchange timeout in milliseconds. */
  readonly timeoutMs: number;
}

/**
 * A reader driver: the unit that community packages publish. Export one (or an array, as `drivers`) from your
 * package's entry point; see docs/writing-a-driver.md.
 */
export interface ReaderDriver {
  /** Stable id, lower-case, used by `--driver`. */
  readonly id: string;
  /** Human name shown by `tapline drivers`. */
  readonly displayName: string;
  /** One line on what it serves and how. */
  readonly description: string;
  /** Devices it claims. */
  readonly matches: readonly DeviceMatcher[];
  /** The most this driver can offer; an opened reader may offer fewer (as the hardware reports). */
  readonly capabilities: readonly Capability[];
  /**
   * Optional finer matching beyond {@link ReaderDriver.matches}: return a score (0 for no) or `undefined` to keep
   * the declarative result.
   */
  readonly score?: (device: AttachedDevice) => number | undefined;
  /** Opens the device. Must release everything it acquired if it fails. */
  open(device: AttachedDevice, context: DriverContext): Promise<Reader>;
}

/** Default scores for matchers that do not set one. */
export const DEFAULT_MATCH_SCORE: Readonly<Record<TransportKind, number>> = { pcsc: 50, usb: 100, virtual: 100 };

/**
 * The score `driver` gives `device` (0 when it does not match).
 */
export function matchScore(driver: ReaderDriver, device: AttachedDevice): number {
  let best = 0;
  for (const matcher of driver.matches) {
    if (matcher.transport !== device.transport) continue;
    const score = matcher.score ?? DEFAULT_MATCH_SCORE[matcher.transport];
    if (matcher.transport === 'pcsc' && device.transport === 'pcsc') {
      const name = device.name.toLowerCase();
      if (!name.includes(matcher.nameIncludes.toLowerCase())) continue;
      if (matcher.nameExcludes?.some((x) => name.includes(x.toLowerCase()))) continue;
      best = Math.max(best, score);
    } else if (matcher.transport === 'usb' && device.transport === 'usb') {
      if (matcher.vendorId === device.vendorId && matcher.productId === device.productId) best = Math.max(best, score);
    } else if (matcher.transport === 'virtual' && device.transport === 'virtual') {
      if (matcher.kind === device.kind) best = Math.max(best, score);
    }
  }
  const refined = driver.score?.(device);
  return refined ?? best;
}

/** True when `driver` declares any matcher for `transport` (so `--driver` may force it onto such devices). */
export function servesTransport(driver: ReaderDriver, transport: TransportKind): boolean {
  return driver.matches.some((m) => m.transport === transport);
}

/** Formats a USB id as `vvvv:pppp`. */
export function usbId(vendorId: number, productId: number): string {
  return `${vendorId.toString(16).padStart(4, '0')}:${productId.toString(16).padStart(4, '0')}`;
}
