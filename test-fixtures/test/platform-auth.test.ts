import { describe, expect, it } from 'vitest';
import { decodeProtectedHeader } from 'jose';
import { fromHex, toHex } from '@tapline/core';
import {
  APEX_VERIFY_KEY_HEX,
  Spark2KeyNo,
  chipSubject,
  createApexChip,
  createChipRegistry,
  createSpark1Chip,
  createSpark2Chip,
  spark2FixtureKeys,
} from '../src/index.js';
import { call, platformForTest, scheme1Dialogue, scheme2Dialogue, verifyAgainstJwks } from './platform-support.js';

const HEX64 = /^[0-9a-f]{64}$/;

/** Flips one bit of a hex string at byte `index`. */
function flipBit(hex: string, index: number): string {
  const bytes = fromHex(hex);
  bytes[index]! ^= 0x01;
  return toHex(bytes);
}

describe('reference platform: scheme 2 with a virtual Spark 2', () => {
  it('authenticates a Spark 2 end to end and issues an ES256 JWT that verifies against the JWKS endpoint', async () => {
    const platform = await platformForTest();
    const chip = createSpark2Chip();
    const dialogue = await scheme2Dialogue(platform, chip, 'spark2');
    const session = await call(platform, '/session', { ...dialogue, cld: '{"data":"testing"}' });
    expect(session.status).toBe(200);
    const token = session.json!['token'] as string;

    const { payload, protectedHeader } = await verifyAgainstJwks(platform, token);
    expect(protectedHeader).toEqual({ typ: 'JWT', alg: 'ES256', kid: platform.currentKid });
    expect(payload).toMatchObject({
      dev_id: platform.devId,
      type: 2,
      product: 2,
      atp: 'mutual',
      cld: '{"data":"testing"}',
      iss: 'auth.vivokey.com',
    });
    expect(payload.sub).toMatch(HEX64);
    expect(payload.sub).toBe(platform.subFor(chip.info.uid));
    expect(payload.exp! - payload.iat!).toBe(300);
    expect(platform.stats).toMatchObject({ challengesIssued: 1, tokensConsumed: 1, jwtsIssued: 1 });
    expect(platform.stats.sessions).toEqual({ succeeded: 1, failed: 0 });
  });

  it('gives a chip the same sub every time, another chip another sub, and another devId another sub', async () => {
    const subSalt = 'a fixed salt for this test';
    const one = await platformForTest({ subSalt, devId: '02d1a4a1-a41d-4406-a2f8-cb8e59847e4f' });
    const same = await platformForTest({ subSalt, devId: '02d1a4a1-a41d-4406-a2f8-cb8e59847e4f' });
    const otherDev = await platformForTest({ subSalt, devId: '7c0e6f0a-5b1e-4c55-9a43-1f4b7f6d2e11' });
    const spark424 = createSpark2Chip();
    const spark413 = createSpark2Chip({ model: 'ntag413' });

    const subOf = async (platform: typeof one, chip: typeof spark424): Promise<string> => {
      const session = await call(platform, '/session', await scheme2Dialogue(platform, chip, 'spark2'));
      return (await verifyAgainstJwks(platform, session.json!['token'] as string)).payload.sub!;
    };
    const first = await subOf(one, spark424);
    expect(first).toMatch(HEX64);
    expect(await subOf(one, spark424)).toBe(first);
    expect(await subOf(same, spark424)).toBe(first);
    expect(await subOf(one, spark413)).not.toBe(first);
    expect(await subOf(otherDev, spark424)).not.toBe(first);
    // The documented derivation, so that a relying party's expectations can be computed offline.
    expect(first).toBe(chipSubject(subSalt, one.devId, `spark2:${toHex(spark424.info.uid)}`));
  });

  it('refuses a wrong chip answer with 401 "authentication failed"', async () => {
    const platform = await platformForTest();
    const dialogue = await scheme2Dialogue(platform, createSpark2Chip(), 'spark2');
    const refused = await call(platform, '/session', { ...dialogue, response: flipBit(dialogue.response, 5) });
    expect(refused.status).toBe(401);
    expect(refused.json).toEqual({ error: 'authentication failed' });
    expect(platform.stats.sessions).toEqual({ succeeded: 0, failed: 1 });
  });

  it("refuses a genuine answer to another challenge (the chip's answer is bound to RndA)", async () => {
    const platform = await platformForTest();
    const chip = createSpark2Chip();
    const first = await scheme2Dialogue(platform, chip, 'spark2');
    const second = await scheme2Dialogue(platform, chip, 'spark2');
    const swapped = await call(platform, '/session', { ...second, response: first.response });
    expect(swapped.status).toBe(401);
    expect(swapped.json).toEqual({ error: 'authentication failed' });
  });

  it('consumes a token on first use: a second /session is refused, after a success and after a failure', async () => {
    const platform = await platformForTest();
    const chip = createSpark2Chip();

    const good = await scheme2Dialogue(platform, chip, 'spark2');
    expect((await call(platform, '/session', good)).status).toBe(200);
    const replay = await call(platform, '/session', good);
    expect(replay.status).toBe(400);
    expect(replay.json).toEqual({ error: 'challenge token already used' });

    const next = await scheme2Dialogue(platform, chip, 'spark2');
    const failed = await call(platform, '/session', { ...next, response: flipBit(next.response, 0) });
    expect(failed.status).toBe(401);
    const retry = await call(platform, '/session', next);
    expect(retry.status).toBe(400);
    expect(retry.json).toEqual({ error: 'challenge token already used' });

    // Even a malformed attempt spends it.
    const third = await scheme2Dialogue(platform, chip, 'spark2');
    expect((await call(platform, '/session', { ...third, response: 'zz' })).status).toBe(400);
    expect((await call(platform, '/session', third)).json).toEqual({ error: 'challenge token already used' });
    expect(platform.stats.tokensConsumed).toBe(3);
  });

  it('refuses a token it never issued', async () => {
    const platform = await platformForTest();
    const dialogue = await scheme2Dialogue(platform, createSpark2Chip(), 'spark2');
    const forged = await call(platform, '/session', { ...dialogue, token: 'not-a-token' });
    expect(forged.status).toBe(400);
    expect(forged.json).toEqual({ error: 'unknown challenge token' });
  });

  it('expires challenge tokens after tokenTtlMs on the injected clock', async () => {
    let now = Date.UTC(2025, 0, 1);
    const platform = await platformForTest({ clock: { now: () => now }, tokenTtlMs: 30_000 });
    const chip = createSpark2Chip();

    const inTime = await scheme2Dialogue(platform, chip, 'spark2');
    now += 29_999;
    const accepted = await call(platform, '/session', inTime);
    expect(accepted.status).toBe(200);
    const { payload } = await verifyAgainstJwks(platform, accepted.json!['token'] as string);
    expect(payload.iat).toBe(Math.floor(now / 1000));

    const late = await scheme2Dialogue(platform, chip, 'spark2');
    now += 30_000;
    const expired = await call(platform, '/session', late);
    expect(expired.status).toBe(400);
    expect(expired.json).toEqual({ error: 'challenge token expired' });
    // Expired and spent: a retry hears that it was used.
    expect((await call(platform, '/session', late)).json).toEqual({ error: 'challenge token already used' });
  });

  it('binds a scheme 2 token to the uid of its challenge', async () => {
    const platform = await platformForTest();
    const dialogue = await scheme2Dialogue(platform, createSpark2Chip(), 'spark2');
    const other = toHex(createSpark2Chip({ model: 'ntag413' }).info.uid);
    const refused = await call(platform, '/session', { ...dialogue, uid: other });
    expect(refused.status).toBe(400);
    expect(refused.json).toEqual({ error: 'the challenge token was issued for another chip' });
  });

  it('authenticates a Spark 2 personalised with other keys once it is enrolled with them', async () => {
    const keys = spark2FixtureKeys().map((key) => key.map((b) => b ^ 0x5a));
    const chip = createSpark2Chip({ uid: fromHex('04112233445566'), keys });
    const platform = await platformForTest({ chips: createChipRegistry() });
    expect(
      (await call(platform, '/challenge', { scheme: 2, message: '00'.repeat(16), uid: '04112233445566' })).json,
    ).toEqual({ error: 'chip not enrolled' });
    platform.chips.enrollVirtualChip(chip, {
      authKey: keys[Spark2KeyNo.Platform]!,
      sunKey: keys[Spark2KeyNo.SdmFileRead]!,
    });
    const session = await call(platform, '/session', await scheme2Dialogue(platform, chip, 'spark2'));
    expect(session.status).toBe(200);
  });

  it('answers a /challenge for a chip whose key it does not hold with a payload the chip rejects', async () => {
    const platform = await platformForTest({
      chips: createChipRegistry([{ kind: 'spark2', uid: '04517CA23B6E80', authKey: new Uint8Array(16) }]),
    });
    // The chip decrypts RndB′ with its own key 2, finds it wrong, and answers 91 AE: the relay never gets to /session.
    await expect(scheme2Dialogue(platform, createSpark2Chip(), 'spark2')).rejects.toMatchObject({
      code: 'AUTHENTICATION_FAILED',
    });
  });
});

