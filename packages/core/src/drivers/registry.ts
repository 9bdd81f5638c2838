import { ErrorCode, TaplineError } from '../model/errors.js';
import { matchScore, servesTransport, type AttachedDevice, type ReaderDriver } from '../model/driver.js';

/** How the user overrides automatic driver selection (`--driver`, config). */
export interface DriverPolicy {
  /** Force this driver id onto every device of a transport it serves. */
  readonly force?: string | undefined;
  /** Per-reader forcing: reader-name substring (case-insensitive) → driver id. Wins over `force`. */
  readonly perReader?: Readonly<Record<string, string>> | undefined;
}

/** The outcome of selecting a driver for a device. */
export interface DriverSelection {
  readonly driver: ReaderDriver;
  /** The match score; forced selections report the driver's own score, which may be 0. */
  readonly score: number;
  /** True when the user forced this driver. */
  readonly forced: boolean;
}

const DRIVER_ID = /^[a-z0-9][a-z0-9-]*$/;

/**
 * The installed drivers, and the rule that picks one per device: the user's forcing first, then the highest match
 * score, ties going to the driver registered first.
 */
export class DriverRegistry {
  readonly #drivers = new Map<string, ReaderDriver>();

  constructor(
    drivers: Iterable<ReaderDriver> = [],
    private readonly policy: DriverPolicy = {},
  ) {
    for (const driver of drivers) this.register(driver);
  }

  /** Adds a driver. A second driver with the same id is refused with `INVALID_ARGUMENT`. */
  register(driver: ReaderDriver): void {
    if (!DRIVER_ID.test(driver.id)) {
      throw new TaplineError(
        ErrorCode.InvalidArgument,
        `Driver id "${driver.id}" must be lower-case letters, digits and dashes.`,
      );
    }
    const existing = this.#drivers.get(driver.id);
    if (existing === driver) return;
    if (existing) {
      throw new TaplineError(
        ErrorCode.InvalidArgument,
        `Two drivers claim the id "${driver.id}" (${existing.displayName} and ${driver.displayName}).`,
        { hint: 'Uninstall one of the two driver packages.' },
      );
    }
    this.#drivers.set(driver.id, driver);
  }

  /** Every registered driver, in registration order. */
  list(): readonly ReaderDriver[] {
    return [...this.#drivers.values()];
  }

  /** The driver with `id`, or `undefined`. */
  get(id: string): ReaderDriver | undefined {
    return this.#drivers.get(id);
  }

  /** The driver with `id`; fails with `DRIVER_NOT_FOUND` naming the installed ones. */
  require(id: string): ReaderDriver {
    const driver = this.#drivers.get(id);
    if (!driver) {
      throw new TaplineError(ErrorCode.DriverNotFound, `No driver with id "${id}" is installed.`, {
        hint: `Installed drivers: ${[...this.#drivers.keys()].join(', ') || 'none'}. Run \`tapline drivers\` for details.`,
        details: { id, installed: [...this.#drivers.keys()] },
      });
    }
    return driver;
  }

  /**
   * Checks that every driver id the policy forces is installed; fails with `DRIVER_NOT_FOUND` otherwise, so that a
   * typo in `--driver` is an error at once rather than a reader that never appears.
   */
  assertPolicy(): void {
    for (const id of [this.policy.force, ...Object.values(this.policy.perReader ?? {})]) {
      if (id !== undefined) this.require(id);
    }
  }

  /** Every driver that matches `device`, best first. */
  candidates(device: AttachedDevice): readonly { readonly driver: ReaderDriver; readonly score: number }[] {
    return [...this.#drivers.values()]
      .map((driver) => ({ driver, score: matchScore(driver, device) }))
      .filter((c) => c.score > 0)
      .sort((a, b) => b.score - a.score);
  }

  /**
   * The driver for `device`, or `undefined` when none matches and none is forced. A forced id that is not
   * installed fails with `DRIVER_NOT_FOUND`; a forced driver that serves another transport leaves the device to
   * automatic selection.
   */
  select(device: AttachedDevice): DriverSelection | undefined {
    const forcedId = this.forcedIdFor(device.name);
    if (forcedId !== undefined) {
      const driver = this.require(forcedId);
      if (servesTransport(driver, device.transport)) {
        return { driver, score: matchScore(driver, device), forced: true };
      }
    }
    const best = this.candidates(device)[0];
    return best ? { ...best, forced: false } : undefined;
  }

  private forcedIdFor(name: string): string | undefined {
    const lower = name.toLowerCase();
    for (const [fragment, id] of Object.entries(this.policy.perReader ?? {})) {
      if (lower.includes(fragment.toLowerCase())) return id;
    }
    return this.policy.force;
  }
}
