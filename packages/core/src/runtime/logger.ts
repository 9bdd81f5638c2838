import { toSpacedHex } from '../util/bytes.js';

/** Log levels, quietest last. `trace` adds every frame in and out as hex. */
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'silent';

const LEVEL_RANK: Readonly<Record<LogLevel, number>> = {
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  silent: 100,
};

/** Structured fields attached to a log line. Values under secret-looking keys are redacted. */
export type LogFields = Readonly<Record<string, unknown>>;

/** One structured log record, as handed to a {@link LogSink}. */
export interface LogRecord {
  readonly time: number;
  readonly level: Exclude<LogLevel, 'silent'>;
  readonly message: string;
  readonly fields: LogFields;
}

/** Where log records go. */
export type LogSink = (record: LogRecord) => void;

/** The logger every Tapline component receives through the container. */
export interface Logger {
  /** The active level. */
  readonly level: LogLevel;
  /** True when `level` would be written; use it to skip building expensive fields. */
  enabled(level: Exclude<LogLevel, 'silent'>): boolean;
  error(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  debug(message: string, fields?: LogFields): void;
  trace(message: string, fields?: LogFields): void;
  /** Logs one frame at `trace` level, like pcsc-spy: `>` towards the tag, `<` from it. */
  frame(direction: '>' | '<', bytes: Uint8Array, fields?: LogFields): void;
  /** A logger whose records all carry `bindings`. */
  child(bindings: LogFields): Logger;
}

const SECRET_KEY = /token|secret|passw|authori[sz]ation|cookie|api[-_]?key|x-api-vivokey|private|^pin$|keys?$/i;
const REDACTED = '[redacted]';

/**
 * Returns a copy of `fields` in which every value under a secret-looking key is replaced by `[redacted]`, at any
 * depth. Byte arrays become spaced hex.
 */
export function redact(fields: LogFields): Record<string, unknown> {
  return redactValue(fields, 0) as Record<string, unknown>;
}

function redactValue(value: unknown, depth: number): unknown {
  if (value instanceof Uint8Array) return toSpacedHex(value);
  if (value instanceof Error) {
    // The stable code (Tapline's, or a system error's ENOENT) and the hint are what a reader of the log acts on.
    const { code, hint } = value as { code?: unknown; hint?: unknown };
    return {
      name: value.name,
      message: value.message,
      ...(typeof code === 'string' ? { code } : {}),
      ...(typeof hint === 'string' ? { hint } : {}),
    };
  }
  if (typeof value !== 'object' || value === null) return value;
  if (depth > 6) return '[deep]';
  if (Array.isArray(value)) return value.map((v) => redactValue(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    out[key] = SECRET_KEY.test(key) ? REDACTED : redactValue(v, depth + 1);
  }
  return out;
}

/** Options for {@link createLogger}. */
export interface LoggerOptions {
  /** Minimum level written. Default `info`, or `trace` when `TAPLINE_TRACE` is set. */
  readonly level?: LogLevel;
  /** Where records go. Default: one line per record on stderr. */
  readonly sink?: LogSink;
  /** Fields on every record. */
  readonly bindings?: LogFields;
}

/** Reads `TAPLINE_TRACE` and `TAPLINE_LOG_LEVEL` from `env`. */
export function logLevelFromEnv(env: NodeJS.ProcessEnv = process.env): LogLevel | undefined {
  const trace = env['TAPLINE_TRACE'];
  if (trace !== undefined && trace !== '' && trace !== '0' && trace.toLowerCase() !== 'false') return 'trace';
  const level = env['TAPLINE_LOG_LEVEL']?.toLowerCase();
  return level !== undefined && level in LEVEL_RANK ? (level as LogLevel) : undefined;
}

/** A sink that writes human-readable lines to a stream (stderr by default, so JSON on stdout stays clean). */
export function streamSink(stream: NodeJS.WritableStream = process.stderr): LogSink {
  return (record) => {
    const time = new Date(record.time).toISOString().slice(11, 23);
    const fields = Object.keys(record.fields).length === 0 ? '' : ` ${JSON.stringify(record.fields)}`;
    stream.write(`${time} ${record.level.padEnd(5)} ${record.message}${fields}\n`);
  };
}

/** A sink that writes one JSON object per line. */
export function jsonLinesSink(stream: NodeJS.WritableStream = process.stderr): LogSink {
  return (record) => {
    stream.write(
      `${JSON.stringify({ time: new Date(record.time).toISOString(), level: record.level, message: record.message, ...record.fields })}\n`,
    );
  };
}

/** Creates a levelled, redacting, structured logger. */
export function createLogger(options: LoggerOptions = {}): Logger {
  return new StructuredLogger(
    options.level ?? logLevelFromEnv() ?? 'info',
    options.sink ?? streamSink(),
    options.bindings ?? {},
  );
}

class StructuredLogger implements Logger {
  readonly #rank: number;

  constructor(
    readonly level: LogLevel,
    private readonly sink: LogSink,
    private readonly bindings: LogFields,
  ) {
    this.#rank = LEVEL_RANK[level];
  }

  enabled(level: Exclude<LogLevel, 'silent'>): boolean {
    return LEVEL_RANK[level] >= this.#rank;
  }

  error(message: string, fields?: LogFields): void {
    this.write('error', message, fields);
  }
  warn(message: string, fields?: LogFields): void {
    this.write('warn', message, fields);
  }
  info(message: string, fields?: LogFields): void {
    this.write('info', message, fields);
  }
  debug(message: string, fields?: LogFields): void {
    this.write('debug', message, fields);
  }
  trace(message: string, fields?: LogFields): void {
    this.write('trace', message, fields);
  }

  frame(direction: '>' | '<', bytes: Uint8Array, fields?: LogFields): void {
    if (!this.enabled('trace')) return;
    this.write('trace', `${direction} ${toSpacedHex(bytes)}`, fields);
  }

  child(bindings: LogFields): Logger {
    return new StructuredLogger(this.level, this.sink, { ...this.bindings, ...bindings });
  }

  private write(level: Exclude<LogLevel, 'silent'>, message: string, fields: LogFields | undefined): void {
    if (LEVEL_RANK[level] < this.#rank) return;
    this.sink({ time: Date.now(), level, message, fields: redact({ ...this.bindings, ...fields }) });
  }
}

/** A logger that writes nothing. */
export const silentLogger: Logger = createLogger({ level: 'silent', sink: () => undefined });
