/**
 * PN53x commands: codes, request builders (payloads `D4 <cmd> …`) and response parsers, shared by every transport
 * (readers.md §5.3; PN533 user manual §7; libnfc pn53x.c; nfcpy pn53x.py). Pure: no I/O.
 *
 * Every parser fails with a {@link TaplineError}: `PROTOCOL_ERROR` for malformed answers, and the code of the
 * {@link PN53X_STATUS_ERRORS} table for a status byte that reports an error.
 *
 * @packageDocumentation
 */
import { ErrorCode, TaplineError, type TaplineErrorCode } from '../../model/errors.js';
import { toSpacedHex } from '../../util/bytes.js';
import { PN53X_CHIP_TFI, PN53X_HOST_TFI } from './frame.js';
import { Pn53xModulation, type Pn53xModel } from './models.js';

// ---------------------------------------------------------------------------------------------------------------
// Command codes
// ---------------------------------------------------------------------------------------------------------------

/** PN53x command codes (the byte after `D4`; the answer's code is one more). */
export const Pn53xCommand = {
  Diagnose: 0x00,
  GetFirmwareVersion: 0x02,
  GetGeneralStatus: 0x04,
  ReadRegister: 0x06,
  WriteRegister: 0x08,
  SetParameters: 0x12,
  SamConfiguration: 0x14,
  PowerDown: 0x16,
  RfConfiguration: 0x32,
  InQuartetByteExchange: 0x38,
  InDataExchange: 0x40,
  InCommunicateThru: 0x42,
  InDeselect: 0x44,
  InJumpForPsl: 0x46,
  InListPassiveTarget: 0x4a,
  InPsl: 0x4e,
  InAtr: 0x50,
  InRelease: 0x52,
  InSelect: 0x54,
  InJumpForDep: 0x56,
  InAutoPoll: 0x60,
} as const;

/** One command code; see {@link Pn53xCommand}. */
export type Pn53xCommand = (typeof Pn53xCommand)[keyof typeof Pn53xCommand];

const COMMAND_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(Pn53xCommand).map(([k, v]) => [v, k]));

/** The name of a command code (`InDataExchange`), or its hex value for unknown codes. */
export function pn53xCommandName(code: number): string {
  return COMMAND_NAMES.get(code) ?? `command 0x${code.toString(16).padStart(2, '0')}`;
}

/** RFConfiguration items. */
export const Pn53xRfItem = {
  /** `01`: RF field on/off (b0) and auto RFCA (b1). */
  RfField: 0x01,
  /** `02`: timings `RFU ATR_RES-timeout retry-timeout` (timeout indexes, see {@link pn53xTimeoutIndex}). */
  Timings: 0x02,
  /** `04`: MaxRtyCOM, retries of InDataExchange/InCommunicateThru after a timeout. */
  MaxRetryCom: 0x04,
  /** `05`: MxRtyATR MxRtyPSL MxRtyPassiveActivation (FF = forever, which is the chip's default). */
  MaxRetries: 0x05,
} as const;

/** Register addresses of the CIU (contactless interface unit), the same on every PN53x. */
export const Pn53xRegister = {
  /** CIU_TxMode: b7 TxCRCEn (the chip appends the CRC). */
  TxMode: 0x6302,
  /** CIU_RxMode: b7 RxCRCEn (the chip checks and strips the CRC). */
  RxMode: 0x6303,
  /** CIU_TxAuto. */
  TxAuto: 0x6305,
  /** CIU_FIFOData. */
  FifoData: 0x6339,
} as const;

/** SetParameters flags. */
export const Pn53xParameter = {
  /** Use a NAD in ISO-DEP/DEP. */
  Nad: 0x01,
  /** Use a DID/CID. */
  Did: 0x02,
  /** Send ATR_REQ automatically during InListPassiveTarget (DEP targets). */
  AutoAtrRes: 0x04,
  /** Send RATS automatically during InListPassiveTarget, so that ISO 14443-4 targets come up activated with ATS. */
  AutoRats: 0x10,
  /** PN532: ISO 14443-4 PICC emulation; PN533: NFC secure. */
  Iso14443_4Picc: 0x20,
  /** No preamble/postamble on the air (PN533). */
  RemovePreAndPostamble: 0x40,
} as const;

