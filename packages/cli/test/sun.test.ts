import { computeApexSignature, computeSdmMac, fromHex, toHex } from '@tapline/core';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI_ROOT, parseJson, runCli, type CliRun } from './helpers/run-cli.js';

// These tests spawn the built CLI (`npx tsc -b && npx oclif manifest`; turbo's test task builds first).

const ZERO = '00000000000000000000000000000000';
// AN12196 Table 2-4.
const AN12196_URL = 'https://ntag.nxp.com/424?e=EF963FF7828658A599F3041510671E88&c=94EED9EE65337086';
// AN12196 p. 18 (sdm-backend tests): encrypted PICCData and file data, MAC over "<ENC>&cmac=".
const FILE_DATA_URL =
  'https://www.my424dna.com/?picc_data=FD91EC264309878BE6345CBE53BADF40&enc=CEE9A53E3E463EF1F459635736738962&cmac=ECC1E7F6C6C73BF6';

// A key that must never show up in output: AN12196 Table 1's, with a plain-mirror message built under it.
const SECRET = '5ACE7E50AB65D5D51FD5BF5A16B8205B';
const UID = '04C767F2066180';
const MAC = toHex(computeSdmMac({ fileReadKey: fromHex(SECRET), uid: fromHex(UID), counter: 0x12 })).toUpperCase();
const TRIPLE = `${UID}-000012-${MAC}`;

function expectNoSecret(run: CliRun, secret = SECRET): void {
  const all = (run.stdout + run.stderr).toLowerCase();
  expect(all).not.toContain(secret.toLowerCase());
  // Not even a long piece of it.
  expect(all).not.toContain(secret.toLowerCase().slice(4, 20));
}

