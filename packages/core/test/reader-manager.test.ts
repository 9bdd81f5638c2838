import { describe, expect, it } from 'vitest';
import {
  ErrorCode,
  ReaderManager,
  TaplineError,
  createContainer,
  silentLogger,
  type ReaderDriver,
  type ReadersEvent,
} from '../src/index.js';
import { ScriptedReader, manualSource, testDriver } from './helpers.js';

function setup(drivers: readonly ReaderDriver[]) {
  const { source, events, device } = manualSource();
  const container = createContainer({
    config: { transports: [] },
    drivers,
    deviceSources: [source],
    logger: silentLogger,
  });
  const manager = container.resolve(ReaderManager);
  const seen: ReadersEvent[] = [];
  const hold = manager.hold((e) => seen.push(e));
  return { events, device, manager, seen, hold };
}

const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

describe('ReaderManager', () => {
  it('opens a reader with the best driver and closes it on detach', async () => {
    const opened: ScriptedReader[] = [];
    const { events, device, seen, hold } = setup([
      testDriver('weak', () => Promise.reject(new Error('must not be used')), 'test', 10),
      testDriver(
        'strong',
        (d) => {
          const reader = new ScriptedReader([], ['iso14443-4'], d.name);
          opened.push(reader);
          return Promise.resolve(reader);
        },
        'test',
        90,
      ),
    ]);
    events.next({ type: 'attached', device: device('R1') });
    await tick();
    expect(seen).toMatchObject([{ type: 'attached', driver: { id: 'strong' }, forced: false }]);
    events.next({ type: 'detached', transport: 'virtual', name: 'R1' });
    await tick();
    expect(seen.map((e) => e.type)).toEqual(['attached', 'detached']);
    expect(opened[0]!.closed).toBe(true);
    hold.unsubscribe();
  });

  it('reports a device no driver serves, and a driver that fails, without stopping', async () => {
    const { events, device, seen, hold } = setup([
      testDriver('broken', () => Promise.reject(new Error('USB claim failed')), 'flaky'),
      testDriver('ok', (d) => Promise.resolve(new ScriptedReader([], ['iso14443-4'], d.name))),
    ]);
    events.next({ type: 'attached', device: device('Nobody', 'unknown-kind') });
    events.next({ type: 'attached', device: device('Flaky', 'flaky') });
    events.next({ type: 'attached', device: device('Good') });
    await tick();
    const byName = Object.fromEntries(
      seen.map((e) => [e.type === 'attached' || e.type === 'detached' ? e.reader.name : 'name' in e ? e.name : '?', e]),
    );
    expect(byName['Nobody']).toMatchObject({ type: 'skipped', error: { code: ErrorCode.ReaderNotFound } });
    expect(byName['Flaky']).toMatchObject({ type: 'skipped', error: { code: ErrorCode.DriverFailed } });
    expect((byName['Flaky'] as { error: TaplineError }).error.cause).toBeInstanceOf(Error);
    expect(byName['Good']).toMatchObject({ type: 'attached' });
    hold.unsubscribe();
  });

  it('closes every reader of a transport that becomes unavailable', async () => {
    const reader = new ScriptedReader([], ['iso14443-4'], 'R1');
    const { events, device, seen, hold } = setup([testDriver('ok', () => Promise.resolve(reader))]);
    events.next({ type: 'attached', device: device('R1') });
    await tick();
    const error = new TaplineError(ErrorCode.TransportUnavailable, 'pcscd stopped');
    events.next({ type: 'unavailable', transport: 'virtual', error, retryInMs: 1000 });
    await tick();
    expect(reader.closed).toBe(true);
    expect(seen.map((e) => e.type)).toEqual(['attached', 'transport-unavailable', 'detached']);
    hold.unsubscribe();
  });

  it('closes a reader whose driver answers after the device detached', async () => {
    let finishOpen: (r: ScriptedReader) => void = () => undefined;
    const late = new ScriptedReader([], ['iso14443-4'], 'Slow');
    const { events, device, seen, hold } = setup([
      testDriver('slow', () => new Promise<ScriptedReader>((resolve) => (finishOpen = resolve))),
    ]);
    events.next({ type: 'attached', device: device('Slow') });
    await tick();
    events.next({ type: 'detached', transport: 'virtual', name: 'Slow' });
    finishOpen(late);
    await tick();
    expect(late.closed).toBe(true);
    expect(seen.filter((e) => e.type === 'attached')).toEqual([]);
    hold.unsubscribe();
  });

  it('only opens readers whose name contains the configured filter', async () => {
    const { source, events, device } = manualSource();
    const container = createContainer({
      config: { transports: [], reader: 'acr' },
      drivers: [testDriver('ok', (d) => Promise.resolve(new ScriptedReader([], ['iso14443-4'], d.name)))],
      deviceSources: [source],
      logger: silentLogger,
    });
    const seen: ReadersEvent[] = [];
    const hold = container.resolve(ReaderManager).hold((e) => seen.push(e));
    events.next({ type: 'attached', device: device('Identiv uTrust 3700 F') });
    events.next({ type: 'attached', device: device('ACS ACR122U PICC Interface 00 00') });
    await tick();
    expect(seen.map((e) => (e.type === 'attached' ? e.reader.name : e.type))).toEqual([
      'ACS ACR122U PICC Interface 00 00',
    ]);
    hold.unsubscribe();
  });

  it('forwards tag events from every reader on tags$', async () => {
    const reader = new ScriptedReader([], ['iso14443-4'], 'R1');
    const { events, device, manager, hold } = setup([testDriver('ok', () => Promise.resolve(reader))]);
    const tags: string[] = [];
    const sub = manager.tags$.subscribe((e) => tags.push(`${e.type}:${e.tag.readerName}`));
    events.next({ type: 'attached', device: device('R1') });
    await tick();
    reader.arrive();
    reader.leave();
    expect(tags).toEqual(['arrived:R1', 'left:R1']);
    sub.unsubscribe();
    hold.unsubscribe();
  });
});

