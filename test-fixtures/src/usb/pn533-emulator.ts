import { Capability, type FrameCapability } from '@tapline/core';
import type { VirtualChip } from '../sim/virtual-chip.js';

/**
 * A PN533 as its host sees it over USB, written from the PN533 user manual and readers.md §5–§6 independently of
 * Tapline's own PN53x codec (so that the two check each other): it takes frames, answers with ACK then the response
 * frame, resends its last frame on NACK, answers a frame with a bad checksum or an unknown command with the error
 * frame, and stops a running command on the host's ACK. Behind it sits one field with at most one virtual chip,
 * the same chips the simulator and the PC/SC fakes use: InListPassiveTarget reports `chip.info`, InDataExchange and
 * InCommunicateThru call `chip.handle`.
 *
 * Emulated, from the sources: GetFirmwareVersion (`33 02 07 07`), Diagnose 00/06, GetGeneralStatus, Read/WriteRegister
 * with the PN533 status byte (EEPROM reads fail with `FF`), SetParameters (AutoRATS), RFConfiguration (field, retries:
 * with the default infinite retries a poll without tag never ends), InListPassiveTarget for 106A/B and FeliCa,
 * InDataExchange (ISO-DEP and Type 2, MI chaining past 262 bytes), InCommunicateThru (TX/RX CRC per CIU_TxMode and
 * CIU_RxMode b7, CRC_A appended when RX-CRC is off, 4-bit ACK/NAK reported as CRC error when it is on), S(DESELECT) and
 * WUPB for Type B, InDeselect/InSelect/InRelease. Chosen here: timing (answers come a macrotask or `latencyMs` later),
 * the Type B and FeliCa tag data defaults, and status 0x14 for a Type 2 NAK through InDataExchange.
 */

/** Options of {@link Pn533Emulator}. */
export interface Pn533EmulatorOptions {
  /** GetFirmwareVersion data. Default `33 02 07 07` (PN533 v2.7). */
  readonly firmware?: Uint8Array;
  /** Delay before each answer frame, in milliseconds. Default 0 (the next macrotask). */
  readonly latencyMs?: number;
  /** Ignore the first command after power-up entirely, as a real PN533 sometimes does (readers.md §5.4). */
  readonly loseFirstCommand?: boolean;
  /** ATQB of a Type B chip (12 bytes, `50 PUPI …`). Default: built from the chip's UID, ISO-DEP per its protocols. */
  readonly atqb?: Uint8Array;
  /** PMm of a FeliCa chip. Default `01 20 22 04 27 67 4E FF`. */
  readonly felicaPmm?: Uint8Array;
  /** System code of a FeliCa chip. Default `12 FC` (NDEF). */
  readonly felicaSystemCode?: Uint8Array;
}

/** A fault the emulator applies to the next command it takes. */
export type Pn533Fault =
  /** The next answer frame goes out with a bad DCS; a NACK gets the intact frame. */
  | 'corrupt-answer'
  /** The next answer comes without an ACK before it. */
  | 'answer-without-ack'
  /** The next command is ignored: no ACK, no answer. */
  | 'ignore-command'
  /** The next command is acknowledged but never answered (until the host aborts it with an ACK). */
  | 'hang';

const ACK = Uint8Array.of(0x00, 0x00, 0xff, 0x00, 0xff, 0x00);
const ERROR_FRAME = Uint8Array.of(0x00, 0x00, 0xff, 0x01, 0xff, 0x7f, 0x81, 0x00);
/** Most data bytes after `D5 41 <status>` in one frame (265 − 3). */
const MAX_ANSWER_DATA = 262;

const RF_ITEM_LENGTHS: ReadonlyMap<number, number> = new Map([
  [0x01, 1],
  [0x02, 3],
  [0x04, 1],
  [0x05, 3],
  [0x0a, 11],
  [0x0b, 8],
  [0x0c, 3],
  [0x0d, 9],
]);

const REG_TX_MODE = 0x6302;
const REG_RX_MODE = 0x6303;

function checksum(bytes: Iterable<number>): number {
  let sum = 0;
  for (const b of bytes) sum += b;
  return (0x100 - (sum & 0xff)) & 0xff;
}

