/**
 * The ACR1252U's escape commands (readers.md §2.1; ACS ACM1252U-Y3 reference manual §5.3): `E0 00 00 <INS> <Lc>
 * [data]` sent with SCardControl, answered `E1 00 00 00 <Le> <data>`. Builders, parsers and {@link Acr1252Escapes},
 * which runs them over any transport function.
 *
 * @packageDocumentation
 */
import { ErrorCode, TaplineError, toSpacedHex } from '@tapline/core';

/** The INS byte of each escape command. */
export const Acr1252EscapeIns = {
  /** Read (Lc 0) or set (Lc 1) the PICC operating parameter: which tag types the firmware polls for. */
  PiccOperatingParameter: 0x20,
  /** Read or set the LED and buzzer behaviour on card events. */
  LedBuzzerBehaviour: 0x21,
  /** Read or set automatic PICC polling. */
  AutoPolling: 0x23,
  /** The firmware version, ASCII. */
  Firmware: 0x18,
  /** Sound the buzzer for a duration in 10 ms units. */
  Buzzer: 0x28,
  /** Read (Lc 0) or set (Lc 1) the LEDs. */
  Led: 0x29,
} as const;

/** Bits of the LED state (`E0 00 00 29`). */
export const Acr1252Led = { Red: 0x01, Green: 0x02 } as const;

/** Bits of the PICC operating parameter (`E0 00 00 20`); the default is `1F`. */
export const Acr1252PiccType = {
  Iso14443A: 0x01,
  Iso14443B: 0x02,
  Felica212: 0x04,
  Felica424: 0x08,
  Topaz: 0x10,
} as const;

/**
 * The two documented bits of the LED and buzzer behaviour (`E0 00 00 21`); the default is `7F` and the other bits
 * are kept as they are read.
 */
export const Acr1252Behaviour = { CardEventBeep: 0x08, Pn512ResetBeep: 0x20 } as const;

/** The automatic PICC polling setting (`E0 00 00 23`), decoded. */
export interface Acr1252Polling {
  /** b0: the firmware polls for tags by itself (what makes them visible to PC/SC). */
  readonly autoPolling: boolean;
  /** b1: switch the field off while no tag is found. */
  readonly fieldOffWithoutTag: boolean;
  /** b2: switch the field off while the tag is inactive. */
  readonly fieldOffWhenInactive: boolean;
  /** b5..4: 250, 500, 1000 or 2500 ms between polls. */
  readonly intervalMs: 250 | 500 | 1000 | 2500;
  /** b7: activate ISO 14443-4 on Type A tags that offer it. */
  readonly enforceIso14443_4: boolean;
  /** The byte as read, RFU bits included (default `8B` on the ACM1252U-Y3, `8F` on other ACS readers). */
  readonly raw: number;
}

const INTERVALS = [250, 500, 1000, 2500] as const;

/** Decodes the polling setting byte. */
export function decodeAcr1252Polling(raw: number): Acr1252Polling {
  return {
    autoPolling: (raw & 0x01) !== 0,
    fieldOffWithoutTag: (raw & 0x02) !== 0,
    fieldOffWhenInactive: (raw & 0x04) !== 0,
    intervalMs: INTERVALS[(raw >> 4) & 0x03]!,
    enforceIso14443_4: (raw & 0x80) !== 0,
    raw,
  };
}

/** Encodes a polling setting: the bits named in `setting` change, every other bit keeps its value in `base`. */
export function encodeAcr1252Polling(setting: Partial<Omit<Acr1252Polling, 'raw'>>, base = 0x8b): number {
  let raw = byte('The polling setting', base);
  const flag = (value: boolean | undefined, bit: number): void => {
    if (value !== undefined) raw = value ? raw | bit : raw & ~bit;
  };
  flag(setting.autoPolling, 0x01);
  flag(setting.fieldOffWithoutTag, 0x02);
  flag(setting.fieldOffWhenInactive, 0x04);
  flag(setting.enforceIso14443_4, 0x80);
  if (setting.intervalMs !== undefined) {
    const index = INTERVALS.indexOf(setting.intervalMs);
    if (index < 0)
      throw new TaplineError(ErrorCode.InvalidArgument, `No polling interval of ${setting.intervalMs} ms.`);
    raw = (raw & ~0x30) | (index << 4);
  }
  return raw & 0xff;
}

function byte(what: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xff) {
    throw new TaplineError(ErrorCode.InvalidArgument, `${what} must be a byte (0–255), not ${String(value)}.`);
  }
  return value;
}

/** `E0 00 00 <ins> <Lc> <data>`. */
export function acr1252EscapeCommand(ins: number, data: readonly number[] = []): Uint8Array {
  return Uint8Array.of(
    0xe0,
    0x00,
    0x00,
    byte('The escape INS', ins),
    data.length,
    ...data.map((b) => byte('Escape data', b)),
  );
}

/**
 * The data of an escape answer `E1 00 00 00 <Le> <data>`. Fails with `PROTOCOL_ERROR` for anything else, with the
 * status word's meaning when the reader answered a bare status word.
 */
