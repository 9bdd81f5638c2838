import { ErrorCode, TaplineError } from '../../model/errors.js';
import { SDM_COUNTER_LENGTH, SDM_MAC_LENGTH, SDM_UID_LENGTH } from './session.js';

/**
 * Parsing of the SUN message forms into a {@link SunMessage}: NXP SDM URLs (AN12196 and sdm-backend parameter
 * names), VivoKey's `sun=UID-CTR-MAC`, a bare `UID-CTR-MAC`, and the VivoKey Apex NDEF `s=UID-CTR-CMAC`.
 *
 * @packageDocumentation
 */

/** The verification scheme of a SUN message. */
export type SunMode =
  /** UID and counter in clear, SDMMAC over them (`uid=&ctr=&cmac=`, VivoKey `sun=`, bare `UID-CTR-MAC`). */
  | 'sdm-plain'
  /** Encrypted PICCData and SDMMAC (`e=&c=`, `picc_data=&cmac=`), optionally encrypted file data (`enc=`). */
  | 'sdm-encrypted'
  /** VivoKey Apex NDEF applet: full AES-CMAC over salt, UID and counter (`s=`). */
  | 'apex-cmac';

/** An SDM message with the UID and SDMReadCtr mirrored in clear. */
export interface SdmPlainMessage {
  readonly mode: 'sdm-plain';
  /** 7 bytes. */
  readonly uid: Uint8Array;
  /** SDMReadCtr as a number (the URL prints it as big-endian hex). */
  readonly counter: number;
  /** SDMMAC, 8 bytes. */
  readonly mac: Uint8Array;
  /** SDMEncFileData, when the file mirrors encrypted file data. */
  readonly encFileData?: Uint8Array;
  /**
   * DynamicData, the bytes the MAC covers (SDMMACInputOffset up to the MAC); empty when absent. The parser takes
   * it from the URL text itself. A message built by hand with `encFileData` must set it, or the file data is not
   * authenticated: see `sdmFileDataMacInput`.
   */
  readonly macInput?: Uint8Array;
}

/** An SDM message with encrypted PICCData. */
export interface SdmEncryptedMessage {
  readonly mode: 'sdm-encrypted';
  /** Encrypted PICCData, 16 bytes (AES mode). */
  readonly piccData: Uint8Array;
  /** SDMMAC, 8 bytes. */
  readonly mac: Uint8Array;
  /** SDMEncFileData, when present. */
  readonly encFileData?: Uint8Array;
  /** DynamicData; see {@link SdmPlainMessage.macInput}. */
  readonly macInput?: Uint8Array;
}

/** A VivoKey Apex NDEF signature, `UID-CTR-CMAC`. */
export interface ApexCmacMessage {
  readonly mode: 'apex-cmac';
  /** The chip ID as printed (7 or 8 bytes). */
  readonly uid: Uint8Array;
  /** The 3-byte counter, printed big-endian. */
  readonly counter: number;
  /** The full 16-byte AES-CMAC. */
  readonly signature: Uint8Array;
}

/** Any parsed SUN message. */
export type SunMessage = SdmPlainMessage | SdmEncryptedMessage | ApexCmacMessage;

/** URL query parameter names, per role. The first name found is used; two names of one role present is an error. */
export interface SunParamNames {
  /** Encrypted PICCData. Default `e` (AN12196), `picc_data` (sdm-backend). */
  readonly piccData: readonly string[];
  /** SDMMAC. Default `c`, `cmac`. */
  readonly mac: readonly string[];
  /** SDMEncFileData. Default `enc`. */
  readonly encFileData: readonly string[];
  /** Plain UID mirror. Default `uid`. */
  readonly uid: readonly string[];
  /** Plain counter mirror. Default `ctr`. */
  readonly counter: readonly string[];
  /** VivoKey Spark 2 `UID-CTR-MAC`. Default `sun`. */
  readonly vivokey: readonly string[];
  /** VivoKey Apex NDEF `UID-CTR-CMAC`. Default `s`. */
  readonly apex: readonly string[];
}

/** The parameter names Tapline recognises unless told otherwise. */
export const DEFAULT_SUN_PARAM_NAMES: SunParamNames = Object.freeze({
  piccData: ['e', 'picc_data'],
  mac: ['c', 'cmac'],
  encFileData: ['enc'],
  uid: ['uid'],
  counter: ['ctr'],
  vivokey: ['sun'],
  apex: ['s'],
});

