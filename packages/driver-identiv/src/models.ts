/**
 * The Identiv (formerly SCM) contactless readers this driver knows, told apart by their PC/SC names (readers.md §3,
 * §7.3), with what each one's manual documents.
 *
 * @packageDocumentation
 */

/** The models by name. */
export type IdentivModel = '3700F' | '3701F' | '3720F' | '3721F' | '4701F' | '4711F' | 'SCL01x' | 'unknown';

/** One model and what its manual documents. */
export interface IdentivModelInfo {
  readonly model: IdentivModel;
  /** `uTrust 3720 F`. */
  readonly displayName: string;
  /** USB product id (vendor 04e6), where one is known. */
  readonly productId?: number;
  /** ISO 15693 through the vendor APDUs `FF FC` / `FF FD` (uTrust 3720F/3721F reference manual §6.3.7). */
  readonly iso15693: boolean;
}

const MODELS: readonly (IdentivModelInfo & { readonly pattern: RegExp })[] = [
  { model: '3700F', displayName: 'uTrust 3700 F', productId: 0x5790, iso15693: false, pattern: /uTrust\s*3700/i },
  { model: '3701F', displayName: 'uTrust 3701 F', productId: 0x5791, iso15693: false, pattern: /uTrust\s*3701/i },
  { model: '3720F', displayName: 'uTrust 3720 F', productId: 0x5612, iso15693: true, pattern: /uTrust\s*3720/i },
  { model: '3721F', displayName: 'uTrust 3721 F', productId: 0x5613, iso15693: true, pattern: /uTrust\s*3721/i },
  { model: '4701F', displayName: 'uTrust 4701 F', productId: 0x5724, iso15693: false, pattern: /uTrust\s*4701/i },
  { model: '4711F', displayName: 'uTrust 4711 F', productId: 0x5725, iso15693: false, pattern: /uTrust\s*4711/i },
  { model: 'SCL01x', displayName: 'SCM SCL01x', iso15693: false, pattern: /SCL01/i },
];

/** The model a PC/SC reader name belongs to; `unknown` (no vendor ISO 15693) for names this table lacks. */
export function identivModelFromName(name: string): IdentivModelInfo {
  const found = MODELS.find((m) => m.pattern.test(name));
  if (!found) return { model: 'unknown', displayName: 'Identiv reader', iso15693: false };
  const { pattern: _pattern, ...info } = found;
  return info;
}

/** USB ids of the family (vendor 04e6; readers.md §3). PC/SC does not report them; the driver matches names. */
export const IDENTIV_USB_IDS: readonly {
  readonly vendorId: number;
  readonly productId: number;
  readonly name: string;
}[] = Object.freeze(
  MODELS.filter((m) => m.productId !== undefined).map((m) => ({
    vendorId: 0x04e6,
    productId: m.productId!,
    name: m.displayName,
  })),
);
