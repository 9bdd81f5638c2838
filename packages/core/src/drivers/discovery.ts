import { readFile, readdir } from 'node:fs/promises';
import { join, resolve as resolvePath } from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { ALL_CAPABILITIES } from '../model/capabilities.js';
import type { ReaderDriver } from '../model/driver.js';
import { ErrorCode, TaplineError } from '../model/errors.js';

/**
 * The driver-package convention: an npm package whose package.json has `"tapline": { "drivers": "./dist/index.js" }`
 * (conventionally also the keyword `tapline-driver`), where that module exports `drivers: readonly ReaderDriver[]`.
 */
export interface DriverPackage {
  /** The package name. */
  readonly name: string;
  /** Absolute path of the package folder. */
  readonly directory: string;
  /** Absolute path of the module that exports `drivers`. */
  readonly entry: string;
}

interface PackageJsonLike {
  readonly name?: unknown;
  readonly tapline?: { readonly drivers?: unknown };
}

async function readPackage(directory: string): Promise<DriverPackage | undefined> {
  let json: PackageJsonLike;
  try {
    json = JSON.parse(await readFile(join(directory, 'package.json'), 'utf8')) as PackageJsonLike;
  } catch {
    return undefined;
  }
  const entry = json.tapline?.drivers;
  if (typeof json.name !== 'string' || typeof entry !== 'string') return undefined;
  return { name: json.name, directory, entry: resolvePath(directory, entry) };
}

async function listDirectory(path: string): Promise<string[]> {
  try {
    return await readdir(path);
  } catch {
    return [];
  }
}

/**
 * Finds driver packages installed in `nodeModules` (one level, plus scoped packages). Reads package.json files only;
 * imports nothing.
 */
export async function discoverDriverPackages(nodeModules: string): Promise<readonly DriverPackage[]> {
  const found: DriverPackage[] = [];
  for (const entry of (await listDirectory(nodeModules)).sort()) {
    if (entry.startsWith('.')) continue;
    const directories = entry.startsWith('@')
      ? (await listDirectory(join(nodeModules, entry))).sort().map((child) => join(nodeModules, entry, child))
      : [join(nodeModules, entry)];
    for (const directory of directories) {
      const pkg = await readPackage(directory);
      if (pkg) found.push(pkg);
    }
  }
  return found;
}

/**
 * Checks that `value` looks like a {@link ReaderDriver}; `source` names where it came from in the error.
 */
export function assertReaderDriver(value: unknown, source: string): asserts value is ReaderDriver {
  const fail = (why: string): never => {
    throw new TaplineError(ErrorCode.DriverNotFound, `${source} exports an invalid driver: ${why}.`, {
      hint: 'See docs/writing-a-driver.md for the shape a driver must have.',
    });
  };
  if (typeof value !== 'object' || value === null) return fail('not an object');
  const d = value as Partial<Record<keyof ReaderDriver, unknown>>;
  if (typeof d.id !== 'string' || d.id === '') fail('missing id');
  if (typeof d.displayName !== 'string') fail(`driver ${String(d.id)} has no displayName`);
  if (typeof d.open !== 'function') fail(`driver ${String(d.id)} has no open()`);
  if (!Array.isArray(d.matches)) fail(`driver ${String(d.id)} has no matches array`);
  if (
    !Array.isArray(d.capabilities) ||
    d.capabilities.some((c) => !(ALL_CAPABILITIES as readonly unknown[]).includes(c))
  ) {
    fail(`driver ${String(d.id)} declares unknown capabilities`);
  }
}

/**
 * Imports a driver module (a package name resolved from `from`, a path relative to it, or a `file:` URL) and returns its `drivers` export (or its
 * default export when that is a driver or an array of drivers). Fails with `DRIVER_NOT_FOUND` when the module is
 * missing or exports no valid driver.
 */
export async function loadDriverModule(
  specifier: string,
  from: string = process.cwd(),
): Promise<readonly ReaderDriver[]> {
  let module: Record<string, unknown>;
  try {
    module = (await import(resolveFrom(specifier, from))) as Record<string, unknown>;
  } catch (error) {
    throw new TaplineError(ErrorCode.DriverNotFound, `Cannot load the driver module "${specifier}".`, {
      cause: error,
      hint: `Install it (npm install ${specifier}) or fix the path in your config's driverModules.`,
    });
  }
  const exported = module['drivers'] ?? module['default'];
  const list = Array.isArray(exported) ? (exported as unknown[]) : exported === undefined ? [] : [exported];
  if (list.length === 0) {
    throw new TaplineError(ErrorCode.DriverNotFound, `The module "${specifier}" exports no drivers.`, {
      hint: 'A driver module exports `drivers: readonly ReaderDriver[]`.',
    });
  }
  for (const driver of list) assertReaderDriver(driver, `The module "${specifier}"`);
  return list as ReaderDriver[];
}

/**
 * Resolves `specifier` the way `from` would see it: paths relative to `from`, bare names from `from`'s node_modules
 * (a driver the user installed is not a dependency of core, so core's own resolution would not find it).
 */
function resolveFrom(specifier: string, from: string): string {
  if (specifier.startsWith('file:')) return specifier;
  if (/^(\.{1,2}\/|\/|[A-Za-z]:\\)/.test(specifier)) return pathToFileURL(resolvePath(from, specifier)).href;
  return pathToFileURL(createRequire(join(resolvePath(from), 'noop.js')).resolve(specifier)).href;
}

/** Loads every driver package found by {@link discoverDriverPackages}; packages that fail are reported, not fatal. */
export async function loadInstalledDrivers(
  nodeModules: string,
): Promise<{ readonly drivers: readonly ReaderDriver[]; readonly failures: readonly TaplineError[] }> {
  const drivers: ReaderDriver[] = [];
  const failures: TaplineError[] = [];
  for (const pkg of await discoverDriverPackages(nodeModules)) {
    try {
      drivers.push(...(await loadDriverModule(pathToFileURL(pkg.entry).href)));
    } catch (error) {
      failures.push(
        error instanceof TaplineError
          ? error
          : new TaplineError(ErrorCode.DriverNotFound, `Driver package ${pkg.name} failed to load.`, { cause: error }),
      );
    }
  }
  return { drivers, failures };
}
