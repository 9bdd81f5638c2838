/**
 * `@tapline/driver-acr122`: the ACS ACR122U (PN532 behind a CCID controller) for Tapline.
 *
 * @packageDocumentation
 */
import { Capability, openPcscReader, type ReaderDriver } from '@tapline/core';

const capabilities = [Capability.Iso14443_4] as const;

/** ACS ACR122U over PC/SC, thin for now: UID and ISO 14443-4 only; its PN532 escape paths (raw frames, LED, buzzer) come later. */
export const acr122Driver: ReaderDriver = {
  id: 'acr122',
  displayName: 'ACS ACR122U',
  description: 'ACS ACR122U (PN532) over PC/SC: UID via FF CA and ISO 14443-4 APDUs.',
  // "ACR122" also names the ACR1222 family (same PN532 API); their SAM slots are no contactless readers.
  matches: [{ transport: 'pcsc', nameIncludes: 'ACR122', nameExcludes: ['SAM'], score: 50 }],
  capabilities,
  open: (device, context) => openPcscReader(device, context, { driverId: 'acr122', capabilities }),
};

/** The drivers of this package, for Tapline's driver discovery. */
export const drivers: readonly ReaderDriver[] = [acr122Driver];
