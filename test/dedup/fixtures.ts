// Gatherer and production databases for deduplicator tests, written the way the real gatherer
// writers write: every batch's rows plus its ingest_batches row in ONE transaction.
import { Client } from 'pg';
import { migrate } from '../../src/schema/migrate';
import { TIME_SERIES_TABLES, columnNames, quoteIdent, tableByName, type TimeSeriesTableName } from '../../src/schema/tables';
import type { DedupOptions } from '../../src/dedup/options';
import { resolveDedupOptions } from '../../src/dedup/options';
import type { TestPg } from '../harness/pg';

export type Row = Record<string, unknown>;
export const NOW_US = Date.UTC(2026, 10, 23, 12) * 1000;

export async function migrated(url: string, kind: 'gatherer' | 'production'): Promise<string> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    await migrate(c, { kind, engine: 'postgres', nowUs: NOW_US });
  } finally {
    await c.end();
  }
  return url;
}

export async function connect(url: string): Promise<Client> {
  const c = new Client({ connectionString: url });
  await c.connect();
  return c;
}

/** A new migrated database on `pg` and a client to it (kept in `clients`, for the caller to end). */
export async function newDb(pg: TestPg, kind: 'gatherer' | 'production', clients: Client[]): Promise<{ url: string; c: Client }> {
  const url = await migrated(await pg.newDatabase(kind === 'gatherer' ? 'g' : 'p'), kind);
  const c = await connect(url);
  clients.push(c);
  return { url, c };
}

/** Inserts rows (all columns but batch_id) and their ingest_batches row; commit is up to `commit`. */
export async function writeBatchOpen(c: Client, table: TimeSeriesTableName, rows: readonly Row[]): Promise<string> {
  const t = tableByName(table);
  const cols = columnNames(t).map(quoteIdent).join(', ');
  const id = (await c.query(`SELECT nextval('ingest_batch_id_seq')::text AS id`)).rows[0].id as string;
  const withBatch = rows.map((r) => ({ ...r, batch_id: id }));
  await c.query(`INSERT INTO ${t.name} (${cols}) SELECT ${cols} FROM json_populate_recordset(NULL::${t.name}, $1::json)`, [JSON.stringify(withBatch)]);
  await c.query(`INSERT INTO ingest_batches (batch_id, writer, table_name, row_count) VALUES ($1, 'test-writer', $2, $3)`, [id, table, rows.length]);
  return id;
}

export async function writeBatch(c: Client, table: TimeSeriesTableName, rows: readonly Row[]): Promise<string> {
  await c.query('BEGIN');
  try {
    const id = await writeBatchOpen(c, table, rows);
    await c.query('COMMIT');
    return id;
  } catch (err) {
    await c.query('ROLLBACK');
    throw err;
  }
}

/** Writes rows in batches of `perBatch`, one transaction each. */
export async function writeRows(c: Client, table: TimeSeriesTableName, rows: readonly Row[], perBatch = 40): Promise<void> {
  for (let i = 0; i < rows.length; i += perBatch) await writeBatch(c, table, rows.slice(i, i + perBatch));
}

/** Deterministic PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const MARKETS = ['KXBTCD-26NOV2312-T97499.99', 'KXETHD-26NOV2312-T3599.99', 'KXNBAGAME-26NOV23LALBOS-LAL', 'KXHIGHNY-26NOV23-B48.5'];

/** Exchange events without provenance: what every gatherer with a continuous feed sees alike. */
export interface World {
  trades: Row[];
  deltas: Row[];
  tickers: Row[];
  lifecycle: Row[];
}

const uuidOf = (rand: () => number): string => {
  const h = Array.from({ length: 32 }, () => Math.floor(rand() * 16).toString(16)).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
};
const cents = (n: number): string => (n / 100).toFixed(2);

