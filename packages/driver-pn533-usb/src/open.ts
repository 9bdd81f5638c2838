import {
  Capability,
  ErrorCode,
  PN533,
  Pn53xController,
  Pn53xParameter,
  Pn53xReader,
  TaplineError,
  hasErrorCode,
  withDeadline,
  type AttachedDevice,
  type DriverContext,
  type Logger,
  type Pn53xFirmwareVersion,
  type UsbDeviceLike,
} from '@tapline/core';
import { pn533UsbDevice } from './devices.js';
import { openStepError } from './errors.js';
import { Pn533UsbLink, type UsbBulkEndpoints } from './usb-link.js';

/** What the driver offers on a PN533. */
export const PN533_USB_CAPABILITIES: readonly Capability[] = Object.freeze([
  Capability.Iso14443aRaw,
  Capability.Iso14443_4,
  Capability.Iso14443b,
  Capability.Felica,
]);

/** Options of `createPn533UsbDriver`. */
export interface Pn533UsbOptions {
  /** Pause between polls for a tag, in milliseconds. Default 200. */
  readonly pollIntervalMs?: number;
  /** How long the chip may take to acknowledge a command, in milliseconds. Default 250. */
  readonly ackTimeoutMs?: number;
  /** How long each USB set-up step (open, claim, release, close) may take, in milliseconds. Default 2000. */
  readonly usbStepTimeoutMs?: number;
}

/** The USB strings, read before the first PN53x command. */
export interface Pn533UsbStrings {
  readonly manufacturer: string | undefined;
  readonly product: string | undefined;
  readonly serialNumber: string | undefined;
}

/** libnfc hard-codes these (readers.md §5.1) because the PN533 can corrupt its descriptors. */
const FALLBACK_ENDPOINTS: UsbBulkEndpoints = { interfaceNumber: 0, in: 4, out: 4, packetSize: 64 };

/** GetFirmwareVersion attempts at start-up: the first command after a reset may go unanswered. */
const RESYNC_ATTEMPTS = 3;
const RESYNC_TIMEOUT_MS = 250;

function readString(read: () => string | undefined): string | undefined {
  try {
    return read() ?? undefined;
  } catch {
    return undefined;
  }
}

/**
 * Reads the USB strings. This must happen before the first PN53x command: after frames longer than 16–17 bytes the
 * PN533 can corrupt its string descriptors (readers.md §5.4).
 */
export function readUsbStrings(device: UsbDeviceLike): Pn533UsbStrings {
  return {
    manufacturer: readString(() => device.manufacturerName),
    product: readString(() => device.productName),
    serialNumber: readString(() => device.serialNumber),
  };
}

/**
 * The interface with a bulk IN and a bulk OUT endpoint, from the configuration descriptor; libnfc's fixed
 * interface 0, endpoints 0x04/0x84, 64-byte packets when the descriptor has none (it can be corrupt).
 */
export function findBulkEndpoints(device: UsbDeviceLike): UsbBulkEndpoints {
  for (const iface of device.configuration?.interfaces ?? []) {
    const endpoints = iface.alternate.endpoints;
    const bulkIn = endpoints.find((e) => e.type === 'bulk' && e.direction === 'in');
    const bulkOut = endpoints.find((e) => e.type === 'bulk' && e.direction === 'out');
    if (bulkIn && bulkOut) {
      return {
        interfaceNumber: iface.interfaceNumber,
        in: bulkIn.endpointNumber,
        out: bulkOut.endpointNumber,
        packetSize: bulkOut.packetSize > 0 ? bulkOut.packetSize : 64,
      };
    }
  }
  return FALLBACK_ENDPOINTS;
}

/**
 * Brings a PN533 into a known state (readers.md §5.4, §6 vector 7): an ACK aborts whatever a previous program left
 * running, GetFirmwareVersion (repeated until it answers) resynchronises the USB data toggle, then the RF
 * configuration: ISO-DEP activation by the chip (AutoRATS), field off with auto RFCA, short air timeouts, no
 * automatic exchange retries, one retry per poll (the default is forever), and nfcpy's analog settings.
 */
