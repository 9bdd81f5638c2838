import { Args } from '@oclif/core';
import { TaplineCommand } from '../../base-command.js';

/** `tapline agent choose --json`. */
export interface AgentChooseJson {
  /** The request the next tap answers. */
  readonly chosen: string;
}

/** How long the running agent has to answer, unless --timeout says otherwise. */
const CONTROL_TIMEOUT_MS = 3000;

/**
 * `tapline agent choose ID`: when several scan requests are pending, tells the running agent which one the next tap
 * answers (the same as picking it at the agent's prompt).
 */
export default class AgentChoose extends TaplineCommand<typeof AgentChoose> {
  static override summary = 'Choose which pending scan request the next tap answers.';

  static override description =
    'When several scan requests are pending, the agent does not guess: it waits for a choice, at its own prompt on ' +
    'a terminal, or from this command. `tapline agent status` lists the pending requests and their ids.\n\n' +
    'Exit status 1 with AGENT_NOT_RUNNING when no agent is running; 2 with INVALID_ARGUMENT when ID is not a ' +
    'request the agent can choose now (details.reason: UNKNOWN_REQUEST or NOTHING_TO_CHOOSE).';

  static override examples = [
    { command: '<%= config.bin %> agent status', description: 'See the pending requests and their ids.' },
    { command: '<%= config.bin %> <%= command.id %> sr_Q2xhdWRl', description: 'The next tap answers that one.' },
  ];

  static override args = {
    id: Args.string({ description: 'The id of a pending scan request (see `tapline agent status`).', required: true }),
  };

  static override flags = {};

  protected static override defaultTimeoutMs = CONTROL_TIMEOUT_MS;

  async run(): Promise<AgentChooseJson> {
    // The base class keeps only the flags of its parse; the argument needs this command's own.
    const { args } = await this.parse(AgentChoose);
    // The control client alone, not the agent's runtime (drivers, simulator, platform client) behind its index.
    const control: typeof import('@tapline/agent/control') = await import('@tapline/agent/control');
    const { chosen } = await control.sendControl(
      { v: 1, op: 'choose', id: args.id },
      { timeoutMs: this.flags.timeout ?? CONTROL_TIMEOUT_MS, signal: this.abortSignal() },
    );
    this.log(`Chosen: ${chosen}; the next tap answers it.`);
    return { chosen };
  }
}
