/**
 * AuthenticateEV2First (NT4H2421Gx §9.1.5, AN12196 §6.6): with a local key, and split between a relaying reader
 * and a remote party that holds the key (how the VivoKey platform authenticates a Spark 2).
 *
 * @packageDocumentation
 */
import { randomBytes } from 'node:crypto';
import { AesKey, constantTimeEqual, rotateLeft, rotateRight } from '../../crypto/aes.js';
import { ErrorCode, TaplineError } from '../../model/errors.js';
import type { ExchangeOptions } from '../channel.js';
import { encodeResponseApdu, type ResponseApdu } from '../iso7816/apdu.js';
import type { ApduChannel } from '../iso7816/channel.js';
import {
  SW_NXP_ADDITIONAL_FRAME,
  SW_NXP_OK,
  formatStatusWord,
  statusWordError,
  type StatusWord,
} from '../iso7816/status.js';
import { concatBytes } from '../../util/bytes.js';
import { NTAG4XX_ADDITIONAL_FRAME, Ntag4xxCommand, nativeApdu } from './native.js';
import { EV2_RND_LENGTH, EV2_TI_LENGTH, Ev2Session, deriveEv2SessionKeys } from './session.js';

/** Length of E(K, RndB), the chip's first answer. */
export const EV2_CHALLENGE_LENGTH = 16;
/** Length of E(K, RndA ‖ RndB′) and of the chip's encrypted second answer. */
export const EV2_ANSWER_LENGTH = 32;
/** Length of PDcap2 and PCDcap2. */
export const EV2_CAP_LENGTH = 6;

const LENGTH_ERROR = 0x917e;
const PART1 = 'AuthenticateEV2First (part 1)';
const PART2 = 'AuthenticateEV2First (part 2)';

/** Options of {@link authenticateEv2First}. */
export interface AuthenticateEv2FirstOptions extends ExchangeOptions {
  /** Key number on the chip (0–4 on NTAG 424 DNA). */
  readonly keyNo: number;
  /** The 16-byte AES key. Never logged. */
  readonly key: Uint8Array;
  /** RndA to use instead of a fresh random one: for test vectors only. */
  readonly rndA?: Uint8Array;
  /**
   * PCDcap2, 0 to 6 bytes, sent with LenCap. Default none (LenCap 0), as NXP's own examples do. Bit 1 of the first
   * byte asks for LRP secure messaging, which this package does not implement, so it is refused.
   */
  readonly pcdCap2?: Uint8Array;
}

/** Options of the split-authentication halves. */
export type SplitAuthenticationOptions = ExchangeOptions;

/** What the chip answered to the second half of a split authentication. */
export interface SplitAuthenticationAnswer {
  /** E(K, TI ‖ RndA′ ‖ PDcap2 ‖ PCDcap2), 32 bytes. */
  readonly answer: Uint8Array;
  /** The status word, `91 00`. */
  readonly sw: StatusWord;
  /**
   * The chip's reply exactly as received: the 32 bytes followed by `91 00`, 34 bytes. This is what the VivoKey
   * platform's `/session` takes as `response` (hex).
   */
  readonly response: Uint8Array;
}

/** The PCD's answer to the chip's challenge. */
export interface PcdChallengeAnswer {
  /** E(K, RndA ‖ RndB′), to send in part 2. */
  readonly response32: Uint8Array;
  /** The chip's challenge, decrypted. */
  readonly rndB: Uint8Array;
}

function checkKeyNo(keyNo: number): void {
  if (!Number.isInteger(keyNo) || keyNo < 0 || keyNo > 0xff) {
    throw new TaplineError(ErrorCode.InvalidArgument, `The key number must be a byte, not ${keyNo}.`);
  }
}

function checkArgLength(bytes: Uint8Array, length: number, what: string): void {
  if (bytes.length !== length) {
    throw new TaplineError(ErrorCode.InvalidArgument, `${what} has ${length} bytes, not ${bytes.length}.`);
  }
}

/** The typed error for a refused authentication step, with the NTAG 4xx reading of `91 7E`. */
function authStatusError(sw: StatusWord, step: string): TaplineError {
  if (sw === LENGTH_ERROR) {
    const base = statusWordError(sw, step);
    return new TaplineError(ErrorCode.TagStatus, base.message, {
      details: base.details,
      hint: 'The chip saw a wrong length. This usually means the command went out as an extended-length APDU; send it as a short APDU (turn off extended length for this reader).',
    });
  }
  return statusWordError(sw, step);
}

