import {
  AssociatedSession,
  FileTokenStore,
  MemoryTokenStore,
  createDeviceAssociation,
  createScanRequestClient,
  credentialsFromTokens,
  resolveIssuer,
  type Logger,
  type ScanRequestClient,
  type TaplineConfig,
} from '@tapline/core';
import type { ReferencePlatform } from '@tapline/test-fixtures';

/** The platform side of a running agent. */
export interface PlatformConnection {
  readonly client: ScanRequestClient;
  readonly platformUrl: URL;
  /** Who the agent is associated as; null when it is not (yet): it then waits for `tapline login`. */
  readonly identity: { readonly sub: string; readonly issuer: string } | null;
  /** Releases what the connection started (the in-process platform of the demo). */
  close(): Promise<void>;
}

/**
 * The configured platform with the stored association (`tapline login`). Not being associated is no error here:
 * the agent runs, reports `NOT_ASSOCIATED` in its status and picks up a later login by itself.
 */
export async function connectToPlatform(config: TaplineConfig, logger: Logger): Promise<PlatformConnection> {
  const platformUrl = new URL(config.platformUrl ?? 'https://auth.vivokey.com');
  const issuer = resolveIssuer(config);
  const store = new FileTokenStore(config.credentialsFile === undefined ? {} : { file: config.credentialsFile });
  const association = createDeviceAssociation({
    issuer,
    clientId: config.clientId,
    allowInsecureHttp: isLoopbackHttp(issuer),
    logger,
  });
  const session = new AssociatedSession({ store, association, logger });
  const stored = await store.load().catch((error: unknown) => {
    logger.warn('the stored association could not be read', { error });
    return undefined;
  });
  return {
    client: createScanRequestClient({ platformUrl, session, logger }),
    platformUrl,
    identity: stored ? { sub: stored.sub, issuer: stored.issuer } : null,
    close: () => Promise.resolve(),
  };
}

/** Options of {@link connectToSimulatedPlatform}. */
export interface SimulatedPlatformOptions {
  readonly logger: Logger;
  /** How many scan requests the platform holds for the associated profile at start. */
  readonly requests: number;
  /** The platform to use; default a fresh one, closed with the connection. */
  readonly platform?: ReferencePlatform;
  readonly signal?: AbortSignal;
}

/**
 * The demo: Tapline's reference platform in this process, associated by the same device flow `tapline login` runs,
 * with the platform's test hook playing the user who approves on the phone. Tokens stay in memory.
 */
export async function connectToSimulatedPlatform(
  fixtures: typeof import('@tapline/test-fixtures'),
  options: SimulatedPlatformOptions,
): Promise<PlatformConnection> {
  const platform = options.platform ?? (await fixtures.startReferencePlatform());
  const owned = options.platform === undefined;
  try {
    const store = new MemoryTokenStore();
    const association = createDeviceAssociation({
      issuer: platform.issuerUrl,
      clientId: platform.desktopClientId,
      allowInsecureHttp: true,
      logger: options.logger,
    });
    const started = await association.start(options.signal ? { signal: options.signal } : {});
    await platform.approveDevice(started.userCode);
    const tokens = await association.wait(started.handle, {
      signal: options.signal
        ? AbortSignal.any([options.signal, AbortSignal.timeout(10_000)])
        : AbortSignal.timeout(10_000),
    });
    await store.save(credentialsFromTokens(tokens, { issuer: platform.issuerUrl, clientId: platform.desktopClientId }));
    const session = new AssociatedSession({ store, association, logger: options.logger });
    for (let i = 1; i <= options.requests; i++) {
      platform.createScanRequest({
        relyingParty: { id: 'tapline-demo', name: 'Tapline demo' },
        purpose: `Demo scan request ${i} of ${options.requests}`,
      });
    }
    return {
      client: createScanRequestClient({ platformUrl: platform.url, session, logger: options.logger }),
      platformUrl: platform.url,
      identity: { sub: tokens.sub, issuer: platform.issuerUrl.href },
      close: () => (owned ? platform.close() : Promise.resolve()),
    };
  } catch (error) {
    if (owned) await platform.close();
    throw error;
  }
}

function isLoopbackHttp(url: URL): boolean {
  return url.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
}
