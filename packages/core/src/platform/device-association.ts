/**
 * Associating this computer with a VivoKey account: the OAuth 2.0 Device Authorization Grant (RFC 8628) against the
 * platform's OpenID Provider, with refresh, revocation and userinfo, over openid-client 6.
 *
 * openid-client (and its JOSE stack) is imported on first use, not when `@tapline/core` loads: most commands never
 * associate, and the CLI's start-up time matters.
 *
 * @packageDocumentation
 */
import type * as OpenIdClient from 'openid-client';
import {
  ErrorCode,
  TaplineError,
  abortError,
  associationDeniedError,
  associationExpiredError,
  isTaplineError,
  notAssociatedError,
} from '../model/errors.js';
import { systemClock, type Clock } from '../runtime/clock.js';
import { silentLogger, type Logger } from '../runtime/logger.js';
import type { TaplineConfig } from '../runtime/config.js';
import { DEFAULT_VIVOKEY_BASE_URL } from './auth-client.js';
import {
  checkTimeout,
  isTokenSafeUrl,
  networkErrorCode,
  sanitizeCause,
  scrubText,
  withCallDeadline,
  type FetchLike,
} from './http.js';

/** The scopes Tapline asks for: an ID token, a refresh token, and the scan-request API. */
export const ASSOCIATION_SCOPE = 'openid offline_access scan_requests';

/** Default timeout of each request to the OpenID Provider (discovery, one poll, revocation, userinfo). */
export const DEFAULT_ASSOCIATION_TIMEOUT_MS = 10_000;

/**
 * How long a refresh may take, whatever {@link DeviceAssociationOptions.timeoutMs} says. Refresh tokens rotate: once
 * the request is sent, the provider may already have spent the token it carried, and a client that gives up and
 * sends it again makes the provider revoke the whole grant (reuse detection). So a refresh is not abandoned at the
 * ordinary 10 s; it gets this much longer cap, for a provider that is slow but alive. It must stay below the age at
 * which the credentials lock counts as abandoned (`CREDENTIALS_STALE_LOCK_MS`, 120 s), because the session refreshes
 * while holding that lock, and another process must not take the lock over while the refresh is still in flight.
 */
export const REFRESH_TIMEOUT_MS = 60_000;

/**
 * The scopes a device login must have been granted for the association to work: the scan-request API, and
 * `offline_access`, without which there is no refresh token and the association dies with its first access token.
 * `openid` is checked through the ID token instead.
 */
export const REQUIRED_ASSOCIATION_SCOPES: readonly string[] = Object.freeze(['scan_requests', 'offline_access']);

/**
 * Lifetime assumed for an access token whose provider did not say (`expires_in` is only RECOMMENDED): short, so that
 * the token is refreshed early rather than used after it expired.
 */
export const ASSUMED_ACCESS_TOKEN_LIFETIME_MS = 60_000;

/** Device-flow poll interval when the provider sends none (RFC 8628 §3.2). */
const DEFAULT_POLL_INTERVAL_SEC = 5;
/** What `slow_down` adds to the poll interval (RFC 8628 §3.5). */
const SLOW_DOWN_STEP_SEC = 5;
/** A device login gives up after this many unreachable polls in a row (fewer are ridden out: the wait is long). */
const MAX_CONSECUTIVE_POLL_FAILURES = 3;
const MAX_POLL_BACKOFF_SEC = 60;
const MAX_TOKEN_CHARS = 16 * 1024;
const MAX_USER_CODE_CHARS = 64;
/** RFC 6750 b64token characters and a little more: anything that can travel in an `Authorization` header. */
const HEADER_SAFE_TOKEN = /^[\x21-\x7e]+$/;

const NETWORK_HINT = 'Check the network connection and the issuer (--issuer or TAPLINE_ISSUER); then try again.';
const TIMEOUT_HINT = 'The VivoKey login service is slow or unreachable: check the network, then try again.';
const PROTOCOL_HINT =
  'Check that the issuer (--issuer or TAPLINE_ISSUER) is the VivoKey OpenID Provider; if it is, please report this.';

