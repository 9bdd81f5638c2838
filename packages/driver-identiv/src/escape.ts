/**
 * Identiv escape commands (readers.md §3.1; uTrust 3720F/3721F reference manual §6.3.4, uTrust 4701F §6.1.3): an
 * escape buffer `<escape code> <parameters>` goes out with SCardControl, or, because some drivers block that IOCTL,
 * wrapped in the vendor APDU `FF CC 00 00 Lc <buffer> 00` through SCardTransmit, which answers `<output> SW1 SW2`.
 *
 * @packageDocumentation
 */
import {
  ErrorCode,
  TaplineError,
  toSpacedHex,
  withDirectConnection,
  type PcscCard,
  type PcscEscape,
  type PcscReaderPort,
} from '@tapline/core';

/** The contactless escape codes (the first byte of the escape buffer). */
export const IdentivEscapeCode = {
  ReaderGetInfoExtended: 0x1e,
  CardInfo: 0x11,
  GetAtsAtqb: 0x93,
  GetType: 0x94,
  SetType: 0x95,
  RfSwitch: 0x96,
  ControlPps: 0x99,
  Control848: 0x9d,
  GetBaudRate: 0x9e,
  Retries: 0xa7,
  Polling: 0xac,
  ForceBaudRate: 0xad,
  CardDetails: 0xda,
  CollisionDetected: 0xe4,
  FelicaPassThrough: 0xf3,
} as const;

/** Runs one escape buffer and returns the reader's output (no status word). */
export type IdentivEscapeSend = (buffer: Uint8Array) => Promise<Uint8Array>;

/** `FF CC 00 00 Lc <escape buffer> 00` (uTrust 4701F §6.1.3, PAPDU_ESCAPE_CMD). */
export function identivTunnelCommand(buffer: Uint8Array): Uint8Array {
  if (buffer.length === 0 || buffer.length > 0xff) {
    throw new TaplineError(ErrorCode.InvalidArgument, `An escape buffer is 1 to 255 bytes, not ${buffer.length}.`);
  }
  return Uint8Array.of(0xff, 0xcc, 0x00, 0x00, buffer.length, ...buffer, 0x00);
}

/** Status words with which a reader says it has no `FF CC` at all. */
const NO_TUNNEL = new Set([0x6a81, 0x6d00, 0x6e00, 0x6800]);

/**
 * The output of a tunnelled escape: the bytes before `90 00`. Fails with `UNSUPPORTED_CAPABILITY` when the reader has
 * no such APDU, `PROTOCOL_ERROR` for any other status.
 */
export function parseIdentivTunnelResponse(answer: Uint8Array, readerName = 'The reader'): Uint8Array {
  const sw = answer.length >= 2 ? (answer[answer.length - 2]! << 8) | answer[answer.length - 1]! : -1;
  if (sw === 0x9000) return answer.slice(0, -2);
  const hex = toSpacedHex(answer.subarray(-2));
  throw new TaplineError(
    NO_TUNNEL.has(sw) ? ErrorCode.UnsupportedCapability : ErrorCode.ProtocolError,
    NO_TUNNEL.has(sw)
      ? `${readerName} does not take escape commands through FF CC (${hex}).`
      : `${readerName} answered a tunnelled escape command with ${hex}.`,
    { details: { reader: readerName, sw: hex } },
  );
}

/** Escapes through `FF CC 00 00` on a card connection: needs a tag, but no escape permission from the driver. */
export function identivTunnelSend(
  card: PcscCard,
  readerName: string,
  timeoutMs: number,
  signal?: AbortSignal,
): IdentivEscapeSend {
  return async (buffer) =>
    parseIdentivTunnelResponse(
      await card.transmit(identivTunnelCommand(buffer), { timeoutMs, ...(signal ? { signal } : {}) }),
      readerName,
    );
}

/** Escapes through SCardControl on a direct connection of their own: needs no tag, but the driver's permission. */
export function identivControlSend(port: PcscReaderPort, escape: PcscEscape, timeoutMs: number): IdentivEscapeSend {
  const call = { timeoutMs };
  return (buffer) => withDirectConnection(port, call, (card) => escape.send(card, buffer, call));
}

