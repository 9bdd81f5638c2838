#!/usr/bin/env node
// Throughput of SUN verification on one core (the plain mirror, VivoKey `sun=UID-CTR-MAC` form):
//   1. pre-parsed messages through SunVerifier.verify(message)
//   2. the same messages as URL strings through SunVerifier.verify(url), parsing included
//   baseline: AesKey.cmac of one block under a cached key, in the same run
// Each runs for about --seconds (default 2) in total, in interleaved slices after a short warm-up. Prints verifications per second, the ratio to the
// baseline (how many one-block CMACs one verification costs), and whether the target of at least 100,000
// verifications per second is met. Build core first (`pnpm build`, or `npx tsc -b` in packages/core).
//
//   node bench/sun-verify.mjs [--seconds S]
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const TARGET = 100_000;
const MESSAGES = 1024;

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '2' } } });
const seconds = Number(values.seconds);
if (!(seconds > 0)) {
  console.error('usage: node bench/sun-verify.mjs [--seconds S (> 0)]');
  process.exit(2);
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const entry = join(root, 'packages/core/dist/index.js');
if (!existsSync(entry)) {
  console.error('@tapline/core is not built: run `pnpm build` (or `npx tsc -b` in packages/core) first.');
  process.exit(1);
}
const core = await import(pathToFileURL(entry).href);

// Distinct messages (one UID, rising counters) under a random key, built with core's own MAC function.
const key = randomBytes(16);
const uid = Uint8Array.from(Buffer.from('042468222F5C80', 'hex'));
const hex = (bytes) => Buffer.from(bytes).toString('hex').toUpperCase();
const urls = [];
for (let counter = 1; counter <= MESSAGES; counter++) {
  const mac = core.computeSdmMac({ fileReadKey: key, uid, counter });
  const ctr = counter.toString(16).toUpperCase().padStart(6, '0');
  urls.push(`https://vivokey.co/3c8d418757dcce5459f5b8576a5fb652/?sun=${hex(uid)}-${ctr}-${hex(mac)}`);
}
const messages = urls.map((url) => core.parseSunMessage(url));
const verifier = core.createSunVerifier({ key });

/** Runs `step(i)` for about `ms` milliseconds in batches; returns operations per second. */
function measure(step, ms) {
  const batch = 1000;
  let done = 0;
  const started = process.hrtime.bigint();
  const until = started + BigInt(Math.round(ms * 1e6));
  let now = started;
  while (now < until) {
    for (let i = 0; i < batch; i++) step(done + i);
    done += batch;
    now = process.hrtime.bigint();
  }
  return done / (Number(now - started) / 1e9);
}

let invalid = 0;
const preParsed = (i) => {
  if (!verifier.verify(messages[i % MESSAGES]).valid) invalid++;
};
const fromString = (i) => {
  if (!verifier.verify(urls[i % MESSAGES]).valid) invalid++;
};
const aes = new core.AesKey(key);
const block = new Uint8Array(16);
const baseline = (i) => {
  block[0] = i & 0xff;
  aes.cmac(block);
};

// Interleaved slices, so that noise from the rest of the machine hits every target alike; the median slice of each
// target is reported.
const SLICES = 8;
const targets = [
  { label: 'SUN verify, pre-parsed (sun= plain mirror)', step: preParsed, rates: [] },
  { label: 'SUN verify, from the URL string', step: fromString, rates: [] },
  { label: 'baseline: AesKey.cmac, one block', step: baseline, rates: [] },
];
const sliceMs = (seconds * 1000) / SLICES;
for (const t of targets) measure(t.step, Math.min(300, sliceMs));
invalid = 0;
for (let slice = 0; slice < SLICES; slice++) for (const t of targets) t.rates.push(measure(t.step, sliceMs));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return (s[(s.length - 1) >> 1] + s[s.length >> 1]) / 2;
};
const results = targets.map((t) => ({ label: t.label, rate: median(t.rates) }));
if (invalid > 0) {
  console.error(`${invalid} verifications failed: the benchmark is broken.`);
  process.exit(1);
}

const base = results[2].rate;
console.log(
  `SUN verification throughput, one core, ~${seconds} s each (median of ${SLICES} interleaved slices), node ${process.version} ${process.platform}-${process.arch}`,
);
const width = Math.max(...results.map((r) => r.label.length));
for (const r of results) {
  const ratio = r === results[2] ? '' : `  (${(base / r.rate).toFixed(1)} baseline CMACs per verification)`;
  console.log(`  ${r.label.padEnd(width)}  ${Math.round(r.rate).toLocaleString('en-US').padStart(11)} /s${ratio}`);
}
const slowest = Math.min(results[0].rate, results[1].rate);
console.log(
  `target (>= ${TARGET.toLocaleString('en-US')} verifications/s, both paths): ${slowest >= TARGET ? 'met' : 'NOT met'} ` +
    `(slowest ${Math.round(slowest).toLocaleString('en-US')}/s)`,
);
