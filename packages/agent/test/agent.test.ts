import { mkdtempSync } from 'node:fs';
import { PassThrough, Writable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Subject } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger, type DeviceEvent, type Reader } from '@tapline/core';
import {
  SimulatedField,
  createSimulation,
  createVirtualChip,
  simDriver,
  startReferencePlatform,
  type ReferencePlatform,
  type ReferencePlatformOptions,
  type Simulation,
} from '@tapline/test-fixtures';
import { runAgent, sendControl, type AgentLine, type AgentOptions, type AgentSummary } from '../src/index.js';

// An empty config folder: the developer's own config and credentials must not change what the tests see.
process.env['TAPLINE_CONFIG_DIR'] = mkdtempSync(join(tmpdir(), 'tapline-agent-test-'));

const platforms: ReferencePlatform[] = [];
afterEach(async () => {
  await Promise.all(platforms.splice(0).map((p) => p.close()));
});

async function platformWith(options: ReferencePlatformOptions = {}): Promise<ReferencePlatform> {
  const platform = await startReferencePlatform(options);
  platforms.push(platform);
  return platform;
}

interface Run {
  readonly lines: AgentLine[];
  readonly done: Promise<AgentSummary>;
  /** Resolves with the first line of `event` that `match` accepts (10 s at most). */
  next(event: string, match?: (line: AgentLine) => boolean): Promise<AgentLine>;
}