// ---------------------------------------------------------------------------------------------------------------
// Request builders
// ---------------------------------------------------------------------------------------------------------------

function byteArg(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xff) {
    throw new TaplineError(ErrorCode.InvalidArgument, `${what} must be a byte (0–255), not ${String(value)}.`);
  }
  return value;
}

/** `D4 <code> <data…>`: a command payload from parts (bytes or byte arrays). */
export function pn53xCommand(code: number, ...parts: readonly (number | Uint8Array)[]): Uint8Array {
  const out: number[] = [PN53X_HOST_TFI, byteArg(code, 'A PN53x command code')];
  for (const part of parts) {
    if (typeof part === 'number') out.push(byteArg(part, 'A PN53x command byte'));
    else out.push(...part);
  }
  return Uint8Array.from(out);
}

/** `D4 00 <test> <data>`: Diagnose (test 00 echoes `data`; 06 checks an ISO 14443-4 card is still present). */
export function diagnoseCommand(test: number, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  return pn53xCommand(Pn53xCommand.Diagnose, test, data);
}

/** `D4 02`: GetFirmwareVersion. */
export function getFirmwareVersionCommand(): Uint8Array {
  return pn53xCommand(Pn53xCommand.GetFirmwareVersion);
}

/** `D4 04`: GetGeneralStatus. */
export function getGeneralStatusCommand(): Uint8Array {
  return pn53xCommand(Pn53xCommand.GetGeneralStatus);
}

function registerAddress(address: number): [number, number] {
  if (!Number.isInteger(address) || address < 0 || address > 0xffff) {
    throw new TaplineError(ErrorCode.InvalidArgument, `A PN53x register address is 16 bits, not ${String(address)}.`);
  }
  return [address >> 8, address & 0xff];
}

/** `D4 06 <addr16>…`: ReadRegister. */
export function readRegisterCommand(addresses: readonly number[]): Uint8Array {
  if (addresses.length === 0) throw new TaplineError(ErrorCode.InvalidArgument, 'ReadRegister needs an address.');
  return pn53xCommand(Pn53xCommand.ReadRegister, Uint8Array.from(addresses.flatMap(registerAddress)));
}

/** One register write. */
export interface Pn53xRegisterWrite {
  readonly address: number;
  readonly value: number;
}

/** `D4 08 <addr16 value>…`: WriteRegister. */
export function writeRegisterCommand(writes: readonly Pn53xRegisterWrite[]): Uint8Array {
  if (writes.length === 0) throw new TaplineError(ErrorCode.InvalidArgument, 'WriteRegister needs a register.');
  return pn53xCommand(
    Pn53xCommand.WriteRegister,
    Uint8Array.from(writes.flatMap((w) => [...registerAddress(w.address), byteArg(w.value, 'A register value')])),
  );
}

/** `D4 12 <flags>`: SetParameters (see {@link Pn53xParameter}). */
export function setParametersCommand(flags: number): Uint8Array {
  return pn53xCommand(Pn53xCommand.SetParameters, flags);
}

/** `D4 14 <mode> <timeout> [irq]`: SAMConfiguration (PN531/PN532 only; mode 01 = normal, no SAM). */
export function samConfigurationCommand(mode = 0x01, timeout = 0x00, useIrq?: boolean): Uint8Array {
  return useIrq === undefined
    ? pn53xCommand(Pn53xCommand.SamConfiguration, mode, timeout)
    : pn53xCommand(Pn53xCommand.SamConfiguration, mode, timeout, useIrq ? 1 : 0);
}

/** `D4 16 <wake-up sources> [irq]`: PowerDown (PN531/PN532 only). */
export function powerDownCommand(wakeUpEnable: number, generateIrq?: boolean): Uint8Array {
  return generateIrq === undefined
    ? pn53xCommand(Pn53xCommand.PowerDown, wakeUpEnable)
    : pn53xCommand(Pn53xCommand.PowerDown, wakeUpEnable, generateIrq ? 1 : 0);
}

