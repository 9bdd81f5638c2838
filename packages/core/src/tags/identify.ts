import { Capability } from '../model/capabilities.js';
import { parseContactlessAtr } from '../model/atr.js';
import { ErrorCode, hasErrorCode, isTaplineError } from '../model/errors.js';
import type { Tag, TagIdentification, TagInfo } from '../model/tag.js';
import { bytesEqual } from '../util/bytes.js';
import { isApexHistoricalBytes, selectApexVerify } from './apex.js';
import { tagExchange, type ExchangeOptions } from './channel.js';
import { ApduChannel } from './iso7816/channel.js';
import { getVersion } from './ntag4xx/commands.js';

/** The chip classes Tapline tells apart. */
export type ChipClass = 'spark1' | 'spark2' | 'apex' | 'ntag21x' | 'unknown';

/** What identification concluded, and how. */
export interface Identification extends TagIdentification {
  readonly chip: ChipClass;
  /** Why, in a few words per step (for `--trace` users and bug reports). */
  readonly evidence: readonly string[];
  /** The Apex Verify applet's 8-byte chip id, when identification selected it. */
  readonly apexChipId?: Uint8Array;
}

/** Options of {@link identifyTag}. */
export interface IdentifyOptions extends ExchangeOptions {
  /**
   * `fast` (default) answers from what the reader reported whenever that is enough — no exchange for a Spark 1, a
   * Spark 2 or an Apex with its usual ATS — so a relay that follows keeps the chip's field time short. `full` also
   * asks the chip for its model (GetVersion: three exchanges on an NTAG 4xx DNA, one on an NTAG21x).
   */
  readonly detail?: 'fast' | 'full';
}

/** The ATS historical bytes of an NTAG 413/424 DNA (ATS `06 77 77 71 02 80`). */
const NTAG4XX_HISTORICAL_BYTES = Uint8Array.of(0x80);
/** NTAG21x GET_VERSION storage-size byte → model. */
const NTAG21X_MODELS: Readonly<Record<number, string>> = { 0x0f: 'NTAG213', 0x11: 'NTAG215', 0x13: 'NTAG216' };

/**
 * The ATS historical bytes of a tag, from its ATS (T0 tells which interface bytes precede them) or from the ATR a
 * PC/SC reader synthesised.
 */
export function historicalBytes(info: TagInfo): Uint8Array | undefined {
  if (info.ats && info.ats.length > 0) {
    const t0 = info.ats[0]!;
    const interfaceBytes = ((t0 >> 4) & 1) + ((t0 >> 5) & 1) + ((t0 >> 6) & 1);
    return info.ats.subarray(1 + interfaceBytes);
  }
  if (info.atr) {
    const atr = parseContactlessAtr(info.atr);
    if (atr.kind === 'iso14443-4') return atr.historicalBytes;
  }
  return undefined;
}

/**
 * Classifies a tag from what the reader reported alone; `undefined` when that is not enough. Pure and free: the
 * first step of {@link identifyTag}.
 */
export function identifyFromReaderData(info: TagInfo): Identification | undefined {
  const uid = info.uid;
  if (info.technology === 'iso15693') {
    // ICODE DNA: NXP (04), ICODE (01), DNA type bits 0x18 in the fourth UID byte (protocols.md §4.1).
    if (uid.length === 8 && uid[0] === 0xe0 && uid[1] === 0x04 && uid[2] === 0x01 && uid[3] === 0x18) {
      return {
        chip: 'spark1',
        model: 'ICODE DNA',
        exchanges: 0,
        evidence: ['ISO 15693 UID E0 04 01 18: NXP ICODE DNA'],
      };
    }
    return { chip: 'unknown', exchanges: 0, evidence: ['ISO 15693 tag that is not an ICODE DNA'] };
  }
  if (info.technology !== 'iso14443a') {
    return { chip: 'unknown', exchanges: 0, evidence: [`${info.technology} tag`] };
  }
  const historical = historicalBytes(info);
  if (historical && isApexHistoricalBytes(historical)) {
    return { chip: 'apex', model: 'VivoKey Apex', exchanges: 0, evidence: ['ATS historical bytes of an Apex'] };
  }
  if (
    historical &&
    bytesEqual(historical, NTAG4XX_HISTORICAL_BYTES) &&
    uid.length === 7 &&
    uid[0] === 0x04 &&
    info.protocols.includes(Capability.Iso14443_4)
  ) {
    return { chip: 'spark2', exchanges: 0, evidence: ['NXP 7-byte UID with the NTAG 4xx DNA ATS'] };
  }
  return undefined;
}

