// The TimescaleDB engine on a real TimescaleDB: the server KDP_TEST_TIMESCALE_URL names, else a
// throw-away PostgreSQL 15 cluster with the extension (test/harness/pg.ts startTimescale). Skipped,
// with the reason, only where neither exists.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { migrate } from '../../src/schema/migrate';
import { TIME_SERIES_TABLES } from '../../src/schema/tables';
import { startTimescale, timescaleSkip, withClient, type TestPg } from '../harness/pg';

const skip = timescaleSkip();
let ts: TestPg | undefined;
before(async () => {
  if (!skip) ts = await startTimescale();
});
after(async () => {
  await ts?.close();
});

describe('timescale engine', { skip }, () => {
  test('creates hypertables with integer_now, compression and retention policies', async () => {
    for (const kind of ['gatherer', 'production'] as const) {
      const dbUrl = await ts!.newDatabase();
      await withClient(dbUrl, async (c) => {
        const res = await migrate(c, { kind, engine: 'timescale' });
        assert.equal(res.engine, 'timescale');
        const hts = await c.query(
          `SELECT hypertable_name FROM timescaledb_information.hypertables ORDER BY 1`,
        );
        const expected = TIME_SERIES_TABLES.filter(
          (t) => !(kind === 'production' && t.name === 'lifecycle_events'),
        )
          .map((t) => t.name)
          .sort();
        assert.deepEqual(
          hts.rows.map((r) => r.hypertable_name),
          expected,
        );
        const jobs = await c.query(
          `SELECT proc_name FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL`,
        );
        const procs = jobs.rows.map((r) => r.proc_name);
        assert.ok(procs.includes('policy_compression'));
        assert.equal(procs.includes('policy_retention'), kind === 'gatherer');
        const again = await migrate(c, { kind, engine: 'auto' });
        assert.deepEqual(again.applied, []);
      });
    }
  });
});