/** Options of {@link parseSunMessage}. */
export interface ParseSunOptions {
  /** Parameter names to use instead of the defaults, per role. */
  readonly paramNames?: Partial<SunParamNames>;
  /**
   * The parameter whose value starts the MAC input (where SDMMACInputOffset points): the MAC then covers the URL
   * text from the start of that value up to the MAC value, e.g. `"<ENC>&cmac="`. Default: the encrypted file data
   * parameter when there is one, otherwise nothing (empty MAC input, SDMMACInputOffset = SDMMACOffset).
   */
  readonly macInputFrom?: string;
}

interface QueryParam {
  readonly value: string;
  /** Offset of the value in the input text. */
  readonly at: number;
}

const TRIPLE = /^([0-9A-Fa-f]+)-([0-9A-Fa-f]+)-([0-9A-Fa-f]+)$/;

function invalid(message: string, hint?: string): TaplineError {
  return new TaplineError(ErrorCode.InvalidArgument, message, hint === undefined ? {} : { hint });
}

/** Nibble value per char code, -1 for anything that is not a hex digit. */
const NIBBLE = new Int8Array(128).fill(-1);
for (let i = 0; i < 10; i++) NIBBLE[0x30 + i] = i;
for (let i = 0; i < 6; i++) NIBBLE[0x41 + i] = NIBBLE[0x61 + i] = 10 + i;

/** Decodes even-length hex; undefined at the first character that is not a hex digit. */
function decodeHex(text: string): Uint8Array | undefined {
  // Hand-rolled: SUN parsing is on the verification hot path, and this is one pass with one allocation.
  const out = new Uint8Array(text.length >>> 1);
  for (let i = 0; i < out.length; i++) {
    const hi = text.charCodeAt(2 * i);
    const lo = text.charCodeAt(2 * i + 1);
    const h = hi < 128 ? NIBBLE[hi]! : -1;
    const l = lo < 128 ? NIBBLE[lo]! : -1;
    if (h < 0 || l < 0) return undefined;
    out[i] = (h << 4) | l;
  }
  return out;
}

/** Decodes `text` as exactly `bytes` bytes of hex (any multiple of 16 when `bytes` is 'blocks'). */
function hexField(text: string, bytes: number | 'blocks', what: string): Uint8Array {
  const decoded = text.length % 2 === 0 ? decodeHex(text) : undefined;
  if (decoded === undefined && firstNonHex(text) !== '') {
    throw invalid(`${what} must be hex digits only; found "${firstNonHex(text)}".`);
  }
  if (bytes === 'blocks') {
    if (text.length === 0 || text.length % 32 !== 0) {
      throw invalid(`${what} must be a non-empty multiple of 32 hex digits (16-byte blocks); got ${text.length}.`);
    }
  } else if (text.length !== bytes * 2) {
    throw invalid(`${what} must be ${bytes * 2} hex digits (${bytes} bytes); got ${text.length}.`);
  }
  return decoded!;
}

function firstNonHex(text: string): string {
  for (const ch of text) if (!/[0-9A-Fa-f]/.test(ch)) return ch;
  return '';
}

function counterField(text: string, what: string): number {
  const bytes = hexField(text, SDM_COUNTER_LENGTH, what);
  return (bytes[0]! << 16) | (bytes[1]! << 8) | bytes[2]!;
}

/**
 * Parses `UID-CTR-MAC` (VivoKey `sun=`, or bare): 7-byte UID, 3-byte counter as big-endian hex, and either an
 * 8-byte SDMMAC (SDM plain mirror) or a 16-byte CMAC with a 7- or 8-byte UID (Apex NDEF).
 */
function parseTriple(text: string, what: string, expect: 'sdm' | 'apex' | 'either'): SdmPlainMessage | ApexCmacMessage {
  const match = TRIPLE.exec(text);
  if (!match) {
    throw invalid(
      `${what} must be UID-CTR-MAC in hex, three fields separated by "-"; got "${text.slice(0, 80)}".`,
      'Example: 042468222F5C80-00003C-AE4F60A1AF728AB4 (7-byte UID, 3-byte counter, 8-byte MAC).',
    );
  }
  const [, uidHex, ctrHex, macHex] = match as unknown as [string, string, string, string];
  const apex = expect === 'apex' || (expect === 'either' && macHex.length === 32);
  if (apex) {
    if (uidHex.length !== 14 && uidHex.length !== 16) {
      throw invalid(`The UID in ${what} must be 14 or 16 hex digits (7 or 8 bytes); got ${uidHex.length}.`);
    }
    return {
      mode: 'apex-cmac',
      uid: hexField(uidHex, uidHex.length / 2, `The UID in ${what}`),
      counter: counterField(ctrHex, `The counter in ${what}`),
      signature: hexField(macHex, 16, `The CMAC in ${what}`),
    };
  }
  if (macHex.length !== SDM_MAC_LENGTH * 2) {
    throw invalid(
      `The MAC in ${what} must be 16 hex digits (an 8-byte SDMMAC)` +
        (expect === 'either' ? ' or 32 (a 16-byte Apex CMAC)' : '') +
        `; got ${macHex.length}.`,
    );
  }
  return {
    mode: 'sdm-plain',
    uid: hexField(uidHex, SDM_UID_LENGTH, `The UID in ${what}`),
    counter: counterField(ctrHex, `The counter in ${what}`),
    mac: hexField(macHex, SDM_MAC_LENGTH, `The MAC in ${what}`),
  };
}

