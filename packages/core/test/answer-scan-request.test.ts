import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ErrorCode,
  TaplineError,
  answerScanRequest,
  createScanRequestClient,
  fromHex,
  pcdAnswerChallenge,
  toHex,
  verifyPiccAnswer,
  verifyTam1Response,
  type ClaimRequest,
  type ScanAnswerStep,
  type ScanRequestAnswer,
  type ScanRequestAnswered,
  type ScanRequestCallOptions,
  type ScanRequestClaim,
  type ScanRequestClient,
  type ScanRequestList,
} from '../src/index.js';
import {
  APEX_CHIP_ID,
  APEX_KEY,
  NDEF_AID,
  SLIX_INFO,
  SPARK1_KEY,
  SPARK1_UID,
  SPARK2_KEY,
  SPARK2_UID,
  ev2Chip,
  failure,
  releaseTaps,
  spark1Chip,
  tapChip,
} from './relay-support.js';
import { ScriptedHttpServer } from './scripted-http.js';

afterEach(releaseTaps);

const servers: ScriptedHttpServer[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await server.close();
});

const ANSWERED_AT = Date.UTC(2026, 0, 2, 3, 4, 7);

type Pending =
  | { readonly request: ClaimRequest; readonly rndA: Uint8Array; readonly rndB: Uint8Array }
  | {
      readonly request: ClaimRequest;
      readonly ichallenge: Uint8Array;
    };

/**
 * The platform's side of a scan request, with the chips' keys: a claim plays the PCD of AuthenticateEV2First (or
 * hands out a TAM1 IChallenge), an answer checks the chip's reply against the claim. Idempotent per claim, like the
 * platform: the identical answer repeated gets the same result.
 */
class ChipVerifier {
  readonly #keys = new Map<string, Uint8Array>([
    [toHex(SPARK2_UID), SPARK2_KEY],
    [toHex(APEX_CHIP_ID), APEX_KEY],
    [toHex(SPARK1_UID), SPARK1_KEY],
  ]);
  readonly #pending = new Map<string, Pending>();
  readonly #answered = new Map<string, string>();

  claim(request: ClaimRequest): ScanRequestClaim {
    const claim = `claim-${toHex(randomBytes(16))}`;
    const expiresAt = Date.now() + 60_000;
    if (request.scheme === 1) {
      const ichallenge = Uint8Array.from(randomBytes(10));
      this.#pending.set(claim, { request, ichallenge });
      return { claim, scheme: 1, payload: toHex(ichallenge) + toHex(randomBytes(6)), expiresAt };
    }
    const chipKey = this.#keys.get(request.uid);
    if (!chipKey)
      throw new TaplineError(ErrorCode.PlatformRejected, 'Not enrolled.', { details: { error: 'chip_not_owned' } });
    const rndA = Uint8Array.from(randomBytes(16));
    const { response32, rndB } = pcdAnswerChallenge(chipKey, fromHex(request.message), rndA);
    this.#pending.set(claim, { request, rndA, rndB });
    return { claim, scheme: 2, payload: toHex(response32), expiresAt };
  }

  answer(answer: ScanRequestAnswer): ScanRequestAnswered {
    const body = JSON.stringify(answer);
    const previous = this.#answered.get(answer.claim);
    if (previous !== undefined) {
      if (previous !== body)
        throw new TaplineError(ErrorCode.PlatformRejected, 'Used.', { details: { error: 'claim_used' } });
      return { state: 'answered', answeredAt: ANSWERED_AT };
    }
    const pending = this.#pending.get(answer.claim);
    if (!pending || pending.request.uid !== answer.uid) {
      throw new TaplineError(ErrorCode.PlatformRejected, 'Unknown claim.', { details: { error: 'claim_invalid' } });
    }
    this.#answered.set(answer.claim, body);
    const chipKey = this.#keys.get(answer.uid)!;
    const response = fromHex(answer.response);
    let genuine: boolean;
    if ('ichallenge' in pending) {
      genuine = response.length === 18 && verifyTam1Response(chipKey, pending.ichallenge, response.subarray(2));
    } else {
      try {
        verifyPiccAnswer(chipKey, pending.rndA, pending.rndB, response.subarray(0, 32), 2);
        genuine = response.length === 34 && toHex(response.subarray(32)) === '9100';
      } catch {
        genuine = false;
      }
    }
    if (!genuine) {
      throw new TaplineError(ErrorCode.PlatformRejected, 'The chip did not authenticate.', {
        details: { error: 'authentication_failed' },
      });
    }
    return { state: 'answered', answeredAt: ANSWERED_AT };
  }
}

/** A {@link ScanRequestClient} in process, over a {@link ChipVerifier}, recording what the relay sent. */
class InProcessScanRequests implements ScanRequestClient {
  readonly baseUrl = new URL('https://platform.relay-test/');
  readonly verifier = new ChipVerifier();
  readonly claims: (ClaimRequest & { readonly requestId: string })[] = [];
  readonly answers: (ScanRequestAnswer & { readonly requestId: string })[] = [];
  onClaim: ((options: ScanRequestCallOptions | undefined) => Promise<void> | void) | undefined;

