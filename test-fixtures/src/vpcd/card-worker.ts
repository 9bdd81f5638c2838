// The worker thread behind IsolatedVirtualCard: one VirtualCard, driven by messages. See isolated-card.ts for why the
// card must not share a thread with the PC/SC client.
import { parentPort, workerData } from 'node:worker_threads';
import { isTaplineError } from '@tapline/core';
import { createVirtualChip } from '../chips/index.js';
import { acr1252Emulation } from './acr1252.js';
import { acr122Emulation } from './acr122.js';
import type { ReaderEmulation } from './emulation.js';
import {
  prefixMatcher,
  type ApduRule,
  type CardWorkerData,
  type CardWorkerMessage,
  type CardWorkerRequest,
  type VirtualCardSnapshot,
} from './isolated-card.js';
import { utrust3720Emulation } from './utrust3720.js';
import { VirtualCard, type ApduHookResult } from './vpicc.js';

const EMULATIONS: Readonly<Record<string, ReaderEmulation>> = {
  [acr122Emulation.id]: acr122Emulation,
  [acr1252Emulation.id]: acr1252Emulation,
  [utrust3720Emulation.id]: utrust3720Emulation,
};

interface ActiveRule {
  readonly match: (apdu: Uint8Array) => boolean;
  readonly action: ApduRule['action'];
  remaining: number;
}

const port = parentPort;
if (!port) throw new Error('card-worker.js runs as a worker thread only');
const data = workerData as CardWorkerData;
const emulation = EMULATIONS[data.emulationId];
if (!emulation) throw new Error(`unknown emulation ${data.emulationId}`);

const post = (message: CardWorkerMessage): void => port.postMessage(message);
let rules = compile(data.rules);
let vpcdPort = 0;
let lastAnsweredAt: number | undefined;
let generation = 0;

const card = new VirtualCard({
  port: () => vpcdPort,
  host: data.host,
  emulation,
  ...(data.insertTimeoutMs === undefined ? {} : { insertTimeoutMs: data.insertTimeoutMs }),
  ...(data.history === undefined ? {} : { history: data.history }),
  onApdu: (apdu): ApduHookResult => {
    if (data.observe) post({ type: 'apdu', command: apdu });
    const rule = rules.find((r) => r.remaining > 0 && r.match(apdu));
    if (rule) rule.remaining--;
    const decision = rule?.action;
    // When the answer goes out, for callers that check the card kept answering while their own thread was blocked.
    if (decision !== 'never') lastAnsweredAt = Date.now() + (decision?.delayMs ?? 0);
    return decision;
  },
});

function compile(list: readonly ApduRule[]): ActiveRule[] {
  return list.map((rule) => ({
    match: prefixMatcher(rule.prefix),
    action: rule.action,
    remaining: rule.times ?? Number.POSITIVE_INFINITY,
  }));
}

function snapshot(): VirtualCardSnapshot {
  return {
    connected: card.connected,
    wanted: card.wanted,
    powered: card.powered,
    counters: card.counters,
    apdus: [...card.apdus],
    chipExchanges: [...card.chipExchanges],
    errors: card.errors.map((error) => error.message),
    lastAnsweredAt,
  };
}

async function handle(request: CardWorkerRequest): Promise<unknown> {
  switch (request.type) {
    case 'insert': {
      vpcdPort = request.port;
      const chip = request.chip ? createVirtualChip(request.chip.kind, request.chip.options) : card.chip;
      const visible = await card.insert(chip);
      if (visible) {
        const current = ++generation;
        void card.whenDisconnected().then(() => {
          if (current === generation) post({ type: 'disconnected' });
        });
      }
      return visible;
    }
    case 'remove':
      generation++;
      await card.remove();
      return undefined;
    case 'rules':
      rules = compile(request.rules);
      return undefined;
    case 'snapshot':
      return snapshot();
  }
}

port.on('message', (request: CardWorkerRequest) => {
  handle(request).then(
    (value) => post({ type: 'reply', id: request.id, value }),
    (error: unknown) =>
      post({
        type: 'failure',
        id: request.id,
        error: isTaplineError(error)
          ? { code: error.code, message: error.message, ...(error.hint === undefined ? {} : { hint: error.hint }) }
          : { message: error instanceof Error ? error.message : String(error) },
      }),
  );
});
