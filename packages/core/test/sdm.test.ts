import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AesKey,
  aesCmac,
  computeApexSignature,
  computeSdmMac,
  concatBytes,
  createCounterGuard,
  createSunVerifier,
  decryptPiccData,
  decryptSdmFileData,
  deriveSdmSessionKeys,
  encryptPiccData,
  encryptSdmFileData,
  fromHex,
  parseSunMessage,
  sdmFileDataMacInput,
  sdmSessionVector,
  toHex,
  verifySun,
  type CounterStore,
  type SunMessage,
  type SunResult,
} from '../src/index.js';

const ZERO_KEY = new Uint8Array(16);
const upper = (bytes: Uint8Array): string => toHex(bytes).toUpperCase();
const ascii = (text: string): Uint8Array => Uint8Array.from(Buffer.from(text, 'ascii'));
const invalidArgument = (message?: RegExp): unknown =>
  expect.objectContaining({
    code: 'INVALID_ARGUMENT',
    ...(message ? { message: expect.stringMatching(message) } : {}),
  });

describe('AN12196 vectors', () => {
  const url = 'https://ntag.nxp.com/424?e=EF963FF7828658A599F3041510671E88&c=94EED9EE65337086';

  it('Table 2-4: decrypts PICCData, derives SV2 and the session MAC key, and verifies MACt', () => {
    const e = fromHex('EF963FF7828658A599F3041510671E88');
    expect(upper(new AesKey(ZERO_KEY).decryptCbc(e))).toBe('C704DE5F1EACC0403D0000DA5CF60941');
    const picc = decryptPiccData(ZERO_KEY, e);
    expect(picc).toEqual({ tag: 0xc7, uid: fromHex('04DE5F1EACC040'), counter: 61 });

    const uid = fromHex('04DE5F1EACC040');
    expect(upper(sdmSessionVector('mac', uid, 61))).toBe('3CC30001008004DE5F1EACC0403D0000');
    expect(upper(deriveSdmSessionKeys(ZERO_KEY, uid, 61).mac)).toBe('3FB5F6E3A807A03D5E3570ACE393776F');
    expect(upper(computeSdmMac({ fileReadKey: ZERO_KEY, uid, counter: 61 }))).toBe('94EED9EE65337086');

    const result = verifySun(url, { key: ZERO_KEY });
    expect(result).toEqual({ valid: true, uid, counter: 61, mode: 'sdm-encrypted' });
  });

  it('Table 1: SV1 and SV2 CMACs under 5ACE7E50AB65D5D51FD5BF5A16B8205B', () => {
    const key = fromHex('5ACE7E50AB65D5D51FD5BF5A16B8205B');
    const uid = fromHex('04C767F2066180');
    expect(upper(sdmSessionVector('enc', uid, 1))).toBe('C33C0001008004C767F2066180010000');
    expect(upper(sdmSessionVector('mac', uid, 1))).toBe('3CC30001008004C767F2066180010000');
    const keys = deriveSdmSessionKeys(key, uid, 1);
    expect(upper(keys.enc)).toBe('66DA61797E23DECA5D8ECA13BBADF7A9');
    expect(upper(keys.mac)).toBe('3A3E8110E05311F7A3FCF0D969BF2B48');
  });

  it('a flipped bit anywhere in e= or c= fails without an exception', () => {
    const verifier = createSunVerifier({ key: ZERO_KEY });
    const message = parseSunMessage(url);
    if (message.mode !== 'sdm-encrypted') throw new Error('expected sdm-encrypted');
    for (const field of ['piccData', 'mac'] as const) {
      for (let bit = 0; bit < message[field].length * 8; bit++) {
        const flipped = message[field].slice();
        flipped[bit >> 3]! ^= 1 << (bit & 7);
        const result = verifier.verify({ ...message, [field]: flipped });
        expect(result.valid).toBe(false);
        expect(['bad-mac', 'bad-picc-data']).toContain(result.reason);
      }
    }
  });

  it('a wrong meta-read key gives bad-picc-data, with no UID or counter', () => {
    const result = verifySun(url, { key: ZERO_KEY, metaKey: fromHex('00000000000000000000000000000001') });
    expect(result).toEqual({
      valid: false,
      uid: new Uint8Array(),
      counter: -1,
      mode: 'sdm-encrypted',
      reason: 'bad-picc-data',
    });
  });
});

