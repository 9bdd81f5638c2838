import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Agent tests run a reference platform, a device flow and several taps each: seconds when CI is busy.
    testTimeout: 15_000,
  },
});
