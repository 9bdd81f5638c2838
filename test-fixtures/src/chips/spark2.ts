import { createHash } from 'node:crypto';
import {
  Capability,
  EV2_CMD_CTR_MAX,
  SDM_COUNTER_MAX,
  computeSdmMac,
  concatBytes,
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
import {
  EV2_IDLE,
  advance,
  commandMacValid,
  ev2AuthenticateFirst,
  ev2AuthenticatePart2,
  fullResponse,
  macResponse,
  type Ev2PiccSession,
  type Ev2PiccState,
} from './ev2-picc.js';
import { Sw, answer, readBinary, tryDecodeApdu, wanted } from './iso-dep.js';
import { SPARK2_SIGNATURE_KEY, signUidWithFixtureKey, spark2FixtureKeys, type UidSigner } from './keys.js';
import { SHORT_URI_TEXT_OFFSET, t4tNdefFile, upperHex, uriNdefMessage, writeAscii } from './ndef.js';

/**
 * VivoKey Spark 2: an NTAG 424 DNA or NTAG 413 DNA as VivoKey personalises it (protocols.md §2, §3, §6.4).
 *
 * Modelled from sources: SELECT of the NDEF application and of the T4T files, ISO READ BINARY, GetVersion (424
 * bytes from a genuine chip; the 413 hardware major 0x10 that proxmark3 keys on), Read_Sig with `91 90`,
 * AuthenticateEV2First with real crypto, EV2 secure messaging (MAC and FULL) with the command counter, and a SUN URL
 * `https://vivokey.co/<id>/?sun=<UID>-<CTR>-<MAC>` under the plain-mirror rule (AN12196 §3: SV2 over UID and the
 * counter little-endian, MAC over empty DynamicData).
 *
 * Chosen here, because no source gives them: the 413's other GetVersion bytes, both chips' production blocks,
 * the file settings (which key reads what, which file is in which CommMode), SUN on the 413 at all (VivoKey's
 * example UID is a 413's, but the mirror rule is unverified for it), and when the counter moves: once per selection
 * of the NDEF file by ISO READ BINARY (so the NLEN read and the body read of one tap see the same URL), and on every
 * unauthenticated ReadData of it.
 */

/** The two chips sold as a Spark 2. */
export type Spark2Model = 'ntag424' | 'ntag413';

/** What each of the five application keys is for on a fixture Spark 2. */
export const Spark2KeyNo = {
  /** Application master key (changes keys and file settings). */
  AppMaster: 0,
  /** K_SDMFileRead: the SUN MAC's session key is derived from it. A VivoKey choice the fixtures make up. */
  SdmFileRead: 1,
  /** The VivoKey platform key: AuthenticateEV2First with the Auth API, and read access to the proprietary file. */
  Platform: 2,
  /** Spare. */
  Spare3: 3,
  /** Spare. */
  Spare4: 4,
} as const;

/** Options of {@link createSpark2Chip}. */
export interface Spark2ChipOptions {
  /** Which chip. Default `ntag424`. */
  readonly model?: Spark2Model;
  /** 7-byte UID, MSB first. Default: a fixed one per model. */
  readonly uid?: Uint8Array;
  /** The five AES application keys, key number 0–4 (roles: {@link Spark2KeyNo}). Default: the fixture keys. */
  readonly keys?: readonly Uint8Array[];
  /** RndB and TI. Default: node:crypto. */
  readonly random?: RandomSource;
  /** The originality signature of the UID (56 bytes, `r ‖ s`). Default: the fixture secp224r1 key over the raw UID. */
  readonly signer?: UidSigner;
  /** SDMReadCtr before the first read (the first SUN URL shows this plus one). Default 0. */
  readonly sunCounter?: number;
  /** The 32-hex-digit path segment of the SUN URL. Default: derived from the UID. */
  readonly urlId?: string;
}

/** The state of a virtual Spark 2 between frames. */
export interface Spark2State {
  /** Which level is selected: the PICC (after activation) or the NDEF application. */
  readonly level: 'picc' | 'app';
  /** The selected file number (1 CC, 2 NDEF, 3 proprietary), if any. */
  readonly file: number | undefined;
  /** The NDEF file as mirrored for the current selection, fixed on its first read. */
  readonly ndefView: Uint8Array | undefined;
  /** SDMReadCtr (non-volatile). */
  readonly sdmReadCtr: number;
  /** AuthenticateEV2First and the secure-messaging session. */
  readonly auth: Ev2PiccState;
  /** The GetVersion frame the next `90 AF` fetches. */
  readonly pendingVersionFrame: 1 | 2 | undefined;
}

/** The NDEF application's DF name. */
export const NDEF_APPLICATION_AID = fromHex('D2760000850101');

const GET_VERSION = 0x60;
const ADDITIONAL_FRAME = 0xaf;
const AUTHENTICATE_EV2_FIRST = 0x71;
const READ_SIG = 0x3c;
const GET_CARD_UID = 0x51;
const READ_DATA = 0xad;
const GET_FILE_SETTINGS = 0xf5;
const FREE = 0xe;
const NEVER = 0xf;

type CommMode = 'plain' | 'mac' | 'full';

interface FileSpec {
  readonly fileNo: number;
  readonly isoId: number;
  readonly content: Uint8Array;
  readonly commMode: CommMode;
  readonly read: number;
  readonly write: number;
  readonly readWrite: number;
  readonly change: number;
}

interface SunLayout {
  readonly uidOffset: number;
  readonly ctrOffset: number;
  readonly macOffset: number;
}

interface Spark2Config {
  readonly model: Spark2Model;
  readonly uid: Uint8Array;
  readonly keys: readonly Uint8Array[];
  readonly random: RandomSource;
  readonly signature: Uint8Array;
  readonly files: ReadonlyMap<number, FileSpec>;
  readonly sun: SunLayout;
  readonly version: readonly [Uint8Array, Uint8Array, Uint8Array];
}

const DEFAULT_UID: Readonly<Record<Spark2Model, string>> = {
  ntag424: '04517CA23B6E80',
  ntag413: '04517CA23B6F80',
};

/**
 * The GetVersion hardware and software blocks. 424: a genuine chip's (protocols.md §3.1). 413: type 04, subtype 02,
 * major 0x10 minor 0x00 (the proxmark3 rule), storage 0x0F (128–256 bytes) and software 01.00 are guesses.
 */
const VERSION: Readonly<Record<Spark2Model, readonly [string, string, string]>> = {
  ntag424: ['04040230001105', '04040201021105', '1D3C7A40002621'],
  ntag413: ['04040210000F05', '04040201000F05', '1D3C7A40001920'],
};

const FILE_SIZES: Readonly<Record<Spark2Model, { readonly ndef: number; readonly proprietary: number }>> = {
  ntag424: { ndef: 256, proprietary: 128 },
  ntag413: { ndef: 128, proprietary: 32 },
};

function capabilityContainer(ndefSize: number, proprietarySize: number): Uint8Array {
  // T4T mapping 2.0, MLe 256, MLc 255; NDEF file E104 read free, write refused (FF: a read-only SUN tag);
  // proprietary file E105 with the proprietary access bytes the NTAG 4xx CC carries.
  const cc = new Uint8Array(32);
  cc.set([0x00, 0x17, 0x20, 0x01, 0x00, 0x00, 0xff]);
  cc.set([0x04, 0x06, 0xe1, 0x04, ndefSize >>> 8, ndefSize & 0xff, 0x00, 0xff], 7);
  cc.set([0x05, 0x06, 0xe1, 0x05, proprietarySize >>> 8, proprietarySize & 0xff, 0x82, 0x83], 15);
  return cc;
}

function sunTemplate(urlId: string, ndefSize: number): { file: Uint8Array; layout: SunLayout } {
  const before = `https://vivokey.co/${urlId}/?sun=`;
  const uri = `${before}${'0'.repeat(14)}-${'0'.repeat(6)}-${'0'.repeat(16)}`;
  const file = t4tNdefFile(uriNdefMessage(uri), ndefSize);
  // NLEN, then the record header up to the prefix code, then the URI without "https://".
  const uidOffset = 2 + SHORT_URI_TEXT_OFFSET + before.length - 'https://'.length;
  return { file, layout: { uidOffset, ctrOffset: uidOffset + 15, macOffset: uidOffset + 22 } };
}

function buildConfig(options: Spark2ChipOptions): Spark2Config {
  const model = options.model ?? 'ntag424';
  const uid = requireLength(options.uid ?? fromHex(DEFAULT_UID[model]), 7, 'A Spark 2 UID');
  const keys = (options.keys ?? spark2FixtureKeys()).map((k, i) => requireLength(k, 16, `Spark 2 key ${i}`));
  if (keys.length !== 5) throw invalidOption(`A Spark 2 has 5 keys (0–4), not ${keys.length}.`);
  const urlId = options.urlId ?? createHash('sha256').update(uid).digest('hex').slice(0, 32);
  if (!/^[0-9a-fA-F]{32}$/.test(urlId)) throw invalidOption('The SUN URL id must be 32 hex digits.');
  const sizes = FILE_SIZES[model];
  const { file: ndef, layout } = sunTemplate(urlId, sizes.ndef);
  const proprietary = new Uint8Array(sizes.proprietary);
  writeAscii(proprietary, 0, 'Tapline fixture Spark 2'.slice(0, sizes.proprietary));
  const signer = options.signer ?? ((u: Uint8Array) => signUidWithFixtureKey(SPARK2_SIGNATURE_KEY, u));
  const signature = requireLength(signer(uid), 56, 'A Spark 2 signature');
  const [hw, sw, batch] = VERSION[model];
  const files = new Map<number, FileSpec>([
    [
      1,
      {
        fileNo: 1,
        isoId: 0xe103,
        content: capabilityContainer(sizes.ndef, sizes.proprietary),
        commMode: 'plain',
        read: FREE,
        write: Spark2KeyNo.AppMaster,
        readWrite: Spark2KeyNo.AppMaster,
        change: Spark2KeyNo.AppMaster,
      },
    ],
    [
      2,
      {
        fileNo: 2,
        isoId: 0xe104,
        content: ndef,
        commMode: 'mac',
        read: FREE,
        write: Spark2KeyNo.AppMaster,
        readWrite: Spark2KeyNo.AppMaster,
        change: Spark2KeyNo.AppMaster,
      },
    ],
    [
      3,
      {
        fileNo: 3,
        isoId: 0xe105,
        content: proprietary,
        commMode: 'full',
        read: Spark2KeyNo.Platform,
        write: Spark2KeyNo.Spare3,
        readWrite: Spark2KeyNo.Spare3,
        change: Spark2KeyNo.AppMaster,
      },
    ],
  ]);
  return {
    model,
    uid,
    keys,
    random: options.random ?? cryptoRandom,
    signature,
    files,
    sun: layout,
    version: [fromHex(hw), fromHex(sw), concatBytes(uid, fromHex(batch))],
  };
}

const EMPTY = new Uint8Array(0);

/**
 * The pure model of a Spark 2; {@link createSpark2Chip} wraps it for the simulator. Fails with `INVALID_ARGUMENT`
 * for malformed options.
 */
export function spark2Model(options: Spark2ChipOptions = {}): ChipModel<Spark2State> {
  const config = buildConfig(options);
  const counter = options.sunCounter ?? 0;
  if (!Number.isInteger(counter) || counter < 0 || counter > SDM_COUNTER_MAX) {
    throw invalidOption(`The SUN counter must be 0 to ${SDM_COUNTER_MAX}, not ${counter}.`);
  }
  const initialState: Spark2State = {
    level: 'picc',
    file: undefined,
    ndefView: undefined,
    sdmReadCtr: counter,
    auth: EV2_IDLE,
    pendingVersionFrame: undefined,
  };
  return {
    info: {
      technology: 'iso14443a',
      uid: Uint8Array.from(config.uid),
      // NTAG 4xx DNA: ATS 06 77 77 71 02 80 (one historical byte, 80), SAK 20, ATQA 44 03. The 413 is taken to
      // report the same, which no source contradicts.
      atr: isoDepAtr(Uint8Array.of(0x80)),
      ats: Uint8Array.of(0x77, 0x77, 0x71, 0x02, 0x80),
      sak: 0x20,
      atqa: Uint8Array.of(0x44, 0x03),
      protocols: [Capability.Iso14443_4, Capability.Iso14443aRaw],
    },
    initialState,
    respond: (state, capability, frame) => respond(config, state, capability, frame),
    powerUp: (state) => ({ ...initialState, sdmReadCtr: state.sdmReadCtr }),
  };
}

/** A virtual Spark 2 for the simulator (see {@link spark2Model} for what it models). */
export function createSpark2Chip(options: Spark2ChipOptions = {}): StatefulChip<Spark2State> {
  return statefulChip(spark2Model(options));
}

function step(state: Spark2State, response: Uint8Array | undefined): ChipStep<Spark2State> {
  return { state, response };
}

function respond(
  config: Spark2Config,
  state: Spark2State,
  capability: FrameCapability,
  frame: Uint8Array,
): ChipStep<Spark2State> {
  // Raw ISO 14443-3 frames go unanswered once the chip is in its ISO-DEP state, as on a PC/SC reader.
  if (capability !== Capability.Iso14443_4) return step(state, undefined);
  const apdu = tryDecodeApdu(frame);
  if (frame[0] === 0x90) return native(config, state, isExtendedLength(frame) ? undefined : apdu);
  // A pending GetVersion ends with any other command, as on the chip.
  const plain = state.pendingVersionFrame === undefined ? state : { ...state, pendingVersionFrame: undefined };
  // A bare native command such as `60` is not a valid APDU in ISO mode: 67 00, which VivoKey's Intra reads as "not
  // an Apex, try the wrapped form".
  if (apdu === undefined) return step(plain, answer(Sw.WrongLength));
  if (apdu.cla !== 0x00) return step(plain, answer(Sw.ClaNotSupported));
  switch (apdu.ins) {
    case 0xa4:
      return select(config, plain, apdu);
    case 0xb0:
      return isoReadBinary(config, plain, apdu);
    case 0xd6:
      return step(plain, answer(plain.file === undefined ? Sw.NoCurrentEf : Sw.SecurityNotSatisfied));
    default:
      return step(plain, answer(Sw.InsNotSupported));
  }
}

/** True for an extended-length command APDU: a body that starts with a 00 byte where a short Lc would be. */
function isExtendedLength(frame: Uint8Array): boolean {
  return frame.length > 5 && frame[4] === 0x00;
}

function select(config: Spark2Config, state: Spark2State, apdu: CommandApdu): ChipStep<Spark2State> {
  const data = apdu.data ?? EMPTY;
  // Any selection ends the authentication, as ISOSelectFile does on the chip.
  const reset = { ...state, auth: EV2_IDLE, ndefView: undefined };
  if (apdu.p1 === 0x04) {
    if (!Buffer.from(data).equals(Buffer.from(NDEF_APPLICATION_AID))) return step(state, answer(Sw.FileNotFound));
    return step({ ...reset, level: 'app', file: undefined }, answer(Sw.Ok));
  }
  if (apdu.p1 === 0x00 || apdu.p1 === 0x02) {
    if (data.length !== 2) return step(state, answer(Sw.WrongLength));
    const id = (data[0]! << 8) | data[1]!;
    if (id === 0x3f00) return step({ ...reset, level: 'picc', file: undefined }, answer(Sw.Ok));
    if (id === 0xe110) return step({ ...reset, level: 'app', file: undefined }, answer(Sw.Ok));
    const file = [...config.files.values()].find((f) => f.isoId === id);
    if (file === undefined || state.level !== 'app') return step(state, answer(Sw.FileNotFound));
    return step({ ...reset, file: file.fileNo }, answer(Sw.Ok));
  }
  return step(state, answer(Sw.WrongP1P2));
}

function isoReadBinary(config: Spark2Config, state: Spark2State, apdu: CommandApdu): ChipStep<Spark2State> {
  let fileNo = state.file;
  let offset = (apdu.p1 << 8) | apdu.p2;
  let next = state;
  if (apdu.p1 & 0x80) {
    // Short file identifier in P1, offset in P2: selects the file as it reads.
    fileNo = apdu.p1 & 0x1f;
    offset = apdu.p2;
    if (state.level !== 'app' || !config.files.has(fileNo)) return step(state, answer(Sw.FileNotFound));
    if (fileNo !== state.file) next = { ...state, file: fileNo, ndefView: undefined, auth: EV2_IDLE };
  }
  if (fileNo === undefined) return step(state, answer(Sw.NoCurrentEf));
  const file = config.files.get(fileNo)!;
  // ISO commands read only files with free read access; the rest needs ReadData in a secure session.
  if (file.read !== FREE) return step(next, answer(Sw.SecurityNotSatisfied));
  // SUN mirrors only into unauthenticated reads, as for ReadData; an authenticated reader sees the stored file.
  if (fileNo !== 2 || next.auth.phase === 'authenticated') {
    return step(next, readBinary(file.content, offset, wanted(apdu)));
  }
  if (next.ndefView === undefined) {
    const mirrored = mirrorSun(config, next.sdmReadCtr);
    next = { ...next, sdmReadCtr: mirrored.counter, ndefView: mirrored.view };
  }
  return step(next, readBinary(next.ndefView!, offset, wanted(apdu)));
}

/** Increments SDMReadCtr (it stays at its maximum once there) and mirrors UID, counter and SDMMAC into the file. */
function mirrorSun(config: Spark2Config, counter: number): { counter: number; view: Uint8Array } {
  const next = Math.min(counter + 1, SDM_COUNTER_MAX);
  const view = Uint8Array.from(config.files.get(2)!.content);
  const mac = computeSdmMac({
    fileReadKey: config.keys[Spark2KeyNo.SdmFileRead]!,
    uid: config.uid,
    counter: next,
  });
  writeAscii(view, config.sun.uidOffset, upperHex(config.uid));
  writeAscii(view, config.sun.ctrOffset, next.toString(16).toUpperCase().padStart(6, '0'));
  writeAscii(view, config.sun.macOffset, upperHex(mac));
  return { counter: next, view };
}

// ---------------------------------------------------------------------------------------------------------------
// Native commands (`90 Cmd 00 00 Lc data 00`)

function nativeAnswer(state: Spark2State, sw: number, data: Uint8Array = EMPTY): ChipStep<Spark2State> {
  const ok = sw === Sw.NxpOk || sw === Sw.NxpAdditionalFrame || sw === Sw.NxpSignature;
  // Every error ends the authentication; an accepted command in a session moves the counter on (a chained one once,
  // at its last frame). Both as in NT4H2421Gx §9.1.
  if (!ok) return step({ ...state, auth: EV2_IDLE, pendingVersionFrame: undefined }, answer(sw, data));
  if (state.auth.phase === 'authenticated' && sw !== Sw.NxpAdditionalFrame) {
    return step({ ...state, auth: { phase: 'authenticated', session: advance(state.auth.session) } }, answer(sw, data));
  }
  return step(state, answer(sw, data));
}

function native(config: Spark2Config, state: Spark2State, apdu: CommandApdu | undefined): ChipStep<Spark2State> {
  // NTAG 4xx takes short APDUs only; an extended or inconsistent one is a length error (VivoKey's forum, §2).
  if (apdu === undefined) return nativeAnswer(state, Sw.NxpLengthError);
  const data = apdu.data ?? EMPTY;
  const cmd = apdu.ins;
  if (cmd === ADDITIONAL_FRAME) return additionalFrame(config, state, data);
  const fresh: Spark2State = {
    ...state,
    pendingVersionFrame: undefined,
    // A new command abandons an authentication that is waiting for its second part.
    auth: state.auth.phase === 'challenged' ? EV2_IDLE : state.auth,
  };
  if (fresh.auth.phase === 'authenticated' && fresh.auth.session.cmdCtr >= EV2_CMD_CTR_MAX) {
    return nativeAnswer(fresh, Sw.NxpIntegrityError);
  }
  switch (cmd) {
    case GET_VERSION:
      if (data.length !== 0) return nativeAnswer(fresh, Sw.NxpLengthError);
      return nativeAnswer({ ...fresh, pendingVersionFrame: 1 }, Sw.NxpAdditionalFrame, config.version[0]);
    case AUTHENTICATE_EV2_FIRST: {
      if (fresh.level !== 'app') return nativeAnswer(fresh, Sw.NxpNoSuchKey);
      const result = ev2AuthenticateFirst(data, (keyNo) => config.keys[keyNo], config.random);
      return step({ ...fresh, auth: result.auth }, answer(result.sw, result.data));
    }
    case READ_SIG:
      return readSig(config, fresh, data);
    case GET_CARD_UID:
      return getCardUid(config, fresh, data);
    case READ_DATA:
      return readData(config, fresh, data);
    case GET_FILE_SETTINGS:
      return getFileSettings(config, fresh, data);
    default:
      return nativeAnswer(fresh, Sw.NxpIllegalCommand);
  }
}

function additionalFrame(config: Spark2Config, state: Spark2State, data: Uint8Array): ChipStep<Spark2State> {
  if (state.auth.phase === 'challenged') {
    const result = ev2AuthenticatePart2(state.auth, data, config.random);
    return step({ ...state, auth: result.auth }, answer(result.sw, result.data));
  }
  if (state.pendingVersionFrame !== undefined) {
    if (data.length !== 0) return nativeAnswer(state, Sw.NxpLengthError);
    if (state.pendingVersionFrame === 1) {
      return nativeAnswer({ ...state, pendingVersionFrame: 2 }, Sw.NxpAdditionalFrame, config.version[1]);
    }
    return nativeAnswer({ ...state, pendingVersionFrame: undefined }, Sw.NxpOk, config.version[2]);
  }
  return nativeAnswer(state, Sw.NxpIllegalCommand);
}

/** The session when the command's MAC checks out; `undefined` when the chip must refuse. */
function macChecked(state: Spark2State, cmd: number, header: Uint8Array, mac: Uint8Array): Ev2PiccSession | undefined {
  if (state.auth.phase !== 'authenticated') return undefined;
  return commandMacValid(state.auth.session, cmd, header, mac) ? state.auth.session : undefined;
}

function readSig(config: Spark2Config, state: Spark2State, data: Uint8Array): ChipStep<Spark2State> {
  if (state.auth.phase !== 'authenticated') {
    if (data.length !== 1) return nativeAnswer(state, Sw.NxpLengthError);
    if (data[0] !== 0x00) return nativeAnswer(state, Sw.NxpParameterError);
    return nativeAnswer(state, Sw.NxpSignature, config.signature);
  }
  // In a session Read_Sig is a FULL-mode command: header 00, MAC over it, encrypted answer (return code 90).
  if (data.length !== 9) return nativeAnswer(state, Sw.NxpLengthError);
  const session = macChecked(state, READ_SIG, data.subarray(0, 1), data.subarray(1));
  if (session === undefined) return nativeAnswer(state, Sw.NxpIntegrityError);
  if (data[0] !== 0x00) return nativeAnswer(state, Sw.NxpParameterError);
  return nativeAnswer(state, Sw.NxpSignature, fullResponse(session, Sw.NxpSignature & 0xff, config.signature));
}

function getCardUid(config: Spark2Config, state: Spark2State, data: Uint8Array): ChipStep<Spark2State> {
  if (state.auth.phase !== 'authenticated') return nativeAnswer(state, Sw.NxpAuthenticationError);
  if (data.length !== 8) return nativeAnswer(state, Sw.NxpLengthError);
  const session = macChecked(state, GET_CARD_UID, EMPTY, data);
  if (session === undefined) return nativeAnswer(state, Sw.NxpIntegrityError);
  return nativeAnswer(state, Sw.NxpOk, fullResponse(session, 0x00, config.uid));
}

function readLe3(bytes: Uint8Array, at: number): number {
  return bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16);
}

