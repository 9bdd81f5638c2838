import { Args, Flags } from '@oclif/core';
import type { SunFailureReason, SunMode, SunResult } from '@tapline/core';
import { ExitCode, TaplineCommand, type CoreModule } from '../../base-command.js';

/** `tapline sun verify --json`. Byte fields are lower-case hex. */
export interface SunVerifyJson {
  readonly valid: boolean;
  /** The UID the message states (authenticated only when `valid`); null when PICCData did not decrypt. */
  readonly uid: string | null;
  /** The read counter the message states; null when PICCData did not decrypt. */
  readonly counter: number | null;
  readonly mode: SunMode;
  /** Decrypted SDM file data, when the message carries it and verified. */
  readonly fileData?: string;
  /** Why it is not valid. */
  readonly reason?: SunFailureReason;
  /** The reason in a sentence. */
  readonly message?: string;
}

/**
 * `tapline sun verify`: checks a SUN message (the URL an NTAG 424/413 DNA, a VivoKey Spark 2 or an Apex prints on
 * each tap) against its keys, offline. Exit 0 when authentic, 1 when not, 2 when the input is malformed. Keys are
 * never printed, also not in errors.
 */
export default class SunVerify extends TaplineCommand<typeof SunVerify> {
  static override summary = 'Verify a SUN/SDM message (tap URL) offline with its keys.';

  static override description =
    'Checks the MAC of a Secure Unique NFC message and prints the UID and read counter it vouches for. ' +
    'MESSAGE is the whole URL (quote it: it contains "?" and "&") or a bare UID-CTR-MAC.\n\n' +
    'What --key is, per form:\n' +
    '- e=…&c=… or picc_data=…&cmac=… (encrypted PICCData): K_SDMFileRead, the SDMMAC key. --meta-key ' +
    '(K_SDMMetaRead) decrypts the PICCData; it defaults to --key.\n' +
    '- uid=…&ctr=…&cmac=… (plain mirror): K_SDMFileRead.\n' +
    '- sun=UID-CTR-MAC, or a bare UID-CTR-MAC with an 8-byte MAC (VivoKey Spark 2): K_SDMFileRead. The counter ' +
    'is read as printed (big-endian hex) and used little-endian in the session vector, as the chip stores it. ' +
    "The plain-mirror MAC rule is assumed; it is unverified for the Spark 2's NTAG 413 DNA.\n" +
    '- s=UID-CTR-CMAC, or a bare triple with a 16-byte CMAC (VivoKey Apex NDEF): the applet CMAC key; --salt is ' +
    'required.\n\n' +
    'Encrypted file data (enc=…): its session key derives from K_SDMFileRead too, so --file-key defaults to --key; ' +
    'set it only for a backend that uses another key. The MAC then covers the text from the enc= value to the MAC ' +
    'value ("<ENC>&cmac="); --mac-input-from names another start parameter (where SDMMACInputOffset points).\n\n' +
    'Keys can come from the environment instead of the command line, which shells keep in their history: ' +
    'TAPLINE_SUN_KEY, TAPLINE_SUN_META_KEY, TAPLINE_SUN_FILE_KEY. They are never printed, also not in errors.\n\n' +
    'Exit status: 0 valid, 1 not valid (wrong key, altered or forged), 2 malformed input.';

  static override examples = [
    {
      command:
        '<%= config.bin %> <%= command.id %> "https://ntag.nxp.com/424?e=EF963FF7828658A599F3041510671E88&c=94EED9EE65337086" --key 00000000000000000000000000000000',
      description: 'AN12196 example: encrypted PICCData, one key for PICCData and MAC.',
    },
    {
      command:
        '<%= config.bin %> <%= command.id %> "https://vivokey.co/…/?sun=042468222F5C80-00003C-AE4F60A1AF728AB4" --json',
      description: 'A VivoKey Spark 2 URL, key from TAPLINE_SUN_KEY, result as JSON.',
    },
    {
      command:
        '<%= config.bin %> <%= command.id %> 041E3C8A2D6B80-000006-4B00064004B0B3D3 --key 00000000000000000000000000000000',
      description: 'A bare UID-CTR-MAC (plain mirror).',
    },
    {
      command:
        '<%= config.bin %> <%= command.id %> "https://example.com/?s=FF0A01128731FBB6-000005-E92A…AD19" --key HEX --salt HEX',
      description: 'An Apex NDEF signature.',
    },
  ];

  static override args = {
    message: Args.string({
      description: 'The SUN URL (quoted) or UID-CTR-MAC.',
      required: true,
    }),
  };

