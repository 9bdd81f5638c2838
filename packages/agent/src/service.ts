/**
 * Service definitions that start the agent at login and restart it when it fails: a systemd user unit (Linux), a
 * launchd LaunchAgent (macOS), and a Task Scheduler task (Windows). Tapline prints them; installing is left to the
 * user, who can read what they install.
 *
 * The agent runs as the user, in the user's session, never as a system service: it reads the user's credentials, and
 * PC/SC access is granted to the logged-in user (polkit on Linux, the session on Windows).
 *
 * @packageDocumentation
 */
import { posix, win32 } from 'node:path';
import { ErrorCode, TaplineError } from '@tapline/core';

/** The platforms a definition exists for. */
export type ServicePlatform = 'linux' | 'darwin' | 'win32';

/** The platforms {@link serviceDefinition} knows, in a stable order (for flag options). */
export const SERVICE_PLATFORMS: readonly ServicePlatform[] = Object.freeze(['linux', 'darwin', 'win32']);

/** The systemd unit name (Linux). */
export const SYSTEMD_UNIT = 'tapline-agent.service';
/** The launchd label (macOS). */
export const LAUNCHD_LABEL = 'dev.tapline.agent';
/** The Task Scheduler task name (Windows). */
export const WINDOWS_TASK_NAME = 'Tapline Agent';

/** Options of {@link serviceDefinition}. */
export interface ServiceOptions {
  /** Absolute path of the Node.js executable (`process.execPath`). */
  readonly nodePath: string;
  /** Absolute path of the script that runs the agent (the CLI's `bin/run.js` with `args: ['agent']`, say). */
  readonly agentScript: string;
  /** Arguments after the script. */
  readonly args?: readonly string[];
  /**
   * Environment variables for the agent (`TAPLINE_LOG_LEVEL`, `TAPLINE_PLATFORM_URL`, `TAPLINE_CREDENTIALS_FILE`, …).
   * Never secrets: a name that looks like one (token, key, secret, password, private, credential) is refused; the
   * agent reads its credentials from its own store. A name ending in `_FILE`, `_DIR` or `_PATH` names a place rather
   * than holding a secret, so `credential` alone does not refuse it (`TAPLINE_CREDENTIALS_FILE`); the other words
   * still do (`TOKEN_FILE`, `PRIVATE_KEY_PATH`).
   */
  readonly env?: Readonly<Record<string, string>>;
  /** The user's home folder, for install and log paths (macOS, Linux). Default: `$HOME`. */
  readonly home?: string;
  /** `$XDG_CONFIG_HOME`, where systemd looks for user units (Linux). Default: `<home>/.config`. */
  readonly xdgConfigHome?: string;
  /** The command that prints this definition, quoted in the instructions. Default `tapline agent service --print`. */
  readonly printCommand?: string;
}

/** A service definition and how to install it. */
export interface ServiceDefinition {
  /** Which of the three formats {@link ServiceDefinition.text} is. */
  readonly kind: 'systemd-user' | 'launchd' | 'windows';
  /** The file name the text is meant to be saved as. */
  readonly fileName?: string;
  /** Where the file goes (absolute), when the platform has one place for it. */
  readonly installPath?: string;
  /** The file content (a unit, a plist, a PowerShell script), ending with a newline. */
  readonly text: string;
  /** The steps to install, inspect and remove it, for a person to read. Ends with a newline. */
  readonly instructions: string;
}

/** Names that look like secrets; such values must never end up in a file that is world-readable by default. */
const SECRET_NAME = /token|secret|passw|api[-_]?key|private|^key$|_key$/i;
/**
 * `credential` names a secret (`AWS_CREDENTIALS`) unless the name says it is a location (`TAPLINE_CREDENTIALS_FILE`):
 * the path to the store is what lets the service find the same credentials, and is no secret itself.
 */
