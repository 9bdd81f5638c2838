/**
 * The VivoKey platform: the Auth API client, authenticity-token verification, the relay, and the association of this
 * computer with a VivoKey account (device login, token store, access tokens) with the scan-request API it opens.
 *
 * @packageDocumentation
 */
export * from './auth-client.js';
export * from './jwt.js';
export type { FetchLike } from './http.js';
export * from './relay.js';
export * from './device-association.js';
export * from './token-store.js';
export * from './associated-session.js';
export * from './scan-request-client.js';
