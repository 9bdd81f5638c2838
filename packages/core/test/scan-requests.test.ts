import { NEVER, map, type Observable } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { beforeEach, describe, expect, it } from 'vitest';
import { ErrorCode, TaplineError, hasErrorCode, isTaplineError } from '../src/model/errors.js';
import type { Tag } from '../src/model/tag.js';
import type { TagEvent } from '../src/pipeline/reader-manager.js';
import {
  runScanRequests,
  type ScanDialogueContext,
  type ScanEvent,
  type ScanHandler,
  type ScanPipelineOptions,
  type ScanRequest,
} from '../src/pipeline/scan-requests.js';

/** Only the fields the pipeline reads (`id`, `identification`) matter; the rest keeps the shape honest. */
function fakeTag(id: string, chip?: string): Tag {
  return {
    id,
    readerName: 'Fake Reader',
    arrivedAt: 0,
    technology: 'iso14443a',
    uid: new Uint8Array([0x04, 0x11, 0x22, 0x33]),
    protocols: ['iso14443-4'],
    reader: {},
    ...(chip === undefined ? {} : { identification: { chip, exchanges: 0 } }),
  } as unknown as Tag;
}

const arrived = (tag: Tag): TagEvent => ({ type: 'arrived', tag });
const left = (tag: Tag): TagEvent => ({ type: 'left', tag });

/** Events as one-line strings: marble diagrams stay readable and error codes are compared exactly. */
function summarize(event: ScanEvent<string>): string {
  switch (event.type) {
    case 'idle':
      return 'idle';
    case 'ready':
      return `ready ${event.request.id}`;
    case 'choice-needed':
      return `choice ${event.requests.map((r) => r.id).join(',')} (${event.reason})`;
    case 'chosen':
      return `chosen ${event.request.id}`;
    case 'started':
      return `started ${event.request.id} on ${event.tag.id}`;
    case 'completed':
      return `completed ${event.request.id} on ${event.tag.id}: ${event.result}`;
    case 'failed':
      return `failed ${event.request.id} on ${event.tag.id}: ${isTaplineError(event.error) ? event.error.code : 'not a TaplineError'}`;
    case 'expired':
      return `expired ${event.request.id}`;
    case 'tap-ignored':
      return `ignored ${event.tag.id} (${event.reason})`;
  }
}

const r1: ScanRequest = { id: 'r1', purpose: 'Log in', relyingParty: 'example.org' };
const r2: ScanRequest = { id: 'r2', purpose: 'Sign a document' };
const t1 = fakeTag('t1');
const t2 = fakeTag('t2');

