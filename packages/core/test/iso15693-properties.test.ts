import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  ErrorCode,
  appendIso15693Crc,
  buildIso15693GetSystemInformation,
  buildIso15693Inventory,
  buildIso15693ReadMultipleBlocks,
  buildIso15693ReadSignature,
  buildIso15693ReadSingleBlock,
  buildTam1Authenticate,
  checkIso15693Crc,
  formatIso15693Uid,
  isTaplineError,
  iso15693UidFromAir,
  iso15693UidToAir,
  parseIso15693Inventory,
  parseIso15693ReadMultipleBlocks,
  parseIso15693ReadSignature,
  parseIso15693ReadSingleBlock,
  parseIso15693SystemInformation,
  parseIso15693Uid,
  parseTam1Authenticate,
  stripIso15693Crc,
  verifyTam1Response,
} from '../src/index.js';

const anyBytes = fc.uint8Array({ maxLength: 80 });
const uid = fc.uint8Array({ minLength: 8, maxLength: 8 });

/** Either a value or a TaplineError: anything else thrown fails the property. */
function parsesOrTaplineError(run: () => unknown): void {
  try {
    run();
  } catch (error) {
    if (!isTaplineError(error)) throw error;
    expect([
      ErrorCode.ProtocolError,
      ErrorCode.TagStatus,
      ErrorCode.IntegrityError,
      ErrorCode.InvalidArgument,
    ]).toContain(error.code);
  }
}

/** Random bytes, sometimes with a valid CRC so that the parsers behind the CRC check are reached too. */
const replies = fc.oneof(
  anyBytes.map((bytes) => ({ bytes, crc: false })),
  anyBytes.map((bytes) => ({ bytes: appendIso15693Crc(bytes), crc: true })),
  anyBytes.map((bytes) => ({ bytes, crc: true })),
);

describe('parsers on random bytes', () => {
  it('return a result or throw a TaplineError, never anything else', () => {
    fc.assert(
      fc.property(
        replies,
        fc.integer({ min: 0, max: 300 }),
        fc.integer({ min: 0, max: 40 }),
        fc.boolean(),
        ({ bytes, crc }, count, blockSize, withSecurityStatus) => {
          parsesOrTaplineError(() => parseIso15693Inventory(bytes, { crc }));
          parsesOrTaplineError(() => parseIso15693ReadSingleBlock(bytes, { crc, blockSize, withSecurityStatus }));
          parsesOrTaplineError(() => parseIso15693ReadSingleBlock(bytes, { crc }));
          parsesOrTaplineError(() =>
            parseIso15693ReadMultipleBlocks(bytes, count, { crc, blockSize, withSecurityStatus }),
          );
          parsesOrTaplineError(() => parseIso15693SystemInformation(bytes, { crc }));
          parsesOrTaplineError(() => parseIso15693ReadSignature(bytes, { crc }));
          parsesOrTaplineError(() => parseTam1Authenticate(bytes, { crc }));
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('reach the typed results when the shape is right', () => {
    fc.assert(
      fc.property(
        uid,
        fc.integer({ min: 0, max: 0x0f }),
        fc.uint8Array({ minLength: 5, maxLength: 5 }),
        (id, infoFlags, fields) => {
          const [dsfid, afi, blocks, size, ic] = fields;
          const optional: number[] = [];
          if (infoFlags & 1) optional.push(dsfid!);
          if (infoFlags & 2) optional.push(afi!);
          if (infoFlags & 4) optional.push(blocks!, size!);
          if (infoFlags & 8) optional.push(ic!);
          const info = parseIso15693SystemInformation(
            Uint8Array.from([0x00, infoFlags, ...iso15693UidToAir(id), ...optional]),
          );
          expect(info.uid).toEqual(id);
          expect(info.dsfid !== undefined).toBe((infoFlags & 1) !== 0);
          expect(info.afi !== undefined).toBe((infoFlags & 2) !== 0);
          expect(info.memory !== undefined).toBe((infoFlags & 4) !== 0);
          expect(info.icReference !== undefined).toBe((infoFlags & 8) !== 0);
        },
      ),
    );
  });

  it('decode every error reply as TAG_STATUS with the code in the details', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xff }), fc.integer({ min: 0, max: 0x7f }), (code, otherFlags) => {
        const reply = Uint8Array.of((otherFlags << 1) | 0x01, code);
        try {
          parseIso15693Inventory(reply);
          expect.unreachable('an error reply must throw');
        } catch (error) {
          expect(isTaplineError(error) && error.code).toBe(ErrorCode.TagStatus);
          expect(isTaplineError(error) && error.details['iso15693Error']).toBe(code);
        }
      }),
    );
  });
});

