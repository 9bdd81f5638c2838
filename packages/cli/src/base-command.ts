import { Command, Errors, Flags, ux, type Interfaces } from '@oclif/core';
// Type-only: the runtime modules are imported inside `compose()` so that `--version` and `--help` never load
// @tapline/core (and with it rxjs, tsyringe and reflect-metadata).
import type {
  DriverRegistry,
  Logger,
  ReaderDriver,
  ReaderHold,
  ReaderManager,
  ReadersEvent,
  Tag,
  TaplineConfig,
  TaplineError,
} from '@tapline/core';
import type { Simulation, VirtualChipKind } from '@tapline/test-fixtures';
import { CORE_PACKAGE, FIXTURES_PACKAGE, loadDrivers, type LoadedDriver } from './lib/drivers.js';
import { warningText, type CliWarning } from './lib/output.js';

/** The `@tapline/core` module, as `compose()` hands it to commands. */
export type CoreModule = typeof import('@tapline/core');

/** The flags of a command, its own and the shared ones. */
export type TaplineFlags<T extends typeof Command> = Interfaces.InferredFlags<
  (typeof TaplineCommand)['baseFlags'] & T['flags']
>;

/**
 * Exit codes. They are part of the CLI contract.
 *
 * | code | meaning |
 * |---|---|
 * | 0 | success (also: `readers` found nothing, or only with warnings) |
 * | 1 | the operation failed: any Tapline error except `INVALID_ARGUMENT` (TIMEOUT, DRIVER_NOT_FOUND, …), and bugs (`INTERNAL`) |
 * | 2 | usage: unknown flag, malformed flag value, `INVALID_ARGUMENT` (also a malformed config file) |
 * | 130 | interrupted by SIGINT (Ctrl-C), after the readers were released |
 * | 143 | terminated by SIGTERM, after the readers were released |
 */
export const ExitCode = {
  Ok: 0,
  Failure: 1,
  Usage: 2,
  Interrupted: 130,
  Terminated: 143,
} as const;

const SIGNAL_EXIT: Readonly<Record<'SIGINT' | 'SIGTERM', number>> = {
  SIGINT: ExitCode.Interrupted,
  SIGTERM: ExitCode.Terminated,
};

/** How long a cleanup step (closing a reader, say) may take before the command stops waiting for it. */
const CLEANUP_STEP_MS = 2000;

/**
 * How long a signal may take to unwind the command before the process exits anyway. Aborting every wait is the
 * normal path; this only catches a driver that ignores its AbortSignal.
 */
const SIGNAL_GRACE_MS = 3000;

/** Everything a command needs to talk to readers, built by {@link TaplineCommand.compose}. */
export interface Session {
  readonly core: CoreModule;
  readonly config: TaplineConfig;
  readonly logger: Logger;
  readonly manager: ReaderManager;
  readonly registry: DriverRegistry;
  /** Every installed driver with where it came from, in registry order (the generic PC/SC driver first). */
  readonly drivers: readonly LoadedDriver[];
  /** The simulation behind `--sim`. */
  readonly simulation: Simulation | undefined;
  /** Aborted on SIGINT/SIGTERM. */
  readonly signal: AbortSignal;
  /** Milliseconds left of the `--timeout` budget, which starts at the first call (the first wait). */
  remainingMs(): number;
  /**
   * Keeps the readers open until the command ends (or {@link Session.release}), reporting reader events to
   * `onEvent`. Release closes them and waits for their devices to be released.
   */
  hold(onEvent?: (event: ReadersEvent) => void): void;
  /** Releases the readers now; the command's end does it anyway. Idempotent. */
  release(): Promise<void>;
}

/**
 * The base of every Tapline command: the shared flags, config and container composition, warnings, and the mapping
 * of errors to output and exit codes (see {@link ExitCode}).
 *
 * Errors: a Tapline error prints `Error [CODE]: message` and `Hint: …` to stderr, or, with `--json`,
 * `{"error":{"code","message","hint"?,…}}` to stdout. oclif parse errors keep oclif's own output (exit 2), or
 * become `{"error":{"code":"INVALID_ARGUMENT",…}}` with `--json`.
 */
export abstract class TaplineCommand<T extends typeof Command> extends Command {
  static override enableJsonFlag = true;

