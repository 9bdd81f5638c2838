import { TaplineCommand } from '../base-command.js';
import { matcherJson, type DriverJson, type MatcherJson } from '../lib/drivers.js';
import { table } from '../lib/output.js';

/** `tapline drivers --json`. */
export interface DriversJson {
  readonly drivers: readonly DriverJson[];
}

/**
 * `tapline drivers`: every installed driver (built in, or from plugins installed with `tapline plugins install`),
 * what it claims and what it can do.
 */
export default class Drivers extends TaplineCommand<typeof Drivers> {
  static override summary = 'List installed reader drivers.';

  static override description =
    'Shows every driver Tapline can use: the built-in ones and those from installed plugins. A reader gets the ' +
    'matching driver with the highest score; force one with --driver ID.';

  static override examples = [
    { command: '<%= config.bin %> <%= command.id %>', description: 'Which readers can Tapline drive?' },
    { command: '<%= config.bin %> <%= command.id %> --json', description: 'The same, with match rules.' },
  ];

  static override flags = {};

  async run(): Promise<DriversJson> {
    const session = await this.compose();
    const drivers = session.drivers.map(({ driver, source }): DriverJson => ({
      id: driver.id,
      name: driver.displayName,
      description: driver.description,
      capabilities: session.core.sortCapabilities(driver.capabilities),
      matches: driver.matches.map((m) => matcherJson(m, session.core.DEFAULT_MATCH_SCORE)),
      package: source,
    }));
    const rows = drivers.map((d) => [
      d.id,
      d.name,
      d.capabilities.join(',') || '-',
      d.matches.map(describeMatcher).join(', '),
    ]);
    for (const line of table([['ID', 'NAME', 'CAPABILITIES', 'MATCHES'], ...rows])) this.log(line);
    return { drivers };
  }
}

/** A matcher in a few words: `pcsc "ACR122" not "SAM"`, `pcsc any`, `usb 072f:2200`, `virtual tapline-sim`. */
function describeMatcher(m: MatcherJson): string {
  switch (m.transport) {
    case 'pcsc': {
      const name = m.nameIncludes === '' ? 'any' : JSON.stringify(m.nameIncludes);
      const not = (m.nameExcludes ?? []).map((x) => ` not ${JSON.stringify(x)}`).join('');
      return `pcsc ${name}${not}`;
    }
    case 'usb':
      return `usb ${m.usb}`;
    case 'virtual':
      return `virtual ${m.kind}`;
  }
}
