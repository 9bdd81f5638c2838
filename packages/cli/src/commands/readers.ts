import type { ReaderDriver, Reader, ReadersEvent } from '@tapline/core';
import { TaplineCommand, type Session } from '../base-command.js';
import type { CliWarning } from '../lib/output.js';

/** One reader as `tapline readers --json` prints it. */
export interface ReaderJson {
  readonly name: string;
  readonly driver: string;
  readonly capabilities: readonly string[];
  /** Present (and true) only when `--driver` or the config forced the driver onto this reader. */
  readonly forced?: true;
}

/** `tapline readers --json`. `warnings` is present only when there were any. */
export interface ReadersJson {
  readonly readers: readonly ReaderJson[];
  readonly warnings?: readonly CliWarning[];
}

/** Quiet time after the last reader event before the list is considered complete, for real transports. */
const SETTLE_MS = 300;
/** The simulator attaches its reader as soon as it is subscribed, so a much shorter quiet time is enough. */
const SIM_SETTLE_MS = 30;

/**
 * `tapline readers`: lists the attached readers with the driver that serves each and its capabilities. Transport
 * trouble (pcscd not running, no USB access) is a warning, never a failure: zero readers is a valid answer.
 */
export default class Readers extends TaplineCommand<typeof Readers> {
  static override summary = 'List attached readers, their drivers and capabilities.';

  static override description =
    'Watches every transport briefly (until no reader has appeared for a moment, at most --timeout milliseconds) ' +
    'and prints one line per reader: NAME, DRIVER and capabilities, tab-separated.';

  static override examples = [
    { command: '<%= config.bin %> <%= command.id %>', description: 'What is plugged in?' },
    { command: '<%= config.bin %> <%= command.id %> --json', description: 'The same, for scripts.' },
  ];

  static override flags = {};

  protected static override defaultTimeoutMs = 5000;

  async run(): Promise<ReadersJson> {
    const session = await this.compose();
    const found = await this.collect(session, session.simulation ? SIM_SETTLE_MS : SETTLE_MS);

    const readers = [...found.values()].map(({ reader, driver, forced }): ReaderJson => ({
      name: reader.name,
      driver: driver.id,
      capabilities: session.core.sortCapabilities(reader.capabilities),
      ...(forced ? { forced: true as const } : {}),
    }));
    for (const r of readers) this.log([r.name, r.driver, r.capabilities.join(',')].join('\t'));
    if (readers.length === 0 && !this.jsonEnabled()) {
      process.stderr.write(
        `No readers found.\nHint: Plug in a reader (and start pcscd for PC/SC readers), check \`${this.config.bin} drivers\`, or try --sim.\n`,
      );
    }
    await session.release();
    return { readers, ...(this.warnings.length > 0 ? { warnings: [...this.warnings] } : {}) };
  }

  /**
   * Collects readers until no event has arrived for `settleMs`, or the `--timeout` budget runs out. Keeps the
   * readers held (open) until the command ends.
   */
  private collect(
    session: Session,
    settleMs: number,
  ): Promise<Map<Reader, { reader: Reader; driver: ReaderDriver; forced: boolean }>> {
    const { core, signal } = session;
    const found = new Map<Reader, { reader: Reader; driver: ReaderDriver; forced: boolean }>();
    return new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(core.abortError('Listing readers', signal.reason));
        return;
      }
      let quiet: NodeJS.Timeout | undefined;
      const done = (): void => {
        clearTimeout(quiet);
        clearTimeout(budget);
        signal.removeEventListener('abort', onAbort);
      };
      const finish = (): void => {
        done();
        resolve(found);
      };
      const onAbort = (): void => {
        done();
        reject(core.abortError('Listing readers', signal.reason));
      };
      const settle = (): void => {
        clearTimeout(quiet);
        quiet = setTimeout(finish, settleMs);
      };
      const budget = setTimeout(finish, session.remainingMs());
      signal.addEventListener('abort', onAbort, { once: true });
      session.hold((event: ReadersEvent) => {
        if (event.type === 'attached') found.set(event.reader, event);
        else if (event.type === 'detached') found.delete(event.reader);
        else this.warnFromEvent(event);
        settle();
      });
      settle();
    });
  }
}
