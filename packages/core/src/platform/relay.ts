/**
 * The VivoKey relay: Tapline as the desktop reader between a VivoKey implant and the VivoKey platform, running the
 * dialogue VivoKey's own clients run (protocols.md §1.1, §2) and ending with a verified authenticity token
 * ({@link verifyChip}), or with the answer to a relying party's scan request ({@link answerScanRequest}). Both run the
 * same chip dialogue; only where the challenge comes from and where the chip's answer goes differ.
 *
 * The reader never holds a chip key. For a Spark 2 and an Apex the platform plays the PCD of AuthenticateEV2First
 * with key number 2; for a Spark 1 it supplies the TAM1 IChallenge and checks the TResponse.
 *
 * @packageDocumentation
 */
import { performance } from 'node:perf_hooks';
import { filter, type Subscription } from 'rxjs';
import { Capability } from '../model/capabilities.js';
import { ErrorCode, TaplineError, abortError, isTaplineError, toTaplineError } from '../model/errors.js';
import type {
  AuthenticityClaims,
  ChallengeRequest,
  ChallengeResponse,
  PlatformCallOptions,
  PlatformClient,
} from '../model/platform.js';
import { combineSignals } from '../model/reader.js';
import type { Tag } from '../model/tag.js';
import { systemClock, type Clock } from '../runtime/clock.js';
import { selectApexVerify } from '../tags/apex.js';
import { tagExchange, type ExchangeOptions, type FrameExchange } from '../tags/channel.js';
import { identifyTag } from '../tags/identify.js';
import { ApduChannel } from '../tags/iso7816/channel.js';
import { TAM1_ICHALLENGE_LENGTH } from '../tags/iso15693/frames.js';
import { Iso15693Tag } from '../tags/iso15693/iso15693-tag.js';
import { EV2_ANSWER_LENGTH, beginSplitAuthentication, finishSplitAuthentication } from '../tags/ntag4xx/auth.js';
import { selectNdefApplication } from '../tags/ntag4xx/commands.js';
import { toHex } from '../util/bytes.js';
import { isScanRequestId, type ClaimRequest, type ScanRequestClient } from './scan-request-client.js';

/** The chips the VivoKey platform can vouch for through a relay. */
export type VerifiableChip = 'spark1' | 'spark2' | 'apex';

/** Every {@link VerifiableChip}. */
export const VERIFIABLE_CHIPS: readonly VerifiableChip[] = Object.freeze(['spark2', 'spark1', 'apex']);

/** The product names people know the chips by. */
export const VERIFIABLE_CHIP_NAMES: Readonly<Record<VerifiableChip, string>> = Object.freeze({
  spark1: 'VivoKey Spark 1',
  spark2: 'VivoKey Spark 2',
  apex: 'VivoKey Apex',
});

/** The chip key the platform authenticates with, on every chip (VivoKey's clients always send 2). */
export const VIVOKEY_PLATFORM_KEY_NO = 2;

/** Longest client data (`cld`) the platform takes; VivoKey documents the bound for `/validate` (protocols.md §1.1). */
export const MAX_CLD_LENGTH = 2048;

/**
 * The steps of a verification, in the order they can happen. `chip-released` marks the moment the chip is no longer
 * needed: the reader may tell the person to take the implant away.
 */
export type RelayStep =
  | 'identify'
  | 'select'
  | 'chip-challenge'
  | 'platform-challenge'
  | 'chip-answer'
  | 'chip-released'
  | 'session'
  | 'verify-token';

/** Options of {@link verifyChip}. */
export interface VerifyChipOptions {
  /** Cancels the verification; it then fails with `ABORTED` (or the signal's Tapline reason). */
  readonly signal?: AbortSignal;
  /** Timeout of each exchange with the chip. Default: the reader's. */
  readonly apduTimeoutMs?: number;
  /** Timeout of each platform call (`/challenge`, `/session`, token verification). Default: the client's. */
  readonly platformTimeoutMs?: number;
  /** Client data for `/session`; the platform echoes it in the token's `cld`, and the token is refused without it. */
  readonly cld?: string;
  /** Audience the token must carry, when the relying party set one. */
  readonly audience?: string;
  /** The clock `tag.arrivedAt` was stamped with (the container's). Default: the system clock. */
  readonly clock?: Clock;
  /** Called as each step starts, for progress output. Must not throw. */
  readonly onStep?: (step: RelayStep) => void;
}

