/**
 * What a reader can do. A driver declares its capabilities; a reader asked for anything else fails with
 * `UNSUPPORTED_CAPABILITY` before a single byte goes out.
 */
export const Capability = {
  /** Raw ISO 14443-A frames (Type 2 tag commands such as READ `30`, GET_VERSION `60`), CRC handled by the reader. */
  Iso14443aRaw: 'iso14443a-raw',
  /** ISO 14443-4 (ISO-DEP) APDUs, A or B. */
  Iso14443_4: 'iso14443-4',
  /** Raw ISO 14443-B frames. */
  Iso14443b: 'iso14443b',
  /** ISO 15693 (NFC-V) request frames without SOF/CRC; the reader adds and checks the CRC. */
  Iso15693: 'iso15693',
  /** FeliCa (NFC-F) commands. */
  Felica: 'felica',
  /** A controllable LED. */
  Led: 'led',
  /** A controllable buzzer. */
  Buzzer: 'buzzer',
} as const;

/** One capability; see {@link Capability}. */
export type Capability = (typeof Capability)[keyof typeof Capability];

/** Every capability, in a stable order (for listings and JSON). */
export const ALL_CAPABILITIES: readonly Capability[] = Object.freeze(Object.values(Capability));

/** The capabilities that carry frames to a tag, i.e. the ones `Reader.transmit` accepts. */
export type FrameCapability = Exclude<Capability, 'led' | 'buzzer'>;

/** The capabilities that carry frames, in a stable order. */
export const FRAME_CAPABILITIES: readonly FrameCapability[] = Object.freeze([
  Capability.Iso14443aRaw,
  Capability.Iso14443_4,
  Capability.Iso14443b,
  Capability.Iso15693,
  Capability.Felica,
]);

/** True for a known capability name. */
export function isCapability(value: string): value is Capability {
  return (ALL_CAPABILITIES as readonly string[]).includes(value);
}

/** Sorts capabilities into the stable order of {@link ALL_CAPABILITIES}. */
export function sortCapabilities(capabilities: Iterable<Capability>): Capability[] {
  const set = new Set(capabilities);
  return ALL_CAPABILITIES.filter((c) => set.has(c));
}
