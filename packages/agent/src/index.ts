/**
 * `@tapline/agent`: the unattended process that answers VivoKey scan requests from a desktop reader.
 *
 * This milestone is a skeleton: requests come from an in-memory queue of simulated requests, and the dialogue with
 * the tapped tag only reads its UID. The platform relay (real requests, the real dialogue) replaces both later;
 * the composition (container, readers, scan-request pipeline, clean shutdown) is the real one.
 *
 * @packageDocumentation
 */
import { EMPTY, fromEvent, takeUntil, takeWhile } from 'rxjs';
import {
  ReaderManager,
  Tokens,
  assertReaderDriver,
  createContainer,
  createLogger,
  genericPcscDriver,
  loadConfig,
  loadDriverModule,
  resolve,
  runScanRequests,
  toHex,
  toTaplineError,
  type Logger,
  type Reader,
  type ReaderDriver,
  type ReadersEvent,
  type ScanEvent,
  type ScanHandler,
  type TaplineConfig,
  type TaplineError,
} from '@tapline/core';
import type { Simulation } from '@tapline/test-fixtures';
import { humanLine, readersEventLine, scanEventLine, type AgentLine } from './format.js';
import { RequestQueue, simulatedRequests } from './request-queue.js';

export { RequestQueue, simulatedRequests } from './request-queue.js';
export { humanLine, readersEventLine, scanEventLine, type AgentLine, type TagJson } from './format.js';

/** The driver packages the agent ships with (dependencies of this package). */
export const BUILTIN_DRIVER_PACKAGES: readonly string[] = Object.freeze([
  '@tapline/driver-acr122',
  '@tapline/driver-acr1252',
  '@tapline/driver-identiv',
  '@tapline/driver-pn533-usb',
]);

/** Options of {@link runAgent}. */
export interface AgentOptions {
  /** Use the simulator (one simulated reader, a chip tapped shortly after start) instead of real readers. */
  readonly sim?: boolean;
  /**
   * The simulation to use; implies `sim`. Tests pass their own to drive the field (`field.remove()`,
   * `field.present(chip)`).
   */
  readonly simulation?: Simulation;
  /**
   * With the simulator: lift the chip and tap it again this many milliseconds after each dialogue, so that every
   * simulated request gets its tap. Default: never (the chip stays on the reader, as a real one would).
   */
  readonly simRetapMs?: number;
  /** How many simulated requests are pending at start. Default 0. */
  readonly requests?: number;
  /** Stop as soon as no request is pending (at start too). Default: run until `signal` aborts. */
  readonly exitWhenIdle?: boolean;
  /** Stops the agent: readers are closed, everything unsubscribed, and {@link runAgent} resolves. */
  readonly signal?: AbortSignal;
  /** Diagnostics (stderr by default, level from the config). */
  readonly logger?: Logger;
  /** Print event lines as JSON objects, one per line. */
  readonly json?: boolean;
  /** Where event lines go. Default: stdout. */
  readonly write?: (line: string) => void;
  /** Called with every event line, after it is written (for embedding and tests). */
  readonly onLine?: (line: AgentLine) => void;
  /** Called with every reader event (attach, detach, transport trouble), for embedding and tests. */
  readonly onReaderEvent?: (event: ReadersEvent) => void;
  /** Config overrides, merged over the config file and environment as the CLI does. */
  readonly config?: Partial<TaplineConfig>;
  /** Milliseconds one dialogue may take. Default 10000. */
  readonly dialogueTimeoutMs?: number;
}

/** Why {@link runAgent} stopped. */
export type AgentStopReason = 'idle' | 'aborted' | 'readers-ended';

/** What {@link runAgent} resolves with. */
export interface AgentSummary {
  readonly reason: AgentStopReason;
  /** Requests answered. */
  readonly answered: number;
  /** Dialogues that failed (the request stayed queued). */
  readonly failed: number;
  /** Requests still queued. */
  readonly pending: number;
}