  static override flags = {
    key: Flags.string({
      summary: 'K_SDMFileRead (SDM forms) or the Apex CMAC key (s= form), 32 hex digits.',
      helpValue: 'HEX',
      env: 'TAPLINE_SUN_KEY',
      required: true,
    }),
    'meta-key': Flags.string({
      summary: 'K_SDMMetaRead, which decrypts e=/picc_data= (default: --key).',
      helpValue: 'HEX',
      env: 'TAPLINE_SUN_META_KEY',
    }),
    'file-key': Flags.string({
      summary: 'The key the file-data session key derives from, for enc= (default: --key, as on the chip).',
      helpValue: 'HEX',
      env: 'TAPLINE_SUN_FILE_KEY',
    }),
    salt: Flags.string({
      summary: 'The Apex NDEF CMAC signature salt (needed for the s= form).',
      helpValue: 'HEX',
    }),
    'mac-input-from': Flags.string({
      summary: 'The URL parameter whose value starts the MAC input (SDMMACInputOffset).',
      helpValue: 'PARAM',
    }),
  };

  async run(): Promise<SunVerifyJson> {
    const core: CoreModule = await import('@tapline/core');
    // The base class keeps only the flags of its parse; the argument needs this command's own.
    const { args } = await this.parse(SunVerify);
    const { flags } = this;
    const metaKey = secretHex(core, flags['meta-key'], '--meta-key', 16);
    const fileKey = secretHex(core, flags['file-key'], '--file-key', 16);
    const keys = {
      key: secretHex(core, flags.key, '--key', 16)!,
      ...(metaKey ? { metaKey } : {}),
      ...(fileKey ? { fileKey } : {}),
      ...(flags.salt === undefined ? {} : { salt: secretHex(core, flags.salt, '--salt')! }),
    };
    const options = flags['mac-input-from'] === undefined ? {} : { macInputFrom: flags['mac-input-from'] };
    const result = core.verifySun(args.message, keys, options);

    const json = sunJson(core, result);
    this.log(sunLine(json));
    if (!json.valid) process.exitCode = ExitCode.Failure;
    return json;
  }
}

/**
 * Parses secret hex (a key, a salt) without ever quoting it: errors give the flag and the length only.
 * Spaces, colons and a `0x` prefix are tolerated, as in core's `fromHex`.
 */
function secretHex(core: CoreModule, value: string | undefined, flag: string, bytes?: number): Uint8Array | undefined {
  if (value === undefined) return undefined;
  const clean = value.trim().replace(/^0x/i, '').replace(/[\s:]/g, '');
  const fail = (what: string): never => {
    throw new core.TaplineError(core.ErrorCode.InvalidArgument, `${flag} ${what}.`, {
      hint: 'Give the key as hex digits, for example 32 of them for an AES-128 key.',
    });
  };
  if (!/^[0-9a-fA-F]*$/.test(clean)) fail('must be hex digits only');
  if (clean.length === 0 || clean.length % 2 !== 0)
    fail(`must be an even, non-zero number of hex digits; got ${clean.length}`);
  if (bytes !== undefined && clean.length !== bytes * 2) {
    fail(`must be ${bytes * 2} hex digits (${bytes} bytes); got ${clean.length}`);
  }
  return Uint8Array.from(Buffer.from(clean, 'hex'));
}

function sunJson(core: CoreModule, result: SunResult): SunVerifyJson {
  const known = result.uid.length > 0;
  return {
    valid: result.valid,
    uid: known ? core.toHex(result.uid) : null,
    counter: known && result.counter >= 0 ? result.counter : null,
    mode: result.mode,
    ...(result.fileData ? { fileData: core.toHex(result.fileData) } : {}),
    ...(result.reason ? { reason: result.reason, message: core.SUN_FAILURE_MESSAGES[result.reason] } : {}),
  };
}

/** One line: `VALID  uid … counter … (mode)`, or `INVALID (reason) …: sentence`. */
function sunLine(json: SunVerifyJson): string {
  const facts = [
    json.uid === null ? undefined : `uid ${json.uid.toUpperCase()}`,
    json.counter === null ? undefined : `counter ${json.counter}`,
    `(${json.mode})`,
    json.fileData === undefined ? undefined : `fileData ${json.fileData.toUpperCase()}`,
  ].filter((f) => f !== undefined);
  return json.valid
    ? `VALID  ${facts.join('  ')}`
    : `INVALID [${json.reason ?? 'unknown'}]  ${facts.join('  ')}  ${json.message ?? ''}`.trimEnd();
}
