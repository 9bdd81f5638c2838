import { createServer, type Server, type Socket } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { Capability, ErrorCode, fromHex, toHex } from '@tapline/core';
import { createVirtualChip, type VirtualChip } from '../src/index.js';
import {
  VpiccFrameDecoder,
  VirtualCard,
  acr122Emulation,
  encodeVpiccFrame,
  type ReaderEmulation,
  type VirtualCardOptions,
} from '../src/vpcd/index.js';

// The vpicc side of the stack against a fake vpcd: a TCP server that speaks vpcd's half of the protocol. No pcscd.

const NTAG_ATR = '3b8f8001804f0ca0000003060300030000000068';

/** vpcd's half: accepts the card, sends control bytes and APDUs, collects what the card sends back. */
class FakeVpcd {
  readonly raw: number[] = [];
  readonly #decoder = new VpiccFrameDecoder();
  readonly #payloads: Uint8Array[] = [];
  #wake: (() => void) | undefined;
  #socket: Socket | undefined;
  #connected: Promise<Socket>;
  #closed: Promise<void> = new Promise(() => undefined);
  connections = 0;

  private constructor(
    readonly server: Server,
    readonly port: number,
  ) {
    let resolveConnected: (socket: Socket) => void = () => undefined;
    this.#connected = new Promise((resolve) => (resolveConnected = resolve));
    server.on('connection', (socket) => {
      this.connections++;
      this.#socket = socket;
      // Small frames back to back would otherwise wait for the card's delayed ACK (pcsc-stack.md §3).
      socket.setNoDelay(true);
      // The card resets the connection when it is removed with bytes unread; that is not a failure here.
      socket.on('error', () => undefined);
      this.#closed = new Promise((resolve) => socket.once('close', () => resolve()));
      socket.on('data', (chunk: Buffer) => {
        this.raw.push(...chunk);
        this.#payloads.push(...this.#decoder.push(chunk));
        this.#wake?.();
      });
      resolveConnected(socket);
    });
  }

  static async start(): Promise<FakeVpcd> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('no port');
    const fake = new FakeVpcd(server, address.port);
    onTestFinished(() => fake.close());
    return fake;
  }

  connected(): Promise<Socket> {
    return this.#connected;
  }

  closed(): Promise<void> {
    return this.#closed;
  }

  send(...payloads: Uint8Array[]): void {
    for (const payload of payloads) this.#socket!.write(encodeVpiccFrame(payload));
  }

  writeRaw(bytes: Uint8Array): void {
    this.#socket!.write(bytes);
  }

  /** The next payload the card sends, or a failure after `ms`. */
  async next(ms = 1000): Promise<Uint8Array> {
    const end = Date.now() + ms;
    while (this.#payloads.length === 0) {
      const left = end - Date.now();
      if (left <= 0) throw new Error(`no payload from the card within ${ms} ms`);
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        setTimeout(resolve, left);
      });
    }
    return this.#payloads.shift()!;
  }

  /** True when the card sent nothing for `ms`. */
  async silentFor(ms: number): Promise<boolean> {
    await new Promise((resolve) => setTimeout(resolve, ms));
    return this.#payloads.length === 0;
  }

  async sendApdu(hex: string): Promise<string> {
    this.send(fromHex(hex));
    return toHex(await this.next());
  }

  close(): void {
    this.#socket?.destroy();
    this.server.close();
  }
}

async function insertedCard(
  fake: FakeVpcd,
  chip: VirtualChip = createVirtualChip('ntag215'),
  options: Partial<VirtualCardOptions> = {},
): Promise<VirtualCard> {
  const card = new VirtualCard({ port: fake.port, emulation: acr122Emulation, ...options });
  onTestFinished(() => card.remove());
  const inserting = card.insert(chip);
  await fake.connected();
  fake.send(Uint8Array.of(0x04));
  expect(toHex(await fake.next())).toBe(toHex(acr122Emulation.atr(chip)!));
  expect(await inserting).toBe(true);
  return card;
}