describe('builders on random input', () => {
  it('build a frame or throw INVALID_ARGUMENT, and the CRC variant checks and strips back', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -2, max: 300 }),
        fc.integer({ min: -2, max: 300 }),
        fc.option(fc.uint8Array({ minLength: 6, maxLength: 10 }), { nil: undefined }),
        fc.uint8Array({ minLength: 9, maxLength: 11 }),
        fc.boolean(),
        (a, b, maybeUid, ichallenge, highDataRate) => {
          const options = { highDataRate, ...(maybeUid === undefined ? {} : { uid: maybeUid }) };
          const builds = [
            (crc: boolean) => buildIso15693Inventory({ afi: a, crc }),
            (crc: boolean) => buildIso15693ReadSingleBlock(a, { ...options, crc }),
            (crc: boolean) => buildIso15693ReadMultipleBlocks(a, b, { ...options, crc }),
            (crc: boolean) => buildIso15693GetSystemInformation({ ...options, crc }),
            (crc: boolean) => buildIso15693ReadSignature({ ...options, crc }),
            (crc: boolean) => buildTam1Authenticate(ichallenge, { ...options, keyId: b, crc }),
          ];
          for (const build of builds) {
            let plain: Uint8Array;
            try {
              plain = build(false);
            } catch (error) {
              expect(isTaplineError(error) && error.code).toBe(ErrorCode.InvalidArgument);
              continue;
            }
            const framed = build(true);
            expect(checkIso15693Crc(framed)).toBe(true);
            expect(stripIso15693Crc(framed)).toEqual(plain);
          }
        },
      ),
    );
  });
});

describe('CRC round trip', () => {
  it('appended CRCs check, strip back, and catch every single-bit error', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 64 }), fc.nat(), (data, flip) => {
        const framed = appendIso15693Crc(data);
        expect(framed.length).toBe(data.length + 2);
        expect(checkIso15693Crc(framed)).toBe(true);
        expect(stripIso15693Crc(framed)).toEqual(data);
        const bit = flip % (framed.length * 8);
        const corrupted = Uint8Array.from(framed);
        corrupted[bit >> 3]! ^= 1 << (bit & 7);
        expect(checkIso15693Crc(corrupted)).toBe(false);
      }),
    );
  });
});

describe('UID order round trip', () => {
  it('air order is the reverse of text order, and text formats and parses back', () => {
    fc.assert(
      fc.property(uid, (id) => {
        const air = iso15693UidToAir(id);
        expect(Array.from(air)).toEqual(Array.from(id).reverse());
        expect(iso15693UidFromAir(air)).toEqual(id);
        expect(parseIso15693Uid(formatIso15693Uid(id))).toEqual(id);
      }),
    );
  });

  it('a UID read from an INVENTORY reply addresses the same tag in the next request', () => {
    fc.assert(
      fc.property(uid, fc.integer({ min: 0, max: 255 }), (airUid, block) => {
        const inventory = parseIso15693Inventory(Uint8Array.from([0x00, 0x00, ...airUid]));
        const frame = buildIso15693ReadSingleBlock(block, { uid: inventory.uid });
        expect(frame.subarray(2, 10)).toEqual(airUid);
      }),
    );
  });
});

describe('TAM1 verify on random input', () => {
  it('returns a boolean or throws INVALID_ARGUMENT', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 15, maxLength: 17 }),
        fc.uint8Array({ minLength: 9, maxLength: 11 }),
        fc.uint8Array({ minLength: 15, maxLength: 17 }),
        (key, ichallenge, tresponse) => {
          try {
            expect(typeof verifyTam1Response(key, ichallenge, tresponse)).toBe('boolean');
          } catch (error) {
            expect(isTaplineError(error) && error.code).toBe(ErrorCode.InvalidArgument);
          }
        },
      ),
    );
  });
});
