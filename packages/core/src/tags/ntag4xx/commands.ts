/**
 * NTAG 413/424 DNA commands: application and file selection, GetVersion with model identification, Read_Sig,
 * GetCardUID, GetFileSettings, ChangeFileSettings, ReadData and WriteData.
 *
 * @packageDocumentation
 */
import { ErrorCode, TaplineError } from '../../model/errors.js';
import type { ExchangeOptions } from '../channel.js';
import type { ResponseApdu } from '../iso7816/apdu.js';
import type { ApduChannel } from '../iso7816/channel.js';
import {
  SW_NXP_ADDITIONAL_FRAME,
  SW_NXP_OK,
  formatStatusWord,
  statusWordError,
  type StatusWord,
} from '../iso7816/status.js';
import { concatBytes, fromHex } from '../../util/bytes.js';
import { NTAG4XX_ADDITIONAL_FRAME, Ntag4xxCommand, nativeApdu, nativeExchange } from './native.js';
import { SecureChannel, type CommMode } from './secure-messaging.js';

/** DF name of the NTAG 4xx NDEF application (the T4T NDEF application). */
export const NTAG4XX_NDEF_AID: Uint8Array = fromHex('D2760000850101');
/** ISO file id of the capability container file (file number 01). */
export const NTAG4XX_CC_FILE_ID = 0xe103;
/** ISO file id of the NDEF file (file number 02). */
export const NTAG4XX_NDEF_FILE_ID = 0xe104;
/** Length of the originality signature (ECDSA secp224r1, r ‖ s). */
export const NTAG4XX_SIGNATURE_LENGTH = 56;
/** Length of the UID NTAG 4xx chips report. */
export const NTAG4XX_UID_LENGTH = 7;

/** Where a command goes: a plain APDU channel (not authenticated) or an authenticated {@link SecureChannel}. */
export type Ntag4xxTarget = ApduChannel | SecureChannel;

/** Options of the commands in this module. */
export type Ntag4xxCommandOptions = ExchangeOptions;

const SW_SIGNATURE = 0x9190;
const MAX_OFFSET = 0xffffff;

function le3(value: number, what: string): Uint8Array {
  if (!Number.isInteger(value) || value < 0 || value > MAX_OFFSET) {
    throw new TaplineError(ErrorCode.InvalidArgument, `${what} must be 0 to ${MAX_OFFSET}, not ${value}.`);
  }
  return Uint8Array.of(value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff);
}

function checkFileNo(fileNo: number): void {
  if (!Number.isInteger(fileNo) || fileNo < 0 || fileNo > 0x1f) {
    throw new TaplineError(ErrorCode.InvalidArgument, `The file number must be 0 to 31, not ${fileNo}.`);
  }
}

function protocolError(message: string, details?: Readonly<Record<string, unknown>>): TaplineError {
  return new TaplineError(ErrorCode.ProtocolError, message, details === undefined ? {} : { details });
}

/**
 * Sends native command `cmd` in `mode`: through the secure channel when there is one, or in plain over an
 * unauthenticated APDU channel (MAC and FULL then fail with `INVALID_ARGUMENT`).
 */
async function runNative(
  target: Ntag4xxTarget,
  cmd: number,
  header: Uint8Array,
  data: Uint8Array,
  mode: CommMode,
  name: string,
  options: ExchangeOptions & { readonly expectRc?: readonly number[] },
): Promise<ResponseApdu> {
  if (target instanceof SecureChannel) {
    return target.transmit(cmd, header, data, mode, { ...options, name });
  }
  if (mode !== 'plain') {
    throw new TaplineError(
      ErrorCode.InvalidArgument,
      `${name} in ${mode.toUpperCase()} mode needs an authenticated session.`,
      {
        hint: 'Authenticate first (authenticateEv2First) and send the command through a SecureChannel.',
      },
    );
  }
  const response = await nativeExchange(target, cmd, concatBytes(header, data), { ...options, name });
  const accepted = (options.expectRc ?? [0x00]).map((rc) => 0x9100 | rc);
  if (!accepted.includes(response.sw)) throw statusWordError(response.sw, name);
  return response;
}

// ---------------------------------------------------------------------------------------------------------------
// Selection

