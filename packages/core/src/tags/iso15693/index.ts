export * from './flags.js';
export * from './crc.js';
export * from './uid.js';
export * from './frames.js';
export * from './replies.js';
export * from './tam1.js';
export * from './iso15693-tag.js';
