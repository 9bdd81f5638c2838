import {
  AssociatedSession,
  DEFAULT_VIVOKEY_BASE_URL,
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
  /**
   * Who the agent is associated as now (re-read, so that a `tapline login` or `logout` while it runs shows); null
   * when it is not: it then waits for `tapline login`.
   */
  identity(): Promise<{ readonly sub: string; readonly issuer: string } | null>;
  /** Releases what the connection started (the in-process platform of the demo). */
  close(): Promise<void>;
}

/**
 * The configured platform with the stored association (`tapline login`). Not being associated is no error here:
 * the agent runs, reports `NOT_ASSOCIATED` in its status and picks up a later login by itself.
 */
export function connectToPlatform(config: TaplineConfig, logger: Logger): Promise<PlatformConnection> {
  const platformUrl = new URL(config.platformUrl ?? DEFAULT_VIVOKEY_BASE_URL);
  const issuer = resolveIssuer(config);
  const store = new FileTokenStore(config.credentialsFile === undefined ? {} : { file: config.credentialsFile });
  const association = createDeviceAssociation({
    issuer,
    clientId: config.clientId,
    allowInsecureHttp: isLoopbackHttp(issuer),
    logger,
  });
  const session = new AssociatedSession({ store, association, logger });
  return Promise.resolve({
    client: createScanRequestClient({ platformUrl, session, logger }),
    platformUrl,
    identity: () => identityOf(session),
    close: () => Promise.resolve(),
  });
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
      identity: () => identityOf(session),
      close: () => (owned ? platform.close() : Promise.resolve()),
    };
  } catch (error) {
    if (owned) await platform.close();
    throw error;
  }
}

/** The stored association, or null when there is none (or it cannot be read: the status says "not associated"). */
async function identityOf(
  session: AssociatedSession,
): Promise<{ readonly sub: string; readonly issuer: string } | null> {
  try {
    const { sub, issuer } = await session.whoami();
    return { sub, issuer };
  } catch {
    return null;
  }
}

function isLoopbackHttp(url: URL): boolean {
  return url.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
}
