import { Flags } from '@oclif/core';
import { TaplineCommand } from '../base-command.js';
import { associationContext, associationFlags } from '../lib/platform.js';

/** `tapline login --json`: the last line, once the association is stored. */
export interface LoginJson {
  readonly associated: true;
  readonly sub: string;
  readonly issuer: string;
  readonly scope: string;
}

/**
 * `tapline login`: associates this computer with the user's VivoKey profile by the OAuth 2.0 device authorization
 * grant (RFC 8628). The user opens the printed URL (or scans the QR code) on the phone and approves with a chip
 * scan; Tapline never sees or asks for the account PIN. The tokens are stored for the agent (file mode 0600).
 */
export default class Login extends TaplineCommand<typeof Login> {
  static override summary = 'Associate this computer with your VivoKey profile (approve on your phone; no PIN here).';

  static override description =
    'Starts the OAuth 2.0 device authorization flow with the platform: Tapline prints a URL, a short code and a QR ' +
    'code of the complete URL. Open it on your phone (scan the QR code), check that the code matches, and approve ' +
    'with a scan of your implant. Tapline never asks for your PIN.\n\n' +
    'Once approved, the tokens are stored in the Tapline config folder (credentials.json, readable only by you) and ' +
    '`tapline agent` answers scan requests without the phone. `tapline logout` revokes them.\n\n' +
    'With --json, the first line is {"event":"authorize","verificationUri",…,"userCode",…} and the last one ' +
    '{"associated":true,"sub",…}.';

  static override examples = ['<%= config.bin %> login', '<%= config.bin %> login --platform https://platform.example'];

  static override flags = {
    ...associationFlags,
    force: Flags.boolean({ summary: 'Associate again even when this computer already is (replaces the tokens).' }),
  };

  protected static override defaultTimeoutMs = 600_000;

  async run(): Promise<LoginJson | { readonly associated: true; readonly sub: string; readonly already: true }> {
    const context = await associationContext(this.flags);
    const { core, association, store, issuer } = context;
    const existing = await store.load().catch((error: unknown) => {
      // A damaged credentials file is what --force replaces; without it, the error's hint says what to do.
      if (this.flags.force) return undefined;
      throw error;
    });
    // The same provider and client: what the session would use (tokens of another one are only overwritten).
    const previous =
      existing !== undefined && existing.issuer === issuer.href && existing.clientId === context.clientId
        ? existing
        : undefined;
    if (previous && !this.flags.force) {
      if (!this.jsonEnabled()) {
        this.log(`This computer is already associated (as ${previous.sub}). Use --force to associate again.`);
      }
      return { associated: true, sub: previous.sub, already: true };
    }

    const signal = AbortSignal.any([this.abortSignal(), AbortSignal.timeout(this.flags.timeout ?? 600_000)]);
    const started = await association.start({ signal });
    const target = started.verificationUriComplete ?? started.verificationUri;
    if (this.jsonEnabled()) {
      this.logJson({
        event: 'authorize',
        verificationUri: started.verificationUri,
        ...(started.verificationUriComplete ? { verificationUriComplete: started.verificationUriComplete } : {}),
        userCode: started.userCode,
        expiresAt: new Date(started.expiresAt).toISOString(),
      });
    } else {
      const qrcode = await import('qrcode');
      const qr = await qrcode.default.toString(target, { type: 'terminal', small: true, errorCorrectionLevel: 'L' });
      this.log(
        [
          'To associate this computer with your VivoKey profile, open this page on your phone:',
          '',
          `  ${started.verificationUri}`,
          '',
          `and enter the code  ${started.userCode}`,
          '',
          'or scan this QR code (it includes the code):',
          '',
          qr,
          'Then approve with a scan of your implant. Tapline never asks for your PIN.',
        ].join('\n'),
      );
    }

    const spinner =
      !this.jsonEnabled() && process.stderr.isTTY ? await startSpinner('Waiting for approval…') : undefined;
    let tokens;
    try {
      tokens = await association.wait(started.handle, { signal });
    } catch (error) {
      spinner?.error('Not associated.');
      throw error;
    }
    // Saved under the credentials lock; the association this replaces (whatever is stored at that moment, even if
    // the agent rotated it meanwhile) is revoked, or it would stay valid at the platform with nobody to revoke it.
    const replaced = await context.session.associate(tokens, { revokePrevious: true, signal });
    const failure = replaced.previousRevocationError;
    if (replaced.previous && failure && failure.code !== core.ErrorCode.NotAssociated) {
      this.warn({
        code: failure.code,
        message: `The previous association could not be revoked: ${failure.message}`,
        hint: 'Remove the old device from your VivoKey profile to be sure.',
      });
    }
    spinner?.success(`Associated as ${tokens.sub}.`);
    if (!spinner && !this.jsonEnabled()) this.log(`Associated as ${tokens.sub}.`);
    return { associated: true, sub: tokens.sub, issuer: issuer.href, scope: tokens.scope };
  }

  /**
   * One compact JSON object per line (the authorize event, then the result or the error), so that a script can act
   * on the first line while the command still waits; oclif would pretty-print it over several lines.
   */
  override logJson(json: unknown): void {
    process.stdout.write(`${JSON.stringify(json)}\n`);
  }
}

async function startSpinner(text: string): Promise<{ success(text: string): void; error(text: string): void }> {
  const { default: yoctoSpinner } = await import('yocto-spinner');
  const spinner = yoctoSpinner({ text, stream: process.stderr }).start();
  return { success: (t) => spinner.success(t), error: (t) => spinner.error(t) };
}
