// `kdp replay` against a production database written by hand, read by a plain WebSocket client
// (test/sim/client.ts) and REST: what is served, in which order, with which sids and seqs, and the
// cases a recorded run rarely has (a market created in the window, pauses, a closed market with no
// book, an empty ticker price, rows of markets outside the universe, lifecycle types the platform
// keeps whole). The read-ahead is 4 records and pages hold 2 rows, so the bounded feed refills and
// waits many times, and pages end inside one µs of one market's changes (after -10.00 at a price,
// before the second of two identical -1.00).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Client } from 'pg';
import { createLogger } from '../../src/core/log';
import { reconstructBook } from '../../src/ops/book';
import { REPLAY_APPLICATION_NAME } from '../../src/replay/db';
import { startReplay, type Replay } from '../../src/replay/replay';
import { waitFor } from '../harness/gatherer';
import { newDb } from '../dedup/fixtures';
import { insertRows, type Row } from '../ops/fixture';
import { startPg, type TestPg } from '../harness/pg';
import { TestClient } from '../sim/client';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { isExchangeRecord, readTruth, type ExchangeRecord } from '../../src/sim/truth';
import { exportOnce } from '../../src/archive/archiver';
import { resolveArchiveOptions } from '../../src/archive/options';

const S = 1_000_000;
const T1 = Date.UTC(2026, 10, 23, 12) * 1000;
const T2 = T1 + 60 * S;
const A = 'KXR-26NOV23-A';
const B = 'KXR-26NOV23-B';
const C = 'KXR-26NOV22-C';
const D = 'KXR-26NOV23-D';
const EVENT = 'KXR-26NOV23';
const log = createLogger('replay', { level: 'silent' });

let pg: TestPg;
const clients: Client[] = [];
let prod: { url: string; c: Client };
before(async () => {
  pg = await startPg();
  prod = await newDb(pg, 'production', clients);
  await fill(prod.c);
});
after(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  await pg?.close();
});

const iso = (us: number) => new Date(us / 1000).toISOString();

async function market(c: Client, ticker: string, event: string, openUs: number, closeUs: number, createdUs: number): Promise<void> {
  const raw = { ticker, event_ticker: event, title: `title ${ticker}`, yes_sub_title: 'Above 1', floor_strike: 1.5, created_time: iso(createdUs) };
  await c.query(
    `INSERT INTO markets (ticker, event_ticker, series_ticker, status, price_level_structure, open_time, close_time, raw, updated_at)
     VALUES ($1, $2, 'KXR', 'active', 'linear_cent', $3, $4, $5, 0)`,
    [ticker, event, openUs, closeUs, JSON.stringify(raw)],
  );
}

const delta = (ticker: string, side: string, price: string, d: string, ts: number, occurrence = 0): Row => ({
  ticker,
  side,
  price,
  delta: d,
  exchange_ts: ts,
  occurrence,
  received_at: ts + 500,
  gatherer: 'g1',
});
const trade = (ticker: string, id: string, ts: number): Row => ({
  trade_id: id,
  ticker,
  yes_price: '0.41',
  no_price: '0.59',
  count: '3.00',
  taker_side: 'yes',
  taker_outcome_side: 'yes',
  taker_book_side: 'bid',
  exchange_ts: ts,
  source: 'ws',
  received_at: ts + 700,
  gatherer: 'g1',
});
const lifecycle = (
  ticker: string | null,
  eventTicker: string | null,
  eventType: string,
  payload: object,
  at: number,
  channel = 'market_lifecycle_v2',
): Row => ({
  channel,
  ticker,
  event_ticker: eventTicker,
  event_type: eventType,
  payload,
  fingerprint: Math.floor(at / 1000) % 1_000_000_007,
  received_at: at + 9 * S,
  sent_at: at,
  gatherer: 'g1',
});