/** Options of {@link createDeviceAssociation}. */
export interface DeviceAssociationOptions {
  /** The OpenID Provider's issuer identifier (discovery at `<issuer>/.well-known/openid-configuration`). */
  readonly issuer: URL;
  /** The public client Tapline logs in as; see `DEFAULT_CLIENT_ID`. */
  readonly clientId: string;
  /**
   * Allows an `http://` issuer, only on this computer (`localhost`, `127.x.y.z`, `[::1]`): for tests and the
   * simulator. Any other `http://` issuer, or endpoint, is refused with `INVALID_ARGUMENT`.
   */
  readonly allowInsecureHttp?: boolean;
  /**
   * Timeout of each request to the provider, in ms. Default {@link DEFAULT_ASSOCIATION_TIMEOUT_MS}. A refresh is the
   * exception: it always gets {@link REFRESH_TIMEOUT_MS}.
   */
  readonly timeoutMs?: number;
  /** Where debug lines about provider calls go (never with a token or the device code). Default: nowhere. */
  readonly logger?: Logger;
  /** The scopes asked for. Default {@link ASSOCIATION_SCOPE}. */
  readonly scope?: string;
  /** Used for every request. Default `globalThis.fetch`. */
  readonly fetch?: FetchLike;
  /** Stamps expiry times. Default: the system clock. */
  readonly clock?: Clock;
  /**
   * Waits between two polls of a device login; must reject when `signal` aborts. Default: a timer. Tests pass their
   * own to observe the intervals without spending them.
   */
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

/** Options of one call to the provider. */
export interface AssociationCallOptions {
  /**
   * Cancels the call; it then fails with `ABORTED` (or the signal's Tapline reason). For {@link
   * DeviceAssociation.refresh}, use it only to shut down: a refresh aborted after it was sent leaves the fate of the
   * refresh token unknown.
   */
  readonly signal?: AbortSignal;
}

/** Options of {@link DeviceAssociation.start}. */
export interface DeviceLoginStartOptions extends AssociationCallOptions {
  /** Scopes for this login instead of the association's. */
  readonly scope?: string;
}

/**
 * An opaque reference to a device login in progress, for {@link DeviceAssociation.wait}. The device code stays inside
 * the association that started the login: it is a secret, and the handle carries nothing that could be logged.
 */
export interface DeviceLoginHandle {
  /** Tells the handle apart from other objects; it carries nothing else. */
  readonly kind: 'device-login';
}

/** What {@link DeviceAssociation.start} returns: what to show the person, and the handle to wait with. */
export interface DeviceLogin {
  /** The code the person types on the VivoKey side. Safe to show and to log. */
  readonly userCode: string;
  /** Where the person types it. */
  readonly verificationUri: string;
  /** The same page with the code filled in (for a QR code or a link), when the provider offers one. */
  readonly verificationUriComplete: string | undefined;
  /** When the code stops working, in ms since the epoch (the association's clock). */
  readonly expiresAt: number;
  /** The provider's poll interval in seconds. */
  readonly intervalSec: number;
  /** Pass to {@link DeviceAssociation.wait}. */
  readonly handle: DeviceLoginHandle;
}

/** The tokens a completed device login yields. Secrets: never log them. */
export interface AssociationTokens {
  /** The bearer token for the platform's resource endpoints. */
  readonly accessToken: string;
  /** When {@link accessToken} expires, in ms since the epoch. */
  readonly accessTokenExpiresAt: number;
  /** The long-lived token that obtains new access tokens. It rotates: each use returns a new one. */
  readonly refreshToken: string;
  /** The scopes granted, space-separated. */
  readonly scope: string;
  /** The account's subject identifier for this client, from the ID token (pairwise: it differs per client). */
  readonly sub: string;
}

/** What a refresh yields. Secrets: never log them. */
export interface RefreshedTokens {
  /** The new bearer token for the platform's resource endpoints. */
  readonly accessToken: string;
  /** When {@link accessToken} expires, in ms since the epoch (the association's clock). */
  readonly accessTokenExpiresAt: number;
  /** The refresh token to use next: the new one when the provider rotated it, else the one just used. */
  readonly refreshToken: string;
  /** True when the provider issued a new refresh token; the one sent is then spent and must never be sent again. */
  readonly refreshTokenRotated: boolean;
  /** The scopes granted, space-separated (the ones asked for when the provider did not say). */
  readonly scope: string;
  /** The `sub` of the ID token that came with the refresh, if one did. */
  readonly sub: string | undefined;
}

/** The claims the provider's userinfo endpoint returned; `sub` is always there. */
export interface UserInfo {
  /** The account's subject identifier for this client. */
  readonly sub: string;
  /** Any other claim the provider returned (profile, e-mail, …), unchecked. */
  readonly [claim: string]: unknown;
}

/** Options of {@link DeviceAssociation.revoke}. */
export interface RevokeOptions extends AssociationCallOptions {
  /** What kind of token this is, to spare the provider a lookup. */
  readonly tokenTypeHint?: 'refresh_token' | 'access_token';
}

/** Options of {@link DeviceAssociation.userinfo}. */
export interface UserInfoOptions extends AssociationCallOptions {
  /** The `sub` the answer must carry (the association's); a different one fails with `PROTOCOL_ERROR`. */
  readonly expectedSubject?: string;
}

/**
 * The device login and token operations of one OpenID Provider and client. Every method fails with a typed error:
 *
 * - `access_denied` → `ASSOCIATION_DENIED`; `expired_token` (or the code's lifetime running out) →
 *   `ASSOCIATION_EXPIRED`; `invalid_grant` on refresh → `NOT_ASSOCIATED`;
 * - network failure, 5xx, 408, 429, `temporarily_unavailable` → `PLATFORM_UNAVAILABLE` (cause attached, scrubbed);
 * - any other OAuth error → `PLATFORM_REJECTED` with the OAuth `error` code in `details.error`;
 * - a malformed answer (not JSON, missing fields, a bad ID token, a redirect) → `PROTOCOL_ERROR`;
 * - deadline → `TIMEOUT`; the caller's signal → `ABORTED`.
 *
 * No message, detail or cause carries a token or the device code.
 */
export interface DeviceAssociation {
  /** The issuer identifier. */
  readonly issuer: URL;
  /** The client id. */
  readonly clientId: string;
  /** Starts a device login: the provider hands out a user code for the person to approve. */
  start(options?: DeviceLoginStartOptions): Promise<DeviceLogin>;
  /**
   * Polls until the person approves (→ tokens), declines (`ASSOCIATION_DENIED`) or the code expires
   * (`ASSOCIATION_EXPIRED`), at the provider's interval (plus 5 s after each `slow_down`). A few unreachable polls in
   * a row are tolerated with a growing pause. A handle can be waited on once.
   *
   * An approval is checked before it is returned: a grant without {@link REQUIRED_ASSOCIATION_SCOPES} (the person
   * approved only some of the permissions) fails with `PLATFORM_REJECTED`, `details.error: insufficient_scope`; one
   * without a refresh token with `details.error: no_refresh_token`; one without an ID token with `PROTOCOL_ERROR`.
   * The tokens of a refused grant are not returned, so nothing is stored.
   */
  wait(handle: DeviceLoginHandle, options?: AssociationCallOptions): Promise<AssociationTokens>;
  /**
   * Exchanges a refresh token for a new access token (and, when the provider rotates them, a new refresh token).
   * Never retried here: once the provider answered, the refresh token sent may be spent. Runs under
   * {@link REFRESH_TIMEOUT_MS}, not the ordinary timeout; the signal is for shutting down only.
   */
  refresh(refreshToken: string, options?: AssociationCallOptions): Promise<RefreshedTokens>;
  /** Revokes a token at the provider (RFC 7009); revoking a token that is already invalid succeeds. */
  revoke(token: string, options?: RevokeOptions): Promise<void>;
  /** The account's claims from the userinfo endpoint. */
  userinfo(accessToken: string, options?: UserInfoOptions): Promise<UserInfo>;
}

/** Creates a {@link DeviceAssociation}. Invalid options (an `http://` issuer not on this computer) fail at once. */
export function createDeviceAssociation(options: DeviceAssociationOptions): DeviceAssociation {
  return new OpenIdDeviceAssociation(options);
}

/**
 * The issuer of a configuration: `config.issuer` when set, else `oidc` under the platform URL (default
 * https://auth.vivokey.com). A path prefix of the platform URL is kept, as the platform clients keep it:
 * `https://p.example/api` gives `https://p.example/api/oidc`. Fails with `INVALID_ARGUMENT` for a URL that does not
 * parse.
 */
export function resolveIssuer(config: Pick<TaplineConfig, 'issuer' | 'platformUrl'>): URL {
  try {
    if (config.issuer !== undefined) return new URL(config.issuer);
    const base = new URL(config.platformUrl ?? DEFAULT_VIVOKEY_BASE_URL);
    if (!base.pathname.endsWith('/')) base.pathname = `${base.pathname}/`;
    return new URL('oidc', base);
  } catch (cause) {
    throw new TaplineError(
      ErrorCode.InvalidArgument,
      'The issuer (or the platform URL it derives from) is not a URL.',
      {
        cause,
        hint: 'Set an absolute URL such as https://auth.vivokey.com/oidc (TAPLINE_ISSUER).',
      },
    );
  }
}

type OpenIdModule = typeof OpenIdClient;
type TokenResponse = Awaited<ReturnType<OpenIdModule['refreshTokenGrant']>>;
type Operation = 'discovery' | 'device-authorization' | 'device-poll' | 'refresh' | 'revoke' | 'userinfo';

const OPERATION_WHAT: Readonly<Record<Operation, string>> = {
  discovery: 'Discovering the OpenID Provider',
  'device-authorization': 'Starting the device login',
  'device-poll': 'Waiting for the device login',
  refresh: 'Refreshing the access token',
  revoke: 'Revoking a token',
  userinfo: 'Reading the account (userinfo)',
};

let openIdModule: Promise<OpenIdModule> | undefined;

/** openid-client, loaded once on first use. */
function loadOpenIdClient(): Promise<OpenIdModule> {
  openIdModule ??= import('openid-client').catch((error: unknown) => {
    openIdModule = undefined;
    throw new TaplineError(ErrorCode.Internal, 'The OpenID client library (openid-client) could not be loaded.', {
      cause: error,
      hint: 'Reinstall Tapline; the package openid-client is missing or broken.',
    });
  });
  return openIdModule;
}

/** What a device login in progress keeps out of its handle. */
interface PendingLogin {
  readonly owner: OpenIdDeviceAssociation;
  readonly deviceCode: string;
  readonly expiresAt: number;
  readonly intervalSec: number;
  readonly scope: string;
  state: 'ready' | 'waiting' | 'done';
}

const pendingLogins = new WeakMap<DeviceLoginHandle, PendingLogin>();

/** A checked token endpoint answer, before the operation decides what a missing refresh token means. */
interface IssuedTokens {
  readonly accessToken: string;
  readonly accessTokenExpiresAt: number;
  /** `undefined` when the answer carried none. */
  readonly refreshToken: string | undefined;
  readonly scope: string;
  readonly sub: string | undefined;
}

class OpenIdDeviceAssociation implements DeviceAssociation {
  readonly issuer: URL;
  readonly clientId: string;
  readonly #allowInsecureHttp: boolean;
  readonly #timeoutMs: number;
  readonly #log: Logger;
  readonly #scope: string;
  readonly #fetch: FetchLike;
  readonly #clock: Clock;
  readonly #sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  #metadata: Promise<OpenIdClient.ServerMetadata> | undefined;

