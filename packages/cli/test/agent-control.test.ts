import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, parseJson, runCli } from './helpers/run-cli.js';

// These tests spawn the built CLI (`npx tsc -b && npx oclif manifest`) against a real control server on a Unix socket
// in a private temporary folder, the one a running agent would open.

type ControlModule = typeof import('@tapline/agent/control');
type AgentStatus = import('@tapline/agent/control').AgentStatus;
type ControlServer = import('@tapline/agent/control').ControlServer;

const posixOnly = process.platform === 'win32' ? describe.skip : describe;

const NOW = Date.now();
const STATUS: AgentStatus = {
  v: 1,
  pid: process.pid,
  startedAt: new Date(NOW - 3_600_000).toISOString(),
  associated: { sub: '5f3c9a', issuer: 'http://127.0.0.1:4000/oidc' },
  platform: {
    url: 'http://127.0.0.1:4000',
    reachable: false,
    lastError: { code: 'PLATFORM_UNAVAILABLE', message: 'down' },
  },
  readers: [
    {
      name: 'Tapline Simulated Reader',
      driver: 'sim',
      capabilities: ['iso14443a-raw', 'iso14443-4'],
      tag: { uid: '04a1b2c3d4e5f6', chip: 'spark2' },
    },
  ],
  pending: [
    {
      id: 'sr_door',
      relyingParty: 'Front door',
      purpose: 'Open the front door',
      createdAt: new Date(NOW).toISOString(),
      expiresAt: new Date(NOW + 10 * 60_000).toISOString(),
      acceptedChips: ['spark2'],
    },
    { id: 'sr_laser', relyingParty: 'Workshop', purpose: 'Unlock the laser cutter', chosen: true },
  ],
  lastScans: [
    { requestId: 'sr_old', at: new Date(NOW - 60_000).toISOString(), outcome: 'answered', chip: 'spark2' },
    {
      requestId: 'sr_bad',
      at: new Date(NOW - 120_000).toISOString(),
      outcome: 'failed',
      error: { code: 'TAG_LOST', message: 'The tag left the reader.' },
    },
  ],
};

let dir: string;
let socket: string;
let server: ControlServer;
const chosen: string[] = [];

beforeAll(async () => {
  if (process.platform === 'win32') return;
  dir = mkdtempSync(join(tmpdir(), 'tapline-cli-agent-'));
  socket = join(dir, 'agent.sock');
  // The same subpath `agent status` and `agent choose` load: the control channel without the agent's runtime.
  const control: ControlModule = await import('@tapline/agent/control');
  server = await control.startControlServer({
    path: socket,
    handlers: {
      status: () => STATUS,
      choose: (id) => {
        if (id !== 'sr_door' && id !== 'sr_laser') {
          return { error: { code: 'UNKNOWN_REQUEST', message: `No pending request has the id ${id}.` } };
        }
        chosen.push(id);
        return { chosen: id };
      },
    },
  });
});

