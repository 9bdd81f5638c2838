import { afterEach, describe, expect, it } from 'vitest';
import {
  ErrorCode,
  Iso15693Tag,
  TaplineError,
  appendIso15693Crc,
  fromHex,
  timeoutError,
  toSpacedHex,
  type ExchangeOptions,
  type FrameExchange,
} from '../src/index.js';
import { ScriptedReader } from './helpers.js';

const UID = fromHex('E0040118009C870C');
const UID_AIR = '0C 87 9C 00 18 01 04 E0';
const ICHALLENGE = fromHex('A0A1A2A3A4A5A6A7A8A9');
const TRESPONSE = '4D 96 CA 87 FC 55 28 77 FD 4F 5F 79 78 23 87 1B';

/** An exchange that answers from a list and records what it was sent. */
function scripted(...replies: (string | Error)[]) {
  const sent: string[] = [];
  const options: (ExchangeOptions | undefined)[] = [];
  const exchange: FrameExchange = (frame, opts) => {
    sent.push(toSpacedHex(frame));
    options.push(opts);
    const next = replies.shift();
    if (next === undefined) return Promise.reject(new Error('script exhausted'));
    if (next instanceof Error) return Promise.reject(next);
    return Promise.resolve(fromHex(next));
  };
  return { exchange, sent, options };
}

async function rejection(promise: Promise<unknown>): Promise<TaplineError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(TaplineError);
    return error as TaplineError;
  }
  throw new Error('expected a rejection');
}

describe('Iso15693Tag over a frame exchange', () => {
  it('addresses every command to the UID and parses the replies', async () => {
    const { exchange, sent } = scripted(
      `00 00 ${UID_AIR}`,
      '00 DE AD BE EF',
      '00 00 01 02 03 04 05 06 07',
      `00 0F ${UID_AIR} 00 00 3F 03 01`,
      `00 ${'11 '.repeat(32)}`,
      `00 00 ${TRESPONSE}`,
    );
    const tag = new Iso15693Tag(exchange, { uid: UID });

    expect((await tag.inventory()).uid).toEqual(UID);
    expect((await tag.readBlock(0)).data).toEqual(fromHex('DEADBEEF'));
    expect((await tag.readBlocks(4, 2)).data).toEqual(fromHex('0001020304050607'));
    expect((await tag.getSystemInfo()).memory).toEqual({ blockCount: 64, blockSize: 4 });
    expect((await tag.readSignature()).signature).toEqual(new Uint8Array(32).fill(0x11));
    const auth = await tag.authenticate(2, ICHALLENGE);
    expect(toSpacedHex(auth.tresponse)).toBe(TRESPONSE);
    expect(auth.leadingByte).toBe(0);

    expect(sent).toEqual([
      '26 01 00',
      `22 20 ${UID_AIR} 00`,
      `22 23 ${UID_AIR} 04 01`,
      `22 2B ${UID_AIR}`,
      `22 BD 04 ${UID_AIR}`,
      `20 35 ${UID_AIR} 00 00 02 A0 A1 A2 A3 A4 A5 A6 A7 A8 A9`,
    ]);
    expect(tag.exchanges).toBe(6);
  });

  it('runs non-addressed when asked, and passes security status and timeouts through', async () => {
    const { exchange, sent, options } = scripted('00 01 DE AD BE EF', `00 00 ${TRESPONSE}`);
    const tag = new Iso15693Tag(exchange, { uid: UID, addressed: false });
    const controller = new AbortController();
    const block = await tag.readBlock(3, { withSecurityStatus: true, timeoutMs: 123, signal: controller.signal });
    expect(block.securityStatus).toBe(1);
    await tag.authenticate(1, ICHALLENGE, { option: true, highDataRate: true });
    expect(sent).toEqual(['42 20 03', '42 35 00 00 01 A0 A1 A2 A3 A4 A5 A6 A7 A8 A9']);
    expect(options[0]).toEqual({ timeoutMs: 123, signal: controller.signal });
    expect(options[1]).toEqual({});
  });

  it('appends and checks the CRC on a raw exchange', async () => {
    const { exchange, sent } = scripted(
      '00 00 02 28 E0 6D 58 01 04 E0 D0 60',
      toSpacedHex(appendIso15693Crc(fromHex('00 DE AD BE EF'))),
      '00 DE AD BE EF 00 00',
    );
    const tag = new Iso15693Tag(exchange, { uid: UID, rawCrc: true });
    expect(toSpacedHex((await tag.inventory()).uid)).toBe('E0 04 01 58 6D E0 28 02');
    expect((await tag.readBlock(0)).data).toEqual(fromHex('DEADBEEF'));
    expect((await rejection(tag.readBlock(0))).code).toBe(ErrorCode.IntegrityError);
    expect(sent.slice(0, 2)).toEqual(['26 01 00 F6 0A', `22 20 ${UID_AIR} 00 67 07`]);
  });

  it('turns an error reply into TAG_STATUS and a malformed one into PROTOCOL_ERROR', async () => {
    const { exchange } = scripted('01 10', '00 01 02', '01 0F');
    const tag = new Iso15693Tag(exchange, { uid: UID });
    const status = await rejection(tag.readBlock(200));
    expect(status.code).toBe(ErrorCode.TagStatus);
    expect(status.details['iso15693Error']).toBe(0x10);
    expect((await rejection(tag.readBlock(0))).code).toBe(ErrorCode.ProtocolError);
    const auth = await rejection(tag.authenticate(7, ICHALLENGE));
    expect(auth.code).toBe(ErrorCode.TagStatus);
    expect(auth.message).toContain('AUTHENTICATE');
  });

  it('keeps Tapline errors from the exchange and wraps anything else', async () => {
    const { exchange } = scripted(timeoutError('iso15693 exchange', 50), new Error('wire fell out'));
    const tag = new Iso15693Tag(exchange, { uid: UID });
    expect((await rejection(tag.readSignature())).code).toBe(ErrorCode.Timeout);
    const wrapped = await rejection(tag.readSignature());
    expect(wrapped.code).toBe(ErrorCode.ProtocolError);
    expect(wrapped.message).toContain('READ SIGNATURE');
    expect(wrapped.message).toContain('wire fell out');
  });

  it('refuses addressed mode without a UID, and a UID of the wrong length', () => {
    const { exchange } = scripted();
    expect(() => new Iso15693Tag(exchange, { addressed: true })).toThrow(TaplineError);
    expect(() => new Iso15693Tag(exchange, { uid: new Uint8Array(7) })).toThrow(/8 bytes/);
    expect(new Iso15693Tag(exchange).uid).toBeUndefined();
  });
});

describe('Iso15693Tag.fromTag', () => {
  let reader: ScriptedReader | undefined;
  afterEach(async () => {
    await reader?.close();
  });

  it('sends through the reader with the tag UID', async () => {
    reader = new ScriptedReader([{ expect: '22bd040c879c00180104e0', answer: `00${'ab'.repeat(32)}` }], ['iso15693']);
    const tag = reader.arrive({ technology: 'iso15693', uid: UID, protocols: ['iso15693'] });
    const signature = await Iso15693Tag.fromTag(tag).readSignature();
    expect(signature.signature).toEqual(new Uint8Array(32).fill(0xab));
    reader.assertDone();
  });

  it('refuses a tag that is not ISO 15693', () => {
    reader = new ScriptedReader([]);
    const tag = reader.arrive();
    try {
      Iso15693Tag.fromTag(tag);
      expect.unreachable('should have thrown');
    } catch (error) {
      expect((error as TaplineError).code).toBe(ErrorCode.InvalidArgument);
    }
  });
});
