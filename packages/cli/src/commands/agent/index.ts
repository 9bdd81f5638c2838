import { Flags } from '@oclif/core';
import type { VirtualChipKind } from '@tapline/test-fixtures';
import { TaplineCommand } from '../../base-command.js';
import { associationFlags } from '../../lib/platform.js';

/**
 * `tapline agent`: runs the agent in the foreground (the same as the `tapline-agent` binary). It answers the scan
 * requests pending for the associated profile when the user taps, until Ctrl-C or SIGTERM.
 */
export default class Agent extends TaplineCommand<typeof Agent> {
  static override summary = 'Answer scan requests with taps on your reader, unattended (run `tapline login` first).';

  static override description =
    'Long-polls the platform for the scan requests pending for your profile and answers them when you tap: one ' +
    'pending, the next tap answers it; several, it lists them and takes your pick at the prompt (on a terminal) or ' +
    'from `tapline agent choose ID`. Readers that are unplugged or restarted, a platform that is down for a while ' +
    'and expiring tokens are all recovered without a restart; a request whose tap failed stays pending.\n\n' +
    'With --json every event is one JSON line; the last one is {"answered":N,"failed":N,"pending":N,…}.\n\n' +
    '--sim runs everything in this process: simulated readers with a Spark 2, and Tapline’s reference platform, ' +
    'associated automatically, holding --sim-requests requests; with --exit-when-idle it stops once all are ' +
    'answered. See `tapline agent status`, `tapline agent choose` and `tapline agent service --print`.';

  static override examples = [
    '<%= config.bin %> agent',
    '<%= config.bin %> agent --sim --sim-requests 3 --exit-when-idle --json',
  ];

  static override flags = {
    platform: associationFlags.platform,
    issuer: associationFlags.issuer,
    'sim-requests': Flags.integer({
      summary: 'With --sim: how many scan requests the reference platform holds at start.',
      min: 0,
      default: 1,
    }),
    'exit-when-idle': Flags.boolean({ summary: 'Stop as soon as no scan request is pending.' }),
    'control-socket': Flags.boolean({
      summary: 'Listen on the local control socket (for `agent choose` and `agent status`).',
      default: true,
      allowNo: true,
    }),
    // For demos and benchmarks: extra empty simulated readers.
    'sim-readers': Flags.integer({ hidden: true, min: 1, default: 1 }),
  };

  async run(): Promise<void> {
    const { runAgent } = await import('@tapline/agent');
    const flags = this.flags;
    // The whole-command --timeout does not apply: a service waits for requests until it is stopped.
    await runAgent({
      sim: flags.sim,
      simReaders: flags['sim-readers'],
      simChip: flags['sim-tag'] as VirtualChipKind,
      requests: flags['sim-requests'],
      simAutoTapMs: 250,
      exitWhenIdle: flags['exit-when-idle'],
      json: this.jsonEnabled(),
      signal: this.abortSignal(),
      controlSocket: flags['control-socket'] ? undefined : false,
      config: {
        ...(flags.platform === undefined ? {} : { platformUrl: flags.platform }),
        ...(flags.issuer === undefined ? {} : { issuer: flags.issuer }),
        ...(flags.reader === undefined ? {} : { reader: flags.reader }),
        ...(flags.driver === undefined ? {} : { driver: flags.driver }),
        ...(flags.trace ? { trace: true } : {}),
      },
      // An explicit --platform with --sim: simulated readers, but that platform and the stored association.
      simPlatform: flags.sim && flags.platform === undefined,
    });
  }

  /** One compact JSON object per line, like every other agent event (oclif would pretty-print it). */
  override logJson(json: unknown): void {
    process.stdout.write(`${JSON.stringify(json)}\n`);
  }
}
