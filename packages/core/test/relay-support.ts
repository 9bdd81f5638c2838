import { createHash, randomBytes } from 'node:crypto';
import {
  AesKey,
  ReaderBase,
  ReaderManager,
  computeTam1Response,
  createContainer,
  fromHex,
  isTaplineError,
  iso15693UidFromAir,
  rotateLeft,
  silentLogger,
  systemClock,
  toHex,
  waitForTag,
  type FrameCapability,
  type ReaderHold,
  type Tag,
  type TagInfo,
  type TaplineError,
} from '../src/index.js';
import { manualSource, testDriver } from './helpers.js';

// Chips and a reader for the relay's tests (verifyChip, answerScanRequest). The chips do the real cryptography (core's
// AES, AuthenticateEV2First halves and TAM1), so a wrong answer fails exactly where it would in the field. They are
// written here because @tapline/core cannot depend on @tapline/test-fixtures.

// ---------------------------------------------------------------------------------------------------------------
// Chips

export interface TestChip {
  readonly info: TagInfo;
  /** Answers one frame; `undefined` is silence. */
  handle(capability: FrameCapability, frame: Uint8Array): Uint8Array | undefined;
}

export const SW_OK = fromHex('9000');
export const SW_NOT_FOUND = fromHex('6A82');
export const NDEF_AID = 'd2760000850101';
export const VERIFY_AID = 'a000000846737061726b3201';
export const SPARK2_UID = fromHex('04517CA23B6E80');
export const APEX_CHIP_ID = fromHex('A5E1D0C3B2A19081');
export const SPARK1_UID = fromHex('E004011809A73B5C');

export const key = (label: string): Uint8Array =>
  Uint8Array.from(createHash('sha256').update(label).digest().subarray(0, 16));
export const SPARK2_KEY = key('relay-test/spark2-key-2');
export const APEX_KEY = key('relay-test/apex-verify');
export const SPARK1_KEY = key('relay-test/spark1-key-2');

/**
 * The PICC side of AuthenticateEV2First with key 2, as a Spark 2 (after SELECT of the NDEF application) or the Apex
 * Verify applet (after its SELECT, answering the chip id) runs it.
 */
export function ev2Chip(kind: 'spark2' | 'apex', chipKey: Uint8Array, tamperAnswer = false): TestChip {
  const aes = new AesKey(chipKey);
  let selected = false;
  let rndB: Uint8Array | undefined;
  const apdu = (data: Uint8Array, sw: string): Uint8Array => Uint8Array.from([...data, ...fromHex(sw)]);
  return {
    info:
      kind === 'spark2'
        ? {
            technology: 'iso14443a',
            uid: SPARK2_UID,
            ats: fromHex('7777710280'),
            sak: 0x20,
            protocols: ['iso14443-4', 'iso14443a-raw'],
          }
        : {
            technology: 'iso14443a',
            uid: fromHex('046A2C3E527190'),
            ats: fromHex('787771020031C173C84000009000'),
            sak: 0x20,
            protocols: ['iso14443-4', 'iso14443a-raw'],
          },
    handle(capability, frame) {
      if (capability !== 'iso14443-4') return undefined;
      const hex = toHex(frame);
      if (hex.startsWith('00a404')) {
        const aid = toHex(frame.subarray(5, 5 + frame[4]!));
        rndB = undefined;
        selected = aid === (kind === 'spark2' ? NDEF_AID : VERIFY_AID);
        if (!selected) return SW_NOT_FOUND;
        return kind === 'apex' ? apdu(APEX_CHIP_ID, '9000') : SW_OK;
      }
      if (hex.startsWith('907100000')) {
        if (!selected || frame[5] !== 2) return fromHex('9140');
        rndB = Uint8Array.from(randomBytes(16));
        return apdu(aes.encryptCbc(rndB), '91AF');
      }
      if (hex.startsWith('90af000020') && frame.length === 38) {
        const expected = rndB;
        rndB = undefined;
        if (!expected) return fromHex('91CA');
        const plain = aes.decryptCbc(frame.subarray(5, 37));
        if (toHex(plain.subarray(16)) !== toHex(rotateLeft(expected))) return fromHex('91AE');
        const answer = aes.encryptCbc(
          Uint8Array.from([...randomBytes(4), ...rotateLeft(plain.subarray(0, 16)), ...new Uint8Array(12)]),
        );
        if (tamperAnswer) answer[0]! ^= 0x01;
        return apdu(answer, '9100');
      }
      return fromHex('6D00');
    },
  };
}

