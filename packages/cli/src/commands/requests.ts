import { TaplineCommand } from '../base-command.js';
import { associationContext, associationFlags } from '../lib/platform.js';

/** One pending request in `tapline requests --json`. */
export interface RequestJson {
  readonly id: string;
  readonly relyingParty?: { readonly id: string; readonly name?: string };
  readonly purpose?: string;
  readonly createdAt?: string;
  readonly expiresAt?: string;
  readonly acceptedChips?: readonly string[];
  readonly state: string;
}

/** `tapline requests`: the scan requests pending for the associated profile. */
export default class Requests extends TaplineCommand<typeof Requests> {
  static override summary = 'List the scan requests waiting for a tap.';

  static override description =
    'Asks the platform which scan requests are pending for your profile (who asks, why, until when, and which ' +
    'chips may answer). `tapline agent` answers them when you tap; with several pending, pick one with ' +
    '`tapline agent choose ID`.';

  static override flags = { ...associationFlags };

  async run(): Promise<{ readonly requests: readonly RequestJson[] }> {
    const { client } = await associationContext(this.flags);
    const listing = await client.list({ waitSec: 0, signal: this.abortSignal() });
    const requests: RequestJson[] = ('requests' in listing ? listing.requests : []).map((r) => ({
      id: r.id,
      ...(r.relyingParty ? { relyingParty: r.relyingParty } : {}),
      ...(r.purpose === undefined ? {} : { purpose: r.purpose }),
      ...(r.createdAt === undefined ? {} : { createdAt: new Date(r.createdAt).toISOString() }),
      ...(r.expiresAt === undefined ? {} : { expiresAt: new Date(r.expiresAt).toISOString() }),
      ...(r.acceptedChips === undefined ? {} : { acceptedChips: r.acceptedChips }),
      state: r.state,
    }));
    if (!this.jsonEnabled()) {
      if (requests.length === 0) this.log('No scan request is pending.');
      for (const r of requests) {
        const who = r.relyingParty?.name ?? r.relyingParty?.id ?? 'unknown relying party';
        const until = r.expiresAt ? `, expires ${r.expiresAt}` : '';
        const chips = r.acceptedChips?.length ? `, chips ${r.acceptedChips.join('/')}` : '';
        this.log(`${r.id}  ${who}: ${r.purpose ?? '(no purpose given)'}${until}${chips}`);
      }
    }
    return { requests };
  }
}
