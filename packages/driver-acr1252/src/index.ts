/**
 * `@tapline/driver-acr1252`: the ACS ACR1252U (PN512, PC/SC plus escape commands) for Tapline.
 *
 * @packageDocumentation
 */
import { Capability, openPcscReader, type ReaderDriver } from '@tapline/core';

const capabilities = [Capability.Iso14443_4] as const;

/** ACS ACR1252U over PC/SC, thin for now: UID and ISO 14443-4 only; its escape and FF C2 transparent-session paths come later. */
export const acr1252Driver: ReaderDriver = {
  id: 'acr1252',
  displayName: 'ACS ACR1252U',
  description: 'ACS ACR1252U (PN512) over PC/SC: UID via FF CA and ISO 14443-4 APDUs.',
  // The dual reader's second interface is its SAM slot ("[ACR1252 Dual Reader SAM] 01 00").
  matches: [{ transport: 'pcsc', nameIncludes: 'ACR1252', nameExcludes: ['SAM'], score: 50 }],
  capabilities,
  open: (device, context) => openPcscReader(device, context, { driverId: 'acr1252', capabilities }),
};

/** The drivers of this package, for Tapline's driver discovery. */
export const drivers: readonly ReaderDriver[] = [acr1252Driver];
