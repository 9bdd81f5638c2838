/**
 * EV2 secure messaging over an {@link ApduChannel} (NT4H2421Gx §9.1.8–§9.1.10, AN12196 §3.3 as summarised in the
 * research notes): CommMode.Plain, CommMode.MAC and CommMode.Full.
 *
 * @packageDocumentation
 */
import { ErrorCode, TaplineError, isTaplineError } from '../../model/errors.js';
import type { ExchangeOptions } from '../channel.js';
import type { ApduChannel } from '../iso7816/channel.js';
import { formatStatusWord, statusWordError, type StatusWord } from '../iso7816/status.js';
import { concatBytes } from '../../util/bytes.js';
import { nativeExchange, type NativeResponse } from './native.js';
import {
  EV2_MAC_LENGTH,
  commandIv,
  commandMacInput,
  computeMact,
  decryptFullData,
  encryptFullData,
  responseIv,
  responseMacInput,
  verifyMact,
  type Ev2Session,
} from './session.js';

/** The three communication modes of NTAG 4xx commands. */
export type CommMode = 'plain' | 'mac' | 'full';

/** Options of one {@link SecureChannel.send}. */
export interface SecureSendOptions extends ExchangeOptions {
  /** What the command is, for error messages ("ReadData"). */
  readonly name?: string;
  /**
   * Return codes (SW2 after `91`) that count as success. Default `[0x00]`. Read_Sig answers `91 90` on real chips,
   * so it passes `[0x00, 0x90]`.
   */
  readonly expectRc?: readonly number[];
  /** Most data bytes per frame before `91 AF` chaining; see {@link nativeExchange}. */
  readonly maxFrameData?: number;
}

/** The answer to a secure-messaging command: plain response data and the status word. */
export interface SecureResponse {
  /** Response data: decrypted in FULL mode, without the MAC in MAC and FULL mode. */
  readonly data: Uint8Array;
  readonly sw: StatusWord;
}

const NXP_SW1 = 0x91;

/**
 * Sends NTAG 4xx commands inside an authenticated EV2 session.
 *
 * - **MAC**: `MACt(K_SesAuthMAC, Cmd ‖ CmdCtr ‖ TI ‖ header ‖ data)` is appended to the command, and the answer's
 *   last 8 bytes must equal `MACt(K_SesAuthMAC, RC ‖ CmdCtr+1 ‖ TI ‖ RespData)`, compared in constant time; a
 *   mismatch fails with `INTEGRITY_ERROR`.
 * - **FULL**: command data is M2-padded and encrypted under IVc before the MAC is taken over the ciphertext; response
 *   data is decrypted under IVr after its MAC is verified. Empty data is neither padded nor encrypted.
 * - **Plain**: sent as is, but still counted, because the chip counts every command while authenticated
 *   (NT4H2421Gx §9.1.8).
 *
 * Command counter rule (NT4H2421Gx §9.1.2, §9.1.9): the counter moves on by one after every command the chip
 * answered with an accepted status, whatever the mode; a chained command counts once. On any other status, a wrong
 * response MAC, malformed secured data or a failed exchange, the session is ended ({@link Ev2Session.end}) instead:
 * the chip drops its authentication on every error (and sends the error without a MAC), an answer that fails its
 * MAC means someone or something altered the channel, and after a lost frame the reader cannot know whether the chip
 * counted the command. Further sends then fail with `INVALID_ARGUMENT` until a new authentication. At counter 0xFFFF
 * nothing more is sent (`INVALID_ARGUMENT`): the datasheet has the chip treat such a command like a wrong MAC.
 *
 * Send every command of the session through one SecureChannel: a native command sent around it would move the
 * chip's counter without moving this one.
 */
export class SecureChannel {
  /** The APDU channel the commands travel over. */
  readonly channel: ApduChannel;
  /** The EV2 session: TI, keys and the command counter. */
  readonly session: Ev2Session;

