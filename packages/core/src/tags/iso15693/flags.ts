/**
 * ISO/IEC 15693-3 numbers: request and response flags, command codes, crypto suites and error codes.
 *
 * @packageDocumentation
 */

/**
 * Request flags, the first byte of every request. Bits 5 and 6 mean different things when
 * {@link Iso15693RequestFlag.Inventory} is set, so both readings are listed under their own names.
 */
export const Iso15693RequestFlag = {
  /** The tag answers on two subcarriers (rarely used; readers expect one). */
  TwoSubcarriers: 0x01,
  /** The tag answers at the high data rate (26 kbit/s instead of 6.6 kbit/s). */
  HighDataRate: 0x02,
  /** This is an INVENTORY request; bits 5 and 6 become {@link Iso15693RequestFlag.Afi} and `OneSlot`. */
  Inventory: 0x04,
  /** The protocol format is extended (a longer block number follows); none of the commands here use it. */
  ProtocolExtension: 0x08,
  /** Without `Inventory`: only the tag in the selected state answers. */
  Select: 0x10,
  /** Without `Inventory`: the request carries the UID and only that tag answers. */
  Address: 0x20,
  /** The command's option: block security status for reads, command-specific elsewhere. */
  Option: 0x40,
  /** With `Inventory`: an AFI byte follows and only tags of that family answer (same bit as `Select`). */
  Afi: 0x10,
  /** With `Inventory`: one slot instead of sixteen (same bit as `Address`). */
  OneSlot: 0x20,
} as const;

/**
 * Response flags, the first byte of every reply. Only `Error` exists in ISO 15693-3:2009; the crypto bits came with
 * ISO/IEC 15693-3:2019 for AUTHENTICATE, CHALLENGE and READBUFFER.
 */
export const Iso15693ResponseFlag = {
  /** The reply is an error: one error-code byte follows, see {@link Iso15693ErrorCode}. */
  Error: 0x01,
  /** Crypto replies: the tag's response buffer holds a valid result (READBUFFER after CHALLENGE). */
  ResponseBufferValid: 0x02,
  /** Crypto replies: this is the final reply of the crypto exchange. */
  FinalResponse: 0x04,
  /** The reply uses the extended protocol format; ordinary commands never set it. */
  ProtocolExtension: 0x08,
  /** Crypto replies: the tag needs more time and will send another reply. */
  WaitTimeExtension: 0x40,
} as const;

/** Response flags a crypto reply (AUTHENTICATE) may carry without being an error. */
export const ISO15693_CRYPTO_RESPONSE_FLAGS =
  Iso15693ResponseFlag.ResponseBufferValid |
  Iso15693ResponseFlag.FinalResponse |
  Iso15693ResponseFlag.WaitTimeExtension;

/** Command codes used by Tapline. */
export const Iso15693Command = {
  /** INVENTORY: the tags in the field answer with DSFID and UID. */
  Inventory: 0x01,
  /** READ SINGLE BLOCK. */
  ReadSingleBlock: 0x20,
  /** READ MULTIPLE BLOCKS (the count byte is the number of blocks minus one). */
  ReadMultipleBlocks: 0x23,
  /** GET SYSTEM INFORMATION. */
  GetSystemInformation: 0x2b,
  /** AUTHENTICATE (ISO/IEC 15693-3:2019, crypto suites of ISO/IEC 29167). Carries no manufacturer byte. */
  Authenticate: 0x35,
  /** CHALLENGE: a broadcast AUTHENTICATE whose result is fetched with READBUFFER. Not built here. */
  Challenge: 0x39,
  /** READBUFFER: fetches the result of a CHALLENGE. Not built here. */
  ReadBuffer: 0x3a,
  /** NXP custom READ SIGNATURE: the 32-byte originality signature. */
  NxpReadSignature: 0xbd,
} as const;

/** Information flags of a GET SYSTEM INFORMATION reply: which optional fields follow the UID, in this order. */
export const Iso15693InfoFlag = {
  /** One DSFID byte follows. */
  Dsfid: 0x01,
  /** One AFI byte follows. */
  Afi: 0x02,
  /** Two memory-size bytes follow: number of blocks minus one, then block size in bytes minus one (low 5 bits). */
  MemorySize: 0x04,
  /** One IC reference byte follows. */
  IcReference: 0x08,
} as const;

/** The IC manufacturer code of NXP, which every NXP custom command (0xA0–0xDF) carries after the command code. */
export const NXP_MANUFACTURER_CODE = 0x04;

/** Crypto suite indicators (CSI) of AUTHENTICATE. */
export const Iso15693CryptoSuite = {
  /** AES-128, ISO/IEC 29167-10 (TAM1, TAM2, IAM, MAM). */
  Aes128: 0x00,
} as const;

/** ISO 15693-3 error codes, the byte after a response flags byte with {@link Iso15693ResponseFlag.Error}. */
export const Iso15693ErrorCode = {
  /** The command is not supported (request code not recognised). */
  NotSupported: 0x01,
  /** The command is not recognised, for example a format error. */
  NotRecognised: 0x02,
  /** The command option is not supported. */
  OptionNotSupported: 0x03,
  /** Error with no information given, or the specific error code is not supported. */
  Unknown: 0x0f,
  /** The block does not exist. */
  BlockNotAvailable: 0x10,
  /** The block is already locked and cannot be locked again. */
  BlockAlreadyLocked: 0x11,
  /** The block is locked; its content cannot change. */
  BlockLocked: 0x12,
  /** The block was not programmed successfully. */
  BlockNotProgrammed: 0x13,
  /** The block was not locked successfully. */
  BlockNotLocked: 0x14,
} as const;

const ERROR_NAMES: Readonly<Record<number, string>> = {
  [Iso15693ErrorCode.NotSupported]: 'command not supported',
  [Iso15693ErrorCode.NotRecognised]: 'command not recognised (format error)',
  [Iso15693ErrorCode.OptionNotSupported]: 'option not supported',
  [Iso15693ErrorCode.Unknown]: 'unknown error',
  [Iso15693ErrorCode.BlockNotAvailable]: 'block not available',
  [Iso15693ErrorCode.BlockAlreadyLocked]: 'block already locked',
  [Iso15693ErrorCode.BlockLocked]: 'block locked, content cannot change',
  [Iso15693ErrorCode.BlockNotProgrammed]: 'block not programmed successfully',
  [Iso15693ErrorCode.BlockNotLocked]: 'block not locked successfully',
};

/** What an ISO 15693 error code means, in words; 0xA0–0xDF are manufacturer-specific, the rest RFU. */
export function describeIso15693Error(code: number): string {
  const known = ERROR_NAMES[code];
  if (known !== undefined) return known;
  if (code >= 0xa0 && code <= 0xdf) return 'manufacturer-specific error';
  return 'reserved error code';
}
