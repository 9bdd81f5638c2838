import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ErrorCode, isTaplineError } from '../src/model/errors.js';
import type { FrameExchange } from '../src/tags/channel.js';
import { decodeApdu, encodeResponseApdu } from '../src/tags/iso7816/apdu.js';
import { ApduChannel } from '../src/tags/iso7816/channel.js';
import {
  EV2_CMD_CTR_MAX,
  Ev2Session,
  SecureChannel,
  changeFileSettings,
  commandIv,
  commandMacInput,
  computeMact,
  decryptFullData,
  encryptFullData,
  getCardUid,
  getFileSettings,
  readData,
  readSignature,
  responseIv,
  responseMacInput,
  writeData,
  type CommMode,
} from '../src/tags/ntag4xx/index.js';
import { concatBytes, fromHex, toHex } from '../src/util/bytes.js';
import { scriptedCard } from './helpers.js';

const lower = (hex: string) => toHex(fromHex(hex));

/** The Table 14 session (protocols.md §3.2). */
function table14Session(cmdCtr = 0): Ev2Session {
  return new Ev2Session({
    keyNo: 0,
    ti: fromHex('9D00C4DF'),
    keys: { enc: fromHex('1309C877509E5A215007FF0ED19CA564'), mac: fromHex('4C6626F5E72EA694202139295C7A7FC7') },
    pdCap2: new Uint8Array(6),
    pcdCap2: new Uint8Array(6),
    cmdCtr,
  });
}

// protocols.md §3.3, FULL WriteData (AN12196 §5.4 / Table 17).
const WRITE_PLAIN = fromHex(
  `0051D1014D550463686F6F73652E75726C2E636F6D2F6E7461673432343F653D${'30'.repeat(32)}26633D${'30'.repeat(16)}${'00'.repeat(45)}`,
);
const WRITE_APDU =
  '908D00009F02000000800000421C73A27D827658AF481FDFF20A5025B559D0E3AA21E58D347F343CFFC768BFE596C706BC00F2176781D4B0242642A0FF5A42C461AAF894D9A1284B8C76BCFA658ACD40555D362E08DB15CF421B51283F9064BCBE20E96CAE545B407C9D651A3315B27373772E5DA2367D2064AE054AF996C6F1F669170FA88CE8C4E3A4A7BBBEF0FD971FF532C3A802AF745660F2B4D1D9A8499661EBF300';
const WRITE_ANSWER = 'FC222E5F7A542452 9100';
// protocols.md §3.3, FULL ChangeFileSettings (AN12196 Table 19), counter 1.
const CFS_SETTINGS = fromHex('4000E0C1F121200000430000430000');
const CFS_APDU = '905F0000190261B6D97903566E84C3AE5274467E89EAD799B7C1A0EF7A0400';
const CFS_ANSWER = '57BFF87B1241E93D 9100';

