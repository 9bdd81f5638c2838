// Preload (`node --import`) that records every module the process loads into the file named by
// TAPLINE_IMPORT_LOG: ESM through a resolve hook, CommonJS from require.cache at exit. Used to prove that
// `--version` and `--help` never load rxjs, tsyringe, reflect-metadata or @tapline/core.
import { appendFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';

const log = process.env.TAPLINE_IMPORT_LOG;
if (log) {
  register('./record-imports-hooks.mjs', import.meta.url, { data: { log } });
  const require = createRequire(import.meta.url);
  process.on('exit', () => {
    appendFileSync(
      log,
      Object.keys(require.cache)
        .map((k) => `cjs ${k}\n`)
        .join(''),
    );
  });
}
