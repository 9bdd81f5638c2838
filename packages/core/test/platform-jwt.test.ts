import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { inspect } from 'node:util';
import {
  SignJWT,
  base64url,
  exportJWK,
  generateKeyPair,
  type CryptoKey,
  type JSONWebKeySet,
  type JWK,
  type JWTPayload,
} from 'jose';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  ErrorCode,
  createJwtVerifier,
  createVivoKeyAuthClient,
  isTaplineError,
  type JwtVerifier,
  type JwtVerifierBaseOptions,
  type TaplineError,
  type TaplineErrorCode,
  type TokenInvalidReason,
} from '../src/index.js';

// ---------------------------------------------------------------------------------------------------------------
// A JWKS server on 127.0.0.1 whose key set a test can swap (rotation), break (status) or stall.
// ---------------------------------------------------------------------------------------------------------------

interface JwksRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
}

class JwksServer {
  readonly requests: JwksRequest[] = [];
  jwks: JSONWebKeySet = { keys: [] };
  respond: ((res: ServerResponse) => void) | undefined;

  private constructor(
    private readonly server: Server,
    readonly origin: string,
  ) {}

  static async start(): Promise<JwksServer> {
    const ref: { self?: JwksServer } = {};
    const server = createServer((req, res) => {
      const self = ref.self!;
      self.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
      if (self.respond) return self.respond(res);
      if (req.url !== '/.well-known/jwks.json') return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(self.jwks));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    ref.self = new JwksServer(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    return ref.self;
  }

  get url(): string {
    return `${this.origin}/.well-known/jwks.json`;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

interface SigningKey {
  readonly kid: string;
  readonly alg: 'ES256' | 'RS256';
  readonly privateKey: CryptoKey;
  readonly jwk: JWK;
}

async function signingKey(alg: 'ES256' | 'RS256', kid: string): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, alg, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

const SUB = '1bae684d39b946ee61bad21655355fc5eff0ecc78c273343d4b208942346df1c';
const nowSec = (): number => Math.floor(Date.now() / 1000);

function claims(extra: JWTPayload = {}): JWTPayload {
  return {
    dev_id: '02d1a4a1-a41d-4406-a2f8-cb8e59847e4f',
    type: 2,
    product: 2,
    atp: 'mau',
    cld: '{"data":"testing"}',
    sub: SUB,
    iss: 'auth.vivokey.com',
    iat: nowSec(),
    exp: nowSec() + 300,
    ...extra,
  };
}

async function sign(key: SigningKey, payload: JWTPayload = claims(), header: Record<string, unknown> = {}) {
  return new SignJWT(payload)
    .setProtectedHeader({ typ: 'JWT', alg: key.alg, kid: key.kid, ...header })
    .sign(key.privateKey);
}

function encodeJson(value: unknown): string {
  return base64url.encode(JSON.stringify(value));
}

let es: SigningKey;
let rs: SigningKey;
let hsSecret: Uint8Array;
let server: JwksServer;

beforeAll(async () => {
  [es, rs] = await Promise.all([signingKey('ES256', 'es-1'), signingKey('RS256', 'rs-1')]);
  hsSecret = crypto.getRandomValues(new Uint8Array(32));
});

beforeEach(async () => {
  server = await JwksServer.start();
  // The set also lists a symmetric key: it must never make an HS256 token acceptable.
  server.jwks = { keys: [es.jwk, rs.jwk, { kty: 'oct', kid: 'hs-1', k: base64url.encode(hsSecret), alg: 'HS256' }] };
});

afterEach(async () => {
  await server.close();
});

function verifier(options: Partial<JwtVerifierBaseOptions> = {}): JwtVerifier {
  return createJwtVerifier({ jwksUrl: server.url, issuer: 'auth.vivokey.com', timeoutMs: 1_000, ...options });
}

async function failure(promise: Promise<unknown>): Promise<TaplineError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isTaplineError(error)) throw new Error(`expected a TaplineError, got ${inspect(error)}`);
  return error;
}

async function expectRefused(
  promise: Promise<unknown>,
  token: string,
  code: TaplineErrorCode,
  reason?: TokenInvalidReason,
): Promise<TaplineError> {
  const error = await failure(promise);
  expect(error.code).toBe(code);
  if (reason !== undefined) expect(error.details['reason']).toBe(reason);
  // Short junk strings ('', 'a.b') occur in any text by chance; real tokens are long.
  if (token.length >= 16) {
    expect(JSON.stringify(error.toJSON())).not.toContain(token);
    expect(inspect(error, { depth: 12 })).not.toContain(token);
  }
  return error;
}

// ---------------------------------------------------------------------------------------------------------------

describe('createJwtVerifier: accepted tokens', () => {
  it('verifies an ES256 token and returns its claims', async () => {
    const token = await sign(es);
    const result = await verifier().verify(token);
    expect(result).toMatchObject({ sub: SUB, atp: 'mau', dev_id: claims().dev_id, type: 2, product: 2 });
    expect(server.requests).toEqual([expect.objectContaining({ method: 'GET', url: '/.well-known/jwks.json' })]);
  });

  it('verifies an RS256 token from the same key set, selected by kid', async () => {
    await expect(verifier().verify(await sign(rs))).resolves.toMatchObject({ sub: SUB });
  });

  it('caches the key set between verifications', async () => {
    const v = verifier();
    await v.verify(await sign(es));
    await v.verify(await sign(rs));
    expect(server.requests).toHaveLength(1);
  });

  it('accepts an exp within the clock tolerance, and a matching audience', async () => {
    const token = await sign(es, claims({ exp: nowSec() - 10, aud: ['other', 'my-app'] }));
    await expect(verifier({ audience: 'my-app' }).verify(token)).resolves.toMatchObject({ sub: SUB });
  });

  it('checks time against the injected clock', async () => {
    const token = await sign(es, claims({ iat: 1_000_000, exp: 1_000_300 }));
    await expect(verifier({ clock: { now: () => 1_000_100_000 } }).verify(token)).resolves.toMatchObject({
      exp: 1_000_300,
    });
  });

  it('does not require iss when no issuer is configured', async () => {
    const payload = claims();
    delete payload.iss;
    await expect(verifier({ issuer: undefined }).verify(await sign(es, payload))).resolves.toMatchObject({ sub: SUB });
  });
});

describe('createJwtVerifier: refused tokens (TOKEN_INVALID with details.reason)', () => {
  it('refuses a bad signature (same kid, another key)', async () => {
    const forger = await signingKey('ES256', 'es-1');
    const token = await sign(forger);
    const error = await expectRefused(verifier().verify(token), token, ErrorCode.TokenInvalid, 'signature');
    expect((error.cause as { code?: string }).code).toBe('ERR_JWS_SIGNATURE_VERIFICATION_FAILED');
  });

  it('refuses a payload swapped under a valid signature', async () => {
    const [header, , signature] = (await sign(es)).split('.');
    const token = `${header}.${encodeJson(claims({ sub: 'f'.repeat(64) }))}.${signature}`;
    await expectRefused(verifier().verify(token), token, ErrorCode.TokenInvalid, 'signature');
  });

  it('refuses an unknown kid after exactly one refresh of the key set', async () => {
    const v = verifier({ cooldownMs: 0 });
    await v.verify(await sign(es));
    const stranger = await signingKey('ES256', 'nope');
    const token = await sign(stranger);
    const error = await expectRefused(v.verify(token), token, ErrorCode.TokenInvalid, 'kid');
    expect(error.details).toMatchObject({ kid: 'nope', alg: 'ES256' });
    expect(server.requests).toHaveLength(2);
  });

  it('does not refetch for unknown kids during the cooldown', async () => {
    const v = verifier();
    await v.verify(await sign(es));
    for (const kid of ['a', 'b', 'c']) {
      const token = await sign({ ...es, kid });
      await expectRefused(v.verify(token), token, ErrorCode.TokenInvalid, 'kid');
    }
    expect(server.requests).toHaveLength(1);
  });

  it('refuses a token without kid, without fetching the key set', async () => {
    const token = await new SignJWT(claims()).setProtectedHeader({ alg: 'ES256' }).sign(es.privateKey);
    await expectRefused(verifier().verify(token), token, ErrorCode.TokenInvalid, 'kid');
    expect(server.requests).toHaveLength(0);
  });

  it('refuses RS256 that names the kid of an EC key (no algorithm confusion)', async () => {
    const token = await sign({ ...rs, kid: 'es-1' });
    await expectRefused(verifier({ cooldownMs: 0 }).verify(token), token, ErrorCode.TokenInvalid, 'kid');
  });

  it('refuses alg "none", crafted by hand', async () => {
    const token = `${encodeJson({ alg: 'none', kid: 'es-1', typ: 'JWT' })}.${encodeJson(claims())}.`;
    const error = await expectRefused(verifier().verify(token), token, ErrorCode.TokenInvalid, 'algorithm');
    expect(error.details['alg']).toBe('none');
    expect(server.requests).toHaveLength(0);
  });

  it('refuses HS256 even though the key set lists an oct key with that kid', async () => {
    const token = await new SignJWT(claims()).setProtectedHeader({ alg: 'HS256', kid: 'hs-1' }).sign(hsSecret);
    await expectRefused(verifier().verify(token), token, ErrorCode.TokenInvalid, 'algorithm');
  });

  it('refuses an algorithm left out of a narrower allowlist', async () => {
    const token = await sign(rs);
    await expectRefused(verifier({ algorithms: ['ES256'] }).verify(token), token, ErrorCode.TokenInvalid, 'algorithm');
  });

  it('refuses an expired token, with jose’s error as the cause', async () => {
    const token = await sign(es, claims({ iat: nowSec() - 900, exp: nowSec() - 600 }));
    const error = await expectRefused(verifier().verify(token), token, ErrorCode.TokenInvalid, 'expired');
    expect((error.cause as { code?: string }).code).toBe('ERR_JWT_EXPIRED');
  });

  it('applies a per-call clock tolerance', async () => {
    const token = await sign(es, claims({ exp: nowSec() - 10 }));
    await expectRefused(verifier().verify(token, { clockToleranceSec: 0 }), token, ErrorCode.TokenInvalid, 'expired');
  });

  it('refuses a token that is not yet valid (nbf, or iat in the future)', async () => {
    const nbf = await sign(es, claims({ nbf: nowSec() + 600 }));
    await expectRefused(verifier().verify(nbf), nbf, ErrorCode.TokenInvalid, 'not-yet-valid');
    const iat = await sign(es, claims({ iat: nowSec() + 600, exp: nowSec() + 900 }));
    await expectRefused(verifier().verify(iat), iat, ErrorCode.TokenInvalid, 'not-yet-valid');
  });

  it('refuses a wrong or missing issuer', async () => {
    const wrong = await sign(es, claims({ iss: 'evil.example' }));
    await expectRefused(verifier().verify(wrong), wrong, ErrorCode.TokenInvalid, 'issuer');
    const payload = claims();
    delete payload.iss;
    const missing = await sign(es, payload);
    await expectRefused(verifier().verify(missing), missing, ErrorCode.TokenInvalid, 'issuer');
  });

  it('refuses a wrong audience, configured or per call', async () => {
    const token = await sign(es, claims({ aud: 'someone-else' }));
    await expectRefused(verifier({ audience: 'my-app' }).verify(token), token, ErrorCode.TokenInvalid, 'audience');
    await expectRefused(verifier().verify(token, { audience: 'my-app' }), token, ErrorCode.TokenInvalid, 'audience');
  });

  it.each<[string, JWTPayload]>([
    ['63 hex characters', { sub: SUB.slice(1) }],
    ['65 hex characters', { sub: `${SUB}0` }],
    ['not hex', { sub: 'g'.repeat(64) }],
    ['a member id', { sub: 'user@example.com' }],
  ])('refuses a sub of %s', async (_name, extra) => {
    const token = await sign(es, claims(extra));
    const error = await expectRefused(verifier().verify(token), token, ErrorCode.TokenInvalid, 'claims');
    expect(error.details['claim']).toBe('sub');
  });

  it.each(['sub', 'exp'] as const)('refuses a token without %s', async (claim) => {
    const payload = claims();
    delete payload[claim];
    const token = await sign(es, payload);
    const error = await expectRefused(verifier().verify(token), token, ErrorCode.TokenInvalid, 'claims');
    expect(error.details['claim']).toBe(claim);
  });

  it('refuses claims of the wrong type', async () => {
    const token = await sign(es, claims({ atp: 7 as unknown as string }));
    await expectRefused(verifier().verify(token), token, ErrorCode.TokenInvalid, 'claims');
  });

  it.each(['', 'abc', 'a.b', 'a.b.c.d', 'a b.c.d', `${'a'.repeat(20_000)}.b.c`, 'eyJub3QganNvbg.e30.'])(
    'refuses the malformed token %#',
    async (token) => {
      await expectRefused(verifier().verify(token), token, ErrorCode.TokenInvalid, 'malformed');
      expect(server.requests).toHaveLength(0);
    },
  );
});

describe('createJwtVerifier: key rotation and the key source', () => {
  it('picks up a rotated key after a refetch', async () => {
    const v = verifier({ cooldownMs: 0 });
    await v.verify(await sign(es));
    const next = await signingKey('ES256', 'es-2');
    server.jwks = { keys: [next.jwk] };
    await expect(v.verify(await sign(next))).resolves.toMatchObject({ sub: SUB });
    expect(server.requests).toHaveLength(2);
    // The retired key is still cached until the cache ages out; after a reload it is gone.
    const stale = await sign(es);
    await expect(verifier({ cooldownMs: 0 }).verify(stale)).rejects.toMatchObject({
      code: ErrorCode.TokenInvalid,
      details: { reason: 'kid' },
    });
  });

  it('refetches once the cache is older than cacheMaxAgeMs', async () => {
    const v = verifier({ cacheMaxAgeMs: 0 });
    await v.verify(await sign(es));
    await v.verify(await sign(es));
    expect(server.requests).toHaveLength(2);
  });

  it('verifies against a local key set, and a getter that rotates', async () => {
    const local = createJwtVerifier({ jwks: { keys: [es.jwk] } });
    await expect(local.verify(await sign(es))).resolves.toMatchObject({ sub: SUB });
    let current: JSONWebKeySet = { keys: [es.jwk] };
    const getter = createJwtVerifier({ jwks: () => current });
    await expect(getter.verify(await sign(es))).resolves.toMatchObject({ sub: SUB });
    current = { keys: [rs.jwk] };
    await expect(getter.verify(await sign(rs))).resolves.toMatchObject({ sub: SUB });
    const old = await sign(es);
    await expectRefused(getter.verify(old), old, ErrorCode.TokenInvalid, 'kid');
    expect(server.requests).toHaveLength(0);
  });

  it('refuses options outside the allowlist at construction', () => {
    for (const algorithms of [[], ['HS256'], ['none'], ['ES256', 'PS256']]) {
      expect(() => verifier({ algorithms: algorithms as unknown as ['ES256'] })).toThrow(
        expect.objectContaining({ code: ErrorCode.InvalidArgument }),
      );
    }
    expect(() => createJwtVerifier({} as unknown as { jwksUrl: string })).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidArgument }),
    );
  });
});

