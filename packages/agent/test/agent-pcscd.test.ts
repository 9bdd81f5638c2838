import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, onTestFinished } from 'vitest';
import { FileTokenStore, createDeviceAssociation, credentialsFromTokens } from '@tapline/core';
import { startReferencePlatform } from '@tapline/test-fixtures';
import { acr122Emulation, skipUnlessPcsc, startPcscd } from '@tapline/test-fixtures/vpcd';
import type { AgentLine } from '../src/index.js';

// The agent end to end through a real pcscd: a private pcscd with an ACR122U vpcd reader (test-fixtures' vpcd
// stack), the reference platform, and the `tapline-agent` executable associated the way `tapline login` does it.
// Needs the built agent and test-fixtures (the card worker runs from its dist).

const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'tapline-agent.js');

describe('tapline-agent through a real pcscd', { timeout: 30_000 }, () => {
  it('heals after pcscd is killed and restarted, then answers a request with a Spark 2 on the ACR122U', async (context) => {
    skipUnlessPcsc(context);
    const pcscd = await startPcscd({ emulation: acr122Emulation });
    onTestFinished(() => pcscd.stop());
    const platform = await startReferencePlatform();
    onTestFinished(() => platform.close());

    // Associated as `tapline login` would be, approved by the platform's "scan on the phone" hook.
    const configDir = mkdtempSync(join(tmpdir(), 'tapline-agent-pcscd-'));
    onTestFinished(() => rmSync(configDir, { recursive: true, force: true }));
    writeFileSync(join(configDir, 'config.json'), JSON.stringify({ transports: ['pcsc'] }));
    const association = createDeviceAssociation({
      issuer: platform.issuerUrl,
      clientId: platform.desktopClientId,
      allowInsecureHttp: true,
    });
    const login = await association.start();
    await platform.approveDevice(login.userCode);
    const tokens = await association.wait(login.handle, { signal: AbortSignal.timeout(10_000) });
    await new FileTokenStore({ file: join(configDir, 'credentials.json') }).save(
      credentialsFromTokens(tokens, { issuer: platform.issuerUrl, clientId: platform.desktopClientId }),
    );

    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TAPLINE_')) env[k] = v;
    const agent = spawn(process.execPath, [BIN, '--platform', platform.url.href, '--json', '--no-control-socket'], {
      env: { ...env, ...pcscd.env, TAPLINE_CONFIG_DIR: configDir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const killer = setTimeout(() => agent.kill('SIGKILL'), 25_000);
    onTestFinished(() => {
      clearTimeout(killer);
      agent.kill('SIGKILL');
    });
    let stdout = '';
    let stderr = '';
    agent.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    agent.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const exited = new Promise<number | null>((resolve) => agent.on('close', resolve));
    const lines = (): AgentLine[] =>
      stdout
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as AgentLine);
    const until = async (what: string, predicate: (all: AgentLine[]) => boolean, ms = 8000): Promise<void> => {
      const deadline = Date.now() + ms;
      while (!predicate(lines())) {
        if (Date.now() > deadline || agent.exitCode !== null) {
          throw new Error(`no ${what} within ${ms} ms:\n${stdout}\n${stderr}\n${pcscd.log().slice(-2048)}`);
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    };
    const count = (event: string) => (all: AgentLine[]) => all.filter((l) => l.event === event).length;

    await until('ACR122U attached through the acr122 driver', (all) =>
      all.some((l) => l.event === 'reader-attached' && l['driver'] === 'acr122'),
    );
    await until('the first listing', (all) => count('idle')(all) === 1);
    const attachedBefore = count('reader-attached')(lines());

    await pcscd.kill();
    await until('the PC/SC outage', (all) => all.some((l) => l.event === 'transport-unavailable'));
    await pcscd.restart();
    await until('the readers back', (all) => count('reader-attached')(all) > attachedBefore);

    const request = platform.createScanRequest({ purpose: 'After the pcscd restart' });
    await until('the request offered', (all) => all.some((l) => l.event === 'ready' && l['request'] === request.id));
    await pcscd.card().insert({ kind: 'spark2' });
    await until('the answer', (all) => all.some((l) => l.event === 'completed' && l['request'] === request.id));
    expect(platform.scanRequest(request.id)?.state).toBe('answered');
    expect(lines().find((l) => l.event === 'completed')?.['result']).toMatchObject({ chip: 'spark2' });

    agent.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(lines().at(-1)).toMatchObject({ answered: 1, failed: 0, event: 'stopped', reason: 'aborted' });
  });
});
