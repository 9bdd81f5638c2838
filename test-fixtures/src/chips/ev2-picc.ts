import {
  AesKey,
  EV2_CMD_CTR_MAX,
  EV2_MAC_LENGTH,
  EV2_RND_LENGTH,
  EV2_TI_LENGTH,
  commandMacInput,
  computeMact,
  concatBytes,
  constantTimeEqual,
  deriveEv2SessionKeys,
  encryptFullData,
  responseIv,
  responseMacInput,
  rotateLeft,
  verifyMact,
} from '@tapline/core';
import type { RandomSource } from './chip-model.js';
import { Sw } from './iso-dep.js';

/**
 * The chip (PICC) side of NTAG 4xx AuthenticateEV2First and of EV2 secure messaging, shared by the Spark 2 and the
 * Apex Verify applet. All protocol math comes from `@tapline/core` (ntag4xx/session.ts), the same functions the
 * reader side uses; this module only plays the chip's part of the dialogue and keeps its state immutable.
 */

/** An authenticated EV2 session as the chip holds it. */
export interface Ev2PiccSession {
  readonly keyNo: number;
  readonly ti: Uint8Array;
  readonly enc: AesKey;
  readonly mac: AesKey;
  /** The counter the next command must be sent with. */
  readonly cmdCtr: number;
}

/** Where the chip is in AuthenticateEV2First. */
export type Ev2PiccState =
  | { readonly phase: 'idle' }
  | {
      readonly phase: 'challenged';
      readonly keyNo: number;
      readonly key: Uint8Array;
      readonly rndB: Uint8Array;
      readonly pcdCap2: Uint8Array;
    }
  | { readonly phase: 'authenticated'; readonly session: Ev2PiccSession };

/** Not authenticated, no authentication under way. */
export const EV2_IDLE: Ev2PiccState = Object.freeze({ phase: 'idle' });

/** The outcome of one step: the new authentication state and the answer (data and NXP status). */
export interface Ev2PiccStep {
  readonly auth: Ev2PiccState;
  readonly data: Uint8Array;
  readonly sw: number;
}

const NO_DATA = new Uint8Array(0);
const CAP_LENGTH = 6;

function fail(sw: number): Ev2PiccStep {
  // The chip drops any authentication (complete or half-way) with every error it reports.
  return { auth: EV2_IDLE, data: NO_DATA, sw };
}

/**
 * Part 1 of AuthenticateEV2First (`90 71 00 00 Lc KeyNo LenCap [PCDcap2] 00`): answers E(K, RndB) with `91 AF`.
 * `data` is the command data (`KeyNo ‖ LenCap ‖ PCDcap2`); `keyFor` gives the key of a key number, or `undefined`
 * for a key the chip does not have (`91 40`). A malformed length is `91 7E`.
 */
export function ev2AuthenticateFirst(
  data: Uint8Array,
  keyFor: (keyNo: number) => Uint8Array | undefined,
  random: RandomSource,
): Ev2PiccStep {
  if (data.length < 2) return fail(Sw.NxpLengthError);
  const keyNo = data[0]!;
  const lenCap = data[1]!;
  if (lenCap > CAP_LENGTH || data.length !== 2 + lenCap) return fail(Sw.NxpLengthError);
  const key = keyFor(keyNo);
  if (key === undefined) return fail(Sw.NxpNoSuchKey);
  const rndB = random(EV2_RND_LENGTH);
  const pcdCap2 = new Uint8Array(CAP_LENGTH);
  pcdCap2.set(data.subarray(2));
  return {
    auth: { phase: 'challenged', keyNo, key, rndB, pcdCap2 },
    data: new AesKey(key).encryptCbc(rndB),
    sw: Sw.NxpAdditionalFrame,
  };
}

/**
 * Part 2 (`90 AF 00 00 20 E(K, RndA ‖ RndB′) 00`): checks RndB′ and answers E(K, TI ‖ RndA′ ‖ PDcap2 ‖ PCDcap2)
 * with `91 00`, or `91 AE` when RndB′ is wrong (a wrong key or garbage), `91 7E` for data other than 32 bytes.
 */
export function ev2AuthenticatePart2(
  state: Extract<Ev2PiccState, { phase: 'challenged' }>,
  data: Uint8Array,
  random: RandomSource,
): Ev2PiccStep {
  if (data.length !== 2 * EV2_RND_LENGTH) return fail(Sw.NxpLengthError);
  const cipher = new AesKey(state.key);
  const plain = cipher.decryptCbc(data);
  const rndA = plain.slice(0, EV2_RND_LENGTH);
  if (!constantTimeEqual(plain.subarray(EV2_RND_LENGTH), rotateLeft(state.rndB))) {
    return fail(Sw.NxpAuthenticationError);
  }
  const ti = random(EV2_TI_LENGTH);
  const pdCap2 = new Uint8Array(CAP_LENGTH);
  const keys = deriveEv2SessionKeys(state.key, rndA, state.rndB);
  return {
    auth: {
      phase: 'authenticated',
      session: { keyNo: state.keyNo, ti, enc: new AesKey(keys.enc), mac: new AesKey(keys.mac), cmdCtr: 0 },
    },
    data: cipher.encryptCbc(concatBytes(ti, rotateLeft(rndA), pdCap2, state.pcdCap2)),
    sw: Sw.NxpOk,
  };
}

/** The session with its counter moved on after a command the chip accepted. */
export function advance(session: Ev2PiccSession): Ev2PiccSession {
  return { ...session, cmdCtr: session.cmdCtr + 1 };
}

/**
 * Checks the MACt at the end of a MAC- or FULL-mode command with no command data besides `header`:
 * `MACt(K_SesAuthMAC, Cmd ‖ CmdCtr ‖ TI ‖ header)`. A used-up counter (0xFFFF) fails like a wrong MAC, as on the
 * chip.
 */
export function commandMacValid(session: Ev2PiccSession, cmd: number, header: Uint8Array, mac: Uint8Array): boolean {
  if (session.cmdCtr >= EV2_CMD_CTR_MAX || mac.length !== EV2_MAC_LENGTH) return false;
  return verifyMact(session.mac, commandMacInput(cmd, session.cmdCtr, session.ti, header, NO_DATA), mac);
}

/** MAC-mode response data: `data ‖ MACt(K_SesAuthMAC, RC ‖ CmdCtr+1 ‖ TI ‖ data)`, for a command with `session`'s counter. */
export function macResponse(session: Ev2PiccSession, rc: number, data: Uint8Array): Uint8Array {
  return concatBytes(data, computeMact(session.mac, responseMacInput(rc, session.cmdCtr, session.ti, data)));
}

/**
 * FULL-mode response data: `E(K_SesAuthENC, IVr, data ‖ 80 00…) ‖ MACt` over the ciphertext. Empty data is neither
 * padded nor encrypted, only MACed.
 */
export function fullResponse(session: Ev2PiccSession, rc: number, data: Uint8Array): Uint8Array {
  if (data.length === 0) return macResponse(session, rc, data);
  const encrypted = encryptFullData(session.enc, responseIv(session.enc, session.ti, session.cmdCtr), data);
  return macResponse(session, rc, encrypted);
}
