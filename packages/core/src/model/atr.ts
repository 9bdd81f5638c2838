import { Capability, type FrameCapability } from './capabilities.js';
import type { Technology } from './tag.js';

// The ATR that PC/SC contactless readers synthesise is a data contract between drivers (which report it) and the
// tag protocols (which identify chips from it), so it lives with the contracts.

/** What a contactless ATR says about the tag. */
export interface ContactlessAtr {
  /**
   * `storage`: a PC/SC Part 3 storage-card ATR (`3B 8F 80 01 80 4F 0C A0 00 00 03 06 SS NN NN …`);
   * `iso14443-4`: `3B 8n 80 01 <historical bytes> TCK`; `unknown`: anything else (a contact card, `3B 00`, …).
   */
  readonly kind: 'storage' | 'iso14443-4' | 'unknown';
  /** The air interface where the ATR names it. ISO 14443-4 ATRs do not tell A from B. */
  readonly technology?: Technology;
  /** The Part 3 standard byte SS (storage cards). */
  readonly standard?: number;
  /** The Part 3 card name NN NN as one number (storage cards). */
  readonly cardName?: number;
  /** A readable name for {@link ContactlessAtr.cardName} where known (`MIFARE Ultralight`). */
  readonly cardLabel?: string;
  /** The historical bytes. */
  readonly historicalBytes: Uint8Array;
  /** The frame capabilities the ATR implies the tag answers on. */
  readonly protocols: readonly FrameCapability[];
  /** `true`/`false` when a TCK is present and does (not) check out; `undefined` when the ATR has none. */
  readonly checksumValid: boolean | undefined;
}

/** PC/SC Part 3 card names (NN NN), as ACS and Identiv readers report them. */
const CARD_NAMES: ReadonlyMap<number, string> = new Map([
  [0x0001, 'MIFARE Classic 1K'],
  [0x0002, 'MIFARE Classic 4K'],
  [0x0003, 'MIFARE Ultralight'],
  [0x0004, 'SLE55R'],
  [0x0006, 'SR176'],
  [0x0007, 'SRI X4K'],
  [0x0012, 'Tag-it'],
  [0x0013, 'LRI512'],
  [0x0014, 'ICODE SLI'],
  [0x0015, 'TEMPSENS'],
  [0x0016, 'I.CODE1'],
  [0x0021, 'LRI64'],
  [0x0022, 'I.CODE UID'],
  [0x0023, 'I.CODE EPC'],
  [0x0024, 'LRI12'],
  [0x0025, 'LRI128'],
  [0x0026, 'MIFARE Mini'],
  [0x0030, 'Topaz'],
  [0x003b, 'FeliCa'],
  [0xf004, 'Topaz'],
  [0xf011, 'FeliCa 212 kbps'],
  [0xf012, 'FeliCa 424 kbps'],
]);

const PCSC_RID = [0xa0, 0x00, 0x00, 0x03, 0x06] as const;

function storageStandard(ss: number): { technology?: Technology; protocols: readonly FrameCapability[] } {
  // Only layer 3 (and 15693 / FeliCa, which have no layer split here) lets a host send frames to the tag.
  if (ss === 0x03) return { technology: 'iso14443a', protocols: [Capability.Iso14443aRaw] };
  if (ss === 0x01 || ss === 0x02) return { technology: 'iso14443a', protocols: [] };
  if (ss === 0x07) return { technology: 'iso14443b', protocols: [Capability.Iso14443b] };
  if (ss === 0x05 || ss === 0x06) return { technology: 'iso14443b', protocols: [] };
  if (ss >= 0x09 && ss <= 0x0c) return { technology: 'iso15693', protocols: [Capability.Iso15693] };
  if (ss === 0x11) return { technology: 'felica', protocols: [Capability.Felica] };
  return { protocols: [] };
}

/**
 * Parses the ATR a PC/SC contactless reader synthesises for a tag (PC/SC Part 3 §3.1.3.2.3, readers.md §7.4).
 * Pure; never throws: an ATR it cannot place comes back as `kind: 'unknown'`.
 */
export function parseContactlessAtr(atr: Uint8Array): ContactlessAtr {
  const unknown = (historicalBytes = new Uint8Array(0), checksumValid?: boolean): ContactlessAtr => ({
    kind: 'unknown',
    historicalBytes,
    protocols: [],
    checksumValid,
  });
  if (atr.length < 2 || (atr[0] !== 0x3b && atr[0] !== 0x3f)) return unknown();

  // ISO 7816-3 structure: T0, then TA/TB/TC/TD per TD chain, then K historical bytes, then TCK unless only T=0.
  const t0 = atr[1]!;
  const historicalCount = t0 & 0x0f;
  let indicator = t0 >> 4;
  let offset = 2;
  const tdBytes: number[] = [];
  let needsTck = false;
  for (;;) {
    if (indicator & 0x1) offset++;
    if (indicator & 0x2) offset++;
    if (indicator & 0x4) offset++;
    if (!(indicator & 0x8)) break;
    const td = atr[offset];
    if (td === undefined) return unknown();
    tdBytes.push(td);
    offset++;
    if ((td & 0x0f) !== 0) needsTck = true;
    indicator = td >> 4;
  }
  if (offset + historicalCount > atr.length) return unknown();
  const historicalBytes = atr.slice(offset, offset + historicalCount);
  let checksumValid: boolean | undefined;
  if (needsTck && atr.length > offset + historicalCount) {
    let xor = 0;
    for (let i = 1; i <= offset + historicalCount; i++) xor ^= atr[i]!;
    checksumValid = xor === 0;
  }

  // PC/SC Part 3 contactless ATRs carry exactly TD1 = 80 and TD2 = 01 (T=1) and nothing else.
  const contactless = (t0 & 0xf0) === 0x80 && tdBytes.length === 2 && tdBytes[0] === 0x80 && tdBytes[1] === 0x01;
  if (!contactless) return unknown(historicalBytes, checksumValid);

  const h = historicalBytes;
  const isStorage =
    h.length >= 12 && h[0] === 0x80 && h[1] === 0x4f && h[2]! >= 0x0c && PCSC_RID.every((b, i) => h[3 + i] === b);
  if (isStorage) {
    const standard = h[8]!;
    const cardName = (h[9]! << 8) | h[10]!;
    const { technology, protocols: layer3 } = storageStandard(standard);
    // `FF <SAK>` names a card only by its SAK; SAK bit 6 (0x20) promises ISO 14443-4 (JCOP30 reports FF 28).
    const protocols: readonly FrameCapability[] =
      cardName >> 8 === 0xff && (cardName & 0x20) !== 0 ? [...layer3, Capability.Iso14443_4] : layer3;
    const cardLabel = CARD_NAMES.get(cardName);
    return {
      kind: 'storage',
      ...(technology === undefined ? {} : { technology }),
      standard,
      cardName,
      ...(cardLabel === undefined ? {} : { cardLabel }),
      historicalBytes,
      protocols,
      checksumValid,
    };
  }
  return { kind: 'iso14443-4', historicalBytes, protocols: [Capability.Iso14443_4], checksumValid };
}
