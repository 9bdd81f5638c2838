import { ux } from '@oclif/core';
import { TaplineCommand } from '../base-command.js';
import { scanJson, scanLines, type ScanJson } from '../lib/output.js';

/**
 * `tapline scan`: waits for one tap and prints the tag (UID, technology, reader, and ATR/ATS/SAK/ATQA when the
 * reader reports them). With `--json` it prints {@link ScanJson}.
 */
export default class Scan extends TaplineCommand<typeof Scan> {
  static override summary = 'Wait for a tag or implant, identify the chip, and print what it is.';

  static override description =
    'Waits until a tag is tapped on any attached reader (or one is already resting on it), then prints what the ' +
    'reader reports. Fails with TIMEOUT after --timeout milliseconds.';

  static override examples = [
    { command: '<%= config.bin %> <%= command.id %>', description: 'Tap an implant on any reader.' },
    { command: '<%= config.bin %> <%= command.id %> --sim --json', description: 'Try it without hardware.' },
    {
      command: '<%= config.bin %> <%= command.id %> --reader ACR122 --timeout 30000',
      description: 'Wait longer, on one reader.',
    },
  ];

  static override flags = {};

  protected static override defaultTimeoutMs = 10_000;

  async run(): Promise<ScanJson> {
    const session = await this.compose();
    const { core } = session;
    let attached = 0;
    session.hold((event) => {
      if (event.type === 'attached') attached += 1;
      this.warnFromEvent(event);
    });

    if (!this.jsonEnabled()) ux.action.start('Waiting for a tag');
    const tag = await this.waitForTap(session, () => attached);
    if (ux.action.running) ux.action.stop(`found on ${tag.readerName}`);
    try {
      // `full`: scan is for looking, so it may spend the exchanges that name the exact model.
      await core.identifyTag(tag, { detail: 'full', timeoutMs: session.remainingMs(), signal: session.signal });
    } catch (error) {
      // The UID is already known and worth printing; a chip that left mid-identification is a warning, not a failure.
      const failure = core.toTaplineError(error);
      this.warn({
        code: failure.code,
        message: `Could not identify the chip: ${failure.message}`,
        ...(failure.hint ? { hint: failure.hint } : {}),
      });
    }

    // Still holding: the tag's reader stays open while we read from it and print.
    const result = scanJson(tag);
    for (const line of scanLines(result)) this.log(line);
    await session.release();
    return result;
  }
}
