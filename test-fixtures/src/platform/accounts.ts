import { createHmac } from 'node:crypto';
import { ErrorCode, TaplineError, toHex } from '@tapline/core';
import type { ChipRegistry } from './chip-registry.js';

/**
 * The reference platform's accounts: who owns which enrolled chip, and the pairwise subject identifiers an account
 * has for each OAuth client and relying party.
 *
 * @packageDocumentation
 */

/** The account that owns every chip when no accounts are configured. */
export const DEFAULT_ACCOUNT = 'alice';

/**
 * The pairwise subject identifier of an account for one client or relying party:
 * `hex(HMAC-SHA256(salt, UTF-8(sector) ‖ UTF-8(accountId)))`, 64 hex digits. `sector` is the OAuth client id (the
 * reference's clients have no redirect URIs, so their client id is their sector) or the relying party's id. The same
 * account gets unrelated identifiers in different sectors, so that no two parties can join what they know about it.
 */
export function pairwiseSubject(salt: Uint8Array | string, sector: string, accountId: string): string {
  const key = typeof salt === 'string' ? Buffer.from(salt, 'utf8') : Buffer.from(salt);
  return createHmac('sha256', key).update(sector, 'utf8').update(accountId, 'utf8').digest('hex');
}

function invalid(message: string): TaplineError {
  return new TaplineError(ErrorCode.InvalidArgument, message);
}

function uidKey(uid: Uint8Array | string): string {
  if (uid instanceof Uint8Array) return toHex(uid);
  if (!/^(?:[0-9a-fA-F]{2})+$/.test(uid)) throw invalid(`A chip uid must be bytes or even-length hex, not "${uid}".`);
  return uid.toLowerCase();
}

/**
 * Chip ownership. Configured accounts own exactly the uids they were given (enrolled or not: an account may name a
 * chip that is enrolled later). Without configuration, {@link DEFAULT_ACCOUNT} owns whatever the registry holds at the
 * moment of asking, so that chips enrolled after start belong to it too.
 */
export class PlatformAccounts {
  readonly #owned: ReadonlyMap<string, ReadonlySet<string>> | undefined;
  readonly #chips: ChipRegistry;
  readonly #salt: Uint8Array | string;

  constructor(
    chips: ChipRegistry,
    salt: Uint8Array | string,
    accounts: Readonly<Record<string, readonly (Uint8Array | string)[]>> | undefined,
  ) {
    this.#chips = chips;
    this.#salt = salt;
    if (accounts === undefined) return;
    const owned = new Map<string, ReadonlySet<string>>();
    const owners = new Map<string, string>();
    for (const [account, uids] of Object.entries(accounts)) {
      if (account === '') throw invalid('An account id must not be empty.');
      const set = new Set<string>();
      for (const uid of uids) {
        const key = uidKey(uid);
        const other = owners.get(key);
        // One owner per chip: approving with a chip must name exactly one account.
        if (other !== undefined && other !== account) {
          throw invalid(`Chip ${key} cannot belong to both "${other}" and "${account}".`);
        }
        owners.set(key, account);
        set.add(key);
      }
      owned.set(account, set);
    }
    this.#owned = owned;
  }

  /** Every account with its uids (lower-case hex), as configured or, by default, the registry's chips now. */
  snapshot(): ReadonlyMap<string, readonly string[]> {
    if (this.#owned === undefined) return new Map([[DEFAULT_ACCOUNT, this.#chips.list().map((chip) => chip.uid)]]);
    return new Map([...this.#owned].map(([account, uids]) => [account, [...uids]]));
  }

  /** Whether `account` exists. */
  has(account: string): boolean {
    return this.#owned === undefined ? account === DEFAULT_ACCOUNT : this.#owned.has(account);
  }

  /** Every account id. */
  ids(): readonly string[] {
    return this.#owned === undefined ? [DEFAULT_ACCOUNT] : [...this.#owned.keys()];
  }

  /** Whether `account` owns the chip `uid` (lower-case hex). */
  owns(account: string, uid: string): boolean {
    if (this.#owned === undefined) return account === DEFAULT_ACCOUNT && this.#chips.has(uid);
    return this.#owned.get(account)?.has(uid) ?? false;
  }

  /** The owner of chip `uid`, if any. */
  ownerOf(uid: Uint8Array | string): string | undefined {
    const key = uidKey(uid);
    return this.ids().find((account) => this.owns(account, key));
  }

  /** The account's pairwise subject in `sector` (see {@link pairwiseSubject}). */
  subject(account: string, sector: string): string {
    return pairwiseSubject(this.#salt, sector, account);
  }

  /** The account whose pairwise subject in `sector` is `subject`, if any. */
  bySubject(sector: string, subject: string): string | undefined {
    return this.ids().find((account) => this.subject(account, sector) === subject);
  }
}