const CREDENTIAL_NAME = /credential/i;
const LOCATION_NAME = /_(?:FILE|DIR|PATH)$/i;
/** A portable environment variable name. */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** True for a variable name that looks like it holds a secret; see {@link ServiceOptions.env}. */
function looksLikeSecretName(name: string): boolean {
  return SECRET_NAME.test(name) || (CREDENTIAL_NAME.test(name) && !LOCATION_NAME.test(name));
}

/**
 * The service definition that runs `nodePath agentScript ...args` for `platform` as the current user, started at
 * login and restarted when it fails, with the instructions to install it.
 *
 * Fails with `INVALID_ARGUMENT` for a relative path, a line break or NUL in any value, an invalid or secret-looking
 * variable name, or an unknown platform.
 */
export function serviceDefinition(platform: ServicePlatform, options: ServiceOptions): ServiceDefinition {
  validate(platform, options);
  switch (platform) {
    case 'linux':
      return systemdDefinition(options);
    case 'darwin':
      return launchdDefinition(options);
    case 'win32':
      return windowsDefinition(options);
    default:
      throw new TaplineError(ErrorCode.InvalidArgument, `There is no service definition for ${String(platform)}.`, {
        hint: `Choose one of ${SERVICE_PLATFORMS.join(', ')}.`,
      });
  }
}

function validate(platform: ServicePlatform, options: ServiceOptions): void {
  const invalid = (message: string, hint?: string): TaplineError =>
    new TaplineError(ErrorCode.InvalidArgument, message, hint === undefined ? {} : { hint });
  // A Windows definition may be previewed on a Unix machine and the other way round; win32.isAbsolute accepts both.
  const isAbsolute = (path: string): boolean => (platform === 'win32' ? win32 : posix).isAbsolute(path);
  for (const [name, value] of [
    ['nodePath', options.nodePath],
    ['agentScript', options.agentScript],
  ] as const) {
    if (!isAbsolute(value)) throw invalid(`The service needs an absolute ${name}, not "${value}".`);
  }
  const values = [options.nodePath, options.agentScript, ...(options.args ?? []), ...Object.values(options.env ?? {})];
  if (options.printCommand !== undefined && /[\0\r\n]/.test(options.printCommand)) {
    throw invalid('The print command contains a line break or NUL.');
  }
  for (const value of values) {
    // One line per setting in every format: a line break would start a new (attacker-chosen) setting.
    if (/[\0\r\n]/.test(value))
      throw invalid(`A service value contains a line break or NUL: ${JSON.stringify(value)}.`);
  }
  if (platform === 'win32') {
    for (const value of values) {
      if (value.includes('"')) throw invalid(`A Windows service value cannot contain a double quote: ${value}`);
    }
  }
  for (const name of Object.keys(options.env ?? {})) {
    if (!ENV_NAME.test(name)) throw invalid(`"${name}" is not a valid environment variable name.`);
    if (looksLikeSecretName(name)) {
      throw invalid(
        `${name} looks like a secret; secrets do not belong in a service definition, which other programs can read.`,
        'The agent reads its credentials from its own store (`tapline login`); leave them out of the service.',
      );
    }
  }
}

function homeOf(options: ServiceOptions): string {
  return options.home ?? process.env['HOME'] ?? process.env['USERPROFILE'] ?? '~';
}

/** A POSIX shell word: as is when it is plain, single-quoted otherwise. */
function sh(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./~-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

// ---------------------------------------------------------------------------------------------------------------
// Linux: systemd user unit
// ---------------------------------------------------------------------------------------------------------------

/**
 * One argument of `ExecStart=`, always double-quoted: backslash and quote escaped, `%` doubled (unit specifiers) and
 * `$` doubled (variable expansion), so that a path with spaces or those characters reaches the agent unchanged.
 */
function systemdArg(value: string): string {
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/%/g, '%%').replace(/\$/g, '$$$$')}"`;
}

/** One `Environment=` assignment: quoted, `%` doubled (specifiers are expanded there; variables are not). */
function systemdEnv(name: string, value: string): string {
  return `"${`${name}=${value}`.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/%/g, '%%')}"`;
}