describe('secure messaging vectors (protocols.md §3.3)', () => {
  it('MACs GetFileSettings and verifies the answer (AN12196 §5.3)', async () => {
    const session = new Ev2Session({
      keyNo: 0,
      ti: fromHex('7A21085E'),
      keys: { enc: new Uint8Array(16), mac: fromHex('8248134A386E86EB7FAF54A52E536CB6') },
      pdCap2: new Uint8Array(6),
      pcdCap2: new Uint8Array(6),
    });
    const card = scriptedCard([
      ['90F5000009 02 6597A457C8CD442C 00', '0040EEEE000100D1FE001F00004400004400002000006A0000 2A474282E7A47986 9100'],
    ]);
    const settings = await getFileSettings(new SecureChannel(card.channel, session), 2);
    card.done();
    expect(toHex(settings.raw)).toBe(lower('0040EEEE000100D1FE001F00004400004400002000006A0000'));
    expect(settings).toMatchObject({
      fileType: 0,
      sdmEnabled: true,
      commMode: 'plain',
      fileSize: 256,
      accessRights: { read: 0xe, write: 0xe, readWrite: 0xe, change: 0xe },
    });
    expect(session.cmdCtr).toBe(1);
  });

  it('encrypts WriteData (Table 17) and ChangeFileSettings (Table 19) byte for byte', async () => {
    const session = table14Session();
    expect(toHex(commandIv(session.encKey, session.ti, 0))).toBe(lower('D2CB7277A17841A06654A48188C1F8F5'));
    expect(toHex(commandIv(session.encKey, session.ti, 1))).toBe(lower('3E27082AB2ACC1EF55C57547934E9962'));
    const card = scriptedCard([
      [WRITE_APDU, WRITE_ANSWER],
      [CFS_APDU, CFS_ANSWER],
    ]);
    const secure = new SecureChannel(card.channel, session);
    await writeData(secure, { fileNo: 2, offset: 0, data: WRITE_PLAIN, mode: 'full' });
    expect(session.cmdCtr).toBe(1);
    await changeFileSettings(secure, 2, CFS_SETTINGS);
    expect(session.cmdCtr).toBe(2);
    card.done();
  });

  it('computes the Table 19 response MAC over RC ‖ CmdCtr+1 ‖ TI', () => {
    const session = table14Session();
    expect(toHex(computeMact(session.macKey, responseMacInput(0x00, 1, session.ti, new Uint8Array())))).toBe(
      lower('57BFF87B1241E93D'),
    );
    expect(toHex(commandMacInput(0x5f, 1, session.ti, Uint8Array.of(2), new Uint8Array()))).toBe(
      lower('5F01009D00C4DF02'),
    );
  });

  it('chains a long command over 91 AF frames (WriteData vector, 16-byte frames)', async () => {
    const body = fromHex(WRITE_APDU).subarray(5, -1);
    const steps: [string, string][] = [];
    for (let offset = 0; offset < body.length; offset += 16) {
      const chunk = body.subarray(offset, offset + 16);
      const ins = offset === 0 ? '8D' : 'AF';
      const last = offset + 16 >= body.length;
      steps.push([
        `90${ins}0000${chunk.length.toString(16).padStart(2, '0')}${toHex(chunk)}00`,
        last ? WRITE_ANSWER : '91AF',
      ]);
    }
    const card = scriptedCard(steps);
    const secure = new SecureChannel(card.channel, table14Session());
    await secure.send(0x8d, fromHex('02000000800000'), WRITE_PLAIN, 'full', { maxFrameData: 16 });
    card.done();
    expect(secure.session.cmdCtr).toBe(1);
  });
});

describe('secure messaging error paths and counter rule', () => {
  it('fails with INTEGRITY_ERROR on a flipped response MAC and ends the session', async () => {
    const card = scriptedCard([[CFS_APDU, '57BFF87B1241E93C 9100']]);
    const secure = new SecureChannel(card.channel, table14Session(1));
    await expect(changeFileSettings(secure, 2, CFS_SETTINGS)).rejects.toMatchObject({
      code: ErrorCode.IntegrityError,
    });
    expect(secure.session.usable).toBe(false);
    await expect(changeFileSettings(secure, 2, CFS_SETTINGS)).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
    });
    expect(card.sent).toHaveLength(1);
  });

  it('ends the session when the tag refuses a command, without counting it', async () => {
    const card = scriptedCard([[CFS_APDU, '919D']]);
    const secure = new SecureChannel(card.channel, table14Session(1));
    await expect(changeFileSettings(secure, 2, CFS_SETTINGS)).rejects.toMatchObject({
      code: ErrorCode.TagStatus,
      details: { sw: '919d' },
    });
    expect(secure.session.cmdCtr).toBe(1);
    expect(secure.session.endReason).toMatch(/919D/);
    const integrity = scriptedCard([[CFS_APDU, '911E']]);
    await expect(
      changeFileSettings(new SecureChannel(integrity.channel, table14Session(1)), 2, CFS_SETTINGS),
    ).rejects.toMatchObject({ code: ErrorCode.IntegrityError });
  });

  it('ends the session when the exchange fails', async () => {
    const broken: FrameExchange = () => Promise.reject(new Error('tag gone'));
    const secure = new SecureChannel(new ApduChannel(broken), table14Session());
    await expect(secure.send(0x51, new Uint8Array(), new Uint8Array(), 'full')).rejects.toThrow('tag gone');
    expect(secure.session.usable).toBe(false);
  });

  it('fails with PROTOCOL_ERROR when a MAC answer is shorter than its MAC', async () => {
    const card = scriptedCard([[CFS_APDU, '57BFF87B12 9100']]);
    await expect(
      changeFileSettings(new SecureChannel(card.channel, table14Session(1)), 2, CFS_SETTINGS),
    ).rejects.toMatchObject({ code: ErrorCode.ProtocolError });
  });

  it('refuses to send at CmdCtr 0xFFFF and sends at 0xFFFE', async () => {
    const exhausted = scriptedCard([]);
    const secure = new SecureChannel(exhausted.channel, table14Session(EV2_CMD_CTR_MAX));
    await expect(secure.send(0x51, new Uint8Array(), new Uint8Array(), 'full')).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
    });
    expect(exhausted.sent).toEqual([]);
    const picc = virtualPicc(table14Session(0xfffe), {
      0x51: { headerLength: 0, mode: 'full', reply: () => fromHex('04112233445566') },
    });
    const last = new SecureChannel(new ApduChannel(picc.exchange), table14Session(0xfffe));
    expect(toHex(await getCardUid(last))).toBe('04112233445566');
    expect(last.session.cmdCtr).toBe(EV2_CMD_CTR_MAX);
    expect(last.session.usable).toBe(false);
  });

  it('counts plain commands sent while authenticated (NT4H2421Gx §9.1.8)', async () => {
    const data = fromHex('0102030405060708090A');
    const picc = virtualPicc(table14Session(), {
      0xad: { headerLength: 7, mode: 'plain', reply: () => data },
      0xf5: { headerLength: 1, mode: 'mac', reply: () => fromHex('0000E0EE000100') },
    });
    const secure = new SecureChannel(new ApduChannel(picc.exchange), table14Session());
    expect(toHex(await readData(secure, { fileNo: 1, length: 10 }))).toBe(toHex(data));
    expect(secure.session.cmdCtr).toBe(1);
    // The chip counted the plain command too, so this MAC verifies only because the channel counted it as well.
    expect(await getFileSettings(secure, 1)).toMatchObject({ fileSize: 256, accessRights: { readWrite: 0xe } });
    expect(picc.counter()).toBe(2);
    expect(secure.session.cmdCtr).toBe(2);
  });
});

