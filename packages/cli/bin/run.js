#!/usr/bin/env node
// The `tapline` executable.
//
// `--version` is answered here, before @oclif/core is imported: loading oclif and its config alone costs about as
// much as starting node (measured with bench/cli-startup.mjs: 2.06x `node -e 0` through oclif, the target is 2.0x),
// and oclif would print the package name (`@tapline/cli/…`) where users expect the command's (`tapline/…`). The
// format is otherwise oclif's own user agent.
import { readFileSync } from 'node:fs';

const argv = process.argv.slice(2);
if (argv[0] === '--version' || argv[0] === '-v' || (argv.length === 1 && argv[0] === 'version')) {
  const pjson = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  process.stdout.write(
    `${pjson.oclif.bin}/${pjson.version} ${process.platform}-${process.arch} node-${process.version}\n`,
  );
} else {
  const { execute } = await import('@oclif/core');
  await execute({ dir: import.meta.url });
  // Every command has released its readers and flushed its output by now, so the process should end on its own.
  // If a handle still holds it (a third-party driver that leaks a native handle, say), do not hang the shell.
  setTimeout(() => {
    process.stderr.write('tapline: something kept the process alive after the command finished; exiting.\n');
    process.exit();
  }, 1000).unref();
}