  constructor(channel: ApduChannel, session: Ev2Session) {
    this.channel = channel;
    this.session = session;
  }

  /** Sends `cmd` and returns the response data; see {@link SecureChannel.transmit}. */
  async send(
    cmd: number,
    header: Uint8Array,
    data: Uint8Array,
    mode: CommMode,
    options: SecureSendOptions = {},
  ): Promise<Uint8Array> {
    return (await this.transmit(cmd, header, data, mode, options)).data;
  }

  /**
   * Sends native command `cmd` with `header` (never encrypted) and `data` (encrypted in FULL mode) in `mode`, and
   * returns the checked, decrypted answer with its status. A refused status fails with the typed error from
   * {@link statusWordError}; a wrong response MAC with `INTEGRITY_ERROR`; an answer too short for its MAC or with bad
   * padding with `PROTOCOL_ERROR`.
   */
  async transmit(
    cmd: number,
    header: Uint8Array,
    data: Uint8Array,
    mode: CommMode,
    options: SecureSendOptions = {},
  ): Promise<SecureResponse> {
    const name = options.name ?? `native command ${cmd.toString(16).padStart(2, '0').toUpperCase()}`;
    const session = this.session;
    session.assertUsable();
    const ctr = session.cmdCtr;
    const ti = session.ti;

    let body: Uint8Array;
    if (mode === 'plain') {
      body = concatBytes(header, data);
    } else {
      const payload =
        mode === 'full' && data.length > 0
          ? encryptFullData(session.encCipher, commandIv(session.encCipher, ti, ctr), data)
          : data;
      const mac = computeMact(session.macCipher, commandMacInput(cmd, ctr, ti, header, payload));
      body = concatBytes(header, payload, mac);
    }

    let response: NativeResponse;
    try {
      response = await nativeExchange(this.channel, cmd, body, {
        ...options,
        name,
      });
    } catch (error) {
      session.end(`${name} did not complete`);
      throw error;
    }

    const rc = response.sw & 0xff;
    if (response.sw >>> 8 !== NXP_SW1 || !(options.expectRc ?? [0x00]).includes(rc)) {
      session.end(`the tag refused ${name} with ${formatStatusWord(response.sw).toUpperCase()}`);
      throw statusWordError(response.sw, name);
    }
    session.incrementCommandCounter();
    if (mode === 'plain') return { data: response.data, sw: response.sw };

    try {
      return { data: this.#unwrap(response.data, rc, ctr, mode, name), sw: response.sw };
    } catch (error) {
      session.end(`the answer to ${name} did not verify`);
      throw error;
    }
  }

  #unwrap(secured: Uint8Array, rc: number, ctr: number, mode: 'mac' | 'full', name: string): Uint8Array {
    const session = this.session;
    if (secured.length < EV2_MAC_LENGTH) {
      throw new TaplineError(
        ErrorCode.ProtocolError,
        `The answer to ${name} has ${secured.length} bytes, too short for its ${EV2_MAC_LENGTH}-byte MAC.`,
      );
    }
    const respData = secured.subarray(0, secured.length - EV2_MAC_LENGTH);
    const mac = secured.subarray(secured.length - EV2_MAC_LENGTH);
    if (!verifyMact(session.macCipher, responseMacInput(rc, ctr, session.ti, respData), mac)) {
      throw new TaplineError(ErrorCode.IntegrityError, `The MAC on the answer to ${name} does not match.`, {
        hint: 'The answer was corrupted or altered on the way; hold the tag still and authenticate again.',
      });
    }
    if (mode === 'mac' || respData.length === 0) return Uint8Array.from(respData);
    try {
      return decryptFullData(session.encCipher, responseIv(session.encCipher, session.ti, ctr), respData);
    } catch (error) {
      if (isTaplineError(error) && error.code === ErrorCode.ProtocolError) {
        throw new TaplineError(ErrorCode.ProtocolError, `The encrypted answer to ${name} is malformed.`, {
          cause: error,
        });
      }
      throw error;
    }
  }
}
