import { createHash, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { SignJWT, generateKeyPair, jwtVerify, type CryptoKey } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ErrorCode,
  TaplineError,
  fromHex,
  isTaplineError,
  pcdAnswerChallenge,
  toHex,
  verifyPiccAnswer,
  verifyTam1Response,
  type AuthenticityClaims,
  type ChallengeRequest,
  type ChallengeResponse,
  type PlatformCallOptions,
  type PlatformClient,
  type SessionRequest,
  type SessionResponse,
  type Tag,
  type ValidateResponse,
  type VerifyTokenOptions,
} from '../src/index.js';
import { verifyChip, type RelayStep, type VerifyChipOptions } from '../src/platform/index.js';
import {
  APEX_CHIP_ID,
  APEX_KEY,
  NDEF_AID,
  SLIX_INFO,
  SPARK1_KEY,
  SPARK1_UID,
  SPARK2_KEY,
  SPARK2_UID,
  VERIFY_AID,
  ev2Chip,
  failure,
  key,
  releaseTaps,
  spark1Chip,
  tapChip,
  type ChipReader,
  type TestChip,
} from './relay-support.js';

// The relay runs against chips and a platform that both do the real cryptography (relay-support.ts), so a wrong chip
// answer fails exactly where it would in the field. The CLI's tests repeat the flows through the real simulator,
// reference platform and HTTP client.

// ---------------------------------------------------------------------------------------------------------------
// Platform

interface PendingChallenge {
  readonly request: ChallengeRequest;
  readonly rndA?: Uint8Array;
  readonly rndB?: Uint8Array;
  readonly ichallenge?: Uint8Array;
}

const signing = await generateKeyPair('ES256');
const otherSigning = await generateKeyPair('ES256');

/**
 * The platform's side, in process: plays the PCD of AuthenticateEV2First and the TAM1 verifier with the chips' keys,
 * keeps every `/challenge` token single-use, and issues ES256 tokens whose `sub` is a per-chip hash.
 */
