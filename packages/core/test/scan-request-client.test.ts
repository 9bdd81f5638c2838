import { afterEach, describe, expect, it } from 'vitest';
import {
  AssociatedSession,
  ErrorCode,
  MemoryTokenStore,
  createDeviceAssociation,
  createScanRequestClient,
  isTaplineError,
  type AccessTokenOptions,
  type AccessTokenSource,
  type ScanRequestClientOptions,
  type TaplineError,
} from '../src/index.js';
import { ScriptedHttpServer, ScriptedProvider, recordingLogger, type ScriptedAnswer } from './scripted-http.js';

const CLAIM = 'claim-SECRET-0123456789abcdefghijklmnopqrstuv';
const SPARK2_UID = '04517ca23b6e80';
const MESSAGE = '00112233445566778899aabbccddeeff';
const PAYLOAD = 'ab'.repeat(32);
const RESPONSE = `${'cd'.repeat(32)}9100`;

const servers: ScriptedHttpServer[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await server.close();
});

/** Hands out `token-1`, then `token-2` after a forced refresh, …, and records how it was asked. */
class CountingTokens implements AccessTokenSource {
  readonly calls: AccessTokenOptions[] = [];
  #current = 1;
  accessToken(options: AccessTokenOptions = {}): Promise<string> {
    this.calls.push(options);
    if (options.forceRefresh === true) this.#current += 1;
    return Promise.resolve(`token-${this.#current}-${'z'.repeat(30)}`);
  }
}

const token = (n: number): string => `token-${n}-${'z'.repeat(30)}`;

async function bench(options: Partial<ScanRequestClientOptions> = {}) {
  const server = await new ScriptedHttpServer().start();
  servers.push(server);
  const tokens = new CountingTokens();
  const log = recordingLogger();
  const client = createScanRequestClient({
    platformUrl: server.url,
    session: tokens,
    timeoutMs: 2000,
    logger: log.logger,
    answerRetryDelayMs: 1,
    ...options,
  });
  return { server, tokens, client, log };
}

function scanRequest(id: string, extra: Record<string, unknown> = {}) {
  return {
    id,
    relying_party: { id: 'door-lock', name: 'Front door' },
    purpose: 'Open the front door',
    created_at: '2026-01-02T03:04:05Z',
    expires_at: '2026-01-02T03:09:05.500+00:00',
    accepted_chips: ['spark2', 'apex'],
    state: 'pending',
    ...extra,
  };
}

const claimed: ScriptedAnswer = {
  json: { claim: CLAIM, scheme: 2, payload: PAYLOAD.toUpperCase(), expires_at: '2026-01-02T03:05:05Z' },
};
const answered: ScriptedAnswer = { json: { state: 'answered', answered_at: '2026-01-02T03:04:07Z' } };

async function failure(promise: Promise<unknown>): Promise<TaplineError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isTaplineError(error)) throw new Error(`expected a TaplineError, got ${String(error)}`);
  return error;
}

function expectNoSecrets(text: string): void {
  for (const secret of [CLAIM, token(1), token(2), RESPONSE]) expect(text).not.toContain(secret);
}

