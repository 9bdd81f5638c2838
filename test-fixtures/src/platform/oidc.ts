import { randomBytes } from 'node:crypto';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { JWK } from 'jose';
import Provider, {
  type Account,
  type Adapter,
  type AdapterPayload,
  type Client,
  type ErrorOut,
  type KoaContextWithOIDC,
  type PageError,
} from 'oidc-provider';
import { OIDC_PREFIX, OIDC_SCOPES, generateOidcSigningKey, type OidcReply, type OidcSetup } from './oidc-common.js';

/**
 * The reference platform's OpenID Provider: oidc-provider 9 with the device authorization grant (RFC 8628), rotating
 * refresh tokens with reuse detection, revocation and per-client (pairwise) subjects, mounted under `/oidc` of the
 * platform's own HTTP server. Also the "phone app" that approves a device login, driving the provider's own pages.
 *
 * Internal to the platform: nothing here is exported from the package, and the platform imports this module only
 * when the first request needs the provider.
 *
 * @packageDocumentation
 */

// ---------------------------------------------------------------------------------------------------------------
// Storage

interface Entry {
  readonly payload: AdapterPayload;
  /** ms since the epoch; Infinity without an expiry. */
  readonly expiresAt: number;
}

/** Models whose instances belong to a grant and are revoked with it. */
const GRANTABLE = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode']);

/** How often at most expired entries are swept out. */
const SWEEP_EVERY_MS = 10_000;

/**
 * The provider's storage, in memory. Given to oidc-provider explicitly (its own in-memory adapter is the
 * development quick-start and says so on every start); the platform is a test double, so memory is the point.
 * Payloads are cloned in and out, so that nothing the provider does to an object it holds changes what is stored.
 */
class MemoryStore {
  readonly entries = new Map<string, Entry>();
  readonly userCodes = new Map<string, string>();
  readonly sessionUids = new Map<string, string>();
  readonly grants = new Map<string, Set<string>>();
  #sweptAt = 0;

  get(key: string): AdapterPayload | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= Date.now()) {
      this.remove(key);
      return undefined;
    }
    return entry.payload;
  }

  remove(key: string): void {
    const entry = this.entries.get(key);
    if (entry === undefined) return;
    this.entries.delete(key);
    const { userCode, uid, grantId } = entry.payload;
    if (userCode !== undefined && this.userCodes.get(userCode) === key) this.userCodes.delete(userCode);
    if (uid !== undefined && this.sessionUids.get(uid) === key) this.sessionUids.delete(uid);
    if (grantId !== undefined) {
      const members = this.grants.get(grantId);
      members?.delete(key);
      if (members?.size === 0) this.grants.delete(grantId);
    }
  }

  sweep(): void {
    const now = Date.now();
    if (now - this.#sweptAt < SWEEP_EVERY_MS) return;
    this.#sweptAt = now;
    for (const [key, entry] of this.entries) if (entry.expiresAt <= now) this.remove(key);
  }
}

/** oidc-provider's adapter interface over one model of a {@link MemoryStore}. */
class MemoryAdapter implements Adapter {
  readonly #model: string;
  readonly #store: MemoryStore;

  constructor(model: string, store: MemoryStore) {
    this.#model = model;
    this.#store = store;
  }