afterAll(async () => {
  await server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('@tapline/agent/control', () => {
  it('is the control channel alone, without the agent runtime', async () => {
    const control = await import('@tapline/agent/control');
    expect(typeof control.sendControl).toBe('function');
    expect(typeof control.controlSocketPath).toBe('function');
    expect(Object.keys(control)).not.toContain('runAgent');
    expect(Object.keys(control)).not.toContain('serviceDefinition');
  });
});

posixOnly('tapline agent status', () => {
  it('--json prints the AgentStatus exactly', async () => {
    const run = await runCli(['agent', 'status', '--json'], { env: { TAPLINE_AGENT_SOCKET: socket } });
    expect(run.code, run.stderr).toBe(0);
    expect(parseJson(run.stdout)).toEqual(STATUS);
  });

  it('prints a human summary: association, platform, readers, pending requests, last scans', async () => {
    const run = await runCli(['agent', 'status'], { env: { TAPLINE_AGENT_SOCKET: socket } });
    expect(run.code, run.stderr).toBe(0);
    const out = run.stdout;
    expect(out).toMatch(new RegExp(`^Agent running \\(pid ${process.pid}\\) since ${STATUS.startedAt}$`, 'm'));
    expect(out).toMatch(/^Associated as 5f3c9a with http:\/\/127\.0\.0\.1:4000\/oidc$/m);
    expect(out).toMatch(
      /^Platform http:\/\/127\.0\.0\.1:4000: unreachable; last error \[PLATFORM_UNAVAILABLE\] down$/m,
    );
    expect(out).toMatch(/^ {2}Tapline Simulated Reader \(driver sim\), tag 04A1B2C3D4E5F6 \(spark2\)$/m);
    expect(out).toMatch(/^Pending requests \(2\):$/m);
    expect(out).toMatch(/^ {4}sr_door {2}Front door: Open the front door \(expires in (9|10) min( \d+ s)?\)$/m);
    expect(out).toMatch(/^ {2}\* sr_laser {2}Workshop: Unlock the laser cutter {2}\(the next tap answers it\)$/m);
    expect(out).toMatch(/ sr_old {2}answered with a spark2$/m);
    expect(out).toMatch(/ sr_bad {2}failed: \[TAG_LOST\] The tag left the reader\.$/m);
    expect(run.stderr).toBe('');
  });

  it('no agent running: exit 1, AGENT_NOT_RUNNING with the hint to start one', async () => {
    const env = { TAPLINE_AGENT_SOCKET: join(dir, 'nobody-home.sock') };
    const human = await runCli(['agent', 'status'], { env });
    expect(human.code).toBe(1);
    expect(human.stdout).toBe('');
    expect(human.stderr).toMatch(/^Error \[AGENT_NOT_RUNNING\]: No agent is running\.$/m);
    expect(human.stderr).toMatch(/^Hint: Start it with `tapline agent`/m);

    const json = await runCli(['agent', 'status', '--json'], { env });
    expect(json.code).toBe(1);
    const { error } = parseJson(json.stdout) as { error: { code: string; hint: string } };
    expect(error.code).toBe('AGENT_NOT_RUNNING');
    expect(error.hint).toMatch(/tapline agent/);
  });
});

posixOnly('tapline agent choose', () => {
  it('sends the choice; prints "Chosen: ID", or {"chosen":"ID"} with --json', async () => {
    const env = { TAPLINE_AGENT_SOCKET: socket };
    const human = await runCli(['agent', 'choose', 'sr_door'], { env });
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toBe('Chosen: sr_door; the next tap answers it.\n');

    const json = await runCli(['agent', 'choose', 'sr_laser', '--json'], { env });
    expect(json.code, json.stderr).toBe(0);
    expect(parseJson(json.stdout)).toEqual({ chosen: 'sr_laser' });
    expect(chosen).toEqual(['sr_door', 'sr_laser']);
  });

  it('an id the agent cannot choose: INVALID_ARGUMENT (exit 2) with the reason, and nothing chosen', async () => {
    const before = chosen.length;
    const run = await runCli(['agent', 'choose', 'sr_nope', '--json'], { env: { TAPLINE_AGENT_SOCKET: socket } });
    expect(run.code).toBe(2);
    expect(parseJson(run.stdout)).toEqual({
      error: {
        code: 'INVALID_ARGUMENT',
        message: 'No pending request has the id sr_nope.',
        hint: 'Run `tapline agent status` to see the pending requests and their ids.',
        details: { reason: 'UNKNOWN_REQUEST', id: 'sr_nope' },
      },
    });
    expect(chosen.length).toBe(before);
  });

  it('no agent running: exit 1 with AGENT_NOT_RUNNING; a missing ID is a usage error', async () => {
    const run = await runCli(['agent', 'choose', 'sr_door'], {
      env: { TAPLINE_AGENT_SOCKET: join(dir, 'nobody-home.sock') },
    });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^Error \[AGENT_NOT_RUNNING\]/m);

    const usage = await runCli(['agent', 'choose'], { env: { TAPLINE_AGENT_SOCKET: socket } });
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/Missing 1 required arg/);
  });
});

