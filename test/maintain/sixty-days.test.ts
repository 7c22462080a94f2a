// Months in minutes (issue 18 item 2): 60 simulated days of a gatherer database driven through the
// real maintenance loop (runMaintainer) with an injected clock, on plain PostgreSQL and on
// TimescaleDB (skipped, with the reason, where there is none). Each day rows land for that day
// (and every fifth day one for ten days ahead, past the partitions made ahead: DEFAULT), the
// "deduplicator" publishes its watermark as the real one does, except during a 10-day outage, and
// one cycle runs. Checked every day: partitions exist ahead, DEFAULT is empty, no row of a batch
// that is unmerged or within retention is gone, and while everything is merged the number of
// partitions/chunks stays within retention.
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import type { ClientBase } from 'pg';
import { createLogger } from '../../src/core/log';
import { MAINTAIN_METRICS, createMetrics, createRegistry } from '../../src/core/metrics';
import { resolveMaintainOptions } from '../../src/maintain/options';
import { maintainOnce, runMaintainer } from '../../src/maintain/service';
import type { Engine } from '../../src/schema/ddl';
import { migrate } from '../../src/schema/migrate';
import { partitionName } from '../../src/schema/partitions';
import { DAY_US, TIME_SERIES_TABLES } from '../../src/schema/tables';
import { startPg, startTimescale, timescaleSkip, withClient, type TestPg } from '../harness/pg';
import { insertDayRows, type WrittenBatch } from './rows';

const DAYS = 60;
const OUTAGE = { from: 20, to: 30 }; // days without a watermark: [from, to)
const AHEAD = 7;
const START_US = Date.UTC(2026, 0, 1) * 1000;
const INTERVAL_MS = 86_400_000;

/** The simulated world: its clock, the batches written, how far the deduplicator merged. */
class World {
  day = 0;
  mergedBatchId = 0;
  readonly batches: WrittenBatch[] = [];
  /** When each batch committed (the simulated clock: kdp_now_us() is the ingest_batches default). */
  readonly committedUs = new Map<number, number>();
  /** Batches whose ingest_batches row the last check found pruned. */
  batchesPruned = 0;
  constructor(
    readonly url: string,
    readonly engine: Engine,
  ) {}

  get nowUs(): number {
    return START_US + this.day * DAY_US + DAY_US / 2;
  }
  get todayUs(): number {
    return START_US + this.day * DAY_US;
  }
  inOutage(day = this.day): boolean {
    return day >= OUTAGE.from && day < OUTAGE.to;
  }

  /** The clock moves to `day`, its rows are written, the deduplicator merges (unless down). */
  async live(day: number): Promise<void> {
    this.day = day;
    await withClient(this.url, async (c) => {
      await c.query(`UPDATE kdp_test_clock SET us = $1`, [this.nowUs]);
      const written = await insertDayRows(c, this.todayUs, 3);
      if (day % 5 === 0) written.push(...(await insertDayRows(c, this.todayUs + 10 * DAY_US, 1)));
      for (const b of written) this.committedUs.set(b.id, this.nowUs);
      this.batches.push(...written);
      if (!this.inOutage()) this.mergedBatchId = await publishWatermark(c);
    });
  }
}

/** As the deduplicator: every batch below the snapshot horizon is merged (READ_HORIZON). */
async function publishWatermark(c: ClientBase): Promise<number> {
  const r = await c.query(
    `INSERT INTO dedup_watermark (merged_xid, merged_batch_id, updated_at)
     VALUES (pg_snapshot_xmin(pg_current_snapshot()), (SELECT coalesce(max(batch_id), 0) FROM ingest_batches), kdp_now_us())
     ON CONFLICT (singleton) DO UPDATE SET merged_xid = EXCLUDED.merged_xid,
       merged_batch_id = EXCLUDED.merged_batch_id, updated_at = EXCLUDED.updated_at
     RETURNING merged_batch_id`,
  );
  return Number(r.rows[0].merged_batch_id);
}

/** A migrated gatherer whose kdp_now_us() (batch commit times, TimescaleDB's now) is the test's clock. */
async function simulatedGatherer(db: TestPg, engine: Engine): Promise<World> {
  const url = await db.newDatabase('kdp_maint');
  await withClient(url, async (c) => {
    await migrate(c, { kind: 'gatherer', engine, nowUs: START_US });
    await c.query(`CREATE TABLE kdp_test_clock (us bigint NOT NULL)`);
    await c.query(`INSERT INTO kdp_test_clock VALUES ($1)`, [START_US]);
    await c.query(`CREATE OR REPLACE FUNCTION kdp_now_us() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT us FROM public.kdp_test_clock $$`);
  });
  return new World(url, engine);
}

