/**
 * The ACR122U in PC/SC mode: the firmware polls for tags (so pcscd sees them come and go), Tapline connects to each
 * tag, and the PN532 behind the firmware is reached with Direct Transmit for what plain APDUs cannot do.
 *
 * @packageDocumentation
 */
import {
  Capability,
  ErrorCode,
  PcscEscape,
  PcscReader,
  Pn53xController,
  Pn53xRegister,
  TaplineError,
  hasErrorCode,
  parseContactlessAtr,
  parseGetDataResponse,
  stripCrcA,
  withDirectConnection,
  type AttachedDevice,
  type DriverContext,
  type FrameCapability,
  type Logger,
  type PcscCard,
  type PcscExchangeContext,
  type PcscFeedbackContext,
  type PcscIdentifyContext,
  type PcscReaderPort,
  type TagInfo,
  iso15693UnsupportedError,
  pcscPortOf,
} from '@tapline/core';
import {
  ACR122_GET_FIRMWARE,
  acr122FeedbackCommand,
  acr122FirmwareWarning,
  parseAcr122Firmware,
  parseAcr122LedResponse,
  type Acr122Firmware,
} from './apdu.js';
import { ACR122_PN532, Acr122Link, acr122CardSend, acr122EscapeSend, type Acr122Send } from './link.js';

/** What the ACR122U offers in PC/SC mode. */
export const ACR122_PCSC_CAPABILITIES: readonly Capability[] = Object.freeze([
  Capability.Iso14443aRaw,
  Capability.Iso14443_4,
  Capability.Felica,
  Capability.Led,
  Capability.Buzzer,
]);

/**
 * RFConfiguration 05 (`D4 32 05 01 00 01`, nfcpy's values, readers.md §6 vector 7): one retry for ATR and passive
 * activation instead of the PN532's default of forever, so that no InListPassiveTarget can hang the chip.
 */
export const ACR122_RETRIES = Object.freeze({ atr: 0x01, psl: 0x00, passiveActivation: 0x01 });

/** `FF CA 01 00 00`: the ATS of an ISO 14443-4 Type A tag, with its length byte. */
const GET_ATS: Uint8Array = Uint8Array.of(0xff, 0xca, 0x01, 0x00, 0x00);

/** ACR122 storage-card names (readers.md §1.2) that the ATR parser files under ISO 14443-A. */
const CARD_FELICA_212 = 0xf011;
const CARD_FELICA_424 = 0xf012;
const CARD_TOPAZ = 0xf004;

/** Waits of the clean-up steps that run outside any caller's deadline. */
const STEP_TIMEOUT_MS = 1000;

/** The ISO 15693 refusal of this reader: its PN532 has no ISO 15693 modulation (readers.md §0). */
export function acr122Iso15693Error(readerName: string): TaplineError {
  return iso15693UnsupportedError(readerName, 'PN532');
}

/**
 * The start-up every ACR122U gets once: the firmware version (a warning for one older than 2.06), then
 * RFConfiguration 05 with {@link ACR122_RETRIES}.
 */
export async function startAcr122(send: Acr122Send, readerName: string, logger: Logger): Promise<Acr122Firmware> {
  const firmware = parseAcr122Firmware(await send(ACR122_GET_FIRMWARE, { timeoutMs: STEP_TIMEOUT_MS }), readerName);
  const warning = acr122FirmwareWarning(firmware);
  if (warning) logger.warn(`${readerName}: ${warning}; it may misbehave`, { firmware: firmware.text });
  else logger.debug('ACR122U firmware', { firmware: firmware.text });
  const controller = new Pn53xController(new Acr122Link(send, readerName), ACR122_PN532);
  await controller.setMaxRetries(ACR122_RETRIES);
  return firmware;
}

/** Errors that end the reader rather than one attempt. */
function fatal(error: unknown): boolean {
  return hasErrorCode(error, ErrorCode.ReaderGone) || hasErrorCode(error, ErrorCode.TransportUnavailable);
}

