import {
  Capability,
  SDM_COUNTER_MAX,
  computeApexSignature,
  fromHex,
  type CommandApdu,
  type FrameCapability,
} from '@tapline/core';
import {
  cryptoRandom,
  invalidOption,
  isoDepAtr,
  requireLength,
  statefulChip,
  type ChipModel,
  type ChipStep,
  type RandomSource,
  type StatefulChip,
} from './chip-model.js';
import { EV2_IDLE, ev2AuthenticateFirst, ev2AuthenticatePart2, type Ev2PiccState } from './ev2-picc.js';
import { Sw, answer, readBinary, startsWith, tryDecodeApdu, wanted } from './iso-dep.js';
import { APEX_NDEF_KEY_HEX, APEX_NDEF_SALT_HEX, APEX_VERIFY_KEY_HEX } from './keys.js';
import { t4tNdefFile, upperHex, uriNdefMessage, writeAscii } from './ndef.js';

/**
 * VivoKey Apex: a JavaCard (Fidesmo P71) with VivoKey's applets (protocols.md §2, §5).
 *
 * Modelled from sources: `6E 00` to GetVersion in both forms (how VivoKey's Intra tells an Apex from a Spark 2); the
 * Verify applet (`A000000846737061726B3201`, also selectable by its 11-byte prefix) answering SELECT with the 8-byte
 * chip id and then AuthenticateEV2First-style `90 71`/`90 AF` with its AES key (the Spark 2 state machine, shared);
 * the NDEF applet (`D2760000850101`) whose URL carries `s=<chip id>-<counter>-<CMAC>`; the OTP applet
 * (`A0000005272101014150455801`) answering YKOATH SELECT and LIST; the GlobalPlatform ISD; `6A 82` for other AIDs;
 * ATR and ATS from Intra's `APEX_ATR`.
 *
 * Inferred: which key number the Verify applet accepts (2, the one every VivoKey client sends; others are `91 40`);
 * the `s=` CMAC layout (core's `computeApexSignature`: CMAC over salt, chip id and the big-endian counter); the
 * counter moving once per selection of the NDEF file ("once per NFC session", flexsecure-applets); the NDEF applet
 * printing the Verify chip id as its UID; the ATS interface bytes (78 77 71 02) and the UID, SAK and ATQA.
 */

/** The Apex's applet AIDs as the fixtures serve them. */
export const ApexApplet = {
  /** VivoKey Verify ("spark2" in ASCII after RID A000000846, selected with a trailing 01). */
  verify: fromHex('A000000846737061726B3201'),
  /** NDEF (apex-ndef). */
  ndef: fromHex('D2760000850101'),
  /** OTP (apex-totp, YKOATH protocol). */
  otp: fromHex('A0000005272101014150455801'),
  /** GlobalPlatform issuer security domain. */
  isd: fromHex('A000000151000000'),
} as const;

/** The key number the Verify applet authenticates (VivoKey's clients always send 2). */
export const APEX_VERIFY_KEY_NO = 2;

/** Options of {@link createApexChip}. */
export interface ApexChipOptions {
  /** The 8-byte chip id the Verify applet returns (the platform's `uid` for an Apex). Default: a fixture id. */
  readonly chipId?: Uint8Array;
  /** The Verify applet's AES key. Default: the fixture key. */
  readonly verifyKey?: Uint8Array;
  /** The NDEF applet's CMAC key. Default: the fixture key. */
  readonly ndefKey?: Uint8Array;
  /** The NDEF applet's CMAC salt (16 bytes). Default: the fixture salt. */
  readonly ndefSalt?: Uint8Array;
  /** The NDEF signature counter before the first read. Default 0. */
  readonly ndefCounter?: number;
  /** The URL the NDEF applet signs; the `UID-CTR-CMAC` value is appended. Default a VivoKey demo URL. */
  readonly ndefUrlPrefix?: string;
  /** The ISO 14443 UID (7 bytes). Default: a fixture UID. */
  readonly uid?: Uint8Array;
  /** RndB and TI. Default: node:crypto. */
  readonly random?: RandomSource;
}

