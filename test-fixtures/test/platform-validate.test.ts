import { describe, expect, it } from 'vitest';
import { createApexChip, createChipRegistry, createSpark2Chip } from '../src/index.js';
import { call, platformForTest, readNdefUri, scheme2Dialogue, verifyAgainstJwks } from './platform-support.js';

/** The `UID-CTR-SIG` value of a SUN URL's `sun=` or `s=` parameter. */
function sunValue(url: string): string {
  const value = new URL(url).searchParams.get('sun') ?? new URL(url).searchParams.get('s');
  if (value === null) throw new Error(`No SUN parameter in ${url}`);
  return value;
}

describe('reference platform: /validate with a virtual Spark 2', () => {
  it('accepts the SUN URL read from the NDEF file once, then answers expired for the same URL', async () => {
    const platform = await platformForTest();
    const chip = createSpark2Chip();
    const url = await readNdefUri(chip);
    expect(url).toMatch(/^https:\/\/vivokey\.co\/[0-9a-f]{32}\/\?sun=04517CA23B6E80-000001-[0-9A-F]{16}$/);

    const first = await call(platform, '/validate', { signature: url, aud: 'https://rp.example', cld: 'order 42' });
    expect(first.status).toBe(200);
    expect(first.json!['result']).toBe('success');
    const { payload } = await verifyAgainstJwks(platform, first.json!['token'] as string);
    expect(payload).toMatchObject({
      dev_id: platform.devId,
      type: 2,
      product: 2,
      atp: 'cmac',
      aud: 'https://rp.example',
      cld: 'order 42',
      sub: platform.subFor(chip.info.uid),
    });

    const replay = await call(platform, '/validate', { signature: url });
    expect(replay).toMatchObject({ status: 200, json: { result: 'expired' } });
    expect(replay.json).not.toHaveProperty('token');
    expect(platform.stats.validations).toEqual({ success: 1, expired: 1, invalid: 0 });
  });

  it('accepts the bare UID-CTR-MAC form, each new read once, and refuses an older counter after a newer one', async () => {
    const platform = await platformForTest();
    const chip = createSpark2Chip();
    const older = sunValue(await readNdefUri(chip));
    const newer = sunValue(await readNdefUri(chip));
    expect(newer.split('-')[1]).toBe('000002');
    expect((await call(platform, '/validate', { signature: newer })).json!['result']).toBe('success');
    expect((await call(platform, '/validate', { signature: older })).json).toEqual({ result: 'expired' });
    const next = sunValue(await readNdefUri(chip));
    expect((await call(platform, '/validate', { signature: next })).json!['result']).toBe('success');
  });

  it('gives the same sub for /validate and /session of one chip', async () => {
    const platform = await platformForTest();
    const chip = createSpark2Chip();
    const validated = await call(platform, '/validate', { signature: await readNdefUri(chip) });
    const session = await call(platform, '/session', await scheme2Dialogue(platform, chip, 'spark2'));
    const a = await verifyAgainstJwks(platform, validated.json!['token'] as string);
    const b = await verifyAgainstJwks(platform, session.json!['token'] as string);
    expect(a.payload.sub).toBe(b.payload.sub);
    expect([a.payload.atp, b.payload.atp]).toEqual(['cmac', 'mutual']);
  });

  it('answers invalid for a forged MAC, an unknown chip and text that is no SUN message', async () => {
    const platform = await platformForTest();
    const signature = sunValue(await readNdefUri(createSpark2Chip()));
    const forged = signature.slice(0, -1) + (signature.endsWith('0') ? '1' : '0');
    expect((await call(platform, '/validate', { signature: forged })).json).toEqual({ result: 'invalid' });
    const stranger = sunValue(await readNdefUri(createSpark2Chip({ uid: Uint8Array.of(4, 1, 2, 3, 4, 5, 6) })));
    expect((await call(platform, '/validate', { signature: stranger })).json).toEqual({ result: 'invalid' });
    expect((await call(platform, '/validate', { signature: 'hello' })).json).toEqual({ result: 'invalid' });
    // A forged MAC does not burn the counter: the genuine message still validates.
    expect((await call(platform, '/validate', { signature })).json!['result']).toBe('success');
    expect(platform.stats.validations).toEqual({ success: 1, expired: 0, invalid: 3 });
  });

  it('answers invalid for a chip enrolled without a SUN key', async () => {
    const platform = await platformForTest({
      chips: createChipRegistry([{ kind: 'spark2', uid: '04517CA23B6E80', authKey: new Uint8Array(16) }]),
    });
    const url = await readNdefUri(createSpark2Chip());
    expect((await call(platform, '/validate', { signature: url })).json).toEqual({ result: 'invalid' });
  });

  it('/validate.json answers the claims unsigned', async () => {
    const platform = await platformForTest();
    const chip = createSpark2Chip();
    const answer = await call(platform, '/validate.json', { signature: await readNdefUri(chip), cld: 'x' });
    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({
      dev_id: platform.devId,
      atp: 'cmac',
      result: 'success',
      type: 2,
      product: 2,
      cld: 'x',
      sub: platform.subFor(chip.info.uid),
    });
    expect(answer.json).not.toHaveProperty('token');
    // One counter guard behind both endpoints.
    const again = await call(platform, '/validate', { signature: await readNdefUri(chip) });
    expect(again.json!['result']).toBe('success');
    expect(platform.stats.jwtsIssued).toBe(1);
  });
});

describe('reference platform: /validate with a virtual Apex', () => {
  it("accepts the Apex NDEF applet's s= URL once, with the Apex claims, then answers expired", async () => {
    const platform = await platformForTest();
    const chip = createApexChip();
    const url = await readNdefUri(chip);
    expect(url).toMatch(/\?s=A5E1D0C3B2A19081-000001-[0-9A-F]{32}$/);
    const first = await call(platform, '/validate', { signature: url });
    expect(first.json!['result']).toBe('success');
    const { payload } = await verifyAgainstJwks(platform, first.json!['token'] as string);
    expect(payload).toMatchObject({ type: 3, product: 8, atp: 'cmac', sub: platform.subFor('a5e1d0c3b2a19081') });
    expect((await call(platform, '/validate', { signature: sunValue(url) })).json).toEqual({ result: 'expired' });
  });
});