/** ISO SELECT of the NDEF application by DF name: `00 A4 04 0C 07 D2760000850101 00` → `90 00`. */
export async function selectNdefApplication(channel: ApduChannel, options: Ntag4xxCommandOptions = {}): Promise<void> {
  await channel.send(
    { cla: 0x00, ins: 0xa4, p1: 0x04, p2: 0x0c, data: NTAG4XX_NDEF_AID, le: 256 },
    { ...options, name: 'SELECT NDEF application' },
  );
}

/**
 * ISO SELECT FILE by file id inside the selected application: `00 A4 00 0C 02 <id> ` → `90 00` (no FCI asked for).
 * Use {@link NTAG4XX_CC_FILE_ID} or {@link NTAG4XX_NDEF_FILE_ID}.
 */
export async function selectFile(
  channel: ApduChannel,
  fileId: number,
  options: Ntag4xxCommandOptions = {},
): Promise<void> {
  if (!Number.isInteger(fileId) || fileId < 0 || fileId > 0xffff) {
    throw new TaplineError(ErrorCode.InvalidArgument, `A file id has two bytes, not ${fileId}.`);
  }
  await channel.send(
    { cla: 0x00, ins: 0xa4, p1: 0x00, p2: 0x0c, data: Uint8Array.of(fileId >>> 8, fileId & 0xff) },
    { ...options, name: `SELECT FILE ${fileId.toString(16).padStart(4, '0').toUpperCase()}` },
  );
}

// ---------------------------------------------------------------------------------------------------------------
// GetVersion

/** One 7-byte GetVersion info block (hardware or software). */
export interface Ntag4xxVersionInfo {
  /** Vendor id: 0x04 for NXP. */
  readonly vendorId: number;
  /** Product type: 0x04 for NTAG. */
  readonly type: number;
  readonly subtype: number;
  readonly majorVersion: number;
  readonly minorVersion: number;
  /** Storage size code: 2^(n/2) bytes, or between that and twice that when bit 0 is set. */
  readonly storageSize: number;
  /** Lower bound of the storage size in bytes, from {@link Ntag4xxVersionInfo.storageSize}. */
  readonly storageBytes: number;
  /** Protocol: 0x05 for ISO/IEC 14443-2 and -3. */
  readonly protocol: number;
  /** The 7 bytes as received. */
  readonly raw: Uint8Array;
}

/** The 14-byte production block of GetVersion (15 with a FabKeyID). */
export interface Ntag4xxProductionInfo {
  /** The 7-byte UID. */
  readonly uid: Uint8Array;
  /** Production batch number: the first 4 bytes. */
  readonly batchNo: Uint8Array;
  /** The 4 batch-number bits that follow them (high nibble of byte 11). */
  readonly batchNoBits: number;
  /** FabKey, 5 bits: the low nibble of byte 11 and bit 7 of byte 12. */
  readonly fabKey: number;
  /** Calendar week of production, decoded from BCD; `undefined` when the byte is not BCD. */
  readonly week: number | undefined;
  /** Year of production (2000 + BCD byte); `undefined` when the byte is not BCD. */
  readonly year: number | undefined;
  /** FabKeyID, present only in a 15-byte block. */
  readonly fabKeyId: number | undefined;
  /** The bytes as received. */
  readonly raw: Uint8Array;
}

/** The chip model GetVersion identifies. */
export type Ntag4xxModel = 'ntag424dna' | 'ntag413dna' | 'unknown';

/** The whole GetVersion answer. */
export interface Ntag4xxVersion {
  readonly hardware: Ntag4xxVersionInfo;
  readonly software: Ntag4xxVersionInfo;
  readonly production: Ntag4xxProductionInfo;
  /** The model; `unknown` chips still carry all the raw data. */
  readonly model: Ntag4xxModel;
  /** The three frames' data joined (7 + 7 + 14 or 15 bytes). */
  readonly raw: Uint8Array;
}

const VERSION_INFO_LENGTH = 7;
const PRODUCTION_LENGTH = 14;

/** Parses a 7-byte GetVersion info block; any other length fails with `PROTOCOL_ERROR`. */
export function parseVersionInfo(bytes: Uint8Array): Ntag4xxVersionInfo {
  if (bytes.length !== VERSION_INFO_LENGTH) {
    throw protocolError(`A GetVersion info block has 7 bytes, not ${bytes.length}.`);
  }
  const [vendorId, type, subtype, majorVersion, minorVersion, storageSize, protocol] = bytes as unknown as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  return {
    vendorId,
    type,
    subtype,
    majorVersion,
    minorVersion,
    storageSize,
    storageBytes: 2 ** (storageSize >>> 1),
    protocol,
    raw: Uint8Array.from(bytes),
  };
}

