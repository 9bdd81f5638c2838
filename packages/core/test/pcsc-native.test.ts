import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { firstValueFrom, type Subscription } from 'rxjs';
import {
  ErrorCode,
  PcscState,
  createNativePcscTransport,
  fromHex,
  loadPcscBinding,
  mapPcscError,
  silentLogger,
  type PcscReaderEvent,
  type PcscReaderPort,
  type PcscReaderStatus,
  type PcscliteModuleLike,
  type TaplineError,
} from '../src/index.js';
import { fakePcsclite, PcscliteErrors, type FakePcscliteContext } from '../src/testing/index.js';

const ATR = fromHex('3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 03 00 00 00 00 68');

/** Waits (real time) until `check` holds; fails the test after `ms`. */
async function until(check: () => boolean, ms = 1000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((resolve) => setImmediate(resolve));
  }
}

interface Harness {
  readonly events: PcscReaderEvent[];
  readonly errors: unknown[];
  readonly subscription: Subscription;
  readonly context: () => FakePcscliteContext;
  readonly port: (name: string) => PcscReaderPort;
}

function start(
  options: Parameters<typeof fakePcsclite>[0] = {},
  platform?: NodeJS.Platform,
): Harness & { fake: ReturnType<typeof fakePcsclite> } {
  const fake = fakePcsclite(options);
  const transport = createNativePcscTransport({
    logger: silentLogger,
    loadBinding: () => Promise.resolve(fake.module),
    connectTimeoutMs: 200,
    ...(platform ? { platform } : {}),
  });
  const events: PcscReaderEvent[] = [];
  const errors: unknown[] = [];
  const subscription = transport.readers$.subscribe({
    next: (e) => events.push(e),
    error: (e: unknown) => errors.push(e),
  });
  return {
    fake,
    events,
    errors,
    subscription,
    context: () => {
      const last = fake.last;
      if (!last) throw new Error('no context yet');
      return last;
    },
    port: (name) => {
      const found = events.find(
        (e): e is Extract<PcscReaderEvent, { type: 'attached' }> => e.type === 'attached' && e.reader.name === name,
      );
      if (!found) throw new Error(`no attached ${name}`);
      return found.reader;
    },
  };
}

describe('native PC/SC transport: loading', () => {
  it('does not load the binding until readers$ is subscribed', async () => {
    let loads = 0;
    const fake = fakePcsclite();
    const transport = createNativePcscTransport({
      logger: silentLogger,
      loadBinding: () => {
        loads++;
        return Promise.resolve(fake.module);
      },
    });
    expect(loads).toBe(0);
    const subscription = transport.readers$.subscribe();
    await until(() => fake.contexts.length === 1);
    expect(loads).toBe(1);
    subscription.unsubscribe();
  });

  it('reports a missing module as TRANSPORT_UNAVAILABLE naming what to install, with the loader error as cause', async () => {
    const missing = Object.assign(new Error("Cannot find package 'pcsclite' imported from core"), {
      code: 'ERR_MODULE_NOT_FOUND',
    });
    const transport = createNativePcscTransport({ logger: silentLogger, loadBinding: () => Promise.reject(missing) });
    const error = await firstValueFrom(transport.readers$).then(
      () => undefined,
      (e: unknown) => e as TaplineError,
    );
    expect(error?.code).toBe(ErrorCode.TransportUnavailable);
    expect(error?.message).toContain('libpcsclite-dev');
    expect(error?.message).toContain('pnpm rebuild pcsclite');
    expect(error?.hint).toContain('pnpm rebuild pcsclite');
    expect(error?.cause).toBe(missing);
  });

  it('reports pcscd not running (the factory throws) as TRANSPORT_UNAVAILABLE telling how to start it', async () => {
    const h = start({ throwOnCreate: PcscliteErrors.noService() });
    await until(() => h.errors.length === 1);
    const error = h.errors[0] as TaplineError;
    expect(error.code).toBe(ErrorCode.TransportUnavailable);
    expect(error.message).toContain('pcscd.socket');
    expect(error.hint).toContain('"Smart Card" service');
    expect(error.details).toMatchObject({ pcscCode: '0x8010001d' });
    expect((error.cause as Error).message).toContain('0x8010001d');
  });
});

