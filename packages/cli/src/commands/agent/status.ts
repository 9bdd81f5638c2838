import { TaplineCommand } from '../../base-command.js';

/**
 * The agent's formatting helpers, for the human summary only: the whole agent module, loaded lazily so that `--help`
 * stays fast (ADR 0004) and `--json` does without it.
 */
type AgentModule = Pick<typeof import('@tapline/agent'), 'describeRequest' | 'formatDuration'>;
/** `tapline agent status --json`: the running agent's own status, exactly as it sent it. */
export type AgentStatusJson = import('@tapline/agent/control').AgentStatus;

/** How long the running agent has to answer, unless --timeout says otherwise. */
const CONTROL_TIMEOUT_MS = 3000;

/**
 * `tapline agent status`: asks the running agent (over its local control socket) what it is doing: which profile it
 * answers for, whether the platform is reachable, the readers and tags it sees, the pending requests and the last
 * scans. Exit 1 with AGENT_NOT_RUNNING when no agent runs.
 */
export default class AgentStatusCommand extends TaplineCommand<typeof AgentStatusCommand> {
  static override summary = 'Show what the running agent is doing: platform, readers, pending requests, last scans.';

  static override description =
    'Asks the agent started with `tapline agent` (or as a service) over its local control socket, which only you ' +
    'can open. --json prints the status exactly as the agent reports it. Exit status 1 with AGENT_NOT_RUNNING when ' +
    'no agent is running (the socket: TAPLINE_AGENT_SOCKET, or the default for this system).';

  static override examples = [
    { command: '<%= config.bin %> <%= command.id %>', description: 'Is the agent up, and is anything pending?' },
    { command: '<%= config.bin %> <%= command.id %> --json', description: 'The same, for scripts.' },
  ];

  static override flags = {};

  protected static override defaultTimeoutMs = CONTROL_TIMEOUT_MS;

  async run(): Promise<AgentStatusJson> {
    // The control client alone: the agent's index pulls in its runtime (drivers, simulator, platform client).
    const control: typeof import('@tapline/agent/control') = await import('@tapline/agent/control');
    const { status } = await control.sendControl(
      { v: 1, op: 'status' },
      { timeoutMs: this.flags.timeout ?? CONTROL_TIMEOUT_MS, signal: this.abortSignal() },
    );
    if (!this.jsonEnabled()) {
      const agent: AgentModule = await import('@tapline/agent');
      for (const line of statusLines(agent, status, Date.now())) this.log(line);
    }
    return status;
  }
}

/** The human summary of a status, one string per line; `agent` gives the formatting shared with the agent's prompt. */
export function statusLines(agent: AgentModule, status: AgentStatusJson, now: number): string[] {
  const ago = (iso: string): string => `${agent.formatDuration(Math.max(0, now - Date.parse(iso)))} ago`;
  const lines = [`Agent running (pid ${status.pid}) since ${status.startedAt}`];

  lines.push(
    status.associated
      ? `Associated as ${status.associated.sub} with ${status.associated.issuer}`
      : 'Not associated: run `tapline login`',
  );

  const { platform } = status;
  const contact = platform.lastContactAt === undefined ? '' : `, last contact ${ago(platform.lastContactAt)}`;
  const trouble = platform.lastError ? `; last error [${platform.lastError.code}] ${platform.lastError.message}` : '';
  lines.push(
    `Platform ${platform.url || '(none)'}: ${platform.reachable ? 'reachable' : 'unreachable'}${contact}${trouble}`,
  );

  lines.push(`Readers (${status.readers.length}):${status.readers.length === 0 ? ' none attached' : ''}`);
  for (const reader of status.readers) {
    const tag = reader.tag
      ? `, tag ${reader.tag.uid.toUpperCase()}${reader.tag.chip ? ` (${reader.tag.chip})` : ''}`
      : '';
    lines.push(`  ${reader.name} (driver ${reader.driver})${tag}`);
  }

  lines.push(`Pending requests (${status.pending.length}):${status.pending.length === 0 ? ' none' : ''}`);
  for (const request of status.pending) {
    const text = agent.describeRequest(
      {
        id: request.id,
        ...(request.relyingParty === undefined ? {} : { relyingParty: request.relyingParty }),
        ...(request.purpose === undefined ? {} : { purpose: request.purpose }),
        ...(request.expiresAt === undefined ? {} : { expiresAt: Date.parse(request.expiresAt) }),
      },
      now,
    );
    lines.push(
      `  ${request.chosen ? '*' : ' '} ${request.id}  ${text}${request.chosen ? '  (the next tap answers it)' : ''}`,
    );
  }
  if (status.pending.length > 1 && !status.pending.some((r) => r.chosen)) {
    lines.push('  Choose which one the next tap answers: `tapline agent choose ID`');
  }

  lines.push(`Last scans (${status.lastScans.length}):${status.lastScans.length === 0 ? ' none yet' : ''}`);
  for (const scan of status.lastScans) {
    const how =
      scan.outcome === 'answered'
        ? `answered${scan.chip ? ` with a ${scan.chip}` : ''}`
        : `failed${scan.error ? `: [${scan.error.code}] ${scan.error.message}` : ''}`;
    lines.push(`  ${scan.at}  ${scan.requestId}  ${how}`);
  }
  return lines;
}