  constructor(options: DeviceAssociationOptions) {
    if (!(options.issuer instanceof URL)) {
      throw new TaplineError(ErrorCode.InvalidArgument, 'The issuer must be a URL.');
    }
    this.#allowInsecureHttp = options.allowInsecureHttp === true;
    this.issuer = new URL(options.issuer.href);
    this.#checkUrl(this.issuer, 'issuer');
    if (this.issuer.search !== '' || this.issuer.hash !== '' || this.issuer.username !== '') {
      throw new TaplineError(
        ErrorCode.InvalidArgument,
        'The issuer must not carry credentials, a query or a fragment.',
      );
    }
    if (typeof options.clientId !== 'string' || !/^[\x21-\x7e]{1,255}$/.test(options.clientId)) {
      throw new TaplineError(ErrorCode.InvalidArgument, 'The OAuth client id must be 1 to 255 printable characters.');
    }
    this.clientId = options.clientId;
    this.#timeoutMs = checkTimeout(options.timeoutMs, DEFAULT_ASSOCIATION_TIMEOUT_MS, 'timeoutMs');
    this.#log = (options.logger ?? silentLogger).child({ component: 'association' });
    this.#scope = options.scope ?? ASSOCIATION_SCOPE;
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.#clock = options.clock ?? systemClock;
    this.#sleep = options.sleep ?? sleep;
  }