/**
 * The ACR122U in PC/SC mode, a `PcscReader` whose vendor hooks drive the PN532 through Direct Transmit:
 *
 * - `iso14443a-raw`: InCommunicateThru with the chip's RX-CRC check off (CIU_RxMode b7) for the one frame, so that a
 *   4-bit ACK/NAK arrives; the CRC_A of longer answers is checked and stripped here; the register is restored after
 *   every frame because the firmware keeps polling the same chip;
 * - `felica`: InCommunicateThru to the FeliCa tag the firmware activated (frames start with their length byte);
 * - `iso14443-4`: plain SCardTransmit;
 * - LED and buzzer: `FF 00 40` through the tag connection, or as an escape command without a tag;
 * - `iso15693`: refused, naming readers that can.
 */
export class Acr122Reader extends PcscReader {
  protected override unsupportedCapability(capability: FrameCapability): TaplineError {
    return capability === Capability.Iso15693
      ? acr122Iso15693Error(this.name)
      : super.unsupportedCapability(capability);
  }
}

/** Options of {@link openAcr122Pcsc}. */
export interface Acr122PcscOptions {
  /** The driver id the reader reports. */
  readonly driverId: string;
}

/**
 * Opens an ACR122U in PC/SC mode. The start-up runs over an escape command on a direct connection when the reader
 * driver lets escapes through, otherwise through the first tag's connection. Fails with `INVALID_ARGUMENT` for a
 * device that is not PC/SC.
 */
export async function openAcr122Pcsc(
  device: AttachedDevice,
  context: DriverContext,
  options: Acr122PcscOptions,
): Promise<Acr122Reader> {
  const port = pcscPortOf(device, options.driverId);
  const name = device.name;
  const logger = context.logger.child({ reader: name });
  const escape = new PcscEscape(port, { logger });
  let started = false;
  try {
    await withDirectConnection(port, { timeoutMs: STEP_TIMEOUT_MS }, (card) =>
      startAcr122(acr122EscapeSend(card, escape), name, logger),
    );
    started = true;
  } catch (error) {
    if (fatal(error)) throw error;
    logger.debug('no escape commands on a direct connection; the start-up waits for the first tag', { error });
  }

  const identify = async (ctx: PcscIdentifyContext): Promise<TagInfo> => {
    if (!started) {
      try {
        await startAcr122(acr122CardSend(ctx.card), name, logger);
      } catch (error) {
        // The next tag tries again only when this one left; a reader that refuses keeps working without.
        if (fatal(error) || hasErrorCode(error, ErrorCode.TagLost)) throw error;
        logger.warn(`${name}: the start-up (firmware check, PN532 retries) failed`, { error });
      }
      started = true;
    }
    return refineAcr122Tag(ctx);
  };

  const reader = new Acr122Reader(port, context, {
    driverId: options.driverId,
    capabilities: ACR122_PCSC_CAPABILITIES,
    hooks: {
      identify,
      exchange: (ctx) => acr122Exchange(ctx, name),
      feedback: (ctx) => acr122Feedback(ctx, escape, name),
    },
  });
  reader.start();
  return reader;
}

/**
 * What the ATR and a Get ATS add for an ACR122U: its storage-card names `F0 11`/`F0 12` are FeliCa tags (the generic
 * parser files them under ISO 14443-A), `F0 04` is a Topaz (Type 1, not served); ISO-DEP tags get their ATS.
 */
