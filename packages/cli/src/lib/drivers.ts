import type { Config } from '@oclif/core';
import type { DeviceMatcher, ReaderDriver, TaplineErrorCode } from '@tapline/core';
import type { CliWarning } from './output.js';

/**
 * The driver packages that ship with the CLI. They are imported lazily, only by commands that need drivers, so
 * that `--version` and `--help` never load them (each one pulls in `@tapline/core`, rxjs and tsyringe).
 *
 * Why not list them in `oclif.plugins` and let their `tapline:drivers` hooks run? oclif resolves every declared
 * plugin (package root, package.json, manifest lookup) in `Config.load`, which runs on every start, `--help` and
 * command-less invocations included: about 5 ms more per start for these four (Config.load 32 ms → 37 ms on the
 * 2-core dev VM), paid even by commands that never touch a reader. Importing them here costs nothing until a command
 * asks for drivers, and the import is the same one the hook would do. Community drivers installed with
 * `tapline plugins install` still arrive through the hook (see {@link loadDrivers}); the built-in packages are not
 * oclif plugins, so nothing is offered twice.
 */
export const BUILTIN_DRIVER_PACKAGES: readonly string[] = Object.freeze([
  '@tapline/driver-acr122',
  '@tapline/driver-acr1252',
  '@tapline/driver-identiv',
  '@tapline/driver-pn533-usb',
]);

/** The oclif hook through which driver plugins contribute drivers: its default export returns `ReaderDriver[]`. */
export const DRIVERS_HOOK = 'tapline:drivers';

/** Where the generic PC/SC driver comes from, for listings. */
export const CORE_PACKAGE = '@tapline/core';
/** Where the sim driver comes from, for listings. */
export const FIXTURES_PACKAGE = '@tapline/test-fixtures';

/** A driver and the package that provided it. */
export interface LoadedDriver {
  readonly driver: ReaderDriver;
  /** The package (or oclif plugin) the driver came from. */
  readonly source: string;
}

/** The outcome of {@link loadDrivers}. */
export interface LoadedDrivers {
  /** Drivers in precedence order, unique by id. Does not include the generic PC/SC driver, which core adds itself. */
  readonly drivers: readonly LoadedDriver[];
  /** Packages that failed to load, clashes, malformed exports. */
  readonly warnings: readonly CliWarning[];
}

/** Options of {@link loadDrivers}. */
export interface LoadDriversOptions {
  /** The oclif config, to run the `tapline:drivers` hook of installed plugins. */
  readonly config: Config;
  /** Drivers that come first (the sim driver). */
  readonly first?: readonly LoadedDriver[];
  /** Ids already taken by drivers core registers on its own (`pcsc`), with their source. */
  readonly reserved?: readonly LoadedDriver[];
  /** Built-in packages to import; default {@link BUILTIN_DRIVER_PACKAGES}. */
  readonly packages?: readonly string[];
  /** Checks that a plugin's export is a driver (core's `assertReaderDriver`); a throw becomes a warning. */
  readonly assertDriver: (value: unknown, source: string) => asserts value is ReaderDriver;
  /** Last checks before a unique driver is accepted (core's id rules); a throw becomes a warning. */
  readonly admit?: (driver: ReaderDriver) => void;
  /** Milliseconds a plugin's hook may take. Default 5000. */
  readonly hookTimeoutMs?: number;
}

/**
 * Collects every installed driver: `first`, then the built-in driver packages, then whatever installed oclif
 * plugins return from their `tapline:drivers` hook. Drivers are deduplicated by id; the first one wins and the
 * clash becomes a warning, so that one misbehaving plugin cannot take the whole CLI down.
 */
