/**
 * ISO 15693 UIDs. A UID is 64 bits; text (datasheets, `TagInfo.uid`, VivoKey's API) writes it MSB first
 * (`E0 04 01 18 …`), the air interface sends it LSB first. Every Tapline API takes and returns the text order; only
 * frames carry the air order.
 *
 * @packageDocumentation
 */
import { fromHex, toHex } from '../../util/bytes.js';
import { assertLength, invalidArgument, reversed } from './internal.js';

/** Bytes in an ISO 15693 UID. */
export const ISO15693_UID_LENGTH = 8;

/** The most significant UID byte that ISO 15693 prescribes for every tag. */
export const ISO15693_UID_PREFIX = 0xe0;

/** IC manufacturer codes (ISO/IEC 7816-6) of the vendors whose ISO 15693 tags are common. */
const MANUFACTURERS: Readonly<Record<number, string>> = {
  0x02: 'STMicroelectronics',
  0x04: 'NXP Semiconductors',
  0x05: 'Infineon Technologies',
  0x07: 'Texas Instruments',
  0x16: 'EM Microelectronic-Marin',
};

/** The air-order (LSB first) bytes of a UID given in text order. Fails with `INVALID_ARGUMENT` unless 8 bytes. */
export function iso15693UidToAir(uid: Uint8Array): Uint8Array {
  assertLength('An ISO 15693 UID', uid, ISO15693_UID_LENGTH);
  return reversed(uid);
}

/** The text-order (MSB first) UID from its air-order bytes. Fails with `INVALID_ARGUMENT` unless 8 bytes. */
export function iso15693UidFromAir(air: Uint8Array): Uint8Array {
  assertLength('An ISO 15693 UID', air, ISO15693_UID_LENGTH);
  return reversed(air);
}

/**
 * Parses a UID written MSB first (`E0040118009C870C`, `e0:04:01:18:00:9c:87:0c`). Fails with `INVALID_ARGUMENT`
 * unless it is 8 bytes of hex; a first byte other than E0 is accepted (see {@link inspectIso15693Uid}).
 */
export function parseIso15693Uid(text: string): Uint8Array {
  const uid = fromHex(text);
  if (uid.length !== ISO15693_UID_LENGTH) {
    throw invalidArgument(
      `"${text}" is not an ISO 15693 UID: it has ${uid.length} bytes, not 8.`,
      'Write the UID MSB first as 16 hex digits, for example E0040118009C870C.',
    );
  }
  return uid;
}

/** A UID as 16 upper-case hex digits, MSB first (`E0040118009C870C`). */
export function formatIso15693Uid(uid: Uint8Array): string {
  assertLength('An ISO 15693 UID', uid, ISO15693_UID_LENGTH);
  return toHex(uid).toUpperCase();
}

/** True for 8 bytes starting with E0, the shape ISO 15693 prescribes. */
export function isIso15693Uid(uid: Uint8Array): boolean {
  return uid.length === ISO15693_UID_LENGTH && uid[0] === ISO15693_UID_PREFIX;
}

/** What a UID says about its tag; see {@link inspectIso15693Uid}. */
export interface Iso15693UidInfo {
  /** 8 bytes starting with E0. */
  readonly valid: boolean;
  /** The IC manufacturer code (second byte). */
  readonly manufacturerCode: number;
  /** The manufacturer's name when the code is a common one. */
  readonly manufacturer?: string;
  /** The third byte, which manufacturers use for the IC type (NXP: 0x01 for the ICODE SLI family, ICODE DNA included). */
  readonly icType: number;
  /** Things worth telling a person that do not make the UID unusable. */
  readonly warnings: readonly string[];
}

/**
 * Reads the fixed fields of a UID (text order). Only the length is enforced (`INVALID_ARGUMENT`): emulators,
 * development tags and UID-changeable clones exist with other first bytes and still answer every command, so a
 * missing E0 is reported as a warning.
 */
export function inspectIso15693Uid(uid: Uint8Array): Iso15693UidInfo {
  assertLength('An ISO 15693 UID', uid, ISO15693_UID_LENGTH);
  const manufacturerCode = uid[1]!;
  const manufacturer = MANUFACTURERS[manufacturerCode];
  const warnings: string[] = [];
  if (uid[0] !== ISO15693_UID_PREFIX) {
    warnings.push(
      `The UID starts with ${toHex(uid.subarray(0, 1)).toUpperCase()}, not E0: it may be written in air order (LSB first), or the tag is an emulator or a clone.`,
    );
  }
  return {
    valid: warnings.length === 0,
    manufacturerCode,
    ...(manufacturer === undefined ? {} : { manufacturer }),
    icType: uid[2]!,
    warnings,
  };
}
