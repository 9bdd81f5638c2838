/**
 * ISO 15693 on the uTrust 3720 F / 3721 F (reference manual v1.00 §6.3.7): a Tapline `iso15693` frame (flags,
 * command, parameters; no CRC) goes out through one of two vendor APDUs, and the tag's reply comes back flags first.
 *
 * - **`FF FC 00 00 Lc <command> <parameters> [00]`** (§6.3.7.1–6.3.7.11). Documented with examples for commands
 *   21, 22, 23, 24, 27–2A, 2B and 2C; 20 (READ SINGLE BLOCK) by its section number only. The APDU carries no request
 *   flags and no UID: the reader adds its own flags, and its answer is the tag's reply without the flags byte
 *   (READ MULTIPLE BLOCKS of 4 blocks answers 16 bytes). Inferred from that: the reader addresses no particular tag
 *   (fine with one tag in the field), the option and select flags cannot be expressed, and the reply flags are lost
 *   (this driver puts `00` in front). Error status words are not documented; `63 00` is read as "failed".
 * - **`FF FD <FWT> <frame type> Lc <raw command> 00`**, Traverse (§6.3.7.12): "send the Raw Card Command … without
 *   any card specific processing … The reader only takes care of protocol specific processing (like CRC …). This
 *   command is intended for sending ISO15693 custom commands." Documented: the APDU, the FWT codes (P1) and the frame
 *   types (P2: 00 short, 01 standard, 02 bit-oriented anticollision). Inferred: the raw command is the whole frame
 *   flags included, the answer is the whole reply flags included, frame type 01 suits ISO 15693 requests, and `63 00`
 *   means the tag stayed silent.
 *
 * Which path a frame takes is {@link IdentivIso15693Path}. The default, `auto`, keeps to what the manual confirms:
 * the documented `FF FC` commands with plain flags go through `FF FC`, everything else (INVENTORY, custom commands
 * such as NXP READ SIGNATURE `BD`, the Spark 1's AUTHENTICATE `35`, frames with the option or select flag) through
 * Traverse, which also keeps the reply flags a TAM1 answer carries. A path the reader refuses (`6A 81`, `6D 00`,
 * `6E 00`) is not tried again and the other one is.
 *
 * @packageDocumentation
 */
import { ErrorCode, Iso15693RequestFlag, TaplineError, hasErrorCode, toSpacedHex } from '@tapline/core';

/** How ISO 15693 frames reach the tag on a uTrust 3720 F / 3721 F. */
export type IdentivIso15693Path = 'auto' | 'vendor' | 'traverse' | 'part3';

/** The commands the manual documents for `FF FC` (§6.3.7.1–6.3.7.11). */
export const IDENTIV_FFFC_COMMANDS: ReadonlySet<number> = new Set([
  0x20, 0x21, 0x22, 0x23, 0x24, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c,
]);

/** Documented without Le in the manual's examples (they return only a status word). */
const NO_LE_COMMANDS: ReadonlySet<number> = new Set([0x21, 0x22, 0x24, 0x27, 0x28, 0x29, 0x2a]);

/** The crypto commands of ISO 15693-3:2019, which need the tag to compute before it answers. */
const CRYPTO_COMMANDS: ReadonlySet<number> = new Set([0x35, 0x39, 0x3a]);

/** Traverse frame types (P2). */
export const IdentivFrameType = { Short: 0x00, Standard: 0x01, BitOriented: 0x02 } as const;

/** Traverse FWT codes (P1) and their waits in microseconds (§6.3.7.12). */
export const IDENTIV_FWT_MICROSECONDS: readonly number[] = Object.freeze([
  500, 1000, 2000, 5000, 10_000, 25_000, 50_000, 75_000, 100_000, 250_000, 500_000, 750_000, 1_000_000, 1_250_000,
  1_500_000, 1_750_000, 2_000_000, 2_500_000, 3_000_000, 4_000_000, 5_000_000,
]);

/** FWT code 06 (50 ms) for ordinary commands, 09 (250 ms) for the crypto ones. */
export function identivFwtCode(command: number): number {
  return CRYPTO_COMMANDS.has(command) ? 0x09 : 0x06;
}

function invalid(message: string): TaplineError {
  return new TaplineError(ErrorCode.InvalidArgument, message);
}