/** `D4 32 <item> <data>`: RFConfiguration. */
export function rfConfigurationCommand(item: number, data: Uint8Array): Uint8Array {
  return pn53xCommand(Pn53xCommand.RfConfiguration, item, data);
}

/** `D4 32 01 <flags>`: the RF field on or off, with or without auto RFCA. */
export function rfFieldCommand(on: boolean, autoRfca = false): Uint8Array {
  return rfConfigurationCommand(Pn53xRfItem.RfField, Uint8Array.of((on ? 0x01 : 0) | (autoRfca ? 0x02 : 0)));
}

/** `D4 32 02 <rfu> <ATR_RES timeout> <retry timeout>`, timeouts as indexes (see {@link pn53xTimeoutIndex}). */
export function rfTimingsCommand(atrResTimeout: number, retryTimeout: number, rfu = 0x00): Uint8Array {
  return rfConfigurationCommand(Pn53xRfItem.Timings, Uint8Array.of(rfu, atrResTimeout, retryTimeout));
}

/** `D4 32 04 <n>`: MaxRtyCOM. */
export function rfMaxRetryComCommand(retries: number): Uint8Array {
  return rfConfigurationCommand(Pn53xRfItem.MaxRetryCom, Uint8Array.of(byteArg(retries, 'MaxRtyCOM')));
}

/** Retries of RFConfiguration item 05; 0xFF means forever. */
export interface Pn53xRetries {
  readonly atr: number;
  readonly psl: number;
  /** InListPassiveTarget retries. The chip's default is forever, which would make a poll without tag never end. */
  readonly passiveActivation: number;
}

/** `D4 32 05 <ATR> <PSL> <passive activation>`: retry counts. */
export function rfMaxRetriesCommand(retries: Pn53xRetries): Uint8Array {
  return rfConfigurationCommand(
    Pn53xRfItem.MaxRetries,
    Uint8Array.of(
      byteArg(retries.atr, 'MxRtyATR'),
      byteArg(retries.psl, 'MxRtyPSL'),
      byteArg(retries.passiveActivation, 'MxRtyPassiveActivation'),
    ),
  );
}

/** Milliseconds of an RFConfiguration timeout index: 100 µs · 2^(n−1) for n = 1…16, 0 for none. */
export function pn53xTimeoutMs(index: number): number {
  if (index <= 0) return 0;
  return 0.1 * 2 ** (Math.min(index, 16) - 1);
}

/** The smallest RFConfiguration timeout index that waits at least `ms` (capped at 16, about 3.3 s). */
export function pn53xTimeoutIndex(ms: number): number {
  for (let n = 1; n <= 16; n++) if (pn53xTimeoutMs(n) >= ms) return n;
  return 16;
}

/** Options of {@link inListPassiveTargetCommand}. */
export interface Pn53xListOptions {
  /** MaxTg; default 1. */
  readonly maxTargets?: number;
  /** Initiator data: a UID for 106A, the AFI for B, SENSF_REQ for FeliCa. */
  readonly initiatorData?: Uint8Array;
}

/** SENSF_REQ for FeliCa polling: system code FFFF (any), request code 01 (system code), one time slot. */
export const FELICA_POLLING_REQUEST: Uint8Array = Uint8Array.of(0x00, 0xff, 0xff, 0x01, 0x00);

/** `D4 4A <MaxTg> <BrTy> [initiator data]`: InListPassiveTarget. */
export function inListPassiveTargetCommand(brTy: number, options: Pn53xListOptions = {}): Uint8Array {
  return pn53xCommand(
    Pn53xCommand.InListPassiveTarget,
    options.maxTargets ?? 1,
    brTy,
    options.initiatorData ?? new Uint8Array(0),
  );
}

/**
 * A Type A UID as InListPassiveTarget's initiator data wants it: with the cascade tag 0x88 before each full cascade
 * level (7 bytes → `88 u0 u1 u2 u3 u4 u5 u6`), as libnfc's `iso14443_cascade_uid` does.
 */
export function pn53xCascadeUid(uid: Uint8Array): Uint8Array {
  if (uid.length === 7) return Uint8Array.of(0x88, ...uid);
  if (uid.length === 10) return Uint8Array.of(0x88, ...uid.subarray(0, 3), 0x88, ...uid.subarray(3));
  return uid.slice();
}

