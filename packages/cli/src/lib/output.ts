import type { Tag, TaplineErrorCode } from '@tapline/core';

/**
 * A problem worth telling the user about that does not fail the command (a transport that is down, a driver
 * package that did not load). Printed to stderr; `readers --json` also returns them under `warnings`.
 */
export interface CliWarning {
  readonly code: TaplineErrorCode;
  readonly message: string;
  readonly hint?: string;
  readonly details?: Readonly<Record<string, unknown>>;
}

/** `tapline scan --json`: the tag that was tapped. Byte fields are lower-case hex without separators. */
export interface ScanJson {
  readonly reader: string;
  readonly uid: string;
  readonly technology: string;
  readonly driver: string;
  readonly atr?: string;
  readonly ats?: string;
  readonly sak?: number;
  readonly atqa?: string;
  readonly protocols: readonly string[];
  /** The chip class identification found: `spark1`, `spark2`, `apex`, `ntag21x` or `unknown`. */
  readonly chip: string;
  /** The chip model where identification learned it (`NTAG 424 DNA`, `ICODE DNA`, …). */
  readonly model?: string;
  /** Frames identification needed beyond what the reader reported. */
  readonly identificationExchanges: number;
}

/** Lower-case hex without separators, the JSON form of bytes (same as core's `toHex`, without loading core). */
export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** The JSON form of a tag; the key order is the documented one. */
export function scanJson(tag: Tag): ScanJson {
  return {
    reader: tag.readerName,
    uid: hex(tag.uid),
    technology: tag.technology,
    driver: tag.reader.driverId,
    ...(tag.atr ? { atr: hex(tag.atr) } : {}),
    ...(tag.ats ? { ats: hex(tag.ats) } : {}),
    ...(tag.sak === undefined ? {} : { sak: tag.sak }),
    ...(tag.atqa ? { atqa: hex(tag.atqa) } : {}),
    protocols: [...tag.protocols],
    chip: tag.identification?.chip ?? 'unknown',
    ...(tag.identification?.model === undefined ? {} : { model: tag.identification.model }),
    identificationExchanges: tag.identification?.exchanges ?? 0,
  };
}

/** The human form of a scan: a headline with the UID, then one line per reader datum that is known. */
export function scanLines(scan: ScanJson): string[] {
  const upper = (s: string): string => s.toUpperCase();
  const lines = [`UID ${upper(scan.uid)}  ${scan.technology}  on ${scan.reader}`];
  lines.push(`  chip  ${scan.chip}${scan.model === undefined ? '' : ` (${scan.model})`}`);
  if (scan.atr !== undefined) lines.push(`  ATR   ${upper(scan.atr)}`);
  if (scan.ats !== undefined) lines.push(`  ATS   ${upper(scan.ats)}`);
  if (scan.sak !== undefined) lines.push(`  SAK   ${scan.sak.toString(16).padStart(2, '0').toUpperCase()}`);
  if (scan.atqa !== undefined) lines.push(`  ATQA  ${upper(scan.atqa)}`);
  if (scan.protocols.length > 0) lines.push(`  via   ${scan.protocols.join(', ')} (driver ${scan.driver})`);
  return lines;
}

/** The stderr form of a warning: `Warning [CODE]: message`, then the hint on its own line. */
export function warningText(warning: CliWarning): string {
  return `Warning [${warning.code}]: ${warning.message}${warning.hint ? `\nHint: ${warning.hint}` : ''}`;
}

/** Left-aligned columns, two spaces apart; the last column is not padded. */
export function table(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) =>
    row
      .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd(),
  );
}
