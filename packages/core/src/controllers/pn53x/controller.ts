import { ErrorCode, TaplineError } from '../../model/errors.js';
import { concatBytes } from '../../util/bytes.js';
import {
  Pn53xCommand,
  diagnoseCommand,
  getFirmwareVersionCommand,
  getGeneralStatusCommand,
  inCommunicateThruCommand,
  inDataExchangeCommand,
  inDeselectCommand,
  inListPassiveTargetCommand,
  inReleaseCommand,
  inSelectCommand,
  parseFirmwareVersion,
  parseInListPassiveTarget,
  parseRegisterValues,
  parseWriteRegister,
  pn53xCheckStatus,
  pn53xCommandName,
  pn53xResponseData,
  powerDownCommand,
  readRegisterCommand,
  rfConfigurationCommand,
  rfFieldCommand,
  rfMaxRetriesCommand,
  rfMaxRetryComCommand,
  rfTimingsCommand,
  samConfigurationCommand,
  setParametersCommand,
  writeRegisterCommand,
  type Pn53xFirmwareVersion,
  type Pn53xListOptions,
  type Pn53xRegisterWrite,
  type Pn53xRetries,
  type Pn53xTarget,
} from './commands.js';
import type { Pn53xLink } from './link.js';
import type { Pn53xModel } from './models.js';

/** Per-call options of the {@link Pn53xController} methods. */
export interface Pn53xCallOptions {
  /** Overrides the model's host-side wait for this call, in milliseconds. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** GetGeneralStatus, decoded as far as Tapline uses it. */
export interface Pn53xGeneralStatus {
  /** The last error the chip recorded (status table code), 0 for none. */
  readonly lastError: number;
  /** Whether the RF field is on. */
  readonly fieldOn: boolean;
  /** How many targets the chip holds. */
  readonly targets: number;
}

/** A chained answer longer than this many frames is a chip gone astray, not a long answer. */
const MAX_CHAINED_FRAMES = 32;

/** Default wait of InDataExchange / InCommunicateThru when the caller gives none. */
const DEFAULT_EXCHANGE_TIMEOUT_MS = 5000;

/**
 * One method per PN53x command over a {@link Pn53xLink} (nfcpy's `Chipset`, libnfc's `pn53x.c` wrappers). It builds
 * the payload, checks that the answer belongs to the command, decodes it, and turns status bytes into typed errors;
 * what differs between PN531, PN532 and PN533 comes from the {@link Pn53xModel}. It keeps no state besides link and
 * model, so a reader or a test can drive it directly.
 */
export class Pn53xController {
  constructor(
    readonly link: Pn53xLink,
    readonly model: Pn53xModel,
  ) {}