interface Handler {
  readonly headerLength: number;
  readonly mode: CommMode;
  readonly rc?: number;
  reply(header: Uint8Array, data: Uint8Array): Uint8Array;
}

/**
 * A chip-side secure-messaging peer built from the session helpers: checks the command MAC, decrypts, answers, and
 * can split long answers over 91 AF frames or tamper with them.
 */
function virtualPicc(
  session: Ev2Session,
  handlers: Readonly<Record<number, Handler>>,
  options: { readonly frame?: number; readonly tamper?: (answer: Uint8Array) => Uint8Array } = {},
) {
  let ctr = session.cmdCtr;
  const pending: Uint8Array[] = [];
  const frames = (body: Uint8Array, rc: number): Uint8Array => {
    const size = options.frame ?? 1024;
    for (let offset = size; offset < body.length; offset += size) pending.push(body.subarray(offset, offset + size));
    const first = body.subarray(0, size);
    return pending.length > 0 ? encodeResponseApdu(first, 0x91af) : encodeResponseApdu(first, 0x9100 | rc);
  };
  let lastRc = 0;
  const exchange: FrameExchange = (frame) => {
    const apdu = decodeApdu(frame);
    const body = apdu.data ?? new Uint8Array();
    if (apdu.ins === 0xaf && pending.length > 0) {
      const next = pending.shift()!;
      return Promise.resolve(encodeResponseApdu(next, pending.length > 0 ? 0x91af : 0x9100 | lastRc));
    }
    const handler = handlers[apdu.ins];
    if (!handler) return Promise.resolve(fromHex('911C'));
    const cmdCtr = ctr;
    let header: Uint8Array;
    let data: Uint8Array;
    if (handler.mode === 'plain') {
      header = body.subarray(0, handler.headerLength);
      data = body.subarray(handler.headerLength);
    } else {
      const secured = body.subarray(0, body.length - 8);
      const mac = computeMact(session.macKey, commandMacInput(apdu.ins, cmdCtr, session.ti, secured, new Uint8Array()));
      if (toHex(mac) !== toHex(body.subarray(body.length - 8))) return Promise.resolve(fromHex('911E'));
      header = secured.subarray(0, handler.headerLength);
      data = secured.subarray(handler.headerLength);
      if (handler.mode === 'full' && data.length > 0)
        data = decryptFullData(session.encKey, commandIv(session.encKey, session.ti, cmdCtr), data);
    }
    ctr += 1;
    const rc = handler.rc ?? 0;
    lastRc = rc;
    let answer = handler.reply(header, data);
    if (handler.mode === 'full' && answer.length > 0)
      answer = encryptFullData(session.encKey, responseIv(session.encKey, session.ti, cmdCtr), answer);
    if (handler.mode !== 'plain')
      answer = concatBytes(answer, computeMact(session.macKey, responseMacInput(rc, cmdCtr, session.ti, answer)));
    if (options.tamper) answer = options.tamper(answer);
    return Promise.resolve(frames(answer, rc));
  };
  return { exchange, counter: () => ctr };
}

