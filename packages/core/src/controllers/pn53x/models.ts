/**
 * The differences between the PN531, PN532 and PN533 as data (readers.md §5; libnfc pn53x.c, nfcpy pn531/532/533),
 * so that no code in this layer asks "which chip is this?". A driver picks a model (or lets
 * {@link pn53xModelFromFirmware} pick it) and hands it to the controller.
 *
 * @packageDocumentation
 */

/** The PN53x chips. */
export type Pn53xChip = 'PN531' | 'PN532' | 'PN533';

/** InListPassiveTarget BrTy values (baud rate and modulation). */
export const Pn53xModulation = {
  /** 106 kbps ISO/IEC 14443 Type A. */
  TypeA106: 0x00,
  /** 212 kbps FeliCa. */
  Felica212: 0x01,
  /** 424 kbps FeliCa. */
  Felica424: 0x02,
  /** 106 kbps ISO/IEC 14443-3 Type B. */
  TypeB106: 0x03,
  /** 106 kbps Innovision Jewel (Type 1). */
  Jewel106: 0x04,
  /** 212 kbps Type B (PN533). */
  TypeB212: 0x06,
  /** 424 kbps Type B (PN533). */
  TypeB424: 0x07,
  /** 847 kbps Type B (PN533). */
  TypeB847: 0x08,
} as const;

/** One BrTy value; see {@link Pn53xModulation}. */
export type Pn53xModulation = (typeof Pn53xModulation)[keyof typeof Pn53xModulation];

/** Host-side waits per command, in milliseconds (nfcpy's values, rounded up for slow USB hosts). */
export interface Pn53xTimeouts {
  /** GetFirmwareVersion, GetGeneralStatus, SetParameters. */
  readonly status: number;
  /** ReadRegister and WriteRegister. */
  readonly register: number;
  /** RFConfiguration. */
  readonly rfConfiguration: number;
  /** InListPassiveTarget (one poll, with the retries the chip is configured for). */
  readonly listTargets: number;
  /** Diagnose (the card presence test talks to the tag). */
  readonly diagnose: number;
  /** InRelease, InDeselect, InSelect (they talk to the tag). */
  readonly release: number;
}

/** One RFConfiguration item sent at start-up. */
export interface Pn53xRfSetting {
  readonly item: number;
  readonly data: Uint8Array;
}

/** A PN53x chip as data. */
export interface Pn53xModel {
  readonly chip: Pn53xChip;
  /** The IC byte of GetFirmwareVersion (PN532 0x32, PN533 0x33); undefined for the PN531, which answers 2 bytes. */
  readonly icCode: number | undefined;
  /** Whether the chip understands extended information frames. */
  readonly extendedFrames: boolean;
  /** The largest LEN (TFI included) of a frame the chip accepts or sends. */
  readonly maxFrameLength: number;
  /** The most targets InListPassiveTarget may ask for (MaxTg). */
  readonly maxTargets: number;
  /** The BrTy values InListPassiveTarget accepts. */
  readonly modulations: readonly Pn53xModulation[];
  /** ReadRegister and WriteRegister answers start with a status byte (PN533: `D5 07 00 <values>`, `D5 09 00`). */
  readonly registerStatusByte: boolean;
  /** SAMConfiguration exists (PN531/PN532); on a PN533 it is a syntax error. */
  readonly samConfiguration: boolean;
  /** PowerDown exists (PN531/PN532). */
  readonly powerDown: boolean;
  /** Diagnose test 0x06 (ISO 14443-4 card presence) exists, so presence checks need not re-poll. */
  readonly presenceDiagnose: boolean;
  /** Status codes only this chip reports, beyond the common table (see `PN53X_STATUS_ERRORS`). */
  readonly extraStatusCodes: readonly number[];
  /** Host-side waits. */
  readonly timeouts: Pn53xTimeouts;
  /** RFConfiguration analog settings worth sending at start-up (nfcpy's PN533 values); empty to keep the chip's. */
  readonly analogSettings: readonly Pn53xRfSetting[];
}

