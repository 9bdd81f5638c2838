#!/usr/bin/env node
// What `tapline verify` costs the chip: frames per verification and how long the chip must stay on the reader, per
// chip (Spark 2, Apex, Spark 1), with the platform's latency at zero, in two set-ups measured in the same run:
//
//   direct  a zero-latency reader (ReaderBase answering from the virtual chip at once) and an in-process platform
//           doing the real server-side crypto: isolates Tapline's own overhead (reader base, APDU layer, relay).
//   http    the simulator (latency 0: each exchange still waits one turn of the event loop, a setImmediate), the
//           reference platform over HTTP on 127.0.0.1 without injected latency, and the HTTP client: the whole
//           `tapline verify --sim` stack minus the CLI.
//
// Tapline's overhead per APDU = (time in field − platform time in field − the chip's own time) / APDUs, where time in
// field runs from the start of verifyChip to the chip's last answer (high-resolution; the tag's arrival stamp only
// has millisecond resolution), and the chip's own time is what its handle() took (plus, for http, one event-loop turn
// per exchange, measured in the same run). Baseline: a bare chip.handle() loop over the frames of one real verification,
// replayed with the same random numbers so that the chip does the same work; the ratio is overhead / baseline.
//
// Targets for the Spark 2: at most 3 APDUs after the tag is detected, and an overhead under 1 ms per APDU.
// Build first (`pnpm build`, or `npx tsc -b` in packages/core and test-fixtures).
//
//   node bench/verify-relay.mjs [--runs N] [--warmup N]
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: { runs: { type: 'string', default: '200' }, warmup: { type: 'string', default: '30' } },
});
const runs = Number(values.runs);
const warmup = Number(values.warmup);
if (!(Number.isInteger(runs) && runs > 0 && Number.isInteger(warmup) && warmup >= 0)) {
  console.error('usage: node bench/verify-relay.mjs [--runs N (> 0)] [--warmup N (>= 0)]');
  process.exit(2);
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const coreEntry = join(root, 'packages/core/dist/index.js');
const fixturesEntry = join(root, 'test-fixtures/dist/index.js');
if (!existsSync(coreEntry) || !existsSync(fixturesEntry)) {
  console.error('Build first: `pnpm build` (or `npx tsc -b` in packages/core and in test-fixtures).');
  process.exit(1);
}
const core = await import(pathToFileURL(coreEntry).href);
const fixtures = await import(pathToFileURL(fixturesEntry).href);

const CHIPS = ['spark2', 'apex', 'spark1'];
const CAPABILITY = { spark2: 'iso14443-4', apex: 'iso14443-4', spark1: 'iso15693' };
const TARGET_APDUS = 3;
const TARGET_OVERHEAD_MS = 1;

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : (s[(s.length - 1) >> 1] + s[s.length >> 1]) / 2;
};
const hex = (bytes) => Buffer.from(bytes).toString('hex');
const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');

/**
 * A virtual chip whose random numbers can be replayed (for the baseline) and whose handle() time is summed (the
 * chip's own time, which is not Tapline's).
 */
function benchChip(kind) {
  let random = fixtures.seededRandom(`bench/${kind}`);
  const inner = fixtures.createVirtualChip(kind, { random: (n) => random(n) });
  const chip = {
    info: inner.info,
    handleMs: 0,
    record: undefined,
    handle(capability, frame) {
      chip.record?.push(Uint8Array.from(frame));
      const started = performance.now();
      try {
        return inner.handle(capability, frame);
      } finally {
        chip.handleMs += performance.now() - started;
      }
    },
    powerUp: () => inner.powerUp(),
    reseed: () => {
      random = fixtures.seededRandom(`bench/${kind}`);
    },
    inner,
  };
  return chip;
}