/** A open before T1 (anchored book), B created and opened in the window, C closed before T1 with no book. */
async function fill(c: Client): Promise<void> {
  await c.query(`INSERT INTO series (series_ticker, title, category, frequency, raw, updated_at) VALUES ('KXR', 'R', 'Test', 'daily', '{}', 0)`);
  await c.query(`INSERT INTO events (event_ticker, series_ticker, title, sub_title, raw, updated_at) VALUES ($1, 'KXR', 'E', 'sub', '{}', 0)`, [EVENT]);
  await market(c, A, EVENT, T1 - 3600 * S, T1 + 7200 * S, T1 - 7200 * S);
  await market(c, B, EVENT, T1 + 12 * S, T1 + 7200 * S, T1 + 10 * S);
  await market(c, C, EVENT, T1 - 7200 * S, T1 - 60 * S, T1 - 9000 * S);
  await market(c, D, EVENT, T2 + 100 * S, T2 + 7200 * S, T1 + 50 * S);
  await insertRows(
    c,
    'orderbook_snapshots',
    [
      {
        ticker: A,
        yes_levels: [['0.4000', '10.00']],
        no_levels: [['0.5500', '4.00']],
        snapshot_ts: T1 - 10 * S,
        source: 'ws',
        last_delta_ts: T1 - 11 * S,
        received_at: T1 - 10 * S,
        gatherer: 'g1',
      },
    ],
    true,
  );
  await insertRows(
    c,
    'orderbook_deltas',
    [
      delta(A, 'yes', '0.40', '-2.00', T1 - 5 * S),
      delta(A, 'yes', '0.42', '5.00', T1),
      delta(A, 'no', '0.55', '-1.00', T1 + 1 * S),
      delta(A, 'yes', '0.40', '-10.00', T1 + 2 * S),
      delta(A, 'yes', '0.40', '-1.00', T1 + 2 * S, 0),
      delta(A, 'yes', '0.40', '-1.00', T1 + 2 * S, 1),
      delta(B, 'yes', '0.301', '7.50', T1 + 13 * S),
      delta(A, 'yes', '0.42', '1.00', T2 + 1),
    ],
    true,
  );
  await insertRows(
    c,
    'trades',
    [
      trade(A, '00000000-0000-4000-8000-000000000009', T1 - 30 * S),
      trade(A, '00000000-0000-4000-8000-000000000001', T1 + 3 * S),
      trade(B, '00000000-0000-4000-8000-000000000002', T1 + 14 * S),
      trade('ZZZ-UNKNOWN', '00000000-0000-4000-8000-000000000003', T1 + 4 * S),
    ],
    true,
  );
  await insertRows(
    c,
    'tickers',
    [
      { ticker: A, volume: '9.00', exchange_ts: T1 - 20 * S, fingerprint: 7, occurrence: 0, received_at: T1 - 20 * S, gatherer: 'g1' },
      {
        ticker: A,
        price: null,
        yes_bid: '0.42',
        yes_ask: '0.46',
        volume: '10.00',
        dollar_volume: 4,
        exchange_ts: T1 + 5 * S,
        fingerprint: 1,
        occurrence: 0,
        received_at: T1 + 5 * S,
        gatherer: 'g1',
      },
    ],
    true,
  );
  await insertRows(
    c,
    'lifecycle_events',
    [
      lifecycle(B, EVENT, 'created', { market_ticker: B, event_type: 'created', open_ts: (T1 + 12 * S) / S, close_ts: (T1 + 7200 * S) / S }, T1 + 10 * S),
      lifecycle(A, EVENT, 'deactivated', { market_ticker: A, event_type: 'deactivated', is_deactivated: true }, T1 + 20 * S),
      lifecycle(A, EVENT, 'activated', { market_ticker: A, event_type: 'activated', is_deactivated: false }, T1 + 30 * S),
      lifecycle(null, null, 'unknown', { type: 'mystery', msg: {} }, T1 + 31 * S, 'mystery'),
      lifecycle(A, EVENT, 'deactivated', { market_ticker: A, event_type: 'deactivated', is_deactivated: true }, T1 + 40 * S),
      lifecycle(D, EVENT, 'created', { market_ticker: D, event_type: 'created', open_ts: (T2 + 100 * S) / S }, T1 + 50 * S),
    ],
    true,
  );
}

async function get(r: Replay, path: string): Promise<any> {
  const res = await fetch(`${r.restUrl}${path}`);
  assert.equal(res.status, 200, path);
  return res.json();
}

const dataOn = (client: TestClient, sid: number) =>
  client.frames.flatMap((f) => (f.json && f.json.sid === sid && f.json.msg && f.json.type !== 'subscribed' ? [f.json] : []));

