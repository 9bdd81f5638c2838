import 'reflect-metadata';
import { inject, injectable } from 'tsyringe';
import {
  EMPTY,
  Observable,
  defer,
  filter,
  finalize,
  map,
  merge,
  mergeMap,
  share,
  startWith,
  tap,
  type Subscription,
} from 'rxjs';
import type { DeviceEvent, DeviceSource } from '../model/device-source.js';
import type { AttachedDevice, ReaderDriver, TransportKind } from '../model/driver.js';
import { ErrorCode, TaplineError, toTaplineError } from '../model/errors.js';
import type { Reader } from '../model/reader.js';
import type { Tag } from '../model/tag.js';
import type { DriverRegistry } from '../drivers/registry.js';
import type { TaplineConfig } from '../runtime/config.js';
import type { Logger } from '../runtime/logger.js';
import type { Clock } from '../runtime/clock.js';
import { Tokens } from '../runtime/tokens.js';
import { withDeadline } from '../util/deadline.js';

/** A reader coming or going, a device no driver would take, or a transport in trouble. */
export type ReadersEvent =
  | { readonly type: 'attached'; readonly reader: Reader; readonly driver: ReaderDriver; readonly forced: boolean }
  | { readonly type: 'detached'; readonly reader: Reader }
  | { readonly type: 'skipped'; readonly transport: TransportKind; readonly name: string; readonly error: TaplineError }
  | {
      readonly type: 'transport-unavailable';
      readonly transport: TransportKind;
      readonly error: TaplineError;
      readonly retryInMs?: number;
    };

/** A subscription that keeps readers open; `release()` also waits until every reader has let go of its device. */
export interface ReaderHold extends Subscription {
  release(): Promise<void>;
}

/** A tag arriving or leaving any reader. */
export type TagEvent = { readonly type: 'arrived'; readonly tag: Tag } | { readonly type: 'left'; readonly tag: Tag };

/** How long a driver may take to open a device. */
const OPEN_TIMEOUT_MS = 5000;

/**
 * Turns device sources into readers: picks a driver per device, opens it, closes it when the device goes, and
 * closes everything when the last subscriber leaves. `readers$` and `tags$` are shared: many subscribers, one set
 * of open readers.
 *
 * Readers live exactly as long as someone subscribes. Whoever uses a tag after `waitForTag` resolves must hold a
 * subscription (for instance {@link ReaderManager.hold}) until done, or the tag's reader closes under it.
 */
@injectable()
export class ReaderManager {
  /** Attach and detach events. Subscribing starts every device source. */
  readonly readers$: Observable<ReadersEvent>;
  /** Tag arrivals and removals on every attached reader. */
  readonly tags$: Observable<TagEvent>;
  readonly #attached = new Map<Reader, Extract<ReadersEvent, { type: 'attached' }>>();
  /** Closes in progress, so that {@link ReaderManager.settled} can wait for them. */
  readonly #closing = new Set<Promise<void>>();