function expectAnswer(response: ResponseApdu, sw: StatusWord, length: number, step: string): Uint8Array {
  if (response.sw !== sw) throw authStatusError(response.sw, step);
  if (response.data.length !== length) {
    throw new TaplineError(
      ErrorCode.ProtocolError,
      `The answer to ${step} has ${response.data.length} bytes instead of ${length}.`,
      {
        details: { sw: formatStatusWord(response.sw) },
        ...(step === PART1 && response.data.length === EV2_CHALLENGE_LENGTH + 1
          ? { hint: 'The chip may be configured for LRP secure messaging, which Tapline does not support.' }
          : {}),
      },
    );
  }
  return response.data;
}

async function sendPart1(
  channel: ApduChannel,
  keyNo: number,
  pcdCap2: Uint8Array | undefined,
  options: ExchangeOptions,
): Promise<Uint8Array> {
  checkKeyNo(keyNo);
  const cap = pcdCap2 ?? new Uint8Array();
  const data = concatBytes(Uint8Array.of(keyNo, cap.length), cap);
  const response = await channel.transmit(nativeApdu(Ntag4xxCommand.AuthenticateEv2First, data), {
    ...options,
    name: PART1,
  });
  return expectAnswer(response, SW_NXP_ADDITIONAL_FRAME, EV2_CHALLENGE_LENGTH, PART1);
}

async function sendPart2(
  channel: ApduChannel,
  pcdResponse: Uint8Array,
  options: ExchangeOptions,
): Promise<ResponseApdu & { readonly answer: Uint8Array }> {
  const response = await channel.transmit(nativeApdu(NTAG4XX_ADDITIONAL_FRAME, pcdResponse), {
    ...options,
    name: PART2,
  });
  return { ...response, answer: expectAnswer(response, SW_NXP_OK, EV2_ANSWER_LENGTH, PART2) };
}

/**
 * The PCD's half of the challenge: decrypts RndB from `encRndB` (E(K, RndB), AES-CBC with a zero IV) and returns
 * E(K, RndA ‖ RndB′) for part 2. `encRndB` of another length fails with `PROTOCOL_ERROR`; a key or RndA of the wrong
 * length with `INVALID_ARGUMENT`.
 */
export function pcdAnswerChallenge(key: Uint8Array, encRndB: Uint8Array, rndA: Uint8Array): PcdChallengeAnswer {
  checkArgLength(key, 16, 'The key');
  checkArgLength(rndA, EV2_RND_LENGTH, 'RndA');
  if (encRndB.length !== EV2_CHALLENGE_LENGTH) {
    throw new TaplineError(
      ErrorCode.ProtocolError,
      `The encrypted challenge has ${encRndB.length} bytes instead of ${EV2_CHALLENGE_LENGTH}.`,
    );
  }
  const k = new AesKey(key);
  const rndB = k.decryptCbc(encRndB);
  return { response32: k.encryptCbc(concatBytes(rndA, rotateLeft(rndB))), rndB };
}

/**
 * The PCD's check of the chip's final answer: decrypts E(K, TI ‖ RndA′ ‖ PDcap2 ‖ PCDcap2), checks in constant time
 * that RndA′ is RndA rotated left by one byte, and derives the session. A mismatch fails with
 * `AUTHENTICATION_FAILED` (the chip does not hold the key, or the answer is not for this RndA); an answer of another
 * length with `PROTOCOL_ERROR`.
 */
export function verifyPiccAnswer(
  key: Uint8Array,
  rndA: Uint8Array,
  rndB: Uint8Array,
  answer32: Uint8Array,
  keyNo = 0,
): Ev2Session {
  checkArgLength(key, 16, 'The key');
  checkArgLength(rndA, EV2_RND_LENGTH, 'RndA');
  checkArgLength(rndB, EV2_RND_LENGTH, 'RndB');
  checkKeyNo(keyNo);
  if (answer32.length !== EV2_ANSWER_LENGTH) {
    throw new TaplineError(
      ErrorCode.ProtocolError,
      `The chip's authentication answer has ${answer32.length} bytes instead of ${EV2_ANSWER_LENGTH}.`,
    );
  }
  const plain = new AesKey(key).decryptCbc(answer32);
  const ti = plain.slice(0, EV2_TI_LENGTH);
  const rndAPrime = plain.subarray(EV2_TI_LENGTH, EV2_TI_LENGTH + EV2_RND_LENGTH);
  if (!constantTimeEqual(rotateRight(rndAPrime), rndA)) {
    throw new TaplineError(ErrorCode.AuthenticationFailed, 'The chip did not prove that it holds the key.', {
      hint: 'The key does not match the one on the chip, or the answer belongs to another authentication.',
    });
  }
  const capStart = EV2_TI_LENGTH + EV2_RND_LENGTH;
  return new Ev2Session({
    keyNo,
    ti,
    keys: deriveEv2SessionKeys(key, rndA, rndB),
    pdCap2: plain.slice(capStart, capStart + EV2_CAP_LENGTH),
    pcdCap2: plain.slice(capStart + EV2_CAP_LENGTH, capStart + 2 * EV2_CAP_LENGTH),
  });
}

