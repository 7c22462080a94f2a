// The gatherer under the simulator's faults: sequence gaps, duplicated and malformed frames, and
// a worker thread killed mid-stream. Checked against the simulator's ground truth and the ledger.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { compareWithTruth, formatTruthComparison, loadProductionSet, loadUnrecoverableWindows } from '../../src/ops/truth';
import { readTruth, type FaultRec } from '../../src/sim/truth';
import { expectedFrom, gathererOptions, runSpan, migratedGathererDb, recordWindow, startPausedSimulator, startTestGatherer } from '../harness/gatherer';
import { startPg, withClient, type TestPg } from '../harness/pg';

let pg: TestPg;
before(async () => {
  pg = await startPg();
});
after(async () => {
  await pg?.close();
});

const MARKETS = 120;

test('seq gaps, duplicated and malformed frames: every gap in the ledger and recovered, nothing duplicated or lost, pipeline running', async () => {
  const dbUrl = await migratedGathererDb(pg);
  const run = await startPausedSimulator({
    markets: MARKETS,
    rate: 3000,
    seed: 21,
    pingIntervalMs: 1000,
    faults: 'skipseq:rate=0.002,dup:rate=0.003,malformed:rate=0.002',
  });
  const { gatherer, logLines } = await startTestGatherer(gathererOptions(dbUrl, run.sim));
  try {
    const rec = await recordWindow(run, gatherer, dbUrl, MARKETS, 5000);
    assert.equal(rec.drained, true);
    const faults = readTruth(run.truthFile).filter((r): r is FaultRec => r.k === 'fault' && r.t >= rec.window[0]!.t);
    const skips = faults.filter((f) => f.kind === 'skipseq');
    assert.ok(skips.length > 3 && faults.some((f) => f.kind === 'dup') && faults.some((f) => f.kind === 'malformed'), `faults injected: ${faults.length}`);
    await withClient(dbUrl, async (db) => {
      const expected = expectedFrom(rec.window);
      const span = runSpan(rec.window);
      const comparison = compareWithTruth(expected, await loadProductionSet(db, span), await loadUnrecoverableWindows(db));
      assert.ok(comparison.ok, formatTruthComparison(comparison));
      const ledger = await db.query(
        `SELECT conn_id, sid, expected_seq::int AS exp, got_seq::int AS got, recovered, recovery_method, recovered_at::float8 AS rec_us FROM gap_ledger WHERE kind = 'seq_gap'`,
      );
      for (const f of skips) {
        // A skip on a sid whose get_snapshot is still in flight joins that resync's row (one row per
        // gap starved the pool under overload: src/gatherer/gaps.ts resyncRow); that row has an
        // earlier seq on the same sid and was recovered after the skip was sent. Exact-match only
        // failed this test whenever two skips hit one sid within a resync (1 run in 3 under load).
        const hit =
          ledger.rows.find((g) => g.exp === f.seq && g.got === f.seq! + 1) ??
          ledger.rows.find((g) => g.sid === f.sid && g.exp < f.seq! && g.rec_us >= f.wall_ms * 1000 && g.recovery_method === 'get_snapshot');
        assert.ok(hit, `skipped seq ${f.seq} (conn ${f.conn}, sid ${f.sid}) has a ledger entry, its own or its sid's resync in flight`);
        assert.equal(hit.recovered, true, `gap at seq ${f.seq} recovered`);
        assert.equal(hit.recovery_method, 'get_snapshot');
      }
      const m = gatherer.metrics;
      assert.ok((await m.sequence_gaps_total.get()).values[0]!.value >= skips.length);
    });
    assert.ok(gatherer.pipeline.total('rejected:KDP_ERR_MSG_JSON') > 0, 'malformed frames were rejected and counted');
    assert.ok(gatherer.pipeline.total('seq_duplicates') > 0, 'duplicated frames were dropped and counted');
  } catch (err) {
    process.stderr.write(logLines.slice(-20).join(''));
    throw err;
  }
});