// nfc-developer/sdm-backend tests/test_libsdm.py (the first from AN12196 p. 18): encrypted file data, MAC input
// variants, and the plain mirror.
describe('sdm-backend vectors', () => {
  it('picc_data + enc + cmac: the MAC covers "<ENC>&cmac=" and the file data decrypts', () => {
    const url =
      'https://www.my424dna.com/?picc_data=FD91EC264309878BE6345CBE53BADF40&enc=CEE9A53E3E463EF1F459635736738962&cmac=ECC1E7F6C6C73BF6';
    const message = parseSunMessage(url);
    expect(message).toMatchObject({ mode: 'sdm-encrypted', macInput: ascii('CEE9A53E3E463EF1F459635736738962&cmac=') });
    const result = verifySun(message, { key: ZERO_KEY });
    expect(result).toMatchObject({ valid: true, uid: fromHex('04958CAA5C5E80'), counter: 8 });
    expect(Buffer.from(result.fileData!).toString('latin1')).toBe('xxxxxxxxxxxxxxxx');

    const wrong = url.replace('ECC1E7F6C6C73BF6', '3CC1E7F6C6C33B33');
    expect(verifySun(wrong, { key: ZERO_KEY })).toMatchObject({ valid: false, reason: 'bad-mac' });
    expect(verifySun(wrong, { key: ZERO_KEY }).fileData).toBeUndefined();
  });

  it('separate meta and file keys, MAC over the file data alone (no "&cmac=")', () => {
    const encFileData = fromHex('B8436E11F627BB7F543FCC0C1E0D1A89');
    const message: SunMessage = {
      mode: 'sdm-encrypted',
      piccData: fromHex('8ACADDEF0A9B62CDAE39A16B83FC14DE'),
      mac: fromHex('238B2543A8DEBAD8'),
      encFileData,
      macInput: sdmFileDataMacInput(encFileData, ''),
    };
    const keys = {
      key: fromHex('b62a9baf092439bd43c62aee96b970c5'),
      metaKey: fromHex('42aff114f2cb3b6141be6dc95dfc5416'),
    };
    const result = verifySun(message, keys);
    expect(result).toMatchObject({ valid: true, uid: fromHex('041d3c8a2d6b80'), counter: 291 });
    expect(toHex(result.fileData!)).toBe('4e545858716e6f5f6f42467077792d56');
    // With "&cmac=" after the data (the default layout) the same MAC does not verify.
    expect(verifySun({ ...message, macInput: sdmFileDataMacInput(encFileData) }, keys).valid).toBe(false);
  });

  it('plain UID and counter mirror, as URL parameters and as a bare UID-CTR-MAC', () => {
    const uid = fromHex('041E3C8A2D6B80');
    const expected: SunResult = { valid: true, uid, counter: 6, mode: 'sdm-plain' };
    expect(verifySun('https://x.test/?uid=041E3C8A2D6B80&ctr=000006&cmac=4B00064004B0B3D3', { key: ZERO_KEY })).toEqual(
      expected,
    );
    expect(verifySun('041E3C8A2D6B80-000006-4B00064004B0B3D3', { key: ZERO_KEY })).toEqual(expected);
    expect(verifySun('https://vivokey.co/x/?sun=041E3C8A2D6B80-000006-4B00064004B0B3D3', { key: ZERO_KEY })).toEqual(
      expected,
    );
    expect(verifySun('041E3C8A2D6B80-000006-AB00064004B0B3AB', { key: ZERO_KEY })).toEqual({
      ...expected,
      valid: false,
      reason: 'bad-mac',
    });
  });
});

