import { describe, expect, it } from 'vitest';
import {
  Iso15693Tag,
  beginSplitAuthentication,
  finishSplitAuthentication,
  fromHex,
  selectApexVerify,
  selectNdefApplication,
  toHex,
} from '@tapline/core';
import {
  chipSubject,
  createApexChip,
  createSpark1Chip,
  createSpark2Chip,
  type ReferencePlatform,
  type ReferencePlatformOptions,
  type VirtualChip,
} from '../src/index.js';
import { directExchange } from './chips-support.js';
import { isoDepChannel, platformForTest, verifyAgainstJwks } from './platform-support.js';
import { associate, eventually } from './oidc-support.js';

const SUB_SALT = 'sub salt of this test';

/** What one call answered. */
interface ApiResult {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
  readonly json: Record<string, unknown> | undefined;
}

interface ApiOptions {
  readonly method?: string;
  readonly token?: string;
  readonly apiKey?: string;
  readonly body?: unknown;
  readonly headers?: Readonly<Record<string, string>>;
  readonly timeoutMs?: number;
}

/** One HTTP call, as any client makes it. */
async function api(platform: ReferencePlatform, path: string, options: ApiOptions = {}): Promise<ApiResult> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token !== undefined) headers['authorization'] = `Bearer ${options.token}`;
  if (options.apiKey !== undefined) headers['x-api-vivokey'] = options.apiKey;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(new URL(path, platform.url), {
    method: options.method ?? (options.body === undefined ? 'GET' : 'POST'),
    headers,
    ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
    signal: AbortSignal.timeout(options.timeoutMs ?? 5000),
  });
  const text = await response.text();
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}

/** A platform for one test with an associated desktop: its access token. */
async function setUp(
  options: ReferencePlatformOptions = {},
): Promise<{ readonly platform: ReferencePlatform; readonly token: string }> {
  const platform = await platformForTest({ subSalt: SUB_SALT, deviceInterval: 0.05, ...options });
  const { tokens } = await associate(platform);
  return { platform, token: tokens.access_token };
}

/** The relay's half of a tap: the claim body from the chip, then the chip's response to the claim's payload. */
interface Tap {
  readonly uid: string;
  readonly claimBody: Record<string, unknown>;
  respond(payload: string): Promise<string>;
}

async function tap(chip: VirtualChip, kind: 'spark1' | 'spark2' | 'apex'): Promise<Tap> {
  if (kind === 'spark1') {
    const uid = toHex(chip.info.uid);
    const tag = new Iso15693Tag(directExchange(chip, 'iso15693'), { uid: chip.info.uid });
    return {
      uid,
      claimBody: { chip: kind, uid, scheme: 1 },
      respond: async (payload) => toHex((await tag.authenticate(2, fromHex(payload).subarray(0, 10))).reply),
    };
  }
  const channel = isoDepChannel(chip);
  let uid: string;
  if (kind === 'apex') uid = toHex(await selectApexVerify(channel));
  else {
    await selectNdefApplication(channel);
    uid = toHex(chip.info.uid);
  }
  const message = await beginSplitAuthentication(channel, 2);
  return {
    uid,
    claimBody: { chip: kind, uid, scheme: 2, message: toHex(message) },
    respond: async (payload) => toHex((await finishSplitAuthentication(channel, fromHex(payload))).response),
  };
}

/** Claims request `id` with a tap of `chip`; returns the claim answer and the tap to finish it. */
async function claim(
  platform: ReferencePlatform,
  token: string,
  id: string,
  chip: VirtualChip,
  kind: 'spark1' | 'spark2' | 'apex',
): Promise<{ readonly claimed: ApiResult; readonly tap: Tap }> {
  const started = await tap(chip, kind);
  const claimed = await api(platform, `/scan-requests/${id}/claim`, { token, body: started.claimBody });
  return { claimed, tap: started };
}

