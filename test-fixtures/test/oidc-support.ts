import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import type { ReferencePlatform, ApproveDeviceOptions } from '../src/index.js';

/**
 * openid-client 6 as the desktop's OAuth client in these tests. test-fixtures does not depend on it (it is a
 * dependency of @tapline/core, which test-fixtures does), so it is resolved from @tapline/core's own package and
 * typed here by the part the tests use, the signatures of openid-client 6.8.
 */

/** openid-client's `Configuration`: the discovered server and the client. */
export interface ClientConfiguration {
  serverMetadata(): Readonly<Record<string, unknown>>;
}

/** A device authorization response (RFC 8628 §3.2). */
export interface DeviceAuthorization {
  readonly device_code: string;
  readonly user_code: string;
  readonly verification_uri: string;
  readonly verification_uri_complete?: string;
  readonly expires_in: number;
  readonly interval?: number;
}

/** A token endpoint response with openid-client's helpers. */
export interface TokenSet {
  readonly access_token: string;
  readonly token_type: string;
  readonly expires_in?: number;
  readonly refresh_token?: string;
  readonly id_token?: string;
  readonly scope?: string;
  claims(): { readonly sub: string; readonly [claim: string]: unknown } | undefined;
}

/** The openid-client functions the tests call. */
export interface OpenIdClient {
  discovery(
    server: URL,
    clientId: string,
    metadata: undefined,
    clientAuthentication: unknown,
    options: { readonly execute: readonly ((config: ClientConfiguration) => void)[] },
  ): Promise<ClientConfiguration>;
  None(): unknown;
  allowInsecureRequests(config: ClientConfiguration): void;
  initiateDeviceAuthorization(
    config: ClientConfiguration,
    parameters: Record<string, string>,
  ): Promise<DeviceAuthorization>;
  pollDeviceAuthorizationGrant(
    config: ClientConfiguration,
    deviceAuthorization: DeviceAuthorization,
    parameters?: Record<string, string>,
    options?: { readonly signal?: AbortSignal },
  ): Promise<TokenSet>;
  refreshTokenGrant(config: ClientConfiguration, refreshToken: string): Promise<TokenSet>;
  tokenRevocation(config: ClientConfiguration, token: string, parameters?: Record<string, string>): Promise<void>;
  fetchUserInfo(
    config: ClientConfiguration,
    accessToken: string,
    expectedSubject: string,
  ): Promise<{ readonly sub: string }>;
}

let loaded: Promise<OpenIdClient> | undefined;

/** openid-client, from @tapline/core's dependencies. */
export function openIdClient(): Promise<OpenIdClient> {
  loaded ??= (async () => {
    const corePackage = createRequire(import.meta.url).resolve('@tapline/core/package.json');
    const entry = createRequire(corePackage).resolve('openid-client');
    return (await import(pathToFileURL(entry).href)) as OpenIdClient;
  })();
  return loaded;
}

/** A discovered client configuration for `clientId` (default the desktop's) on the platform's issuer, over http. */
export async function clientFor(platform: ReferencePlatform, clientId?: string): Promise<ClientConfiguration> {
  const client = await openIdClient();
  return client.discovery(platform.issuerUrl, clientId ?? platform.desktopClientId, undefined, client.None(), {
    // The reference platform listens on plain http on loopback; openid-client refuses http unless told.
    execute: [client.allowInsecureRequests],
  });
}

/** The scopes the desktop asks for. */
export const DESKTOP_SCOPE = 'openid offline_access scan_requests';

/** Options of {@link associate}. */
export interface AssociateOptions extends ApproveDeviceOptions {
  readonly clientId?: string;
  readonly scope?: string;
}

/** How long a test waits for the device flow to finish. */
const POLL_TIMEOUT_MS = 5000;

/**
 * The whole device flow: device authorization, the user approving on the phone ({@link ReferencePlatform.approveDevice}),
 * then the token poll. Returns the tokens and the configuration they were obtained with.
 */
export async function associate(
  platform: ReferencePlatform,
  options: AssociateOptions = {},
): Promise<{
  readonly tokens: TokenSet;
  readonly config: ClientConfiguration;
  readonly authorization: DeviceAuthorization;
}> {
  const client = await openIdClient();
  const config = await clientFor(platform, options.clientId);
  const authorization = await client.initiateDeviceAuthorization(config, { scope: options.scope ?? DESKTOP_SCOPE });
  await platform.approveDevice(authorization.user_code, {
    ...(options.account === undefined ? {} : { account: options.account }),
    ...(options.chipUid === undefined ? {} : { chipUid: options.chipUid }),
  });
  const tokens = await client.pollDeviceAuthorizationGrant(config, authorization, undefined, {
    signal: AbortSignal.timeout(POLL_TIMEOUT_MS),
  });
  return { tokens, config, authorization };
}

/** Polls `check` every 20 ms until it returns true, failing after `timeoutMs`. */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 3000,
  what = 'condition',
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}.`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
