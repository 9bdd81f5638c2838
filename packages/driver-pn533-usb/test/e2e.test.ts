/**
 * End to end through the composition root: a fake USB bus with a PN533 emulator holding a virtual Spark 2, injected
 * as `usbTransport`, read by this driver through ReaderManager: what `tapline scan` and `tapline verify` do.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  ErrorCode,
  ReaderManager,
  createContainer,
  createVivoKeyAuthClient,
  identifyTag,
  silentLogger,
  toHex,
  verifyChip,
  waitForTag,
  type ReadersEvent,
  type ReaderHold,
  type Tag,
} from '@tapline/core';
import {
  FakeUsbDevice,
  Pn533Emulator,
  createVirtualChip,
  fakeUsbTransport,
  startReferencePlatform,
  type FakeUsbTransport,
} from '@tapline/test-fixtures';
import { pn533UsbDriver } from '../src/index.js';
import { until } from './support/fake-reader.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Stack {
  readonly manager: ReaderManager;
  readonly events: ReadersEvent[];
  readonly transport: FakeUsbTransport;
}

function stack(devices: readonly FakeUsbDevice[]): Stack {
  const transport = fakeUsbTransport(devices);
  const container = createContainer({
    logger: silentLogger,
    config: { transports: ['usb'] },
    drivers: [pn533UsbDriver],
    usbTransport: transport,
  });
  const manager = container.resolve(ReaderManager);
  const events: ReadersEvent[] = [];
  const hold: ReaderHold = manager.hold((event) => events.push(event));
  cleanups.push(() => hold.release());
  return { manager, events, transport };
}

const spark2Device = (): FakeUsbDevice => new FakeUsbDevice(new Pn533Emulator(createVirtualChip('spark2')));

describe('PN533 on USB, end to end', () => {
  it('scan: a Spark 2 on the fake PN533 is found, identified and described', async () => {
    const chip = createVirtualChip('spark2');
    const device = new FakeUsbDevice(new Pn533Emulator(chip));
    const { manager, events } = stack([device]);
    const tag: Tag = await waitForTag(manager.tags$, { timeoutMs: 3000 });
    expect(events[0]).toMatchObject({ type: 'attached', driver: { id: 'pn533-usb' }, forced: false });
    expect(tag.readerName).toBe('SCM Micro SCL3711-NFC&RW (04e6:5591)');
    const identification = await identifyTag(tag, { detail: 'full', timeoutMs: 2000 });
    expect(identification).toMatchObject({ chip: 'spark2', model: 'NTAG 424 DNA' });
    // What `tapline scan` prints: UID, technology, ATQA, SAK, ATS.
    expect({
      uid: toHex(tag.uid),
      technology: tag.technology,
      atqa: toHex(tag.atqa!),
      sak: tag.sak,
      ats: toHex(tag.ats!),
    }).toEqual({ uid: toHex(chip.info.uid), technology: 'iso14443a', atqa: '4403', sak: 0x20, ats: '7777710280' });
  });

  it('verify: the VivoKey relay verifies a Spark 2 through the fake PN533 with the reference platform', async () => {
    const reference = await startReferencePlatform();
    cleanups.push(() => reference.close());
    const chip = createVirtualChip('spark2');
    const { manager } = stack([new FakeUsbDevice(new Pn533Emulator(chip))]);
    const tag = await waitForTag(manager.tags$, { timeoutMs: 3000 });
    const client = createVivoKeyAuthClient({
      baseUrl: reference.url,
      apiKey: reference.apiKey,
      jwksUrl: reference.jwksUrl,
    });
    const result = await verifyChip(tag, client);
    expect(result).toMatchObject({
      result: 'success',
      chip: 'spark2',
      uid: toHex(chip.info.uid).toLowerCase(),
      apdus: 3,
    });
    expect(result.sub).toBe(reference.subFor(chip.info.uid));
  });

  it('hot-plug: a PN533 plugged in later attaches, and unplugging it detaches the reader', async () => {
    const { manager, events, transport } = stack([]);
    const device = spark2Device();
    transport.plug(device);
    await waitForTag(manager.tags$, { timeoutMs: 3000 });
    transport.unplug(device);
    await until(() => events.some((e) => e.type === 'detached'), 3000);
    expect(events.map((e) => e.type)).toEqual(['attached', 'detached']);
    await until(() => !device.opened && !device.claimed);
  });

  it('a PN533 held by the kernel driver is reported as skipped with the fix, not as a crash', async () => {
    const { events } = stack([new FakeUsbDevice(new Pn533Emulator(), { heldBy: 'kernel' })]);
    await until(() => events.length > 0, 3000);
    expect(events[0]).toMatchObject({
      type: 'skipped',
      transport: 'usb',
      error: { code: ErrorCode.TransportUnavailable, message: expect.stringContaining('modprobe -r pn533_usb pn533') },
    });
  });
});
