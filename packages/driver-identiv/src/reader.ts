/**
 * The Identiv uTrust readers as a `PcscReader` with vendor hooks: ISO 15693 through the vendor APDUs on the
 * 3720 F / 3721 F, PC/SC Part 3 transparent exchange where a reader answers the probe, and the tag's A/B type from
 * the GET_CARD_INFO escape.
 *
 * @packageDocumentation
 */
import {
  Capability,
  ErrorCode,
  PcscReader,
  hasErrorCode,
  parseContactlessAtr,
  part3SessionFor,
  probePart3,
  type AttachedDevice,
  type DriverContext,
  type Logger,
  type PcscExchangeContext,
  type PcscIdentifyContext,
  type TagInfo,
  pcscPortOf,
  type PcscReaderPort,
} from '@tapline/core';
import { IdentivEscapes, identivTunnelSend } from './escape.js';
import { IdentivIso15693, type IdentivIso15693Path } from './iso15693.js';
import { identivModelFromName, type IdentivModelInfo } from './models.js';

/** The most the driver offers on any uTrust reader. */
export const IDENTIV_CAPABILITIES: readonly Capability[] = Object.freeze([
  Capability.Iso14443aRaw,
  Capability.Iso14443_4,
  Capability.Iso15693,
]);

/** Options of {@link openIdentiv}. */
export interface IdentivOpenOptions {
  readonly driverId: string;
  /** How ISO 15693 frames reach the tag on a 3720 F / 3721 F; default `auto` (see `IdentivIso15693`). */
  readonly iso15693Path?: IdentivIso15693Path;
}

type Knowledge = 'unknown' | 'yes' | 'no';

/** What an opened reader starts out offering: APDUs, and ISO 15693 where the manual documents the vendor APDUs. */
export function identivInitialCapabilities(model: IdentivModelInfo, path: IdentivIso15693Path = 'auto'): Capability[] {
  return model.iso15693 && path !== 'part3' ? [Capability.Iso14443_4, Capability.Iso15693] : [Capability.Iso14443_4];
}

/**
 * Opens a uTrust reader. The model comes from the name. A 3720 F / 3721 F offers ISO 15693 from the start (through
 * `FF FC` / `FF FD`); every model probes PC/SC Part 3 once, the first time a tag needs it (a Type A storage card, or
 * an ISO 15693 tag on a reader without the vendor APDUs), and then offers `iso14443a-raw` (and `iso15693`) through
 * transparent exchange. Fails with `INVALID_ARGUMENT` for a device that is not PC/SC.
 */
export function openIdentiv(
  device: AttachedDevice,
  context: DriverContext,
  options: IdentivOpenOptions,
): Promise<PcscReader> {
  let port: PcscReaderPort;
  try {
    port = pcscPortOf(device, options.driverId);
  } catch (error) {
    return Promise.reject(error instanceof Error ? error : new Error(String(error)));
  }
  const name = device.name;
  const model = identivModelFromName(name);
  const path = options.iso15693Path ?? 'auto';
  const logger = context.logger.child({ reader: name, model: model.model });
  const iso15693 = model.iso15693 && path !== 'part3' ? new IdentivIso15693(path, name) : undefined;
  const vendor15693 = iso15693 !== undefined;
  let part3: Knowledge = 'unknown';
  let tunnel: Knowledge = 'unknown';

  const probe = async (ctx: PcscIdentifyContext): Promise<void> => {
    if (part3 !== 'unknown') return;
    try {
      const answer = await probePart3(ctx.card, {
        readerName: name,
        timeoutMs: ctx.timeoutMs,
        signal: ctx.signal,
        logger,
      });
      part3 = answer.supported ? 'yes' : 'no';
      logger.debug(answer.supported ? 'the reader speaks PC/SC Part 3' : 'the reader has no PC/SC Part 3', {
        ...(answer.supported ? { version: answer.version } : { reason: answer.reason.message }),
      });
    } catch (error) {
      if (hasErrorCode(error, ErrorCode.Timeout)) return;
      if (!hasErrorCode(error, ErrorCode.ProtocolError) && !hasErrorCode(error, ErrorCode.UnsupportedCapability))
        throw error;
      part3 = 'no';
    }
  };

  const identify = async (ctx: PcscIdentifyContext): Promise<TagInfo> => {
    const atr = parseContactlessAtr(ctx.info.atr ?? new Uint8Array(0));
    const needsRaw = atr.protocols.includes(Capability.Iso14443aRaw);
    const needs15693 = atr.technology === 'iso15693' && !vendor15693;
    if (needsRaw || needs15693) await probe(ctx);
    if (part3 === 'yes') {
      const offered = new Set(ctx.capabilities);
      offered.add(Capability.Iso14443aRaw);
      if (atr.technology === 'iso15693') offered.add(Capability.Iso15693);
      ctx.offer(offered);
    }
    const protocols = atr.protocols.filter((p) => ctx.capabilities.has(p));
    const info: TagInfo = { ...ctx.info, protocols };
    if (atr.kind !== 'iso14443-4' || tunnel === 'no') return info;
    return withCardType(ctx, info, logger, (known) => (tunnel = known));
  };

  const exchange = (ctx: PcscExchangeContext): Promise<Uint8Array> | undefined => {
    const session = (): ReturnType<typeof part3SessionFor> =>
      part3SessionFor(ctx.card, { readerName: name, timeoutMs: context.timeoutMs, logger });
    if (ctx.capability === Capability.Iso14443aRaw) return session().iso14443aRaw(ctx.frame, { signal: ctx.signal });
    if (ctx.capability !== Capability.Iso15693) return undefined;
    if (iso15693) {
      const call = { timeoutMs: context.timeoutMs, signal: ctx.signal };
      return iso15693.exchange(ctx.frame, (apdu) => ctx.card.transmit(apdu, call));
    }
    return session().iso15693(ctx.frame, { signal: ctx.signal });
  };

  const reader = new PcscReader(port, context, {
    driverId: options.driverId,
    capabilities: identivInitialCapabilities(model, path),
    maxCapabilities: IDENTIV_CAPABILITIES,
    hooks: { identify, exchange },
  });
  reader.start();
  return Promise.resolve(reader);
}

/**
 * ISO-DEP ATRs do not tell Type A from Type B; GET_CARD_INFO (escape `11`, through the `FF CC` tunnel on the tag's
 * connection) does. A reader without the tunnel is remembered through `remember` and not asked again.
 */
async function withCardType(
  ctx: PcscIdentifyContext,
  info: TagInfo,
  logger: Logger,
  remember: (known: Knowledge) => void,
): Promise<TagInfo> {
  try {
    const escapes = new IdentivEscapes(
      identivTunnelSend(ctx.card, ctx.port.name, ctx.timeoutMs, ctx.signal),
      ctx.port.name,
    );
    const card = await escapes.cardInfo();
    remember('yes');
    if (card.technology === 'iso14443b') return { ...info, technology: 'iso14443b' };
  } catch (error) {
    if (hasErrorCode(error, ErrorCode.TagLost) || hasErrorCode(error, ErrorCode.ReaderGone)) throw error;
    if (hasErrorCode(error, ErrorCode.UnsupportedCapability)) remember('no');
    logger.debug('GET_CARD_INFO through FF CC failed; the tag counts as Type A', { error });
  }
  return info;
}
