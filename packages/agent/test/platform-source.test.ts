import { firstValueFrom, take, toArray } from 'rxjs';
import { describe, expect, it } from 'vitest';
import {
  ErrorCode,
  TaplineError,
  silentLogger,
  type ListScanRequestsOptions,
  type PlatformScanRequest,
  type ScanRequestClient,
  type ScanRequestList,
} from '@tapline/core';
import { PlatformRequestSource, type PlatformReachability } from '../src/index.js';

const request = (id: string): PlatformScanRequest => ({
  id,
  relyingParty: { id: 'door', name: 'Front door' },
  purpose: `Purpose of ${id}`,
  createdAt: 1_000,
  expiresAt: 2_000_000_000_000,
  acceptedChips: ['spark2'],
  state: 'pending',
});

/**
 * A platform whose list answers come from `script`, one per call (each a list, an error, or "hold until aborted");
 * calls past the script hold until aborted, like a long poll with nothing new.
 */
function scriptedClient(
  script: (readonly PlatformScanRequest[] | TaplineError)[],
  serverAheadMs?: number,
  withEtag = true,
) {
  const calls: { at: number; options: ListScanRequestsOptions }[] = [];
  let etag = 0;
  const client: ScanRequestClient = {
    baseUrl: new URL('http://127.0.0.1:9/'),
    list: (options = {}) => {
      calls.push({ at: performance.now(), options });
      const next = script.shift();
      if (next === undefined) {
        return new Promise<ScanRequestList>((_, reject) => {
          options.signal?.addEventListener('abort', () => reject(new TaplineError(ErrorCode.Aborted, 'aborted')), {
            once: true,
          });
        });
      }
      if (next instanceof TaplineError) return Promise.reject(next);
      etag += 1;
      const serverTime = serverAheadMs === undefined ? {} : { serverTime: Date.now() + serverAheadMs };
      return Promise.resolve({
        notModified: false,
        requests: next,
        etag: withEtag ? `"${etag}"` : undefined,
        ...serverTime,
      } as ScanRequestList);
    },
    claim: () => Promise.reject(new Error('not used')),
    answer: () => Promise.reject(new Error('not used')),
    cancel: () => Promise.reject(new Error('not used')),
  };
  return { client, calls };
}

const unavailable = (extra: Record<string, unknown> = {}) =>
  new TaplineError(ErrorCode.PlatformUnavailable, 'The platform is unavailable.', { details: extra });

describe('PlatformRequestSource', () => {
  it('offers nothing before the first successful listing, then the list, and asks with the etag from then on', async () => {
    const { client, calls } = scriptedClient([unavailable(), [request('sr_a'), request('sr_b')]]);
    const source = new PlatformRequestSource({ client, logger: silentLogger, backoff: { initialMs: 5, maxMs: 5 } });
    const first = firstValueFrom(source.pending$);
    source.start();
    expect((await first).map((r) => r.id)).toEqual(['sr_a', 'sr_b']);
    await new Promise((r) => setTimeout(r, 20));
    // Until the first listing every poll returns at once; then it is a long poll with that listing's etag.
    expect(calls.map((c) => c.options.waitSec)).toEqual([0, 0, 25]);
    expect(calls[2]?.options.etag).toBe('"1"');
    await source.stop();
  });

  it('honours Retry-After over its own backoff', async () => {
    const { client, calls } = scriptedClient([unavailable({ retryAfterSec: 1 }), [request('sr_a')]]);
    const source = new PlatformRequestSource({ client, logger: silentLogger, backoff: { initialMs: 5, maxMs: 5 } });
    const first = firstValueFrom(source.pending$);
    source.start();
    await first;
    expect(calls[1]!.at - calls[0]!.at).toBeGreaterThanOrEqual(950);
    await source.stop();
  });

  it('never offers an answered request again, until the platform itself stops listing it', async () => {
    const { client } = scriptedClient([
      [request('sr_a'), request('sr_b')],
      [request('sr_a'), request('sr_b')],
      [request('sr_b')],
    ]);
    const source = new PlatformRequestSource({ client, logger: silentLogger });
    const lists = firstValueFrom(source.pending$.pipe(take(4), toArray()));
    source.start();
    await firstValueFrom(source.pending$);
    source.forget('sr_a');
    source.refresh(); // the platform still lists sr_a once
    await new Promise((r) => setTimeout(r, 20));
    source.refresh(); // then no more
    expect((await lists).map((list) => list.map((r) => r.id))).toEqual([
      ['sr_a', 'sr_b'],
      ['sr_b'],
      ['sr_b'],
      ['sr_b'],
    ]);
    expect(source.requests.map((r) => r.id)).toEqual(['sr_b']);
    await source.stop();
  });

  it('reports reachability changes, not every retry, and not the first success', async () => {
    const { client } = scriptedClient([[], unavailable(), unavailable(), [request('sr_a')]]);
    const changes: PlatformReachability[] = [];
    const source = new PlatformRequestSource({
      client,
      logger: silentLogger,
      backoff: { initialMs: 5, maxMs: 5 },
      onReachability: (r) => changes.push(r),
    });
    source.start();
    await firstValueFrom(source.pending$);
    source.refresh();
    const deadline = Date.now() + 2000;
    while (source.requests.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(changes.map((c) => [c.reachable, c.lastError?.code])).toEqual([
      [false, ErrorCode.PlatformUnavailable],
      [true, undefined],
    ]);
    await source.stop();
  });

  it("moves the platform's times onto this machine's clock, from the listing's Date header", async () => {
    const hour = 3_600_000;
    const { client } = scriptedClient([[request('sr_a')]], hour);
    const source = new PlatformRequestSource({ client, logger: silentLogger });
    const first = firstValueFrom(source.pending$);
    source.start();
    const [offered] = await first;
    // The platform is an hour ahead: its expiry, on our clock, is an hour earlier (to the millisecond or so).
    expect(Math.abs(offered!.expiresAt! - (request('sr_a').expiresAt - hour))).toBeLessThan(1000);
    expect(Math.abs(offered!.createdAt! - (1_000 - hour))).toBeLessThan(1000);
    await source.stop();
  });

  it('paces its polls when the platform gives no etag (it could not hold them), instead of running flat out', async () => {
    const { client, calls } = scriptedClient([[], [], [], []], undefined, false);
    const source = new PlatformRequestSource({ client, logger: silentLogger });
    source.start();
    await new Promise((r) => setTimeout(r, 1500));
    await source.stop();
    // Without pacing this would be all four answers and then a held call within a millisecond or two.
    expect(calls.length).toBeLessThanOrEqual(2);
  });

  it('keeps polling when its reachability listener throws', async () => {
    const { client, calls } = scriptedClient([unavailable(), [request('sr_a')]]);
    const source = new PlatformRequestSource({
      client,
      logger: silentLogger,
      backoff: { initialMs: 5, maxMs: 5 },
      onReachability: () => {
        throw new Error('a broken output hook');
      },
    });
    const first = firstValueFrom(source.pending$);
    source.start();
    expect((await first).map((r) => r.id)).toEqual(['sr_a']);
    expect(calls.length).toBeGreaterThanOrEqual(2);
    await source.stop();
  });
});