/** Claims and answers with a genuine chip; returns the answer call and the body it sent. */
async function claimAndAnswer(
  platform: ReferencePlatform,
  token: string,
  id: string,
  chip: VirtualChip,
  kind: 'spark1' | 'spark2' | 'apex',
): Promise<{ readonly answered: ApiResult; readonly body: { claim: string; uid: string; response: string } }> {
  const { claimed, tap: started } = await claim(platform, token, id, chip, kind);
  expect(claimed.status, claimed.text).toBe(200);
  const body = {
    claim: claimed.json!['claim'] as string,
    uid: started.uid,
    response: await started.respond(claimed.json!['payload'] as string),
  };
  return { answered: await api(platform, `/scan-requests/${id}/answer`, { token, body }), body };
}

function flipBit(hex: string, index: number): string {
  const bytes = fromHex(hex);
  bytes[index]! ^= 0x01;
  return toHex(bytes);
}

describe('reference platform: GET /scan-requests', () => {
  it('lists the open requests oldest first with an ETag, and answers 304 for an unchanged list', async () => {
    const { platform, token } = await setUp();
    const empty = await api(platform, '/scan-requests', { token });
    expect(empty.status).toBe(200);
    expect(empty.json).toEqual({ requests: [] });
    expect(empty.headers.get('cache-control')).toBe('no-store');
    const emptyTag = empty.headers.get('etag')!;
    expect(emptyTag).toMatch(/^"[^"]+"$/);

    const first = platform.createScanRequest({ purpose: 'Open the front door', acceptedChips: ['spark2'] });
    const second = platform.createScanRequest({ relyingParty: { id: 'door-lock', name: 'Front door' } });
    const listed = await api(platform, '/scan-requests', { token, headers: { 'if-none-match': emptyTag } });
    expect(listed.status).toBe(200);
    const etag = listed.headers.get('etag')!;
    expect(etag).not.toBe(emptyTag);
    expect(listed.json).toEqual({
      requests: [
        {
          id: first.id,
          relying_party: { id: 'default-rp', name: 'Reference relying party' },
          purpose: 'Open the front door',
          created_at: first.createdAt.toISOString(),
          expires_at: first.expiresAt.toISOString(),
          accepted_chips: ['spark2'],
          state: 'pending',
        },
        expect.objectContaining({ id: second.id, relying_party: { id: 'door-lock', name: 'Front door' } }),
      ],
    });
    expect(first.id).toMatch(/^sr_[A-Za-z0-9_-]{22}$/);
    expect(first.expiresAt.getTime() - first.createdAt.getTime()).toBe(300_000);

    const unchanged = await api(platform, '/scan-requests?wait=0', { token, headers: { 'if-none-match': etag } });
    expect(unchanged.status).toBe(304);
    expect(unchanged.text).toBe('');
    expect(unchanged.headers.get('etag')).toBe(etag);
  });

  it('holds a poll with the current ETag for `wait` seconds, then answers 304 with the same ETag', async () => {
    const { platform, token } = await setUp();
    const { headers } = await api(platform, '/scan-requests', { token });
    const etag = headers.get('etag')!;
    const start = performance.now();
    const held = await api(platform, '/scan-requests?wait=1', { token, headers: { 'if-none-match': etag } });
    expect(performance.now() - start).toBeGreaterThanOrEqual(950);
    expect(held.status).toBe(304);
    expect(held.headers.get('etag')).toBe(etag);
  });

  it('answers a held poll with 200 as soon as a request is created', async () => {
    const { platform, token } = await setUp();
    const etag = (await api(platform, '/scan-requests', { token })).headers.get('etag')!;
    const start = performance.now();
    const poll = api(platform, '/scan-requests?wait=30', { token, headers: { 'if-none-match': etag } });
    // Not a wait for anything: however far the poll got, the request below must reach it at once.
    await new Promise((resolve) => setTimeout(resolve, 150));
    const created = platform.createScanRequest();
    const answered = await poll;
    expect(performance.now() - start).toBeLessThan(2000);
    expect(answered.status).toBe(200);
    expect(answered.headers.get('etag')).not.toBe(etag);
    expect((answered.json!['requests'] as { id: string }[]).map((request) => request.id)).toEqual([created.id]);
  });

  it('wakes a held poll when a request expires, without any API call', async () => {
    const { platform, token } = await setUp();
    const request = platform.createScanRequest({ ttlMs: 300 });
    const listed = await api(platform, '/scan-requests', { token });
    expect(listed.json!['requests']).toHaveLength(1);
    const start = performance.now();
    const woken = await api(platform, '/scan-requests?wait=10', {
      token,
      headers: { 'if-none-match': listed.headers.get('etag')! },
    });
    expect(performance.now() - start).toBeLessThan(2000);
    expect(woken.status).toBe(200);
    expect(woken.json).toEqual({ requests: [] });
    expect(platform.scanRequest(request.id)!.state).toBe('expired');
  });

  it('refuses a wait outside 0..30 with 400 invalid_request', async () => {
    const { platform, token } = await setUp();
    for (const wait of ['31', '-1', '1.5', 'soon', '']) {
      const refused = await api(platform, `/scan-requests?wait=${wait}`, { token });
      expect(refused.status, wait).toBe(400);
      expect(refused.json).toMatchObject({ error: 'invalid_request' });
      expect(refused.json!['error_description']).toEqual(expect.any(String));
    }
    expect((await api(platform, '/scan-requests?wait=30', { token })).status).toBe(200);
  });

  it('answers a held poll when the platform closes', async () => {
    const { platform, token } = await setUp();
    const etag = (await api(platform, '/scan-requests', { token })).headers.get('etag')!;
    const poll = api(platform, '/scan-requests?wait=30', { token, headers: { 'if-none-match': etag } });
    await eventually(() => platform.stats.requests['/scan-requests'] === 2, 3000, 'the poll to arrive');
    const start = performance.now();
    await platform.close();
    expect((await poll).status).toBe(304);
    expect(performance.now() - start).toBeLessThan(1000);
  });
});

