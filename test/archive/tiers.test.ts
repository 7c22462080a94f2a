// The derived tiers (processed/ and aggregates/) against real parts: embedded PostgreSQL holding a
// production database with books, gaps, fractional sizes and deci-cent prices; the archiver
// deriving every tier; DuckDB reading the Parquet back; and every row compared with a
// straightforward recomputation from production: candles recomputed in JavaScript from the
// trades and tickers rows, books rebuilt by `kdp book`'s reconstructBook at each row's instant.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { gunzipSync } from 'node:zlib';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CreateBucketCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { DuckDBInstance } from '@duckdb/node-api';
import S3rver = require('s3rver');
import type { ClientBase } from 'pg';
import { exportOnce, type ArchiveDeps } from '../../src/archive/archiver';
import { BOOK_LEVELS } from '../../src/archive/datasets';
import { exportDataset } from '../../src/archive/export';
import { HOUR_US, hourStartOf } from '../../src/archive/layout';
import { resolveArchiveOptions } from '../../src/archive/options';
import { createLogger } from '../../src/core/log';
import { KdpError } from '../../src/core/errors';
import { SNAPSHOT_POSITION_SQL, reconstructBook, type Book } from '../../src/ops/book';
import { migrate } from '../../src/schema/migrate';
import { ORDERBOOK_DELTAS, ORDERBOOK_SNAPSHOTS, TICKERS, TRADES } from '../../src/schema/tables';
import { startPg, withClient, type TestPg } from '../harness/pg';
import { filesUnder, insertRows, rng } from './fixture';

let pg: TestPg;
const scratch = mkdtempSync(join(tmpdir(), 'kdp-tiers-test-'));
before(async () => {
  pg = await startPg();
});
after(async () => {
  await pg?.close();
  rmSync(scratch, { recursive: true, force: true });
});

// Pinned to 21:00 UTC two days ago, whatever the time of day: the four hours cross midnight, so
// the finished day's candles_1d is derived, and a second pass must not derive it again (the day's
// frontier was its start plus an hour, so every pass re-derived it; the test, following the wall
// clock, failed only when run between 03:00 and 04:00 UTC).
const H0 = hourStartOf(Date.now() * 1000 - 2 * 24 * HOUR_US) - ((hourStartOf(Date.now() * 1000) / HOUR_US) % 24) * HOUR_US + 21 * HOUR_US;
const MIN = 60_000_000;
const KDP = join(__dirname, '..', '..', '..', 'bin', 'kdp.js');
const quiet = createLogger('tiers-test', { level: 'silent' });
const deps = (extra: Partial<ArchiveDeps> = {}): ArchiveDeps => ({ log: quiet, nowUs: () => H0 + 5 * HOUR_US, mergedThroughUs: H0 + 4 * HOUR_US, ...extra });

// Markets: A has a book from H0 on (deci-cent prices, fractional sizes, several changes in one µs);
// B's book is unknown until its first snapshot in H1; C has a gap every gatherer had in H1 (and
// deltas missing in production there) until a snapshot in H2; D only trades (no book at all).
const A = 'KXA-26DEC03-T1';
const B = 'KXB-26DEC03-B2';
const C = 'KXC-26DEC03-T3';
const D = 'KXD-26DEC03-T4';

/** Decimal text of n micro-units with 4 decimals for prices / 2 for sizes (what PostgreSQL stores). */
const dec = (micro: number, places: number): string => {
  const neg = micro < 0;
  const a = Math.abs(micro);
  const s = `${Math.floor(a / 1e6)}.${String(a % 1e6)
    .padStart(6, '0')
    .slice(0, places)}`;
  return neg ? `-${s}` : s;
};

interface Gen {
  deltas: Record<string, unknown>[];
  snapshots: Record<string, unknown>[];
  trades: Record<string, unknown>[];
  tickers: Record<string, unknown>[];
}

const prov = (ts: number, g = 'g1') => ({
  received_at: ts + 500,
  gatherer: g,
  conn_id: 1,
  sid: 2,
  seq: null,
  sent_at: null,
  batch_id: 1,
  merged_at: H0 + 4 * HOUR_US,
});

