import type { FrameCapability } from '../model/capabilities.js';
import type { TransmitOptions } from '../model/reader.js';
import type { Tag } from '../model/tag.js';

/** Per-exchange options of a {@link FrameExchange}. */
export type ExchangeOptions = TransmitOptions;

/**
 * One request/answer with a tag, as the tag protocols see a reader: bytes in, bytes out, with a timeout and an
 * abort signal. Protocol code depends on this function type only, so it runs the same over a real reader, the
 * simulator, or a scripted test.
 */
export type FrameExchange = (frame: Uint8Array, options?: ExchangeOptions) => Promise<Uint8Array>;

/** The {@link FrameExchange} that sends `capability` frames to `tag` through its reader. */
export function tagExchange(tag: Tag, capability: FrameCapability): FrameExchange {
  return (frame, options) => tag.reader.transmit(tag, capability, frame, options);
}
