// The one owner of row schemas. DDL (migrations), COPY writers (column order), the
// deduplicator (column lists, merge keys) and the archiver (Parquet columns) all read these.
// Units: every *_ts / *_at column is BIGINT microseconds since the Unix epoch; prices are
// NUMERIC dollars (exact, up to 6 decimals), sizes NUMERIC contracts (exact, 2 decimals).
// See docs/semantics.md for what each column means and why the keys are what they are.
import { invariant } from '../core/errors';

export type PgType = 'text' | 'uuid' | 'bigint' | 'integer' | 'smallint' | 'boolean' | 'jsonb' | 'numeric(12,6)' | 'numeric(20,2)' | 'text[]' | 'xid8';

export interface Column {
  readonly name: string;
  readonly type: PgType;
  readonly nullable: boolean;
}

export interface TimeSeriesTable {
  readonly name: TimeSeriesTableName;
  /** Columns in COPY order, shared by gatherer and production tables. */
  readonly columns: readonly Column[];
  /** Partitioning / hypertable time column (BIGINT µs). */
  readonly timeColumn: string;
  /** Production merge key: identical across gatherers for the same exchange event. Leads with time. */
  readonly productionKey: readonly string[];
  /** Gatherer retention on the TimescaleDB path and the partition-drop job (days; 0 = keep). */
  readonly gathererRetentionDays: number;
}

export type TimeSeriesTableName = 'trades' | 'orderbook_deltas' | 'orderbook_snapshots' | 'tickers' | 'lifecycle_events';

const col = (name: string, type: PgType, nullable = false): Column => ({ name, type, nullable });

const PRICE = 'numeric(12,6)' as const;
const SIZE = 'numeric(20,2)' as const;

/** Provenance carried by every time-series row: which gatherer, connection, subscription, seq. */
const PROVENANCE: readonly Column[] = [
  col('received_at', 'bigint'),
  col('gatherer', 'text'),
  col('conn_id', 'integer'),
  col('sid', 'integer'),
  col('seq', 'bigint', true),
  // µs: the envelope's sending_ts_ms (when Kalshi queued the message at its network layer) x 1000;
  // NULL when the message had none and on REST rows. Added by migration 3.
  col('sent_at', 'bigint', true),
  col('batch_id', 'bigint'),
];

export const TRADES: TimeSeriesTable = {
  name: 'trades',
  columns: [
    col('trade_id', 'uuid'),
    col('ticker', 'text'),
    col('yes_price', PRICE),
    col('no_price', PRICE),
    col('count', SIZE),
    col('taker_side', 'text', true),
    col('taker_outcome_side', 'text', true),
    col('taker_book_side', 'text', true),
    col('is_block_trade', 'boolean', true),
    // Milliseconds x 1000: WS trades carry ts_ms, REST trades created_time (µs); both are
    // truncated to the millisecond so a backfilled trade has the same key as the live one.
    col('exchange_ts', 'bigint'),
    col('source', 'text'),
    ...PROVENANCE,
  ],
  timeColumn: 'exchange_ts',
  productionKey: ['exchange_ts', 'trade_id'],
  gathererRetentionDays: 30,
};

export const ORDERBOOK_DELTAS: TimeSeriesTable = {
  name: 'orderbook_deltas',
  columns: [
    col('ticker', 'text'),
    col('side', 'text'),
    col('price', PRICE),
    col('delta', SIZE),
    col('exchange_ts', 'bigint'),
    // 0 for the first change with this (ticker, exchange_ts, side, price, delta) in the
    // gatherer's stream, 1 for the second identical one, ... (see docs/semantics.md).
    col('occurrence', 'smallint'),
    ...PROVENANCE,
  ],
  timeColumn: 'exchange_ts',
  productionKey: ['exchange_ts', 'ticker', 'side', 'price', 'delta', 'occurrence'],
  gathererRetentionDays: 7,
};

