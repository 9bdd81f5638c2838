import { describe, expect, it } from 'vitest';
import {
  DriverRegistry,
  ErrorCode,
  genericPcscDriver,
  matchScore,
  type AttachedDevice,
  type DeviceMatcher,
  type ReaderDriver,
} from '../src/index.js';
import { scriptedPcsc } from '../src/testing/index.js';

const port = scriptedPcsc().addReader('unused').port;

function pcscDevice(name: string): AttachedDevice {
  return { transport: 'pcsc', name, port };
}

function usbDevice(vendorId: number, productId: number): AttachedDevice {
  return {
    transport: 'usb',
    name: `usb ${vendorId}:${productId}`,
    vendorId,
    productId,
    port: {
      vendorId,
      productId,
      opened: false,
      open: () => Promise.resolve(),
      close: () => Promise.resolve(),
      selectConfiguration: () => Promise.resolve(),
      claimInterface: () => Promise.resolve(),
      releaseInterface: () => Promise.resolve(),
      transferIn: () => Promise.resolve({}),
      transferOut: () => Promise.resolve({ bytesWritten: 0 }),
    },
  };
}

function driver(id: string, matches: readonly DeviceMatcher[], extra: Partial<ReaderDriver> = {}): ReaderDriver {
  return {
    id,
    displayName: `Driver ${id}`,
    description: 'test',
    matches,
    capabilities: ['iso14443-4'],
    open: () => Promise.reject(new Error('not opened in these tests')),
    ...extra,
  };
}

const acr = driver('acr', [{ transport: 'pcsc', nameIncludes: 'ACR122', nameExcludes: ['SAM'] }]);
const dual = driver('dual', [{ transport: 'pcsc', nameIncludes: 'ACR1252', nameExcludes: ['SAM'], score: 50 }]);
const pn533 = driver('pn533', [{ transport: 'usb', vendorId: 0x04cc, productId: 0x2533 }]);

describe('DriverRegistry', () => {
  it('scores name matchers 50 by default, USB ids 100, the generic driver 1', () => {
    expect(matchScore(acr, pcscDevice('ACS ACR122U PICC Interface 00 00'))).toBe(50);
    expect(matchScore(pn533, usbDevice(0x04cc, 0x2533))).toBe(100);
    expect(matchScore(genericPcscDriver, pcscDevice('Some Reader 00 00'))).toBe(1);
    expect(matchScore(acr, pcscDevice('Some Reader 00 00'))).toBe(0);
    expect(matchScore(pn533, usbDevice(0x04cc, 0x2534))).toBe(0);
  });

  it('matches names case-insensitively and gives the device to the best score', () => {
    const registry = new DriverRegistry([genericPcscDriver, acr]);
    const selection = registry.select(pcscDevice('acs acr122u picc interface 00 00'));
    expect(selection).toMatchObject({ driver: { id: 'acr' }, score: 50, forced: false });
    expect(
      registry.candidates(pcscDevice('ACS ACR122U PICC Interface 00 00')).map((c) => [c.driver.id, c.score]),
    ).toEqual([
      ['acr', 50],
      ['pcsc', 1],
    ]);
  });

  it('lets excludes veto a match (SAM slots reach no driver, not even the generic one)', () => {
    const registry = new DriverRegistry([genericPcscDriver, dual]);
    expect(registry.select(pcscDevice('ACS ACR1252 Dual Reader [ACR1252 Dual Reader PICC] 00 00'))?.driver.id).toBe(
      'dual',
    );
    expect(registry.select(pcscDevice('ACS ACR1252 Dual Reader [ACR1252 Dual Reader SAM] 01 00'))).toBeUndefined();
  });

  it('breaks ties in favour of the driver registered first', () => {
    const a = driver('a', [{ transport: 'pcsc', nameIncludes: 'Reader' }]);
    const b = driver('b', [{ transport: 'pcsc', nameIncludes: 'Reader' }]);
    expect(new DriverRegistry([a, b]).select(pcscDevice('Reader'))?.driver.id).toBe('a');
    expect(new DriverRegistry([b, a]).select(pcscDevice('Reader'))?.driver.id).toBe('b');
  });

  it('uses a driver score() refinement when it returns a number', () => {
    const picky = driver('picky', [{ transport: 'pcsc', nameIncludes: 'Reader' }], {
      score: (device) => (device.name.endsWith('01') ? 0 : undefined),
    });
    const registry = new DriverRegistry([picky]);
    expect(registry.select(pcscDevice('Reader 00 00'))?.score).toBe(50);
    expect(registry.select(pcscDevice('Reader 00 01'))).toBeUndefined();
  });

  it('forces a driver by id over a better match, and per-reader forcing wins over the global one', () => {
    const forced = new DriverRegistry([genericPcscDriver, acr], { force: 'pcsc' });
    expect(forced.select(pcscDevice('ACS ACR122U PICC Interface 00 00'))).toMatchObject({
      driver: { id: 'pcsc' },
      forced: true,
      score: 1,
    });

    const perReader = new DriverRegistry([genericPcscDriver, acr, dual], {
      force: 'pcsc',
      perReader: { acr122u: 'acr' },
    });
    expect(perReader.select(pcscDevice('ACS ACR122U PICC Interface 00 00'))).toMatchObject({
      driver: { id: 'acr' },
      forced: true,
    });
    expect(perReader.select(pcscDevice('ACS ACR1252 Dual Reader 00 00'))).toMatchObject({
      driver: { id: 'pcsc' },
      forced: true,
    });
  });

  it('fails with DRIVER_NOT_FOUND for an unknown forced id, naming the installed drivers', () => {
    const registry = new DriverRegistry([genericPcscDriver, acr], { force: 'nope' });
    let caught: unknown;
    try {
      registry.select(pcscDevice('ACS ACR122U PICC Interface 00 00'));
    } catch (error) {
      caught = error;
    }
    expect(caught).toMatchObject({
      code: ErrorCode.DriverNotFound,
      details: { id: 'nope', installed: ['pcsc', 'acr'] },
    });
    expect(() => registry.require('nope')).toThrow(expect.objectContaining({ code: ErrorCode.DriverNotFound }));
  });

  it('ignores a forced driver that serves another transport', () => {
    const registry = new DriverRegistry([genericPcscDriver, acr, pn533], { force: 'pn533' });
    expect(registry.select(pcscDevice('ACS ACR122U PICC Interface 00 00'))).toMatchObject({
      driver: { id: 'acr' },
      forced: false,
    });
    expect(registry.select(usbDevice(0x04cc, 0x2533))).toMatchObject({ driver: { id: 'pn533' }, forced: true });
  });

  it('refuses a second driver with the same id, and malformed ids', () => {
    const registry = new DriverRegistry([acr]);
    registry.register(acr);
    expect(registry.list()).toHaveLength(1);
    expect(() => registry.register(driver('acr', []))).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidArgument }),
    );
    expect(() => registry.register(driver('Bad Id', []))).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidArgument }),
    );
  });

  it('gives USB devices nothing to the generic PC/SC driver', () => {
    expect(new DriverRegistry([genericPcscDriver]).select(usbDevice(0x04cc, 0x2533))).toBeUndefined();
  });
});
