import { describe, expect, it } from 'vitest';
import { fromHex, selectApexVerify, toHex } from '@tapline/core';
import {
  APEX_NDEF_KEY_HEX,
  APEX_NDEF_SALT_HEX,
  APEX_VERIFY_KEY_HEX,
  ChipRegistry,
  PLATFORM_CHIP_CLAIMS,
  createApexChip,
  createChipRegistry,
  createNtag215Chip,
  createSpark1Chip,
  createSpark2Chip,
  defaultChipRegistry,
  spark1FixtureKeys,
  spark2FixtureKeys,
} from '../src/index.js';
import { call, isoDepChannel, platformForTest } from './platform-support.js';

describe('reference platform: chip registry', () => {
  it('enrolls every default virtual chip under its fixture keys by default', async () => {
    const registry = defaultChipRegistry();
    const apexId = toHex(await selectApexVerify(isoDepChannel(createApexChip())));
    expect(registry.list().map((chip) => [chip.kind, chip.uid])).toEqual([
      ['spark1', toHex(createSpark1Chip().info.uid)],
      ['spark2', toHex(createSpark2Chip().info.uid)],
      ['spark2', toHex(createSpark2Chip({ model: 'ntag413' }).info.uid)],
      ['apex', apexId],
    ]);
    const spark2 = registry.get(createSpark2Chip().info.uid)!;
    expect(spark2).toMatchObject({ scheme: 2, type: 2, product: 2, identity: `spark2:${spark2.uid}` });
    expect(toHex(spark2.authKey)).toBe(toHex(spark2FixtureKeys()[2]!));
    expect(toHex(spark2.sunKey!)).toBe(toHex(spark2FixtureKeys()[1]!));
    const spark1 = registry.get('E004011809A73B5C')!;
    expect(spark1).toMatchObject({ scheme: 1, ...PLATFORM_CHIP_CLAIMS.spark1 });
    expect(toHex(spark1.authKey)).toBe(toHex(spark1FixtureKeys()[2]!));
    const apex = registry.get(apexId)!;
    expect(apex).toMatchObject({ scheme: 2, type: 3, product: 8 });
    expect(toHex(apex.authKey)).toBe(APEX_VERIFY_KEY_HEX.toLowerCase());
    expect(toHex(apex.sunKey!)).toBe(APEX_NDEF_KEY_HEX.toLowerCase());
    expect(toHex(apex.sunSalt!)).toBe(APEX_NDEF_SALT_HEX.toLowerCase());
    // A new registry each time: enrolling in one leaves the next untouched.
    registry.remove(apexId);
    expect(defaultChipRegistry().size).toBe(4);
  });

  it("reads an Apex's chip id from its model without changing the chip's state", () => {
    const chip = createApexChip({ chipId: fromHex('0102030405060708') });
    const before = chip.state;
    const enrolled = new ChipRegistry().enrollVirtualChip(chip);
    expect(enrolled).toMatchObject({ kind: 'apex', uid: '0102030405060708' });
    expect(chip.state).toBe(before);
  });

  it('refuses chips that are no VivoKey implant and malformed enrollments', () => {
    const registry = new ChipRegistry();
    expect(() => registry.enrollVirtualChip(createNtag215Chip())).toThrow(/ISO 14443-4/);
    expect(() => registry.enrollVirtualChip(createSpark2Chip(), { kind: 'apex' })).toThrow(/Verify applet/);
    const key = new Uint8Array(16);
    expect(() => registry.enroll({ kind: 'spark2', uid: '0451', authKey: key })).toThrow(/7 bytes/);
    expect(() => registry.enroll({ kind: 'spark1', uid: '04517ca23b6e80', authKey: key })).toThrow(/8 bytes/);
    expect(() => registry.enroll({ kind: 'spark2', uid: 'zz517ca23b6e80', authKey: key })).toThrow(/hex/);
    expect(() => registry.enroll({ kind: 'spark2', uid: '04517ca23b6e80', authKey: new Uint8Array(8) })).toThrow(
      /16 bytes/,
    );
    expect(() => registry.enroll({ kind: 'apex', uid: '0102030405060708', authKey: key, sunKey: key })).toThrow(/salt/);
    expect(() => registry.enroll({ kind: 'spark2', uid: '04517ca23b6e80', authKey: key, type: -1 })).toThrow(/type/);
    expect(registry.size).toBe(0);
  });

  it('copies keys on enrollment and replaces an enrollment of the same uid', () => {
    const key = new Uint8Array(16);
    const registry = createChipRegistry([{ kind: 'spark2', uid: '04517CA23B6E80', authKey: key }]);
    key[0] = 0xff;
    expect(registry.get('04517ca23b6e80')!.authKey[0]).toBe(0);
    registry.enroll({ kind: 'spark2', uid: fromHex('04517ca23b6e80'), authKey: key, product: 9, identity: 'x' });
    expect(registry.size).toBe(1);
    expect(registry.get('04517ca23b6e80')).toMatchObject({ product: 9, identity: 'x', type: 2 });
  });

  it('is read live by a running platform: a removed chip is no longer enrolled', async () => {
    const platform = await platformForTest();
    const body = { scheme: 2, message: '00'.repeat(16), uid: '04517ca23b6e80' };
    expect((await call(platform, '/challenge', body)).status).toBe(200);
    expect(platform.chips.remove('04517ca23b6e80')).toBe(true);
    expect(platform.subFor('04517ca23b6e80')).toBeUndefined();
    expect(await call(platform, '/challenge', body)).toMatchObject({
      status: 404,
      json: { error: 'chip not enrolled' },
    });
  });
});