/** A reader with no latency at all: the chip answers in the same turn of the event loop. */
class DirectReader extends core.ReaderBase {
  #chip;
  constructor() {
    super({
      name: 'Bench Direct Reader',
      driverId: 'bench',
      capabilities: ['iso14443-4', 'iso14443a-raw', 'iso15693'],
      logger: core.silentLogger,
      clock: core.systemClock,
      defaultTimeoutMs: 2000,
    });
  }
  present(chip) {
    this.#chip = chip;
    return this.tagArrived(chip.info);
  }
  remove() {
    this.#chip = undefined;
    this.tagLeft();
  }
  exchange(_tag, capability, frame) {
    try {
      return Promise.resolve(this.#chip.handle(capability, frame));
    } catch (error) {
      return Promise.reject(error);
    }
  }
  release() {
    return Promise.resolve();
  }
}

/**
 * The platform's side in process, with the fixture keys: AuthenticateEV2First's PCD half and the TAM1 check are the
 * real ones, so a wrong chip answer fails. Tokens are unsigned (their cost would only add to the network time).
 */
class InProcessPlatform {
  baseUrl = new URL('https://in-process.bench/');
  #pending = new Map();
  #keys = new Map([
    ['04517ca23b6e80', core.fromHex(fixtures.SPARK2_KEYS_HEX[2])],
    ['a5e1d0c3b2a19081', core.fromHex(fixtures.APEX_VERIFY_KEY_HEX)],
  ]);
  #spark1Key = core.fromHex(fixtures.SPARK1_KEYS_HEX[2]);
  #counter = 0;

  async challenge(request) {
    const token = `t${++this.#counter}`;
    if (request.scheme === 1) {
      const ichallenge = core.fromHex('00112233445566778899');
      this.#pending.set(token, { ichallenge });
      return { payload: `${hex(ichallenge)}aabbccddeeff`, token };
    }
    const key = this.#keys.get(request.uid);
    const rndA = core.fromHex('0123456789abcdef0123456789abcdef');
    const { response32, rndB } = core.pcdAnswerChallenge(key, core.fromHex(request.message), rndA);
    this.#pending.set(token, { key, rndA, rndB });
    return { payload: hex(response32), token };
  }

  async session(request) {
    const pending = this.#pending.get(request.token);
    this.#pending.delete(request.token);
    const response = core.fromHex(request.response);
    if (pending.ichallenge) {
      if (!core.verifyTam1Response(this.#spark1Key, pending.ichallenge, response.subarray(2))) {
        throw new core.TaplineError(core.ErrorCode.PlatformRejected, 'TAM1 response did not verify.');
      }
    } else {
      core.verifyPiccAnswer(pending.key, pending.rndA, pending.rndB, response.subarray(0, 32), 2);
    }
    return { token: `${b64({ alg: 'none' })}.${b64({ sub: `bench-${request.uid}` })}.` };
  }

  async validate() {
    throw new Error('not used');
  }

  async verifyToken(token) {
    return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
  }
}

/** One verification; returns its timings, frames and the chip's own time. */
async function verifyOnce(chip, arrive, platform) {
  chip.powerUp();
  chip.handleMs = 0;
  const tag = await arrive();
  const result = await core.verifyChip(tag, platform);
  return { ...result.timings, apdus: result.apdus, handleMs: chip.handleMs };
}

async function series(kind, arrive, platform, chip) {
  for (let i = 0; i < warmup; i++) await verifyOnce(chip, arrive, platform);
  const samples = [];
  for (let i = 0; i < runs; i++) samples.push(await verifyOnce(chip, arrive, platform));
  return samples;
}

/** The frames of one real verification, replayed through a bare chip.handle() loop with the same random numbers. */
async function baseline(kind, chip, arrive, platform) {
  chip.reseed();
  chip.record = [];
  await verifyOnce(chip, arrive, platform);
  const frames = chip.record;
  chip.record = undefined;
  const rounds = Math.max(200, runs * 2);
  const perFrame = [];
  for (let r = 0; r < rounds; r++) {
    chip.reseed();
    chip.inner.powerUp();
    const started = performance.now();
    for (const frame of frames) chip.inner.handle(CAPABILITY[kind], frame);
    perFrame.push((performance.now() - started) / frames.length);
  }
  return median(perFrame);
}

/** What one turn of the event loop costs here: a zero-latency simulated exchange answers on the next (setImmediate). */
async function loopTurnMs() {
  const samples = [];
  for (let i = 0; i < 200; i++) {
    const started = performance.now();
    await new Promise((resolve) => setImmediate(resolve));
    samples.push(performance.now() - started);
  }
  return median(samples);
}

function summarise(samples, extraChipMsPerApdu) {
  const apdus = median(samples.map((s) => s.apdus));
  const overhead = samples.map(
    (s) => (s.relayInFieldMs - s.networkInFieldMs - s.handleMs - extraChipMsPerApdu * s.apdus) / s.apdus,
  );
  return {
    apdus,
    apdusAll: new Set(samples.map((s) => s.apdus)).size === 1,
    inFieldMs: median(samples.map((s) => s.relayInFieldMs)),
    networkInFieldMs: median(samples.map((s) => s.networkInFieldMs)),
    networkMs: median(samples.map((s) => s.networkMs)),
    chipOwnMs: median(samples.map((s) => s.handleMs + extraChipMsPerApdu * s.apdus)),
    overheadPerApduMs: median(overhead),
  };
}