/**
 * Where the time of one verification went, in milliseconds (fractions kept: Tapline's own share is well under one
 * millisecond per exchange).
 */
export interface VerificationTimings {
  /** From the tag's arrival to the chip's last answer: how long the chip had to stay on the reader. */
  readonly inFieldMs: number;
  /** From the start of {@link verifyChip} to the chip's last answer: the relay's part of {@link inFieldMs}. */
  readonly relayInFieldMs: number;
  /** Inside exchanges with the chip (reader, air and chip), summed. */
  readonly chipMs: number;
  /** Every platform call: `/challenge`, `/session` and token verification. */
  readonly networkMs: number;
  /** The platform calls the chip had to stay in the field for (the `/challenge`). */
  readonly networkInFieldMs: number;
  /** `/challenge`, while the chip waits in the field. */
  readonly challengeMs: number;
  /** `/session`, after the chip's last answer. */
  readonly sessionMs: number;
  /** Token verification (a JWKS fetch when the keys are not cached yet). */
  readonly verifyMs: number;
  /** From the tag's arrival to the verified result. */
  readonly tapToResultMs: number;
}

/** A successful verification: the platform vouched for the chip, and its token verified. */
export interface VerificationResult {
  /** Always `success`: every other outcome is a thrown `TaplineError`. */
  readonly result: 'success';
  /** Which VivoKey chip answered. */
  readonly chip: VerifiableChip;
  /**
   * The id the platform knows the chip by, lower-case hex: the Spark 2's 7-byte UID, the Spark 1's 8-byte UID MSB
   * first (`e00401…`), the Apex Verify applet's 8-byte chip id.
   */
  readonly uid: string;
  /** The token's `sub`: a per-developer chip identifier that says "a genuine VivoKey chip", never whose. */
  readonly sub: string;
  /** The authenticity token (JWT). A bearer credential: print it only where the person asked for it. */
  readonly token: string;
  /** The verified claims of {@link token}. */
  readonly claims: AuthenticityClaims;
  readonly timings: VerificationTimings;
  /**
   * Frames exchanged with the chip after it was detected, identification included, as the APDU layer (ISO 14443-4)
   * or the ISO 15693 command layer counted them.
   */
  readonly apdus: number;
}

/**
 * The steps of answering a scan request ({@link answerScanRequest}), in the order they can happen: as
 * {@link RelayStep}, with `claim` for the platform's challenge and `answer` for the submission.
 */
export type ScanAnswerStep =
  'identify' | 'select' | 'chip-challenge' | 'claim' | 'chip-answer' | 'chip-released' | 'answer';

/** The chip's half of a dialogue, ready to be submitted. */
interface ChipDialogue {
  readonly chip: VerifiableChip;
  readonly uid: string;
  /** The chip's answer for `/session` or the scan request's answer, hex. */
  readonly chipResponse: string;
  /** The `/challenge` token, or the scan request's claim. A secret. */
  readonly token: string;
}

/** Gets the platform's challenge for the chip: `/challenge` for a verification, a claim for a scan request. */
type ChallengeStep = (request: ClaimRequest, options: PlatformCallOptions) => Promise<ChallengeResponse>;

/** The steps of the shared dialogue, and the platform steps that follow it. */
type DialogueStep = RelayStep | 'answer';
type PlatformStep = 'platform-challenge' | 'session' | 'verify-token' | 'answer';

/** Options every chip dialogue takes. */
interface DialogueOptions {
  readonly signal?: AbortSignal | undefined;
  readonly apduTimeoutMs?: number | undefined;
  readonly platformTimeoutMs?: number | undefined;
}

/** Bookkeeping shared by the steps of one dialogue. */
interface RelayRun {
  readonly tag: Tag;
  readonly options: DialogueOptions;
  /** Obtains the platform's challenge. */
  readonly challenge: ChallengeStep;
  /** Reports a step to the caller, under the caller's name for it. */
  readonly notify: (step: DialogueStep) => void;
  /** The caller's name of a step, for `details.step`. */
  readonly stepName: (step: DialogueStep) => string;
  /** How a platform step's failure starts its message. */
  readonly platformWhat: Readonly<Record<PlatformStep, string>>;
  /** Added to the hint of `TAG_LOST`. */
  readonly lostHint: string;
  /** Aborted when the tag leaves the field; the chip steps and the challenge listen to it. */
  readonly presence: AbortController;
  readonly exchange: ExchangeOptions;
  frames: number;
  chipMs: number;
  lastChipAnswerAt: number;
  challengeMs: number;
  /** `/session`, or the scan request's answer. */
  submitMs: number;
  verifyMs: number;
}

