import { describe, expect, it, onTestFinished } from 'vitest';
import { firstValueFrom, filter } from 'rxjs';
import {
  ErrorCode,
  ReaderManager,
  createContainer,
  fromHex,
  silentLogger,
  toHex,
  waitForTag,
  type ReadersEvent,
  type TaplineError,
} from '@tapline/core';
import { SimulatedField, createSimulation, plainIsoDepChip, simDeviceSource, simDriver } from '../src/index.js';

function setup(latencyMs = 1, { hold: keepOpen = true } = {}) {
  const field = new SimulatedField('Sim A', { latencyMs });
  const container = createContainer({
    config: { transports: [] },
    drivers: [simDriver],
    deviceSources: [simDeviceSource([field])],
    logger: silentLogger,
  });
  const manager = container.resolve(ReaderManager);
  if (keepOpen) {
    const hold = manager.hold();
    onTestFinished(() => hold.unsubscribe());
  }
  return { field, manager };
}

async function attached(manager: ReaderManager) {
  const event = await firstValueFrom(
    manager.readers$.pipe(filter((e): e is Extract<ReadersEvent, { type: 'attached' }> => e.type === 'attached')),
  );
  return event;
}

describe('simulated reader through the container', () => {
  it('attaches with the sim driver and every capability', async () => {
    const { manager } = setup();
    const event = await attached(manager);
    expect(event.driver.id).toBe('sim');
    expect(event.reader.name).toBe('Sim A');
    expect([...event.reader.capabilities]).toEqual([
      'iso14443a-raw',
      'iso14443-4',
      'iso14443b',
      'iso15693',
      'felica',
      'led',
      'buzzer',
    ]);
  });

  it('reports a tapped chip with its UID and answers APDUs', async () => {
    const { field, manager } = setup();
    const tagPromise = waitForTag(manager.tags$, { timeoutMs: 1000 });
    setTimeout(() => field.present(plainIsoDepChip()), 5);
    const tag = await tagPromise;
    expect(toHex(tag.uid)).toBe('04a1b2c3d4e5f6');
    expect(tag.technology).toBe('iso14443a');
    expect(toHex(tag.atr!)).toBe('3b8180018080');
    const answer = await tag.reader.transmit(tag, 'iso14443-4', fromHex('00 A4 04 00 07 D2 76 00 00 85 01 01 00'));
    expect(toHex(answer)).toBe('6a82');
  });

  it('fails with TAG_LOST when the chip leaves mid-exchange', async () => {
    const { field, manager } = setup(50);
    const tagPromise = waitForTag(manager.tags$, { timeoutMs: 1000 });
    field.present(plainIsoDepChip());
    const tag = await tagPromise;
    const pending = tag.reader.transmit(tag, 'iso14443-4', fromHex('00 A4 04 00 00'));
    setTimeout(() => field.remove(), 10);
    await expect(pending).rejects.toMatchObject({ code: ErrorCode.TagLost });
    await expect(tag.reader.transmit(tag, 'iso14443-4', fromHex('00 A4 04 00 00'))).rejects.toMatchObject({
      code: ErrorCode.TagLost,
    });
  });

  it('fails with TIMEOUT when the chip never answers, and the reader stays usable', async () => {
    const { field, manager } = setup();
    const tagPromise = waitForTag(manager.tags$, { timeoutMs: 1000 });
    field.present(plainIsoDepChip());
    const tag = await tagPromise;
    const started = Date.now();
    await expect(tag.reader.transmit(tag, 'iso14443a-raw', fromHex('30 04'), { timeoutMs: 30 })).rejects.toMatchObject({
      code: ErrorCode.Timeout,
    });
    expect(Date.now() - started).toBeLessThan(500);
    expect(toHex(await tag.reader.transmit(tag, 'iso14443-4', fromHex('00 B0 00 00 00')))).toBe('6d00');
  });

  it('refuses a frame type the tag does not speak with UNSUPPORTED_CAPABILITY', async () => {
    const { field, manager } = setup();
    const tagPromise = waitForTag(manager.tags$, { timeoutMs: 1000 });
    field.present(plainIsoDepChip());
    const tag = await tagPromise;
    const error = (await tag.reader
      .transmit(tag, 'iso15693', fromHex('26 01 00'))
      .catch((e: unknown) => e)) as TaplineError;
    expect(error.code).toBe(ErrorCode.UnsupportedCapability);
  });

  it('aborts an exchange through its AbortSignal', async () => {
    const { field, manager } = setup(100);
    const tagPromise = waitForTag(manager.tags$, { timeoutMs: 1000 });
    field.present(plainIsoDepChip());
    const tag = await tagPromise;
    const controller = new AbortController();
    const pending = tag.reader.transmit(tag, 'iso14443-4', fromHex('00 A4 04 00 00'), { signal: controller.signal });
    controller.abort();
    await expect(pending).rejects.toMatchObject({ code: ErrorCode.Aborted });
  });

  it('times out waiting for a tap with a hint', async () => {
    const { manager } = setup();
    const error = (await waitForTag(manager.tags$, { timeoutMs: 20 }).catch((e: unknown) => e)) as TaplineError;
    expect(error.code).toBe(ErrorCode.Timeout);
    expect(error.hint).toMatch(/--timeout/);
  });

  it('closes the reader when the last subscriber leaves', async () => {
    const { manager } = setup(1, { hold: false });
    const events: ReadersEvent[] = [];
    const hold = manager.hold((e) => events.push(e));
    const { reader } = await attached(manager);
    expect(reader.closed).toBe(false);
    hold.unsubscribe();
    expect(events.map((e) => e.type)).toEqual(['attached']);
    await new Promise((r) => setTimeout(r, 0));
    expect(reader.closed).toBe(true);
    await expect(reader.transmit({} as never, 'iso14443-4', fromHex('00'))).rejects.toMatchObject({
      code: ErrorCode.ReaderGone,
    });
  });
});

describe('createSimulation', () => {
  it('taps its chip after the configured delay', async () => {
    const sim = createSimulation({ tapAfterMs: 10 });
    const container = createContainer({
      config: { transports: [] },
      drivers: sim.drivers,
      deviceSources: sim.deviceSources,
      logger: silentLogger,
    });
    const tag = await waitForTag(container.resolve(ReaderManager).tags$, { timeoutMs: 1000 });
    expect(tag.readerName).toBe('Tapline Simulated Reader');
    expect(tag.uid).toEqual(sim.chip.info.uid);
    sim.stop();
  });
});