/** Splits the query of `input` into parameters with their offsets; undefined when `input` has no query. */
function queryParams(input: string): Map<string, QueryParam> | undefined {
  let start: number;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(input)) {
    const q = input.indexOf('?');
    if (q < 0) return undefined;
    start = q + 1;
  } else if (input.includes('=')) {
    start = input.startsWith('?') ? 1 : 0;
  } else {
    return undefined;
  }
  const hash = input.indexOf('#', start);
  const end = hash < 0 ? input.length : hash;
  const params = new Map<string, QueryParam>();
  let at = start;
  while (at <= end) {
    let amp = input.indexOf('&', at);
    if (amp < 0 || amp > end) amp = end;
    const pair = input.slice(at, amp);
    if (pair !== '') {
      const eq = pair.indexOf('=');
      const name = eq < 0 ? pair : pair.slice(0, eq);
      if (params.has(name)) throw invalid(`The URL has the parameter "${name}" twice.`);
      params.set(name, { value: eq < 0 ? '' : pair.slice(eq + 1), at: at + (eq < 0 ? pair.length : eq + 1) });
    }
    at = amp + 1;
  }
  return params;
}

/** The one parameter of a role that is present, or undefined; two present is ambiguous. */
function pick(
  params: Map<string, QueryParam>,
  names: readonly string[],
): { name: string; param: QueryParam } | undefined {
  let found: { name: string; param: QueryParam } | undefined;
  for (const name of names) {
    const param = params.get(name);
    if (param === undefined) continue;
    if (found) throw invalid(`The URL has both "${found.name}=" and "${name}="; keep one.`);
    found = { name, param };
  }
  return found;
}

/**
 * Parses a SUN message from a full URL, a query string, or a bare `UID-CTR-MAC`.
 *
 * Recognised (parameter names configurable, see {@link SunParamNames}):
 * - `?e=<PICCData>&c=<MAC>` and `?picc_data=…&cmac=…`, optionally with `&enc=<file data>` → `sdm-encrypted`;
 * - `?uid=<UID>&ctr=<CTR>&cmac=<MAC>` (or `c=`), optionally with `enc=` → `sdm-plain`;
 * - `?sun=UID-CTR-MAC` (VivoKey Spark 2) and a bare `UID-CTR-MAC` with an 8-byte MAC → `sdm-plain`;
 * - `?s=UID-CTR-CMAC` (VivoKey Apex NDEF) and a bare triple with a 16-byte CMAC → `apex-cmac`.
 *
 * Counters are read as printed: big-endian hex text (`00003C` is 60). The SDM session vectors then use them
 * little-endian, as the chip stores them (sdm-backend does the same for `ctr=`).
 *
 * VivoKey's `sun=UID-CTR-MAC` (Spark 2) is taken to follow the NXP plain-mirror rule: SDMMAC over an empty MAC
 * input, session key from SV2 with that UID and counter. That is an assumption: no keyed VivoKey vector is public,
 * and a Spark 2 reports as NTAG 413 DNA, for which the rule is unverified.
 *
 * @throws TaplineError `INVALID_ARGUMENT` saying what is wrong: not a URL or triple, missing or duplicate
 *   parameters, bad hex, wrong lengths, LRP-mode PICCData.
 */
