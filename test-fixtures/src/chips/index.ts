import { invalidOption, type StatefulChip } from './chip-model.js';
import { createApexChip, type ApexChipOptions, type ApexState } from './apex.js';
import { createNtag215Chip, type Ntag215ChipOptions, type Ntag215State } from './ntag215.js';
import { createSpark1Chip, type Spark1ChipOptions, type Spark1State } from './spark1.js';
import { createSpark2Chip, type Spark2ChipOptions, type Spark2State } from './spark2.js';

export * from './chip-model.js';
export * from './ecdsa-signer.js';
export * from './keys.js';
export * from './ev2-picc.js';
export * from './spark2.js';
export * from './spark1.js';
export * from './apex.js';
export * from './ntag215.js';

/** The virtual chips by name: `spark2` is the NTAG 424 DNA variant, `spark2-413` the NTAG 413 DNA one. */
export type VirtualChipKind = 'spark1' | 'spark2' | 'spark2-413' | 'apex' | 'ntag215';

/** Every {@link VirtualChipKind}, for listings and the `--sim` chip choice. */
export const VIRTUAL_CHIP_KINDS: readonly VirtualChipKind[] = Object.freeze([
  'spark1',
  'spark2',
  'spark2-413',
  'apex',
  'ntag215',
]);

/** The options each kind of chip takes. */
export interface VirtualChipOptionsByKind {
  readonly spark1: Spark1ChipOptions;
  readonly spark2: Omit<Spark2ChipOptions, 'model'>;
  readonly 'spark2-413': Omit<Spark2ChipOptions, 'model'>;
  readonly apex: ApexChipOptions;
  readonly ntag215: Ntag215ChipOptions;
}

/** The state each kind of chip keeps. */
export interface VirtualChipStateByKind {
  readonly spark1: Spark1State;
  readonly spark2: Spark2State;
  readonly 'spark2-413': Spark2State;
  readonly apex: ApexState;
  readonly ntag215: Ntag215State;
}

type Factories = {
  readonly [K in VirtualChipKind]: (options?: VirtualChipOptionsByKind[K]) => StatefulChip<VirtualChipStateByKind[K]>;
};

const FACTORIES: Factories = {
  spark1: (options) => createSpark1Chip(options),
  spark2: (options) => createSpark2Chip({ ...options, model: 'ntag424' }),
  'spark2-413': (options) => createSpark2Chip({ ...options, model: 'ntag413' }),
  apex: (options) => createApexChip(options),
  ntag215: (options) => createNtag215Chip(options),
};

/**
 * A virtual chip by name, for `createSimulation({ chip: createVirtualChip('spark2') })` and the `--sim` flag. Fails
 * with `INVALID_ARGUMENT` for an unknown kind.
 */
export function createVirtualChip<K extends VirtualChipKind>(
  kind: K,
  options?: VirtualChipOptionsByKind[K],
): StatefulChip<VirtualChipStateByKind[K]> {
  if (!Object.hasOwn(FACTORIES, kind)) {
    throw invalidOption(`Unknown virtual chip "${String(kind)}"; use one of ${VIRTUAL_CHIP_KINDS.join(', ')}.`);
  }
  // Indexing a mapped type with a generic key loses the link between key and factory; this restores it.
  const factory = FACTORIES[kind] as (options?: VirtualChipOptionsByKind[K]) => StatefulChip<VirtualChipStateByKind[K]>;
  return factory(options);
}