test('a worker thread killed mid-stream is restarted; the loss is a recovered ledger entry; nothing is duplicated; trades are complete', async () => {
  const dbUrl = await migratedGathererDb(pg);
  const run = await startPausedSimulator({ markets: MARKETS, rate: 3000, seed: 22, pingIntervalMs: 1000 });
  const { gatherer, logLines } = await startTestGatherer(gathererOptions(dbUrl, run.sim));
  let crashed = false;
  try {
    const rec = await recordWindow(run, gatherer, dbUrl, MARKETS, 6000, (elapsed) => {
      if (!crashed && elapsed > 1500) {
        crashed = true;
        gatherer.pipeline.crashWorker(0);
      }
    });
    assert.equal(gatherer.pipeline.restarts(), 1, 'the dead worker was replaced');
    await withClient(dbUrl, async (db) => {
      const expected = expectedFrom(rec.window);
      const span = runSpan(rec.window);
      const c = compareWithTruth(expected, await loadProductionSet(db, span), await loadUnrecoverableWindows(db));
      assert.equal(c.trades.counts.lost, 0, `trades complete after backfill\n${formatTruthComparison(c)}`);
      assert.equal(c.trades.counts.duplicated + c.deltas.counts.duplicated, 0, 'nothing duplicated');
      assert.equal(c.trades.counts.invented + c.deltas.counts.invented + c.trades.counts.mismatched, 0, 'nothing invented');
      const gaps = await db.query(`SELECT kind, recovered, recovery_method FROM gap_ledger WHERE kind = 'worker_restart'`);
      assert.ok(gaps.rowCount! >= 1, 'the worker restart is in the gap ledger');
      assert.ok(
        gaps.rows.every((g) => g.recovered && g.recovery_method === 'resubscribe'),
        JSON.stringify(gaps.rows),
      );
    });
  } catch (err) {
    process.stderr.write(logLines.slice(-20).join(''));
    throw err;
  }
});

test('an oversized frame is refused and counted; the ring-drop gaps it leaves on book, ticker, trade and lifecycle sids are all recovered, also through a REST 5xx burst; trades complete', async () => {
  const dbUrl = await migratedGathererDb(pg);
  const run = await startPausedSimulator({ markets: 40, rate: 1500, seed: 23, pingIntervalMs: 1000 });
  // One quick REST retry: the first backfill gives up inside the 5xx burst. The client's bucket is
  // the exchange's (the simulator's default 20 requests/s): the trade sid's drop costs every
  // market's trades, one request per market, and a client configured above the exchange's limit
  // drew 429s on every repeat until the backfill gave up.
  const rest = { restRetryMax: 1, backoffMaxMs: 200, restTokensPerSec: 200, restBurstTokens: 200 };
  const { gatherer, logLines } = await startTestGatherer(gathererOptions(dbUrl, run.sim, { rest }));
  try {
    const rec = await recordWindow(run, gatherer, dbUrl, 40, 14_000, (elapsedMs) => {
      if (elapsedMs < 1000 || gatherer.router.stats.framesTooLarge > 0) return;
      // REST answers 503 for 5 s: the first trade backfill and reconcile fail and must be repeated.
      run.sim.injectFault({ kind: 'rest5xx', forMs: 5000 });
      // On every connection: the book shards and the all-markets lifecycle, ticker and trade sids
      // are spread over them, so every channel is hit.
      for (const conn of run.sim.connections()) run.sim.injectFault({ kind: 'oversized', conn: conn.id, bytes: 2 * 1024 * 1024 });
    });
    assert.equal(rec.drained, true);
    assert.ok(gatherer.router.stats.framesTooLarge > 0, 'the oversized frame was refused and counted');
    await withClient(dbUrl, async (db) => {
      const gaps = await db.query(`SELECT channel, recovered, recovery_method FROM gap_ledger WHERE kind = 'ring_drop'`);
      const channels = new Set(gaps.rows.map((g) => g.channel));
      for (const c of ['orderbook_delta', 'ticker', 'trade', 'market_lifecycle_v2'])
        assert.ok(channels.has(c), `a ring_drop gap on the ${c} sid (got ${[...channels].join(', ')})`);
      for (const g of gaps.rows) assert.equal(g.recovered, true, `${g.channel} ring-drop gap recovered (${JSON.stringify(g)})`);
      const comparison = compareWithTruth(expectedFrom(rec.window), await loadProductionSet(db, runSpan(rec.window)), await loadUnrecoverableWindows(db));
      assert.equal(comparison.trades.counts.lost + comparison.trades.counts.duplicated, 0, formatTruthComparison(comparison));
    });
  } catch (err) {
    process.stderr.write(logLines.slice(-20).join(''));
    throw err;
  }
});
