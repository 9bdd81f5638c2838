import { fromHex } from '../util/bytes.js';
import { bytesEqual } from '../util/bytes.js';
import type { ApduChannel } from './iso7816/channel.js';
import type { ExchangeOptions } from './channel.js';
import { ErrorCode, TaplineError } from '../model/errors.js';

/**
 * The Apex's applets as VivoKey deploys them (protocols.md §5, flexsecure-applets aid-list). The Verify applet is
 * selected with a trailing `01`, as VivoKey's own clients do.
 */
export const ApexAid = {
  /** VivoKey Verify ("spark2" in ASCII after RID A000000846), selected with the trailing 01. */
  verify: fromHex('A000000846737061726B3201'),
  /** The NFC Type 4 NDEF application ("NFC Share", apex-ndef). */
  ndef: fromHex('D2760000850101'),
  /** VivoKey OTP (ykneo-oath protocol); the suffix 014150455801 marks VivoKey deployments. */
  otp: fromHex('A0000005272101014150455801'),
  /** HMAC-SHA1 challenge-response. */
  hmac: fromHex('A000000527200101'),
  /** FIDO2/U2F as deployed. */
  fido: fromHex('A0000006472F000102'),
  /** OpenPGP (SmartPGP). */
  openpgp: fromHex('D276000124010304000A000000000000'),
} as const;

/**
 * ATS historical bytes of an Apex (from the PC/SC ATR `3B8A80010031C173C8400000900090` VivoKey's Intra uses) and of
 * a flexSecure (`3B8D80010031C173C8400052A51000900070`).
 */
export const APEX_HISTORICAL_BYTES = fromHex('0031C173C84000009000');
/** ATS historical bytes of a flexSecure, which shares the Apex's platform. */
export const FLEXSECURE_HISTORICAL_BYTES = fromHex('0031C173C8400052A510009000');

/** True when the ATS historical bytes are an Apex's. */
export function isApexHistoricalBytes(historical: Uint8Array): boolean {
  return bytesEqual(historical, APEX_HISTORICAL_BYTES);
}

/** SELECT by AID (`00 A4 04 00 Lc AID 00`). */
export function selectAidCommand(aid: Uint8Array): {
  cla: number;
  ins: number;
  p1: number;
  p2: number;
  data: Uint8Array;
  le: number;
} {
  return { cla: 0x00, ins: 0xa4, p1: 0x04, p2: 0x00, data: aid, le: 256 };
}

/**
 * Selects the Verify applet and returns the 8-byte chip id it answers with (what the platform calls the Apex's
 * `uid`). Fails with `TAG_STATUS` when the applet is absent (not an Apex) and `PROTOCOL_ERROR` when the id is not
 * 8 bytes.
 */
export async function selectApexVerify(channel: ApduChannel, options: ExchangeOptions = {}): Promise<Uint8Array> {
  const id = await channel.send(selectAidCommand(ApexAid.verify), {
    ...options,
    name: 'SELECT of the Apex Verify applet',
  });
  if (id.length !== 8) {
    throw new TaplineError(
      ErrorCode.ProtocolError,
      `The Apex Verify applet answered a ${id.length}-byte chip id; it has 8 bytes.`,
    );
  }
  return id;
}
