/**
 * The token manager of an associated computer: hands out valid access tokens, refreshes them when they run out, and
 * keeps the rotating refresh token safe on disk.
 *
 * @packageDocumentation
 */
import { createHash } from 'node:crypto';
import {
  ErrorCode,
  LOGIN_HINT,
  TaplineError,
  abortError,
  hasErrorCode,
  isTaplineError,
  notAssociatedError,
  toTaplineError,
} from '../model/errors.js';
import { systemClock, type Clock } from '../runtime/clock.js';
import { silentLogger, type Logger } from '../runtime/logger.js';
import type { AssociationTokens, DeviceAssociation, UserInfo } from './device-association.js';
import { CREDENTIALS_FORMAT_VERSION, type StoredCredentials, type TokenStore } from './token-store.js';

/** What {@link credentialsFromTokens} needs besides the tokens. */
export interface CredentialsContext {
  /** The OpenID Provider's issuer. */
  readonly issuer: URL | string;
  /** The OAuth client id the tokens were issued to (`tapline-desktop` unless configured otherwise). */
  readonly clientId: string;
  /** When the association was made, ms since the epoch. Default: now. */
  readonly associatedAt?: number;
}

/** The stored form of a completed device login's tokens, for a {@link TokenStore}. */
export function credentialsFromTokens(tokens: AssociationTokens, context: CredentialsContext): StoredCredentials {
  return {
    version: CREDENTIALS_FORMAT_VERSION,
    issuer: typeof context.issuer === 'string' ? context.issuer : context.issuer.href,
    clientId: context.clientId,
    sub: tokens.sub,
    scope: tokens.scope,
    accessToken: tokens.accessToken,
    accessTokenExpiresAt: tokens.accessTokenExpiresAt,
    refreshToken: tokens.refreshToken,
    associatedAt: context.associatedAt ?? Date.now(),
  };
}

/** An access token expiring sooner than this is refreshed before it is handed out. */
export const ACCESS_TOKEN_REFRESH_MARGIN_MS = 30_000;

/** Options of {@link AssociatedSession}. */
export interface AssociatedSessionOptions {
  /** Where the credentials live. */
  readonly store: TokenStore;
  /** The provider the credentials belong to (its issuer and client id must match the stored ones). */
  readonly association: DeviceAssociation;
  /**
   * Decides when an access token is about to expire, and stamps `associatedAt`. Default: the system clock. Use the
   * association's clock: it stamps the expiry times this one compares against.
   */
  readonly clock?: Clock;
  /** Where debug lines and warnings go (refreshes, adoptions, failed revocations); never with a token. */
  readonly logger?: Logger;
}

/** Options of {@link AssociatedSession.associate}. */
export interface AssociateOptions {
  /**
   * Revoke the association being replaced, as `tapline login --force` needs. Holding the store's lock, the session
   * reads what is stored at that moment (or its own newer credentials, when a save of a rotated token failed), saves
   * the new tokens, and only then revokes the previous refresh token and access token at the provider, so that a
   * failed revocation never costs the new association. The result is then an {@link AssociationReplacement}.
   * Default `false`: the previous credentials are overwritten, and their grant lives on at the provider.
   */
  readonly revokePrevious?: boolean;
  /** Stops waiting for the store's lock (`ABORTED`, nothing saved); during the revocation, cuts it short. */
  readonly signal?: AbortSignal;
}

/** What {@link AssociatedSession.associate} with `revokePrevious: true` did. */
export interface AssociationReplacement {
  /** The new association, saved. */
  readonly identity: AssociationIdentity;
  /**
   * The association that was replaced, as read under the lock; `undefined` when nothing was stored (or the stored
   * file could not be read, or held these very tokens).
   */
  readonly previous: AssociationIdentity | undefined;
  /** True when the provider confirmed the revocation of the previous refresh token and access token. */
  readonly previousRevoked: boolean;
  /**
   * Why the previous association was not revoked, when there was one and it was not: a network or provider error,
   * `ABORTED`, or `NOT_ASSOCIATED` when it belonged to another provider or client (its tokens are never sent to this
   * one). Its grant then lives on at the provider until it expires or is revoked from the VivoKey side.
   */
  readonly previousRevocationError?: TaplineError;
}

/** Options of {@link AssociatedSession.accessToken}. */
export interface AccessTokenOptions {
  /** Stops waiting; it then fails with `ABORTED`. A refresh already sent still completes and is saved. */
  readonly signal?: AbortSignal;
  /** Refresh even if the current token looks valid (the platform just refused it). */
  readonly forceRefresh?: boolean;
}

