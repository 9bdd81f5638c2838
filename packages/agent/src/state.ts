import { toHex, toTaplineError, type ReadersEvent, type ScanEvent, type TagEvent } from '@tapline/core';
import type { AgentStatus, ChooseOutcome } from './control.js';
import type { PlatformRequestSource } from './platform-source.js';

/** How many finished scans `tapline agent status` shows. */
const LAST_SCANS = 10;

type ReaderStatus = AgentStatus['readers'][number];
type ScanStatus = AgentStatus['lastScans'][number];

/**
 * What the running agent knows, kept up to date from its streams, for `tapline agent status` and for checking a
 * `tapline agent choose` before it reaches the pipeline.
 */
export class AgentState {
  associated: AgentStatus['associated'] = null;
  platformUrl = '';
  source: PlatformRequestSource | undefined;
  readonly #startedAt = new Date().toISOString();
  readonly #readers = new Map<string, ReaderStatus>();
  readonly #lastScans: ScanStatus[] = [];
  #chosen: string | undefined;
  #offered: readonly string[] = [];
  #dialogue = false;

  /** True while a chip dialogue runs. */
  get dialogueRunning(): boolean {
    return this.#dialogue;
  }

  onReaderEvent(event: ReadersEvent): void {
    if (event.type === 'attached') {
      this.#readers.set(event.reader.name, {
        name: event.reader.name,
        driver: event.driver.id,
        capabilities: [...event.reader.capabilities],
      });
    } else if (event.type === 'detached') {
      this.#readers.delete(event.reader.name);
    }
  }

  onTagEvent(event: TagEvent): void {
    const reader = this.#readers.get(event.tag.readerName);
    if (!reader) return;
    const { tag: _previous, ...rest } = reader;
    const chip = event.tag.identification?.chip;
    this.#readers.set(
      reader.name,
      event.type === 'arrived' ? { ...rest, tag: { uid: toHex(event.tag.uid), ...(chip ? { chip } : {}) } } : rest,
    );
  }

  onScanEvent<R extends { readonly chip?: string }>(event: ScanEvent<R>): void {
    switch (event.type) {
      case 'started':
        this.#dialogue = true;
        this.#chosen = undefined;
        return;
      case 'completed':
        this.#dialogue = false;
        this.#record({
          requestId: event.request.id,
          at: new Date().toISOString(),
          outcome: 'answered',
          ...(event.result.chip ? { chip: event.result.chip } : {}),
        });
        return;
      case 'failed': {
        this.#dialogue = false;
        const { code, message } = toTaplineError(event.error);
        this.#record({
          requestId: event.request.id,
          at: new Date().toISOString(),
          outcome: 'failed',
          error: { code, message },
        });
        return;
      }
      case 'choice-needed':
        this.#chosen = undefined;
        this.#offered = event.requests.map((r) => r.id);
        return;
      case 'chosen':
        this.#chosen = event.request.id;
        return;
      case 'ready':
        this.#chosen = undefined;
        this.#offered = [event.request.id];
        return;
      case 'idle':
        this.#chosen = undefined;
        this.#offered = [];
        return;
      default:
        return;
    }
  }

  /** Checks a pick from the control socket: only a request on offer can be chosen. */
  choose(id: string): ChooseOutcome {
    if (this.#offered.length === 0) {
      return { error: { code: 'NOTHING_TO_CHOOSE', message: 'No scan request is pending.' } };
    }
    if (!this.#offered.includes(id)) {
      return {
        error: {
          code: 'UNKNOWN_REQUEST',
          message: `No pending request has the id ${id}. Pending: ${this.#offered.join(', ')}.`,
        },
      };
    }
    // With one request pending the next tap answers it anyway; saying so beats refusing a correct id.
    return { chosen: id };
  }

  snapshot(): AgentStatus {
    const reachability = this.source?.reachability;
    const offset = this.source?.serverOffsetMs ?? 0;
    return {
      v: 1,
      pid: process.pid,
      startedAt: this.#startedAt,
      associated: this.associated,
      platform: {
        url: this.platformUrl,
        reachable: reachability?.reachable ?? false,
        ...(reachability?.lastContactAt === undefined
          ? {}
          : { lastContactAt: new Date(reachability.lastContactAt).toISOString() }),
        ...(reachability?.lastError === undefined
          ? {}
          : { lastError: { code: reachability.lastError.code, message: reachability.lastError.message } }),
      },
      readers: [...this.#readers.values()],
      // On this machine's clock, like everything else the status shows (the platform's may be off).
      pending: (this.source?.requests ?? []).map((r) => ({
        id: r.id,
        ...(r.relyingParty ? { relyingParty: r.relyingParty.name ?? r.relyingParty.id } : {}),
        ...(r.purpose === undefined ? {} : { purpose: r.purpose }),
        ...(r.createdAt === undefined ? {} : { createdAt: new Date(r.createdAt - offset).toISOString() }),
        ...(r.expiresAt === undefined ? {} : { expiresAt: new Date(r.expiresAt - offset).toISOString() }),
        ...(r.acceptedChips === undefined ? {} : { acceptedChips: [...r.acceptedChips] }),
        ...(this.#chosen === r.id ? { chosen: true } : {}),
      })),
      lastScans: [...this.#lastScans],
    };
  }

  #record(scan: ScanStatus): void {
    this.#lastScans.unshift(scan);
    this.#lastScans.length = Math.min(this.#lastScans.length, LAST_SCANS);
  }
}