/** How long closing one reader may take at shutdown before the agent stops waiting for it. */
const CLOSE_TIMEOUT_MS = 2000;

/**
 * Runs the agent: composes the container (the simulator with `sim`), keeps the readers open, and answers queued
 * scan requests with taps through core's scan-request pipeline, writing one line per event.
 *
 * The dialogue is a placeholder until the platform relay exists: it answers each request with the tapped tag's UID
 * as lower-case hex.
 *
 * Resolves when `signal` aborts (SIGINT/SIGTERM in the `tapline-agent` executable), when no request is pending and
 * `exitWhenIdle` is set, or when every reader source has ended; the readers are closed by then. Rejects with a
 * `TaplineError` when composition fails (bad config: `INVALID_ARGUMENT`) or the pipeline breaks.
 */
export async function runAgent(options: AgentOptions = {}): Promise<AgentSummary> {
  const sim = options.sim === true || options.simulation !== undefined;
  const write = options.write ?? ((line: string) => void process.stdout.write(`${line}\n`));
  const emit = (line: AgentLine): void => {
    write(options.json ? JSON.stringify(line) : humanLine(line));
    options.onLine?.(line);
  };

  const config = loadConfig({ overrides: { ...options.config, ...(sim ? { transports: [] } : {}) } });
  const logger = options.logger ?? createLogger({ level: config.trace ? 'trace' : config.logLevel });

  const fixtures = sim ? await import('@tapline/test-fixtures') : undefined;
  const simulation = options.simulation ?? fixtures?.createSimulation();
  const drivers = await loadAgentDrivers(config, logger, simulation?.drivers ?? []);

  const container = createContainer({
    config,
    logger,
    drivers,
    ...(simulation ? { deviceSources: simulation.deviceSources } : {}),
  });
  if (config.driver !== undefined) resolve(container, Tokens.DriverRegistry).require(config.driver);
  const manager = container.resolve(ReaderManager);

  const queue = new RequestQueue();
  queue.add(...simulatedRequests(options.requests ?? 0));

  // Placeholder dialogue (see the TSDoc above): the answer is the UID the reader reported.
  const handler: ScanHandler<string> = ({ tag }) => Promise.resolve(toHex(tag.uid));

  const open = new Set<Reader>();
  const retapTimers = new Set<NodeJS.Timeout>();
  let answered = 0;
  let failed = 0;
  let reason: AgentStopReason = 'readers-ended';

  const hold = manager.hold((event) => {
    if (event.type === 'attached') open.add(event.reader);
    else if (event.type === 'detached') open.delete(event.reader);
    emit(readersEventLine(event));
    options.onReaderEvent?.(event);
  });

  const retap = (): void => {
    if (!simulation || options.simRetapMs === undefined) return;
    const timer = setTimeout(() => {
      retapTimers.delete(timer);
      simulation.field.remove();
      simulation.field.present(simulation.chip);
    }, options.simRetapMs);
    retapTimers.add(timer);
  };

  const handle = (event: ScanEvent<string>): void => {
    // Dequeue first, so that a tap arriving from here on cannot start the answered request again.
    if (event.type === 'completed') {
      answered += 1;
      queue.remove(event.request.id);
    } else if (event.type === 'failed') {
      failed += 1;
    }
    if (options.exitWhenIdle && event.type === 'idle') reason = 'idle';
    emit(scanEventLine(event));
    if (event.type === 'completed' || event.type === 'failed') retap();
  };
  // Dequeuing makes the pipeline announce the next state synchronously, from inside the event being handled;
  // the backlog keeps the lines in the order the events happened (`completed` before `idle`).
  const backlog: ScanEvent<string>[] = [];
  let handling = false;
  const onEvent = (event: ScanEvent<string>): void => {
    backlog.push(event);
    if (handling) return;
    handling = true;
    try {
      for (let next = backlog.shift(); next; next = backlog.shift()) handle(next);
    } finally {
      handling = false;
    }
  };

  const signal = options.signal;
  const abort$ = signal ? fromEvent(signal, 'abort') : EMPTY;
  // A service waits for requests until it is stopped. Nothing else may hold the event loop meanwhile (the
  // simulator's timers are unref'd, a USB-only host has no open handle between events), so hold it here.
  const keepAlive = setInterval(() => undefined, 2 ** 30);
  try {
    if (!signal?.aborted) {
      const events$ = runScanRequests<string>({
        source: queue,
        tags$: manager.tags$,
        handler,
        dialogueTimeoutMs: options.dialogueTimeoutMs ?? 10_000,
      }).pipe(
        takeUntil(abort$),
        // Inclusive, so that the `idle` line that ends the run is still printed.
        takeWhile((event) => !(options.exitWhenIdle && event.type === 'idle'), true),
      );
      await new Promise<void>((resolve, reject) => {
        events$.subscribe({
          next: onEvent,
          error: (error: unknown) => reject(toTaplineError(error)),
          complete: resolve,
        });
      });
    }
    if (signal?.aborted) reason = 'aborted';
  } finally {
    clearInterval(keepAlive);
    for (const timer of retapTimers) clearTimeout(timer);
    simulation?.stop();
    hold.unsubscribe();
    // The manager closes readers without waiting for them; wait here, so that the process can exit right after.
    await Promise.all([...open].map((reader) => closeWithin(reader, CLOSE_TIMEOUT_MS)));
  }

  const summary: AgentSummary = { reason, answered, failed, pending: queue.size };
  emit({ event: 'stopped', time: new Date().toISOString(), ...summary });
  return summary;
}

