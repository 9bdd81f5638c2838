import { describe, expect, it } from 'vitest';
import { call, platformForTest } from './platform-support.js';

describe('reference platform: HTTP surface', () => {
  it('listens on 127.0.0.1 on an ephemeral port and closes idempotently', async () => {
    const platform = await platformForTest();
    expect(platform.url.hostname).toBe('127.0.0.1');
    expect(Number(platform.url.port)).toBeGreaterThan(0);
    expect(platform.url.pathname).toBe('/');
    expect(platform.jwksUrl.href).toBe(new URL('/.well-known/jwks.json', platform.url).href);
    await platform.close();
    await platform.close();
    await expect(fetch(new URL('/challenge', platform.url), { method: 'POST' })).rejects.toThrow();
  });

  it('enforces X-API-VIVOKEY: missing or wrong is 401 with a JSON error', async () => {
    const platform = await platformForTest({ apiKey: 'test-key' });
    expect(platform.apiKey).toBe('test-key');
    for (const path of ['/challenge', '/session', '/validate', '/validate.json']) {
      const missing = await call(platform, path, { scheme: 1 }, { apiKey: null });
      expect(missing.status).toBe(401);
      expect(missing.json).toEqual({ error: 'missing or invalid X-API-VIVOKEY' });
      expect(missing.headers.get('content-type')).toMatch(/^application\/json/);
      expect((await call(platform, path, { scheme: 1 }, { apiKey: 'test-kez' })).status).toBe(401);
      expect((await call(platform, path, { scheme: 1 }, { apiKey: 'test-key-longer' })).status).toBe(401);
    }
    expect((await call(platform, '/challenge', { scheme: 1 })).status).toBe(200);
    expect(platform.stats.challengesIssued).toBe(1);
  });

  it('generates a random API key by default', async () => {
    const a = await platformForTest();
    const b = await platformForTest();
    expect(a.apiKey).toMatch(/^[0-9a-f]{64}$/);
    expect(a.apiKey).not.toBe(b.apiKey);
  });

  it('answers 404 for an unknown path and 405 with Allow for a wrong method', async () => {
    const platform = await platformForTest();
    const unknown = await call(platform, '/v1/get-challenge', {});
    expect(unknown).toMatchObject({ status: 404, json: { error: 'no such endpoint: /v1/get-challenge' } });
    const get = await call(platform, '/challenge', undefined, { method: 'GET' });
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');
    const post = await call(platform, '/.well-known/jwks.json', {}, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    expect(platform.stats.requests).toEqual({ other: 1, '/challenge': 1, '/.well-known/jwks.json': 1 });
  });

  it('serves the JWKS without an API key', async () => {
    const platform = await platformForTest();
    const jwks = await call(platform, '/.well-known/jwks.json', undefined, { method: 'GET', apiKey: null });
    expect(jwks.status).toBe(200);
    expect(jwks.json).toEqual(platform.jwks);
    expect(jwks.json!['keys']).toEqual([
      expect.objectContaining({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig', kid: platform.currentKid }),
    ]);
    expect(JSON.stringify(jwks.json)).not.toMatch(/"d"/);
  });

  it('answers 400 for a body that is not JSON, not an object, or not of the documented shape', async () => {
    const platform = await platformForTest();
    const cases: [string, unknown, string | RegExp][] = [
      ['/challenge', undefined, 'the body is not valid JSON'],
      ['/challenge', [1], 'the body must be a JSON object'],
      ['/challenge', null, 'the body must be a JSON object'],
      ['/challenge', { scheme: 3 }, 'scheme must be 1 or 2'],
      ['/challenge', { scheme: '2' }, 'scheme must be 1 or 2'],
      ['/challenge', { scheme: 1, uid: 'e004011809a73b5c' }, 'scheme 1 takes only {"scheme":1}'],
      ['/challenge', { scheme: 2, uid: '04517ca23b6e80' }, /^message must be/],
      [
        '/challenge',
        { scheme: 2, message: '00'.repeat(15), uid: '04517ca23b6e80' },
        'message must be 16 bytes, not 15',
      ],
      ['/challenge', { scheme: 2, message: '00'.repeat(16), uid: '0451' }, 'uid must be 7 or 8 bytes, not 2'],
      ['/challenge', { scheme: 2, message: '00'.repeat(16), uid: '04517ca23b6e80', x: 1 }, 'unexpected field: x'],
      ['/session', { uid: '04517ca23b6e80', response: '00' }, /^token must be/],
      ['/validate', {}, /^signature must be/],
      ['/validate', { signature: 'a', cld: 'x'.repeat(2049) }, 'cld must be at most 2048 characters'],
      ['/validate', { signature: 'a', extra: true, more: 1 }, 'unexpected fields: extra, more'],
    ];
    for (const [path, body, error] of cases) {
      const answer = await call(platform, path, body, body === undefined ? { rawBody: '{"scheme": 2,' } : {});
      expect(answer.status, JSON.stringify(body)).toBe(400);
      expect(answer.json!['error']).toEqual(typeof error === 'string' ? error : expect.stringMatching(error));
    }
  });

  it('answers 404 "chip not enrolled" for a uid it does not know', async () => {
    const platform = await platformForTest();
    const answer = await call(platform, '/challenge', { scheme: 2, message: '00'.repeat(16), uid: '04000000000000' });
    expect(answer).toMatchObject({ status: 404, json: { error: 'chip not enrolled' } });
  });

  it('answers 413 for a body over the limit and 415 for a Content-Type that is not JSON', async () => {
    const platform = await platformForTest({ maxBodyBytes: 1024 });
    const big = await call(platform, '/validate', { signature: 'x'.repeat(5000) });
    expect(big).toMatchObject({ status: 413, json: { error: 'the body exceeds 1024 bytes' } });
    const text = await call(platform, '/challenge', { scheme: 1 }, { contentType: 'text/plain' });
    expect(text.status).toBe(415);
    const charset = await call(
      platform,
      '/challenge',
      { scheme: 1 },
      { contentType: 'application/json; charset=utf-8' },
    );
    expect(charset.status).toBe(200);
    // The server is still healthy afterwards.
    expect((await call(platform, '/challenge', { scheme: 1 })).status).toBe(200);
  });

  it('issues a random 16-byte scheme 1 payload and a fresh opaque token each time', async () => {
    const platform = await platformForTest();
    const a = await call(platform, '/challenge', { scheme: 1 });
    const b = await call(platform, '/challenge', { scheme: 1 });
    expect(a.json!['payload']).toMatch(/^[0-9a-f]{32}$/);
    expect(a.json!['payload']).not.toBe(b.json!['payload']);
    expect(a.json!['token']).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(a.json!['token']).not.toBe(b.json!['token']);
    expect(a.headers.get('cache-control')).toBe('no-store');
  });
});