/**
 * Verifies the VivoKey chip on `tag` with the platform, as VivoKey's own clients do (protocols.md §2):
 *
 * - Spark 2: SELECT of the NDEF application, `90 71 00 00 02 02 00 00`, `/challenge` (scheme 2 with the chip's
 *   E(K, RndB) and UID), `90 AF 00 00 20 <payload> 00`, `/session` with the chip's 34-byte reply (`… 91 00`).
 * - Apex: SELECT of the Verify applet (its 8-byte answer is the chip id the platform calls `uid`), then as a Spark 2.
 * - Spark 1: `/challenge` (scheme 1) first, so that the chip is needed for one exchange only, then ISO 15693
 *   AUTHENTICATE with key 2 and the first 10 payload bytes, `/session` with the whole reply, flags included.
 *
 * The token `/session` returns is then verified with `platform.verifyToken`. Identification uses only what the
 * reader reported whenever that is enough, so a Spark 2 takes three exchanges, an Apex three and a Spark 1 one.
 *
 * The chip must stay in the field until its last answer (the step `chip-released`); it may leave during `/session`.
 * `/session` is called at most once per verification, with the token of this verification's own `/challenge`, and
 * never retried: the token is single-use, and a second submission after an ambiguous failure (a timeout, a 5xx)
 * could only be refused or, worse, be taken as a replay. A failed `/session` means tapping again.
 *
 * Fails with `UNSUPPORTED_CAPABILITY` for a chip that is not a Spark 1, Spark 2 or Apex; `TAG_LOST` naming the step
 * when the tag leaves too early (nothing is then submitted to `/session`); `PLATFORM_UNAVAILABLE` and
 * `PLATFORM_REJECTED` from the platform (the chip is then left alone); `TOKEN_INVALID` when the token does not
 * verify; `AUTHENTICATION_FAILED`, `TAG_STATUS`, `PROTOCOL_ERROR` or `TIMEOUT` from the chip; `ABORTED`.
 */
export async function verifyChip(
  tag: Tag,
  platform: PlatformClient,
  options: VerifyChipOptions = {},
): Promise<VerificationResult> {
  const clock = options.clock ?? systemClock;
  const startedAt = performance.now();
  // Time before the call is only known to the clock's precision; everything after is measured finely.
  const waitedMs = Math.max(0, clock.now() - tag.arrivedAt);
  const run = newRun(tag, options, {
    challenge: (request, call) => platform.challenge(challengeRequest(request), call),
    notify: (step) => {
      if (step !== 'answer') options.onStep?.(step);
    },
    stepName: (step) => step,
    platformWhat: VERIFY_PLATFORM_WHAT,
    lostHint: '',
  });
  // Checked before the chip is touched: /session would refuse it only after the chip's answer was spent.
  checkCld(options.cld);
  const { dialogue, submitted, relayInFieldMs } = await runChipDialogue(run, startedAt, async (outcome) => {
    step(run, 'session');
    const session = await platformCall(run, 'session', (call) =>
      platform.session(
        {
          uid: outcome.uid,
          response: outcome.chipResponse,
          token: outcome.token,
          ...(options.cld === undefined ? {} : { cld: options.cld }),
        },
        call,
      ),
    );

    step(run, 'verify-token');
    const claims = await platformCall(run, 'verify-token', (call) =>
      platform.verifyToken(session.token, {
        ...call,
        ...(options.audience === undefined ? {} : { audience: options.audience }),
      }),
    );
    checkClaims(claims, options);
    return { token: session.token, claims };
  });

  const finishedAt = performance.now();
  const networkMs = run.challengeMs + run.submitMs + run.verifyMs;
  return {
    result: 'success',
    chip: dialogue.chip,
    uid: dialogue.uid,
    sub: submitted.claims.sub,
    token: submitted.token,
    claims: submitted.claims,
    timings: {
      inFieldMs: round(waitedMs + relayInFieldMs),
      relayInFieldMs: round(relayInFieldMs),
      chipMs: round(run.chipMs),
      networkMs: round(networkMs),
      networkInFieldMs: round(run.challengeMs),
      challengeMs: round(run.challengeMs),
      sessionMs: round(run.submitMs),
      verifyMs: round(run.verifyMs),
      tapToResultMs: round(waitedMs + finishedAt - startedAt),
    },
    apdus: run.frames,
  };
}

