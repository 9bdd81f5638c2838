/**
 * The ACR1252U as a `PcscReader` with vendor hooks: raw Type A frames through PC/SC Part 3 transparent exchange,
 * FeliCa through `FF 00 00 00` (its FeliCa pass-through, never a PN532 tunnel), LED and buzzer through escape
 * commands.
 *
 * @packageDocumentation
 */
import {
  Capability,
  ErrorCode,
  PcscEscape,
  PcscReader,
  TaplineError,
  hasErrorCode,
  part3SessionFor,
  toSpacedHex,
  withDirectConnection,
  type AttachedDevice,
  type DriverContext,
  type FrameCapability,
  type Logger,
  type PcscCard,
  type PcscExchangeContext,
  type PcscFeedbackContext,
  type PcscReaderPort,
  iso15693UnsupportedError,
  pcscPortOf,
} from '@tapline/core';
import { Acr1252Escapes, Acr1252Led } from './escape.js';

/** What the ACR1252U offers. */
export const ACR1252_CAPABILITIES: readonly Capability[] = Object.freeze([
  Capability.Iso14443aRaw,
  Capability.Iso14443_4,
  Capability.Felica,
  Capability.Led,
  Capability.Buzzer,
]);

const STEP_TIMEOUT_MS = 1000;

/** The ISO 15693 refusal of this reader: its PN512 has no ISO 15693 modulation (readers.md §0). */
export function acr1252Iso15693Error(readerName: string): TaplineError {
  return iso15693UnsupportedError(readerName, 'PN512');
}

/** A `PcscReader` that names the readers able to read a Spark 1 when asked for ISO 15693. */
export class Acr1252Reader extends PcscReader {
  protected override unsupportedCapability(capability: FrameCapability): TaplineError {
    return capability === Capability.Iso15693
      ? acr1252Iso15693Error(this.name)
      : super.unsupportedCapability(capability);
  }
}

/**
 * `FF 00 00 00 Lc <FeliCa command with its length byte>`: the ACR1252U's FeliCa pass-through (ACM1252U-Y3 §5.2.6,
 * e.g. Read Without Encryption `FF 00 00 00 10 10 06 <IDm> 01 09 01 01 80 00`).
 */
export function acr1252FelicaCommand(frame: Uint8Array): Uint8Array {
  if (frame.length === 0 || frame.length > 0xff) {
    throw new TaplineError(ErrorCode.InvalidArgument, `A FeliCa command is 1 to 255 bytes, not ${frame.length}.`);
  }
  return Uint8Array.of(0xff, 0x00, 0x00, 0x00, frame.length, ...frame);
}

/**
 * The FeliCa answer of the pass-through: the data before `90 00` (the manual gives no answer example; that the
 * answer keeps its length byte, like the command, is inferred). Other status words are errors.
 */
export function parseAcr1252FelicaResponse(answer: Uint8Array, readerName: string): Uint8Array {
  const sw = answer.length >= 2 ? (answer[answer.length - 2]! << 8) | answer[answer.length - 1]! : -1;
  if (sw === 0x9000 && answer.length > 2) return answer.slice(0, -2);
  const hex = toSpacedHex(answer.subarray(-2));
  throw new TaplineError(
    sw === 0x6300 ? ErrorCode.Timeout : sw === 0x6a81 ? ErrorCode.UnsupportedCapability : ErrorCode.ProtocolError,
    sw === 0x6300
      ? `The FeliCa tag on ${readerName} did not answer (63 00).`
      : `${readerName} answered the FeliCa pass-through with ${answer.length <= 2 ? hex : `${answer.length} bytes ending ${hex}`}.`,
    { details: { reader: readerName, sw: hex } },
  );
}

/** Options of {@link openAcr1252}. */
export interface Acr1252Options {
  readonly driverId: string;
}

/**
 * The escape commands of one reader; `escape` keeps the control code. They go over `card` when given (a tag's
 * connection: Windows refuses a direct connection next to it), else over a direct connection of their own.
 */
export function acr1252EscapesOver(port: PcscReaderPort, escape: PcscEscape, card?: PcscCard): Acr1252Escapes {
  const call = { timeoutMs: STEP_TIMEOUT_MS };
  return new Acr1252Escapes(
    (command) =>
      card
        ? escape.send(card, command, call)
        : withDirectConnection(port, call, (direct) => escape.send(direct, command, call)),
    port.name,
  );
}

