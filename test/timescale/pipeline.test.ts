// The recording pipeline on a real TimescaleDB (issue 18 item 5): the simulator's exchange, two real
// gatherers writing into TimescaleDB gatherer databases, each with a gap (g1 stops mid-run, g2
// starts late, both record the stretch between), and the real deduplicator merging them into a
// TimescaleDB production database, checked against the simulator's truth file: every trade and
// delta of the run exactly once, with equal contents. Neither gatherer alone holds the run, and
// every table checked stores its rows in hypertable chunks, so the test cannot pass on plain
// PostgreSQL. Skipped, with the reason, where there is no TimescaleDB (test/harness/pg.ts).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Client } from 'pg';
import { startDeduplicator } from '../../src/dedup/service';
import type { Gatherer } from '../../src/gatherer/service';
import { verifyAgainstTruth, formatTruthComparison, type TruthComparison } from '../../src/ops/truth';
import { readTruthExpectation } from '../../src/ops/truth-file';
import { migrate } from '../../src/schema/migrate';
import type { SchemaKind } from '../../src/schema/ddl';
import { connect, dedupOptions } from '../dedup/fixtures';
import { gathererOptions, quiesce, snapshotsIn, startPausedSimulator, startTestGatherer, waitFor, waitSubscribed, type SimRun } from '../harness/gatherer';
import { useTimescale, withClient } from '../harness/pg';

const timescale = useTimescale();
const skip = timescale.skip;

const MARKETS = 50;
/** What the exchange makes in each of the three stretches: g1 alone, both, g2 alone. */
const STRETCH = { trades: 15, deltas: 800 };
/** Tables the check reads; each must be a hypertable with its rows in chunks. */
const CHECKED = ['trades', 'orderbook_deltas', 'tickers', 'orderbook_snapshots'] as const;

/** A new database on the TimescaleDB server, migrated with engine timescale. */
async function timescaleDb(kind: SchemaKind): Promise<string> {
  const url = await timescale.server().newDatabase(kind === 'gatherer' ? 'kdp_g' : 'kdp_p');
  const r = await withClient(url, (c) => migrate(c, { kind, engine: 'timescale' }));
  assert.equal(r.engine, 'timescale');
  return url;
}

/** Waits until the running exchange has made a stretch's trades and deltas since record index `from`. */
async function exchangeStretch(run: SimRun, from: number, what: string): Promise<void> {
  await waitFor(
    what,
    () => {
      let trades = 0;
      let deltas = 0;
      for (const r of run.records.slice(from)) {
        if (r.k === 'trade') trades++;
        else if (r.k === 'delta') deltas++;
      }
      return trades >= STRETCH.trades && deltas >= STRETCH.deltas;
    },
    60_000,
    100,
  );
}

/** Waits until a gatherer holds a snapshot of every market, committed or waiting for its sid's next delta (its feed is complete from there). */
async function snapshotsCommitted(dbUrl: string, g: Gatherer, who: string): Promise<void> {
  await withClient(dbUrl, (c) => waitFor(`${who}: initial snapshots committed or held`, async () => (await snapshotsIn(c, g)) >= MARKETS));
}