  async start(options: DeviceLoginStartOptions = {}): Promise<DeviceLogin> {
    const scope = options.scope ?? this.#scope;
    const response = await this.#call('device-authorization', options.signal, [], (oidc, config) =>
      oidc.initiateDeviceAuthorization(config, { scope }),
    );
    const deviceCode = response.device_code;
    // Checked before anything is shown: a user code reaches a terminal, a device code the token endpoint.
    if (typeof deviceCode !== 'string' || deviceCode === '' || deviceCode.length > MAX_TOKEN_CHARS) {
      throw badAnswer('device-authorization', 'device_code', 'must be a non-empty string');
    }
    const userCode = response.user_code;
    if (typeof userCode !== 'string' || !/^[\x20-\x7e]+$/.test(userCode) || userCode.length > MAX_USER_CODE_CHARS) {
      throw badAnswer('device-authorization', 'user_code', `must be 1 to ${MAX_USER_CODE_CHARS} printable characters`);
    }
    const verificationUri = this.#pageUrl(response.verification_uri, 'verification_uri');
    const verificationUriComplete =
      response.verification_uri_complete === undefined
        ? undefined
        : this.#pageUrl(response.verification_uri_complete, 'verification_uri_complete');
    const expiresIn = response.expires_in;
    if (!Number.isFinite(expiresIn) || expiresIn <= 0) {
      throw badAnswer('device-authorization', 'expires_in', 'must be a positive number of seconds');
    }
    const intervalSec = Math.max(1, Math.ceil(response.interval ?? DEFAULT_POLL_INTERVAL_SEC));
    const expiresAt = this.#clock.now() + expiresIn * 1000;
    const handle: DeviceLoginHandle = Object.freeze({ kind: 'device-login' });
    pendingLogins.set(handle, { owner: this, deviceCode, expiresAt, intervalSec, scope, state: 'ready' });
    this.#log.debug('device login started', { userCode, expiresInSec: expiresIn, intervalSec });
    return Object.freeze({ userCode, verificationUri, verificationUriComplete, expiresAt, intervalSec, handle });
  }

