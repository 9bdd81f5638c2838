/**
 * The PC/SC Part 3 transparent-session layer (readers.md §4.1), shared by every driver whose reader speaks `FF C2`
 * (the generic PC/SC driver, ACS ACR1252U, Identiv uTrust): BER-TLV codec, command builders, response parsers with
 * the `C0` generic error status, the version-object probe and {@link Part3Session} over a `PcscCard`.
 *
 * @packageDocumentation
 */
export * from './tlv.js';
export * from './commands.js';
export * from './response.js';
export * from './session.js';