export function parseAcr1252EscapeResponse(answer: Uint8Array, what: string, readerName = 'The ACR1252U'): Uint8Array {
  const header = answer[0] === 0xe1 && answer[1] === 0x00 && answer[2] === 0x00 && answer[3] === 0x00;
  if (header && answer.length >= 5 && answer.length === 5 + answer[4]!) return answer.slice(5);
  const sw = answer.length === 2 ? toSpacedHex(answer) : undefined;
  throw new TaplineError(
    sw === '6A 81' ? ErrorCode.UnsupportedCapability : ErrorCode.ProtocolError,
    `${readerName} answered ${what} with ${sw ? `the status word ${sw}` : 'no escape response (E1 00 00 00 Le …)'}.`,
    { details: { reader: readerName, answer: toSpacedHex(answer.subarray(0, 48)) } },
  );
}

/** Sends one escape command and returns the raw answer. */
export type Acr1252EscapeSend = (command: Uint8Array) => Promise<Uint8Array>;

/** The ACR1252U's escape commands, one method each, over `send` (SCardControl with the reader's escape code). */
export class Acr1252Escapes {
  readonly #send: Acr1252EscapeSend;
  readonly #readerName: string;

  constructor(send: Acr1252EscapeSend, readerName = 'The ACR1252U') {
    this.#send = send;
    this.#readerName = readerName;
  }

  /** `E0 00 00 18 00`: the firmware version, such as `ACR1252U_V202.2`. */
  async firmware(): Promise<string> {
    const data = await this.#run(Acr1252EscapeIns.Firmware, [], 'the firmware request');
    if (data.length === 0 || !data.every((b) => b >= 0x20 && b < 0x7f)) {
      throw new TaplineError(ErrorCode.ProtocolError, `${this.#readerName} sent a firmware version that is no text.`, {
        details: { data: toSpacedHex(data) },
      });
    }
    return String.fromCharCode(...data);
  }

  /** `E0 00 00 29 01 <state>`: sets the LEDs (see {@link Acr1252Led}); returns the state the reader reports. */
  async setLed(state: number): Promise<number> {
    return this.#one(Acr1252EscapeIns.Led, [byte('The LED state', state)], 'the LED command');
  }

  /** `E0 00 00 29 00`: the LED state. */
  async led(): Promise<number> {
    return this.#one(Acr1252EscapeIns.Led, [], 'the LED status request');
  }

  /** `E0 00 00 28 01 <duration>`: sounds the buzzer for `ms` (10 ms units, rounded up, at most 2.55 s; 0 stops it). */
  async beep(ms: number): Promise<void> {
    const units = ms <= 0 ? 0 : Math.min(0xff, Math.ceil(ms / 10));
    await this.#run(Acr1252EscapeIns.Buzzer, [units], 'the buzzer command');
  }

  /** `E0 00 00 23 00`: the automatic PICC polling setting. */
  async polling(): Promise<Acr1252Polling> {
    return decodeAcr1252Polling(await this.#one(Acr1252EscapeIns.AutoPolling, [], 'the polling request'));
  }

  /** `E0 00 00 23 01 <setting>`. The reader keeps it across power cycles: restore what you change. */
  async setPolling(raw: number): Promise<Acr1252Polling> {
    const answer = await this.#one(
      Acr1252EscapeIns.AutoPolling,
      [byte('The polling setting', raw)],
      'the polling command',
    );
    return decodeAcr1252Polling(answer);
  }

  /** `E0 00 00 20 00`: the tag types polled for (see {@link Acr1252PiccType}). */
  async piccParameter(): Promise<number> {
    return this.#one(Acr1252EscapeIns.PiccOperatingParameter, [], 'the PICC parameter request');
  }

  /** `E0 00 00 20 01 <types>`. */
  async setPiccParameter(types: number): Promise<number> {
    return this.#one(
      Acr1252EscapeIns.PiccOperatingParameter,
      [byte('The PICC operating parameter', types)],
      'the PICC parameter command',
    );
  }

  /** `E0 00 00 21 00`: the LED and buzzer behaviour (see {@link Acr1252Behaviour}). */
  async ledBuzzerBehaviour(): Promise<number> {
    return this.#one(Acr1252EscapeIns.LedBuzzerBehaviour, [], 'the LED/buzzer behaviour request');
  }

  /** `E0 00 00 21 01 <behaviour>`. */
  async setLedBuzzerBehaviour(behaviour: number): Promise<number> {
    return this.#one(
      Acr1252EscapeIns.LedBuzzerBehaviour,
      [byte('The LED/buzzer behaviour', behaviour)],
      'the LED/buzzer behaviour command',
    );
  }

  async #run(ins: number, data: readonly number[], what: string): Promise<Uint8Array> {
    return parseAcr1252EscapeResponse(await this.#send(acr1252EscapeCommand(ins, data)), what, this.#readerName);
  }

  async #one(ins: number, data: readonly number[], what: string): Promise<number> {
    const answer = await this.#run(ins, data, what);
    if (answer.length !== 1) {
      throw new TaplineError(
        ErrorCode.ProtocolError,
        `${this.#readerName} answered ${what} with ${answer.length} bytes.`,
        {
          details: { data: toSpacedHex(answer) },
        },
      );
    }
    return answer[0]!;
  }
}