function systemdDefinition(options: ServiceOptions): ServiceDefinition {
  const home = homeOf(options);
  const unitDir = posix.join(options.xdgConfigHome ?? posix.join(home, '.config'), 'systemd', 'user');
  const installPath = posix.join(unitDir, SYSTEMD_UNIT);
  const exec = [options.nodePath, options.agentScript, ...(options.args ?? [])].map(systemdArg).join(' ');
  const env = Object.entries(options.env ?? {}).map(([name, value]) => `Environment=${systemdEnv(name, value)}`);
  const printCommand = options.printCommand ?? 'tapline agent service --print';

  const text = [
    '# Tapline agent: answers VivoKey scan requests with taps on a reader. A systemd user unit, generated by',
    `# \`${printCommand}\`. It holds no secrets: the agent reads its credentials from its own store.`,
    '[Unit]',
    'Description=Tapline agent (answers VivoKey scan requests with taps on a reader)',
    // Why no After=pcscd.socket: see the comment in the unit.
    '# pcscd is a system service, and a user unit cannot order itself after system units (systemd ignores it), so',
    '# there is no After=pcscd.socket: pcscd.socket starts pcscd on the first connection, and the agent retries while',
    '# the PC/SC service is unavailable.',
    '# More than 10 starts in 10 minutes means it crashes at once every time: stop trying (systemctl --user reset-failed',
    '# tapline-agent, then start it again, once the cause is fixed).',
    'StartLimitIntervalSec=600',
    'StartLimitBurst=10',
    '',
    '[Service]',
    'Type=simple',
    `ExecStart=${exec}`,
    ...env,
    'Restart=on-failure',
    'RestartSec=5',
    '# Back off exponentially from 5 s to 5 min between restarts (systemd 254 and later; older ones ignore these two',
    '# lines with a warning and restart every 5 s).',
    'RestartSteps=10',
    'RestartMaxDelaySec=300',
    '# Exit status 2 is a usage or configuration error, which restarting does not fix.',
    'RestartPreventExitStatus=2',
    '',
    '[Install]',
    'WantedBy=default.target',
    '',
  ].join('\n');

  const instructions = [
    'Install the Tapline agent as a systemd user service (it runs as you, while you are logged in):',
    '',
    '  1. Associate this computer first, if you have not: tapline login',
    `  2. mkdir -p ${sh(unitDir)}`,
    `     ${printCommand} > ${sh(installPath)}`,
    `  3. systemctl --user daemon-reload && systemctl --user enable --now ${SYSTEMD_UNIT}`,
    '',
    `Check it:   systemctl --user status ${SYSTEMD_UNIT}; tapline agent status`,
    `Its log:    journalctl --user -u ${SYSTEMD_UNIT} -f`,
    `Remove it:  systemctl --user disable --now ${SYSTEMD_UNIT} && rm ${sh(installPath)}`,
    '',
    `The unit runs ${options.nodePath}; print and install it again after moving or upgrading Node.js or Tapline.`,
    'To keep the agent running without a login session, `loginctl enable-linger` does it; pcscd then may refuse it the',
    'readers, because its polkit policy (Debian, Ubuntu, Fedora) only admits active local sessions by default.',
    '',
  ].join('\n');

  return { kind: 'systemd-user', fileName: SYSTEMD_UNIT, installPath, text, instructions };
}

// ---------------------------------------------------------------------------------------------------------------
// macOS: launchd LaunchAgent
// ---------------------------------------------------------------------------------------------------------------

