import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { AesKey, constantTimeEqual, rotateLeft } from '../src/crypto/aes.js';
import { ErrorCode, isTaplineError } from '../src/model/errors.js';
import {
  authenticateEv2First,
  beginSplitAuthentication,
  deriveEv2SessionKeys,
  ev2SessionVectors,
  finishSplitAuthentication,
  pcdAnswerChallenge,
  verifyPiccAnswer,
} from '../src/tags/ntag4xx/index.js';
import { concatBytes, fromHex, toHex } from '../src/util/bytes.js';
import { scriptedCard } from './helpers.js';

// AN12196 §6.6 Table 14, as recomputed in protocols.md §3.2.
const T14 = {
  key: new Uint8Array(16),
  part1: '9071000002000000',
  encRndB: 'A04C124213C186F22399D33AC2A30215',
  rndB: 'B9E2FC789B64BF237CCCAA20EC7E6E48',
  rndA: '13C5DB8A5930439FC3DEF9A4C675360F',
  rndBPrime: 'E2FC789B64BF237CCCAA20EC7E6E48B9',
  part2Data: '35C3E05A752E0144BAC0DE51C1F22C56B34408A23D8AEA266CAB947EA8E0118D',
  answer: '3FA64DB5446D1F34CD6EA311167F5E4985B89690C04A05F17FA7AB2F08120663',
  ti: '9D00C4DF',
  sv1: 'A55A0001008013C56268A548D8FBBF237CCCAA20EC7E6E48C3DEF9A4C675360F',
  sv2: '5AA50001008013C56268A548D8FBBF237CCCAA20EC7E6E48C3DEF9A4C675360F',
  enc: '1309C877509E5A215007FF0ED19CA564',
  mac: '4C6626F5E72EA694202139295C7A7FC7',
} as const;

const part2Apdu = `90AF000020 ${T14.part2Data} 00`;
const lower = (hex: string) => toHex(fromHex(hex));

function flipBit(bytes: Uint8Array, bit: number): Uint8Array {
  const out = Uint8Array.from(bytes);
  out[bit >>> 3]! ^= 1 << (bit & 7);
  return out;
}

describe('AuthenticateEV2First, AN12196 Table 14', () => {
  it('derives SV1, SV2 and the session keys of Table 14', () => {
    const { sv1, sv2 } = ev2SessionVectors(fromHex(T14.rndA), fromHex(T14.rndB));
    expect(toHex(sv1)).toBe(lower(T14.sv1));
    expect(toHex(sv2)).toBe(lower(T14.sv2));
    const keys = deriveEv2SessionKeys(T14.key, fromHex(T14.rndA), fromHex(T14.rndB));
    expect(toHex(keys.enc)).toBe(lower(T14.enc));
    expect(toHex(keys.mac)).toBe(lower(T14.mac));
  });

  it('runs the Table 14 transcript byte for byte with RndA injected', async () => {
    const card = scriptedCard([
      [T14.part1, `${T14.encRndB} 91AF`],
      [part2Apdu, `${T14.answer} 9100`],
    ]);
    const session = await authenticateEv2First(card.channel, { keyNo: 0, key: T14.key, rndA: fromHex(T14.rndA) });
    card.done();
    expect(toHex(session.ti)).toBe(lower(T14.ti));
    expect(toHex(session.encKey)).toBe(lower(T14.enc));
    expect(toHex(session.macKey)).toBe(lower(T14.mac));
    expect(session.cmdCtr).toBe(0);
    expect(toHex(session.pdCap2)).toBe('000000000000');
    expect(toHex(session.pcdCap2)).toBe('000000000000');
    expect(session.keyNo).toBe(0);
    expect(card.channel.exchanges).toBe(2);
  });

  it('computes the PCD half of Table 14 without a card', () => {
    const { response32, rndB } = pcdAnswerChallenge(T14.key, fromHex(T14.encRndB), fromHex(T14.rndA));
    expect(toHex(rndB)).toBe(lower(T14.rndB));
    expect(toHex(rotateLeft(rndB))).toBe(lower(T14.rndBPrime));
    expect(toHex(response32)).toBe(lower(T14.part2Data));
    const session = verifyPiccAnswer(T14.key, fromHex(T14.rndA), rndB, fromHex(T14.answer));
    expect(toHex(session.ti)).toBe(lower(T14.ti));
    expect(toHex(session.macKey)).toBe(lower(T14.mac));
  });

  it('sends PCDcap2 with its LenCap', async () => {
    const card = scriptedCard([['9071000008 03 06 000000000000 00', '91AE']]);
    await expect(
      authenticateEv2First(card.channel, { keyNo: 3, key: T14.key, pcdCap2: new Uint8Array(6) }),
    ).rejects.toMatchObject({ code: ErrorCode.AuthenticationFailed });
    card.done();
  });

  it('keeps the session keys out of JSON and inspection', async () => {
    const session = verifyPiccAnswer(T14.key, fromHex(T14.rndA), fromHex(T14.rndB), fromHex(T14.answer));
    const { inspect } = await import('node:util');
    for (const text of [JSON.stringify(session), inspect(session, { depth: 5 })]) {
      expect(text.toLowerCase()).not.toContain(lower(T14.enc));
      expect(text.toLowerCase()).not.toContain(lower(T14.mac));
    }
  });
});

