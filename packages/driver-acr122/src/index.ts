/**
 * `@tapline/driver-acr122`: the ACS ACR122U (NXP PN532 behind a CCID controller) for Tapline.
 *
 * Two ways to drive it. **PC/SC mode** (the default) leaves the firmware's automatic polling on, so pcscd sees tags
 * come and go, and reaches the PN532 with Direct Transmit (`FF 00 00 00 Lc D4 …`) through the tag's connection,
 * answered `D5 … 90 00` or, in T=0, `61 LL` and Get Response. **PN532 mode** (`createAcr122Driver({ mode: 'pn532' })`)
 * does what nfcpy and libnfc do: it switches automatic polling off (`FF 00 51 7F 00`) and polls through the PN532 with
 * core's `Pn53xReader`, every command an escape command (SCardControl) on a direct connection, which the reader driver
 * must allow. Automatic polling cannot be off in PC/SC mode: it is what makes a tag visible to pcscd.
 *
 * Support matrix (nfcpy style). Every row is tested against scripted frames only (readers.md §6 vectors and the
 * ACR122U manuals); no row has run on hardware.
 *
 * | function | PC/SC mode | PN532 mode | remarks |
 * |---|---|---|---|
 * | firmware check `FF 00 48 00 00` | yes | yes | ASCII without status word; warning below 2.06 (CCID calls it bogus), below 2.00 nfcpy refuses |
 * | PN532 retries `D4 32 05 01 00 01` | yes | yes | the PN532 default is forever |
 * | automatic polling off `FF 00 51 7F 00` | no (on purpose) | yes | restored to `FF` on close |
 * | Direct Transmit, `D5 … 90 00` | yes | yes | through SCardTransmit with a tag, else SCardControl |
 * | `61 LL` + `FF C0 00 00 LL` (T=0) | yes | yes | LL counts the emulated `90 00` (libnfc's Touchatag trace) |
 * | status words `63 00`/`63 01`/`63 27`/`63 7F`/`6A 81` | yes | yes | typed errors |
 * | escape control code | `CM_IOCTL_GET_FEATURE_REQUEST` tag 0x13, then `SCARD_CTL_CODE(3500)` and (pcsc-lite) `SCARD_CTL_CODE(1)` | same | |
 * | ISO 14443-4 (`iso14443-4`) | yes, plain APDUs | yes, InDataExchange | Spark 2, Apex |
 * | ISO 14443-A raw (`iso14443a-raw`) | yes | yes | InCommunicateThru, RX-CRC off for the frame, CRC_A checked on the host, 4-bit ACK/NAK |
 * | ISO 14443-B raw (`iso14443b`) | no | yes | firmware ATTRIB undone with S(DESELECT) + WUPB |
 * | FeliCa (`felica`) | yes, tags the firmware found (ATR `F0 11`/`F0 12`) | yes, 212 kbps polling | frames start with their length byte |
 * | ISO 15693 (Spark 1) | no | no | the PN532 has none; `UNSUPPORTED_CAPABILITY` names the uTrust 3720 F / 3721 F |
 * | Type 1 (Topaz) | no | no | seen (ATR `F0 04`) but not served |
 * | LED / buzzer `FF 00 40` | yes | no | with a tag through its connection, without one as an escape command |
 * | SAM slot | left alone | left alone | name matching excludes `SAM` |
 *
 * @packageDocumentation
 */
import { Capability, type ReaderDriver } from '@tapline/core';
import { openAcr122Pn532 } from './pn532-mode.js';
import { ACR122_PCSC_CAPABILITIES, openAcr122Pcsc } from './reader.js';

export * from './apdu.js';
export * from './link.js';
export * from './reader.js';
export * from './pn532-mode.js';

/** The driver's id. */
export const ACR122_DRIVER_ID = 'acr122';

/**
 * USB ids of the family (readers.md §1). PC/SC does not report USB ids, so the driver matches reader names; the table
 * is for documentation and for transports that do.
 */
export const ACR122_USB_IDS: readonly {
  readonly vendorId: number;
  readonly productId: number;
  readonly name: string;
}[] = Object.freeze([
  { vendorId: 0x072f, productId: 0x2200, name: 'ACS ACR122U' },
  { vendorId: 0x072f, productId: 0x90cc, name: 'Touchatag (ACR122U)' },
  { vendorId: 0x072f, productId: 0x2214, name: 'ACS ACR1222' },
]);

/** Options of {@link createAcr122Driver}. */
export interface Acr122DriverOptions {
  /** `pcsc` (default): firmware polling, tags through PC/SC; `pn532`: nfcpy-style polling through escape commands. */
  readonly mode?: 'pcsc' | 'pn532';
  /** PN532 mode: pause between polls, in milliseconds. Default 250. */
  readonly pollIntervalMs?: number;
}

/** An ACR122U driver in the given mode; {@link acr122Driver} is the PC/SC-mode default. */
export function createAcr122Driver(options: Acr122DriverOptions = {}): ReaderDriver {
  const pn532 = options.mode === 'pn532';
  return {
    id: ACR122_DRIVER_ID,
    displayName: 'ACS ACR122U',
    description: pn532
      ? 'ACS ACR122U (PN532) in PN532 mode: polling through escape commands; Type A/B, ISO-DEP, Type 2 raw, FeliCa.'
      : 'ACS ACR122U (PN532) over PC/SC: ISO 14443-4 APDUs, Type 2 raw frames and FeliCa through the PN532, LED and buzzer.',
    // "ACR122" also names the ACR1222 family (same PN532 API); their SAM slots are no contactless readers.
    matches: [{ transport: 'pcsc', nameIncludes: 'ACR122', nameExcludes: ['SAM'], score: 50 }],
    capabilities: pn532
      ? [Capability.Iso14443aRaw, Capability.Iso14443_4, Capability.Iso14443b, Capability.Felica]
      : ACR122_PCSC_CAPABILITIES,
    open: (device, context) =>
      pn532
        ? openAcr122Pn532(device, context, {
            driverId: ACR122_DRIVER_ID,
            ...(options.pollIntervalMs === undefined ? {} : { pollIntervalMs: options.pollIntervalMs }),
          })
        : openAcr122Pcsc(device, context, { driverId: ACR122_DRIVER_ID }),
  };
}

/** The ACS ACR122U over PC/SC. */
export const acr122Driver: ReaderDriver = createAcr122Driver();

/** The drivers of this package, for Tapline's driver discovery. */
export const drivers: readonly ReaderDriver[] = [acr122Driver];
