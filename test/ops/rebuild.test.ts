// docs/runbooks.md "Rebuild a gatherer", performed for real: two gatherers merged into production,
// then g1's database is lost and rebuilt empty with `kdp migrate` (a new instance_id), given the
// last hours from production by the runbook's own SQL (explicit columns, new ingest batches, one
// transaction per table and hour), drained into day partitions by `kdp maintain --once`, and then
// records on its own next to g2 while the deduplicator runs as a service.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import type { Client } from 'pg';
import { mergeWatermark } from '../../src/archive/cursors';
import { startDeduplicator, type Deduplicator } from '../../src/dedup/service';
import { connect, copyFor, dedupOptions, diffKeys, makeWorld, newDb, unionOf, writeCopy, writeTruth, NOW_US, type Row } from '../dedup/fixtures';
import { waitFor } from '../harness/gatherer';
import { startPg, type TestPg } from '../harness/pg';
import { repoRoot } from './helpers';
import { runAsPsql, runbookQueries, substitute } from './runbook-sql';

const run = promisify(execFile);
const kdp = (...args: string[]): Promise<{ stdout: string }> => run(process.execPath, [join(repoRoot(), 'bin', 'kdp.js'), ...args]);

let pg: TestPg;
const open: Client[] = [];
before(async () => {
  pg = await startPg();
});
after(async () => {
  for (const c of open) await c.end().catch(() => undefined);
  await pg?.close();
});

const MIN_US = 60_000_000;

/** A gatherer's copy of the world, its snapshot and lifecycle times moved from the fixtures' fixed NOW_US to `baseUs`. */
function copyAt(world: ReturnType<typeof makeWorld>, gatherer: string, gaps: [number, number][], baseUs: number): Record<string, Row[]> {
  const copy = copyFor(world, gatherer, gaps);
  const shift = (v: unknown): number => Number(v) - NOW_US + baseUs;
  copy.orderbook_snapshots = copy.orderbook_snapshots!.map((r) => ({
    ...r,
    snapshot_ts: shift(r.snapshot_ts),
    received_at: shift(r.received_at),
    last_delta_ts: r.last_delta_ts === null ? null : shift(r.last_delta_ts),
  }));
  copy.lifecycle_events = copy.lifecycle_events!.map((r) => ({ ...r, received_at: shift(r.received_at) }));
  return copy;
}

async function instanceOf(c: Client): Promise<string> {
  return (await c.query(`SELECT instance_id::text AS i FROM kdp_schema`)).rows[0].i as string;
}

/** True once the deduplicator has merged every batch of the gatherer database (its published watermark). */
async function allMerged(c: Client): Promise<boolean> {
  const r = await c.query(`SELECT (SELECT merged_batch_id FROM dedup_watermark) >= (SELECT max(batch_id) FROM ingest_batches) AS done`);
  return r.rows[0].done === true;
}