/** `D4 40 <Tg> <data>`: InDataExchange (the chip runs ISO-DEP, or MIFARE framing, for the target). */
export function inDataExchangeCommand(tg: number, data: Uint8Array): Uint8Array {
  return pn53xCommand(Pn53xCommand.InDataExchange, tg, data);
}

/** `D4 42 <data>`: InCommunicateThru (raw frame; CRC and parity as the CIU registers say). */
export function inCommunicateThruCommand(data: Uint8Array): Uint8Array {
  return pn53xCommand(Pn53xCommand.InCommunicateThru, data);
}

/** `D4 44 <Tg>`: InDeselect (0 = all targets). */
export function inDeselectCommand(tg: number): Uint8Array {
  return pn53xCommand(Pn53xCommand.InDeselect, tg);
}

/** `D4 52 <Tg>`: InRelease (0 = all targets). */
export function inReleaseCommand(tg: number): Uint8Array {
  return pn53xCommand(Pn53xCommand.InRelease, tg);
}

/** `D4 54 <Tg>`: InSelect. */
export function inSelectCommand(tg: number): Uint8Array {
  return pn53xCommand(Pn53xCommand.InSelect, tg);
}

// ---------------------------------------------------------------------------------------------------------------
// Status byte and errors
// ---------------------------------------------------------------------------------------------------------------

/** One entry of the PN53x error table. */
export interface Pn53xStatusErrorInfo {
  readonly name: string;
  readonly message: string;
  readonly code: TaplineErrorCode;
}

const rf = (name: string, message: string): Pn53xStatusErrorInfo => ({ name, message, code: ErrorCode.ProtocolError });

/**
 * The PN53x error table (status byte b5..0; readers.md §5.3), with the Tapline code each maps to. Codes not in the
 * table map to `PROTOCOL_ERROR`.
 */
export const PN53X_STATUS_ERRORS: ReadonlyMap<number, Pn53xStatusErrorInfo> = new Map([
  [0x01, { name: 'timeout', message: 'the tag did not answer in time', code: ErrorCode.Timeout }],
  [0x02, rf('crc', 'the CRC of the tag’s answer was wrong')],
  [0x03, rf('parity', 'the parity of the tag’s answer was wrong')],
  [0x04, rf('bit-count', 'the tag answered with a wrong number of bits during anticollision')],
  [0x05, rf('framing', 'the tag’s answer was badly framed')],
  [0x06, rf('collision', 'two tags answered at once (bit collision)')],
  [0x07, rf('buffer-too-small', 'the chip’s communication buffer was too small')],
  [0x09, rf('rf-buffer-overflow', 'the chip’s RF buffer overflowed')],
  [0x0a, rf('rf-field', 'the RF field was not switched on in time')],
  [0x0b, rf('rf-protocol', 'an RF protocol error occurred')],
  [0x0d, rf('overheat', 'the antenna drivers are overheating')],
  [0x0e, rf('internal-buffer-overflow', 'the chip’s internal buffer overflowed')],
  [0x10, { name: 'invalid-parameter', message: 'a parameter was invalid', code: ErrorCode.InvalidArgument }],
  [0x12, rf('dep-unsupported-command', 'the DEP target does not support the command')],
  [0x13, rf('format', 'the data format does not match the specification')],
  [0x14, { name: 'mifare-auth', message: 'MIFARE authentication failed', code: ErrorCode.AuthenticationFailed }],
  [0x18, { name: 'nfc-secure', message: 'NFC secure is not supported', code: ErrorCode.UnsupportedCapability }],
  [0x19, rf('i2c-busy', 'the I2C bus is busy')],
  [0x23, rf('uid-check-byte', 'the UID check byte was wrong')],
  [0x25, rf('dep-state', 'the DEP protocol state is invalid')],
  [0x26, rf('not-allowed', 'the operation is not allowed in this configuration')],
  [0x27, rf('wrong-context', 'the command is not acceptable in the current context (no target?)')],
  [0x29, { name: 'released', message: 'the target was released by the initiator', code: ErrorCode.TagLost }],
  [0x2a, { name: 'card-id-mismatch', message: 'a different card is in the field', code: ErrorCode.TagLost }],
  [0x2b, { name: 'card-disappeared', message: 'the card left the field', code: ErrorCode.TagLost }],
  [0x2c, rf('nfcid3-mismatch', 'the NFCID3 of the DEP target did not match')],
  [0x2d, rf('over-current', 'an over-current event was detected')],
  [0x2e, rf('nad-missing', 'the NAD was missing in a DEP frame')],
]);

