import { tradeKeyTimeUs } from '../../src/kalshi/protocol';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Pool } from 'pg';
import { after, before, beforeEach, describe, test } from 'node:test';
import { resolveOptions } from '../../src/config/validate';
import { TradeBackfill } from '../../src/gatherer/backfill';
import { ManualClock } from '../../src/gatherer/clock';
import { BACKFILL_SPEC, REST_CLIENT_SPEC } from '../../src/gatherer/options';
import { RestClient } from '../../src/gatherer/rest';
import { tradeRowLine } from '../../src/gatherer/rows';
import { parseTrade } from '../../src/gatherer/shapes';
import { startRestTestEnv, type RestTestEnv } from './fixtures/env';
import { KalshiTestServer, type Json } from './fixtures/kalshi-test-server';
import { pgWriteRows } from './fixtures/pg-writer';

const T0 = Date.UTC(2026, 10, 23, 12, 0, 0);
const FROM_US = T0 * 1000;
const TO_US = (T0 + 60_000) * 1000;
let pool: Pool;
let server: KalshiTestServer;
let baseUrl: string;

/** created_time with microseconds: T0 + offsetMs + 0.456 ms. */
function trade(ticker: string, offsetMs: number, extra: Json = {}): Json {
  const d = new Date(T0 + offsetMs).toISOString().replace('Z', '456Z');
  return {
    trade_id: randomUUID(),
    ticker,
    yes_price_dollars: '0.3650',
    no_price_dollars: '0.6350',
    count_fp: '136.57',
    taker_side: 'no',
    taker_outcome_side: 'no',
    taker_book_side: 'ask',
    created_time: d,
    ...extra,
  };
}

let env: RestTestEnv;
before(async () => {
  env = await startRestTestEnv(T0 * 1000);
  ({ pool, server, baseUrl } = env);
});
after(async () => {
  await env?.close();
});
beforeEach(async () => {
  server.requests.length = 0;
  server.trades.length = 0;
  await pool.query('TRUNCATE trades, ingest_batches');
});

function backfiller(over: Record<string, unknown> = {}): TradeBackfill {
  const clock = new ManualClock(T0 + 120_000);
  const rest = new RestClient(
    resolveOptions(REST_CLIENT_SPEC, {
      restBaseUrl: baseUrl,
      restTokensPerSec: 1e6,
      restBurstTokens: 1e6,
    }),
    { clock, random: () => 0 },
  );
  return new TradeBackfill(resolveOptions(BACKFILL_SPEC, { backfillPageLimit: 50, ...over }), {
    rest,
    writeRows: pgWriteRows(pool),
    gatherer: 'g2',
    clock,
  });
}

/** The live (WebSocket) copy of a trade as the live path stores it: ts_ms x 1000, source ws. */
function liveLine(t: Json): string {
  return tradeRowLine(parseTrade(t, 'live'), (T0 + 1) * 1000, 'g2')
    .replace('\trest\t', '\tws\t')
    .replace(/\t0\t0\t\\N\t\\N$/, '\t3\t2\t\\N\t\\N'); // conn_id, sid, seq, sent_at
}

