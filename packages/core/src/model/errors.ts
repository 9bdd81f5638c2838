/**
 * The one error hierarchy of Tapline. Every failure that crosses a package boundary is a {@link TaplineError}
 * with a stable {@link TaplineErrorCode}, a message a person can act on, an optional hint, and the lower-level
 * `cause` attached.
 *
 * @packageDocumentation
 */

/**
 * Stable error codes. They are part of the public contract (CLI output, JSON, logs): never rename one.
 */
export const ErrorCode = {
  /** No reader matched, or the named reader is not attached. */
  ReaderNotFound: 'READER_NOT_FOUND',
  /** A reader that was in use went away (unplugged, service restarted). */
  ReaderGone: 'READER_GONE',
  /** The tag left the field before the exchange finished. */
  TagLost: 'TAG_LOST',
  /** A wait ran out of time. */
  Timeout: 'TIMEOUT',
  /** The caller aborted the operation (AbortSignal, Ctrl-C, tag removal upstream). */
  Aborted: 'ABORTED',
  /** A native transport (PC/SC binding, pcscd, USB) is missing or not running. */
  TransportUnavailable: 'TRANSPORT_UNAVAILABLE',
  /** A reader or tag answered with bytes that do not follow the protocol. */
  ProtocolError: 'PROTOCOL_ERROR',
  /** The reader or driver cannot do what was asked (for example ISO 15693 on a PN532). */
  UnsupportedCapability: 'UNSUPPORTED_CAPABILITY',
  /** No installed driver has the requested id, or a driver cannot be loaded. */
  DriverNotFound: 'DRIVER_NOT_FOUND',
  /** A driver failed to open a device. */
  DriverFailed: 'DRIVER_FAILED',
  /** An argument, flag or configuration value is malformed. */
  InvalidArgument: 'INVALID_ARGUMENT',
  /** A scan request expired before it could be answered. */
  RequestExpired: 'REQUEST_EXPIRED',
  /** A component was asked for that has not been configured (for example the platform client). */
  NotConfigured: 'NOT_CONFIGURED',
  /** A tag refused a command with an error status (ISO 7816 SW, NXP `91xx`, ISO 15693 error flag). */
  TagStatus: 'TAG_STATUS',
  /** Mutual authentication with a tag failed (wrong key, or the tag's proof did not match). */
  AuthenticationFailed: 'AUTHENTICATION_FAILED',
  /** A MAC or checksum on a tag's answer did not verify: the answer was corrupted or forged. */
  IntegrityError: 'INTEGRITY_ERROR',
  /** The platform could not be reached, or answered with a server error (5xx). Retrying later may help. */
  PlatformUnavailable: 'PLATFORM_UNAVAILABLE',
  /** The platform refused the request (4xx): wrong API key, expired challenge, chip not enrolled, … */
  PlatformRejected: 'PLATFORM_REJECTED',
  /** An authenticity token failed verification (signature, algorithm, key id, issuer, audience, expiry). */
  TokenInvalid: 'TOKEN_INVALID',
  /** A one-time use was refused because it already happened (a chip already verified with --once-per-chip). */
  AlreadyUsed: 'ALREADY_USED',
  /** A file Tapline keeps (token store, once-per-chip store) could not be read or written: disk full, I/O error. */
  StorageFailed: 'STORAGE_FAILED',
  /**
   * This computer is not associated with a VivoKey account (never logged in, logged out, or the platform ended the
   * association). `tapline login` associates it.
   */
  NotAssociated: 'NOT_ASSOCIATED',
  /** The person declined the association on the VivoKey side (the device-login page). */
  AssociationDenied: 'ASSOCIATION_DENIED',
  /** The device login was not approved before its code expired. */
  AssociationExpired: 'ASSOCIATION_EXPIRED',
  /** No agent answers on the local control socket (`tapline agent status`, `tapline agent choose`): start one. */
  AgentNotRunning: 'AGENT_NOT_RUNNING',
  /** An agent already answers on the local control socket, so another one does not start: both would take the taps. */
  AgentAlreadyRunning: 'AGENT_ALREADY_RUNNING',
  /** Any other failure inside Tapline; a bug report is welcome. */
  Internal: 'INTERNAL',
} as const;

/** A stable error code; see {@link ErrorCode}. */
export type TaplineErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Options accepted by every {@link TaplineError} constructor. */
export interface TaplineErrorOptions {
  /** The lower-level error or value that caused this one. */
  readonly cause?: unknown;
  /** What the person should do next, in one sentence. */
  readonly hint?: string;
  /** Machine-readable details (no secrets: they are printed by `--json`). */
  readonly details?: Readonly<Record<string, unknown>>;
}

const brand = Symbol.for('@tapline/core/TaplineError');

/**
 * Base class of every Tapline error.
 *
 * Use {@link isTaplineError} rather than `instanceof` across package boundaries: two copies of `@tapline/core` in
 * one process (a community driver with its own copy, say) would otherwise fail `instanceof`.
 */
export class TaplineError extends Error {
  /** The stable code. */
  readonly code: TaplineErrorCode;
  /** What to do about it, if there is something to do. */
  readonly hint: string | undefined;
  /** Machine-readable details. */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: TaplineErrorCode, message: string, options: TaplineErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TaplineError';
    this.code = code;
    this.hint = options.hint;
    this.details = options.details ?? {};
    Object.defineProperty(this, brand, { value: true });
  }

  /** A plain object for JSON output: code, message, hint, details, and the cause's message chain. */
  toJSON(): TaplineErrorJson {
    const causes: string[] = [];
    let cause: unknown = this.cause;
    for (let depth = 0; cause !== undefined && depth < 8; depth++) {
      causes.push(describeCause(cause));
      cause = cause instanceof Error ? cause.cause : undefined;
    }
    return {
      code: this.code,
      message: this.message,
      ...(this.hint === undefined ? {} : { hint: this.hint }),
      ...(Object.keys(this.details).length === 0 ? {} : { details: this.details }),
      ...(causes.length === 0 ? {} : { causes }),
    };
  }
}