describe('tapline agent service', () => {
  it("--print --platform linux: the unit on stdout (runs this CLI's `agent`), the steps on stderr", async () => {
    const run = await runCli(['agent', 'service', '--print', '--platform', 'linux']);
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stdout.split('\n');
    expect(lines).toContain(`ExecStart="${process.execPath}" "${BIN}" "agent"`);
    expect(lines).toContain('Restart=on-failure');
    expect(lines).toContain('WantedBy=default.target');
    // The test environment's config folder is passed through, so that the service reads the same config.
    expect(lines.filter((l) => l.startsWith('Environment="TAPLINE_CONFIG_DIR='))).toHaveLength(1);
    expect(run.stdout).not.toMatch(/TAPLINE_API_KEY/);
    expect(run.stderr).toMatch(
      /systemctl --user daemon-reload && systemctl --user enable --now tapline-agent\.service/,
    );
    expect(run.stderr).toMatch(/tapline agent service --print --platform linux > /);
  });

  it('passes the association settings through (issuer, client id, credentials file), never the API key', async () => {
    const env = {
      TAPLINE_ISSUER: 'https://auth.example.com/oidc',
      TAPLINE_CLIENT_ID: 'tapline-test',
      TAPLINE_CREDENTIALS_FILE: join(tmpdir(), 'tapline creds', 'credentials.json'),
      TAPLINE_PLATFORM_URL: 'https://platform.example.com',
      TAPLINE_API_KEY: 'tk_live_do-not-leak',
      TAPLINE_ACCESS_TOKEN: 'do-not-leak-either',
    };
    const run = await runCli(['agent', 'service', '--print', '--platform', 'linux'], { env });
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stdout.split('\n');
    for (const name of [
      'TAPLINE_ISSUER',
      'TAPLINE_CLIENT_ID',
      'TAPLINE_CREDENTIALS_FILE',
      'TAPLINE_PLATFORM_URL',
    ] as const) {
      expect(lines).toContain(`Environment="${name}=${env[name]}"`);
    }
    expect(run.stdout).not.toMatch(/API_KEY|ACCESS_TOKEN|do-not-leak/);
  });

  it('--print --platform darwin: a plist; --platform win32: the Task Scheduler script', async () => {
    const mac = await runCli(['agent', 'service', '--print', '--platform', 'darwin']);
    expect(mac.code, mac.stderr).toBe(0);
    expect(mac.stdout.startsWith('<?xml version="1.0" encoding="UTF-8"?>')).toBe(true);
    expect(mac.stdout).toContain(`<string>${BIN}</string>`);
    expect(mac.stdout).toMatch(/<key>KeepAlive<\/key>/);
    expect(mac.stderr).toMatch(/launchctl bootstrap gui\/\$\(id -u\)/);

    const win = await runCli(['agent', 'service', '--print', '--platform', 'win32']);
    expect(win.code, win.stderr).toBe(0);
    expect(win.stdout).toMatch(/^Register-ScheduledTask -TaskName 'Tapline Agent'/m);
    expect(win.stdout).toContain(`-Execute '${process.execPath}'`);
    expect(win.stderr).toMatch(/schtasks \/Create \/TN "Tapline Agent" \/SC ONLOGON/);
    expect(win.stderr).toMatch(/NSSM/);
  });

  it('--json returns the definition and the instructions as one object', async () => {
    const run = await runCli(['agent', 'service', '--print', '--platform', 'linux', '--json']);
    expect(run.code, run.stderr).toBe(0);
    const json = parseJson(run.stdout) as Record<string, string>;
    expect(json['kind']).toBe('systemd-user');
    expect(json['fileName']).toBe('tapline-agent.service');
    expect(json['text']).toMatch(/^\[Service\]$/m);
    expect(json['instructions']).toMatch(/journalctl --user/);
  });

  it('without --print: exit 2, installing is left to the user, and the command to print it', async () => {
    const run = await runCli(['agent', 'service']);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(/left to you/);
    expect(run.stderr).toMatch(/tapline agent service --print/);

    const json = await runCli(['agent', 'service', '--json']);
    expect(json.code).toBe(2);
    expect((parseJson(json.stdout) as { error: { code: string } }).error.code).toBe('INVALID_ARGUMENT');
  });

  it('an unknown --platform is a usage error', async () => {
    const run = await runCli(['agent', 'service', '--print', '--platform', 'beos']);
    expect(run.code).toBe(2);
  });
});

describe('help', () => {
  it('`agent` is both a command and a topic: `agent status --help` works', async () => {
    const run = await runCli(['agent', 'status', '--help']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/\$ tapline agent status/);
    const topic = await runCli(['agent', 'service', '--help']);
    expect(topic.code, topic.stderr).toBe(0);
    expect(topic.stdout).toMatch(/--print/);
  });
});
