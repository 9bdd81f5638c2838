/**
 * {@link Acr122Link}: core's `Pn53xLink` over the ACR122U's pseudo-APDUs. A PN532 command payload goes out as Direct
 * Transmit `FF 00 00 00 Lc D4 …`, through SCardTransmit while a tag is connected, or as an escape command
 * (SCardControl) on a direct connection when none is (readers.md §1.2); the answer `D5 … 90 00` comes back with the
 * status word stripped. In T=0 the reader answers `61 LL` first and the link fetches the rest with `FF C0 00 00 LL`.
 *
 * @packageDocumentation
 */
import {
  ErrorCode,
  PN532,
  TaplineError,
  toSpacedHex,
  type PcscCard,
  type PcscEscape,
  type Pn53xLink,
  type Pn53xLinkOptions,
  type Pn53xModel,
} from '@tapline/core';
import { acr122DirectTransmit, acr122GetResponse, acr122StatusError } from './apdu.js';

/** Sends one pseudo-APDU and returns the reader's raw answer. */
export type Acr122Send = (apdu: Uint8Array, options: Pn53xLinkOptions) => Promise<Uint8Array>;

/**
 * The ACR122U's PN532 for core's PN53x layer: the chip's limits, with frames capped at 255 bytes (a Direct Transmit
 * is a short APDU) and host-side waits of at least a second, because the reader "answers after up to 1 s if no tag is
 * present" (the CCID driver's open timeout, readers.md §1.2).
 */
export const ACR122_PN532: Pn53xModel = Object.freeze({
  ...PN532,
  extendedFrames: false,
  maxFrameLength: 0xff,
  timeouts: Object.freeze({
    status: 1000,
    register: 1000,
    rfConfiguration: 1000,
    listTargets: 1500,
    diagnose: 1500,
    release: 1000,
  }),
});

/** How many `61 LL` rounds one exchange may take before the answer counts as broken. */
const MAX_GET_RESPONSE_ROUNDS = 4;

/** An {@link Acr122Send} over SCardTransmit on a card connection. */
export function acr122CardSend(card: PcscCard): Acr122Send {
  return (apdu, options) =>
    card.transmit(apdu, { timeoutMs: options.timeoutMs, ...(options.signal ? { signal: options.signal } : {}) });
}

/** An {@link Acr122Send} over escape commands (SCardControl), on a direct connection or a card connection. */
export function acr122EscapeSend(card: PcscCard, escape: PcscEscape): Acr122Send {
  return (apdu, options) =>
    escape.send(card, apdu, { timeoutMs: options.timeoutMs, ...(options.signal ? { signal: options.signal } : {}) });
}

/**
 * The PN532 behind an ACR122U. No abort: the PN53x ACK frame cannot travel through the CCID firmware (readers.md
 * §1.2), so a command the chip keeps running ends only with the host-side deadline.
 */
export class Acr122Link implements Pn53xLink {
  readonly #send: Acr122Send;
  readonly #readerName: string;

  constructor(send: Acr122Send, readerName: string) {
    this.#send = send;
    this.#readerName = readerName;
  }

  async exchange(commandPayload: Uint8Array, options: Pn53xLinkOptions): Promise<Uint8Array> {
    let answer = await this.#send(acr122DirectTransmit(commandPayload), options);
    const parts: Uint8Array[] = [];
    for (let round = 0; isMoreData(answer); round++) {
      if (round >= MAX_GET_RESPONSE_ROUNDS) throw this.#broken('kept announcing more data (61 LL)', answer);
      const length = answer[1] === 0 ? 256 : answer[1]!;
      const fetched = await this.#send(acr122GetResponse(length), options);
      answer = this.#getResponseBody(fetched, length, parts);
    }
    if (answer.length < 2) throw this.#broken(`${answer.length} bytes`, answer);
    const sw = (answer[answer.length - 2]! << 8) | answer[answer.length - 1]!;
    if (sw !== 0x9000) {
      if (parts.length > 0) throw this.#broken('a status word after Get Response', answer);
      throw acr122StatusError(sw, 'a PN532 command', this.#readerName);
    }
    parts.push(answer.subarray(0, -2));
    const total = parts.reduce((n, p) => n + p.length, 0);
    const data = new Uint8Array(total);
    let at = 0;
    for (const part of parts) {
      data.set(part, at);
      at += part.length;
    }
    return data;
  }

  /**
   * The answer to `FF C0 00 00 LL`. The firmware counts the emulated `90 00` in LL (libnfc's Touchatag trace: `61 08`,
   * then `D5 03 32 01 04 07 90 00`), so LL bytes ending in `90 00` are the whole answer; LL bytes plus the Get
   * Response's own `90 00` are accepted as well. A `61 LL` at the end asks for another round.
   */
  #getResponseBody(fetched: Uint8Array, length: number, parts: Uint8Array[]): Uint8Array {
    if (fetched.length === length) return fetched;
    const tail = fetched.subarray(-2);
    if (fetched.length === length + 2 && tail[0] === 0x90 && tail[1] === 0x00) return fetched.subarray(0, -2);
    if (fetched.length === length + 2 && tail[0] === 0x61) {
      parts.push(fetched.subarray(0, -2));
      return tail;
    }
    if (fetched.length === 2 && fetched[0] !== 0x61) {
      throw acr122StatusError((fetched[0]! << 8) | fetched[1]!, 'Get Response', this.#readerName);
    }
    throw this.#broken(`${fetched.length} bytes to a Get Response for ${length}`, fetched);
  }

  #broken(what: string, answer: Uint8Array): TaplineError {
    return new TaplineError(ErrorCode.ProtocolError, `${this.#readerName} answered a PN532 command with ${what}.`, {
      details: { reader: this.#readerName, answer: toSpacedHex(answer.subarray(0, 48)) },
    });
  }
}

function isMoreData(answer: Uint8Array): boolean {
  return answer.length === 2 && answer[0] === 0x61;
}
