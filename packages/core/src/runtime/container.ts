import 'reflect-metadata';
import { container as rootContainer, instanceCachingFactory, type DependencyContainer } from 'tsyringe';
import { asyncScheduler, type SchedulerLike } from 'rxjs';
import { DEFAULT_CONFIG, type TaplineConfig } from './config.js';
import { createLogger, type Logger } from './logger.js';
import { systemClock, type Clock } from './clock.js';
import { Tokens, resolve } from './tokens.js';
import { DriverRegistry } from '../drivers/registry.js';
import { genericPcscDriver } from '../drivers/pcsc-generic.js';
import { servesTransport, type ReaderDriver } from '../model/driver.js';
import type { DeviceSource } from '../model/device-source.js';
import type { PcscTransport } from '../transport/pcsc.js';
import type { UsbTransport } from '../transport/usb.js';
import type { PlatformClient } from '../model/platform.js';
import { ErrorCode, TaplineError } from '../model/errors.js';
import { createNativePcscTransport } from '../transport/pcsc-native.js';
import { createNativeUsbTransport } from '../transport/usb-native.js';
import { pcscDeviceSource, usbDeviceSource } from '../transport/device-sources.js';
import { ReaderManager } from '../pipeline/reader-manager.js';

/** Options of {@link createContainer}. Everything is optional; the defaults talk to real hardware. */
export interface ContainerOptions {
  /** Configuration, merged over {@link DEFAULT_CONFIG}. Frontends load it with `loadConfig` first. */
  readonly config?: Partial<TaplineConfig>;
  /** Drivers besides the built-in generic PC/SC driver. */
  readonly drivers?: readonly ReaderDriver[];
  /** Leave out the generic PC/SC driver (`pcsc`). */
  readonly withoutGenericPcsc?: boolean;
  /** Device sources; default: one per transport in `config.transports`. */
  readonly deviceSources?: readonly DeviceSource[];
  readonly logger?: Logger;
  readonly clock?: Clock;
  readonly scheduler?: SchedulerLike;
  /** PC/SC transport; default: the native `pcsclite` binding, loaded on first use. */
  readonly pcscTransport?: PcscTransport;
  /** USB transport; default: the native `usb` binding, loaded on first use. */
  readonly usbTransport?: UsbTransport;
  readonly platformClient?: PlatformClient;
  /** Parent container; default tsyringe's root. A child is always created, so containers never share state. */
  readonly parent?: DependencyContainer;
}

/**
 * The one composition root, used by the CLI, the agent and the tests. Resolve what you need with
 * `resolve(container, Tokens.X)` or `container.resolve(ReaderManager)`. Nothing native is loaded until a device
 * source is subscribed.
 */
export function createContainer(options: ContainerOptions = {}): DependencyContainer {
  const c = (options.parent ?? rootContainer).createChildContainer();
  const config: TaplineConfig = Object.freeze({ ...DEFAULT_CONFIG, ...options.config });
  const logger = options.logger ?? createLogger({ level: config.trace ? 'trace' : config.logLevel });

  c.register(Tokens.Config, { useValue: config });
  c.register(Tokens.Logger, { useValue: logger });
  const scheduler = options.scheduler ?? asyncScheduler;
  // One time source: a test scheduler's virtual time must also be the clock that stamps tags.
  const clock = options.clock ?? (options.scheduler ? { now: () => scheduler.now() } : systemClock);
  c.register(Tokens.Clock, { useValue: clock });
  c.register(Tokens.Scheduler, { useValue: scheduler });
  c.register(Tokens.DriverRegistry, {
    useValue: new DriverRegistry(
      [...(options.withoutGenericPcsc ? [] : [genericPcscDriver]), ...(options.drivers ?? [])],
      {
        force: config.driver,
        perReader: config.readerDrivers,
      },
    ),
  });
  c.register(Tokens.PcscTransport, {
    useFactory: instanceCachingFactory(() => options.pcscTransport ?? createNativePcscTransport({ logger })),
  });
  c.register(Tokens.UsbTransport, {
    useFactory: instanceCachingFactory(() => options.usbTransport ?? createNativeUsbTransport({ logger })),
  });
  c.register(Tokens.DeviceSources, {
    useFactory: instanceCachingFactory((d) => {
      if (options.deviceSources) return options.deviceSources;
      const scheduler = resolve(d, Tokens.Scheduler);
      const registry = resolve(d, Tokens.DriverRegistry);
      // Watching a bus that no installed driver serves would only cost CPU and log noise.
      const served = config.transports.filter((t) => registry.list().some((driver) => servesTransport(driver, t)));
      return served.map((transport) =>
        transport === 'pcsc'
          ? pcscDeviceSource(resolve(d, Tokens.PcscTransport), { logger, scheduler })
          : usbDeviceSource(resolve(d, Tokens.UsbTransport), { logger, scheduler }),
      );
    }),
  });
  c.register(Tokens.PlatformClient, {
    useFactory: () => {
      if (options.platformClient) return options.platformClient;
      throw new TaplineError(ErrorCode.NotConfigured, 'No VivoKey platform client is configured.', {
        hint: 'Pass --platform and --api-key, or run with --sim to use the built-in reference platform.',
      });
    },
  });
  c.registerSingleton(ReaderManager);
  return c;
}
