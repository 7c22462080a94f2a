// The TimescaleDB engine on a real TimescaleDB: the server KDP_TEST_TIMESCALE_URL names, else a
// throw-away PostgreSQL 15 cluster with the extension (test/harness/pg.ts startTimescale). Skipped,
// with the reason, only where neither exists.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ClientBase } from 'pg';
import { migrate } from '../../src/schema/migrate';
import { DAY_US, TIME_SERIES_TABLES } from '../../src/schema/tables';
import { backendPid, untilWaitingForLock } from '../harness/locks';
import { useTimescale, withClient } from '../harness/pg';

const timescale = useTimescale();
const skip = timescale.skip;

// Each test (not the suite) carries the skip, so the run's summary counts them as skipped.
describe('timescale engine', () => {
  test('creates hypertables with integer_now, compression policies and guarded retention jobs', { skip }, async () => {
    for (const kind of ['gatherer', 'production'] as const) {
      const dbUrl = await timescale.server().newDatabase();
      await withClient(dbUrl, async (c) => {
        const res = await migrate(c, { kind, engine: 'timescale' });
        assert.equal(res.engine, 'timescale');
        const hts = await c.query(`SELECT hypertable_name FROM timescaledb_information.hypertables ORDER BY 1`);
        const expected = TIME_SERIES_TABLES.filter((t) => !(kind === 'production' && t.name === 'lifecycle_events'))
          .map((t) => t.name)
          .sort();
        assert.deepEqual(
          hts.rows.map((r) => r.hypertable_name),
          expected,
        );
        const jobs = await c.query(`SELECT proc_name FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL`);
        const procs = jobs.rows.map((r) => r.proc_name);
        assert.ok(procs.includes('policy_compression'));
        // The blind retention policy is gone: gatherers get the guarded job instead (below).
        assert.ok(!procs.includes('policy_retention'));
        const guarded = await c.query(
          `SELECT config->>'hypertable' AS t FROM timescaledb_information.jobs
           WHERE proc_name = 'kdp_drop_merged_chunks' ORDER BY 1`,
        );
        const retained = TIME_SERIES_TABLES.filter((t) => t.gathererRetentionDays > 0).map((t) => t.name);
        assert.deepEqual(
          guarded.rows.map((r) => r.t),
          kind === 'gatherer' ? [...retained].sort() : [],
        );
        const again = await migrate(c, { kind, engine: 'auto' });
        assert.deepEqual(again.applied, []);
      });
    }
  });

  test('gatherer retention drops an expired chunk only once the deduplicator merged all its rows', { skip }, async () => {
    const dbUrl = await timescale.server().newDatabase();
    await withClient(dbUrl, async (c) => {
      await migrate(c, { kind: 'gatherer', engine: 'timescale' });
      const table = TIME_SERIES_TABLES.find((t) => t.name === 'tickers')!;
      const day = (us: number) => Math.floor(us / DAY_US) * DAY_US;
      const today = day(Date.now() * 1000);
      // Two expired days and today, one ticker row each. Both old days are past retention + 7
      // days, where the add_retention_policy this job replaced dropped chunks, merged or not.
      const mergedDay = today - (table.gathererRetentionDays + 11) * DAY_US;
      const unmergedDay = today - (table.gathererRetentionDays + 10) * DAY_US;
      await insertTicker(c, 1, mergedDay);
      await insertTicker(c, 1, today);
      const runRetention = async () => c.query(`CALL run_job(${await retentionJob(c)})`);
      // Old chunks are compressed long before retention: check and drop work on them too.
      const compression = await c.query(
        `SELECT job_id FROM timescaledb_information.jobs
         WHERE proc_name = 'policy_compression' AND hypertable_name = 'tickers'`,
      );
      await c.query(`CALL run_job(${Number(compression.rows[0].job_id)})`);
      const compressed = await c.query(
        `SELECT count(*)::int AS n FROM timescaledb_information.chunks
         WHERE hypertable_name = 'tickers' AND is_compressed`,
      );
      assert.equal(compressed.rows[0].n, 1, 'the expired chunk is compressed');

      await runRetention();
      assert.deepEqual(await chunkDays(c), [mergedDay, today], 'no watermark: nothing dropped');

      // The deduplicator merged batch 1 (the horizon is past its xid); batch 2 comes after it.
      await publishWatermark(c, 1);
      await insertTicker(c, 2, unmergedDay);
      // Compressed too, like the first.
      await c.query(`CALL run_job(${Number(compression.rows[0].job_id)})`);
      await runRetention();
      assert.deepEqual(await chunkDays(c), [unmergedDay, today], 'merged expired chunk dropped, unmerged kept');
      assert.deepEqual(await tickerBatches(c), [2, 1]);

      await publishWatermark(c, 2);
      await runRetention();
      assert.deepEqual(await chunkDays(c), [today], 'merged now: dropped; today is not expired');
      assert.deepEqual(await tickerBatches(c), [1]);
    });
  });

  test('an expired chunk holding one unmerged row among merged ones is kept', { skip }, async () => {
    const dbUrl = await timescale.server().newDatabase();
    await withClient(dbUrl, async (c) => {
      const oldDay = await mergedExpiredChunk(c);
      await insertTicker(c, 2, oldDay + 1);
      await c.query(`CALL run_job(${await retentionJob(c)})`);
      assert.deepEqual(await chunkDays(c), [oldDay]);
      assert.deepEqual(await tickerBatches(c), [1, 2]);
    });
  });

  test('a write into an expired chunk that commits while the job checks it is seen, not dropped', { skip }, async () => {
    const dbUrl = await timescale.server().newDatabase();
    await withClient(dbUrl, async (c) => {
      const oldDay = await mergedExpiredChunk(c);
      const job = await retentionJob(c);
      const jobPid = await backendPid(c);
      await withClient(dbUrl, async (writer) => {
        // A late COPY of old rows (a replay) is in flight when the job starts.
        await writer.query('BEGIN');
        await insertTicker(writer, 2, oldDay + 1);
        const run = c.query(`CALL run_job(${job})`);
        await untilWaitingForLock(dbUrl, jobPid, 'the retention job waits for the writer');
        await writer.query('COMMIT');
        await run;
      });
      assert.deepEqual(await chunkDays(c), [oldDay]);
      assert.deepEqual(await tickerBatches(c), [1, 2]);
    });
  });
});

