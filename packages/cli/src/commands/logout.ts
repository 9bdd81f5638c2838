import { TaplineCommand } from '../base-command.js';
import { associationContext, associationFlags } from '../lib/platform.js';

/** `tapline logout --json`. */
export interface LogoutJson {
  /** False when this computer was not associated (nothing to do). */
  readonly loggedOut: boolean;
  /** Whether the platform confirmed the revocation; the local tokens are deleted either way. */
  readonly revoked: boolean;
}

/**
 * `tapline logout`: revokes the association's tokens at the platform and deletes them here. The local copy goes
 * even when the platform cannot be reached, so that a lost or retired computer can always be cleaned up; the
 * output says whether the revocation was confirmed.
 */
export default class Logout extends TaplineCommand<typeof Logout> {
  static override summary = 'Revoke this computer’s association with your VivoKey profile and delete its tokens.';

  static override description =
    'Revokes the refresh and access tokens at the platform, then deletes the stored credentials. If the platform ' +
    'cannot be reached the tokens are still deleted here, and the output says that the revocation was not ' +
    'confirmed (revoke the device from your VivoKey profile then).';

  static override flags = { ...associationFlags };

  async run(): Promise<LogoutJson> {
    const { session } = await associationContext(this.flags);
    const outcome = await session.logout({ signal: this.abortSignal() });
    if (!this.jsonEnabled()) {
      if (!outcome.wasAssociated) this.log('This computer was not associated; nothing to do.');
      else if (outcome.revoked) this.log('Logged out: the tokens were revoked and deleted.');
      else this.log('Logged out here: the tokens were deleted, but the platform did not confirm the revocation.');
    }
    // On stderr with --json too (stdout stays one JSON document): `revoked: false` alone does not say why.
    const failure = outcome.revocationError;
    if (outcome.wasAssociated && !outcome.revoked && failure) {
      this.warn({
        code: failure.code,
        message: failure.message,
        hint: 'Remove this device from your VivoKey profile to be sure.',
      });
    }
    return { loggedOut: outcome.wasAssociated, revoked: outcome.revoked };
  }
}