const TIMEOUTS: Pn53xTimeouts = Object.freeze({
  status: 250,
  register: 250,
  rfConfiguration: 250,
  listTargets: 1000,
  diagnose: 1000,
  release: 1000,
});

const bytes = (...values: number[]): Uint8Array => Uint8Array.from(values);

/** The PN531: normal frames only, no Type B beyond 106 kbps. */
export const PN531: Pn53xModel = Object.freeze({
  chip: 'PN531',
  icCode: undefined,
  extendedFrames: false,
  maxFrameLength: 255,
  maxTargets: 2,
  modulations: [Pn53xModulation.TypeA106, Pn53xModulation.Felica212, Pn53xModulation.Felica424],
  registerStatusByte: false,
  samConfiguration: true,
  powerDown: true,
  presenceDiagnose: false,
  extraStatusCodes: [],
  timeouts: TIMEOUTS,
  analogSettings: [],
});

/** The PN532 (ACR122U, breakout boards): BrTy 00–04, SAMConfiguration, no register status byte. */
export const PN532: Pn53xModel = Object.freeze({
  chip: 'PN532',
  icCode: 0x32,
  extendedFrames: true,
  maxFrameLength: 265,
  maxTargets: 2,
  modulations: [
    Pn53xModulation.TypeA106,
    Pn53xModulation.Felica212,
    Pn53xModulation.Felica424,
    Pn53xModulation.TypeB106,
    Pn53xModulation.Jewel106,
  ],
  registerStatusByte: false,
  samConfiguration: true,
  powerDown: true,
  presenceDiagnose: true,
  extraStatusCodes: [],
  timeouts: TIMEOUTS,
  analogSettings: [],
});

/** The PN533 (SCL3711, ASK LoGO, NXP boards): BrTy 00–04 and 06–08, one target, register status byte. */
export const PN533: Pn53xModel = Object.freeze({
  chip: 'PN533',
  icCode: 0x33,
  extendedFrames: true,
  maxFrameLength: 265,
  maxTargets: 1,
  modulations: [
    Pn53xModulation.TypeA106,
    Pn53xModulation.Felica212,
    Pn53xModulation.Felica424,
    Pn53xModulation.TypeB106,
    Pn53xModulation.Jewel106,
    Pn53xModulation.TypeB212,
    Pn53xModulation.TypeB424,
    Pn53xModulation.TypeB847,
  ],
  registerStatusByte: true,
  samConfiguration: false,
  powerDown: false,
  presenceDiagnose: true,
  extraStatusCodes: [0x18],
  timeouts: TIMEOUTS,
  // nfcpy's PN533 start-up (readers.md §6 vector 7): Type A 106, A/F 212-424, Type B, ISO 14443-4 analog settings.
  analogSettings: [
    { item: 0x0a, data: bytes(0x5a, 0xf4, 0x3f, 0x11, 0x4d, 0x85, 0x61, 0x6f, 0x26, 0x62, 0x87) },
    { item: 0x0b, data: bytes(0x6a, 0xff, 0x3f, 0x10, 0x41, 0x85, 0x61, 0x6f) },
    { item: 0x0c, data: bytes(0xff, 0x04, 0x85) },
    { item: 0x0d, data: bytes(0x85, 0x15, 0x8a, 0x85, 0x0a, 0xb2, 0x85, 0x04, 0xda) },
  ],
});

/** Every model, for lookups. */
export const PN53X_MODELS: readonly Pn53xModel[] = Object.freeze([PN531, PN532, PN533]);

/** The model whose GetFirmwareVersion IC byte is `ic` (2-byte answers are a PN531's); undefined for other chips. */
export function pn53xModelFromFirmware(firmware: { readonly ic: number | undefined }): Pn53xModel | undefined {
  if (firmware.ic === undefined) return PN531;
  return PN53X_MODELS.find((model) => model.icCode === firmware.ic);
}