  async wait(handle: DeviceLoginHandle, options: AssociationCallOptions = {}): Promise<AssociationTokens> {
    const pending = pendingLogins.get(handle);
    if (pending?.owner !== this) {
      throw new TaplineError(ErrorCode.InvalidArgument, 'This device login was not started by this association.');
    }
    if (pending.state !== 'ready') {
      throw new TaplineError(
        ErrorCode.InvalidArgument,
        pending.state === 'waiting' ? 'This device login is already being waited for.' : 'This device login is over.',
        { hint: 'Start a new login (`tapline login`).' },
      );
    }
    pending.state = 'waiting';
    const { signal } = options;
    try {
      let intervalSec = pending.intervalSec;
      let failures = 0;
      for (;;) {
        const remainingMs = pending.expiresAt - this.#clock.now();
        if (remainingMs <= 0) throw associationExpiredError();
        // After an unreachable poll the pause grows (RFC 8628 §3.5 asks for a backoff), never below the interval.
        const pauseSec = Math.max(intervalSec, Math.min(intervalSec * 2 ** failures, MAX_POLL_BACKOFF_SEC));
        const pauseMs = Math.min(remainingMs, pauseSec * 1000);
        await this.#pause(pauseMs, signal);
        if (pending.expiresAt <= this.#clock.now()) throw associationExpiredError();
        let response: TokenResponse;
        try {
          response = await this.#call('device-poll', signal, [pending.deviceCode], (oidc, config) =>
            oidc.genericGrantRequest(config, 'urn:ietf:params:oauth:grant-type:device_code', {
              device_code: pending.deviceCode,
            }),
          );
        } catch (error) {
          const oauthError = isTaplineError(error) ? error.details['error'] : undefined;
          if (oauthError === 'authorization_pending') {
            failures = 0;
            continue;
          }
          if (oauthError === 'slow_down') {
            failures = 0;
            intervalSec += SLOW_DOWN_STEP_SEC;
            this.#log.debug('device login: the provider asked to slow down', { intervalSec });
            continue;
          }
          const transient =
            isTaplineError(error) &&
            (error.code === ErrorCode.PlatformUnavailable ||
              (error.code === ErrorCode.Timeout && signal?.aborted !== true));
          if (transient && failures + 1 < MAX_CONSECUTIVE_POLL_FAILURES) {
            failures += 1;
            this.#log.debug('device login: poll failed, backing off', { code: error.code, failures });
            continue;
          }
          throw error;
        }
        const tokens = this.#tokens('device-poll', response, pending.scope, [pending.deviceCode]);
        // Checked here, before anything is returned (and so before anything is stored): a grant the person approved
        // only in part would be associated, and fail later at every scan request or at the first refresh.
        const granted = new Set(tokens.scope.split(' ').filter((scope) => scope !== ''));
        const missing = REQUIRED_ASSOCIATION_SCOPES.filter((scope) => !granted.has(scope));
        if (missing.length > 0) {
          this.#log.debug('device login granted too few scopes', { scope: tokens.scope, missing });
          throw new TaplineError(
            ErrorCode.PlatformRejected,
            `The VivoKey login was approved without every permission Tapline needs (missing: ${missing.join(', ')}); ` +
              'nothing was saved.',
            {
              details: { operation: 'device-poll', error: 'insufficient_scope', missing },
              hint:
                'Run `tapline login` again and approve all the permissions it asks for: seeing and answering scan ' +
                'requests, and staying signed in (offline access).',
            },
          );
        }
        if (tokens.refreshToken === undefined) {
          throw new TaplineError(
            ErrorCode.PlatformRejected,
            'The VivoKey login service granted no refresh token, so the association could not outlive this session.',
            {
              details: { operation: 'device-poll', error: 'no_refresh_token' },
              hint: 'The provider must allow offline_access for this client; check the client id (TAPLINE_CLIENT_ID).',
            },
          );
        }
        if (tokens.sub === undefined) throw badAnswer('device-poll', 'id_token', 'is missing (no `openid` scope?)');
        this.#log.debug('device login approved', { scope: tokens.scope });
        return Object.freeze({
          accessToken: tokens.accessToken,
          accessTokenExpiresAt: tokens.accessTokenExpiresAt,
          refreshToken: tokens.refreshToken,
          scope: tokens.scope,
          sub: tokens.sub,
        });
      }
    } finally {
      pending.state = 'done';
    }
  }