/**
 * Opens an ACR1252U. The firmware version is read once over an escape command, for the log; a reader whose driver
 * blocks escapes still works, with LED and buzzer through `FF 00 40` while a tag is present. Fails with
 * `INVALID_ARGUMENT` for a device that is not PC/SC.
 */
export async function openAcr1252(
  device: AttachedDevice,
  context: DriverContext,
  options: Acr1252Options,
): Promise<Acr1252Reader> {
  const port = pcscPortOf(device, options.driverId);
  const logger = context.logger.child({ reader: device.name });
  const escape = new PcscEscape(port, { logger });
  try {
    logger.debug('ACR1252U firmware', { firmware: await acr1252EscapesOver(port, escape).firmware() });
  } catch (error) {
    if (hasErrorCode(error, ErrorCode.ReaderGone) || hasErrorCode(error, ErrorCode.TransportUnavailable)) throw error;
    logger.debug('no escape commands; LED and buzzer need a tag on the reader', { error });
  }
  const reader = new Acr1252Reader(port, context, {
    driverId: options.driverId,
    capabilities: ACR1252_CAPABILITIES,
    hooks: {
      exchange: (ctx) => acr1252Exchange(ctx, device.name, context, logger),
      feedback: (ctx) => acr1252Feedback(ctx, escape),
    },
  });
  reader.start();
  return reader;
}

function acr1252Exchange(
  ctx: PcscExchangeContext,
  name: string,
  context: DriverContext,
  logger: Logger,
): Promise<Uint8Array> | undefined {
  if (ctx.capability === Capability.Iso14443aRaw) {
    const session = part3SessionFor(ctx.card, { readerName: name, timeoutMs: context.timeoutMs, logger });
    return session.iso14443aRaw(ctx.frame, { signal: ctx.signal });
  }
  if (ctx.capability === Capability.Felica) {
    return ctx.card
      .transmit(acr1252FelicaCommand(ctx.frame), { timeoutMs: context.timeoutMs, signal: ctx.signal })
      .then((answer) => parseAcr1252FelicaResponse(answer, name));
  }
  return undefined;
}

/** The LED byte for a feedback colour (bit 0 red, bit 1 green). */
function ledState(led: 'off' | 'green' | 'red' | 'orange'): number {
  return (
    (led === 'red' || led === 'orange' ? Acr1252Led.Red : 0) |
    (led === 'green' || led === 'orange' ? Acr1252Led.Green : 0)
  );
}

/** `FF 00 40 …`, the ACR122U-compatible LED/buzzer command the ACR1252U also takes (ACM1252U-Y3 §5.6). */
function compatibleFeedbackCommand(led: number | undefined, beepMs: number | undefined): Uint8Array {
  const control = led === undefined ? 0x00 : 0x0c | led;
  const t1 = beepMs === undefined || beepMs <= 0 ? 0 : Math.min(0xff, Math.ceil(beepMs / 100));
  return Uint8Array.of(0xff, 0x00, 0x40, control, 0x04, t1, 0x00, t1 === 0 ? 0 : 1, t1 === 0 ? 0 : 1);
}

async function acr1252Feedback(ctx: PcscFeedbackContext, escape: PcscEscape): Promise<void> {
  const { led, beepMs } = ctx.feedback;
  const state = led === undefined ? undefined : ledState(led);
  const escapes = acr1252EscapesOver(ctx.port, escape, ctx.card);
  try {
    if (state !== undefined) await escapes.setLed(state);
    if (beepMs !== undefined) await escapes.beep(beepMs);
    return;
  } catch (error) {
    if (!hasErrorCode(error, ErrorCode.UnsupportedCapability) || !ctx.card) throw error;
  }
  // Escapes are blocked, but a tag is connected: the pseudo-APDU goes through SCardTransmit.
  const answer = await ctx.card.transmit(compatibleFeedbackCommand(state, beepMs), {
    timeoutMs: STEP_TIMEOUT_MS + (beepMs ?? 0),
    signal: ctx.signal,
  });
  if (answer.length !== 2 || answer[0] !== 0x90) {
    throw new TaplineError(
      ErrorCode.ProtocolError,
      `${ctx.port.name} refused the LED/buzzer command (${toSpacedHex(answer)}).`,
    );
  }
}