class CryptoPlatform implements PlatformClient {
  readonly baseUrl = new URL('https://platform.relay-test/');
  readonly challenges: ChallengeRequest[] = [];
  readonly sessions: SessionRequest[] = [];
  readonly verified: string[] = [];
  /** Runs inside `/challenge` before it answers (a test removes the tag here, or fails the call). */
  onChallenge: ((options: PlatformCallOptions | undefined) => Promise<void> | void) | undefined;
  onSession: (() => void) | undefined;
  /** What `/challenge` answers instead of the real payload. */
  payloadOverride: string | undefined;
  signWith: CryptoKey = signing.privateKey;
  readonly #pending = new Map<string, PendingChallenge>();
  readonly #keys = new Map<string, Uint8Array>([
    [toHex(SPARK2_UID), SPARK2_KEY],
    [toHex(APEX_CHIP_ID), APEX_KEY],
  ]);

  async challenge(request: ChallengeRequest, options?: PlatformCallOptions): Promise<ChallengeResponse> {
    this.challenges.push(request);
    await this.onChallenge?.(options);
    const token = toHex(randomBytes(16));
    if (request.scheme === 1) {
      const ichallenge = Uint8Array.from(randomBytes(10));
      this.#pending.set(token, { request, ichallenge });
      return { payload: this.payloadOverride ?? toHex(ichallenge) + toHex(randomBytes(6)), token };
    }
    const chipKey = this.#keys.get(request.uid);
    if (!chipKey) throw new TaplineError(ErrorCode.PlatformRejected, 'Chip not enrolled.');
    const rndA = Uint8Array.from(randomBytes(16));
    const { response32, rndB } = pcdAnswerChallenge(chipKey, fromHex(request.message), rndA);
    this.#pending.set(token, { request, rndA, rndB });
    return { payload: this.payloadOverride ?? toHex(response32), token };
  }

  async session(request: SessionRequest): Promise<SessionResponse> {
    this.sessions.push(request);
    this.onSession?.();
    const pending = this.#pending.get(request.token);
    this.#pending.delete(request.token);
    if (!pending) throw new TaplineError(ErrorCode.PlatformRejected, 'Unknown or used token.');
    const response = fromHex(request.response);
    let genuine: boolean;
    if (pending.request.scheme === 2) {
      if (request.uid !== pending.request.uid || response.length !== 34 || toHex(response.subarray(32)) !== '9100') {
        throw new TaplineError(ErrorCode.PlatformRejected, 'Malformed chip response.');
      }
      try {
        verifyPiccAnswer(this.#keys.get(request.uid)!, pending.rndA!, pending.rndB!, response.subarray(0, 32), 2);
        genuine = true;
      } catch {
        genuine = false;
      }
    } else {
      genuine =
        request.uid === toHex(SPARK1_UID) &&
        response.length === 18 &&
        verifyTam1Response(SPARK1_KEY, pending.ichallenge!, response.subarray(2));
    }
    if (!genuine) throw new TaplineError(ErrorCode.PlatformRejected, 'The chip did not authenticate.');
    const sub = createHash('sha256').update(`relay-test-dev:${request.uid}`).digest('hex');
    const token = await new SignJWT({ atp: 'mutual', ...(request.cld === undefined ? {} : { cld: request.cld }) })
      .setProtectedHeader({ alg: 'ES256', kid: 'relay-test' })
      .setSubject(sub)
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(this.signWith);
    return { token };
  }

  validate(): Promise<ValidateResponse> {
    return Promise.reject(new Error('not used'));
  }

  async verifyToken(token: string, _options?: VerifyTokenOptions): Promise<AuthenticityClaims> {
    this.verified.push(token);
    try {
      const { payload } = await jwtVerify(token, signing.publicKey, { algorithms: ['ES256'] });
      return payload as AuthenticityClaims;
    } catch (error) {
      throw new TaplineError(ErrorCode.TokenInvalid, 'The token signature does not verify.', { cause: error });
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Set-up: a tap on a real container's reader, and a platform.

interface Bench {
  readonly reader: ChipReader;
  readonly tag: Tag;
  readonly platform: CryptoPlatform;
}

afterEach(releaseTaps);

async function tap(chip: TestChip): Promise<Bench> {
  return { ...(await tapChip(chip)), platform: new CryptoPlatform() };
}

// ---------------------------------------------------------------------------------------------------------------

describe('verifyChip: the relay as VivoKey clients run it', () => {
  it('Spark 2: SELECT, 90 71 key 2, /challenge, 90 AF, /session, token: three APDUs after detection', async () => {
    const { reader, tag, platform } = await tap(ev2Chip('spark2', SPARK2_KEY));
    const steps: RelayStep[] = [];
    const result = await verifyChip(tag, platform, { onStep: (s) => steps.push(s) });

    expect(result).toMatchObject({ result: 'success', chip: 'spark2', uid: '04517ca23b6e80', apdus: 3 });
    expect(reader.frames).toHaveLength(3);
    expect(reader.frames[0]).toBe(`00a4040c07${NDEF_AID}00`);
    expect(reader.frames[1]).toBe('9071000002020000');
    expect(reader.frames[2]).toMatch(/^90af000020[0-9a-f]{64}00$/);
    expect(platform.challenges).toEqual([
      { scheme: 2, message: expect.stringMatching(/^[0-9a-f]{32}$/), uid: '04517ca23b6e80' },
    ]);
    expect(platform.sessions).toHaveLength(1);
    expect(platform.sessions[0]).toMatchObject({
      uid: '04517ca23b6e80',
      response: expect.stringMatching(/^[0-9a-f]{64}9100$/),
    });
    expect(platform.sessions[0]).not.toHaveProperty('cld');
    expect(result.token.split('.')).toHaveLength(3);
    expect(result.sub).toMatch(/^[0-9a-f]{64}$/);
    expect(result.claims.sub).toBe(result.sub);
    expect(platform.verified).toEqual([result.token]);
    expect(steps).toEqual([
      'identify',
      'select',
      'chip-challenge',
      'platform-challenge',
      'chip-answer',
      'chip-released',
      'session',
      'verify-token',
    ]);
  });

  it('Apex: SELECT of the Verify applet (its chip id is the uid), then as a Spark 2', async () => {
    const { reader, tag, platform } = await tap(ev2Chip('apex', APEX_KEY));
    const result = await verifyChip(tag, platform);
    expect(result).toMatchObject({ result: 'success', chip: 'apex', uid: 'a5e1d0c3b2a19081', apdus: 3 });
    expect(reader.frames[0]).toBe(`00a404000c${VERIFY_AID}00`);
    expect(reader.frames[1]).toBe('9071000002020000');
    expect(platform.challenges[0]).toMatchObject({ scheme: 2, uid: 'a5e1d0c3b2a19081' });
    expect(platform.sessions[0]).toMatchObject({ uid: 'a5e1d0c3b2a19081' });
  });

  it('Spark 1: /challenge first, then one AUTHENTICATE with key 2 and the first 10 payload bytes', async () => {
    const { reader, tag, platform } = await tap(spark1Chip(SPARK1_KEY));
    let framesAtChallenge = -1;
    platform.onChallenge = () => void (framesAtChallenge = reader.frames.length);
    const result = await verifyChip(tag, platform);

    expect(result).toMatchObject({ result: 'success', chip: 'spark1', uid: 'e004011809a73b5c', apdus: 1 });
    expect(framesAtChallenge).toBe(0);
    expect(platform.challenges).toEqual([{ scheme: 1 }]);
    // 20 35, UID LSB first, CSI 00, 00, key 02, IChallenge.
    expect(reader.frames[0]).toMatch(/^20355c3ba709180104e0000002[0-9a-f]{20}$/);
    // The whole reply, flags and the leading byte included.
    expect(platform.sessions[0]).toMatchObject({
      uid: 'e004011809a73b5c',
      response: expect.stringMatching(/^0000[0-9a-f]{32}$/),
    });
  });

  it('reports time in field, network time and chip time consistently', async () => {
    const { tag, platform } = await tap(ev2Chip('spark2', SPARK2_KEY));
    platform.onChallenge = () => new Promise((resolve) => setTimeout(resolve, 30));
    const { timings } = await verifyChip(tag, platform);
    expect(timings.challengeMs).toBeGreaterThanOrEqual(25);
    expect(timings.networkInFieldMs).toBe(timings.challengeMs);
    expect(timings.networkMs).toBeCloseTo(timings.challengeMs + timings.sessionMs + timings.verifyMs, 2);
    expect(timings.relayInFieldMs).toBeGreaterThanOrEqual(timings.networkInFieldMs + timings.chipMs - 0.01);
    expect(timings.inFieldMs).toBeGreaterThanOrEqual(timings.relayInFieldMs);
    expect(timings.tapToResultMs).toBeGreaterThanOrEqual(timings.inFieldMs + timings.sessionMs + timings.verifyMs - 1);
  });

  it('passes client data to /session and requires it back in the token', async () => {
    const { tag, platform } = await tap(ev2Chip('spark2', SPARK2_KEY));
    const result = await verifyChip(tag, platform, { cld: '{"order":42}' });
    expect(platform.sessions[0]?.cld).toBe('{"order":42}');
    expect(result.claims.cld).toBe('{"order":42}');
  });

  it('refuses client data the platform would refuse, before touching the chip', async () => {
    const { reader, tag, platform } = await tap(ev2Chip('spark2', SPARK2_KEY));
    for (const cld of ['', 'x'.repeat(2049)]) {
      expect((await failure(verifyChip(tag, platform, { cld }))).code).toBe(ErrorCode.InvalidArgument);
    }
    expect(reader.frames).toEqual([]);
    expect(platform.challenges).toEqual([]);
    await verifyChip(tag, platform, { cld: 'x'.repeat(2048) });
  });

  it('refuses a token that does not carry the client data sent', async () => {
    const { tag, platform } = await tap(ev2Chip('spark2', SPARK2_KEY));
    const session = platform.session.bind(platform);
    platform.session = (request) => session({ ...request, cld: 'something else' });
    const error = await failure(verifyChip(tag, platform, { cld: 'mine' }));
    expect(error.code).toBe(ErrorCode.TokenInvalid);
    expect(error.message).toMatch(/cld/);
  });

  it('property: succeeds for any chip key the platform holds, and fails for any other', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.integer({ min: 0, max: 127 }),
        fc.constantFrom('spark2' as const, 'spark1' as const),
        async (chipKey, bit, kind) => {
          const wrong = Uint8Array.from(chipKey);
          wrong[bit >> 3]! ^= 1 << (bit & 7);
          for (const [k, ok] of [
            [chipKey, true],
            [wrong, false],
          ] as const) {
            // The platform holds `chipKey`; the chip holds `k`.
            const { tag, platform } = await tap(kind === 'spark2' ? ev2Chip('spark2', k) : spark1Chip(k));
            const outcome = await verifyChip(tag, new KeyedPlatform(chipKey, platform)).then(
              () => 'ok',
              (e: unknown) => (isTaplineError(e) ? e.code : 'other'),
            );
            if (ok) expect(outcome).toBe('ok');
            // Spark 2: the chip itself refuses the platform's answer (91 AE); Spark 1: the platform refuses the chip's.
            else expect(outcome).toBe(kind === 'spark2' ? ErrorCode.AuthenticationFailed : ErrorCode.PlatformRejected);
          }
        },
      ),
      { numRuns: 15 },
    );
  });
});