/** Asserts the table is a hypertable that holds rows, all of them in its chunks (none in the parent). */
async function assertInChunks(c: Client, table: string): Promise<void> {
  const ht = await c.query(`SELECT num_chunks FROM timescaledb_information.hypertables WHERE hypertable_name = $1`, [table]);
  assert.equal(ht.rowCount, 1, `${table} is a hypertable`);
  assert.ok(Number(ht.rows[0].num_chunks) > 0, `${table} has chunks`);
  const total = Number((await c.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n);
  const parent = Number((await c.query(`SELECT count(*)::int AS n FROM ONLY ${table}`)).rows[0].n);
  assert.ok(total > 0, `${table} holds rows`);
  assert.equal(parent, 0, `${table}: every row is in a chunk`);
}

describe('recording pipeline on TimescaleDB', () => {
  test('two gatherers with gaps and the deduplicator put every trade and delta of the run into TimescaleDB production exactly once', { skip }, async () => {
    const [g1Url, g2Url, prodUrl] = await Promise.all([timescaleDb('gatherer'), timescaleDb('gatherer'), timescaleDb('production')]);
    // Markets live ~11 days: none is created during the run. A market created while g2 starts,
    // after its REST discovery listing and before its lifecycle subscription, is found by g2's
    // start-up reconcile and its opening ledgered as new_market (test/gatherer/startup.test.ts):
    // timing, not TimescaleDB, would then decide which deltas g2 has.
    const run = await startPausedSimulator({
      markets: MARKETS,
      rate: 1500,
      seed: 18,
      pingIntervalMs: 1000,
      checkpointIntervalMs: 500,
      marketLifetimeS: 1_000_000,
    });
    const logs: Record<string, string[]> = {};
    const gatherers: Gatherer[] = [];
    const startGatherer = async (name: string, dbUrl: string): Promise<Gatherer> => {
      const { gatherer, logLines } = await startTestGatherer(gathererOptions(dbUrl, run.sim, { gathererId: name }));
      logs[name] = logLines;
      gatherers.push(gatherer);
      return gatherer;
    };
    let afterN = 0;
    let throughN = 0;
    try {
      // g1 records from before the run starts.
      const g1 = await startGatherer('g1', g1Url);
      await waitSubscribed(g1, MARKETS);
      await snapshotsCommitted(g1Url, g1, 'g1');
      // The run: the exchange records after the resume (the paused exchange's earlier records, its
      // opening books, are in the subscription snapshots).
      const start = run.records.length;
      afterN = run.sim.stats().records;
      run.sim.resume();
      // g1 alone; then g2 joins late and both record; then g1 stops and g2 alone records.
      await exchangeStretch(run, start, 'the exchange ran with g1 alone');
      const g2 = await startGatherer('g2', g2Url);
      await waitSubscribed(g2, MARKETS);
      await snapshotsCommitted(g2Url, g2, 'g2');
      await exchangeStretch(run, run.records.length, 'the exchange ran with both gatherers');
      assert.equal(await g1.stop(), true, 'g1 stopped mid-run and drained every ring');
      await exchangeStretch(run, run.records.length, 'the exchange ran with g2 alone');
      run.sim.pause();
      await quiesce(g2);
      assert.equal(await g2.stop(), true, 'g2 drained every ring');
      throughN = run.sim.stats().records;
    } catch (err) {
      for (const [name, lines] of Object.entries(logs)) process.stderr.write(`${name}:\n${lines.slice(-30).join('')}`);
      throw err;
    } finally {
      await Promise.all(gatherers.map((g) => g.stop().catch(() => undefined)));
      await run.sim.stop();
    }

    // The truth file is complete once the simulator stopped: the run is the records after the resume.
    const truth = await readTruthExpectation(run.truthFile, { afterN, throughN });
    assert.ok(
      truth.expected.trades.length >= 3 * STRETCH.trades && truth.expected.deltas.length >= 3 * STRETCH.deltas,
      `the run made ${truth.expected.trades.length} trades and ${truth.expected.deltas.length} deltas`,
    );

    const clients: Client[] = [];
    try {
      for (const url of [g1Url, g2Url, prodUrl]) clients.push(await connect(url));
      const [g1Db, g2Db, prod] = clients as [Client, Client, Client];
      // Each gatherer has a gap: alone, neither holds the run.
      const own: Record<string, TruthComparison> = {
        g1: await verifyAgainstTruth(g1Db, truth.expected, truth.span),
        g2: await verifyAgainstTruth(g2Db, truth.expected, truth.span),
      };
      for (const [name, c] of Object.entries(own)) assert.ok(c.deltas.counts.lost > 0, `${name} alone misses deltas of the run: ${formatTruthComparison(c)}`);

      const d = await startDeduplicator({
        options: dedupOptions(
          [
            { name: 'g1', url: g1Url },
            { name: 'g2', url: g2Url },
          ],
          prodUrl,
        ),
        loop: false,
        http: false,
      });
      let duplicates = 0;
      try {
        await waitFor(
          'the deduplicator merged everything',
          async () => {
            const cycle = await d.runOnce();
            for (const [name, g] of Object.entries(cycle.gatherers)) assert.equal(g.error, undefined, `${name}: ${g.error}`);
            assert.equal(cycle.rds, 'connected');
            duplicates += cycle.duplicates;
            return !cycle.more;
          },
          60_000,
          0,
        );
      } finally {
        await d.stop();
      }
      assert.ok(duplicates > 0, 'rows both gatherers recorded were merged once (duplicates skipped)');

      const comparison = await verifyAgainstTruth(prod, truth.expected, truth.span);
      assert.ok(comparison.ok, formatTruthComparison(comparison));
      assert.equal(comparison.trades.actual, truth.expected.trades.length, 'every trade of the run once');
      assert.equal(comparison.deltas.actual, truth.expected.deltas.length, 'every delta of the run once');
      const bySource = await prod.query(`SELECT gatherer, count(*)::int AS n FROM orderbook_snapshots GROUP BY 1 ORDER BY 1`);
      assert.deepEqual(
        bySource.rows.map((r) => r.gatherer),
        ['g1', 'g2'],
        "each gatherer's snapshots are kept, with provenance",
      );

      // Real TimescaleDB storage: the schemas say so, and the recorded rows live in hypertable chunks.
      for (const c of clients) {
        assert.equal((await c.query(`SELECT engine FROM kdp_schema`)).rows[0].engine, 'timescale');
        for (const table of CHECKED) await assertInChunks(c, table);
      }
    } finally {
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    }
  });
});