  /**
   * Sends a command payload (`D4 …`) and returns the answer's data after `D5 <code+1>`. Fails with
   * `INVALID_ARGUMENT` for a payload longer than the chip's frames.
   */
  async command(payload: Uint8Array, defaultTimeoutMs: number, options: Pn53xCallOptions = {}): Promise<Uint8Array> {
    const limit = this.model.extendedFrames ? this.model.maxFrameLength : Math.min(this.model.maxFrameLength, 255);
    if (payload.length > limit) {
      throw new TaplineError(
        ErrorCode.InvalidArgument,
        `${pn53xCommandName(payload[1] ?? -1)} with ${payload.length} bytes does not fit a ${this.model.chip} frame (${limit}).`,
        { details: { length: payload.length, limit } },
      );
    }
    const response = await this.link.exchange(payload, {
      timeoutMs: options.timeoutMs ?? defaultTimeoutMs,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    return pn53xResponseData(payload, response);
  }

  /** Aborts the running command where the link can (USB: host ACK); a no-op otherwise. */
  async abort(): Promise<void> {
    await this.link.abort?.();
  }

  /** Diagnose: returns the data after `D5 01`. */
  diagnose(test: number, data?: Uint8Array, options?: Pn53xCallOptions): Promise<Uint8Array> {
    return this.command(diagnoseCommand(test, data), this.model.timeouts.diagnose, options);
  }

  /**
   * Diagnose 06: whether the ISO 14443-4 target the chip activated still answers. Fails with
   * `UNSUPPORTED_CAPABILITY` on chips without the test (PN531).
   */
  async isTargetPresent(options?: Pn53xCallOptions): Promise<boolean> {
    if (!this.model.presenceDiagnose) throw this.unsupported('the card presence test (Diagnose 06)');
    const data = await this.diagnose(0x06, undefined, options);
    return data.length >= 1 && data[0] === 0x00;
  }

  /** GetFirmwareVersion. */
  async getFirmwareVersion(options?: Pn53xCallOptions): Promise<Pn53xFirmwareVersion> {
    return parseFirmwareVersion(await this.command(getFirmwareVersionCommand(), this.model.timeouts.status, options));
  }

  /** GetGeneralStatus. */
  async getGeneralStatus(options?: Pn53xCallOptions): Promise<Pn53xGeneralStatus> {
    const data = await this.command(getGeneralStatusCommand(), this.model.timeouts.status, options);
    if (data.length < 3) {
      throw new TaplineError(ErrorCode.ProtocolError, `The PN53x answered GetGeneralStatus with ${data.length} bytes.`);
    }
    return { lastError: data[0]!, fieldOn: data[1] !== 0, targets: data[2]! };
  }

  /** ReadRegister: one value per address (the PN533's status byte checked and dropped). */
  async readRegisters(addresses: readonly number[], options?: Pn53xCallOptions): Promise<Uint8Array> {
    const data = await this.command(readRegisterCommand(addresses), this.model.timeouts.register, options);
    return parseRegisterValues(data, addresses.length, this.model);
  }

  /** WriteRegister. */
  async writeRegisters(writes: readonly Pn53xRegisterWrite[], options?: Pn53xCallOptions): Promise<void> {
    const data = await this.command(writeRegisterCommand(writes), this.model.timeouts.register, options);
    parseWriteRegister(data, this.model);
  }

  /** SetParameters (flags from `Pn53xParameter`). */
  async setParameters(flags: number, options?: Pn53xCallOptions): Promise<void> {
    await this.command(setParametersCommand(flags), this.model.timeouts.status, options);
  }

  /** SAMConfiguration; `UNSUPPORTED_CAPABILITY` on a PN533, which has no SAM interface. */
  async samConfiguration(mode = 0x01, timeout = 0x00, options?: Pn53xCallOptions): Promise<void> {
    if (!this.model.samConfiguration) throw this.unsupported('SAMConfiguration');
    await this.command(samConfigurationCommand(mode, timeout), this.model.timeouts.status, options);
  }

  /** PowerDown; `UNSUPPORTED_CAPABILITY` on a PN533. Returns the status byte. */
  async powerDown(wakeUpEnable: number, options?: Pn53xCallOptions): Promise<number> {
    if (!this.model.powerDown) throw this.unsupported('PowerDown');
    const data = await this.command(powerDownCommand(wakeUpEnable), this.model.timeouts.status, options);
    return pn53xCheckStatus(Pn53xCommand.PowerDown, data).status.error;
  }

  /** RFConfiguration with any item. */
  async rfConfiguration(item: number, data: Uint8Array, options?: Pn53xCallOptions): Promise<void> {
    await this.command(rfConfigurationCommand(item, data), this.model.timeouts.rfConfiguration, options);
  }

  /** RFConfiguration 01: field on or off. */
  async setRfField(on: boolean, autoRfca = false, options?: Pn53xCallOptions): Promise<void> {
    await this.command(rfFieldCommand(on, autoRfca), this.model.timeouts.rfConfiguration, options);
  }

  /** RFConfiguration 02: ATR_RES and retry timeouts, as indexes (`pn53xTimeoutIndex`). */
  async setTimings(atrResTimeout: number, retryTimeout: number, options?: Pn53xCallOptions): Promise<void> {
    await this.command(rfTimingsCommand(atrResTimeout, retryTimeout), this.model.timeouts.rfConfiguration, options);
  }

  /** RFConfiguration 04: MaxRtyCOM. */
  async setMaxRetryCom(retries: number, options?: Pn53xCallOptions): Promise<void> {
    await this.command(rfMaxRetryComCommand(retries), this.model.timeouts.rfConfiguration, options);
  }

  /** RFConfiguration 05: retry counts (`D4 32 05 …`). */
  async setMaxRetries(retries: Pn53xRetries, options?: Pn53xCallOptions): Promise<void> {
    await this.command(rfMaxRetriesCommand(retries), this.model.timeouts.rfConfiguration, options);
  }

  /** Sends the model's analog RF settings, if it has any. */
  async applyAnalogSettings(options?: Pn53xCallOptions): Promise<void> {
    for (const setting of this.model.analogSettings) await this.rfConfiguration(setting.item, setting.data, options);
  }

  /**
   * InListPassiveTarget: polls once for targets of modulation `brTy`. Resolves with no targets when none answered.
   * Fails with `UNSUPPORTED_CAPABILITY` for a modulation the chip lacks.
   */
  async listPassiveTargets(brTy: number, options: Pn53xListOptions & Pn53xCallOptions = {}): Promise<Pn53xTarget[]> {
    if (!(this.model.modulations as readonly number[]).includes(brTy)) {
      throw this.unsupported(`InListPassiveTarget with BrTy 0x${brTy.toString(16).padStart(2, '0')}`);
    }
    const maxTargets = options.maxTargets ?? 1;
    if (maxTargets < 1 || maxTargets > this.model.maxTargets) {
      throw new TaplineError(
        ErrorCode.InvalidArgument,
        `The ${this.model.chip} lists 1 to ${this.model.maxTargets} targets at once, not ${maxTargets}.`,
      );
    }
    const payload = inListPassiveTargetCommand(brTy, {
      maxTargets,
      ...(options.initiatorData ? { initiatorData: options.initiatorData } : {}),
    });
    const data = await this.command(payload, this.model.timeouts.listTargets, options);
    return parseInListPassiveTarget(data, brTy);
  }

  /**
   * InDataExchange with target `tg`: the chip frames the data for the target's protocol (ISO-DEP blocks for an
   * ISO 14443-4 target) and follows chained answers (MI). Fails with the status table's error.
   */
  async dataExchange(tg: number, data: Uint8Array, options: Pn53xCallOptions = {}): Promise<Uint8Array> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_EXCHANGE_TIMEOUT_MS;
    const call = { ...options, timeoutMs };
    const parts: Uint8Array[] = [];
    let payload = inDataExchangeCommand(tg, data);
    for (let frames = 0; frames < MAX_CHAINED_FRAMES; frames++) {
      const answer = await this.command(payload, timeoutMs, call);
      const { status, data: part } = pn53xCheckStatus(Pn53xCommand.InDataExchange, answer);
      parts.push(part);
      if (!status.moreInformation) return concatBytes(...parts);
      // MI: the rest of the answer waits in the chip; an InDataExchange without data fetches it.
      payload = inDataExchangeCommand(tg, new Uint8Array(0));
    }
    throw new TaplineError(
      ErrorCode.ProtocolError,
      `The ${this.model.chip} kept chaining its answer beyond ${MAX_CHAINED_FRAMES} frames.`,
    );
  }

  /** InCommunicateThru: a raw frame to the target in the field (CRC and parity as the CIU registers say). */
  async communicateThru(data: Uint8Array, options: Pn53xCallOptions = {}): Promise<Uint8Array> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_EXCHANGE_TIMEOUT_MS;
    const answer = await this.command(inCommunicateThruCommand(data), timeoutMs, { ...options, timeoutMs });
    return pn53xCheckStatus(Pn53xCommand.InCommunicateThru, answer).data.slice();
  }

  /** InDeselect (`tg` 0: all). */
  async deselect(tg: number, options?: Pn53xCallOptions): Promise<void> {
    const data = await this.command(inDeselectCommand(tg), this.model.timeouts.release, options);
    pn53xCheckStatus(Pn53xCommand.InDeselect, data);
  }

  /** InRelease (`tg` 0: all). */
  async release(tg: number, options?: Pn53xCallOptions): Promise<void> {
    const data = await this.command(inReleaseCommand(tg), this.model.timeouts.release, options);
    pn53xCheckStatus(Pn53xCommand.InRelease, data);
  }

  /** InSelect. */
  async select(tg: number, options?: Pn53xCallOptions): Promise<void> {
    const data = await this.command(inSelectCommand(tg), this.model.timeouts.release, options);
    pn53xCheckStatus(Pn53xCommand.InSelect, data);
  }

  private unsupported(what: string): TaplineError {
    return new TaplineError(ErrorCode.UnsupportedCapability, `The ${this.model.chip} has no ${what}.`, {
      details: { chip: this.model.chip },
    });
  }
}