describe('native PC/SC transport: readers and status', () => {
  it('emits attached and detached as the binding finds and loses readers', async () => {
    const h = start({ readers: ['Virtual PCD 00 00'] });
    await until(() => h.events.length === 1);
    expect(h.events[0]).toMatchObject({ type: 'attached', reader: { name: 'Virtual PCD 00 00' } });
    h.context().addReader('Virtual PCD 00 01');
    h.context().removeReader('Virtual PCD 00 00');
    await until(() => h.events.length === 3);
    expect(h.events.slice(1)).toEqual([
      expect.objectContaining({ type: 'attached', reader: expect.objectContaining({ name: 'Virtual PCD 00 01' }) }),
      { type: 'detached', name: 'Virtual PCD 00 00' },
    ]);
    h.subscription.unsubscribe();
  });

  it('decodes status events (PRESENT 0x20 with the ATR, EMPTY, MUTE) and replays the current one to late subscribers', async () => {
    const h = start({ readers: ['R'] });
    await until(() => h.events.length === 1);
    const raw = h.context().readers.get('R')!;
    const port = h.port('R');
    const seen: PcscReaderStatus[] = [];
    const sub = port.status$.subscribe((s) => seen.push(s));
    raw.status(PcscState.Empty);
    raw.insert(ATR);
    expect(seen).toHaveLength(2);
    expect(seen[0]).toEqual({ present: false, state: PcscState.Empty });
    expect(seen[1]!.present).toBe(true);
    expect(seen[1]!.atr).toEqual(ATR);
    expect(seen[1]!.state & PcscState.Present).toBe(PcscState.Present);

    const late = await firstValueFrom(port.status$);
    expect(late.present).toBe(true);
    expect(late.atr).toEqual(ATR);

    raw.status(PcscState.Present | PcscState.Mute, ATR);
    expect(seen[2]!.present).toBe(false);
    raw.remove();
    expect(seen[3]!.present).toBe(false);
    expect(seen[3]!.atr).toBeUndefined();
    sub.unsubscribe();
    h.subscription.unsubscribe();
  });

  it('completes a port status stream when its reader ends', async () => {
    const h = start({ readers: ['R'] });
    await until(() => h.events.length === 1);
    let completed = false;
    h.port('R').status$.subscribe({ complete: () => (completed = true) });
    h.context().removeReader('R');
    await until(() => completed);
    h.subscription.unsubscribe();
  });
});