describe('VivoKey forms', () => {
  it('reads sun=UID-CTR-MAC with the counter as big-endian text, laid out little-endian in SV2', () => {
    const message = parseSunMessage(
      'https://vivokey.co/3c8d418757dcce5459f5b8576a5fb652/?sun=042468222F5C80-00003C-AE4F60A1AF728AB4',
    );
    expect(message).toEqual({
      mode: 'sdm-plain',
      uid: fromHex('042468222F5C80'),
      counter: 60,
      mac: fromHex('AE4F60A1AF728AB4'),
    });
    expect(upper(sdmSessionVector('mac', fromHex('042468222F5C80'), 60))).toBe('3CC300010080042468222F5C803C0000');
    // VivoKey's key is not public: a zero key must simply not verify.
    expect(verifySun(message, { key: ZERO_KEY })).toMatchObject({ valid: false, reason: 'bad-mac', counter: 60 });
  });

  it('reads the Apex NDEF s=UID-CTR-CMAC form, and needs a salt to verify it', () => {
    const url = 'https://vivokey.com/demo/sigtest/?s=FF0A01128731FBB6-000005-E92AB4B81AAA1FEAB2C4D2AF4665AD19';
    const message = parseSunMessage(url);
    expect(message).toEqual({
      mode: 'apex-cmac',
      uid: fromHex('FF0A01128731FBB6'),
      counter: 5,
      signature: fromHex('E92AB4B81AAA1FEAB2C4D2AF4665AD19'),
    });
    expect(parseSunMessage('FF0A01128731FBB6-000005-E92AB4B81AAA1FEAB2C4D2AF4665AD19')).toEqual(message);
    expect(() => verifySun(url, { key: ZERO_KEY })).toThrow(invalidArgument(/salt/));
    expect(verifySun(url, { key: ZERO_KEY, salt: new Uint8Array(16) })).toMatchObject({
      valid: false,
      reason: 'bad-mac',
      mode: 'apex-cmac',
    });
  });

  it('Apex signature = AES-CMAC(salt ‖ UID ‖ counter big-endian), 16 bytes, CMAC padding only', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.uint8Array({ minLength: 7, maxLength: 8 }),
        fc.integer({ min: 0, max: 0xffffff }),
        (key, salt, uid, counter) => {
          const ctr = Uint8Array.of(counter >>> 16, (counter >>> 8) & 0xff, counter & 0xff);
          const signature = computeApexSignature({ key, salt, uid, counter });
          expect(toHex(signature)).toBe(toHex(aesCmac(key, concatBytes(salt, uid, ctr))));
          const text = `https://x.test/?s=${upper(uid)}-${upper(ctr)}-${upper(signature)}`;
          expect(verifySun(text, { key, salt })).toEqual({ valid: true, uid, counter, mode: 'apex-cmac' });
          const flipped = signature.slice();
          flipped[counter % 16]! ^= 1 << (counter % 8);
          expect(verifySun({ mode: 'apex-cmac', uid, counter, signature: flipped }, { key, salt }).valid).toBe(false);
        },
      ),
      { numRuns: 50 },
    );
  });
});