/** Who this computer is associated with. */
export interface AssociationIdentity {
  /** The account's subject identifier for Tapline's client (pairwise). */
  readonly sub: string;
  /** The OpenID Provider. */
  readonly issuer: string;
  /** The scopes granted, space-separated. */
  readonly scope: string;
  /** When the association was made, in ms since the epoch. */
  readonly associatedAt: number;
}

/** What {@link AssociatedSession.logout} did. */
export interface LogoutResult {
  /** False when there was no association to end. */
  readonly wasAssociated: boolean;
  /** True when the provider confirmed the revocation of the refresh token (and the access token). */
  readonly revoked: boolean;
  /**
   * Why the revocation failed, when it did; the local credentials were deleted anyway. The grant then lives on at
   * the provider until it expires or is revoked from the VivoKey side.
   */
  readonly revocationError: TaplineError | undefined;
}

/**
 * Access tokens for an associated computer.
 *
 * - {@link accessToken} returns the stored token while it is valid for more than 30 s, and refreshes otherwise (or
 *   when forced). Refreshes are single-flight: concurrent callers share one request.
 * - Refresh tokens rotate. The new one is saved to the store before the new access token is handed out; the one sent
 *   is remembered as spent and never sent again. If the save fails, the new credentials stay in memory only, the
 *   call fails with `STORAGE_FAILED`, and the next call tries the save again before handing anything out.
 * - `invalid_grant` (the grant was revoked, expired, or its refresh token reused) clears the store and fails with
 *   `NOT_ASSOCIATED`.
 * - Several processes share the credentials (the agent, CLI commands), and the provider takes a rotated refresh token
 *   presented again as theft and revokes the whole grant. So a refresh runs inside {@link TokenStore.exclusive}
 *   (across processes for a `FileTokenStore`): holding the lock, the session reads the store again and, when
 *   another process has rotated the token meanwhile, adopts its credentials instead of refreshing; otherwise it
 *   refreshes and saves the rotated token before it lets go. A lock that cannot be taken in time fails the call
 *   (`TIMEOUT`, `STORAGE_FAILED`, naming the lock) and nothing is sent. {@link associate} and {@link logout} take the
 *   lock too, so that they never interleave with another process's refresh.
 */
export class AssociatedSession {
  readonly #store: TokenStore;
  readonly #association: DeviceAssociation;
  readonly #clock: Clock;
  readonly #log: Logger;
  /** The credentials in use; ahead of the store when a save failed. */
  #current: StoredCredentials | undefined;
  /** True while {@link #current} holds a rotated refresh token the store does not have yet. */
  #unsaved = false;
  #refreshing: Promise<StoredCredentials> | undefined;
  /** Digests of refresh tokens already exchanged: the provider takes reuse as theft and revokes the grant. */
  readonly #spent = new Set<string>();

  /** Makes no call and reads nothing: the store is read on first use. */
  constructor(options: AssociatedSessionOptions) {
    this.#store = options.store;
    this.#association = options.association;
    this.#clock = options.clock ?? systemClock;
    this.#log = (options.logger ?? silentLogger).child({ component: 'session' });
  }

