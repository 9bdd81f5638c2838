import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { ErrorCode, TaplineError } from '@tapline/core';

/** Where the PC/SC test stack's parts are on this machine. */
export interface PcscStackPaths {
  /** The pcscd binary. */
  readonly pcscd: string;
  /** vsmartcard-vpcd's IFD handler (`libifdvpcd.so`). */
  readonly vpcdDriver: string;
  /** pcscd's compiled-in USB driver directory (`usbdropdir`, where hotplug looks for `*.bundle`). */
  readonly usbDropDir: string;
  /** pcscd's compiled-in IPC directory (`ipcdir`, home of the fixed `pcscd.comm`). */
  readonly ipcDir: string;
}

/** Whether pcscd and vpcd are installed, and where; or why not. */
export type PcscStackAvailability =
  ({ readonly available: true } & PcscStackPaths) | { readonly available: false; readonly reason: string };

/** The part of a test context {@link skipUnlessPcsc} needs (vitest's `TestContext` fits). */
export interface SkippableContext {
  skip(note?: string): void;
}

/** Directories with system binaries, which a non-root PATH often lacks. */
const SYSTEM_BIN_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/local/bin', '/usr/bin', '/bin'];

const VPCD_CANDIDATES = [
  '/usr/lib/pcsc/drivers/serial/libifdvpcd.so',
  '/usr/lib64/pcsc/drivers/serial/libifdvpcd.so',
  '/usr/local/lib/pcsc/drivers/serial/libifdvpcd.so',
  '/usr/lib/x86_64-linux-gnu/pcsc/drivers/serial/libifdvpcd.so',
];

/** The first executable called `name` on PATH or in the usual system directories. */
export function findExecutable(name: string): string | undefined {
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter).filter(Boolean), ...SYSTEM_BIN_DIRS];
  for (const dir of dirs) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** `pcscd -v` lists the compiled-in directories (`usbdropdir=… ipcdir=…`); the Debian values are the fallback. */
function pcscdDirectories(pcscd: string): { readonly usbDropDir: string; readonly ipcDir: string } {
  const result = spawnSync(pcscd, ['-v'], { encoding: 'utf8', timeout: 5000 });
  const text = `${result.stdout ?? ''}${result.stderr ?? ''}`;
  return {
    usbDropDir: /usbdropdir=(\S+)/.exec(text)?.[1] ?? '/usr/lib/pcsc/drivers',
    ipcDir: /ipcdir=(\S+)/.exec(text)?.[1] ?? '/run/pcscd',
  };
}

/** The vpcd driver: the LIBPATH of the packaged `/etc/reader.conf.d/vpcd`, else the usual install locations. */
function findVpcdDriver(usbDropDir: string): string | undefined {
  const candidates: string[] = [];
  try {
    const conf = readFileSync('/etc/reader.conf.d/vpcd', 'utf8');
    const libPath = /^\s*LIBPATH\s+(\S+)/m.exec(conf)?.[1];
    if (libPath) candidates.push(libPath);
  } catch {
    // no packaged config: look in the usual places
  }
  candidates.push(join(usbDropDir, 'serial/libifdvpcd.so'), ...VPCD_CANDIDATES);
  return candidates.find((path) => existsSync(path));
}

let cached: PcscStackAvailability | undefined;

/**
 * Looks for pcscd and vsmartcard-vpcd (Debian: `apt-get install pcscd vsmartcard-vpcd`). Linux only: vpcd is a
 * pcsc-lite driver. The answer is cached for the process.
 */
export function pcscStackAvailability(): PcscStackAvailability {
  if (cached) return cached;
  cached = detect();
  return cached;
}

function detect(): PcscStackAvailability {
  if (process.platform !== 'linux') {
    return { available: false, reason: `the pcscd + vpcd test stack runs on Linux only (this is ${process.platform})` };
  }
  const pcscd = findExecutable('pcscd');
  if (!pcscd) return { available: false, reason: 'pcscd is not installed (apt-get install pcscd)' };
  const { usbDropDir, ipcDir } = pcscdDirectories(pcscd);
  const vpcdDriver = findVpcdDriver(usbDropDir);
  if (!vpcdDriver) {
    return { available: false, reason: 'vsmartcard-vpcd is not installed (apt-get install vsmartcard-vpcd)' };
  }
  return { available: true, pcscd, vpcdDriver, usbDropDir, ipcDir };
}

/**
 * Skips the calling test, with the reason in the report, when pcscd or vpcd is not installed; under CI (`CI` set)
 * it fails instead, because CI installs both (`.ci/run`) and a silent skip there would hide a broken setup.
 */
export function skipUnlessPcsc(context: SkippableContext): void {
  const stack = pcscStackAvailability();
  if (stack.available) return;
  if (process.env['CI']) throw missingStackError(stack.reason);
  context.skip(`PC/SC test stack unavailable: ${stack.reason}`);
}

/** The error for a machine without the stack. */
export function missingStackError(reason: string): TaplineError {
  return new TaplineError(ErrorCode.TransportUnavailable, `The PC/SC test stack is unavailable: ${reason}.`, {
    hint: 'Install pcscd and vsmartcard-vpcd (Debian/Ubuntu: apt-get install pcscd vsmartcard-vpcd); CI does it in .ci/run.',
  });
}