/**
 * Identifies the chip on `tag` with as few exchanges as possible, and records the result on `tag.identification`.
 * Never fails for an unknown chip (that is `chip: 'unknown'`); fails only when the tag leaves (`TAG_LOST`), times
 * out, or the caller aborts.
 */
export async function identifyTag(tag: Tag, options: IdentifyOptions = {}): Promise<Identification> {
  const result = await identify(tag, options);
  tag.identification = result;
  return result;
}

async function identify(tag: Tag, options: IdentifyOptions): Promise<Identification> {
  const full = options.detail === 'full';
  const fromReader = identifyFromReaderData(tag);
  if (fromReader && (!full || fromReader.chip === 'spark1' || fromReader.chip === 'unknown')) return fromReader;

  if (tag.technology === 'iso14443a' && !tag.protocols.includes(Capability.Iso14443_4)) {
    return identifyType2(tag, options);
  }
  if (!tag.protocols.includes(Capability.Iso14443_4)) {
    return { chip: 'unknown', exchanges: 0, evidence: ['no protocol this reader can reach'] };
  }

  const channel = new ApduChannel(tagExchange(tag, Capability.Iso14443_4));
  const evidence = [...(fromReader?.evidence ?? [])];
  if (fromReader?.chip !== 'apex') {
    try {
      const version = await getVersion(channel, options);
      evidence.push(
        `GetVersion: vendor ${hex(version.hardware.vendorId)}, type ${hex(version.hardware.type)}, model ${version.model}`,
      );
      if (version.hardware.vendorId === 0x04 && version.hardware.type === 0x04 && version.model !== 'unknown') {
        const model = version.model === 'ntag424dna' ? 'NTAG 424 DNA' : 'NTAG 413 DNA';
        return { chip: 'spark2', model, exchanges: channel.exchanges, evidence };
      }
      return { chip: 'unknown', exchanges: channel.exchanges, evidence };
    } catch (error) {
      if (!isJavaCardRefusal(error)) throw error;
      evidence.push('GetVersion refused as by a JavaCard');
    }
  }
  try {
    const apexChipId = await selectApexVerify(channel, options);
    evidence.push('Verify applet selected');
    return { chip: 'apex', model: 'VivoKey Apex', exchanges: channel.exchanges, evidence, apexChipId };
  } catch (error) {
    if (!hasErrorCode(error, ErrorCode.TagStatus)) throw error;
    evidence.push('no Verify applet');
    return { chip: 'unknown', exchanges: channel.exchanges, evidence };
  }
}

async function identifyType2(tag: Tag, options: IdentifyOptions): Promise<Identification> {
  const evidence = ['ISO 14443-3 type A tag without ISO-DEP'];
  if (!tag.reader.capabilities.has(Capability.Iso14443aRaw) || !tag.protocols.includes(Capability.Iso14443aRaw)) {
    return { chip: 'unknown', exchanges: 0, evidence: [...evidence, 'the reader cannot send GET_VERSION'] };
  }
  try {
    const version = await tag.reader.transmit(tag, Capability.Iso14443aRaw, Uint8Array.of(0x60), options);
    // 00 04 04 02 01 00 <storage> 03: NXP, NTAG, 50 pF, version 1.0, storage, ISO 14443-3.
    const model =
      version.length === 8 && version[1] === 0x04 && version[2] === 0x04 ? NTAG21X_MODELS[version[6]!] : undefined;
    if (model) return { chip: 'ntag21x', model, exchanges: 1, evidence: [...evidence, `GET_VERSION: ${model}`] };
    return { chip: 'unknown', exchanges: 1, evidence: [...evidence, 'GET_VERSION names no NTAG21x'] };
  } catch (error) {
    // A tag that does not know GET_VERSION stays silent; that is an answer too.
    if (isTaplineError(error) && (error.code === ErrorCode.Timeout || error.code === ErrorCode.ProtocolError)) {
      return { chip: 'unknown', exchanges: 1, evidence: [...evidence, 'no answer to GET_VERSION'] };
    }
    throw error;
  }
}

function isJavaCardRefusal(error: unknown): boolean {
  if (!hasErrorCode(error, ErrorCode.TagStatus)) return false;
  const sw = error.details['sw'];
  return sw === '6e00' || sw === '6d00' || sw === '6a81' || sw === '6700';
}

function hex(value: number): string {
  return value.toString(16).padStart(2, '0');
}