describe('ScanRequestClient.list', () => {
  it('GETs /scan-requests?wait=0 with the bearer token, and converts the requests (camelCase, ms epoch)', async () => {
    const { server, client } = await bench();
    server.on('GET', '/scan-requests', () => ({
      json: { requests: [scanRequest('sr_AAAA'), scanRequest('sr_BBBB', { accepted_chips: [], state: 'claimed' })] },
      headers: { ETag: '"v1"', Date: 'Fri, 02 Jan 2026 03:04:06 GMT' },
    }));
    const list = await client.list();
    expect(list).toEqual({
      notModified: false,
      etag: '"v1"',
      serverTime: Date.UTC(2026, 0, 2, 3, 4, 6),
      requests: [
        {
          id: 'sr_AAAA',
          relyingParty: { id: 'door-lock', name: 'Front door' },
          purpose: 'Open the front door',
          createdAt: Date.UTC(2026, 0, 2, 3, 4, 5),
          expiresAt: Date.UTC(2026, 0, 2, 3, 9, 5, 500),
          acceptedChips: ['spark2', 'apex'],
          state: 'pending',
        },
        expect.objectContaining({ id: 'sr_BBBB', acceptedChips: [], state: 'claimed' }),
      ],
    });
    expect(server.requests).toHaveLength(1);
    const request = server.requests[0]!;
    expect(request.method).toBe('GET');
    expect(request.url).toBe('/scan-requests?wait=0');
    expect(request.headers['authorization']).toBe(`Bearer ${token(1)}`);
    expect(request.headers['accept']).toBe('application/json');
    expect(request.headers['if-none-match']).toBeUndefined();
    expect(request.body).toBe('');
  });

  it('long-polls with If-None-Match and wait; 304 is "not modified" with the same etag', async () => {
    const { server, client } = await bench();
    server.on('GET', '/scan-requests', () => ({
      status: 304,
      headers: { ETag: '"v1"', Date: 'Fri, 02 Jan 2026 03:04:36 GMT' },
    }));
    expect(await client.list({ etag: '"v1"', waitSec: 30 })).toEqual({
      notModified: true,
      etag: '"v1"',
      serverTime: Date.UTC(2026, 0, 2, 3, 4, 36),
    });
    expect(server.requests[0]!.url).toBe('/scan-requests?wait=30');
    expect(server.requests[0]!.headers['if-none-match']).toBe('"v1"');
  });

  it('gives a long poll waitSec on top of its timeout, and no more', async () => {
    const { server, client } = await bench({ timeoutMs: 300 });
    server.on('GET', '/scan-requests', async () => {
      await new Promise((r) => setTimeout(r, 800));
      return { status: 304, headers: { ETag: '"v1"' } };
    });
    expect(await client.list({ etag: '"v1"', waitSec: 1 })).toMatchObject({ notModified: true });
    server.on('GET', '/scan-requests', () => new Promise(() => undefined));
    const started = Date.now();
    const error = await failure(client.list({ etag: '"v1"', waitSec: 1 }));
    expect(error.code).toBe(ErrorCode.Timeout);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1250);
    expect(Date.now() - started).toBeLessThan(2500);
  });

  it('refuses waitSec outside 0–30 and a malformed etag before sending anything', async () => {
    const { server, client } = await bench();
    for (const waitSec of [31, -1, 1.5]) {
      expect((await failure(client.list({ waitSec }))).code).toBe(ErrorCode.InvalidArgument);
    }
    expect((await failure(client.list({ etag: 'v1\r\nX-Evil: 1' }))).code).toBe(ErrorCode.InvalidArgument);
    expect(server.requests).toEqual([]);
  });

  it('malformed answers are PROTOCOL_ERROR naming the field', async () => {
    const { server, client } = await bench();
    const cases: [unknown, string][] = [
      [{ requests: [scanRequest('sr_1', { created_at: 'yesterday' })] }, 'requests[0].created_at'],
      [{ requests: [scanRequest('sr_1', { state: 'lost' })] }, 'requests[0].state'],
      [{ requests: [scanRequest('sr/../x')] }, 'requests[0].id'],
      // The documented shapes: `sr_` + base64url (128 characters at most), relying-party ids as identifiers.
      [{ requests: [scanRequest('req_AAAA')] }, 'requests[0].id'],
      [{ requests: [scanRequest('sr_')] }, 'requests[0].id'],
      [{ requests: [scanRequest(`sr_${'A'.repeat(126)}`)] }, 'requests[0].id'],
      [{ requests: [scanRequest('sr_AA\u001b[2J')] }, 'requests[0].id'],
      [
        { requests: [scanRequest('sr_1', { relying_party: { id: 'door lock', name: 'x' } })] },
        'requests[0].relying_party.id',
      ],
      [{ requests: [scanRequest('sr_1', { relying_party: { id: '', name: 'x' } })] }, 'requests[0].relying_party.id'],
      [
        { requests: [scanRequest('sr_1', { relying_party: { id: 'd'.repeat(65), name: 'x' } })] },
        'requests[0].relying_party.id',
      ],
      [
        { requests: [scanRequest('sr_1', { relying_party: { id: 'door\u202e', name: 'x' } })] },
        'requests[0].relying_party.id',
      ],
      [{ requests: [scanRequest('sr_1', { relying_party: { id: 7, name: 'x' } })] }, 'requests[0].relying_party.id'],
      // A name that is nothing but controls is no name.
      [
        { requests: [scanRequest('sr_1', { relying_party: { id: 'door', name: '\u001b\u202e\n ' } })] },
        'requests[0].relying_party.name',
      ],
      [{ requests: [scanRequest('sr_1', { purpose: 42 })] }, 'requests[0].purpose'],
      [{ requests: [scanRequest('sr_1', { relying_party: 'door' })] }, 'requests[0].relying_party'],
      [{ requests: [scanRequest('sr_1', { accepted_chips: ['SPARK 2'] })] }, 'requests[0].accepted_chips'],
      [{ requests: [scanRequest('sr_1'), 7] }, 'requests[1]'],
      [{ requests: 'none' }, 'requests'],
      [[], '(body)'],
    ];
    for (const [json, field] of cases) {
      server.on('GET', '/scan-requests', () => ({ json }));
      const error = await failure(client.list());
      expect(error.code, field).toBe(ErrorCode.ProtocolError);
      expect(error.details['field'], field).toBe(field);
    }
    server.on('GET', '/scan-requests', () => ({ raw: '<html>oops</html>', headers: { 'Content-Type': 'text/html' } }));
    expect((await failure(client.list())).code).toBe(ErrorCode.ProtocolError);
    server.on('GET', '/scan-requests', () => ({ raw: '' }));
    expect((await failure(client.list())).code).toBe(ErrorCode.ProtocolError);
  });

  it('makes relying-party text safe to print: no escape sequences, no bidi controls, capped with an ellipsis', async () => {
    const { server, client } = await bench();
    server.on('GET', '/scan-requests', () => ({
      json: {
        requests: [
          scanRequest('sr_q5Yb3E8kWJ2xVh0cTn4aLw', {
            relying_party: { id: 'door-lock.v2_A', name: '\u001b]0;pwned\u0007Front \u202edoor\u202c' },
            purpose: '\u001b[2J\u001b[1;31mOpen\r\nthe\tfront\u0000 door\u007f\u009b31m\u0085now',
          }),
          scanRequest('sr_2', {
            relying_party: { id: 'bank', name: `\u2066${'N'.repeat(150)}\u2069` },
            purpose: `\u200e\u200f\u061c${'é'.repeat(300)}`,
          }),
          // Astral characters are cut whole, never into half a surrogate pair; the cut's space goes too.
          scanRequest('sr_3', { purpose: `${'🔑'.repeat(198)} 🔑🔑🔑`, relying_party: { id: 'k', name: 'Keys' } }),
          scanRequest('sr_4', { purpose: '' }),
        ],
      },
    }));
    const list = await client.list();
    const requests = list.notModified ? [] : list.requests;
    expect(requests).toHaveLength(4);
    expect(requests[0]).toMatchObject({
      relyingParty: { id: 'door-lock.v2_A', name: ']0;pwnedFront door' },
      purpose: '[2J[1;31mOpen the front door31m now',
    });
    expect(requests[1]!.relyingParty.name).toBe(`${'N'.repeat(99)}…`);
    expect(requests[1]!.purpose).toBe(`${'é'.repeat(199)}…`);
    expect(Array.from(requests[1]!.purpose)).toHaveLength(200);
    expect(requests[2]!.purpose).toBe(`${'🔑'.repeat(198)}…`);
    expect(requests[3]!.purpose).toBe('');
    for (const request of requests) {
      for (const text of [request.relyingParty.name, request.purpose]) {
        expect(text).not.toMatch(/[\p{Cc}\p{Bidi_Control}]/u);
      }
    }
  });

  it('returns the platform clock (Date header) as serverTime on 200 and 304, and leaves it out when unusable', async () => {
    const { server, client } = await bench();
    const date = 'Tue, 01 Dec 2026 09:00:41 GMT';
    server.sequence('GET', '/scan-requests', [
      () => ({ json: { requests: [scanRequest('sr_1')] }, headers: { ETag: '"v1"', Date: date } }),
      () => ({ status: 304, headers: { ETag: '"v1"', Date: 'Tue, 01 Dec 2026 09:01:11 GMT' } }),
      () => ({ json: { requests: [] }, headers: { Date: 'yesterday' } }),
    ]);
    const first = await client.list();
    expect(first.serverTime).toBe(Date.UTC(2026, 11, 1, 9, 0, 41));
    // What the agent does with it: expiresAt on its own clock, whatever the platform's clock says.
    const localNow = Date.UTC(2026, 11, 1, 9, 3, 41); // this computer runs 3 minutes fast
    const requests = first.notModified ? [] : first.requests;
    expect(requests[0]!.expiresAt - first.serverTime! + localNow).toBe(
      Date.UTC(2026, 0, 2, 3, 9, 5, 500) - Date.UTC(2026, 11, 1, 9, 0, 41) + localNow,
    );
    expect(await client.list({ etag: '"v1"', waitSec: 30 })).toEqual({
      notModified: true,
      etag: '"v1"',
      serverTime: Date.UTC(2026, 11, 1, 9, 1, 11),
    });
    const garbled = await client.list();
    expect(garbled.serverTime).toBeUndefined();
    expect('serverTime' in garbled).toBe(false);

    // No Date header at all (a proxy that strips it).
    const stripping = createScanRequestClient({
      platformUrl: server.url,
      session: new CountingTokens(),
      fetch: async (input, init) => {
        const response = await fetch(input, init);
        const headers = new Headers(response.headers);
        headers.delete('date');
        return new Response(response.body, { status: response.status, headers });
      },
    });
    server.on('GET', '/scan-requests', () => ({ json: { requests: [] } }));
    expect(await stripping.list()).toEqual({ notModified: false, requests: [], etag: undefined });
  });

  it('does not follow redirects, so the bearer token never goes elsewhere', async () => {
    const { server, client } = await bench();
    server.on('GET', '/scan-requests', () => ({ status: 307, headers: { Location: '/elsewhere' } }));
    expect((await failure(client.list())).code).toBe(ErrorCode.ProtocolError);
    expect(server.requests.map((r) => r.url)).toEqual(['/scan-requests?wait=0']);
  });
});