describe('malformed input is INVALID_ARGUMENT saying what is wrong', () => {
  it.each([
    ['not a URL', 'hello', /SUN URL/],
    [
      'bad hex in e=',
      'https://x.test/?e=EF963FF7828658A599F3041510671EXX&c=94EED9EE65337086',
      /hex digits only; found "X"/,
    ],
    ['short e=', 'https://x.test/?e=EF963FF7828658A599F30415&c=94EED9EE65337086', /32 hex digits .* got 24/],
    [
      'LRP PICCData',
      'https://x.test/?picc_data=1FCBE61B3E4CAD980CBFDD333E7A4AC4A579569BAFD22C5F&cmac=4231608BA7B02BA9',
      /LRP/,
    ],
    ['missing MAC', 'https://x.test/?e=EF963FF7828658A599F3041510671E88', /no MAC/],
    ['short MAC', 'https://x.test/?e=EF963FF7828658A599F3041510671E88&c=94EED9', /16 hex digits/],
    ['missing ctr', 'https://x.test/?uid=041E3C8A2D6B80&cmac=4B00064004B0B3D3', /no counter/],
    ['6-byte UID', 'https://x.test/?uid=041E3C8A2D6B&ctr=000006&cmac=4B00064004B0B3D3', /14 hex digits/],
    ['4-digit counter', '041E3C8A2D6B80-0006-4B00064004B0B3D3', /counter .* 6 hex digits/],
    ['odd MAC length', '041E3C8A2D6B80-000006-4B00064004B0B3', /16 hex digits .* or 32/],
    ['bad sun=', 'https://vivokey.co/x/?sun=042468222F5C80', /UID-CTR-MAC/],
    ['Apex UID of 6 bytes', 'https://x.test/?s=FF0A01128731-000005-E92AB4B81AAA1FEAB2C4D2AF4665AD19', /7 or 8 bytes/],
    ['duplicate parameter', 'https://x.test/?e=00&e=00&c=00', /twice/],
    ['two forms', 'https://x.test/?e=00&sun=00-00-00&c=00', /mixes SUN forms/],
    ['two names for one role', 'https://x.test/?e=00&picc_data=00&c=00', /both "e=" and "picc_data="/],
    [
      'enc= not whole blocks',
      'https://x.test/?e=EF963FF7828658A599F3041510671E88&enc=CEE9&c=94EED9EE65337086',
      /multiple of 32/,
    ],
    ['no SUN parameters', 'https://x.test/?a=1&b=2', /no SUN parameters \(found: "a", "b"\)/],
  ])('%s', (_name, input, message) => {
    expect(() => parseSunMessage(input)).toThrow(invalidArgument(message));
    expect(() => verifySun(input, { key: ZERO_KEY })).toThrow(invalidArgument());
  });

  it('rejects a MAC input start that is missing, after the MAC, or given for a bare triple', () => {
    const url = 'https://x.test/?e=EF963FF7828658A599F3041510671E88&c=94EED9EE65337086&z=1';
    expect(() => parseSunMessage(url, { macInputFrom: 'nope' })).toThrow(invalidArgument(/no such parameter/));
    expect(() => parseSunMessage(url, { macInputFrom: 'z' })).toThrow(invalidArgument(/after the MAC/));
    expect(() => parseSunMessage('041E3C8A2D6B80-000006-4B00064004B0B3D3', { macInputFrom: 'e' })).toThrow(
      invalidArgument(/URLs only/),
    );
  });

  it('names a wrong-length key without printing it', () => {
    const key = fromHex('5ACE7E50AB65D5D51FD5BF5A16B820');
    let caught: unknown;
    try {
      createSunVerifier({ key });
    } catch (error) {
      caught = error;
    }
    expect(caught).toEqual(invalidArgument(/SUN key .* 16 bytes .* got 15 bytes/));
    expect(JSON.stringify(caught) + String(caught)).not.toMatch(/5ace7e50/i);
    expect(() => createSunVerifier({ key: ZERO_KEY, metaKey: new Uint8Array(8) })).toThrow(
      invalidArgument(/meta-read/),
    );
  });

  it('accepts custom parameter names and a query string without a URL', () => {
    const message = parseSunMessage('?x=EF963FF7828658A599F3041510671E88&m=94EED9EE65337086', {
      paramNames: { piccData: ['x'], mac: ['m'] },
    });
    expect(verifySun(message, { key: ZERO_KEY }).valid).toBe(true);
  });
});

