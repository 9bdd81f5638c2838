/**
 * Keeps docs/scan-request-openapi.json honest: structurally OpenAPI 3.1 (without a validator dependency), the exact
 * set of operations of the scan-request protocol, and the same error codes and statuses as the table in
 * docs/scan-request-protocol.md §5.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

const DOCS = new URL('../../docs/', import.meta.url);
const doc = JSON.parse(readFileSync(new URL('scan-request-openapi.json', DOCS), 'utf8')) as JsonObject;
const prose = readFileSync(new URL('scan-request-protocol.md', DOCS), 'utf8');

const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;
const ERROR_SCHEMA = '#/components/schemas/Error';

const EXPECTED_OPERATIONS = [
  'GET /scan-requests',
  'POST /scan-requests/{id}/claim',
  'POST /scan-requests/{id}/answer',
  'POST /scan-requests/{id}/cancel',
  'POST /rp/scan-requests',
  'GET /rp/scan-requests/{id}',
];

function isObject(value: Json | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function object(value: Json | undefined, where: string): JsonObject {
  if (!isObject(value)) throw new Error(`${where} is not an object`);
  return value;
}

/** Resolves a local JSON pointer (`#/a/b~1c`), or throws saying which part is missing. */
function resolvePointer(ref: string): Json {
  if (!ref.startsWith('#/')) throw new Error(`${ref} is not a reference inside the document`);
  let node: Json = doc;
  for (const raw of ref.slice(2).split('/')) {
    const key = decodeURIComponent(raw).replaceAll('~1', '/').replaceAll('~0', '~');
    if (Array.isArray(node) && /^\d+$/.test(key) && Number(key) < node.length) node = node[Number(key)]!;
    else if (isObject(node) && Object.hasOwn(node, key)) node = node[key]!;
    else throw new Error(`${ref} does not resolve (no "${key}")`);
  }
  return node;
}

/** Follows `$ref`s (an object whose `$ref` names another object) to the object they name. */
function deref(value: Json | undefined, where: string): JsonObject {
  let node = object(value, where);
  for (let hops = 0; typeof node['$ref'] === 'string'; hops += 1) {
    if (hops > 16) throw new Error(`${where}: $ref cycle`);
    node = object(resolvePointer(node['$ref']), node['$ref']);
  }
  return node;
}

/** Every value under `node` with the JSON pointer leading to it. */
function* walk(node: Json, pointer = '#'): Generator<[string, Json]> {
  yield [pointer, node];
  if (Array.isArray(node)) for (const [i, child] of node.entries()) yield* walk(child, `${pointer}/${i}`);
  else if (isObject(node)) {
    for (const [key, child] of Object.entries(node)) {
      yield* walk(child, `${pointer}/${key.replaceAll('~', '~0').replaceAll('/', '~1')}`);
    }
  }
}

interface Operation {
  readonly key: string;
  readonly path: string;
  readonly pathItem: JsonObject;
  readonly op: JsonObject;
}

function operations(): Operation[] {
  const found: Operation[] = [];
  for (const [path, item] of Object.entries(object(doc['paths'], 'paths'))) {
    const pathItem = object(item, `paths.${path}`);
    for (const method of HTTP_METHODS) {
      if (pathItem[method] !== undefined) {
        found.push({ key: `${method.toUpperCase()} ${path}`, path, pathItem, op: object(pathItem[method], path) });
      }
    }
  }
  return found;
}

/** The error codes an error response allows: its `allOf` restriction of `error`, or undefined when unrestricted. */
function errorCodes(schema: JsonObject): string[] | undefined {
  if (schema['$ref'] === ERROR_SCHEMA) return undefined;
  const allOf = schema['allOf'];
  if (!Array.isArray(allOf) || !allOf.some((part) => isObject(part) && part['$ref'] === ERROR_SCHEMA)) {
    throw new Error(`schema ${JSON.stringify(schema)} does not reference ${ERROR_SCHEMA}`);
  }
  for (const part of allOf) {
    if (!isObject(part) || !isObject(part['properties'])) continue;
    const error = object(part['properties']['error'], 'properties.error');
    if (typeof error['const'] === 'string') return [error['const']];
    if (Array.isArray(error['enum'])) {
      const codes = error['enum'].filter((code): code is string => typeof code === 'string');
      if (codes.length !== error['enum'].length) throw new Error(`non-string error code in ${JSON.stringify(error)}`);
      return codes;
    }
  }
  return undefined;
}

