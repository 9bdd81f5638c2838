import type { Hook } from '@oclif/core';

/**
 * oclif `init` hook: names the CLI by its command (`tapline/0.1.0 linux-x64 node-v20.…`) rather than its package
 * (`@tapline/cli/…`) wherever oclif shows the user agent (the VERSION section of `--help`), matching what
 * `bin/run.js` prints for `--version`.
 */
const hook: Hook<'init'> = function ({ config }) {
  // Read-only in oclif's interface, a plain field on its Config class; oclif computes it once, from the package name.
  (config as { userAgent: string }).userAgent =
    `${config.bin}/${config.version} ${config.platform}-${config.arch} node-${process.version}`;
  return Promise.resolve();
};

export default hook;