describe('secure messaging against a virtual PICC', () => {
  it('reads a 256-byte file in FULL mode across 91 AF answer frames', async () => {
    const file = Uint8Array.from({ length: 256 }, (_, i) => i);
    const picc = virtualPicc(
      table14Session(),
      {
        0xad: {
          headerLength: 7,
          mode: 'full',
          reply: (header) => {
            expect(toHex(header)).toBe('02000000000000');
            return file;
          },
        },
      },
      { frame: 59 },
    );
    const secure = new SecureChannel(new ApduChannel(picc.exchange), table14Session());
    expect(toHex(await readData(secure, { fileNo: 2, mode: 'full' }))).toBe(toHex(file));
    expect(secure.session.cmdCtr).toBe(1);
  });

  it('reads the UID with GetCardUID and the signature with Read_Sig (91 90) in FULL mode', async () => {
    const signature = new Uint8Array(56).fill(0x5a);
    const picc = virtualPicc(table14Session(), {
      0x51: { headerLength: 0, mode: 'full', reply: () => fromHex('04DE5F1EACC040') },
      0x3c: { headerLength: 1, mode: 'full', rc: 0x90, reply: () => signature },
    });
    const secure = new SecureChannel(new ApduChannel(picc.exchange), table14Session());
    expect(toHex(await getCardUid(secure))).toBe('04de5f1eacc040');
    expect(toHex(await readSignature(secure))).toBe(toHex(signature));
    expect(secure.session.cmdCtr).toBe(2);
  });

  it('fails with PROTOCOL_ERROR on a GetCardUID answer of the wrong length and on bad padding', async () => {
    const picc = virtualPicc(table14Session(), {
      0x51: { headerLength: 0, mode: 'full', reply: () => fromHex('04DE5F1EACC0') },
    });
    await expect(getCardUid(new SecureChannel(new ApduChannel(picc.exchange), table14Session()))).rejects.toMatchObject(
      {
        code: ErrorCode.ProtocolError,
      },
    );
    // A correctly MACed answer whose plaintext has no 80 00… padding.
    const session = table14Session();
    const cipher = session.encCipher.encryptCbc(new Uint8Array(16), responseIv(session.encKey, session.ti, 0));
    const mac = computeMact(session.macKey, responseMacInput(0, 0, session.ti, cipher));
    const card = scriptedCard([
      [
        `9051000008${toHex(computeMact(session.macKey, commandMacInput(0x51, 0, session.ti, new Uint8Array(), new Uint8Array())))}00`,
        `${toHex(cipher)}${toHex(mac)}9100`,
      ],
    ]);
    await expect(getCardUid(new SecureChannel(card.channel, session))).rejects.toMatchObject({
      code: ErrorCode.ProtocolError,
    });
    expect(session.usable).toBe(false);
  });

  it('refuses MAC and FULL commands over an unauthenticated channel', async () => {
    const card = scriptedCard([]);
    await expect(readData(card.channel, { fileNo: 2, mode: 'full' })).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
    });
    expect(card.sent).toEqual([]);
  });

  it('round-trips random FULL and MAC reads, and any flipped answer bit fails with INTEGRITY_ERROR (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.uint8Array({ minLength: 4, maxLength: 4 }),
        fc.integer({ min: 0, max: 0xfffe }),
        fc.uint8Array({ minLength: 1, maxLength: 300 }),
        fc.constantFrom<CommMode>('mac', 'full'),
        fc.nat(),
        async (enc, mac, ti, cmdCtr, file, mode, flip) => {
          const make = () =>
            new Ev2Session({
              keyNo: 0,
              ti,
              keys: { enc, mac },
              pdCap2: new Uint8Array(6),
              pcdCap2: new Uint8Array(6),
              cmdCtr,
            });
          const handlers = { 0xad: { headerLength: 7, mode, reply: () => file } };
          const good = virtualPicc(make(), handlers, { frame: 61 });
          const secure = new SecureChannel(new ApduChannel(good.exchange), make());
          expect(toHex(await readData(secure, { fileNo: 3, length: file.length, mode }))).toBe(toHex(file));
          expect(secure.session.cmdCtr).toBe(cmdCtr + 1);
          const tampered = virtualPicc(make(), handlers, {
            frame: 61,
            tamper: (answer) => {
              const out = Uint8Array.from(answer);
              const bit = flip % (out.length * 8);
              out[bit >>> 3]! ^= 1 << (bit & 7);
              return out;
            },
          });
          const victim = new SecureChannel(new ApduChannel(tampered.exchange), make());
          const error: unknown = await readData(victim, { fileNo: 3, length: file.length, mode }).catch(
            (e: unknown) => e,
          );
          expect(isTaplineError(error) && error.code).toBe(ErrorCode.IntegrityError);
          expect(victim.session.usable).toBe(false);
        },
      ),
      { numRuns: 100 },
    );
  });
});
