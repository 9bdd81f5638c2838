/**
 * The part of `oidc-provider` 9 that the reference platform uses, typed by hand: the package ships no type
 * declarations and `@types/oidc-provider` lags behind its majors. Only what `oidc.ts` touches is declared, with the
 * shapes of oidc-provider 9.13 (lib/provider.js, lib/helpers/defaults.js, lib/models). Nothing here is re-exported:
 * the package's public declarations never mention oidc-provider, so its consumers need none of this.
 */
declare module 'oidc-provider' {
  import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';

  /** What an adapter stores for one model instance (a token, a session, a grant, …): plain JSON. */
  export interface AdapterPayload {
    [key: string]: unknown;
    readonly jti?: string;
    readonly grantId?: string;
    readonly userCode?: string;
    readonly uid?: string;
    consumed?: number;
  }

  /** The storage interface of every model (oidc-provider's `Adapter`). */
  export interface Adapter {
    upsert(id: string, payload: AdapterPayload, expiresIn: number | undefined): Promise<void>;
    find(id: string): Promise<AdapterPayload | undefined>;
    findByUserCode(userCode: string): Promise<AdapterPayload | undefined>;
    findByUid(uid: string): Promise<AdapterPayload | undefined>;
    consume(id: string): Promise<void>;
    destroy(id: string): Promise<void>;
    revokeByGrantId(grantId: string): Promise<void>;
  }

  /** A registered client, as the provider's hooks receive it. */
  export interface Client {
    readonly clientId: string;
    readonly clientName?: string;
    readonly subjectType?: string;
    readonly sectorIdentifier?: string;
  }

  /** The request parameters the provider parsed (a `Params` instance: one property per known parameter). */
  export interface OIDCParams {
    readonly [name: string]: unknown;
  }

  /** `ctx.oidc`: the provider's per-request context. */
  export interface OIDCContext {
    readonly route?: string;
    readonly params?: OIDCParams;
    readonly client?: Client;
  }

  /** The Koa context of a provider request, narrowed to what the platform reads and writes. */
  export interface KoaContextWithOIDC {
    readonly req: IncomingMessage;
    readonly res: ServerResponse;
    status: number;
    body: unknown;
    /** False makes Koa leave the response alone (`koa` `ctx.respond`). */
    respond?: boolean;
    readonly response: { readonly headers: OutgoingHttpHeaders };
    readonly oidc?: OIDCContext;
    set(field: string, value: string): void;
  }

  /** A Koa middleware. */
  export type Middleware = (ctx: KoaContextWithOIDC, next: () => Promise<void>) => Promise<void>;

  /** What `findAccount` resolves to. */
  export interface Account {
    readonly accountId: string;
    claims(use: string, scope: string): Promise<AccountClaims> | AccountClaims;
  }

  /** The claims of an account; `sub` is required. */
  export interface AccountClaims {
    readonly sub: string;
    readonly [claim: string]: unknown;
  }

  /** A token the provider found (an access token here). */
  export interface TokenLike {
    readonly jti: string;
    readonly accountId?: string;
    readonly clientId?: string;
    readonly grantId?: string;
    readonly scope?: string;
    readonly exp?: number;
  }

  /** An error the user-code pages are rendered with (a `ReRenderError` or an OAuth error). */
  export interface PageError extends Error {
    readonly userCode?: string;
  }

  /** The error page's input: an OAuth error code and description. */
  export interface ErrorOut {
    readonly error: string;
    readonly error_description?: string;
  }

  /** Static client metadata (snake_case, as registered). */
  export interface ClientMetadata {
    readonly client_id: string;
    readonly client_name?: string;
    readonly token_endpoint_auth_method?: string;
    readonly grant_types?: readonly string[];
    readonly response_types?: readonly string[];
    readonly redirect_uris?: readonly string[];
    readonly id_token_signed_response_alg?: string;
    readonly subject_type?: string;
  }

  /** The provider configuration, limited to the options the platform sets. */
  export interface Configuration {
    readonly adapter?: (name: string) => Adapter;
    readonly clients?: readonly ClientMetadata[];
    readonly clientBasedCORS?: (ctx: KoaContextWithOIDC, origin: string, client: Client) => boolean;
    readonly cookies?: { readonly keys?: readonly string[] };
    readonly findAccount?: (ctx: KoaContextWithOIDC, sub: string, token?: TokenLike) => Promise<Account | undefined>;
    readonly features?: {
      readonly devInteractions?: { readonly enabled: boolean };
      readonly deviceFlow?: {
        readonly enabled: boolean;
        readonly charset?: 'base-20' | 'digits';
        readonly mask?: string;
        readonly userCodeInputSource?: (
          ctx: KoaContextWithOIDC,
          form: string,
          out?: ErrorOut,
          err?: PageError,
        ) => Promise<void>;
        readonly userCodeConfirmSource?: (
          ctx: KoaContextWithOIDC,
          form: string,
          client: Client,
          deviceInfo: unknown,
          userCode: string,
        ) => Promise<void>;
        readonly successSource?: (ctx: KoaContextWithOIDC) => Promise<void>;
      };
      readonly revocation?: {
        readonly enabled: boolean;
        readonly allowedPolicy?: (ctx: KoaContextWithOIDC, client: Client, token: TokenLike) => Promise<boolean>;
      };
      readonly rpInitiatedLogout?: { readonly enabled: boolean };
      readonly resourceIndicators?: { readonly enabled: boolean };
      readonly userinfo?: { readonly enabled: boolean };
    };
    readonly interactions?: {
      readonly url?: (ctx: KoaContextWithOIDC, interaction: { readonly uid: string }) => Promise<string>;
    };
    readonly jwks?: { readonly keys: readonly Readonly<Record<string, unknown>>[] };
    readonly pairwiseIdentifier?: (ctx: KoaContextWithOIDC, accountId: string, client: Client) => Promise<string>;
    readonly renderError?: (ctx: KoaContextWithOIDC, out: ErrorOut, error: Error) => Promise<void>;
    readonly rotateRefreshToken?: boolean;
    readonly scopes?: readonly string[];
    readonly subjectTypes?: readonly string[];
    readonly ttl?: Readonly<Record<string, number>>;
  }

  /** The details of a pending interaction (`provider.interactionDetails`). */
  export interface InteractionDetails {
    readonly uid: string;
    readonly prompt: { readonly name: string };
    readonly params: OIDCParams;
  }

  /** The result an interaction finishes with. */
  export interface InteractionResults {
    readonly login?: { readonly accountId: string };
    readonly consent?: { readonly grantId: string };
    readonly error?: string;
    readonly error_description?: string;
  }

  /** A grant: what an account allowed a client. */
  export interface Grant {
    addOIDCScope(scope: string): void;
    save(): Promise<string>;
  }

  /** The provider: a Koa application with the OpenID Connect endpoints. */
  export default class Provider {
    constructor(issuer: string, configuration: Configuration);
    readonly issuer: string;
    readonly Grant: new (properties: { readonly accountId: string; readonly clientId: string }) => Grant;
    readonly AccessToken: { find(value: string): Promise<TokenLike | undefined> };
    callback(): (req: IncomingMessage, res: ServerResponse) => Promise<void>;
    use(middleware: Middleware): this;
    on(event: 'grant.revoked', listener: (ctx: KoaContextWithOIDC, grantId: string) => void): this;
    on(event: 'server_error', listener: (ctx: KoaContextWithOIDC, error: Error) => void): this;
    interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<InteractionDetails>;
    interactionResult(req: IncomingMessage, res: ServerResponse, result: InteractionResults): Promise<string>;
  }
}
