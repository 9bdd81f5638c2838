import { Flags, ux } from '@oclif/core';
// Type-only: the runtime modules load inside run(), so that `--help` stays fast (see base-command.ts).
import type {
  AuthenticityClaims,
  OnceStore,
  PlatformClient,
  RelayStep,
  VerifiableChip,
  VerificationResult,
  VerificationTimings,
} from '@tapline/core';
import type { EnrollableVirtualChip } from '@tapline/test-fixtures';
import { TaplineCommand, type CoreModule, type Session } from '../base-command.js';

/**
 * `tapline verify --json` on success. Exactly these keys, in this order; byte fields are lower-case hex.
 *
 * `uid` is the id the platform knows the chip by (Spark 2: UID; Spark 1: UID MSB first; Apex: Verify chip id);
 * `sub` the token's per-developer chip identifier; `token` the platform's authenticity token (JWT), `claims` its
 * verified payload; `timings` in milliseconds ({@link VerificationTimings}); `apdus` the frames exchanged with the
 * chip after it was detected.
 */
export interface VerifyJson {
  readonly result: 'success';
  readonly chip: VerifiableChip;
  readonly uid: string;
  readonly sub: string;
  readonly token: string;
  readonly claims: AuthenticityClaims;
  readonly timings: VerificationTimings;
  readonly apdus: number;
}

/** The relay steps `--sim-remove-at` accepts. */
const REMOVABLE_AT: readonly RelayStep[] = [
  'identify',
  'select',
  'chip-challenge',
  'platform-challenge',
  'chip-answer',
  'chip-released',
  'session',
];

const DEFAULT_PLATFORM_URL = 'https://auth.vivokey.com';
/** The developer account the reference platform plays under --sim, and the secret its subs derive from. */
const SIM_DEV_ID = '00000000-0000-4000-8000-7461706c696e';
const SIM_SUB_SALT = 'tapline --sim reference platform';
const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

/**
 * `tapline verify`: waits for a tap, identifies the chip, relays it to the VivoKey platform as VivoKey's own clients
 * do, verifies the platform's authenticity token, and prints the result. With `--sim` everything runs in this
 * process: the simulated reader, a virtual chip and Tapline's reference platform.
 *
 * Exit status: 0 genuine; 1 the verification failed (TAG_LOST, PLATFORM_UNAVAILABLE, PLATFORM_REJECTED,
 * TOKEN_INVALID, ALREADY_USED, TIMEOUT, …); 2 usage (no API key, a malformed --platform, an unreadable
 * --once-per-chip file).
 */
export default class Verify extends TaplineCommand<typeof Verify> {
  static override summary = 'Tap a VivoKey implant and have the VivoKey platform confirm that it is genuine.';

  static override description =
    'Waits for a tap, identifies the chip (Spark 1, Spark 2 or Apex), and relays its challenge/response between ' +
    'the reader and the VivoKey platform exactly as VivoKey’s own apps do. The platform answers with a signed ' +
    'authenticity token, which is verified against its published keys. The result says "a genuine VivoKey chip" ' +
    'and gives a per-developer chip id (sub); it never says whose chip it is.\n\n' +
    'Keep the implant on the reader until Tapline says it is done: the chip must stay in the field while the ' +
    'platform prepares its challenge.\n\n' +
    'The API key comes from --api-key, TAPLINE_API_KEY or "apiKey" in the config file; the platform from ' +
    '--platform, TAPLINE_PLATFORM_URL or "platformUrl" in the config file. The key is never printed.\n\n' +
    'With --sim, a simulated reader, a virtual chip (--sim-tag) and Tapline’s reference platform run in this ' +
    'process (no API key needed); an explicit --platform replaces the reference platform.\n\n' +
    '--once-per-chip FILE remembers every verified chip (its sub and the time) and refuses the same chip a second ' +
    'time with ALREADY_USED: one item per implant for a dispenser. The record is on disk before success is ' +
    'reported; delete a chip’s line from FILE to allow it again.\n\n' +
    '--timeout covers waiting for the tap; each exchange with the chip and each platform call has its own timeout.\n\n' +
    'Exit status: 0 genuine; 1 the verification failed (TAG_LOST, PLATFORM_UNAVAILABLE, PLATFORM_REJECTED, ' +
    'TOKEN_INVALID, ALREADY_USED, TIMEOUT, …); 2 usage (no API key, a malformed flag).';