/** A platform holding one key for whichever chip is tapped; tokens are checked by a {@link CryptoPlatform}. */
class KeyedPlatform implements PlatformClient {
  readonly baseUrl = new URL('https://platform.relay-test/');
  readonly #pending = new Map<string, { rndA: Uint8Array; rndB: Uint8Array } | { ichallenge: Uint8Array }>();
  constructor(
    private readonly chipKey: Uint8Array,
    private readonly tokens: CryptoPlatform,
  ) {}

  challenge(request: ChallengeRequest): Promise<ChallengeResponse> {
    const token = toHex(randomBytes(16));
    if (request.scheme === 1) {
      const ichallenge = Uint8Array.from(randomBytes(10));
      this.#pending.set(token, { ichallenge });
      return Promise.resolve({ payload: toHex(ichallenge), token });
    }
    const rndA = Uint8Array.from(randomBytes(16));
    const { response32, rndB } = pcdAnswerChallenge(this.chipKey, fromHex(request.message), rndA);
    this.#pending.set(token, { rndA, rndB });
    return Promise.resolve({ payload: toHex(response32), token });
  }

  async session(request: SessionRequest): Promise<SessionResponse> {
    const pending = this.#pending.get(request.token);
    this.#pending.delete(request.token);
    const response = fromHex(request.response);
    const ok =
      pending !== undefined &&
      ('ichallenge' in pending
        ? verifyTam1Response(this.chipKey, pending.ichallenge, response.subarray(2))
        : (() => {
            try {
              verifyPiccAnswer(this.chipKey, pending.rndA, pending.rndB, response.subarray(0, 32), 2);
              return true;
            } catch {
              return false;
            }
          })());
    if (!ok) throw new TaplineError(ErrorCode.PlatformRejected, 'The chip did not authenticate.');
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: 'relay-test' })
      .setSubject('0'.repeat(64))
      .sign(signing.privateKey);
    return { token };
  }

  validate(): Promise<ValidateResponse> {
    return Promise.reject(new Error('not used'));
  }

  verifyToken(token: string): Promise<AuthenticityClaims> {
    return this.tokens.verifyToken(token);
  }
}

