import { describe, expect, it } from 'vitest';
import { NEVER, concat, defer, map, of, take, throwError, type Observable } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import {
  ErrorCode,
  TaplineError,
  backoffDelay,
  pcscDeviceSource,
  silentLogger,
  usbDeviceSource,
  type DeviceEvent,
  type PcscReaderEvent,
  type PcscTransport,
  type UsbDeviceLike,
  type UsbTransport,
} from '../src/index.js';
import { scriptedPcsc } from '../src/testing/index.js';

const noJitter = { random: () => 0.5 };
const down = (): TaplineError => new TaplineError(ErrorCode.TransportUnavailable, 'pcscd is down');

function scheduler(): TestScheduler {
  return new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
}

/** A PC/SC transport whose every subscription runs `behaviour`, counting subscriptions. */
function countingTransport(
  behaviour: (attempt: number) => Observable<PcscReaderEvent>,
): PcscTransport & { readonly subscriptions: number } {
  let subscriptions = 0;
  return {
    get subscriptions() {
      return subscriptions;
    },
    readers$: defer(() => behaviour(++subscriptions)),
  };
}

const summary = (event: DeviceEvent): string =>
  event.type === 'unavailable' ? `unavailable:${event.error.code}:${event.retryInMs}` : `${event.type}`;

describe('backoffDelay', () => {
  it('doubles from the initial delay and stops at the maximum', () => {
    expect([1, 2, 3, 4, 5, 6, 7].map((n) => backoffDelay(n, noJitter))).toEqual([
      1000, 2000, 4000, 8000, 16000, 30000, 30000,
    ]);
    expect(backoffDelay(1, { initialMs: 250, maxMs: 1000, ...noJitter })).toBe(250);
    expect(backoffDelay(10_000, noJitter)).toBe(30_000);
  });

  it('keeps jitter within ±jitter of the base delay', () => {
    expect(backoffDelay(1, { random: () => 0 })).toBe(800);
    expect(backoffDelay(1, { random: () => 0.999_999 })).toBe(1200);
    for (let attempt = 1; attempt < 12; attempt++) {
      const delay = backoffDelay(attempt);
      const base = Math.min(30_000, 1000 * 2 ** (attempt - 1));
      expect(delay).toBeGreaterThanOrEqual(base * 0.8);
      expect(delay).toBeLessThanOrEqual(base * 1.2);
    }
  });

  it('treats attempt 0 or less as the first, and never returns 0 even for silly options', () => {
    expect(backoffDelay(0, noJitter)).toBe(1000);
    expect(backoffDelay(-3, noJitter)).toBe(1000);
    expect(backoffDelay(1, { jitter: 5, random: () => 0 })).toBeGreaterThanOrEqual(1);
    expect(backoffDelay(1, { initialMs: 0, ...noJitter })).toBe(1);
  });
});

