import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, TaplineError } from '../model/errors.js';
import type { LogLevel } from './logger.js';

/** Tapline's configuration, merged from defaults, the config file, the environment and flags (last wins). */
export interface TaplineConfig {
  /** Force one driver id onto every device of a transport it serves (`--driver`). */
  readonly driver?: string | undefined;
  /** Per-reader forcing: reader-name substring → driver id. */
  readonly readerDrivers?: Readonly<Record<string, string>> | undefined;
  /** Only use readers whose name contains this (case-insensitive; `--reader`). */
  readonly reader?: string | undefined;
  /** Default timeout for waits and exchanges, in milliseconds (`--timeout` applies to the whole command). */
  readonly exchangeTimeoutMs: number;
  /** Log level. */
  readonly logLevel: LogLevel;
  /** Log every frame as hex (`--trace`, `TAPLINE_TRACE=1`). */
  readonly trace: boolean;
  /** Extra driver modules to load (package names or paths), for hosts without oclif plugins such as the agent. */
  readonly driverModules: readonly string[];
  /** Which transports to watch. */
  readonly transports: readonly ('pcsc' | 'usb')[];
  /** The VivoKey Auth API key (`TAPLINE_API_KEY`). A secret: redacted from logs, never printed. */
  readonly apiKey?: string | undefined;
  /** The VivoKey Auth API root (`TAPLINE_PLATFORM_URL`); default https://auth.vivokey.com. */
  readonly platformUrl?: string | undefined;
  /**
   * The OpenID Provider that associates this computer with a VivoKey account (`TAPLINE_ISSUER`). Default: `oidc`
   * under the platform URL (`new URL('oidc', platformUrl)`), computed where it is used (see `resolveIssuer`).
   */
  readonly issuer?: string | undefined;
  /** The OAuth client id Tapline logs in as (`TAPLINE_CLIENT_ID`). Default {@link DEFAULT_CLIENT_ID}. */
  readonly clientId: string;
  /**
   * Where the association's tokens are kept (`TAPLINE_CREDENTIALS_FILE`). Default `credentials.json` in
   * {@link configDirectory}. The file holds a refresh token: it is written with mode 0600.
   */
  readonly credentialsFile?: string | undefined;
}

/** The public OAuth client id of Tapline on the desktop. */
export const DEFAULT_CLIENT_ID = 'tapline-desktop';

/** The defaults. */
export const DEFAULT_CONFIG: TaplineConfig = Object.freeze<TaplineConfig>({
  exchangeTimeoutMs: 2000,
  logLevel: 'warn',
  trace: false,
  driverModules: [],
  transports: ['pcsc', 'usb'],
  clientId: DEFAULT_CLIENT_ID,
});

/** The per-user configuration directory: `$XDG_CONFIG_HOME/tapline`, `%APPDATA%\tapline`, or `~/Library/Preferences/tapline`. */
export function configDirectory(
  env: NodeJS.ProcessEnv = process.env,
  platform: NodeJS.Platform = process.platform,
): string {
  if (env['TAPLINE_CONFIG_DIR']) return env['TAPLINE_CONFIG_DIR'];
  if (platform === 'win32') return join(env['APPDATA'] ?? join(homedir(), 'AppData', 'Roaming'), 'tapline');
  if (platform === 'darwin') return join(homedir(), 'Library', 'Preferences', 'tapline');
  return join(env['XDG_CONFIG_HOME'] ?? join(homedir(), '.config'), 'tapline');
}

/** Options of {@link loadConfig}. */
export interface LoadConfigOptions {
  /** The config file; default `config.json` in {@link configDirectory}. A missing file is fine. */
  readonly file?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Values from flags; `undefined` entries are ignored. */
  readonly overrides?: Partial<TaplineConfig>;
}

const LOG_LEVELS: readonly string[] = ['trace', 'debug', 'info', 'warn', 'error', 'silent'];

/**
 * Loads the configuration. A malformed file or value fails with `INVALID_ARGUMENT` naming the file and the key.
 */
