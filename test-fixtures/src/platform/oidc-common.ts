import { generateKeyPairSync } from 'node:crypto';
import type { OutgoingHttpHeaders } from 'node:http';
import { calculateJwkThumbprint, type JWK } from 'jose';

/**
 * What the platform and its OpenID Provider share: names, options, counters. Kept apart from `oidc.ts`, which loads
 * oidc-provider, so that the platform loads the provider only when a request needs it: a platform used only for the
 * Auth API (`tapline verify --sim`) never pays for it nor hears its Node-version warning.
 *
 * @packageDocumentation
 */

/** The path the provider is mounted under. */
export const OIDC_PREFIX = '/oidc';

/** The desktop client's id (protocol §2.1). */
export const DESKTOP_CLIENT_ID = 'tapline-desktop';

/** The scopes the platform knows, and what an approval grants. */
export const OIDC_SCOPES = ['openid', 'offline_access', 'scan_requests'] as const;

/** The scope the scan-request endpoints require. */
export const SCAN_REQUESTS_SCOPE = 'scan_requests';

/** A public device-flow client the provider registers. */
export interface DeviceClient {
  readonly clientId: string;
  readonly clientName: string;
}

/** Counters of the OpenID Provider. */
export interface OidcStats {
  /** Device authorization requests answered with a user code. */
  readonly deviceAuthorizations: number;
  /** Device logins approved through `approveDevice`. */
  readonly approvals: number;
  /** Device logins declined through `denyDevice`. */
  readonly denials: number;
  /** Device codes exchanged for tokens. */
  readonly tokenGrants: number;
  /** Refresh-token grants answered with new tokens. */
  readonly refreshes: number;
  /** Rotated refresh tokens presented again, each of which revoked its grant. */
  readonly refreshReuseDetected: number;
  /** Revocation requests accepted (RFC 7009 accepts unknown tokens too). */
  readonly revocations: number;
}

/** What the provider needs from the platform. */
export interface OidcSetup {
  /** `<platform url>/oidc`. */
  readonly issuer: URL;
  readonly clients: readonly DeviceClient[];
  readonly accessTokenTtlSec: number;
  readonly refreshTokenTtlSec: number;
  readonly deviceCodeTtlSec: number;
  /** The `interval` of device authorization responses, in seconds. */
  readonly deviceInterval: number;
  /** Whether an account exists. */
  readonly hasAccount: (account: string) => boolean;
  /** Every account id. */
  readonly accountIds: () => readonly string[];
  /** An account's pairwise subject in a sector (a client id). */
  readonly subject: (account: string, sector: string) => string;
  /** Headers that mark the platform's own page requests (see `ReferenceOidc.approve`). */
  readonly internalHeaders: Readonly<Record<string, string>>;
  /** The counters the provider adds to; the platform owns them, so they exist before the provider does. */
  readonly stats: MutableOidcStats;
}

/** A response the provider produced, held back so that the platform can write it (or a fault instead). */
export interface OidcReply {
  readonly status: number;
  readonly text: string;
  readonly headers: OutgoingHttpHeaders;
}

/** {@link OidcStats}, writable. */
export type MutableOidcStats = { -readonly [K in keyof OidcStats]: number };

/** Zero counters. */
export function emptyOidcStats(): MutableOidcStats {
  return {
    deviceAuthorizations: 0,
    approvals: 0,
    denials: 0,
    tokenGrants: 0,
    refreshes: 0,
    refreshReuseDetected: 0,
    revocations: 0,
  };
}

/** Generates the ID token signing key: ES256, as a private JWK (oidc-provider signs with JWKs, not key objects). */
export async function generateOidcSigningKey(): Promise<JWK> {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' }) as JWK;
  const kid = await calculateJwkThumbprint({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y }, 'sha256');
  return { ...jwk, kid, alg: 'ES256', use: 'sig' };
}