/** Runs the agent against `platform` with test-friendly timings; `onLine` sees every line first. */
function start(
  platform: ReferencePlatform,
  simulation: Simulation,
  options: Partial<AgentOptions> = {},
  onLine?: (line: AgentLine) => void,
): Run {
  const lines: AgentLine[] = [];
  const waiters: { event: string; match: (l: AgentLine) => boolean; resolve: (l: AgentLine) => void }[] = [];
  const done = runAgent({
    simulation,
    platform,
    controlSocket: false,
    autoChoose: false,
    logger: silentLogger,
    write: () => undefined,
    pollWaitSec: 1,
    pollBackoff: { initialMs: 20, maxMs: 200 },
    dialogueTimeoutMs: 5000,
    ...options,
    onLine: (line) => {
      lines.push(line);
      onLine?.(line);
      for (const w of [...waiters]) {
        if (w.event === line.event && w.match(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    },
  });
  return {
    lines,
    done,
    next: (event, match = () => true) => {
      const seen = lines.find((l) => l.event === event && match(l));
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no "${event}" line within 10 s: ${JSON.stringify(lines)}`)),
          10_000,
        );
        waiters.push({
          event,
          match,
          resolve: (l) => {
            clearTimeout(timer);
            resolve(l);
          },
        });
      });
    },
  };
}

const scanEvents = (lines: readonly AgentLine[]): string[] =>
  lines.map((l) => l.event).filter((e) => !e.startsWith('reader-') && e !== 'tap-ignored');

describe('runAgent against the reference platform', () => {
  it('one pending request: a tap answers it, the platform records the answer, and the agent exits when idle', async () => {
    const platform = await platformWith();
    const request = platform.createScanRequest({
      purpose: 'Open the front door',
      relyingParty: { id: 'door', name: 'Front door' },
    });
    const simulation = createSimulation({ tapAfterMs: false });
    const run = start(platform, simulation, { exitWhenIdle: true }, (line) => {
      if (line.event === 'ready') setTimeout(() => simulation.field.present(simulation.chip), 5);
    });
    expect(await run.done).toEqual({ reason: 'idle', answered: 1, failed: 0, pending: 0 });
    expect(platform.scanRequest(request.id)?.state).toBe('answered');
    expect(platform.scanRequest(request.id)?.result?.chip).toBe('spark2');
    expect(platform.stats.scanRequests.answers).toEqual({ succeeded: 1, failed: 0 });
    expect(scanEvents(run.lines)).toEqual(['ready', 'started', 'completed', 'idle', 'stopped']);
    expect(run.lines.find((l) => l.event === 'ready')).toMatchObject({
      request: request.id,
      relyingParty: 'Front door',
      purpose: 'Open the front door',
    });
    expect(run.lines.find((l) => l.event === 'completed')?.['result']).toMatchObject({ chip: 'spark2' });
  });

  it('associates by the device flow the platform approved, and answers nothing before it has listed', async () => {
    const platform = await platformWith();
    const run = start(platform, createSimulation({ tapAfterMs: 10 }), { exitWhenIdle: true });
    expect(await run.done).toEqual({ reason: 'idle', answered: 0, failed: 0, pending: 0 });
    expect(platform.stats.oidc).toMatchObject({ deviceAuthorizations: 1, approvals: 1, tokenGrants: 1 });
    // The tap 10 ms after start came before or after the first listing; either way nothing was answered.
    expect(scanEvents(run.lines)).toEqual(['idle', 'stopped']);
  });

  it('three pending: nothing happens on a tap until one is chosen (control socket), then the tap answers that one', async () => {
    const platform = await platformWith();
    const ids = [1, 2, 3].map((i) => platform.createScanRequest({ purpose: `Request ${i}` }).id);
    const simulation = createSimulation({ tapAfterMs: false });
    const socket = join(mkdtempSync(join(tmpdir(), 'tapline-sock-')), 'agent.sock');
    const controller = new AbortController();
    const run = start(platform, simulation, { controlSocket: socket, signal: controller.signal });
    const offered = await run.next('choice-needed');
    expect(offered['requests']).toEqual(ids);

    // A tap without a choice is not used, and says why.
    simulation.field.present(simulation.chip);
    await run.next('choice-needed', (l) => l['reason'] === 'tap-without-choice');
    simulation.field.remove();
    expect(platform.stats.scanRequests.claims).toBe(0);

    const status = await sendControl({ v: 1, op: 'status' }, { path: socket });
    expect(status.status.pending.map((p) => p.id)).toEqual(ids);
    expect(status.status.readers.map((r) => r.name)).toEqual(['Tapline Simulated Reader']);
    expect(status.status.platform.reachable).toBe(true);
    expect(status.status.associated?.sub).toMatch(/^[0-9a-f]{64}$/);

    await expect(sendControl({ v: 1, op: 'choose', id: 'sr_nonexistent' }, { path: socket })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    expect(await sendControl({ v: 1, op: 'choose', id: ids[1]! }, { path: socket })).toMatchObject({ chosen: ids[1] });
    await run.next('chosen', (l) => l['request'] === ids[1]);
    simulation.field.present(simulation.chip);
    await run.next('completed', (l) => l['request'] === ids[1]);

    expect(platform.scanRequest(ids[0]!)?.state).toBe('pending');
    expect(platform.scanRequest(ids[1]!)?.state).toBe('answered');
    expect(platform.scanRequest(ids[2]!)?.state).toBe('pending');
    const after = await sendControl({ v: 1, op: 'status' }, { path: socket });
    expect(after.status.lastScans[0]).toMatchObject({ requestId: ids[1], outcome: 'answered', chip: 'spark2' });
    expect(after.status.pending.map((p) => p.id)).toEqual([ids[0], ids[2]]);

    controller.abort();
    expect(await run.done).toEqual({ reason: 'aborted', answered: 1, failed: 0, pending: 2 });
  });

  it('at a terminal, several pending: asks at the prompt, holds other lines meanwhile, then the tap answers the pick', async () => {
    const platform = await platformWith();
    const ids = [1, 2, 3].map((i) => platform.createScanRequest({ purpose: `Door ${i}` }).id);
    const simulation = createSimulation({ tapAfterMs: false });
    const input = new PassThrough();
    let screen = '';
    const output = new Writable({
      write(chunk: Buffer | string, _encoding, callback) {
        screen += chunk.toString();
        callback();
      },
    });
    const written: string[] = [];
    const controller = new AbortController();
    const run = start(platform, simulation, {
      signal: controller.signal,
      interactive: true,
      promptTerminal: { input, output },
      write: (line) => written.push(line),
    });
    await run.next('choice-needed');
    const deadline = Date.now() + 5000;
    while (!screen.includes('Door 3') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(screen).toContain('Door 1');
    // A tap while the question is open: its line waits, so that it does not garble the prompt.
    const before = written.length;
    simulation.field.present(simulation.chip);
    await run.next('choice-needed', (l) => l['reason'] === 'tap-without-choice');
    simulation.field.remove();
    // Down once, Enter: the second request.
    input.write('\u001b[B');
    input.write('\r');
    await run.next('chosen', (l) => l['request'] === ids[1]);
    expect(written.length).toBeGreaterThan(before);
    simulation.field.present(simulation.chip);
    await run.next('completed', (l) => l['request'] === ids[1]);
    expect(platform.scanRequest(ids[1]!)?.state).toBe('answered');
    controller.abort();
    expect((await run.done).answered).toBe(1);
  });

  it('a tag removed mid-relay leaves the request pending, and the next tap answers it', async () => {
    const platform = await platformWith();
    const request = platform.createScanRequest({ purpose: 'Dispense one drink' });
    // The claim (the platform's challenge) is slow, so that the chip can be lifted while the relay waits for it.
    platform.faults.add({ kind: 'latency', ms: 300, path: '/scan-requests/{id}/claim', times: 1 });
    const simulation = createSimulation({ tapAfterMs: false });
    const run = start(platform, simulation, { exitWhenIdle: true }, (line) => {
      if (line.event === 'ready' && run.lines.filter((l) => l.event === 'ready').length === 1) {
        setTimeout(() => simulation.field.present(simulation.chip), 5);
      }
      if (line.event === 'started' && run.lines.filter((l) => l.event === 'started').length === 1) {
        setTimeout(() => simulation.field.remove(), 60);
      }
      if (line.event === 'failed') {
        setTimeout(() => simulation.field.present(simulation.chip), 20);
      }
    });
    const failed = await run.next('failed');
    expect(failed['error']).toMatchObject({ code: 'TAG_LOST' });
    // Nothing was submitted for the lost tap: the request is still open on the platform.
    expect(['pending', 'claimed']).toContain(platform.scanRequest(request.id)?.state);
    expect(await run.done).toEqual({ reason: 'idle', answered: 1, failed: 1, pending: 0 });
    expect(platform.scanRequest(request.id)?.state).toBe('answered');
    expect(platform.stats.scanRequests.answers).toEqual({ succeeded: 1, failed: 0 });
    expect(scanEvents(run.lines)).toEqual([
      'ready',
      'started',
      'failed',
      'ready',
      'started',
      'completed',
      'idle',
      'stopped',
    ]);
  });

  it('lifting the chip once it has answered does not cancel the submission of its answer', async () => {
    const platform = await platformWith();
    const request = platform.createScanRequest({ purpose: 'Lift early' });
    // The answer is slow to reach the platform; the person lifts the implant while it is on its way.
    platform.faults.add({ kind: 'latency', ms: 400, path: '/scan-requests/{id}/answer', times: 1 });
    const simulation = createSimulation({ tapAfterMs: false });
    const run = start(platform, simulation, { exitWhenIdle: true }, (line) => {
      if (line.event === 'ready') setTimeout(() => simulation.field.present(simulation.chip), 5);
      if (line.event === 'started') setTimeout(() => simulation.field.remove(), 150);
    });
    expect(await run.done).toEqual({ reason: 'idle', answered: 1, failed: 0, pending: 0 });
    expect(platform.scanRequest(request.id)?.state).toBe('answered');
    expect(scanEvents(run.lines)).toEqual(['ready', 'started', 'completed', 'idle', 'stopped']);
  });

  it('rides out 5xx bursts and connection resets on the long poll, and a lost answer is retried, not duplicated', async () => {
    const platform = await platformWith();
    const request = platform.createScanRequest({ purpose: 'Badge in' });
    platform.faults.set([
      { kind: 'status', status: 503, path: '/scan-requests', times: 3 },
      { kind: 'reset', path: '/scan-requests', times: 2 },
      // The platform records the answer but the reply is lost: the client retries the identical body.
      { kind: 'status', status: 502, path: '/scan-requests/{id}/answer', times: 1, processed: true },
    ]);
    const simulation = createSimulation({ tapAfterMs: false });
    const run = start(platform, simulation, { exitWhenIdle: true });
    // The tap comes once the request is offered: a tag already lying on the reader never answers a new request.
    await run.next('ready');
    simulation.field.present(simulation.chip);
    expect(await run.done).toEqual({ reason: 'idle', answered: 1, failed: 0, pending: 0 });
    expect(platform.scanRequest(request.id)?.state).toBe('answered');
    expect(platform.stats.scanRequests.answers).toEqual({ succeeded: 1, failed: 0 });
    expect(platform.faults.armed).toEqual([]);
  });

  it('refreshes an expired access token by itself (rotation, no reuse) and keeps answering', async () => {
    const platform = await platformWith({ accessTokenTtlSec: 1 });
    const simulation = createSimulation({ tapAfterMs: false });
    const controller = new AbortController();
    const run = start(platform, simulation, { signal: controller.signal });
    await run.next('idle');
    // Past the access token's lifetime, with long polls running all along.
    await new Promise((r) => setTimeout(r, 2200));
    const request = platform.createScanRequest({ purpose: 'After expiry' });
    await run.next('ready', (l) => l['request'] === request.id);
    simulation.field.present(simulation.chip);
    await run.next('completed', (l) => l['request'] === request.id);
    controller.abort();
    await run.done;
    expect(platform.stats.oidc.refreshes).toBeGreaterThanOrEqual(1);
    expect(platform.stats.oidc.refreshReuseDetected).toBe(0);
    expect(platform.scanRequest(request.id)?.state).toBe('answered');
  });

  it('keeps going when its reader is unplugged and plugged in again', async () => {
    const platform = await platformWith();
    const request = platform.createScanRequest({ purpose: 'Replugged' });
    const field = new SimulatedField('Replug Reader', { latencyMs: 1 });
    const chip = createVirtualChip('spark2');
    const devices = new Subject<DeviceEvent>();
    const device = { transport: 'virtual' as const, name: field.name, kind: 'tapline-sim', port: field };
    const simulation: Simulation = {
      field,
      chip,
      deviceSources: [{ transport: 'virtual', devices$: devices.asObservable() }],
      drivers: [simDriver],
      stop: () => undefined,
    };
    const readers: Reader[] = [];
    const run = start(platform, simulation, {
      exitWhenIdle: true,
      onReaderEvent: (event) => {
        if (event.type === 'attached') readers.push(event.reader);
      },
    });
    // The device source is a plain Subject: plug in once the agent listens (it has listed by then).
    await run.next('ready');
    devices.next({ type: 'attached', device });
    await run.next('reader-attached');
    devices.next({ type: 'detached', transport: 'virtual', name: field.name });
    await run.next('reader-detached');
    devices.next({ type: 'attached', device });
    await run.next('reader-attached', () => run.lines.filter((l) => l.event === 'reader-attached').length === 2);
    field.present(chip);
    expect(await run.done).toEqual({ reason: 'idle', answered: 1, failed: 0, pending: 0 });
    expect(platform.scanRequest(request.id)?.state).toBe('answered');
    expect(readers).toHaveLength(2);
    expect(readers[0]?.closed).toBe(true);
  });

  it('keeps offering what it last listed while the platform is down, and reports it unreachable', async () => {
    const platform = await platformWith();
    platform.createScanRequest({ purpose: 'While down' });
    const socket = join(mkdtempSync(join(tmpdir(), 'tapline-sock-')), 'agent.sock');
    const controller = new AbortController();
    const run = start(platform, createSimulation({ tapAfterMs: false }), {
      controlSocket: socket,
      signal: controller.signal,
    });
    await run.next('ready');
    platform.faults.set({ kind: 'status', status: 503, path: '/scan-requests' });
    const deadline = Date.now() + 5000;
    let status = await sendControl({ v: 1, op: 'status' }, { path: socket });
    while (status.status.platform.reachable && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      status = await sendControl({ v: 1, op: 'status' }, { path: socket });
    }
    expect(status.status.platform).toMatchObject({ reachable: false, lastError: { code: 'PLATFORM_UNAVAILABLE' } });
    expect(status.status.pending).toHaveLength(1);
    platform.faults.clear();
    controller.abort();
    expect((await run.done).reason).toBe('aborted');
  });

  it('stops promptly when its signal aborts, with the readers closed', async () => {
    const platform = await platformWith();
    const controller = new AbortController();
    const readers: Reader[] = [];
    const run = start(platform, createSimulation({ tapAfterMs: false }), {
      signal: controller.signal,
      onReaderEvent: (event) => {
        if (event.type === 'attached') readers.push(event.reader);
      },
    });
    await run.next('idle');
    const abortedAt = Date.now();
    controller.abort();
    expect(await run.done).toEqual({ reason: 'aborted', answered: 0, failed: 0, pending: 0 });
    expect(Date.now() - abortedAt).toBeLessThan(1000);
    expect(readers.length).toBeGreaterThan(0);
    expect(readers.every((r) => r.closed)).toBe(true);
    expect(run.lines.at(-1)).toMatchObject({ event: 'stopped', reason: 'aborted' });
  });

  it('on shutdown lets the dialogue in flight finish, so that a chip already answering is not wasted', async () => {
    const platform = await platformWith();
    const request = platform.createScanRequest({ purpose: 'Stop mid-tap' });
    platform.faults.add({ kind: 'latency', ms: 300, path: '/scan-requests/{id}/claim', times: 1 });
    const simulation = createSimulation({ tapAfterMs: false });
    const controller = new AbortController();
    const run = start(platform, simulation, { signal: controller.signal });
    await run.next('ready');
    simulation.field.present(simulation.chip);
    await run.next('started');
    controller.abort();
    expect(await run.done).toEqual({ reason: 'aborted', answered: 1, failed: 0, pending: 0 });
    expect(platform.scanRequest(request.id)?.state).toBe('answered');
  });

  it('resolves at once when aborted before it starts', async () => {
    const controller = new AbortController();
    controller.abort();
    const summary = await runAgent({
      sim: true,
      controlSocket: false,
      signal: controller.signal,
      logger: silentLogger,
      write: () => undefined,
    });
    expect(summary.reason).toBe('aborted');
  });

  it('the demo: --sim with N requests answers each with one tap, oldest first, and prints the summary last', async () => {
    const lines: string[] = [];
    const summary = await runAgent({
      sim: true,
      requests: 3,
      exitWhenIdle: true,
      simAutoTapMs: 30,
      json: true,
      controlSocket: false,
      logger: silentLogger,
      write: (line) => lines.push(line),
    });
    expect(summary).toEqual({ reason: 'idle', answered: 3, failed: 0, pending: 0 });
    expect(lines.at(-1)).toMatch(/^\{"answered":3,"failed":0,"pending":0,/);
    const completed = lines.map((l) => JSON.parse(l) as AgentLine).filter((l) => l.event === 'completed');
    expect(completed).toHaveLength(3);
  });
});