  static override baseFlags = {
    sim: Flags.boolean({
      summary: 'Use the built-in simulator instead of real readers.',
      description:
        'One simulated reader appears, and a virtual chip (--sim-tag, default a Spark 2) is tapped on it after 300 ms.',
      helpGroup: 'GLOBAL',
    }),
    reader: Flags.string({
      summary: 'Only use readers whose name contains this (case-insensitive).',
      helpValue: 'NAME',
      helpGroup: 'GLOBAL',
    }),
    driver: Flags.string({
      summary: 'Force this driver id onto every reader of a transport it serves (see `tapline drivers`).',
      helpValue: 'ID',
      helpGroup: 'GLOBAL',
    }),
    timeout: Flags.integer({
      summary: 'Whole-command wait budget in milliseconds.',
      description: 'Default: 10000 for `scan`, 5000 for `readers`.',
      helpValue: 'MS',
      min: 1,
      helpGroup: 'GLOBAL',
    }),
    trace: Flags.boolean({
      summary: 'Log every frame to and from the tag as hex on stderr (same as TAPLINE_TRACE=1).',
      helpGroup: 'GLOBAL',
    }),
    'sim-tag': Flags.string({
      summary: 'Which virtual chip the simulator taps (with --sim).',
      options: ['spark2', 'spark2-413', 'spark1', 'apex', 'ntag215'],
      default: 'spark2',
      helpGroup: 'GLOBAL',
    }),
    // For tests: present the simulated chip through a fake PN533 USB stick (driver-pn533-usb over the emulator)
    // instead of the sim driver, so the raw-USB path runs end to end without a USB bus.
    'sim-reader': Flags.string({ hidden: true, options: ['sim', 'pn533-usb'], default: 'sim' }),
    // For tests and demos: when the simulated chip is tapped, or `never`.
    'sim-tap-after': Flags.custom<number | false>({
      hidden: true,
      env: 'TAPLINE_SIM_TAP_AFTER_MS',
      parse: (input: string) => {
        if (input === 'never') return Promise.resolve(false);
        const ms = Number(input);
        if (!Number.isInteger(ms) || ms < 0) {
          return Promise.reject(new Error(`Expected milliseconds or "never" but received: ${input}`));
        }
        return Promise.resolve(ms);
      },
    })(),
  };

  /** The `--timeout` default of this command, in milliseconds. */
  protected static defaultTimeoutMs = 10_000;

  protected flags!: TaplineFlags<T>;

  /** Warnings printed so far (deduplicated); `readers --json` returns them. */
  protected readonly warnings: CliWarning[] = [];

  readonly #abort = new AbortController();
  #interrupted: 'SIGINT' | 'SIGTERM' | undefined;
  readonly #cleanups: (() => Promise<void> | void)[] = [];
  readonly #onSignal = (signal: 'SIGINT' | 'SIGTERM'): void => {
    const code = SIGNAL_EXIT[signal];
    // A second Ctrl-C means "now".
    if (this.#interrupted) process.exit(code);
    this.#interrupted = signal;
    this.#abort.abort(new Error(`Interrupted by ${signal}`));
    setTimeout(() => process.exit(code), SIGNAL_GRACE_MS).unref();
  };