function describeCause(cause: unknown): string {
  if (cause instanceof Error) return `${cause.name}: ${cause.message}`;
  if (typeof cause === 'string' || typeof cause === 'number' || typeof cause === 'boolean') return String(cause);
  try {
    return JSON.stringify(cause) ?? typeof cause;
  } catch {
    return typeof cause;
  }
}

/** The JSON form of a {@link TaplineError}. */
export interface TaplineErrorJson {
  readonly code: TaplineErrorCode;
  readonly message: string;
  readonly hint?: string;
  readonly details?: Readonly<Record<string, unknown>>;
  readonly causes?: readonly string[];
}

/** True when `value` is a {@link TaplineError}, from this copy of core or another. */
export function isTaplineError(value: unknown): value is TaplineError {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[brand] === true;
}

/** True when `value` is a {@link TaplineError} with the given code. */
export function hasErrorCode(value: unknown, code: TaplineErrorCode): value is TaplineError {
  return isTaplineError(value) && value.code === code;
}

/**
 * Wraps anything thrown into a {@link TaplineError}: Tapline errors pass through unchanged, everything else becomes
 * `fallbackCode` with the original attached as `cause`.
 */
export function toTaplineError(
  value: unknown,
  fallbackCode: TaplineErrorCode = ErrorCode.Internal,
  fallbackMessage?: string,
): TaplineError {
  if (isTaplineError(value)) return value;
  const text = value instanceof Error ? value.message : String(value);
  return new TaplineError(fallbackCode, fallbackMessage ?? text, { cause: value });
}

/** The error a timed-out wait rejects with. */
export function timeoutError(what: string, timeoutMs: number, cause?: unknown): TaplineError {
  return new TaplineError(ErrorCode.Timeout, `${what} did not finish within ${timeoutMs} ms.`, {
    cause,
    details: { timeoutMs },
    hint: 'Hold the tag still on the reader, or allow more time (the CLI takes --timeout).',
  });
}

/** The error an aborted operation rejects with; keeps a Tapline reason (such as TAG_LOST) when there is one. */
export function abortError(what: string, reason?: unknown): TaplineError {
  if (isTaplineError(reason)) return reason;
  return new TaplineError(ErrorCode.Aborted, `${what} was cancelled.`, { cause: reason });
}

/** The error for a tag that left the field mid-exchange. */
export function tagLostError(what: string, cause?: unknown): TaplineError {
  return new TaplineError(ErrorCode.TagLost, `The tag left the reader during ${what}.`, {
    cause,
    hint: 'Hold the tag (or the implant) still on the reader until Tapline says it is done, then try again.',
  });
}

/**
 * The error for ISO 15693 on a reader whose RF front end (`frontEnd`, e.g. `PN532`) has no ISO 15693 modulation:
 * no firmware or driver can change that, so the message names readers that can read a Spark 1.
 */
export function iso15693UnsupportedError(readerName: string, frontEnd: string): TaplineError {
  return new TaplineError(
    ErrorCode.UnsupportedCapability,
    `${readerName} cannot read ISO 15693 tags such as the VivoKey Spark 1: its NXP ${frontEnd} has no ISO 15693. ` +
      'Use a reader that speaks ISO 15693, such as the Identiv uTrust 3720 F or uTrust 3721 F.',
    {
      details: { reader: readerName, chip: frontEnd, capability: 'iso15693' },
      hint: 'Read a Spark 1 with an Identiv uTrust 3720 F or 3721 F.',
    },
  );
}

/** What to run to associate this computer with a VivoKey account. */
export const LOGIN_HINT = 'Run `tapline login` to associate this computer with your VivoKey account.';

/**
 * The error for a call that needs an association this computer does not have (or no longer has): `NOT_ASSOCIATED`
 * with the hint to run `tapline login`. `why` completes the sentence "This computer is not associated with a VivoKey
 * account" (for example "the platform ended the association").
 */
export function notAssociatedError(why?: string, options: Omit<TaplineErrorOptions, 'hint'> = {}): TaplineError {
  return new TaplineError(
    ErrorCode.NotAssociated,
    `This computer is not associated with a VivoKey account${why === undefined ? '' : `: ${why}`}.`,
    { ...options, hint: LOGIN_HINT },
  );
}

/** The error for a device login the person declined: `ASSOCIATION_DENIED`. */
export function associationDeniedError(options: Omit<TaplineErrorOptions, 'hint'> = {}): TaplineError {
  return new TaplineError(ErrorCode.AssociationDenied, 'The association was declined on the VivoKey side.', {
    ...options,
    hint: 'If that was not you, nothing was associated. To try again, run `tapline login` and approve the code.',
  });
}

/** The error for a device login whose code expired before it was approved: `ASSOCIATION_EXPIRED`. */
export function associationExpiredError(options: Omit<TaplineErrorOptions, 'hint'> = {}): TaplineError {
  return new TaplineError(
    ErrorCode.AssociationExpired,
    'The login code expired before it was approved; nothing was associated.',
    { ...options, hint: 'Run `tapline login` again and approve the new code within the time it shows.' },
  );
}
