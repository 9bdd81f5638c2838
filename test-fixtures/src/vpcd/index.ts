/**
 * The real-pcscd test stack: a private pcscd with a vsmartcard-vpcd reader that carries a reader model's name, and
 * virtual cards that speak the vpicc protocol and emulate the reader's firmware in front of the virtual chips.
 *
 * ```ts
 * const pcscd = await startPcscd({ emulation: acr122Emulation }); // sets PCSCLITE_CSOCK_NAME for this process
 * const card = pcscd.card(); // runs in a worker thread
 * await card.insert({ kind: 'ntag215' }); // "ACS ACR122U PICC Interface 00 00" now reports PRESENT
 * // … createNativePcscTransport / createContainer, exchange APDUs …
 * await pcscd.stop();
 * ```
 *
 * @packageDocumentation
 */
export * from './emulation.js';
export * from './acr122.js';
export * from './acr1252.js';
export * from './utrust3720.js';
export * from './vpicc.js';
export * from './isolated-card.js';
export * from './nodelay.js';
export * from './stack.js';
export * from './pcscd.js';