describe('ScanRequestClient: 401 invalid_token', () => {
  it('refreshes once (forced) and repeats the call once with the new token', async () => {
    const { server, client, tokens } = await bench();
    server.sequence('GET', '/scan-requests', [
      () => ({
        status: 401,
        headers: { 'WWW-Authenticate': 'Bearer error="invalid_token"' },
        json: { error: 'invalid_token' },
      }),
      () => ({ json: { requests: [] }, headers: { ETag: '"v2"' } }),
    ]);
    expect(await client.list()).toEqual({
      notModified: false,
      requests: [],
      etag: '"v2"',
      serverTime: expect.any(Number),
    });
    expect(server.requests.map((r) => r.headers['authorization'])).toEqual([
      `Bearer ${token(1)}`,
      `Bearer ${token(2)}`,
    ]);
    expect(tokens.calls.map((c) => c.forceRefresh === true)).toEqual([false, true]);
  });

  it('a second 401 is PLATFORM_REJECTED (invalid_token, hint: log in), after exactly two requests', async () => {
    const { server, client } = await bench();
    server.on('POST', '/scan-requests/sr_1/cancel', () => ({
      status: 401,
      headers: { 'WWW-Authenticate': 'Bearer realm="x", error="invalid_token", error_description="expired"' },
    }));
    const error = await failure(client.cancel('sr_1'));
    expect(error.code).toBe(ErrorCode.PlatformRejected);
    expect(error.details).toMatchObject({ error: 'invalid_token', status: 401, requestId: 'sr_1' });
    expect(error.hint).toMatch(/tapline login/);
    expect(server.requests).toHaveLength(2);
  });

  it('a 401 that is not about the token (authentication_failed) is not retried', async () => {
    const { server, client, tokens } = await bench();
    server.on('POST', '/scan-requests/sr_1/answer', () => ({
      status: 401,
      json: { error: 'authentication_failed', error_description: 'The chip did not authenticate.' },
    }));
    const error = await failure(client.answer('sr_1', { claim: CLAIM, uid: SPARK2_UID, response: RESPONSE }));
    expect(error.code).toBe(ErrorCode.PlatformRejected);
    expect(error.details['error']).toBe('authentication_failed');
    expect(error.hint).toMatch(/still pending/);
    expect(server.requests).toHaveLength(1);
    expect(tokens.calls).toHaveLength(1);
  });

  it('with a real session: the 401 makes the session refresh at the provider, then the call succeeds', async () => {
    const server = await new ScriptedHttpServer().start();
    servers.push(server);
    const provider = await ScriptedProvider.start(server);
    const association = createDeviceAssociation({
      issuer: provider.issuer,
      clientId: 'tapline-desktop',
      allowInsecureHttp: true,
    });
    const store = new MemoryTokenStore({
      version: 1,
      issuer: provider.issuer.href,
      clientId: 'tapline-desktop',
      sub: 'a'.repeat(64),
      scope: 'openid offline_access scan_requests',
      accessToken: 'revoked-access',
      accessTokenExpiresAt: Date.now() + 600_000,
      refreshToken: 'refresh-0',
      associatedAt: Date.now(),
    });
    const session = new AssociatedSession({ store, association });
    server.on('POST', '/oidc/token', () => provider.tokens({ accessToken: 'access-1', refreshToken: 'refresh-1' }));
    server.on('GET', '/scan-requests', (request): ScriptedAnswer =>
      request.headers['authorization'] === 'Bearer access-1'
        ? { json: { requests: [] }, headers: { ETag: '"v1"' } }
        : { status: 401, headers: { 'WWW-Authenticate': 'Bearer error="invalid_token"' } },
    );
    const client = createScanRequestClient({ platformUrl: server.url, session });
    expect(await client.list()).toMatchObject({ requests: [], etag: '"v1"' });
    expect(server.requests.map((r) => `${r.method} ${new URL(r.url, 'http://x').pathname}`)).toEqual([
      'GET /scan-requests',
      'GET /oidc/.well-known/openid-configuration',
      'POST /oidc/token',
      'GET /scan-requests',
    ]);
    expect((await store.load())?.refreshToken).toBe('refresh-1');
  });
});