  #key(id: string): string {
    return `${this.#model}:${id}`;
  }

  upsert(id: string, payload: AdapterPayload, expiresIn: number | undefined): Promise<void> {
    const store = this.#store;
    store.sweep();
    const key = this.#key(id);
    store.remove(key);
    const copy = structuredClone(payload);
    store.entries.set(key, {
      payload: copy,
      expiresAt: expiresIn === undefined ? Infinity : Date.now() + expiresIn * 1000,
    });
    if (copy.userCode !== undefined) store.userCodes.set(copy.userCode, key);
    if (this.#model === 'Session' && copy.uid !== undefined) store.sessionUids.set(copy.uid, key);
    if (GRANTABLE.has(this.#model) && copy.grantId !== undefined) {
      const members = store.grants.get(copy.grantId) ?? new Set<string>();
      members.add(key);
      store.grants.set(copy.grantId, members);
    }
    return Promise.resolve();
  }

  find(id: string): Promise<AdapterPayload | undefined> {
    return Promise.resolve(this.#clone(this.#store.get(this.#key(id))));
  }

  findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    const key = this.#store.userCodes.get(userCode);
    return Promise.resolve(key === undefined ? undefined : this.#clone(this.#store.get(key)));
  }

  findByUid(uid: string): Promise<AdapterPayload | undefined> {
    const key = this.#store.sessionUids.get(uid);
    return Promise.resolve(key === undefined ? undefined : this.#clone(this.#store.get(key)));
  }

  consume(id: string): Promise<void> {
    const payload = this.#store.get(this.#key(id));
    // Kept, marked: a consumed refresh token presented again is how reuse is detected.
    if (payload !== undefined) payload.consumed = Math.floor(Date.now() / 1000);
    return Promise.resolve();
  }

  destroy(id: string): Promise<void> {
    this.#store.remove(this.#key(id));
    return Promise.resolve();
  }

  revokeByGrantId(grantId: string): Promise<void> {
    for (const key of [...(this.#store.grants.get(grantId) ?? [])]) this.#store.remove(key);
    return Promise.resolve();
  }

  #clone(payload: AdapterPayload | undefined): AdapterPayload | undefined {
    return payload === undefined ? undefined : structuredClone(payload);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Pages

/** Says what a page is, for {@link ReferenceOidc.approve}: `input`, `confirm`, `aborted`, `approved`, `error`. */
const OUTCOME_HEADER = 'x-reference-device-flow';
/** The reason of an `error` page. */
const REASON_HEADER = 'x-reference-device-flow-error';

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A header-safe one-line version of a message. */
function headerText(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, ' ').slice(0, 300);
}

function page(title: string, content: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${escapeHtml(title)}</title></head>
<body>
<main>
<h1>${escapeHtml(title)}</h1>
${content}
</main>
</body>
</html>`;
}

function setPage(ctx: KoaContextWithOIDC, outcome: string, title: string, content: string, reason?: string): void {
  ctx.set(OUTCOME_HEADER, outcome);
  if (reason !== undefined) ctx.set(REASON_HEADER, headerText(reason));
  ctx.body = page(title, content);
}

const SCOPE_WORDS =
  '<ul><li>know that this device belongs to your account</li><li>see and answer scan requests for your chips</li><li>stay signed in (until you sign it out)</li></ul>';

// ---------------------------------------------------------------------------------------------------------------
// A cookie-keeping page client, the "phone"

interface PageResponse {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
}

/** How long one page request of an approval may take. */
const PAGE_TIMEOUT_MS = 10_000;

/** fetch with a cookie jar and no redirects followed: the device-login pages as a browser sees them. */
class PageClient {
  readonly #cookies = new Map<string, string>();
  readonly #headers: Readonly<Record<string, string>>;

  constructor(headers: Readonly<Record<string, string>>) {
    this.#headers = headers;
  }

  async request(url: string, form?: Readonly<Record<string, string>>): Promise<PageResponse> {
    const headers: Record<string, string> = { ...this.#headers, accept: 'text/html' };
    if (this.#cookies.size > 0) {
      headers['cookie'] = [...this.#cookies].map(([name, value]) => `${name}=${value}`).join('; ');
    }
    if (form !== undefined) headers['content-type'] = 'application/x-www-form-urlencoded';
    const response = await fetch(url, {
      method: form === undefined ? 'GET' : 'POST',
      headers,
      ...(form === undefined ? {} : { body: new URLSearchParams(form).toString() }),
      redirect: 'manual',
      signal: AbortSignal.timeout(PAGE_TIMEOUT_MS),
    });
    // Paths and lifetimes do not matter within one approval: every cookie goes back, cleared ones are dropped.
    for (const line of response.headers.getSetCookie()) {
      const pair = line.split(';', 1)[0] ?? '';
      const at = pair.indexOf('=');
      if (at <= 0) continue;
      const name = pair.slice(0, at).trim();
      const value = pair.slice(at + 1).trim();
      if (value === '' || /;\s*expires=Thu, 01 Jan 1970/i.test(line)) this.#cookies.delete(name);
      else this.#cookies.set(name, value);
    }
    return { status: response.status, headers: response.headers, text: await response.text() };
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The provider

interface MountedRequest extends IncomingMessage {
  /** The URL before the mount prefix was stripped: oidc-provider works its mount path out of it. */
  originalUrl?: string;
}

interface Capture {
  reply?: OidcReply;
}

/** How a pending interaction is to be decided, keyed by interaction uid. */
interface Decision {
  readonly account: string;
}

function bodyText(body: unknown): string {
  if (body === undefined || body === null) return '';
  if (typeof body === 'string') return body;
  if (Buffer.isBuffer(body)) return body.toString('utf8');
  return JSON.stringify(body);
}

/**
 * The platform's OpenID Provider. Subjects are pairwise by construction: oidc-provider 9 refuses
 * `subject_type: 'pairwise'` for a device-flow client that authenticates with `none` (it wants `private_key_jwt` and
 * a `jwks_uri` to derive a sector from), so the account id the provider works with is already the account's pairwise
 * subject for the client (protocol §2.5), and `findAccount` maps it back. The provider's `sub` is its account id,
 * so every client sees `pairwiseSubject(salt, clientId, account)`.
 */
export class ReferenceOidc {
  readonly #setup: OidcSetup;
  readonly #provider: Provider;
  readonly #callback: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
  readonly #captures = new WeakMap<IncomingMessage, Capture>();
  readonly #decisions = new Map<string, Decision>();
  readonly #stats: OidcSetup['stats'];

  /** Creates the provider with a fresh ID-token signing key. */
  static async create(setup: OidcSetup): Promise<ReferenceOidc> {
    return new ReferenceOidc(setup, await generateOidcSigningKey());
  }

  private constructor(setup: OidcSetup, signingKey: JWK) {
    this.#setup = setup;
    this.#stats = setup.stats;
    const store = new MemoryStore();
    const clientIds = new Set(setup.clients.map((client) => client.clientId));
    this.#provider = new Provider(setup.issuer.href, {
      adapter: (model) => new MemoryAdapter(model, store),
      clients: setup.clients.map((client) => ({
        client_id: client.clientId,
        client_name: client.clientName,
        token_endpoint_auth_method: 'none',
        grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
        response_types: [],
        redirect_uris: [],
        id_token_signed_response_alg: 'ES256',
      })),
      // No browser-based client calls these endpoints cross-origin.
      clientBasedCORS: () => false,
      cookies: { keys: [randomBytes(32).toString('base64url')] },
      findAccount: (ctx, id, token) => Promise.resolve(this.#findAccount(ctx, id, token?.clientId, clientIds)),
      features: {
        devInteractions: { enabled: false },
        deviceFlow: {
          enabled: true,
          charset: 'base-20',
          mask: '****-****',
          userCodeInputSource: (ctx, form, out, err) => Promise.resolve(this.#inputPage(ctx, form, out, err)),
          userCodeConfirmSource: (ctx, form, client, _info, userCode) =>
            Promise.resolve(this.#confirmPage(ctx, form, client, userCode)),
          successSource: (ctx) => Promise.resolve(this.#successPage(ctx)),
        },
        revocation: {
          enabled: true,
          // Only the client a token was issued to may revoke it; the public client proves nothing else.
          allowedPolicy: (ctx, client, token) => Promise.resolve(token.clientId === client.clientId),
        },
        rpInitiatedLogout: { enabled: false },
        resourceIndicators: { enabled: false },
        userinfo: { enabled: true },
      },
      interactions: {
        url: (_ctx, interaction) => Promise.resolve(`${OIDC_PREFIX}/interaction/${interaction.uid}`),
      },
      jwks: { keys: [signingKey] },
      renderError: (ctx, out) => Promise.resolve(this.#errorPage(ctx, out)),
      rotateRefreshToken: true,
      scopes: [...OIDC_SCOPES],
      subjectTypes: ['public'],
      ttl: {
        AccessToken: setup.accessTokenTtlSec,
        DeviceCode: setup.deviceCodeTtlSec,
        RefreshToken: setup.refreshTokenTtlSec,
        IdToken: setup.accessTokenTtlSec,
        Interaction: setup.deviceCodeTtlSec,
        Session: setup.deviceCodeTtlSec,
        // A grant outlives every refresh token issued under it: each rotation starts a new refresh-token lifetime.
        Grant: 365 * 24 * 60 * 60,
      },
    });
    this.#provider.use(async (ctx, next) => {
      await next();
      this.#afterProvider(ctx);
    });
    this.#provider.on('grant.revoked', (ctx) => {
      // The token endpoint revokes a grant for one reason only: a consumed refresh token came back.
      if (ctx.oidc?.route === 'token' && ctx.oidc.params?.['grant_type'] === 'refresh_token') {
        this.#stats.refreshReuseDetected += 1;
      }
    });
    this.#callback = this.#provider.callback();
  }

  /**
   * Handles a request under `/oidc`. Returns the provider's answer for the platform to write, so that the platform's
   * fault injection applies to it like to any other endpoint; undefined when the response went out another way.
   */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<OidcReply | undefined> {
    const original = req.url ?? '/';
    const local = original.slice(OIDC_PREFIX.length);
    const inner = local.startsWith('/') ? local : `/${local}`;
    if (/^\/interaction\/[^/?]+(?:\?.*)?$/.test(inner)) return this.#interaction(req, res);
    // Mounted the way Express mounts it: oidc-provider takes its mount path from originalUrl minus url, so that the
    // endpoints it advertises in discovery are under /oidc.
    (req as MountedRequest).originalUrl = original;
    req.url = inner;
    const capture: Capture = {};
    this.#captures.set(req, capture);
    await this.#callback(req, res);
    return capture.reply;
  }

  /**
   * The account behind an access token with its scopes, or undefined when the token is unknown, expired or revoked.
   */
  async accessToken(
    value: string,
  ): Promise<{ readonly account: string; readonly scopes: ReadonlySet<string> } | undefined> {
    const token = await this.#provider.AccessToken.find(value);
    if (token?.accountId === undefined || token.clientId === undefined) return undefined;
    const account = this.#accountFor(token.accountId, [token.clientId]);
    if (account === undefined) return undefined;
    return { account, scopes: new Set((token.scope ?? '').split(' ').filter((scope) => scope !== '')) };
  }

  /**
   * Approves the device login of `userCode` for `account`, the way the phone app would: it opens the verification
   * page, submits the user code, confirms it, and the interaction the provider then starts is decided here (login as
   * the account, consent to every scope) through the provider's interaction API. Every step is the provider's own
   * endpoint over HTTP, so the grant, session and device code are exactly what a real approval leaves.
   */
  async approve(userCode: string, account: string): Promise<void> {
    const client = new PageClient(this.#setup.internalHeaders);
    const confirmed = await this.#submitUserCode(client, userCode, 'confirm');
    const location = confirmed.headers.get('location');
    const uid = location === null ? undefined : /\/interaction\/([^/?]+)/.exec(location)?.[1];
    if (confirmed.status !== 303 || uid === undefined) throw this.#pageError('approve', userCode, confirmed);
    this.#decisions.set(uid, { account });
    try {
      const decided = await client.request(new URL(location!, this.#setup.issuer).href);
      const resume = decided.headers.get('location');
      if (decided.status !== 303 || resume === null) throw this.#pageError('approve', userCode, decided);
      const done = await client.request(new URL(resume, this.#setup.issuer).href);
      if (done.headers.get(OUTCOME_HEADER) !== 'approved') throw this.#pageError('approve', userCode, done);
    } finally {
      this.#decisions.delete(uid);
    }
    this.#stats.approvals += 1;
  }

  /** Declines the device login of `userCode`, with the confirmation page's "abort". */
  async deny(userCode: string): Promise<void> {
    const client = new PageClient(this.#setup.internalHeaders);
    const aborted = await this.#submitUserCode(client, userCode, 'abort');
    if (aborted.headers.get(OUTCOME_HEADER) !== 'aborted') throw this.#pageError('deny', userCode, aborted);
    this.#stats.denials += 1;
  }

  async #submitUserCode(client: PageClient, userCode: string, action: 'confirm' | 'abort'): Promise<PageResponse> {
    const verification = `${this.#setup.issuer.href}/device`;
    const form = await client.request(verification);
    const xsrf = /name="xsrf" value="([^"]+)"/.exec(form.text)?.[1];
    if (form.status !== 200 || xsrf === undefined)
      throw this.#pageError(action === 'confirm' ? 'approve' : 'deny', userCode, form);
    return client.request(verification, { xsrf, user_code: userCode, [action]: 'yes' });
  }

  #pageError(what: 'approve' | 'deny', userCode: string, response: PageResponse): Error {
    const reason = response.headers.get(REASON_HEADER) ?? `the platform answered HTTP ${response.status}`;
    return new Error(`Cannot ${what} the device login with user code "${userCode}": ${reason}.`);
  }

  /** The interaction URL: decided by a pending {@link ReferenceOidc.approve}, or a page asking for the chip scan. */
  async #interaction(req: IncomingMessage, res: ServerResponse): Promise<OidcReply> {
    const html = { 'content-type': 'text/html; charset=utf-8' };
    if (req.method !== 'GET') return { status: 405, text: '', headers: { allow: 'GET' } };
    let details;
    try {
      details = await this.#provider.interactionDetails(req, res);
    } catch {
      return {
        status: 400,
        text: page('Sign-in expired', '<p>This sign-in request is unknown or has expired.</p>'),
        headers: { ...html, [OUTCOME_HEADER]: 'error', [REASON_HEADER]: 'the interaction is unknown or expired' },
      };
    }
    const decision = this.#decisions.get(details.uid);
    if (decision === undefined) {
      // A person with a browser: the reference has no phone app, its approveDevice hook plays it.
      return {
        status: 200,
        text: page(
          'Approve on your phone',
          '<p>Scan your VivoKey chip with the phone app to approve this sign-in.</p>',
        ),
        headers: { ...html, [OUTCOME_HEADER]: 'waiting' },
      };
    }
    this.#decisions.delete(details.uid);
    const clientId = String(details.params['client_id']);
    const accountId = this.#setup.subject(decision.account, clientId);
    const grant = new this.#provider.Grant({ accountId, clientId });
    grant.addOIDCScope(OIDC_SCOPES.join(' '));
    const grantId = await grant.save();
    const returnTo = await this.#provider.interactionResult(req, res, {
      login: { accountId },
      consent: { grantId },
    });
    return { status: 303, text: '', headers: { location: returnTo } };
  }

  /** Maps the provider's account id (a pairwise subject) back to the platform's account. */
  #accountFor(id: string, sectors: Iterable<string>): string | undefined {
    for (const sector of sectors) {
      const account = this.#setup.accountIds().find((candidate) => this.#setup.subject(candidate, sector) === id);
      if (account !== undefined) return account;
    }
    return undefined;
  }

  #findAccount(
    ctx: KoaContextWithOIDC,
    id: string,
    tokenClientId: string | undefined,
    clientIds: ReadonlySet<string>,
  ): Account | undefined {
    const clientId = ctx.oidc?.client?.clientId ?? tokenClientId;
    const account = this.#accountFor(id, clientId === undefined ? clientIds : [clientId]);
    if (account === undefined || !this.#setup.hasAccount(account)) return undefined;
    return { accountId: id, claims: () => ({ sub: id }) };
  }

  /** Counts what the provider did and holds its answer back for the platform (Koa's `respond = false`). */
  #afterProvider(ctx: KoaContextWithOIDC): void {
    const route = ctx.oidc?.route;
    if (ctx.status === 200) {
      if (route === 'device_authorization') {
        this.#stats.deviceAuthorizations += 1;
        // oidc-provider sends no interval (RFC 8628 then means 5 s); the reference polls faster (protocol §2.2).
        if (typeof ctx.body === 'object' && ctx.body !== null) {
          ctx.body = { ...(ctx.body as Record<string, unknown>), interval: this.#setup.deviceInterval };
        }
      } else if (route === 'token') {
        const grantType = ctx.oidc?.params?.['grant_type'];
        if (grantType === 'refresh_token') this.#stats.refreshes += 1;
        else if (grantType === 'urn:ietf:params:oauth:grant-type:device_code') this.#stats.tokenGrants += 1;
      } else if (route === 'revocation') {
        this.#stats.revocations += 1;
      }
    }
    const capture = this.#captures.get(ctx.req);
    if (capture === undefined) return;
    const headers: OutgoingHttpHeaders = { ...ctx.response.headers };
    // The platform writes the body, perhaps cut short by a fault, and sets the length itself.
    delete headers['content-length'];
    const empty = ctx.status === 204 || ctx.status === 304;
    capture.reply = { status: ctx.status, text: empty ? '' : bodyText(ctx.body), headers };
    ctx.respond = false;
  }

  #inputPage(ctx: KoaContextWithOIDC, form: string, out: ErrorOut | undefined, err: PageError | undefined): void {
    const submit = '<button type="submit" form="op.deviceInputForm">Continue</button>';
    if (err === undefined) {
      setPage(ctx, 'input', 'Sign in a device', `<p>Enter the code shown on your device.</p>${form}${submit}`);
    } else if (err.name === 'AbortedError') {
      setPage(ctx, 'aborted', 'Sign-in declined', '<p>The device was not signed in.</p>');
    } else {
      const reason = out?.error_description ?? err.message;
      setPage(ctx, 'error', 'Sign in a device', `<p>${escapeHtml(reason)}</p>${form}${submit}`, reason);
    }
  }

  #confirmPage(ctx: KoaContextWithOIDC, form: string, client: Client, userCode: string): void {
    const name = escapeHtml(client.clientName ?? client.clientId);
    setPage(
      ctx,
      'confirm',
      'Confirm the device',
      `<p><strong>${name}</strong> asks to</p>${SCOPE_WORDS}<p>Check that your device shows <code>${escapeHtml(userCode)}</code>, then scan your chip to approve.</p>${form}` +
        '<button type="submit" form="op.deviceConfirmForm">Approve</button>' +
        '<button type="submit" form="op.deviceConfirmForm" name="abort" value="yes">Decline</button>',
    );
  }

  #successPage(ctx: KoaContextWithOIDC): void {
    setPage(ctx, 'approved', 'Device signed in', '<p>You can close this page and return to your device.</p>');
  }

  #errorPage(ctx: KoaContextWithOIDC, out: ErrorOut): void {
    const reason = out.error_description ?? out.error;
    setPage(ctx, 'error', 'Sign-in failed', `<p>${escapeHtml(reason)}</p>`, reason);
  }
}
