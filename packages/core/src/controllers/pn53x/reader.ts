import { Capability, type FrameCapability } from '../../model/capabilities.js';
import type { DriverContext } from '../../model/driver.js';
import {
  ErrorCode,
  TaplineError,
  hasErrorCode,
  isTaplineError,
  iso15693UnsupportedError,
  tagLostError,
} from '../../model/errors.js';
import { ReaderBase } from '../../model/reader.js';
import type { Tag, TagInfo } from '../../model/tag.js';
import {
  FELICA_POLLING_REQUEST,
  Pn53xRegister,
  pn53xCascadeUid,
  type Pn53xTarget,
  type Pn53xTypeBTarget,
} from './commands.js';
import type { Pn53xCallOptions, Pn53xController } from './controller.js';
import { stripCrcA } from './crc.js';
import { Pn53xModulation } from './models.js';

/** The frame capabilities this layer implements on a PN53x. ISO 15693 is not among them: no PN53x speaks it. */
export const PN53X_FRAME_CAPABILITIES: readonly FrameCapability[] = Object.freeze([
  Capability.Iso14443aRaw,
  Capability.Iso14443_4,
  Capability.Iso14443b,
  Capability.Felica,
]);

/** Options of {@link Pn53xReader}. */
export interface Pn53xReaderOptions {
  /** Reader name (what `tapline readers` shows). */
  readonly name: string;
  readonly driverId: string;
  /** The chip, over whatever link the driver built. */
  readonly controller: Pn53xController;
  readonly context: DriverContext;
  /**
   * What the driver offers. Frame capabilities this layer does not implement, or that the chip's modulations rule out,
   * are dropped.
   */
  readonly capabilities: readonly Capability[];
  /** Pause between polls while no tag is present, in milliseconds. Default 200; at least 10. */
  readonly pollIntervalMs?: number;
  /**
   * How long a tag may go without an exchange before the reader checks it is still there, in milliseconds. Default
   * `pollIntervalMs`. For tags without ISO-DEP the check is a re-poll, which re-activates the tag: volatile tag state
   * (a Type 2 PWD_AUTH, say) does not outlive this much idle time.
   */
  readonly presenceIntervalMs?: number;
  /** The modulations to poll, in order; default: those the capabilities need (Type A, Type B, FeliCa 212). */
  readonly modulations?: readonly Pn53xModulation[];
  /** Releases the transport; called once, after the reader stopped talking to the chip. */
  readonly releaseTransport?: () => Promise<void>;
}

/** A safety net under the per-call deadline ReaderBase already enforces (it aborts the link through the signal). */
const EXCHANGE_BACKSTOP_MS = 60_000;
/** Waits of the best-effort clean-up on close. */
const CLOSE_STEP_TIMEOUT_MS = 250;
/** Longest pause between polls after repeated failures. */
const MAX_BACKOFF_MS = 5000;

/** The target the chip holds for the current tag, and what the reader changed in the chip for it. */
interface ActiveTarget {
  target: Pn53xTarget;
  tagId: string;
  /**
   * Whether the chip checks and strips the RX CRC (CIU_RxMode b7). Every activation turns it on, so it is known
   * without a register read until the reader turns it off for raw frames.
   */
  rxCrc: boolean;
  /** CIU_RxMode as last read or written; undefined until the reader first needs it after an activation. */
  rxMode: number | undefined;
  /** Type B: whether the firmware's ISO-DEP activation (its automatic ATTRIB) is in force. */
  bIsoDep: boolean;
}

/** The ISO 15693 refusal of a PN53x reader (see {@link iso15693UnsupportedError}). */
export function pn53xIso15693Error(readerName: string, chip: string): TaplineError {
  return iso15693UnsupportedError(readerName, chip);
}

/**
 * What a reader reports for a PN53x target: technology, UID, ATQA/SAK/ATS, and the frame capabilities among
 * `capabilities` the target answers on. Undefined for targets Tapline has no use for (Jewel).
 */