function readData(config: Spark2Config, state: Spark2State, data: Uint8Array): ChipStep<Spark2State> {
  if (data.length !== 7 && data.length !== 15) return nativeAnswer(state, Sw.NxpLengthError);
  const header = data.subarray(0, 7);
  const authenticated = state.auth.phase === 'authenticated';
  let session: Ev2PiccSession | undefined;
  if (data.length === 15) {
    session = macChecked(state, READ_DATA, header, data.subarray(7));
    if (session === undefined) return nativeAnswer(state, authenticated ? Sw.NxpIntegrityError : Sw.NxpLengthError);
  }
  const file = state.level === 'app' ? config.files.get(header[0]!) : undefined;
  if (file === undefined) return nativeAnswer(state, Sw.NxpFileNotFound);
  const allowed =
    file.read === FREE ||
    (state.auth.phase === 'authenticated' &&
      (state.auth.session.keyNo === file.read || state.auth.session.keyNo === file.readWrite));
  if (!allowed) return nativeAnswer(state, Sw.NxpPermissionDenied);
  // Free access goes in plain; secured files answer only to a command in their own mode (with its MAC).
  if (file.read !== FREE && session === undefined) return nativeAnswer(state, Sw.NxpLengthError);
  const offset = readLe3(header, 1);
  const length = readLe3(header, 4);
  const size = file.content.length;
  if (offset >= size || offset + length > size) return nativeAnswer(state, Sw.NxpBoundaryError);
  const end = length === 0 ? size : offset + length;
  let next = state;
  let content = file.content;
  if (file.fileNo === 2 && !authenticated) {
    // SUN applies to every unauthenticated read of the NDEF file.
    const mirrored = mirrorSun(config, state.sdmReadCtr);
    next = { ...state, sdmReadCtr: mirrored.counter };
    content = mirrored.view;
  }
  const plain = content.slice(offset, end);
  if (session === undefined) return nativeAnswer(next, Sw.NxpOk, plain);
  const secured = file.commMode === 'full' ? fullResponse(session, 0x00, plain) : macResponse(session, 0x00, plain);
  return nativeAnswer(next, Sw.NxpOk, file.commMode === 'plain' ? plain : secured);
}