/** An ICODE DNA answering ISO 15693 AUTHENTICATE (CSI 00, TAM1) with key 2 under core's TAM1 model. */
export function spark1Chip(chipKey: Uint8Array): TestChip {
  return {
    info: { technology: 'iso15693', uid: SPARK1_UID, protocols: ['iso15693'] },
    handle(capability, frame) {
      if (capability !== 'iso15693') return undefined;
      // flags 20, AUTHENTICATE 35, UID (air order), CSI 00, 00, key id 02, IChallenge(10).
      if (frame.length !== 23 || frame[0] !== 0x20 || frame[1] !== 0x35) return fromHex('0101');
      if (toHex(iso15693UidFromAir(frame.subarray(2, 10))) !== toHex(SPARK1_UID)) return undefined;
      if (frame[10] !== 0x00 || frame[12] !== 0x02) return fromHex('0103');
      const tresponse = computeTam1Response(chipKey, frame.subarray(13, 23), Uint8Array.from(randomBytes(4)));
      return Uint8Array.from([0x00, 0x00, ...tresponse]);
    },
  };
}

/** An ISO 15693 tag that is not an ICODE DNA. */
export const SLIX_INFO: TagInfo = { technology: 'iso15693', uid: fromHex('E004010200000001'), protocols: ['iso15693'] };

// ---------------------------------------------------------------------------------------------------------------
// Reader

/** A reader whose field holds a {@link TestChip}; exchanges answer on the next turn of the event loop. */
export class ChipReader extends ReaderBase {
  readonly frames: string[] = [];
  #chip: TestChip | undefined;

  constructor() {
    super({
      name: 'Relay Test Reader',
      driverId: 'relay-test',
      capabilities: ['iso14443-4', 'iso14443a-raw', 'iso15693'],
      logger: silentLogger,
      clock: systemClock,
      defaultTimeoutMs: 500,
    });
  }

  present(chip: TestChip): void {
    this.#chip = chip;
    this.tagArrived(chip.info);
  }

  remove(): void {
    this.#chip = undefined;
    this.tagLeft();
  }

  protected override exchange(
    _tag: Tag,
    capability: FrameCapability,
    frame: Uint8Array,
    signal: AbortSignal,
  ): Promise<Uint8Array> {
    this.frames.push(toHex(frame));
    const chip = this.#chip;
    return new Promise((resolve, reject) => {
      const onAbort = (): void => reject(signal.reason as Error);
      signal.addEventListener('abort', onAbort, { once: true });
      setImmediate(() => {
        if (this.#chip !== chip || !chip) return;
        const answer = chip.handle(capability, frame);
        if (answer === undefined) return; // silence: the exchange times out
        signal.removeEventListener('abort', onAbort);
        resolve(answer);
      });
    });
  }

  protected override release(): Promise<void> {
    return Promise.resolve();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Set-up: a container with one reader, a tap, waitForTag.

const holds: ReaderHold[] = [];

/** Releases the readers {@link tapChip} opened; call it from `afterEach`. */
export async function releaseTaps(): Promise<void> {
  for (const hold of holds.splice(0)) await hold.release();
}

/** Attaches a {@link ChipReader} through a real container and ReaderManager, and taps `chip` on it. */
export async function tapChip(chip: TestChip): Promise<{ readonly reader: ChipReader; readonly tag: Tag }> {
  const { source, events, device } = manualSource();
  let reader: ChipReader | undefined;
  const driver = testDriver('relay-test', () => Promise.resolve((reader = new ChipReader())));
  const container = createContainer({
    logger: silentLogger,
    withoutGenericPcsc: true,
    drivers: [driver],
    deviceSources: [source],
  });
  const manager = container.resolve(ReaderManager);
  holds.push(manager.hold());
  const arrival = waitForTag(manager.tags$, { timeoutMs: 1000 });
  events.next({ type: 'attached', device: device('Relay Test Reader') });
  await until(() => reader !== undefined);
  reader!.present(chip);
  return { reader: reader!, tag: await arrival };
}

export async function until(check: () => boolean): Promise<void> {
  for (let i = 0; !check(); i++) {
    if (i > 500) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

export async function failure(promise: Promise<unknown>): Promise<TaplineError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isTaplineError(error)) throw new Error(`expected a TaplineError, got ${String(error)}`);
  return error;
}
