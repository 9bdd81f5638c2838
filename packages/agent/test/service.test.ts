import { describe, expect, it } from 'vitest';
import { ErrorCode, TaplineError } from '@tapline/core';
import { LAUNCHD_LABEL, SYSTEMD_UNIT, serviceDefinition, type ServiceOptions } from '../src/service.js';

// Paths with spaces and with the characters each format treats specially.
const POSIX: ServiceOptions = {
  nodePath: '/opt/node 20/bin/node',
  agentScript: '/home/ada lovelace/tapline/bin/run.js',
  args: ['agent'],
  home: '/home/ada lovelace',
};

function lines(text: string): string[] {
  return text.split('\n');
}

function invalid(fn: () => unknown, message: RegExp): void {
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(TaplineError);
  expect((thrown as TaplineError).code).toBe(ErrorCode.InvalidArgument);
  expect((thrown as TaplineError).message).toMatch(message);
}

/**
 * A small XML well-formedness check for the plist subset: declaration, doctype, comments, elements balanced and
 * properly nested, text without raw `<` or stray `&`.
 */
function assertWellFormedXml(text: string): string[] {
  let rest = text.replace(/^<\?xml [^?]*\?>\s*/, '').replace(/<!DOCTYPE[^>]*>\s*/, '');
  const stack: string[] = [];
  const elements: string[] = [];
  while (rest.length > 0) {
    const comment = /^<!--([\s\S]*?)-->/.exec(rest);
    if (comment) {
      expect(comment[1]).not.toContain('--');
      rest = rest.slice(comment[0].length);
      continue;
    }
    const tag = /^<(\/?)([A-Za-z][\w.-]*)((?:\s+[\w.-]+="[^"<&]*")*)\s*(\/?)>/.exec(rest);
    if (tag) {
      const [whole, closing, name, , selfClosing] = tag;
      if (closing) expect(stack.pop(), `</${name}> closes the wrong element`).toBe(name);
      else if (!selfClosing) stack.push(name!);
      elements.push(`${closing}${name}`);
      rest = rest.slice(whole.length);
      continue;
    }
    const textRun = /^[^<]+/.exec(rest);
    if (!textRun) throw new Error(`not well-formed near: ${rest.slice(0, 40)}`);
    expect(textRun[0]).not.toMatch(/&(?!(?:amp|lt|gt|quot|apos);)/);
    rest = rest.slice(textRun[0].length);
  }
  expect(stack).toEqual([]);
  return elements;
}

/** The <string> values of the plist, unescaped. */
function plistStrings(text: string): string[] {
  return [...text.matchAll(/<string>([^<]*)<\/string>/g)].map((m) =>
    m[1]!
      .replace(/&lt;/g, '<')
      .replace(/&gt;/g, '>')
      .replace(/&quot;/g, '"')
      .replace(/&apos;/g, "'")
      .replace(/&amp;/g, '&'),
  );
}

/** Splits an ExecStart= value the way systemd does for double-quoted words, and undoes its escapes. */
function systemdWords(value: string): string[] {
  return [...value.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) =>
    m[1]!.replace(/\\(.)/g, '$1').replace(/%%/g, '%').replace(/\$\$/g, '$'),
  );
}