describe('reference platform: scheme 2 with a virtual Apex', () => {
  it('authenticates an Apex through its Verify applet, the uid being the 8-byte chip id', async () => {
    const platform = await platformForTest();
    const chip = createApexChip();
    const dialogue = await scheme2Dialogue(platform, chip, 'apex');
    expect(dialogue.uid).toBe('a5e1d0c3b2a19081');
    const session = await call(platform, '/session', dialogue);
    expect(session.status).toBe(200);
    const { payload } = await verifyAgainstJwks(platform, session.json!['token'] as string);
    expect(payload).toMatchObject({ type: 3, product: 8, atp: 'mutual' });
    expect(payload.sub).toMatch(HEX64);
    expect(payload.sub).toBe(platform.subFor(dialogue.uid));
    expect(payload).not.toHaveProperty('cld');
  });

  it('refuses an Apex whose Verify key differs from the enrolled one', async () => {
    const platform = await platformForTest();
    const chip = createApexChip({ verifyKey: fromHex(APEX_VERIFY_KEY_HEX).map((b) => b ^ 1) });
    await expect(scheme2Dialogue(platform, chip, 'apex')).rejects.toMatchObject({ code: 'AUTHENTICATION_FAILED' });
  });
});

describe('reference platform: scheme 1 with a virtual Spark 1', () => {
  it("authenticates a Spark 1 with TAM1 through core's Iso15693Tag.authenticate", async () => {
    const platform = await platformForTest({ sessionAtp: 'mau' });
    const chip = createSpark1Chip();
    const challenge = await call(platform, '/challenge', { scheme: 1 });
    expect(challenge.json!['payload']).toMatch(/^[0-9a-f]{32}$/);

    const dialogue = await scheme1Dialogue(platform, chip);
    expect(dialogue.uid).toBe('e004011809a73b5c');
    // The whole AUTHENTICATE reply: flags, one byte, the 16-byte TResponse.
    expect(dialogue.response).toHaveLength(36);
    const session = await call(platform, '/session', { ...dialogue, cld: 'spark 1' });
    expect(session.status).toBe(200);
    const { payload } = await verifyAgainstJwks(platform, session.json!['token'] as string);
    expect(payload).toMatchObject({ type: 1, product: 1, atp: 'mau', cld: 'spark 1' });
    expect(payload.sub).toBe(platform.subFor(chip.info.uid));
  });

  it('refuses a tampered TResponse with 401 and a reply that is not an AUTHENTICATE reply with 400', async () => {
    const platform = await platformForTest();
    const chip = createSpark1Chip();
    const dialogue = await scheme1Dialogue(platform, chip);
    const tampered = await call(platform, '/session', { ...dialogue, response: flipBit(dialogue.response, 10) });
    expect(tampered).toMatchObject({ status: 401, json: { error: 'authentication failed' } });

    const next = await scheme1Dialogue(platform, chip);
    const truncated = await call(platform, '/session', { ...next, response: next.response.slice(0, 20) });
    expect(truncated.status).toBe(400);
    expect(truncated.json!['error']).toMatch(/AUTHENTICATE reply/);
  });

  it('refuses a Spark 1 answer presented for a scheme 2 chip, and scheme 2 for a Spark 1', async () => {
    const platform = await platformForTest();
    const dialogue = await scheme1Dialogue(platform, createSpark1Chip());
    const wrongChip = await call(platform, '/session', { ...dialogue, uid: '04517ca23b6e80' });
    expect(wrongChip).toMatchObject({ status: 400, json: { error: 'this chip does not answer scheme 1' } });
    const scheme2 = await call(platform, '/challenge', { scheme: 2, message: '00'.repeat(16), uid: dialogue.uid });
    expect(scheme2).toMatchObject({ status: 400, json: { error: 'this chip answers scheme 1' } });
  });
});

describe('reference platform: token contents', () => {
  it('signs with a kid that is the JWK thumbprint and carries the configured issuer and lifetime', async () => {
    const platform = await platformForTest({ issuer: 'https://reference.invalid', jwtTtlSec: 60 });
    const session = await call(platform, '/session', await scheme2Dialogue(platform, createSpark2Chip(), 'spark2'));
    const token = session.json!['token'] as string;
    expect(decodeProtectedHeader(token).kid).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const { payload } = await verifyAgainstJwks(platform, token);
    expect(payload.iss).toBe('https://reference.invalid');
    expect(payload.exp! - payload.iat!).toBe(60);
    expect(Object.keys(payload)).toEqual(['dev_id', 'type', 'product', 'atp', 'sub', 'iss', 'iat', 'exp']);
  });
});