  async refresh(refreshToken: string, options: AssociationCallOptions = {}): Promise<RefreshedTokens> {
    checkToken(refreshToken, 'refresh token');
    // Its own, longer deadline: abandoning a refresh that was sent is what gets a rotated token reused (see
    // REFRESH_TIMEOUT_MS); a slow provider is better waited for than raced.
    const response = await this.#call(
      'refresh',
      options.signal,
      [refreshToken],
      (oidc, config) => oidc.refreshTokenGrant(config, refreshToken),
      REFRESH_TIMEOUT_MS,
    );
    const tokens = this.#tokens('refresh', response, this.#scope, [refreshToken]);
    return {
      ...tokens,
      // No new refresh token: the one just used stays current (the provider does not rotate).
      refreshToken: tokens.refreshToken ?? refreshToken,
      refreshTokenRotated: tokens.refreshToken !== undefined,
    };
  }

  async revoke(token: string, options: RevokeOptions = {}): Promise<void> {
    checkToken(token, 'token');
    const hint = options.tokenTypeHint;
    await this.#call('revoke', options.signal, [token], (oidc, config) => {
      if (config.serverMetadata().revocation_endpoint === undefined) {
        throw new TaplineError(ErrorCode.PlatformRejected, 'The VivoKey login service offers no token revocation.', {
          details: { operation: 'revoke', error: 'revocation_unsupported' },
        });
      }
      return oidc.tokenRevocation(config, token, hint === undefined ? {} : { token_type_hint: hint });
    });
  }

  async userinfo(accessToken: string, options: UserInfoOptions = {}): Promise<UserInfo> {
    checkToken(accessToken, 'access token');
    const expected = options.expectedSubject;
    const info = await this.#call('userinfo', options.signal, [accessToken], (oidc, config) =>
      oidc.fetchUserInfo(config, accessToken, expected ?? oidc.skipSubjectCheck),
    );
    return Object.freeze({ ...info });
  }

  /**
   * Runs one provider call under its own deadline with a configuration whose fetch honours this call's signal, and
   * maps every failure to a typed, scrubbed error.
   */
  async #call<T>(
    operation: Operation,
    outer: AbortSignal | undefined,
    secrets: readonly string[],
    run: (oidc: OpenIdModule, config: OpenIdClient.Configuration) => Promise<T>,
    timeoutMs: number = this.#timeoutMs,
  ): Promise<T> {
    const what = `${OPERATION_WHAT[operation]} at ${this.issuer.host}`;
    const started = this.#clock.now();
    this.#log.debug('provider request', { operation, host: this.issuer.host });
    try {
      return await withCallDeadline({ what, timeoutMs, signal: outer, timeoutHint: TIMEOUT_HINT }, async (signal) => {
        const oidc = await loadOpenIdClient();
        const metadata = await this.#discover(oidc);
        const config = new oidc.Configuration(metadata, this.clientId, { token_endpoint_auth_method: 'none' });
        this.#configure(oidc, config, signal, timeoutMs);
        try {
          return await run(oidc, config);
        } catch (error) {
          throw mapProviderError(operation, error, secrets, signal);
        }
      });
    } catch (error) {
      const failure = isTaplineError(error) ? error : mapProviderError(operation, error, secrets, undefined);
      this.#log.debug('provider call failed', {
        operation,
        code: failure.code,
        error: failure.details['error'],
        elapsedMs: this.#clock.now() - started,
      });
      throw failure;
    }
  }

  /**
   * The provider's metadata, discovered once. Discovery runs under its own timeout rather than the signal of the call
   * that happened to start it, so that a cancelled first call does not fail every caller sharing it.
   */
  #discover(oidc: OpenIdModule): Promise<OpenIdClient.ServerMetadata> {
    this.#metadata ??= (async () => {
      const own = AbortSignal.timeout(this.#timeoutMs);
      try {
        const config = await oidc.discovery(
          this.issuer,
          this.clientId,
          { token_endpoint_auth_method: 'none' },
          oidc.None(),
          {
            [oidc.customFetch]: this.#fetchFor(own),
            timeout: Math.ceil(this.#timeoutMs / 1000),
            // allowInsecureRequests is marked deprecated only to flag its use; here it is limited to loopback issuers.
            execute: this.#allowInsecureHttp ? [oidc.allowInsecureRequests] : [],
          },
        );
        return config.serverMetadata();
      } catch (error) {
        throw mapProviderError('discovery', error, [], own);
      }
    })();
    this.#metadata.catch(() => {
      // A failed discovery is not cached: the next call tries again.
      this.#metadata = undefined;
    });
    return this.#metadata;
  }

  #configure(oidc: OpenIdModule, config: OpenIdClient.Configuration, signal: AbortSignal, timeoutMs: number): void {
    config[oidc.customFetch] = this.#fetchFor(signal);
    // A backstop only: withCallDeadline enforces the exact deadline. It follows the call's own deadline, so that it
    // never cuts a refresh short at the ordinary timeout.
    config.timeout = Math.ceil(timeoutMs / 1000) + 1;
    if (this.#allowInsecureHttp) oidc.allowInsecureRequests(config);
  }

  /** The fetch openid-client uses: only allowed URLs, no redirects, this call's signal, typed network failures. */
  #fetchFor(signal: AbortSignal): OpenIdClient.CustomFetch {
    return async (url, init) => {
      const target = new URL(url);
      this.#checkUrl(target, 'endpoint');
      const combined = init.signal === undefined ? signal : AbortSignal.any([init.signal, signal]);
      try {
        return await this.#fetch(target, {
          method: init.method,
          headers: init.headers,
          body: init.body as RequestInit['body'],
          redirect: 'manual',
          signal: combined,
        });
      } catch (cause) {
        if (combined.aborted) throw cause;
        const code = networkErrorCode(cause);
        throw new TaplineError(
          ErrorCode.PlatformUnavailable,
          `The VivoKey login service at ${target.host} could not be reached${code === undefined ? '' : ` (${code})`}.`,
          {
            cause: sanitizeCause(cause, []),
            details: { host: target.host, ...(code === undefined ? {} : { networkError: code }) },
            hint: NETWORK_HINT,
          },
        );
      }
    };
  }

  /** Refuses anything but https, and http on this computer when allowed. */
  #checkUrl(url: URL, what: 'issuer' | 'endpoint'): void {
    if (isTokenSafeUrl(url, this.#allowInsecureHttp)) return;
    throw new TaplineError(
      ErrorCode.InvalidArgument,
      url.protocol === 'http:'
        ? `The OpenID Provider ${what} ${url.origin} uses plain http; Tapline sends tokens only over https` +
            (this.#allowInsecureHttp ? ' (http is allowed only on this computer).' : '.')
        : `The OpenID Provider ${what} must be an https:// URL, not ${url.protocol}.`,
      {
        details: { [what]: url.origin },
        hint: 'Use the https:// address of the VivoKey login service (TAPLINE_ISSUER).',
      },
    );
  }

  /** A page URL for the person's browser, normalised; it must be http(s). */
  #pageUrl(value: unknown, field: string): string {
    if (typeof value !== 'string' || !URL.canParse(value)) {
      throw badAnswer('device-authorization', field, 'must be a URL');
    }
    const url = new URL(value);
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw badAnswer('device-authorization', field, 'must be an http(s) URL');
    }
    return url.href;
  }

  /**
   * Checks and converts a token endpoint answer. A missing refresh token is left to the caller: a refresh keeps the
   * one it sent, a device login first checks the scopes, which say better why there is none.
   */
  #tokens(
    operation: Operation,
    response: TokenResponse,
    requestedScope: string,
    secrets: readonly string[],
  ): IssuedTokens {
    try {
      if (response.token_type !== 'bearer') {
        throw badAnswer(operation, 'token_type', 'must be "bearer"');
      }
      const accessToken = tokenField(operation, 'access_token', response.access_token);
      const refreshToken =
        response.refresh_token === undefined
          ? undefined
          : tokenField(operation, 'refresh_token', response.refresh_token);
      // The raw expires_in, not openid-client's expiresIn(): that one counts down on the wall clock, this one is
      // stamped with the association's clock, which is what the session compares against.
      const expiresIn = response.expires_in;
      const lifetimeMs =
        typeof expiresIn === 'number' && Number.isFinite(expiresIn) && expiresIn >= 0
          ? expiresIn * 1000
          : ASSUMED_ACCESS_TOKEN_LIFETIME_MS;
      // RFC 6749 §5.1: a token answer without `scope` grants exactly the scopes asked for.
      const scope = typeof response.scope === 'string' ? response.scope : requestedScope;
      const sub = response.claims()?.sub;
      return { accessToken, accessTokenExpiresAt: this.#clock.now() + lifetimeMs, refreshToken, scope, sub };
    } catch (error) {
      throw mapProviderError(operation, error, secrets, undefined);
    }
  }

  /** Waits `ms` between polls, failing with `ABORTED` when the caller's signal fires. */
  async #pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
    if (signal?.aborted) throw abortError('The device login', signal.reason);
    if (ms <= 0) return;
    const controller = new AbortController();
    const combined = signal === undefined ? controller.signal : AbortSignal.any([signal, controller.signal]);
    try {
      await this.#sleep(ms, combined);
    } catch (error) {
      if (signal?.aborted) throw abortError('The device login', signal.reason);
      throw error;
    } finally {
      controller.abort();
    }
  }
}