/** One market's book history: deltas that never take a level below zero, and snapshots of the true book. */
function genBook(g: Gen, r: () => number, ticker: string, snapAt: readonly number[], missing: [number, number] | undefined, byNext = false): void {
  const book = { yes: new Map<number, number>(), no: new Map<number, number>() };
  const events: { ts: number; kind: 'delta' | 'snap' }[] = [];
  for (let t = H0 + 30_000_000; t < H0 + 3 * HOUR_US; t += 5_000_000 + Math.floor(r() * 40_000_000)) events.push({ ts: t, kind: 'delta' });
  for (const s of snapAt) events.push({ ts: s, kind: 'snap' });
  events.sort((a, b) => a.ts - b.ts || (a.kind === 'delta' ? -1 : 1));
  const occurrences = new Map<string, number>();
  for (const e of events) {
    if (e.kind === 'snap') {
      const levels = (m: Map<number, number>) => [...m].sort((a, b) => a[0] - b[0]).map(([p, s]) => [dec(p, 4), dec(s, 2)]);
      // Placed by last_delta_ts (holds the deltas <= it) or, as after lost frames, by next_delta_ts
      // alone (holds the deltas < it; no delta of the test lies 1 µs after a snapshot).
      const position = byNext ? { last_delta_ts: null, next_delta_ts: e.ts + 1 } : { last_delta_ts: e.ts, next_delta_ts: null };
      g.snapshots.push({
        ticker,
        yes_levels: JSON.stringify(levels(book.yes)),
        no_levels: JSON.stringify(levels(book.no)),
        snapshot_ts: e.ts,
        source: 'ws',
        ...position,
        ...prov(e.ts, 'g2'),
      });
      continue;
    }
    // 1-3 changes in the same microsecond (identical ones numbered by occurrence).
    const n = 1 + Math.floor(r() * 3);
    for (let i = 0; i < n; i++) {
      const side = r() < 0.5 ? 'yes' : 'no';
      const m = book[side];
      // Deci-cent (0.001) and sub-penny (0.0001) ticks around 0.45 / 0.52.
      const price = (side === 'yes' ? 440_000 : 510_000) + Math.floor(r() * 20) * (r() < 0.2 ? 100 : 1000);
      const have = m.get(price) ?? 0;
      const delta = have > 0 && r() < 0.4 ? -Math.min(have, (1 + Math.floor(r() * 8)) * 250_000) : (1 + Math.floor(r() * 40)) * 250_000;
      if (have + delta > 0) m.set(price, have + delta);
      else m.delete(price);
      if (missing && e.ts >= missing[0] && e.ts < missing[1]) continue; // lost by every gatherer
      const key = `${e.ts}/${side}/${price}/${delta}`;
      const occurrence = occurrences.get(key) ?? 0;
      occurrences.set(key, occurrence + 1);
      g.deltas.push({ ticker, side, price: dec(price, 4), delta: dec(delta, 2), exchange_ts: e.ts, occurrence, ...prov(e.ts) });
    }
  }
}

function genTrades(g: Gen, r: () => number, ticker: string, market: number): void {
  let i = 0;
  // Minutes 0-9 and 30-39 of each hour trade; the rest are empty (explicit rows in the candles).
  for (let t = H0; t < H0 + 3 * HOUR_US; t += 7_000_000 + Math.floor(r() * 20_000_000)) {
    if (Math.floor((t % HOUR_US) / MIN) % 30 >= 10) continue;
    const ts = t - (t % 1000);
    const yes = 400_000 + Math.floor(r() * 200) * 1000 + (r() < 0.2 ? 500 : 0);
    const id = `00000000-0000-4000-8000-${String(++i).padStart(6, '0')}${String(market).padStart(6, '0')}`;
    g.trades.push({
      trade_id: id,
      ticker,
      yes_price: dec(yes, 4),
      no_price: dec(1_000_000 - yes, 4),
      count: dec((1 + Math.floor(r() * 400)) * 250_000, 2),
      taker_side: r() < 0.5 ? 'yes' : 'no',
      taker_outcome_side: null,
      taker_book_side: null,
      is_block_trade: null,
      exchange_ts: ts,
      source: 'ws',
      ...prov(ts),
    });
    if (r() < 0.3) {
      g.tickers.push({
        ticker,
        price: dec(yes, 4),
        yes_bid: null,
        yes_ask: null,
        yes_bid_size: null,
        yes_ask_size: null,
        last_trade_size: null,
        volume: null,
        open_interest: dec((1000 + i) * 10_000, 2),
        dollar_volume: null,
        dollar_open_interest: null,
        exchange_ts: ts + 3,
        fingerprint: i,
        occurrence: 0,
        ...prov(ts + 3),
      });
    }
  }
}

