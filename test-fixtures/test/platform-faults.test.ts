import { describe, expect, it } from 'vitest';
import { createSpark2Chip } from '../src/index.js';
import { call, platformForTest, scheme2Dialogue } from './platform-support.js';

function post(platform: { url: URL; apiKey: string }, path: string, body: unknown): Promise<Response> {
  return fetch(new URL(path, platform.url), {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-vivokey': platform.apiKey },
    body: JSON.stringify(body),
  });
}

describe('reference platform: fault injection', () => {
  it('latency: the answer comes at least ms late, only for the path and the number of times given', async () => {
    const platform = await platformForTest();
    platform.faults.set({ kind: 'latency', ms: 150, path: '/challenge', times: 1 });
    const start = performance.now();
    const answer = await post(platform, '/challenge', { scheme: 1 });
    expect(performance.now() - start).toBeGreaterThanOrEqual(150);
    expect(answer.status).toBe(200);
    expect(platform.faults.armed).toEqual([]);
    expect(platform.stats.faultsInjected).toBe(1);
  });

  it('status: a 5xx instead of the answer, without the request reaching the platform', async () => {
    const platform = await platformForTest();
    platform.faults.set({ kind: 'status', status: 503, path: '/challenge', times: 2 });
    for (let i = 0; i < 2; i++) {
      const answer = await call(platform, '/challenge', { scheme: 1 });
      expect(answer).toMatchObject({ status: 503, json: { error: 'injected fault' } });
    }
    expect(platform.stats.challengesIssued).toBe(0);
    expect((await call(platform, '/challenge', { scheme: 1 })).status).toBe(200);
  });

  it('status with processed: the platform consumed the token, but the client saw a 502', async () => {
    const platform = await platformForTest();
    const dialogue = await scheme2Dialogue(platform, createSpark2Chip(), 'spark2');
    platform.faults.add({ kind: 'status', status: 502, body: '<html>bad gateway</html>', processed: true, times: 1 });
    const lost = await call(platform, '/session', dialogue);
    expect(lost.status).toBe(502);
    expect(lost.text).toBe('<html>bad gateway</html>');
    expect(platform.stats.sessions.succeeded).toBe(1);
    expect((await call(platform, '/session', dialogue)).json).toEqual({ error: 'challenge token already used' });
  });

  it('reset: the connection is dropped before any answer and fetch rejects', async () => {
    const platform = await platformForTest();
    platform.faults.set({ kind: 'reset', path: '/challenge', times: 1 });
    await expect(post(platform, '/challenge', { scheme: 1 })).rejects.toThrow(TypeError);
    expect(platform.stats.challengesIssued).toBe(0);
    expect((await post(platform, '/challenge', { scheme: 1 })).status).toBe(200);
  });

  it('reset with processed: the challenge was issued, but its answer never arrived', async () => {
    const platform = await platformForTest();
    platform.faults.set({ kind: 'reset', processed: true, times: 1 });
    await expect(post(platform, '/challenge', { scheme: 1 })).rejects.toThrow(TypeError);
    expect(platform.stats.challengesIssued).toBe(1);
  });

  it('malformed-json: a 200 whose body does not parse', async () => {
    const platform = await platformForTest();
    platform.faults.set({ kind: 'malformed-json', path: '/challenge' });
    const answer = await post(platform, '/challenge', { scheme: 1 });
    expect(answer.status).toBe(200);
    expect(answer.headers.get('content-type')).toMatch(/^application\/json/);
    const text = await answer.text();
    expect(text.startsWith('{"payload":')).toBe(true);
    expect(() => JSON.parse(text) as unknown).toThrow(SyntaxError);
    // No times: it stays armed until cleared.
    await expect((await post(platform, '/challenge', { scheme: 1 })).json()).rejects.toThrow(SyntaxError);
    platform.faults.clear();
    expect(await (await post(platform, '/challenge', { scheme: 1 })).json()).toHaveProperty('token');
  });

  it('slow-body: the headers arrive at once, the body takes at least ms', async () => {
    const platform = await platformForTest();
    platform.faults.set({ kind: 'slow-body', ms: 300, chunks: 5, times: 1 });
    const start = performance.now();
    const answer = await post(platform, '/challenge', { scheme: 1 });
    const headersAt = performance.now() - start;
    const body = (await answer.json()) as Record<string, unknown>;
    const doneAt = performance.now() - start;
    expect(headersAt).toBeLessThan(250);
    expect(doneAt).toBeGreaterThanOrEqual(300);
    expect(body['payload']).toMatch(/^[0-9a-f]{32}$/);
  });

  it('combines faults: latency adds up and a slow body follows', async () => {
    const platform = await platformForTest();
    platform.faults.set([
      { kind: 'latency', ms: 60 },
      { kind: 'latency', ms: 60 },
      { kind: 'slow-body', ms: 100 },
    ]);
    const start = performance.now();
    await (await fetch(platform.jwksUrl)).json();
    expect(performance.now() - start).toBeGreaterThanOrEqual(220);
    expect(platform.stats.faultsInjected).toBe(3);
  });

  it('refuses a malformed fault', async () => {
    const platform = await platformForTest();
    expect(() => platform.faults.set({ kind: 'latency', ms: -1 })).toThrow(/ms/);
    expect(() => platform.faults.add({ kind: 'status', status: 99 })).toThrow(/status/);
    expect(() => platform.faults.add({ kind: 'reset', times: 0 })).toThrow(/times/);
    expect(() => platform.faults.add({ kind: 'reset', path: 'session' })).toThrow(/path/);
    expect(platform.faults.armed).toEqual([]);
  });

  it('close ends a request stuck in injected latency', async () => {
    const platform = await platformForTest();
    platform.faults.set({ kind: 'latency', ms: 60_000 });
    const pending = post(platform, '/challenge', { scheme: 1 });
    await new Promise((resolve) => setTimeout(resolve, 50));
    await platform.close();
    await expect(pending).rejects.toThrow(TypeError);
  });
});