function checkToken(token: unknown, what: string): void {
  if (typeof token !== 'string' || token === '' || token.length > MAX_TOKEN_CHARS || !HEADER_SAFE_TOKEN.test(token)) {
    throw new TaplineError(ErrorCode.InvalidArgument, `The ${what} is missing or malformed.`);
  }
}

function tokenField(operation: Operation, field: string, value: unknown): string {
  if (typeof value !== 'string' || value === '' || value.length > MAX_TOKEN_CHARS || !HEADER_SAFE_TOKEN.test(value)) {
    throw badAnswer(operation, field, `must be 1 to ${MAX_TOKEN_CHARS} printable characters without spaces`);
  }
  return value;
}

function badAnswer(operation: Operation, field: string, problem: string): TaplineError {
  // The value stays out: it may be a token.
  return new TaplineError(
    ErrorCode.ProtocolError,
    `The VivoKey login service answered with an invalid "${field}" (${OPERATION_WHAT[operation].toLowerCase()}): it ${problem}.`,
    { details: { operation, field }, hint: PROTOCOL_HINT },
  );
}

/** The shape of oauth4webapi's `ResponseBodyError` and `WWWAuthenticateChallengeError`, read without importing it. */
interface OAuthFailureShape {
  readonly code?: unknown;
  readonly error?: unknown;
  readonly error_description?: unknown;
  readonly status?: unknown;
  readonly cause?: unknown;
}

const OAUTH_ERROR_CODE = /^[\x20-\x21\x23-\x5b\x5d-\x7e]{1,64}$/;