async function seed(c: ClientBase): Promise<void> {
  const r = rng(19);
  const g: Gen = { deltas: [], snapshots: [], trades: [], tickers: [] };
  genBook(g, r, A, [H0 + 20_000_000, H0 + 2 * HOUR_US + 600_000_000], undefined);
  genBook(g, r, B, [H0 + HOUR_US + 900_000_000], undefined, true);
  genBook(g, r, C, [H0 + 10_000_000, H0 + 2 * HOUR_US + 300_000_000], [H0 + HOUR_US + 11 * MIN, H0 + HOUR_US + 12 * MIN]);
  [A, B, D].forEach((t, i) => genTrades(g, r, t, i));
  await insertRows(c, ORDERBOOK_DELTAS, g.deltas as never);
  await insertRows(c, ORDERBOOK_SNAPSHOTS, g.snapshots as never);
  await insertRows(c, TRADES, g.trades as never);
  await insertRows(c, TICKERS, g.tickers as never);
  // g1 and g2 both had a gap on C in H1 (overlapping 11-12 min); g1 alone one on A (no break).
  await c.query(
    `INSERT INTO gap_ledger (gatherer, gap_id, conn_id, sid, channel, kind, tickers, window_start, window_end, detected_at, recovered, recovered_at, updated_at) VALUES
       ('g1', 1, 1, 2, 'orderbook_delta', 'seq_gap', $1, $3, $4, $3, true, $4, 0),
       ('g2', 1, 1, 2, 'orderbook_delta', 'seq_gap', $1, $5, NULL, $5, false, NULL, 0),
       ('g1', 2, 1, 2, 'orderbook_delta', 'seq_gap', $2, $3, $4, $3, true, $4, 0)`,
    [[C], [A], H0 + HOUR_US + 10 * MIN, H0 + HOUR_US + 12 * MIN, H0 + HOUR_US + 11 * MIN],
  );
  await c.query(
    `INSERT INTO dedup_cursors (gatherer, instance_id, merged_xid, updated_at) VALUES ('g1', gen_random_uuid(), '1', 0), ('g2', gen_random_uuid(), '1', 0)`,
  );
}

/** Rows of a dataset's Parquet files, every value as DuckDB text (NULL as null). */
async function readDataset(root: string, tier: string, name: string): Promise<Record<string, string | null>[]> {
  const files = filesUnder(root).filter((f) => f.startsWith(`${tier}/${name}/`) && f.endsWith('.parquet'));
  return readFiles(files.map((f) => join(root, f)));
}

async function readFiles(files: readonly string[]): Promise<Record<string, string | null>[]> {
  if (files.length === 0) return [];
  const inst = await DuckDBInstance.create(':memory:', { autoload_known_extensions: 'false', autoinstall_known_extensions: 'false' });
  const conn = await inst.connect();
  try {
    const list = files.map((f) => `'${f}'`).join(', ');
    const reader = await conn.runAndReadAll(`SELECT * FROM read_parquet([${list}], hive_partitioning = false)`);
    const names = reader.columnNames();
    return reader.getRows().map((row) => Object.fromEntries(row.map((v, i) => [names[i]!, v === null ? null : String(v)])));
  } finally {
    conn.closeSync();
    inst.closeSync();
  }
}

/** Canonical decimal text: no trailing zeros, so '0.450000' and '0.45' compare equal. */
const canon = (v: string | null | undefined): string | null => {
  if (v === null || v === undefined || v === '') return null;
  return v.includes('.') ? v.replace(/0+$/, '').replace(/\.$/, '') : v;
};

