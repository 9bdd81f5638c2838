/**
 * The shared PN53x layer (PN531, PN532, PN533): frame codec, commands, chip models, the {@link Pn53xLink} seam, a
 * controller with one method per chip command, and a polling reader. Transports plug in below the link: raw USB
 * (`@tapline/driver-pn533-usb`) and PC/SC pseudo-APDUs (the ACR122U's PN532) need nothing else from a driver.
 *
 * @packageDocumentation
 */
export * from './frame.js';
export * from './crc.js';
export * from './models.js';
export * from './commands.js';
export * from './link.js';
export * from './controller.js';
export * from './reader.js';