describe('ScanRequestClient.claim', () => {
  it('POSTs chip, uid, scheme and message as JSON, and returns the claim', async () => {
    const { server, client } = await bench();
    server.on('POST', '/scan-requests/sr_AAAA/claim', () => claimed);
    const claim = await client.claim('sr_AAAA', { chip: 'spark2', uid: '04517CA23B6E80', scheme: 2, message: MESSAGE });
    expect(claim).toEqual({ claim: CLAIM, scheme: 2, payload: PAYLOAD, expiresAt: Date.UTC(2026, 0, 2, 3, 5, 5) });
    const request = server.requests[0]!;
    expect(request.method).toBe('POST');
    expect(request.headers['content-type']).toBe('application/json');
    expect(request.headers['authorization']).toBe(`Bearer ${token(1)}`);
    expect(JSON.parse(request.body)).toEqual({ chip: 'spark2', uid: SPARK2_UID, scheme: 2, message: MESSAGE });
  });

  it('scheme 1 sends no message', async () => {
    const { server, client } = await bench();
    server.on('POST', '/scan-requests/sr_1/claim', () => ({
      json: { claim: CLAIM, scheme: 1, payload: 'aa'.repeat(16), expires_at: '2026-01-02T03:05:05Z' },
    }));
    await client.claim('sr_1', { chip: 'spark1', uid: 'e004011809a73b5c', scheme: 1 });
    expect(JSON.parse(server.requests[0]!.body)).toEqual({ chip: 'spark1', uid: 'e004011809a73b5c', scheme: 1 });
  });

  it('checks the answer: the scheme asked for, a payload of the right length, a date', async () => {
    const { server, client } = await bench();
    const ask = () => client.claim('sr_1', { chip: 'apex', uid: 'a5e1d0c3b2a19081', scheme: 2, message: MESSAGE });
    for (const json of [
      { ...(claimed.json as object), scheme: 1 },
      { ...(claimed.json as object), payload: 'abcd' },
      { ...(claimed.json as object), claim: '' },
      { ...(claimed.json as object), expires_at: 'soon' },
    ]) {
      server.on('POST', '/scan-requests/sr_1/claim', () => ({ json }));
      expect((await failure(ask())).code).toBe(ErrorCode.ProtocolError);
    }
  });

  it('maps the platform errors: 410 → REQUEST_EXPIRED with state; 4xx → PLATFORM_REJECTED with error; 5xx not retried', async () => {
    const { server, client } = await bench();
    const ask = () => client.claim('sr_1', { chip: 'spark2', uid: SPARK2_UID, scheme: 2, message: MESSAGE });
    server.on('POST', '/scan-requests/sr_1/claim', () => ({
      status: 410,
      json: { error: 'request_closed', error_description: 'The request was cancelled.', state: 'cancelled' },
    }));
    const closed = await failure(ask());
    expect(closed.code).toBe(ErrorCode.RequestExpired);
    expect(closed.details).toMatchObject({
      status: 410,
      error: 'request_closed',
      state: 'cancelled',
      requestId: 'sr_1',
    });

    for (const [status, error] of [
      [422, 'chip_not_accepted'],
      [403, 'chip_not_owned'],
      [404, 'not_found'],
      [400, 'invalid_request'],
    ] as const) {
      server.on('POST', '/scan-requests/sr_1/claim', () => ({ status, json: { error, error_description: 'No.' } }));
      const refused = await failure(ask());
      expect(refused.code, error).toBe(ErrorCode.PlatformRejected);
      expect(refused.details, error).toMatchObject({ status, error, endpoint: 'claim' });
      expect(refused.message).toContain('No.');
    }

    const before = server.requests.length;
    server.on('POST', '/scan-requests/sr_1/claim', () => ({
      status: 503,
      raw: 'down',
      headers: { 'Retry-After': '7' },
    }));
    const down = await failure(ask());
    expect(down.code).toBe(ErrorCode.PlatformUnavailable);
    expect(down.details['retryAfterSec']).toBe(7);
    expect(server.requests.length - before).toBe(1);
  });

  it('refuses a malformed request id or body before sending anything', async () => {
    const { server, client } = await bench();
    expect(
      (await failure(client.claim('../admin', { chip: 'spark2', uid: SPARK2_UID, scheme: 2, message: MESSAGE }))).code,
    ).toBe(ErrorCode.InvalidArgument);
    expect(
      (await failure(client.claim('sr_1', { chip: 'spark2', uid: SPARK2_UID, scheme: 2, message: 'abcd' }))).code,
    ).toBe(ErrorCode.InvalidArgument);
    expect(server.requests).toEqual([]);
  });
});

