// End to end: the simulator's exchange -> WebSockets -> ingest thread -> rings -> worker threads ->
// COPY -> the gatherer database, checked against the simulator's ground truth (counts and contents).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Client } from 'pg';
import { parseScaled, formatScaled } from '../../src/ops/decimal';
import { compareWithTruth, formatTruthComparison, loadProductionSet, loadUnrecoverableWindows } from '../../src/ops/truth';
import { readTruthExpectation } from '../../src/ops/truth-file';
import type { BookRec, DeltaRec } from '../../src/sim/truth';
import { expectedFrom, gathererOptions, runSpan, migratedGathererDb, recordWindow, startPausedSimulator, startTestGatherer } from '../harness/gatherer';
import { startPg, type TestPg } from '../harness/pg';

let pg: TestPg;
before(async () => {
  pg = await startPg();
});
after(async () => {
  await pg?.close();
});

const MARKETS = 300;

type Levels = Map<string, bigint>;
function applyLevels(book: { yes: Levels; no: Levels }, side: string, price: string, delta: string): void {
  const levels = side === 'yes' ? book.yes : book.no;
  const key = formatScaled(parseScaled(price));
  const size = (levels.get(key) ?? 0n) + parseScaled(delta);
  if (size <= 0n) levels.delete(key);
  else levels.set(key, size);
}
const levelsOf = (pairs: [string, string][]): Levels => new Map(pairs.map(([p, s]) => [formatScaled(parseScaled(p)), parseScaled(s)]));
const render = (l: Levels): string =>
  [...l.entries()]
    .sort(([a], [b]) => (parseScaled(a) < parseScaled(b) ? -1 : 1))
    .map(([p, s]) => `${p}x${formatScaled(s)}`)
    .join(' ');