function checkFrame(frame: Uint8Array): void {
  if (frame.length < 2) throw invalid(`An ISO 15693 request has flags and a command, not ${frame.length} bytes.`);
}

/** Whether `FF FC` can carry `frame` as it is: a documented command with no flags the APDU cannot express. */
export function identivVendorCarries(frame: Uint8Array): boolean {
  const flags = frame[0] ?? 0;
  const inventory = (flags & Iso15693RequestFlag.Inventory) !== 0;
  const unexpressible = Iso15693RequestFlag.Option | Iso15693RequestFlag.Select | Iso15693RequestFlag.ProtocolExtension;
  return !inventory && (flags & unexpressible) === 0 && IDENTIV_FFFC_COMMANDS.has(frame[1] ?? -1);
}

/**
 * `FF FC 00 00 Lc <command> [manufacturer code] <parameters> [00]` for `frame`: the flags byte dropped, and the UID of
 * an addressed request (after the manufacturer code of a custom command 0xA0–0xDF). Any command is accepted here;
 * {@link identivVendorCarries} says which ones the manual documents. Fails with `INVALID_ARGUMENT` for a frame the APDU
 * cannot express (the option or select flag).
 */
export function identivVendorCommand(frame: Uint8Array): Uint8Array {
  checkFrame(frame);
  const flags = frame[0]!;
  const command = frame[1]!;
  if (
    (flags & Iso15693RequestFlag.Inventory) === 0 &&
    (flags & (Iso15693RequestFlag.Option | Iso15693RequestFlag.Select)) !== 0
  ) {
    throw invalid(
      `FF FC cannot carry the option or select flag (flags ${toSpacedHex(frame.subarray(0, 1))}); use Traverse (FF FD).`,
    );
  }
  const body: number[] = [command];
  let at = 2;
  if (command >= 0xa0 && command <= 0xdf) body.push(frame[at++] ?? -1);
  if (body.includes(-1)) throw invalid('A custom ISO 15693 command needs its manufacturer code.');
  const addressed = (flags & Iso15693RequestFlag.Inventory) === 0 && (flags & Iso15693RequestFlag.Address) !== 0;
  if (addressed) {
    if (frame.length < at + 8) throw invalid('An addressed ISO 15693 request needs its 8-byte UID.');
    at += 8;
  }
  body.push(...frame.subarray(at));
  if (body.length > 0xff) throw invalid(`FF FC carries at most 255 bytes, not ${body.length}.`);
  const le = NO_LE_COMMANDS.has(command) ? [] : [0x00];
  return Uint8Array.of(0xff, 0xfc, 0x00, 0x00, body.length, ...body, ...le);
}

/** `FF FD <FWT> 01 Lc <frame> 00`: Traverse with the standard frame type. */
export function identivTraverseCommand(frame: Uint8Array, fwtCode = identivFwtCode(frame[1] ?? 0)): Uint8Array {
  checkFrame(frame);
  if (!Number.isInteger(fwtCode) || fwtCode < 0 || fwtCode >= IDENTIV_FWT_MICROSECONDS.length) {
    throw invalid(`No Traverse FWT code ${String(fwtCode)}.`);
  }
  if (frame.length > 0xff) throw invalid(`Traverse carries at most 255 bytes, not ${frame.length}.`);
  return Uint8Array.of(0xff, 0xfd, fwtCode, IdentivFrameType.Standard, frame.length, ...frame, 0x00);
}

/** Status words with which a reader says it has no such APDU at all. */
const NO_SUCH_APDU: ReadonlySet<number> = new Set([0x6a81, 0x6d00, 0x6e00, 0x6800]);

function statusOf(answer: Uint8Array): number {
  return answer.length >= 2 ? (answer[answer.length - 2]! << 8) | answer[answer.length - 1]! : -1;
}