async function refineAcr122Tag(ctx: PcscIdentifyContext): Promise<TagInfo> {
  const atr = parseContactlessAtr(ctx.info.atr ?? new Uint8Array(0));
  const offered = (protocols: readonly FrameCapability[]): FrameCapability[] =>
    protocols.filter((p) => ctx.capabilities.has(p));
  if (atr.kind === 'storage' && (atr.cardName === CARD_FELICA_212 || atr.cardName === CARD_FELICA_424)) {
    return { ...ctx.info, technology: 'felica', protocols: offered([Capability.Felica]) };
  }
  if (atr.kind === 'storage' && atr.cardName === CARD_TOPAZ) return { ...ctx.info, protocols: [] };
  if (atr.kind !== 'iso14443-4') return ctx.info;
  try {
    const answer = await ctx.card.transmit(GET_ATS, { timeoutMs: ctx.timeoutMs, signal: ctx.signal });
    const ats = parseGetDataResponse(answer, ctx.port.name);
    // The ACR122U returns the ATS with its length byte TL (readers.md §4.2); TagInfo.ats has none.
    if (ats.length >= 2 && ats[0] === ats.length) return { ...ctx.info, ats: ats.slice(1) };
  } catch (error) {
    if (hasErrorCode(error, ErrorCode.TagLost) || fatal(error)) throw error;
  }
  return ctx.info;
}

/** The last CIU_RxMode read per connection: activation sets it, and it stays until the tag is activated again. */
const rxModes = new WeakMap<PcscCard, number>();

function acr122Exchange(ctx: PcscExchangeContext, name: string): Promise<Uint8Array> | undefined {
  if (ctx.capability !== Capability.Iso14443aRaw && ctx.capability !== Capability.Felica) return undefined;
  const controller = new Pn53xController(new Acr122Link(acr122CardSend(ctx.card), name), ACR122_PN532);
  const call = { signal: ctx.signal };
  if (ctx.capability === Capability.Felica) return controller.communicateThru(ctx.frame, call);
  return rawTypeA(controller, ctx.card, ctx.frame, ctx.signal);
}

async function rawTypeA(
  controller: Pn53xController,
  card: PcscCard,
  frame: Uint8Array,
  signal: AbortSignal,
): Promise<Uint8Array> {
  let rxMode = rxModes.get(card);
  if (rxMode === undefined) {
    rxMode = (await controller.readRegisters([Pn53xRegister.RxMode], { signal }))[0]!;
    rxModes.set(card, rxMode);
  }
  await controller.writeRegisters([{ address: Pn53xRegister.RxMode, value: rxMode & 0x7f }], { signal });
  try {
    return stripCrcA(await controller.communicateThru(frame, { signal }));
  } finally {
    // Not under the caller's signal: an aborted frame must still give the firmware its CRC check back.
    await controller
      .writeRegisters([{ address: Pn53xRegister.RxMode, value: rxMode }], { timeoutMs: STEP_TIMEOUT_MS })
      .catch(() => undefined);
  }
}

async function acr122Feedback(ctx: PcscFeedbackContext, escape: PcscEscape, name: string): Promise<void> {
  const command = acr122FeedbackCommand(ctx.feedback);
  // The command returns when the blink sequence is over, so the wait grows with the beep.
  const timeoutMs = STEP_TIMEOUT_MS + (ctx.feedback.beepMs ?? 0);
  const call = { timeoutMs, signal: ctx.signal };
  const card = ctx.card;
  const answer = card
    ? await card.transmit(command, call)
    : await withDirectConnection(ctx.port, { timeoutMs: STEP_TIMEOUT_MS }, (direct) =>
        escape.send(direct, command, call).catch((error: unknown) => {
          throw noTagFeedbackError(ctx.port, error);
        }),
      );
  parseAcr122LedResponse(answer, name);
}

function noTagFeedbackError(port: PcscReaderPort, error: unknown): unknown {
  if (!hasErrorCode(error, ErrorCode.UnsupportedCapability)) return error;
  return new TaplineError(
    ErrorCode.UnsupportedCapability,
    `${port.name} takes LED and buzzer commands without a tag only as escape commands, which its driver refuses.`,
    {
      cause: error,
      hint: 'Put a tag on the reader, or allow escapes (CCID: ifdDriverOptions 0x0001; Windows: EscapeCommandEnable).',
    },
  );
}