/** The book at `atUs` as production's kdp book rebuilds it, or undefined when it has no anchor. */
async function bookAt(c: ClientBase, ticker: string, atUs: number): Promise<Book | undefined> {
  try {
    return await reconstructBook(c, ticker, atUs);
  } catch (err) {
    if (err instanceof KdpError && err.code === 'KDP_ERR_BOOK_NO_ANCHOR') return undefined;
    throw err;
  }
}

function topOf(book: Book): Record<string, string | null> {
  const y = book.yes[0];
  const n = book.no[0];
  return {
    yes_bid: canon(y?.price),
    yes_bid_size: canon(y?.size),
    no_bid: canon(n?.price),
    no_bid_size: canon(n?.size),
    yes_ask: canon(book.yesAsk),
    yes_ask_size: canon(n?.size),
  };
}

const pick = (row: Record<string, string | null>, keys: readonly string[]) => Object.fromEntries(keys.map((k) => [k, canon(row[k])]));
const TOP_KEYS = ['yes_bid', 'yes_bid_size', 'no_bid', 'no_bid_size', 'yes_ask', 'yes_ask_size'];

describe('derived tiers', () => {
  let url: string;
  const root = join(scratch, 'store');
  before(async () => {
    url = await pg.newDatabase('kdp_tiers');
    await withClient(url, async (c) => {
      await migrate(c, { kind: 'production', engine: 'postgres' });
      await seed(c);
    });
  });
  const options = () => resolveArchiveOptions({ production: { url }, store: { kind: 'local', dir: root }, workDir: join(scratch, 'work') });
  const configFile = (): string => {
    const path = join(scratch, 'archive.yaml');
    writeFileSync(path, `production:\n  url: ${url}\nstore:\n  kind: local\n  dir: ${root}\nworkDir: ${join(scratch, 'work')}\n`);
    return path;
  };

  test('one pass writes raw/, processed/ and aggregates/ for every closed hour (daily candles once the day closes)', async () => {
    const stats = await exportOnce(options(), deps());
    const files = filesUnder(root);
    for (const ds of ['processed/quotes', 'processed/book_snapshots_25', 'processed/trades', 'aggregates/candles_1m', 'aggregates/candles_1h']) {
      for (let h = 0; h < 3; h++) {
        const hour = new Date((H0 + h * HOUR_US) / 1000).toISOString();
        const dir = `${ds}/date=${hour.slice(0, 10)}/hour=${hour.slice(11, 13)}`;
        assert.ok(files.includes(`${dir}/part-00000.parquet`) && files.includes(`${dir}/_manifest.json`), `${dir} written`);
      }
    }
    assert.ok(stats.exported.some((p) => p.table === 'processed/quotes'));
    assert.ok(
      files.some((f) => f.startsWith('processed/_book_state/')),
      'the carried books are stored',
    );
  });

  test('candles equal a recomputation from production trades and tickers, empty minutes explicit', async () => {
    const candles = await readDataset(root, 'aggregates', 'candles_1m');
    await withClient(url, async (c) => {
      const trades = (await c.query(`SELECT ticker, exchange_ts::text AS ts, trade_id::text AS id, yes_price::text AS p, count::text AS n FROM trades`)).rows;
      const tick = (await c.query(`SELECT ticker, exchange_ts::text AS ts, occurrence, fingerprint::text AS f, open_interest::text AS oi FROM tickers`)).rows;
      const expected = recomputeCandles(trades, tick, H0, 3, 60);
      const got = candles.map((r) => JSON.stringify(pick(r, CANDLE_KEYS))).sort();
      assert.equal(got.length, expected.length, 'one row per market and minute of every hour it was active');
      assert.deepEqual(got, expected.map((e) => JSON.stringify(e)).sort());
      const hourly = await readDataset(root, 'aggregates', 'candles_1h');
      assert.deepEqual(
        hourly.map((r) => JSON.stringify(pick(r, CANDLE_KEYS))).sort(),
        recomputeCandles(trades, tick, H0, 3, 1)
          .map((e) => JSON.stringify(e))
          .sort(),
      );
    });
    const empty = candles.filter((r) => r.trade_count === '0');
    assert.ok(empty.length > 0 && empty.every((r) => r.open === null && r.vwap === null && canon(r.volume) === '0'), 'empty minutes are explicit rows');
  });

  test('every quote, book snapshot and enriched trade equals the book kdp book rebuilds at that instant; gap rows are flagged', async () => {
    const quotes = await readDataset(root, 'processed', 'quotes');
    const snaps = await readDataset(root, 'processed', 'book_snapshots_25');
    const trades = await readDataset(root, 'processed', 'trades');
    assert.ok(quotes.length > 50 && snaps.length > 50 && trades.length > 100, `${quotes.length} quotes, ${snaps.length} snapshots, ${trades.length} trades`);
    await withClient(url, async (c) => {
      for (const q of quotes) {
        if (q.chain_gap === 'true') continue;
        const book = await bookAt(c, q.ticker!, Number(q.exchange_ts));
        assert.ok(book, `${q.ticker} has a book at ${q.exchange_ts}`);
        assert.deepEqual(pick(q, TOP_KEYS), topOf(book), `quote ${q.ticker} ${q.exchange_ts}`);
      }
      for (const s of snaps) {
        if (s.chain_gap === 'true') continue;
        const book = await bookAt(c, s.ticker!, Number(s.snapshot_at) - 1);
        assert.ok(book, `${s.ticker} has a book before ${s.snapshot_at}`);
        for (const side of ['yes', 'no'] as const) {
          const want = book[side].slice(0, BOOK_LEVELS);
          assert.equal(Number(s[`${side}_levels`]), want.length);
          for (let i = 1; i <= BOOK_LEVELS; i++) {
            assert.deepEqual([canon(s[`${side}_price_${i}`]), canon(s[`${side}_size_${i}`])], [canon(want[i - 1]?.price), canon(want[i - 1]?.size)]);
          }
        }
      }
      for (const t of trades) {
        const book = await bookAt(c, t.ticker!, Number(t.exchange_ts) - 1);
        assert.equal(t.book_known, String(book !== undefined), `${t.ticker} ${t.exchange_ts} book known`);
        if (!book || t.chain_gap === 'true') continue;
        assert.deepEqual(pick(t, TOP_KEYS), topOf(book));
      }
    });
    assert.ok(
      trades.filter((t) => t.ticker === D).every((t) => t.book_known === 'false' && t.mid === null),
      'a market without a book: trades kept, top unknown',
    );
    const flagged = quotes.filter((q) => q.chain_gap === 'true');
    assert.ok(flagged.length > 0 && flagged.every((q) => q.ticker === C), 'only the market every gatherer lost is flagged');
    const breakUs = H0 + HOUR_US + 11 * MIN;
    const resetUs = H0 + 2 * HOUR_US + 300_000_000;
    assert.ok(
      flagged.every((q) => Number(q.exchange_ts) >= breakUs && Number(q.exchange_ts) < resetUs),
      'from the shared gap to the next snapshot',
    );
    assert.ok(
      quotes.some((q) => q.ticker === C && q.chain_gap === 'false' && Number(q.exchange_ts) >= resetUs),
      'the snapshot restores trust',
    );
  });

  test('quotes miss no change: at every delta instant the newest quote equals the rebuilt top of book', async () => {
    const quotes = await readDataset(root, 'processed', 'quotes');
    await withClient(url, async (c) => {
      const times = (await c.query(`SELECT DISTINCT ticker, exchange_ts::text AS ts FROM orderbook_deltas WHERE ticker = ANY($1) ORDER BY 1, 2`, [[A, B]]))
        .rows;
      for (const { ticker, ts } of times as { ticker: string; ts: string }[]) {
        const book = await bookAt(c, ticker, Number(ts));
        if (!book) continue;
        const latest = quotes
          .filter((q) => q.ticker === ticker && Number(q.exchange_ts) <= Number(ts))
          .sort((a, b) => Number(b.exchange_ts) - Number(a.exchange_ts))[0];
        assert.ok(latest, `${ticker} has a quote by ${ts}`);
        assert.deepEqual(pick(latest, TOP_KEYS), topOf(book), `${ticker} at ${ts}`);
      }
    });
  });

  test('manifests name the rows each file came from and flag the hour with an unrecovered, shared gap', async () => {
    const manifest = (h: number) => {
      const hour = new Date((H0 + h * HOUR_US) / 1000).toISOString();
      return JSON.parse(readFileSync(join(root, `processed/quotes/date=${hour.slice(0, 10)}/hour=${hour.slice(11, 13)}/_manifest.json`), 'utf8'));
    };
    await withClient(url, async (c) => {
      for (let h = 0; h < 3; h++) {
        const m = manifest(h);
        for (const src of m.sources as { table: string; rows: number }[]) {
          const t = src.table === 'orderbook_snapshots' ? 'snapshot_ts' : 'exchange_ts';
          const extra =
            src.table === 'orderbook_snapshots'
              ? ` AND source = 'ws' AND ${SNAPSHOT_POSITION_SQL} >= ${H0 + h * HOUR_US} AND ${SNAPSHOT_POSITION_SQL} < ${H0 + (h + 1) * HOUR_US}`
              : ` AND ${t} >= ${H0 + h * HOUR_US} AND ${t} < ${H0 + (h + 1) * HOUR_US}`;
          const n = (await c.query(`SELECT count(*)::int AS n FROM ${src.table} WHERE true${extra}`)).rows[0].n;
          assert.equal(src.rows, n, `hour ${h} ${src.table} rows`);
        }
        assert.ok(m.rawPartitions.length >= 2, 'the raw partitions and their checksums are listed');
        // C's shared gap starts in hour 1; its rows stay flagged into hour 2 until its next snapshot.
        assert.equal(m.chain.flagged, h >= 1, `hour ${h} flagged`);
      }
    });
  });

  test('every exported hour has coverage certificates beside it and in production, one per market', async () => {
    await withClient(url, async (c) => {
      for (let h = 0; h < 3; h++) {
        const hour = new Date((H0 + h * HOUR_US) / 1000).toISOString();
        const dir = join(root, `raw/_coverage/date=${hour.slice(0, 10)}/hour=${hour.slice(11, 13)}`);
        const certificates = JSON.parse(gunzipSync(readFileSync(join(dir, 'certificates.json.gz'))).toString('utf8')) as { ticker: string; grade: string }[];
        const manifest = JSON.parse(readFileSync(join(dir, '_manifest.json'), 'utf8'));
        assert.equal(manifest.certificates, certificates.length);
        const tickers = (
          await c.query(
            `SELECT DISTINCT ticker FROM (SELECT ticker FROM orderbook_deltas WHERE exchange_ts >= $1 AND exchange_ts < $2
              UNION SELECT ticker FROM trades WHERE exchange_ts >= $1 AND exchange_ts < $2) x ORDER BY 1`,
            [H0 + h * HOUR_US, H0 + (h + 1) * HOUR_US],
          )
        ).rows.map((r) => r.ticker);
        assert.deepEqual(certificates.map((x) => x.ticker).sort(), tickers, `hour ${h}: a certificate per market with rows`);
        const stored = (await c.query(`SELECT ticker, grade FROM coverage_certificates WHERE hour_start = $1 ORDER BY 1`, [H0 + h * HOUR_US])).rows;
        assert.deepEqual(
          stored,
          [...certificates].sort((a, b) => (a.ticker < b.ticker ? -1 : 1)).map((x) => ({ ticker: x.ticker, grade: x.grade })),
        );
      }
      const c1 = (await c.query(`SELECT grade FROM coverage_certificates WHERE ticker = $1 AND hour_start = $2`, [C, H0 + HOUR_US])).rows[0];
      assert.notEqual(c1.grade, 'complete', 'the market every gatherer lost in hour 1 is not certified complete');
    });
  });

  test('kdp export writes one dataset for a market and time range to Parquet and CSV, equal to the archive', async () => {
    const from = H0 + HOUR_US + 15 * MIN;
    const to = H0 + 2 * HOUR_US + 20 * MIN;
    const want = (await readDataset(root, 'processed', 'quotes'))
      .filter((q) => q.ticker === A && Number(q.exchange_ts) >= from && Number(q.exchange_ts) < to)
      .sort((a, b) => Number(a.exchange_ts) - Number(b.exchange_ts));
    assert.ok(want.length > 3);
    const out = join(scratch, 'export', 'a.parquet');
    const r = await exportDataset(options(), { dataset: 'processed/quotes', fromUs: from, toUs: to, tickers: [A], format: 'parquet', outPath: out });
    assert.equal(r.rows, want.length);
    assert.equal(r.partitionsRead, 2, 'only the two hours overlapping the range are read');
    assert.deepEqual(await readFiles([out]), want, 'the same rows, in the archive order (ticker, time)');
    const csv = join(scratch, 'export', 'a.csv');
    const cli = spawnSync(
      process.execPath,
      [
        KDP,
        'export',
        '--config',
        configFile(),
        '--dataset',
        'processed/quotes',
        '--from',
        String(from),
        '--to',
        String(to),
        '--ticker',
        A,
        '--format',
        'csv',
        '--out',
        csv,
      ],
      { encoding: 'utf8' },
    );
    assert.equal(cli.status, 0, cli.stderr);
    const lines = readFileSync(csv, 'utf8').trim().split('\n');
    assert.equal(lines[0], Object.keys(want[0]!).join(','), 'a header of the dataset columns');
    assert.deepEqual(
      lines.slice(1).map((l) => l.split(',')[1]),
      want.map((q) => q.exchange_ts),
    );
    const none = await exportDataset(options(), {
      dataset: 'aggregates/candles_1m',
      fromUs: H0 - 10 * HOUR_US,
      toUs: H0 - 9 * HOUR_US,
      tickers: [],
      format: 'parquet',
      outPath: out,
    });
    assert.equal(none.rows, 0);
    assert.equal((await readFiles([out])).length, 0, 'an empty range still writes a readable file');
  });

  test('on S3 (s3rver) the same tiers are written, the books carried through the bucket, and kdp export reads them back', async () => {
    const server = new S3rver({ address: '127.0.0.1', port: 0, directory: join(scratch, 's3rver'), silent: true });
    const { port } = await server.run();
    const endpoint = `http://127.0.0.1:${port}`;
    const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
    // A copy: the SDK adds bookkeeping keys to the object it is given.
    const sdk = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { ...credentials } });
    try {
      await sdk.send(new CreateBucketCommand({ Bucket: 'kdp-tiers' }));
      const s3url = await pg.newDatabase('kdp_tiers_s3');
      await withClient(s3url, async (c) => {
        await migrate(c, { kind: 'production', engine: 'postgres' });
        await seed(c);
      });
      const opts = resolveArchiveOptions({
        production: { url: s3url },
        store: { kind: 's3', bucket: 'kdp-tiers', endpoint, region: 'us-east-1', forcePathStyle: true, ...credentials },
        workDir: join(scratch, 's3-work'),
      });
      await exportOnce(opts, deps());
      const listed = await sdk.send(new ListObjectsV2Command({ Bucket: 'kdp-tiers', Prefix: 'processed/_book_state/' }));
      assert.equal((listed.Contents ?? []).length, 3, 'one carried book state per processed hour');
      const out = join(scratch, 'export', 's3-quotes.parquet');
      const r = await exportDataset(opts, { dataset: 'processed/quotes', fromUs: H0, toUs: H0 + 3 * HOUR_US, tickers: [], format: 'parquet', outPath: out });
      const local = await readDataset(root, 'processed', 'quotes');
      assert.equal(r.rows, local.length);
      const key = (q: Record<string, string | null>) => JSON.stringify([q.ticker, q.exchange_ts, ...TOP_KEYS.map((k) => q[k]), q.chain_gap]);
      assert.deepEqual((await readFiles([out])).map(key).sort(), local.map(key).sort(), 'S3 and the local directory hold the same quotes');
    } finally {
      sdk.destroy();
      server.httpServer?.closeAllConnections();
      await server.close();
    }
  });

  test('a second pass derives nothing; a late delta re-derives its hour and the hours after it, not the candles', async () => {
    const again = await exportOnce(options(), deps());
    assert.equal(again.partitions, 0);
    await withClient(url, async (c) => {
      await insertRows(c, ORDERBOOK_DELTAS, [
        {
          ticker: A,
          side: 'yes',
          price: '0.4300',
          delta: '5.00',
          exchange_ts: H0 + HOUR_US + 5,
          occurrence: 0,
          ...prov(H0 + HOUR_US + 5),
          merged_at: H0 + 4 * HOUR_US + 1,
        },
      ] as never);
    });
    const late = await exportOnce(options(), deps());
    const tables = late.exported.map((p) => `${p.table}@${(p.hourStartUs - H0) / HOUR_US}`).sort();
    assert.deepEqual(tables, [
      'orderbook_deltas@1',
      'processed/book_snapshots_25@1',
      'processed/book_snapshots_25@2',
      'processed/quotes@1',
      'processed/quotes@2',
      'processed/trades@1',
      'processed/trades@2',
      'raw/_coverage@1',
    ]);
  });
});

