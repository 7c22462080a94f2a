import { withClient } from '../core/pgclient';
import { KdpError } from '../core/errors';
import { redactUrl } from '../core/log';
import { migrate } from '../schema/migrate';
import { readConfigFile } from '../config/load';
import { resolveOptions } from '../config/validate';
import { DATABASE_SPEC } from '../config/specs';
import { parseOptions, type Command } from './command';

export const migrateCommand: Command = {
  name: 'migrate',
  summary: 'create or upgrade a gatherer or production schema',
  help: `kdp migrate --kind gatherer|production (--url URL | --config FILE) [--engine auto|postgres|timescale]

Creates the schema of the given kind in an empty database, or upgrades an older one. Running it
again is a no-op. Refuses a database that holds the other kind of schema or a newer version.
  --kind      gatherer (one per gatherer) or production (the merged database)
  --url       PostgreSQL connection URL (or env KDP_DATABASE_URL)
  --config    a service config file; its database.url is used
  --engine    auto (default: TimescaleDB when the extension is available), postgres, timescale
  --days-ahead N   day partitions to create ahead of today on plain PostgreSQL (default 7)`,
  async run(argv) {
    const { values } = parseOptions(argv, {
      kind: { type: 'string' },
      url: { type: 'string' },
      config: { type: 'string' },
      engine: { type: 'string', default: 'auto' },
      'days-ahead': { type: 'string', default: '7' },
    });
    const kind = values.kind;
    if (kind !== 'gatherer' && kind !== 'production') throw new KdpError('KDP_ERR_USAGE', '--kind must be gatherer or production');
    const engine = values.engine;
    if (engine !== 'auto' && engine !== 'postgres' && engine !== 'timescale') {
      throw new KdpError('KDP_ERR_USAGE', '--engine must be auto, postgres or timescale');
    }
    const url =
      values.url ??
      (values.config ? resolveOptions(DATABASE_SPEC, readConfigFile(values.config).database, 'database').url : undefined) ??
      process.env.KDP_DATABASE_URL;
    if (!url) throw new KdpError('KDP_ERR_USAGE', 'give --url, --config or KDP_DATABASE_URL');
    const r = await withClient(url, (client) => migrate(client, { kind, engine, partitionDaysAhead: Number(values['days-ahead']) }));
    const what = r.applied.length ? `applied ${r.applied.join('; ')}` : 'already current (nothing to do)';
    process.stdout.write(`${redactUrl(url)}: ${r.kind} schema v${r.toVersion} on ${r.engine}: ${what}\n`);
    return 0;
  },
};