describe('verifyChip: a chip that does not prove itself', () => {
  it('Spark 2 with a tampered final answer: the platform refuses it at /session (PLATFORM_REJECTED)', async () => {
    const { tag, platform } = await tap(ev2Chip('spark2', SPARK2_KEY, true));
    const error = await failure(verifyChip(tag, platform));
    expect(error.code).toBe(ErrorCode.PlatformRejected);
    expect(error.message).toMatch(/\/session/);
    expect(error.details['step']).toBe('session');
    expect(platform.sessions).toHaveLength(1);
    expect(platform.verified).toEqual([]);
  });

  it('Spark 2 with another key: the chip refuses the platform (AUTHENTICATION_FAILED), nothing submitted', async () => {
    const { tag, platform } = await tap(ev2Chip('spark2', key('not the platform key')));
    const error = await failure(verifyChip(tag, platform));
    expect(error.code).toBe(ErrorCode.AuthenticationFailed);
    expect(platform.sessions).toEqual([]);
  });

  it('Spark 1 with another key: the platform refuses the TResponse (PLATFORM_REJECTED)', async () => {
    const { tag, platform } = await tap(spark1Chip(key('not the platform key')));
    const error = await failure(verifyChip(tag, platform));
    expect(error.code).toBe(ErrorCode.PlatformRejected);
    expect(platform.sessions).toHaveLength(1);
  });

  it('refuses a chip that is not a VivoKey implant, naming the ones that work, without calling the platform', async () => {
    const { tag, platform } = await tap({ info: SLIX_INFO, handle: () => undefined });
    const error = await failure(verifyChip(tag, platform));
    expect(error.code).toBe(ErrorCode.UnsupportedCapability);
    expect(error.message).toMatch(/Spark 1, Spark 2 and Apex/);
    expect(platform.challenges).toEqual([]);
  });
});