describe('reference platform: scan-request bearer authentication', () => {
  it('refuses a missing, malformed or unknown token with 401 invalid_token and WWW-Authenticate', async () => {
    const { platform } = await setUp();
    const request = platform.createScanRequest();
    const attempts: Readonly<Record<string, string>>[] = [
      {},
      { authorization: 'Basic dXNlcjpwYXNz' },
      { authorization: 'Bearer not-a-token' },
    ];
    for (const headers of attempts) {
      for (const path of ['/scan-requests', `/scan-requests/${request.id}/cancel`]) {
        const refused = await api(platform, path, { headers, method: path.endsWith('cancel') ? 'POST' : 'GET' });
        expect(refused.status).toBe(401);
        expect(refused.headers.get('www-authenticate')).toBe('Bearer error="invalid_token"');
        expect(refused.json).toMatchObject({ error: 'invalid_token' });
      }
    }
    expect(platform.scanRequest(request.id)!.state).toBe('pending');
  });

  it('refuses a token without the scan_requests scope with 403 insufficient_scope', async () => {
    const platform = await platformForTest({ deviceInterval: 0.05 });
    const { tokens } = await associate(platform, { scope: 'openid offline_access' });
    const refused = await api(platform, '/scan-requests', { token: tokens.access_token });
    expect(refused.status).toBe(403);
    expect(refused.json).toMatchObject({ error: 'insufficient_scope' });
    expect(refused.headers.get('www-authenticate')).toBe('Bearer error="insufficient_scope", scope="scan_requests"');
  });

  it('refuses an expired access token with 401 invalid_token', async () => {
    const { platform, token } = await setUp({ accessTokenTtlSec: 1 });
    expect((await api(platform, '/scan-requests', { token })).status).toBe(200);
    await eventually(async () => (await api(platform, '/scan-requests', { token })).status === 401, 3000, 'expiry');
    const refused = await api(platform, '/scan-requests', { token });
    expect(refused.headers.get('www-authenticate')).toBe('Bearer error="invalid_token"');
  });
  it('answers a wrong method with 405 invalid_request and Allow, after authentication', async () => {
    const { platform, token } = await setUp();
    const request = platform.createScanRequest();
    const post = await api(platform, '/scan-requests', { token, method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET');
    expect(post.json).toMatchObject({ error: 'invalid_request' });
    const get = await api(platform, `/scan-requests/${request.id}/claim`, { token });
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');
    expect((await api(platform, `/scan-requests/${request.id}/claim`, {})).status).toBe(401);
    expect((await api(platform, `/scan-requests/${request.id}`, { token })).status).toBe(404);
  });
});

describe('reference platform: claim and answer', () => {
  it('answers a request with a real Spark 2 dialogue; the RP gets a JWT with its own chip subject', async () => {
    const { platform, token } = await setUp();
    const chip = createSpark2Chip();
    const request = platform.createScanRequest({ purpose: 'Sign in to the shell' });
    const { claimed, tap: started } = await claim(platform, token, request.id, chip, 'spark2');
    expect(claimed.status).toBe(200);
    expect(claimed.json).toEqual({
      claim: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/),
      scheme: 2,
      payload: expect.stringMatching(/^[0-9a-f]{64}$/),
      expires_at: expect.any(String),
    });
    expect(Date.parse(claimed.json!['expires_at'] as string) - Date.now()).toBeLessThanOrEqual(30_000);
    expect(platform.scanRequest(request.id)!.state).toBe('claimed');
    const listed = await api(platform, '/scan-requests', { token });
    expect(listed.json!['requests']).toEqual([expect.objectContaining({ id: request.id, state: 'claimed' })]);

    const response = await started.respond(claimed.json!['payload'] as string);
    const body = { claim: claimed.json!['claim'], uid: started.uid, response };
    const answered = await api(platform, `/scan-requests/${request.id}/answer`, { token, body });
    expect(answered.status).toBe(200);
    expect(answered.json).toEqual({ state: 'answered', answered_at: expect.any(String) });

    const record = platform.scanRequest(request.id)!;
    expect(record.state).toBe('answered');
    expect(record.answeredAt!.toISOString()).toBe(answered.json!['answered_at']);
    expect(record.result!.chip).toBe('spark2');
    const { payload } = await verifyAgainstJwks(platform, record.result!.token);
    expect(payload).toMatchObject({ dev_id: 'default-rp', type: 2, product: 2, atp: 'mutual' });
    expect(payload.sub).toBe(chipSubject(SUB_SALT, 'default-rp', `spark2:${started.uid}`));
    expect(payload.sub).not.toBe(platform.subFor(started.uid));
    expect((await api(platform, '/scan-requests', { token })).json).toEqual({ requests: [] });
    expect(platform.stats.scanRequests).toEqual({
      created: 1,
      claims: 1,
      answers: { succeeded: 1, failed: 0 },
      cancelled: 0,
    });
  });

  it('answers with a real Spark 1 (scheme 1, TAM1) and an Apex', async () => {
    const { platform, token } = await setUp();
    const spark1 = platform.createScanRequest({ acceptedChips: ['spark1'] });
    const { answered } = await claimAndAnswer(platform, token, spark1.id, createSpark1Chip(), 'spark1');
    expect(answered.status, answered.text).toBe(200);
    const token1 = platform.scanRequest(spark1.id)!.result!;
    expect(token1.chip).toBe('spark1');
    expect((await verifyAgainstJwks(platform, token1.token)).payload).toMatchObject({ type: 1, product: 1 });

    const apex = platform.createScanRequest({ acceptedChips: ['apex', 'spark2'] });
    expect((await claimAndAnswer(platform, token, apex.id, createApexChip(), 'apex')).answered.status).toBe(200);
    expect(platform.scanRequest(apex.id)!.result!.chip).toBe('apex');
  });

  it('refuses a wrong answer with 401 authentication_failed: the claim is spent, the request pending again', async () => {
    const { platform, token } = await setUp();
    const chip = createSpark2Chip();
    const request = platform.createScanRequest();
    const { claimed, tap: started } = await claim(platform, token, request.id, chip, 'spark2');
    const response = await started.respond(claimed.json!['payload'] as string);
    const wrong = { claim: claimed.json!['claim'], uid: started.uid, response: flipBit(response, 3) };
    const refused = await api(platform, `/scan-requests/${request.id}/answer`, { token, body: wrong });
    expect(refused.status).toBe(401);
    expect(refused.json).toMatchObject({ error: 'authentication_failed' });
    expect(refused.headers.get('www-authenticate')).toBeNull();
    expect(platform.scanRequest(request.id)!.state).toBe('pending');

    // The identical retry hears the same; the genuine answer with the spent claim is refused.
    expect((await api(platform, `/scan-requests/${request.id}/answer`, { token, body: wrong })).status).toBe(401);
    const late = await api(platform, `/scan-requests/${request.id}/answer`, {
      token,
      body: { ...wrong, response },
    });
    expect(late.status).toBe(409);
    expect(late.json).toMatchObject({ error: 'claim_used' });

    // The next tap makes a new claim and succeeds.
    expect((await claimAndAnswer(platform, token, request.id, chip, 'spark2')).answered.status).toBe(200);
    expect(platform.stats.scanRequests.answers).toEqual({ succeeded: 1, failed: 1 });
  });

  it('replays the recorded 200 for the identical answer, and refuses another body with 409 claim_used', async () => {
    const { platform, token } = await setUp();
    const request = platform.createScanRequest();
    const { answered, body } = await claimAndAnswer(platform, token, request.id, createSpark2Chip(), 'spark2');
    expect(answered.status).toBe(200);
    const again = await api(platform, `/scan-requests/${request.id}/answer`, { token, body });
    expect(again.status).toBe(200);
    expect(again.json).toEqual(answered.json);
    const upper = await api(platform, `/scan-requests/${request.id}/answer`, {
      token,
      body: { ...body, response: body.response.toUpperCase() },
    });
    expect(upper.json).toEqual(answered.json);
    const other = await api(platform, `/scan-requests/${request.id}/answer`, {
      token,
      body: { ...body, response: flipBit(body.response, 0) },
    });
    expect(other.status).toBe(409);
    expect(other.json).toMatchObject({ error: 'claim_used' });
    expect(platform.stats.jwtsIssued).toBe(1);
  });

  it('refuses unknown, replaced and other-chip claims with 400 claim_invalid', async () => {
    const { platform, token } = await setUp();
    const chip = createSpark2Chip();
    const request = platform.createScanRequest();
    const path = `/scan-requests/${request.id}/answer`;
    const first = await claim(platform, token, request.id, chip, 'spark2');
    const firstResponse = await first.tap.respond(first.claimed.json!['payload'] as string);
    const second = await claim(platform, token, request.id, chip, 'spark2');

    const replaced = { claim: first.claimed.json!['claim'], uid: first.tap.uid, response: firstResponse };
    const unknown = { ...replaced, claim: 'not-a-claim' };
    const otherUid = {
      claim: second.claimed.json!['claim'],
      uid: toHex(createSpark2Chip({ model: 'ntag413' }).info.uid),
      response: firstResponse,
    };
    for (const body of [replaced, unknown, otherUid]) {
      const refused = await api(platform, path, { token, body });
      expect(refused.status).toBe(400);
      expect(refused.json).toMatchObject({ error: 'claim_invalid' });
    }
    // None of them spent the current claim.
    const response = await second.tap.respond(second.claimed.json!['payload'] as string);
    const answered = await api(platform, path, { token, body: { ...otherUid, uid: second.tap.uid, response } });
    expect(answered.status).toBe(200);
  });

  it('refuses a chip outside accepted_chips with 422 chip_not_accepted', async () => {
    const { platform, token } = await setUp();
    const request = platform.createScanRequest({ acceptedChips: ['spark1'] });
    const { claimed } = await claim(platform, token, request.id, createSpark2Chip(), 'spark2');
    expect(claimed.status).toBe(422);
    expect(claimed.json).toMatchObject({ error: 'chip_not_accepted' });
    expect(platform.scanRequest(request.id)!.state).toBe('pending');
  });

  it("refuses another account's chip and an unknown chip with 403 chip_not_owned", async () => {
    const spark1 = createSpark1Chip();
    const spark2 = createSpark2Chip();
    const { platform, token } = await setUp({ accounts: { alice: [spark2.info.uid], bob: [spark1.info.uid] } });
    const request = platform.createScanRequest();
    const bobs = await claim(platform, token, request.id, spark1, 'spark1');
    expect(bobs.claimed.status).toBe(403);
    expect(bobs.claimed.json).toMatchObject({ error: 'chip_not_owned' });
    platform.chips.remove(spark2.info.uid);
    const unenrolled = await claim(platform, token, request.id, spark2, 'spark2');
    expect(unenrolled.claimed.status).toBe(403);
    expect(unenrolled.claimed.json).toMatchObject({ error: 'chip_not_owned' });
  });

  it('refuses malformed claims with 400 invalid_request, a chip of another kind included', async () => {
    const { platform, token } = await setUp();
    const request = platform.createScanRequest();
    const path = `/scan-requests/${request.id}/claim`;
    const spark1Uid = toHex(createSpark1Chip().info.uid);
    const spark2Uid = toHex(createSpark2Chip().info.uid);
    const message = '00'.repeat(16);
    for (const body of [
      { chip: 'spark2', uid: spark2Uid, scheme: 1 },
      { chip: 'spark2', uid: spark2Uid, scheme: 2 },
      { chip: 'spark2', uid: spark2Uid, scheme: 2, message: '00' },
      { chip: 'spark2', uid: spark1Uid, scheme: 2, message },
      { chip: 'spark1', uid: spark1Uid, scheme: 1, message },
      { chip: 'ntag215', uid: spark2Uid, scheme: 2, message },
      { chip: 'spark2', uid: spark2Uid, scheme: 2, message, extra: true },
      // Shaped like an Apex claim, but the enrolled chip under this uid is a Spark 1.
      { chip: 'apex', uid: spark1Uid, scheme: 2, message },
    ]) {
      const refused = await api(platform, path, { token, body });
      expect(refused.status, JSON.stringify(body)).toBe(400);
      expect(refused.json).toMatchObject({ error: 'invalid_request' });
    }
    const notJson = await fetch(new URL(path, platform.url), {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'text/plain' },
      body: 'hello',
    });
    expect(notJson.status).toBe(415);
    expect(await notJson.json()).toMatchObject({ error: 'invalid_request' });
    expect(platform.scanRequest(request.id)!.state).toBe('pending');
  });

  it("answers 404 not_found for unknown requests and for another account's", async () => {
    const spark1 = createSpark1Chip();
    const spark2 = createSpark2Chip();
    const { platform, token } = await setUp({ accounts: { alice: [spark2.info.uid], bob: [spark1.info.uid] } });
    const bobs = platform.createScanRequest({ account: 'bob' });
    expect((await api(platform, '/scan-requests', { token })).json).toEqual({ requests: [] });
    for (const id of ['sr_unknown', bobs.id]) {
      for (const action of ['claim', 'answer', 'cancel']) {
        const body = action === 'claim' ? { chip: 'spark1', uid: toHex(spark1.info.uid), scheme: 1 } : undefined;
        const answer = action === 'answer' ? { claim: 'x', uid: toHex(spark1.info.uid), response: '00' } : body;
        const refused = await api(platform, `/scan-requests/${id}/${action}`, {
          token,
          method: 'POST',
          ...(answer === undefined ? {} : { body: answer }),
        });
        expect(refused.status, `${action} ${id}`).toBe(404);
        expect(refused.json).toMatchObject({ error: 'not_found' });
      }
    }
    expect(platform.scanRequest(bobs.id)!.state).toBe('pending');
  });

  it('cancels: 200 cancelled, then 410 request_closed for cancel, claim and answer', async () => {
    const { platform, token } = await setUp();
    const chip = createSpark2Chip();
    const request = platform.createScanRequest();
    const { claimed, tap: started } = await claim(platform, token, request.id, chip, 'spark2');
    const cancelled = await api(platform, `/scan-requests/${request.id}/cancel`, { token, method: 'POST' });
    expect(cancelled.status).toBe(200);
    expect(cancelled.json).toEqual({ state: 'cancelled' });
    expect(platform.scanRequest(request.id)!.state).toBe('cancelled');

    const again = await api(platform, `/scan-requests/${request.id}/cancel`, { token, method: 'POST', body: {} });
    expect(again.status).toBe(410);
    expect(again.json).toMatchObject({ error: 'request_closed' });
    const response = await started.respond(claimed.json!['payload'] as string);
    const late = await api(platform, `/scan-requests/${request.id}/answer`, {
      token,
      body: { claim: claimed.json!['claim'], uid: started.uid, response },
    });
    expect(late.status).toBe(410);
    expect((await claim(platform, token, request.id, chip, 'spark2')).claimed.status).toBe(410);
    expect((await api(platform, '/scan-requests', { token })).json).toEqual({ requests: [] });
    expect(platform.cancelScanRequest(request.id)).toBe(false);
    expect(platform.stats.scanRequests.cancelled).toBe(1);
  });

  it('expires a request at expires_at: claimed or not, it is closed', async () => {
    const { platform, token } = await setUp();
    const chip = createSpark2Chip();
    const request = platform.createScanRequest({ ttlMs: 400 });
    const { claimed } = await claim(platform, token, request.id, chip, 'spark2');
    expect(claimed.status).toBe(200);
    // The claim lasts no longer than the request.
    expect(Date.parse(claimed.json!['expires_at'] as string)).toBe(request.expiresAt.getTime());
    await eventually(() => platform.scanRequest(request.id)?.state === 'expired', 3000, 'expiry');
    const late = await claim(platform, token, request.id, chip, 'spark2');
    expect(late.claimed.status).toBe(410);
    expect(late.claimed.json).toMatchObject({ error: 'request_closed' });
    expect(platform.cancelScanRequest(request.id)).toBe(false);
  });

  it('lets a claim lapse after tokenTtlMs: the request is pending again and the claim invalid', async () => {
    const { platform, token } = await setUp({ tokenTtlMs: 300 });
    const chip = createSpark2Chip();
    const request = platform.createScanRequest();
    const { claimed, tap: started } = await claim(platform, token, request.id, chip, 'spark2');
    const response = await started.respond(claimed.json!['payload'] as string);
    await eventually(() => platform.scanRequest(request.id)?.state === 'pending', 3000, 'the claim to lapse');
    const late = await api(platform, `/scan-requests/${request.id}/answer`, {
      token,
      body: { claim: claimed.json!['claim'], uid: started.uid, response },
    });
    expect(late.status).toBe(400);
    expect(late.json).toMatchObject({ error: 'claim_invalid' });
  });
});

