import { Capability } from '../model/capabilities.js';
import { parseContactlessAtr } from '../model/atr.js';
import type { AttachedDevice, DriverContext, ReaderDriver } from '../model/driver.js';
import { ErrorCode, hasErrorCode } from '../model/errors.js';
import type { TagInfo } from '../model/tag.js';
import { part3SessionFor, probePart3, type Part3SessionOptions } from '../controllers/pcsc-part3/session.js';
import { openPcscReader, type PcscIdentifyContext, type PcscReader } from './pcsc-reader.js';

/** The generic driver's id. */
export const GENERIC_PCSC_DRIVER_ID = 'pcsc';

/** The most the generic driver offers: APDUs everywhere, raw Type A and ISO 15693 where the reader speaks Part 3. */
export const GENERIC_PCSC_CAPABILITIES: readonly Capability[] = Object.freeze([
  Capability.Iso14443aRaw,
  Capability.Iso14443_4,
  Capability.Iso15693,
]);

/**
 * Name fragments of readers known to have no `FF C2`, which the generic driver therefore never probes: the ACR122U
 * family's firmware tunnels PN532 commands instead (readers.md §1.1), so a probe would only cost an exchange.
 */
const KNOWN_WITHOUT_PART3: readonly string[] = ['ACR122'];

/** What the generic driver knows about one reader's PC/SC Part 3 support. */
type Part3Knowledge = 'unknown' | 'yes' | 'no';

/**
 * Opens a reader for the generic driver. It starts out offering ISO 14443-4 APDUs only. The first time a tag arrives
 * whose ATR says it needs frames below ISO-DEP (a PC/SC Part 3 storage card of ISO 14443-A part 3, or ISO 15693),
 * it probes the reader once with the Part 3 version request; the answer is kept for the reader's lifetime. A Part 3
 * reader then also offers `iso14443a-raw`, and `iso15693` as soon as it has reported an ISO 15693 tag (only a
 * reader whose RF front end speaks 15693 does), both through transparent exchange (`FF C2`).
 */
export function openGenericPcscReader(device: AttachedDevice, context: DriverContext): Promise<PcscReader> {
  const name = device.name.toLowerCase();
  let part3: Part3Knowledge = KNOWN_WITHOUT_PART3.some((n) => name.includes(n.toLowerCase())) ? 'no' : 'unknown';
  const sessionOptions = (): Part3SessionOptions => ({
    readerName: device.name,
    timeoutMs: context.timeoutMs,
    logger: context.logger,
  });

  const identify = async (ctx: PcscIdentifyContext): Promise<TagInfo> => {
    const atr = parseContactlessAtr(ctx.info.atr ?? new Uint8Array(0));
    const wanted = atr.protocols.filter((p) => p === Capability.Iso14443aRaw || p === Capability.Iso15693);
    if (wanted.length === 0 || part3 === 'no') return ctx.info;
    if (part3 === 'unknown') {
      try {
        const probe = await probePart3(ctx.card, {
          readerName: device.name,
          timeoutMs: ctx.timeoutMs,
          signal: ctx.signal,
          logger: context.logger,
        });
        part3 = probe.supported ? 'yes' : 'no';
        context.logger.debug(probe.supported ? 'the reader speaks PC/SC Part 3' : 'the reader has no PC/SC Part 3', {
          reader: device.name,
          ...(probe.supported ? { version: probe.version } : { reason: probe.reason.message }),
        });
      } catch (error) {
        if (hasErrorCode(error, ErrorCode.Timeout)) {
          context.logger.debug('the PC/SC Part 3 probe timed out; asking again with the next tag', { error });
          return ctx.info;
        }
        // The transmit itself was refused: as good an answer as an error status word.
        if (!hasErrorCode(error, ErrorCode.ProtocolError) && !hasErrorCode(error, ErrorCode.UnsupportedCapability)) {
          throw error;
        }
        part3 = 'no';
        context.logger.debug('the reader refused the PC/SC Part 3 probe', { reader: device.name, error });
      }
    }
    if (part3 !== 'yes') return ctx.info;
    const offered = new Set(ctx.capabilities);
    offered.add(Capability.Iso14443aRaw);
    if (atr.technology === 'iso15693') offered.add(Capability.Iso15693);
    ctx.offer(offered);
    return { ...ctx.info, protocols: atr.protocols.filter((p) => ctx.capabilities.has(p)) };
  };

  return openPcscReader(device, context, {
    driverId: GENERIC_PCSC_DRIVER_ID,
    capabilities: [Capability.Iso14443_4],
    maxCapabilities: GENERIC_PCSC_CAPABILITIES,
    hooks: {
      identify,
      exchange: ({ card, capability, frame, signal }) => {
        if (capability === Capability.Iso14443aRaw) {
          return part3SessionFor(card, sessionOptions()).iso14443aRaw(frame, { signal });
        }
        if (capability === Capability.Iso15693) {
          return part3SessionFor(card, sessionOptions()).iso15693(frame, { signal });
        }
        return undefined;
      },
    },
  });
}

/**
 * The generic PC/SC driver (id `pcsc`): takes any PC/SC reader no vendor driver claims (score 1), except SAM slots and
 * the contact interfaces of dual readers. ISO 14443-4 APDUs go through SCardTransmit on every reader; on readers that
 * answer the PC/SC Part 3 probe, raw ISO 14443-A frames and ISO 15693 go through transparent exchange
 * (see {@link openGenericPcscReader}).
 *
 * | function | support | remarks |
 * |---|---|---|
 * | UID `FF CA 00 00 00`, ISO 14443-4 APDUs | every reader | |
 * | PC/SC Part 3 probe `FF C2 00 00 02 80 00 00` | once per reader, on the first tag that needs it | answer kept; refusal (`6A 81`, `6D 00`, no `C0` object) remembered; a timeout asks again; never sent to ACR122 readers |
 * | `iso14443a-raw` | Part 3 readers | switch `8F 02 00 03`; the reader checks the CRC, except for ACK-only commands (WRITE `A2` …: RX-CRC off, `90 02 00 02`, checked here); a 4-bit ACK/NAK comes back as one byte |
 * | `iso15693` | Part 3 readers that reported an ISO 15693 tag | switch `8F 02 02 03` (then layer 2), the reader's CRC; the layer is inferred |
 * | LED, buzzer, FeliCa, Type B raw | no | vendor drivers |
 */
export const genericPcscDriver: ReaderDriver = {
  id: GENERIC_PCSC_DRIVER_ID,
  displayName: 'Generic PC/SC',
  description:
    'Any PC/SC contactless reader: UID via FF CA, ISO 14443-4 APDUs via SCardTransmit; raw Type A and ISO 15693 via PC/SC Part 3 transparent exchange where the reader has it.',
  // "Contact Reader" names the contact slot of dual readers; it does not occur in "Contactless Reader".
  matches: [{ transport: 'pcsc', nameIncludes: '', nameExcludes: ['SAM', 'Contact Reader'], score: 1 }],
  capabilities: GENERIC_PCSC_CAPABILITIES,
  open: (device, context) => openGenericPcscReader(device, context),
};