type AppletName = 'isd' | 'verify' | 'ndef' | 'otp';

/** The state of a virtual Apex between frames. */
export interface ApexState {
  /** The selected applet; the ISD after power-up. */
  readonly applet: AppletName;
  /** In the NDEF applet: the selected file (0xE103 or 0xE104). */
  readonly ndefFile: number | undefined;
  /** The NDEF file as signed for the current selection, fixed on its first read. */
  readonly ndefView: Uint8Array | undefined;
  /** The NDEF signature counter (non-volatile). */
  readonly ndefCounter: number;
  /** The Verify applet's authentication. */
  readonly auth: Ev2PiccState;
}

interface ApexConfig {
  readonly chipId: Uint8Array;
  readonly verifyKey: Uint8Array;
  readonly ndefKey: Uint8Array;
  readonly ndefSalt: Uint8Array;
  readonly random: RandomSource;
  readonly cc: Uint8Array;
  readonly ndefTemplate: Uint8Array;
  readonly signatureOffset: number;
}

const NDEF_FILE_SIZE = 256;
const APPLETS: readonly (readonly [AppletName, Uint8Array])[] = [
  ['verify', ApexApplet.verify],
  ['ndef', ApexApplet.ndef],
  ['otp', ApexApplet.otp],
  ['isd', ApexApplet.isd],
];
/** `<chip id 16 hex>-<counter 6 hex>-<CMAC 32 hex>`. */
const SIGNATURE_VALUE_LENGTH = 16 + 1 + 6 + 1 + 32;
/** Shortest partial AID a JavaCard selects by (a RID). */
const MIN_PARTIAL_AID = 5;

/** Historical bytes of Intra's `APEX_ATR` (3B 8A 80 01 ‖ these ‖ TCK 90). */
const APEX_HISTORICAL_BYTES = fromHex('0031C173C84000009000');

function buildConfig(options: ApexChipOptions): ApexConfig {
  const chipId = requireLength(options.chipId ?? fromHex('A5E1D0C3B2A19081'), 8, 'An Apex chip id');
  const prefix = options.ndefUrlPrefix ?? 'https://vivokey.com/demo/sigtest/?s=';
  const uri = `${prefix}${'0'.repeat(16)}-${'0'.repeat(6)}-${'0'.repeat(32)}`;
  const message = uriNdefMessage(uri);
  if (message.length + 2 > NDEF_FILE_SIZE) throw invalidOption('The Apex NDEF URL prefix is too long.');
  // The signature value ends the URI, which ends the record, which ends the message (after the 2-byte NLEN).
  const signatureOffset = 2 + message.length - SIGNATURE_VALUE_LENGTH;
  // T4T CC: mapping 2.0, MLe/MLc 255, NDEF file E104 of 256 bytes, read free, write refused.
  const cc = fromHex('000F2000FF00FF0406E104010000FF');
  return {
    chipId,
    verifyKey: requireLength(options.verifyKey ?? fromHex(APEX_VERIFY_KEY_HEX), 16, 'The Apex Verify key'),
    ndefKey: requireLength(options.ndefKey ?? fromHex(APEX_NDEF_KEY_HEX), 16, 'The Apex NDEF key'),
    ndefSalt: requireLength(options.ndefSalt ?? fromHex(APEX_NDEF_SALT_HEX), 16, 'The Apex NDEF salt'),
    random: options.random ?? cryptoRandom,
    cc,
    ndefTemplate: t4tNdefFile(message, NDEF_FILE_SIZE),
    signatureOffset,
  };
}

