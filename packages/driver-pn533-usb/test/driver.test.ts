import { describe, expect, it } from 'vitest';
import {
  DriverRegistry,
  ErrorCode,
  genericPcscDriver,
  matchScore,
  type AttachedDevice,
  type UsbDeviceLike,
} from '@tapline/core';
import { scriptedPcsc, testDriverContext } from '@tapline/core/testing';
import { drivers, pn533UsbDriver } from '../src/index.js';
import hook from '../src/hooks/drivers.js';

function usb(vendorId: number, productId: number): AttachedDevice {
  const port: UsbDeviceLike = {
    vendorId,
    productId,
    opened: false,
    open: () => Promise.reject(new Error('must not be opened')),
    close: () => Promise.resolve(),
    selectConfiguration: () => Promise.reject(new Error('must not be used')),
    claimInterface: () => Promise.reject(new Error('must not be used')),
    releaseInterface: () => Promise.resolve(),
    transferIn: () => Promise.reject(new Error('must not be used')),
    transferOut: () => Promise.reject(new Error('must not be used')),
  };
  return {
    transport: 'usb',
    name: `PN533 (${vendorId.toString(16)}:${productId.toString(16)})`,
    vendorId,
    productId,
    port,
  };
}

describe('pn533UsbDriver', () => {
  it.each([
    [0x04cc, 0x2533],
    [0x04e6, 0x5591],
    [0x04e6, 0x5593],
    [0x04e6, 0x5594],
    [0x1fd3, 0x0608],
  ])('claims USB %s:%s with score 100', (vendorId, productId) => {
    expect(matchScore(pn533UsbDriver, usb(vendorId, productId))).toBe(100);
  });

  it('leaves other USB devices and every PC/SC reader alone (the SAM slot included)', () => {
    expect(matchScore(pn533UsbDriver, usb(0x072f, 0x2200))).toBe(0);
    const name = 'ACS ACR1252 Dual Reader [ACR1252 Dual Reader SAM] 01 00';
    expect(matchScore(pn533UsbDriver, { transport: 'pcsc', name, port: scriptedPcsc().addReader(name).port })).toBe(0);
  });

  it('gets the device in a registry that also holds the generic PC/SC driver', () => {
    const registry = new DriverRegistry([genericPcscDriver, pn533UsbDriver]);
    expect(registry.select(usb(0x04e6, 0x5591))).toMatchObject({ driver: { id: 'pn533-usb' }, forced: false });
  });

  it('is what the package and its oclif hook export', async () => {
    expect(drivers).toEqual([pn533UsbDriver]);
    expect(await hook()).toBe(drivers);
  });

  it('offers Type A raw, ISO-DEP, Type B and FeliCa, and never ISO 15693', () => {
    expect(pn533UsbDriver.capabilities).toEqual(['iso14443a-raw', 'iso14443-4', 'iso14443b', 'felica']);
  });

  it('refuses a non-USB device with INVALID_ARGUMENT', async () => {
    const name = 'SCM SCL3711 00 00';
    const device: AttachedDevice = { transport: 'pcsc', name, port: scriptedPcsc().addReader(name).port };
    await expect(pn533UsbDriver.open(device, testDriverContext())).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
    });
  });
});