describe('AuthenticateEV2First error paths', () => {
  it('fails with AUTHENTICATION_FAILED on 91 AE in either part', async () => {
    const first = scriptedCard([[T14.part1, '91AE']]);
    await expect(authenticateEv2First(first.channel, { keyNo: 0, key: T14.key })).rejects.toMatchObject({
      code: ErrorCode.AuthenticationFailed,
      details: { sw: '91ae' },
    });
    const second = scriptedCard([
      [T14.part1, `${T14.encRndB} 91AF`],
      [part2Apdu, '91AE'],
    ]);
    await expect(
      authenticateEv2First(second.channel, { keyNo: 0, key: T14.key, rndA: fromHex(T14.rndA) }),
    ).rejects.toMatchObject({ code: ErrorCode.AuthenticationFailed });
  });

  it('fails with AUTHENTICATION_FAILED when RndA′ does not match', async () => {
    const forged = flipBit(fromHex(T14.answer), 5 * 8 + 3);
    const card = scriptedCard([
      [T14.part1, `${T14.encRndB} 91AF`],
      [part2Apdu, `${toHex(forged)} 9100`],
    ]);
    const failure = authenticateEv2First(card.channel, { keyNo: 0, key: T14.key, rndA: fromHex(T14.rndA) });
    await expect(failure).rejects.toMatchObject({ code: ErrorCode.AuthenticationFailed });
    await expect(failure).rejects.not.toThrow(/13c5db8a|00000000000000000000000000000000/i);
  });

  it('fails with AUTHENTICATION_FAILED when the key is wrong', async () => {
    const wrongKey = new Uint8Array(16).fill(0x11);
    const { response32 } = pcdAnswerChallenge(wrongKey, fromHex(T14.encRndB), fromHex(T14.rndA));
    const withAnswer = scriptedCard([
      [T14.part1, `${T14.encRndB} 91AF`],
      [`90AF000020 ${toHex(response32)} 00`, `${T14.answer} 9100`],
    ]);
    await expect(
      authenticateEv2First(withAnswer.channel, { keyNo: 0, key: wrongKey, rndA: fromHex(T14.rndA) }),
    ).rejects.toMatchObject({ code: ErrorCode.AuthenticationFailed });
    withAnswer.done();
  });

  it('fails with TAG_STATUS and an extended-length hint on 91 7E', async () => {
    const card = scriptedCard([[T14.part1, '917E']]);
    const error: unknown = await authenticateEv2First(card.channel, { keyNo: 0, key: T14.key }).catch(
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ code: ErrorCode.TagStatus, details: { sw: '917e' } });
    expect(isTaplineError(error) && error.hint).toMatch(/extended-length/);
  });

  it('fails with PROTOCOL_ERROR on truncated answers', async () => {
    const short1 = scriptedCard([[T14.part1, `${T14.encRndB.slice(0, 30)} 91AF`]]);
    await expect(authenticateEv2First(short1.channel, { keyNo: 0, key: T14.key })).rejects.toMatchObject({
      code: ErrorCode.ProtocolError,
    });
    const short2 = scriptedCard([
      [T14.part1, `${T14.encRndB} 91AF`],
      [part2Apdu, `${T14.answer.slice(0, 62)} 9100`],
    ]);
    await expect(
      authenticateEv2First(short2.channel, { keyNo: 0, key: T14.key, rndA: fromHex(T14.rndA) }),
    ).rejects.toMatchObject({ code: ErrorCode.ProtocolError });
    const noStatus = scriptedCard([[T14.part1, '91']]);
    await expect(authenticateEv2First(noStatus.channel, { keyNo: 0, key: T14.key })).rejects.toMatchObject({
      code: ErrorCode.ProtocolError,
    });
  });

  it('hints at LRP when part 1 carries an AuthMode byte', async () => {
    const card = scriptedCard([[T14.part1, `01 ${T14.encRndB} 91AF`]]);
    const error: unknown = await authenticateEv2First(card.channel, { keyNo: 0, key: T14.key }).catch(
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ code: ErrorCode.ProtocolError });
    expect(isTaplineError(error) && error.hint).toMatch(/LRP/);
  });

  it('refuses bad caller input with INVALID_ARGUMENT before sending anything', async () => {
    const card = scriptedCard([]);
    const cases = [
      { keyNo: 0, key: new Uint8Array(15) },
      { keyNo: 256, key: T14.key },
      { keyNo: 0, key: T14.key, rndA: new Uint8Array(8) },
      { keyNo: 0, key: T14.key, pcdCap2: new Uint8Array(7) },
      { keyNo: 0, key: T14.key, pcdCap2: Uint8Array.of(0x02) },
    ];
    for (const options of cases) {
      await expect(authenticateEv2First(card.channel, options)).rejects.toMatchObject({
        code: ErrorCode.InvalidArgument,
      });
    }
    expect(card.sent).toEqual([]);
  });
});

