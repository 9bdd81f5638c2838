#!/usr/bin/env node
// Tapline's own per-APDU cost, without pcscd: the full reader stack (ReaderManager → PcscReader → native PC/SC
// transport) over core's instant fake `pcsclite` binding, against calling that fake binding directly, in one run.
// bench/apdu-overhead.mjs measures the same stack against a real pcscd; this one separates Tapline's JavaScript from
// pcscd/vpcd latency. Build core first (`cd packages/core && npx tsc -b`).
import * as core from '../packages/core/dist/index.js';
import { fakePcsclite } from '../packages/core/dist/testing/index.js';

const N = Number(process.argv.find((a) => a.startsWith('--n='))?.slice(4) ?? 20_000);
const NAME = 'ACS ACR122U PICC Interface 00 00';
const APDU = Uint8Array.from(Buffer.from('00a4040c07d276000085010100', 'hex'));

const fake = fakePcsclite({ readers: [NAME] });
const transport = core.createNativePcscTransport({
  logger: core.silentLogger,
  loadBinding: () => Promise.resolve(fake.module),
});
const container = core.createContainer({
  config: { transports: ['pcsc'] },
  logger: core.silentLogger,
  pcscTransport: transport,
});
const manager = container.resolve(core.ReaderManager);
const hold = manager.hold();
await new Promise((resolve) => setTimeout(resolve, 50));
const reader = fake.last.readers.get(NAME);
reader.onTransmit = (data) =>
  data[0] === 0xff ? Uint8Array.of(0x04, 0x51, 0x7c, 0xa2, 0x3b, 0x6e, 0x80, 0x90, 0x00) : Uint8Array.of(0x90, 0x00);
const arriving = core.waitForTag(manager.tags$, { timeoutMs: 3000 });
reader.insert(Uint8Array.from(Buffer.from('3b8180018080', 'hex')));
const tag = await arriving;

const direct = () =>
  new Promise((resolve, reject) =>
    reader.transmit(Buffer.from(APDU), 258, 2, (error, data) => (error ? reject(error) : resolve(data))),
  );
const tapline = () => tag.reader.transmit(tag, 'iso14443-4', APDU);
const perCallUs = async (run) => {
  reader.calls.length = 0; // the fake records every call; keep memory flat
  const start = process.hrtime.bigint();
  for (let i = 0; i < N; i++) await run();
  return Number(process.hrtime.bigint() - start) / N / 1000;
};

const rounds = [];
for (let round = 0; round < 5; round++)
  rounds.push({ direct: await perCallUs(direct), tapline: await perCallUs(tapline) });
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const d = median(rounds.map((r) => r.direct));
const t = median(rounds.map((r) => r.tapline));
console.log(`Tapline's own cost per APDU, ${N} calls × 5 rounds, node ${process.version}`);
console.log(`  fake binding, called directly      ${d.toFixed(2)} µs`);
console.log(`  Tapline reader.transmit over it    ${t.toFixed(2)} µs`);
console.log(`  Tapline's JavaScript per APDU      ${(t - d).toFixed(2)} µs (ratio ${(t / d).toFixed(2)}×)`);
await hold.release();
process.exit(0);