/** `n` exchange events per table starting at `startUs`, one every ~`stepUs`. */
export function makeWorld(seed: number, n: number, startUs = NOW_US, stepUs = 1_000): World {
  const rand = prng(seed);
  const w: World = { trades: [], deltas: [], tickers: [], lifecycle: [] };
  for (let i = 0; i < n; i++) {
    const ts = startUs + i * stepUs;
    const ticker = MARKETS[i % MARKETS.length]!;
    const yes = 1 + Math.floor(rand() * 98);
    w.trades.push({
      trade_id: uuidOf(rand),
      ticker,
      yes_price: cents(yes),
      no_price: cents(100 - yes),
      count: (1 + Math.floor(rand() * 500)).toString() + (rand() < 0.2 ? '.50' : ''),
      taker_side: rand() < 0.5 ? 'yes' : 'no',
      taker_outcome_side: null,
      taker_book_side: null,
      is_block_trade: false,
      exchange_ts: Math.floor(ts / 1000) * 1000,
      source: 'ws',
    });
    const delta = {
      ticker,
      side: rand() < 0.5 ? 'yes' : 'no',
      price: cents(yes),
      delta: (rand() < 0.5 ? '-' : '') + (1 + Math.floor(rand() * 300)) + '.00',
      exchange_ts: ts,
      occurrence: 0,
    };
    w.deltas.push(delta);
    // Every 7th change repeats identically in the same microsecond (one taker eating two equal
    // resting orders): occurrence 1 keeps both.
    if (i % 7 === 3) w.deltas.push({ ...delta, occurrence: 1 });
    const tick = {
      ticker,
      price: cents(yes),
      yes_bid: cents(Math.max(1, yes - 1)),
      yes_ask: cents(Math.min(99, yes + 1)),
      yes_bid_size: '120.00',
      yes_ask_size: '75.00',
      last_trade_size: '3.00',
      volume: String(1000 + i) + '.00',
      open_interest: String(500 + i) + '.00',
      dollar_volume: 1000 + i,
      dollar_open_interest: 700 + i,
      exchange_ts: ts,
      fingerprint: String(BigInt.asIntN(64, BigInt(Math.floor(rand() * 2 ** 52)) * 4099n)),
      occurrence: 0,
    };
    w.tickers.push(tick);
    // Two different updates of one market in one microsecond: distinct fingerprints, both kept.
    if (i % 11 === 5)
      w.tickers.push({
        ...tick,
        volume: String(1001 + i) + '.00',
        fingerprint: String(BigInt(tick.fingerprint as string) + 1n),
      });
    if (i % 25 === 0) {
      w.lifecycle.push({
        channel: 'market_lifecycle_v2',
        ticker,
        event_ticker: ticker.split('-').slice(0, 2).join('-'),
        event_type: 'activated',
        payload: { market_ticker: ticker, event_type: 'activated', open_ts: Math.floor(ts / 1e6) },
        fingerprint: String(9_000_000 + i),
      });
    }
  }
  return w;
}

/** A gatherer's copy: the world minus events in its gaps, with its own provenance. */
export function copyFor(world: World, gatherer: string, gaps: readonly [number, number][], latencyUs = 2_000): Record<string, Row[]> {
  const inGap = (ts: number): boolean => gaps.some(([a, b]) => ts >= a && ts < b);
  let seq = 1000 + gatherer.length * 17;
  const prov = (ts: number, sid: number, sequenced = true): Row => ({
    received_at: ts + latencyUs,
    gatherer,
    conn_id: 1 + (sid % 3),
    sid,
    seq: sequenced ? seq++ : null,
  });
  const keep = (rows: Row[], tcol: string): Row[] => rows.filter((r) => !inGap(Number(r[tcol])));
  return {
    trades: keep(world.trades, 'exchange_ts').map((r) => ({
      ...r,
      ...prov(Number(r.exchange_ts), 2),
    })),
    orderbook_deltas: keep(world.deltas, 'exchange_ts').map((r) => ({
      ...r,
      ...prov(Number(r.exchange_ts), 1),
    })),
    tickers: keep(world.tickers, 'exchange_ts').map((r) => ({
      ...r,
      ...prov(Number(r.exchange_ts), 3, false),
    })),
    lifecycle_events: world.lifecycle
      .filter((r) => !inGap(Number((r.payload as { open_ts: number }).open_ts) * 1e6))
      .map((r) => ({ ...r, ...prov(NOW_US + 5_000_000, 4, false) })),
    // Snapshots have no exchange time: each gatherer's own are kept.
    orderbook_snapshots: MARKETS.map((ticker, i) => ({
      ticker,
      yes_levels: [
        ['0.35', '120.00'],
        ['0.36', '15.50'],
      ],
      no_levels: [['0.62', '40.00']],
      snapshot_ts: NOW_US + i * 1_000 + latencyUs,
      source: i % 2 ? 'rest' : 'ws',
      last_delta_ts: i % 2 ? null : NOW_US,
      ...(i % 2 ? { received_at: NOW_US + i * 1_000 + latencyUs, gatherer, conn_id: 0, sid: 0, seq: null } : prov(NOW_US + i * 1_000, 1)),
    })),
  };
}

