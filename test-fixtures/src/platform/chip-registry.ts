import {
  ApexAid,
  Capability,
  ErrorCode,
  TaplineError,
  encodeApdu,
  fromHex,
  selectAidCommand,
  toHex,
  type TagInfo,
} from '@tapline/core';
import type { ChipModel } from '../chips/chip-model.js';
import { createVirtualChip } from '../chips/index.js';
import {
  APEX_NDEF_KEY_HEX,
  APEX_NDEF_SALT_HEX,
  APEX_VERIFY_KEY_HEX,
  spark1FixtureKeys,
  spark2FixtureKeys,
} from '../chips/keys.js';
import { Spark2KeyNo } from '../chips/spark2.js';

/**
 * The chips the reference platform knows: what VivoKey holds for every implant it sold (the keys it plays the PCD
 * with, the SUN keys it verifies `/validate` with), looked up by the uid the relay sends.
 *
 * @packageDocumentation
 */

/** The chip families the platform authenticates: Spark 1 (scheme 1, TAM1), Spark 2 and Apex (scheme 2, EV2). */
export type PlatformChipKind = 'spark1' | 'spark2' | 'apex';

/** The `type` and `product` claims of a chip family. */
export interface PlatformChipClaims {
  readonly type: number;
  readonly product: number;
}

/**
 * The `type`/`product` claim values the reference platform puts in tokens, per family. VivoKey has not published
 * what the numbers mean (protocols.md §1.5), so:
 *
 * - Spark 2 `type 2, product 2`: observed, in the token VivoKey prints on vivokey.com/jwt (a Spark 2 scan).
 * - Apex `type 3, product 8`: observed, in VivoKey's `/validate.json` example for the Apex NDEF applet; the Verify
 *   applet runs on the same chip, so its tokens carry the same pair here.
 * - Spark 1 `type 1, product 1`: chosen. No Spark 1 token is public; 1/1 lines up with scheme 1 and collides with no
 *   observed value (product 6 is AuthentiChip).
 */
export const PLATFORM_CHIP_CLAIMS: Readonly<Record<PlatformChipKind, PlatformChipClaims>> = Object.freeze({
  spark1: Object.freeze({ type: 1, product: 1 }),
  spark2: Object.freeze({ type: 2, product: 2 }),
  apex: Object.freeze({ type: 3, product: 8 }),
});

/** What enrolling a chip takes. */
export interface ChipEnrollment {
  readonly kind: PlatformChipKind;
  /**
   * The uid the relay sends, MSB first (bytes, or hex in either case): Spark 2 the 7-byte UID, Spark 1 the 8-byte
   * UID (`E0 04 …`), Apex the 8-byte chip id its Verify applet answers SELECT with.
   */
  readonly uid: Uint8Array | string;
  /** The key the platform authenticates with: Spark 2 key 2, Spark 1 TAM1 key slot 2, the Apex Verify key. */
  readonly authKey: Uint8Array;
  /** The SUN key for `/validate`: Spark 2 K_SDMFileRead (key 1), the Apex NDEF CMAC key. None: `/validate` fails. */
  readonly sunKey?: Uint8Array;
  /** The Apex NDEF CMAC salt (16 bytes); required with an Apex `sunKey`. */
  readonly sunSalt?: Uint8Array;
  /** The `type` claim. Default from {@link PLATFORM_CHIP_CLAIMS}. */
  readonly type?: number;
  /** The `product` claim. Default from {@link PLATFORM_CHIP_CLAIMS}. */
  readonly product?: number;
  /**
   * What `sub` is derived from. Default `<kind>:<uid hex>`. Give two enrollments the same identity to make them one
   * chip in the tokens.
   */
  readonly identity?: string;
}

/** An enrolled chip as the platform keeps it: normalised, with defensive copies of the keys. */
export interface EnrolledChip {
  readonly kind: PlatformChipKind;
  /** The uid as lower-case hex, the registry key. */
  readonly uid: string;
  /** The challenge scheme this chip answers: 1 for a Spark 1, 2 otherwise. */
  readonly scheme: 1 | 2;
  readonly authKey: Uint8Array;
  readonly sunKey?: Uint8Array;
  readonly sunSalt?: Uint8Array;
  readonly type: number;
  readonly product: number;
  readonly identity: string;
}

/** A virtual chip whose pure model the registry can question (every `createVirtualChip` chip qualifies). */
export interface EnrollableVirtualChip<S> {
  readonly info: TagInfo;
  readonly model: ChipModel<S>;
}

