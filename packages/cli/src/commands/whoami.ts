import { TaplineCommand } from '../base-command.js';
import { associationContext, associationFlags } from '../lib/platform.js';

/** `tapline whoami --json`. */
export interface WhoamiJson {
  /** This client's pairwise subject for the user's profile: stable, and meaningless to anyone else. */
  readonly sub: string;
  readonly issuer: string;
  readonly scope: string;
  readonly associatedAt: string;
  /** Whether the platform accepted the association just now (false: unreachable, see the warning). */
  readonly confirmed: boolean;
}

/** `tapline whoami`: which profile this computer is associated with, confirmed with the platform. */
export default class Whoami extends TaplineCommand<typeof Whoami> {
  static override summary = 'Show the VivoKey profile this computer is associated with.';

  static override description =
    'Prints the stored association (the profile’s subject as this client sees it, the issuer, the scope) and ' +
    'confirms it with the platform, refreshing the access token if needed. Exit status 1 with NOT_ASSOCIATED when ' +
    'this computer is not associated (run `tapline login`), or when the platform revoked the association.';

  static override flags = { ...associationFlags };

  async run(): Promise<WhoamiJson> {
    const { core, session } = await associationContext(this.flags);
    const identity = await session.whoami();
    let confirmed = false;
    try {
      await session.userinfo({ signal: this.abortSignal() });
      confirmed = true;
    } catch (error) {
      const failure = core.toTaplineError(error);
      // Not associated any more is the answer, not a warning.
      if (failure.code === core.ErrorCode.NotAssociated) throw failure;
      this.warn({
        code: failure.code,
        message: `Could not confirm with the platform: ${failure.message}`,
        ...(failure.hint ? { hint: failure.hint } : {}),
      });
    }
    const json: WhoamiJson = {
      sub: identity.sub,
      issuer: identity.issuer,
      scope: identity.scope,
      associatedAt: new Date(identity.associatedAt).toISOString(),
      confirmed,
    };
    if (!this.jsonEnabled()) {
      this.log(`Associated with ${json.issuer} as ${json.sub}`);
      this.log(`  since ${json.associatedAt}, scope ${json.scope}${confirmed ? ', confirmed by the platform' : ''}`);
    }
    return json;
  }
}