describe('self-consistency (fast-check): messages built with these functions verify, any flipped bit fails', () => {
  type Layout = 'plain' | 'encrypted';
  type MacInputVariant = 'empty' | 'file-data' | 'from-start';

  interface Built {
    readonly url: string;
    readonly macInputFrom?: string;
    readonly coversFileData: boolean;
  }

  /** Builds the URL a chip would print, with the MAC over the DynamicData the variant selects. */
  function build(
    layout: Layout,
    variant: MacInputVariant,
    keys: { file: Uint8Array; meta: Uint8Array },
    uid: Uint8Array,
    counter: number,
    fileData: Uint8Array | undefined,
    padding: Uint8Array,
  ): Built {
    const first =
      layout === 'encrypted'
        ? `e=${upper(encryptPiccData(keys.meta, uid, counter, padding))}`
        : `uid=${upper(uid)}&ctr=${upper(Uint8Array.of(counter >>> 16, (counter >>> 8) & 0xff, counter & 0xff))}`;
    const enc = fileData ? encryptSdmFileData({ fileReadKey: keys.file, uid, counter, data: fileData }) : undefined;
    const body = enc ? `${first}&enc=${upper(enc)}&c=` : `${first}&c=`;
    const firstName = layout === 'encrypted' ? 'e' : 'uid';
    let macInputText = '';
    let macInputFrom: string | undefined;
    if (variant === 'from-start') {
      macInputText = body.slice(body.indexOf('=') + 1);
      macInputFrom = firstName;
    } else if (variant === 'file-data' && enc) {
      macInputText = `${upper(enc)}&c=`;
    } else if (enc) {
      // MAC input empty although there is file data: SDMMACInputOffset = SDMMACOffset.
      macInputFrom = 'c';
    }
    const mac = computeSdmMac({ fileReadKey: keys.file, uid, counter, macInput: ascii(macInputText) });
    return {
      url: `https://sdm.example/t?${body}${upper(mac)}`,
      ...(macInputFrom ? { macInputFrom } : {}),
      coversFileData: macInputText.includes('&c='),
    };
  }

  const key = fc.uint8Array({ minLength: 16, maxLength: 16 });
  const arbitraries = [
    fc.constantFrom<Layout>('plain', 'encrypted'),
    fc.constantFrom<MacInputVariant>('empty', 'file-data', 'from-start'),
    fc.record({ file: key, meta: key }),
    fc.uint8Array({ minLength: 7, maxLength: 7 }),
    fc.integer({ min: 0, max: 0xffffff }),
    fc.option(
      fc.integer({ min: 1, max: 3 }).chain((n) => fc.uint8Array({ minLength: 16 * n, maxLength: 16 * n })),
      { nil: undefined },
    ),
    fc.uint8Array({ minLength: 5, maxLength: 5 }),
    fc.nat(),
  ] as const;

  it('verifies, decrypts the file data, and fails on every kind of flipped bit', () => {
    fc.assert(
      fc.property(...arbitraries, (layout, variant, keys, uid, counter, fileData, padding, pick) => {
        const built = build(layout, variant, keys, uid, counter, fileData, padding);
        const options = built.macInputFrom ? { macInputFrom: built.macInputFrom } : {};
        const verifier = createSunVerifier({ key: keys.file, metaKey: keys.meta }, options);
        const result = verifier.verify(built.url);
        expect(result).toMatchObject({
          valid: true,
          counter,
          mode: layout === 'plain' ? 'sdm-plain' : 'sdm-encrypted',
        });
        expect(toHex(result.uid)).toBe(toHex(uid));
        expect(result.fileData && toHex(result.fileData)).toBe(fileData && toHex(fileData));

        // Flip one bit of one authenticated field of the parsed message.
        const message = parseSunMessage(built.url, options) as Exclude<SunMessage, { mode: 'apex-cmac' }>;
        const fields: string[] = ['mac', message.mode === 'sdm-encrypted' ? 'piccData' : 'uid'];
        if (message.mode === 'sdm-plain') fields.push('counter');
        if (message.macInput && message.macInput.length > 0) fields.push('macInput');
        if (message.encFileData && built.coversFileData) fields.push('encFileData');
        const field = fields[pick % fields.length]!;
        let tampered: SunMessage | string;
        if (field === 'counter' && message.mode === 'sdm-plain') {
          tampered = { ...message, counter: message.counter ^ (1 << (pick % 24)) };
        } else {
          const original = (message as unknown as Record<string, Uint8Array>)[field]!;
          const bytes = original.slice();
          const bit = (pick >>> 3) % (bytes.length * 8);
          bytes[bit >> 3]! ^= 1 << (bit & 7);
          // The file data is authenticated through its text in the MAC input, so alter it where an attacker
          // would: in the URL.
          tampered =
            field === 'encFileData'
              ? built.url.replace(`enc=${upper(original)}`, `enc=${upper(bytes)}`)
              : { ...message, [field]: bytes };
        }
        const bad = verifier.verify(tampered);
        expect(bad.valid).toBe(false);
        expect(bad.fileData).toBeUndefined();
      }),
      { numRuns: 300 },
    );
  });

  it('file data outside the MAC input is not authenticated (why the MAC input should cover it)', () => {
    const keys = { file: fromHex('00112233445566778899AABBCCDDEEFF'), meta: ZERO_KEY };
    const uid = fromHex('04DE5F1EACC040');
    const built = build('encrypted', 'empty', keys, uid, 7, new Uint8Array(16).fill(0x41), new Uint8Array(5));
    const message = parseSunMessage(built.url, { macInputFrom: 'c' });
    if (message.mode !== 'sdm-encrypted') throw new Error('expected sdm-encrypted');
    const altered = message.encFileData!.slice();
    altered[0]! ^= 1;
    const result = verifySun({ ...message, encFileData: altered }, { key: keys.file, metaKey: keys.meta });
    expect(result.valid).toBe(true);
    expect(toHex(result.fileData!)).not.toBe('41'.repeat(16));
  });

  it('the verifier’s SDMMAC matches computeSdmMac (AesKey) for any key, UID, counter and MAC input', () => {
    fc.assert(
      fc.property(
        key,
        fc.uint8Array({ minLength: 7, maxLength: 7 }),
        fc.integer({ min: 0, max: 0xffffff }),
        fc.uint8Array({ maxLength: 80 }),
        (fileReadKey, uid, counter, macInput) => {
          const mac = computeSdmMac({ fileReadKey, uid, counter, macInput });
          const verifier = createSunVerifier({ key: fileReadKey });
          expect(verifier.verifyPlain(uid, counter, mac, macInput).valid).toBe(true);
          expect(verifier.verify({ mode: 'sdm-plain', uid, counter, mac, macInput }).valid).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('file data round-trips through encryptSdmFileData/decryptSdmFileData', () => {
    fc.assert(
      fc.property(
        key,
        fc.uint8Array({ minLength: 7, maxLength: 7 }),
        fc.integer({ min: 0, max: 0xffffff }),
        fc.integer({ min: 1, max: 4 }).chain((n) => fc.uint8Array({ minLength: 16 * n, maxLength: 16 * n })),
        (fileReadKey, uid, counter, data) => {
          const enc = encryptSdmFileData({ fileReadKey, uid, counter, data });
          expect(toHex(decryptSdmFileData({ fileReadKey, uid, counter, data: enc }))).toBe(toHex(data));
        },
      ),
      { numRuns: 50 },
    );
  });
});

describe('createCounterGuard', () => {
  const uid = fromHex('04DE5F1EACC040');
  const ok = (counter: number, extra: Partial<SunResult> = {}): SunResult => ({
    valid: true,
    uid,
    counter,
    mode: 'sdm-plain',
    ...extra,
  });

  it('accepts rising counters and marks equal or lower ones replayed (dropping file data)', async () => {
    const guard = createCounterGuard();
    expect(await guard.check(ok(5))).toEqual(ok(5));
    expect(await guard.check(ok(5, { fileData: new Uint8Array(16) }))).toEqual({
      ...ok(5),
      valid: false,
      reason: 'replayed',
    });
    expect(await guard.check(ok(4))).toMatchObject({ valid: false, reason: 'replayed' });
    expect(await guard.check(ok(6))).toEqual(ok(6));
    // Another UID has its own counter.
    expect((await guard.check({ ...ok(1), uid: fromHex('04000000000001') })).valid).toBe(true);
  });

  it('passes invalid results through without recording their counter', async () => {
    const guard = createCounterGuard();
    const bad: SunResult = { ...ok(9), valid: false, reason: 'bad-mac' };
    expect(await guard.check(bad)).toBe(bad);
    expect((await guard.check(ok(1))).valid).toBe(true);
  });

  it('uses an asynchronous store, keyed by lower-case UID hex, and lets only one of two concurrent checks pass', async () => {
    const data = new Map<string, number>();
    const store: CounterStore = {
      get: async (uidHex) => {
        await new Promise((r) => setTimeout(r, 5));
        return data.get(uidHex);
      },
      set: async (uidHex, counter) => {
        await new Promise((r) => setTimeout(r, 5));
        data.set(uidHex, counter);
      },
    };
    const guard = createCounterGuard(store);
    const results = await Promise.all([guard.check(ok(10)), guard.check(ok(10)), guard.check(ok(11))]);
    expect(results.map((r) => r.valid)).toEqual([true, false, true]);
    expect(data.get('04de5f1eacc040')).toBe(11);
  });
});
