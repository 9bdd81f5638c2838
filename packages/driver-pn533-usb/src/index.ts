/**
 * `@tapline/driver-pn533-usb`: NXP PN533 readers on raw USB (SCL3711, ASK LoGO, PN533 boards) for Tapline.
 *
 * @packageDocumentation
 */
import { ErrorCode, TaplineError, usbId, type DeviceMatcher, type ReaderDriver } from '@tapline/core';

/** The PN533 devices this driver claims, as [vendor id, product id]. */
export const PN533_USB_IDS: readonly (readonly [vendorId: number, productId: number])[] = [
  [0x04cc, 0x2533], // NXP PN533 demo boards
  [0x04e6, 0x5591], // SCM SCL3711
  // SCL3712: nfcpy says 5593, libnfc 5594 ("to check on real device"); claim both until a device settles it.
  [0x04e6, 0x5593],
  [0x04e6, 0x5594],
  [0x1fd3, 0x0608], // ASK LoGO
];

/** PN533 over raw USB, claimed but not implemented yet: `open` refuses honestly with UNSUPPORTED_CAPABILITY. */
export const pn533UsbDriver: ReaderDriver = {
  id: 'pn533-usb',
  displayName: 'PN533 (raw USB)',
  description:
    'NXP PN533 readers without PC/SC (SCL3711, ASK LoGO, PN533 boards); the raw-USB path is not implemented yet.',
  matches: PN533_USB_IDS.map(([vendorId, productId]): DeviceMatcher => ({ transport: 'usb', vendorId, productId })),
  capabilities: [],
  open: (device) =>
    Promise.reject(
      new TaplineError(
        ErrorCode.UnsupportedCapability,
        `The raw-USB PN533 path is not implemented yet, so Tapline cannot use "${device.name}".`,
        {
          details: device.transport === 'usb' ? { usbId: usbId(device.vendorId, device.productId) } : {},
          hint: 'Use a PC/SC reader (ACR122U, ACR1252U, Identiv uTrust) for now.',
        },
      ),
    ),
};

/** The drivers of this package, for Tapline's driver discovery. */
export const drivers: readonly ReaderDriver[] = [pn533UsbDriver];
