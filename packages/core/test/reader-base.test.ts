import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { firstValueFrom, toArray } from 'rxjs';
import { ErrorCode, fromHex, toHex } from '../src/index.js';
import { ScriptedReader } from './helpers.js';

describe('ReaderBase', () => {
  it('sends frames one at a time, in call order', async () => {
    const reader = new ScriptedReader([
      { expect: '00a4040000', answer: '9000', afterMs: 20 },
      { expect: '00b0000000', answer: '01029000' },
    ]);
    const tag = reader.arrive();
    const order: string[] = [];
    const first = reader.transmit(tag, 'iso14443-4', fromHex('00A4040000')).then((r) => order.push(`a:${toHex(r)}`));
    const second = reader.transmit(tag, 'iso14443-4', fromHex('00B0000000')).then((r) => order.push(`b:${toHex(r)}`));
    await Promise.all([first, second]);
    expect(order).toEqual(['a:9000', 'b:01029000']);
    reader.assertDone();
  });

  it('refuses capabilities the reader lacks before sending anything', async () => {
    const reader = new ScriptedReader([], ['iso14443-4']);
    const tag = reader.arrive({ protocols: ['iso14443-4', 'iso15693'] });
    await expect(reader.transmit(tag, 'iso15693', fromHex('2601'))).rejects.toMatchObject({
      code: ErrorCode.UnsupportedCapability,
    });
    await expect(reader.feedback({ beepMs: 50 })).rejects.toMatchObject({ code: ErrorCode.UnsupportedCapability });
    expect(reader.sent).toEqual([]);
  });

  it('times out a silent tag and keeps working afterwards', async () => {
    const reader = new ScriptedReader([
      { expect: '3004', never: true },
      { expect: '00a4040000', answer: '6a82' },
    ]);
    const tag = reader.arrive();
    await expect(reader.transmit(tag, 'iso14443a-raw', fromHex('3004'), { timeoutMs: 20 })).rejects.toMatchObject({
      code: ErrorCode.Timeout,
    });
    expect(toHex(await reader.transmit(tag, 'iso14443-4', fromHex('00A4040000')))).toBe('6a82');
  });

  it('fails an exchange with TAG_LOST when the tag leaves, and refuses a stale tag', async () => {
    const reader = new ScriptedReader([{ expect: '00a4040000', answer: '9000', afterMs: 100 }]);
    const tag = reader.arrive();
    const pending = reader.transmit(tag, 'iso14443-4', fromHex('00A4040000'));
    setTimeout(() => reader.leave(), 5);
    await expect(pending).rejects.toMatchObject({ code: ErrorCode.TagLost });
    const next = reader.arrive();
    expect(next.id).not.toBe(tag.id);
    await expect(reader.transmit(tag, 'iso14443-4', fromHex('00'))).rejects.toMatchObject({ code: ErrorCode.TagLost });
  });

  it('announces a tag already in the field to late subscribers', async () => {
    const reader = new ScriptedReader([]);
    const tag = reader.arrive();
    const events = firstValueFrom(reader.events$.pipe(toArray()));
    reader.leave();
    await reader.close();
    expect((await events).map((e) => [e.type, e.tag.id])).toEqual([
      ['tag-arrived', tag.id],
      ['tag-left', tag.id],
    ]);
  });

  it('closes once, fails in-flight exchanges with READER_GONE, and refuses new ones', async () => {
    const reader = new ScriptedReader([{ expect: '00a4040000', never: true }]);
    const tag = reader.arrive();
    const pending = reader.transmit(tag, 'iso14443-4', fromHex('00A4040000'));
    await new Promise((r) => setTimeout(r, 5));
    await Promise.all([reader.close(), reader.close()]);
    await expect(pending).rejects.toMatchObject({ code: ErrorCode.ReaderGone });
    expect(reader.released).toBe(1);
    expect(reader.closed).toBe(true);
    await expect(reader.transmit(tag, 'iso14443-4', fromHex('00'))).rejects.toMatchObject({
      code: ErrorCode.ReaderGone,
    });
  });

  it("aborts the driver's signal on timeout and gives the next exchange a live one", async () => {
    const reader = new ScriptedReader([
      { expect: '01', answer: '9000' },
      { expect: '02', answer: '9000' },
      { expect: '03', never: true },
      { expect: '04', answer: '9000' },
    ]);
    const tag = reader.arrive();
    await reader.transmit(tag, 'iso14443-4', fromHex('01'));
    await reader.transmit(tag, 'iso14443-4', fromHex('02'));
    await expect(reader.transmit(tag, 'iso14443-4', fromHex('03'), { timeoutMs: 20 })).rejects.toMatchObject({
      code: ErrorCode.Timeout,
      message: expect.stringContaining('within 20 ms') as unknown,
    });
    await reader.transmit(tag, 'iso14443-4', fromHex('04'));
    const [first, second, third, fourth] = reader.signals;
    // Exchanges that end in time share one signal and leave it untouched; the timed-out one's fired.
    expect(second).toBe(first);
    expect(third).toBe(first);
    expect(third?.aborted).toBe(true);
    expect((third?.reason as { code?: string }).code).toBe(ErrorCode.Timeout);
    expect(fourth).not.toBe(third);
    expect(fourth?.aborted).toBe(false);
  });

  it('adds no listener per exchange to the signal drivers get', async () => {
    const steps = Array.from({ length: 50 }, (_, i) => ({ expect: i.toString(16).padStart(2, '0'), answer: '9000' }));
    const reader = new ScriptedReader(steps);
    const tag = reader.arrive();
    for (let i = 0; i < 50; i++) await reader.transmit(tag, 'iso14443-4', Uint8Array.of(i));
    const signal = reader.signals[0]!;
    expect(reader.signals.every((s) => s === signal)).toBe(true);
    expect(getEventListeners(signal, 'abort')).toHaveLength(0);
  });

  it("fails an exchange with ABORTED when the caller's signal fires, and removes its listener otherwise", async () => {
    const reader = new ScriptedReader([
      { expect: '01', answer: '9000' },
      { expect: '02', answer: '9000', afterMs: 200 },
      { expect: '03', answer: '6a82' },
    ]);
    const tag = reader.arrive();
    const caller = new AbortController();
    await reader.transmit(tag, 'iso14443-4', fromHex('01'), { signal: caller.signal });
    expect(getEventListeners(caller.signal, 'abort')).toHaveLength(0);
    const pending = reader.transmit(tag, 'iso14443-4', fromHex('02'), { signal: caller.signal });
    setTimeout(() => caller.abort(new Error('user pressed Ctrl-C')), 5);
    await expect(pending).rejects.toMatchObject({ code: ErrorCode.Aborted });
    expect(reader.signals[1]?.aborted).toBe(true);
    await expect(reader.transmit(tag, 'iso14443-4', fromHex('03'), { signal: caller.signal })).rejects.toMatchObject({
      code: ErrorCode.Aborted,
    });
    expect(toHex(await reader.transmit(tag, 'iso14443-4', fromHex('03')))).toBe('6a82');
  });

  it('runs feedback between exchanges, never during one', async () => {
    const reader = new ScriptedReader([
      { expect: '01', answer: '9000', afterMs: 30 },
      { expect: '02', answer: '9000' },
    ]);
    const tag = reader.arrive();
    const order: string[] = [];
    const first = reader.transmit(tag, 'iso14443-4', fromHex('01')).then(() => order.push('01'));
    const light = reader.feedback({ led: 'green' }).then(() => order.push('led'));
    const second = reader.transmit(tag, 'iso14443-4', fromHex('02')).then(() => order.push('02'));
    await Promise.all([first, light, second]);
    expect(order).toEqual(['01', 'led', '02']);
  });

  it('fails an exchange with TAG_LOST on removal even when the caller passed a copy of the tag', async () => {
    const reader = new ScriptedReader([{ expect: '00a4040000', never: true }]);
    const tag = reader.arrive();
    const pending = reader.transmit({ ...tag }, 'iso14443-4', fromHex('00A4040000'), { timeoutMs: 5000 });
    setTimeout(() => reader.leave(), 5);
    const started = Date.now();
    await expect(pending).rejects.toMatchObject({ code: ErrorCode.TagLost });
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('refuses empty frames', async () => {
    const reader = new ScriptedReader([]);
    const tag = reader.arrive();
    await expect(reader.transmit(tag, 'iso14443-4', new Uint8Array())).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
    });
  });

  it('passes LED feedback to the driver when it has the capability', async () => {
    const reader = new ScriptedReader([]);
    await reader.feedback({ led: 'green' });
    expect(reader.feedbackLog).toEqual([{ led: 'green' }]);
  });
});