describe('rebuild a gatherer (docs/runbooks.md)', () => {
  test("after a rebuild with production's history, the new gatherer's rows merge, production neither loses nor duplicates anything, and the old cursor holds nothing back", async () => {
    const nowUs = Date.now() * 1000;
    // Two hours ago to about an hour ago: the history both gatherers recorded before g1 was lost.
    const before1 = makeWorld(11, 240, nowUs - 120 * MIN_US, 15_000_000);
    const startBefore = nowUs - 120 * MIN_US;
    const oldG1Copy = copyAt(before1, 'g1', [[startBefore + 10 * MIN_US, startBefore + 20 * MIN_US]], startBefore);
    const g2Before = copyAt(before1, 'g2', [[startBefore + 40 * MIN_US, startBefore + 50 * MIN_US]], startBefore + 1);
    const prod = await newDb(pg, 'production', open);
    const oldG1 = await newDb(pg, 'gatherer', open);
    const g2 = await newDb(pg, 'gatherer', open);
    await writeCopy(oldG1.c, oldG1Copy);
    await writeCopy(g2.c, g2Before);
    const d1 = await startDeduplicator({
      options: dedupOptions(
        [
          { name: 'g1', url: oldG1.url },
          { name: 'g2', url: g2.url },
        ],
        prod.url,
      ),
      loop: false,
      http: false,
    });
    for (let r = await d1.runOnce(); r.more; r = await d1.runOnce());
    await d1.stop();
    const oldInstance = await instanceOf(oldG1.c);
    const oldCursor = (await prod.c.query(`SELECT merged_xid::text, updated_at::text FROM dedup_cursors WHERE gatherer = 'g1'`)).rows;
    assert.equal(oldCursor.length, 1);
    const mergedBefore = (await prod.c.query(`SELECT (SELECT count(*) FROM trades)::int AS n, (SELECT max(merged_at) FROM orderbook_deltas)::text AS at`))
      .rows[0];

    // g1's disk is lost. Step 1: an empty database and `kdp migrate`.
    const newUrl = await pg.newDatabase('g1_rebuilt');
    await kdp('migrate', '--kind', 'gatherer', '--url', newUrl);
    const g1 = await connect(newUrl);
    open.push(g1);
    const newInstance = await instanceOf(g1);
    assert.notEqual(newInstance, oldInstance, 'a fresh database has a fresh instance_id');
    // Step 3: every "new gatherer" block of the runbook, in its order, as psql runs them.
    const blocks = runbookQueries().filter((q) => q.target === 'new gatherer');
    assert.ok(blocks.length >= 3);
    for (const q of blocks) await runAsPsql(g1, substitute(q.sql, { nowUs, productionUrl: prod.url }));
    await kdp('maintain', '--kind', 'gatherer', '--url', newUrl, '--once');
    const copied = await g1.query(
      `SELECT table_name, count(*)::int AS batches, sum(row_count)::int AS rows, count(DISTINCT xid)::int AS xids FROM ingest_batches GROUP BY 1 ORDER BY 1`,
    );
    const expectedHistory = unionOf([oldG1Copy, g2Before]);
    for (const r of copied.rows) {
      assert.equal(r.rows, expectedHistory[r.table_name]!.length, `${r.table_name}: production's rows of the window, each once`);
      assert.equal(r.xids, r.batches, `${r.table_name}: one transaction per batch (\\gexec), so each merge cycle stays small`);
    }
    assert.equal(copied.rowCount, 5, 'every table got history');
    const inDefault = await g1.query(
      `SELECT (SELECT count(*) FROM trades_default) + (SELECT count(*) FROM orderbook_deltas_default) + (SELECT count(*) FROM tickers_default) AS n`,
    );
    assert.equal(Number(inDefault.rows[0].n), 0, 'kdp maintain moved the copied rows into day partitions');

    // Step 4: the new g1 and g2 record the next half hour (each with a gap the other covers), with
    // the deduplicator running as the service does.
    const startAfter = nowUs - 30 * MIN_US;
    const after1 = makeWorld(12, 120, startAfter, 10_000_000);
    const newG1Copy = copyAt(after1, 'g1', [[startAfter + 5 * MIN_US, startAfter + 8 * MIN_US]], startAfter);
    const g2After = copyAt(after1, 'g2', [[startAfter + 12 * MIN_US, startAfter + 15 * MIN_US]], startAfter + 1);
    await writeCopy(g1, newG1Copy);
    await writeCopy(g2.c, g2After);
    const rebuiltAtUs = Date.now() * 1000;
    const d2: Deduplicator = await startDeduplicator({
      options: dedupOptions(
        [
          { name: 'g1', url: newUrl },
          { name: 'g2', url: g2.url },
        ],
        prod.url,
      ),
      http: false,
    });
    try {
      await waitFor(
        'the deduplicator merged every batch of the rebuilt g1 and of g2',
        async () => (await allMerged(g1)) && (await allMerged(g2.c)),
        180_000,
        100,
      );
      assert.equal(d2.health().cursors.g1!.instance_id, newInstance);
      assert.doesNotMatch(
        await d2.metricsText(),
        /dedup_errors_total\{[^}]*type="row_count_mismatch"[^}]*\} [1-9]/,
        'every copied batch row_count matched its rows',
      );

      // Nothing lost, nothing duplicated: production holds exactly the union of every copy ever recorded.
      const truth = await newDb(pg, 'production', open);
      await writeTruth(truth.c, unionOf([oldG1Copy, g2Before, newG1Copy, g2After]));
      for (const [table, d] of Object.entries(await diffKeys(prod.c, truth.c)))
        assert.ok(d.equal, `${table}: production ${d.production} keys, truth ${d.truth}`);
      // The copied history merged as duplicates: no row that was in production before was rewritten.
      const kept = await prod.c.query(`SELECT count(*)::int AS n FROM orderbook_deltas WHERE merged_at <= $1`, [mergedBefore.at]);
      assert.equal(kept.rows[0].n, expectedHistory.orderbook_deltas!.length, "the history's rows keep their merge time");
      const gapOnlyNewG1 = after1.trades.filter((t) => Number(t.exchange_ts) >= startAfter + 12 * MIN_US && Number(t.exchange_ts) < startAfter + 15 * MIN_US);
      const fromNewG1 = await prod.c.query(`SELECT count(*)::int AS n FROM trades WHERE gatherer = 'g1' AND trade_id = ANY ($1::uuid[])`, [
        gapOnlyNewG1.map((t) => t.trade_id),
      ]);
      assert.equal(fromNewG1.rows[0].n, gapOnlyNewG1.length, 'the rebuilt g1 alone filled the window g2 missed');

      // The old instance's cursor stays as it was and holds nothing back.
      const cursors = await prod.c.query(`SELECT instance_id::text AS i, merged_xid::text, updated_at::text FROM dedup_cursors WHERE gatherer = 'g1'`);
      assert.equal(cursors.rowCount, 2, 'one cursor per database instance');
      const old = cursors.rows.find((r) => r.i === oldInstance)!;
      assert.deepEqual({ merged_xid: old.merged_xid, updated_at: old.updated_at }, oldCursor[0], 'the old cursor is not touched');
      const mark = await mergeWatermark(prod.c, Date.now() * 1000, 15 * MIN_US);
      assert.equal(mark.liveGatherers, 2);
      assert.ok(mark.watermarkUs >= rebuiltAtUs, "the archiver's merge watermark follows the new instance, not the old cursor");
      const wm = await g1.query(`SELECT count(*)::int AS n FROM dedup_watermark`);
      assert.equal(wm.rows[0].n, 1, "the rebuilt database has its own watermark, so kdp maintain's retention can run there");
    } finally {
      await d2.stop();
    }
  });

  test("the seeds' SELECT * copy from production fails on production's extra merged_at column", async () => {
    const prod = await newDb(pg, 'production', open);
    const g = await newDb(pg, 'gatherer', open);
    await g.c.query('CREATE EXTENSION IF NOT EXISTS dblink');
    const typed = (
      await g.c.query(
        `SELECT string_agg(quote_ident(attname) || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum) AS t
           FROM pg_attribute WHERE attrelid = 'trades'::regclass AND attnum > 0 AND NOT attisdropped`,
      )
    ).rows[0].t as string;
    await prod.c.query(
      `INSERT INTO trades (trade_id, ticker, yes_price, no_price, count, exchange_ts, source, received_at, gatherer, conn_id, sid, batch_id, merged_at)
       VALUES (gen_random_uuid(), 'KXA-26NOV23', 0.5, 0.5, 1, 1, 'ws', 1, 'g2', 1, 1, 7, 1)`,
    );
    await assert.rejects(
      g.c.query(`INSERT INTO trades SELECT * FROM dblink($1, 'SELECT * FROM trades') AS t(${typed})`, [prod.url]),
      /rowtype|column/i,
      'production has one column more than the gatherer',
    );
  });
});