/** An information frame around `payload` (normal up to 255 bytes, extended beyond). */
function frameOf(payload: Uint8Array, corrupt = false): Uint8Array {
  const dcs = (checksum(payload) + (corrupt ? 1 : 0)) & 0xff;
  if (payload.length <= 0xff) {
    return Uint8Array.of(0x00, 0x00, 0xff, payload.length, (0x100 - payload.length) & 0xff, ...payload, dcs, 0x00);
  }
  const hi = payload.length >> 8;
  const lo = payload.length & 0xff;
  return Uint8Array.of(0x00, 0x00, 0xff, 0xff, 0xff, hi, lo, (0x100 - ((hi + lo) & 0xff)) & 0xff, ...payload, dcs, 0);
}

/** CRC_A (ISO 14443-3), least significant byte first. */
function crcA(data: Uint8Array): [number, number] {
  let crc = 0x6363;
  for (const byte of data) {
    let ch = (byte ^ crc) & 0xff;
    ch = (ch ^ (ch << 4)) & 0xff;
    crc = ((crc >> 8) ^ (ch << 8) ^ (ch << 3) ^ (ch >> 4)) & 0xffff;
  }
  return [crc & 0xff, crc >> 8];
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

interface Target {
  readonly chip: VirtualChip;
  readonly kind: 'a' | 'b' | 'f';
  /** ISO-DEP activated by the firmware (RATS for A, ATTRIB for B). */
  isoDep: boolean;
  /** InDeselect'ed (until InSelect). */
  deselected: boolean;
  /** Chained answer bytes still to hand out (MI). */
  pending: Uint8Array | undefined;
}

/**
 * The PN533 emulator. Connect its output with {@link Pn533Emulator.onOutput} (the fake USB device does) and feed it
 * what the host writes with {@link Pn533Emulator.receive}.
 */
export class Pn533Emulator {
  /** Every command payload (`D4 …`) the emulator took, in order. */
  readonly commands: Uint8Array[] = [];
  readonly #options: Pn533EmulatorOptions;
  readonly #listeners = new Set<(frame: Uint8Array) => void>();
  readonly #faults: Pn533Fault[] = [];
  #chip: VirtualChip | undefined;
  #input = new Uint8Array(0);
  #lastSent: Uint8Array | undefined;
  /** Cancels of the answers scheduled but not yet sent. */
  readonly #pending = new Set<() => void>();
  #running = false;
  #commandsSincePowerUp = 0;
  #registers = new Map<number, number>();
  #parameters = 0x00;
  #fieldOn = false;
  #infiniteRetries = true;
  #target: Target | undefined;

  constructor(chip?: VirtualChip, options: Pn533EmulatorOptions = {}) {
    this.#chip = chip;
    this.#options = options;
    this.powerUp();
  }

  /** The chip in the field, if any. */
  get chip(): VirtualChip | undefined {
    return this.#chip;
  }

  /** Whether the RF field is on. */
  get fieldOn(): boolean {
    return this.#fieldOn;
  }

  /** Whether a command is running (acknowledged, not yet answered or aborted). */
  get busy(): boolean {
    return this.#running;
  }

  /** A CIU register's value as the host last wrote it (or its reset value). */
  register(address: number): number {
    return this.#registers.get(address) ?? 0;
  }

  /** Puts `chip` in the field (taking out whatever was there). */
  present(chip: VirtualChip): void {
    // A tag entering the field starts unpowered: no old target record applies to it.
    this.#target = undefined;
    this.#chip = chip;
  }

  /** Takes the chip out of the field: the chip keeps its target record, but the target stops answering. */
  remove(): void {
    this.#chip = undefined;
  }

  /** Applies `fault` to the next command (faults queue up, one per command). */
  inject(fault: Pn533Fault): void {
    this.#faults.push(fault);
  }

  /** Power-on reset: registers, parameters, retries and targets back to their defaults. */
  powerUp(): void {
    this.#cancelPending();
    this.#input = new Uint8Array(0);
    this.#lastSent = undefined;
    this.#running = false;
    this.#commandsSincePowerUp = 0;
    this.#registers = new Map([
      [REG_TX_MODE, 0x80],
      [REG_RX_MODE, 0x80],
      [0x6305, 0x40],
    ]);
    this.#parameters = 0x00;
    this.#fieldOn = false;
    this.#infiniteRetries = true;
    this.#target = undefined;
  }

  /** Subscribes to the frames the emulator sends to the host; returns the unsubscribe function. */
  onOutput(listener: (frame: Uint8Array) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Takes bytes the host wrote. */
  receive(bytes: Uint8Array): void {
    const joined = new Uint8Array(this.#input.length + bytes.length);
    joined.set(this.#input);
    joined.set(bytes, this.#input.length);
    this.#input = joined;
    this.#parse();
  }

  #parse(): void {
    for (;;) {
      const buf = this.#input;
      let start = -1;
      for (let i = 0; i + 1 < buf.length; i++) {
        if (buf[i] === 0x00 && buf[i + 1] === 0xff) {
          start = i;
          break;
        }
      }
      if (start < 0) {
        this.#input = buf.length > 0 && buf[buf.length - 1] === 0x00 ? buf.slice(-1) : new Uint8Array(0);
        return;
      }
      const at = start + 2;
      if (buf.length < at + 2) return;
      const len = buf[at]!;
      const lcs = buf[at + 1]!;
      const skipPostamble = (end: number): number => (buf[end] === 0x00 ? end + 1 : end);
      if (len === 0x00 && lcs === 0xff) {
        this.#input = buf.slice(skipPostamble(at + 2));
        this.#abort();
        continue;
      }
      if (len === 0xff && lcs === 0x00) {
        this.#input = buf.slice(skipPostamble(at + 2));
        if (this.#lastSent) this.#send(this.#lastSent);
        continue;
      }
      let length: number;
      let dataAt: number;
      if (len === 0xff && lcs === 0xff) {
        if (buf.length < at + 5) return;
        const [hi, lo, lcs2] = [buf[at + 2]!, buf[at + 3]!, buf[at + 4]!];
        if (((hi + lo + lcs2) & 0xff) !== 0) {
          this.#input = new Uint8Array(0);
          this.#send(ERROR_FRAME);
          return;
        }
        length = (hi << 8) | lo;
        dataAt = at + 5;
      } else {
        if (((len + lcs) & 0xff) !== 0) {
          // No trustworthy length: drop everything and say so.
          this.#input = new Uint8Array(0);
          this.#send(ERROR_FRAME);
          return;
        }
        length = len;
        dataAt = at + 2;
      }
      if (buf.length < dataAt + length + 1) return;
      const payload = buf.slice(dataAt, dataAt + length);
      const dcs = buf[dataAt + length]!;
      this.#input = buf.slice(skipPostamble(dataAt + length + 1));
      if (checksum(payload) !== dcs || payload[0] !== 0xd4 || payload.length < 2) {
        this.#send(ERROR_FRAME);
        continue;
      }
      this.#command(payload);
    }
  }

  #abort(): void {
    // The host's ACK stops the running command: its answer is never sent.
    this.#cancelPending();
    this.#running = false;
  }

  #cancelPending(): void {
    for (const cancel of this.#pending) cancel();
    this.#pending.clear();
  }

  #command(payload: Uint8Array): void {
    this.#commandsSincePowerUp += 1;
    if (this.#options.loseFirstCommand && this.#commandsSincePowerUp === 1) return;
    const fault = this.#faults.shift();
    if (fault === 'ignore-command') return;
    this.commands.push(payload);
    if (fault !== 'answer-without-ack') this.#emitNow(ACK);
    this.#running = true;
    if (fault === 'hang') return;
    const answer = this.#execute(payload[1]!, payload.subarray(2));
    if (answer === 'hang') return;
    const frame = answer === 'syntax' ? ERROR_FRAME : frameOf(answer);
    this.#lastSent = frame;
    this.#schedule(fault === 'corrupt-answer' && answer !== 'syntax' ? frameOf(answer, true) : frame);
  }

  #emitNow(frame: Uint8Array): void {
    for (const listener of [...this.#listeners]) listener(frame.slice());
  }

  #send(frame: Uint8Array): void {
    this.#lastSent = frame;
    this.#schedule(frame);
  }

  #schedule(frame: Uint8Array): void {
    const latency = this.#options.latencyMs ?? 0;
    const fire = (): void => {
      this.#pending.delete(cancel);
      this.#running = false;
      this.#emitNow(frame);
    };
    let cancel: () => void;
    if (latency > 0) {
      const timer = setTimeout(fire, latency);
      cancel = () => clearTimeout(timer);
    } else {
      const immediate = setImmediate(fire);
      cancel = () => clearImmediate(immediate);
    }
    this.#pending.add(cancel);
  }

  #execute(code: number, data: Uint8Array): Uint8Array | 'syntax' | 'hang' {
    const answer = (...bytes: (number | Uint8Array)[]): Uint8Array =>
      Uint8Array.from([0xd5, code + 1, ...bytes.flatMap((b) => (typeof b === 'number' ? [b] : [...b]))]);
    switch (code) {
      case 0x00:
        return this.#diagnose(data, answer);
      case 0x02:
        return answer(this.#options.firmware ?? Uint8Array.of(0x33, 0x02, 0x07, 0x07));
      case 0x04: {
        const t = this.#target;
        return t
          ? answer(0x00, this.#fieldOn ? 1 : 0, 1, 0x01, 0x00, 0x00, 0x00)
          : answer(0x00, this.#fieldOn ? 1 : 0, 0);
      }
      case 0x06: {
        if (data.length === 0 || data.length % 2 !== 0) return 'syntax';
        const values: number[] = [];
        for (let i = 0; i < data.length; i += 2) {
          const address = (data[i]! << 8) | data[i + 1]!;
          if (address >= 0xa000) return answer(0xff);
          values.push(this.register(address));
        }
        return answer(0x00, ...values);
      }
      case 0x08:
        if (data.length === 0 || data.length % 3 !== 0) return 'syntax';
        for (let i = 0; i < data.length; i += 3) this.#registers.set((data[i]! << 8) | data[i + 1]!, data[i + 2]!);
        return answer(0x00);
      case 0x12:
        if (data.length !== 1) return 'syntax';
        this.#parameters = data[0]!;
        return answer();
      case 0x32:
        return this.#rfConfiguration(data, answer);
      case 0x40:
        return this.#dataExchange(data, answer);
      case 0x42:
        return this.#communicateThru(data, answer);
      case 0x44:
      case 0x52:
      case 0x54:
        return this.#targetControl(code, data, answer);
      case 0x4a:
        return this.#listPassiveTarget(data, answer);
      default:
        // SAMConfiguration, PowerDown and the rest: not a PN533 command (or not emulated).
        return 'syntax';
    }
  }

  #diagnose(data: Uint8Array, answer: (...b: (number | Uint8Array)[]) => Uint8Array): Uint8Array | 'syntax' {
    const test = data[0];
    if (test === 0x00) return answer(data);
    if (test !== 0x06) return 'syntax';
    const t = this.#target;
    if (!t) return answer(0x27);
    return answer(t.isoDep && !t.deselected && this.#chip === t.chip ? 0x00 : 0x01);
  }

  #rfConfiguration(data: Uint8Array, answer: (...b: (number | Uint8Array)[]) => Uint8Array): Uint8Array | 'syntax' {
    const item = data[0];
    if (item === undefined || RF_ITEM_LENGTHS.get(item) !== data.length - 1) return 'syntax';
    if (item === 0x01) {
      this.#fieldOn = (data[1]! & 0x01) !== 0;
      if (!this.#fieldOn) this.#target = undefined;
    }
    if (item === 0x05) this.#infiniteRetries = data[3] === 0xff;
    return answer();
  }

  #targetControl(
    code: number,
    data: Uint8Array,
    answer: (...b: (number | Uint8Array)[]) => Uint8Array,
  ): Uint8Array | 'syntax' {
    if (data.length !== 1) return 'syntax';
    const tg = data[0]!;
    const t = this.#target;
    if (code === 0x52) {
      if (tg === 0 || tg === 1) this.#target = undefined;
      return answer(0x00);
    }
    if (!t || (tg !== 1 && tg !== 0)) return answer(0x27);
    if (this.#chip !== t.chip) return answer(0x01);
    t.deselected = code === 0x44;
    return answer(0x00);
  }

  #listPassiveTarget(
    data: Uint8Array,
    answer: (...b: (number | Uint8Array)[]) => Uint8Array,
  ): Uint8Array | 'syntax' | 'hang' {
    const [maxTg, brTy] = [data[0], data[1]];
    if (maxTg === undefined || brTy === undefined || maxTg < 1 || maxTg > 2) return 'syntax';
    if (![0x00, 0x01, 0x02, 0x03, 0x04, 0x06, 0x07, 0x08].includes(brTy)) return 'syntax';
    const initiator = data.subarray(2);
    this.#fieldOn = true;
    this.#target = undefined;
    const chip = this.#chip;
    const found = chip ? this.#activate(chip, brTy, initiator) : undefined;
    if (!found) return this.#infiniteRetries ? 'hang' : answer(0x00);
    return answer(0x01, found);
  }

  /** Activates `chip` for `brTy` and returns its target data, or undefined when it does not answer that poll. */
  #activate(chip: VirtualChip, brTy: number, initiator: Uint8Array): Uint8Array | undefined {
    const info = chip.info;
    const powerUp = (): void => {
      // A new activation resets the chip's volatile state (selection, authentication).
      const stateful = chip as VirtualChip & { powerUp?: () => void };
      stateful.powerUp?.();
      this.#registers.set(REG_TX_MODE, (this.#registers.get(REG_TX_MODE) ?? 0) | 0x80);
      this.#registers.set(REG_RX_MODE, (this.#registers.get(REG_RX_MODE) ?? 0) | 0x80);
    };
    if (brTy === 0x00 && info.technology === 'iso14443a') {
      const uid = info.uid;
      const cascaded =
        uid.length === 7
          ? Uint8Array.of(0x88, ...uid)
          : uid.length === 10
            ? Uint8Array.of(0x88, ...uid.subarray(0, 3), 0x88, ...uid.subarray(3))
            : uid;
      if (initiator.length > 0 && !equal(initiator, cascaded) && !equal(initiator, uid)) return undefined;
      powerUp();
      const atqa = info.atqa ?? Uint8Array.of(0x44, 0x00);
      const sak = info.sak ?? 0x00;
      const autoRats = (this.#parameters & 0x10) !== 0;
      const ats = (sak & 0x20) !== 0 && autoRats && info.ats ? info.ats : undefined;
      this.#target = { chip, kind: 'a', isoDep: ats !== undefined, deselected: false, pending: undefined };
      return Uint8Array.of(
        0x01,
        atqa[1] ?? 0x00,
        atqa[0] ?? 0x00,
        sak,
        uid.length,
        ...uid,
        ...(ats ? [ats.length + 1, ...ats] : []),
      );
    }
    if ((brTy === 0x03 || brTy >= 0x06) && info.technology === 'iso14443b') {
      powerUp();
      const isoDep = info.protocols.includes(Capability.Iso14443_4);
      const atqb = this.#atqb(chip);
      this.#target = { chip, kind: 'b', isoDep, deselected: false, pending: undefined };
      return Uint8Array.of(0x01, ...atqb, ...(isoDep ? [0x01, 0x00] : [0x00]));
    }
    if ((brTy === 0x01 || brTy === 0x02) && info.technology === 'felica') {
      if (initiator.length !== 5 || initiator[0] !== 0x00) return undefined;
      powerUp();
      const pmm = this.#options.felicaPmm ?? Uint8Array.of(0x01, 0x20, 0x22, 0x04, 0x27, 0x67, 0x4e, 0xff);
      const withCode = initiator[3] === 0x01;
      const systemCode = this.#options.felicaSystemCode ?? Uint8Array.of(0x12, 0xfc);
      this.#target = { chip, kind: 'f', isoDep: false, deselected: false, pending: undefined };
      return Uint8Array.of(0x01, withCode ? 20 : 18, 0x01, ...info.uid, ...pmm, ...(withCode ? systemCode : []));
    }
    return undefined;
  }

  #atqb(chip: VirtualChip): Uint8Array {
    if (this.#options.atqb) return this.#options.atqb;
    const pupi = chip.info.uid.subarray(0, 4);
    const isoDep = chip.info.protocols.includes(Capability.Iso14443_4);
    return Uint8Array.of(0x50, ...pupi, 0x00, 0x00, 0x00, 0x00, 0x00, isoDep ? 0x81 : 0x80, 0x80);
  }

  /** Asks the chip; undefined when it stays silent. */
  #ask(chip: VirtualChip, capability: FrameCapability, frame: Uint8Array): Uint8Array | undefined {
    try {
      return chip.handle(capability, frame);
    } catch {
      return undefined;
    }
  }

  #dataExchange(data: Uint8Array, answer: (...b: (number | Uint8Array)[]) => Uint8Array): Uint8Array | 'syntax' {
    if (data.length < 1) return 'syntax';
    const tg = data[0]! & 0x3f;
    const t = this.#target;
    if (!t || tg !== 1 || t.deselected) return answer(0x27);
    if (this.#chip !== t.chip) return answer(0x01);
    const frame = data.subarray(1);
    let response: Uint8Array | undefined;
    if (frame.length === 0 && t.pending) {
      response = t.pending;
      t.pending = undefined;
    } else if (t.isoDep) {
      response = this.#ask(t.chip, Capability.Iso14443_4, frame);
    } else if (t.kind === 'a') {
      const raw = this.#ask(t.chip, Capability.Iso14443aRaw, frame);
      if (raw?.length === 1 && raw[0]! < 0x10) return answer(raw[0] === 0x0a ? 0x00 : 0x14);
      response = raw;
    } else if (t.kind === 'f') {
      const raw = this.#ask(t.chip, Capability.Felica, Uint8Array.of(frame.length + 1, ...frame));
      response = raw?.subarray(1);
    } else {
      return answer(0x27);
    }
    if (!response) return answer(0x01);
    if (response.length > MAX_ANSWER_DATA) {
      t.pending = response.slice(MAX_ANSWER_DATA);
      return answer(0x40, response.subarray(0, MAX_ANSWER_DATA));
    }
    return answer(0x00, response);
  }

  #communicateThru(data: Uint8Array, answer: (...b: (number | Uint8Array)[]) => Uint8Array): Uint8Array | 'syntax' {
    if (data.length < 1) return 'syntax';
    if (!this.#fieldOn) return answer(0x0a);
    const chip = this.#chip;
    const t = this.#target;
    if (!chip) return answer(0x01);
    const technology = chip.info.technology;
    if (technology === 'iso14443a') {
      let frame = data;
      if ((this.register(REG_TX_MODE) & 0x80) === 0) {
        // The host sends its own CRC: a wrong one is noise to the tag.
        if (frame.length < 3) return answer(0x01);
        const body = frame.subarray(0, -2);
        const [c0, c1] = crcA(body);
        if (c0 !== frame[frame.length - 2] || c1 !== frame[frame.length - 1]) return answer(0x01);
        frame = body;
      }
      const raw = this.#ask(chip, Capability.Iso14443aRaw, frame);
      if (!raw || raw.length === 0) return answer(0x01);
      const fourBit = raw.length === 1 && raw[0]! < 0x10;
      if ((this.register(REG_RX_MODE) & 0x80) !== 0) return fourBit ? answer(0x02) : answer(0x00, raw);
      return fourBit ? answer(0x00, raw) : answer(0x00, raw, Uint8Array.from(crcA(raw)));
    }
    if (technology === 'iso14443b') {
      if (t?.kind === 'b' && t.chip === chip && data.length === 1 && data[0] === 0xc2 && t.isoDep) {
        t.isoDep = false;
        t.deselected = true;
        return answer(0x00, 0xc2);
      }
      if (data.length === 3 && data[0] === 0x05 && (data[2]! & 0x08) !== 0) {
        if (t) {
          t.deselected = false;
          t.isoDep = false;
        }
        return answer(0x00, this.#atqb(chip));
      }
      const raw = this.#ask(chip, Capability.Iso14443b, data);
      return raw ? answer(0x00, raw) : answer(0x01);
    }
    if (technology === 'felica') {
      const raw = this.#ask(chip, Capability.Felica, data);
      return raw ? answer(0x00, raw) : answer(0x01);
    }
    return answer(0x01);
  }
}
