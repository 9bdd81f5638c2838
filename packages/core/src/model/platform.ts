/**
 * The VivoKey platform as Tapline's relay sees it: the current Auth API (`POST /challenge`, `/session`,
 * `/validate`, `/validate.json`; protocols.md §1.1) plus JWT verification. Implemented over HTTP by
 * `VivoKeyAuthClient`, and in-process by the reference platform in `@tapline/test-fixtures`.
 */
export interface PlatformClient {
  /** The platform's base URL. */
  readonly baseUrl: URL;
  /** `POST /challenge`. */
  challenge(request: ChallengeRequest, options?: PlatformCallOptions): Promise<ChallengeResponse>;
  /** `POST /session`: exchanges the chip's answer for a signed authenticity token (JWT). */
  session(request: SessionRequest, options?: PlatformCallOptions): Promise<SessionResponse>;
  /** `POST /validate`: checks a SUN signature (`UID-CTR-SIG` or a full URL) with no chip dialogue. */
  validate(request: ValidateRequest, options?: PlatformCallOptions): Promise<ValidateResponse>;
  /** Verifies an authenticity token against the platform's JWKS and returns its claims. */
  verifyToken(token: string, options?: VerifyTokenOptions): Promise<AuthenticityClaims>;
}

/** Per-call options: a timeout and an abort signal. */
export interface PlatformCallOptions {
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** Challenge schemes: 1 for Spark 1 (TAM1), 2 for Spark 2 and the Apex Verify applet (AuthenticateEV2First). */
export type ChallengeScheme = 1 | 2;

/** `POST /challenge` body. Scheme 1 sends only the scheme; scheme 2 sends the chip's E(K, RndB) and its uid. */
export type ChallengeRequest =
  | { readonly scheme: 1 }
  | {
      readonly scheme: 2;
      /** The 16 bytes the chip answered to AuthenticateEV2First part 1, hex. */
      readonly message: string;
      /** The chip UID (Spark 2) or the Verify applet's chip id (Apex), lower-case hex. */
      readonly uid: string;
    };

/** `POST /challenge` answer. */
export interface ChallengeResponse {
  /** Scheme 1: at least 10 bytes, the first 10 are the TAM1 IChallenge. Scheme 2: the 32-byte E(K, RndA ‖ RndB′). Hex. */
  readonly payload: string;
  /** Opaque single-use token for `/session`. A secret: never log it. */
  readonly token: string;
}

/** `POST /session` body. */
export interface SessionRequest {
  /** Lower-case hex; Spark 1 MSB first (`e00401…`). */
  readonly uid: string;
  /** The chip's answer, hex: Spark 2/Apex 32 bytes + `9100`; Spark 1 the whole AUTHENTICATE reply, flags included. */
  readonly response: string;
  /** The token from `/challenge`. */
  readonly token: string;
  /** Optional client data, echoed in the JWT's `cld`. */
  readonly cld?: string;
}

/** `POST /session` answer. */
export interface SessionResponse {
  /** The authenticity token (JWT). */
  readonly token: string;
}

/** `POST /validate` body. */
export interface ValidateRequest {
  /** `UID-CTR-SIG` or the full URL. */
  readonly signature: string;
  readonly aud?: string;
  readonly cld?: string;
}

/** `POST /validate` answer. */
export interface ValidateResponse {
  readonly result: 'success' | 'expired' | 'invalid';
  /** The JWT, on success. */
  readonly token?: string;
}

/** Options of {@link PlatformClient.verifyToken}. */
export interface VerifyTokenOptions extends PlatformCallOptions {
  /** Required audience, if the relying party set one. */
  readonly audience?: string;
  /** Seconds of clock skew tolerated. Default 30. */
  readonly clockToleranceSec?: number;
}

/**
 * The claims of a VivoKey authenticity token. `sub` is a per-developer chip identifier (64 hex): it says "a genuine
 * VivoKey chip", never whose.
 */
export interface AuthenticityClaims {
  readonly sub: string;
  readonly iss?: string;
  readonly aud?: string | readonly string[];
  readonly iat?: number;
  readonly exp?: number;
  readonly dev_id?: string;
  /** `mutual`/`mau` for a chip dialogue, `cmac` for /validate. */
  readonly atp?: string;
  readonly type?: number;
  readonly product?: number;
  readonly cld?: string;
  readonly [claim: string]: unknown;
}
