import { describe, expect, it, onTestFinished } from 'vitest';
import { filter, firstValueFrom, timeout, type Subscription } from 'rxjs';
import {
  ErrorCode,
  ReaderManager,
  createContainer,
  createNativePcscTransport,
  fromHex,
  silentLogger,
  toHex,
  waitForTag,
  type PcscCard,
  type PcscReaderEvent,
  type PcscReaderPort,
  type PcscReaderStatus,
} from '@tapline/core';
import { createVirtualChip } from '../src/index.js';
import {
  acr1252Emulation,
  acr122Emulation,
  skipUnlessPcsc,
  startPcscd,
  utrust3720Emulation,
  type PcscdOptions,
  type PrivatePcscd,
} from '../src/vpcd/index.js';

// Integration: a private pcscd (never the machine's), vpcd, virtual cards, and core's native PC/SC transport over the
// real `pcsclite` binding. One pcscd per process at a time, so the tests run one after another.

const SELECT_NDEF_APP = fromHex('00A4040007D276000085010100');
const call = { timeoutMs: 2000 };

/** Starts pcscd for the test and stops it when the test ends, however it ends. */
async function pcscdFor(options: PcscdOptions): Promise<PrivatePcscd> {
  const pcscd = await startPcscd({ debug: true, ...options });
  onTestFinished(async (context) => {
    if (context.task.result?.state === 'fail') console.error(`pcscd log (${pcscd.friendlyName}):\n${pcscd.log()}`);
    await pcscd.stop();
  });
  return pcscd;
}

/** One subscription to core's native transport (one PC/SC context), closed when the test ends. */
function watchTransport(): {
  readonly events: PcscReaderEvent[];
  readonly failure: () => unknown;
  reader: (name: string) => Promise<PcscReaderPort>;
} {
  const events: PcscReaderEvent[] = [];
  let failure: unknown;
  const transport = createNativePcscTransport({ logger: silentLogger, connectTimeoutMs: 2000 });
  const subscription: Subscription = transport.readers$.subscribe({
    next: (event) => events.push(event),
    error: (error: unknown) => (failure = error),
  });
  onTestFinished(() => subscription.unsubscribe());
  return {
    events,
    failure: () => failure,
    reader: (name) =>
      eventually(() => {
        const found = events.find(
          (e): e is Extract<PcscReaderEvent, { type: 'attached' }> => e.type === 'attached' && e.reader.name === name,
        );
        return found?.reader;
      }, `reader ${name}`),
  };
}