describe('verifyChip: the tag leaves', () => {
  it('between /challenge and the second APDU: TAG_LOST naming the step, /session never called', async () => {
    const { reader, tag, platform } = await tap(ev2Chip('spark2', SPARK2_KEY));
    platform.onChallenge = () => reader.remove();
    const error = await failure(verifyChip(tag, platform));
    expect(error.code).toBe(ErrorCode.TagLost);
    expect(error.message).toBe(
      "The tag left the reader after the platform's challenge, before the chip answered; nothing was submitted.",
    );
    expect(error.hint).toMatch(/keep the implant on the reader/i);
    expect(error.details['step']).toBe('chip-answer');
    expect(reader.frames).toHaveLength(2);
    expect(platform.challenges).toHaveLength(1);
    expect(platform.sessions).toEqual([]);
  });

  it('Spark 1 between /challenge and AUTHENTICATE: TAG_LOST, no frame sent, /session never called', async () => {
    const { reader, tag, platform } = await tap(spark1Chip(SPARK1_KEY));
    platform.onChallenge = () => reader.remove();
    const error = await failure(verifyChip(tag, platform));
    expect(error.code).toBe(ErrorCode.TagLost);
    expect(error.details['step']).toBe('chip-answer');
    expect(reader.frames).toEqual([]);
    expect(platform.sessions).toEqual([]);
  });

  it('while the platform is still preparing the challenge: TAG_LOST at once, not after the platform answers', async () => {
    const { reader, tag, platform } = await tap(ev2Chip('spark2', SPARK2_KEY));
    platform.onChallenge = (options) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, 5000);
        options?.signal?.addEventListener('abort', () => {
          clearTimeout(timer);
          reject(options.signal!.reason as Error);
        });
      });
    setTimeout(() => reader.remove(), 20);
    const started = Date.now();
    const error = await failure(verifyChip(tag, platform));
    expect(Date.now() - started).toBeLessThan(1000);
    expect(error.code).toBe(ErrorCode.TagLost);
    expect(error.details['step']).toBe('platform-challenge');
    expect(platform.sessions).toEqual([]);
  });

  it('during the first half: TAG_LOST saying nothing was sent to the platform', async () => {
    const { reader, tag, platform } = await tap(ev2Chip('spark2', SPARK2_KEY));
    const chip = ev2Chip('spark2', SPARK2_KEY);
    // Leave as the chip is asked for its challenge.
    reader.present({
      info: chip.info,
      handle: (c, f) => {
        if (toHex(f).startsWith('9071')) {
          queueMicrotask(() => reader.remove());
          return undefined;
        }
        return chip.handle(c, f);
      },
    });
    const fresh = reader.currentTag!;
    const error = await failure(verifyChip(fresh, platform));
    expect(error.code).toBe(ErrorCode.TagLost);
    expect(error.message).toMatch(/nothing was sent to the platform/);
    expect(error.details['step']).toBe('chip-challenge');
    expect(platform.challenges).toEqual([]);
    // The first tag object belongs to a presence that has already ended.
    expect((await failure(verifyChip(tag, platform))).details['step']).toBe('identify');
  });

  it('after the chip answered: the verification completes (the chip is no longer needed)', async () => {
    const { reader, tag, platform } = await tap(ev2Chip('spark2', SPARK2_KEY));
    platform.onSession = () => reader.remove();
    const result = await verifyChip(tag, platform, {
      onStep: (s) => {
        if (s === 'chip-released') reader.remove();
      },
    });
    expect(result.result).toBe('success');
    expect(platform.sessions).toHaveLength(1);
  });
});