/** Options of {@link answerScanRequest}. */
export interface AnswerScanRequestOptions {
  /** Cancels the dialogue; it then fails with `ABORTED` (or the signal's Tapline reason). */
  readonly signal?: AbortSignal;
  /** Timeout of each exchange with the chip. Default: the reader's. */
  readonly apduTimeoutMs?: number;
  /** Timeout of each platform call (claim, each attempt of the answer). Default: the client's. */
  readonly platformTimeoutMs?: number;
  /** The clock `tag.arrivedAt` was stamped with (the container's). Default: the system clock. */
  readonly clock?: Clock;
  /** Called as each step starts, for progress output. Must not throw. */
  readonly onStep?: (step: ScanAnswerStep) => void;
}

/** Where the time of one scan-request answer went, in milliseconds; see {@link VerificationTimings}. */
export interface ScanAnswerTimings {
  /** From the tag's arrival to the chip's last answer: how long the chip had to stay on the reader. */
  readonly inFieldMs: number;
  /** From the start of {@link answerScanRequest} to the chip's last answer. */
  readonly relayInFieldMs: number;
  /** Inside exchanges with the chip, summed. */
  readonly chipMs: number;
  /** Every platform call: the claim and the answer (its retries included). */
  readonly networkMs: number;
  /** The platform calls the chip had to stay in the field for (the claim). */
  readonly networkInFieldMs: number;
  /** The claim, while the chip waits in the field. */
  readonly claimMs: number;
  /** The answer, after the chip's last answer. */
  readonly answerMs: number;
  /** From the tag's arrival to the platform's confirmation. */
  readonly tapToResultMs: number;
}

/** A scan request answered: the platform verified the chip's answer and closed the request. */
export interface ScanAnswerResult {
  readonly requestId: string;
  /** Which VivoKey chip answered. */
  readonly chip: VerifiableChip;
  /** The chip's id as the platform knows it (see {@link VerificationResult.uid}). */
  readonly uid: string;
  /** When the platform recorded the answer, ms since the epoch. */
  readonly answeredAt: number;
  readonly timings: ScanAnswerTimings;
  /** Frames exchanged with the chip after it was detected, identification included. */
  readonly apdus: number;
}

/**
 * Answers the scan request `requestId` with the VivoKey chip on `tag`: the same chip dialogue as {@link verifyChip},
 * with the scan request's claim in place of `/challenge` and its answer in place of `/session`:
 *
 * - Spark 2 / Apex: SELECT, AuthenticateEV2First part 1, claim (`chip`, `uid`, scheme 2 and the chip's E(K, RndB)),
 *   the claim's payload to the chip, then the answer with the chip's 34-byte reply.
 * - Spark 1: claim (scheme 1) first, one AUTHENTICATE with the IChallenge, then the answer with the whole reply.
 *
 * The chip must stay in the field until its last answer (`chip-released`). If it leaves earlier, the call fails with
 * `TAG_LOST` and nothing is submitted: the request stays pending (a later claim replaces this one). The answer is
 * submitted once; only when its outcome is unknown (network failure, 5xx, timeout) does the client send the identical
 * body again, which the platform's idempotency per claim makes safe (see `ScanRequestClient.answer`).
 *
 * Fails like {@link verifyChip} for the chip (`UNSUPPORTED_CAPABILITY`, `TAG_LOST`, `AUTHENTICATION_FAILED`,
 * `TAG_STATUS`, `PROTOCOL_ERROR`, `TIMEOUT`, `ABORTED`), and with the client's errors for the platform:
 * `REQUEST_EXPIRED` (the request closed), `PLATFORM_REJECTED` (`details.error`: `chip_not_accepted`,
 * `chip_not_owned`, `authentication_failed`, …), `PLATFORM_UNAVAILABLE`, `NOT_ASSOCIATED`; `details.step` names the
 * step. An invalid `requestId` fails with `INVALID_ARGUMENT` before the chip is touched.
 */