describe('pcscDeviceSource', () => {
  it('maps reader events to device events', () => {
    const pcsc = scriptedPcsc();
    const reader = pcsc.addReader('Virtual PCD 00 00');
    const events: DeviceEvent[] = [];
    const subscription = pcscDeviceSource(pcsc.transport, {
      logger: silentLogger,
      scheduler: scheduler(),
    }).devices$.subscribe((e) => events.push(e));
    pcsc.removeReader('Virtual PCD 00 00');
    expect(events).toEqual([
      { type: 'attached', device: { transport: 'pcsc', name: 'Virtual PCD 00 00', port: reader.port } },
      { type: 'detached', transport: 'pcsc', name: 'Virtual PCD 00 00' },
    ]);
    subscription.unsubscribe();
    expect(pcsc.subscribers).toBe(0);
  });

  it('announces an unavailable transport, then retries after the backoff delay', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable }) => {
      const transport = countingTransport(() => cold<PcscReaderEvent>('#', undefined, down()));
      const source = pcscDeviceSource(transport, { logger: silentLogger, scheduler: ts, backoff: noJitter });
      expectObservable(source.devices$.pipe(take(3), map(summary))).toBe('a 999ms b 1999ms (c|)', {
        a: 'unavailable:TRANSPORT_UNAVAILABLE:1000',
        b: 'unavailable:TRANSPORT_UNAVAILABLE:2000',
        c: 'unavailable:TRANSPORT_UNAVAILABLE:4000',
      });
    });
  });

  it('starts the backoff over once the transport delivers a reader again', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable }) => {
      const reader = scriptedPcsc().addReader('R').port;
      const transport = countingTransport((attempt) =>
        attempt === 1
          ? cold<PcscReaderEvent>('#', undefined, down())
          : attempt === 2
            ? cold('r 9ms #', { r: { type: 'attached', reader } }, down())
            : NEVER,
      );
      const source = pcscDeviceSource(transport, { logger: silentLogger, scheduler: ts, backoff: noJitter });
      expectObservable(source.devices$.pipe(map(summary)), '^ 3000ms !').toBe('u 999ms a 9ms v', {
        u: 'unavailable:TRANSPORT_UNAVAILABLE:1000',
        a: 'attached',
        v: 'unavailable:TRANSPORT_UNAVAILABLE:1000',
      });
    });
  });

  it('never spins: a transport that always fails is tried a handful of times a minute', () => {
    const ts = scheduler();
    const transport = countingTransport(() =>
      throwError(() => new Error('SCardEstablishContext error: Service not available.(0x8010001d)')),
    );
    const codes: string[] = [];
    ts.run(() => {
      const subscription = pcscDeviceSource(transport, {
        logger: silentLogger,
        scheduler: ts,
        backoff: noJitter,
      }).devices$.subscribe((e) => codes.push(summary(e)));
      ts.schedule(() => subscription.unsubscribe(), 60_000);
    });
    // Attempts at 0, 1 s, 3 s, 7 s, 15 s and 31 s; the next would be at 61 s.
    expect(transport.subscriptions).toBe(6);
    expect(codes[0]).toBe('unavailable:TRANSPORT_UNAVAILABLE:1000');
    expect(codes.at(-1)).toBe('unavailable:TRANSPORT_UNAVAILABLE:30000');
  });

  it('gives every new subscriber a fresh backoff', () => {
    const ts = scheduler();
    const transport = countingTransport(() => throwError(() => down()));
    const source = pcscDeviceSource(transport, { logger: silentLogger, scheduler: ts, backoff: noJitter });
    const first: string[] = [];
    const second: string[] = [];
    ts.run(() => {
      const subscription = source.devices$.subscribe((e) => first.push(summary(e)));
      ts.schedule(() => subscription.unsubscribe(), 5000);
      ts.schedule(() => {
        const again = source.devices$.subscribe((e) => second.push(summary(e)));
        ts.schedule(() => again.unsubscribe(), 10);
      }, 6000);
    });
    expect(first).toEqual([
      'unavailable:TRANSPORT_UNAVAILABLE:1000',
      'unavailable:TRANSPORT_UNAVAILABLE:2000',
      'unavailable:TRANSPORT_UNAVAILABLE:4000',
    ]);
    expect(second).toEqual(['unavailable:TRANSPORT_UNAVAILABLE:1000']);
  });
});

describe('usbDeviceSource', () => {
  it('names devices by their strings and USB id, the same way on attach and detach', () => {
    const device: UsbDeviceLike = {
      vendorId: 0x04e6,
      productId: 0x5591,
      manufacturerName: 'SCM Micro',
      productName: 'SCL3711-NFC&RW',
      serialNumber: undefined,
      opened: false,
      open: () => Promise.resolve(),
      close: () => Promise.resolve(),
      selectConfiguration: () => Promise.resolve(),
      claimInterface: () => Promise.resolve(),
      releaseInterface: () => Promise.resolve(),
      transferIn: () => Promise.resolve({}),
      transferOut: () => Promise.resolve({ bytesWritten: 0 }),
    };
    const usb: UsbTransport = {
      devices$: concat(of({ type: 'attached' as const, device }, { type: 'detached' as const, device }), NEVER),
    };
    const events: DeviceEvent[] = [];
    const subscription = usbDeviceSource(usb, { logger: silentLogger, scheduler: scheduler() }).devices$.subscribe(
      (e) => events.push(e),
    );
    subscription.unsubscribe();
    expect(events).toEqual([
      {
        type: 'attached',
        device: {
          transport: 'usb',
          name: 'SCM Micro SCL3711-NFC&RW (04e6:5591)',
          vendorId: 0x04e6,
          productId: 0x5591,
          port: device,
        },
      },
      { type: 'detached', transport: 'usb', name: 'SCM Micro SCL3711-NFC&RW (04e6:5591)' },
    ]);
  });
});
