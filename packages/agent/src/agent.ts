import { EMPTY, Observable, Subject, fromEvent, merge, takeUntil, takeWhile } from 'rxjs';
import {
  ReaderManager,
  Tokens,
  answerScanRequest,
  assertReaderDriver,
  createContainer,
  createLogger,
  genericPcscDriver,
  loadConfig,
  loadDriverModule,
  resolve,
  runScanRequests,
  systemClock,
  toTaplineError,
  type BackoffOptions,
  type Logger,
  type Reader,
  type ReaderDriver,
  type ReadersEvent,
  type ScanEvent,
  type ScanHandler,
  type ScanRequest,
  type ScanRequestClient,
  type TaplineConfig,
} from '@tapline/core';
import type { ReferencePlatform, Simulation, VirtualChipKind } from '@tapline/test-fixtures';
import { humanLine, readersEventLine, scanEventLine, type AgentLine } from './format.js';
import { PlatformRequestSource } from './platform-source.js';
import { connectToPlatform, connectToSimulatedPlatform, type PlatformConnection } from './connect.js';
import { AgentState } from './state.js';
import { startControlServer, controlSocketPath, type ControlServer } from './control.js';
import { promptChoice } from './chooser.js';

/** The driver packages the agent ships with (dependencies of this package). */
export const BUILTIN_DRIVER_PACKAGES: readonly string[] = Object.freeze([
  '@tapline/driver-acr122',
  '@tapline/driver-acr1252',
  '@tapline/driver-identiv',
  '@tapline/driver-pn533-usb',
]);

/** Options of {@link runAgent}. */
export interface AgentOptions {
  /**
   * Demo mode: simulated readers with a Spark 2 on them and, unless {@link AgentOptions.connection} is given, an
   * in-process reference platform that the agent associates with by itself (the device flow, approved by the
   * platform's test hook) and that holds {@link AgentOptions.requests} scan requests.
   */
  readonly sim?: boolean;
  /** The simulation to use; implies `sim`. Tests pass their own to drive the field. */
  readonly simulation?: Simulation;
  /** With the simulator: the virtual chip to tap. Default `spark2`. */
  readonly simChip?: VirtualChipKind;
  /** With the simulator: how many simulated readers (the chip is on the first). Default 1. */
  readonly simReaders?: number;
  /**
   * With the simulator, play the person at the reader: tap the chip this many milliseconds after a request becomes
   * answerable (`ready`, `chosen`), and lift it after each dialogue. Default: never (tests tap themselves).
   */
  readonly simAutoTapMs?: number;
  /** With the in-process platform: how many scan requests it holds at start. Default 0. */
  readonly requests?: number;
  /**
   * With `sim`: run Tapline's reference platform in this process and associate with it automatically. Default
   * true; false keeps the simulated readers but uses the configured platform and the stored association.
   */
  readonly simPlatform?: boolean;
  /** With the in-process platform: use this one (tests inject faults into it). Default: a fresh one. */
  readonly platform?: ReferencePlatform;
  /** An already associated platform connection; default: from the config and the stored credentials. */
  readonly connection?: PlatformConnection;
  /** Stop as soon as the platform lists no pending request. Default: run until `signal` aborts. */
  readonly exitWhenIdle?: boolean;
  /** Stops the agent: the dialogue in flight is given a moment, readers are closed, then {@link runAgent} resolves. */
  readonly signal?: AbortSignal;
  readonly logger?: Logger;
  /** Print event lines as JSON objects, one per line. */
  readonly json?: boolean;
  /** Where event lines go. Default: stdout. */
  readonly write?: (line: string) => void;
  /** Called with every event line, after it is written. */
  readonly onLine?: (line: AgentLine) => void;
  /** Called with every reader event. */
  readonly onReaderEvent?: (event: ReadersEvent) => void;
  /** Config overrides, merged over the config file and environment. */
  readonly config?: Partial<TaplineConfig>;
  /** Milliseconds one dialogue may take. Default 10000. */
  readonly dialogueTimeoutMs?: number;
  /**
   * The local control socket (`tapline agent choose`, `tapline agent status`): its path, or `false` for none.
   * Default: {@link controlSocketPath}.
   */
  readonly controlSocket?: string | false;
  /**
   * Ask at a prompt which request to answer when several are pending. Default: when stdin and stdout are terminals
   * and `json` is off.
   */
  readonly interactive?: boolean;
  /** The terminal the choice prompt uses. Default: stdin and stdout. */
  readonly promptTerminal?: { readonly input: NodeJS.ReadableStream; readonly output: NodeJS.WritableStream };
  /** Picks from elsewhere (tests, embedding), merged with the control socket's and the prompt's. */
  readonly choices$?: Observable<string>;
  /**
   * Answer several pending requests oldest first without asking, as a person picking the top of the list would.
   * Default: on in the demo (`sim` with the in-process platform), where nobody is there to choose; off otherwise.
   */
  readonly autoChoose?: boolean;
  /** Seconds the platform may hold a long poll. Default 25. */
  readonly pollWaitSec?: number;
  /** Delays between failed polls. Default 1 s doubling to 30 s, with jitter. */
  readonly pollBackoff?: BackoffOptions;
}