describe('trade backfill', () => {
  test('stores every missing trade of the window exactly once, also when some are already present from live', async () => {
    const a = Array.from({ length: 130 }, (_, i) => trade('KXT-A-1', i * 400));
    const b = Array.from({ length: 20 }, (_, i) => trade('KXT-B-1', i * 2500));
    const marginIn = trade('KXT-A-1', -3_000); // inside the 5 s margin
    const outside = trade('KXT-A-1', -600_000);
    const otherMarket = trade('KXT-C-1', 1000);
    server.trades.push(...a, ...b, marginIn, outside, otherMarket);
    const live = [a[0]!, a[64]!, b[3]!];
    await pgWriteRows(pool, 'live')('trades', live.map(liveLine));

    const bf = backfiller();
    const result = await bf.backfill({
      tickers: ['KXT-A-1', 'KXT-B-1'],
      fromUs: FROM_US,
      toUs: TO_US,
    });
    assert.deepEqual(result, { completed: 2, failed: 0, refused: 0, trades: 151 });
    const rows = (await pool.query(`SELECT trade_id::text, source, conn_id, sid, seq, exchange_ts, count::text, yes_price::text FROM trades`)).rows;
    assert.equal(rows.length, 151, '130 + 20 + the margin trade, each once');
    assert.equal(new Set(rows.map((r) => r.trade_id)).size, 151);
    const bySource = rows.reduce<Record<string, number>>((m, r) => ((m[r.source] = (m[r.source] ?? 0) + 1), m), {});
    assert.deepEqual(bySource, { ws: 3, rest: 148 }, 'the live copies stay; REST adds only what was missing');
    const firstA = rows.find((r) => r.trade_id === a[1]!.trade_id)!;
    assert.equal(Number(firstA.exchange_ts), tradeKeyTimeUs((T0 + 400) * 1000), 'created_time .456 µs-part truncated to the millisecond (the trade key time)');
    assert.equal(firstA.count, '136.57');
    assert.equal(firstA.yes_price, '0.365000');
    assert.equal(firstA.conn_id, 0);
    assert.equal(firstA.sid, 0);
    assert.equal(firstA.seq, null);
    assert.ok(!rows.some((r) => r.trade_id === outside.trade_id || r.trade_id === otherMarket.trade_id));
    const aCalls = server.requests.filter((r) => r.query.get('ticker') === 'KXT-A-1');
    assert.equal(aCalls.length, 3, '131 trades in pages of 50');
    assert.equal(aCalls[0]!.query.get('min_ts'), String((T0 - 5000) / 1000));
    assert.equal(aCalls[0]!.query.get('max_ts'), String((T0 + 65_000) / 1000));

    const again = await bf.backfill({
      tickers: ['KXT-A-1', 'KXT-B-1'],
      fromUs: FROM_US,
      toUs: TO_US,
    });
    assert.equal(again.trades, 151);
    assert.equal((await pool.query(`SELECT count(*)::int AS n FROM trades`)).rows[0].n, 151, 'a second backfill adds nothing');
  });

  test('overlapping windows of one ticker queued together merge into one fetch; the others wait their turn', async () => {
    server.trades.push(trade('KXT-A-1', 1000), trade('KXT-B-1', 1000), trade('KXT-B-1', 100_000));
    const bf = backfiller({ backfillConcurrency: 1, backfillMarginMs: 0 });
    const r1 = bf.backfill({ tickers: ['KXT-A-1'], fromUs: FROM_US, toUs: TO_US });
    const r2 = bf.backfill({ tickers: ['KXT-B-1'], fromUs: FROM_US, toUs: TO_US });
    const r3 = bf.backfill({
      tickers: ['KXT-B-1'],
      fromUs: TO_US - 1_000_000,
      toUs: (T0 + 120_000) * 1000,
    });
    assert.equal(bf.queuedWindows(), 1, 'B queued once after merging; A is running');
    const [o1, o2, o3] = await Promise.all([r1, r2, r3]);
    assert.equal(o1.completed + o2.completed + o3.completed, 3);
    assert.equal(bf.stats.windowsMerged, 1);
    const bCalls = server.requests.filter((r) => r.query.get('ticker') === 'KXT-B-1');
    assert.equal(bCalls.length, 1);
    assert.equal(bCalls[0]!.query.get('min_ts'), String(T0 / 1000));
    assert.equal(bCalls[0]!.query.get('max_ts'), String((T0 + 120_000) / 1000));
    assert.equal((await pool.query(`SELECT count(*)::int AS n FROM trades`)).rows[0].n, 3);
  });

  test("'all' backfills every market in one listing; 429s are retried; a full queue refuses and reports", async () => {
    server.trades.push(trade('KXT-A-1', 1000), trade('KXT-B-1', 2000), trade('KXT-C-1', 3000, { is_block_trade: true }));
    server.rateLimitNext = 2;
    const bf = backfiller();
    const r = await bf.backfill({ tickers: 'all', fromUs: FROM_US, toUs: TO_US });
    assert.deepEqual(r, { completed: 1, failed: 0, refused: 0, trades: 3 });
    const calls = server.requests.filter((x) => x.path.endsWith('/markets/trades'));
    assert.equal(calls.length, 3);
    assert.ok(calls.every((c) => c.query.get('ticker') === null));
    assert.equal((await pool.query(`SELECT is_block_trade FROM trades WHERE ticker = 'KXT-C-1'`)).rows[0].is_block_trade, true);

    const small = backfiller({ backfillMaxQueuedWindows: 2, backfillConcurrency: 1 });
    const many = await small.backfill({
      tickers: ['A-1', 'A-2', 'A-3', 'A-4', 'A-5'],
      fromUs: FROM_US,
      toUs: TO_US,
    });
    assert.equal(many.refused, 3);
    assert.equal(many.completed, 2);
  });

  test('a window whose fetch keeps failing is reported failed, never silently dropped', async () => {
    server.serverErrorNext = 100;
    const bf = backfiller();
    const r = await bf.backfill({ tickers: ['KXT-A-1'], fromUs: FROM_US, toUs: TO_US });
    assert.deepEqual(r, { completed: 0, failed: 1, refused: 0, trades: 0 });
    assert.equal(bf.stats.windowsFailed, 1);
    server.serverErrorNext = 0;
  });
});
