import { describe, expect, it } from 'vitest';
import { DriverRegistry, genericPcscDriver, matchScore, toSpacedHex, type AttachedDevice } from '@tapline/core';
import { CMD, RSP, nextTagEvent, scriptedPcsc, testDriverContext } from '@tapline/core/testing';
import { drivers, identivDriver } from '../src/index.js';
import hook from '../src/hooks/drivers.js';

const pcsc = (name: string): AttachedDevice => ({ transport: 'pcsc', name, port: scriptedPcsc().addReader(name).port });

describe('identivDriver', () => {
  it.each([
    // readers.md §7.3, names derived from the pcsc-lite naming rule.
    'Identiv uTrust 3700 F CL Reader [uTrust 3700 F CL Reader] (55041912200000) 00 00',
    'Identiv Identiv uTrust 4701 F Dual Interface Reader [uTrust 4701 F CL Reader] (53691324212792) 01 00',
    'Identiv uTrust 3720 Contactless Reader 00 00',
    'SCM Microsystems Inc. SCL011G Contactless Reader [Vendor Interface] 00 00',
  ])('claims %s with score 50', (name) => {
    expect(matchScore(identivDriver, pcsc(name))).toBe(50);
  });

  it.each([
    // The contact interface of the dual reader, and a SAM slot.
    'Identiv Identiv uTrust 4701 F Dual Interface Reader [uTrust 4701 F Contact Reader] (53691324212792) 00 00',
    'Identiv uTrust 4700 F SAM Reader 02 00',
    'Identiv uTrust 2700 R Smart Card Reader 00 00',
    'ACS ACR122U PICC Interface 00 00',
  ])('leaves %s alone', (name) => {
    expect(matchScore(identivDriver, pcsc(name))).toBe(0);
  });

  it('beats the generic PC/SC driver in a registry', () => {
    const registry = new DriverRegistry([genericPcscDriver, identivDriver]);
    expect(
      registry.select(pcsc('Identiv uTrust 3700 F CL Reader [uTrust 3700 F CL Reader] (55041912200000) 00 00'))?.driver
        .id,
    ).toBe('identiv');
  });

  it('is what the package and its oclif hook export', async () => {
    expect(drivers).toEqual([identivDriver]);
    expect(await hook()).toBe(drivers);
    expect(identivDriver.capabilities).toEqual(['iso14443-4']);
  });

  it('opens a PC/SC reader that reads the UID with FF CA', async () => {
    const scripted = scriptedPcsc().addReader(
      'Identiv uTrust 3700 F CL Reader [uTrust 3700 F CL Reader] (55041912200000) 00 00',
    );
    const reader = await identivDriver.open(scripted.device, testDriverContext());
    scripted.insert('3B 81 80 01 80 80', [CMD('FF CA 00 00 00'), RSP('08 12 34 56 90 00')]);
    const tag = await nextTagEvent(reader);
    expect(reader.driverId).toBe('identiv');
    expect(toSpacedHex(tag.uid)).toBe('08 12 34 56');
    expect(tag.protocols).toEqual(['iso14443-4']);
    scripted.assertDone();
    await reader.close();
    expect(scripted.openConnections).toBe(0);
  });
});