  constructor(
    @inject(Tokens.DeviceSources) private readonly sources: readonly DeviceSource[],
    @inject(Tokens.DriverRegistry) private readonly registry: DriverRegistry,
    @inject(Tokens.Config) private readonly config: TaplineConfig,
    @inject(Tokens.Logger) private readonly logger: Logger,
    @inject(Tokens.Clock) private readonly clock: Clock,
  ) {
    const shared$ = new Observable<ReadersEvent>((subscriber) => this.run(subscriber)).pipe(
      tap((event) => {
        if (event.type === 'attached') this.#attached.set(event.reader, event);
        else if (event.type === 'detached') this.#attached.delete(event.reader);
      }),
      finalize(() => this.#attached.clear()),
      share({ resetOnRefCountZero: true, resetOnComplete: true, resetOnError: true }),
    );
    // A late subscriber first hears of the readers already attached, so that it misses none.
    this.readers$ = defer(() => shared$.pipe(startWith(...this.#attached.values())));
    this.tags$ = this.readers$.pipe(
      filter((e): e is Extract<ReadersEvent, { type: 'attached' }> => e.type === 'attached'),
      mergeMap(({ reader }) =>
        reader.events$.pipe(
          map((e): TagEvent =>
            e.type === 'tag-arrived' ? { type: 'arrived', tag: e.tag } : { type: 'left', tag: e.tag },
          ),
        ),
      ),
      share({ resetOnRefCountZero: true }),
    );
  }

  /**
   * Keeps the readers open until the returned subscription is unsubscribed; transport trouble is reported to
   * `onEvent` as it happens.
   */
  hold(
    onEvent: (event: ReadersEvent) => void = () => undefined,
    onError: (error: TaplineError) => void = () => undefined,
  ): ReaderHold {
    const subscription = this.readers$.subscribe({
      next: onEvent,
      error: (error: unknown) => onError(toTaplineError(error, ErrorCode.TransportUnavailable)),
    });
    return Object.assign(subscription, {
      release: async (): Promise<void> => {
        subscription.unsubscribe();
        await this.settled();
      },
    });
  }

  /** Resolves once every reader this manager closed has finished releasing its device. */
  async settled(): Promise<void> {
    while (this.#closing.size > 0) await Promise.allSettled([...this.#closing]);
  }

  private run(subscriber: { next(event: ReadersEvent): void; error(error: unknown): void }): () => void {
    const open = new Map<string, Promise<Reader | undefined>>();
    let stopped = false;
    const key = (transport: TransportKind, name: string): string => `${transport}\u0000${name}`;
    const wanted = (name: string): boolean =>
      this.config.reader === undefined || name.toLowerCase().includes(this.config.reader.toLowerCase());

    const attach = (device: AttachedDevice): void => {
      if (!wanted(device.name)) return;
      const id = key(device.transport, device.name);
      if (open.has(id)) return;
      const opening = this.openDevice(device).then(
        (result) => {
          if (result.type !== 'attached') {
            open.delete(id);
            if (!stopped && result.type !== 'ignored') subscriber.next(result);
            return undefined;
          }
          if (stopped || open.get(id) !== opening) {
            this.track(result.reader.close());
            return undefined;
          }
          subscriber.next(result);
          return result.reader;
        },
        () => undefined,
      );
      open.set(id, opening);
    };

    const detach = (transport: TransportKind, name: string): void => {
      const id = key(transport, name);
      const opening = open.get(id);
      if (!opening) return;
      open.delete(id);
      this.track(
        opening.then(async (reader) => {
          if (!reader) return;
          await reader.close();
          if (!stopped) subscriber.next({ type: 'detached', reader });
        }),
      );
    };

    const onEvent = (event: DeviceEvent): void => {
      switch (event.type) {
        case 'attached':
          attach(event.device);
          break;
        case 'detached':
          detach(event.transport, event.name);
          break;
        case 'unavailable':
          // The transport is gone (pcscd stopped, say): its readers are gone with it.
          for (const id of [...open.keys()]) {
            if (id.startsWith(`${event.transport}\u0000`))
              detach(event.transport, id.slice(event.transport.length + 1));
          }
          subscriber.next({
            type: 'transport-unavailable',
            transport: event.transport,
            error: event.error,
            ...(event.retryInMs === undefined ? {} : { retryInMs: event.retryInMs }),
          });
          break;
      }
    };

    try {
      this.registry.assertPolicy();
    } catch (error) {
      subscriber.error(error);
      return () => undefined;
    }
    const subscription: Subscription = (
      this.sources.length === 0 ? EMPTY : merge(...this.sources.map((s) => s.devices$))
    ).subscribe({
      next: onEvent,
      error: (error: unknown) => subscriber.error(toTaplineError(error, ErrorCode.TransportUnavailable)),
    });

    return () => {
      stopped = true;
      subscription.unsubscribe();
      for (const opening of open.values()) this.track(opening.then((reader) => reader?.close()));
      open.clear();
    };
  }

  private track(closing: Promise<void>): void {
    const tracked = closing.catch(() => undefined).finally(() => this.#closing.delete(tracked));
    this.#closing.add(tracked);
  }

  private async openDevice(device: AttachedDevice): Promise<ReadersEvent | { readonly type: 'ignored' }> {
    let selection;
    try {
      selection = this.registry.select(device);
    } catch (error) {
      return { type: 'skipped', transport: device.transport, name: device.name, error: toTaplineError(error) };
    }
    if (!selection) {
      // Most USB devices are keyboards and disks: only PC/SC and virtual readers without a driver are worth a word.
      if (device.transport === 'usb') return { type: 'ignored' };
      return {
        type: 'skipped',
        transport: device.transport,
        name: device.name,
        error: new TaplineError(ErrorCode.ReaderNotFound, `No installed driver serves "${device.name}".`, {
          hint: 'Install the driver package for this reader, or force one with --driver.',
        }),
      };
    }
    const { driver, forced } = selection;
    const logger = this.logger.child({ driver: driver.id });
    const opening = Promise.resolve().then(() =>
      driver.open(device, { logger, clock: this.clock, timeoutMs: this.config.exchangeTimeoutMs }),
    );
    try {
      const reader = await withDeadline(
        { what: `opening ${device.name} with driver ${driver.id}`, timeoutMs: OPEN_TIMEOUT_MS },
        () => opening,
      );
      logger.debug('reader attached', { name: reader.name, forced });
      return { type: 'attached', reader, driver, forced };
    } catch (error) {
      // A driver that answers after the deadline must not leave its device open.
      this.track(
        opening.then(
          (late) => late.close(),
          () => undefined,
        ),
      );
      const cause = toTaplineError(
        error,
        ErrorCode.DriverFailed,
        `Driver ${driver.id} could not open "${device.name}".`,
      );
      // Reported to subscribers as a `skipped` event; a warning here would say it twice.
      logger.debug('driver failed to open a device', { name: device.name, error: cause });
      return { type: 'skipped', transport: device.transport, name: device.name, error: cause };
    }
  }
}
