/**
 * The VivoKey platform: the Auth API client and authenticity-token verification.
 *
 * @packageDocumentation
 */
export * from './auth-client.js';
export * from './jwt.js';
export type { FetchLike } from './http.js';
export * from './relay.js';