export function pn53xTagInfo(target: Pn53xTarget, capabilities: ReadonlySet<Capability>): TagInfo | undefined {
  const keep = (protocols: FrameCapability[]): FrameCapability[] => protocols.filter((p) => capabilities.has(p));
  switch (target.kind) {
    case 'iso14443a':
      return {
        technology: 'iso14443a',
        uid: target.uid,
        atqa: target.atqa,
        sak: target.sak,
        ...(target.ats ? { ats: target.ats } : {}),
        protocols: keep(target.isoDep ? [Capability.Iso14443_4, Capability.Iso14443aRaw] : [Capability.Iso14443aRaw]),
      };
    case 'iso14443b':
      return {
        technology: 'iso14443b',
        uid: target.pupi,
        protocols: keep(target.isoDep ? [Capability.Iso14443_4, Capability.Iso14443b] : [Capability.Iso14443b]),
      };
    case 'felica':
      return { technology: 'felica', uid: target.idm, protocols: keep([Capability.Felica]) };
    case 'jewel':
      return undefined;
  }
}

function sameTag(a: Pn53xTarget, b: Pn53xTarget): boolean {
  const id = (t: Pn53xTarget): Uint8Array =>
    t.kind === 'iso14443a' ? t.uid : t.kind === 'iso14443b' ? t.pupi : t.kind === 'felica' ? t.idm : t.jewelId;
  const x = id(a);
  const y = id(b);
  return a.kind === b.kind && x.length === y.length && x.every((v, i) => v === y[i]);
}

function modulationOf(target: Pn53xTarget): Pn53xModulation {
  switch (target.kind) {
    case 'iso14443a':
      return Pn53xModulation.TypeA106;
    case 'iso14443b':
      return Pn53xModulation.TypeB106;
    case 'felica':
      return target.bitRate === 424 ? Pn53xModulation.Felica424 : Pn53xModulation.Felica212;
    case 'jewel':
      return Pn53xModulation.Jewel106;
  }
}

function initiatorDataFor(brTy: Pn53xModulation, known?: Pn53xTarget): Uint8Array | undefined {
  switch (brTy) {
    case Pn53xModulation.TypeA106:
      return known?.kind === 'iso14443a' ? pn53xCascadeUid(known.uid) : undefined;
    case Pn53xModulation.TypeB106:
    case Pn53xModulation.TypeB212:
    case Pn53xModulation.TypeB424:
    case Pn53xModulation.TypeB847:
      return Uint8Array.of(0x00); // AFI 00: every application family
    case Pn53xModulation.Felica212:
    case Pn53xModulation.Felica424:
      return FELICA_POLLING_REQUEST;
    default:
      return undefined;
  }
}

