import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ErrorCode, discoverDriverPackages, loadDriverModule, loadInstalledDrivers } from '../src/index.js';

const DRIVER_SOURCE = (id: string) => `
export const drivers = [{
  id: '${id}', displayName: '${id} reader', description: 'test', capabilities: ['iso14443-4'],
  matches: [{ transport: 'pcsc', nameIncludes: '${id}' }], open: async () => { throw new Error('unused'); },
}];
`;

function fakeNodeModules(): string {
  const root = mkdtempSync(join(tmpdir(), 'tapline-drivers-'));
  const add = (name: string, pkg: object, files: Record<string, string>) => {
    const dir = join(root, name);
    mkdirSync(join(dir, 'dist'), { recursive: true });
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, type: 'module', ...pkg }));
    for (const [file, text] of Object.entries(files)) writeFileSync(join(dir, file), text);
  };
  add(
    'tapline-driver-feitian',
    { tapline: { drivers: './dist/index.js' }, exports: './dist/index.js' },
    { 'dist/index.js': DRIVER_SOURCE('feitian') },
  );
  add(
    '@acme/tapline-driver-x',
    { tapline: { drivers: './dist/index.js' } },
    { 'dist/index.js': DRIVER_SOURCE('acme-x') },
  );
  add('left-pad', {}, { 'dist/index.js': 'export default 1;' });
  add(
    'tapline-driver-broken',
    { tapline: { drivers: './dist/index.js' } },
    { 'dist/index.js': 'export const drivers = [{ id: "b" }];' },
  );
  return root;
}

describe('driver discovery', () => {
  it('finds packages that follow the convention, scoped ones included, and nothing else', async () => {
    const root = fakeNodeModules();
    const found = await discoverDriverPackages(root);
    expect(found.map((p) => p.name)).toEqual([
      '@acme/tapline-driver-x',
      'tapline-driver-broken',
      'tapline-driver-feitian',
    ]);
    expect(await discoverDriverPackages(join(root, 'missing'))).toEqual([]);
  });

  it('loads the valid ones and reports the broken one without failing', async () => {
    const { drivers, failures } = await loadInstalledDrivers(fakeNodeModules());
    expect(drivers.map((d) => d.id)).toEqual(['acme-x', 'feitian']);
    expect(failures).toHaveLength(1);
    expect(failures[0]).toMatchObject({ code: ErrorCode.DriverNotFound });
    expect(failures[0]!.message).toMatch(/displayName/);
  });

  it('fails with DRIVER_NOT_FOUND and an install hint for a missing module', async () => {
    await expect(loadDriverModule('tapline-driver-that-does-not-exist')).rejects.toMatchObject({
      code: ErrorCode.DriverNotFound,
      hint: expect.stringContaining('npm install tapline-driver-that-does-not-exist') as unknown,
    });
  });

  it('loads a driver module by relative path', async () => {
    const root = fakeNodeModules();
    const drivers = await loadDriverModule('./tapline-driver-feitian/dist/index.js', root);
    expect(drivers.map((d) => d.id)).toEqual(['feitian']);
  });
});

describe('loadDriverModule resolution', () => {
  it('resolves bare package names from the caller, not from core', async () => {
    const root = fakeNodeModules();
    // `root` plays the node_modules folder of an application living in its parent directory.
    const app = mkdtempSync(join(tmpdir(), 'tapline-app-'));
    const { symlinkSync } = await import('node:fs');
    symlinkSync(root, join(app, 'node_modules'));
    const drivers = await loadDriverModule('tapline-driver-feitian', app);
    expect(drivers.map((d) => d.id)).toEqual(['feitian']);
    await expect(loadDriverModule('tapline-driver-feitian', tmpdir())).rejects.toMatchObject({
      code: ErrorCode.DriverNotFound,
    });
  });
});