/** Options of {@link ChipRegistry.enrollVirtualChip}: what the chip cannot tell about itself. */
export interface VirtualChipEnrollmentOptions {
  /** The family. Default: detected (ISO 15693 → Spark 1; an answering Verify applet → Apex; else Spark 2). */
  readonly kind?: PlatformChipKind;
  /** Default: the fixture key of the family (Spark 2 key 2, Spark 1 slot 2, the Apex Verify key). */
  readonly authKey?: Uint8Array;
  /** Default: the fixture SUN key (Spark 2 key 1, the Apex NDEF key); none for a Spark 1. */
  readonly sunKey?: Uint8Array;
  /** Default: the fixture Apex NDEF salt (Apex only). */
  readonly sunSalt?: Uint8Array;
  readonly type?: number;
  readonly product?: number;
  readonly identity?: string;
}

const UID_LENGTH: Readonly<Record<PlatformChipKind, number>> = { spark1: 8, spark2: 7, apex: 8 };
const KINDS: readonly PlatformChipKind[] = ['spark1', 'spark2', 'apex'];

function invalid(message: string): TaplineError {
  return new TaplineError(ErrorCode.InvalidArgument, message);
}

/** Lower-case hex of a uid given as bytes or hex; undefined when it is not hex. */
function uidKey(uid: Uint8Array | string): string | undefined {
  if (uid instanceof Uint8Array) return toHex(uid);
  return /^(?:[0-9a-fA-F]{2})+$/.test(uid) ? uid.toLowerCase() : undefined;
}

function copyKey(key: Uint8Array | undefined, what: string): Uint8Array | undefined {
  if (key === undefined) return undefined;
  if (!(key instanceof Uint8Array) || key.length !== 16) throw invalid(`${what} must be 16 bytes.`);
  return Uint8Array.from(key);
}

function claimNumber(value: number | undefined, fallback: number, what: string): number {
  const n = value ?? fallback;
  if (!Number.isSafeInteger(n) || n < 0) throw invalid(`The ${what} claim must be a non-negative integer, not ${n}.`);
  return n;
}

/** Normalises and checks an enrollment. Fails with `INVALID_ARGUMENT`. */
function normalise(enrollment: ChipEnrollment): EnrolledChip {
  const { kind } = enrollment;
  if (!KINDS.includes(kind)) throw invalid(`Unknown chip kind "${String(kind)}"; use ${KINDS.join(', ')}.`);
  const uid = uidKey(enrollment.uid);
  if (uid === undefined) throw invalid('A chip uid must be bytes or even-length hex.');
  if (uid.length !== UID_LENGTH[kind] * 2) {
    throw invalid(`A ${kind} uid has ${UID_LENGTH[kind]} bytes, not ${uid.length / 2}.`);
  }
  const authKey = copyKey(enrollment.authKey, 'The authentication key');
  if (authKey === undefined) throw invalid('The authentication key must be 16 bytes.');
  const sunKey = copyKey(enrollment.sunKey, 'The SUN key');
  const sunSalt = enrollment.sunSalt === undefined ? undefined : Uint8Array.from(enrollment.sunSalt);
  if (kind === 'apex' && sunKey !== undefined && sunSalt?.length !== 16) {
    throw invalid('An Apex SUN key needs its 16-byte CMAC salt (sunSalt).');
  }
  const defaults = PLATFORM_CHIP_CLAIMS[kind];
  const identity = enrollment.identity ?? `${kind}:${uid}`;
  if (typeof identity !== 'string' || identity === '') throw invalid('A chip identity must be a non-empty string.');
  return Object.freeze({
    kind,
    uid,
    scheme: kind === 'spark1' ? 1 : 2,
    authKey,
    ...(sunKey === undefined ? {} : { sunKey }),
    ...(sunSalt === undefined || kind !== 'apex' ? {} : { sunSalt }),
    type: claimNumber(enrollment.type, defaults.type, 'type'),
    product: claimNumber(enrollment.product, defaults.product, 'product'),
    identity,
  });
}

/** The 8-byte chip id an Apex's Verify applet answers SELECT with, or undefined when the chip has no such applet. */
function apexChipId<S>(chip: EnrollableVirtualChip<S>): Uint8Array | undefined {
  if (!chip.info.protocols.includes(Capability.Iso14443_4)) return undefined;
  // Asked of the pure model from its initial state, so that the chip's own state (a selection, a session) is untouched.
  const select = encodeApdu(selectAidCommand(ApexAid.verify));
  const { response } = chip.model.respond(chip.model.initialState, Capability.Iso14443_4, select);
  if (response?.length !== 10 || response[8] !== 0x90 || response[9] !== 0x00) return undefined;
  return response.slice(0, 8);
}