/** A migrated gatherer whose tickers hold one expired chunk, of batch 1, which is merged. */
async function mergedExpiredChunk(c: ClientBase): Promise<number> {
  await migrate(c, { kind: 'gatherer', engine: 'timescale' });
  const oldDay = Math.floor((Date.now() * 1000) / DAY_US) * DAY_US - 10 * DAY_US;
  await insertTicker(c, 1, oldDay);
  await publishWatermark(c, 1);
  return oldDay;
}

/** As the deduplicator does: every batch committed before now is merged (up to `batchId`). */
async function publishWatermark(c: ClientBase, batchId: number): Promise<void> {
  await c.query(
    `INSERT INTO dedup_watermark (merged_xid, merged_batch_id, updated_at)
     VALUES (pg_current_xact_id(), $1, kdp_now_us())
     ON CONFLICT (singleton) DO UPDATE
       SET merged_xid = EXCLUDED.merged_xid, merged_batch_id = EXCLUDED.merged_batch_id,
           updated_at = EXCLUDED.updated_at`,
    [batchId],
  );
}

/** One tickers row at `atUs` in batch `batchId` (its ingest_batches row made when new). */
async function insertTicker(c: ClientBase, batchId: number, atUs: number): Promise<void> {
  await c.query(
    `INSERT INTO ingest_batches (batch_id, writer, table_name, row_count) VALUES ($1, 'w', 'tickers', 1)
     ON CONFLICT (batch_id) DO NOTHING`,
    [batchId],
  );
  await c.query(
    `INSERT INTO tickers (ticker, exchange_ts, fingerprint, occurrence, received_at, gatherer, conn_id, sid, batch_id)
     VALUES ('T', $1, $2, 0, $1, 'g1', 1, 3, $3)`,
    [atUs, atUs + batchId, batchId],
  );
}

/** The guarded retention job of the tickers hypertable. */
async function retentionJob(c: ClientBase): Promise<number> {
  const r = await c.query(
    `SELECT job_id FROM timescaledb_information.jobs
     WHERE proc_name = 'kdp_drop_merged_chunks' AND config->>'hypertable' = 'tickers'`,
  );
  return Number(r.rows[0].job_id);
}

/** The start of each tickers chunk, oldest first. */
async function chunkDays(c: ClientBase): Promise<number[]> {
  const r = await c.query(
    `SELECT range_start_integer AS lo FROM timescaledb_information.chunks
     WHERE hypertable_name = 'tickers' ORDER BY 1`,
  );
  return r.rows.map((x: { lo: string }) => Number(x.lo));
}

async function tickerBatches(c: ClientBase): Promise<number[]> {
  const r = await c.query(`SELECT batch_id FROM tickers ORDER BY exchange_ts`);
  return r.rows.map((x: { batch_id: string }) => Number(x.batch_id));
}
