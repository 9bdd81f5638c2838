import { describe, expect, it } from 'vitest';
import {
  ApduChannel,
  AesKey,
  SECP224R1,
  SecureChannel,
  authenticateEv2First,
  commandMacInput,
  computeMact,
  concatBytes,
  encodeApdu,
  fromHex,
  getCardUid,
  getFileSettings,
  getVersion,
  parseContactlessAtr,
  readData,
  readSignature,
  rotateLeft,
  selectNdefApplication,
  verifyEcdsaRaw,
  verifyOriginalitySignature,
  verifySun,
} from '@tapline/core';
import {
  SPARK2_SIGNATURE_KEY,
  Spark2KeyNo,
  createSpark2Chip,
  fixturePublicKey,
  seededRandom,
  spark2FixtureKeys,
  spark2Model,
} from '../src/index.js';
import { directExchange, hex, readerExchange, run, scriptedRandom, tapInSimulator } from './chips-support.js';

const ISO = 'iso14443-4' as const;
const SELECT_NDEF_APP = '00A4040C07D276000085010100';
const SELECT_NDEF_FILE = '00A4000C02E104';

function native(ins: number, data?: Uint8Array): string {
  return hex(
    encodeApdu(data ? { cla: 0x90, ins, p1: 0, p2: 0, data, le: 256 } : { cla: 0x90, ins, p1: 0, p2: 0, le: 256 }),
  );
}

/** Reads the NDEF file the way a phone does (NLEN, then the message) and returns the URI text after the prefix. */
function readSunUrl(model: ReturnType<typeof spark2Model>, state: ReturnType<typeof spark2Model>['initialState']) {
  const nlen = run(model, [SELECT_NDEF_FILE, '00B0000002'], ISO, state);
  expect(nlen.answers[0]).toBe('9000');
  const length = parseInt(nlen.answers[1]!.slice(0, 4), 16);
  const body = run(model, [`00B00002${length.toString(16).padStart(2, '0')}`], ISO, nlen.state);
  const message = fromHex(body.answers[0]!.slice(0, -4));
  expect(body.answers[0]!.slice(-4)).toBe('9000');
  expect(hex(message.subarray(0, 5))).toBe(`D101${(length - 4).toString(16).toUpperCase().padStart(2, '0')}5504`);
  return { url: `https://${Buffer.from(message.subarray(5)).toString('ascii')}`, state: body.state };
}

