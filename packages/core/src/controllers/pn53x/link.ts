/**
 * The seam between the PN53x chip logic and a transport (libnfc's `struct pn53x_io`): a command payload goes in, the
 * chip's answer comes out. Raw USB (framing, ACK, NACK) and PC/SC (pseudo-APDU `FF 00 00 00 Lc D4 …`) each implement
 * it; nothing above it knows which one it runs on.
 *
 * @packageDocumentation
 */

/** Per-exchange options of a {@link Pn53xLink}. */
export interface Pn53xLinkOptions {
  /** How long the chip may take to answer, in milliseconds; then the exchange fails with `TIMEOUT`. */
  readonly timeoutMs: number;
  /** Cancels the exchange (the link aborts the chip's command where it can); it then fails with `ABORTED`. */
  readonly signal?: AbortSignal;
}

/**
 * A transport to a PN53x chip.
 *
 * `exchange` takes a command payload (`D4 <cmd> …`) and resolves with the chip's answer payload (`D5 <cmd+1> …`),
 * framing and transport status stripped. It runs one exchange at a time. It fails with a `TaplineError`:
 * `TIMEOUT`, `ABORTED`, `READER_GONE` when the device went away (every later call fails the same way), or
 * `PROTOCOL_ERROR` for answers the transport could not make sense of (the chip's syntax-error frame included).
 * Chip status bytes inside the answer are the caller's business.
 */
export interface Pn53xLink {
  exchange(commandPayload: Uint8Array, options: Pn53xLinkOptions): Promise<Uint8Array>;
  /**
   * Aborts the command the chip is running (the host ACK frame on USB). Optional, like libnfc's NULL slots: PC/SC
   * cannot send a bare ACK to the PN532 behind an ACR122U.
   */
  abort?(): Promise<void>;
}