describe('ReaderManager late subscribers', () => {
  it('tells a late subscriber about readers attached before it came', async () => {
    const reader = new ScriptedReader([], ['iso14443-4'], 'Early');
    const { events, device, manager, hold } = setup([testDriver('ok', () => Promise.resolve(reader))]);
    events.next({ type: 'attached', device: device('Early') });
    await tick();
    const late: string[] = [];
    const sub = manager.tags$.subscribe((e) => late.push(`${e.type}:${e.tag.readerName}`));
    const names: string[] = [];
    const sub2 = manager.readers$.subscribe((e) => names.push(e.type === 'attached' ? e.reader.name : e.type));
    reader.arrive();
    expect(late).toEqual(['arrived:Early']);
    expect(names).toEqual(['Early']);
    sub.unsubscribe();
    sub2.unsubscribe();
    hold.unsubscribe();
  });
});

describe('ReaderManager lifetime', () => {
  it('release() resolves only after every reader has released its device', async () => {
    let releaseDone = false;
    class SlowRelease extends ScriptedReader {
      protected override async release(): Promise<void> {
        await tick(30);
        releaseDone = true;
      }
    }
    const { events, device, manager, hold } = setup([
      testDriver('ok', () => Promise.resolve(new SlowRelease([], ['iso14443-4'], 'R1'))),
    ]);
    events.next({ type: 'attached', device: device('R1') });
    await tick();
    const second = manager.hold();
    hold.unsubscribe();
    await second.release();
    expect(releaseDone).toBe(true);
  });

  it('fails at once when the forced driver is not installed', async () => {
    const { source } = manualSource();
    const container = createContainer({
      config: { transports: [], driver: 'acr122' },
      deviceSources: [source],
      logger: silentLogger,
    });
    const errors: TaplineError[] = [];
    container.resolve(ReaderManager).hold(undefined, (e) => errors.push(e));
    expect(errors.map((e) => e.code)).toEqual([ErrorCode.DriverNotFound]);
    expect(errors[0]!.hint).toContain('pcsc');
  });
});
