import { describe, expect, it } from 'vitest';
import {
  DriverRegistry,
  fromHex,
  genericPcscDriver,
  matchScore,
  toSpacedHex,
  type AttachedDevice,
} from '@tapline/core';
import { CMD, RSP, nextTagEvent, scriptedPcsc, testDriverContext } from '@tapline/core/testing';
import { acr1252Driver, drivers } from '../src/index.js';
import hook from '../src/hooks/drivers.js';

const pcsc = (name: string): AttachedDevice => ({ transport: 'pcsc', name, port: scriptedPcsc().addReader(name).port });

describe('acr1252Driver', () => {
  it.each([
    // readers.md §7.3: acsccid on macOS, and the CCID name derived from the pcsc-lite naming rule.
    'ACS ACR1252 1S CL Reader(1)',
    'ACS ACR1252 Dual Reader [ACR1252 Dual Reader PICC] 00 00',
    'ACS ACR1252 Reader 00 00',
  ])('claims %s with score 50', (name) => {
    expect(matchScore(acr1252Driver, pcsc(name))).toBe(50);
  });

  it.each(['ACS ACR1252 Dual Reader [ACR1252 Dual Reader SAM] 01 00', 'ACS ACR122U PICC Interface 00 00'])(
    'leaves %s alone',
    (name) => {
      expect(matchScore(acr1252Driver, pcsc(name))).toBe(0);
    },
  );

  it('beats the generic PC/SC driver in a registry, and neither takes the SAM slot', () => {
    const registry = new DriverRegistry([genericPcscDriver, acr1252Driver]);
    expect(registry.select(pcsc('ACS ACR1252 Dual Reader [ACR1252 Dual Reader PICC] 00 00'))?.driver.id).toBe(
      'acr1252',
    );
    expect(registry.select(pcsc('ACS ACR1252 Dual Reader [ACR1252 Dual Reader SAM] 01 00'))).toBeUndefined();
  });

  it('is what the package and its oclif hook export', async () => {
    expect(drivers).toEqual([acr1252Driver]);
    expect(await hook()).toBe(drivers);
    expect(acr1252Driver.capabilities).toEqual(['iso14443-4']);
  });

  it('opens a PC/SC reader that reads the UID with FF CA and carries APDUs', async () => {
    const scripted = scriptedPcsc().addReader('ACS ACR1252 Dual Reader [ACR1252 Dual Reader PICC] 00 00');
    scripted.insert('3B 81 80 01 80 80', [CMD('FF CA 00 00 00'), RSP('04 11 22 33 44 55 66 90 00')]);
    const reader = await acr1252Driver.open(scripted.device, testDriverContext());
    const tag = await nextTagEvent(reader);
    expect(reader.driverId).toBe('acr1252');
    expect(toSpacedHex(tag.uid)).toBe('04 11 22 33 44 55 66');
    scripted.expect([CMD('00 A4 04 00 07 D2 76 00 00 85 01 01 00'), RSP('90 00')]);
    expect(toSpacedHex(await reader.transmit(tag, 'iso14443-4', fromHex('00A4040007D276000085010100')))).toBe('90 00');
    scripted.assertDone();
    await reader.close();
    expect(scripted.openConnections).toBe(0);
  });
});