/** The pure model of an Apex; {@link createApexChip} wraps it for the simulator. */
export function apexModel(options: ApexChipOptions = {}): ChipModel<ApexState> {
  const config = buildConfig(options);
  const counter = options.ndefCounter ?? 0;
  if (!Number.isInteger(counter) || counter < 0 || counter > SDM_COUNTER_MAX) {
    throw invalidOption(`The Apex NDEF counter must be 0 to ${SDM_COUNTER_MAX}, not ${counter}.`);
  }
  const initialState: ApexState = {
    applet: 'isd',
    ndefFile: undefined,
    ndefView: undefined,
    ndefCounter: counter,
    auth: EV2_IDLE,
  };
  return {
    info: {
      technology: 'iso14443a',
      uid: requireLength(options.uid ?? fromHex('046A2C3E527190'), 7, 'An Apex UID'),
      atr: isoDepAtr(APEX_HISTORICAL_BYTES),
      ats: Uint8Array.of(0x78, 0x77, 0x71, 0x02, ...APEX_HISTORICAL_BYTES),
      sak: 0x20,
      atqa: Uint8Array.of(0x44, 0x00),
      protocols: [Capability.Iso14443_4, Capability.Iso14443aRaw],
    },
    initialState,
    respond: (state, capability, frame) => respond(config, state, capability, frame),
    powerUp: (state) => ({ ...initialState, ndefCounter: state.ndefCounter }),
  };
}

/** A virtual Apex for the simulator (see {@link apexModel} for what it models). */
export function createApexChip(options: ApexChipOptions = {}): StatefulChip<ApexState> {
  return statefulChip(apexModel(options));
}

function step(state: ApexState, response: Uint8Array | undefined): ChipStep<ApexState> {
  return { state, response };
}

/** CLA bytes a JavaCard accepts here: ISO (00), GlobalPlatform proprietary (80/84) and the Verify applet's 90. */
function claKnown(cla: number): boolean {
  return cla === 0x00 || cla === 0x80 || cla === 0x84 || cla === 0x90;
}

function respond(
  config: ApexConfig,
  state: ApexState,
  capability: FrameCapability,
  frame: Uint8Array,
): ChipStep<ApexState> {
  if (capability !== Capability.Iso14443_4) return step(state, undefined);
  if (frame.length === 0) return step(state, answer(Sw.WrongLength));
  // The CLA is checked first: a bare native `60` (GetVersion) is a CLA the card does not know, hence 6E 00.
  if (!claKnown(frame[0]!)) return step(state, answer(Sw.ClaNotSupported));
  const apdu = tryDecodeApdu(frame);
  if (apdu === undefined) return step(state, answer(Sw.WrongLength));
  if (apdu.cla === 0x00 && apdu.ins === 0xa4 && apdu.p1 === 0x04) return selectApplet(config, state, apdu);
  switch (state.applet) {
    case 'verify':
      return verifyApplet(config, state, apdu);
    case 'ndef':
      return ndefApplet(config, state, apdu);
    case 'otp':
      return otpApplet(state, apdu);
    case 'isd':
      return step(state, answer(apdu.cla === 0x90 ? Sw.ClaNotSupported : Sw.InsNotSupported));
  }
}

function selectApplet(config: ApexConfig, state: ApexState, apdu: CommandApdu): ChipStep<ApexState> {
  const aid = apdu.data ?? new Uint8Array(0);
  // JavaCard selects by the full AID or by a prefix of at least the RID (partial selection).
  const found = APPLETS.find(([, full]) => aid.length >= MIN_PARTIAL_AID && startsWith(full, aid));
  // A failed SELECT leaves the current applet selected, as on a JavaCard.
  if (found === undefined) return step(state, answer(Sw.FileNotFound));
  const [applet] = found;
  const next: ApexState = { ...state, applet, ndefFile: undefined, ndefView: undefined, auth: EV2_IDLE };
  return step(next, answer(Sw.Ok, selectResponse(config, applet)));
}

function selectResponse(config: ApexConfig, applet: AppletName): Uint8Array {
  switch (applet) {
    case 'verify':
      return Uint8Array.from(config.chipId);
    case 'otp':
      // YKOATH: version (79) and the applet's name, its salt (71, here the chip id); no 74/7B: no access code set.
      return Uint8Array.from([0x79, 0x03, 0x05, 0x00, 0x00, 0x71, 0x08, ...config.chipId]);
    case 'isd':
      // Minimal FCI: the ISD's AID and proprietary data with the maximum command length.
      return fromHex('6F108408A000000151000000A5049F6501FF');
    case 'ndef':
      return new Uint8Array(0);
  }
}