describe('vpicc framing', () => {
  it('prefixes every payload with its length as uint16 big-endian', () => {
    expect(toHex(encodeVpiccFrame(Uint8Array.of(0x04)))).toBe('000104');
    const long = new Uint8Array(300).fill(0xab);
    const frame = encodeVpiccFrame(long);
    expect(toHex(frame.subarray(0, 2))).toBe('012c');
    expect(frame).toHaveLength(302);
    expect(encodeVpiccFrame(new Uint8Array(0xffff))).toHaveLength(0x10001);
  });

  it('refuses an empty payload (vpcd 3.3 would block in a zero-length receive) and one over 65535 bytes', () => {
    expect(() => encodeVpiccFrame(new Uint8Array(0))).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidArgument }),
    );
    expect(() => encodeVpiccFrame(new Uint8Array(0x10000))).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidArgument }),
    );
  });

  it('decodes whatever the TCP segment boundaries are', () => {
    const stream = fromHex('000104' + '0005FFCA000000' + '000100');
    const decoder = new VpiccFrameDecoder();
    const byteByByte = [...stream].flatMap((byte) => decoder.push(Uint8Array.of(byte)));
    expect(byteByByte.map(toHex)).toEqual(['04', 'ffca000000', '00']);
    expect(decoder.pending).toBe(0);
    const whole = new VpiccFrameDecoder();
    expect(whole.push(stream).map(toHex)).toEqual(['04', 'ffca000000', '00']);
    const split = new VpiccFrameDecoder();
    expect(split.push(stream.subarray(0, 4))).toEqual([Uint8Array.of(0x04)]);
    expect(split.pending).toBe(1);
    expect(split.push(stream.subarray(4)).map(toHex)).toEqual(['ffca000000', '00']);
  });
});

