// PLACEHOLDER — replaced by the PC/SC transport work.
import type { ReaderDriver } from '../model/driver.js';
/** The generic PC/SC driver (id `pcsc`). */
export const genericPcscDriver: ReaderDriver = {
  id: 'pcsc',
  displayName: 'Generic PC/SC',
  description: 'Any PC/SC contactless reader.',
  matches: [{ transport: 'pcsc', nameIncludes: '', score: 1 }],
  capabilities: ['iso14443-4'],
  open: () => Promise.reject(new Error('not yet')),
};