function fromBcd(byte: number): number | undefined {
  const hi = byte >>> 4;
  const lo = byte & 0x0f;
  return hi > 9 || lo > 9 ? undefined : hi * 10 + lo;
}

/**
 * Parses the GetVersion production block: UID (7), batch number (4), batch bits ‖ FabKey (1), FabKey bit ‖ week
 * (1), year (1), and an optional FabKeyID. Other lengths fail with `PROTOCOL_ERROR`.
 */
export function parseProductionInfo(bytes: Uint8Array): Ntag4xxProductionInfo {
  if (bytes.length !== PRODUCTION_LENGTH && bytes.length !== PRODUCTION_LENGTH + 1) {
    throw protocolError(`The GetVersion production block has 14 or 15 bytes, not ${bytes.length}.`);
  }
  const b11 = bytes[11]!;
  const b12 = bytes[12]!;
  const week = fromBcd(b12 & 0x7f);
  const year = fromBcd(bytes[13]!);
  return {
    uid: bytes.slice(0, 7),
    batchNo: bytes.slice(7, 11),
    batchNoBits: b11 >>> 4,
    fabKey: ((b11 & 0x0f) << 1) | (b12 >>> 7),
    week: week !== undefined && week >= 1 && week <= 53 ? week : undefined,
    year: year === undefined ? undefined : 2000 + year,
    fabKeyId: bytes.length > PRODUCTION_LENGTH ? bytes[PRODUCTION_LENGTH] : undefined,
    raw: Uint8Array.from(bytes),
  };
}

/**
 * The model from the hardware block, by the proxmark3 rule: NXP, major 0x10 minor 0x00 is NTAG 413 DNA; NXP type
 * 0x04 major 0x30 minor 0x00 is NTAG 424 DNA. Anything else is `unknown`. NTAG 424 DNA TagTamper is not told apart:
 * no source in the research notes gives its version bytes.
 */
export function identifyNtag4xxModel(hardware: Ntag4xxVersionInfo): Ntag4xxModel {
  if (hardware.vendorId !== 0x04 || hardware.minorVersion !== 0x00) return 'unknown';
  if (hardware.majorVersion === 0x10) return 'ntag413dna';
  if (hardware.type === 0x04 && hardware.majorVersion === 0x30) return 'ntag424dna';
  return 'unknown';
}

/** Parses the three GetVersion frames' data into an {@link Ntag4xxVersion}. */
export function parseNtag4xxVersion(hw: Uint8Array, sw: Uint8Array, production: Uint8Array): Ntag4xxVersion {
  const hardware = parseVersionInfo(hw);
  return {
    hardware,
    software: parseVersionInfo(sw),
    production: parseProductionInfo(production),
    model: identifyNtag4xxModel(hardware),
    raw: concatBytes(hw, sw, production),
  };
}

function expectFrame(response: ResponseApdu, sw: StatusWord, name: string): Uint8Array {
  if (response.sw !== sw) {
    if (response.sw === SW_NXP_OK || response.sw === SW_NXP_ADDITIONAL_FRAME) {
      throw protocolError(`${name} ended with ${formatStatusWord(response.sw).toUpperCase()} at the wrong frame.`, {
        sw: formatStatusWord(response.sw),
      });
    }
    throw statusWordError(response.sw, name);
  }
  return response.data;
}

/**
 * GetVersion in three frames, unauthenticated: `90 60 00 00 00` → HW info `91 AF`, `90 AF 00 00 00` → SW info
 * `91 AF`, `90 AF 00 00 00` → production block `91 00`.
 */