/** The decoded status byte of InDataExchange, InCommunicateThru and friends. */
export interface Pn53xStatus {
  /** b5..0: 0 for success. */
  readonly error: number;
  /** b6 MI: more information, the answer continues (fetch the rest with another InDataExchange). */
  readonly moreInformation: boolean;
  /** b7: a NAD is present. */
  readonly nad: boolean;
}

/** Splits a status byte into error, MI and NAD. */
export function parsePn53xStatus(status: number): Pn53xStatus {
  return { error: status & 0x3f, moreInformation: (status & 0x40) !== 0, nad: (status & 0x80) !== 0 };
}

/** The typed error for chip status `error` (b5..0) in answer to `command`. */
export function pn53xStatusError(error: number, command: number, cause?: unknown): TaplineError {
  const info = PN53X_STATUS_ERRORS.get(error);
  const hex = `0x${error.toString(16).padStart(2, '0')}`;
  const hint =
    info?.code === ErrorCode.Timeout || info?.code === ErrorCode.ProtocolError
      ? 'Hold the tag flat and still on the reader, then try again.'
      : undefined;
  return new TaplineError(
    info?.code ?? ErrorCode.ProtocolError,
    `The PN53x reported error ${hex} for ${pn53xCommandName(command)}: ${info?.message ?? 'an undocumented error'}.`,
    {
      cause,
      details: { chipStatus: hex, chipError: info?.name ?? 'unknown', command: pn53xCommandName(command) },
      ...(hint ? { hint } : {}),
    },
  );
}

/** The error for the chip's application-level error frame (syntax error) in answer to `command`. */
export function pn53xSyntaxError(command: number, errorCode = 0x7f): TaplineError {
  return new TaplineError(
    ErrorCode.ProtocolError,
    `The PN53x rejected ${pn53xCommandName(command)} with an error frame (invalid command syntax).`,
    {
      details: { chipError: 'syntax', errorCode, command: pn53xCommandName(command) },
      hint: 'The chip does not support this command or its parameters; this is a driver bug worth reporting.',
    },
  );
}

function malformed(command: number, message: string, response: Uint8Array): TaplineError {
  return new TaplineError(ErrorCode.ProtocolError, `The PN53x answered ${pn53xCommandName(command)} with ${message}.`, {
    details: { command: pn53xCommandName(command), response: toSpacedHex(response.subarray(0, 48)) },
  });
}

/**
 * Checks that `response` answers `command` (`D5 <code+1>`) and returns the data after those two bytes. Fails with
 * `PROTOCOL_ERROR` otherwise.
 */
export function pn53xResponseData(command: Uint8Array, response: Uint8Array): Uint8Array {
  const code = command[1] ?? -1;
  if (response.length < 2 || response[0] !== PN53X_CHIP_TFI) {
    throw malformed(code, 'something that is no PN53x answer', response);
  }
  if (response[1] !== ((code + 1) & 0xff)) {
    throw malformed(code, `the answer code ${toSpacedHex(response.subarray(1, 2))} instead of its own`, response);
  }
  return response.subarray(2);
}

/**
 * Splits `data` (after `D5 <code>`) into status and payload and fails with the table's error when the status reports
 * one. MI is returned for the caller to follow.
 */
export function pn53xCheckStatus(command: number, data: Uint8Array): { status: Pn53xStatus; data: Uint8Array } {
  if (data.length < 1) throw malformed(command, 'no status byte', data);
  const status = parsePn53xStatus(data[0]!);
  if (status.error !== 0) throw pn53xStatusError(status.error, command);
  return { status, data: data.subarray(1) };
}

