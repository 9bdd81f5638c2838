import { PassThrough, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { ScanRequest } from '@tapline/core';
import { describeRequest, formatDuration, promptChoice } from '../src/chooser.js';

const NOW = 1_800_000_000_000;
const REQUESTS: ScanRequest[] = [
  { id: 'sr_1', relyingParty: 'Front door', purpose: 'Open the front door', expiresAt: NOW + 4 * 60_000 + 5_000 },
  { id: 'sr_2', relyingParty: 'Workshop', purpose: 'Unlock the laser cutter', expiresAt: NOW + 45_000 },
  { id: 'sr_3', acceptedChips: ['spark2', 'apex'] },
];

const DOWN = '\u001b[B';
const ENTER = '\r';
const CTRL_C = '\u0003';

/** A terminal double: keys go in through `input`, the rendered prompt collects in `screen()`. */
function terminal() {
  const input = new PassThrough();
  let text = '';
  const output = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      text += chunk.toString();
      callback();
    },
  });
  // Types once the prompt has drawn itself, as a person would.
  const type = async (...keys: string[]): Promise<void> => {
    const deadline = Date.now() + 5000;
    while (!text.includes('Which one')) {
      if (Date.now() > deadline) throw new Error('the prompt never appeared');
      await new Promise((r) => setTimeout(r, 5));
    }
    for (const key of keys) input.write(key);
  };
  return { input, output, type, screen: () => text };
}

describe('describeRequest', () => {
  it('"<relying party>: <purpose> (expires in …)"', () => {
    expect(describeRequest(REQUESTS[0]!, NOW)).toBe('Front door: Open the front door (expires in 4 min 5 s)');
    expect(describeRequest(REQUESTS[1]!, NOW)).toBe('Workshop: Unlock the laser cutter (expires in 45 s)');
    expect(describeRequest(REQUESTS[2]!, NOW)).toBe('Request sr_3: no purpose given');
    expect(describeRequest(REQUESTS[1]!, NOW + 60_000)).toBe('Workshop: Unlock the laser cutter (expired)');
  });

  it('formatDuration rounds up to seconds and keeps two units at most', () => {
    expect(formatDuration(1)).toBe('1 s');
    expect(formatDuration(60_000)).toBe('1 min');
    expect(formatDuration(3_600_000 + 3 * 60_000 + 7_000)).toBe('1 h 3 min');
    expect(formatDuration(2 * 3_600_000)).toBe('2 h');
    expect(formatDuration(-5)).toBe('0 s');
  });
});

describe('promptChoice', () => {
  it('arrow down and enter pick the second request', async () => {
    const term = terminal();
    const picked = promptChoice(REQUESTS, { input: term.input, output: term.output, now: () => NOW });
    await term.type(DOWN, ENTER);
    expect(await picked).toBe('sr_2');
    expect(term.screen()).toContain('Front door: Open the front door (expires in 4 min 5 s)');
    expect(term.screen()).toContain('Workshop: Unlock the laser cutter (expires in 45 s)');
  });

  it('enter alone picks the first; the description names the id and the accepted chips', async () => {
    const term = terminal();
    const picked = promptChoice(REQUESTS, { input: term.input, output: term.output, now: () => NOW });
    await term.type(DOWN, DOWN);
    await new Promise((r) => setTimeout(r, 20));
    expect(term.screen()).toContain('Request sr_3, answered by spark2, apex');
    await term.type(ENTER);
    expect(await picked).toBe('sr_3');
  });

  it('resolves undefined when the signal aborts (the pending set changed, or the choice came from elsewhere)', async () => {
    const term = terminal();
    const controller = new AbortController();
    const picked = promptChoice(REQUESTS, { input: term.input, output: term.output, signal: controller.signal });
    await term.type(DOWN);
    controller.abort();
    expect(await picked).toBeUndefined();
    // Keys after the abort go nowhere.
    term.input.write(ENTER);
  });

  it('an aborted signal or nothing to choose: no prompt at all', async () => {
    const term = terminal();
    expect(await promptChoice([], { input: term.input, output: term.output })).toBeUndefined();
    expect(
      await promptChoice(REQUESTS, { input: term.input, output: term.output, signal: AbortSignal.abort() }),
    ).toBeUndefined();
    expect(term.screen()).toBe('');
  });

  it('Ctrl-C at the prompt calls onInterrupt (default: SIGINT to the agent) and resolves undefined', async () => {
    const term = terminal();
    let interrupted = 0;
    const picked = promptChoice(REQUESTS, {
      input: term.input,
      output: term.output,
      onInterrupt: () => (interrupted += 1),
    });
    await term.type(CTRL_C);
    expect(await picked).toBeUndefined();
    expect(interrupted).toBe(1);
  });
});