describe('native PC/SC transport: connect, transmit, control', () => {
  async function connected(platform?: NodeJS.Platform) {
    const h = start({ readers: ['R'] }, platform);
    await until(() => h.events.length === 1);
    const raw = h.context().readers.get('R')!;
    return { h, raw, port: h.port('R') };
  }

  it('connects shared with T0|T1 and direct with protocol 0, and maps control codes per platform', async () => {
    const { h, raw, port } = await connected();
    raw.insert(ATR);
    const card = await port.connect({ share: 'shared' });
    expect(card.protocol).toBe('T1');
    expect(raw.calls[0]).toEqual({ method: 'connect', args: [raw.SCARD_SHARE_SHARED, 3] });
    await card.disconnect();
    const direct = await port.connect({ share: 'direct' });
    expect(direct.protocol).toBe('none');
    expect(raw.calls.filter((c) => c.method === 'connect')[1]).toEqual({
      method: 'connect',
      args: [raw.SCARD_SHARE_DIRECT, 0],
    });
    expect(port.controlCode(3500)).toBe(0x42000dac);
    await direct.disconnect();
    h.subscription.unsubscribe();

    const win = await connected('win32');
    expect(win.port.controlCode(3500)).toBe(0x003136b0);
    win.h.subscription.unsubscribe();
  });

  it('fails connect with TAG_LOST when no card is present (0x8010000C)', async () => {
    const { h, port } = await connected();
    await expect(port.connect({ share: 'shared' })).rejects.toMatchObject({ code: ErrorCode.TagLost });
    h.subscription.unsubscribe();
  });

  it('transmits and copies the answer; control goes through SCardControl', async () => {
    const { h, raw, port } = await connected();
    raw.insert(ATR);
    raw.onTransmit = (data) =>
      Buffer.from(data).toString('hex') === 'ffca000000' ? fromHex('04A1B2C3D4E5F69000') : new Error('unexpected');
    raw.onControl = (code, data) =>
      code === 0x42000dac && data[0] === 0xe0 ? fromHex('E100000000') : new Error('unexpected');
    const card = await port.connect({ share: 'shared' });
    expect(await card.transmit(fromHex('FFCA000000'), { timeoutMs: 500 })).toEqual(fromHex('04A1B2C3D4E5F69000'));
    expect(await card.control(port.controlCode(3500), fromHex('E000001800'), { timeoutMs: 500 })).toEqual(
      fromHex('E100000000'),
    );
    await card.disconnect();
    h.subscription.unsubscribe();
  });

  it('turns a zero-byte answer (the card left mid-transmit) into TAG_LOST', async () => {
    const { h, raw, port } = await connected();
    raw.insert(ATR);
    raw.onTransmit = () => 'hang';
    const card = await port.connect({ share: 'shared' });
    const pending = card.transmit(fromHex('00A4040000'), { timeoutMs: 1000 });
    setTimeout(() => raw.remove(), 5);
    await expect(pending).rejects.toMatchObject({ code: ErrorCode.TagLost });
    h.subscription.unsubscribe();
  });

  it('maps binding errors: removed / no card → TAG_LOST, pcscd gone → TRANSPORT_UNAVAILABLE, others → PROTOCOL_ERROR', async () => {
    const { h, raw, port } = await connected();
    raw.insert(ATR);
    const card = await port.connect({ share: 'shared' });
    raw.onTransmit = () => PcscliteErrors.cardRemoved();
    await expect(card.transmit(fromHex('00'), { timeoutMs: 500 })).rejects.toMatchObject({ code: ErrorCode.TagLost });
    raw.onTransmit = () => new Error('SCardTransmit error: Service not available.(0x8010001d)');
    await expect(card.transmit(fromHex('00'), { timeoutMs: 500 })).rejects.toMatchObject({
      code: ErrorCode.TransportUnavailable,
    });
    raw.onTransmit = () => new Error('SCardTransmit error: Transaction failed.(0x80100016)');
    const failed = await card.transmit(fromHex('00'), { timeoutMs: 500 }).catch((e: unknown) => e as TaplineError);
    expect(failed).toMatchObject({ code: ErrorCode.ProtocolError, details: { pcscCode: '0x80100016' } });
    expect((failed as TaplineError).cause).toBeInstanceOf(Error);
    await expect(card.control(port.controlCode(3500), fromHex('E000001800'), { timeoutMs: 500 })).rejects.toMatchObject(
      {
        code: ErrorCode.UnsupportedCapability,
      },
    );
    expect(mapPcscError(PcscliteErrors.noSmartcard(), 'connect', 'R').code).toBe(ErrorCode.TagLost);
    expect(
      mapPcscError(new Error('SCardConnect error: Unknown reader specified.(0x80100009)'), 'connect', 'R').code,
    ).toBe(ErrorCode.ReaderGone);
    await card.disconnect();
    h.subscription.unsubscribe();
  });

  it('bounds transmit with the timeout and the abort signal', async () => {
    const { h, raw, port } = await connected();
    raw.insert(ATR);
    raw.onTransmit = () => 'hang';
    const card = await port.connect({ share: 'shared' });
    await expect(card.transmit(fromHex('00'), { timeoutMs: 20 })).rejects.toMatchObject({ code: ErrorCode.Timeout });
    const controller = new AbortController();
    const pending = card.transmit(fromHex('00'), { timeoutMs: 1000, signal: controller.signal });
    controller.abort();
    await expect(pending).rejects.toMatchObject({ code: ErrorCode.Aborted });
    await card.disconnect();
    h.subscription.unsubscribe();
  });

  it('serves transmits after one timed out, two at once too, and drops the late answer on disconnect', async () => {
    const { h, raw, port } = await connected();
    raw.insert(ATR);
    raw.onTransmit = (data) => {
      const hex = Buffer.from(data).toString('hex');
      if (hex === '01') return 'hang';
      return fromHex(`${hex}9000`);
    };
    const card = await port.connect({ share: 'shared' });
    await expect(card.transmit(fromHex('01'), { timeoutMs: 20 })).rejects.toMatchObject({ code: ErrorCode.Timeout });
    expect(await card.transmit(fromHex('02'), { timeoutMs: 500 })).toEqual(fromHex('029000'));
    const [a, b] = await Promise.all([
      card.transmit(fromHex('03'), { timeoutMs: 500 }),
      card.transmit(fromHex('04'), { timeoutMs: 500 }),
    ]);
    expect([a, b]).toEqual([fromHex('039000'), fromHex('049000')]);
    // The hung call returns (empty) on disconnect; nobody waits for it any more, so it must vanish quietly.
    await card.disconnect();
    h.subscription.unsubscribe();
  });

  it('releases a stale handle before connecting again, and the old connection then fails with TAG_LOST', async () => {
    const { h, raw, port } = await connected();
    raw.insert(ATR);
    const first = await port.connect({ share: 'shared' });
    raw.remove();
    raw.insert(ATR);
    const second = await port.connect({ share: 'shared' });
    expect(raw.calls.map((c) => c.method)).toEqual(['connect', 'disconnect', 'connect']);
    await expect(first.transmit(fromHex('00'), { timeoutMs: 100 })).rejects.toMatchObject({ code: ErrorCode.TagLost });
    await first.disconnect();
    expect(raw.connected).toBe(true);
    await second.disconnect();
    expect(raw.connected).toBe(false);
    h.subscription.unsubscribe();
  });
});

