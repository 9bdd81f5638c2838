#!/usr/bin/env node
// CPU and memory of the agent idling: four simulated readers, associated with a reference platform (in this
// script's process, as a real platform would be elsewhere), nothing pending, for 60 s after a warm-up. A bare
// `node` process idling over the same window is the baseline, and the ratios to it are printed too.
// Targets (issue 7): under 0.5 % of one core, under 80 MB RSS. Linux only (reads /proc). Build first (`pnpm build`).
//
//   node bench/agent-idle.mjs [--seconds 60] [--warmup 5] [--readers 4]
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const CPU_TARGET_PERCENT = 0.5;
const RSS_TARGET_MB = 80;

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '60' },
    warmup: { type: 'string', default: '5' },
    readers: { type: 'string', default: '4' },
  },
});
const SECONDS = Number(values.seconds);
const WARMUP = Number(values.warmup);
const READERS = Number(values.readers);
if (!(SECONDS > 0 && WARMUP >= 0 && Number.isInteger(READERS) && READERS > 0)) {
  console.error('usage: node bench/agent-idle.mjs [--seconds S (> 0)] [--warmup W (>= 0)] [--readers N (>= 1)]');
  process.exit(2);
}
if (process.platform !== 'linux') {
  console.error('bench/agent-idle reads /proc: it runs on Linux only.');
  process.exit(1);
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const coreEntry = join(root, 'packages/core/dist/index.js');
const fixturesEntry = join(root, 'test-fixtures/dist/index.js');
const agentBin = join(root, 'packages/agent/bin/tapline-agent.js');
for (const entry of [coreEntry, fixturesEntry, join(root, 'packages/agent/dist/index.js')]) {
  if (!existsSync(entry)) {
    console.error(`${entry} is missing: run \`pnpm build\` first.`);
    process.exit(1);
  }
}
const core = await import(pathToFileURL(coreEntry).href);
const fixtures = await import(pathToFileURL(fixturesEntry).href);

const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ on every Linux this runs on
/** utime + stime of a process, in seconds, and its resident set, in bytes. */
function sample(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name may contain spaces and parentheses: fields are counted after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpuSeconds = (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? NaN);
  return { cpuSeconds, rssBytes: rssKb * 1024, at: performance.now() };
}

const configDir = mkdtempSync(join(tmpdir(), 'tapline-agent-idle-'));
const platform = await fixtures.startReferencePlatform();
const children = [];
let exitCode = 1;
try {
  // Associate the way `tapline login` does, approved by the platform's "scan on the phone" hook.
  const association = core.createDeviceAssociation({
    issuer: platform.issuerUrl,
    clientId: platform.desktopClientId,
    allowInsecureHttp: true,
  });
  const started = await association.start();
  await platform.approveDevice(started.userCode);
  const tokens = await association.wait(started.handle, { signal: AbortSignal.timeout(10_000) });
  await new core.FileTokenStore({ file: join(configDir, 'credentials.json') }).save(
    core.credentialsFromTokens(tokens, { issuer: platform.issuerUrl, clientId: platform.desktopClientId }),
  );

  // The developer's own TAPLINE_* settings must not change what is measured.
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('TAPLINE_')));
  Object.assign(env, { TAPLINE_CONFIG_DIR: configDir, TAPLINE_PLATFORM_URL: platform.url.href });
  const agent = spawn(
    process.execPath,
    [agentBin, '--sim-readers', String(READERS), '--platform', platform.url.href, '--json', '--no-control-socket'],
    { env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const baseline = spawn(process.execPath, ['-e', 'setInterval(() => {}, 2 ** 30)'], { stdio: 'ignore' });
  children.push(agent, baseline);
  let stdout = '';
  let stderr = '';
  agent.stdout.setEncoding('utf8').on('data', (chunk) => (stdout += chunk));
  agent.stderr.setEncoding('utf8').on('data', (chunk) => (stderr += chunk));

  // Ready: every reader attached and the platform's first listing seen (the `idle` line).
  const readyBy = Date.now() + 15_000;
  while (!(stdout.split('"reader-attached"').length > READERS && stdout.includes('"idle"'))) {
    if (agent.exitCode !== null || Date.now() > readyBy) {
      throw new Error(`the agent did not become ready (exit ${agent.exitCode}):\n${stdout}\n${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await new Promise((resolve) => setTimeout(resolve, WARMUP * 1000));
  const agentStart = sample(agent.pid);
  const baseStart = sample(baseline.pid);
  await new Promise((resolve) => setTimeout(resolve, SECONDS * 1000));
  const agentEnd = sample(agent.pid);
  const baseEnd = sample(baseline.pid);
  if (agent.exitCode !== null) throw new Error(`the agent exited during the measurement:\n${stderr}`);

  const percent = (a, b) => (100 * (b.cpuSeconds - a.cpuSeconds)) / ((b.at - a.at) / 1000);
  const agentCpu = percent(agentStart, agentEnd);
  const baseCpu = percent(baseStart, baseEnd);
  const agentRssMb = agentEnd.rssBytes / 2 ** 20;
  const baseRssMb = baseEnd.rssBytes / 2 ** 20;
  const polls = platform.stats.requests['/scan-requests'] ?? 0;
  console.log(
    `agent idling ${SECONDS} s (after ${WARMUP} s warm-up) with ${READERS} simulated readers, associated, nothing pending; node ${process.version}`,
  );
  console.log(
    `  agent:    CPU ${agentCpu.toFixed(3)} % of one core   RSS ${agentRssMb.toFixed(1)} MB   (platform long polls during the whole run: ${polls})`,
  );
  console.log(
    `  baseline: CPU ${baseCpu.toFixed(3)} % of one core   RSS ${baseRssMb.toFixed(1)} MB   (node, one idle timer)`,
  );
  // A bare idle node process often uses no measurable CPU at all (below one clock tick): no ratio then.
  const cpuRatio = baseCpu >= 0.01 ? `${(agentCpu / baseCpu).toFixed(1)}×` : 'n/a (baseline below one clock tick)';
  console.log(`  ratio agent / baseline: CPU ${cpuRatio}, RSS ${(agentRssMb / baseRssMb).toFixed(2)}×`);
  console.log(
    `targets: CPU < ${CPU_TARGET_PERCENT} %: ${agentCpu < CPU_TARGET_PERCENT ? 'met' : 'NOT met'}; RSS < ${RSS_TARGET_MB} MB: ${
      agentRssMb < RSS_TARGET_MB ? 'met' : 'NOT met'
    }`,
  );
  exitCode = 0;
} catch (error) {
  console.error(error instanceof Error ? error.message : error);
} finally {
  for (const child of children) child.kill('SIGTERM');
  await platform.close();
  rmSync(configDir, { recursive: true, force: true });
}
process.exit(exitCode);