/** Text as XML character data: the five special characters escaped; characters XML 1.0 cannot hold refused. */
function xml(value: string): string {
  // eslint-disable-next-line no-control-regex -- exactly the control characters XML 1.0 forbids
  if (/[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/.test(value)) {
    throw new TaplineError(
      ErrorCode.InvalidArgument,
      `A control character cannot go into a plist: ${JSON.stringify(value)}`,
    );
  }
  return value
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

function launchdDefinition(options: ServiceOptions): ServiceDefinition {
  const home = homeOf(options);
  const fileName = `${LAUNCHD_LABEL}.plist`;
  const installPath = posix.join(home, 'Library', 'LaunchAgents', fileName);
  const logDir = posix.join(home, 'Library', 'Logs');
  const program = [options.nodePath, options.agentScript, ...(options.args ?? [])];
  const env = Object.entries(options.env ?? {});
  const printCommand = options.printCommand ?? 'tapline agent service --print';

  const text = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">',
    // No command in the comment: "--" (as in --print) may not appear inside an XML comment.
    '<!-- Tapline agent: a launchd LaunchAgent generated by Tapline. No secrets: the agent reads its credentials from its own store. -->',
    '<plist version="1.0">',
    '<dict>',
    '  <key>Label</key>',
    `  <string>${LAUNCHD_LABEL}</string>`,
    '  <key>ProgramArguments</key>',
    '  <array>',
    ...program.map((arg) => `    <string>${xml(arg)}</string>`),
    '  </array>',
    ...(env.length === 0
      ? []
      : [
          '  <key>EnvironmentVariables</key>',
          '  <dict>',
          ...env.flatMap(([name, value]) => [`    <key>${xml(name)}</key>`, `    <string>${xml(value)}</string>`]),
          '  </dict>',
        ]),
    '  <key>RunAtLoad</key>',
    '  <true/>',
    // Restart when it fails, not after a clean stop (launchctl bootout, or SIGTERM: the agent then exits 0).
    '  <key>KeepAlive</key>',
    '  <dict>',
    '    <key>SuccessfulExit</key>',
    '    <false/>',
    '  </dict>',
    '  <key>ThrottleInterval</key>',
    '  <integer>10</integer>',
    '  <key>StandardOutPath</key>',
    `  <string>${xml(posix.join(logDir, 'tapline-agent.log'))}</string>`,
    '  <key>StandardErrorPath</key>',
    `  <string>${xml(posix.join(logDir, 'tapline-agent.err.log'))}</string>`,
    '</dict>',
    '</plist>',
    '',
  ].join('\n');

  const domain = 'gui/$(id -u)';
  const instructions = [
    'Install the Tapline agent as a launchd LaunchAgent (it runs as you, while you are logged in):',
    '',
    '  1. Associate this computer first, if you have not: tapline login',
    `  2. ${printCommand} > ${sh(installPath)}`,
    `     plutil -lint ${sh(installPath)}`,
    `  3. launchctl bootstrap ${domain} ${sh(installPath)}`,
    '',
    `Check it:   launchctl print ${domain}/${LAUNCHD_LABEL}; tapline agent status`,
    `Its log:    tail -f ${sh(posix.join(logDir, 'tapline-agent.log'))} ${sh(posix.join(logDir, 'tapline-agent.err.log'))}`,
    `Restart:    launchctl kickstart -k ${domain}/${LAUNCHD_LABEL}`,
    `Remove it:  launchctl bootout ${domain}/${LAUNCHD_LABEL} && rm ${sh(installPath)}`,
    '',
    `The agent runs ${options.nodePath}; print and install it again after moving or upgrading Node.js or Tapline.`,
    '',
  ].join('\n');

  return { kind: 'launchd', fileName, installPath, text, instructions };
}

// ---------------------------------------------------------------------------------------------------------------
// Windows: Task Scheduler
// ---------------------------------------------------------------------------------------------------------------

/**
 * One argument on a Windows command line, as the C runtime (and Node) splits it: quoted when it holds a space or is
 * empty, with the backslashes before the closing quote doubled.
 */
function windowsArg(value: string): string {
  if (value !== '' && !/[\s"]/.test(value)) return value;
  return `"${value.replace(/(\\+)$/, '$1$1')}"`;
}

/** A PowerShell single-quoted string (no expansion; `'` doubled). */
function ps(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

function windowsDefinition(options: ServiceOptions): ServiceDefinition {
  const fileName = 'tapline-agent-task.ps1';
  const argument = [options.agentScript, ...(options.args ?? [])].map(windowsArg).join(' ');
  const env = Object.entries(options.env ?? {});
  const printCommand = options.printCommand ?? 'tapline agent service --print --platform win32';

  const text = [
    `# Tapline agent: registers a Task Scheduler task that starts the agent when you log on, in your session (the`,
    `# reader and your credentials are there). Generated by \`${printCommand}\`; no secrets in it.`,
    ...(env.length === 0
      ? []
      : [
          '# Task Scheduler has no per-task environment: the variables go into your user environment.',
          ...env.map(([name, value]) => `[Environment]::SetEnvironmentVariable(${ps(name)}, ${ps(value)}, 'User')`),
        ]),
    `$action = New-ScheduledTaskAction -Execute ${ps(options.nodePath)} -Argument ${ps(argument)}`,
    '$user = "$env:USERDOMAIN\\$env:USERNAME"',
    '$trigger = New-ScheduledTaskTrigger -AtLogOn -User $user',
    '$principal = New-ScheduledTaskPrincipal -UserId $user -LogonType Interactive -RunLevel Limited',
    '# No time limit (the default stops a task after 3 days); restarted a minute after a failure, up to 10 times.',
    '$settings = New-ScheduledTaskSettingsSet -ExecutionTimeLimit ([TimeSpan]::Zero) -RestartCount 10 ' +
      '-RestartInterval (New-TimeSpan -Minutes 1) -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries ' +
      '-MultipleInstances IgnoreNew',
    `Register-ScheduledTask -TaskName ${ps(WINDOWS_TASK_NAME)} -Action $action -Trigger $trigger ` +
      '-Principal $principal -Settings $settings -Force',
    '',
  ].join('\n');

  // The same task with schtasks: the whole command goes in /TR with its inner quotes escaped as \".
  const command = [options.nodePath, options.agentScript, ...(options.args ?? [])].map(windowsArg).join(' ');
  const tr = `"${command.replace(/"/g, '\\"')}"`;
  const schtasks = `schtasks /Create /TN "${WINDOWS_TASK_NAME}" /SC ONLOGON /RL LIMITED /IT /TR ${tr}`;
  const instructions = [
    'Install the Tapline agent as a Task Scheduler task (it runs as you, in your session, from when you log on):',
    '',
    '  1. Associate this computer first, if you have not: tapline login',
    `  2. ${printCommand} > ${fileName}`,
    `  3. powershell -NoProfile -ExecutionPolicy Bypass -File ${fileName}`,
    `  4. Start it now without logging off: Start-ScheduledTask -TaskName ${ps(WINDOWS_TASK_NAME)}`,
    '',
    `Check it:   Get-ScheduledTaskInfo -TaskName ${ps(WINDOWS_TASK_NAME)}; tapline agent status`,
    `Remove it:  Unregister-ScheduledTask -TaskName ${ps(WINDOWS_TASK_NAME)} -Confirm:$false`,
    '',
    'Or create the task with schtasks in cmd.exe (if Windows refuses a logon task, use an administrator prompt):',
    `  ${schtasks}`,
    '  Such a task is stopped after 3 days, and not restarted after a failure, unless you change both in its',
    `  Settings (the script above sets both).${tr.length > 261 ? ` Its /TR is ${tr.length} characters here, more than the 261 schtasks accepts: use the script.` : ''}`,
    '',
    'Or run it as a Windows service with NSSM (https://nssm.cc):',
    `  nssm install TaplineAgent ${windowsArg(options.nodePath)} ${argument}`,
    '  A service runs outside your session: make it log on as your account (nssm set TaplineAgent ObjectName',
    '  .\\<you> <password>) so that it finds your credentials, and check that it sees the reader.',
    '',
    'The agent shows a console window while it runs; minimise it, or use NSSM for none.',
    `The task runs ${options.nodePath}; print and register it again after moving or upgrading Node.js or Tapline.`,
    '',
  ].join('\n');

  return { kind: 'windows', fileName, text, instructions };
}