/** Why {@link runAgent} stopped. */
export type AgentStopReason = 'idle' | 'aborted' | 'readers-ended';

/** What {@link runAgent} resolves with. */
export interface AgentSummary {
  readonly reason: AgentStopReason;
  /** Requests answered. */
  readonly answered: number;
  /** Dialogues that failed (their requests stayed pending on the platform). */
  readonly failed: number;
  /** Requests the platform still listed as pending at the end. */
  readonly pending: number;
}

/** What a completed dialogue reports (the `result` of a `completed` line). */
export interface AnsweredScan {
  readonly chip: string;
  /** From the tap to the platform's acknowledgement. */
  readonly answeredInMs: number;
}

/** How long closing one reader may take at shutdown before the agent stops waiting for it. */
const CLOSE_TIMEOUT_MS = 2000;
/** How long a dialogue in flight at shutdown may take to finish before it is cancelled. */
const SHUTDOWN_GRACE_MS = 3000;

/**
 * Runs the agent: composes the container, keeps the readers open, long-polls the platform for pending scan
 * requests, and answers them with taps through core's scan-request pipeline (claim → chip dialogue → answer),
 * writing one line per event. Several pending: the choice comes from the terminal prompt, the control socket
 * (`tapline agent choose ID`) or {@link AgentOptions.choices$}.
 *
 * Heals itself: readers that go (unplugged, pcscd restarted) come back through the device sources; the platform
 * long poll retries with backoff and jitter; the access token is refreshed as it expires. A failed tap leaves its
 * request pending for the next tap; an answer is never submitted twice.
 *
 * Resolves when `signal` aborts, when nothing is pending and `exitWhenIdle` is set, or when every reader source has
 * ended. Rejects with a `TaplineError` when composition fails.
 */