describe('runScanRequests', () => {
  let scheduler: TestScheduler;
  /** Every context the handler was called with, and the virtual time its signal aborted at (if it did). */
  let calls: { context: ScanDialogueContext; abortedAt: number | undefined }[];

  beforeEach(() => {
    scheduler = new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
    calls = [];
  });

  /** A handler that records its calls and answers with `answers[i]` for the i-th dialogue. */
  function recordingHandler(...answers: Observable<string>[]): ScanHandler<string> {
    return (context) => {
      const call = { context, abortedAt: undefined as number | undefined };
      context.signal.addEventListener('abort', () => (call.abortedAt = scheduler.now()), { once: true });
      calls.push(call);
      const answer = answers[calls.length - 1];
      if (!answer) throw new Error(`unexpected dialogue #${calls.length}`);
      return answer;
    };
  }

  function events(
    options: Omit<ScanPipelineOptions<string>, 'scheduler' | 'dialogueTimeoutMs'> & { dialogueTimeoutMs?: number },
  ): Observable<string> {
    return runScanRequests<string>({ dialogueTimeoutMs: 100, scheduler, ...options }).pipe(map(summarize));
  }

  function abortReason(index: number): unknown {
    const call = calls[index];
    expect(call, `dialogue #${index + 1} was never started`).toBeDefined();
    return call?.context.signal.reason;
  }

  it('answers the only pending request on the next tap', () => {
    scheduler.run(({ hot, cold, expectObservable }) => {
      const pending = hot('p-------q', { p: [r1], q: [] });
      const tags = hot('   --a------', { a: arrived(t1) });
      const answer = cold('  --(x|)  ', { x: 'uid 04112233' });
      const expected = '   r-s-(cR)i';

      expectObservable(events({ source: { pending$: pending }, tags$: tags, handler: recordingHandler(answer) })).toBe(
        expected,
        {
          r: 'ready r1',
          s: 'started r1 on t1',
          c: 'completed r1 on t1: uid 04112233',
          R: 'ready r1',
          i: 'idle',
        },
      );
    });
    expect(calls.map((c) => [c.context.request.id, c.context.tag.id])).toEqual([['r1', 't1']]);
    // The controller is released after a result too, with a reason that says so.
    expect(calls[0]?.abortedAt).toBe(4);
    expect(hasErrorCode(abortReason(0), ErrorCode.Aborted)).toBe(true);
  });

  it('does not repeat a state when pending$ re-emits the same list', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const pending = hot('a-b-c-d', { a: [r1], b: [{ ...r1 }], c: [r1, r2], d: [{ ...r1 }, { ...r2 }] });
      const expected = '   r---c--';

      expectObservable(events({ source: { pending$: pending }, tags$: NEVER, handler: recordingHandler() })).toBe(
        expected,
        { r: 'ready r1', c: 'choice r1,r2 (pending-changed)' },
      );
    });
  });

  it('asks for a choice when several are pending, then answers the picked request on the next tap', () => {
    scheduler.run(({ hot, cold, expectObservable }) => {
      const pending = hot('p---------', { p: [r1, r2] });
      const choices = hot('--x-------', { x: 'r2' });
      const tags = hot('   ----a-----', { a: arrived(t1) });
      const answer = cold('    --(x|)', { x: 'signed' });
      const expected = '   c-h-s-(dC)';

      expectObservable(
        events({ source: { pending$: pending }, tags$: tags, choices$: choices, handler: recordingHandler(answer) }),
      ).toBe(expected, {
        c: 'choice r1,r2 (pending-changed)',
        h: 'chosen r2',
        s: 'started r2 on t1',
        d: 'completed r2 on t1: signed',
        // The pick was used up by the tap, so the next tap needs a new one.
        C: 'choice r1,r2 (pending-changed)',
      });
    });
    expect(calls.map((c) => c.context.request.id)).toEqual(['r2']);
  });

  it('uses no tap while several are pending and nothing valid was picked', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const pending = hot('p----', { p: [r1, r2] });
      // A pick for a request that is not pending is stale UI: it must not count as a choice.
      const choices = hot('-z---', { z: 'r9' });
      const tags = hot('   --a--', { a: arrived(t1) });
      const expected = '   c-T--';

      expectObservable(
        events({ source: { pending$: pending }, tags$: tags, choices$: choices, handler: recordingHandler() }),
      ).toBe(expected, { c: 'choice r1,r2 (pending-changed)', T: 'choice r1,r2 (tap-without-choice)' });
    });
    expect(calls).toHaveLength(0);
  });

  it('forgets a pick after choiceTimeoutMs', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const pending = hot('p------', { p: [r1, r2] });
      const choices = hot('-x-----', { x: 'r1' });
      const tags = hot('   ------a', { a: arrived(t1) });
      const expected = '   ch--e-T';

      expectObservable(
        events({
          source: { pending$: pending },
          tags$: tags,
          choices$: choices,
          choiceTimeoutMs: 3,
          handler: recordingHandler(),
        }),
      ).toBe(expected, {
        c: 'choice r1,r2 (pending-changed)',
        h: 'chosen r1',
        e: 'choice r1,r2 (choice-expired)',
        T: 'choice r1,r2 (tap-without-choice)',
      });
    });
    expect(calls).toHaveLength(0);
  });

  it('cancels the dialogue with TAG_LOST when the tag leaves, aborting the handler signal', () => {
    scheduler.run(({ hot, cold, expectObservable, expectSubscriptions }) => {
      const pending = hot('p--------', { p: [r1] });
      // t2 leaving another reader must not touch the dialogue with t1.
      const tags = hot('   --a-o-l--', { a: arrived(t1), o: left(t2), l: left(t1) });
      const answer = cold('  -       ');
      const handlerSub = ' --^---!  ';
      const expected = '   r-s---(fR)';

      expectObservable(events({ source: { pending$: pending }, tags$: tags, handler: recordingHandler(answer) })).toBe(
        expected,
        { r: 'ready r1', s: 'started r1 on t1', f: 'failed r1 on t1: TAG_LOST', R: 'ready r1' },
      );
      expectSubscriptions(answer.subscriptions).toBe(handlerSub);
    });
    expect(calls[0]?.abortedAt).toBe(6);
    expect(hasErrorCode(abortReason(0), ErrorCode.TagLost)).toBe(true);
  });

  it('fails the dialogue with TIMEOUT after dialogueTimeoutMs', () => {
    scheduler.run(({ hot, cold, expectObservable, expectSubscriptions }) => {
      const pending = hot('p---------', { p: [r1] });
      const tags = hot('   --a-------', { a: arrived(t1) });
      const answer = cold('  -         ');
      const handlerSub = ' --^---!    ';
      const expected = '   r-s---(fR)';

      expectObservable(
        events({ source: { pending$: pending }, tags$: tags, dialogueTimeoutMs: 4, handler: recordingHandler(answer) }),
      ).toBe(expected, { r: 'ready r1', s: 'started r1 on t1', f: 'failed r1 on t1: TIMEOUT', R: 'ready r1' });
      expectSubscriptions(answer.subscriptions).toBe(handlerSub);
    });
    expect(calls[0]?.abortedAt).toBe(6);
    expect(hasErrorCode(abortReason(0), ErrorCode.Timeout)).toBe(true);
  });

  it('reports a request that expires while pending once, and never starts it', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const expiring: ScanRequest = { ...r1, expiresAt: 4 };
      // The source keeps listing the stale request: it must be neither re-announced nor offered.
      const pending = hot('p-----q--', { p: [expiring], q: [{ ...expiring }] });
      const tags = hot('   --------a', { a: arrived(t1) });
      const expected = '   r---(ei)n';

      expectObservable(events({ source: { pending$: pending }, tags$: tags, handler: recordingHandler() })).toBe(
        expected,
        { r: 'ready r1', e: 'expired r1', i: 'idle', n: 'ignored t1 (no-request)' },
      );
    });
    expect(calls).toHaveLength(0);
  });

  it('reports a request that is already expired when it arrives, and offers only the live one', () => {
    scheduler.run(({ hot, cold, expectObservable }) => {
      const stale: ScanRequest = { ...r2, expiresAt: 0 };
      const pending = hot('p-------', { p: [r1, stale] });
      const tags = hot('   ----a---', { a: arrived(t1) });
      const answer = cold('    -(x|)', { x: 'ok' });
      const expected = '   (er)s(cR)';

      expectObservable(events({ source: { pending$: pending }, tags$: tags, handler: recordingHandler(answer) })).toBe(
        expected,
        { e: 'expired r2', r: 'ready r1', s: 'started r1 on t1', c: 'completed r1 on t1: ok', R: 'ready r1' },
      );
    });
    expect(calls.map((c) => c.context.request.id)).toEqual(['r1']);
  });

  it('fails the dialogue with REQUEST_EXPIRED when the request expires mid-dialogue', () => {
    scheduler.run(({ hot, cold, expectObservable, expectSubscriptions }) => {
      const expiring: ScanRequest = { ...r1, expiresAt: 5 };
      const pending = hot('p--------q', { p: [expiring], q: [expiring] });
      const tags = hot('   --a-------', { a: arrived(t1) });
      const answer = cold('  -       ');
      const handlerSub = ' --^--!    ';
      // Reported once, as the failure: no separate `expired`, not even when the source lists it again.
      const expected = '   r-s--(fi)-';

      expectObservable(events({ source: { pending$: pending }, tags$: tags, handler: recordingHandler(answer) })).toBe(
        expected,
        { r: 'ready r1', s: 'started r1 on t1', f: 'failed r1 on t1: REQUEST_EXPIRED', i: 'idle' },
      );
      expectSubscriptions(answer.subscriptions).toBe(handlerSub);
    });
    expect(calls[0]?.abortedAt).toBe(5);
    expect(hasErrorCode(abortReason(0), ErrorCode.RequestExpired)).toBe(true);
  });

  it('after release(), neither removal nor the dialogue timeout nor expiry fails the dialogue: the answer decides', () => {
    scheduler.run(({ hot, cold, expectObservable }) => {
      const expiring: ScanRequest = { ...r1, expiresAt: 8 };
      const pending = hot('p-----------', { p: [expiring] });
      // The tag leaves at 5, the dialogue timeout (4) passes at 6, the request expires at 8; the answer lands at 10.
      const tags = hot('   --a--l------', { a: arrived(t1), l: left(t1) });
      const handler: ScanHandler<string> = (context) => {
        calls.push({ context, abortedAt: undefined });
        // The chip answered at once: from here on only the submission is left.
        context.release();
        return cold('--------a|', { a: 'answered' });
      };
      const expected = '   r-s-------(ci)';

      expectObservable(events({ source: { pending$: pending }, tags$: tags, dialogueTimeoutMs: 4, handler })).toBe(
        expected,
        { r: 'ready r1', s: 'started r1 on t1', c: 'completed r1 on t1: answered', i: 'idle' },
      );
    });
    expect(calls).toHaveLength(1);
    // Aborted only afterwards, as every finished dialogue is, and not for a removal.
    expect(hasErrorCode(abortReason(0), ErrorCode.TagLost)).toBe(false);
  });

  it('ignores a tap while a dialogue runs', () => {
    scheduler.run(({ hot, cold, expectObservable }) => {
      const pending = hot('p---------', { p: [r1] });
      const tags = hot('   --ab------', { a: arrived(t1), b: arrived(t2) });
      const answer = cold('  ---(x|)  ', { x: 'done' });
      const expected = '   r-sb-(cR)';

      expectObservable(events({ source: { pending$: pending }, tags$: tags, handler: recordingHandler(answer) })).toBe(
        expected,
        {
          r: 'ready r1',
          s: 'started r1 on t1',
          b: 'ignored t2 (busy)',
          c: 'completed r1 on t1: done',
          R: 'ready r1',
        },
      );
    });
    expect(calls.map((c) => c.context.tag.id)).toEqual(['t1']);
  });

  it('aborts the handler signal when the consumer unsubscribes mid-dialogue', () => {
    scheduler.run(({ hot, cold, expectObservable, expectSubscriptions }) => {
      const pending = hot('p-------', { p: [r1] });
      const tags = hot('   --a-----', { a: arrived(t1) });
      const answer = cold('  -      ');
      const handlerSub = ' --^---!  ';
      const unsubscribe = '------!  ';
      const expected = '   r-s-----';

      expectObservable(
        events({ source: { pending$: pending }, tags$: tags, handler: recordingHandler(answer) }),
        unsubscribe,
      ).toBe(expected, { r: 'ready r1', s: 'started r1 on t1' });
      expectSubscriptions(answer.subscriptions).toBe(handlerSub);
    });
    expect(calls[0]?.abortedAt).toBe(6);
    expect(hasErrorCode(abortReason(0), ErrorCode.Aborted)).toBe(true);
  });

  it('reports handler errors as failed with a TaplineError code', () => {
    const protocolError = new TaplineError(ErrorCode.ProtocolError, 'The tag answered 6A 82.');
    scheduler.run(({ hot, cold, expectObservable }) => {
      const pending = hot('p------------', { p: [r1] });
      const tags = hot('   --a----b-----', { a: arrived(t1), b: arrived(t2) });
      const plain = cold('   -#           ', undefined, new Error('socket closed'));
      const tapline = cold('      -#      ', undefined, protocolError);
      const expected = '   r-s(fR)S(gR)';

      expectObservable(
        events({ source: { pending$: pending }, tags$: tags, handler: recordingHandler(plain, tapline) }),
      ).toBe(expected, {
        r: 'ready r1',
        s: 'started r1 on t1',
        f: 'failed r1 on t1: INTERNAL',
        R: 'ready r1',
        S: 'started r1 on t2',
        g: 'failed r1 on t2: PROTOCOL_ERROR',
      });
    });
    expect(calls).toHaveLength(2);
    expect(abortReason(1)).toBe(protocolError);
  });

  it('refuses a tag whose identified chip the request does not accept', () => {
    const spark: ScanRequest = { ...r1, acceptedChips: ['spark2'] };
    const ntag = fakeTag('ntag', 'ntag216');
    const implant = fakeTag('implant', 'spark2');
    scheduler.run(({ hot, cold, expectObservable }) => {
      const pending = hot('p--------', { p: [spark] });
      const tags = hot('   --n-i----', { n: arrived(ntag), i: arrived(implant) });
      const answer = cold('    -(x|)', { x: 'ok' });
      const expected = '   r-n-s(cR)';

      expectObservable(events({ source: { pending$: pending }, tags$: tags, handler: recordingHandler(answer) })).toBe(
        expected,
        {
          r: 'ready r1',
          n: 'ignored ntag (not-accepted)',
          s: 'started r1 on implant',
          c: 'completed r1 on implant: ok',
          R: 'ready r1',
        },
      );
    });
    expect(calls.map((c) => c.context.tag.id)).toEqual(['implant']);
  });

  it('ends with a TaplineError when the request source fails, aborting the dialogue', () => {
    scheduler.run(({ hot, cold, expectObservable }) => {
      const pending = hot('p---#', { p: [r1] }, new Error('long poll failed'));
      const tags = hot('   --a--', { a: arrived(t1) });
      const answer = cold('  -  ');
      const expected = '   r-s-#';

      expectObservable(events({ source: { pending$: pending }, tags$: tags, handler: recordingHandler(answer) })).toBe(
        expected,
        { r: 'ready r1', s: 'started r1 on t1' },
        expect.objectContaining({ name: 'TaplineError', code: ErrorCode.Internal }),
      );
    });
    expect(calls[0]?.abortedAt).toBe(4);
    expect(hasErrorCode(abortReason(0), ErrorCode.Aborted)).toBe(true);
  });

  it('completes once tags$ completes and the running dialogue has ended', () => {
    scheduler.run(({ hot, cold, expectObservable }) => {
      const pending = hot('p------', { p: [r1] });
      const tags = hot('   --a|   ', { a: arrived(t1) });
      const answer = cold('  ---(x|)', { x: 'late' });
      const expected = '   r-s--(c|)';

      expectObservable(events({ source: { pending$: pending }, tags$: tags, handler: recordingHandler(answer) })).toBe(
        expected,
        { r: 'ready r1', s: 'started r1 on t1', c: 'completed r1 on t1: late' },
      );
    });
  });

  it('rejects a timeout that is not a positive number with INVALID_ARGUMENT', () => {
    const attempt = (options: Partial<ScanPipelineOptions<string>>): unknown => {
      try {
        runScanRequests<string>({
          source: { pending$: NEVER },
          tags$: NEVER,
          handler: recordingHandler(),
          dialogueTimeoutMs: 100,
          ...options,
        });
      } catch (error) {
        return error;
      }
      return undefined;
    };
    expect(hasErrorCode(attempt({ dialogueTimeoutMs: 0 }), ErrorCode.InvalidArgument)).toBe(true);
    expect(hasErrorCode(attempt({ choiceTimeoutMs: Number.NaN }), ErrorCode.InvalidArgument)).toBe(true);
    expect(attempt({})).toBeUndefined();
  });
});
