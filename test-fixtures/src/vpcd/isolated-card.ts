import { existsSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ErrorCode, TaplineError, fromHex, type TaplineErrorCode } from '@tapline/core';
import type { VirtualChipKind, VirtualChipOptionsByKind } from '../chips/index.js';
import type { ReaderEmulation } from './emulation.js';
import type { VirtualCardApdu, VirtualCardCounters, VirtualChipExchange } from './vpicc.js';

/**
 * A virtual chip by kind and options, built inside the card's worker thread. Options must survive structured cloning
 * (UIDs, keys, memory, URLs): functions such as a custom `random` or `signer` cannot cross threads.
 */
export type VirtualChipSpec = {
  readonly [K in VirtualChipKind]: { readonly kind: K; readonly options?: VirtualChipOptionsByKind[K] };
}[VirtualChipKind];

/**
 * A per-APDU hook as data, for a card in a worker thread: APDUs that start with `prefix` (hex, spaces allowed; every
 * APDU when absent) get `action` — `'never'` (no answer until the card is removed), a delay, a replaced answer — for
 * the next `times` matches (default: all). The first matching rule wins.
 */
export interface ApduRule {
  readonly prefix?: string;
  readonly times?: number;
  readonly action: 'never' | { readonly delayMs?: number; readonly response?: Uint8Array };
}

/** What an {@link IsolatedVirtualCard} reports about itself (a copy taken in the worker). */
export interface VirtualCardSnapshot {
  readonly connected: boolean;
  readonly wanted: boolean;
  readonly powered: boolean;
  readonly counters: VirtualCardCounters;
  readonly apdus: readonly VirtualCardApdu[];
  readonly chipExchanges: readonly VirtualChipExchange[];
  /** Emulation, hook and socket failures as messages; a test should expect none. */
  readonly errors: readonly string[];
  /** `Date.now()` when the last APDU was answered, for timing checks across threads. */
  readonly lastAnsweredAt: number | undefined;
}

/** Options of {@link IsolatedVirtualCard}. */
export interface IsolatedVirtualCardOptions {
  /** vpcd's port for the slot, read on every insert (it may change when pcscd restarts). */
  readonly port: () => number;
  readonly host?: string;
  /** One of the built-in emulations (looked up by id inside the worker). */
  readonly emulation: ReaderEmulation;
  readonly rules?: readonly ApduRule[];
  readonly insertTimeoutMs?: number;
  /** APDUs and chip frames kept for {@link IsolatedVirtualCard.snapshot}. Default 64; 0 keeps none. */
  readonly history?: number;
  /**
   * Post every arriving APDU to this thread, for {@link IsolatedVirtualCard.nextApdu}. Default true; a benchmark
   * turns it off so that this thread does no work per APDU.
   */
  readonly observe?: boolean;
}

/** @internal the messages between {@link IsolatedVirtualCard} and its worker. */
export type CardWorkerRequest =
  | { readonly id: number; readonly type: 'insert'; readonly port: number; readonly chip: VirtualChipSpec | undefined }
  | { readonly id: number; readonly type: 'remove' }
  | { readonly id: number; readonly type: 'rules'; readonly rules: readonly ApduRule[] }
  | { readonly id: number; readonly type: 'snapshot' };

/** @internal */
export type CardWorkerMessage =
  | { readonly type: 'reply'; readonly id: number; readonly value: unknown }
  | {
      readonly type: 'failure';
      readonly id: number;
      readonly error: { readonly code?: TaplineErrorCode; readonly message: string; readonly hint?: string };
    }
  | { readonly type: 'apdu'; readonly command: Uint8Array }
  | { readonly type: 'disconnected' };

/** @internal what the worker is started with. */
export interface CardWorkerData {
  readonly emulationId: string;
  readonly host: string;
  readonly rules: readonly ApduRule[];
  readonly insertTimeoutMs: number | undefined;
  readonly history: number | undefined;
  readonly observe: boolean;
}

const EMULATION_IDS = new Set(['acr122u', 'acr1252u', 'utrust3720f']);

/**
 * A virtual card whose vpicc connection, reader emulation and chip live in a worker thread, so that it keeps
 * answering vpcd while this thread is blocked.
 *
 * Why: the `pcsclite` binding runs SCardTransmit on a libuv worker holding the reader's mutex, and delivers status
 * events on the main thread under that same mutex. A card that answers from the main thread deadlocks the process
 * when a status event (another context connecting, say) arrives while one of its APDUs is pending: the main thread
 * waits for the mutex, the transmit for the card, the card for the main thread. {@link PrivatePcscd.card} therefore
 * hands out these; {@link VirtualCard} (same thread) is for tests without a PC/SC client in the thread.
 *
 * The state getters mirror the worker asynchronously; {@link IsolatedVirtualCard.snapshot} asks it directly.
 */