export async function answerScanRequest(
  tag: Tag,
  client: ScanRequestClient,
  requestId: string,
  options: AnswerScanRequestOptions = {},
): Promise<ScanAnswerResult> {
  if (!isScanRequestId(requestId)) {
    throw new TaplineError(
      ErrorCode.InvalidArgument,
      'The scan request id must be 1 to 128 letters, digits, "_" or "-".',
    );
  }
  const clock = options.clock ?? systemClock;
  const startedAt = performance.now();
  const waitedMs = Math.max(0, clock.now() - tag.arrivedAt);
  const stepName = (step: DialogueStep): ScanAnswerStep =>
    step === 'platform-challenge' ? 'claim' : step === 'session' || step === 'verify-token' ? 'answer' : step;
  const run = newRun(tag, options, {
    challenge: async (request, call) => {
      const claim = await client.claim(requestId, request, call);
      return { payload: claim.payload, token: claim.claim };
    },
    notify: (step) => options.onStep?.(stepName(step)),
    stepName,
    platformWhat: {
      'platform-challenge': `Claiming scan request ${requestId} failed`,
      session: `Answering scan request ${requestId} failed`,
      'verify-token': `Answering scan request ${requestId} failed`,
      answer: `Answering scan request ${requestId} failed`,
    },
    lostHint: ' The scan request is still pending.',
  });
  const { dialogue, submitted, relayInFieldMs } = await runChipDialogue(run, startedAt, async (outcome) => {
    step(run, 'answer');
    return platformCall(run, 'answer', (call) =>
      client.answer(requestId, { claim: outcome.token, uid: outcome.uid, response: outcome.chipResponse }, call),
    );
  });
  const finishedAt = performance.now();
  return {
    requestId,
    chip: dialogue.chip,
    uid: dialogue.uid,
    answeredAt: submitted.answeredAt,
    timings: {
      inFieldMs: round(waitedMs + relayInFieldMs),
      relayInFieldMs: round(relayInFieldMs),
      chipMs: round(run.chipMs),
      networkMs: round(run.challengeMs + run.submitMs),
      networkInFieldMs: round(run.challengeMs),
      claimMs: round(run.challengeMs),
      answerMs: round(run.submitMs),
      tapToResultMs: round(waitedMs + finishedAt - startedAt),
    },
    apdus: run.frames,
  };
}

/** What distinguishes one flow from the other: how to get the challenge, and how to name things. */
type RunFlow = Pick<RelayRun, 'challenge' | 'notify' | 'stepName' | 'platformWhat' | 'lostHint'>;

function newRun(tag: Tag, options: DialogueOptions, flow: RunFlow): RelayRun {
  const presence = new AbortController();
  return {
    tag,
    options,
    ...flow,
    presence,
    exchange: {
      ...(options.apduTimeoutMs === undefined ? {} : { timeoutMs: options.apduTimeoutMs }),
      signal: combineSignals(options.signal, presence.signal),
    },
    frames: 0,
    chipMs: 0,
    lastChipAnswerAt: performance.now(),
    challengeMs: 0,
    submitMs: 0,
    verifyMs: 0,
  };
}

/**
 * The chip dialogue both flows share: identification, then the chip-specific relay with the flow's challenge step,
 * then — once the chip's last answer is in and the tag may leave — `submit` with the chip's answer. `submit` is called
 * at most once, and only after the chip answered completely: a tag that leaves earlier fails with `TAG_LOST` and
 * nothing is submitted.
 */
async function runChipDialogue<R>(
  run: RelayRun,
  startedAt: number,
  submit: (dialogue: ChipDialogue) => Promise<R>,
): Promise<{ readonly dialogue: ChipDialogue; readonly submitted: R; readonly relayInFieldMs: number }> {
  const { tag, options, presence } = run;
  const watch = watchPresence(tag, presence);
  try {
    if (options.signal?.aborted) throw abortError('The verification', options.signal.reason);
    if (presence.signal.aborted) throw tagLost(run, 'identify');

    step(run, 'identify');
    const chip = await identifyChip(run);
    const dialogue = chip === 'spark1' ? await relaySpark1(run) : await relayEv2(run, chip);
    const relayInFieldMs = run.lastChipAnswerAt - startedAt;
    step(run, 'chip-released');
    // The chip's answer is complete: from here on the tag may leave, and nothing listens to its presence.
    watch.unsubscribe();

    const submitted = await submit(dialogue);
    return { dialogue, submitted, relayInFieldMs };
  } finally {
    watch.unsubscribe();
  }
}