test('the gatherer records every trade once with exact values, every delta in order, tickers, lifecycle, and books equal to the truth', async () => {
  const dbUrl = await migratedGathererDb(pg);
  const run = await startPausedSimulator({ markets: MARKETS, rate: 4000, seed: 11, pingIntervalMs: 1000, marketLifetimeS: 20, checkpointIntervalMs: 500 });
  const { gatherer, logLines } = await startTestGatherer(gathererOptions(dbUrl, run.sim));
  try {
    const rec = await recordWindow(run, gatherer, dbUrl, MARKETS, 6000);
    assert.equal(rec.drained, true, 'graceful stop drained every ring');
    const window = rec.window;
    assert.ok(window.length > 5000, `the exchange produced a real load (${window.length} records)`);
    const db = new Client({ connectionString: dbUrl });
    await db.connect();
    try {
      const span = runSpan(window);
      const deltas = window.filter((r): r is DeltaRec => r.k === 'delta');
      // The truth file (complete once the simulator stopped) holds exactly the run's trades.
      const truth = await readTruthExpectation(run.truthFile, span);
      const expected = expectedFrom(window);
      const fileTrades = new Set(truth.expected.trades.map((t) => t.tradeId));
      assert.ok(
        expected.trades.every((t) => fileTrades.has(t.tradeId)),
        'every trade of the run is in the truth file',
      );
      const comparison = compareWithTruth(expected, await loadProductionSet(db, span), await loadUnrecoverableWindows(db));
      assert.ok(comparison.ok, formatTruthComparison(comparison));
      assert.ok(
        expected.trades.length > 50 && expected.deltas.length > 3000,
        `enough data: ${expected.trades.length} trades, ${expected.deltas.length} deltas`,
      );

      // Order: each market's deltas in stream (seq) order equal the exchange's order.
      const ordered = await db.query(
        `SELECT ticker, exchange_ts::text AS ts, side, price::text AS price, delta::text AS delta FROM orderbook_deltas ORDER BY ticker, conn_id, sid, seq`,
      );
      const gotByMarket = new Map<string, string[]>();
      for (const r of ordered.rows) {
        const list = gotByMarket.get(r.ticker) ?? [];
        list.push(`${r.ts}|${r.side}|${formatScaled(parseScaled(r.price))}|${formatScaled(parseScaled(r.delta))}`);
        gotByMarket.set(r.ticker, list);
      }
      const wantByMarket = new Map<string, string[]>();
      for (const d of deltas) {
        const list = wantByMarket.get(d.m) ?? [];
        list.push(`${d.t}|${d.side}|${formatScaled(parseScaled(d.p))}|${formatScaled(parseScaled(d.d))}`);
        wantByMarket.set(d.m, list);
      }
      // A new market subscribed after it opened: its changes before the first stored one are
      // unrecoverable and ledgered (new_market), as the truth comparison above counts them.
      const late = await loadUnrecoverableWindows(db);
      for (const [m, want] of wantByMarket) {
        const firstGot = Number((gotByMarket.get(m)?.[0] ?? 'Infinity|').split('|')[0]);
        const excused = (entry: string): boolean => {
          const ts = Number(entry.split('|')[0]);
          return ts < firstGot && late.some((w) => w.ticker === m && ts >= w.fromUs && ts <= w.toUs);
        };
        let skip = 0;
        while (skip < want.length && excused(want[skip]!)) skip++;
        assert.deepEqual(gotByMarket.get(m) ?? [], want.slice(skip), `delta order of ${m}`);
      }

      // Tickers: every update once; lifecycle events present.
      const tickerCount = (await db.query('SELECT count(*)::int AS n FROM tickers WHERE exchange_ts BETWEEN $1 AND $2', [span.fromUs, span.toUs])).rows[0].n;
      assert.equal(tickerCount, window.filter((r) => r.k === 'ticker').length, 'ticker updates recorded once each');
      const life = await db.query(`SELECT ticker, event_type FROM lifecycle_events`);
      const haveLife = new Set(life.rows.map((r) => `${r.ticker}|${r.event_type}`));
      for (const l of window.filter((r) => r.k === 'lifecycle')) {
        if (l.k === 'lifecycle') assert.ok(haveLife.has(`${l.m}|${l.event_type}`), `lifecycle ${l.m} ${l.event_type} recorded`);
      }

      // Books: the subscription snapshot plus the recorded deltas equal every truth checkpoint.
      const snaps = await db.query(
        `SELECT DISTINCT ON (ticker) ticker, yes_levels, no_levels FROM orderbook_snapshots WHERE source = 'ws' ORDER BY ticker, snapshot_ts`,
      );
      const base = new Map(snaps.rows.map((r) => [r.ticker as string, { yes: r.yes_levels as [string, string][], no: r.no_levels as [string, string][] }]));
      let checked = 0;
      for (const cp of window.filter((r): r is BookRec => r.k === 'book')) {
        const snap = base.get(cp.m);
        if (!snap) continue; // a market created during the run starts empty and has no subscription snapshot
        // A new market subscribed after it opened: its snapshot holds changes the truth lists before it.
        if (late.some((w) => w.ticker === cp.m)) continue;
        const book = { yes: levelsOf(snap.yes), no: levelsOf(snap.no) };
        for (const d of deltas) if (d.m === cp.m && d.n < cp.n) applyLevels(book, d.side, d.p, d.d);
        const rows = (gotByMarket.get(cp.m) ?? []).map((k) => k.split('|'));
        const fromDb = { yes: levelsOf(snap.yes), no: levelsOf(snap.no) };
        const due = deltas.filter((d) => d.m === cp.m && d.n < cp.n).length;
        for (const [, side, price, delta] of rows.slice(0, due)) applyLevels(fromDb, side!, price!, delta!);
        assert.equal(render(fromDb.yes), render(levelsOf(cp.yes)), `${cp.m} YES book at checkpoint ${cp.n}`);
        assert.equal(render(fromDb.no), render(levelsOf(cp.no)), `${cp.m} NO book at checkpoint ${cp.n}`);
        assert.equal(render(book.yes), render(fromDb.yes));
        checked++;
      }
      assert.ok(checked > 100, `book checkpoints compared: ${checked}`);
    } finally {
      await db.end();
    }
  } catch (err) {
    process.stderr.write(logLines.slice(-30).join(''));
    throw err;
  }
});