export class IsolatedVirtualCard {
  readonly emulation: ReaderEmulation;
  readonly #options: IsolatedVirtualCardOptions;
  #worker: Worker | undefined;
  #nextId = 1;
  readonly #pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: unknown) => void }>();
  #apduWaiters: { readonly match: (apdu: Uint8Array) => boolean; readonly resolve: (apdu: Uint8Array) => void }[] = [];
  #disconnectWaiters: (() => void)[] = [];
  #chip: VirtualChipSpec | undefined;
  #wanted = false;
  #connected = false;
  #terminated = false;

  constructor(options: IsolatedVirtualCardOptions) {
    if (!EMULATION_IDS.has(options.emulation.id)) {
      throw new TaplineError(
        ErrorCode.InvalidArgument,
        `A card in a worker thread needs a built-in emulation (${[...EMULATION_IDS].join(', ')}), not "${options.emulation.id}".`,
        { hint: 'Use PrivatePcscd.inProcessCard() (or VirtualCard) for a custom emulation.' },
      );
    }
    this.#options = options;
    this.emulation = options.emulation;
  }

  /** The chip on the reader (or last put on it). */
  get chip(): VirtualChipSpec | undefined {
    return this.#chip;
  }

  /** True from insert until remove, also while pcscd is down (see {@link VirtualCard.wanted}). */
  get wanted(): boolean {
    return this.#wanted;
  }

  /** True while the worker's connection to vpcd is up, as far as this thread has heard. */
  get connected(): boolean {
    return this.#connected;
  }

