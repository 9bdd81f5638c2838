import { describe, expect, it } from 'vitest';
import { NEVER } from 'rxjs';
import {
  DriverRegistry,
  ErrorCode,
  ReaderManager,
  Tokens,
  createContainer,
  resolve,
  silentLogger,
  systemClock,
  type PcscTransport,
  type PlatformClient,
  type UsbTransport,
} from '../src/index.js';
import { testDriver } from './helpers.js';

const idlePcsc: PcscTransport = { readers$: NEVER };
const idleUsb: UsbTransport = { devices$: NEVER };

describe('createContainer', () => {
  it('resolves every token, with defaults', () => {
    const container = createContainer({ logger: silentLogger, pcscTransport: idlePcsc, usbTransport: idleUsb });
    expect(resolve(container, Tokens.Config).exchangeTimeoutMs).toBe(2000);
    expect(resolve(container, Tokens.Logger)).toBe(silentLogger);
    expect(resolve(container, Tokens.Clock)).toBe(systemClock);
    expect(resolve(container, Tokens.DriverRegistry)).toBeInstanceOf(DriverRegistry);
    expect(resolve(container, Tokens.PcscTransport)).toBe(idlePcsc);
    expect(container.resolve(ReaderManager)).toBe(container.resolve(ReaderManager));
  });

  it('always includes the generic PC/SC driver unless told not to', () => {
    const withGeneric = resolve(createContainer({ logger: silentLogger }), Tokens.DriverRegistry);
    expect(withGeneric.list().map((d) => d.id)).toEqual(['pcsc']);
    const custom = testDriver('custom', () => Promise.reject(new Error('unused')));
    const without = resolve(
      createContainer({ logger: silentLogger, withoutGenericPcsc: true, drivers: [custom] }),
      Tokens.DriverRegistry,
    );
    expect(without.list().map((d) => d.id)).toEqual(['custom']);
  });

  it('watches only the transports some installed driver serves', () => {
    const pcscOnly = resolve(
      createContainer({ logger: silentLogger, pcscTransport: idlePcsc, usbTransport: idleUsb }),
      Tokens.DeviceSources,
    );
    expect(pcscOnly.map((s) => s.transport)).toEqual(['pcsc']);
    const usbDriver = {
      ...testDriver('usb-thing', () => Promise.reject(new Error('unused'))),
      matches: [{ transport: 'usb' as const, vendorId: 0x04cc, productId: 0x2533 }],
    };
    const both = resolve(
      createContainer({ logger: silentLogger, pcscTransport: idlePcsc, usbTransport: idleUsb, drivers: [usbDriver] }),
      Tokens.DeviceSources,
    );
    expect(both.map((s) => s.transport)).toEqual(['pcsc', 'usb']);
    const none = resolve(createContainer({ logger: silentLogger, config: { transports: [] } }), Tokens.DeviceSources);
    expect(none).toEqual([]);
  });

  it('applies the forcing policy from config to the registry', () => {
    const registry = resolve(
      createContainer({ logger: silentLogger, config: { driver: 'missing' } }),
      Tokens.DriverRegistry,
    );
    expect(() =>
      registry.select({ transport: 'pcsc', name: 'ACS ACR122U PICC Interface 00 00', port: {} as never }),
    ).toThrow(expect.objectContaining({ code: ErrorCode.DriverNotFound }));
  });

  it('says plainly that no platform client is configured', () => {
    const container = createContainer({ logger: silentLogger });
    expect(() => resolve(container, Tokens.PlatformClient)).toThrow(
      expect.objectContaining({ code: ErrorCode.NotConfigured }),
    );
    const client = { baseUrl: new URL('http://127.0.0.1:1/') } as unknown as PlatformClient;
    expect(resolve(createContainer({ logger: silentLogger, platformClient: client }), Tokens.PlatformClient)).toBe(
      client,
    );
  });

  it('keeps containers independent', () => {
    const a = createContainer({ logger: silentLogger, config: { reader: 'a' }, pcscTransport: idlePcsc });
    const b = createContainer({ logger: silentLogger, config: { reader: 'b' }, pcscTransport: idlePcsc });
    expect(resolve(a, Tokens.Config).reader).toBe('a');
    expect(resolve(b, Tokens.Config).reader).toBe('b');
    expect(a.resolve(ReaderManager)).not.toBe(b.resolve(ReaderManager));
  });
});