describe('Spark 2 (NTAG 424 DNA) through its pure respond', () => {
  it('reports the NTAG 424 DNA reader data: ATS 06 77 77 71 02 80, SAK 20, ATQA 44 03, ATR 3B 81 80 01 80 80', () => {
    const { info } = spark2Model();
    expect(hex(info.atr!)).toBe('3B8180018080');
    expect(hex(info.ats!)).toBe('7777710280');
    expect(info.sak).toBe(0x20);
    expect(hex(info.atqa!)).toBe('4403');
    expect(parseContactlessAtr(info.atr!)).toMatchObject({ kind: 'iso14443-4', checksumValid: true });
  });

  it('answers GetVersion in three frames with the genuine NTAG 424 DNA bytes', () => {
    const model = spark2Model({ uid: fromHex('04517CA23B6E80') });
    const { answers } = run(model, ['9060000000', '90AF000000', '90AF000000'], ISO);
    expect(answers).toEqual(['0404023000110591AF', '0404020102110591AF', '04517CA23B6E801D3C7A400026219100']);
  });

  it('the NTAG 413 variant reports hardware major 0x10, and core identifies each model', async () => {
    const version413 = await getVersion(new ApduChannel(directExchange(createSpark2Chip({ model: 'ntag413' }), ISO)));
    expect(hex(version413.hardware.raw)).toBe('04040210000F05');
    expect(version413.model).toBe('ntag413dna');
    const version424 = await getVersion(new ApduChannel(directExchange(createSpark2Chip(), ISO)));
    expect(version424.model).toBe('ntag424dna');
    expect(version424.production.week).toBe(26);
  });

  it('refuses a bare native 60 with 67 00 (ISO mode), an unknown native command with 91 1C, another CLA with 6E 00', () => {
    const { answers } = run(spark2Model(), ['60', '9042000000', '80CA9F7F00', '00CA9F7F00'], ISO);
    expect(answers).toEqual(['6700', '911C', '6E00', '6D00']);
  });

  it('stays silent to raw ISO 14443-3 frames', () => {
    expect(run(spark2Model(), ['3000', '60'], 'iso14443a-raw').answers).toEqual([null, null]);
  });

  it('selects the NDEF application and its files, and refuses files outside it', () => {
    const { answers } = run(
      spark2Model(),
      [
        SELECT_NDEF_FILE,
        '00A4040C07D276000085010200',
        SELECT_NDEF_APP,
        '00A4000C02E103',
        '00B000000F',
        SELECT_NDEF_FILE,
      ],
      ISO,
    );
    expect(answers).toEqual(['6A82', '6A82', '9000', '9000', '001720010000FF0406E104010000FF9000', '9000']);
  });

  it('SELECT + READ of the NDEF file: the SUN counter rises by one per read and every MAC verifies under key 1', () => {
    const model = spark2Model();
    let state = run(model, [SELECT_NDEF_APP], ISO).state;
    const keys = spark2FixtureKeys();
    const seen: number[] = [];
    for (let read = 0; read < 3; read++) {
      const result = readSunUrl(model, state);
      state = result.state;
      const match = /^https:\/\/vivokey\.co\/[0-9a-f]{32}\/\?sun=([0-9A-F]{14})-([0-9A-F]{6})-([0-9A-F]{16})$/.exec(
        result.url,
      );
      expect(match, result.url).not.toBeNull();
      expect(match![1]).toBe(hex(model.info.uid));
      const verdict = verifySun(result.url, { key: keys[Spark2KeyNo.SdmFileRead]! });
      expect(verdict).toMatchObject({ valid: true, mode: 'sdm-plain' });
      seen.push(verdict.counter);
      expect(verifySun(result.url, { key: keys[Spark2KeyNo.Platform]! }).valid).toBe(false);
    }
    expect(seen).toEqual([1, 2, 3]);
    expect(state.sdmReadCtr).toBe(3);
  });

  it('mirrors the AN12196 SUN vector byte for byte (UID 04DE5F1EACC040, counter 61, zero key)', () => {
    const zero = new Uint8Array(16);
    const model = spark2Model({ uid: fromHex('04DE5F1EACC040'), keys: [zero, zero, zero, zero, zero], sunCounter: 60 });
    const { url } = readSunUrl(model, run(model, [SELECT_NDEF_APP], ISO).state);
    expect(url.endsWith('?sun=04DE5F1EACC040-00003D-94EED9EE65337086')).toBe(true);
  });

  it('reproduces the AN12196 AuthenticateEV2First transcript byte for byte', () => {
    const zero = new Uint8Array(16);
    const model = spark2Model({
      keys: [zero, zero, zero, zero, zero],
      random: scriptedRandom('B9E2FC789B64BF237CCCAA20EC7E6E48', '9D00C4DF'),
    });
    const { answers, state } = run(
      model,
      [
        SELECT_NDEF_APP,
        '9071000002000000',
        '90AF00002035C3E05A752E0144BAC0DE51C1F22C56B34408A23D8AEA266CAB947EA8E0118D00',
      ],
      ISO,
    );
    expect(answers).toEqual([
      '9000',
      'A04C124213C186F22399D33AC2A3021591AF',
      '3FA64DB5446D1F34CD6EA311167F5E4985B89690C04A05F17FA7AB2F081206639100',
    ]);
    // The session keys are AN12196's: a GetCardUID MACed with its SesAuthMACKey is accepted.
    const mac = computeMact(
      fromHex('4C6626F5E72EA694202139295C7A7FC7'),
      commandMacInput(0x51, 0, fromHex('9D00C4DF'), new Uint8Array(), new Uint8Array()),
    );
    const uid = run(model, [native(0x51, mac)], ISO, state);
    expect(uid.answers[0]!.slice(-4)).toBe('9100');
    expect(uid.answers[0]!.length).toBe((16 + 8 + 2) * 2);
  });

  it('AuthenticateEV2First with a PCD built from core primitives: key 2 succeeds, a wrong key gets 91 AE', () => {
    const model = spark2Model({ random: seededRandom('spark2-auth') });
    const key = new AesKey(spark2FixtureKeys()[Spark2KeyNo.Platform]!);
    const selected = run(model, [SELECT_NDEF_APP], ISO).state;

    const part1 = run(model, ['9071000002020000'], ISO, selected);
    expect(part1.answers[0]!.slice(-4)).toBe('91AF');
    const rndB = key.decryptCbc(fromHex(part1.answers[0]!.slice(0, 32)));
    const rndA = fromHex('000102030405060708090A0B0C0D0E0F');
    const part2 = run(model, [native(0xaf, key.encryptCbc(concatBytes(rndA, rotateLeft(rndB))))], ISO, part1.state);
    expect(part2.answers[0]!.slice(-4)).toBe('9100');
    const plain = key.decryptCbc(fromHex(part2.answers[0]!.slice(0, 64)));
    expect(hex(plain.subarray(4, 20))).toBe(hex(rotateLeft(rndA)));
    expect(hex(plain.subarray(20))).toBe('000000000000000000000000');
    expect(part2.state.auth).toMatchObject({ phase: 'authenticated', session: { keyNo: 2, cmdCtr: 0 } });

    const wrong = new AesKey(spark2FixtureKeys()[Spark2KeyNo.AppMaster]!);
    const wrongPart1 = run(model, ['9071000002020000'], ISO, selected);
    const wrongRndB = wrong.decryptCbc(fromHex(wrongPart1.answers[0]!.slice(0, 32)));
    const refused = run(
      model,
      [native(0xaf, wrong.encryptCbc(concatBytes(rndA, rotateLeft(wrongRndB))))],
      ISO,
      wrongPart1.state,
    );
    expect(refused.answers).toEqual(['91AE']);
    expect(refused.state.auth.phase).toBe('idle');
  });

  it('answers 91 7E to wrong lengths, 91 40 to an unknown key, 91 AE to GetCardUID without authentication', () => {
    const model = spark2Model();
    const selected = run(model, [SELECT_NDEF_APP], ISO).state;
    expect(run(model, ['90710000010200'], ISO, selected).answers).toEqual(['917E']);
    expect(run(model, ['9071000002070000'], ISO, selected).answers).toEqual(['9140']);
    expect(
      run(model, ['9071000002020000', '90AF0000100102030405060708090A0B0C0D0E0F1000'], ISO, selected).answers[1],
    ).toBe('917E');
    // An extended-length APDU, as some readers send: the chip takes short APDUs only.
    expect(run(model, ['9071000000000202000000'], ISO, selected).answers).toEqual(['917E']);
    expect(run(model, ['9051000000'], ISO, selected).answers).toEqual(['91AE']);
    // Before SELECT there is no application key to authenticate with.
    expect(run(model, ['9071000002020000'], ISO).answers).toEqual(['9140']);
  });

  it("serves core's reader side: AuthenticateEV2First, GetCardUID (FULL), ReadData (MAC, FULL), Read_Sig (FULL), GetFileSettings (MAC)", async () => {
    const chip = createSpark2Chip({ random: seededRandom('interop') });
    const channel = new ApduChannel(directExchange(chip, ISO));
    await selectNdefApplication(channel);
    const session = await authenticateEv2First(channel, { keyNo: 2, key: spark2FixtureKeys()[2]! });
    const secure = new SecureChannel(channel, session);

    expect(hex(await getCardUid(secure))).toBe(hex(chip.info.uid));
    const ndef = await readData(secure, { fileNo: 2, mode: 'mac' });
    expect(ndef.length).toBe(256);
    // Authenticated reads see the stored template: no mirroring, and the counter does not move.
    expect(Buffer.from(ndef).toString('latin1')).toContain('?sun=00000000000000-000000-0000000000000000');
    const proprietary = await readData(secure, { fileNo: 3, offset: 0, length: 23, mode: 'full' });
    expect(Buffer.from(proprietary).toString('ascii')).toBe('Tapline fixture Spark 2');
    const plainSignature = await readSignature(new ApduChannel(directExchange(createSpark2Chip(), ISO)));
    expect(hex(await readSignature(secure))).toBe(hex(plainSignature));
    const settings = await getFileSettings(secure, 2);
    expect(settings).toMatchObject({ commMode: 'mac', sdmEnabled: true, fileSize: 256 });
    expect(settings.accessRights.read).toBe(0xe);
    expect(hex(settings.sdm.subarray(0, 3))).toBe('C1FFE1');
    expect(session.cmdCtr).toBe(5);
    expect(chip.state.auth).toMatchObject({ phase: 'authenticated', session: { cmdCtr: 5 } });
    expect(chip.state.sdmReadCtr).toBe(0);
  });

  it('a command with a wrong MAC gets 91 1E and ends the session; a key without read access gets 91 9D', async () => {
    const model = spark2Model({ random: seededRandom('wrong-mac') });
    const chip = createSpark2Chip({ random: seededRandom('wrong-mac') });
    const channel = new ApduChannel(directExchange(chip, ISO));
    await selectNdefApplication(channel);
    await authenticateEv2First(channel, { keyNo: 2, key: spark2FixtureKeys()[2]! });
    const refused = run(model, [native(0x51, new Uint8Array(8))], ISO, chip.state);
    expect(refused.answers).toEqual(['911E']);
    expect(refused.state.auth.phase).toBe('idle');

    // File 3 is read with key 2 (read) or 3 (read-write); key 1, the SDM key, has no access.
    const other = createSpark2Chip({ random: seededRandom('key-1') });
    const channel1 = new ApduChannel(directExchange(other, ISO));
    await selectNdefApplication(channel1);
    const session1 = await authenticateEv2First(channel1, { keyNo: 1, key: spark2FixtureKeys()[1]! });
    await expect(readData(new SecureChannel(channel1, session1), { fileNo: 3, mode: 'full' })).rejects.toMatchObject({
      details: { sw: '919d' },
    });
    expect(other.state.auth.phase).toBe('idle');
  });

  it('Read_Sig answers 56 bytes and 91 90; the signature verifies over the raw UID under the fixture key only', () => {
    const model = spark2Model({ model: 'ntag413' });
    const { answers } = run(model, ['903C0000010000'], ISO);
    expect(answers[0]!.slice(-4)).toBe('9190');
    const signature = fromHex(answers[0]!.slice(0, -4));
    expect(signature.length).toBe(56);
    expect(
      verifyEcdsaRaw({
        curve: SECP224R1,
        publicKey: fixturePublicKey(SPARK2_SIGNATURE_KEY),
        message: model.info.uid,
        signature,
      }),
    ).toBe(true);
    expect(verifyOriginalitySignature({ uid: model.info.uid, signature }).valid).toBe(false);
    expect(run(model, ['903C0000010100', '903C000000'], ISO).answers).toEqual(['919E', '917E']);
  });

  it('SELECT ends the authentication; power-up drops the session and keeps the SUN counter', () => {
    const chip = createSpark2Chip({ random: seededRandom('select') });
    chip.handle(ISO, fromHex(SELECT_NDEF_APP));
    chip.handle(ISO, fromHex(SELECT_NDEF_FILE));
    chip.handle(ISO, fromHex('00B0000002'));
    chip.handle(ISO, fromHex('9071000002020000'));
    expect(chip.state.auth.phase).toBe('challenged');
    chip.handle(ISO, fromHex(SELECT_NDEF_APP));
    expect(chip.state.auth.phase).toBe('idle');
    chip.powerUp();
    expect(chip.state).toMatchObject({ level: 'picc', file: undefined, sdmReadCtr: 1, auth: { phase: 'idle' } });
  });

  it('never mutates the state it is given', () => {
    const model = spark2Model({ random: seededRandom('pure') });
    const start = model.initialState;
    const snapshot = JSON.stringify(start);
    const a = run(model, [SELECT_NDEF_APP, SELECT_NDEF_FILE, '00B0000002'], ISO, start);
    const b = run(model, [SELECT_NDEF_APP, SELECT_NDEF_FILE, '00B0000002'], ISO, start);
    expect(JSON.stringify(start)).toBe(snapshot);
    expect(a.answers).toEqual(b.answers);
  });
});

