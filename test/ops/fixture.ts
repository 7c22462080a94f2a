// Test data for the ops tests: a migrated production database and gatherer databases, filled with
// a small healthy dataset relative to the real clock (the runbook queries use now()).
import { randomUUID } from 'node:crypto';
import type { ClientBase } from 'pg';
import { migrate } from '../../src/schema/migrate';
import { TIME_SERIES_TABLES, quoteIdent, type TimeSeriesTableName } from '../../src/schema/tables';
import { withClient, type TestPg } from '../harness/pg';

export type Row = Record<string, unknown>;

export interface OpsDbs {
  readonly production: string;
  readonly gatherers: { name: string; url: string }[];
}

export async function createOpsDbs(pg: TestPg, names: readonly string[] = ['g1', 'g2', 'g3']): Promise<OpsDbs> {
  const production = await pg.newDatabase('kdp_prod');
  await withClient(production, (c) => migrate(c, { kind: 'production', engine: 'postgres' }));
  const gatherers: { name: string; url: string }[] = [];
  for (const name of names) {
    const url = await pg.newDatabase(`kdp_${name}`);
    await withClient(url, (c) => migrate(c, { kind: 'gatherer', engine: 'postgres' }));
    gatherers.push({ name, url });
  }
  return { production, gatherers };
}

/** Inserts rows into a time-series table; provenance defaults filled in. Production adds merged_at. */
export async function insertRows(c: ClientBase, table: TimeSeriesTableName, rows: readonly Row[], production: boolean): Promise<void> {
  if (rows.length === 0) return;
  const t = TIME_SERIES_TABLES.find((x) => x.name === table)!;
  const cols = t.columns.map((x) => x.name).concat(production ? ['merged_at'] : []);
  const params: unknown[] = [];
  const tuples = rows.map((r) => {
    const full: Row = {
      conn_id: 1,
      sid: 1,
      seq: null,
      batch_id: 1,
      merged_at: r.received_at,
      ...r,
    };
    return `(${cols
      .map((name) => {
        const v = full[name];
        params.push(v !== null && typeof v === 'object' ? JSON.stringify(v) : (v ?? null));
        return `$${params.length}`;
      })
      .join(', ')})`;
  });
  const conflict = production ? ' ON CONFLICT DO NOTHING' : '';
  await c.query(`INSERT INTO ${table} (${cols.map(quoteIdent).join(', ')}) VALUES ${tuples.join(', ')}${conflict}`, params);
}

export const OPEN_MARKETS = ['KXA-26NOV23', 'KXB-26NOV23', 'KXC-26NOV23'];
export const CLOSED_MARKET = 'KXD-26NOV20';
const MIN = 60_000_000;

export interface Dataset {
  readonly nowUs: number;
  readonly trades: Row[];
  readonly deltas: Row[];
  readonly tickers: Row[];
  /** Per gatherer (snapshots keep their provenance). */
  snapshots(gatherer: string): Row[];
}

/** Trades, deltas (two identical in one µs), tickers and REST/WS snapshots for the open markets. */
export function healthyDataset(nowUs: number): Dataset {
  const trades: Row[] = [];
  const deltas: Row[] = [];
  const tickers: Row[] = [];
  OPEN_MARKETS.forEach((ticker, i) => {
    for (const [k, age] of [10 * MIN, 3 * MIN, 20_000_000].entries()) {
      const ts = Math.floor((nowUs - age - i * 1000) / 1000) * 1000;
      trades.push({
        trade_id: randomUUID(),
        ticker,
        yes_price: '0.36',
        no_price: '0.64',
        count: `${k + 1}.5`,
        exchange_ts: ts,
        source: 'ws',
        received_at: ts + 900,
      });
    }
    const t0 = nowUs - 20 * MIN + i;
    deltas.push(
      {
        ticker,
        side: 'yes',
        price: '0.35',
        delta: '10.00',
        exchange_ts: t0,
        occurrence: 0,
        received_at: t0 + 500,
      },
      {
        ticker,
        side: 'yes',
        price: '0.35',
        delta: '-2.00',
        exchange_ts: t0 + 7,
        occurrence: 0,
        received_at: t0 + 600,
      },
      {
        ticker,
        side: 'yes',
        price: '0.35',
        delta: '-2.00',
        exchange_ts: t0 + 7,
        occurrence: 1,
        received_at: t0 + 600,
      },
      {
        ticker,
        side: 'no',
        price: '0.60',
        delta: '5.25',
        exchange_ts: t0 + 9,
        occurrence: 0,
        received_at: t0 + 700,
      },
    );
    const tt = nowUs - 15 * MIN + i;
    tickers.push({
      ticker,
      price: '0.36',
      yes_bid: '0.35',
      yes_ask: '0.37',
      volume: '1200.00',
      exchange_ts: tt,
      fingerprint: 1000 + i,
      occurrence: 0,
      received_at: tt + 800,
    });
  });
  const snapshots = (gatherer: string): Row[] =>
    OPEN_MARKETS.flatMap((ticker, i) => [
      {
        ticker,
        yes_levels: [['0.35', '6.00']],
        no_levels: [['0.60', '5.25']],
        snapshot_ts: nowUs - 8 * MIN + i,
        source: 'rest',
        last_delta_ts: null,
        conn_id: 0,
        sid: 0,
        received_at: nowUs - 8 * MIN + i,
        gatherer,
      },
      {
        ticker,
        yes_levels: [],
        no_levels: [],
        snapshot_ts: nowUs - 30 * MIN + i,
        source: 'ws',
        last_delta_ts: null,
        received_at: nowUs - 30 * MIN + i,
        gatherer,
      },
    ]);
  return { nowUs, trades, deltas, tickers, snapshots };
}

