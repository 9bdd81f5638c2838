import { onTestFinished } from 'vitest';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet, type JWTPayload, type JWTHeaderParameters } from 'jose';
import {
  ApduChannel,
  Iso15693Tag,
  NTAG4XX_NDEF_FILE_ID,
  beginSplitAuthentication,
  finishSplitAuthentication,
  fromHex,
  selectApexVerify,
  selectFile,
  selectNdefApplication,
  toHex,
} from '@tapline/core';
import {
  startReferencePlatform,
  type ReferencePlatform,
  type ReferencePlatformOptions,
  type VirtualChip,
} from '../src/index.js';
import { directExchange } from './chips-support.js';

/** A platform for one test, closed when the test ends. */
export async function platformForTest(options: ReferencePlatformOptions = {}): Promise<ReferencePlatform> {
  const platform = await startReferencePlatform(options);
  onTestFinished(() => platform.close());
  return platform;
}

/** What one call answered. */
export interface CallResult {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
  /** The body parsed as JSON (undefined when it does not parse). */
  readonly json: Record<string, unknown> | undefined;
}

/** Options of {@link call}. */
export interface CallOptions {
  readonly method?: string;
  /** The API key to send; null sends none. Default the platform's. */
  readonly apiKey?: string | null;
  /** A body sent as is instead of JSON.stringify(body). */
  readonly rawBody?: string;
  readonly contentType?: string;
}

/** Calls an endpoint with plain fetch, the way any HTTP client would. */
export async function call(
  platform: ReferencePlatform,
  path: string,
  body?: unknown,
  options: CallOptions = {},
): Promise<CallResult> {
  const headers: Record<string, string> = { 'content-type': options.contentType ?? 'application/json' };
  const apiKey = options.apiKey === undefined ? platform.apiKey : options.apiKey;
  if (apiKey !== null) headers['x-api-vivokey'] = apiKey;
  const method = options.method ?? 'POST';
  const payload = options.rawBody ?? (body === undefined ? undefined : JSON.stringify(body));
  const response = await fetch(new URL(path, platform.url), {
    method,
    headers,
    ...(payload === undefined || method === 'GET' ? {} : { body: payload }),
  });
  const text = await response.text();
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}

/** An APDU channel straight onto a chip. */
export function isoDepChannel(chip: VirtualChip): ApduChannel {
  return new ApduChannel(directExchange(chip, 'iso14443-4'));
}

/** A tap's chip dialogue for scheme 2, up to the platform's challenge: what the relay does before `/session`. */
export interface Scheme2Dialogue {
  readonly uid: string;
  readonly token: string;
  /** The chip's reply to the platform's payload (32 bytes + 9100), hex. */
  readonly response: string;
}

/**
 * Runs the relay's half of scheme 2 on a Spark 2 (SELECT NDEF application) or an Apex (SELECT Verify: the uid is its
 * chip id): AuthenticateEV2First part 1 on key 2, `/challenge`, part 2 with the payload.
 */
export async function scheme2Dialogue(
  platform: ReferencePlatform,
  chip: VirtualChip,
  kind: 'spark2' | 'apex',
): Promise<Scheme2Dialogue> {
  const channel = isoDepChannel(chip);
  let uid: string;
  if (kind === 'apex') {
    uid = toHex(await selectApexVerify(channel));
  } else {
    await selectNdefApplication(channel);
    uid = toHex(chip.info.uid);
  }
  const message = await beginSplitAuthentication(channel, 2);
  const challenge = await call(platform, '/challenge', { scheme: 2, message: toHex(message), uid });
  if (challenge.status !== 200) throw new Error(`/challenge answered ${challenge.status}: ${challenge.text}`);
  const payload = fromHex(challenge.json!['payload'] as string);
  const answer = await finishSplitAuthentication(channel, payload);
  return { uid, token: challenge.json!['token'] as string, response: toHex(answer.response) };
}

/** The relay's half of scheme 1 on a Spark 1: `/challenge`, then AUTHENTICATE with key 2 and the IChallenge. */
export async function scheme1Dialogue(platform: ReferencePlatform, chip: VirtualChip): Promise<Scheme2Dialogue> {
  const challenge = await call(platform, '/challenge', { scheme: 1 });
  if (challenge.status !== 200) throw new Error(`/challenge answered ${challenge.status}: ${challenge.text}`);
  const payload = fromHex(challenge.json!['payload'] as string);
  const tag = new Iso15693Tag(directExchange(chip, 'iso15693'), { uid: chip.info.uid });
  const reply = await tag.authenticate(2, payload.subarray(0, 10));
  return { uid: toHex(chip.info.uid), token: challenge.json!['token'] as string, response: toHex(reply.reply) };
}

/** Verifies a token against the JWKS the platform serves right now (fetched, not read from memory). */
export async function verifyAgainstJwks(
  platform: ReferencePlatform,
  token: string,
): Promise<{ payload: JWTPayload; protectedHeader: JWTHeaderParameters }> {
  const jwks = (await (await fetch(platform.jwksUrl)).json()) as JSONWebKeySet;
  const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(jwks), {
    issuer: platform.issuer,
    algorithms: ['ES256'],
    currentDate: new Date(((payload0(token).iat ?? 0) + 1) * 1000),
  });
  return { payload, protectedHeader };
}

/** The unverified payload, for picking the verification date of tokens made under an injected clock. */
function payload0(token: string): JWTPayload {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as JWTPayload;
}

/**
 * Reads the NDEF file of a Type 4 tag (Spark 2, Apex NDEF applet) as a phone does (SELECT application, SELECT
 * E104, NLEN, message) and returns the URI of its one URI record. Each call is one new selection: one SUN counter
 * step.
 */
export async function readNdefUri(chip: VirtualChip): Promise<string> {
  const channel = isoDepChannel(chip);
  await selectNdefApplication(channel);
  await selectFile(channel, NTAG4XX_NDEF_FILE_ID);
  const nlen = await channel.send({ cla: 0x00, ins: 0xb0, p1: 0x00, p2: 0x00, le: 2 });
  const length = (nlen[0]! << 8) | nlen[1]!;
  const message = await channel.send({ cla: 0x00, ins: 0xb0, p1: 0x00, p2: 0x02, le: length });
  // Short URI record: D1 01 <payload length> 55 <prefix code> <rest>; prefix 04 is "https://".
  if (message[0] !== 0xd1 || message[3] !== 0x55 || message[4] !== 0x04) {
    throw new Error(`Not an https URI record: ${toHex(message.subarray(0, 5))}`);
  }
  return `https://${Buffer.from(message.subarray(5)).toString('ascii')}`;
}