describe('tapline sun verify', () => {
  it('verifies the AN12196 URL: JSON, exit 0', async () => {
    const run = await runCli(['sun', 'verify', AN12196_URL, '--key', ZERO, '--json']);
    expect(run.code, run.stderr).toBe(0);
    expect(parseJson(run.stdout)).toEqual({ valid: true, uid: '04de5f1eacc040', counter: 61, mode: 'sdm-encrypted' });
  });

  it('decrypts encrypted file data and prints it as hex', async () => {
    const run = await runCli(['sun', 'verify', FILE_DATA_URL, '--key', ZERO, '--json']);
    expect(run.code, run.stderr).toBe(0);
    expect(parseJson(run.stdout)).toEqual({
      valid: true,
      uid: '04958caa5c5e80',
      counter: 8,
      mode: 'sdm-encrypted',
      fileData: '78'.repeat(16),
    });
  });

  it('verifies a bare UID-CTR-MAC and a VivoKey sun= URL, one human line, and never prints the key', async () => {
    const bare = await runCli(['sun', 'verify', TRIPLE, '--key', SECRET]);
    expect(bare.code, bare.stderr).toBe(0);
    expect(bare.stdout).toBe(`VALID  uid ${UID}  counter 18  (sdm-plain)\n`);
    expectNoSecret(bare);

    const url = await runCli(['sun', 'verify', `https://vivokey.co/0123/?sun=${TRIPLE}`, '--key', SECRET, '--json']);
    expect(url.code, url.stderr).toBe(0);
    expect(parseJson(url.stdout)).toEqual({ valid: true, uid: UID.toLowerCase(), counter: 18, mode: 'sdm-plain' });
    expectNoSecret(url);
  });

  it('takes the key from TAPLINE_SUN_KEY', async () => {
    const run = await runCli(['sun', 'verify', TRIPLE, '--json'], { env: { TAPLINE_SUN_KEY: SECRET } });
    expect(run.code, run.stderr).toBe(0);
    expect(parseJson(run.stdout)).toMatchObject({ valid: true });
    expectNoSecret(run);
  });

  it('exits 1 with valid:false and a reason when the MAC does not match', async () => {
    const wrongKey = '5ACE7E50AB65D5D51FD5BF5A16B8205C';
    const json = await runCli(['sun', 'verify', TRIPLE, '--key', wrongKey, '--json']);
    expect(json.code).toBe(1);
    expect(parseJson(json.stdout)).toEqual({
      valid: false,
      uid: UID.toLowerCase(),
      counter: 18,
      mode: 'sdm-plain',
      reason: 'bad-mac',
      message: expect.stringMatching(/MAC does not match/),
    });
    expectNoSecret(json, wrongKey);

    const human = await runCli(['sun', 'verify', AN12196_URL.replace('c=94', 'c=95'), '--key', ZERO]);
    expect(human.code).toBe(1);
    expect(human.stdout).toMatch(
      /^INVALID \[bad-mac\] {2}uid 04DE5F1EACC040 {2}counter 61 {2}\(sdm-encrypted\) {2}The MAC/,
    );
    expect(human.stdout.trim().split('\n')).toHaveLength(1);
  });

  it('reports a wrong meta-read key as bad-picc-data with no UID or counter', async () => {
    const run = await runCli(['sun', 'verify', AN12196_URL, '--key', ZERO, '--meta-key', SECRET, '--json']);
    expect(run.code).toBe(1);
    expect(parseJson(run.stdout)).toMatchObject({ valid: false, uid: null, counter: null, reason: 'bad-picc-data' });
    expectNoSecret(run);
  });

  it('verifies an Apex s= signature with --salt, and exits 2 without it', async () => {
    const salt = '0F1E2D3C4B5A69788796A5B4C3D2E1F0';
    const uid = 'FF0A01128731FBB6';
    const signature = toHex(
      computeApexSignature({ key: fromHex(SECRET), salt: fromHex(salt), uid: fromHex(uid), counter: 5 }),
    ).toUpperCase();
    const url = `https://vivokey.com/demo/sigtest/?s=${uid}-000005-${signature}`;
    const ok = await runCli(['sun', 'verify', url, '--key', SECRET, '--salt', salt, '--json']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(parseJson(ok.stdout)).toEqual({ valid: true, uid: uid.toLowerCase(), counter: 5, mode: 'apex-cmac' });
    expectNoSecret(ok);
    expectNoSecret(ok, salt);

    const noSalt = await runCli(['sun', 'verify', url, '--key', SECRET]);
    expect(noSalt.code).toBe(2);
    expect(noSalt.stderr).toMatch(/^Error \[INVALID_ARGUMENT\]: .*salt/m);
    expectNoSecret(noSalt);
  });

  it('exits 2 on malformed input, saying what is wrong', async () => {
    const badHex = await runCli(['sun', 'verify', AN12196_URL.replace('E88&', 'E8&'), '--key', ZERO]);
    expect(badHex.code).toBe(2);
    expect(badHex.stderr).toMatch(
      /^Error \[INVALID_ARGUMENT\]: "e=" \(the encrypted PICCData\) must be 32 hex digits/m,
    );
    expect(badHex.stdout).toBe('');

    const notSun = await runCli(['sun', 'verify', 'https://example.com/?a=1', '--key', ZERO, '--json']);
    expect(notSun.code).toBe(2);
    expect(parseJson(notSun.stdout)).toMatchObject({
      error: { code: 'INVALID_ARGUMENT', message: expect.stringMatching(/no SUN parameters/) },
    });

    const missingKey = await runCli(['sun', 'verify', TRIPLE]);
    expect(missingKey.code).toBe(2);
    expect(missingKey.stderr).toMatch(/Missing required flag key/);
  });

  it('exits 2 on a malformed key without echoing any of it', async () => {
    for (const key of [SECRET.slice(0, 30), `${SECRET.slice(0, 30)}ZZ`, `${SECRET}00`]) {
      const run = await runCli(['sun', 'verify', TRIPLE, '--key', key, '--json']);
      expect(run.code).toBe(2);
      expect(parseJson(run.stdout)).toMatchObject({
        error: { code: 'INVALID_ARGUMENT', message: expect.stringMatching(/^--key must be/) },
      });
      expectNoSecret(run, key.slice(0, 30));
    }
    const meta = await runCli(['sun', 'verify', AN12196_URL, '--key', ZERO, '--meta-key', SECRET.slice(2)]);
    expect(meta.code).toBe(2);
    expect(meta.stderr).toMatch(
      /^Error \[INVALID_ARGUMENT\]: --meta-key must be 32 hex digits \(16 bytes\); got 30\./m,
    );
    expectNoSecret(meta, SECRET.slice(2));
  });
});

describe('help for the offline verifiers', () => {
  it('sun verify --help and sig verify --help do not load @tapline/core', async () => {
    for (const command of ['sun', 'sig']) {
      const log = join(mkdtempSync(join(tmpdir(), 'tapline-imports-')), 'imports.log');
      const run = await runCli([command, 'verify', '--help'], {
        env: { TAPLINE_IMPORT_LOG: log },
        nodeArgs: ['--import', join(CLI_ROOT, 'test', 'helpers', 'record-imports.mjs')],
      });
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout).toMatch(/Exit status: 0 valid/);
      const modules = readFileSync(log, 'utf8').split('\n');
      expect(modules.filter((m) => /packages\/core\/|@tapline\/core|rxjs|tsyringe/.test(m))).toEqual([]);
    }
  });
});