/** Rows present per batch id, all tables. */
async function rowsByBatch(c: ClientBase): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  for (const t of TIME_SERIES_TABLES) {
    const r = await c.query(`SELECT batch_id::int AS b, count(*)::int AS n FROM ${t.name} GROUP BY 1`);
    for (const x of r.rows as { b: number; n: number }[]) out.set(x.b, x.n);
  }
  return out;
}

/** Partitions (plain PostgreSQL: not DEFAULT) or chunks of each table. */
async function partsOf(c: ClientBase, engine: Engine, table: string): Promise<string[]> {
  const r =
    engine === 'timescale'
      ? await c.query(`SELECT chunk_name AS name FROM timescaledb_information.chunks WHERE hypertable_name = $1`, [table])
      : await c.query(
          `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = $1::regclass AND c.relname NOT LIKE '%\\_default'`,
          [table],
        );
  return r.rows.map((x: { name: string }) => x.name);
}

const RETENTION_DAYS_MAX = Math.max(...TIME_SERIES_TABLES.map((t) => t.gathererRetentionDays));

/**
 * ingest_batches keeps exactly the rows still needed: a batch's row stays while it is unmerged,
 * younger than every table's retention plus a day, or has rows left in its table (a far-ahead day);
 * every other one is gone (it used to stay forever).
 */
async function checkBatchRows(c: ClientBase, w: World, present: ReadonlyMap<number, number>): Promise<number> {
  const listed = new Set((await c.query(`SELECT batch_id::int AS b FROM ingest_batches`)).rows.map((r: { b: number }) => r.b));
  const cutoffUs = Math.floor(w.nowUs / DAY_US) * DAY_US - (RETENTION_DAYS_MAX + 1) * DAY_US;
  let pruned = 0;
  for (const b of w.batches) {
    const needed = b.id > w.mergedBatchId || w.committedUs.get(b.id)! >= cutoffUs || (present.get(b.id) ?? 0) > 0;
    assert.equal(
      listed.has(b.id),
      needed,
      `day ${w.day}: batch ${b.id} of ${b.table} (day ${(b.dayUs - START_US) / DAY_US}) ${needed ? 'lost its' : 'kept a'} bookkeeping row (rows left ${present.get(b.id) ?? 0}, committed day ${(w.committedUs.get(b.id)! - START_US) / DAY_US}, merged through ${w.mergedBatchId})`,
    );
    if (!needed) pruned++;
  }
  return pruned;
}

/** The day's invariants, after its cycle. */
async function checkDay(w: World): Promise<void> {
  await withClient(w.url, async (c) => {
    const present = await rowsByBatch(c);
    w.batchesPruned = await checkBatchRows(c, w, present);
    for (const b of w.batches) {
      const retention = TIME_SERIES_TABLES.find((t) => t.name === b.table)!.gathererRetentionDays;
      const expired = b.dayUs + DAY_US <= w.nowUs - retention * DAY_US;
      if (b.id > w.mergedBatchId || !expired) {
        assert.equal(present.get(b.id) ?? 0, b.rows, `day ${w.day}: batch ${b.id} of ${b.table} (unmerged or within retention) lost rows`);
      }
    }
    for (const t of TIME_SERIES_TABLES) {
      const parts = await partsOf(c, w.engine, t.name);
      if (w.engine === 'postgres') {
        const d = await c.query(`SELECT count(*)::int AS n FROM ${t.name}_default`);
        assert.equal(d.rows[0].n, 0, `day ${w.day}: ${t.name}_default is empty`);
        for (let ahead = 0; ahead <= AHEAD; ahead++) {
          const name = partitionName(t.name, w.todayUs + ahead * DAY_US);
          assert.ok(parts.includes(name), `day ${w.day}: ${name} exists ahead`);
        }
      }
      // Merged everything (outside the outage; its first cycle catches up): retention bounds the size. Kept:
      // the retention window and today, the days ahead (plain PostgreSQL), two far-ahead days.
      const merged = !w.inOutage();
      const bound = t.gathererRetentionDays + 1 + (w.engine === 'postgres' ? AHEAD : 0) + 2;
      if (merged) assert.ok(parts.length <= bound, `day ${w.day}: ${t.name} has ${parts.length} partitions > ${bound}`);
    }
  });
}

const value = async (m: { get(): Promise<{ values: { value: number; labels: Record<string, unknown> }[] }> }, labels = {}) =>
  (await m.get()).values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((n, v) => n + v.value, 0);