describe('native PC/SC transport: failure and release', () => {
  it('on a context error emits detached for every reader, then errors with TRANSPORT_UNAVAILABLE', async () => {
    const h = start({ readers: ['A', 'B'] });
    await until(() => h.events.length === 2);
    const context = h.context();
    const readers = [...context.readers.values()];
    context.die();
    expect(h.events.slice(2)).toEqual([
      { type: 'detached', name: 'A' },
      { type: 'detached', name: 'B' },
    ]);
    expect(h.errors).toHaveLength(1);
    expect(h.errors[0]).toMatchObject({ code: ErrorCode.TransportUnavailable, details: { pcscCode: '0x80100013' } });
    await until(() => readers.every((r) => r.closed) && context.closed);
    for (const reader of readers) expect(reader.violations).toEqual([]);
    // The binding keeps emitting after close; listeners must still be there or the process would crash.
    await new Promise((resolve) => setImmediate(resolve));
    expect(() => context.emit('error', PcscliteErrors.rpcTransport())).not.toThrow();
    for (const reader of readers) expect(() => reader.emit('error', PcscliteErrors.rpcTransport())).not.toThrow();
  });

  it('closes readers and the context on unsubscribe, and survives the error close() emits', async () => {
    const h = start({ readers: ['A'] });
    await until(() => h.events.length === 1);
    const context = h.context();
    const reader = context.readers.get('A')!;
    reader.insert(ATR);
    await h.port('A').connect({ share: 'shared' });
    h.subscription.unsubscribe();
    await until(() => reader.closed && context.closed);
    expect(reader.calls.map((c) => c.method)).toContain('disconnect');
    expect(reader.violations).toEqual([]);
    // FakePcscliteContext.close() emits 'error' (Command cancelled) on the next turn, as the binding does.
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    expect(context.listenerCount('error')).toBeGreaterThan(0);
    expect(reader.listenerCount('error')).toBeGreaterThan(0);
    expect(h.events).toHaveLength(1);
    expect(h.errors).toHaveLength(0);
  });

  it('closes a reader that the binding announces after unsubscribe', async () => {
    const h = start();
    await until(() => h.fake.contexts.length === 1);
    const context = h.context();
    h.subscription.unsubscribe();
    const late = context.addReader('Late');
    await until(() => late.closed);
    expect(late.listenerCount('error')).toBeGreaterThan(0);
    expect(late.violations).toEqual([]);
  });

  it('never closes a reader from inside a binding event (the real binding holds its mutex there)', async () => {
    const h = start({ readers: ['A'] });
    await until(() => h.events.length === 1);
    const reader = h.context().readers.get('A')!;
    // The binding ends a reader with an 'end' event; unsubscribing from inside a status event is just as risky.
    h.port('A').status$.subscribe(() => h.subscription.unsubscribe());
    reader.insert(ATR);
    await until(() => reader.closed);
    expect(reader.violations).toEqual([]);
  });

  it('waits for a hanging transmit to return before closing its reader', async () => {
    const h = start({ readers: ['A'] });
    await until(() => h.events.length === 1);
    const reader = h.context().readers.get('A')!;
    reader.insert(ATR);
    reader.onTransmit = () => 'hang';
    const card = await h.port('A').connect({ share: 'shared' });
    const pending = card.transmit(fromHex('00'), { timeoutMs: 20 }).catch((e: unknown) => e);
    expect(await pending).toMatchObject({ code: ErrorCode.Timeout });
    h.subscription.unsubscribe();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(reader.closed).toBe(false);
    reader.remove();
    await until(() => reader.closed);
    expect(reader.violations).toEqual([]);
  });

  it('creates a new binding context for every subscription (pcscd restarts need one)', async () => {
    const fake = fakePcsclite({ readers: ['A'] });
    const transport = createNativePcscTransport({
      logger: silentLogger,
      loadBinding: () => Promise.resolve(fake.module),
    });
    const first = transport.readers$.subscribe();
    await until(() => fake.contexts.length === 1);
    first.unsubscribe();
    const second = transport.readers$.subscribe();
    await until(() => fake.contexts.length === 2);
    second.unsubscribe();
  });
});