  /**
   * Starts an association from a completed device login: saves the credentials (replacing any earlier ones) and
   * makes them current. Fails with `STORAGE_FAILED` when they cannot be saved, `TIMEOUT` when the store's lock stays
   * taken, or `ABORTED`; nothing is then associated (and nothing revoked).
   *
   * With `revokePrevious: true`, also revokes the association it replaces (see {@link AssociateOptions}) and returns
   * an {@link AssociationReplacement}; a failed revocation does not fail the call, it is reported in the result.
   */
  associate(
    tokens: AssociationTokens,
    options?: AssociateOptions & { readonly revokePrevious?: false },
  ): Promise<AssociationIdentity>;
  associate(
    tokens: AssociationTokens,
    options: AssociateOptions & { readonly revokePrevious: true },
  ): Promise<AssociationReplacement>;
  associate(
    tokens: AssociationTokens,
    options: AssociateOptions,
  ): Promise<AssociationIdentity | AssociationReplacement>;
  async associate(
    tokens: AssociationTokens,
    options: AssociateOptions = {},
  ): Promise<AssociationIdentity | AssociationReplacement> {
    await this.#settleRefresh();
    const credentials = credentialsFromTokens(tokens, {
      issuer: this.#association.issuer,
      clientId: this.#association.clientId,
      associatedAt: this.#clock.now(),
    });
    const signal = options.signal === undefined ? {} : { signal: options.signal };
    // Under the lock: a refresh of the old association in another process must not save over the new one.
    if (options.revokePrevious !== true) {
      await this.#store.exclusive(() => this.#store.save(credentials), signal);
      this.#current = credentials;
      this.#unsaved = false;
      return identity(credentials);
    }
    return this.#store.exclusive(async (): Promise<AssociationReplacement> => {
      // Read under the lock, so that it is the newest token of the old grant, not one another process has rotated.
      // What was stored then, not what this session loaded earlier: that may be an association already ended.
      let previous = await this.#newestLocked('replacing them without revocation', false);
      // The same grant handed in again: revoking it would end the association just saved.
      if (previous?.refreshToken === credentials.refreshToken) previous = undefined;
      await this.#store.save(credentials);
      this.#current = credentials;
      this.#unsaved = false;
      // Saved before revoking: a revocation that fails or hangs costs the old grant's cleanup, never the new one.
      const previousRevocationError =
        previous === undefined
          ? undefined
          : await this.#revokeAll(previous, options.signal, 'the new association is kept');
      return {
        identity: identity(credentials),
        previous: previous === undefined ? undefined : identity(previous),
        previousRevoked: previous !== undefined && previousRevocationError === undefined,
        ...(previousRevocationError === undefined ? {} : { previousRevocationError }),
      };
    }, signal);
  }

  /**
   * A valid access token. Fails with `NOT_ASSOCIATED` (no credentials, credentials for another issuer or client, or
   * the provider refused the refresh token), `STORAGE_FAILED` (the rotated refresh token could not be saved, or the
   * store's lock could not be created), `PLATFORM_UNAVAILABLE` / `TIMEOUT` (the refresh did not get through, or
   * another process held the store's lock too long; try again), `ABORTED`.
   */
  async accessToken(options: AccessTokenOptions = {}): Promise<string> {
    const { signal } = options;
    if (signal?.aborted) throw abortError('Getting an access token', signal.reason);
    const current = await this.#credentials();
    if (this.#unsaved) await this.#saveCurrent(current);
    if (options.forceRefresh !== true && this.#fresh(current)) return current.accessToken;
    const refreshed = await whileWaiting(this.#sharedRefresh(options.forceRefresh === true), signal);
    return refreshed.accessToken;
  }

  /**
   * The account's claims from the provider's userinfo endpoint, with a valid access token: confirms the association
   * with the provider. The answer must name the stored `sub` (else `PROTOCOL_ERROR`). An access token the provider
   * refuses (`invalid_token`) is refreshed once and the call repeated once.
   */
  async userinfo(options: { readonly signal?: AbortSignal } = {}): Promise<UserInfo> {
    const signal = options.signal === undefined ? {} : { signal: options.signal };
    const { sub } = await this.#credentials();
    const ask = async (forceRefresh: boolean): Promise<UserInfo> =>
      this.#association.userinfo(await this.accessToken({ ...signal, forceRefresh }), {
        ...signal,
        expectedSubject: sub,
      });
    try {
      return await ask(false);
    } catch (error) {
      if (!isTaplineError(error) || error.details['error'] !== 'invalid_token') throw error;
      this.#log.debug('userinfo refused the access token; refreshing once');
      return ask(true);
    }
  }

  /** Who this computer is associated with; `NOT_ASSOCIATED` when it is not. Makes no network call. */
  async whoami(): Promise<AssociationIdentity> {
    return identity(await this.#credentials());
  }

  /**
   * Ends the association: revokes the refresh token and the access token at the provider, then deletes the stored
   * credentials, even when the revocation failed (reported in the result). Runs under the store's lock, so that no
   * other process rotates the token between the revocation and the deletion. Fails only when the lock cannot be
   * taken (`TIMEOUT`, `STORAGE_FAILED`, `ABORTED`; nothing was revoked or deleted then) or the credentials cannot be
   * deleted (`STORAGE_FAILED`).
   */
  async logout(options: { readonly signal?: AbortSignal } = {}): Promise<LogoutResult> {
    await this.#settleRefresh();
    return this.#store.exclusive(() => this.#logoutLocked(options), { signal: options.signal });
  }

  async #logoutLocked(options: { readonly signal?: AbortSignal }): Promise<LogoutResult> {
    // A corrupt file cannot be revoked, but it can and must still be deleted.
    const credentials = await this.#newestLocked('deleting them without revocation', true);
    const revocationError =
      credentials === undefined
        ? undefined
        : await this.#revokeAll(credentials, options.signal, 'deleting the local credentials anyway');
    this.#current = undefined;
    this.#unsaved = false;
    await this.#store.clear();
    return {
      wasAssociated: credentials !== undefined,
      revoked: credentials !== undefined && revocationError === undefined,
      revocationError,
    };
  }

  /**
   * The newest credentials, for a caller holding the store's lock: ours when the store is behind (a failed save), else
   * the store's, which another process may have rotated since we loaded them. With `orLoaded`, the ones this session
   * loaded earlier stand in when the store is empty or unreadable (a logout revokes whatever it can); without, that is
   * `undefined`. An unreadable file is logged with a warning that ends in `andThen`.
   */
  async #newestLocked(andThen: string, orLoaded: boolean): Promise<StoredCredentials | undefined> {
    if (this.#unsaved && this.#current !== undefined) return this.#current;
    const fallback = orLoaded ? this.#current : undefined;
    try {
      return (await this.#store.load()) ?? fallback;
    } catch (error) {
      this.#log.warn(`the stored credentials could not be read; ${andThen}`, { code: toTaplineError(error).code });
      return fallback;
    }
  }

  /**
   * Revokes the refresh token, then the access token, of `credentials`; resolves with the first failure (typed), or
   * `undefined` when both were confirmed. Never throws. `what` ends the debug line of a failure.
   */
  async #revokeAll(
    credentials: StoredCredentials,
    signal: AbortSignal | undefined,
    what: string,
  ): Promise<TaplineError | undefined> {
    try {
      // Tokens of another provider must not be sent to this one, even to revoke them.
      this.#checkBelongs(credentials);
      const options = signal === undefined ? {} : { signal };
      // The refresh token first: revoking it ends the whole grant at providers such as oidc-provider. The access
      // token is revoked even when that failed, in case the provider can still do that much.
      const tokens = [
        [credentials.refreshToken, 'refresh_token'],
        [credentials.accessToken, 'access_token'],
      ] as const;
      const failures: unknown[] = [];
      for (const [token, tokenTypeHint] of tokens) {
        await this.#association.revoke(token, { tokenTypeHint, ...options }).catch((error: unknown) => {
          failures.push(error);
        });
      }
      if (failures.length > 0) throw failures[0];
      return undefined;
    } catch (error) {
      const failure = toTaplineError(error, ErrorCode.PlatformUnavailable);
      // Debug, not warn: the caller reports it in its result, and the outcome is not this process's to fix.
      this.#log.debug(`revocation failed; ${what}`, { code: failure.code });
      return failure;
    }
  }

  #fresh(credentials: StoredCredentials): boolean {
    return credentials.accessTokenExpiresAt - this.#clock.now() > ACCESS_TOKEN_REFRESH_MARGIN_MS;
  }

  /** The credentials in use, loaded from the store the first time. */
  async #credentials(): Promise<StoredCredentials> {
    if (this.#current === undefined) {
      const stored = await this.#store.load();
      if (stored === undefined) throw notAssociatedError();
      this.#checkBelongs(stored);
      this.#current = stored;
    }
    return this.#current;
  }

  #checkBelongs(credentials: StoredCredentials): void {
    if (credentials.issuer !== this.#association.issuer.href || credentials.clientId !== this.#association.clientId) {
      throw new TaplineError(
        ErrorCode.NotAssociated,
        `The stored association (${this.#store.location}) belongs to another login service or client ` +
          `(${credentials.issuer}, ${credentials.clientId}); this one is ${this.#association.issuer.href}.`,
        {
          details: { storedIssuer: credentials.issuer, issuer: this.#association.issuer.href },
          hint: LOGIN_HINT,
        },
      );
    }
  }

  /** One refresh for every concurrent caller. */
  #sharedRefresh(force: boolean): Promise<StoredCredentials> {
    this.#refreshing ??= this.#refresh(force).finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  /**
   * Refreshes under the store's lock, unless another process did it first. The lock is what makes the re-read
   * trustworthy: nobody else can rotate the token between the read and the refresh.
   */
  async #refresh(force: boolean): Promise<StoredCredentials> {
    // Whatever we hand out must be newer than the access token the caller has (and, when forced, saw refused).
    const held = await this.#credentials();
    return this.#store.exclusive(() => this.#refreshLocked(force, held));
  }

  async #refreshLocked(force: boolean, held: StoredCredentials): Promise<StoredCredentials> {
    let current = this.#current ?? held;
    if (!this.#unsaved) {
      const stored = await this.#store.load().catch((error: unknown) => {
        // An unreadable file is no news from another process: go on with what we hold.
        this.#log.debug('could not re-read the credentials before refreshing', { code: toTaplineError(error).code });
        return current;
      });
      if (stored === undefined) {
        this.#current = undefined;
        throw notAssociatedError('the association was ended (logged out) elsewhere');
      }
      if (stored.refreshToken !== current.refreshToken && !this.#spent.has(digest(stored.refreshToken))) {
        this.#checkBelongs(stored);
        this.#log.debug('adopting credentials another process refreshed');
        this.#current = current = stored;
        // Rotated elsewhere: its access token is as new as a refresh would make it (even when the provider's tokens
        // live shorter than the margin), so another refresh would only spend a rotation. Refresh only when it has
        // already expired, or when it is the very token the caller saw refused.
        const refused = force && stored.accessToken === held.accessToken;
        if (!refused && stored.accessTokenExpiresAt > this.#clock.now()) return stored;
      } else if (stored.refreshToken === current.refreshToken && !force && this.#fresh(stored)) {
        return stored;
      }
    }
    const sent = current.refreshToken;
    if (this.#spent.has(digest(sent))) {
      // Cannot happen through this class; refusing is cheaper than finding out at the provider (grant revoked).
      throw new TaplineError(ErrorCode.Internal, 'Refusing to send a refresh token that was already exchanged.');
    }
    this.#log.debug('refreshing the access token', { forced: force });
    let refreshed;
    try {
      // No caller's signal: once sent, the answer must be received and saved, or the rotated token is lost.
      refreshed = await this.#association.refresh(sent);
    } catch (error) {
      if (hasErrorCode(error, ErrorCode.NotAssociated)) {
        this.#current = undefined;
        this.#unsaved = false;
        await this.#store.clear().catch((clearError: unknown) => {
          this.#log.warn('could not delete the refused credentials', { code: toTaplineError(clearError).code });
        });
      }
      // Any other failure leaves the token unspent as far as we know: without a new one there is nothing else to send.
      throw error;
    }
    if (refreshed.refreshTokenRotated) this.#spent.add(digest(sent));
    if (refreshed.sub !== undefined && refreshed.sub !== current.sub) {
      // OpenID Connect Core §12.2: a refreshed ID token names the same subject. Anything else is not this account.
      this.#current = undefined;
      this.#unsaved = false;
      await this.#store.clear().catch(() => undefined);
      throw new TaplineError(
        ErrorCode.ProtocolError,
        'The VivoKey login service refreshed the association for a different account; the association was removed.',
        { hint: LOGIN_HINT },
      );
    }
    const next: StoredCredentials = {
      ...current,
      accessToken: refreshed.accessToken,
      accessTokenExpiresAt: refreshed.accessTokenExpiresAt,
      refreshToken: refreshed.refreshToken,
      scope: refreshed.scope,
    };
    // In memory first, so that the new refresh token is never lost; handed out only once it is on disk.
    this.#current = next;
    this.#unsaved = true;
    await this.#saveCurrent(next);
    return next;
  }

  async #saveCurrent(credentials: StoredCredentials): Promise<void> {
    try {
      await this.#store.save(credentials);
    } catch (error) {
      const cause = toTaplineError(error, ErrorCode.StorageFailed);
      throw new TaplineError(
        ErrorCode.StorageFailed,
        `The refreshed credentials could not be saved to ${this.#store.location}; they are kept in memory until a save succeeds.`,
        {
          cause,
          details: { location: this.#store.location },
          hint: `${cause.hint ?? 'Check the disk.'} If Tapline stops before the save succeeds, run \`tapline login\` again.`,
        },
      );
    }
    if (this.#current === credentials) this.#unsaved = false;
  }

  /** Lets a refresh in flight finish (successfully or not) before the credentials are replaced or deleted. */
  async #settleRefresh(): Promise<void> {
    await this.#refreshing?.catch(() => undefined);
  }
}

function identity(credentials: StoredCredentials): AssociationIdentity {
  return Object.freeze({
    sub: credentials.sub,
    issuer: credentials.issuer,
    scope: credentials.scope,
    associatedAt: credentials.associatedAt,
  });
}

function digest(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}

/** Waits for a shared operation, letting this caller leave when its own signal fires without cancelling the rest. */
async function whileWaiting<T>(shared: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return shared;
  if (signal.aborted) throw abortError('Getting an access token', signal.reason);
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(abortError('Getting an access token', signal.reason));
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([shared, aborted]);
  } catch (error) {
    throw isTaplineError(error) ? error : toTaplineError(error);
  } finally {
    if (onAbort) signal.removeEventListener('abort', onAbort);
  }
}