describe('verifyChip: platform failures', () => {
  it('5xx at /challenge: PLATFORM_UNAVAILABLE, the chip untouched after part 1, /session never called', async () => {
    const { reader, tag, platform } = await tap(ev2Chip('spark2', SPARK2_KEY));
    platform.onChallenge = () => {
      throw new TaplineError(ErrorCode.PlatformUnavailable, 'POST /challenge answered 503.', {
        hint: 'Try again later.',
      });
    };
    const error = await failure(verifyChip(tag, platform));
    expect(error.code).toBe(ErrorCode.PlatformUnavailable);
    expect(error.message).toMatch(/\/challenge.*503/);
    expect(error.hint).toBe('Try again later.');
    expect(reader.frames).toEqual([`00a4040c07${NDEF_AID}00`, '9071000002020000']);
    expect(platform.sessions).toEqual([]);
  });

  it('a failing /session is not retried: the token goes out exactly once', async () => {
    const { tag, platform } = await tap(ev2Chip('spark2', SPARK2_KEY));
    platform.onSession = () => {
      throw new TaplineError(ErrorCode.PlatformUnavailable, 'POST /session answered 502.');
    };
    const error = await failure(verifyChip(tag, platform));
    expect(error.code).toBe(ErrorCode.PlatformUnavailable);
    expect(error.message).toMatch(/not retried/);
    expect(platform.sessions).toHaveLength(1);
  });

  it('a platform error that is not a Tapline error becomes PLATFORM_UNAVAILABLE', async () => {
    const { tag, platform } = await tap(spark1Chip(SPARK1_KEY));
    platform.onChallenge = () => {
      throw new Error('socket hang up');
    };
    expect((await failure(verifyChip(tag, platform))).code).toBe(ErrorCode.PlatformUnavailable);
  });

  it('a malformed challenge payload: PROTOCOL_ERROR, nothing more sent to the chip', async () => {
    const { reader, tag, platform } = await tap(ev2Chip('spark2', SPARK2_KEY));
    platform.payloadOverride = 'abcd';
    const error = await failure(verifyChip(tag, platform));
    expect(error.code).toBe(ErrorCode.ProtocolError);
    expect(reader.frames).toHaveLength(2);
    expect(platform.sessions).toEqual([]);
  });

  it('a token that does not verify: TOKEN_INVALID', async () => {
    const { tag, platform } = await tap(ev2Chip('apex', APEX_KEY));
    platform.signWith = otherSigning.privateKey;
    const error = await failure(verifyChip(tag, platform));
    expect(error.code).toBe(ErrorCode.TokenInvalid);
    expect(error.details['step']).toBe('verify-token');
  });

  it('a token whose claims name no chip: TOKEN_INVALID', async () => {
    const { tag, platform } = await tap(ev2Chip('spark2', SPARK2_KEY));
    platform.verifyToken = () => Promise.resolve({} as AuthenticityClaims);
    expect((await failure(verifyChip(tag, platform))).code).toBe(ErrorCode.TokenInvalid);
  });
});

describe('verifyChip: options', () => {
  it('aborts with ABORTED and leaves /session alone', async () => {
    const { tag, platform } = await tap(ev2Chip('spark2', SPARK2_KEY));
    const controller = new AbortController();
    platform.onChallenge = () => controller.abort(new Error('Ctrl-C'));
    const error = await failure(verifyChip(tag, platform, { signal: controller.signal } satisfies VerifyChipOptions));
    expect(error.code).toBe(ErrorCode.Aborted);
    expect(platform.sessions).toEqual([]);
  });

  it('passes the platform timeout to every platform call', async () => {
    const { tag, platform } = await tap(ev2Chip('spark2', SPARK2_KEY));
    const seen: (number | undefined)[] = [];
    platform.onChallenge = (options) => void seen.push(options?.timeoutMs);
    await verifyChip(tag, platform, { platformTimeoutMs: 1234 });
    expect(seen).toEqual([1234]);
  });

  it('measures the wait before the call with the container clock', async () => {
    const { tag, platform } = await tap(ev2Chip('spark2', SPARK2_KEY));
    const clock = { now: () => tag.arrivedAt + 100 };
    const { timings } = await verifyChip(tag, platform, { clock });
    expect(timings.inFieldMs).toBeGreaterThanOrEqual(100);
    expect(timings.inFieldMs - timings.relayInFieldMs).toBeCloseTo(100, 1);
  });
});
