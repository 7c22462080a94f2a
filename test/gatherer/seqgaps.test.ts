// Trade and lifecycle sids are sequenced like book sids (frames captured from the live exchange carry
// a per-sid seq on trades; Kalshi's 2026 docs make it required on lifecycle messages): a frame lost
// on the way is a ledgered seq gap, recovered by a REST trade backfill or a registry reconcile. And a
// gatherer lagging the exchange by more than a minute loses no trade: backfill windows are in
// exchange time. Checked against the simulator's ground truth.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { compareWithTruth, formatTruthComparison, loadProductionSet, loadUnrecoverableWindows } from '../../src/ops/truth';
import type { Simulator } from '../../src/sim/simulator';
import { readTruth, type FaultRec } from '../../src/sim/truth';
import { expectedFrom, gathererOptions, migratedGathererDb, recordWindow, runSpan, startPausedSimulator, startTestGatherer } from '../harness/gatherer';
import { startPg, withClient, type TestPg } from '../harness/pg';

let pg: TestPg;
before(async () => {
  pg = await startPg();
});
after(async () => {
  await pg?.close();
});

const MARKETS = 40;

/** The connection and sid of the simulator's all-markets subscription of `channel` (none while it is being subscribed again). */
function globalSub(sim: Simulator, channel: string): { conn: number; sid: number } | undefined {
  for (const c of sim.connections()) for (const s of c.subs) if (s.channel === channel && s.markets === null) return { conn: c.id, sid: s.sid };
  return undefined;
}

test('a trade frame lost on the way, while the gatherer lags the exchange by 70 s, and a disconnect after it: ledgered seq gap and outage, every trade backfilled by exchange time', async () => {
  const dbUrl = await migratedGathererDb(pg);
  // The exchange's clock runs 70 s behind the gatherer's: every frame arrives 70 s after its
  // exchange time, as for a reader that far behind. Long-lived markets keep the shift harmless to
  // the registry's open/close timers.
  const lagUs = 70_000_000;
  const startUs = Math.floor((Date.now() * 1000 - lagUs) / 1e6) * 1e6;
  const run = await startPausedSimulator({ markets: MARKETS, rate: 1500, seed: 41, pingIntervalMs: 1000, startUs, marketLifetimeS: 36_000 });
  const { gatherer, logLines } = await startTestGatherer(gathererOptions(dbUrl, run.sim));
  let lost = false;
  let dropped = false;
  try {
    const rec = await recordWindow(run, gatherer, dbUrl, MARKETS, 9000, (elapsedMs) => {
      const trade = globalSub(run.sim, 'trade');
      if (trade === undefined) return; // resubscribing after the disconnect: next tick
      if (!lost && elapsedMs > 1000) {
        lost = true;
        run.sim.injectFault({ kind: 'lose', conn: trade.conn, sid: trade.sid });
      }
      if (!dropped && elapsedMs > 4000) {
        dropped = true;
        run.sim.injectFault({ kind: 'disconnect', conn: trade.conn });
      }
    });
    assert.equal(rec.drained, true);
    const lose = readTruth(run.truthFile).find((r): r is FaultRec => r.k === 'fault' && r.kind === 'lose');
    assert.ok(lose, 'the simulator lost a trade frame');
    await withClient(dbUrl, async (db) => {
      const rows = await db.query(
        `SELECT kind, channel, expected_seq::int AS exp, got_seq::int AS got, recovered, recovery_method FROM gap_ledger ORDER BY gap_id`,
      );
      const gap = rows.rows.find((g) => g.kind === 'seq_gap' && g.channel === 'trade');
      assert.ok(gap, `a seq_gap row on the trade sid (ledger: ${JSON.stringify(rows.rows)})`);
      assert.equal(gap.exp, lose.seq, "the gap starts at the lost frame's seq");
      assert.deepEqual([gap.recovered, gap.recovery_method], [true, 'rest_backfill']);
      assert.ok(
        rows.rows.some((g) => g.kind === 'disconnect' && g.recovered),
        'the outage is ledgered and recovered',
      );
      const c = compareWithTruth(expectedFrom(rec.window), await loadProductionSet(db, runSpan(rec.window)), await loadUnrecoverableWindows(db));
      assert.equal(c.trades.counts.lost + c.trades.counts.duplicated + c.trades.counts.mismatched, 0, formatTruthComparison(c));
    });
  } catch (err) {
    process.stderr.write(logLines.slice(-20).join(''));
    throw err;
  }
});

test("a lifecycle frame lost on the way: a ledgered seq gap on the lifecycle sid, recovered by a registry reconcile; new markets' trades complete", async () => {
  const dbUrl = await migratedGathererDb(pg);
  // Short-lived markets: lifecycle messages (created, determined, settled, ...) every second or so.
  const run = await startPausedSimulator({ markets: MARKETS, rate: 1500, seed: 42, pingIntervalMs: 1000, marketLifetimeS: 20 });
  const { gatherer, logLines } = await startTestGatherer(gathererOptions(dbUrl, run.sim));
  let lost = false;
  try {
    const rec = await recordWindow(run, gatherer, dbUrl, MARKETS, 8000, (elapsedMs) => {
      if (lost || elapsedMs < 1000) return;
      const life = globalSub(run.sim, 'market_lifecycle_v2');
      if (life === undefined) return;
      lost = true;
      run.sim.injectFault({ kind: 'lose', conn: life.conn, sid: life.sid });
    });
    assert.equal(rec.drained, true);
    const lose = readTruth(run.truthFile).find((r): r is FaultRec => r.k === 'fault' && r.kind === 'lose');
    assert.ok(lose, 'the simulator lost a lifecycle frame');
    await withClient(dbUrl, async (db) => {
      const rows = await db.query(`SELECT kind, channel, expected_seq::int AS exp, recovered, recovery_method FROM gap_ledger WHERE kind = 'seq_gap'`);
      const gap = rows.rows.find((g) => g.channel === 'market_lifecycle_v2');
      assert.ok(gap, `a seq_gap row on the lifecycle sid (ledger: ${JSON.stringify(rows.rows)})`);
      assert.equal(gap.exp, lose.seq);
      assert.deepEqual([gap.recovered, gap.recovery_method], [true, 'rest_reconcile']);
      const created = rec.window.filter((r) => r.k === 'lifecycle' && r.event_type === 'created').length;
      assert.ok(created > 0, 'markets were created during the window');
      const c = compareWithTruth(expectedFrom(rec.window), await loadProductionSet(db, runSpan(rec.window)), await loadUnrecoverableWindows(db));
      assert.equal(c.trades.counts.lost + c.trades.counts.duplicated, 0, `trades of every market, new ones included\n${formatTruthComparison(c)}`);
    });
  } catch (err) {
    process.stderr.write(logLines.slice(-20).join(''));
    throw err;
  }
});