function pathError(path: 'FF FC' | 'FF FD', answer: Uint8Array, readerName: string): TaplineError {
  const sw = statusOf(answer);
  const hex = toSpacedHex(answer.subarray(-2));
  const details = { reader: readerName, path, sw: hex };
  if (NO_SUCH_APDU.has(sw)) {
    return new TaplineError(
      ErrorCode.UnsupportedCapability,
      `${readerName} refuses ISO 15693 through ${path} (${hex}).`,
      {
        details,
      },
    );
  }
  if (sw === 0x6300 && path === 'FF FD') {
    return new TaplineError(ErrorCode.Timeout, `The ISO 15693 tag on ${readerName} did not answer (${hex}).`, {
      details,
      hint: 'Hold the tag flat and still on the reader, then try again.',
    });
  }
  return new TaplineError(
    ErrorCode.ProtocolError,
    sw === 0x6300
      ? `${readerName} reports that the ISO 15693 command failed (${hex}): the tag answered with an error, or not at all.`
      : `${readerName} answered ISO 15693 through ${path} with ${answer.length < 2 ? `${answer.length} bytes` : hex}.`,
    { details, ...(sw === 0x6300 ? { hint: 'Hold the tag flat and still on the reader, then try again.' } : {}) },
  );
}

/** The reply of an `FF FC` exchange, flags first: `00` (the reader drops the tag's flags) and the data. */
export function parseIdentivVendorResponse(answer: Uint8Array, readerName = 'The reader'): Uint8Array {
  if (statusOf(answer) !== 0x9000) throw pathError('FF FC', answer, readerName);
  return Uint8Array.of(0x00, ...answer.subarray(0, -2));
}

/** The reply of a Traverse exchange: the tag's whole reply, flags first. */
export function parseIdentivTraverseResponse(answer: Uint8Array, readerName = 'The reader'): Uint8Array {
  if (statusOf(answer) !== 0x9000 || answer.length < 3) throw pathError('FF FD', answer, readerName);
  return answer.slice(0, -2);
}

/** Sends one APDU and returns the reader's answer. */
export type IdentivTransmit = (apdu: Uint8Array) => Promise<Uint8Array>;

/**
 * Carries `iso15693` frames for one reader over the vendor APDUs, choosing the path per frame (see the module notes)
 * and remembering a path the reader refused. The `part3` path is not handled here.
 */
export class IdentivIso15693 {
  readonly #path: Exclude<IdentivIso15693Path, 'part3'>;
  readonly #readerName: string;
  #vendorRefused = false;
  #traverseRefused = false;

  constructor(path: Exclude<IdentivIso15693Path, 'part3'>, readerName: string) {
    this.#path = path;
    this.#readerName = readerName;
  }

  /** Sends `frame` through `transmit` and returns the reply (flags first, no CRC). */
  async exchange(frame: Uint8Array, transmit: IdentivTransmit): Promise<Uint8Array> {
    checkFrame(frame);
    const vendor = async (): Promise<Uint8Array> =>
      parseIdentivVendorResponse(await transmit(identivVendorCommand(frame)), this.#readerName);
    const traverse = async (): Promise<Uint8Array> =>
      parseIdentivTraverseResponse(await transmit(identivTraverseCommand(frame)), this.#readerName);
    if (this.#path === 'vendor') return vendor();
    if (this.#path === 'traverse') return traverse();
    const documented = identivVendorCarries(frame);
    const first = documented && !this.#vendorRefused ? 'vendor' : 'traverse';
    if (first === 'traverse' && this.#traverseRefused) {
      if (!identivVendorCommandPossible(frame)) throw this.#noPath(frame);
      return vendor();
    }
    try {
      return await (first === 'vendor' ? vendor() : traverse());
    } catch (error) {
      if (!hasErrorCode(error, ErrorCode.UnsupportedCapability)) throw error;
      if (first === 'vendor') this.#vendorRefused = true;
      else this.#traverseRefused = true;
      if (first === 'vendor' && !this.#traverseRefused) return traverse();
      if (first === 'traverse' && identivVendorCommandPossible(frame)) return vendor();
      throw error;
    }
  }

  #noPath(frame: Uint8Array): TaplineError {
    return new TaplineError(
      ErrorCode.UnsupportedCapability,
      `${this.#readerName} refuses Traverse (FF FD), and FF FC cannot carry this ISO 15693 frame (flags ${toSpacedHex(frame.subarray(0, 1))}).`,
      { details: { reader: this.#readerName } },
    );
  }
}

function identivVendorCommandPossible(frame: Uint8Array): boolean {
  try {
    identivVendorCommand(frame);
    return true;
  } catch {
    return false;
  }
}
