/**
 * The interactive pick between several pending scan requests, when the agent runs on a terminal.
 *
 * @packageDocumentation
 */
import { ErrorCode, TaplineError, type ScanRequest } from '@tapline/core';

/** Options of {@link promptChoice}. */
export interface PromptChoiceOptions {
  /**
   * Closes the prompt: the pending set changed, or the choice was made elsewhere (`tapline agent choose`, a tap).
   * {@link promptChoice} then resolves with `undefined`.
   */
  readonly signal?: AbortSignal;
  /** Default: stdin. */
  readonly input?: NodeJS.ReadableStream;
  /** Default: stdout. */
  readonly output?: NodeJS.WritableStream;
  /** The clock the requests' times are in (milliseconds). Default `Date.now`. */
  readonly now?: () => number;
  /**
   * Called when the person presses Ctrl-C at the prompt. The prompt reads the terminal in raw mode, so Ctrl-C reaches
   * it as a key instead of as SIGINT; the default raises SIGINT on this process, so that Ctrl-C stops the agent as it
   * does everywhere else.
   */
  readonly onInterrupt?: () => void;
}

/**
 * Asks which pending request the next tap should answer, with one line per request (see {@link describeRequest}).
 *
 * Resolves with the id picked, or `undefined` when `signal` closed the prompt, Ctrl-C was pressed, or there was
 * nothing to pick. Rejects with `INTERNAL` if the prompt itself fails.
 */
export async function promptChoice(
  requests: readonly ScanRequest[],
  options: PromptChoiceOptions = {},
): Promise<string | undefined> {
  const { signal } = options;
  if (requests.length === 0 || signal?.aborted) return undefined;
  const now = (options.now ?? Date.now)();
  // Loaded on first use: an agent that never prompts (a service, --json) never loads the prompt library.
  const { default: select } = await import('@inquirer/select');
  if (signal?.aborted) return undefined;
  try {
    return await select(
      {
        message: 'Several scan requests are pending. Which one should the next tap answer?',
        choices: requests.map((request) => ({
          value: request.id,
          name: describeRequest(request, now),
          description: `Request ${request.id}${acceptedChipsText(request)}`,
        })),
        loop: false,
      },
      {
        ...(options.input ? { input: options.input } : {}),
        ...(options.output ? { output: options.output } : {}),
        ...(signal ? { signal } : {}),
        // The agent's event lines continue below; a finished prompt would only repeat what the next line says.
        clearPromptOnDone: true,
      },
    );
  } catch (error) {
    const name = error instanceof Error ? error.name : '';
    if (name === 'AbortPromptError' || signal?.aborted) return undefined;
    if (name === 'ExitPromptError') {
      (options.onInterrupt ?? (() => process.kill(process.pid, 'SIGINT')))();
      return undefined;
    }
    throw new TaplineError(ErrorCode.Internal, 'The choice prompt failed.', { cause: error });
  }
}

function acceptedChipsText(request: ScanRequest): string {
  const chips = request.acceptedChips ?? [];
  return chips.length === 0 ? '' : `, answered by ${chips.join(', ')}`;
}

/**
 * One request as the prompt and `tapline agent status` show it: `<relying party>: <purpose> (expires in …)`.
 * `now` and the request's times are in the same clock (milliseconds).
 */
export function describeRequest(
  request: Pick<ScanRequest, 'id' | 'relyingParty' | 'purpose' | 'expiresAt'>,
  now: number = Date.now(),
): string {
  const who = request.relyingParty ?? `Request ${request.id}`;
  const what = request.purpose ?? 'no purpose given';
  const left = request.expiresAt === undefined ? '' : ` (${expiresText(request.expiresAt - now)})`;
  return `${who}: ${what}${left}`;
}

function expiresText(ms: number): string {
  return ms <= 0 ? 'expired' : `expires in ${formatDuration(ms)}`;
}

/** A duration in words a person reads at a glance: `45 s`, `4 min 5 s`, `2 h 3 min`. Rounds up to whole seconds. */
export function formatDuration(ms: number): string {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = total % 60;
  if (hours > 0) return minutes > 0 ? `${hours} h ${minutes} min` : `${hours} h`;
  if (minutes > 0) return seconds > 0 ? `${minutes} min ${seconds} s` : `${minutes} min`;
  return `${seconds} s`;
}