export function parseSunMessage(input: string, options: ParseSunOptions = {}): SunMessage {
  const text = input.trim();
  const names: SunParamNames =
    options.paramNames === undefined ? DEFAULT_SUN_PARAM_NAMES : { ...DEFAULT_SUN_PARAM_NAMES, ...options.paramNames };
  if (TRIPLE.test(text)) {
    if (options.macInputFrom !== undefined) {
      throw invalid('A MAC input start (macInputFrom) applies to URLs only; a bare UID-CTR-MAC has none.');
    }
    return parseTriple(text, 'the SUN value', 'either');
  }
  const params = queryParams(text);
  if (!params) {
    throw invalid(
      'Expected a SUN URL (with ?e=…&c=…, ?picc_data=…&cmac=…, ?uid=…&ctr=…&cmac=…, ?sun=… or ?s=…) or a bare UID-CTR-MAC.',
      'Quote the URL in the shell: it contains "&" and "?".',
    );
  }

  const vivokey = pick(params, names.vivokey);
  const apex = pick(params, names.apex);
  const piccData = pick(params, names.piccData);
  const uid = pick(params, names.uid);
  const forms = [vivokey, apex, piccData, uid].filter((f) => f !== undefined);
  if (forms.length > 1) {
    throw invalid(
      `The URL mixes SUN forms (${forms.map((f) => `"${f.name}="`).join(', ')}); expected exactly one of them.`,
    );
  }
  if (vivokey || apex) {
    if (options.macInputFrom !== undefined) {
      throw invalid(`A MAC input start (macInputFrom) does not apply to the "${(vivokey ?? apex)!.name}=" form.`);
    }
    return vivokey
      ? parseTriple(vivokey.param.value, `"${vivokey.name}="`, 'sdm')
      : parseTriple(apex!.param.value, `"${apex!.name}="`, 'apex');
  }
  if (!piccData && !uid) {
    const seen = [...params.keys()].map((n) => `"${n}"`).join(', ') || 'none';
    throw invalid(
      `The URL has no SUN parameters (found: ${seen}).`,
      'Expected e=&c=, picc_data=&cmac=, uid=&ctr=&cmac=, sun= or s=; other names can be configured.',
    );
  }

  const mac = pick(params, names.mac);
  if (!mac) {
    throw invalid(
      `The URL has "${(piccData ?? uid)!.name}=" but no MAC (${names.mac.map((n) => `"${n}="`).join(' or ')}).`,
    );
  }
  const macBytes = hexField(mac.param.value, SDM_MAC_LENGTH, `"${mac.name}=" (the SDMMAC)`);
  const enc = pick(params, names.encFileData);
  const encFileData = enc ? hexField(enc.param.value, 'blocks', `"${enc.name}=" (the encrypted file data)`) : undefined;
  const macInput = macInputText(text, params, mac, options.macInputFrom ?? enc?.name);
  const extra = { ...(encFileData ? { encFileData } : {}), ...(macInput ? { macInput } : {}) };

  if (piccData) {
    if (piccData.param.value.length === 48) {
      throw invalid(
        `"${piccData.name}=" has 24 bytes of PICCData, which is LRP mode; Tapline verifies AES-mode SUN only.`,
      );
    }
    return {
      mode: 'sdm-encrypted',
      piccData: hexField(piccData.param.value, 16, `"${piccData.name}=" (the encrypted PICCData)`),
      mac: macBytes,
      ...extra,
    };
  }
  const counter = pick(params, names.counter);
  if (!counter) {
    throw invalid(`The URL has "${uid!.name}=" but no counter (${names.counter.map((n) => `"${n}="`).join(' or ')}).`);
  }
  return {
    mode: 'sdm-plain',
    uid: hexField(uid!.param.value, SDM_UID_LENGTH, `"${uid!.name}=" (the UID)`),
    counter: counterField(counter.param.value, `"${counter.name}=" (the read counter)`),
    mac: macBytes,
    ...extra,
  };
}

/** The URL text from the start of `from`'s value up to the MAC value, as bytes; undefined when `from` is unset. */
function macInputText(
  text: string,
  params: Map<string, QueryParam>,
  mac: { name: string; param: QueryParam },
  from: string | undefined,
): Uint8Array | undefined {
  if (from === undefined) return undefined;
  const start = params.get(from);
  if (!start) throw invalid(`The MAC input is to start at "${from}=", but the URL has no such parameter.`);
  if (start.at > mac.param.at) {
    throw invalid(`The MAC input is to start at "${from}=", which comes after the MAC "${mac.name}=".`);
  }
  const slice = text.slice(start.at, mac.param.at);
  // The chip MACs the ASCII it wrote; anything else (percent-decoding, Unicode) means the URL was altered.
  if (!/^[\x20-\x7e]*$/.test(slice)) throw invalid('The MAC input contains characters outside printable ASCII.');
  return Uint8Array.from(Buffer.from(slice, 'latin1'));
}
