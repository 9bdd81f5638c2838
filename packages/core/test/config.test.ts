import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG, configDirectory, loadConfig } from '../src/index.js';

function tempFile(content: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'tapline-config-'));
  const file = join(dir, 'config.json');
  writeFileSync(file, content);
  return file;
}

describe('config', () => {
  it('uses defaults when the file is missing', () => {
    expect(loadConfig({ file: '/nonexistent/tapline.json', env: {} })).toEqual(DEFAULT_CONFIG);
  });

  it('layers file, environment and overrides, last wins', () => {
    const file = tempFile(JSON.stringify({ driver: 'acr122', reader: 'ACR', exchangeTimeoutMs: 1500, trace: false }));
    const config = loadConfig({
      file,
      env: { TAPLINE_READER: 'uTrust', TAPLINE_TRACE: '1' },
      overrides: { driver: 'pcsc', reader: undefined },
    });
    expect(config).toMatchObject({ driver: 'pcsc', reader: 'uTrust', exchangeTimeoutMs: 1500, trace: true });
  });

  it('names the file and the key when a value is wrong', () => {
    const file = tempFile(JSON.stringify({ exchangeTimeoutMs: -1 }));
    expect(() => loadConfig({ file, env: {} })).toThrow(/exchangeTimeoutMs/);
    try {
      loadConfig({ file: tempFile('{ not json'), env: {} });
      expect.unreachable();
    } catch (error) {
      expect(error).toMatchObject({ code: 'INVALID_ARGUMENT' });
      expect((error as Error).message).toContain('config.json');
    }
    expect(() => loadConfig({ file: tempFile('[]'), env: {} })).toThrow(/not a JSON object/);
    expect(() => loadConfig({ file: tempFile('{"transports":["bluetooth"]}'), env: {} })).toThrow(/transports/);
  });

  it('puts the config directory where each platform expects it', () => {
    expect(configDirectory({ XDG_CONFIG_HOME: '/x' }, 'linux')).toBe('/x/tapline');
    expect(configDirectory({ APPDATA: 'C:\\Users\\a\\AppData\\Roaming' }, 'win32')).toContain('tapline');
    expect(configDirectory({ TAPLINE_CONFIG_DIR: '/custom' }, 'linux')).toBe('/custom');
  });
});

describe('platform settings in config', () => {
  it('reads the API key and platform URL from the environment over the file', () => {
    const file = tempFile(JSON.stringify({ apiKey: 'from-file', platformUrl: 'https://file.example/' }));
    expect(loadConfig({ file, env: {} })).toMatchObject({ apiKey: 'from-file', platformUrl: 'https://file.example/' });
    expect(
      loadConfig({ file, env: { TAPLINE_API_KEY: 'from-env', TAPLINE_PLATFORM_URL: 'https://env.example/' } }),
    ).toMatchObject({
      apiKey: 'from-env',
      platformUrl: 'https://env.example/',
    });
  });

  it('refuses a platform URL that is not absolute, without echoing the API key', () => {
    const file = tempFile(JSON.stringify({ apiKey: 'secret-key-123', platformUrl: 'auth.vivokey.com' }));
    try {
      loadConfig({ file, env: {} });
      expect.unreachable();
    } catch (error) {
      expect(error).toMatchObject({ code: 'INVALID_ARGUMENT' });
      expect(JSON.stringify((error as { toJSON(): unknown }).toJSON())).not.toContain('secret-key-123');
    }
  });
});
