/**
 * `@tapline/driver-identiv`: Identiv uTrust 3700 F / 3701 F / 4701 F / 4711 F, uTrust 3720 F / 3721 F, and SCM SCL01x
 * contactless readers for Tapline. The 3720 F / 3721 F are the readers in Tapline's set that read ISO 15693, so this is
 * the driver that reads a VivoKey Spark 1.
 *
 * Support matrix (nfcpy style). "Manual" means the Identiv reference manual of that model says so (readers.md §3,
 * uTrust 3720F/3721F v1.00, uTrust 4701F v1.2, CLOUD 370x F, CLOUD 47x0 F); "inferred" means this driver relies on
 * it without a manual saying so. Tested against scripted frames only; no row has run on hardware.
 *
 * | function | 3700 F / 3701 F | 4701 F / 4711 F | 3720 F / 3721 F | remarks |
 * |---|---|---|---|---|
 * | UID `FF CA 00 00 00`, ISO 14443-4 APDUs | yes (manual) | yes (manual) | yes (manual) | 15693 UID is 8 bytes (3720 F manual §6.1.2) |
 * | Type A or B of an ISO-DEP tag | GET_CARD_INFO `11` via `FF CC` | same | same | escape documented in all three; the tunnel for the 4701 F (§6.1.3), inferred for the others |
 * | ISO 14443-A raw (`iso14443a-raw`) | if the Part 3 probe answers (inferred) | if the Part 3 probe answers (manual for the CLOUD 47x0 F predecessor; lineage inferred) | if the Part 3 probe answers (inferred) | start session, switch `8F 02 00 03`, transceive (RX-CRC off for ACK-only commands) |
 * | ISO 15693 (`iso15693`) | Part 3 only, if probed (inferred; the manual knows A/B only) | Part 3 only, if probed (inferred) | yes | see below |
 * | 15693 via `FF FC` | – | – | manual for commands 21–2C (20 by section number); flags added by the reader and dropped from the answer (inferred) | `iso15693Path: 'vendor'` sends every command this way, AUTHENTICATE included (inferred to work) |
 * | 15693 via Traverse `FF FD` | – | – | manual ("intended for ISO15693 custom commands"); whole frame and reply, flags included (inferred) | the default path for INVENTORY, custom commands (READ SIGNATURE `BD`), AUTHENTICATE `35`, option/select flags |
 * | 15693 via Part 3 | – | – | not documented | `iso15693Path: 'part3'`: switch `8F 02 02 03` (layer inferred, layer 2 tried next), transceive |
 * | escapes via SCardControl | yes | yes | yes | control code from `CM_IOCTL_GET_FEATURE_REQUEST` tag 0x13, else `SCARD_CTL_CODE(3500)`/`(1)` (readers.md §7.1) |
 * | escapes via `FF CC 00 00` | inferred | manual (§6.1.3) | inferred | answers `<output> SW1 SW2` |
 * | escapes card info `11`, RF switch `96`, polling `AC` | manual (CLOUD 370x F) | manual | manual | `IdentivEscapes`; RF query answers `00` for on |
 * | FeliCa, LED, buzzer | no | no | no | FeliCa pass-through escape `F3` exists, not wired |
 * | contact / SAM interfaces | left alone | left alone | – | names with `Contact Reader` or `SAM` are excluded |
 *
 * @packageDocumentation
 */
import type { DeviceMatcher, ReaderDriver } from '@tapline/core';
import type { IdentivIso15693Path } from './iso15693.js';
import { IDENTIV_CAPABILITIES, openIdentiv } from './reader.js';

export * from './models.js';
export * from './escape.js';
export * from './iso15693.js';
export * from './reader.js';

/** The driver's id. */
export const IDENTIV_DRIVER_ID = 'identiv';

// Dual-interface models list their contact slot as "[uTrust 4701 F Contact Reader]"; "Contact Reader" does not
// occur in "Contactless Reader", so the contactless interfaces still match.
const nameExcludes = ['SAM', 'Contact Reader'];
const matches: readonly DeviceMatcher[] = ['uTrust 37', 'uTrust 47', 'SCL01'].map((nameIncludes): DeviceMatcher => ({
  transport: 'pcsc',
  nameIncludes,
  nameExcludes,
  score: 50,
}));

/** Options of {@link createIdentivDriver}. */
export interface IdentivDriverOptions {
  /** How ISO 15693 frames reach the tag on a 3720 F / 3721 F; default `auto`. */
  readonly iso15693Path?: IdentivIso15693Path;
}

/** An Identiv driver with non-default options; {@link identivDriver} uses the defaults. */
export function createIdentivDriver(options: IdentivDriverOptions = {}): ReaderDriver {
  return {
    id: IDENTIV_DRIVER_ID,
    displayName: 'Identiv uTrust / SCM SCL01x',
    description:
      'Identiv uTrust 3700 F / 3720 F / 4701 F and SCM SCL01x over PC/SC: ISO 14443-4 APDUs, ISO 15693 (Spark 1) on the 3720 F / 3721 F, raw Type A via PC/SC Part 3 where the reader has it.',
    matches,
    capabilities: IDENTIV_CAPABILITIES,
    open: (device, context) =>
      openIdentiv(device, context, {
        driverId: IDENTIV_DRIVER_ID,
        ...(options.iso15693Path === undefined ? {} : { iso15693Path: options.iso15693Path }),
      }),
  };
}

/** Identiv uTrust / SCM SCL01x over PC/SC. */
export const identivDriver: ReaderDriver = createIdentivDriver();

/** The drivers of this package, for Tapline's driver discovery. */
export const drivers: readonly ReaderDriver[] = [identivDriver];