describe('native PC/SC transport: the real pcsclite binding', () => {
  it('fails with TRANSPORT_UNAVAILABLE within 1 s when pcscd is not running, without blocking the event loop', async (context) => {
    let binding: PcscliteModuleLike | undefined;
    let loadError: unknown;
    try {
      binding = await loadPcscBinding();
    } catch (error) {
      loadError = error;
    }
    if (!binding) {
      // Only acceptable on a developer machine without the native build; CI must have it.
      if (process.env['CI']) throw loadError;
      context.skip(`the pcsclite binding is not built here: ${(loadError as Error).message}`);
      return;
    }
    // Point the client library at a socket that cannot exist, so the test holds even if a pcscd runs here.
    const socket = join(mkdtempSync(join(tmpdir(), 'tapline-pcsc-')), 'no-pcscd.comm');
    expect(existsSync(socket)).toBe(false);
    process.env['PCSCLITE_CSOCK_NAME'] = socket;
    try {
      const transport = createNativePcscTransport({
        logger: silentLogger,
        loadBinding: () => Promise.resolve(binding),
      });
      let maxGap = 0;
      let last = Date.now();
      const ticker = setInterval(() => {
        const now = Date.now();
        maxGap = Math.max(maxGap, now - last);
        last = now;
      }, 5);
      const started = Date.now();
      const error = await new Promise<unknown>((resolve) => {
        const subscription = transport.readers$.subscribe({ error: resolve, complete: () => resolve(undefined) });
        setTimeout(() => {
          subscription.unsubscribe();
          resolve(new Error('no error within 1 s'));
        }, 1000);
      });
      clearInterval(ticker);
      expect(error).toMatchObject({ code: ErrorCode.TransportUnavailable });
      expect((error as TaplineError).message).toContain('pcscd');
      expect(Date.now() - started).toBeLessThan(1000);
      expect(maxGap).toBeLessThan(250);
    } finally {
      delete process.env['PCSCLITE_CSOCK_NAME'];
    }
  });
});