function verifyApplet(config: ApexConfig, state: ApexState, apdu: CommandApdu): ChipStep<ApexState> {
  if (apdu.cla !== 0x90) return step(state, answer(Sw.InsNotSupported));
  const data = apdu.data ?? new Uint8Array(0);
  if (apdu.ins === 0x71) {
    const result = ev2AuthenticateFirst(
      data,
      (keyNo) => (keyNo === APEX_VERIFY_KEY_NO ? config.verifyKey : undefined),
      config.random,
    );
    return step({ ...state, auth: result.auth }, answer(result.sw, result.data));
  }
  if (apdu.ins === 0xaf && state.auth.phase === 'challenged') {
    const result = ev2AuthenticatePart2(state.auth, data, config.random);
    return step({ ...state, auth: result.auth }, answer(result.sw, result.data));
  }
  // GetVersion and every other native command: the applet does not speak them.
  return step({ ...state, auth: EV2_IDLE }, answer(Sw.ClaNotSupported));
}

function ndefApplet(config: ApexConfig, state: ApexState, apdu: CommandApdu): ChipStep<ApexState> {
  if (apdu.cla !== 0x00) return step(state, answer(Sw.ClaNotSupported));
  const data = apdu.data ?? new Uint8Array(0);
  switch (apdu.ins) {
    case 0xa4: {
      if (apdu.p1 !== 0x00 || data.length !== 2) return step(state, answer(Sw.FileNotFound));
      const id = (data[0]! << 8) | data[1]!;
      if (id !== 0xe103 && id !== 0xe104) return step(state, answer(Sw.FileNotFound));
      return step({ ...state, ndefFile: id, ndefView: undefined }, answer(Sw.Ok));
    }
    case 0xb0: {
      if (state.ndefFile === undefined) return step(state, answer(Sw.NoCurrentEf));
      const offset = ((apdu.p1 & 0x7f) << 8) | apdu.p2;
      if (state.ndefFile === 0xe103) return step(state, readBinary(config.cc, offset, wanted(apdu)));
      let next = state;
      if (next.ndefView === undefined) {
        const counter = Math.min(state.ndefCounter + 1, SDM_COUNTER_MAX);
        next = { ...state, ndefCounter: counter, ndefView: signedNdef(config, counter) };
      }
      return step(next, readBinary(next.ndefView!, offset, wanted(apdu)));
    }
    case 0xd6:
      return step(state, answer(Sw.SecurityNotSatisfied));
    default:
      return step(state, answer(Sw.InsNotSupported));
  }
}

/** The NDEF file with `<chip id>-<counter>-<CMAC>` written over the template's placeholder. */
function signedNdef(config: ApexConfig, counter: number): Uint8Array {
  const view = Uint8Array.from(config.ndefTemplate);
  const cmac = computeApexSignature({
    key: config.ndefKey,
    salt: config.ndefSalt,
    uid: config.chipId,
    counter,
  });
  const value = `${upperHex(config.chipId)}-${counter.toString(16).toUpperCase().padStart(6, '0')}-${upperHex(cmac)}`;
  writeAscii(view, config.signatureOffset, value);
  return view;
}

function otpApplet(state: ApexState, apdu: CommandApdu): ChipStep<ApexState> {
  // YKOATH LIST (00 A1 00 00): one TOTP/SHA-1 credential (type byte 21), enough for a client to see the applet work.
  if (apdu.cla === 0x00 && apdu.ins === 0xa1) {
    const name = Buffer.from('Tapline:fixture', 'utf8');
    return step(state, answer(Sw.Ok, Uint8Array.from([0x72, name.length + 1, 0x21, ...name])));
  }
  return step(state, answer(apdu.cla === 0x00 ? Sw.InsNotSupported : Sw.ClaNotSupported));
}