export async function runAgent(options: AgentOptions = {}): Promise<AgentSummary> {
  const sim = options.sim === true || options.simulation !== undefined;
  const write = options.write ?? ((line: string) => void process.stdout.write(`${line}\n`));
  /** Human lines that arrive while the choice prompt is open wait for it to close: they would garble it. */
  let heldForPrompt: string[] | undefined;
  const emit = (line: AgentLine): void => {
    const text = options.json ? JSON.stringify(line) : humanLine(line);
    if (heldForPrompt && !options.json) heldForPrompt.push(text);
    else write(text);
    options.onLine?.(line);
  };

  const config = loadConfig({ overrides: { ...options.config, ...(sim ? { transports: [] } : {}) } });
  const logger = options.logger ?? createLogger({ level: config.trace ? 'trace' : config.logLevel });

  const fixtures = sim ? await import('@tapline/test-fixtures') : undefined;
  const simulation =
    options.simulation ??
    (fixtures ? createAgentSimulation(fixtures, options.simReaders ?? 1, options.simChip ?? 'spark2') : undefined);
  const drivers = await loadAgentDrivers(config, logger, simulation?.drivers ?? []);

  const cleanups: (() => Promise<void> | void)[] = [];
  const state = new AgentState();
  let control: ControlServer | undefined;
  const open = new Set<Reader>();
  let tapTimer: NodeJS.Timeout | undefined;
  let answered = 0;
  let failed = 0;
  let reason: AgentStopReason = 'readers-ended';
  let source: PlatformRequestSource | undefined;

  try {
    if (options.signal?.aborted) return { reason: 'aborted', answered, failed, pending: 0 };

    const connection =
      options.connection ??
      (sim && fixtures && options.simPlatform !== false
        ? await connectToSimulatedPlatform(fixtures, {
            logger,
            requests: options.requests ?? 0,
            ...(options.platform ? { platform: options.platform } : {}),
            ...(options.signal ? { signal: options.signal } : {}),
          })
        : await connectToPlatform(config, logger));
    cleanups.push(() => connection.close());
    state.platformUrl = connection.platformUrl.href;

    const client: ScanRequestClient = connection.client;
    source = new PlatformRequestSource({
      client,
      logger,
      ...(options.pollWaitSec === undefined ? {} : { waitSec: options.pollWaitSec }),
      ...(options.pollBackoff === undefined ? {} : { backoff: options.pollBackoff }),
      onReachability: (reachability, retryInMs) => {
        const time = new Date().toISOString();
        if (reachability.reachable) emit({ event: 'platform-reachable', time });
        else {
          emit({
            event: 'platform-unreachable',
            time,
            ...(reachability.lastError ? { error: reachability.lastError.toJSON() } : {}),
            ...(retryInMs === undefined ? {} : { retryInMs }),
          });
        }
      },
    });
    state.source = source;
    const requestSource = source;
    cleanups.push(() => requestSource.stop());

    const container = createContainer({
      config,
      logger,
      drivers,
      ...(simulation ? { deviceSources: simulation.deviceSources } : {}),
    });
    if (config.driver !== undefined) resolve(container, Tokens.DriverRegistry).require(config.driver);
    const manager = container.resolve(ReaderManager);

    const choices = new Subject<string>();
    if (options.controlSocket !== false) {
      control = await startControlServer({
        path: options.controlSocket ?? controlSocketPath(),
        logger,
        handlers: {
          status: async () => {
            state.associated = await connection.identity();
            return state.snapshot();
          },
          choose: (id) => {
            const outcome = state.choose(id);
            if ('chosen' in outcome) choices.next(id);
            return outcome;
          },
        },
      });
      const server = control;
      cleanups.push(() => server.close());
    }

    const handler: ScanHandler<AnsweredScan> = async ({ request, tag, signal, release }) => {
      const started = performance.now();
      const answer = await answerScanRequest(tag, client, request.id, {
        signal,
        clock: systemClock,
        // Once the chip has answered, lifting it must not cancel the submission of that answer.
        onStep: (step) => {
          if (step === 'chip-released') release();
        },
      });
      return { chip: answer.chip, answeredInMs: Math.round(performance.now() - started) };
    };

    const hold = manager.hold((event) => {
      if (event.type === 'attached') open.add(event.reader);
      else if (event.type === 'detached') open.delete(event.reader);
      state.onReaderEvent(event);
      emit(readersEventLine(event));
      options.onReaderEvent?.(event);
    });
    cleanups.push(() => hold.unsubscribe());
    const tagWatch = manager.tags$.subscribe((event) => state.onTagEvent(event));
    cleanups.push(() => tagWatch.unsubscribe());

    // The simulated person: taps when a request can be answered (never onto a request that is not there yet, which
    // the pipeline would ignore, as it must for a hand that was resting on the reader), lifts after the dialogue.
    // One tap at a time: a newer offer replaces a tap still pending, and nobody taps into a running dialogue.
    const simulatedTap = (event: ScanEvent<AnsweredScan>): void => {
      if (!simulation || options.simAutoTapMs === undefined) return;
      if (event.type === 'completed' || event.type === 'failed') {
        simulation.field.remove();
        return;
      }
      if (event.type !== 'ready' && event.type !== 'chosen') return;
      clearTimeout(tapTimer);
      tapTimer = setTimeout(() => {
        tapTimer = undefined;
        if (state.dialogueRunning) return;
        simulation.field.remove();
        simulation.field.present(simulation.chip);
      }, options.simAutoTapMs);
    };

    const autoChoose = options.autoChoose ?? (sim && options.simPlatform !== false && options.connection === undefined);
    const interactive =
      options.interactive ?? (!options.json && process.stdin.isTTY === true && process.stdout.isTTY === true);
    // The choice prompt. Lines that arrive while it is on screen are held, and written once inquirer has cleared it
    // (after its promise settles: clearing erases the lines above the cursor). One prompt at a time.
    let prompt: AbortController | undefined;
    let promptRunning = false;
    let promptQueue: Promise<void> = Promise.resolve();
    const flushHeld = (): void => {
      const held = heldForPrompt ?? [];
      heldForPrompt = undefined;
      for (const text of held) write(text);
    };
    const closePrompt = (): void => {
      prompt?.abort();
      prompt = undefined;
      if (!promptRunning) flushHeld();
    };
    const openPrompt = (requests: readonly ScanRequest[]): void => {
      closePrompt();
      const asking = new AbortController();
      prompt = asking;
      heldForPrompt ??= [];
      promptQueue = promptQueue.then(async () => {
        if (asking.signal.aborted) return;
        promptRunning = true;
        try {
          const id = await promptChoice(requests, { signal: asking.signal, ...options.promptTerminal });
          if (id !== undefined && !asking.signal.aborted) choices.next(id);
        } catch (error) {
          logger.warn('the choice prompt failed', { error: toTaplineError(error) });
        } finally {
          promptRunning = false;
          if (prompt === asking) prompt = undefined;
          flushHeld();
          // A newer prompt is queued: it holds lines again from here.
          if (prompt) heldForPrompt = [];
        }
      });
    };
    cleanups.push(closePrompt);

    const handle = (event: ScanEvent<AnsweredScan>): void => {
      state.onScanEvent(event);
      if (event.type === 'completed') {
        answered += 1;
        // Not offered again, even before the platform's next listing confirms it.
        requestSource.forget(event.request.id);
        requestSource.refresh();
      } else if (event.type === 'failed') {
        failed += 1;
      }
      if (options.exitWhenIdle && event.type === 'idle') reason = 'idle';
      // Any other state ends the question; its line then prints after whatever waited for the prompt.
      if (event.type !== 'choice-needed') closePrompt();
      emit(scanEventLine(event));
      simulatedTap(event);
      if (event.type !== 'choice-needed') return;
      if (autoChoose) {
        // Later, not from inside the event: the pipeline is still announcing the state this pick changes.
        const [oldest] = event.requests;
        if (oldest) setImmediate(() => choices.next(oldest.id));
      } else if (interactive) {
        openPrompt(event.requests);
      }
    };
    // Forgetting a request makes the pipeline announce the next state synchronously, from inside the event being
    // handled; the backlog keeps the lines in the order the events happened (`completed` before `idle`).
    const backlog: ScanEvent<AnsweredScan>[] = [];
    let handling = false;
    const onEvent = (event: ScanEvent<AnsweredScan>): void => {
      backlog.push(event);
      if (handling) return;
      handling = true;
      try {
        for (let next = backlog.shift(); next; next = backlog.shift()) {
          try {
            handle(next);
          } catch (error) {
            // A failing output hook (write, onLine) must not take the agent down without its cleanup.
            logger.error('handling a scan event failed', { event: next.type, error: toTaplineError(error) });
          }
        }
      } finally {
        handling = false;
      }
    };

    const signal = options.signal;
    // Graceful stop: a dialogue in flight gets a moment to finish, so that a chip already answering is not wasted.
    const stop$ = signal ? graceful(fromEvent(signal, 'abort'), () => state.dialogueRunning, SHUTDOWN_GRACE_MS) : EMPTY;
    // A service waits for requests until it is stopped; nothing else may hold the event loop meanwhile.
    const keepAlive = setInterval(() => undefined, 2 ** 30);
    cleanups.push(() => clearInterval(keepAlive));
    requestSource.start();
    if (!signal?.aborted) {
      const events$ = runScanRequests<AnsweredScan>({
        source: requestSource,
        tags$: manager.tags$,
        choices$: merge(choices, options.choices$ ?? EMPTY),
        handler,
        dialogueTimeoutMs: options.dialogueTimeoutMs ?? 10_000,
      }).pipe(
        takeUntil(stop$),
        // Inclusive, so that the `idle` line that ends the run is still printed.
        takeWhile((event) => !(options.exitWhenIdle && event.type === 'idle'), true),
      );
      await new Promise<void>((resolvePromise, reject) => {
        events$.subscribe({
          next: onEvent,
          error: (error: unknown) => reject(toTaplineError(error)),
          complete: resolvePromise,
        });
      });
    }
    if (signal?.aborted) reason = 'aborted';
  } finally {
    clearTimeout(tapTimer);
    simulation?.stop();
    for (const cleanup of cleanups.reverse()) {
      try {
        await cleanup();
      } catch (error) {
        logger.debug('a shutdown step failed', { error: toTaplineError(error) });
      }
    }
    await Promise.all([...open].map((reader) => closeWithin(reader, CLOSE_TIMEOUT_MS)));
  }

  const summary: AgentSummary = { reason, answered, failed, pending: source?.requests.length ?? 0 };
  // Counts first: the demo's contract is a last line that starts `{"answered":N,"failed":0,`.
  emit({
    answered: summary.answered,
    failed: summary.failed,
    pending: summary.pending,
    reason: summary.reason,
    event: 'stopped',
    time: new Date().toISOString(),
  });
  return summary;
}