  static override examples = [
    { command: '<%= config.bin %> <%= command.id %> --sim', description: 'Try it without hardware or an API key.' },
    {
      command: '<%= config.bin %> <%= command.id %> --sim --sim-tag spark1 --json',
      description: 'A simulated Spark 1, result as JSON.',
    },
    {
      command: 'TAPLINE_API_KEY=… <%= config.bin %> <%= command.id %> --once-per-chip ./dispensed.jsonl',
      description: 'A dispenser: each implant once, against the real platform.',
    },
  ];

  static override flags = {
    'api-key': Flags.string({
      summary: 'Your VivoKey Auth API key (default: TAPLINE_API_KEY, then "apiKey" in the config file).',
      helpValue: 'KEY',
      env: 'TAPLINE_API_KEY',
    }),
    platform: Flags.string({
      summary: `The VivoKey Auth API (default: TAPLINE_PLATFORM_URL, then "platformUrl" in the config file, then ${DEFAULT_PLATFORM_URL}).`,
      helpValue: 'URL',
    }),
    'once-per-chip': Flags.string({
      summary: 'Remember each verified chip in FILE and refuse it a second time (ALREADY_USED).',
      helpValue: 'FILE',
    }),
    cld: Flags.string({
      summary: 'Client data for the platform to sign into the token (its `cld` claim), at most 2048 characters.',
      helpValue: 'TEXT',
    }),
    // For tests: with --sim, take the virtual chip off the reader as the relay reaches this step.
    'sim-remove-at': Flags.string({
      hidden: true,
      options: [...REMOVABLE_AT],
      env: 'TAPLINE_SIM_REMOVE_AT',
    }),
  };

  protected static override defaultTimeoutMs = 10_000;

  async run(): Promise<VerifyJson> {
    const session = await this.compose();
    const { core } = session;
    // Before anyone taps: the platform would refuse it only after the chip's answer was spent.
    core.checkCld(this.flags.cld);
    const store =
      this.flags['once-per-chip'] === undefined ? undefined : await openStore(core, this.flags['once-per-chip']);
    const platform = await this.platformClient(session);

    let attached = 0;
    session.hold((event) => {
      if (event.type === 'attached') attached += 1;
      this.warnFromEvent(event);
    });
    const human = !this.jsonEnabled();
    if (human) ux.action.start('Waiting for a tag');
    const tag = await this.waitForTap(session, () => attached);
    if (human) {
      ux.action.stop(`found on ${tag.readerName}`);
      ux.action.start('Reading the chip (keep it on the reader)');
    }

    const removeAt = this.flags['sim-remove-at'];
    const result = await core.verifyChip(tag, platform, {
      signal: session.signal,
      apduTimeoutMs: session.config.exchangeTimeoutMs,
      ...(this.flags.cld === undefined ? {} : { cld: this.flags.cld }),
      onStep: (step) => {
        if (removeAt === step) session.simulation?.field.remove();
        if (human && step === 'chip-released') {
          ux.action.stop('done, it may leave the reader now');
          ux.action.start('Asking the platform');
        }
      },
    });
    // Written before anything says "success": a crash after this line at worst refuses the chip's next visit.
    if (store) await store.record(result.sub);
    if (human) ux.action.stop('genuine');

    const json = verifyJson(result);
    for (const line of verifyLines(core, json, store?.file)) this.log(line);
    await session.release();
    return json;
  }