/** GET_CARD_INFO, decoded. */
export interface IdentivCardInfo {
  readonly present: boolean;
  /** The baud-rate byte: b0–b2 212/424/848 kbps reader→card, b4–b6 card→reader, b7 same in both directions. */
  readonly baudRates?: number;
  /** Upper nibble of the type byte: a memory card, an ISO 14443-4 (T=CL) card, or both. */
  readonly kind?: 'memory' | 't=cl' | 'dual' | 'unknown';
  /** Lower nibble of the type byte. */
  readonly technology?: 'iso14443a' | 'iso14443b' | 'unknown';
}

/** Decodes the output of GET_CARD_INFO (`11`): `01 <baud> <type>`, or `00` without a card. */
export function parseIdentivCardInfo(output: Uint8Array, readerName = 'The reader'): IdentivCardInfo {
  if (output.length >= 1 && output[0] === 0x00) return { present: false };
  if (output.length !== 3 || output[0] !== 0x01) {
    throw new TaplineError(
      ErrorCode.ProtocolError,
      `${readerName} answered GET_CARD_INFO with ${toSpacedHex(output)}.`,
      {
        details: { reader: readerName, output: toSpacedHex(output.subarray(0, 16)) },
      },
    );
  }
  const type = output[2]!;
  const kinds = ['memory', 't=cl', 'dual'] as const;
  const technologies = ['iso14443a', 'iso14443b'] as const;
  return {
    present: true,
    baudRates: output[1]!,
    kind: kinds[type >> 4] ?? 'unknown',
    technology: technologies[type & 0x0f] ?? 'unknown',
  };
}

function oneByte(output: Uint8Array, what: string, readerName: string): number {
  if (output.length !== 1) {
    throw new TaplineError(ErrorCode.ProtocolError, `${readerName} answered ${what} with ${output.length} bytes.`, {
      details: { reader: readerName, output: toSpacedHex(output.subarray(0, 16)) },
    });
  }
  return output[0]!;
}

function expectEmpty(output: Uint8Array, what: string, readerName: string): void {
  if (output.length !== 0) {
    throw new TaplineError(ErrorCode.ProtocolError, `${readerName} answered ${what} with unexpected data.`, {
      details: { reader: readerName, output: toSpacedHex(output.subarray(0, 16)) },
    });
  }
}

/** The contactless escape commands Tapline uses, over either transport. */
export class IdentivEscapes {
  readonly #send: IdentivEscapeSend;
  readonly #readerName: string;

  constructor(send: IdentivEscapeSend, readerName = 'The reader') {
    this.#send = send;
    this.#readerName = readerName;
  }

  /** GET_CARD_INFO `11`: whether a tag is present, its bit rates, and A or B. */
  async cardInfo(): Promise<IdentivCardInfo> {
    return parseIdentivCardInfo(await this.#send(Uint8Array.of(IdentivEscapeCode.CardInfo)), this.#readerName);
  }

  /** RF_SWITCH `96 00` (off) / `96 01` (on). */
  async setRfField(on: boolean): Promise<void> {
    const output = await this.#send(Uint8Array.of(IdentivEscapeCode.RfSwitch, on ? 0x01 : 0x00));
    expectEmpty(output, 'RF_SWITCH', this.#readerName);
  }

  /** RF_SWITCH `96 FF`: whether the field is on. The reader answers `00` for on and `01` for off. */
  async rfField(): Promise<boolean> {
    const state = oneByte(
      await this.#send(Uint8Array.of(IdentivEscapeCode.RfSwitch, 0xff)),
      'RF_SWITCH',
      this.#readerName,
    );
    return state === 0x00;
  }

  /** POLLING `AC 00` (enable) / `AC 01` (disable): the firmware's own polling for tags. */
  async setPolling(enabled: boolean): Promise<void> {
    const output = await this.#send(Uint8Array.of(IdentivEscapeCode.Polling, enabled ? 0x00 : 0x01));
    expectEmpty(output, 'CONTROL_POLLING', this.#readerName);
  }

  /** POLLING `AC FF`: whether the firmware polls (`00` enabled, `01` disabled). */
  async polling(): Promise<boolean> {
    const state = oneByte(
      await this.#send(Uint8Array.of(IdentivEscapeCode.Polling, 0xff)),
      'CONTROL_POLLING',
      this.#readerName,
    );
    return state === 0x00;
  }

  /** Any escape buffer, for the codes without a method here; returns the raw output. */
  raw(buffer: Uint8Array): Promise<Uint8Array> {
    return this.#send(buffer);
  }
}
