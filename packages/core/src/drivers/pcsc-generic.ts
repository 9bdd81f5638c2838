import { Capability } from '../model/capabilities.js';
import type { ReaderDriver } from '../model/driver.js';
import { openPcscReader } from './pcsc-reader.js';

/**
 * The generic PC/SC driver (id `pcsc`): takes any PC/SC reader no vendor driver claims (score 1), except SAM slots.
 * It offers ISO 14443-4 APDUs only, which every PC/SC contactless reader passes through SCardTransmit.
 */
export const genericPcscDriver: ReaderDriver = {
  id: 'pcsc',
  displayName: 'Generic PC/SC',
  description: 'Any PC/SC contactless reader: UID via FF CA, ISO 14443-4 APDUs via SCardTransmit.',
  matches: [{ transport: 'pcsc', nameIncludes: '', nameExcludes: ['SAM'], score: 1 }],
  capabilities: [Capability.Iso14443_4],
  open: (device, context) =>
    openPcscReader(device, context, { driverId: 'pcsc', capabilities: [Capability.Iso14443_4] }),
};
