import { createHash, randomBytes } from 'node:crypto';
import type { Clock } from '@tapline/core';
import type { PlatformChipKind } from './chip-registry.js';

/**
 * The reference platform's scan requests: their states, their claims, the per-account list with its ETag, and the
 * waiting room of long polls. No HTTP and no chip crypto here: the platform server does those and tells the book
 * what happened.
 *
 * @packageDocumentation
 */

/** Where a scan request stands (docs/scan-request-protocol.md §3.3). `answered`, `cancelled`, `expired` are final. */
export type ScanRequestState = 'pending' | 'claimed' | 'answered' | 'cancelled' | 'expired';

/** The relying party a scan request is for, as its registration names it. */
export interface ScanRequestRelyingParty {
  readonly id: string;
  readonly name: string;
}

/** What an answered request yields for its relying party. */
export interface ScanRequestResult {
  /** The JWT, signed like `/session`'s, with `dev_id` the relying party's id and `sub` the chip's subject for it. */
  readonly token: string;
  /** The family of the chip that answered. */
  readonly chip: PlatformChipKind;
}

/** A scan request as the reference platform's test hooks show it: a snapshot, camelCase. */
export interface ScanRequestRecord {
  /** `sr_` + 128 random bits, base64url. */
  readonly id: string;
  /** The account whose chips can answer it. */
  readonly account: string;
  readonly relyingParty: ScanRequestRelyingParty;
  readonly purpose: string;
  readonly createdAt: Date;
  readonly expiresAt: Date;
  /** The chip families that may answer; empty: any. */
  readonly acceptedChips: readonly PlatformChipKind[];
  readonly state: ScanRequestState;
  /** When a verified answer closed it. */
  readonly answeredAt?: Date;
  /** Present exactly when {@link ScanRequestRecord.state} is `answered`. */
  readonly result?: ScanRequestResult;
}

/** A claim: the challenge handed out for one tap, bound to the request and to one chip. */
export interface ClaimSlot<C, O> {
  /** The opaque secret the client answers with. */
  readonly secret: string;
  readonly uid: string;
  /** When it lapses unanswered, in ms of the platform clock. */
  readonly expiresAt: number;
  /** What the platform needs to verify the answer. */
  readonly data: C;
  /** The first outcome of an answer with this claim; a claim is answered at most once. */
  outcome?: O;
}

/** A scan request as the book keeps it. */
export interface StoredScanRequest<C, O> {
  readonly id: string;
  readonly account: string;
  readonly relyingParty: ScanRequestRelyingParty;
  readonly purpose: string;
  readonly createdAt: number;
  readonly expiresAt: number;
  readonly acceptedChips: readonly PlatformChipKind[];
  /** Every claim made for the request, by secret, replaced and lapsed ones included (they answer claim_invalid). */
  readonly claims: Map<string, ClaimSlot<C, O>>;
  /** The claim that can still be answered, if any and unless it lapsed. */
  current: ClaimSlot<C, O> | undefined;
  closed: { readonly state: 'answered' | 'cancelled' | 'expired'; readonly at: number } | undefined;
  result: ScanRequestResult | undefined;
}

/** What creating a request takes. */
export interface NewScanRequest {
  readonly account: string;
  readonly relyingParty: ScanRequestRelyingParty;
  readonly purpose: string;
  readonly acceptedChips: readonly PlatformChipKind[];
  readonly ttlMs: number;
}

/** Why a wait for a change of an account's list ended. */
export type WaitOutcome = 'changed' | 'timeout' | 'aborted';

/** How long a closed request is remembered (protocol §3.3: at least 10 minutes). */
const FORGET_CLOSED_AFTER_MS = 10 * 60_000;

/** RFC 3339 in UTC. */
export function rfc3339(ms: number): string {
  return new Date(ms).toISOString();
}

/** The book of scan requests. `C` is what a claim carries for verification, `O` the recorded outcome of an answer. */
export class ScanRequestBook<C, O> {
  readonly #clock: Clock;
  readonly #requests = new Map<string, StoredScanRequest<C, O>>();
  /** Long polls waiting for a change of an account's list. */
  readonly #waiters = new Map<string, Set<() => void>>();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** Files a new pending request and wakes the account's long polls. */
  create(request: NewScanRequest): StoredScanRequest<C, O> {
    this.#sweep();
    const now = this.#clock.now();
    const stored: StoredScanRequest<C, O> = {
      id: `sr_${randomBytes(16).toString('base64url')}`,
      account: request.account,
      relyingParty: { id: request.relyingParty.id, name: request.relyingParty.name },
      purpose: request.purpose,
      createdAt: now,
      expiresAt: now + request.ttlMs,
      acceptedChips: [...new Set(request.acceptedChips)],
      claims: new Map(),
      current: undefined,
      closed: undefined,
      result: undefined,
    };
    this.#requests.set(stored.id, stored);
    this.#notify(stored.account);
    return stored;
  }

  /** The request `id`, its state brought up to date; undefined when unknown or forgotten. */
  get(id: string): StoredScanRequest<C, O> | undefined {
    const request = this.#requests.get(id);
    if (request === undefined) return undefined;
    this.#refresh(request, this.#clock.now());
    if (request.closed !== undefined && request.closed.at + FORGET_CLOSED_AFTER_MS <= this.#clock.now()) {
      this.#requests.delete(id);
      return undefined;
    }
    return request;
  }

  /** The state of a request (call after {@link ScanRequestBook.get}, which brings it up to date). */
  stateOf(request: StoredScanRequest<C, O>): ScanRequestState {
    if (request.closed !== undefined) return request.closed.state;
    return request.current === undefined ? 'pending' : 'claimed';
  }