describe('reference platform: relying-party endpoints', () => {
  it('creates a request for a pairwise subject and hands the result token to that RP only', async () => {
    const door = { id: 'door-lock', name: 'Front door', apiKey: 'door-lock-key' };
    const { platform, token } = await setUp({ relyingParties: [door] });
    expect(platform.relyingParties).toEqual([
      { id: 'default-rp', name: 'Reference relying party' },
      { id: 'door-lock', name: 'Front door' },
    ]);
    const subject = platform.accountSubject('alice', 'door-lock');
    const created = await api(platform, '/rp/scan-requests', {
      apiKey: door.apiKey,
      body: { subject, purpose: 'Open the front door', accepted_chips: ['spark2'], ttl_sec: 60 },
    });
    expect(created.status).toBe(201);
    const id = created.json!['id'] as string;
    expect(created.headers.get('location')).toBe(`/rp/scan-requests/${id}`);
    expect(created.json).toMatchObject({
      relying_party: { id: 'door-lock', name: 'Front door' },
      purpose: 'Open the front door',
      accepted_chips: ['spark2'],
      state: 'pending',
    });
    expect(Date.parse(created.json!['expires_at'] as string) - Date.parse(created.json!['created_at'] as string)).toBe(
      60_000,
    );
    expect(platform.scanRequest(id)!.account).toBe('alice');

    // The default RP's subject for alice is another one, and it cannot see door-lock's request.
    const wrongSubject = await api(platform, '/rp/scan-requests', {
      apiKey: door.apiKey,
      body: { subject: platform.accountSubject('alice', 'default-rp'), purpose: 'x' },
    });
    expect(wrongSubject.status).toBe(404);
    expect(wrongSubject.json).toMatchObject({ error: 'not_found' });
    expect((await api(platform, `/rp/scan-requests/${id}`, { apiKey: platform.apiKey })).status).toBe(404);

    const pending = await api(platform, `/rp/scan-requests/${id}`, { apiKey: door.apiKey });
    expect(pending.json).toMatchObject({ id, state: 'pending' });
    expect(pending.json).not.toHaveProperty('result');

    const chip = createSpark2Chip();
    const { answered } = await claimAndAnswer(platform, token, id, chip, 'spark2');
    expect(answered.status).toBe(200);
    const done = await api(platform, `/rp/scan-requests/${id}`, { apiKey: door.apiKey });
    expect(done.json).toMatchObject({ id, state: 'answered', result: { chip: 'spark2', token: expect.any(String) } });
    const result = done.json!['result'] as { token: string };
    const { payload, protectedHeader } = await verifyAgainstJwks(platform, result.token);
    expect(protectedHeader).toEqual({ typ: 'JWT', alg: 'ES256', kid: platform.currentKid });
    expect(payload).toMatchObject({ dev_id: 'door-lock', iss: 'auth.vivokey.com', atp: 'mutual', type: 2 });
    expect(payload.sub).toBe(chipSubject(SUB_SALT, 'door-lock', `spark2:${toHex(chip.info.uid)}`));
    expect(payload).not.toHaveProperty('cld');
  });

  it('refuses missing or foreign keys with 401 invalid_api_key and malformed bodies with 400', async () => {
    const { platform } = await setUp();
    const subject = platform.accountSubject('alice', 'default-rp');
    for (const apiKey of [undefined, 'wrong']) {
      const refused = await api(platform, '/rp/scan-requests', {
        ...(apiKey === undefined ? {} : { apiKey }),
        body: { subject, purpose: 'x' },
      });
      expect(refused.status).toBe(401);
      expect(refused.json).toMatchObject({ error: 'invalid_api_key' });
    }
    for (const body of [
      { subject, purpose: '' },
      { subject, purpose: 'x'.repeat(201) },
      { subject, purpose: 'x', ttl_sec: 9 },
      { subject, purpose: 'x', ttl_sec: 3601 },
      { subject, purpose: 'x', accepted_chips: ['ntag215'] },
      { subject, purpose: 'x', accepted_chips: 'spark2' },
      { subject, purpose: 'x', colour: 'red' },
      { purpose: 'x' },
    ]) {
      const refused = await api(platform, '/rp/scan-requests', { apiKey: platform.apiKey, body });
      expect(refused.status, JSON.stringify(body)).toBe(400);
      expect(refused.json).toMatchObject({ error: 'invalid_request' });
    }
    const created = await api(platform, '/rp/scan-requests', {
      apiKey: platform.apiKey,
      body: { subject, purpose: 'x' },
    });
    expect(created.status).toBe(201);
    expect(Date.parse(created.json!['expires_at'] as string) - Date.parse(created.json!['created_at'] as string)).toBe(
      300_000,
    );
    expect((await api(platform, '/rp/scan-requests/sr_unknown', { apiKey: platform.apiKey })).status).toBe(404);
  });
});