describe('serviceDefinition: systemd user unit', () => {
  const unit = serviceDefinition('linux', { ...POSIX, env: { TAPLINE_LOG_LEVEL: 'info' } });

  it('is a user unit with restart on failure, backoff and start limits', () => {
    expect(unit.kind).toBe('systemd-user');
    expect(unit.fileName).toBe(SYSTEMD_UNIT);
    expect(unit.installPath).toBe('/home/ada lovelace/.config/systemd/user/tapline-agent.service');
    const l = lines(unit.text);
    for (const line of [
      '[Unit]',
      '[Service]',
      '[Install]',
      'Type=simple',
      'Restart=on-failure',
      'RestartSec=5',
      'RestartSteps=10',
      'RestartMaxDelaySec=300',
      'RestartPreventExitStatus=2',
      'StartLimitIntervalSec=600',
      'StartLimitBurst=10',
      'WantedBy=default.target',
      'Environment="TAPLINE_LOG_LEVEL=info"',
    ]) {
      expect(l, line).toContain(line);
    }
    // Start limits belong to [Unit] (systemd ignores them in [Service] since v230).
    expect(l.indexOf('StartLimitBurst=10')).toBeLessThan(l.indexOf('[Service]'));
    // A user unit cannot depend on the system's pcscd.socket; the unit says why instead of pretending.
    expect(l.filter((x) => /^(After|Wants|Requires)=/.test(x))).toEqual([]);
    expect(unit.text).toMatch(/^# .*no After=pcscd\.socket/m);
    expect(unit.text.endsWith('\n')).toBe(true);
  });

  it('quotes every ExecStart word, so that paths with spaces, %, $ and quotes arrive unchanged', () => {
    const odd = serviceDefinition('linux', {
      ...POSIX,
      agentScript: '/home/ada lovelace/100% "real" $HOME\\tapline/run.js',
    });
    const exec = lines(odd.text).find((x) => x.startsWith('ExecStart='))!;
    expect(exec).toBe(
      'ExecStart="/opt/node 20/bin/node" "/home/ada lovelace/100%% \\"real\\" $$HOME\\\\tapline/run.js" "agent"',
    );
    expect(systemdWords(exec.slice('ExecStart='.length))).toEqual([
      '/opt/node 20/bin/node',
      '/home/ada lovelace/100% "real" $HOME\\tapline/run.js',
      'agent',
    ]);
  });

  it('instructions: install, enable, logs, remove; paths with spaces shell-quoted', () => {
    expect(unit.instructions).toContain("mkdir -p '/home/ada lovelace/.config/systemd/user'");
    expect(unit.instructions).toContain(
      "tapline agent service --print > '/home/ada lovelace/.config/systemd/user/tapline-agent.service'",
    );
    expect(unit.instructions).toContain(
      'systemctl --user daemon-reload && systemctl --user enable --now tapline-agent.service',
    );
    expect(unit.instructions).toContain('journalctl --user -u tapline-agent.service');
    expect(unit.instructions).toContain('tapline login');
  });

  it('follows XDG_CONFIG_HOME', () => {
    expect(serviceDefinition('linux', { ...POSIX, xdgConfigHome: '/cfg' }).installPath).toBe(
      '/cfg/systemd/user/tapline-agent.service',
    );
  });
});

describe('serviceDefinition: launchd LaunchAgent', () => {
  const agent = serviceDefinition('darwin', {
    ...POSIX,
    nodePath: '/usr/local/bin/node',
    agentScript: '/Users/ada & bob/<tapline>/run.js',
    home: '/Users/ada & bob',
    env: { TAPLINE_PLATFORM_URL: 'https://example.com/?a=1&b=2' },
  });

  it('is a well-formed plist with KeepAlive, RunAtLoad and log paths', () => {
    expect(agent.kind).toBe('launchd');
    expect(agent.fileName).toBe(`${LAUNCHD_LABEL}.plist`);
    expect(agent.installPath).toBe(`/Users/ada & bob/Library/LaunchAgents/${LAUNCHD_LABEL}.plist`);
    expect(agent.text.startsWith('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist')).toBe(true);
    const elements = assertWellFormedXml(agent.text);
    expect(elements[0]).toBe('plist');
    for (const key of ['Label', 'ProgramArguments', 'RunAtLoad', 'KeepAlive', 'StandardOutPath', 'StandardErrorPath']) {
      expect(agent.text).toContain(`<key>${key}</key>`);
    }
    expect(agent.text).toMatch(/<key>RunAtLoad<\/key>\s*<true\/>/);
    expect(agent.text).toMatch(/<key>KeepAlive<\/key>\s*<dict>\s*<key>SuccessfulExit<\/key>\s*<false\/>/);
  });

  it('escapes the program arguments and values, and they read back unchanged', () => {
    expect(agent.text).toContain('<string>/Users/ada &amp; bob/&lt;tapline&gt;/run.js</string>');
    const strings = plistStrings(agent.text);
    expect(strings).toEqual([
      LAUNCHD_LABEL,
      '/usr/local/bin/node',
      '/Users/ada & bob/<tapline>/run.js',
      'agent',
      'https://example.com/?a=1&b=2',
      '/Users/ada & bob/Library/Logs/tapline-agent.log',
      '/Users/ada & bob/Library/Logs/tapline-agent.err.log',
    ]);
  });

  it('instructions: bootstrap into the gui domain, quoted paths', () => {
    expect(agent.instructions).toContain(
      `launchctl bootstrap gui/$(id -u) '/Users/ada & bob/Library/LaunchAgents/${LAUNCHD_LABEL}.plist'`,
    );
    expect(agent.instructions).toContain(`launchctl bootout gui/$(id -u)/${LAUNCHD_LABEL}`);
    expect(agent.instructions).toContain('plutil -lint');
  });

  it('refuses characters XML cannot hold', () => {
    invalid(() => serviceDefinition('darwin', { ...POSIX, args: ['agent', 'bell\u0007'] }), /control character/);
  });
});

describe('serviceDefinition: Windows Task Scheduler', () => {
  const task = serviceDefinition('win32', {
    nodePath: 'C:\\Program Files\\nodejs\\node.exe',
    agentScript: "C:\\Users\\Ada O'Hara\\AppData\\Roaming\\npm\\node_modules\\@tapline\\cli\\bin\\run.js",
    args: ['agent'],
    env: { TAPLINE_LOG_LEVEL: 'debug' },
  });

  it('registers a logon task in the user session with no time limit and restarts', () => {
    expect(task.kind).toBe('windows');
    expect(task.fileName).toBe('tapline-agent-task.ps1');
    expect(task.installPath).toBeUndefined();
    expect(task.text).toContain("-Execute 'C:\\Program Files\\nodejs\\node.exe'");
    // PowerShell single quotes doubled; the script path quoted for the Windows command line (it has spaces).
    expect(task.text).toContain(
      `-Argument '"C:\\Users\\Ada O''Hara\\AppData\\Roaming\\npm\\node_modules\\@tapline\\cli\\bin\\run.js" agent'`,
    );
    expect(task.text).toContain('New-ScheduledTaskTrigger -AtLogOn -User $user');
    expect(task.text).toContain('-LogonType Interactive -RunLevel Limited');
    expect(task.text).toContain('-ExecutionTimeLimit ([TimeSpan]::Zero) -RestartCount 10');
    expect(task.text).toContain("Register-ScheduledTask -TaskName 'Tapline Agent'");
    expect(task.text).toContain("[Environment]::SetEnvironmentVariable('TAPLINE_LOG_LEVEL', 'debug', 'User')");
  });

  it('instructions: schtasks /SC ONLOGON with escaped inner quotes, and NSSM', () => {
    expect(task.instructions).toContain(
      'schtasks /Create /TN "Tapline Agent" /SC ONLOGON /RL LIMITED /IT /TR "\\"C:\\Program Files\\nodejs\\node.exe\\" ' +
        '\\"C:\\Users\\Ada O\'Hara\\AppData\\Roaming\\npm\\node_modules\\@tapline\\cli\\bin\\run.js\\" agent"',
    );
    expect(task.instructions).toMatch(/NSSM/);
    expect(task.instructions).toContain('powershell -NoProfile -ExecutionPolicy Bypass -File tapline-agent-task.ps1');
  });

  it('a short command fits schtasks, and then the instructions do not warn about length', () => {
    const short = serviceDefinition('win32', { nodePath: 'C:\\node\\node.exe', agentScript: 'C:\\t\\run.js' });
    expect(short.instructions).toContain('/TR "C:\\node\\node.exe C:\\t\\run.js"');
    expect(short.instructions).not.toMatch(/261 schtasks accepts/);
  });

  it('a command longer than schtasks accepts (261 characters in /TR) points to the script', () => {
    const deep = `C:\\Users\\ada\\${'very long folder name\\'.repeat(12)}run.js`;
    const long = serviceDefinition('win32', { nodePath: 'C:\\node\\node.exe', agentScript: deep });
    expect(long.instructions).toMatch(
      /\/TR is \d{3} characters here, more than the 261 schtasks accepts: use the script/,
    );
  });
});

describe('serviceDefinition: validation', () => {
  it('refuses relative paths, line breaks, bad or secret-looking variables', () => {
    invalid(() => serviceDefinition('linux', { ...POSIX, nodePath: 'node' }), /absolute nodePath/);
    invalid(() => serviceDefinition('darwin', { ...POSIX, agentScript: 'bin/run.js' }), /absolute agentScript/);
    invalid(() => serviceDefinition('win32', { ...POSIX, nodePath: 'node.exe' }), /absolute nodePath/);
    invalid(() => serviceDefinition('linux', { ...POSIX, args: ['agent\nExecStartPre=/bin/evil'] }), /line break/);
    invalid(() => serviceDefinition('linux', { ...POSIX, env: { 'BAD NAME': 'x' } }), /not a valid environment/);
    for (const name of [
      'TAPLINE_API_KEY',
      'ACCESS_TOKEN',
      'CLIENT_SECRET',
      'DB_PASSWORD',
      'AWS_CREDENTIALS',
      'GOOGLE_APPLICATION_CREDENTIALS_JSON',
      'KEY',
      'SIGNING_KEY',
      // A path, but the name says what it points to is a secret all the same: no exception for these.
      'TOKEN_FILE',
      'CLIENT_SECRET_PATH',
      'PRIVATE_KEY_FILE',
      'PASSWORD_DIR',
    ]) {
      invalid(() => serviceDefinition('linux', { ...POSIX, env: { [name]: 'x' } }), /looks like a secret/);
    }
    invalid(
      () => serviceDefinition('win32', { nodePath: 'C:\\n\\node.exe', agentScript: 'C:\\a"b\\run.js' }),
      /double quote/,
    );
    invalid(() => serviceDefinition('freebsd' as 'linux', POSIX), /no service definition for freebsd/);
  });
});

describe('serviceDefinition: passing the association through', () => {
  it('accepts TAPLINE_ISSUER, TAPLINE_CLIENT_ID and TAPLINE_CREDENTIALS_FILE: a location, not a secret', () => {
    const env = {
      TAPLINE_ISSUER: 'https://auth.example.com/oidc',
      TAPLINE_CLIENT_ID: 'tapline-cli',
      TAPLINE_CREDENTIALS_FILE: '/home/ada lovelace/.config/tapline/credentials.json',
      TAPLINE_CONFIG_DIR: '/home/ada lovelace/.config/tapline',
      CREDENTIALS_DIR: '/srv/creds',
      CREDENTIAL_STORE_PATH: '/srv/store',
    };
    const unit = lines(serviceDefinition('linux', { ...POSIX, env }).text);
    for (const [name, value] of Object.entries(env)) expect(unit).toContain(`Environment="${name}=${value}"`);
    const plist = plistStrings(serviceDefinition('darwin', { ...POSIX, env }).text);
    expect(plist).toContain(env.TAPLINE_CREDENTIALS_FILE);
    const script = serviceDefinition('win32', {
      nodePath: 'C:\\node\\node.exe',
      agentScript: 'C:\\tapline\\run.js',
      env: { TAPLINE_CREDENTIALS_FILE: 'C:\\Users\\ada\\tapline\\credentials.json' },
    }).text;
    expect(script).toContain(
      "[Environment]::SetEnvironmentVariable('TAPLINE_CREDENTIALS_FILE', 'C:\\Users\\ada\\tapline\\credentials.json', 'User')",
    );
  });
});
