/**
 * The USB link as a conversation (nfcpy style): what the host writes, byte for byte, and what the scripted chip
 * answers. readers.md §6 vectors 1–5, NACK recovery, time-outs, zero-length packets, device loss, aborts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, type TaplineError } from '@tapline/core';
import type { Pn533UsbLink } from '../src/usb-link.js';
import { ACK, CMD, ERR, NACK, RSP, ScriptedUsbDevice, hex, scriptedLink } from './support/scripted-usb.js';

const links: Pn533UsbLink[] = [];
function open(device: ScriptedUsbDevice, ackTimeoutMs?: number): Pn533UsbLink {
  const link = scriptedLink(device, ackTimeoutMs);
  links.push(link);
  return link;
}

afterEach(async () => {
  for (const link of links.splice(0)) await link.close();
});

const fail = (promise: Promise<unknown>): Promise<TaplineError> =>
  promise.then(
    () => {
      throw new Error('expected a failure');
    },
    (error: unknown) => error as TaplineError,
  );

describe('Pn533UsbLink', () => {
  it('vector 1: command, ACK, answer', async () => {
    const usb = new ScriptedUsbDevice([
      { write: hex('00 00 FF 05 FB D4 00 31 32 33 96 00'), reply: [ACK(), hex('00 00 FF 05 FB D5 01 34 35 36 8B 00')] },
    ]);
    const link = open(usb);
    await expect(link.exchange(hex('D4 00 31 32 33'), { timeoutMs: 500 })).resolves.toEqual(hex('D5 01 34 35 36'));
    usb.assertDone();
  });

  it('vector 2: extended command and extended answer', async () => {
    const zeros = new Uint8Array(256);
    const usb = new ScriptedUsbDevice([
      {
        write: Uint8Array.of(...hex('00 00 FF FF FF 01 05 FA D4 00 31 32 33'), ...zeros, 0x96, 0x00),
        reply: [ACK(), Uint8Array.of(...hex('00 00 FF FF FF 01 05 FA D5 01 34 35 36'), ...zeros, 0x8b, 0x00)],
      },
    ]);
    const link = open(usb);
    const answer = await link.exchange(Uint8Array.of(...hex('D4 00 31 32 33'), ...zeros), { timeoutMs: 500 });
    expect(answer.length).toBe(261);
    expect(answer.subarray(0, 5)).toEqual(hex('D5 01 34 35 36'));
    usb.assertDone();
  });

  it('vector 3: an error frame after the ACK is a PROTOCOL_ERROR naming the syntax error', async () => {
    const usb = new ScriptedUsbDevice([{ write: CMD('00'), reply: [ACK(), ERR()] }]);
    const error = await fail(open(usb).exchange(hex('D4 00'), { timeoutMs: 500 }));
    expect(error).toMatchObject({ code: ErrorCode.ProtocolError, details: { chipError: 'syntax', errorCode: 0x7f } });
    usb.assertDone();
  });

  it('an error frame instead of the ACK fails the same way', async () => {
    const usb = new ScriptedUsbDevice([{ write: CMD('14 01'), reply: [ERR()] }]);
    const error = await fail(open(usb).exchange(hex('D4 14 01'), { timeoutMs: 500 }));
    expect(error).toMatchObject({ code: ErrorCode.ProtocolError, details: { chipError: 'syntax' } });
  });

  it('vector 4: a bad DCS is asked for again with a NACK, and the resent answer is taken', async () => {
    const usb = new ScriptedUsbDevice([
      { write: CMD('00 31 32 33'), reply: [ACK(), hex('00 00 FF 05 FB D5 01 34 35 36 8A 00')] },
      { write: NACK(), reply: [RSP('01 34 35 36')] },
    ]);
    await expect(open(usb).exchange(hex('D4 00 31 32 33'), { timeoutMs: 500 })).resolves.toEqual(hex('D5 01 34 35 36'));
    usb.assertDone();
  });

  it('vector 4: a DCS that stays bad fails with PROTOCOL_ERROR after two NACKs', async () => {
    const bad = hex('00 00 FF 05 FB D5 01 34 35 36 8A 00');
    const usb = new ScriptedUsbDevice([
      { write: CMD('00 31 32 33'), reply: [ACK(), bad] },
      { write: NACK(), reply: [bad] },
      { write: NACK(), reply: [bad] },
    ]);
    const error = await fail(open(usb).exchange(hex('D4 00 31 32 33'), { timeoutMs: 500 }));
    expect(error).toMatchObject({ code: ErrorCode.ProtocolError, details: { reason: 'dcs' } });
    usb.assertDone();
  });

  it('a bad LCS is asked for again with a NACK too', async () => {
    const usb = new ScriptedUsbDevice([
      { write: CMD('02'), reply: [ACK(), hex('00 00 FF 06 FB D5 03 33 02 07 07 E5 00')] },
      { write: NACK(), reply: [RSP('03 33 02 07 07')] },
    ]);
    await expect(open(usb).exchange(hex('D4 02'), { timeoutMs: 500 })).resolves.toEqual(hex('D5 03 33 02 07 07'));
    usb.assertDone();
  });

  it('vector 5: ACK then silence is a TIMEOUT, and the host aborts the command with an ACK', async () => {
    const usb = new ScriptedUsbDevice([{ write: CMD('4A 01 00'), reply: [ACK()] }, { write: ACK() }]);
    const started = performance.now();
    const error = await fail(open(usb).exchange(hex('D4 4A 01 00'), { timeoutMs: 150 }));
    expect(error.code).toBe(ErrorCode.Timeout);
    expect(performance.now() - started).toBeLessThan(1000);
    usb.assertDone();
  });

  it('no ACK at all is a TIMEOUT after the ACK wait, followed by an abort', async () => {
    const usb = new ScriptedUsbDevice([{ write: CMD('02') }, { write: ACK() }]);
    const error = await fail(open(usb, 40).exchange(hex('D4 02'), { timeoutMs: 2000 }));
    expect(error.code).toBe(ErrorCode.Timeout);
    expect(error.message).toContain('no ACK');
    usb.assertDone();
  });

  it('an answer without an ACK is asked for again with a NACK (libnfc pn53x_usb_send)', async () => {
    const usb = new ScriptedUsbDevice([
      { write: CMD('02'), reply: [RSP('03 33 02 07 07')] },
      { write: NACK(), reply: [RSP('03 33 02 07 07')] },
    ]);
    await expect(open(usb).exchange(hex('D4 02'), { timeoutMs: 500 })).resolves.toEqual(hex('D5 03 33 02 07 07'));
    usb.assertDone();
  });

  it('a NACK from the chip makes the host send the command again', async () => {
    const usb = new ScriptedUsbDevice([
      { write: CMD('02'), reply: [NACK()] },
      { write: CMD('02'), reply: [ACK(), RSP('03 33 02 07 07')] },
    ]);
    await expect(open(usb).exchange(hex('D4 02'), { timeoutMs: 500 })).resolves.toEqual(hex('D5 03 33 02 07 07'));
    usb.assertDone();
  });

  it.each([
    [57, true],
    [121, true],
    [56, false],
    [58, false],
  ])(
    'a %i-byte payload (frame of %s multiple of 64) is followed by a zero-length packet only then',
    async (size, zlp) => {
      const payload = Uint8Array.of(0xd4, 0x00, ...new Uint8Array(size - 2).fill(0x41));
      const usb = new ScriptedUsbDevice();
      const link = open(usb);
      const done = link.exchange(payload, { timeoutMs: 500 });
      await new Promise((r) => setTimeout(r, 10));
      expect(usb.written[0]!.length % 64 === 0).toBe(zlp);
      expect(usb.written.length).toBe(zlp ? 2 : 1);
      if (zlp) expect(usb.written[1]!.length).toBe(0);
      usb.push(ACK(), RSP('01'));
      await expect(done).resolves.toEqual(hex('D5 01'));
    },
  );

  it('device loss mid-command (a failed read after the ACK) is READER_GONE, now and for every later call', async () => {
    const usb = new ScriptedUsbDevice([
      { write: CMD('40 01 00 A4 04 00'), reply: [ACK(), { error: new Error('LIBUSB_ERROR_NO_DEVICE') }] },
    ]);
    const link = open(usb);
    const error = await fail(link.exchange(hex('D4 40 01 00 A4 04 00'), { timeoutMs: 1000 }));
    expect(error).toMatchObject({ code: ErrorCode.ReaderGone });
    expect(link.lostError).toBe(error);
    await expect(link.exchange(hex('D4 02'), { timeoutMs: 100 })).rejects.toMatchObject({
      code: ErrorCode.ReaderGone,
    });
    usb.assertDone();
  });

  it('unplugging while the chip works (the disconnect rejects the pending read) is READER_GONE', async () => {
    const usb = new ScriptedUsbDevice([{ write: CMD('4A 01 00'), reply: [ACK()] }]);
    const link = open(usb);
    const pending = link.exchange(hex('D4 4A 01 00'), { timeoutMs: 2000 });
    await new Promise((r) => setTimeout(r, 20));
    usb.disconnect();
    await expect(pending).rejects.toMatchObject({ code: ErrorCode.ReaderGone });
  });

  it('a failed write is READER_GONE', async () => {
    const usb = new ScriptedUsbDevice();
    usb.failNextWrite(new Error('LIBUSB_ERROR_IO: Input/output error'));
    await expect(open(usb).exchange(hex('D4 02'), { timeoutMs: 200 })).rejects.toMatchObject({
      code: ErrorCode.ReaderGone,
    });
  });

  it('read time-outs of the usb binding (every second while idle) are not device loss', async () => {
    const usb = new ScriptedUsbDevice([{ write: CMD('02'), reply: [ACK(), RSP('03 33 02 07 07')] }]);
    usb.push(
      { error: new Error('transferIn error: Transfer timed out (LIBUSB_ERROR_TIMEOUT)') },
      { error: new Error('LIBUSB_ERROR_TIMEOUT') },
      { error: new Error('TimeoutError: timed out') },
      { error: new Error('transferIn error: transfer was cancelled') },
      { error: new Error('LIBUSB_ERROR_TIMEOUT') },
      { error: new Error('LIBUSB_ERROR_TIMEOUT') },
    );
    const link = open(usb);
    await new Promise((r) => setTimeout(r, 10));
    await expect(link.exchange(hex('D4 02'), { timeoutMs: 500 })).resolves.toEqual(hex('D5 03 33 02 07 07'));
    expect(link.lostError).toBeUndefined();
  });

  it('an AbortSignal stops the wait with ABORTED and aborts the chip with an ACK', async () => {
    const usb = new ScriptedUsbDevice([{ write: CMD('4A 01 00'), reply: [ACK()] }, { write: ACK() }]);
    const controller = new AbortController();
    const pending = open(usb).exchange(hex('D4 4A 01 00'), { timeoutMs: 5000, signal: controller.signal });
    setTimeout(() => controller.abort(), 30);
    await expect(pending).rejects.toMatchObject({ code: ErrorCode.Aborted });
    usb.assertDone();
  });

  it('an answer left over from an aborted command is dropped before the next command', async () => {
    const usb = new ScriptedUsbDevice([{ write: CMD('02'), reply: [ACK(), RSP('03 33 02 07 07')] }]);
    const link = open(usb);
    usb.push(RSP('4B 00'));
    await new Promise((r) => setTimeout(r, 10));
    await expect(link.exchange(hex('D4 02'), { timeoutMs: 500 })).resolves.toEqual(hex('D5 03 33 02 07 07'));
  });

  it('does not spin when reads come back empty', async () => {
    const usb = new ScriptedUsbDevice();
    usb.answerEmptyReads();
    open(usb);
    await new Promise((r) => setTimeout(r, 200));
    // Backing off to 50 ms per read: a handful, not thousands.
    expect(usb.reads).toBeLessThan(40);
  });

  it('runs one exchange at a time', async () => {
    const usb = new ScriptedUsbDevice([
      { write: CMD('02'), reply: [ACK(), { delayMs: 20, data: RSP('03 33 02 07 07') }] },
      { write: CMD('00 00 AB'), reply: [ACK(), RSP('01 00 AB')] },
    ]);
    const link = open(usb);
    const [a, b] = await Promise.all([
      link.exchange(hex('D4 02'), { timeoutMs: 500 }),
      link.exchange(hex('D4 00 00 AB'), { timeoutMs: 500 }),
    ]);
    expect(a).toEqual(hex('D5 03 33 02 07 07'));
    expect(b).toEqual(hex('D5 01 00 AB'));
    usb.assertDone();
  });

  it('refuses payloads that are no PN53x command, without writing', async () => {
    const usb = new ScriptedUsbDevice();
    await expect(open(usb).exchange(hex('D5 02'), { timeoutMs: 100 })).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
    });
    await expect(open(usb).exchange(new Uint8Array(300).fill(0xd4), { timeoutMs: 100 })).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
    });
    expect(usb.written).toEqual([]);
  });

  it('abort() writes the ACK frame', async () => {
    const usb = new ScriptedUsbDevice([{ write: ACK() }]);
    await open(usb).abort();
    usb.assertDone();
  });

  it('random bytes from the device end in a frame or a TaplineError, never a hang', async () => {
    // A command whose answer is garbage: the link NACKs, then gives up with a typed error within its deadline.
    const usb = new ScriptedUsbDevice([
      { write: CMD('02'), reply: [ACK(), hex('00 00 FF 13 37 00 00 FF 02 FE D5 03 00')] },
      { write: NACK(), reply: [hex('00 FF 00 00 00 FF 05 FA')] },
      { write: NACK(), reply: [hex('FF FF FF FF 00 00 FF 01 FE')] },
      { write: ACK() },
    ]);
    const error = await fail(open(usb).exchange(hex('D4 02'), { timeoutMs: 300 }));
    expect([ErrorCode.ProtocolError, ErrorCode.Timeout]).toContain(error.code);
  });
});
