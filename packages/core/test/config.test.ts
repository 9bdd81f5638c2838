import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG, configDirectory, credentialsFilePath, loadConfig, resolveIssuer } from '../src/index.js';

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

describe('association settings in config', () => {
  it('defaults the client id, and leaves issuer and credentials file to be derived', () => {
    const config = loadConfig({ file: '/nonexistent/tapline.json', env: {} });
    expect(config.clientId).toBe('tapline-desktop');
    expect(config.issuer).toBeUndefined();
    expect(config.credentialsFile).toBeUndefined();
  });

  it('reads issuer, client id and credentials file from the file, the environment over it', () => {
    const file = tempFile(
      JSON.stringify({ issuer: 'https://file.example/oidc', clientId: 'from-file', credentialsFile: '/f/creds.json' }),
    );
    expect(loadConfig({ file, env: {} })).toMatchObject({
      issuer: 'https://file.example/oidc',
      clientId: 'from-file',
      credentialsFile: '/f/creds.json',
    });
    expect(
      loadConfig({
        file,
        env: {
          TAPLINE_ISSUER: 'https://env.example/oidc',
          TAPLINE_CLIENT_ID: 'from-env',
          TAPLINE_CREDENTIALS_FILE: '/e/creds.json',
        },
      }),
    ).toMatchObject({ issuer: 'https://env.example/oidc', clientId: 'from-env', credentialsFile: '/e/creds.json' });
  });

  it('refuses an issuer that is not an http(s) URL, an empty client id and an empty credentials file', () => {
    for (const bad of [{ issuer: 'auth.vivokey.com/oidc' }, { issuer: 'ftp://x/oidc' }, { issuer: 42 }]) {
      expect(() => loadConfig({ file: tempFile(JSON.stringify(bad)), env: {} })).toThrow(/"issuer"/);
    }
    expect(() => loadConfig({ file: tempFile('{"clientId":""}'), env: {} })).toThrow(/"clientId"/);
    expect(() => loadConfig({ file: tempFile('{"clientId":"has space"}'), env: {} })).toThrow(/"clientId"/);
    expect(() => loadConfig({ file: tempFile('{"credentialsFile":""}'), env: {} })).toThrow(/"credentialsFile"/);
  });

  it('derives the issuer from the platform URL (oidc beneath it) unless one is set', () => {
    expect(() => resolveIssuer({ platformUrl: 'not a url' })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
    expect(resolveIssuer({}).href).toBe('https://auth.vivokey.com/oidc');
    expect(resolveIssuer({ platformUrl: 'http://127.0.0.1:4000' }).href).toBe('http://127.0.0.1:4000/oidc');
    expect(resolveIssuer({ platformUrl: 'https://p.example/api/' }).href).toBe('https://p.example/api/oidc');
    // A path prefix is kept without the trailing slash too, as the platform clients keep it.
    expect(resolveIssuer({ platformUrl: 'https://p.example/api' }).href).toBe('https://p.example/api/oidc');
    expect(resolveIssuer({ platformUrl: 'https://p.example', issuer: 'https://id.example/' }).href).toBe(
      'https://id.example/',
    );
  });

  it('puts the credentials file in the config directory unless one is set', () => {
    expect(credentialsFilePath({}, { TAPLINE_CONFIG_DIR: '/cfg' })).toBe('/cfg/credentials.json');
    expect(credentialsFilePath({ credentialsFile: '/else/c.json' }, { TAPLINE_CONFIG_DIR: '/cfg' })).toBe(
      '/else/c.json',
    );
  });
});
