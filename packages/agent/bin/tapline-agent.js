#!/usr/bin/env node
// The `tapline-agent` executable: parses flags and runs the agent until SIGINT/SIGTERM (exit 0), or until no
// request is pending with --exit-when-idle. Exit codes: 0 stopped cleanly, 1 the agent failed, 2 usage.
import { parseArgs } from 'node:util';

const USAGE = `Usage: tapline-agent [--sim] [--sim-requests N] [--exit-when-idle] [--json]

Answers scan requests with taps on a reader.

  --sim              use the built-in simulator instead of real readers
  --sim-requests N   queue N simulated scan requests (default 1 with --sim, else 0)
  --exit-when-idle   stop as soon as no request is pending
  --json             print events as JSON lines
  -h, --help         show this help`;

function usageError(message) {
  process.stderr.write(`tapline-agent: ${message}\n\n${USAGE}\n`);
  process.exit(2);
}

let values;
try {
  ({ values } = parseArgs({
    options: {
      sim: { type: 'boolean', default: false },
      'sim-requests': { type: 'string' },
      'exit-when-idle': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  }));
} catch (error) {
  usageError(error instanceof Error ? error.message : String(error));
}
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const requestsText = values['sim-requests'];
const requests = requestsText === undefined ? (values.sim ? 1 : 0) : Number(requestsText);
if (!Number.isInteger(requests) || requests < 0 || (requestsText !== undefined && !/^\d+$/.test(requestsText))) {
  usageError(`--sim-requests must be a whole number, not "${requestsText}"`);
}

const controller = new AbortController();
let stopping = false;
const onSignal = () => {
  // A second signal means "now"; the first one shuts down cleanly (readers closed) and exits 0.
  if (stopping) process.exit(0);
  stopping = true;
  controller.abort(new Error('signal'));
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

// Imported after parsing so that a usage error answers at once.
const { runAgent } = await import('../dist/index.js');
try {
  await runAgent({
    sim: values.sim,
    requests,
    exitWhenIdle: values['exit-when-idle'],
    json: values.json,
    signal: controller.signal,
    // The simulated chip is lifted and tapped again after each dialogue, so every simulated request gets a tap.
    simRetapMs: 250,
  });
} catch (error) {
  const code = error?.code ?? 'INTERNAL';
  const json =
    typeof error?.toJSON === 'function' ? error.toJSON() : { code, message: String(error?.message ?? error) };
  if (values.json) process.stdout.write(`${JSON.stringify({ event: 'error', error: json })}\n`);
  else process.stderr.write(`Error [${code}]: ${json.message}\n${json.hint ? `Hint: ${json.hint}\n` : ''}`);
  process.exitCode = code === 'INVALID_ARGUMENT' ? 2 : 1;
} finally {
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
}
// The agent has closed its readers; if a third-party driver still holds a handle, do not hang.
setTimeout(() => process.exit(), 1000).unref();
