import type { InjectionToken } from 'tsyringe';
import type { SchedulerLike } from 'rxjs';
import type { TaplineConfig } from './config.js';
import type { Logger } from './logger.js';
import type { Clock } from './clock.js';
import type { DriverRegistry } from '../drivers/registry.js';
import type { DeviceSource } from '../model/device-source.js';
import type { PcscTransport } from '../transport/pcsc.js';
import type { UsbTransport } from '../transport/usb.js';
import type { PlatformClient } from '../model/platform.js';

/** A typed tsyringe token: a symbol that remembers what it resolves to. */
export type Token<T> = symbol & { readonly __resolvesTo?: T };

function token<T>(name: string): Token<T> {
  return Symbol.for(`@tapline/core/${name}`);
}

/** The tokens of Tapline's composition root. Resolve them with {@link resolve}. */
export const Tokens = {
  Config: token<TaplineConfig>('Config'),
  Logger: token<Logger>('Logger'),
  Clock: token<Clock>('Clock'),
  /** The RxJS scheduler for pipeline timers (a TestScheduler in marble tests). */
  Scheduler: token<SchedulerLike>('Scheduler'),
  DriverRegistry: token<DriverRegistry>('DriverRegistry'),
  DeviceSources: token<readonly DeviceSource[]>('DeviceSources'),
  PcscTransport: token<PcscTransport>('PcscTransport'),
  UsbTransport: token<UsbTransport>('UsbTransport'),
  PlatformClient: token<PlatformClient>('PlatformClient'),
} as const;

/** The minimal container surface {@link resolve} needs (tsyringe's `DependencyContainer` has it). */
export interface Resolver {
  resolve<T>(token: InjectionToken<T>): T;
}

/** Resolves a typed token. */
export function resolve<T>(container: Resolver, key: Token<T>): T {
  return container.resolve<T>(key);
}