  /** Makes `slot` the request's claim, replacing any earlier one. */
  claim(request: StoredScanRequest<C, O>, slot: ClaimSlot<C, O>): void {
    request.claims.set(slot.secret, slot);
    request.current = slot;
    this.#notify(request.account);
  }

  /** A claim was answered and did not verify: the claim is spent and the request pending again. */
  claimFailed(request: StoredScanRequest<C, O>, slot: ClaimSlot<C, O>): void {
    if (request.current === slot) request.current = undefined;
    this.#notify(request.account);
  }

  /** A claim was answered and verified: the request is answered, with its result. */
  answer(request: StoredScanRequest<C, O>, result: ScanRequestResult, at: number): void {
    request.current = undefined;
    request.closed = { state: 'answered', at };
    request.result = result;
    this.#notify(request.account);
  }

  /** Cancels an open request; false when it was already closed. */
  cancel(request: StoredScanRequest<C, O>): boolean {
    this.#refresh(request, this.#clock.now());
    if (request.closed !== undefined) return false;
    request.current = undefined;
    request.closed = { state: 'cancelled', at: this.#clock.now() };
    this.#notify(request.account);
    return true;
  }

  /**
   * The account's open requests (pending and claimed), oldest first, as the wire shows them, and the strong ETag of
   * exactly that list: it is a digest of the JSON, so that it changes whenever anything in the list does, expiries
   * and claim lapses included, without a version counter to keep in step.
   */
  list(account: string): { readonly requests: readonly Readonly<Record<string, unknown>>[]; readonly etag: string } {
    const now = this.#clock.now();
    const requests: Readonly<Record<string, unknown>>[] = [];
    for (const request of this.#requests.values()) {
      if (request.account !== account) continue;
      this.#refresh(request, now);
      if (request.closed === undefined) requests.push(this.toWire(request));
    }
    const digest = createHash('sha256').update(JSON.stringify(requests), 'utf8').digest('hex');
    return { requests, etag: `"l-${digest.slice(0, 24)}"` };
  }

  /** Milliseconds until the next time-driven change of the account's list (an expiry or a claim lapse), if any. */
  msUntilNextChange(account: string): number | undefined {
    const now = this.#clock.now();
    let next: number | undefined;
    for (const request of this.#requests.values()) {
      if (request.account !== account || request.closed !== undefined) continue;
      for (const at of [request.expiresAt, request.current?.expiresAt]) {
        if (at !== undefined && (next === undefined || at < next)) next = at;
      }
    }
    return next === undefined ? undefined : Math.max(0, next - now);
  }

  /**
   * Waits until the account's list may have changed (an API call changed it), `ms` passed, or `signal` aborted.
   * No polling: a change wakes exactly the waiters of its account.
   */
  waitForChange(account: string, ms: number, signal: AbortSignal): Promise<WaitOutcome> {
    return new Promise((resolve) => {
      if (signal.aborted) {
        resolve('aborted');
        return;
      }
      let waiters = this.#waiters.get(account);
      if (waiters === undefined) {
        waiters = new Set();
        this.#waiters.set(account, waiters);
      }
      const room = waiters;
      const finish = (outcome: WaitOutcome): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        room.delete(wake);
        if (room.size === 0 && this.#waiters.get(account) === room) this.#waiters.delete(account);
        resolve(outcome);
      };
      const wake = (): void => finish('changed');
      const onAbort = (): void => finish('aborted');
      const timer = setTimeout(() => finish('timeout'), Math.max(0, ms));
      room.add(wake);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** The request as the wire shows it (protocol §3.2), without the result. */
  toWire(request: StoredScanRequest<C, O>): Readonly<Record<string, unknown>> {
    return {
      id: request.id,
      relying_party: { id: request.relyingParty.id, name: request.relyingParty.name },
      purpose: request.purpose,
      created_at: rfc3339(request.createdAt),
      expires_at: rfc3339(request.expiresAt),
      accepted_chips: [...request.acceptedChips],
      state: this.stateOf(request),
    };
  }

  /** The test hooks' snapshot of a request. */
  toRecord(request: StoredScanRequest<C, O>): ScanRequestRecord {
    const answered = request.closed?.state === 'answered' ? request.closed.at : undefined;
    return Object.freeze({
      id: request.id,
      account: request.account,
      relyingParty: Object.freeze({ ...request.relyingParty }),
      purpose: request.purpose,
      createdAt: new Date(request.createdAt),
      expiresAt: new Date(request.expiresAt),
      acceptedChips: Object.freeze([...request.acceptedChips]),
      state: this.stateOf(request),
      ...(answered === undefined ? {} : { answeredAt: new Date(answered) }),
      ...(request.result === undefined ? {} : { result: Object.freeze({ ...request.result }) }),
    });
  }

  /** Expires an open request at its `expires_at` and lets a lapsed claim go, on the platform clock. */
  #refresh(request: StoredScanRequest<C, O>, now: number): void {
    if (request.closed !== undefined) return;
    if (now >= request.expiresAt) {
      request.current = undefined;
      request.closed = { state: 'expired', at: request.expiresAt };
      return;
    }
    if (request.current !== undefined && now >= request.current.expiresAt) request.current = undefined;
  }

  #notify(account: string): void {
    const waiters = this.#waiters.get(account);
    if (waiters === undefined) return;
    for (const wake of [...waiters]) wake();
  }

  /** Forgets requests closed long ago, so that a long-running `--sim` does not grow without bound. */
  #sweep(): void {
    const now = this.#clock.now();
    for (const [id, request] of this.#requests) {
      this.#refresh(request, now);
      if (request.closed !== undefined && request.closed.at + FORGET_CLOSED_AFTER_MS <= now) this.#requests.delete(id);
    }
  }
}