/**
 * AuthenticateEV2First with a key held here: `90 71 00 00 <2+n> KeyNo LenCap PCDcap2 00` → E(K, RndB) `91 AF`, then
 * `90 AF 00 00 20 E(K, RndA ‖ RndB′) 00` → E(K, TI ‖ RndA′ ‖ PDcap2 ‖ PCDcap2) `91 00`. Returns the session with
 * CmdCtr 0. `91 AE` and a wrong RndA′ fail with `AUTHENTICATION_FAILED`; `91 7E` with `TAG_STATUS` (hinting at an
 * extended-length APDU); answers of the wrong length with `PROTOCOL_ERROR`.
 */
export async function authenticateEv2First(
  channel: ApduChannel,
  options: AuthenticateEv2FirstOptions,
): Promise<Ev2Session> {
  const { keyNo, key, pcdCap2 } = options;
  checkKeyNo(keyNo);
  checkArgLength(key, 16, 'The key');
  if (pcdCap2 !== undefined) {
    if (pcdCap2.length > EV2_CAP_LENGTH) {
      throw new TaplineError(ErrorCode.InvalidArgument, `PCDcap2 has at most 6 bytes, not ${pcdCap2.length}.`);
    }
    if (((pcdCap2[0] ?? 0) & 0x02) !== 0) {
      throw new TaplineError(
        ErrorCode.InvalidArgument,
        'PCDcap2 asks for LRP secure messaging, which is not supported.',
      );
    }
  }
  const rndA = options.rndA === undefined ? new Uint8Array(randomBytes(EV2_RND_LENGTH)) : options.rndA;
  checkArgLength(rndA, EV2_RND_LENGTH, 'RndA');
  const exchange: ExchangeOptions = { timeoutMs: options.timeoutMs, signal: options.signal };
  const encRndB = await sendPart1(channel, keyNo, pcdCap2, exchange);
  const { response32, rndB } = pcdAnswerChallenge(key, encRndB, rndA);
  const { answer } = await sendPart2(channel, response32, exchange);
  return verifyPiccAnswer(key, rndA, rndB, answer, keyNo);
}

/**
 * First half of a split AuthenticateEV2First, where this reader only relays and a remote party (the VivoKey platform
 * uses key number 2) plays the PCD: sends `90 71 00 00 02 KeyNo 00 00` and returns E(K, RndB), the 16 bytes the
 * chip answered with `91 AF`. That is the `message` of the platform's `/challenge`.
 */
export async function beginSplitAuthentication(
  channel: ApduChannel,
  keyNo: number,
  options: SplitAuthenticationOptions = {},
): Promise<Uint8Array> {
  return sendPart1(channel, keyNo, undefined, options);
}

/**
 * Second half of a split authentication: relays the remote party's 32-byte E(K, RndA ‖ RndB′) untouched as
 * `90 AF 00 00 20 … 00` and returns the chip's reply untouched (32 bytes + `91 00`). A `pcdResponse` of another
 * length fails with `INVALID_ARGUMENT` before anything is sent; `91 AE` with `AUTHENTICATION_FAILED`; `91 7E` with
 * `TAG_STATUS`; a reply of the wrong length with `PROTOCOL_ERROR`.
 */
export async function finishSplitAuthentication(
  channel: ApduChannel,
  pcdResponse: Uint8Array,
  options: SplitAuthenticationOptions = {},
): Promise<SplitAuthenticationAnswer> {
  checkArgLength(pcdResponse, EV2_ANSWER_LENGTH, "The platform's authentication response");
  const response = await sendPart2(channel, Uint8Array.from(pcdResponse), options);
  return {
    answer: response.answer,
    sw: response.sw,
    response: encodeResponseApdu(response.answer, response.sw),
  };
}
