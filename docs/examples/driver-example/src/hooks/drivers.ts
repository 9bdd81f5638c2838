/**
 * The oclif hook `tapline:drivers`: the CLI runs it on every installed plugin and collects what it returns.
 * Keep it cheap; it runs whenever a command needs drivers.
 */
import type { ReaderDriver } from '@tapline/core';
import { drivers } from '../index.js';

export default function taplineDrivers(): Promise<readonly ReaderDriver[]> {
  return Promise.resolve(drivers);
}
