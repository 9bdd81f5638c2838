/**
 * `@tapline/driver-pn533-usb`: NXP PN533 readers on raw USB (SCM SCL3711/SCL3712, ASK LoGO, NXP PN533 boards),
 * without PC/SC. The USB bulk pipe, framing and start-up live here; the PN53x commands, target decoding and polling
 * are core's shared PN53x layer (`Pn53xController`, `Pn53xReader`).
 *
 * Support matrix (nfcpy style). **Verified only against the PN533 emulator of `@tapline/test-fixtures`** (a fake
 * WebUSB device driving the same virtual chips as the simulator): no part of this driver has run on a real PN533,
 * because the machines that build Tapline have no USB bus.
 *
 * | function | support | remarks |
 * |---|---|---|
 * | open / claim / release | yes (emulator only) | bulk endpoints from the descriptor, libnfc's 0x04/0x84 when it is unusable |
 * | held by another driver | yes (emulator only) | `TRANSPORT_UNAVAILABLE` naming `modprobe -r pn533_usb pn533` / stopping pcscd |
 * | framing | yes | normal and extended frames, LCS/DCS, ACK, NACK resend, error frame, ZLP after 64-byte multiples, abort by ACK |
 * | start-up | yes (emulator only) | strings read first, ACK, GetFirmwareVersion resync, RFConfiguration (retries, timeouts, analog) |
 * | ISO 14443-A, Type 2 (`iso14443a-raw`) | yes (emulator only) | InCommunicateThru, RX-CRC off, CRC_A checked on the host |
 * | ISO 14443-4 A/B (`iso14443-4`) | yes (emulator only) | InDataExchange, MI chaining |
 * | ISO 14443-B raw (`iso14443b`) | yes (emulator only) | firmware ATTRIB undone with S(DESELECT) + WUPB |
 * | FeliCa (`felica`) | yes (emulator only) | 212 kbps polling; frames include their length byte |
 * | ISO 15693 (Spark 1) | no | the PN533 cannot; `UNSUPPORTED_CAPABILITY` names the uTrust 3720 F / 3721 F |
 * | Type 1 (Jewel), DEP/P2P, target mode | no | not needed by Tapline |
 * | LED / buzzer | no | the ASK LoGO's LEDs are not driven |
 * | hot-plug | yes (emulator only) | through the `usb` transport's connect/disconnect events |
 *
 * @packageDocumentation
 */
import type { DeviceMatcher, ReaderDriver } from '@tapline/core';
import { PN533_USB_DEVICES } from './devices.js';
import { PN533_USB_CAPABILITIES, openPn533Usb, type Pn533UsbOptions } from './open.js';

export * from './devices.js';
export * from './errors.js';
export * from './usb-link.js';
export * from './open.js';

/** The driver's id. */
export const PN533_USB_DRIVER_ID = 'pn533-usb';

/** A PN533 raw-USB driver with non-default timings (tests, slow hosts); {@link pn533UsbDriver} uses the defaults. */
export function createPn533UsbDriver(options: Pn533UsbOptions = {}): ReaderDriver {
  return {
    id: PN533_USB_DRIVER_ID,
    displayName: 'PN533 (raw USB)',
    description:
      'NXP PN533 readers without PC/SC (SCL3711, SCL3712, ASK LoGO, PN533 boards): Type A/B, ISO-DEP, Type 2 raw, FeliCa.',
    matches: PN533_USB_DEVICES.map(({ vendorId, productId }): DeviceMatcher => ({
      transport: 'usb',
      vendorId,
      productId,
    })),
    capabilities: PN533_USB_CAPABILITIES,
    open: (device, context) => openPn533Usb(device, context, PN533_USB_DRIVER_ID, options),
  };
}

/** PN533 readers on raw USB. */
export const pn533UsbDriver: ReaderDriver = createPn533UsbDriver();

/** The drivers of this package, for Tapline's driver discovery. */
export const drivers: readonly ReaderDriver[] = [pn533UsbDriver];