describe('VirtualCard against a fake vpcd', () => {
  it('connects on insert, answers GET ATR framed, and resolves insert only once vpcd asked for the ATR', async () => {
    const fake = await FakeVpcd.start();
    const card = new VirtualCard({ port: fake.port, emulation: acr122Emulation });
    onTestFinished(() => card.remove());
    let settled = false;
    const inserting = card.insert(createVirtualChip('ntag215')).then((visible) => {
      settled = true;
      return visible;
    });
    await fake.connected();
    expect(await fake.silentFor(30)).toBe(true);
    expect(settled).toBe(false);
    fake.send(Uint8Array.of(0x04));
    expect(toHex(await fake.next())).toBe(NTAG_ATR);
    expect(toHex(Uint8Array.from(fake.raw.slice(0, 2)))).toBe('0014');
    expect(await inserting).toBe(true);
    expect(card.connected).toBe(true);
    expect(card.counters.getAtr).toBe(1);
  });

  it('answers 00, 01 and 02 silently and GET ATR at any time, also while powered off', async () => {
    const fake = await FakeVpcd.start();
    const card = await insertedCard(fake);
    fake.send(Uint8Array.of(0x01), Uint8Array.of(0x00), Uint8Array.of(0x02), Uint8Array.of(0x00));
    expect(await fake.silentFor(40)).toBe(true);
    expect(card.powered).toBe(false);
    fake.send(Uint8Array.of(0x04));
    expect(toHex(await fake.next())).toBe(NTAG_ATR);
    expect(card.counters).toEqual({ powerOff: 2, powerOn: 1, reset: 1, getAtr: 2, apdus: 0 });
  });

  it('passes APDUs through the reader emulation to the chip, also when a frame arrives in pieces', async () => {
    const fake = await FakeVpcd.start();
    const ntag = createVirtualChip('ntag215');
    const card = await insertedCard(fake, ntag);
    expect(await fake.sendApdu('FFCA000000')).toBe(`${toHex(ntag.info.uid)}9000`);
    // Header and payload in separate TCP writes, as stock vpcd sends them.
    fake.writeRaw(fromHex('0009'));
    await new Promise((resolve) => setTimeout(resolve, 10));
    fake.writeRaw(fromHex('FF00000004D4423000'));
    const answer = toHex(await fake.next());
    expect(answer).toMatch(/^d54300[0-9a-f]{32}9000$/);
    expect(card.chipExchanges.at(-1)).toMatchObject({ capability: Capability.Iso14443aRaw, frame: fromHex('3000') });
    expect(card.apdus.map((a) => toHex(a.command))).toEqual(['ffca000000', 'ff00000004d4423000']);
    expect(card.errors).toEqual([]);
  });

  it('delays, replaces or withholds answers as the per-APDU hook says', async () => {
    const fake = await FakeVpcd.start();
    const seen: number[] = [];
    const card = await insertedCard(fake, createVirtualChip('ntag215'), {
      onApdu: (apdu, { index }) => {
        seen.push(index);
        if (apdu[1] === 0xb0) return { delayMs: 80 };
        if (apdu[1] === 0xd6) return { response: fromHex('6A82') };
        if (apdu[1] === 0xee) return 'never';
        return undefined;
      },
    });
    const started = Date.now();
    expect(await fake.sendApdu('FFB0000410')).toMatch(/9000$/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(75);
    expect(await fake.sendApdu('FFD600040400000000')).toBe('6a82');
    fake.send(fromHex('FFEE000000'));
    expect(await fake.silentFor(100)).toBe(true);
    expect(card.apdus.at(-1)).toEqual({ command: fromHex('FFEE000000'), response: undefined });
    expect(seen).toEqual([0, 1, 2]);
    // Only taking the card off ends the wait, as with a real card that never answers.
    await card.remove();
    await fake.closed();
    expect(card.connected).toBe(false);
    expect(card.wanted).toBe(false);
  });

  it('replaces an empty answer from a hook with 6F 00 and records the mistake', async () => {
    const fake = await FakeVpcd.start();
    const card = await insertedCard(fake, createVirtualChip('ntag215'), {
      onApdu: () => ({ response: new Uint8Array(0) }),
    });
    expect(await fake.sendApdu('FFCA000000')).toBe('6f00');
    expect(card.errors).toHaveLength(1);
  });

  it('stays "on the reader" when vpcd drops the connection (pcscd died)', async () => {
    const fake = await FakeVpcd.start();
    const card = await insertedCard(fake);
    (await fake.connected()).destroy();
    await card.whenDisconnected();
    expect(card.connected).toBe(false);
    expect(card.wanted).toBe(true);
  });

  it('powers the chip up again after a power cycle or a reset from vpcd', async () => {
    const fake = await FakeVpcd.start();
    let powerUps = 0;
    const ntag = createVirtualChip('ntag215');
    const chip: VirtualChip & { powerUp(): void } = {
      info: ntag.info,
      handle: (capability, frame) => ntag.handle(capability, frame),
      powerUp: () => powerUps++,
    };
    await insertedCard(fake, chip);
    fake.send(Uint8Array.of(0x01));
    expect(await fake.silentFor(20)).toBe(true);
    expect(powerUps).toBe(0);
    fake.send(Uint8Array.of(0x00), Uint8Array.of(0x01));
    expect(await fake.silentFor(20)).toBe(true);
    expect(powerUps).toBe(1);
    fake.send(Uint8Array.of(0x02));
    expect(await fake.silentFor(20)).toBe(true);
    expect(powerUps).toBe(2);
  });

  it('does not connect a chip the reader cannot see (ISO 15693 on an ACR122U)', async () => {
    const fake = await FakeVpcd.start();
    const card = new VirtualCard({ port: fake.port, emulation: acr122Emulation });
    expect(await card.insert(createVirtualChip('spark1'))).toBe(false);
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(fake.connections).toBe(0);
    expect(card.wanted).toBe(true);
  });

  it('fails with TRANSPORT_UNAVAILABLE when no vpcd listens, and with TIMEOUT when vpcd never polls', async () => {
    const fake = await FakeVpcd.start();
    const port = fake.port;
    fake.close();
    const nobody = new VirtualCard({ port, emulation: acr122Emulation });
    await expect(nobody.insert(createVirtualChip('ntag215'))).rejects.toMatchObject({
      code: ErrorCode.TransportUnavailable,
    });
    const silent = await FakeVpcd.start();
    const card = new VirtualCard({ port: silent.port, emulation: acr122Emulation, insertTimeoutMs: 100 });
    await expect(card.insert(createVirtualChip('ntag215'))).rejects.toMatchObject({ code: ErrorCode.Timeout });
    expect(card.connected).toBe(false);
  });

  it('never sends a zero-length ATR', async () => {
    const fake = await FakeVpcd.start();
    const broken: ReaderEmulation = { ...acr122Emulation, atr: () => new Uint8Array(0) };
    const card = new VirtualCard({ port: fake.port, emulation: broken });
    await expect(card.insert(createVirtualChip('ntag215'))).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
    });
    expect(fake.connections).toBe(0);
  });
});
