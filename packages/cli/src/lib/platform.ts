import { Flags } from '@oclif/core';
import type {
  AssociatedSession,
  DeviceAssociation,
  Logger,
  ScanRequestClient,
  TaplineConfig,
  TokenStore,
} from '@tapline/core';

/** Flags of the commands that talk to the platform as the associated user (login, logout, whoami, requests). */
export const associationFlags = {
  platform: Flags.string({
    summary: 'The platform URL (default: TAPLINE_PLATFORM_URL, "platformUrl" in the config, or auth.vivokey.com).',
    helpValue: 'URL',
  }),
  issuer: Flags.string({
    summary: 'The OpenID Connect issuer the platform associates clients with (default: <platform>/oidc).',
    helpValue: 'URL',
  }),
};

/** Everything the association commands need, built from the config and the flags. */
export interface AssociationContext {
  readonly core: typeof import('@tapline/core');
  readonly config: TaplineConfig;
  readonly logger: Logger;
  readonly platformUrl: URL;
  readonly issuer: URL;
  readonly clientId: string;
  readonly store: TokenStore;
  readonly association: DeviceAssociation;
  readonly session: AssociatedSession;
  readonly client: ScanRequestClient;
}

/**
 * Builds the platform side from the config (`platformUrl`, `issuer`, `clientId`, `credentialsFile`) and the flags.
 * Loads @tapline/core lazily, like every command, so that `--help` stays fast.
 */
export async function associationContext(flags: {
  readonly platform?: string | undefined;
  readonly issuer?: string | undefined;
}): Promise<AssociationContext> {
  const core = await import('@tapline/core');
  const config = core.loadConfig({
    overrides: {
      ...(flags.platform === undefined ? {} : { platformUrl: flags.platform }),
      ...(flags.issuer === undefined ? {} : { issuer: flags.issuer }),
    },
  });
  const logger = core.createLogger({ level: config.trace ? 'trace' : config.logLevel });
  const platformUrl = new URL(config.platformUrl ?? core.DEFAULT_VIVOKEY_BASE_URL);
  const issuer = core.resolveIssuer(config);
  const clientId = config.clientId ?? core.DEFAULT_CLIENT_ID;
  const store = new core.FileTokenStore(config.credentialsFile === undefined ? {} : { file: config.credentialsFile });
  const association = core.createDeviceAssociation({
    issuer,
    clientId,
    // Only ever honoured for loopback issuers (a local reference platform); refused for anything else.
    allowInsecureHttp: isLoopback(issuer),
    logger,
  });
  const session = new core.AssociatedSession({ store, association, logger });
  const client = core.createScanRequestClient({ platformUrl, session, logger });
  return { core, config, logger, platformUrl, issuer, clientId, store, association, session, client };
}

function isLoopback(url: URL): boolean {
  return url.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
}
