// The replay round trip (issue 20 part 6): a window recorded from the simulator (ground truth) by a
// real gatherer and the deduplicator into production P1 is replayed by `kdp replay`'s server to a
// fresh gatherer, whose rows the deduplicator merges into a second production P2. P2 must hold
// the window's trades, deltas and tickers exactly as P1 does (every non-provenance column), equal
// to the simulator's truth, and the books at sampled times must be equal.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Client } from 'pg';
import { createLogger } from '../../src/core/log';
import { startDeduplicator } from '../../src/dedup/service';
import type { Gatherer } from '../../src/gatherer/service';
import { reconstructBook, type Book } from '../../src/ops/book';
import { formatScaled, parseScaled } from '../../src/ops/decimal';
import { formatTruthComparison, verifyAgainstTruth } from '../../src/ops/truth';
import { startReplay } from '../../src/replay/replay';
import { connect, dedupOptions, newDb } from '../dedup/fixtures';
import { expectedFrom, gathererOptions, quiesce, startPausedSimulator, startTestGatherer, waitFor, waitSubscribed } from '../harness/gatherer';
import { startPg, type TestPg } from '../harness/pg';

const MARKETS = 12;

let pg: TestPg;
before(async () => {
  pg = await startPg();
});
after(async () => {
  await pg?.close();
});

/** Runs the deduplicator over one gatherer until nothing is left to merge. */
async function mergeAll(gathererUrl: string, name: string, productionUrl: string): Promise<void> {
  const d = await startDeduplicator({ options: dedupOptions([{ name, url: gathererUrl }], productionUrl), loop: false, http: false });
  try {
    await waitFor(
      `${name} merged into production`,
      async () => {
        const cycle = await d.runOnce();
        assert.equal(cycle.gatherers[name]?.error, undefined, String(cycle.gatherers[name]?.error));
        return !cycle.more;
      },
      60_000,
      0,
    );
  } finally {
    await d.stop();
  }
}

const TRADE_COLS = 'trade_id, ticker, yes_price, no_price, count, taker_side, taker_outcome_side, taker_book_side, is_block_trade, exchange_ts, source';
const DELTA_COLS = 'ticker, side, price, delta, exchange_ts, occurrence';
const TICKER_COLS =
  'ticker, price, yes_bid, yes_ask, yes_bid_size, yes_ask_size, last_trade_size, volume, open_interest, dollar_volume, dollar_open_interest, exchange_ts, fingerprint, occurrence';

async function rows(c: Client, table: string, cols: string, fromUs: number, toUs: number): Promise<string[]> {
  const r = await c.query(`SELECT ${cols} FROM ${table} WHERE exchange_ts > $1 AND exchange_ts <= $2 ORDER BY ${cols}`, [fromUs, toUs]);
  return r.rows.map((x) => JSON.stringify(x));
}

/**
 * P2's book of a market at `atUs`: its first WebSocket snapshot (the replay's book at T1, taken
 * while the clock was held there) plus P2's deltas after T1. P2 has no later snapshot to anchor
 * reconstructBook on (a subscription's first snapshot is never an anchor: docs/semantics.md).
 */
async function replayedBook(c: Client, ticker: string, t1: number, atUs: number): Promise<{ yes: string[][]; no: string[][] }> {
  const s = await c.query(`SELECT yes_levels, no_levels FROM orderbook_snapshots WHERE ticker = $1 AND source = 'ws' ORDER BY snapshot_ts LIMIT 1`, [ticker]);
  assert.equal(s.rowCount, 1, `${ticker}: the replayed subscription's snapshot`);
  const sides: Record<string, Map<bigint, bigint>> = { yes: new Map(), no: new Map() };
  for (const side of ['yes', 'no'] as const) {
    for (const [p, q] of s.rows[0][`${side}_levels`] as [string, string][]) sides[side]!.set(parseScaled(p), parseScaled(q));
  }
  const d = await c.query(`SELECT side, price::text, delta::text FROM orderbook_deltas WHERE ticker = $1 AND exchange_ts > $2 AND exchange_ts <= $3`, [
    ticker,
    t1,
    atUs,
  ]);
  for (const r of d.rows) {
    const side = sides[r.side]!;
    const p = parseScaled(r.price);
    side.set(p, (side.get(p) ?? 0n) + parseScaled(r.delta));
  }
  const ladder = (m: Map<bigint, bigint>) =>
    [...m.entries()]
      .filter(([, q]) => q > 0n)
      .sort((a, b) => (a[0] > b[0] ? -1 : 1))
      .map(([p, q]) => [formatScaled(p), formatScaled(q)]);
  return { yes: ladder(sides.yes!), no: ladder(sides.no!) };
}

