/**
 * NTAG 4xx native commands wrapped in ISO 7816-4 APDUs (`90 Cmd 00 00 Lc data 00`), with the NXP "additional
 * frame" (`91 AF`) mechanism in both directions.
 *
 * @packageDocumentation
 */
import { ErrorCode, TaplineError } from '../../model/errors.js';
import type { ExchangeOptions } from '../channel.js';
import { SHORT_MAX_DATA, type CommandApdu } from '../iso7816/apdu.js';
import type { ApduChannel } from '../iso7816/channel.js';
import { SW_NXP_ADDITIONAL_FRAME, SW_NXP_OK, statusWordError, type StatusWord } from '../iso7816/status.js';

/** CLA of wrapped native commands. */
export const NTAG4XX_NATIVE_CLA = 0x90;
/** INS of the "additional frame" continuation. */
export const NTAG4XX_ADDITIONAL_FRAME = 0xaf;

/** NTAG 4xx command codes used by this package. */
export const Ntag4xxCommand = {
  GetVersion: 0x60,
  ReadSig: 0x3c,
  AuthenticateEv2First: 0x71,
  AuthenticateEv2NonFirst: 0x77,
  GetCardUid: 0x51,
  GetFileSettings: 0xf5,
  ChangeFileSettings: 0x5f,
  ReadData: 0xad,
  WriteData: 0x8d,
  AdditionalFrame: 0xaf,
} as const;

/** The wrapped form of native command `cmd` with `data` (Le `00`: the chip decides how much it returns). */
export function nativeApdu(cmd: number, data?: Uint8Array): CommandApdu {
  return data === undefined || data.length === 0
    ? { cla: NTAG4XX_NATIVE_CLA, ins: cmd, p1: 0, p2: 0, le: 256 }
    : { cla: NTAG4XX_NATIVE_CLA, ins: cmd, p1: 0, p2: 0, data, le: 256 };
}

/** Options of {@link nativeExchange}. */
export interface NativeExchangeOptions extends ExchangeOptions {
  /** What the command is, for error messages. */
  readonly name?: string;
  /**
   * Most data bytes per frame; longer command data go out in `91 AF` continuation frames. Default 255, the most a
   * short APDU carries. NTAG 4xx refuses extended-length APDUs with `91 7E`, so chaining is the only way.
   */
  readonly maxFrameData?: number;
  /** Most continuation frames fetched for one answer. Default 16, more than any NTAG 4xx answer needs. */
  readonly maxResponseFrames?: number;
}

/** The final status and the joined data of a native command. */
export interface NativeResponse {
  readonly data: Uint8Array;
  readonly sw: StatusWord;
}

function joinParts(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/**
 * Sends native command `cmd` with `data` and returns the whole answer: long data are split across `91 AF`
 * continuation frames, and an answer that ends in `91 AF` is followed by `90 AF 00 00 00` until it ends in another
 * status. The final status is returned as is; judging it is the caller's business. A non-`91` status in the middle
 * of a chain fails with the typed error from {@link statusWordError}.
 */
export async function nativeExchange(
  channel: ApduChannel,
  cmd: number,
  data: Uint8Array,
  options: NativeExchangeOptions = {},
): Promise<NativeResponse> {
  const name = options.name ?? `native command ${cmd.toString(16).padStart(2, '0').toUpperCase()}`;
  const maxFrame = options.maxFrameData ?? SHORT_MAX_DATA;
  if (!Number.isInteger(maxFrame) || maxFrame < 1 || maxFrame > SHORT_MAX_DATA) {
    throw new TaplineError(ErrorCode.InvalidArgument, `maxFrameData must be 1 to 255, not ${maxFrame}.`);
  }
  const transmitOptions = { ...options, name };
  let response = await channel.transmit(nativeApdu(cmd, data.subarray(0, maxFrame)), transmitOptions);
  for (let offset = maxFrame; offset < data.length; offset += maxFrame) {
    if (response.sw !== SW_NXP_ADDITIONAL_FRAME || response.data.length !== 0) {
      if (response.sw === SW_NXP_ADDITIONAL_FRAME || response.sw === SW_NXP_OK) {
        throw new TaplineError(
          ErrorCode.ProtocolError,
          `The tag answered part of ${name} with ${response.data.length} data bytes and status ${response.sw
            .toString(16)
            .toUpperCase()} instead of asking for the next frame.`,
        );
      }
      throw statusWordError(response.sw, `${name} (frame at byte ${offset})`);
    }
    response = await channel.transmit(
      nativeApdu(NTAG4XX_ADDITIONAL_FRAME, data.subarray(offset, offset + maxFrame)),
      transmitOptions,
    );
  }
  const parts: Uint8Array[] = [response.data];
  const limit = options.maxResponseFrames ?? 16;
  for (let frames = 0; response.sw === SW_NXP_ADDITIONAL_FRAME; frames++) {
    if (frames >= limit) {
      throw new TaplineError(
        ErrorCode.ProtocolError,
        `The tag kept answering 91 AF to ${name} after ${limit} continuation frames.`,
      );
    }
    response = await channel.transmit(nativeApdu(NTAG4XX_ADDITIONAL_FRAME), transmitOptions);
    parts.push(response.data);
  }
  return { data: joinParts(parts), sw: response.sw };
}
