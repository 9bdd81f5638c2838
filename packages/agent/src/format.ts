import type { ReadersEvent, ScanEvent, ScanRequest, Tag, TaplineErrorJson } from '@tapline/core';

/** A tag as agent output shows it. */
export interface TagJson {
  readonly reader: string;
  readonly uid: string;
  readonly technology: string;
}

/**
 * One line of agent output (`--json` prints each as one JSON object per line). `event` is a scan-pipeline event
 * type, or `reader-attached`, `reader-detached`, `reader-skipped`, `transport-unavailable`, `stopped`.
 */
export type AgentLine = { readonly event: string; readonly time: string } & Readonly<Record<string, unknown>>;

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

function tagJson(tag: Tag): TagJson {
  return { reader: tag.readerName, uid: hex(tag.uid), technology: tag.technology };
}

function errorJson(error: { toJSON(): TaplineErrorJson }): TaplineErrorJson {
  return error.toJSON();
}

/** Who asks and why, when the request says. */
function describeRequest(request: ScanRequest): { relyingParty?: string; purpose?: string } {
  return {
    ...(request.relyingParty === undefined ? {} : { relyingParty: request.relyingParty }),
    ...(request.purpose === undefined ? {} : { purpose: request.purpose }),
  };
}

/** "Front door: Open the front door (sr_…)", or the id alone. */
function requestText(line: AgentLine, id: string): string {
  const who = typeof line['relyingParty'] === 'string' ? line['relyingParty'] : undefined;
  const why = typeof line['purpose'] === 'string' ? line['purpose'] : undefined;
  const text = [who, why].filter(Boolean).join(': ');
  return text ? `${text} (${id})` : id;
}

/** The output line of a scan-pipeline event; the answer `R` is printed as is. */
export function scanEventLine<R>(event: ScanEvent<R>, now: Date = new Date()): AgentLine {
  const time = now.toISOString();
  switch (event.type) {
    case 'idle':
      return { event: event.type, time };
    case 'ready':
    case 'chosen':
    case 'expired':
      return { event: event.type, time, request: event.request.id, ...describeRequest(event.request) };
    case 'choice-needed':
      return {
        event: event.type,
        time,
        requests: event.requests.map((r) => r.id),
        reason: event.reason,
        offered: event.requests.map((r) => ({ id: r.id, ...describeRequest(r) })),
      };
    case 'started':
      return { event: event.type, time, request: event.request.id, tag: tagJson(event.tag) };
    case 'completed':
      return { event: event.type, time, request: event.request.id, tag: tagJson(event.tag), result: event.result };
    case 'failed':
      return {
        event: event.type,
        time,
        request: event.request.id,
        tag: tagJson(event.tag),
        error: errorJson(event.error),
      };
    case 'tap-ignored':
      return { event: event.type, time, tag: tagJson(event.tag), reason: event.reason };
  }
}

/** The output line of a reader event. */
export function readersEventLine(event: ReadersEvent, now: Date = new Date()): AgentLine {
  const time = now.toISOString();
  switch (event.type) {
    case 'attached':
      return { event: 'reader-attached', time, reader: event.reader.name, driver: event.driver.id };
    case 'detached':
      return { event: 'reader-detached', time, reader: event.reader.name };
    case 'skipped':
      return {
        event: 'reader-skipped',
        time,
        reader: event.name,
        transport: event.transport,
        error: errorJson(event.error),
      };
    case 'transport-unavailable':
      return {
        event: 'transport-unavailable',
        time,
        transport: event.transport,
        error: errorJson(event.error),
        ...(event.retryInMs === undefined ? {} : { retryInMs: event.retryInMs }),
      };
  }
}

function formatSeconds(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 100) / 10} s`;
}

const CHIP_NAMES: Readonly<Record<string, string>> = { spark1: 'Spark 1', spark2: 'Spark 2', apex: 'Apex' };

/** The human form of an output line. */
export function humanLine(line: AgentLine): string {
  const s = (key: string): string => {
    const value = line[key];
    return typeof value === 'string' || typeof value === 'number' ? String(value) : JSON.stringify(value ?? '');
  };
  const tag = line['tag'] as TagJson | undefined;
  const on = tag ? ` (tag ${tag.uid.toUpperCase()} on ${tag.reader})` : '';
  const error = line['error'] as TaplineErrorJson | undefined;
  const why = error ? `: [${error.code}] ${error.message}` : '';
  switch (line.event) {
    case 'idle':
      return 'idle: no scan request is pending';
    case 'ready':
      return `ready: tap your implant to answer ${requestText(line, s('request'))}`;
    case 'chosen':
      return `chosen: the next tap answers ${requestText(line, s('request'))}`;
    case 'choice-needed': {
      const offered = (line['offered'] as AgentLine[] | undefined) ?? [];
      const list = offered.map((o) => `\n  ${requestText(o, String(o['id']))}`).join('');
      const how = 'pick one with `tapline agent choose ID`';
      const why = line['reason'] === 'tap-without-choice' ? 'the tap was not used; ' : '';
      return `choice needed: ${offered.length} requests are pending (${why}${how}):${list}`;
    }
    case 'started':
      return `started: request ${s('request')}${on}`;
    case 'completed': {
      const result = line['result'] as { chip?: unknown; answeredInMs?: unknown } | undefined;
      const detail =
        result && typeof result.chip === 'string'
          ? ` with a ${CHIP_NAMES[result.chip] ?? result.chip}${typeof result.answeredInMs === 'number' ? ` in ${result.answeredInMs} ms` : ''}`
          : ` with ${JSON.stringify(result)}`;
      return `completed: request ${s('request')} answered${detail}${on}`;
    }
    case 'failed':
      return `failed: request ${s('request')}${on}${why}`;
    case 'expired':
      return `expired: request ${s('request')}`;
    case 'tap-ignored':
      return `tap ignored (${s('reason')})${on}`;
    case 'reader-attached':
      return `reader attached: ${s('reader')} (driver ${s('driver')})`;
    case 'reader-detached':
      return `reader detached: ${s('reader')}`;
    case 'reader-skipped':
      return `reader skipped: ${s('reader')}${why}`;
    case 'transport-unavailable':
      return `transport unavailable: ${s('transport')}${why}`;
    case 'platform-unreachable': {
      const hint = error?.hint ? ` Hint: ${error.hint}` : '';
      const retry = typeof line['retryInMs'] === 'number' ? ` Retrying in ${formatSeconds(line['retryInMs'])}.` : '';
      const what = error?.code === 'NOT_ASSOCIATED' ? 'not associated' : 'platform unreachable';
      return `${what}${why}${retry}${hint}`;
    }
    case 'platform-reachable':
      return 'platform reachable again';
    case 'stopped':
      return `stopped: ${s('reason')}, ${s('answered')} answered, ${s('failed')} failed`;
    default:
      return `${line.event}: ${JSON.stringify(line)}`;
  }
}