function getFileSettings(config: Spark2Config, state: Spark2State, data: Uint8Array): ChipStep<Spark2State> {
  const authenticated = state.auth.phase === 'authenticated';
  if (data.length !== (authenticated ? 9 : 1)) return nativeAnswer(state, Sw.NxpLengthError);
  const session = authenticated
    ? macChecked(state, GET_FILE_SETTINGS, data.subarray(0, 1), data.subarray(1))
    : undefined;
  if (authenticated && session === undefined) return nativeAnswer(state, Sw.NxpIntegrityError);
  const file = state.level === 'app' ? config.files.get(data[0]!) : undefined;
  if (file === undefined) return nativeAnswer(state, Sw.NxpFileNotFound);
  const settings = fileSettings(config, file);
  return nativeAnswer(state, Sw.NxpOk, session === undefined ? settings : macResponse(session, 0x00, settings));
}

function le3(value: number): number[] {
  return [value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff];
}

/**
 * GetFileSettings data (NT4H2421Gx §10.7.2): FileType, FileOption, AccessRights, FileSize, and for the NDEF file
 * the SDM part: SDMOptions C1 (UID and counter mirrored as ASCII), SDMAccessRights (CtrRet F, MetaRead E = plain
 * mirror, FileRead = key 1), then the UID, counter, MAC-input and MAC offsets (MAC input = MAC offset: empty input).
 */
function fileSettings(config: Spark2Config, file: FileSpec): Uint8Array {
  const modeBits = file.commMode === 'full' ? 0x03 : file.commMode === 'mac' ? 0x01 : 0x00;
  const sdm = file.fileNo === 2;
  const out = [
    0x00,
    modeBits | (sdm ? 0x40 : 0x00),
    (file.readWrite << 4) | file.change,
    (file.read << 4) | file.write,
    ...le3(file.content.length),
  ];
  if (sdm) {
    const { uidOffset, ctrOffset, macOffset } = config.sun;
    out.push(0xc1, (NEVER << 4) | NEVER, (FREE << 4) | Spark2KeyNo.SdmFileRead);
    out.push(...le3(uidOffset), ...le3(ctrOffset), ...le3(macOffset), ...le3(macOffset));
  }
  return Uint8Array.from(out);
}