  /** The platform to talk to: the reference platform with `--sim` (unless --platform), else the Auth API. */
  private async platformClient(session: Session): Promise<PlatformClient> {
    const { core, logger } = session;
    const flags = this.flags;
    if (session.simulation && flags.platform === undefined) {
      const fixtures = await import('@tapline/test-fixtures');
      const reference = await fixtures.startReferencePlatform({
        host: '127.0.0.1',
        chips: fixtures.createChipRegistry(),
        // Fixed, so that a chip keeps its sub from one run to the next, as with the real platform: --once-per-chip
        // must recognise it again.
        devId: SIM_DEV_ID,
        subSalt: SIM_SUB_SALT,
      });
      this.onCleanup(() => reference.close());
      const chip = session.simulation.chip;
      if (isEnrollable(chip) && ['spark1', 'spark2', 'spark2-413', 'apex'].includes(flags['sim-tag'])) {
        reference.chips.enrollVirtualChip(chip);
      }
      return core.createVivoKeyAuthClient({
        baseUrl: reference.url,
        apiKey: reference.apiKey,
        jwksUrl: reference.jwksUrl,
        logger,
      });
    }

    const apiKey = flags['api-key'] || session.config.apiKey;
    if (!apiKey) {
      throw new core.TaplineError(core.ErrorCode.InvalidArgument, '`tapline verify` needs a VivoKey API key.', {
        hint: `Pass --api-key KEY, set TAPLINE_API_KEY, or put "apiKey" in ${core.configDirectory()}/config.json (a key is issued per developer email at vivokey.com/api). To try it without one: ${this.config.bin} verify --sim.`,
      });
    }
    const url = flags.platform || session.config.platformUrl || DEFAULT_PLATFORM_URL;
    return core.createVivoKeyAuthClient({ baseUrl: checkPlatformUrl(core, url), apiKey, logger });
  }
}

/** Opens the store and reads it once, so that an unusable file fails before anyone taps. */
async function openStore(core: CoreModule, file: string): Promise<OnceStore> {
  const store = new core.OnceStore(file);
  await store.list();
  return store;
}

/** The platform URL, refusing plain http anywhere but this machine: the API key must not cross a network in clear. */
function checkPlatformUrl(core: CoreModule, text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch (error) {
    throw new core.TaplineError(core.ErrorCode.InvalidArgument, `--platform "${text}" is not a URL.`, {
      cause: error,
      hint: `Give the Auth API's base URL, for example ${DEFAULT_PLATFORM_URL}.`,
    });
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && LOOPBACK_HOSTS.has(url.hostname))) {
    throw new core.TaplineError(
      core.ErrorCode.InvalidArgument,
      `--platform must use https:// (plain http:// only for this machine, 127.0.0.1), not ${url.protocol}//${url.host}.`,
      { hint: `The API key travels with every call; use ${DEFAULT_PLATFORM_URL} or another https:// address.` },
    );
  }
  return url;
}

function isEnrollable(chip: unknown): chip is EnrollableVirtualChip<unknown> {
  return typeof chip === 'object' && chip !== null && 'model' in chip && 'info' in chip;
}

/** The JSON form, with the documented key order. */
function verifyJson(result: VerificationResult): VerifyJson {
  return {
    result: result.result,
    chip: result.chip,
    uid: result.uid,
    sub: result.sub,
    token: result.token,
    claims: result.claims,
    timings: result.timings,
    apdus: result.apdus,
  };
}

/** The human form: one headline, then the timings (and the store, with --once-per-chip). The token is not printed. */
function verifyLines(core: CoreModule, json: VerifyJson, storeFile: string | undefined): string[] {
  const ms = (n: number): string => `${n.toFixed(1)} ms`;
  const t = json.timings;
  const short = json.sub.length > 12 ? `${json.sub.slice(0, 4)}…${json.sub.slice(-4)}` : json.sub;
  const lines = [
    `Genuine ${core.VERIFIABLE_CHIP_NAMES[json.chip]} — chip ${short} (verified by the platform)`,
    `  in field ${ms(t.inFieldMs)} (${json.apdus} ${json.apdus === 1 ? 'exchange' : 'exchanges'}, ${ms(t.networkInFieldMs)} of it waiting for the platform) · network ${ms(t.networkMs)} · tap to result ${ms(t.tapToResultMs)}`,
    `  sub ${json.sub}`,
  ];
  if (storeFile !== undefined) lines.push(`  recorded in ${storeFile}; this chip will be refused next time`);
  return lines;
}