export const ORDERBOOK_SNAPSHOTS: TimeSeriesTable = {
  name: 'orderbook_snapshots',
  columns: [
    col('ticker', 'text'),
    // [[price, size], ...] as exact decimal strings, bids ascending (best bid last).
    col('yes_levels', 'jsonb'),
    col('no_levels', 'jsonb'),
    // Snapshots carry no exchange time: this is the receive time (µs) of the frame / response.
    col('snapshot_ts', 'bigint'),
    col('source', 'text'),
    // exchange_ts of the last delta (any market) received in order on the same sid before the
    // snapshot (NULL when none was, or frames were lost since): anchors the snapshot in the delta
    // stream for book reconstruction (docs/semantics.md).
    col('last_delta_ts', 'bigint', true),
    // exchange_ts of the first delta (any market) received in order on the same sid after the
    // snapshot, with no frame lost in between: every change before it is in the snapshot and none
    // from it on, whatever was lost before the snapshot. NULL when the sid broke, closed or stayed
    // quiet past the worker's hold (docs/semantics.md). Added by migration 6.
    col('next_delta_ts', 'bigint', true),
    ...PROVENANCE,
  ],
  timeColumn: 'snapshot_ts',
  productionKey: ['snapshot_ts', 'ticker', 'gatherer', 'source', 'conn_id', 'sid'],
  gathererRetentionDays: 30,
};

export const TICKERS: TimeSeriesTable = {
  name: 'tickers',
  columns: [
    col('ticker', 'text'),
    col('price', PRICE, true),
    col('yes_bid', PRICE, true),
    col('yes_ask', PRICE, true),
    col('yes_bid_size', SIZE, true),
    col('yes_ask_size', SIZE, true),
    col('last_trade_size', SIZE, true),
    col('volume', SIZE, true),
    col('open_interest', SIZE, true),
    col('dollar_volume', 'bigint', true),
    col('dollar_open_interest', 'bigint', true),
    col('exchange_ts', 'bigint'),
    // 64-bit FNV-1a of the normalised content, as a signed bigint; with occurrence it keeps
    // distinct updates in one microsecond apart while identical copies collapse.
    col('fingerprint', 'bigint'),
    col('occurrence', 'smallint'),
    ...PROVENANCE,
  ],
  timeColumn: 'exchange_ts',
  productionKey: ['exchange_ts', 'ticker', 'fingerprint', 'occurrence'],
  gathererRetentionDays: 7,
};

export const LIFECYCLE_EVENTS: TimeSeriesTable = {
  name: 'lifecycle_events',
  columns: [
    col('channel', 'text'),
    col('ticker', 'text', true),
    col('event_ticker', 'text', true),
    col('event_type', 'text'),
    col('payload', 'jsonb'),
    col('fingerprint', 'bigint'),
    // Lifecycle messages carry no message time; received_at stands in for partitioning.
    ...PROVENANCE,
  ],
  timeColumn: 'received_at',
  // The exchange sends each lifecycle event once per subscriber: identical payloads collapse.
  // received_at differs per gatherer, so the production key cannot include time: production's
  // lifecycle table is therefore not partitioned (it is small).
  productionKey: ['fingerprint', 'event_type'],
  gathererRetentionDays: 30,
};

export const TIME_SERIES_TABLES: readonly TimeSeriesTable[] = [TRADES, ORDERBOOK_DELTAS, ORDERBOOK_SNAPSHOTS, TICKERS, LIFECYCLE_EVENTS];

export function tableByName(name: TimeSeriesTableName): TimeSeriesTable {
  const t = TIME_SERIES_TABLES.find((x) => x.name === name);
  invariant(t, `unknown table ${name}`);
  return t;
}

export const columnNames = (t: TimeSeriesTable): string[] => t.columns.map((c) => c.name);

/** `COPY table (c1, c2, ...) FROM STDIN` — precomputed once per writer. */
export function copyFromStatement(t: TimeSeriesTable, targetName: string = t.name): string {
  return `COPY ${targetName} (${columnNames(t).map(quoteIdent).join(', ')}) FROM STDIN`;
}

export function quoteIdent(name: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(name) && !RESERVED.has(name) ? name : `"${name.replace(/"/g, '""')}"`;
}
const RESERVED = new Set(['count', 'user', 'order', 'table', 'time', 'source']);

/** Per-table production-only columns appended after the shared ones. */
export const PRODUCTION_EXTRA_COLUMNS: readonly Column[] = [col('merged_at', 'bigint')];

/**
 * Production-only per-row provenance (migration 4): bit `b` is set when the gatherer that
 * `gatherer_bits` maps to `b` delivered a copy of the row. NULL: merged before migration 4
 * (unknown). Kept out of PRODUCTION_EXTRA_COLUMNS: it changes after insert, so it is not part of
 * what the archiver exports (an exported hour is re-exported on new rows, not on new copies).
 */
export const DELIVERED_BY = col('delivered_by', 'bigint', true);
/** Bits 0..62 of a signed bigint: bit 63 would make the mask negative. */
export const GATHERER_BITS_MAX = 63;

/** Day length in µs: partitions and hypertable chunks are one day of the time column. */
export const DAY_US = 86_400_000_000;
