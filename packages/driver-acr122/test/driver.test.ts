import { describe, expect, it } from 'vitest';
import {
  DriverRegistry,
  ErrorCode,
  fromHex,
  genericPcscDriver,
  matchScore,
  toSpacedHex,
  type AttachedDevice,
} from '@tapline/core';
import { CMD, RSP, nextTagEvent, scriptedPcsc, testDriverContext } from '@tapline/core/testing';
import { acr122Driver, drivers } from '../src/index.js';
import hook from '../src/hooks/drivers.js';

const pcsc = (name: string): AttachedDevice => ({ transport: 'pcsc', name, port: scriptedPcsc().addReader(name).port });

describe('acr122Driver', () => {
  it.each([
    // readers.md §7.3, observed with the CCID driver.
    'ACS ACR122U PICC Interface 00 00',
    'ACS ACR122U PICC Interface 01 00',
    // The ACR1222 family shares the PN532 API and the name fragment.
    'ACS ACR1222 3S PICC Reader 00 00',
  ])('claims %s with score 50', (name) => {
    expect(matchScore(acr122Driver, pcsc(name))).toBe(50);
  });

  it.each([
    'ACS ACR1222 3S PICC Reader [ACR1222 SAM] 01 00',
    'ACS ACR1252 Dual Reader [ACR1252 Dual Reader PICC] 00 00',
    'Identiv uTrust 3700 F CL Reader [uTrust 3700 F CL Reader] (55041912200000) 00 00',
  ])('leaves %s alone', (name) => {
    expect(matchScore(acr122Driver, pcsc(name))).toBe(0);
  });

  it('beats the generic PC/SC driver in a registry', () => {
    const registry = new DriverRegistry([genericPcscDriver, acr122Driver]);
    expect(registry.select(pcsc('ACS ACR122U PICC Interface 00 00'))).toMatchObject({
      driver: { id: 'acr122' },
      forced: false,
    });
  });

  it('is what the package and its oclif hook export', async () => {
    expect(drivers).toEqual([acr122Driver]);
    expect(await hook()).toBe(drivers);
    expect(acr122Driver.capabilities).toEqual(['iso14443-4']);
  });

  it('opens a PC/SC reader that reads the UID with FF CA and carries APDUs', async () => {
    const scripted = scriptedPcsc().addReader('ACS ACR122U PICC Interface 00 00');
    const reader = await acr122Driver.open(scripted.device, testDriverContext());
    expect(reader.driverId).toBe('acr122');
    scripted.insert(
      '3B 81 80 01 80 80',
      [CMD('FF CA 00 00 00'), RSP('04 A1 B2 C3 D4 E5 F6 90 00')],
      [CMD('00 A4 04 00 00'), RSP('90 00')],
    );
    const tag = await nextTagEvent(reader);
    expect(toSpacedHex(tag.uid)).toBe('04 A1 B2 C3 D4 E5 F6');
    expect(toSpacedHex(await reader.transmit(tag, 'iso14443-4', fromHex('00A4040000')))).toBe('90 00');
    await expect(reader.transmit(tag, 'iso14443a-raw', fromHex('3004'))).rejects.toMatchObject({
      code: ErrorCode.UnsupportedCapability,
    });
    scripted.assertDone();
    await reader.close();
    expect(scripted.openConnections).toBe(0);
  });
});
