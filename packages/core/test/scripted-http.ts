import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, generateKeyPair } from 'jose';
import { createLogger, type LogRecord, type Logger } from '../src/index.js';

/** One request the server received, as the test asserts it. */
export interface RecordedRequest {
  readonly method: string;
  /** Path and query. */
  readonly url: string;
  readonly headers: Readonly<Record<string, string | undefined>>;
  readonly body: string;
}

/** What a route answers. `json` is serialised; `raw` is sent as is; `destroy` drops the connection unanswered. */
export interface ScriptedAnswer {
  readonly status?: number;
  readonly headers?: Readonly<Record<string, string>>;
  readonly json?: unknown;
  readonly raw?: string;
  readonly destroy?: boolean;
}

export type Route = (request: RecordedRequest) => ScriptedAnswer | Promise<ScriptedAnswer>;

/**
 * A real HTTP server on a loopback port whose routes the test scripts: every request is recorded (method, URL,
 * headers, body) so that a test asserts exactly what went over the wire; an unscripted request is answered 599 and
 * recorded, so it cannot pass unnoticed.
 */
export class ScriptedHttpServer {
  readonly requests: RecordedRequest[] = [];
  readonly #routes = new Map<string, Route[]>();
  readonly #server: Server;
  #url: URL | undefined;

  constructor() {
    this.#server = createServer((req, res) => void this.#handle(req, res));
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    const { port } = this.#server.address() as AddressInfo;
    this.#url = new URL(`http://127.0.0.1:${port}/`);
    return this;
  }

  /** `http://127.0.0.1:<port>/`. */
  get url(): URL {
    if (!this.#url) throw new Error('not started');
    return this.#url;
  }

  /** Answers `METHOD /path` (query ignored) with `route`, every time. */
  on(method: string, path: string, route: Route): this {
    this.#routes.set(`${method} ${path}`, [route]);
    return this;
  }

  /** Answers the next requests to `METHOD /path` with these routes in turn; the last one repeats. */
  sequence(method: string, path: string, routes: readonly Route[]): this {
    this.#routes.set(`${method} ${path}`, [...routes]);
    return this;
  }

  /** The requests to one path (query ignored). */
  to(path: string): RecordedRequest[] {
    return this.requests.filter((r) => new URL(r.url, 'http://x').pathname === path);
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const headers: Record<string, string | undefined> = {};
    for (const [name, value] of Object.entries(req.headers))
      headers[name] = Array.isArray(value) ? value.join(', ') : value;
    const recorded: RecordedRequest = {
      method: req.method ?? '',
      url: req.url ?? '',
      headers,
      body: Buffer.concat(chunks).toString('utf8'),
    };
    this.requests.push(recorded);
    const key = `${recorded.method} ${new URL(recorded.url, 'http://x').pathname}`;
    const routes = this.#routes.get(key);
    const route = routes && routes.length > 1 ? routes.shift() : routes?.[0];
    const answer: ScriptedAnswer = route ? await route(recorded) : { status: 599, json: { error: 'unscripted' } };
    if (answer.destroy) {
      req.socket.destroy();
      return;
    }
    const body = answer.raw ?? (answer.json === undefined ? '' : JSON.stringify(answer.json));
    res.writeHead(answer.status ?? 200, {
      ...(answer.json === undefined ? {} : { 'Content-Type': 'application/json' }),
      ...answer.headers,
    });
    res.end(body);
  }
}

/** A logger that keeps every record, to check what reached the logs. */
export function recordingLogger(): { readonly logger: Logger; readonly records: LogRecord[]; text(): string } {
  const records: LogRecord[] = [];
  const logger = createLogger({ level: 'trace', sink: (record) => records.push(record) });
  return { logger, records, text: () => JSON.stringify(records) };
}

/** A fake OpenID Provider under `/oidc` of a {@link ScriptedHttpServer}: metadata, and signed ID tokens. */
export class ScriptedProvider {
  readonly issuer: URL;
  readonly #key: Awaited<ReturnType<typeof generateKeyPair>>;

  private constructor(
    readonly server: ScriptedHttpServer,
    key: Awaited<ReturnType<typeof generateKeyPair>>,
  ) {
    this.issuer = new URL('oidc', server.url);
    this.#key = key;
    server.on('GET', '/oidc/.well-known/openid-configuration', () => ({
      json: {
        issuer: this.issuer.href,
        token_endpoint: `${this.issuer.href}/token`,
        device_authorization_endpoint: `${this.issuer.href}/device/auth`,
        revocation_endpoint: `${this.issuer.href}/token/revocation`,
        userinfo_endpoint: `${this.issuer.href}/me`,
        jwks_uri: `${this.issuer.href}/jwks`,
        id_token_signing_alg_values_supported: ['ES256'],
        grant_types_supported: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
      },
    }));
  }

  static async start(server: ScriptedHttpServer): Promise<ScriptedProvider> {
    return new ScriptedProvider(server, await generateKeyPair('ES256'));
  }

  /** An ID token for `sub`, as the provider would sign it for `clientId`. */
  idToken(sub: string, clientId = 'tapline-desktop'): Promise<string> {
    return new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: 'test' })
      .setIssuer(this.issuer.href)
      .setAudience(clientId)
      .setSubject(sub)
      .setIssuedAt()
      .setExpirationTime('10m')
      .sign(this.#key.privateKey);
  }

  /** A token endpoint answer. */
  async tokens(options: {
    readonly accessToken: string;
    readonly refreshToken?: string;
    readonly sub?: string;
    readonly expiresIn?: number;
    readonly scope?: string;
  }): Promise<ScriptedAnswer> {
    return {
      json: {
        access_token: options.accessToken,
        token_type: 'Bearer',
        expires_in: options.expiresIn ?? 600,
        scope: options.scope ?? 'openid offline_access scan_requests',
        ...(options.refreshToken === undefined ? {} : { refresh_token: options.refreshToken }),
        ...(options.sub === undefined ? {} : { id_token: await this.idToken(options.sub) }),
      },
      headers: { 'Cache-Control': 'no-store' },
    };
  }

  /** An OAuth error answer. */
  static error(error: string, status = 400, description?: string): ScriptedAnswer {
    return { status, json: { error, ...(description === undefined ? {} : { error_description: description }) } };
  }
}