describe('createJwtVerifier: key set failures', () => {
  it('maps a key set server that is down to PLATFORM_UNAVAILABLE', async () => {
    const url = server.url;
    await server.close();
    const token = await sign(es);
    const error = await expectRefused(
      createJwtVerifier({ jwksUrl: url }).verify(token),
      token,
      ErrorCode.PlatformUnavailable,
    );
    expect(error.details['networkError']).toBe('ECONNREFUSED');
    server = await JwksServer.start();
  });

  it('maps an HTTP error from the key set to PLATFORM_UNAVAILABLE', async () => {
    server.respond = (res) => void res.writeHead(503).end('down');
    const token = await sign(es);
    const error = await expectRefused(verifier().verify(token), token, ErrorCode.PlatformUnavailable);
    expect(error.details['status']).toBe(503);
  });

  it('maps a key set that is not JSON, or not a key set, to PROTOCOL_ERROR', async () => {
    const token = await sign(es);
    server.respond = (res) => void res.writeHead(200, { 'content-type': 'application/json' }).end('<html>');
    await expectRefused(verifier().verify(token), token, ErrorCode.ProtocolError);
    server.respond = (res) => void res.writeHead(200, { 'content-type': 'application/json' }).end('{"keys":7}');
    await expectRefused(verifier().verify(token), token, ErrorCode.ProtocolError);
  });

  it('times out a key set server that stalls', async () => {
    server.respond = () => undefined;
    const token = await sign(es);
    const started = Date.now();
    await expectRefused(verifier({ timeoutMs: 200 }).verify(token), token, ErrorCode.Timeout);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('honours the caller’s abort signal', async () => {
    server.respond = () => undefined;
    const token = await sign(es);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 30);
    await expectRefused(verifier().verify(token, { signal: controller.signal }), token, ErrorCode.Aborted);
  });
});

describe('VivoKeyAuthClient.verifyToken', () => {
  it('uses <baseUrl>/.well-known/jwks.json, without sending the API key', async () => {
    const client = createVivoKeyAuthClient({ baseUrl: server.origin, apiKey: 'vk-secret-key-0123456789' });
    await expect(client.verifyToken(await sign(es))).resolves.toMatchObject({ sub: SUB, iss: 'auth.vivokey.com' });
    expect(server.requests).toHaveLength(1);
    expect(server.requests[0]!.url).toBe('/.well-known/jwks.json');
    expect(server.requests[0]!.headers['x-api-vivokey']).toBeUndefined();
  });

  it('applies the client’s issuer, audience and algorithm options', async () => {
    const client = createVivoKeyAuthClient({
      baseUrl: server.origin,
      apiKey: 'k'.repeat(20),
      issuer: 'auth.vivokey.com',
      audience: 'my-app',
      allowedAlgorithms: ['RS256'],
    });
    const es256 = await sign(es, claims({ aud: 'my-app' }));
    await expectRefused(client.verifyToken(es256), es256, ErrorCode.TokenInvalid, 'algorithm');
    const otherAudience = await sign(rs, claims({ aud: 'other' }));
    await expectRefused(client.verifyToken(otherAudience), otherAudience, ErrorCode.TokenInvalid, 'audience');
    await expect(client.verifyToken(await sign(rs, claims({ aud: 'my-app' })))).resolves.toMatchObject({ sub: SUB });
  });

  it('accepts a ready verifier over a local key set', async () => {
    const client = createVivoKeyAuthClient({
      baseUrl: server.origin,
      apiKey: 'k'.repeat(20),
      verifier: createJwtVerifier({ jwks: { keys: [es.jwk] } }),
    });
    expect(client.jwksUrl).toBeUndefined();
    await expect(client.verifyToken(await sign(es))).resolves.toMatchObject({ sub: SUB });
    expect(server.requests).toHaveLength(0);
  });
});