  override async init(): Promise<void> {
    await super.init();
    // Installed before parsing so that Ctrl-C during a slow composition is handled too. Having listeners turns
    // off Node's default "die on SIGINT", which is why every wait watches `this.#abort`.
    process.on('SIGINT', this.#onSignal);
    process.on('SIGTERM', this.#onSignal);
    const { flags } = await this.parse({
      flags: this.ctor.flags,
      baseFlags: (this.ctor as unknown as typeof TaplineCommand).baseFlags,
      enableJsonFlag: this.ctor.enableJsonFlag,
      args: this.ctor.args,
      strict: this.ctor.strict,
    });
    this.flags = flags as TaplineFlags<T>;
  }

  /** Aborted on SIGINT/SIGTERM, for commands that wait without composing readers. */
  protected abortSignal(): AbortSignal {
    return this.#abort.signal;
  }

  /** Registers a cleanup step; steps run in reverse order when the command ends, on every path. */
  protected onCleanup(step: () => Promise<void> | void): void {
    this.#cleanups.push(step);
  }

  /**
   * Loads config and drivers and builds the container. Imports @tapline/core (and the simulator) on first use,
   * which is what keeps them off the `--version`/`--help` path.
   */
  protected async compose(): Promise<Session> {
    const core: CoreModule = await import('@tapline/core');
    const fixtures = await import('@tapline/test-fixtures');
    const flags = this.flags;
    const config = core.loadConfig({
      overrides: {
        driver: flags.driver,
        reader: flags.reader,
        trace: flags.trace ? true : undefined,
        ...(flags.sim ? { transports: [] } : {}),
      },
    });
    const logger = core.createLogger({ level: config.trace ? 'trace' : config.logLevel });

    // A scratch registry validates driver ids the way the real one will, so a bad plugin becomes a warning
    // instead of failing the container.
    const probe = new core.DriverRegistry([core.genericPcscDriver]);
    const loaded = await loadDrivers({
      config: this.config,
      reserved: [{ driver: core.genericPcscDriver, source: CORE_PACKAGE }],
      first: fixtures.drivers.map((driver: ReaderDriver) => ({ driver, source: FIXTURES_PACKAGE })),
      assertDriver: core.assertReaderDriver,
      admit: (driver) => probe.register(driver),
    });
    for (const warning of loaded.warnings) this.warn(warning);

    const simulation = flags.sim
      ? fixtures.createSimulation({
          tapAfterMs: flags['sim-tap-after'] ?? 300,
          chip: flags['sim-tag'] as VirtualChipKind,
        })
      : undefined;
    if (simulation) this.onCleanup(() => simulation.stop());

    const viaUsb = simulation !== undefined && flags['sim-reader'] === 'pn533-usb';
    const container = core.createContainer({
      config: viaUsb ? { ...config, transports: ['usb'] } : config,
      logger,
      drivers: loaded.drivers.map((d) => d.driver),
      ...(simulation && !viaUsb ? { deviceSources: simulation.deviceSources } : {}),
      ...(viaUsb
        ? {
            usbTransport: fixtures.fakeUsbTransport([
              new fixtures.FakeUsbDevice(new fixtures.Pn533Emulator(simulation.chip)),
            ]),
          }
        : {}),
    });
    const registry = core.resolve(container, core.Tokens.DriverRegistry);
    // Fail now rather than after a wait: a forced id that is not installed is a usage mistake.
    registry.assertPolicy();
    const manager = container.resolve(core.ReaderManager);

    const sources = new Map<string, string>([[core.genericPcscDriver.id, CORE_PACKAGE]]);
    for (const d of loaded.drivers) sources.set(d.driver.id, d.source);
    const drivers = registry.list().map((driver) => ({ driver, source: sources.get(driver.id) ?? 'unknown' }));

    const timeoutMs = flags.timeout ?? (this.ctor as unknown as typeof TaplineCommand).defaultTimeoutMs;
    // The budget covers waiting, not our own start-up: it starts with the first wait.
    let deadline: number | undefined;
    const signal = this.#abort.signal;

    let holding: ReaderHold | undefined;
    let releasing: Promise<void> | undefined;
    // Waits until every reader has let go of its device, so that nothing is left half-released when the process
    // exits.
    const release = (): Promise<void> => (releasing ??= bounded(holding?.release() ?? Promise.resolve()));
    this.onCleanup(release);

    return {
      core,
      config,
      logger,
      manager,
      registry,
      drivers,
      simulation,
      signal,
      remainingMs: () => {
        deadline ??= Date.now() + timeoutMs;
        return Math.max(1, deadline - Date.now());
      },
      hold: (onEvent) => {
        if (holding) throw new Error('Session.hold() called twice');
        holding = manager.hold(onEvent);
      },
      release,
    };
  }

  /**
   * Waits for the next tap within the `--timeout` budget. A timeout while no reader was ever attached becomes
   * `READER_NOT_FOUND`, because "no tag within 10 s" misleads when there was nothing to tap on.
   */
  protected async waitForTap(session: Session, attached: () => number): Promise<Tag> {
    const { core } = session;
    try {
      return await core.waitForTag(session.manager.tags$, { timeoutMs: session.remainingMs(), signal: session.signal });
    } catch (error) {
      // "No tag within 10 s" misleads when there was never a reader to tap on.
      if (attached() === 0 && core.hasErrorCode(error, core.ErrorCode.Timeout)) {
        throw new core.TaplineError(core.ErrorCode.ReaderNotFound, 'No reader was attached while waiting for a tag.', {
          cause: error,
          hint: session.config.reader
            ? `No reader name contains "${session.config.reader}". Run \`${this.config.bin} readers\` to see what is attached.`
            : `Plug in a reader (and start pcscd if it uses PC/SC), run \`${this.config.bin} readers\`, or try --sim.`,
          details: { ...error.details },
        });
      }
      throw error;
    }
  }

  /**
   * Prints a warning to stderr once (also with `--json`: stdout stays clean) and records it for JSON output.
   */
  override warn(input: string | Error | CliWarning): string | Error {
    const warning: CliWarning =
      typeof input === 'string' || input instanceof Error
        ? { code: 'INTERNAL', message: typeof input === 'string' ? input : input.message }
        : input;
    const key = `${warning.code}\u0000${warning.message}`;
    if (this.warnings.some((w) => `${w.code}\u0000${w.message}` === key)) return warningText(warning);
    this.warnings.push(warning);
    const text = warningText(warning);
    const write = (): void => void process.stderr.write(`${text}\n`);
    if (ux.action.running) void ux.action.pause(write);
    else write();
    return text;
  }

  /** Turns a reader-manager problem event into a warning. */
  protected warnFromEvent(event: ReadersEvent): void {
    if (event.type === 'transport-unavailable') {
      this.warn(fromError(event.error, { transport: event.transport }));
    } else if (event.type === 'skipped') {
      this.warn(fromError(event.error, { transport: event.transport, reader: event.name }));
    }
  }

  protected override async catch(error: Errors.CLIError | Error): Promise<unknown> {
    if (ux.action.running) ux.action.stop(ux.colorize('red', 'failed'));
    if (error instanceof Errors.ExitError) throw error;
    const signalExit = this.#interrupted === undefined ? undefined : SIGNAL_EXIT[this.#interrupted];

    if (error instanceof Errors.CLIError) {
      // Parse errors and this.error(): oclif's own message (with its suggestions) in human mode.
      const exit = error.oclif.exit ?? ExitCode.Usage;
      if (!this.jsonEnabled()) throw error;
      this.logJson({
        error: {
          code: exit === ExitCode.Usage ? 'INVALID_ARGUMENT' : 'INTERNAL',
          message: error.message,
          hint: `Run \`${[this.config.bin, this.id, '--help'].filter(Boolean).join(' ')}\` for the flags.`,
        },
      });
      this.exit(signalExit ?? exit);
    }

    const core: CoreModule = await import('@tapline/core');
    const failure = core.toTaplineError(error);
    const exitCode =
      signalExit ?? (failure.code === core.ErrorCode.InvalidArgument ? ExitCode.Usage : ExitCode.Failure);
    if (this.jsonEnabled()) {
      this.logJson({ error: failure.toJSON() });
    } else {
      const lines = [`Error [${failure.code}]: ${failure.message}`];
      const hint =
        failure.hint ?? (failure.code === core.ErrorCode.Internal ? internalHint(this.config.bin) : undefined);
      if (hint) lines.push(`Hint: ${hint}`);
      if (failure.code === core.ErrorCode.Internal && process.env['TAPLINE_LOG_LEVEL'] === 'debug') {
        lines.push(String(error instanceof Error ? error.stack : error));
      }
      process.stderr.write(`${lines.join('\n')}\n`);
    }
    this.exit(exitCode);
  }

  protected override async finally(error: Error | undefined): Promise<void> {
    try {
      for (const step of this.#cleanups.splice(0).reverse()) {
        try {
          await bounded(Promise.resolve().then(step));
        } catch {
          // Cleanup must run to the end; a failing step has nothing useful to add to the command's outcome.
        }
      }
      if (this.#interrupted && !error) process.exitCode = SIGNAL_EXIT[this.#interrupted];
    } finally {
      process.off('SIGINT', this.#onSignal);
      process.off('SIGTERM', this.#onSignal);
      await super.finally(error);
    }
  }
}

/** A warning from a Tapline error, with extra details (transport, reader). */
function fromError(error: TaplineError, extra: Readonly<Record<string, unknown>>): CliWarning {
  return {
    code: error.code,
    message: error.message,
    ...(error.hint === undefined ? {} : { hint: error.hint }),
    details: { ...error.details, ...extra },
  };
}

function internalHint(bin: string): string {
  return `This looks like a bug in Tapline. Run again with TAPLINE_LOG_LEVEL=debug for the stack, and report it with the output of \`${bin} --version\`.`;
}

/** Waits for `promise`, but no longer than {@link CLEANUP_STEP_MS}; the timer never keeps the process alive. */
function bounded(promise: Promise<unknown>): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, CLEANUP_STEP_MS);
    timer.unref();
    promise.then(
      () => {
        clearTimeout(timer);
        resolve();
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}