/** Maps anything openid-client (or our fetch) threw to a typed, scrubbed TaplineError. */
function mapProviderError(
  operation: Operation,
  error: unknown,
  secrets: readonly string[],
  signal: AbortSignal | undefined,
): TaplineError {
  const inner = findTaplineError(error);
  if (inner) return inner;
  const what = OPERATION_WHAT[operation];
  const cause = scrubbedChain(error, secrets);
  const shape = (typeof error === 'object' && error !== null ? error : {}) as OAuthFailureShape;
  const code = typeof shape.code === 'string' ? shape.code : undefined;

  if (signal?.aborted || code === 'OAUTH_ABORT' || code === 'OAUTH_TIMEOUT') {
    // The deadline wrapper reports its own TIMEOUT / ABORTED; this is openid-client's backstop timer.
    return new TaplineError(ErrorCode.Timeout, `${what} did not finish in time.`, { cause, hint: TIMEOUT_HINT });
  }

  if (code === 'OAUTH_RESPONSE_BODY_ERROR' || code === 'OAUTH_WWW_AUTHENTICATE_CHALLENGE') {
    const status = typeof shape.status === 'number' ? shape.status : undefined;
    const { oauthError, description } =
      code === 'OAUTH_RESPONSE_BODY_ERROR'
        ? { oauthError: shape.error, description: shape.error_description }
        : challengeError(shape.cause);
    const errorCode = typeof oauthError === 'string' && OAUTH_ERROR_CODE.test(oauthError) ? oauthError : 'unknown';
    const said =
      typeof description === 'string' && description !== '' ? `: ${shortText(scrubText(description, secrets))}` : '';
    const details = { operation, ...(status === undefined ? {} : { status }), error: errorCode };
    switch (errorCode) {
      case 'access_denied':
        return associationDeniedError({ details });
      case 'expired_token':
        return associationExpiredError({ details });
      case 'invalid_grant':
        if (operation === 'refresh') {
          return notAssociatedError('the VivoKey login service no longer accepts its refresh token', { details });
        }
        break;
      case 'temporarily_unavailable':
        return new TaplineError(ErrorCode.PlatformUnavailable, `${what} failed: the service is busy${said}.`, {
          details,
          hint: 'Try again in a moment.',
        });
      default:
        break;
    }
    return new TaplineError(
      ErrorCode.PlatformRejected,
      `${what} was refused by the VivoKey login service (${errorCode})${said}.`,
      { details, hint: rejectionHint(errorCode) },
    );
  }

  if (code === 'OAUTH_RESPONSE_IS_NOT_CONFORM') {
    const status = responseStatus(error);
    if (status !== undefined && (status >= 500 || status === 408 || status === 429)) {
      return new TaplineError(
        ErrorCode.PlatformUnavailable,
        `${what} failed: the VivoKey login service answered HTTP ${status}.`,
        { details: { operation, status }, hint: 'The service is having trouble: try again in a moment.' },
      );
    }
    if (status !== undefined && status >= 300 && status < 400) {
      return new TaplineError(
        ErrorCode.ProtocolError,
        `${what} failed: the VivoKey login service answered with a redirect (HTTP ${status}), which Tapline does not follow.`,
        { details: { operation, status }, hint: PROTOCOL_HINT },
      );
    }
    return new TaplineError(
      ErrorCode.PlatformRejected,
      `${what} was refused by the VivoKey login service (HTTP ${status ?? 'unknown'}).`,
      {
        details: { operation, ...(status === undefined ? {} : { status }) },
        hint:
          operation === 'discovery'
            ? 'Check the issuer (TAPLINE_ISSUER): no OpenID Provider answered there.'
            : PROTOCOL_HINT,
      },
    );
  }

  if (code === 'OAUTH_HTTP_REQUEST_FORBIDDEN' || code === 'OAUTH_REQUEST_PROTOCOL_FORBIDDEN') {
    return new TaplineError(ErrorCode.InvalidArgument, `${what} needs an https:// endpoint.`, {
      details: { operation, oauthCode: code },
      hint: 'Use the https:// address of the VivoKey login service (TAPLINE_ISSUER).',
    });
  }

  if (error instanceof TypeError && code === undefined) {
    const network = networkErrorCode(error);
    return new TaplineError(ErrorCode.PlatformUnavailable, `${what} failed: the service could not be reached.`, {
      cause,
      details: { operation, ...(network === undefined ? {} : { networkError: network }) },
      hint: NETWORK_HINT,
    });
  }

  return new TaplineError(
    ErrorCode.ProtocolError,
    `${what} failed: the VivoKey login service answered something Tapline cannot use${code === undefined ? '' : ` (${code})`}.`,
    { cause, details: { operation, ...(code === undefined ? {} : { oauthCode: code }) }, hint: PROTOCOL_HINT },
  );
}

function rejectionHint(errorCode: string): string {
  switch (errorCode) {
    case 'invalid_client':
    case 'unauthorized_client':
      return 'Check the client id (TAPLINE_CLIENT_ID); the default is tapline-desktop.';
    case 'invalid_scope':
      return 'The login service does not offer the scopes Tapline needs; check the issuer (TAPLINE_ISSUER).';
    case 'invalid_grant':
      return 'Start a new login (`tapline login`).';
    default:
      return PROTOCOL_HINT;
  }
}

/** The `error` and `error_description` of the first `WWW-Authenticate` challenge that has one. */
function challengeError(challenges: unknown): { oauthError: unknown; description: unknown } {
  if (Array.isArray(challenges)) {
    for (const challenge of challenges as unknown[]) {
      const parameters = (challenge as { parameters?: Record<string, unknown> } | null)?.parameters;
      if (parameters && typeof parameters['error'] === 'string') {
        return { oauthError: parameters['error'], description: parameters['error_description'] };
      }
    }
  }
  return { oauthError: undefined, description: undefined };
}

function responseStatus(error: unknown): number | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && typeof current === 'object' && current !== null; depth++) {
    if (current instanceof Response) return current.status;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

function findTaplineError(error: unknown): TaplineError | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 6 && typeof current === 'object' && current !== null; depth++) {
    if (isTaplineError(current)) return current;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * A copy of the Error chain with scrubbed messages and nothing else: openid-client attaches response bodies (tokens
 * included) and `Response` objects as causes, and a cause is printed by `--json`.
 */
function scrubbedChain(error: unknown, secrets: readonly string[], depth = 0): Error | undefined {
  if (!(error instanceof Error) || depth > 6) return undefined;
  const inner = scrubbedChain(error.cause, secrets, depth + 1);
  const copy = new Error(scrubText(error.message, secrets), inner === undefined ? undefined : { cause: inner });
  copy.name = error.name;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && /^[A-Z][A-Z0-9_]{2,60}$/.test(code)) {
    Object.defineProperty(copy, 'code', { value: code, enumerable: true });
  }
  return copy;
}

function shortText(text: string): string {
  const flat = text
    .replace(/\p{Cc}+/gu, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  return flat.length > 200 ? `${flat.slice(0, 197)}...` : flat;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason as Error);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