const rows = { direct: {}, http: {} };
const baselines = {};
const tick = await loopTurnMs();

// direct
for (const kind of CHIPS) {
  const chip = benchChip(kind);
  const reader = new DirectReader();
  const platform = new InProcessPlatform();
  const arrive = async () => {
    reader.remove();
    return reader.present(chip);
  };
  rows.direct[kind] = summarise(await series(kind, arrive, platform, chip), 0);
  baselines[kind] = await baseline(kind, chip, arrive, platform);
  await reader.close();
}

// http
const reference = await fixtures.startReferencePlatform({ chips: fixtures.createChipRegistry() });
try {
  const client = core.createVivoKeyAuthClient({
    baseUrl: reference.url,
    apiKey: reference.apiKey,
    jwksUrl: reference.jwksUrl,
  });
  for (const kind of CHIPS) {
    const chip = benchChip(kind);
    reference.chips.enrollVirtualChip(chip.inner);
    const simulation = fixtures.createSimulation({ chip, tapAfterMs: false, latencyMs: 0 });
    const container = core.createContainer({
      logger: core.silentLogger,
      withoutGenericPcsc: true,
      drivers: simulation.drivers,
      deviceSources: simulation.deviceSources,
      config: { transports: [] },
    });
    const manager = container.resolve(core.ReaderManager);
    const hold = manager.hold();
    await manager.settled();
    const arrive = async () => {
      simulation.field.remove();
      const arrival = core.waitForTag(manager.tags$, { timeoutMs: 2000 });
      simulation.field.present(chip);
      return arrival;
    };
    rows.http[kind] = summarise(await series(kind, arrive, client, chip), tick);
    simulation.stop();
    await hold.release();
  }
} finally {
  await reference.close();
}

const fmt = (ms) => `${ms.toFixed(3)} ms`;
console.log(
  `verify relay: ${runs} verifications per chip and set-up (after ${warmup} warm-up), platform latency 0, node ${process.version} ${process.platform}-${process.arch}`,
);
console.log(`event-loop turn (setImmediate, paid once per simulated exchange in "http"): ${fmt(tick)}`);
const header = [
  'set-up',
  'chip',
  'APDUs',
  'in field',
  'platform in field',
  'chip own time',
  'network (all calls)',
  'overhead/APDU',
  'bare handle()/frame',
  'ratio',
];
const table = [header];
for (const setup of ['direct', 'http']) {
  for (const kind of CHIPS) {
    const r = rows[setup][kind];
    table.push([
      setup,
      kind,
      `${r.apdus}${r.apdusAll ? '' : ' (varied)'}`,
      fmt(r.inFieldMs),
      fmt(r.networkInFieldMs),
      fmt(r.chipOwnMs),
      fmt(r.networkMs),
      fmt(r.overheadPerApduMs),
      fmt(baselines[kind]),
      `${(r.overheadPerApduMs / baselines[kind]).toFixed(1)}x`,
    ]);
  }
}
const widths = header.map((_, i) => Math.max(...table.map((row) => row[i].length)));
for (const row of table) console.log(`  ${row.map((cell, i) => cell.padEnd(widths[i])).join('  ')}`.trimEnd());
console.log('  (medians; "in field" = verifyChip start → chip\'s last answer; "platform in field" = the /challenge)');

const spark2 = rows.direct.spark2;
const apdusMet = spark2.apdus <= TARGET_APDUS && spark2.apdusAll;
const overheadMet =
  spark2.overheadPerApduMs < TARGET_OVERHEAD_MS && rows.http.spark2.overheadPerApduMs < TARGET_OVERHEAD_MS;
console.log(
  `Spark 2 targets: APDUs ${spark2.apdus} <= ${TARGET_APDUS}: ${apdusMet ? 'met' : 'NOT met'}; ` +
    `overhead < ${TARGET_OVERHEAD_MS} ms per APDU: ${overheadMet ? 'met' : 'NOT met'} ` +
    `(direct ${fmt(spark2.overheadPerApduMs)}, http ${fmt(rows.http.spark2.overheadPerApduMs)})`,
);
process.exitCode = apdusMet && overheadMet ? 0 : 1;
