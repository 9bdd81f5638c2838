/**
 * `@tapline/driver-acr1252`: the ACS ACR1252U (NXP PN512, PC/SC plus escape commands) for Tapline.
 *
 * The ACR1252U is not an ACR122U: it has no PN532 tunnel, and `FF 00 00 00` is its FeliCa pass-through (readers.md
 * §2.2), so this driver shares nothing with the ACR122U's. Raw Type 2 frames go through PC/SC Part 3 transparent
 * sessions (`FF C2`, core's `Part3Session`); escape commands (`E0 00 00 …`) go through SCardControl with the control
 * code the reader driver reports for FEATURE_CCID_ESC_COMMAND (`CM_IOCTL_GET_FEATURE_REQUEST`, tag 0x13), else the
 * per-platform fallbacks (readers.md §7.1).
 *
 * Support matrix (nfcpy style). Tested against scripted frames only; no row has run on hardware.
 *
 * | function | support | source / remarks |
 * |---|---|---|
 * | UID (`FF CA 00 00 00`), ISO 14443-4 APDUs | yes | PC/SC; Spark 2, Apex |
 * | ISO 14443-A raw (`iso14443a-raw`) | yes | Part 3 documented (ACM1252U-Y3 §5.2.3, API v1.09 §5.4): start session, switch `8F 02 00 03`, transceive with the reader checking the CRC, except for ACK-only commands (WRITE `A2` …) sent with RX-CRC off (`90 02 00 02`) so that the 4-bit ACK/NAK arrives (readers.md §4.1), session ended after 250 ms idle |
 * | FeliCa (`felica`) | yes | `FF 00 00 00 Lc <command>` documented (§5.2.6); the answer shape (FeliCa frame + `90 00`) is inferred |
 * | ISO 14443-B raw | no | PN512 can, not wired |
 * | ISO 15693 (Spark 1) | no | PN512 polls A, B, FeliCa, Topaz only; `UNSUPPORTED_CAPABILITY` names the uTrust 3720 F / 3721 F |
 * | escape: firmware `E0 00 00 18 00` | yes | documented; read once at open for the log |
 * | escape: LED `E0 00 00 29` | yes | documented; `feedback({ led })` |
 * | escape: buzzer `E0 00 00 28 01 <10 ms>` | yes | from the ACR1281U-C1 manual; the 10 ms unit on the ACR1252U is inferred |
 * | escape: polling `E0 00 00 23`, PICC parameter `E0 00 00 20`, LED/buzzer behaviour `E0 00 00 21` | yes, `Acr1252Escapes` | documented; never changed by the driver itself (ACS readers keep them across power cycles) |
 * | LED/buzzer without escapes | with a tag | `FF 00 40 …` through SCardTransmit (documented as ACR122U-compatible, §5.6) |
 * | SAM slot | left alone | name matching excludes `SAM` |
 *
 * @packageDocumentation
 */
import type { ReaderDriver } from '@tapline/core';
import { ACR1252_CAPABILITIES, openAcr1252 } from './reader.js';

export * from './escape.js';
export * from './reader.js';

/** The driver's id. */
export const ACR1252_DRIVER_ID = 'acr1252';

/**
 * USB ids of the family (readers.md §2). PC/SC does not report USB ids, so the driver matches reader names; the table
 * is for documentation and for transports that do.
 */
export const ACR1252_USB_IDS: readonly {
  readonly vendorId: number;
  readonly productId: number;
  readonly name: string;
}[] = Object.freeze([
  { vendorId: 0x072f, productId: 0x223b, name: 'ACS ACR1252U-A1 / -M1 (PICC + SAM)' },
  { vendorId: 0x072f, productId: 0x223e, name: 'ACS ACR1252U-A2' },
  { vendorId: 0x072f, productId: 0x2259, name: 'ACS ACR1252IMP' },
]);

/** ACS ACR1252U over PC/SC. */
export const acr1252Driver: ReaderDriver = {
  id: ACR1252_DRIVER_ID,
  displayName: 'ACS ACR1252U',
  description:
    'ACS ACR1252U (PN512) over PC/SC: ISO 14443-4 APDUs, Type 2 raw frames via PC/SC Part 3, FeliCa pass-through, LED and buzzer via escape commands.',
  // The dual reader's second interface is its SAM slot ("[ACR1252 Dual Reader SAM] 01 00").
  matches: [{ transport: 'pcsc', nameIncludes: 'ACR1252', nameExcludes: ['SAM'], score: 50 }],
  capabilities: ACR1252_CAPABILITIES,
  open: (device, context) => openAcr1252(device, context, { driverId: ACR1252_DRIVER_ID }),
};

/** The drivers of this package, for Tapline's driver discovery. */
export const drivers: readonly ReaderDriver[] = [acr1252Driver];