/** Polls `probe` until it returns something, for at most `ms`. */
async function eventually<T>(probe: () => T | undefined, what: string, ms = 3000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function statusOf(port: PcscReaderPort, present: boolean, ms = 3000): Promise<PcscReaderStatus> {
  return firstValueFrom(
    port.status$.pipe(
      filter((s) => s.present === present),
      timeout({ first: ms }),
    ),
  );
}

async function connect(port: PcscReaderPort): Promise<PcscCard> {
  const card = await port.connect({ share: 'shared', timeoutMs: 2000 });
  onTestFinished(() => card.disconnect());
  return card;
}

describe.sequential('private pcscd with vpcd readers and virtual cards', { timeout: 10_000 }, () => {
  it('ACR122U: real reader names, PRESENT/EMPTY on insert/remove, FF CA, pseudo-APDUs reach the virtual NTAG', async (context) => {
    skipUnlessPcsc(context);
    const pcscd = await pcscdFor({ emulation: acr122Emulation });
    expect(pcscd.readerNames).toEqual(['ACS ACR122U PICC Interface 00 00', 'ACS ACR122U PICC Interface 00 01']);
    expect(pcscd.nodelay.reason).toBeUndefined();
    const watch = watchTransport();
    const port = await watch.reader('ACS ACR122U PICC Interface 00 00');
    await watch.reader('ACS ACR122U PICC Interface 00 01');
    await statusOf(port, false);

    const ntag = createVirtualChip('ntag215');
    const card = pcscd.card();
    expect(await card.insert({ kind: 'ntag215' })).toBe(true);
    const present = await statusOf(port, true);
    expect(toHex(present.atr!)).toBe('3b8f8001804f0ca0000003060300030000000068');

    const connection = await connect(port);
    expect(connection.protocol).toBe('T1');
    expect(toHex(await connection.transmit(fromHex('FFCA000000'), call))).toBe(`${toHex(ntag.info.uid)}9000`);
    expect(toHex(await connection.transmit(fromHex('FF00000002D402'), call))).toBe('d503320106079000');
    // InCommunicateThru READ page 4: the PN532 passes `30 04` to the tag and wraps its 16 bytes.
    const page4 = createVirtualChip('ntag215').handle('iso14443a-raw', fromHex('3004'));
    const thru = await connection.transmit(fromHex('FF00000004D4423004'), call);
    expect(toHex(thru)).toBe(`d54300${toHex(page4)}9000`);
    const snapshot = await card.snapshot();
    expect(snapshot.chipExchanges.at(-1)).toMatchObject({ capability: 'iso14443a-raw', frame: fromHex('3004') });
    expect(snapshot.errors).toEqual([]);

    await connection.disconnect();
    await card.remove();
    await statusOf(port, false);
  });

  it('ACR122U slot 1, and Tapline’s reader API (generic pcsc driver) identifying a Spark 2 and exchanging APDUs', async (context) => {
    skipUnlessPcsc(context);
    const pcscd = await pcscdFor({ emulation: acr122Emulation });
    const spark2 = createVirtualChip('spark2');
    const container = createContainer({ config: { transports: ['pcsc'] }, logger: silentLogger });
    const manager = container.resolve(ReaderManager);
    const hold = manager.hold();
    onTestFinished(() => hold.release());
    const arriving = waitForTag(manager.tags$, { timeoutMs: 4000 });
    await pcscd.card({ slot: 1 }).insert({ kind: 'spark2' });
    const tag = await arriving;
    expect(tag.readerName).toBe('ACS ACR122U PICC Interface 00 01');
    expect(toHex(tag.uid)).toBe(toHex(spark2.info.uid));
    expect(toHex(tag.atr!)).toBe(toHex(spark2.info.atr!));
    const answer = await tag.reader.transmit(tag, 'iso14443-4', SELECT_NDEF_APP);
    expect(toHex(answer)).toBe('9000');
  });

  it('a card removed while a transmit is pending fails that transmit with TAG_LOST', async (context) => {
    skipUnlessPcsc(context);
    const pcscd = await pcscdFor({ emulation: acr122Emulation });
    const watch = watchTransport();
    const port = await watch.reader(pcscd.readerName);
    const card = pcscd.card({ rules: [{ prefix: '00A4', action: 'never' }] });
    await card.insert({ kind: 'spark2' });
    await statusOf(port, true);
    const connection = await connect(port);
    const reached = card.nextApdu('00A4');
    const pending = connection.transmit(SELECT_NDEF_APP, { timeoutMs: 5000 }).then(
      () => undefined,
      (error: unknown) => error,
    );
    await reached;
    await card.remove();
    expect(await pending).toMatchObject({ code: ErrorCode.TagLost });
    await statusOf(port, false);
  });

  it('pcscd killed: TRANSPORT_UNAVAILABLE for the context and a pending transmit, then a new context works after a restart', async (context) => {
    skipUnlessPcsc(context);
    const pcscd = await pcscdFor({ emulation: acr122Emulation });
    const first = watchTransport();
    const port = await first.reader(pcscd.readerName);
    const card = pcscd.card({ rules: [{ prefix: '00A4', action: 'never', times: 1 }] });
    const spark2 = createVirtualChip('spark2');
    await card.insert({ kind: 'spark2' });
    await statusOf(port, true);
    const connection = await port.connect({ share: 'shared', timeoutMs: 2000 });
    const reached = card.nextApdu('00A4');
    const pending = connection.transmit(SELECT_NDEF_APP, { timeoutMs: 5000 }).then(
      () => undefined,
      (error: unknown) => error,
    );
    await reached;

    await pcscd.kill();
    expect(await pending).toMatchObject({ code: ErrorCode.TransportUnavailable });
    expect(await eventually(() => first.failure(), 'context failure')).toMatchObject({
      code: ErrorCode.TransportUnavailable,
    });
    expect(first.events.filter((e) => e.type === 'detached').map((e) => e.type === 'detached' && e.name)).toContain(
      pcscd.readerName,
    );

    await pcscd.restart();
    expect(card.connected).toBe(true);
    const second = watchTransport();
    const again = await second.reader(pcscd.readerName);
    await statusOf(again, true);
    const fresh = await connect(again);
    expect(toHex(await fresh.transmit(fromHex('FFCA000000'), call))).toBe(`${toHex(spark2.info.uid)}9000`);
    expect(toHex(await fresh.transmit(SELECT_NDEF_APP, call))).toBe('9000');
  });

  it('ACR1252U (pcscd restarted with another config): its name, FF C2 transparent exchange to the NTAG, no PN532 tunnel', async (context) => {
    skipUnlessPcsc(context);
    const pcscd = await pcscdFor({ emulation: acr1252Emulation });
    expect(pcscd.readerName).toBe('ACS ACR1252 Dual Reader [ACR1252 Dual Reader PICC] 00 00');
    const watch = watchTransport();
    const port = await watch.reader(pcscd.readerName);
    await pcscd.card().insert({ kind: 'ntag215' });
    await statusOf(port, true);
    const connection = await connect(port);
    expect(toHex(await connection.transmit(fromHex('FFC20000028100'), call))).toBe('c0030090009000');
    // Transceive `30 04` (READ page 4): status object, then valid bits, response status and the ICC response.
    const read = await connection.transmit(fromHex('FFC20001049502300400'), call);
    const page4 = toHex(createVirtualChip('ntag215').handle('iso14443a-raw', fromHex('3004')));
    expect(toHex(read)).toBe(`c003009000920100960200009710${page4}9000`);
    // On the ACR1252U `FF 00 00 00` is a FeliCa pass-through: an ACR122U-style PN532 command fails.
    expect(toHex(await connection.transmit(fromHex('FF00000004D44A0100'), call))).toBe('6300');
    expect(toHex(await connection.transmit(fromHex('FFC20000028200'), call))).toBe('c0030090009000');
  });

  it('uTrust 3720 F (pcscd restarted again): a Spark 1 with the ISO 15693 ATR, FF CA and FF FC reach the chip', async (context) => {
    skipUnlessPcsc(context);
    const pcscd = await pcscdFor({ emulation: utrust3720Emulation });
    expect(pcscd.readerName).toBe('Identiv uTrust 3720 Contactless Reader 00 00');
    const watch = watchTransport();
    const port = await watch.reader(pcscd.readerName);
    const spark1 = createVirtualChip('spark1');
    await pcscd.card().insert({ kind: 'spark1' });
    const present = await statusOf(port, true);
    expect(toHex(present.atr!)).toBe(toHex(spark1.info.atr!));
    expect(present.atr![12]).toBe(0x0b);
    const connection = await connect(port);
    expect(toHex(await connection.transmit(fromHex('FFCA000000'), call))).toBe(`${toHex(spark1.info.uid)}9000`);
    // READ MULTIPLE BLOCKS 0–3: the T5T capability container first.
    const blocks = await connection.transmit(fromHex('FFFC00000323000300'), call);
    const direct = createVirtualChip('spark1').handle('iso15693', fromHex('02230003'));
    expect(toHex(blocks)).toBe(`${toHex(direct.subarray(1))}9000`);
    expect(toHex(blocks.subarray(0, 2))).toBe('e140');
  });

  it('keeps answering while this thread is blocked: another context connecting mid-APDU cannot deadlock the binding', async (context) => {
    skipUnlessPcsc(context);
    const pcscd = await pcscdFor({ emulation: acr122Emulation });
    const card = pcscd.card({ rules: [{ prefix: '00A4', action: { delayMs: 150 }, times: 1 }] });
    await card.insert({ kind: 'spark2' });
    const first = watchTransport();
    const port = await first.reader(pcscd.readerName);
    await statusOf(port, true);
    const connection = await connect(port);
    const reached = card.nextApdu('00A4');
    const slow = connection.transmit(SELECT_NDEF_APP, call);
    await reached;
    // A second context connects while the first one's APDU waits for the card: every context watching the reader gets
    // a status event (INUSE), delivered on this thread under the reader mutex that the pending transmit holds.
    const second = watchTransport();
    const other = await connect(await second.reader(pcscd.readerName));
    expect(toHex(await slow)).toBe('9000');
    expect(toHex(await other.transmit(fromHex('FFCA000000'), call))).toMatch(/9000$/);
    // And with this thread blocked outright, the card still answers vpcd.
    const blockedFrom = Date.now();
    const pending = connection.transmit(fromHex('FFCA000000'), call);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
    const blockedUntil = Date.now();
    expect(toHex(await pending)).toMatch(/9000$/);
    const { lastAnsweredAt } = await card.snapshot();
    expect(lastAnsweredAt).toBeGreaterThanOrEqual(blockedFrom);
    expect(lastAnsweredAt).toBeLessThan(blockedUntil);
  });
});
