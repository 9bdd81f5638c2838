import { Capability, type FrameCapability, type TagInfo } from '@tapline/core';

/**
 * A chip the simulator (and later the PC/SC and USB fakes) can present. `handle` answers one frame; it must not do
 * I/O, so that the same chip serves every test stack.
 */
export interface VirtualChip {
  /** What a reader reports when the chip arrives. */
  readonly info: TagInfo;
  /** Answers one frame sent with `capability`. Throwing means "no answer" (the reader reports a timeout). */
  handle(capability: FrameCapability, frame: Uint8Array): Uint8Array;
}

/** ISO 7816-4 status words the plain chip uses. */
const SW_INS_NOT_SUPPORTED = Uint8Array.of(0x6d, 0x00);
const SW_FILE_NOT_FOUND = Uint8Array.of(0x6a, 0x82);

/** Options of {@link plainIsoDepChip}. */
export interface PlainIsoDepChipOptions {
  /** 7-byte UID, MSB first. Default `04 A1 B2 C3 D4 E5 F6`. */
  readonly uid?: Uint8Array;
}

/**
 * An ISO 14443-4 type A chip with no applications: SELECT answers `6A 82`, anything else `6D 00`. Its reader data
 * match an NTAG 424 DNA's (SAK 20, ATQA 44 03, ATS `06 77 77 71 02 80`, PC/SC ATR `3B 81 80 01 80 80`), so
 * identification has something realistic to look at; the full Spark 2 chip arrives with the tag protocols.
 */
export function plainIsoDepChip(options: PlainIsoDepChipOptions = {}): VirtualChip {
  const uid = options.uid ?? Uint8Array.of(0x04, 0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6);
  return {
    info: {
      technology: 'iso14443a',
      uid,
      atr: Uint8Array.of(0x3b, 0x81, 0x80, 0x01, 0x80, 0x80),
      ats: Uint8Array.of(0x77, 0x77, 0x71, 0x02, 0x80),
      sak: 0x20,
      atqa: Uint8Array.of(0x44, 0x03),
      protocols: [Capability.Iso14443_4, Capability.Iso14443aRaw],
    },
    handle(capability, frame) {
      if (capability === Capability.Iso14443_4) {
        return frame[1] === 0xa4 ? SW_FILE_NOT_FOUND : SW_INS_NOT_SUPPORTED;
      }
      // Raw ISO 14443-3 frames to a layer-4 chip in ISO-DEP state go unanswered.
      throw new Error('no answer');
    },
  };
}
