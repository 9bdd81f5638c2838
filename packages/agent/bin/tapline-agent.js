#!/usr/bin/env node
// The `tapline-agent` executable: parses flags and runs the agent until SIGINT/SIGTERM (exit 0), or until no
// request is pending with --exit-when-idle. Exit codes: 0 stopped cleanly, 1 the agent failed, 2 usage.
import { parseArgs } from 'node:util';

const USAGE = `Usage: tapline-agent [--sim] [--sim-requests N] [--exit-when-idle] [--json] [--platform URL]

Answers the scan requests pending for your VivoKey profile with taps on a reader. Associate first with
\`tapline login\`; pick between several pending requests with \`tapline agent choose ID\`.

  --platform URL        the platform (default: TAPLINE_PLATFORM_URL or the config file)
  --issuer URL          its OpenID Connect issuer (default: <platform>/oidc)
  --sim                 simulated readers with a Spark 2 and an in-process reference platform, associated
                        automatically (with --platform: simulated readers, that platform)
  --sim-requests N      scan requests the reference platform holds at start (default 1 with --sim)
  --exit-when-idle      stop as soon as no request is pending
  --json                print events as JSON lines; the last is {"answered":N,"failed":N,...}
  --no-control-socket   do not listen for \`tapline agent choose\` / \`status\`
  -h, --help            show this help`;

function usageError(message) {
  process.stderr.write(`tapline-agent: ${message}\n\n${USAGE}\n`);
  process.exit(2);
}

let values;
try {
  ({ values } = parseArgs({
    options: {
      sim: { type: 'boolean', default: false },
      platform: { type: 'string' },
      issuer: { type: 'string' },
      'sim-readers': { type: 'string' },
      'no-control-socket': { type: 'boolean', default: false },
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

const readersText = values['sim-readers'];
const simReaders = readersText === undefined ? 1 : Number(readersText);
if (!/^\d+$/.test(readersText ?? '1') || simReaders < 1) {
  usageError(`--sim-readers must be a whole number of at least 1, not "${readersText}"`);
}
const simulatedReaders = values.sim || readersText !== undefined;

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
    sim: simulatedReaders,
    simReaders,
    // An explicit --platform keeps the simulated readers but uses that platform and the stored association.
    simPlatform: values.platform === undefined,
    requests,
    exitWhenIdle: values['exit-when-idle'],
    json: values.json,
    signal: controller.signal,
    ...(values['no-control-socket'] ? { controlSocket: false } : {}),
    config: {
      ...(values.platform === undefined ? {} : { platformUrl: values.platform }),
      ...(values.issuer === undefined ? {} : { issuer: values.issuer }),
    },
    // The simulated chip is lifted and tapped again after each dialogue, so every simulated request gets a tap.
    simAutoTapMs: 250,
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
