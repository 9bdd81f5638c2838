import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ORIGINALITY_KEY_IDS } from '@tapline/core';
import { describe, expect, it } from 'vitest';
import { CLI_ROOT, parseJson, runCli } from './helpers/run-cli.js';

// These tests spawn the built CLI (`npx tsc -b && npx oclif manifest`; turbo's test task builds first).

// Research notes protocols.md §3.4 and §4.3.
const NTAG424 = {
  uid: '0463474AA26A80',
  sig: '27E9A50E6CA4BA9037C02F7D20A80D0284D0C1D83C67F5A5AC1D8A4EF86C9508417E4E9C6F85AA7920F0ABDED984CAF20467D66EA54BBF08',
};
const SPARK1 = { uid: 'E0040118009C870C', sig: '4B4E03E1211952EF6A5F9D84AB218CD4D7549D0CDF8CA8779F9AD16C9A9CBF3B' };
const ICODE_LSB_FIRST = {
  uid: 'EE5F9B00180104E0',
  sig: '32D9E7579CD77E6F1FA11419231E874826984C5F189FDE1421684563A9663377',
};

describe('tapline sig verify', () => {
  it('finds the NTAG 424 DNA key: {"valid":true,"key":"ntag424dna"}, exit 0', async () => {
    const run = await runCli(['sig', 'verify', '--uid', NTAG424.uid, '--sig', NTAG424.sig, '--json']);
    expect(run.code, run.stderr).toBe(0);
    expect(parseJson(run.stdout)).toEqual({ valid: true, key: 'ntag424dna' });
  });

  it('exits 1 with key null when the named chip’s key does not verify it', async () => {
    const run = await runCli([
      'sig',
      'verify',
      '--uid',
      NTAG424.uid,
      '--sig',
      NTAG424.sig,
      '--chip',
      'ntag413dna',
      '--json',
    ]);
    expect(run.code).toBe(1);
    expect(parseJson(run.stdout)).toEqual({ valid: false, key: null });

    const human = await runCli(['sig', 'verify', '--uid', SPARK1.uid, '--sig', `${SPARK1.sig.slice(0, -2)}3C`]);
    expect(human.code).toBe(1);
    expect(human.stdout).toBe('INVALID  no known originality key verifies this signature for this UID\n');
  });

  it('prints one human line for a Spark 1, and accepts an ICODE UID written LSB-first', async () => {
    const spark = await runCli(['sig', 'verify', '--uid', SPARK1.uid, '--sig', SPARK1.sig]);
    expect(spark.code, spark.stderr).toBe(0);
    expect(spark.stdout).toBe('VALID  originality signature of VivoKey Spark 1 (key vivokey-spark1)\n');

    const icode = await runCli(['sig', 'verify', '--uid', ICODE_LSB_FIRST.uid, '--sig', ICODE_LSB_FIRST.sig, '--json']);
    expect(icode.code, icode.stderr).toBe(0);
    expect(parseJson(icode.stdout)).toEqual({ valid: true, key: 'icode-dna' });
  });

  it('exits 2 on malformed hex, lengths that fit no key, and an unknown --chip', async () => {
    const odd = await runCli(['sig', 'verify', '--uid', '0463474AA26A8', '--sig', NTAG424.sig]);
    expect(odd.code).toBe(2);
    expect(odd.stderr).toMatch(/^Error \[INVALID_ARGUMENT\]: --uid must be an even number of hex digits/m);

    const lengths = await runCli(['sig', 'verify', '--uid', NTAG424.uid, '--sig', SPARK1.sig, '--json']);
    expect(lengths.code).toBe(2);
    expect(parseJson(lengths.stdout)).toMatchObject({
      error: { code: 'INVALID_ARGUMENT', message: expect.stringMatching(/7-byte UID with a 32-byte signature/) },
    });

    const chip = await runCli(['sig', 'verify', '--uid', NTAG424.uid, '--sig', NTAG424.sig, '--chip', 'ntag215']);
    expect(chip.code).toBe(2);
    expect(chip.stderr).toMatch(/--chip/);
  });

  it('offers exactly core’s originality keys as --chip values', () => {
    const manifest = JSON.parse(readFileSync(join(CLI_ROOT, 'oclif.manifest.json'), 'utf8')) as {
      commands: Record<string, { flags: Record<string, { options?: string[] }> }>;
    };
    expect(manifest.commands['sig:verify']?.flags['chip']?.options).toEqual([...ORIGINALITY_KEY_IDS]);
  });
});
