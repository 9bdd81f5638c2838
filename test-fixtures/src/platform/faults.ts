import { ErrorCode, TaplineError } from '@tapline/core';

/**
 * Fault injection for the reference platform: what a flaky network, an overloaded gateway or a broken deployment
 * does to a client, on demand and count-limited, so that every error path of an HTTP client can be tested.
 *
 * @packageDocumentation
 */

/** What every fault takes. */
export interface PlatformFaultBase {
  /**
   * Only requests to this path. Default: every path. A request answers to its exact path (`/session`,
   * `/oidc/token`, `/scan-requests/sr_…/claim`), to its route template when the path holds an id
   * (`/scan-requests/{id}/claim`, `/scan-requests/{id}/answer`, `/scan-requests/{id}/cancel`,
   * `/rp/scan-requests/{id}`, `/oidc/device/{uid}`, `/oidc/interaction/{uid}`) and to its family: `/scan-requests`
   * (the list and every claim, answer and cancel), `/rp/scan-requests` (create and read), `/oidc` (every request to
   * the OpenID Provider).
   */
  readonly path?: string;
  /** How many matching requests it hits, then it is spent. Default: every one until cleared. */
  readonly times?: number;
}

/** Waits `ms` before the request is handled (the answer comes late but is otherwise real). */
export interface LatencyFault extends PlatformFaultBase {
  readonly kind: 'latency';
  readonly ms: number;
}

/** Answers with `status` (a 5xx from a gateway, a 429, …) and `body` instead of the real answer. */
export interface StatusFault extends PlatformFaultBase {
  readonly kind: 'status';
  readonly status: number;
  /** The body, sent as is with `Content-Type: application/json`. Default `{"error":"injected fault"}`. */
  readonly body?: string;
  /**
   * Handle the request first (consuming a challenge token, recording a counter) and then answer `status` anyway:
   * "the platform did it, but the answer was lost". Default false: the request never reaches the platform.
   */
  readonly processed?: boolean;
}

/** Resets the connection (TCP RST) without an answer: the client's request fails. */
export interface ResetFault extends PlatformFaultBase {
  readonly kind: 'reset';
  /** Handle the request first, then reset (see {@link StatusFault.processed}). Default false. */
  readonly processed?: boolean;
}

/** Handles the request, then sends the first half of the real JSON answer as the whole body: it does not parse. */
export interface MalformedJsonFault extends PlatformFaultBase {
  readonly kind: 'malformed-json';
}

/** Sends the headers at once, then trickles the real body over `ms` in `chunks` pieces. */
export interface SlowBodyFault extends PlatformFaultBase {
  readonly kind: 'slow-body';
  readonly ms: number;
  /** Pieces of the body, each after `ms / chunks`. Default 8 (fewer for a shorter body). */
  readonly chunks?: number;
}

/** Any fault. Several may hit one request: latencies add up, and the first status or reset decides the answer. */
export type PlatformFault = LatencyFault | StatusFault | ResetFault | MalformedJsonFault | SlowBodyFault;

/** The kinds of {@link PlatformFault}. */
export type PlatformFaultKind = PlatformFault['kind'];

/** A fault still armed, with the hits it has left (undefined: unlimited). */
export interface ArmedFault {
  readonly fault: PlatformFault;
  readonly remaining: number | undefined;
}

/** The fault switchboard of a running reference platform. */
export interface FaultControl {
  /** Replaces every armed fault with `faults`. Fails with `INVALID_ARGUMENT` for a malformed fault. */
  set(faults: PlatformFault | readonly PlatformFault[]): void;
  /** Arms one more fault, after those already armed. */
  add(fault: PlatformFault): void;
  /** Disarms every fault. */
  clear(): void;
  /** The faults still armed, in order. */
  readonly armed: readonly ArmedFault[];
  /** How many times a fault hit a request so far. */
  readonly injected: number;
}

function invalid(message: string): TaplineError {
  return new TaplineError(ErrorCode.InvalidArgument, message);
}

function checkMs(ms: unknown, kind: string): void {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) {
    throw invalid(`A ${kind} fault needs ms, a finite number ≥ 0.`);
  }
}