export function loadConfig(options: LoadConfigOptions = {}): TaplineConfig {
  const env = options.env ?? process.env;
  const file = options.file ?? join(configDirectory(env), 'config.json');
  const fromFile = readConfigFile(file);
  const fromEnv: Partial<TaplineConfig> = {
    driver: env['TAPLINE_DRIVER'] || undefined,
    reader: env['TAPLINE_READER'] || undefined,
    trace:
      env['TAPLINE_TRACE'] !== undefined && !['', '0', 'false'].includes(env['TAPLINE_TRACE'].toLowerCase())
        ? true
        : undefined,
    logLevel: env['TAPLINE_LOG_LEVEL'] ? (env['TAPLINE_LOG_LEVEL'].toLowerCase() as LogLevel) : undefined,
    apiKey: env['TAPLINE_API_KEY'] || undefined,
    platformUrl: env['TAPLINE_PLATFORM_URL'] || undefined,
    issuer: env['TAPLINE_ISSUER'] || undefined,
    clientId: env['TAPLINE_CLIENT_ID'] || undefined,
    credentialsFile: env['TAPLINE_CREDENTIALS_FILE'] || undefined,
  };
  const merged = { ...DEFAULT_CONFIG, ...defined(fromFile), ...defined(fromEnv), ...defined(options.overrides ?? {}) };
  return validate(merged, `${file} / environment`);
}

function readConfigFile(file: string): Partial<TaplineConfig> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new TaplineError(ErrorCode.InvalidArgument, `Cannot read the config file ${file}.`, { cause: error });
  }
  try {
    const parsed = JSON.parse(text) as Partial<TaplineConfig> | null;
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not a JSON object');
    return parsed;
  } catch (error) {
    throw new TaplineError(ErrorCode.InvalidArgument, `The config file ${file} is not a JSON object.`, {
      cause: error,
      hint: 'Fix or delete the file; `{}` is a valid config.',
    });
  }
}

function defined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function validate(config: TaplineConfig, where: string): TaplineConfig {
  const bad = (key: string, expected: string): never => {
    throw new TaplineError(ErrorCode.InvalidArgument, `Config value "${key}" in ${where} must be ${expected}.`);
  };
  if (!Number.isInteger(config.exchangeTimeoutMs) || config.exchangeTimeoutMs <= 0)
    bad('exchangeTimeoutMs', 'a positive integer');
  if (!LOG_LEVELS.includes(config.logLevel)) bad('logLevel', LOG_LEVELS.join(', '));
  if (typeof config.trace !== 'boolean') bad('trace', 'true or false');
  if (config.driver !== undefined && typeof config.driver !== 'string') bad('driver', 'a driver id');
  if (config.reader !== undefined && typeof config.reader !== 'string') bad('reader', 'a reader-name fragment');
  if (!Array.isArray(config.driverModules) || config.driverModules.some((m) => typeof m !== 'string')) {
    bad('driverModules', 'an array of module names');
  }
  if (!Array.isArray(config.transports) || config.transports.some((t) => t !== 'pcsc' && t !== 'usb')) {
    bad('transports', 'an array of "pcsc" and "usb"');
  }
  if (config.apiKey !== undefined && (typeof config.apiKey !== 'string' || config.apiKey === ''))
    bad('apiKey', 'a non-empty string');
  if (config.platformUrl !== undefined) {
    if (typeof config.platformUrl !== 'string' || !URL.canParse(config.platformUrl))
      bad('platformUrl', 'an absolute URL');
  }
  if (config.issuer !== undefined) {
    if (typeof config.issuer !== 'string' || !/^https?:\/\//i.test(config.issuer) || !URL.canParse(config.issuer))
      bad('issuer', 'an absolute http(s) URL');
  }
  if (typeof config.clientId !== 'string' || !/^[\x21-\x7e]{1,255}$/.test(config.clientId))
    bad('clientId', 'a client id (1 to 255 printable ASCII characters, no spaces)');
  if (
    config.credentialsFile !== undefined &&
    (typeof config.credentialsFile !== 'string' || config.credentialsFile === '')
  )
    bad('credentialsFile', 'a file path');
  if (config.readerDrivers !== undefined) {
    if (
      typeof config.readerDrivers !== 'object' ||
      Object.values(config.readerDrivers).some((v) => typeof v !== 'string')
    ) {
      bad('readerDrivers', 'an object of reader-name fragment to driver id');
    }
  }
  return Object.freeze({ ...config });
}

/** The file name of the association's tokens inside {@link configDirectory}. */
export const CREDENTIALS_FILE_NAME = 'credentials.json';

/**
 * Where the association's tokens are kept: `config.credentialsFile` when set, else `credentials.json` in
 * {@link configDirectory}.
 */
export function credentialsFilePath(
  config: Pick<TaplineConfig, 'credentialsFile'> = {},
  env: NodeJS.ProcessEnv = process.env,
): string {
  return config.credentialsFile ?? join(configDirectory(env), CREDENTIALS_FILE_NAME);
}
