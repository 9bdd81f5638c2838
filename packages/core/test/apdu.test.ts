import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  ApduChannel,
  ErrorCode,
  decodeApdu,
  describeStatusWord,
  encodeApdu,
  encodeResponseApdu,
  fromHex,
  isTaplineError,
  parseResponseApdu,
  statusWordError,
  toHex,
  type FrameExchange,
} from '../src/index.js';
import { scriptedCard } from './helpers.js';

describe('APDU encoding', () => {
  it.each([
    ['case 1', { cla: 0x00, ins: 0xa4, p1: 0x04, p2: 0x0c }, '00a4040c'],
    ['case 2S, Le 256 as 00', { cla: 0xff, ins: 0xca, p1: 0, p2: 0, le: 256 }, 'ffca000000'],
    [
      'case 3S SELECT NDEF app',
      { cla: 0, ins: 0xa4, p1: 4, p2: 0x0c, data: fromHex('D2760000850101') },
      '00a4040c07d2760000850101',
    ],
    ['case 4S NTAG GetVersion', { cla: 0x90, ins: 0x60, p1: 0, p2: 0, le: 256 }, '9060000000'],
    [
      'case 4S AuthenticateEV2First',
      { cla: 0x90, ins: 0x71, p1: 0, p2: 0, data: fromHex('0200'), le: 256 },
      '9071000002020000',
    ],
    ['case 2E', { cla: 0, ins: 0xb0, p1: 0, p2: 0, le: 65536 }, '00b00000000000'],
    [
      'case 4E',
      { cla: 0, ins: 0xd6, p1: 0, p2: 0, data: new Uint8Array(300).fill(0xaa), le: 512 },
      `00d60000000${'12c'}${'aa'.repeat(300)}0200`,
    ],
  ])('%s', (_name, command, hex) => {
    expect(toHex(encodeApdu(command))).toBe(hex);
    expect(decodeApdu(fromHex(hex))).toEqual(command);
  });

  it('round-trips every well-formed command (property)', () => {
    fc.assert(
      fc.property(
        fc.record({
          cla: fc.integer({ min: 0, max: 255 }),
          ins: fc.integer({ min: 0, max: 255 }),
          p1: fc.integer({ min: 0, max: 255 }),
          p2: fc.integer({ min: 0, max: 255 }),
          data: fc.option(fc.uint8Array({ minLength: 1, maxLength: 400 }), { nil: undefined }),
          le: fc.option(fc.integer({ min: 1, max: 65536 }), { nil: undefined }),
        }),
        (raw) => {
          const command = Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== undefined)) as typeof raw;
          expect(decodeApdu(encodeApdu(command))).toEqual(command);
        },
      ),
    );
  });

  it('gives random bytes either a command or a PROTOCOL_ERROR (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        try {
          decodeApdu(bytes);
        } catch (error) {
          expect(isTaplineError(error) && error.code === ErrorCode.ProtocolError).toBe(true);
        }
      }),
    );
  });

  it('refuses out-of-range fields with INVALID_ARGUMENT', () => {
    expect(() => encodeApdu({ cla: 256, ins: 0, p1: 0, p2: 0 })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
    expect(() => encodeApdu({ cla: 0, ins: 0, p1: 0, p2: 0, le: 70000 })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
  });

  it('splits responses and refuses answers without a status word', () => {
    expect(parseResponseApdu(fromHex('01029000'))).toEqual({ data: fromHex('0102'), sw: 0x9000 });
    expect(toHex(encodeResponseApdu(fromHex('01'), 0x91af))).toBe('0191af');
    expect(() => parseResponseApdu(fromHex('90'), 'SELECT')).toThrow(
      expect.objectContaining({ code: 'PROTOCOL_ERROR' }),
    );
  });
});

