// Shared fixtures of the archiver tests: realistic production rows over several hours, and a
// reader that loads Parquet files back with DuckDB and renders every value as text, so decimals
// are compared exactly (never through a float).
import { readdirSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import type { ClientBase } from 'pg';
import { HOUR_US } from '../../src/archive/layout';
import { TIME_SERIES_TABLES, quoteIdent, PRODUCTION_EXTRA_COLUMNS, type TimeSeriesTable } from '../../src/schema/tables';

export const allColumns = (t: TimeSeriesTable) => [...t.columns, ...PRODUCTION_EXTRA_COLUMNS];

/** Deterministic pseudo-random numbers (mulberry32) so failures reproduce. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const TICKERS = ['KXBTCD-26NOV23-T95000', 'KXHIGHNY-26NOV23-B45', 'PRES-2028-DEM', "O'NEIL-Q"];
const uuid = (r: () => number): string => [8, 4, 4, 4, 12].map((n) => Array.from({ length: n }, () => Math.floor(r() * 16).toString(16)).join('')).join('-');
const price = (r: () => number): string => (Math.floor(r() * 99) + 1) / 100 + (r() < 0.5 ? '00' : '') + '';
const size = (r: () => number): string => (r() < 0.3 ? '136.50' : r() < 0.5 ? '0.01' : String(Math.floor(r() * 5000)) + '.00');

interface Row {
  readonly [col: string]: string | number | boolean | null;
}

function tradeRow(r: () => number, ts: number, mergedAt: number): Row {
  const yes = (Math.floor(r() * 98) + 1) / 100;
  return {
    trade_id: uuid(r),
    ticker: TICKERS[Math.floor(r() * TICKERS.length)]!,
    yes_price: r() < 0.2 ? '0.9600' : yes.toFixed(4),
    no_price: (1 - yes).toFixed(4),
    count: size(r),
    taker_side: r() < 0.5 ? 'yes' : 'no',
    taker_outcome_side: null,
    taker_book_side: r() < 0.5 ? 'bid' : null,
    is_block_trade: r() < 0.1 ? true : r() < 0.5 ? false : null,
    exchange_ts: ts - (ts % 1000),
    source: 'ws',
    received_at: ts + 1234,
    gatherer: 'g1',
    conn_id: 1,
    sid: 2,
    seq: Math.floor(r() * 1e9),
    batch_id: 7,
    merged_at: mergedAt,
  };
}

function deltaRow(r: () => number, ts: number, mergedAt: number, occurrence: number): Row {
  return {
    ticker: TICKERS[Math.floor(r() * TICKERS.length)]!,
    side: r() < 0.5 ? 'yes' : 'no',
    price: price(r),
    delta: (r() < 0.5 ? '-' : '') + size(r),
    exchange_ts: ts,
    occurrence,
    received_at: ts + 800,
    gatherer: r() < 0.5 ? 'g1' : 'g2',
    conn_id: 3,
    sid: 4,
    seq: Math.floor(r() * 1e9),
    batch_id: 9,
    merged_at: mergedAt,
  };
}

function tickerRow(r: () => number, ts: number, mergedAt: number): Row {
  return {
    ticker: TICKERS[Math.floor(r() * TICKERS.length)]!,
    price: r() < 0.1 ? null : '0.9600',
    yes_bid: '0.95',
    yes_ask: '0.970000',
    yes_bid_size: '136.50',
    yes_ask_size: '10.00',
    last_trade_size: null,
    volume: '123456789012345678.25',
    open_interest: '42.00',
    dollar_volume: 9007199254740993,
    dollar_open_interest: null,
    exchange_ts: ts,
    fingerprint: -1234567890123 - Math.floor(r() * 1e6),
    occurrence: 0,
    received_at: ts + 50,
    gatherer: 'g3',
    conn_id: 1,
    sid: 1,
    seq: null,
    batch_id: 11,
    merged_at: mergedAt,
  };
}

function snapshotRow(r: () => number, ts: number, mergedAt: number): Row {
  return {
    ticker: TICKERS[Math.floor(r() * TICKERS.length)]!,
    yes_levels: JSON.stringify([
      ['0.0100', '136.50'],
      ['0.9600', '5.00'],
    ]),
    no_levels: '[]',
    snapshot_ts: ts,
    source: r() < 0.5 ? 'ws' : 'rest',
    last_delta_ts: r() < 0.5 ? null : ts - 5,
    received_at: ts,
    gatherer: 'g2',
    conn_id: 0,
    sid: 0,
    seq: null,
    batch_id: 12,
    merged_at: mergedAt,
  };
}

function lifecycleRow(r: () => number, ts: number, mergedAt: number): Row {
  return {
    channel: 'market_lifecycle_v2',
    ticker: r() < 0.8 ? TICKERS[0]! : null,
    event_ticker: 'KXBTCD-26NOV23',
    event_type: 'activated',
    payload: JSON.stringify({ note: 'comma, "quote" and ünïcode', empty: '' }),
    fingerprint: Math.floor(r() * 1e15),
    received_at: ts,
    gatherer: 'g1',
    conn_id: 1,
    sid: 9,
    seq: 5,
    batch_id: 13,
    merged_at: mergedAt,
  };
}

export async function insertRows(client: ClientBase, t: TimeSeriesTable, rows: readonly Row[]): Promise<void> {
  const cols = allColumns(t).map((c) => c.name);
  for (let i = 0; i < rows.length; i += 500) {
    const chunk = rows.slice(i, i + 500);
    const params: unknown[] = [];
    const tuples = chunk.map(
      (row) =>
        `(${cols
          .map((c) => {
            params.push(row[c] ?? null);
            return `$${params.length}`;
          })
          .join(', ')})`,
    );
    await client.query(`INSERT INTO ${t.name} (${cols.map(quoteIdent).join(', ')}) VALUES ${tuples.join(', ')}`, params);
  }
}

/** Inserts rowsPerHour rows of every table into each of `hours` hours starting at firstHourUs. */
export async function seedProduction(client: ClientBase, firstHourUs: number, hours: number, rowsPerHour: number, seed = 1): Promise<void> {
  const r = rng(seed);
  const mergedAt = firstHourUs + hours * HOUR_US;
  for (const t of TIME_SERIES_TABLES) {
    const rows: Row[] = [];
    for (let h = 0; h < hours; h++) {
      for (let i = 0; i < rowsPerHour; i++) {
        const ts = firstHourUs + h * HOUR_US + Math.floor((i * HOUR_US) / rowsPerHour) + (i % 7);
        rows.push(makeRow(t.name, r, ts, mergedAt + i, h * rowsPerHour + i));
      }
    }
    await insertRows(client, t, rows);
  }
}

export function makeRow(table: string, r: () => number, ts: number, mergedAt: number, i: number): Row {
  switch (table) {
    case 'trades':
      return tradeRow(r, ts, mergedAt);
    case 'orderbook_deltas':
      return deltaRow(r, ts, mergedAt, i % 3);
    case 'tickers':
      return { ...tickerRow(r, ts, mergedAt), occurrence: i % 5 };
    case 'orderbook_snapshots':
      return { ...snapshotRow(r, ts, mergedAt), conn_id: i };
    default:
      return { ...lifecycleRow(r, ts, mergedAt), fingerprint: i * 1000 + Math.floor(r() * 1000) };
  }
}

/** Production rows of a table as sorted JSON lines, every value as PostgreSQL text. */
export async function productionRows(client: ClientBase, t: TimeSeriesTable): Promise<string[]> {
  const cols = allColumns(t);
  const r = await client.query({ text: `SELECT ${cols.map((c) => `${quoteIdent(c.name)}::text`).join(', ')} FROM ${t.name}`, rowMode: 'array' });
  return r.rows.map((row: unknown[]) => JSON.stringify(row)).sort();
}

/** Rows of the given Parquet files as sorted JSON lines, every value as DuckDB text. */
export async function parquetRows(files: readonly string[], t: TimeSeriesTable): Promise<string[]> {
  if (files.length === 0) return [];
  const inst = await DuckDBInstance.create(':memory:', { autoload_known_extensions: 'false', autoinstall_known_extensions: 'false' });
  const c = await inst.connect();
  try {
    const list = files.map((f) => `'${f.replace(/'/g, "''")}'`).join(', ');
    const cols = allColumns(t)
      .map((col) => `"${col.name}"::VARCHAR`)
      .join(', ');
    const reader = await c.runAndReadAll(`SELECT ${cols} FROM read_parquet([${list}])`);
    return reader
      .getRows()
      .map((row) => JSON.stringify(row.map((v) => (v === null ? null : String(v)))))
      .sort();
  } finally {
    c.closeSync();
    inst.closeSync();
  }
}

/** Physical and logical Parquet type of each column of a file. */
export async function parquetSchema(file: string): Promise<Map<string, { type: string; logical: string | null }>> {
  const inst = await DuckDBInstance.create(':memory:', { autoload_known_extensions: 'false', autoinstall_known_extensions: 'false' });
  const c = await inst.connect();
  try {
    const reader = await c.runAndReadAll(`SELECT name, type, logical_type FROM parquet_schema('${file}') WHERE type IS NOT NULL`);
    return new Map(reader.getRows().map(([name, type, logical]) => [String(name), { type: String(type), logical: logical === null ? null : String(logical) }]));
  } finally {
    c.closeSync();
    inst.closeSync();
  }
}

/** Every file under dir, as sorted '/'-separated paths relative to it (directories named in `skip` left out). */
export function filesUnder(dir: string, skip: readonly string[] = []): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      if (skip.includes(name)) continue;
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(relative(dir, p).split(sep).join('/'));
    }
  };
  walk(dir);
  return out.sort();
}
