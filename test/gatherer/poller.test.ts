import assert from 'node:assert/strict';
import { Pool } from 'pg';
import { after, before, beforeEach, describe, test } from 'node:test';
import { resolveOptions } from '../../src/config/validate';
import { isKdpError } from '../../src/core/errors';
import { ManualClock, systemClock } from '../../src/gatherer/clock';
import { POLLER_SPEC, REST_CLIENT_SPEC } from '../../src/gatherer/options';
import { SnapshotPoller, type PollerDeps } from '../../src/gatherer/poller';
import { RestClient } from '../../src/gatherer/rest';
import { startRestTestEnv, type RestTestEnv } from './fixtures/env';
import { KalshiTestServer } from './fixtures/kalshi-test-server';
import { pgWriteRows } from './fixtures/pg-writer';
import { waitFor } from '../harness/gatherer';

const T0 = Date.UTC(2026, 10, 23, 12, 0, 0);
let pool: Pool;
let server: KalshiTestServer;
let baseUrl: string;
const TICKERS = Array.from({ length: 250 }, (_, i) => `KXP-E1-T${i}`);

let env: RestTestEnv;
before(async () => {
  env = await startRestTestEnv(T0 * 1000);
  ({ pool, server, baseUrl } = env);
  TICKERS.forEach((t, i) => {
    if (i === 7) return; // one live market the exchange returns no book for
    server.orderbooks.set(t, {
      yes_dollars: [
        ['0.0100', '5.00'],
        [`0.${String(10 + (i % 80)).padStart(2, '0')}00`, '12.50'],
      ],
      no_dollars: [['0.3000', '1.00']],
    });
  });
});
after(async () => {
  await env?.close();
});
beforeEach(async () => {
  server.requests.length = 0;
  await pool.query('TRUNCATE orderbook_snapshots, ingest_batches');
});

function poller(clock: ManualClock | typeof systemClock, over: Record<string, unknown> = {}, deps: Partial<PollerDeps> = {}): SnapshotPoller {
  const restOpts = resolveOptions(REST_CLIENT_SPEC, {
    restBaseUrl: baseUrl,
    backoffInitialMs: 100,
    restTokensPerSec: 1e6,
    restBurstTokens: 1e6,
  });
  const rest = new RestClient(restOpts, { clock, random: () => 0.5 });
  const opts = {
    ...resolveOptions(POLLER_SPEC, over),
    restTokensPerSec: 200,
    restCostPerRequest: 10,
  };
  return new SnapshotPoller(opts, {
    rest,
    tickers: () => TICKERS,
    writeRows: pgWriteRows(pool),
    gatherer: 'g1',
    clock,
    ...deps,
  });
}