  list(): Promise<ScanRequestList> {
    return Promise.reject(new Error('not used'));
  }

  async claim(requestId: string, request: ClaimRequest, options?: ScanRequestCallOptions): Promise<ScanRequestClaim> {
    this.claims.push({ requestId, ...request });
    await this.onClaim?.(options);
    return this.verifier.claim(request);
  }

  answer(requestId: string, answer: ScanRequestAnswer): Promise<ScanRequestAnswered> {
    this.answers.push({ requestId, ...answer });
    return new Promise((resolve) => resolve(this.verifier.answer(answer)));
  }

  cancel(): Promise<{ readonly state: 'cancelled' }> {
    return Promise.reject(new Error('not used'));
  }
}

describe('answerScanRequest: the chip dialogue with claim and answer', () => {
  it('Spark 2: SELECT, part 1, claim with chip/uid/message, part 2, one answer', async () => {
    const { reader, tag } = await tapChip(ev2Chip('spark2', SPARK2_KEY));
    const client = new InProcessScanRequests();
    const steps: ScanAnswerStep[] = [];
    const result = await answerScanRequest(tag, client, 'sr_AAAA', { onStep: (s) => steps.push(s) });
    expect(result).toMatchObject({
      requestId: 'sr_AAAA',
      chip: 'spark2',
      uid: '04517ca23b6e80',
      answeredAt: ANSWERED_AT,
      apdus: 3,
    });
    expect(reader.frames[0]).toBe(`00a4040c07${NDEF_AID}00`);
    expect(reader.frames[1]).toBe('9071000002020000');
    expect(reader.frames[2]).toMatch(/^90af000020[0-9a-f]{64}00$/);
    expect(client.claims).toEqual([
      {
        requestId: 'sr_AAAA',
        chip: 'spark2',
        uid: '04517ca23b6e80',
        scheme: 2,
        message: expect.stringMatching(/^[0-9a-f]{32}$/),
      },
    ]);
    expect(client.answers).toEqual([
      {
        requestId: 'sr_AAAA',
        claim: expect.stringMatching(/^claim-/),
        uid: '04517ca23b6e80',
        response: expect.stringMatching(/^[0-9a-f]{64}9100$/),
      },
    ]);
    expect(steps).toEqual(['identify', 'select', 'chip-challenge', 'claim', 'chip-answer', 'chip-released', 'answer']);
    const { timings } = result;
    expect(timings.networkMs).toBeCloseTo(timings.claimMs + timings.answerMs, 2);
    expect(timings.networkInFieldMs).toBe(timings.claimMs);
    expect(timings.inFieldMs).toBeGreaterThanOrEqual(timings.relayInFieldMs);
    expect(timings.tapToResultMs).toBeGreaterThanOrEqual(timings.inFieldMs);
  });

  it('Apex: the Verify applet chip id is the uid, chip kind apex', async () => {
    const { tag } = await tapChip(ev2Chip('apex', APEX_KEY));
    const client = new InProcessScanRequests();
    const result = await answerScanRequest(tag, client, 'sr_1');
    expect(result).toMatchObject({ chip: 'apex', uid: 'a5e1d0c3b2a19081' });
    expect(client.claims[0]).toMatchObject({ chip: 'apex', uid: 'a5e1d0c3b2a19081', scheme: 2 });
  });

  it('Spark 1: claim (scheme 1) before any frame, one AUTHENTICATE, the whole reply answered', async () => {
    const { reader, tag } = await tapChip(spark1Chip(SPARK1_KEY));
    const client = new InProcessScanRequests();
    let framesAtClaim = -1;
    client.onClaim = () => void (framesAtClaim = reader.frames.length);
    const result = await answerScanRequest(tag, client, 'sr_1');
    expect(result).toMatchObject({ chip: 'spark1', uid: 'e004011809a73b5c', apdus: 1 });
    expect(framesAtClaim).toBe(0);
    expect(client.claims).toEqual([{ requestId: 'sr_1', chip: 'spark1', uid: 'e004011809a73b5c', scheme: 1 }]);
    expect(client.answers[0]?.response).toMatch(/^0000[0-9a-f]{32}$/);
  });

  it('a chip that does not prove itself: PLATFORM_REJECTED authentication_failed at the answer, sent once', async () => {
    const { tag } = await tapChip(ev2Chip('spark2', SPARK2_KEY, true));
    const client = new InProcessScanRequests();
    const error = await failure(answerScanRequest(tag, client, 'sr_1'));
    expect(error.code).toBe(ErrorCode.PlatformRejected);
    expect(error.details).toMatchObject({ error: 'authentication_failed', step: 'answer' });
    expect(error.message).toMatch(/Answering scan request sr_1 failed/);
    expect(client.answers).toHaveLength(1);
  });

  it('not a VivoKey chip: UNSUPPORTED_CAPABILITY, nothing claimed', async () => {
    const { tag } = await tapChip({ info: SLIX_INFO, handle: () => undefined });
    const client = new InProcessScanRequests();
    expect((await failure(answerScanRequest(tag, client, 'sr_1'))).code).toBe(ErrorCode.UnsupportedCapability);
    expect(client.claims).toEqual([]);
  });

  it('a malformed request id: INVALID_ARGUMENT before the chip is touched', async () => {
    const { reader, tag } = await tapChip(ev2Chip('spark2', SPARK2_KEY));
    const client = new InProcessScanRequests();
    expect((await failure(answerScanRequest(tag, client, '../x'))).code).toBe(ErrorCode.InvalidArgument);
    expect(reader.frames).toEqual([]);
  });
});