export async function writeCopy(c: Client, copy: Record<string, Row[]>, perBatch = 40): Promise<void> {
  for (const t of TIME_SERIES_TABLES) await writeRows(c, t.name, copy[t.name] ?? [], perBatch);
}

/** Production key tuples of a table, as sorted text (what "equal" means after a merge). */
export async function keysOf(c: Client, table: TimeSeriesTableName): Promise<string[]> {
  const key = tableByName(table).productionKey.map(quoteIdent).join(', ');
  const r = await c.query(`SELECT (${key})::text AS k FROM ${table} ORDER BY 1`);
  return r.rows.map((x) => x.k as string);
}

export async function countOf(c: Client, table: string, where = 'true'): Promise<number> {
  return Number((await c.query(`SELECT count(*)::int AS n FROM ${table} WHERE ${where}`)).rows[0].n);
}

export function dedupOptions(gatherers: { name: string; url: string }[], productionUrl: string, extra: Record<string, unknown> = {}): DedupOptions {
  return resolveDedupOptions({
    gatherers,
    production: { url: productionUrl, connectTimeoutMs: 2_000 },
    sync: {
      intervalMs: 50,
      backoffInitialMs: 20,
      backoffMaxMs: 200,
      ...((extra.sync as object) ?? {}),
    },
    http: { host: '127.0.0.1', healthPort: 0, metricsPort: 0 },
    log: { level: 'silent' },
    ...Object.fromEntries(Object.entries(extra).filter(([k]) => k !== 'sync')),
  });
}

/** The union of gatherer copies keyed in JS on the production key's raw values (independent of SQL). */
export function unionOf(copies: readonly Record<string, Row[]>[]): Record<string, Row[]> {
  const out: Record<string, Row[]> = {};
  for (const t of TIME_SERIES_TABLES) {
    const seen = new Map<string, Row>();
    for (const copy of copies) {
      for (const r of copy[t.name] ?? []) {
        const k = JSON.stringify(t.productionKey.map((c) => r[c]));
        if (!seen.has(k)) seen.set(k, r);
      }
    }
    out[t.name] = [...seen.values()];
  }
  return out;
}

/** Writes expected rows straight into a production-schema "truth" database (a PK clash fails). */
export async function writeTruth(c: Client, expected: Record<string, Row[]>): Promise<void> {
  for (const t of TIME_SERIES_TABLES) {
    const rows = (expected[t.name] ?? []).map((r) => ({ ...r, batch_id: 0, merged_at: 0 }));
    const cols = [...columnNames(t), 'merged_at'].map(quoteIdent).join(', ');
    for (let i = 0; i < rows.length; i += 2000) {
      await c.query(`INSERT INTO ${t.name} (${cols}) SELECT ${cols} FROM json_populate_recordset(NULL::${t.name}, $1::json)`, [
        JSON.stringify(rows.slice(i, i + 2000)),
      ]);
    }
  }
}

/** Asserts production holds exactly the truth's keys for every table; returns row counts. */
export async function diffKeys(production: Client, truth: Client): Promise<Record<string, { production: number; truth: number; equal: boolean }>> {
  const out: Record<string, { production: number; truth: number; equal: boolean }> = {};
  for (const t of TIME_SERIES_TABLES) {
    const a = await keysOf(production, t.name);
    const b = await keysOf(truth, t.name);
    out[t.name] = {
      production: a.length,
      truth: b.length,
      equal: a.length === b.length && a.every((k, i) => k === b[i]),
    };
  }
  return out;
}
