import type { ReadersEvent, ScanEvent, Tag, TaplineErrorJson } from '@tapline/core';

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

/** The output line of a scan-pipeline event; the answer `R` is printed as is. */
export function scanEventLine<R>(event: ScanEvent<R>, now: Date = new Date()): AgentLine {
  const time = now.toISOString();
  switch (event.type) {
    case 'idle':
      return { event: event.type, time };
    case 'ready':
    case 'chosen':
    case 'expired':
      return { event: event.type, time, request: event.request.id };
    case 'choice-needed':
      return { event: event.type, time, requests: event.requests.map((r) => r.id), reason: event.reason };
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
      return `ready: tap a tag to answer request ${s('request')}`;
    case 'chosen':
      return `chosen: the next tap answers request ${s('request')}`;
    case 'choice-needed':
      return `choice needed: ${(line['requests'] as string[]).join(', ')} are pending (${s('reason')})`;
    case 'started':
      return `started: request ${s('request')}${on}`;
    case 'completed':
      return `completed: request ${s('request')} answered with ${JSON.stringify(line['result'])}${on}`;
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
    case 'stopped':
      return `stopped: ${s('reason')}, ${s('answered')} answered, ${s('failed')} failed`;
    default:
      return `${line.event}: ${JSON.stringify(line)}`;
  }
}