describe('snapshot poller', () => {
  test('one cycle stores a source=rest snapshot of every live market, batches of 100 spread evenly over the interval', async () => {
    const clock = new ManualClock(T0);
    server.rateLimitNext = 0;
    // One request at a time: the manual clock jumps to each slot at once, and the snapshot times
    // checked below are the times the answers came.
    const p = poller(clock, { pollInFlightMax: 1 });
    const result = await p.runCycle();
    assert.deepEqual(result, {
      tickers: 250,
      requests: 3,
      stored: 249,
      missing: 1,
      failedRequests: 0,
    });
    const calls = server.requests.filter((r) => r.path.endsWith('/markets/orderbooks'));
    assert.deepEqual(
      calls.map((r) => r.query.getAll('tickers').length), // repeated keys, one per ticker
      [100, 100, 50],
    );
    assert.deepEqual(clock.sleeps, [300_000, 300_000], '15 min / 3 batches');
    const rows = (await pool.query(`SELECT * FROM orderbook_snapshots ORDER BY snapshot_ts, ticker`)).rows;
    assert.equal(rows.length, 249);
    assert.deepEqual([...new Set(rows.map((r) => Number(r.snapshot_ts)))], [T0 * 1000, (T0 + 300_000) * 1000, (T0 + 600_000) * 1000]);
    for (const r of rows) {
      assert.equal(r.source, 'rest');
      assert.equal(r.conn_id, 0);
      assert.equal(r.sid, 0);
      assert.equal(r.seq, null);
      assert.equal(r.last_delta_ts, null);
      assert.equal(r.gatherer, 'g1');
      assert.equal(Number(r.received_at), Number(r.snapshot_ts));
    }
    const t3 = rows.find((r) => r.ticker === 'KXP-E1-T3');
    assert.deepEqual(t3.yes_levels, [
      ['0.0100', '5.00'],
      ['0.1300', '12.50'],
    ]);
    assert.deepEqual(t3.no_levels, [['0.3000', '1.00']]);
    assert.ok(!rows.some((r) => r.ticker === 'KXP-E1-T7'));
    const batches = (await pool.query(`SELECT table_name, row_count FROM ingest_batches ORDER BY batch_id`)).rows;
    assert.deepEqual(
      batches.map((b) => b.row_count),
      [99, 100, 50],
    );
    assert.ok(batches.every((b) => b.table_name === 'orderbook_snapshots'));
  });

  test('429s and 5xx during a cycle are absorbed by the client backoff; nothing is lost', async () => {
    const clock = new ManualClock(T0);
    server.rateLimitNext = 2;
    server.serverErrorNext = 1;
    const p = poller(clock);
    const result = await p.runCycle();
    assert.equal(result.stored, 249);
    assert.equal(result.failedRequests, 0);
    assert.equal(server.requests.length, 6, '3 batches + 3 retried attempts');
    assert.equal((await pool.query(`SELECT count(*)::int AS n FROM orderbook_snapshots WHERE source = 'rest'`)).rows[0].n, 249);
  });

  test('answers slower than the schedule: up to pollInFlightMax requests wait at once, and every book is stored', async () => {
    for (const inFlightMax of [1, 3]) {
      server.requests.length = 0;
      await pool.query('TRUNCATE orderbook_snapshots, ingest_batches');
      let release!: () => void;
      server.holdOrderbooks = new Promise<void>((r) => (release = r));
      const p = poller(new ManualClock(T0), { pollInFlightMax: inFlightMax });
      const cycle = p.runCycle();
      const asked = (): number => server.requests.filter((r) => r.path.endsWith('/markets/orderbooks')).length;
      await waitFor(`${inFlightMax} requests sent`, () => asked() >= inFlightMax);
      await new Promise((r) => setImmediate(r)); // a further request would have been sent by now
      assert.equal(asked(), inFlightMax, 'no more than pollInFlightMax unanswered');
      server.holdOrderbooks = undefined;
      release();
      const result = await cycle;
      assert.deepEqual([result.requests, result.stored, result.failedRequests], [3, 249, 0]);
    }
  });

  test('a request that keeps failing is counted and skipped; the rest of the cycle still runs', async () => {
    const clock = new ManualClock(T0);
    const p = poller(clock, { pollBatchTickers: 100, pollInFlightMax: 1 });
    // With restRetryMax 6, the first batch exhausts its 7 attempts on 503, then the server recovers.
    server.serverErrorNext = 7;
    const result = await p.runCycle();
    assert.equal(result.failedRequests, 1);
    assert.equal(result.stored, 150, 'the first batch (with the book-less market) was skipped');
    assert.equal(p.stats.failedRequests, 1);
  });

  test('pollNow stores one market at once and reports coded errors for unknown markets', async () => {
    const clock = new ManualClock(T0 + 5);
    const p = poller(clock, { pollDepth: 10 });
    const r = await p.pollNow('KXP-E1-T42');
    assert.deepEqual(r, {
      ticker: 'KXP-E1-T42',
      snapshotTs: (T0 + 5) * 1000,
      yesLevels: 2,
      noLevels: 1,
    });
    assert.equal(server.requests.at(-1)!.query.get('depth'), '10');
    const rows = (await pool.query(`SELECT ticker, source FROM orderbook_snapshots`)).rows;
    assert.deepEqual(rows, [{ ticker: 'KXP-E1-T42', source: 'rest' }]);
    await assert.rejects(p.pollNow('NOPE-1'), (e) => isKdpError(e, 'KDP_ERR_REST_CLIENT'));
  });

  test('start() polls in the background and stop() ends the loop (real clock)', async () => {
    let cycles = 0;
    let stopping: Promise<void> | undefined;
    const p: SnapshotPoller = poller(
      systemClock,
      { pollIntervalMs: 1000, pollBatchTickers: 100 },
      {
        tickers: () => TICKERS.slice(0, 150),
        onCycle: () => {
          cycles++;
          stopping = p.stop();
        },
      },
    );
    p.start();
    await waitFor('the first cycle to stop the poller', () => stopping !== undefined, 30_000, 20);
    await stopping;
    assert.equal(cycles, 1);
    assert.equal((await pool.query(`SELECT count(*)::int AS n FROM orderbook_snapshots`)).rows[0].n, 149);
  });
});