/** True for errors that come from the air (the tag), as opposed to the chip or the transport. */
function isAirError(error: unknown): boolean {
  return isTaplineError(error) && error.details['chipStatus'] !== undefined;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * A reader over any PN53x: it polls for targets with InListPassiveTarget at a bounded interval (a PN53x reports no
 * card events), announces them, notices their removal (a failed Diagnose 06 for ISO-DEP targets, a failed re-poll
 * for the others, or a failed exchange followed by either), and carries frames:
 *
 * | capability | how |
 * |---|---|
 * | `iso14443-4` | InDataExchange; the chip runs ISO-DEP (AutoRATS / ATTRIB) |
 * | `iso14443a-raw` | InCommunicateThru with the chip's RX-CRC check off (CIU_RxMode b7), CRC_A checked here, so that 4-bit ACK/NAK answers arrive |
 * | `iso14443b` | InCommunicateThru, after undoing the firmware's automatic ATTRIB (S(DESELECT) `C2`, WUPB `05 00 08`) |
 * | `felica` | InCommunicateThru; frames start with their length byte (`LEN CMD IDm …`), as on air without sync and CRC |
 * | `iso15693` | `UNSUPPORTED_CAPABILITY`: no PN53x speaks it |
 *
 * Drivers build it with a {@link Pn53xController} over their link, call {@link Pn53xReader.start}, and hand it out.
 */
export class Pn53xReader extends ReaderBase {
  readonly #controller: Pn53xController;
  readonly #pollIntervalMs: number;
  readonly #presenceIntervalMs: number;
  readonly #modulations: readonly Pn53xModulation[];
  readonly #releaseTransport: (() => Promise<void>) | undefined;
  /** Aborted when the reader closes: ends the poll loop and every chip command it started. */
  readonly #stop = new AbortController();
  #chipQueue: Promise<unknown> = Promise.resolve();
  #loop: Promise<void> | undefined;
  #active: ActiveTarget | undefined;
  #lastActivity = 0;

  constructor(options: Pn53xReaderOptions) {
    const model = options.controller.model;
    const modulationsOk = (m: Pn53xModulation): boolean => (model.modulations as readonly number[]).includes(m);
    const implemented = new Set<Capability>(PN53X_FRAME_CAPABILITIES);
    const capabilities = options.capabilities.filter(
      (c) =>
        implemented.has(c) &&
        (c !== Capability.Iso14443b || modulationsOk(Pn53xModulation.TypeB106)) &&
        (c !== Capability.Felica || modulationsOk(Pn53xModulation.Felica212)),
    );
    super({
      name: options.name,
      driverId: options.driverId,
      capabilities,
      logger: options.context.logger,
      clock: options.context.clock,
      defaultTimeoutMs: options.context.timeoutMs,
    });
    this.#controller = options.controller;
    this.#pollIntervalMs = Math.max(10, options.pollIntervalMs ?? 200);
    this.#presenceIntervalMs = Math.max(10, options.presenceIntervalMs ?? this.#pollIntervalMs);
    this.#releaseTransport = options.releaseTransport;
    const has = (c: Capability): boolean => this.capabilities.has(c);
    const wanted: Pn53xModulation[] = [];
    if (has(Capability.Iso14443aRaw) || has(Capability.Iso14443_4)) wanted.push(Pn53xModulation.TypeA106);
    if (has(Capability.Iso14443b) || has(Capability.Iso14443_4)) wanted.push(Pn53xModulation.TypeB106);
    if (has(Capability.Felica)) wanted.push(Pn53xModulation.Felica212);
    this.#modulations = (options.modulations ?? wanted).filter(modulationsOk);
  }

  /** Starts polling. Idempotent. */
  start(): void {
    if (this.#loop || this.closed) return;
    this.#loop = this.#run();
  }

  protected override unsupportedCapability(capability: FrameCapability): TaplineError {
    return capability === Capability.Iso15693
      ? pn53xIso15693Error(this.name, this.#controller.model.chip)
      : super.unsupportedCapability(capability);
  }

  protected override exchange(
    tag: Tag,
    capability: FrameCapability,
    frame: Uint8Array,
    signal: AbortSignal,
  ): Promise<Uint8Array> {
    return this.#withChip(async () => {
      const active = this.#active;
      if (!active || active.tagId !== tag.id) throw tagLostError(`${capability} exchange`);
      const call: Pn53xCallOptions = { timeoutMs: EXCHANGE_BACKSTOP_MS, signal };
      try {
        const answer = await this.#send(active, capability, frame, call);
        this.#lastActivity = performance.now();
        return answer;
      } catch (error) {
        if (hasErrorCode(error, ErrorCode.ReaderGone)) {
          void this.close();
          throw error;
        }
        // A silent tag may have left: say TAG_LOST rather than TIMEOUT when it did.
        if (!signal.aborted && isAirError(error) && this.#active === active && !(await this.#stillPresent(active))) {
          await this.#lose(active);
          throw tagLostError(`${capability} exchange`, error);
        }
        throw error;
      }
    });
  }

  protected override async release(): Promise<void> {
    this.#stop.abort(new TaplineError(ErrorCode.ReaderGone, `The reader ${this.name} was closed.`));
    await this.#loop;
    await this.#withChip(async () => {
      const step = { timeoutMs: CLOSE_STEP_TIMEOUT_MS };
      // Leave no tag powered and selected behind us; a device that is gone fails these at once.
      try {
        if (this.#active) await this.#controller.release(0, step);
        await this.#controller.setRfField(false, false, step);
      } catch (error) {
        this.logger.debug('switching the RF field off on close failed', { error });
      }
      this.#active = undefined;
    });
    await this.#releaseTransport?.();
  }

  #withChip<T>(operation: () => Promise<T>): Promise<T> {
    const run = this.#chipQueue.then(operation, operation);
    this.#chipQueue = run.catch(() => undefined);
    return run;
  }

  async #run(): Promise<void> {
    let failures = 0;
    while (!this.#stop.signal.aborted) {
      try {
        await this.#withChip(() => this.#cycle());
        failures = 0;
      } catch (error) {
        if (this.#stop.signal.aborted) break;
        if (hasErrorCode(error, ErrorCode.ReaderGone)) {
          this.logger.warn('the reader went away', { error });
          void this.close();
          break;
        }
        failures += 1;
        this.logger[failures === 1 ? 'warn' : 'debug']('polling the reader failed; retrying', { error, failures });
      }
      const pause =
        failures === 0 ? this.#pollIntervalMs : Math.min(MAX_BACKOFF_MS, this.#pollIntervalMs * 2 ** failures);
      await sleep(pause, this.#stop.signal);
    }
  }

  async #cycle(): Promise<void> {
    if (this.#stop.signal.aborted) return;
    const active = this.#active;
    if (!active) {
      await this.#poll();
      return;
    }
    if (performance.now() - this.#lastActivity < this.#presenceIntervalMs) return;
    if (await this.#stillPresent(active)) this.#lastActivity = performance.now();
    else await this.#lose(active);
  }

  async #poll(): Promise<void> {
    for (const brTy of this.#modulations) {
      if (this.#stop.signal.aborted) return;
      const initiatorData = initiatorDataFor(brTy);
      const targets = await this.#controller.listPassiveTargets(brTy, {
        signal: this.#stop.signal,
        ...(initiatorData ? { initiatorData } : {}),
      });
      const target = targets[0];
      if (!target) continue;
      const info = pn53xTagInfo(target, this.capabilities);
      if (!info) continue;
      const active: ActiveTarget = {
        target,
        tagId: '',
        rxCrc: true,
        rxMode: undefined,
        bIsoDep: target.kind === 'iso14443b' && target.isoDep,
      };
      this.#active = active;
      this.#lastActivity = performance.now();
      active.tagId = this.tagArrived(info).id;
      return;
    }
  }

  /**
   * Whether the current tag still answers: Diagnose 06 for targets the firmware runs ISO-DEP with, otherwise a
   * re-poll for the same UID (which re-activates it). Answers false for air errors; transport errors propagate.
   */
  async #stillPresent(active: ActiveTarget): Promise<boolean> {
    const target = active.target;
    const isoDep = (target.kind === 'iso14443a' && target.isoDep) || (target.kind === 'iso14443b' && active.bIsoDep);
    const call = { signal: this.#stop.signal };
    try {
      if (isoDep && this.#controller.model.presenceDiagnose) return await this.#controller.isTargetPresent(call);
      const brTy = modulationOf(target);
      const initiatorData = initiatorDataFor(brTy, target);
      const [found] = await this.#controller.listPassiveTargets(brTy, {
        ...call,
        ...(initiatorData ? { initiatorData } : {}),
      });
      if (!found || !sameTag(found, target)) return false;
      active.target = found;
      active.rxCrc = true;
      active.rxMode = undefined;
      active.bIsoDep = found.kind === 'iso14443b' && found.isoDep;
      return true;
    } catch (error) {
      if (isAirError(error)) return false;
      throw error;
    }
  }

  async #lose(active: ActiveTarget): Promise<void> {
    if (this.#active !== active) return;
    this.#active = undefined;
    this.tagLeft();
    try {
      await this.#controller.release(0, { signal: this.#stop.signal });
    } catch (error) {
      if (hasErrorCode(error, ErrorCode.ReaderGone)) throw error;
      this.logger.debug('InRelease after the tag left failed', { error });
    }
  }

  async #send(
    active: ActiveTarget,
    capability: FrameCapability,
    frame: Uint8Array,
    call: Pn53xCallOptions,
  ): Promise<Uint8Array> {
    const target = active.target;
    const wrongTarget = (): TaplineError => this.unsupported(`${capability} frames to a ${target.kind} target`);
    switch (capability) {
      case Capability.Iso14443_4:
        if (target.kind === 'iso14443b') {
          if (!active.bIsoDep) await this.#reactivateTypeB(active, target, call);
        } else if (target.kind === 'iso14443a' && target.isoDep) {
          await this.#setRxCrc(active, true, call);
        } else {
          throw wrongTarget();
        }
        return this.#controller.dataExchange(active.target.tg, frame, call);
      case Capability.Iso14443aRaw:
        if (target.kind !== 'iso14443a') throw wrongTarget();
        await this.#setRxCrc(active, false, call);
        return stripCrcA(await this.#controller.communicateThru(frame, call));
      case Capability.Iso14443b:
        if (target.kind !== 'iso14443b') throw wrongTarget();
        if (active.bIsoDep) await this.#undoAttrib(active, call);
        return this.#controller.communicateThru(frame, call);
      case Capability.Felica:
        if (target.kind !== 'felica') throw wrongTarget();
        return this.#controller.communicateThru(frame, call);
      case Capability.Iso15693:
        throw pn53xIso15693Error(this.name, this.#controller.model.chip);
    }
  }

  /**
   * Switches the chip's RX-CRC check (CIU_RxMode b7): on for InDataExchange, off for raw Type A frames, so that a
   * 4-bit ACK/NAK is not reported as a CRC error (nfcpy does the same, readers.md §5.4).
   */
  async #setRxCrc(active: ActiveTarget, on: boolean, call: Pn53xCallOptions): Promise<void> {
    if (active.rxCrc === on) return;
    // Read-modify-write: the other bits of CIU_RxMode hold the bit rate and framing the activation chose.
    active.rxMode ??= (await this.#controller.readRegisters([Pn53xRegister.RxMode], call))[0]!;
    const wanted = on ? active.rxMode | 0x80 : active.rxMode & 0x7f;
    if (wanted !== active.rxMode) {
      await this.#controller.writeRegisters([{ address: Pn53xRegister.RxMode, value: wanted }], call);
    }
    active.rxMode = wanted;
    active.rxCrc = on;
  }

  /**
   * Returns a Type B tag from the firmware's ISO-DEP session to READY, so that raw frames (ATTRIB of the caller's own,
   * say) reach it: S(DESELECT), then WUPB (nfcpy does the same, readers.md §1.2).
   */
  async #undoAttrib(active: ActiveTarget, call: Pn53xCallOptions): Promise<void> {
    await this.#controller.communicateThru(Uint8Array.of(0xc2), call);
    const atqb = await this.#controller.communicateThru(Uint8Array.of(0x05, 0x00, 0x08), call);
    if (atqb[0] !== 0x50) {
      throw new TaplineError(ErrorCode.ProtocolError, 'The Type B tag did not answer WUPB with an ATQB.', {
        details: { answer: this.describe(atqb) },
      });
    }
    active.bIsoDep = false;
  }

  /** Lets the firmware activate a Type B tag again (InListPassiveTarget with ATTRIB) after raw frames. */
  async #reactivateTypeB(active: ActiveTarget, target: Pn53xTypeBTarget, call: Pn53xCallOptions): Promise<void> {
    const [found] = await this.#controller.listPassiveTargets(Pn53xModulation.TypeB106, {
      ...call,
      timeoutMs: this.#controller.model.timeouts.listTargets,
      initiatorData: Uint8Array.of(0x00),
    });
    if (!found || !sameTag(found, target) || found.kind !== 'iso14443b' || !found.isoDep) {
      throw tagLostError('re-activating the Type B tag for ISO 14443-4');
    }
    active.target = found;
    active.bIsoDep = true;
  }
}
