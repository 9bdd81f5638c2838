import { describe, expect, it } from 'vitest';
import {
  ErrorCode,
  TaplineError,
  abortError,
  associationDeniedError,
  associationExpiredError,
  notAssociatedError,
  hasErrorCode,
  isTaplineError,
  tagLostError,
  timeoutError,
  toTaplineError,
} from '../src/index.js';

describe('TaplineError', () => {
  it('keeps the stable codes that the CLI and JSON output promise', () => {
    expect(ErrorCode).toMatchObject({
      ReaderNotFound: 'READER_NOT_FOUND',
      TagLost: 'TAG_LOST',
      Timeout: 'TIMEOUT',
      TransportUnavailable: 'TRANSPORT_UNAVAILABLE',
      ProtocolError: 'PROTOCOL_ERROR',
      UnsupportedCapability: 'UNSUPPORTED_CAPABILITY',
      DriverNotFound: 'DRIVER_NOT_FOUND',
      InvalidArgument: 'INVALID_ARGUMENT',
      StorageFailed: 'STORAGE_FAILED',
      NotAssociated: 'NOT_ASSOCIATED',
      AssociationDenied: 'ASSOCIATION_DENIED',
      AssociationExpired: 'ASSOCIATION_EXPIRED',
    });
    expect(new Set(Object.values(ErrorCode)).size).toBe(Object.values(ErrorCode).length);
  });

  it('carries code, hint, details and cause', () => {
    const cause = new Error('SCardTransmit error: Card was removed.(0x80100069)');
    const error = new TaplineError(ErrorCode.TagLost, 'The tag left.', {
      cause,
      hint: 'Hold still.',
      details: { uid: '04' },
    });
    expect(error).toBeInstanceOf(Error);
    expect(error.code).toBe('TAG_LOST');
    expect(error.cause).toBe(cause);
    expect(error.hint).toBe('Hold still.');
    expect(error.toJSON()).toEqual({
      code: 'TAG_LOST',
      message: 'The tag left.',
      hint: 'Hold still.',
      details: { uid: '04' },
      causes: ['Error: SCardTransmit error: Card was removed.(0x80100069)'],
    });
  });

  it('is recognised across copies of core by its brand, not by instanceof', () => {
    const foreign = new TaplineError(ErrorCode.Timeout, 'x');
    Object.setPrototypeOf(foreign, Error.prototype);
    expect(foreign instanceof TaplineError).toBe(false);
    expect(isTaplineError(foreign)).toBe(true);
    expect(isTaplineError(new Error('x'))).toBe(false);
    expect(isTaplineError({ code: 'TIMEOUT' })).toBe(false);
    expect(hasErrorCode(foreign, ErrorCode.Timeout)).toBe(true);
    expect(hasErrorCode(foreign, ErrorCode.TagLost)).toBe(false);
  });

  it('wraps foreign errors with a fallback code and keeps Tapline errors as they are', () => {
    const original = new TypeError('boom');
    const wrapped = toTaplineError(original, ErrorCode.ProtocolError);
    expect(wrapped.code).toBe('PROTOCOL_ERROR');
    expect(wrapped.message).toBe('boom');
    expect(wrapped.cause).toBe(original);
    const tapline = new TaplineError(ErrorCode.TagLost, 'gone');
    expect(toTaplineError(tapline, ErrorCode.Internal)).toBe(tapline);
    expect(toTaplineError('text').code).toBe('INTERNAL');
  });

  it('builds timeout, abort and tag-lost errors with actionable text', () => {
    const timeout = timeoutError('Transmit to ACR122U', 250);
    expect(timeout.code).toBe('TIMEOUT');
    expect(timeout.message).toBe('Transmit to ACR122U did not finish within 250 ms.');
    expect(timeout.details).toEqual({ timeoutMs: 250 });
    expect(abortError('Scan').code).toBe('ABORTED');
    const lost = tagLostError('the relay');
    expect(abortError('Scan', lost)).toBe(lost);
    expect(lost.hint).toMatch(/Hold the tag/);
  });

  it('bounds the cause chain in JSON', () => {
    let cause: Error = new Error('root');
    for (let i = 0; i < 20; i++) cause = new Error(`level ${i}`, { cause });
    const error = new TaplineError(ErrorCode.Internal, 'top', { cause });
    expect(error.toJSON().causes).toHaveLength(8);
  });

  it('builds the association errors with the next step in the hint', () => {
    const plain = notAssociatedError();
    expect(plain.code).toBe('NOT_ASSOCIATED');
    expect(plain.message).toBe('This computer is not associated with a VivoKey account.');
    expect(plain.hint).toMatch(/`tapline login`/);
    const why = notAssociatedError('the platform ended the association', { details: { error: 'invalid_grant' } });
    expect(why.message).toBe(
      'This computer is not associated with a VivoKey account: the platform ended the association.',
    );
    expect(why.details).toEqual({ error: 'invalid_grant' });
    expect(associationDeniedError().code).toBe('ASSOCIATION_DENIED');
    expect(associationDeniedError().hint).toMatch(/tapline login/);
    expect(associationExpiredError().code).toBe('ASSOCIATION_EXPIRED');
    expect(associationExpiredError().hint).toMatch(/tapline login/);
  });
});
