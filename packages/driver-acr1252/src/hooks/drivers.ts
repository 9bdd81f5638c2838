import type { ReaderDriver } from '@tapline/core';
import { drivers } from '../index.js';

/**
 * The oclif hook for `tapline:drivers`: the CLI runs it to collect the drivers of installed plugins. Typed without
 * @oclif/core so that the driver does not depend on the CLI framework.
 */
const hook: () => Promise<readonly ReaderDriver[]> = () => Promise.resolve(drivers);

export default hook;