// ---------------------------------------------------------------------------------------------------------------
// Response parsers
// ---------------------------------------------------------------------------------------------------------------

/** GetFirmwareVersion's answer. */
export interface Pn53xFirmwareVersion {
  /** IC: 0x32 PN532, 0x33 PN533; undefined for a PN531 (2-byte answer). */
  readonly ic: number | undefined;
  readonly version: number;
  readonly revision: number;
  /** Supported protocols bitmap (b0 Type A, b1 Type B, b2 ISO 18092); undefined for a PN531. */
  readonly support: number | undefined;
  /** `PN533 v2.7`. */
  readonly text: string;
}

/** Parses GetFirmwareVersion data (after `D5 03`): `IC Ver Rev Support`, or a PN531's `Ver Rev`. */
export function parseFirmwareVersion(data: Uint8Array): Pn53xFirmwareVersion {
  if (data.length === 2) {
    return {
      ic: undefined,
      version: data[0]!,
      revision: data[1]!,
      support: undefined,
      text: `PN531 v${data[0]}.${data[1]}`,
    };
  }
  if (data.length !== 4) throw malformed(Pn53xCommand.GetFirmwareVersion, `${data.length} data bytes`, data);
  const [ic, version, revision, support] = [data[0]!, data[1]!, data[2]!, data[3]!];
  const name = ic === 0x32 || ic === 0x33 ? `PN5${ic.toString(16)}` : `PN53x (IC 0x${ic.toString(16)})`;
  return { ic, version, revision, support, text: `${name} v${version}.${revision}` };
}

/**
 * Parses ReadRegister data (after `D5 07`): on a PN533 a status byte comes first, and a non-zero status (such as the
 * `FF` of an absent EEPROM) fails with `PROTOCOL_ERROR`. Returns one value per address read.
 */
export function parseRegisterValues(data: Uint8Array, count: number, model: Pn53xModel): Uint8Array {
  let values = data;
  if (model.registerStatusByte) {
    if (data.length < 1) throw malformed(Pn53xCommand.ReadRegister, 'no status byte', data);
    if (data[0] !== 0x00) {
      throw new TaplineError(
        ErrorCode.ProtocolError,
        `The ${model.chip} could not read the register (status 0x${data[0]!.toString(16).padStart(2, '0')}).`,
        { details: { command: 'ReadRegister', chipStatus: data[0] } },
      );
    }
    values = data.subarray(1);
  }
  if (values.length !== count) {
    throw malformed(Pn53xCommand.ReadRegister, `${values.length} values for ${count} registers`, data);
  }
  return values.slice();
}