export async function loadDrivers(options: LoadDriversOptions): Promise<LoadedDrivers> {
  const warnings: CliWarning[] = [];
  const byId = new Map<string, LoadedDriver>();
  for (const reserved of options.reserved ?? []) byId.set(reserved.driver.id, reserved);
  const accepted: LoadedDriver[] = [];

  const offer = (candidate: unknown, source: string): void => {
    try {
      options.assertDriver(candidate, source);
    } catch (error) {
      warnings.push(warningFrom(error, { source }));
      return;
    }
    const existing = byId.get(candidate.id);
    if (existing) {
      if (existing.driver !== candidate) {
        warnings.push({
          code: 'INVALID_ARGUMENT',
          message: `Driver id "${candidate.id}" from ${source} is already provided by ${existing.source}; keeping the first.`,
          hint: 'Uninstall one of the two packages (`tapline plugins` lists installed plugins).',
          details: { id: candidate.id, kept: existing.source, ignored: source },
        });
      }
      return;
    }
    try {
      options.admit?.(candidate);
    } catch (error) {
      const warning = warningFrom(error, { id: candidate.id, source });
      warnings.push({ ...warning, message: `Ignoring driver "${candidate.id}" from ${source}: ${warning.message}` });
      return;
    }
    const loaded = { driver: candidate, source };
    byId.set(candidate.id, loaded);
    accepted.push(loaded);
  };

  for (const loaded of options.first ?? []) offer(loaded.driver, loaded.source);

  // Imported in parallel: each is an independent module graph, and core is shared and cached after the first.
  const packages = options.packages ?? BUILTIN_DRIVER_PACKAGES;
  const modules = await Promise.allSettled(packages.map((name) => import(name) as Promise<unknown>));
  modules.forEach((result, index) => {
    const name = packages[index]!;
    if (result.status === 'rejected') {
      warnings.push({
        code: 'DRIVER_NOT_FOUND',
        message: `The built-in driver package ${name} could not be loaded: ${describe(result.reason)}`,
        hint: 'Reinstall Tapline; if you run from a checkout, build it first (`pnpm build`).',
        details: { package: name },
      });
      return;
    }
    const exported = (result.value as { drivers?: unknown } | null)?.drivers;
    if (!Array.isArray(exported)) {
      warnings.push({
        code: 'DRIVER_NOT_FOUND',
        message: `The driver package ${name} has no \`drivers\` export.`,
        details: { package: name },
      });
      return;
    }
    for (const driver of exported) offer(driver, name);
  });

  // captureErrors: a plugin whose hook throws is reported, not fatal.
  const hook = await options.config.runHook(DRIVERS_HOOK, {}, options.hookTimeoutMs ?? 5000, true);
  for (const success of hook.successes) {
    const result: unknown = success.result;
    const list: unknown[] = Array.isArray(result) ? result : [result];
    for (const driver of list) offer(driver, success.plugin.name);
  }
  for (const failure of hook.failures) {
    warnings.push({
      code: 'DRIVER_NOT_FOUND',
      message: `The plugin ${failure.plugin.name} failed to provide its drivers: ${describe(failure.error)}`,
      hint: `Update or uninstall it with \`${options.config.bin} plugins uninstall ${failure.plugin.name}\`.`,
      details: { plugin: failure.plugin.name },
    });
  }

  return { drivers: accepted, warnings };
}

/** One matcher as `tapline drivers --json` prints it. */
export type MatcherJson =
  | {
      readonly transport: 'pcsc';
      readonly nameIncludes: string;
      readonly nameExcludes?: readonly string[];
      readonly score: number;
    }
  | { readonly transport: 'usb'; readonly usb: string; readonly score: number }
  | { readonly transport: 'virtual'; readonly kind: string; readonly score: number };

/** One driver as `tapline drivers --json` prints it. */
export interface DriverJson {
  readonly id: string;
  readonly name: string;
  readonly description: string;
  readonly capabilities: readonly string[];
  readonly matches: readonly MatcherJson[];
  /** The package or plugin that provided it. */
  readonly package: string;
}

/** The scores matchers get when they do not set one (pass core's `DEFAULT_MATCH_SCORE`). */
export interface MatcherDefaults {
  readonly pcsc: number;
  readonly usb: number;
  readonly virtual: number;
}

/** Describes a matcher for JSON, with its effective score and the USB id as `vvvv:pppp`. */
export function matcherJson(matcher: DeviceMatcher, defaults: MatcherDefaults): MatcherJson {
  switch (matcher.transport) {
    case 'pcsc':
      return {
        transport: 'pcsc',
        nameIncludes: matcher.nameIncludes,
        ...(matcher.nameExcludes && matcher.nameExcludes.length > 0 ? { nameExcludes: matcher.nameExcludes } : {}),
        score: matcher.score ?? defaults.pcsc,
      };
    case 'usb':
      return {
        transport: 'usb',
        usb: `${hex4(matcher.vendorId)}:${hex4(matcher.productId)}`,
        score: matcher.score ?? defaults.usb,
      };
    case 'virtual':
      return { transport: 'virtual', kind: matcher.kind, score: matcher.score ?? defaults.virtual };
  }
}

function hex4(value: number): string {
  return value.toString(16).padStart(4, '0');
}

/** A warning from a thrown value: a Tapline error keeps its code and hint. */
function warningFrom(error: unknown, details: Readonly<Record<string, unknown>>): CliWarning {
  const e = (typeof error === 'object' && error !== null ? error : {}) as { code?: unknown; hint?: unknown };
  return {
    code: typeof e.code === 'string' ? (e.code as TaplineErrorCode) : 'DRIVER_NOT_FOUND',
    message: describe(error),
    ...(typeof e.hint === 'string' ? { hint: e.hint } : {}),
    details,
  };
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