/** `/challenge`'s body for a dialogue's challenge request: scheme 1 sends only the scheme. */
function challengeRequest(request: ClaimRequest): ChallengeRequest {
  return request.scheme === 1 ? { scheme: 1 } : { scheme: 2, message: request.message, uid: request.uid };
}

/** Aborts `presence` when `tag` leaves its reader (or has already left). */
function watchPresence(tag: Tag, presence: AbortController): Subscription {
  const subscription = tag.reader.events$
    .pipe(filter((event) => event.type === 'tag-left' && event.tag.id === tag.id))
    .subscribe(() => presence.abort(lostReason()));
  if (tag.reader.currentTag?.id !== tag.id) presence.abort(lostReason());
  return subscription;
}

function lostReason(): TaplineError {
  return new TaplineError(ErrorCode.TagLost, 'The tag left the reader.');
}

function step(run: RelayRun, name: DialogueStep): void {
  try {
    run.notify(name);
  } catch {
    // Progress output is a courtesy; it must not decide the outcome of a verification.
  }
}

async function identifyChip(run: RelayRun): Promise<VerifiableChip> {
  const known = run.tag.identification?.chip;
  if (isVerifiable(known)) return known;
  const identification = await chipStep(run, 'identify', () =>
    identifyTag(run.tag, { ...run.exchange, detail: 'fast' }),
  );
  run.frames += identification.exchanges;
  if (isVerifiable(identification.chip)) return identification.chip;
  const what =
    identification.chip === 'unknown'
      ? 'a chip Tapline does not recognise'
      : `${identification.model ?? identification.chip} (${identification.chip})`;
  throw new TaplineError(
    ErrorCode.UnsupportedCapability,
    `The tag on ${run.tag.readerName} is ${what}; the VivoKey platform verifies only VivoKey Spark 1, Spark 2 and Apex implants.`,
    {
      hint: 'Tap a VivoKey Spark 1, Spark 2 or Apex. `tapline scan` shows what the reader sees.',
      details: { chip: identification.chip, evidence: identification.evidence },
    },
  );
}

function isVerifiable(chip: string | undefined): chip is VerifiableChip {
  return chip === 'spark1' || chip === 'spark2' || chip === 'apex';
}

/** Spark 2 and Apex: the split AuthenticateEV2First with the platform as the PCD. */
async function relayEv2(run: RelayRun, chip: 'spark2' | 'apex'): Promise<ChipDialogue> {
  const channel = new ApduChannel(measured(run, tagExchange(run.tag, Capability.Iso14443_4)));
  try {
    return await relayEv2Steps(run, chip, channel);
  } finally {
    run.frames += channel.exchanges;
  }
}

async function relayEv2Steps(run: RelayRun, chip: 'spark2' | 'apex', channel: ApduChannel): Promise<ChipDialogue> {
  const exchange = run.exchange;
  step(run, 'select');
  let uid: string;
  if (chip === 'apex') {
    uid = toHex(await chipStep(run, 'select', () => selectApexVerify(channel, exchange)));
  } else {
    await chipStep(run, 'select', () => selectNdefApplication(channel, exchange));
    uid = toHex(run.tag.uid);
  }

  step(run, 'chip-challenge');
  const encRndB = await chipStep(run, 'chip-challenge', () =>
    beginSplitAuthentication(channel, VIVOKEY_PLATFORM_KEY_NO, exchange),
  );

  step(run, 'platform-challenge');
  const challenge = await platformCall(run, 'platform-challenge', (call) =>
    run.challenge({ chip, uid, scheme: 2, message: toHex(encRndB) }, call),
  );
  const pcdResponse = payloadBytes(challenge.payload, EV2_ANSWER_LENGTH, 'exactly');

  step(run, 'chip-answer');
  assertPresent(run, 'chip-answer');
  const answer = await chipStep(run, 'chip-answer', () => finishSplitAuthentication(channel, pcdResponse, exchange));
  return { chip, uid, chipResponse: toHex(answer.response), token: challenge.token };
}