function virtualEnrollment<S>(chip: EnrollableVirtualChip<S>, options: VirtualChipEnrollmentOptions): ChipEnrollment {
  const chipId = apexChipId(chip);
  const kind: PlatformChipKind =
    options.kind ?? (chip.info.technology === 'iso15693' ? 'spark1' : chipId !== undefined ? 'apex' : 'spark2');
  const common = {
    ...(options.type === undefined ? {} : { type: options.type }),
    ...(options.product === undefined ? {} : { product: options.product }),
    ...(options.identity === undefined ? {} : { identity: options.identity }),
  };
  switch (kind) {
    case 'spark1':
      return { kind, uid: chip.info.uid, authKey: options.authKey ?? spark1FixtureKeys()[2]!, ...common };
    case 'apex': {
      if (chipId === undefined) throw invalid('This chip has no Apex Verify applet to read the chip id from.');
      return {
        kind,
        uid: chipId,
        authKey: options.authKey ?? fromHex(APEX_VERIFY_KEY_HEX),
        sunKey: options.sunKey ?? fromHex(APEX_NDEF_KEY_HEX),
        sunSalt: options.sunSalt ?? fromHex(APEX_NDEF_SALT_HEX),
        ...common,
      };
    }
    case 'spark2': {
      if (!chip.info.protocols.includes(Capability.Iso14443_4)) {
        throw invalid('A Spark 2 speaks ISO 14443-4; this chip does not (an NTAG 21x is not a VivoKey implant).');
      }
      const keys = spark2FixtureKeys();
      return {
        kind,
        uid: chip.info.uid,
        authKey: options.authKey ?? keys[Spark2KeyNo.Platform]!,
        sunKey: options.sunKey ?? keys[Spark2KeyNo.SdmFileRead]!,
        ...common,
      };
    }
    default:
      throw invalid(`Unknown chip kind "${String(kind)}".`);
  }
}

/**
 * The enrolled chips, by uid. The platform reads it on every request, so chips enrolled or removed after the
 * platform started count at once. Enrolling a uid that is already enrolled replaces it.
 */
export class ChipRegistry {
  readonly #chips = new Map<string, EnrolledChip>();

  /** Enrolls a chip and returns it as kept. Fails with `INVALID_ARGUMENT` for a malformed enrollment. */
  enroll(enrollment: ChipEnrollment): EnrolledChip {
    const chip = normalise(enrollment);
    this.#chips.set(chip.uid, chip);
    return chip;
  }

  /**
   * Enrolls a virtual chip from what it reports (its UID, or the Apex chip id its Verify applet answers) and the
   * fixture keys of its family: the keys a virtual chip was built with cannot be read back, so a chip built with
   * other keys needs them in `options`. Fails with `INVALID_ARGUMENT` for a chip that is no VivoKey implant.
   */
  enrollVirtualChip<S>(chip: EnrollableVirtualChip<S>, options: VirtualChipEnrollmentOptions = {}): EnrolledChip {
    return this.enroll(virtualEnrollment(chip, options));
  }

  /** The chip enrolled under `uid` (bytes, or hex in either case). */
  get(uid: Uint8Array | string): EnrolledChip | undefined {
    const key = uidKey(uid);
    return key === undefined ? undefined : this.#chips.get(key);
  }

  /** Whether `uid` is enrolled. */
  has(uid: Uint8Array | string): boolean {
    return this.get(uid) !== undefined;
  }

  /** Withdraws a chip; true when it was enrolled. */
  remove(uid: Uint8Array | string): boolean {
    const key = uidKey(uid);
    return key !== undefined && this.#chips.delete(key);
  }

  /** Every enrolled chip, in enrollment order. */
  list(): readonly EnrolledChip[] {
    return [...this.#chips.values()];
  }

  /** How many chips are enrolled. */
  get size(): number {
    return this.#chips.size;
  }
}

/** A registry holding `enrollments` (default none). */
export function createChipRegistry(enrollments: readonly ChipEnrollment[] = []): ChipRegistry {
  const registry = new ChipRegistry();
  for (const enrollment of enrollments) registry.enroll(enrollment);
  return registry;
}

let defaultEnrollments: readonly EnrolledChip[] | undefined;

/**
 * A registry with every default virtual chip enrolled under its fixture keys: `spark1`, `spark2` (NTAG 424 DNA),
 * `spark2-413` and `apex` as `createVirtualChip(kind)` builds them. A new registry each call; the chips' data is
 * worked out once per process, because building a chip signs its UID.
 */
export function defaultChipRegistry(): ChipRegistry {
  defaultEnrollments ??= (['spark1', 'spark2', 'spark2-413', 'apex'] as const).map((kind) =>
    new ChipRegistry().enrollVirtualChip(createVirtualChip(kind)),
  );
  return createChipRegistry(defaultEnrollments);
}
