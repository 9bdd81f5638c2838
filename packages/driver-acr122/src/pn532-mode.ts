/**
 * The ACR122U in PN532 mode, as nfcpy and libnfc drive it: the firmware's automatic polling is switched off
 * (`FF 00 51 7F 00`) and core's `Pn53xReader` polls through the PN532 itself, every command an escape command on a
 * direct connection. It needs a reader driver that lets escapes through (acsccid, the ACS Windows driver, or libccid
 * with ifdDriverOptions 0x0001) and gives Type B and FeliCa polling, which PC/SC mode leaves to the firmware.
 *
 * @packageDocumentation
 */
import {
  Capability,
  ErrorCode,
  PcscEscape,
  Pn53xController,
  Pn53xParameter,
  Pn53xReader,
  TaplineError,
  hasErrorCode,
  toTaplineError,
  type AttachedDevice,
  type DriverContext,
  type PcscCard,
  type Pn53xReaderOptions,
  pcscPortOf,
} from '@tapline/core';
import { Acr122PiccParameter, acr122PiccParameterCommand, parseAcr122PiccParameterResponse } from './apdu.js';
import { ACR122_PN532, Acr122Link, acr122EscapeSend } from './link.js';
import { startAcr122 } from './reader.js';

/** What the ACR122U offers in PN532 mode. */
export const ACR122_PN532_CAPABILITIES: readonly Capability[] = Object.freeze([
  Capability.Iso14443aRaw,
  Capability.Iso14443_4,
  Capability.Iso14443b,
  Capability.Felica,
]);

/** nfcpy's PICC operating parameter: automatic polling off, every tag type still enabled. */
const POLLING_OFF = Acr122PiccParameter.AutoAts | 0x3f;
/** The factory default, restored on close so that other applications find the reader polling again. */
const POLLING_DEFAULT = 0xff;
const STEP_TIMEOUT_MS = 1000;

/** Options of {@link openAcr122Pn532}. */
export interface Acr122Pn532Options {
  readonly driverId: string;
  /** Pause between polls while no tag is present, in milliseconds. Default 250. */
  readonly pollIntervalMs?: number;
}

async function setPolling(card: PcscCard, escape: PcscEscape, parameter: number, name: string): Promise<void> {
  const answer = await escape.send(card, acr122PiccParameterCommand(parameter), { timeoutMs: STEP_TIMEOUT_MS });
  parseAcr122PiccParameterResponse(answer, name);
}

/**
 * Opens an ACR122U in PN532 mode: a direct connection, the firmware check, `D4 32 05` retries, `D4 12 14`
 * (AutoATR_RES, AutoRATS), automatic polling off, then a polling `Pn53xReader`. Closing it switches automatic
 * polling back on. Fails with `DRIVER_FAILED` when escape commands do not reach the reader.
 */
export async function openAcr122Pn532(
  device: AttachedDevice,
  context: DriverContext,
  options: Acr122Pn532Options,
): Promise<Pn53xReader> {
  const port = pcscPortOf(device, options.driverId);
  const name = device.name;
  const logger = context.logger.child({ reader: name });
  const card = await port.connect({ share: 'direct', timeoutMs: STEP_TIMEOUT_MS });
  const escape = new PcscEscape(port, { logger });
  let pollingOff = false;
  const restore = async (): Promise<void> => {
    if (pollingOff) {
      try {
        await setPolling(card, escape, POLLING_DEFAULT, name);
      } catch (error) {
        logger.debug('switching automatic polling back on failed', { error });
      }
    }
    await card.disconnect('leave');
  };
  try {
    const send = acr122EscapeSend(card, escape);
    await startAcr122(send, name, logger);
    const controller = new Pn53xController(new Acr122Link(send, name), ACR122_PN532);
    await controller.setParameters(Pn53xParameter.AutoAtrRes | Pn53xParameter.AutoRats);
    await setPolling(card, escape, POLLING_OFF, name);
    pollingOff = true;
    const readerOptions: Pn53xReaderOptions = {
      name,
      driverId: options.driverId,
      controller,
      context,
      capabilities: ACR122_PN532_CAPABILITIES,
      pollIntervalMs: options.pollIntervalMs ?? 250,
      releaseTransport: restore,
    };
    const reader = new Pn53xReader(readerOptions);
    const watch = port.status$.subscribe({ complete: () => void reader.close(), error: () => void reader.close() });
    reader.events$.subscribe({ complete: () => watch.unsubscribe() });
    reader.start();
    return reader;
  } catch (error) {
    await restore();
    if (hasErrorCode(error, ErrorCode.ReaderGone) || hasErrorCode(error, ErrorCode.TransportUnavailable)) throw error;
    const failure = toTaplineError(error, ErrorCode.DriverFailed);
    throw new TaplineError(ErrorCode.DriverFailed, `${name} could not be started in PN532 mode: ${failure.message}`, {
      cause: error,
      hint: 'PN532 mode needs escape commands; use the default PC/SC mode, or allow escapes (acsccid, or libccid with ifdDriverOptions 0x0001).',
    });
  }
}