export async function startPn533(
  link: Pn533UsbLink,
  controller: Pn53xController,
  logger: Logger,
): Promise<Pn53xFirmwareVersion> {
  await link.abort();
  let firmware: Pn53xFirmwareVersion | undefined;
  for (let attempt = 1; !firmware; attempt++) {
    try {
      firmware = await controller.getFirmwareVersion({ timeoutMs: RESYNC_TIMEOUT_MS });
    } catch (error) {
      if (attempt >= RESYNC_ATTEMPTS || hasErrorCode(error, ErrorCode.ReaderGone)) throw error;
      logger.debug('GetFirmwareVersion went unanswered; trying again', { attempt, error });
    }
  }
  if (firmware.ic !== controller.model.icCode) {
    throw new TaplineError(ErrorCode.DriverFailed, `The chip reports itself as ${firmware.text}, not a PN533.`, {
      details: { firmware: firmware.text },
      hint: 'This driver serves PN533 readers only; use --driver to pick another one.',
    });
  }
  await controller.setParameters(Pn53xParameter.AutoAtrRes | Pn53xParameter.AutoRats);
  await controller.setRfField(false, true);
  await controller.setTimings(0x0b, 0x0a);
  await controller.setMaxRetryCom(0);
  await controller.setMaxRetries({ atr: 0x01, psl: 0x00, passiveActivation: 0x01 });
  await controller.applyAnalogSettings();
  return firmware;
}

/**
 * Opens a PN533 on raw USB: reads the strings, opens the device, selects configuration 1 if none is set, claims
 * the bulk interface, starts the link, runs {@link startPn533}, and returns a polling {@link Pn53xReader}. On any
 * failure it releases what it acquired, in reverse order, and fails with a Tapline error (`TRANSPORT_UNAVAILABLE`
 * with the fix when another driver holds the device).
 */
export async function openPn533Usb(
  device: AttachedDevice,
  context: DriverContext,
  driverId: string,
  options: Pn533UsbOptions = {},
): Promise<Pn53xReader> {
  if (device.transport !== 'usb') {
    throw new TaplineError(
      ErrorCode.InvalidArgument,
      `Driver ${driverId} serves PN533 readers on raw USB only, not "${device.name}" (${device.transport}).`,
    );
  }
  const usb = device.port;
  const strings = readUsbStrings(usb);
  const known = pn533UsbDevice(device.vendorId, device.productId);
  const name = device.name || known?.name || 'PN533';
  const logger = context.logger.child({ device: name });
  logger.debug('opening PN533', { ...strings, model: known?.name });
  const stepTimeoutMs = options.usbStepTimeoutMs ?? 2000;
  const undo: { what: string; run: () => Promise<void> }[] = [];
  const step = async (what: string, run: () => Promise<void>): Promise<void> => {
    try {
      await withDeadline({ what: `${what} (${name})`, timeoutMs: stepTimeoutMs }, run);
    } catch (error) {
      throw openStepError(what, { name, vendorId: device.vendorId, productId: device.productId }, error);
    }
  };
  const release = async (): Promise<void> => {
    for (const { what, run } of undo.splice(0).reverse()) {
      try {
        await withDeadline({ what: `${what} (${name})`, timeoutMs: stepTimeoutMs }, run);
      } catch (error) {
        logger.debug(`${what} failed`, { error });
      }
    }
  };

  try {
    await step('opening the device', () => usb.open());
    undo.push({ what: 'closing the device', run: () => usb.close() });
    if (!usb.configuration) await step('selecting configuration 1', () => usb.selectConfiguration(1));
    const endpoints = findBulkEndpoints(usb);
    await step('claiming the interface', () => usb.claimInterface(endpoints.interfaceNumber));
    undo.push({ what: 'releasing the interface', run: () => usb.releaseInterface(endpoints.interfaceNumber) });
    const link = new Pn533UsbLink({
      device: usb,
      endpoints,
      logger,
      name,
      maxFrameLength: PN533.maxFrameLength,
      ...(options.ackTimeoutMs === undefined ? {} : { ackTimeoutMs: options.ackTimeoutMs }),
    });
    link.start();
    undo.push({ what: 'stopping the USB link', run: () => link.close() });
    const controller = new Pn53xController(link, PN533);
    const firmware = await startPn533(link, controller, logger).catch((error: unknown) => {
      if (hasErrorCode(error, ErrorCode.ReaderGone) || hasErrorCode(error, ErrorCode.DriverFailed)) throw error;
      throw new TaplineError(ErrorCode.DriverFailed, `The PN533 in ${name} did not start up properly.`, {
        cause: error,
        hint: 'Replug the reader; if another program (libnfc, nfcpy) was using it, close that program first.',
      });
    });
    logger.debug('PN533 ready', { firmware: firmware.text });
    const reader = new Pn53xReader({
      name,
      driverId,
      controller,
      context,
      capabilities: PN533_USB_CAPABILITIES,
      ...(options.pollIntervalMs === undefined ? {} : { pollIntervalMs: options.pollIntervalMs }),
      releaseTransport: release,
    });
    reader.start();
    return reader;
  } catch (error) {
    await release();
    throw openStepError('starting the PN533', { name, vendorId: device.vendorId, productId: device.productId }, error);
  }
}