describe('ScanRequestClient.answer', () => {
  it('POSTs claim, uid and response, and returns the confirmation', async () => {
    const { server, client } = await bench();
    server.on('POST', '/scan-requests/sr_1/answer', () => answered);
    expect(await client.answer('sr_1', { claim: CLAIM, uid: SPARK2_UID, response: RESPONSE.toUpperCase() })).toEqual({
      state: 'answered',
      answeredAt: Date.UTC(2026, 0, 2, 3, 4, 7),
    });
    expect(JSON.parse(server.requests[0]!.body)).toEqual({ claim: CLAIM, uid: SPARK2_UID, response: RESPONSE });
  });

  it('retries an ambiguous failure (5xx, dropped connection) with the identical body, at most twice', async () => {
    const { server, client, log } = await bench();
    server.sequence('POST', '/scan-requests/sr_1/answer', [
      () => ({ status: 502, raw: 'bad gateway' }),
      () => ({ destroy: true }),
      () => answered,
    ]);
    expect(await client.answer('sr_1', { claim: CLAIM, uid: SPARK2_UID, response: RESPONSE })).toMatchObject({
      state: 'answered',
    });
    const bodies = server.requests.map((r) => r.body);
    expect(bodies).toHaveLength(3);
    expect(new Set(bodies).size).toBe(1);

    server.on('POST', '/scan-requests/sr_2/answer', () => ({ status: 500, json: { error: 'server_error' } }));
    const error = await failure(client.answer('sr_2', { claim: CLAIM, uid: SPARK2_UID, response: RESPONSE }));
    expect(error.code).toBe(ErrorCode.PlatformUnavailable);
    expect(server.to('/scan-requests/sr_2/answer')).toHaveLength(3);
    expectNoSecrets(log.text());
  });

  it('retries a timed-out attempt, but never a refusal (409 claim_used, 400) or a closed request', async () => {
    const { server, client } = await bench({ timeoutMs: 150 });
    server.sequence('POST', '/scan-requests/sr_1/answer', [() => new Promise(() => undefined), () => answered]);
    expect(await client.answer('sr_1', { claim: CLAIM, uid: SPARK2_UID, response: RESPONSE })).toMatchObject({
      state: 'answered',
    });
    expect(server.to('/scan-requests/sr_1/answer')).toHaveLength(2);

    for (const [id, status, error] of [
      ['sr_2', 409, 'claim_used'],
      ['sr_3', 400, 'claim_invalid'],
      ['sr_4', 410, 'request_closed'],
    ] as const) {
      server.on('POST', `/scan-requests/${id}/answer`, () => ({ status, json: { error } }));
      const refused = await failure(client.answer(id, { claim: CLAIM, uid: SPARK2_UID, response: RESPONSE }));
      expect(refused.details['error']).toBe(error);
      expect(server.to(`/scan-requests/${id}/answer`)).toHaveLength(1);
    }
  });

  it('stops retrying when the caller aborts', async () => {
    const { server, client } = await bench({ answerRetryDelayMs: 200 });
    server.on('POST', '/scan-requests/sr_1/answer', () => ({ status: 503, raw: 'busy' }));
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const error = await failure(
      client.answer('sr_1', { claim: CLAIM, uid: SPARK2_UID, response: RESPONSE }, { signal: controller.signal }),
    );
    expect(error.code).toBe(ErrorCode.Aborted);
    expect(server.requests).toHaveLength(1);
  });

  it('never lets the claim, the chip answer or the token reach an error, even when the platform echoes them', async () => {
    const { server, client, log } = await bench();
    server.on('POST', '/scan-requests/sr_1/answer', () => ({
      status: 400,
      json: { error: 'claim_invalid', error_description: `claim ${CLAIM} for ${RESPONSE} with ${token(1)} is unknown` },
    }));
    const error = await failure(client.answer('sr_1', { claim: CLAIM, uid: SPARK2_UID, response: RESPONSE }));
    expect(error.code).toBe(ErrorCode.PlatformRejected);
    expect(error.message).toContain('[redacted]');
    expectNoSecrets(JSON.stringify(error.toJSON()));
    expectNoSecrets(log.text());
  });
});