/** The JSON media type's schema of a response (resolving a response `$ref`), or undefined without a body. */
function jsonSchemaOf(response: Json | undefined, where: string): JsonObject | undefined {
  const resolved = deref(response, where);
  if (resolved['content'] === undefined) return undefined;
  const media = object(object(resolved['content'], `${where}.content`)['application/json'], `${where} JSON`);
  return object(media['schema'], `${where} schema`);
}

/** `code → statuses` from the error table of the prose (§5: rows whose first cell is a backticked code). */
function proseErrorTable(): Map<string, Set<number>> {
  const section = prose.slice(prose.indexOf('## 5. Errors'), prose.indexOf('## 6.'));
  const table = new Map<string, Set<number>>();
  for (const match of section.matchAll(/^\|\s*`([a-z_]+)`\s*\|\s*([\d, ]+?)\s*\|/gm)) {
    table.set(match[1]!, new Set(match[2]!.split(',').map((status) => Number(status.trim()))));
  }
  return table;
}

describe('docs/scan-request-openapi.json', () => {
  it('is an OpenAPI 3.1 document with info and paths', () => {
    expect(doc['openapi']).toMatch(/^3\.1\.\d+$/);
    const info = object(doc['info'], 'info');
    expect(typeof info['title']).toBe('string');
    expect(typeof info['version']).toBe('string');
    expect(Object.keys(object(doc['paths'], 'paths')).length).toBeGreaterThan(0);
    expect(doc['jsonSchemaDialect'] ?? 'https://spec.openapis.org/oas/3.1/dialect/base').toBe(
      'https://spec.openapis.org/oas/3.1/dialect/base',
    );
    for (const path of Object.keys(object(doc['paths'], 'paths'))) expect(path).toMatch(/^\//);
  });

  it('resolves every $ref inside the document', () => {
    const refs = [...walk(doc)].filter(([pointer]) => pointer.endsWith('/$ref'));
    expect(refs.length).toBeGreaterThan(20);
    for (const [pointer, ref] of refs) {
      if (typeof ref !== 'string') throw new Error(`${pointer} is not a string`);
      expect(() => resolvePointer(ref), `${pointer} = ${ref}`).not.toThrow();
    }
  });

  it('has exactly the operations of the protocol', () => {
    expect(
      operations()
        .map((operation) => operation.key)
        .sort(),
    ).toEqual([...EXPECTED_OPERATIONS].sort());
  });

  it('gives every operation a unique operationId, responses, and a security requirement it defines', () => {
    const schemes = object(object(doc['components'], 'components')['securitySchemes'], 'securitySchemes');
    const ids = new Set<string>();
    for (const { key, op } of operations()) {
      expect(op['operationId'], key).toMatch(/^[A-Za-z][A-Za-z0-9]*$/);
      expect(ids.has(op['operationId'] as string), `${key}: duplicate operationId`).toBe(false);
      ids.add(op['operationId'] as string);
      const responses = object(op['responses'], `${key}.responses`);
      expect(Object.keys(responses).length, key).toBeGreaterThan(0);
      for (const status of Object.keys(responses)) expect(status, key).toMatch(/^(?:[1-5]\d\d|[1-5]XX|default)$/);
      expect(
        Object.keys(responses).some((status) => status.startsWith('2')),
        `${key}: no 2xx`,
      ).toBe(true);
      const security = op['security'];
      expect(Array.isArray(security) && security.length > 0, `${key}: security`).toBe(true);
      for (const requirement of security as Json[]) {
        for (const name of Object.keys(object(requirement, key))) expect(Object.hasOwn(schemes, name), key).toBe(true);
      }
    }
  });

  it('declares every path template parameter as a required path parameter', () => {
    for (const { key, path, pathItem, op } of operations()) {
      const declared = [
        ...((pathItem['parameters'] as Json[] | undefined) ?? []),
        ...((op['parameters'] as Json[]) ?? []),
      ]
        .map((parameter) => deref(parameter, key))
        .filter((parameter) => parameter['in'] === 'path');
      const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((match) => match[1]);
      expect(declared.map((parameter) => parameter['name']).sort(), key).toEqual(templated.sort());
      for (const parameter of declared) expect(parameter['required'], key).toBe(true);
    }
  });

  it('makes every error response an Error, with codes and statuses matching the prose table', () => {
    const table = proseErrorTable();
    expect(table.size).toBeGreaterThanOrEqual(14);
    const used = new Map<string, Set<number>>();
    for (const { key, op } of operations()) {
      for (const [status, response] of Object.entries(object(op['responses'], key))) {
        if (!/^[45]/.test(status)) continue;
        const schema = jsonSchemaOf(response, `${key} ${status}`);
        expect(schema, `${key} ${status}: no JSON body`).toBeDefined();
        const codes = errorCodes(schema!);
        expect(codes, `${key} ${status}: the codes must be listed`).toBeDefined();
        for (const code of codes!) {
          expect(table.get(code), `${key} ${status}: ${code} is not in the prose table`).toBeDefined();
          expect([...table.get(code)!], `${key}: ${code} with ${status}`).toContain(Number(status));
          used.set(code, (used.get(code) ?? new Set()).add(Number(status)));
        }
      }
    }
    // Every code and status of the table appears somewhere in the document.
    expect([...used.keys()].sort()).toEqual([...table.keys()].sort());
    for (const [code, statuses] of table) expect([...used.get(code)!].sort(), code).toEqual([...statuses].sort());
    const error = deref(object(object(doc['components'], 'components')['schemas'], 'schemas')['Error'], 'Error');
    expect(error['required']).toEqual(['error', 'error_description']);
  });

  it('describes the long poll: wait, If-None-Match, 304 and ETag', () => {
    const list = operations().find((operation) => operation.key === 'GET /scan-requests')!.op;
    const parameters = (list['parameters'] as Json[]).map((parameter) => deref(parameter, 'list'));
    const wait = parameters.find((parameter) => parameter['name'] === 'wait');
    expect(wait).toMatchObject({ in: 'query', schema: { minimum: 0, maximum: 30 } });
    expect(parameters.find((parameter) => parameter['name'] === 'If-None-Match')).toMatchObject({ in: 'header' });
    const responses = object(list['responses'], 'list responses');
    for (const status of ['200', '304']) {
      const headers = object(deref(responses[status], status)['headers'], `${status} headers`);
      expect(Object.keys(headers), status).toContain('ETag');
    }
    expect(deref(responses['304'], '304')['content']).toBeUndefined();
  });

  it('secures the desktop endpoints with the issuer and the RP endpoints with X-API-VIVOKEY', () => {
    const schemes = object(object(doc['components'], 'components')['securitySchemes'], 'securitySchemes');
    const oidc = Object.entries(schemes).filter(([, scheme]) => isObject(scheme) && scheme['type'] === 'openIdConnect');
    const keys = Object.entries(schemes).filter(([, scheme]) => isObject(scheme) && scheme['type'] === 'apiKey');
    expect(oidc).toHaveLength(1);
    expect(keys).toHaveLength(1);
    const [oidcName, oidcScheme] = oidc[0]!;
    const [keyName, keyScheme] = keys[0]!;
    expect(object(oidcScheme, oidcName)['openIdConnectUrl']).toMatch(/\/\.well-known\/openid-configuration$/);
    expect(keyScheme).toMatchObject({ in: 'header', name: 'X-API-VIVOKEY' });
    for (const { key, path, op } of operations()) {
      const expected = path.startsWith('/rp/') ? { [keyName]: [] } : { [oidcName]: ['scan_requests'] };
      expect(op['security'], key).toEqual([expected]);
    }
  });

  it('has examples with every required property of their schema', () => {
    let checked = 0;
    for (const [pointer, node] of walk(doc)) {
      if (!pointer.endsWith('/application~1json') || !isObject(node) || !isObject(node['examples'])) continue;
      const schema = deref(node['schema'], pointer);
      const parts = [schema, ...((schema['allOf'] as Json[] | undefined) ?? []).map((part) => deref(part, pointer))];
      const required = parts.flatMap((part) => (part['required'] as string[] | undefined) ?? []);
      for (const [name, example] of Object.entries(node['examples'])) {
        const value = object(object(example, name)['value'], `${pointer} ${name}`);
        for (const property of required) expect(Object.keys(value), `${pointer} ${name}`).toContain(property);
        if (schema['additionalProperties'] === false) {
          const allowed = Object.keys(object(schema['properties'], pointer));
          for (const property of Object.keys(value)) expect(allowed, `${pointer} ${name}`).toContain(property);
        }
        checked += 1;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(8);
  });
});