/** Drives the loop: day 0 is written before it starts; each pause checks the day and lives the next. */
async function sixtyDays(w: World): Promise<string> {
  const lines = new PassThrough();
  let logged = '';
  lines.on('data', (b: Buffer) => (logged += b.toString()));
  const metrics = createMetrics(MAINTAIN_METRICS, createRegistry(false));
  const stop = new AbortController();
  const opts = resolveMaintainOptions({ kind: 'gatherer', database: { url: w.url }, intervalMs: INTERVAL_MS, partitionDaysAhead: AHEAD });
  const sleep = async (ms: number): Promise<void> => {
    assert.equal(ms, INTERVAL_MS, `day ${w.day}: the cycle failed (a backoff pause): ${logged.slice(-1500)}`);
    assert.equal(await value(metrics.maintenance_runs_total, { outcome: 'ok' }), w.day + 1);
    await checkDay(w);
    if (w.day === OUTAGE.to - 1) {
      assert.ok((await value(metrics.maintenance_partitions_kept_unmerged)) > 0, 'the outage keeps expired partitions');
      assert.ok((await value(metrics.gatherer_oldest_unmerged_row_age_seconds)) >= 9 * 86_400, 'oldest unmerged row age');
    }
    if (w.day === DAYS - 1) return stop.abort();
    await w.live(w.day + 1);
  };
  await w.live(0);
  await runMaintainer(opts, { log: createLogger('maintain', { destination: lines }), metrics, signal: stop.signal, nowUs: () => w.nowUs, sleep });
  assert.equal(w.day, DAYS - 1);
  assert.equal(await value(metrics.maintenance_partitions_kept_unmerged), 0, 'merged again: nothing kept');
  assert.equal(await value(metrics.gatherer_oldest_unmerged_row_age_seconds), 0);
  assert.ok((await value(metrics.maintenance_partitions_dropped_total)) > 0);
  assert.ok(w.batchesPruned > 0, 'bookkeeping rows of expired batches were pruned');
  assert.equal(await value(metrics.maintenance_batches_pruned_total), w.batchesPruned);
  assert.ok((await value(metrics.table_bytes, { table: 'orderbook_deltas' })) > 0);
  return logged;
}

describe('60 days of partition life through kdp maintain', () => {
  let pg: TestPg | undefined;
  let ts: TestPg | undefined;
  const skip = timescaleSkip();
  before(async () => {
    pg = await startPg();
    if (!skip) ts = await startTimescale();
  });
  after(async () => {
    await pg?.close();
    await ts?.close();
  });

  test('plain PostgreSQL: partitions ahead, DEFAULT drained, nothing unmerged dropped, size bounded', async () => {
    const log = await sixtyDays(await simulatedGatherer(pg!, 'postgres'));
    for (const msg of ['partitions created', 'expired partitions dropped (merged)', 'expired partitions kept']) {
      assert.ok(log.includes(msg), `logged: ${msg}`);
    }
  });

  test('TimescaleDB production: a cycle runs the compression policies and measures every table', { skip }, async () => {
    const url = await ts!.newDatabase('kdp_maint_prod');
    await withClient(url, (c) => migrate(c, { kind: 'production', engine: 'timescale' }));
    const metrics = createMetrics(MAINTAIN_METRICS, createRegistry(false));
    const opts = resolveMaintainOptions({ kind: 'production', database: { url } });
    const r = await maintainOnce(opts, { log: createLogger('maintain', { level: 'silent' }), metrics, signal: new AbortController().signal });
    assert.equal(r.engine, 'timescale');
    assert.deepEqual(new Set(r.jobs.map((j) => j.proc)), new Set(['policy_compression']));
    assert.equal(r.jobs.length, TIME_SERIES_TABLES.length - 1, 'every hypertable (production lifecycle_events is a plain table)');
    assert.deepEqual(Object.keys(r.tableBytes).sort(), TIME_SERIES_TABLES.map((t) => t.name).sort());
    assert.equal(r.oldestUnmergedAgeSeconds, undefined);
  });

  test('TimescaleDB: compression and the guarded retention job, nothing unmerged dropped, size bounded', { skip }, async () => {
    const w = await simulatedGatherer(ts!, 'timescale');
    const log = await sixtyDays(w);
    assert.ok(log.includes('chunks compressed') && log.includes('expired partitions dropped (merged)'));
    await withClient(w.url, async (c) => {
      const r = await c.query(`SELECT count(*)::int AS n FROM timescaledb_information.chunks WHERE is_compressed`);
      assert.ok(r.rows[0].n > 0, 'old chunks are compressed');
    });
  });
});