describe('reference platform: faults on the scan-request paths', () => {
  it('hits the whole /scan-requests family, and a lost answer is safe to retry', async () => {
    const { platform, token } = await setUp();
    const request = platform.createScanRequest();
    platform.faults.add({ kind: 'status', status: 503, path: '/scan-requests', times: 2 });
    expect((await api(platform, '/scan-requests', { token })).status).toBe(503);
    const chip = createSpark2Chip();
    expect((await claim(platform, token, request.id, chip, 'spark2')).claimed.status).toBe(503);
    expect(platform.stats.scanRequests.claims).toBe(0);

    const { claimed, tap: started } = await claim(platform, token, request.id, chip, 'spark2');
    const body = {
      claim: claimed.json!['claim'],
      uid: started.uid,
      response: await started.respond(claimed.json!['payload'] as string),
    };
    // The platform verifies the answer, but the connection drops before the client hears it.
    platform.faults.add({ kind: 'reset', path: '/scan-requests/{id}/answer', processed: true, times: 1 });
    await expect(api(platform, `/scan-requests/${request.id}/answer`, { token, body })).rejects.toThrow(TypeError);
    expect(platform.scanRequest(request.id)!.state).toBe('answered');
    const retried = await api(platform, `/scan-requests/${request.id}/answer`, { token, body });
    expect(retried.status).toBe(200);
    expect(retried.json).toMatchObject({ state: 'answered' });
    expect(platform.stats.faultsInjected).toBe(3);
    expect(platform.stats.requests).toMatchObject({
      '/scan-requests': 1,
      '/scan-requests/{id}/claim': 2,
      '/scan-requests/{id}/answer': 2,
    });
  });
});
