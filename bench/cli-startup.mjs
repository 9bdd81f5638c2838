#!/usr/bin/env node
// Cold-start benchmark of the Tapline CLI. Runs, interleaved so that machine noise hits every target alike:
//   node -e 0
//   node packages/cli/bin/run.js --version
//   node packages/cli/bin/run.js readers --sim --json
// and prints the median of each, the ratio of medians against `node -e 0`, and whether `--version` meets its target
// (at most 2.0x plain node). Build the CLI first (`pnpm build`).
//
//   node bench/cli-startup.mjs [--runs N] [--warmup N]
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const VERSION_TARGET = 2.0;

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '15' },
    warmup: { type: 'string', default: '2' },
  },
});
const runs = Number(values.runs);
const warmup = Number(values.warmup);
if (!Number.isInteger(runs) || runs < 1 || !Number.isInteger(warmup) || warmup < 0) {
  console.error('usage: node bench/cli-startup.mjs [--runs N (>= 1)] [--warmup N (>= 0)]');
  process.exit(2);
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(root, 'packages/cli/bin/run.js');
if (!existsSync(join(root, 'packages/cli/dist/commands'))) {
  console.error(
    'The CLI is not built: run `pnpm build` (or `npx tsc -b && npx oclif manifest` in packages/cli) first.',
  );
  process.exit(1);
}

const targets = [
  { label: 'node -e 0', args: ['-e', '0'] },
  { label: 'tapline --version', args: [bin, '--version'] },
  { label: 'tapline readers --sim --json', args: [bin, 'readers', '--sim', '--json'] },
];

function once(target) {
  const started = process.hrtime.bigint();
  // A clean environment: no tracing, no user config affecting the run.
  const result = spawnSync(process.execPath, target.args, {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, TAPLINE_TRACE: '', TAPLINE_LOG_LEVEL: '' },
  });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (result.status !== 0) {
    console.error(`${target.label} exited with ${result.status ?? result.signal}:\n${result.stderr}`);
    process.exit(1);
  }
  return ms;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

for (let i = 0; i < warmup; i++) for (const t of targets) once(t);
const samples = targets.map(() => []);
for (let i = 0; i < runs; i++) {
  targets.forEach((t, j) => samples[j].push(once(t)));
}

const medians = samples.map(median);
const base = medians[0];
console.log(
  `cli startup, ${runs} runs each (interleaved, ${warmup} warm-up), node ${process.version} ${process.platform}-${process.arch}`,
);
const width = Math.max(...targets.map((t) => t.label.length));
targets.forEach((t, j) => {
  const min = Math.min(...samples[j]);
  const max = Math.max(...samples[j]);
  console.log(
    `  ${t.label.padEnd(width)}  median ${medians[j].toFixed(1).padStart(7)} ms  (min ${min.toFixed(1)}, max ${max.toFixed(1)})  ${(medians[j] / base).toFixed(2)}x`,
  );
});
const versionRatio = medians[1] / base;
console.log(
  `--version target (<= ${VERSION_TARGET.toFixed(1)}x node -e 0): ${versionRatio <= VERSION_TARGET ? 'met' : 'NOT met'} (${versionRatio.toFixed(2)}x)`,
);