/** Closes `reader`, giving up waiting after `ms` (a stuck native handle must not block shutdown). */
async function closeWithin(reader: Reader, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const gaveUp = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
    timer.unref();
  });
  try {
    await Promise.race([reader.close(), gaveUp]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The agent's drivers: the simulator's (when simulating), the built-in driver packages, then the config's
 * `driverModules` (the agent is not an oclif host, so this is how community drivers reach it). First id wins;
 * failures are logged, never fatal.
 */
async function loadAgentDrivers(
  config: TaplineConfig,
  logger: Logger,
  first: readonly ReaderDriver[],
): Promise<ReaderDriver[]> {
  const seen = new Set<string>([genericPcscDriver.id]);
  const out: ReaderDriver[] = [];
  const offer = (driver: unknown, source: string): void => {
    try {
      assertReaderDriver(driver, source);
    } catch (error) {
      logger.warn('ignoring an invalid driver', { source, error: errorOf(error) });
      return;
    }
    if (seen.has(driver.id)) {
      logger.warn('driver id already taken; keeping the first', { id: driver.id, source });
      return;
    }
    seen.add(driver.id);
    out.push(driver);
  };
  for (const driver of first) offer(driver, '@tapline/test-fixtures');
  // Imported here rather than through core's loadDriverModule: a bare name must resolve from this package, which
  // depends on the built-in drivers; core does not.
  const modules = await Promise.allSettled(BUILTIN_DRIVER_PACKAGES.map((name) => import(name) as Promise<unknown>));
  modules.forEach((result, i) => {
    const name = BUILTIN_DRIVER_PACKAGES[i]!;
    if (result.status === 'rejected') {
      logger.warn('a built-in driver package failed to load', { package: name, error: errorOf(result.reason) });
      return;
    }
    const exported = (result.value as { drivers?: unknown }).drivers;
    for (const driver of Array.isArray(exported) ? exported : [exported]) offer(driver, name);
  });
  for (const specifier of config.driverModules) {
    try {
      for (const driver of await loadDriverModule(specifier)) offer(driver, specifier);
    } catch (error) {
      logger.warn('a driver module from the config failed to load', { module: specifier, error: errorOf(error) });
    }
  }
  return out;
}

function errorOf(error: unknown): TaplineError | Error {
  return error instanceof Error ? error : new Error(String(error));
}