describe('ScanRequestClient.cancel and the network', () => {
  it('cancel POSTs no body; 410 is REQUEST_EXPIRED', async () => {
    const { server, client } = await bench();
    server.on('POST', '/scan-requests/sr_1/cancel', () => ({ json: { state: 'cancelled' } }));
    expect(await client.cancel('sr_1')).toEqual({ state: 'cancelled' });
    expect(server.requests[0]).toMatchObject({ method: 'POST', body: '' });
    expect(server.requests[0]!.headers['content-type']).toBeUndefined();
    server.on('POST', '/scan-requests/sr_1/cancel', () => ({
      status: 410,
      json: { error: 'request_closed', state: 'answered' },
    }));
    const error = await failure(client.cancel('sr_1'));
    expect(error.code).toBe(ErrorCode.RequestExpired);
    expect(error.details['state']).toBe('answered');
  });

  it('an unreachable platform is PLATFORM_UNAVAILABLE with the network error', async () => {
    const server = await new ScriptedHttpServer().start();
    const url = server.url;
    await server.close();
    const client = createScanRequestClient({ platformUrl: url, session: new CountingTokens() });
    const error = await failure(client.list());
    expect(error.code).toBe(ErrorCode.PlatformUnavailable);
    expect(error.details['networkError']).toBe('ECONNREFUSED');
  });

  it('refuses to send tokens over plain http except on this computer (INVALID_ARGUMENT with a hint)', () => {
    const make = (platformUrl: string) => () => createScanRequestClient({ platformUrl, session: new CountingTokens() });
    for (const url of [
      'http://platform.example/',
      'http://192.168.1.20:8080/',
      'http://127.0.0.1.nip.io/',
      'http://[::2]/',
      'http://localhost.example/',
    ]) {
      expect(make(url), url).toThrow(
        expect.objectContaining({ code: ErrorCode.InvalidArgument, hint: expect.stringMatching(/https:\/\//) }),
      );
    }
    for (const url of [
      'https://platform.example/',
      'http://127.0.0.1:4000/',
      'http://127.8.9.10/',
      'http://localhost:4000/api',
      'http://[::1]:4000/',
    ]) {
      expect(make(url), url).not.toThrow();
    }
  });

  it('keeps a path prefix of the platform URL', async () => {
    const { server } = await bench();
    const client = createScanRequestClient({
      platformUrl: new URL('api/v2', server.url),
      session: new CountingTokens(),
    });
    server.on('GET', '/api/v2/scan-requests', () => ({ json: { requests: [] } }));
    expect(await client.list()).toMatchObject({ notModified: false, requests: [], etag: undefined });
  });
});