/** Emits when `stop$` fires and, if `busy()` then, once it is not any more or `graceMs` have passed. */
function graceful(stop$: Observable<unknown>, busy: () => boolean, graceMs: number): Observable<unknown> {
  return new Observable<unknown>((subscriber) => {
    let poll: NodeJS.Timeout | undefined;
    let giveUp: NodeJS.Timeout | undefined;
    const sub = stop$.subscribe(() => {
      if (!busy()) return subscriber.next(undefined);
      giveUp = setTimeout(() => subscriber.next(undefined), graceMs);
      poll = setInterval(() => {
        if (!busy()) subscriber.next(undefined);
      }, 20);
    });
    return () => {
      sub.unsubscribe();
      clearInterval(poll);
      clearTimeout(giveUp);
    };
  });
}

/** The demo's simulation: `readers` simulated readers, `chip` to tap on the first. */
function createAgentSimulation(
  fixtures: typeof import('@tapline/test-fixtures'),
  readers: number,
  chip: VirtualChipKind,
): Simulation {
  // No tap on a timer: the demo's taps follow the requests (see simAutoTapMs).
  const simulation = fixtures.createSimulation({ tapAfterMs: false, chip });
  if (readers <= 1) return simulation;
  // The extra readers stay empty: they exist for `bench/agent-idle` and for choosing a reader by name.
  const extra = Array.from(
    { length: readers - 1 },
    (_, i) => new fixtures.SimulatedField(`Tapline Simulated Reader ${i + 2}`, { latencyMs: 1 }),
  );
  return {
    ...simulation,
    deviceSources: [...simulation.deviceSources, fixtures.simDeviceSource(extra)],
  };
}

/** Closes `reader`, giving up waiting after `ms` (a stuck native handle must not block shutdown). */
async function closeWithin(reader: Reader, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const gaveUp = new Promise<void>((resolvePromise) => {
    timer = setTimeout(resolvePromise, ms);
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
      logger.warn('ignoring an invalid driver', { source, error: toTaplineError(error) });
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
      logger.warn('a built-in driver package failed to load', { package: name, error: toTaplineError(result.reason) });
      return;
    }
    const exported = (result.value as { drivers?: unknown }).drivers;
    for (const driver of Array.isArray(exported) ? exported : [exported]) offer(driver, name);
  });
  for (const specifier of config.driverModules) {
    try {
      for (const driver of await loadDriverModule(specifier)) offer(driver, specifier);
    } catch (error) {
      logger.warn('a driver module from the config failed to load', {
        module: specifier,
        error: toTaplineError(error),
      });
    }
  }
  return out;
}