  /** Puts a chip on the reader; see {@link VirtualCard.insert} (same results and errors). */
  async insert(chip: VirtualChipSpec | undefined = this.#chip): Promise<boolean> {
    if (!chip)
      throw new TaplineError(ErrorCode.InvalidArgument, 'IsolatedVirtualCard.insert needs a chip the first time.');
    this.#chip = chip;
    this.#wanted = true;
    const visible = (await this.request({ type: 'insert', port: this.#options.port(), chip })) as boolean;
    this.#connected = visible;
    return visible;
  }

  /** Takes the chip off the reader. */
  async remove(): Promise<void> {
    this.#wanted = false;
    if (!this.#worker) return;
    await this.request({ type: 'remove' });
    this.#connected = false;
  }

  /** Replaces the APDU rules. */
  async setRules(rules: readonly ApduRule[]): Promise<void> {
    await this.request({ type: 'rules', rules });
  }

  /**
   * Resolves with the next APDU that arrives at the card (before it is answered) and starts with `prefix` (hex) or
   * passes `match`. Call it before causing the APDU. Fails with `TIMEOUT` after `timeoutMs` (default 3000).
   */
  nextApdu(match?: string | ((apdu: Uint8Array) => boolean), timeoutMs = 3000): Promise<Uint8Array> {
    if (this.#options.observe === false) {
      return Promise.reject(new TaplineError(ErrorCode.InvalidArgument, 'This card was made with observe: false.'));
    }
    const test = typeof match === 'function' ? match : prefixMatcher(match);
    return new Promise<Uint8Array>((resolve, reject) => {
      const waiter = {
        match: test,
        resolve: (apdu: Uint8Array) => {
          clearTimeout(timer);
          resolve(apdu);
        },
      };
      const timer = setTimeout(() => {
        this.#apduWaiters = this.#apduWaiters.filter((w) => w !== waiter);
        reject(
          new TaplineError(ErrorCode.Timeout, `No matching APDU reached the virtual card within ${timeoutMs} ms.`),
        );
      }, timeoutMs);
      this.#apduWaiters.push(waiter);
    });
  }

  /** The card's state, asked from its worker. */
  async snapshot(): Promise<VirtualCardSnapshot> {
    return (await this.request({ type: 'snapshot' })) as VirtualCardSnapshot;
  }

  /** Resolves when the worker reports that vpcd dropped (or the card closed) the connection. */
  whenDisconnected(): Promise<void> {
    if (!this.#connected) return Promise.resolve();
    return new Promise((resolve) => this.#disconnectWaiters.push(resolve));
  }

  /** Ends the worker (closing its connection). The card cannot be used afterwards. */
  async terminate(): Promise<void> {
    this.#terminated = true;
    const worker = this.#worker;
    this.#worker = undefined;
    if (worker) await worker.terminate();
    this.settleDisconnected();
  }

  private request(message: DistributiveOmit<CardWorkerRequest, 'id'>): Promise<unknown> {
    if (this.#terminated) {
      return Promise.reject(new TaplineError(ErrorCode.InvalidArgument, 'This virtual card was terminated.'));
    }
    const worker = this.ensureWorker();
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      worker.postMessage({ ...message, id });
    });
  }

  private ensureWorker(): Worker {
    if (this.#worker) return this.#worker;
    const data: CardWorkerData = {
      emulationId: this.emulation.id,
      host: this.#options.host ?? '127.0.0.1',
      rules: this.#options.rules ?? [],
      insertTimeoutMs: this.#options.insertTimeoutMs,
      history: this.#options.history,
      observe: this.#options.observe !== false,
    };
    const worker = new Worker(workerUrl(), { workerData: data });
    // A forgotten card must not keep the process alive; PrivatePcscd.stop() terminates it anyway.
    worker.unref();
    worker.on('message', (message: CardWorkerMessage) => this.onMessage(message));
    worker.on('error', (error) => this.failAll(error));
    worker.on('exit', () => {
      if (this.#worker === worker) this.#worker = undefined;
      this.failAll(new TaplineError(ErrorCode.Internal, 'The virtual card worker exited.'));
      this.settleDisconnected();
    });
    this.#worker = worker;
    return worker;
  }

  private onMessage(message: CardWorkerMessage): void {
    switch (message.type) {
      case 'reply':
      case 'failure': {
        const pending = this.#pending.get(message.id);
        if (!pending) return;
        this.#pending.delete(message.id);
        if (message.type === 'reply') pending.resolve(message.value);
        else pending.reject(restoreError(message.error));
        return;
      }
      case 'apdu': {
        const waiter = this.#apduWaiters.find((w) => w.match(message.command));
        if (!waiter) return;
        this.#apduWaiters = this.#apduWaiters.filter((w) => w !== waiter);
        waiter.resolve(message.command);
        return;
      }
      case 'disconnected':
        this.settleDisconnected();
        return;
    }
  }

  private settleDisconnected(): void {
    this.#connected = false;
    const waiters = this.#disconnectWaiters;
    this.#disconnectWaiters = [];
    for (const wake of waiters) wake();
  }

  private failAll(error: unknown): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(error);
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** Matches APDUs starting with the hex `prefix` (every APDU when absent). */
export function prefixMatcher(prefix: string | undefined): (apdu: Uint8Array) => boolean {
  if (prefix === undefined) return () => true;
  const bytes = fromHex(prefix.replace(/\s+/g, ''));
  return (apdu) => apdu.length >= bytes.length && bytes.every((byte, i) => apdu[i] === byte);
}

function restoreError(error: {
  readonly code?: TaplineErrorCode;
  readonly message: string;
  readonly hint?: string;
}): Error {
  return error.code
    ? new TaplineError(error.code, error.message, error.hint === undefined ? {} : { hint: error.hint })
    : new Error(error.message);
}

let staleWarned = false;

/**
 * The compiled worker entry. Under vitest this module runs from `src`, where there is no `.js` to start a worker
 * with, so the package's `dist` build is used: build test-fixtures (`npx tsc -b`) before its tests.
 */
function workerUrl(): URL {
  const sibling = new URL('./card-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(sibling))) return sibling;
  const built = new URL('../../dist/vpcd/card-worker.js', import.meta.url);
  const builtPath = fileURLToPath(built);
  if (!existsSync(builtPath)) {
    throw new TaplineError(ErrorCode.NotConfigured, `The virtual card worker ${builtPath} is not built.`, {
      hint: 'Run `npx tsc -b` in test-fixtures (turbo builds before testing).',
    });
  }
  const source = fileURLToPath(new URL('./card-worker.ts', import.meta.url));
  if (!staleWarned && existsSync(source) && statSync(source).mtimeMs > statSync(builtPath).mtimeMs) {
    staleWarned = true;
    process.emitWarning(
      `${builtPath} is older than its source: rebuild test-fixtures (npx tsc -b).`,
      'TaplineVpcdWarning',
    );
  }
  return built;
}
