/**
 * `@tapline/driver-identiv`: Identiv uTrust 37xx / 47xx and SCM SCL01x contactless readers for Tapline.
 *
 * @packageDocumentation
 */
import { Capability, openPcscReader, type DeviceMatcher, type ReaderDriver } from '@tapline/core';

const capabilities = [Capability.Iso14443_4] as const;

// Dual-interface models list their contact slot as "[uTrust 4701 F Contact Reader]"; "Contact Reader" does not
// occur in "Contactless Reader", so the contactless interfaces still match.
const nameExcludes = ['SAM', 'Contact Reader'];
const matches: readonly DeviceMatcher[] = ['uTrust 37', 'uTrust 47', 'SCL01'].map((nameIncludes): DeviceMatcher => ({
  transport: 'pcsc',
  nameIncludes,
  nameExcludes,
  score: 50,
}));

/** Identiv uTrust / SCM SCL01x over PC/SC, thin for now: UID and ISO 14443-4 only; the FF CC escape and ISO 15693 (FF FC) paths come later. */
export const identivDriver: ReaderDriver = {
  id: 'identiv',
  displayName: 'Identiv uTrust / SCM SCL01x',
  description:
    'Identiv uTrust 3700 F / 3720 F / 4701 F and SCM SCL01x over PC/SC: UID via FF CA and ISO 14443-4 APDUs.',
  matches,
  capabilities,
  open: (device, context) => openPcscReader(device, context, { driverId: 'identiv', capabilities }),
};

/** The drivers of this package, for Tapline's driver discovery. */
export const drivers: readonly ReaderDriver[] = [identivDriver];