describe('answerScanRequest: the tag leaves', () => {
  it('after the claim, before the chip answered: TAG_LOST, nothing submitted, the request still pending', async () => {
    const { reader, tag } = await tapChip(ev2Chip('spark2', SPARK2_KEY));
    const client = new InProcessScanRequests();
    client.onClaim = () => reader.remove();
    const error = await failure(answerScanRequest(tag, client, 'sr_1'));
    expect(error.code).toBe(ErrorCode.TagLost);
    expect(error.details['step']).toBe('chip-answer');
    expect(error.message).toMatch(/nothing was submitted/);
    expect(error.hint).toMatch(/still pending/);
    expect(client.claims).toHaveLength(1);
    expect(client.answers).toEqual([]);
    expect(reader.frames).toHaveLength(2);
  });

  it('while the claim is in flight: TAG_LOST at once, naming the claim step', async () => {
    const { reader, tag } = await tapChip(ev2Chip('spark2', SPARK2_KEY));
    const client = new InProcessScanRequests();
    client.onClaim = (options) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, 5000);
        options?.signal?.addEventListener('abort', () => {
          clearTimeout(timer);
          reject(options.signal!.reason as Error);
        });
      });
    setTimeout(() => reader.remove(), 20);
    const started = Date.now();
    const error = await failure(answerScanRequest(tag, client, 'sr_1'));
    expect(Date.now() - started).toBeLessThan(1000);
    expect(error.code).toBe(ErrorCode.TagLost);
    expect(error.details['step']).toBe('claim');
    expect(client.answers).toEqual([]);
  });

  it('after the chip answered: the answer is still submitted', async () => {
    const { reader, tag } = await tapChip(spark1Chip(SPARK1_KEY));
    const client = new InProcessScanRequests();
    const result = await answerScanRequest(tag, client, 'sr_1', {
      onStep: (s) => {
        if (s === 'chip-released') reader.remove();
      },
    });
    expect(result.chip).toBe('spark1');
    expect(client.answers).toHaveLength(1);
  });
});

describe('answerScanRequest: platform failures', () => {
  it('a closed request at the claim: REQUEST_EXPIRED naming the claim step, no second APDU', async () => {
    const { reader, tag } = await tapChip(ev2Chip('spark2', SPARK2_KEY));
    const client = new InProcessScanRequests();
    client.onClaim = () => {
      throw new TaplineError(ErrorCode.RequestExpired, 'The scan request is closed (expired).', {
        details: { error: 'request_closed', state: 'expired' },
      });
    };
    const error = await failure(answerScanRequest(tag, client, 'sr_1'));
    expect(error.code).toBe(ErrorCode.RequestExpired);
    expect(error.details).toMatchObject({ step: 'claim', state: 'expired' });
    expect(reader.frames).toHaveLength(2);
    expect(client.answers).toEqual([]);
  });

  it('over HTTP: an answer whose response got lost is sent again, identically, and confirmed once', async () => {
    const server = await new ScriptedHttpServer().start();
    servers.push(server);
    const verifier = new ChipVerifier();
    server.on('POST', '/scan-requests/sr_1/claim', (request) => {
      const claim = verifier.claim(JSON.parse(request.body) as ClaimRequest);
      return {
        json: {
          claim: claim.claim,
          scheme: claim.scheme,
          payload: claim.payload,
          expires_at: new Date(claim.expiresAt).toISOString(),
        },
      };
    });
    let attempts = 0;
    server.on('POST', '/scan-requests/sr_1/answer', (request) => {
      attempts += 1;
      try {
        verifier.answer(JSON.parse(request.body) as ScanRequestAnswer);
      } catch (error) {
        return { status: 401, json: { error: (error as TaplineError).details['error'] } };
      }
      // The first time, the platform records the answer but its response is lost on the way.
      return attempts === 1
        ? { status: 502, raw: 'bad gateway' }
        : { json: { state: 'answered', answered_at: new Date(ANSWERED_AT).toISOString() } };
    });
    const client = createScanRequestClient({
      platformUrl: server.url,
      session: { accessToken: () => Promise.resolve('access-token-for-the-test') },
      answerRetryDelayMs: 1,
    });
    const { tag } = await tapChip(ev2Chip('spark2', SPARK2_KEY));
    const result = await answerScanRequest(tag, client, 'sr_1');
    expect(result).toMatchObject({ requestId: 'sr_1', chip: 'spark2', answeredAt: ANSWERED_AT });
    const answers = server.to('/scan-requests/sr_1/answer');
    expect(answers).toHaveLength(2);
    expect(answers[1]!.body).toBe(answers[0]!.body);
    expect(server.to('/scan-requests/sr_1/claim')).toHaveLength(1);
  });
});
