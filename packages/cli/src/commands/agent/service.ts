import { homedir } from 'node:os';
import { join } from 'node:path';
import { Flags } from '@oclif/core';
import { ExitCode, TaplineCommand } from '../../base-command.js';

/** `tapline agent service --print --json`: the definition and the instructions. */
export type AgentServiceJson = import('@tapline/agent').ServiceDefinition;

const PLATFORMS = ['linux', 'darwin', 'win32'] as const;

/**
 * Settings from this shell that the service needs to see the same things: the same config, the same control socket
 * for `tapline agent status`, the same platform and the same association (issuer, client id, and where its
 * credentials are kept). Never a secret: TAPLINE_API_KEY stays out, and the credentials stay in their file, of which
 * only the path is passed.
 */
const PASSED_THROUGH = [
  'TAPLINE_CONFIG_DIR',
  'TAPLINE_AGENT_SOCKET',
  'TAPLINE_PLATFORM_URL',
  'TAPLINE_LOG_LEVEL',
  'TAPLINE_ISSUER',
  'TAPLINE_CLIENT_ID',
  'TAPLINE_CREDENTIALS_FILE',
];
type Platform = (typeof PLATFORMS)[number];

/**
 * `tapline agent service --print`: prints the service definition that starts the agent at login and restarts it
 * when it fails (systemd user unit, launchd LaunchAgent, Task Scheduler script), with the install steps on stderr.
 * It never installs anything itself: a service runs unattended with your credentials, so you should see what goes
 * where.
 */
export default class AgentService extends TaplineCommand<typeof AgentService> {
  static override summary = 'Print a service definition that runs the agent at login (installing it is up to you).';

  static override description =
    'Prints, for this system or --platform: a systemd user unit (Linux), a launchd LaunchAgent plist (macOS), or a ' +
    'PowerShell script that registers a Task Scheduler logon task (Windows). The definition runs `<node> <this ' +
    'tapline> agent` as you, in your session, where the reader and your credentials are; it holds no secrets.\n\n' +
    'Only the definition goes to stdout, so that it can be redirected into place; the steps to install, check and ' +
    'remove it go to stderr. With --json: {"kind","fileName","installPath","text","instructions"}.\n\n' +
    'TAPLINE_CONFIG_DIR, TAPLINE_AGENT_SOCKET, TAPLINE_PLATFORM_URL, TAPLINE_LOG_LEVEL, TAPLINE_ISSUER, ' +
    'TAPLINE_CLIENT_ID and TAPLINE_CREDENTIALS_FILE, when set here, are written into the definition, so that the ' +
    'service sees what this shell sees (the same association included). TAPLINE_API_KEY never is.';

  static override examples = [
    {
      command: '<%= config.bin %> <%= command.id %> --print > ~/.config/systemd/user/tapline-agent.service',
      description: 'Linux: write the unit (then follow the steps it prints).',
    },
    {
      command: '<%= config.bin %> <%= command.id %> --print --platform darwin',
      description: 'See the macOS LaunchAgent for this installation.',
    },
  ];

  static override flags = {
    print: Flags.boolean({ summary: 'Print the definition (stdout) and the install steps (stderr).' }),
    platform: Flags.string({
      summary: 'The system to print it for (default: this one).',
      options: [...PLATFORMS],
    }),
  };

  async run(): Promise<AgentServiceJson | undefined> {
    const { flags } = this;
    const platform = (flags.platform ?? hostPlatform()) as Platform | undefined;
    const printCommand = [
      this.config.bin,
      'agent service --print',
      ...(flags.platform === undefined ? [] : ['--platform', flags.platform]),
    ].join(' ');
    if (!flags.print) {
      this.error(
        'Installing the agent as a service is left to you, so that you see what runs with your credentials. ' +
          `\`${printCommand}\` prints the definition and the steps to install it.`,
        { exit: ExitCode.Usage },
      );
    }
    if (platform === undefined) {
      this.error(`There is no service definition for ${process.platform}; choose one with --platform.`, {
        exit: ExitCode.Usage,
      });
    }

    const agent: typeof import('@tapline/agent') = await import('@tapline/agent');
    const definition = agent.serviceDefinition(platform, {
      nodePath: process.execPath,
      // This CLI's own `tapline agent`, rather than the bare tapline-agent binary: it also loads the drivers of
      // installed plugins. Not resolved through symlinks, so that a global install keeps working after upgrades.
      agentScript: join(this.config.root, 'bin', 'run.js'),
      args: ['agent'],
      env: passedThrough(process.env),
      home: homedir(),
      ...(process.env['XDG_CONFIG_HOME'] ? { xdgConfigHome: process.env['XDG_CONFIG_HOME'] } : {}),
      printCommand,
    });
    if (this.jsonEnabled()) return definition;
    process.stdout.write(definition.text);
    process.stderr.write(definition.instructions);
    return undefined;
  }
}

function passedThrough(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of PASSED_THROUGH) {
    const value = env[name];
    if (value) out[name] = value;
  }
  return out;
}

function hostPlatform(): Platform | undefined {
  // Linux and the BSDs share the systemd unit only on Linux; elsewhere the user picks.
  return (PLATFORMS as readonly string[]).includes(process.platform) ? (process.platform as Platform) : undefined;
}