describe('kdp replay serves production over the Kalshi protocol', () => {
  test('snapshot at T1, then the window in exchange order with per-sid seqs; lifecycle, creations and REST as of the replay clock', async () => {
    const replay = await startReplay(
      { productionUrl: prod.url, startUs: T1, endUs: T2, pace: 'fast', waitForBooks: true, bufferRecordsMax: 4, fetchRows: 2 },
      log,
    );
    const client = await TestClient.open(replay.wsUrl);
    try {
      assert.deepEqual(replay.universe, { markets: 4, openAtStart: 1, unanchored: [], closedWithoutBook: [C] });
      // Before any book subscription the clock is held at T1: REST shows the start.
      const atStart = (await get(replay, `/markets/${A}`)).market;
      assert.equal(atStart.status, 'active');
      assert.equal(atStart.title, `title ${A}`, 'the recorded REST object');
      assert.equal(atStart.volume_fp, '9.00', 'the last ticker before T1');
      assert.equal(atStart.last_price_dollars, '0.4100', 'the last trade before T1');
      assert.equal((await get(replay, `/markets/${C}`)).market.status, 'closed');
      assert.equal((await fetch(`${replay.restUrl}/markets/${B}`)).status, 404, 'B is created in the window');
      const globalId = client.send('subscribe', { channels: ['trade', 'ticker', 'market_lifecycle_v2'] });
      const [tradeSub, tickerSub, lifeSub] = (await client.reply(globalId, 3)).map((f) => f.msg.sid as number);
      const bookId = client.send('subscribe', { channels: ['orderbook_delta'], market_tickers: [A] });
      const bookSid = (await client.reply(bookId))[0]!.msg.sid as number;
      assert.equal(new Set([tradeSub, tickerSub, lifeSub, bookSid]).size, 4, 'a sid per subscription');
      await replay.finished;
      await client.until(() => dataOn(client, lifeSub!).length >= 5);

      const book = dataOn(client, bookSid);
      const atT1 = await reconstructBook(prod.c, A, T1);
      assert.deepEqual(book[0], {
        type: 'orderbook_snapshot',
        sid: bookSid,
        seq: 1,
        msg: {
          market_ticker: A,
          market_id: book[0]!.msg.market_id,
          yes_dollars_fp: [
            ['0.4000', '8.00'],
            ['0.4200', '5.00'],
          ],
          no_dollars_fp: [['0.5500', '4.00']],
        },
        sending_ts_ms: T1 / 1000,
      });
      assert.deepEqual(
        atT1.yes,
        [
          { price: '0.42', size: '5.00' },
          { price: '0.40', size: '8.00' },
        ],
        'the snapshot is reconstructBook at T1',
      );
      assert.deepEqual(
        book.slice(1).map((f) => [f.seq, f.msg.side, f.msg.price_dollars, f.msg.delta_fp, f.msg.ts_ms]),
        [
          [2, 'no', '0.5500', '-1.00', (T1 + S) / 1000],
          [3, 'yes', '0.4000', '-10.00', (T1 + 2 * S) / 1000],
          [4, 'yes', '0.4000', '-1.00', (T1 + 2 * S) / 1000],
          [5, 'yes', '0.4000', '-1.00', (T1 + 2 * S) / 1000],
        ],
        'the window deltas of A in order, identical ones both, nothing at or before T1 or after T2',
      );
      const trades = dataOn(client, tradeSub!);
      assert.deepEqual(
        trades.map((f) => [f.seq, f.msg.market_ticker, f.msg.yes_price_dollars, f.msg.count_fp, f.msg.ts_ms]),
        [
          [1, A, '0.4100', '3.00', (T1 + 3 * S) / 1000],
          [2, B, '0.4100', '3.00', (T1 + 14 * S) / 1000],
        ],
        'trades of served markets (not of the unknown market)',
      );
      const tickers = dataOn(client, tickerSub!);
      assert.equal(tickers.length, 1);
      assert.equal(tickers[0]!.seq, undefined, 'tickers carry no seq');
      assert.equal(tickers[0]!.msg.price_dollars, '', 'a NULL price is sent as Kalshi sends it: ""');
      assert.equal(tickers[0]!.msg.yes_bid_dollars, '0.4200');
      const life = dataOn(client, lifeSub!);
      assert.deepEqual(
        life.map((f) => [f.seq, f.msg.market_ticker, f.msg.event_type]),
        [
          [1, B, 'created'],
          [2, A, 'deactivated'],
          [3, A, 'activated'],
          [4, A, 'deactivated'],
          [5, D, 'created'],
        ],
      );
      assert.deepEqual(replay.stats().skippedUnknownMarket, 1);
      assert.deepEqual(replay.stats().skippedUnsendable, 1);
      // REST as of the replay clock (the end of the window): B exists and opened, A paused again.
      assert.equal((await get(replay, `/markets/${B}`)).market.status, 'active');
      assert.equal((await get(replay, `/markets/${A}`)).market.status, 'inactive');
      assert.equal((await get(replay, `/markets/${D}`)).market.status, 'initialized', 'created in the window, opening after it');
      const atEnd = await reconstructBook(prod.c, A, T2);
      const ob = (await get(replay, `/markets/${A}/orderbook`)).orderbook_fp;
      assert.deepEqual(ob.yes_dollars, atEnd.yes.map((l) => [Number(l.price).toFixed(4), l.size]).reverse());
      assert.deepEqual(ob.no_dollars, atEnd.no.map((l) => [Number(l.price).toFixed(4), l.size]).reverse());
      const restTrades = async (ticker: string) => (await get(replay, `/markets/trades?ticker=${ticker}`)).trades.map((t: any) => t.trade_id);
      assert.deepEqual(await restTrades(B), ['00000000-0000-4000-8000-000000000002']);
      assert.deepEqual(
        await restTrades(A),
        ['00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000009'],
        'REST lists the trade before T1 (never sent on the WebSocket), newest first',
      );
    } finally {
      client.close();
      await replay.stop();
    }
  });

  test('a production connection lost mid-window is reopened and the window goes on after the last row read', async () => {
    const replay = await startReplay(
      { productionUrl: prod.url, startUs: T1, endUs: T2, pace: 'fast', waitForBooks: true, tickers: [A], bufferRecordsMax: 1, fetchRows: 1 },
      log,
    );
    const client = await TestClient.open(replay.wsUrl);
    try {
      // The reader holds one record and waits for room: the clock is held until the book subscription.
      await waitFor('the read-ahead is full', () => replay.stats().recordsHeld >= 1);
      const killed = await prod.c.query(`SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1`, [REPLAY_APPLICATION_NAME]);
      assert.equal(killed.rowCount, 1, "the replay's one connection");
      const id = client.send('subscribe', { channels: ['orderbook_delta'], market_tickers: [A] });
      const sid = (await client.reply(id))[0]!.msg.sid as number;
      await replay.finished;
      assert.ok(replay.stats().readRetries >= 1, 'the lost read was retried');
      assert.deepEqual(
        dataOn(client, sid).map((f) => [f.seq, f.type, f.msg.delta_fp ?? null]),
        [
          [1, 'orderbook_snapshot', null],
          [2, 'orderbook_delta', '-1.00'],
          [3, 'orderbook_delta', '-10.00'],
          [4, 'orderbook_delta', '-1.00'],
          [5, 'orderbook_delta', '-1.00'],
        ],
        'every delta of the window once, in order',
      );
    } finally {
      client.close();
      await replay.stop();
    }
  });

  test('--tickers serves only the markets named; a window that ends before it starts is refused', async () => {
    const replay = await startReplay({ productionUrl: prod.url, startUs: T1, endUs: T2, pace: 'fast', tickers: [B] }, log);
    try {
      await replay.finished;
      assert.equal(replay.universe.markets, 1);
      assert.equal(replay.stats().skippedUnknownMarket, 0, 'rows of other markets are not even read');
      assert.equal((await fetch(`${replay.restUrl}/markets/${A}`)).status, 404);
      assert.equal((await get(replay, `/markets/${B}`)).market.status, 'active');
    } finally {
      await replay.stop();
    }
    await assert.rejects(startReplay({ productionUrl: prod.url, startUs: T2, endUs: T1 }, log), (err: any) => err.code === 'KDP_ERR_USAGE');
    await assert.rejects(
      startReplay({ productionUrl: prod.url, startUs: T1, endUs: T2, speeed: 2 }, log),
      (err: any) => err.code === 'KDP_ERR_CONFIG_UNKNOWN_KEY',
    );
  });

  test('kdp replay as a command: serves the window at a speed, writes what it served as a truth file, exits 0 at the end; --from-archive is refused', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kdp-replay-cli-'));
    try {
      const bin = resolve(__dirname, '..', '..', '..', 'bin', 'kdp.js');
      const kdp = (...args: string[]) =>
        spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, KDP_LOG_LEVEL: 'warn' } });
      const truth = join(dir, 'served.ndjson');
      // 60 s of exchange time at 600x: 0.1 s of wall time.
      const run = kdp('replay', '--from-production', prod.url, '--start', String(T1), '--end', iso(T2), '--speed', '600', '--port', '0', '--truth', truth);
      assert.equal(run.status, 0, run.stderr);
      assert.match(run.stdout, /ws +ws:\/\/127\.0\.0\.1:\d+\/trade-api\/ws\/v2/);
      const recs = readTruth(truth);
      assert.equal(recs[0]!.k === 'meta' && recs[0]!.source, 'replay');
      const exchange = recs.filter(isExchangeRecord);
      assert.deepEqual(
        exchange.map((r) => r.n),
        exchange.map((_r, i) => i + 1),
        'exchange order without holes',
      );
      const served = (k: string) => exchange.filter((r) => r.k === k && r.t > T1);
      assert.deepEqual(
        served('delta').map((r) => r.k === 'delta' && [r.m, r.side, r.p, r.d, r.t]),
        [
          [A, 'no', '0.5500', '-1.00', T1 + S],
          [A, 'yes', '0.4000', '-10.00', T1 + 2 * S],
          [A, 'yes', '0.4000', '-1.00', T1 + 2 * S],
          [A, 'yes', '0.4000', '-1.00', T1 + 2 * S],
          [B, 'yes', '0.3010', '7.50', T1 + 13 * S],
        ],
      );
      assert.equal(served('trade').length, 2);
      assert.equal(served('lifecycle').length, 5);
      const checkpoint = exchange.find((r) => r.k === 'book' && r.m === A);
      assert.deepEqual(checkpoint && checkpoint.k === 'book' && [checkpoint.t, checkpoint.yes], [
        T1,
        [
          ['0.4000', '8.00'],
          ['0.4200', '5.00'],
        ],
      ]);
      assert.match(run.stderr, /records served/);
      const archive = kdp('replay', '--from-archive', dir, '--from-production', prod.url, '--start', String(T1), '--end', String(T2));
      assert.equal(archive.status, 2);
      assert.match(archive.stderr, /KDP_ERR_USAGE/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('--from-archive: the archived hours serve the same window as production (every delta, trade, ticker and lifecycle message, the book at T1)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kdp-replay-archive-test-'));
    try {
      const store = join(dir, 'store');
      const stats = await exportOnce(
        resolveArchiveOptions({ production: { url: prod.url }, store: { kind: 'local', dir: store }, workDir: join(dir, 'work') }),
        { log },
      );
      assert.ok(stats.partitions > 0, 'the archiver exported the hours');
      const served = async (source: Record<string, unknown>): Promise<ExchangeRecord[]> => {
        const truthFile = join(dir, `${Object.keys(source)[0]}.ndjson`);
        const replay = await startReplay({ ...source, startUs: T1, endUs: T2, pace: 'fast', truthFile }, log);
        try {
          await replay.finished;
        } finally {
          await replay.stop();
        }
        return readTruth(truthFile).filter(isExchangeRecord);
      };
      const fromProduction = await served({ productionUrl: prod.url });
      const fromArchive = await served({ archiveDir: store });
      const windowOf = (recs: ExchangeRecord[]) =>
        recs.filter((r) => r.t > T1 && ['delta', 'trade', 'ticker', 'lifecycle', 'event_lifecycle'].includes(r.k)).map(({ n: _n, ...r }) => r);
      const window = windowOf(fromProduction);
      assert.ok(window.length >= 12, `the window has ${window.length} records`);
      assert.deepEqual(windowOf(fromArchive), window);
      const bookOf = (recs: ExchangeRecord[]) => recs.find((r) => r.k === 'book' && r.m === A);
      assert.deepEqual(bookOf(fromArchive), { ...bookOf(fromProduction)!, n: bookOf(fromArchive)!.n });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