describe('Spark 2 through the simulator', () => {
  it('answers GetVersion, shows a rising SUN counter and authenticates, over a simulated reader', async () => {
    const chip = createSpark2Chip({ random: seededRandom('sim') });
    const tag = await tapInSimulator(chip);
    expect(hex(tag.uid)).toBe(hex(chip.info.uid));
    expect(hex(tag.atr!)).toBe('3B8180018080');
    const channel = new ApduChannel(readerExchange(tag, ISO));
    expect((await getVersion(channel)).model).toBe('ntag424dna');
    await selectNdefApplication(channel);
    const counters: string[] = [];
    for (let i = 0; i < 2; i++) {
      await channel.send({ cla: 0, ins: 0xa4, p1: 0, p2: 0x0c, data: fromHex('E104') });
      const body = await channel.send({ cla: 0, ins: 0xb0, p1: 0, p2: 0, le: 256 });
      counters.push(/sun=[0-9A-F]{14}-([0-9A-F]{6})-/.exec(Buffer.from(body).toString('latin1'))![1]!);
    }
    expect(counters).toEqual(['000001', '000002']);
    const session = await authenticateEv2First(channel, { keyNo: 2, key: spark2FixtureKeys()[2]! });
    expect(hex(await getCardUid(new SecureChannel(channel, session)))).toBe(hex(chip.info.uid));
    await expect(authenticateEv2First(channel, { keyNo: 2, key: spark2FixtureKeys()[0]! })).rejects.toMatchObject({
      code: 'AUTHENTICATION_FAILED',
    });
  });
});