const withGatherer = (rows: readonly Row[], gatherer: string): Row[] => rows.map((r) => ({ ...r, gatherer }));

async function insertRegistry(c: ClientBase, nowUs: number, production: boolean): Promise<void> {
  const statusCol = production ? ', market_status' : '';
  for (const [ticker, status, coarse] of [...OPEN_MARKETS.map((t) => [t, 'active', 'open'] as const), [CLOSED_MARKET, 'closed', 'closed'] as const]) {
    const params = [ticker, ticker.split('-')[0], status, nowUs - 180 * MIN, nowUs + 600 * MIN, nowUs, ...(production ? [coarse] : [])];
    await c.query(
      `INSERT INTO markets (ticker, event_ticker, status, open_time, close_time, raw, updated_at${statusCol})
       VALUES ($1, $2, $3, $4, $5, '{}'::jsonb, $6${production ? ', $7' : ''}) ON CONFLICT DO NOTHING`,
      params,
    );
  }
}

/** A recovered gap (old) and an unrecovered recent one, in both ledgers. */
async function insertGaps(c: ClientBase, nowUs: number, gatherer: string, production: boolean): Promise<void> {
  const gaps = [
    { id: 1, recovered: true, detected: nowUs - 50 * MIN, method: 'get_snapshot' },
    { id: 2, recovered: false, detected: nowUs - 2 * MIN, method: null },
  ];
  for (const g of gaps) {
    const cols = `${production ? 'gap_id, ' : ''}gatherer, conn_id, sid, channel, kind, tickers, expected_seq, got_seq, window_start, detected_at, recovered, recovered_at, recovery_method, updated_at`;
    const values = [
      ...(production ? [g.id] : []),
      gatherer,
      1,
      3,
      'orderbook_delta',
      'seq_gap',
      [OPEN_MARKETS[0]],
      100,
      104,
      g.detected - 1000,
      g.detected,
      g.recovered,
      g.recovered ? g.detected + 2_000_000 : null,
      g.method,
      g.detected,
    ];
    await c.query(`INSERT INTO gap_ledger (${cols}) VALUES (${values.map((_, i) => `$${i + 1}`).join(', ')}) ON CONFLICT DO NOTHING`, values);
  }
}

/** Every gatherer gets a full copy; production gets the merge (as the deduplicator would build it). */
export async function loadHealthy(dbs: OpsDbs, data: Dataset): Promise<void> {
  for (const g of dbs.gatherers) {
    await withClient(g.url, async (c) => {
      await insertRegistry(c, data.nowUs, false);
      await insertRows(c, 'trades', withGatherer(data.trades, g.name), false);
      await insertRows(c, 'orderbook_deltas', withGatherer(data.deltas, g.name), false);
      await insertRows(c, 'tickers', withGatherer(data.tickers, g.name), false);
      await insertRows(c, 'orderbook_snapshots', data.snapshots(g.name), false);
      await insertGaps(c, data.nowUs, g.name, false);
    });
  }
  await withClient(dbs.production, async (c) => {
    await insertRegistry(c, data.nowUs, true);
    for (const g of dbs.gatherers) {
      await insertRows(c, 'trades', withGatherer(data.trades, g.name), true);
      await insertRows(c, 'orderbook_deltas', withGatherer(data.deltas, g.name), true);
      await insertRows(c, 'tickers', withGatherer(data.tickers, g.name), true);
      await insertRows(c, 'orderbook_snapshots', data.snapshots(g.name), true);
      await insertGaps(c, data.nowUs, g.name, true);
    }
  });
}
