export * from './status.js';
export * from './apdu.js';
export * from './channel.js';