describe('split authentication (the VivoKey platform plays the PCD)', () => {
  it('relays the Table 14 bytes untouched in both directions', async () => {
    const card = scriptedCard([
      [T14.part1, `${T14.encRndB} 91AF`],
      [part2Apdu, `${T14.answer} 9100`],
    ]);
    const challenge = await beginSplitAuthentication(card.channel, 0);
    expect(toHex(challenge)).toBe(lower(T14.encRndB));
    // The platform's answer, as /challenge would return it.
    const platform = fromHex(T14.part2Data);
    const reply = await finishSplitAuthentication(card.channel, platform);
    card.done();
    expect(toHex(reply.response)).toBe(lower(`${T14.answer}9100`));
    expect(reply.response).toHaveLength(34);
    expect(toHex(reply.answer)).toBe(lower(T14.answer));
    expect(reply.sw).toBe(0x9100);
    expect(toHex(platform)).toBe(lower(T14.part2Data));
  });

  it('asks for key number 2 the way Intra does', async () => {
    const card = scriptedCard([['90 71 00 00 02 02 00 00', `${T14.encRndB} 91AF`]]);
    expect(toHex(await beginSplitAuthentication(card.channel, 2))).toBe(lower(T14.encRndB));
    card.done();
  });

  it('lets the platform side finish with the relayed bytes', () => {
    const rndA = fromHex(T14.rndA);
    const { response32, rndB } = pcdAnswerChallenge(T14.key, fromHex(T14.encRndB), rndA);
    expect(toHex(response32)).toBe(lower(T14.part2Data));
    const relayed = fromHex(`${T14.answer}9100`);
    const session = verifyPiccAnswer(T14.key, rndA, rndB, relayed.subarray(0, 32), 2);
    expect(session.keyNo).toBe(2);
    expect(toHex(session.encKey)).toBe(lower(T14.enc));
  });

  it('refuses a platform response that is not 32 bytes before sending it', async () => {
    const card = scriptedCard([]);
    await expect(finishSplitAuthentication(card.channel, new Uint8Array(31))).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
    });
    expect(card.sent).toEqual([]);
  });

  it('maps the chip refusals of the relay to typed errors', async () => {
    const lost = scriptedCard([[T14.part1, '917E']]);
    await expect(beginSplitAuthentication(lost.channel, 0)).rejects.toMatchObject({
      code: ErrorCode.TagStatus,
      hint: expect.stringMatching(/extended-length/) as unknown,
    });
    const denied = scriptedCard([[part2Apdu, '91AE']]);
    await expect(finishSplitAuthentication(denied.channel, fromHex(T14.part2Data))).rejects.toMatchObject({
      code: ErrorCode.AuthenticationFailed,
    });
    const lengthError = scriptedCard([[part2Apdu, '917E']]);
    await expect(finishSplitAuthentication(lengthError.channel, fromHex(T14.part2Data))).rejects.toMatchObject({
      code: ErrorCode.TagStatus,
    });
    const truncated = scriptedCard([[part2Apdu, `${T14.answer.slice(0, 60)} 9100`]]);
    await expect(finishSplitAuthentication(truncated.channel, fromHex(T14.part2Data))).rejects.toMatchObject({
      code: ErrorCode.ProtocolError,
    });
    const early = scriptedCard([[T14.part1, `${T14.encRndB} 9100`]]);
    await expect(beginSplitAuthentication(early.channel, 0)).rejects.toMatchObject({ code: ErrorCode.TagStatus });
  });
});

