import { describe, expect, it } from 'vitest';
import {
  ErrorCode,
  TaplineError,
  createLogger,
  logLevelFromEnv,
  redact,
  type LogLevel,
  type LogRecord,
} from '../src/index.js';

function capture(level: LogLevel) {
  const records: LogRecord[] = [];
  const logger = createLogger({ level, sink: (r) => records.push(r) });
  return { logger, records };
}

describe('logger', () => {
  it('writes only at or above its level', () => {
    const { logger, records } = capture('warn');
    logger.info('quiet');
    logger.debug('quiet');
    logger.warn('loud');
    logger.error('louder');
    expect(records.map((r) => [r.level, r.message])).toEqual([
      ['warn', 'loud'],
      ['error', 'louder'],
    ]);
    expect(logger.enabled('trace')).toBe(false);
  });

  it('redacts secrets at any depth and never leaks them through child bindings', () => {
    const { logger, records } = capture('debug');
    const child = logger.child({ apiKey: 'k-123', reader: 'ACR122U' });
    child.info('request', {
      headers: { 'X-API-VIVOKEY': 'secret-key', Authorization: 'Bearer abc' },
      access_token: 'at',
      refreshToken: 'rt',
      pin: '1234',
      body: { nested: { client_secret: 's', password: 'p' } },
      uid: '04A1',
      spinner: 'visible',
    });
    const text = JSON.stringify(records);
    for (const secret of ['k-123', 'secret-key', 'Bearer abc', '"at"', '"rt"', '1234', '"s"', '"p"']) {
      expect(text).not.toContain(secret);
    }
    expect(records[0]!.fields).toMatchObject({
      reader: 'ACR122U',
      uid: '04A1',
      spinner: 'visible',
      apiKey: '[redacted]',
    });
  });

  it('traces frames as spaced hex only in trace mode', () => {
    const quiet = capture('debug');
    quiet.logger.frame('>', Uint8Array.of(0xff, 0xca, 0, 0, 0));
    expect(quiet.records).toEqual([]);
    const trace = capture('trace');
    trace.logger.frame('>', Uint8Array.of(0xff, 0xca, 0, 0, 0), { reader: 'r' });
    trace.logger.frame('<', Uint8Array.of(0x90, 0x00));
    expect(trace.records.map((r) => r.message)).toEqual(['> FF CA 00 00 00', '< 90 00']);
  });

  it('renders bytes and errors in fields', () => {
    expect(redact({ atr: Uint8Array.of(0x3b, 0x8f), error: new RangeError('bad') })).toEqual({
      atr: '3B 8F',
      error: { name: 'RangeError', message: 'bad' },
    });
  });

  it("keeps an error's stable code and hint, which are what a reader of the log acts on", () => {
    const lost = new TaplineError(ErrorCode.NotAssociated, 'Not associated.', { hint: 'Run `tapline login`.' });
    const missing = Object.assign(new Error('ENOENT: no such file'), { code: 'ENOENT' });
    expect(redact({ lost, missing })).toEqual({
      lost: { name: 'TaplineError', message: 'Not associated.', code: 'NOT_ASSOCIATED', hint: 'Run `tapline login`.' },
      missing: { name: 'Error', message: 'ENOENT: no such file', code: 'ENOENT' },
    });
  });

  it('reads TAPLINE_TRACE and TAPLINE_LOG_LEVEL', () => {
    expect(logLevelFromEnv({ TAPLINE_TRACE: '1' })).toBe('trace');
    expect(logLevelFromEnv({ TAPLINE_TRACE: '0', TAPLINE_LOG_LEVEL: 'debug' })).toBe('debug');
    expect(logLevelFromEnv({ TAPLINE_LOG_LEVEL: 'loud' })).toBeUndefined();
    expect(logLevelFromEnv({})).toBeUndefined();
  });
});
