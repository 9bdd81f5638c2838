/**
 * `@tapline/test-fixtures`: the simulator behind `--sim` (a sim driver, simulated readers, virtual chips) and the
 * test doubles that every Tapline test stack shares.
 *
 * @packageDocumentation
 */
import type { ReaderDriver } from '@tapline/core';
import { simDriver } from './sim/sim-driver.js';

export * from './sim/virtual-chip.js';
export * from './sim/simulated-field.js';
export * from './sim/sim-driver.js';
export * from './sim/simulation.js';
export * from './chips/index.js';
export * from './usb/index.js';
export * from './platform/index.js';

/** The drivers this package provides (the driver-package convention). */
export const drivers: readonly ReaderDriver[] = [simDriver];