/** The chip's side of AuthenticateEV2First, built from the session helpers and the AES primitives only. */
function piccSide(key: Uint8Array, rndB: Uint8Array, ti: Uint8Array, pdCap2: Uint8Array) {
  const k = new AesKey(key);
  return {
    challenge: k.encryptCbc(rndB),
    answer(pcdResponse: Uint8Array): { answer: Uint8Array; rndA: Uint8Array } {
      const plain = k.decryptCbc(pcdResponse);
      const rndA = plain.slice(0, 16);
      if (!constantTimeEqual(plain.subarray(16), rotateLeft(rndB))) throw new Error('RndB′ mismatch');
      return { answer: k.encryptCbc(concatBytes(ti, rotateLeft(rndA), pdCap2, new Uint8Array(6))), rndA };
    },
  };
}

describe('EV2 authentication self-consistency (properties)', () => {
  const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });

  it('agrees with a PICC built from the session helpers for random keys and challenges', () => {
    fc.assert(
      fc.property(bytes(16), bytes(16), bytes(16), bytes(4), bytes(6), (key, rndA, rndB, ti, pdCap2) => {
        const picc = piccSide(key, rndB, ti, pdCap2);
        const pcd = pcdAnswerChallenge(key, picc.challenge, rndA);
        expect(toHex(pcd.rndB)).toBe(toHex(rndB));
        const { answer, rndA: seen } = picc.answer(pcd.response32);
        expect(toHex(seen)).toBe(toHex(rndA));
        const session = verifyPiccAnswer(key, rndA, pcd.rndB, answer);
        const keys = deriveEv2SessionKeys(key, rndA, rndB);
        expect(toHex(session.ti)).toBe(toHex(ti));
        expect(toHex(session.pdCap2)).toBe(toHex(pdCap2));
        expect(toHex(session.encKey)).toBe(toHex(keys.enc));
        expect(toHex(session.macKey)).toBe(toHex(keys.mac));
        expect(session.cmdCtr).toBe(0);
      }),
      { numRuns: 200 },
    );
  });

  it('fails with AUTHENTICATION_FAILED when any bit of the chip answer flips', () => {
    fc.assert(
      fc.property(bytes(16), bytes(16), bytes(16), fc.integer({ min: 0, max: 255 }), (key, rndA, rndB, bit) => {
        const picc = piccSide(key, rndB, Uint8Array.of(1, 2, 3, 4), new Uint8Array(6));
        const pcd = pcdAnswerChallenge(key, picc.challenge, rndA);
        const { answer } = picc.answer(pcd.response32);
        expect(() => verifyPiccAnswer(key, rndA, pcd.rndB, flipBit(answer, bit))).toThrow(
          expect.objectContaining({ code: ErrorCode.AuthenticationFailed }),
        );
      }),
      { numRuns: 200 },
    );
  });

  it('makes the PICC refuse when any bit of the PCD response flips', () => {
    fc.assert(
      fc.property(bytes(16), bytes(16), bytes(16), fc.integer({ min: 0, max: 255 }), (key, rndA, rndB, bit) => {
        const picc = piccSide(key, rndB, Uint8Array.of(1, 2, 3, 4), new Uint8Array(6));
        const pcd = pcdAnswerChallenge(key, picc.challenge, rndA);
        const flipped = flipBit(pcd.response32, bit);
        // A flip in the first block garbles RndA only, which the chip cannot see; the PCD then rejects the answer.
        let refused = false;
        try {
          const { answer } = picc.answer(flipped);
          verifyPiccAnswer(key, rndA, pcd.rndB, answer);
        } catch (error) {
          refused = error instanceof Error;
          if (isTaplineError(error)) expect(error.code).toBe(ErrorCode.AuthenticationFailed);
        }
        expect(refused).toBe(true);
      }),
      { numRuns: 200 },
    );
  });
});
