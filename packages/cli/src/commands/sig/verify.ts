import { Flags } from '@oclif/core';
import type { OriginalityKeyId } from '@tapline/core';
import { ExitCode, TaplineCommand, type CoreModule } from '../../base-command.js';

/** `tapline sig verify --json`. */
export interface SigVerifyJson {
  readonly valid: boolean;
  /** The originality key that verified the signature; null when none did. */
  readonly key: OriginalityKeyId | null;
}

// Kept here rather than read from core so that `--help` stays free of @tapline/core; the test suite checks the
// list against core's ORIGINALITY_KEY_IDS.
const CHIPS = [
  'ntag424dna',
  'ntag413dna',
  'icode-dna',
  'vivokey-spark1',
] as const satisfies readonly OriginalityKeyId[];

/**
 * `tapline sig verify`: checks a chip's originality signature (READ_SIG / READ SIGNATURE) against the public keys
 * of NXP and VivoKey, offline. Exit 0 when a key verifies it, 1 when none does, 2 when the input is malformed.
 */
export default class SigVerify extends TaplineCommand<typeof SigVerify> {
  static override summary = 'Verify an originality signature (NTAG 424/413 DNA, ICODE DNA, VivoKey Spark 1).';

  static override description =
    'Checks the ECDSA signature a chip returns for its UID against the known public keys, or only the key of ' +
    '--chip: NTAG 424 DNA and NTAG 413 DNA (secp224r1, raw 7-byte UID, 56-byte signature), ICODE DNA ' +
    '(secp128r1, raw UID LSB-first, 32 bytes) and VivoKey Spark 1 (secp128r1, SHA-256 of the UID, 32 bytes).\n\n' +
    'Write the UID MSB-first as Tapline prints it (E0 04 … for ISO 15693); an ISO 15693 UID written LSB-first ' +
    '(ending in E0) is recognised and turned round. The signature is r ‖ s, big-endian.\n\n' +
    'A valid signature shows the UID was signed by the chip maker; it can be copied, so it does not prove the ' +
    'chip is not a clone.\n\n' +
    'Exit status: 0 valid, 1 no key verifies it, 2 malformed input.';

  static override examples = [
    {
      command:
        '<%= config.bin %> <%= command.id %> --uid 0463474AA26A80 --sig 27E9A50E6CA4BA9037C02F7D20A80D0284D0C1D83C67F5A5AC1D8A4EF86C9508417E4E9C6F85AA7920F0ABDED984CAF20467D66EA54BBF08',
      description: 'An NTAG 424 DNA signature, trying every known key.',
    },
    {
      command:
        '<%= config.bin %> <%= command.id %> --uid E0040118009C870C --sig 4B4E03E1211952EF6A5F9D84AB218CD4D7549D0CDF8CA8779F9AD16C9A9CBF3B --chip vivokey-spark1 --json',
      description: 'A VivoKey Spark 1, against its key only.',
    },
  ];

  static override flags = {
    uid: Flags.string({ summary: 'The UID, hex, MSB-first.', helpValue: 'HEX', required: true }),
    sig: Flags.string({ summary: 'The originality signature r ‖ s, hex.', helpValue: 'HEX', required: true }),
    chip: Flags.string({
      summary: 'Check against this chip’s key only.',
      options: [...CHIPS],
    }),
  };

  async run(): Promise<SigVerifyJson> {
    const core: CoreModule = await import('@tapline/core');
    const { flags } = this;
    const uid = hexFlag(core, flags.uid, '--uid');
    const signature = hexFlag(core, flags.sig, '--sig');
    const chip = flags.chip as OriginalityKeyId | undefined;
    const result = core.verifyOriginalitySignature({ uid, signature, ...(chip ? { chip } : {}) });
    const json: SigVerifyJson = { valid: result.valid, key: result.key ?? null };
    const description = core.ORIGINALITY_KEYS.find((k) => k.id === json.key)?.description;
    this.log(
      json.valid
        ? `VALID  originality signature of ${description ?? json.key} (key ${json.key})`
        : `INVALID  no ${chip ? `${chip} ` : 'known '}originality key verifies this signature for this UID`,
    );
    if (!json.valid) process.exitCode = ExitCode.Failure;
    return json;
  }
}

/** Hex of public data (UID, signature), with the flag named in the error; spaces, colons and `0x` are fine. */
function hexFlag(core: CoreModule, value: string, flag: string): Uint8Array {
  const clean = value.trim().replace(/^0x/i, '').replace(/[\s:]/g, '');
  if (clean === '' || clean.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(clean)) {
    throw new core.TaplineError(
      core.ErrorCode.InvalidArgument,
      `${flag} must be an even number of hex digits; got "${value.slice(0, 140)}".`,
      { hint: 'Write bytes as hex pairs, for example 04A1B2C3D4E5F6.' },
    );
  }
  return Uint8Array.from(Buffer.from(clean, 'hex'));
}