describe('status words', () => {
  it('names ISO and NXP statuses', () => {
    expect(describeStatusWord(0x6a82)).toBe('file or application not found');
    expect(describeStatusWord(0x917e)).toBe('NXP status: length error');
    expect(describeStatusWord(0x63c2)).toBe('verification failed, 2 tries left');
    expect(describeStatusWord(0x6100)).toBe('256 more bytes available');
  });

  it('maps statuses to typed errors with the status in details', () => {
    expect(statusWordError(0x6a82, 'SELECT')).toMatchObject({ code: ErrorCode.TagStatus, details: { sw: '6a82' } });
    expect(statusWordError(0x91ae, 'AuthenticateEV2First')).toMatchObject({ code: ErrorCode.AuthenticationFailed });
    expect(statusWordError(0x911e, 'ReadData')).toMatchObject({ code: ErrorCode.IntegrityError });
    expect(statusWordError(0x6d00, 'GetVersion').message).toBe(
      'The tag refused GetVersion: 6D00 (instruction not supported).',
    );
  });
});

describe('ApduChannel', () => {
  it('fetches 61 xx remainders with GET RESPONSE and joins them', async () => {
    const card = scriptedCard([
      ['00a404000ca000000846737061726b3201', '0102036104'],
      ['00c0000004', '040506079000'],
    ]);
    const channel = new ApduChannel(card.exchange);
    const data = await channel.send({ cla: 0, ins: 0xa4, p1: 4, p2: 0, data: fromHex('A000000846737061726B3201') });
    expect(toHex(data)).toBe('01020304050607');
    expect(channel.exchanges).toBe(2);
    card.done();
  });

  it('repeats a command once with the Le the card asks for on 6C xx', async () => {
    const card = scriptedCard([
      ['00b0000010', '6c08'],
      ['00b0000008', '11223344556677889000'],
    ]);
    const data = await new ApduChannel(card.exchange).send({ cla: 0, ins: 0xb0, p1: 0, p2: 0, le: 16 });
    expect(toHex(data)).toBe('1122334455667788');
    card.done();
  });

  it('chains long commands with CLA bit 0x10 and stops at a refused link', async () => {
    const long = new Uint8Array(300).fill(0x5a);
    const card = scriptedCard([
      [`10d60000ff${'5a'.repeat(255)}`, '9000'],
      [`00d600002d${'5a'.repeat(45)}`, '9000'],
    ]);
    await new ApduChannel(card.exchange).send({ cla: 0, ins: 0xd6, p1: 0, p2: 0, data: long });
    card.done();
    const refusing = scriptedCard([[`10d60000ff${'5a'.repeat(255)}`, '6884']]);
    await expect(
      new ApduChannel(refusing.exchange).send({ cla: 0, ins: 0xd6, p1: 0, p2: 0, data: long }),
    ).rejects.toMatchObject({
      code: ErrorCode.TagStatus,
      details: { sw: '6884' },
    });
  });

  it('accepts the statuses the caller expects and refuses others', async () => {
    const card = scriptedCard([
      ['9071000002020000', `${'ab'.repeat(16)}91af`],
      ['9071000002020000', '917e'],
    ]);
    const channel = new ApduChannel(card.exchange);
    const auth = { cla: 0x90, ins: 0x71, p1: 0, p2: 0, data: fromHex('0200'), le: 256 };
    expect(await channel.send(auth, { expect: [0x91af] })).toHaveLength(16);
    await expect(channel.send(auth, { expect: [0x91af], name: 'AuthenticateEV2First' })).rejects.toThrow(
      'The tag refused AuthenticateEV2First: 917E (NXP status: length error).',
    );
  });

  it('gives up on a card that never stops answering 61 xx', async () => {
    const forever: FrameExchange = () => Promise.resolve(fromHex('016101'));
    await expect(
      new ApduChannel(forever, { maxGetResponse: 3 }).send({ cla: 0, ins: 0xb0, p1: 0, p2: 0, le: 1 }),
    ).rejects.toMatchObject({
      code: ErrorCode.ProtocolError,
    });
  });
});