/** Spark 1: the platform's IChallenge first, then one AUTHENTICATE. */
async function relaySpark1(run: RelayRun): Promise<ChipDialogue> {
  const { tag } = run;
  if (tag.technology !== 'iso15693' || !tag.protocols.includes(Capability.Iso15693)) {
    throw new TaplineError(
      ErrorCode.UnsupportedCapability,
      `The Spark 1 on ${tag.readerName} cannot be reached with ISO 15693 frames through this reader.`,
      { hint: 'Use a reader that speaks ISO 15693 (see `tapline readers`).' },
    );
  }
  const tam1 = new Iso15693Tag(measured(run, tagExchange(tag, Capability.Iso15693)), { uid: tag.uid });
  try {
    return await relaySpark1Steps(run, tam1);
  } finally {
    run.frames += tam1.exchanges;
  }
}

async function relaySpark1Steps(run: RelayRun, tam1: Iso15693Tag): Promise<ChipDialogue> {
  const uid = toHex(run.tag.uid);
  step(run, 'platform-challenge');
  const challenge = await platformCall(run, 'platform-challenge', (call) =>
    run.challenge({ chip: 'spark1', uid, scheme: 1 }, call),
  );
  const ichallenge = payloadBytes(challenge.payload, TAM1_ICHALLENGE_LENGTH, 'at least').subarray(
    0,
    TAM1_ICHALLENGE_LENGTH,
  );

  step(run, 'chip-answer');
  assertPresent(run, 'chip-answer');
  const reply = await chipStep(run, 'chip-answer', () =>
    tam1.authenticate(VIVOKEY_PLATFORM_KEY_NO, ichallenge, run.exchange),
  );
  return { chip: 'spark1', uid, chipResponse: toHex(reply.reply), token: challenge.token };
}

/** Times every frame sent to the chip, and notes when its last answer arrived. */
function measured(run: RelayRun, exchange: FrameExchange): FrameExchange {
  return async (frame, options) => {
    const started = performance.now();
    try {
      const answer = await exchange(frame, options);
      run.lastChipAnswerAt = performance.now();
      return answer;
    } finally {
      run.chipMs += performance.now() - started;
    }
  };
}

/** Runs one exchange step with the chip, turning a departure of the tag into the step's `TAG_LOST`. */
async function chipStep<T>(run: RelayRun, name: RelayStep, operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    throw stepFailure(run, name, error);
  }
}

function stepFailure(run: RelayRun, name: RelayStep, error: unknown): TaplineError {
  if (run.options.signal?.aborted) return abortError('The verification', run.options.signal.reason);
  if (run.presence.signal.aborted || (isTaplineError(error) && error.code === ErrorCode.TagLost)) {
    return tagLost(run, name, error);
  }
  return toTaplineError(error);
}

function assertPresent(run: RelayRun, name: RelayStep): void {
  if (run.options.signal?.aborted) throw abortError('The verification', run.options.signal.reason);
  if (run.presence.signal.aborted || run.tag.reader.currentTag?.id !== run.tag.id) throw tagLost(run, name);
}

const LOST_AT: Readonly<Partial<Record<RelayStep, string>>> = {
  identify: 'while Tapline identified the chip; nothing was sent to the platform',
  select: 'during the SELECT that starts the verification; nothing was sent to the platform',
  'chip-challenge': "before the chip's first authentication answer; nothing was sent to the platform",
  'platform-challenge': "while Tapline waited for the platform's challenge; nothing was submitted",
  'chip-answer': "after the platform's challenge, before the chip answered; nothing was submitted",
};

function tagLost(run: RelayRun, name: RelayStep, cause?: unknown): TaplineError {
  return new TaplineError(ErrorCode.TagLost, `The tag left the reader ${LOST_AT[name] ?? `at ${name}`}.`, {
    cause,
    hint: `Keep the implant on the reader until Tapline says it is done (about a second), then tap again.${run.lostHint}`,
    details: { step: run.stepName(name), reader: run.tag.readerName },
  });
}

