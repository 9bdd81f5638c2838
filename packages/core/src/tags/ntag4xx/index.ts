/**
 * NTAG 413 DNA / NTAG 424 DNA (VivoKey Spark 2): commands, AuthenticateEV2First (local and split), and EV2 secure
 * messaging.
 *
 * @packageDocumentation
 */
export * from './session.js';
export * from './native.js';
export * from './secure-messaging.js';
export * from './auth.js';
export * from './commands.js';