/** Checks WriteRegister data (after `D5 09`): empty, or a PN533's status byte 00. */
export function parseWriteRegister(data: Uint8Array, model: Pn53xModel): void {
  if (!model.registerStatusByte) {
    if (data.length !== 0) throw malformed(Pn53xCommand.WriteRegister, `${data.length} unexpected bytes`, data);
    return;
  }
  if (data.length !== 1) throw malformed(Pn53xCommand.WriteRegister, `${data.length} bytes instead of a status`, data);
  if (data[0] !== 0x00) {
    throw new TaplineError(
      ErrorCode.ProtocolError,
      `The ${model.chip} could not write the register (status 0x${data[0]!.toString(16).padStart(2, '0')}).`,
      { details: { command: 'WriteRegister', chipStatus: data[0] } },
    );
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------------------------------------------

/** A Type A target (106 kbps). */
export interface Pn53xTypeATarget {
  readonly kind: 'iso14443a';
  /** The logical target number the chip gave it (for InDataExchange). */
  readonly tg: number;
  /** SENS_RES as a 16-bit value (the PN53x sends it most significant byte first, e.g. `00 44`). */
  readonly sensRes: number;
  /** ATQA as sent on air (least significant byte first, e.g. `44 00`): what `TagInfo.atqa` holds. */
  readonly atqa: Uint8Array;
  /** SEL_RES (SAK). */
  readonly sak: number;
  /** NFCID1 (UID), cascade tags removed, MSB first. */
  readonly uid: Uint8Array;
  /** The ATS without its length byte TL, when the chip activated ISO 14443-4 (AutoRATS). */
  readonly ats?: Uint8Array;
  /** True when the chip activated ISO-DEP (SAK b6 set and an ATS came back): InDataExchange speaks ISO 14443-4. */
  readonly isoDep: boolean;
}

/** A Type B target. */
export interface Pn53xTypeBTarget {
  readonly kind: 'iso14443b';
  readonly tg: number;
  /** The 12-byte ATQB (`50 PUPI(4) application data(4) protocol info(3)`). */
  readonly atqb: Uint8Array;
  /** The PUPI, the UID of a Type B tag. */
  readonly pupi: Uint8Array;
  readonly applicationData: Uint8Array;
  readonly protocolInfo: Uint8Array;
  /** The ATTRIB_RES of the ATTRIB the firmware sent on its own, if any. */
  readonly attribRes?: Uint8Array;
  /** True when the tag is ISO 14443-4 compliant (protocol info) and the firmware activated it with ATTRIB. */
  readonly isoDep: boolean;
}

/** A FeliCa target. */
export interface Pn53xFelicaTarget {
  readonly kind: 'felica';
  readonly tg: number;
  /** 212 or 424 kbps. */
  readonly bitRate: 212 | 424;
  /** IDm (NFCID2), the UID of a FeliCa tag. */
  readonly idm: Uint8Array;
  /** PMm (PAD). */
  readonly pmm: Uint8Array;
  /** The system code, when the poll asked for it (request code 01). */
  readonly systemCode?: Uint8Array;
}

/** A Jewel (Type 1) target. */
export interface Pn53xJewelTarget {
  readonly kind: 'jewel';
  readonly tg: number;
  readonly sensRes: number;
  /** JEWELID (4 bytes). */
  readonly jewelId: Uint8Array;
}

/** Any target InListPassiveTarget reports. */
export type Pn53xTarget = Pn53xTypeATarget | Pn53xTypeBTarget | Pn53xFelicaTarget | Pn53xJewelTarget;

/** A bounds-checked reader over an answer. */
class Cursor {
  #at = 0;
  constructor(
    private readonly data: Uint8Array,
    private readonly fail: (what: string) => TaplineError,
  ) {}

  get remaining(): number {
    return this.data.length - this.#at;
  }

  byte(what: string): number {
    if (this.#at >= this.data.length) throw this.fail(what);
    return this.data[this.#at++]!;
  }

  take(length: number, what: string): Uint8Array {
    if (this.#at + length > this.data.length) throw this.fail(what);
    const out = this.data.slice(this.#at, this.#at + length);
    this.#at += length;
    return out;
  }
}

/** Removes the cascade tags (0x88) that some PN53x firmware leaves in a double- or triple-size UID. */
function stripCascadeTags(uid: Uint8Array): Uint8Array {
  if (uid.length === 8 && uid[0] === 0x88) return uid.slice(1);
  if (uid.length === 12 && uid[0] === 0x88 && uid[4] === 0x88)
    return Uint8Array.of(...uid.subarray(1, 4), ...uid.subarray(5));
  return uid;
}

function decodeTypeA(cursor: Cursor): Pn53xTypeATarget {
  const tg = cursor.byte('Tg');
  const sensRes = cursor.take(2, 'SENS_RES');
  const sak = cursor.byte('SEL_RES');
  const uidLength = cursor.byte('NFCID length');
  if (uidLength === 0)
    throw new TaplineError(ErrorCode.ProtocolError, 'The PN53x reported a Type A target without UID.');
  const uid = stripCascadeTags(cursor.take(uidLength, 'NFCID'));
  let ats: Uint8Array | undefined;
  if ((sak & 0x20) !== 0 && cursor.remaining > 0) {
    const tl = cursor.byte('ATS length');
    if (tl < 1) throw new TaplineError(ErrorCode.ProtocolError, 'The PN53x reported an ATS of length 0.');
    ats = cursor.take(tl - 1, 'ATS');
  }
  return {
    kind: 'iso14443a',
    tg,
    sensRes: (sensRes[0]! << 8) | sensRes[1]!,
    atqa: Uint8Array.of(sensRes[1]!, sensRes[0]!),
    sak,
    uid,
    ...(ats ? { ats } : {}),
    isoDep: ats !== undefined,
  };
}

function decodeTypeB(cursor: Cursor): Pn53xTypeBTarget {
  const tg = cursor.byte('Tg');
  const atqb = cursor.take(12, 'ATQB');
  if (atqb[0] !== 0x50) throw new TaplineError(ErrorCode.ProtocolError, 'The PN53x reported an ATQB that is none.');
  const attribLength = cursor.byte('ATTRIB_RES length');
  const attribRes = cursor.take(attribLength, 'ATTRIB_RES');
  const protocolInfo = atqb.slice(9, 12);
  // Protocol info byte 2, b0: "PICC compliant with ISO/IEC 14443-4".
  const compliant = (protocolInfo[1]! & 0x01) !== 0;
  return {
    kind: 'iso14443b',
    tg,
    atqb,
    pupi: atqb.slice(1, 5),
    applicationData: atqb.slice(5, 9),
    protocolInfo,
    ...(attribLength > 0 ? { attribRes } : {}),
    isoDep: compliant && attribLength > 0,
  };
}

function decodeFelica(cursor: Cursor, bitRate: 212 | 424): Pn53xFelicaTarget {
  const tg = cursor.byte('Tg');
  const length = cursor.byte('POL_RES length');
  if (length !== 18 && length !== 20) {
    throw new TaplineError(ErrorCode.ProtocolError, `The PN53x reported a FeliCa answer of length ${length}.`);
  }
  const code = cursor.byte('response code');
  if (code !== 0x01) {
    throw new TaplineError(ErrorCode.ProtocolError, `The PN53x reported a FeliCa answer with code ${code}.`);
  }
  const idm = cursor.take(8, 'IDm');
  const pmm = cursor.take(8, 'PMm');
  const systemCode = length === 20 ? cursor.take(2, 'system code') : undefined;
  return { kind: 'felica', tg, bitRate, idm, pmm, ...(systemCode ? { systemCode } : {}) };
}

function decodeJewel(cursor: Cursor): Pn53xJewelTarget {
  const tg = cursor.byte('Tg');
  const sensRes = cursor.take(2, 'SENS_RES');
  const jewelId = cursor.take(4, 'JEWELID');
  return { kind: 'jewel', tg, sensRes: (sensRes[0]! << 8) | sensRes[1]!, jewelId };
}

/**
 * Parses InListPassiveTarget data (after `D5 4B`): `NbTg` then each target's data, decoded by `brTy`. Fails with
 * `PROTOCOL_ERROR` for truncated or inconsistent data, and for trailing bytes.
 */
export function parseInListPassiveTarget(data: Uint8Array, brTy: number): Pn53xTarget[] {
  const cursor = new Cursor(data, (what) =>
    malformed(Pn53xCommand.InListPassiveTarget, `target data cut short (missing ${what})`, data),
  );
  const count = cursor.byte('NbTg');
  if (count > 2) throw malformed(Pn53xCommand.InListPassiveTarget, `${count} targets (at most 2 exist)`, data);
  const targets: Pn53xTarget[] = [];
  for (let i = 0; i < count; i++) {
    switch (brTy) {
      case Pn53xModulation.TypeA106:
        targets.push(decodeTypeA(cursor));
        break;
      case Pn53xModulation.Felica212:
        targets.push(decodeFelica(cursor, 212));
        break;
      case Pn53xModulation.Felica424:
        targets.push(decodeFelica(cursor, 424));
        break;
      case Pn53xModulation.TypeB106:
      case Pn53xModulation.TypeB212:
      case Pn53xModulation.TypeB424:
      case Pn53xModulation.TypeB847:
        targets.push(decodeTypeB(cursor));
        break;
      case Pn53xModulation.Jewel106:
        targets.push(decodeJewel(cursor));
        break;
      default:
        throw new TaplineError(ErrorCode.InvalidArgument, `Unknown InListPassiveTarget BrTy 0x${brTy.toString(16)}.`);
    }
  }
  if (cursor.remaining !== 0) {
    throw malformed(Pn53xCommand.InListPassiveTarget, `${cursor.remaining} bytes after the targets`, data);
  }
  return targets;
}