const VERIFY_PLATFORM_WHAT: Readonly<Record<PlatformStep, string>> = {
  'platform-challenge': "The platform's /challenge failed",
  session: "The platform's /session failed (the chip's answer was submitted once and is not retried)",
  'verify-token': "The platform's authenticity token did not verify",
  answer: "The platform's /session failed (the chip's answer was submitted once and is not retried)",
};

/** Runs one platform call with the per-call timeout, adds its time to the run, and names the step in failures. */
async function platformCall<T>(
  run: RelayRun,
  name: PlatformStep,
  call: (options: PlatformCallOptions) => Promise<T>,
): Promise<T> {
  const { options } = run;
  // Only the challenge needs the chip: a tag leaving cuts it short; the submission and verification outlive the tag.
  const signal = name === 'platform-challenge' ? combineSignals(options.signal, run.presence.signal) : options.signal;
  const callOptions: PlatformCallOptions = {
    ...(options.platformTimeoutMs === undefined ? {} : { timeoutMs: options.platformTimeoutMs }),
    ...(signal === undefined ? {} : { signal }),
  };
  const started = performance.now();
  try {
    return await call(callOptions);
  } catch (error) {
    if (options.signal?.aborted) throw abortError('The verification', options.signal.reason);
    if (name === 'platform-challenge' && run.presence.signal.aborted) throw tagLost(run, name, error);
    throw platformFailure(run, name, error);
  } finally {
    const ms = performance.now() - started;
    if (name === 'platform-challenge') run.challengeMs += ms;
    else if (name === 'verify-token') run.verifyMs += ms;
    else run.submitMs += ms;
  }
}

function platformFailure(run: RelayRun, name: PlatformStep, error: unknown): TaplineError {
  const fallback = name === 'verify-token' ? ErrorCode.TokenInvalid : ErrorCode.PlatformUnavailable;
  const failure = toTaplineError(error, fallback);
  return new TaplineError(failure.code, `${run.platformWhat[name]}: ${failure.message}`, {
    cause: failure,
    ...(failure.hint === undefined ? {} : { hint: failure.hint }),
    details: { ...failure.details, step: run.stepName(name) },
  });
}

/** The platform's challenge payload as bytes; a malformed one is the platform's fault, never a usage error. */
function payloadBytes(payload: string, length: number, rule: 'exactly' | 'at least'): Uint8Array {
  const valid = typeof payload === 'string' && payload.length % 2 === 0 && /^[0-9a-fA-F]*$/.test(payload);
  const bytes = valid ? Uint8Array.from(Buffer.from(payload, 'hex')) : undefined;
  if (bytes === undefined || (rule === 'exactly' ? bytes.length !== length : bytes.length < length)) {
    throw new TaplineError(
      ErrorCode.ProtocolError,
      `The platform's challenge payload is ${bytes === undefined ? 'not hex' : `${bytes.length} bytes`}; the chip needs ${rule} ${length} bytes.`,
      {
        hint: 'Check that --platform points at the VivoKey platform; nothing more was sent to the chip, nothing submitted.',
        details: { step: 'platform-challenge' },
      },
    );
  }
  return bytes;
}

/** Fails with `INVALID_ARGUMENT` unless `cld` is absent or 1 to {@link MAX_CLD_LENGTH} characters. */
export function checkCld(cld: string | undefined): void {
  if (cld === undefined) return;
  if (typeof cld !== 'string' || cld.length === 0 || cld.length > MAX_CLD_LENGTH) {
    throw new TaplineError(
      ErrorCode.InvalidArgument,
      `Client data (cld) must be 1 to ${MAX_CLD_LENGTH} characters, not ${typeof cld === 'string' ? cld.length : typeof cld}.`,
      { hint: 'Shorten the client data, or leave it out.' },
    );
  }
}

function checkClaims(claims: AuthenticityClaims, options: VerifyChipOptions): void {
  if (typeof claims.sub !== 'string' || claims.sub.length === 0) {
    throw new TaplineError(ErrorCode.TokenInvalid, "The platform's authenticity token names no chip (no `sub`).", {
      details: { step: 'verify-token' },
    });
  }
  if (options.cld !== undefined && claims.cld !== options.cld) {
    throw new TaplineError(
      ErrorCode.TokenInvalid,
      "The platform's authenticity token does not carry the client data (`cld`) this verification sent.",
      {
        hint: 'The token belongs to another verification; tap again.',
        details: { step: 'verify-token' },
      },
    );
  }
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