const CANDLE_KEYS = [
  'ticker',
  'interval_start',
  'interval_end',
  'open',
  'high',
  'low',
  'close',
  'volume',
  'dollar_volume',
  'trade_count',
  'vwap',
  'open_interest',
];

/** Candles recomputed the plain way: BigInt arithmetic in 10^-8 units, per market and interval. */
function recomputeCandles(
  trades: { ticker: string; ts: string; id: string; p: string; n: string }[],
  tick: { ticker: string; ts: string; occurrence: number; f: string; oi: string | null }[],
  start: number,
  hours: number,
  perHour: number,
) {
  const step = HOUR_US / perHour;
  const scaled = (v: string, places: number) => {
    const [w, f = ''] = v.split('.');
    return BigInt(w!) * 10n ** BigInt(places) + BigInt((f + '0'.repeat(places)).slice(0, places) || '0');
  };
  const text = (v: bigint, places: number) => canon(`${v / 10n ** BigInt(places)}.${(v % 10n ** BigInt(places)).toString().padStart(places, '0')}`);
  const out: Record<string, string | null>[] = [];
  for (let h = 0; h < hours; h++) {
    const hs = start + h * HOUR_US;
    const inHour = <T extends { ts: string }>(rows: T[]) => rows.filter((r) => Number(r.ts) >= hs && Number(r.ts) < hs + HOUR_US);
    const ht = inHour(trades);
    const hk = inHour(tick);
    for (const ticker of [...new Set([...ht.map((t) => t.ticker), ...hk.map((t) => t.ticker)])]) {
      let oi: string | null = null;
      for (let k = 0; k < perHour; k++) {
        const lo = hs + k * step;
        const inK = <T extends { ts: string; ticker: string }>(rows: T[]) =>
          rows.filter((r) => r.ticker === ticker && Number(r.ts) >= lo && Number(r.ts) < lo + step);
        const ts = inK(ht).sort((a, b) => Number(a.ts) - Number(b.ts) || (a.id < b.id ? -1 : 1));
        const ks = inK(hk)
          .filter((t) => t.oi !== null)
          .sort((a, b) => Number(a.ts) - Number(b.ts) || a.occurrence - b.occurrence || (BigInt(a.f) < BigInt(b.f) ? -1 : 1));
        if (ks.length) oi = canon(ks[ks.length - 1]!.oi);
        const vol = ts.reduce((a, t) => a + scaled(t.n, 2), 0n);
        const dv = ts.reduce((a, t) => a + scaled(t.n, 2) * scaled(t.p, 6), 0n); // 10^-8
        const prices = ts.map((t) => scaled(t.p, 6));
        const vwap = vol > 0n ? (2n * dv + vol) / (2n * vol) : undefined; // (10^-8 / 10^-2 =) 10^-6, half up
        out.push({
          ticker,
          interval_start: String(lo),
          interval_end: String(lo + step),
          open: ts.length ? canon(ts[0]!.p) : null,
          high: prices.length
            ? text(
                prices.reduce((a, b) => (b > a ? b : a)),
                6,
              )
            : null,
          low: prices.length
            ? text(
                prices.reduce((a, b) => (b < a ? b : a)),
                6,
              )
            : null,
          close: ts.length ? canon(ts[ts.length - 1]!.p) : null,
          volume: text(vol, 2),
          dollar_volume: text(dv, 8),
          trade_count: String(ts.length),
          vwap: vwap === undefined ? null : text(vwap, 6),
          open_interest: oi,
        });
      }
    }
  }
  return out;
}