export async function getVersion(channel: ApduChannel, options: Ntag4xxCommandOptions = {}): Promise<Ntag4xxVersion> {
  const frame = async (ins: number, sw: StatusWord, part: number): Promise<Uint8Array> => {
    const name = `GetVersion (part ${part})`;
    return expectFrame(await channel.transmit(nativeApdu(ins), { ...options, name }), sw, name);
  };
  // Each block is checked as it arrives, so a malformed first frame stops the dialogue there.
  const hardware = parseVersionInfo(await frame(Ntag4xxCommand.GetVersion, SW_NXP_ADDITIONAL_FRAME, 1));
  const software = parseVersionInfo(await frame(NTAG4XX_ADDITIONAL_FRAME, SW_NXP_ADDITIONAL_FRAME, 2));
  const production = parseProductionInfo(await frame(NTAG4XX_ADDITIONAL_FRAME, SW_NXP_OK, 3));
  return {
    hardware,
    software,
    production,
    model: identifyNtag4xxModel(hardware),
    raw: concatBytes(hardware.raw, software.raw, production.raw),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Read_Sig, GetCardUID

/**
 * Read_Sig (`90 3C 00 00 01 00 00`): the 56-byte originality signature. Real chips answer `91 90`, the datasheet
 * says `91 00`; both are accepted. Over a {@link SecureChannel} the answer comes in FULL mode.
 */
export async function readSignature(target: Ntag4xxTarget, options: Ntag4xxCommandOptions = {}): Promise<Uint8Array> {
  const name = 'Read_Sig';
  const mode: CommMode = target instanceof SecureChannel ? 'full' : 'plain';
  const response = await runNative(target, Ntag4xxCommand.ReadSig, Uint8Array.of(0x00), new Uint8Array(), mode, name, {
    ...options,
    expectRc: [0x00, SW_SIGNATURE & 0xff],
  });
  if (response.data.length !== NTAG4XX_SIGNATURE_LENGTH) {
    throw protocolError(`The answer to ${name} has ${response.data.length} bytes instead of 56.`);
  }
  return response.data;
}

/** GetCardUID (`90 51`, FULL mode, needs authentication): the 7-byte UID, even when random ID is on. */
export async function getCardUid(secure: SecureChannel, options: Ntag4xxCommandOptions = {}): Promise<Uint8Array> {
  const uid = await secure.send(Ntag4xxCommand.GetCardUid, new Uint8Array(), new Uint8Array(), 'full', {
    ...options,
    name: 'GetCardUID',
  });
  if (uid.length !== NTAG4XX_UID_LENGTH) {
    throw protocolError(`The answer to GetCardUID has ${uid.length} bytes instead of 7.`);
  }
  return uid;
}

// ---------------------------------------------------------------------------------------------------------------
// File settings

/** Access condition nibbles of a file: 0–4 key number, 0xE free, 0xF never. */
export interface Ntag4xxAccessRights {
  readonly read: number;
  readonly write: number;
  readonly readWrite: number;
  readonly change: number;
}

/** GetFileSettings, parsed as far as every file has it; the SDM part is kept raw. */
export interface Ntag4xxFileSettings {
  /** File type: 0x00 for a standard data file. */
  readonly fileType: number;
  /** The FileOption byte. */
  readonly fileOption: number;
  /** Communication mode of the file (bits 1–0 of FileOption; 2 is unused and reported as `plain`). */
  readonly commMode: CommMode;
  /** True when Secure Dynamic Messaging is on (bit 6 of FileOption). */
  readonly sdmEnabled: boolean;
  readonly accessRights: Ntag4xxAccessRights;
  /** File size in bytes. */
  readonly fileSize: number;
  /** The SDM options, access rights and offsets, as received. */
  readonly sdm: Uint8Array;
  /** The whole answer. */
  readonly raw: Uint8Array;
}

/** Parses a GetFileSettings answer: at least FileType, FileOption, AccessRights (2) and FileSize (3, LE). */
export function parseFileSettings(bytes: Uint8Array): Ntag4xxFileSettings {
  if (bytes.length < 7) throw protocolError(`File settings have at least 7 bytes, not ${bytes.length}.`);
  const fileOption = bytes[1]!;
  const modeBits = fileOption & 0x03;
  const sdmEnabled = (fileOption & 0x40) !== 0;
  if (!sdmEnabled && bytes.length !== 7) {
    throw protocolError(`File settings without SDM have 7 bytes, not ${bytes.length}.`);
  }
  if (sdmEnabled && bytes.length < 10) {
    throw protocolError(`File settings with SDM have at least 10 bytes, not ${bytes.length}.`);
  }
  return {
    fileType: bytes[0]!,
    fileOption,
    commMode: modeBits === 0x03 ? 'full' : modeBits === 0x01 ? 'mac' : 'plain',
    sdmEnabled,
    accessRights: {
      readWrite: bytes[2]! >>> 4,
      change: bytes[2]! & 0x0f,
      read: bytes[3]! >>> 4,
      write: bytes[3]! & 0x0f,
    },
    fileSize: bytes[4]! | (bytes[5]! << 8) | (bytes[6]! << 16),
    sdm: bytes.slice(7),
    raw: Uint8Array.from(bytes),
  };
}

/**
 * GetFileSettings (`90 F5`, header FileNo): in plain over an unauthenticated channel, in MAC mode over a secure
 * channel.
 */
export async function getFileSettings(
  target: Ntag4xxTarget,
  fileNo: number,
  options: Ntag4xxCommandOptions = {},
): Promise<Ntag4xxFileSettings> {
  checkFileNo(fileNo);
  const mode: CommMode = target instanceof SecureChannel ? 'mac' : 'plain';
  const response = await runNative(
    target,
    Ntag4xxCommand.GetFileSettings,
    Uint8Array.of(fileNo),
    new Uint8Array(),
    mode,
    'GetFileSettings',
    options,
  );
  return parseFileSettings(response.data);
}

/**
 * ChangeFileSettings (`90 5F`, header FileNo, FULL mode): `settings` is FileOption ‖ AccessRights ‖ SDM part, as
 * the datasheet lays it out.
 */
export async function changeFileSettings(
  secure: SecureChannel,
  fileNo: number,
  settings: Uint8Array,
  options: Ntag4xxCommandOptions = {},
): Promise<void> {
  checkFileNo(fileNo);
  if (settings.length < 3) {
    throw new TaplineError(ErrorCode.InvalidArgument, `File settings have at least 3 bytes, not ${settings.length}.`);
  }
  const answer = await secure.send(Ntag4xxCommand.ChangeFileSettings, Uint8Array.of(fileNo), settings, 'full', {
    ...options,
    name: 'ChangeFileSettings',
  });
  if (answer.length !== 0) throw protocolError(`ChangeFileSettings answered ${answer.length} unexpected bytes.`);
}

// ---------------------------------------------------------------------------------------------------------------
// ReadData, WriteData

/** Parameters of {@link readData}. */
export interface ReadDataRequest extends Ntag4xxCommandOptions {
  readonly fileNo: number;
  /** Byte offset in the file. Default 0. */
  readonly offset?: number;
  /** Bytes to read; 0 (the default) reads to the end of the file. */
  readonly length?: number;
  /** Communication mode; it must match the file's. Default `plain`. */
  readonly mode?: CommMode;
}

/**
 * ReadData (`90 AD`, header FileNo ‖ Offset (3 LE) ‖ Length (3 LE)) in plain, MAC or FULL mode. MAC and FULL need a
 * {@link SecureChannel}. A non-zero `length` must come back exactly, or the read fails with `PROTOCOL_ERROR`.
 */
export async function readData(target: Ntag4xxTarget, request: ReadDataRequest): Promise<Uint8Array> {
  const { fileNo, offset = 0, length = 0, mode = 'plain', ...options } = request;
  checkFileNo(fileNo);
  const header = concatBytes(Uint8Array.of(fileNo), le3(offset, 'The offset'), le3(length, 'The length'));
  const response = await runNative(
    target,
    Ntag4xxCommand.ReadData,
    header,
    new Uint8Array(),
    mode,
    'ReadData',
    options,
  );
  if (length !== 0 && response.data.length !== length) {
    throw protocolError(`ReadData returned ${response.data.length} bytes instead of the ${length} asked for.`);
  }
  return response.data;
}

/** Parameters of {@link writeData}. */
export interface WriteDataRequest extends Ntag4xxCommandOptions {
  readonly fileNo: number;
  /** Byte offset in the file. Default 0. */
  readonly offset?: number;
  readonly data: Uint8Array;
  /** Communication mode; it must match the file's. Default `plain`. */
  readonly mode?: CommMode;
}

/** WriteData (`90 8D`, header FileNo ‖ Offset (3 LE) ‖ Length (3 LE), then the data) in plain, MAC or FULL mode. */
export async function writeData(target: Ntag4xxTarget, request: WriteDataRequest): Promise<void> {
  const { fileNo, offset = 0, data, mode = 'plain', ...options } = request;
  checkFileNo(fileNo);
  if (data.length === 0) throw new TaplineError(ErrorCode.InvalidArgument, 'WriteData needs at least one byte.');
  const header = concatBytes(Uint8Array.of(fileNo), le3(offset, 'The offset'), le3(data.length, 'The length'));
  const response = await runNative(target, Ntag4xxCommand.WriteData, header, data, mode, 'WriteData', options);
  if (response.data.length !== 0) throw protocolError(`WriteData answered ${response.data.length} unexpected bytes.`);
}