/** Checks a fault and returns a frozen copy. */
function checkFault(fault: PlatformFault): PlatformFault {
  if (fault.path !== undefined && (typeof fault.path !== 'string' || !fault.path.startsWith('/'))) {
    throw invalid(`A fault path starts with "/"; got "${String(fault.path)}".`);
  }
  if (fault.times !== undefined && (!Number.isSafeInteger(fault.times) || fault.times < 1)) {
    throw invalid(`A fault's times must be a positive integer, not ${fault.times}.`);
  }
  switch (fault.kind) {
    case 'latency':
      checkMs(fault.ms, fault.kind);
      break;
    case 'slow-body':
      checkMs(fault.ms, fault.kind);
      if (fault.chunks !== undefined && (!Number.isSafeInteger(fault.chunks) || fault.chunks < 1)) {
        throw invalid(`A slow-body fault's chunks must be a positive integer, not ${fault.chunks}.`);
      }
      break;
    case 'status':
      if (!Number.isInteger(fault.status) || fault.status < 200 || fault.status > 599) {
        throw invalid(`A status fault needs an HTTP status 200–599, not ${fault.status}.`);
      }
      break;
    case 'reset':
    case 'malformed-json':
      break;
    default:
      throw invalid(`Unknown fault kind "${String((fault as { kind: unknown }).kind)}".`);
  }
  return Object.freeze({ ...fault });
}

interface Slot {
  readonly fault: PlatformFault;
  remaining: number | undefined;
}

/** The faults that hit one request, sorted by role. */
export interface FaultPlan {
  /** Total latency before handling. */
  readonly latencyMs: number;
  /** The first status or reset fault, if any. */
  readonly answer: StatusFault | ResetFault | undefined;
  readonly malformed: boolean;
  readonly slowBody: SlowBodyFault | undefined;
}

/**
 * The platform's {@link FaultControl}, plus {@link FaultInjector.take} for the server. Not exported from the
 * package: tests reach it through `platform.faults`.
 */
export class FaultInjector implements FaultControl {
  #slots: Slot[] = [];
  #injected = 0;

  set(faults: PlatformFault | readonly PlatformFault[]): void {
    const list: readonly PlatformFault[] = Array.isArray(faults) ? faults : [faults as PlatformFault];
    const slots = list.map((fault) => ({ fault: checkFault(fault), remaining: fault.times }));
    this.#slots = slots;
  }

  add(fault: PlatformFault): void {
    this.#slots.push({ fault: checkFault(fault), remaining: fault.times });
  }

  clear(): void {
    this.#slots = [];
  }

  get armed(): readonly ArmedFault[] {
    return this.#slots.map(({ fault, remaining }) => ({ fault, remaining }));
  }

  get injected(): number {
    return this.#injected;
  }

  /**
   * Takes the faults that hit a request known by `names` (its path, and the route template and family it belongs
   * to, see {@link PlatformFaultBase.path}), spending one of each one's hits.
   */
  take(names: string | readonly string[]): FaultPlan {
    const known: readonly string[] = typeof names === 'string' ? [names] : names;
    let latencyMs = 0;
    let answer: StatusFault | ResetFault | undefined;
    let malformed = false;
    let slowBody: SlowBodyFault | undefined;
    for (const slot of this.#slots) {
      const { fault } = slot;
      if (fault.path !== undefined && !known.includes(fault.path)) continue;
      // A second status or reset could not change the answer; it stays armed for the next request.
      if ((fault.kind === 'status' || fault.kind === 'reset') && answer !== undefined) continue;
      if (fault.kind === 'slow-body' && slowBody !== undefined) continue;
      if (fault.kind === 'malformed-json' && malformed) continue;
      switch (fault.kind) {
        case 'latency':
          latencyMs += fault.ms;
          break;
        case 'status':
        case 'reset':
          answer = fault;
          break;
        case 'malformed-json':
          malformed = true;
          break;
        case 'slow-body':
          slowBody = fault;
          break;
      }
      this.#injected += 1;
      if (slot.remaining !== undefined) slot.remaining -= 1;
    }
    this.#slots = this.#slots.filter((slot) => slot.remaining === undefined || slot.remaining > 0);
    return { latencyMs, answer, malformed, slowBody };
  }
}
