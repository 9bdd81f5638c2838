#!/usr/bin/env node
// Adds up the vitest JSON reports that every package's `test` script writes (turbo restores them from its cache,
// so a fully cached run still reports its counts) and prints one closing line: "N passed, N failed, N skipped".
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const packageDirs = [
  ...readdirSync('packages').map((name) => join('packages', name)),
  'test-fixtures',
  ...readdirSync(join('docs', 'examples')).map((name) => join('docs', 'examples', name)),
];
const reports = packageDirs.map((dir) => join(dir, '.vitest-results.json')).filter((file) => existsSync(file));
let passed = 0;
let failed = 0;
let skipped = 0;
for (const file of reports.sort()) {
  const report = JSON.parse(readFileSync(file, 'utf8'));
  // Every package that has tests must have reported; an empty report is as suspicious as a missing one.
  if (report.numTotalTests === 0) console.error(`${file}: no tests ran`);
  passed += report.numPassedTests;
  failed += report.numFailedTests;
  skipped += report.numPendingTests + report.numTodoTests;
  console.log(
    `${file.replace('/.vitest-results.json', '')}: ${report.numPassedTests} passed, ${report.numFailedTests} failed`,
  );
}
if (reports.length === 0) {
  console.error('No vitest reports found: did the test task run?');
  process.exit(1);
}
console.log(`Tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 ? 1 : 0);
