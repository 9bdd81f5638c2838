import type { FrameCapability } from './capabilities.js';
import type { Reader } from './reader.js';

/** The air interface a tag answered on. */
export type Technology = 'iso14443a' | 'iso14443b' | 'iso15693' | 'felica';

/**
 * What the tag protocols concluded about a chip. Filled in by identification (tag-protocol layer); absent until
 * then.
 */
export interface TagIdentification {
  /** The chip class, for example `spark2`, or `unknown`. */
  readonly chip: string;
  /** The chip model where known, for example `NTAG 424 DNA`. */
  readonly model?: string;
  /** How many extra exchanges identification took. */
  readonly exchanges: number;
}

/**
 * What a reader reports when a tag arrives. Fields are present only when the reader knows them; the UID is in the
 * order it is written in text (MSB first, also for ISO 15693).
 */
export interface TagInfo {
  /** The air interface. */
  readonly technology: Technology;
  /** The UID (or PUPI / IDm), MSB first. */
  readonly uid: Uint8Array;
  /** The ATR that PC/SC synthesised for the tag. */
  readonly atr?: Uint8Array;
  /** ISO 14443-4 answer to select (without the length byte). */
  readonly ats?: Uint8Array;
  /** ISO 14443-A select acknowledge. */
  readonly sak?: number;
  /** ISO 14443-A answer to request, two bytes as sent on air. */
  readonly atqa?: Uint8Array;
  /** Which frame capabilities this particular tag answers on (subset of the reader's). */
  readonly protocols: readonly FrameCapability[];
}

/** A tag in a reader's field. `id` is unique for this presence: the same chip tapped twice gets two ids. */
export interface Tag extends TagInfo {
  /** Unique id of this presence in the field. */
  readonly id: string;
  /** The reader's name. */
  readonly readerName: string;
  /** The reader the tag is on; send frames with `tag.reader.transmit(tag, …)`. */
  readonly reader: Reader;
  /** When the reader saw the tag arrive, in the container clock's milliseconds. */
  readonly arrivedAt: number;
  /** Filled in by identification; absent until then. */
  identification?: TagIdentification;
}