const bookOf = (b: Book) => ({ yes: b.yes.map((l) => [l.price, l.size]), no: b.no.map((l) => [l.price, l.size]) });

describe('kdp replay round trip', () => {
  test('a recorded window replayed to a fresh gatherer records again into production exactly: trades, deltas, tickers and books', async () => {
    const clients: Client[] = [];
    const gatherers: Gatherer[] = [];
    const run = await startPausedSimulator({
      markets: MARKETS,
      rate: 600,
      seed: 620,
      pingIntervalMs: 1000,
      checkpointIntervalMs: 500,
      marketLifetimeS: 1_000_000,
    });
    const [g1, p1, g2, p2] = [
      await newDb(pg, 'gatherer', clients),
      await newDb(pg, 'production', clients),
      await newDb(pg, 'gatherer', clients),
      await newDb(pg, 'production', clients),
    ];
    let replay: Awaited<ReturnType<typeof startReplay>> | undefined;
    try {
      // 1. Record: the simulator's exchange through g1 into P1.
      const { gatherer: rec1 } = await startTestGatherer(gathererOptions(g1.url, run.sim, { gathererId: 'g1' }));
      gatherers.push(rec1);
      await waitSubscribed(rec1, MARKETS);
      run.sim.resume();
      // A seq gap on every book sid: g1 resyncs with get_snapshot, whose snapshots carry
      // last_delta_ts and so anchor production's books (a subscription's first snapshot does not).
      await waitFor('deltas flowing', () => run.records.filter((r) => r.k === 'delta').length > 200);
      for (const c of run.sim.connections())
        for (const s of c.subs) if (s.channel === 'orderbook_delta') run.sim.injectFault({ kind: 'skipseq', conn: c.id, sid: s.sid });
      // Markets opening during the run (the simulator's unopened ones) are subscribed too: every book counts.
      const anchored = async () => {
        const r = await g1.c.query(
          `SELECT count(DISTINCT ticker)::int AS books, count(DISTINCT ticker) FILTER (WHERE last_delta_ts IS NOT NULL)::int AS anchored
             FROM orderbook_snapshots WHERE source = 'ws'`,
        );
        return r.rows[0].books >= MARKETS && r.rows[0].anchored === r.rows[0].books;
      };
      await waitFor('every book anchored after the resync', anchored, 30_000, 100);
      // Anchors are placed by receive time (snapshot_ts) and exchange time (last_delta_ts): T1 is past both.
      const a = await g1.c.query(
        `SELECT max(m)::text AS t1 FROM (SELECT ticker, min(GREATEST(snapshot_ts, last_delta_ts)) AS m FROM orderbook_snapshots
          WHERE source = 'ws' AND last_delta_ts IS NOT NULL GROUP BY ticker) x`,
      );
      const t1 = Number(a.rows[0].t1);
      await waitFor('the exchange ran 4 s past T1', () => run.sim.nowUs() > t1 + 4_000_000, 60_000, 100);
      run.sim.pause();
      await quiesce(rec1);
      assert.equal(await rec1.stop(), true, 'g1 drained');
      await run.sim.stop();
      await mergeAll(g1.url, 'g1', p1.url);
      const t2 = run.records[run.records.length - 1]!.t;

      // The window's ground truth, and P1 holds it (the recording itself is exact).
      const windowRecs = run.records.filter((r) => (r.k === 'trade' ? Math.floor(r.t / 1000) * 1000 : r.t) > t1 && r.t <= t2);
      const truth = expectedFrom(windowRecs);
      assert.ok(truth.trades.length >= 10 && truth.deltas.length >= 500, `the window holds ${truth.trades.length} trades, ${truth.deltas.length} deltas`);
      const span = { fromUs: t1 + 1, toUs: t2 };
      const rec1Truth = await verifyAgainstTruth(p1.c, truth, span);
      assert.ok(rec1Truth.ok, `P1 against the truth: ${formatTruthComparison(rec1Truth)}`);

      // 2. Replay (T1, T2] from P1 to a fresh gatherer g2, as fast as it reads; merge into P2.
      replay = await startReplay(
        { productionUrl: p1.url, startUs: t1, endUs: t2, pace: 'fast', waitForBooks: true, pingIntervalMs: 1000 },
        createLogger('replay', { level: 'warn' }),
      );
      assert.deepEqual(replay.universe.unanchored, [], 'every market has a book at T1');
      const books = (await p1.c.query(`SELECT count(DISTINCT ticker)::int AS n FROM orderbook_snapshots WHERE source = 'ws'`)).rows[0].n;
      assert.equal(replay.universe.openAtStart, books, 'every market g1 recorded a book of is open at T1');
      const { gatherer: rec2 } = await startTestGatherer(gathererOptions(g2.url, replay.sim, { gathererId: 'g2' }));
      gatherers.push(rec2);
      await replay.finished;
      await quiesce(rec2);
      assert.equal(await rec2.stop(), true, 'g2 drained');
      const stats = replay.stats();
      assert.equal(stats.skippedUnknownMarket + stats.skippedUnsendable, 0, 'every row of the window was served');
      await replay.stop();
      await mergeAll(g2.url, 'g2', p2.url);

      // 3. Same rows, every non-provenance column; and equal to the simulator's truth.
      for (const [table, cols] of [
        ['trades', TRADE_COLS],
        ['orderbook_deltas', DELTA_COLS],
        ['tickers', TICKER_COLS],
      ] as const) {
        const [one, two] = [await rows(p1.c, table, cols, t1, t2), await rows(p2.c, table, cols, t1, t2)];
        assert.ok(one.length > 0, `${table}: the window has rows`);
        assert.deepEqual(two, one, `${table}: P2 holds exactly P1's rows of the window`);
        const outside = await p2.c.query(`SELECT count(*)::int AS n FROM ${table} WHERE exchange_ts <= $1 OR exchange_ts > $2`, [t1, t2]);
        assert.equal(outside.rows[0].n, 0, `${table}: nothing outside the window`);
      }
      const rec2Truth = await verifyAgainstTruth(p2.c, truth, span);
      assert.ok(rec2Truth.ok, `P2 against the truth: ${formatTruthComparison(rec2Truth)}`);
      assert.equal(rec2Truth.deltas.actual, truth.deltas.length);
      assert.equal(rec2Truth.trades.actual, truth.trades.length);

      // 4. Books: P1's reconstruction equals the replayed recording's at T1 and at sampled times.
      const tickers = (await p1.c.query(`SELECT DISTINCT ticker FROM orderbook_deltas ORDER BY 1`)).rows.map((r) => r.ticker as string);
      for (const at of [t1, t1 + Math.floor((t2 - t1) / 3), t1 + Math.floor((2 * (t2 - t1)) / 3), t2]) {
        for (const ticker of tickers) {
          assert.deepEqual(await replayedBook(p2.c, ticker, t1, at), bookOf(await reconstructBook(p1.c, ticker, at)), `${ticker} at ${at}`);
        }
      }
    } finally {
      await Promise.all(gatherers.map((g) => g.stop().catch(() => undefined)));
      await replay?.stop();
      await run.sim.stop();
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    }
  });
});

export { connect };
