// The one owner of the derived tiers' schemas: the `processed/` and `aggregates/` datasets, their
// Parquet columns, sort order, period (hour or day) and the raw tables they are derived from.
// The producers (src/archive/books.ts, src/archive/candles.ts) write CSV in exactly this column
// order; the Parquet writer types it from here; docs/archive.md documents the same tables.
import { invariant } from '../core/errors';
import { DAY_US, type TimeSeriesTableName } from '../schema/tables';
import { HOUR_US } from './layout';

export type Tier = 'processed' | 'aggregates';
export type DerivedName = 'quotes' | 'book_snapshots_25' | 'trades' | 'candles_1m' | 'candles_1h' | 'candles_1d';

export interface DerivedColumn {
  readonly name: string;
  readonly parquetType: string;
  readonly nullable: boolean;
  /**
   * A DECIMAL the producer writes as an integer count of 10^-scale units (the processed replay
   * computes in µ-units): DuckDB converts it exactly (integer x 10^-scale). Parsing decimal text
   * from CSV costs DuckDB ~15x more: 10 M values 14.6 s as DECIMAL text, 0.9 s as integers.
   */
  readonly csvScaledInteger?: number;
}

export interface DerivedDataset {
  readonly name: DerivedName;
  readonly tier: Tier;
  /** Length of one partition (file): an hour, or a UTC day for daily candles. */
  readonly periodUs: number;
  readonly columns: readonly DerivedColumn[];
  readonly sortColumns: readonly string[];
  /** The column whose min/max the manifest reports (µs). */
  readonly timeColumn: string;
  /** Raw tables read to derive it; a period is derived once these are archived through it. */
  readonly sources: readonly TimeSeriesTableName[];
}

const c = (name: string, parquetType: string, nullable = false): DerivedColumn => ({ name, parquetType, nullable });
/** A DECIMAL the processed replay writes in µ-units (10^-6), or 10^-7 for the mid. */
const m = (name: string, parquetType: string, nullable = false, scale = 6): DerivedColumn => ({ name, parquetType, nullable, csvScaledInteger: scale });
const PRICE = 'DECIMAL(12,6)';
const SIZE = 'DECIMAL(20,2)';
/** A mid price can need one decimal more than its two prices (0.0005 between 0.001 and 0.002). */
const MID = 'DECIMAL(13,7)';

/** Top-of-book columns shared by quotes and enriched trades (NULL: that side of the book is empty). */
const TOP: readonly DerivedColumn[] = [
  m('yes_bid', PRICE, true),
  m('yes_bid_size', SIZE, true),
  m('no_bid', PRICE, true),
  m('no_bid_size', SIZE, true),
  // Kalshi books hold bids only: a YES ask is a NO bid seen from the other side (1 − no_bid).
  m('yes_ask', PRICE, true),
  m('yes_ask_size', SIZE, true),
];

/** Which book a derived book row was built from, and whether its chain is trusted. */
const BUILT_ON: readonly DerivedColumn[] = [
  c('anchor_snapshot_ts', 'BIGINT'),
  c('anchor_gatherer', 'VARCHAR'),
  // True when a gap that every gatherer had covers the market since the anchor (docs/archive.md).
  c('chain_gap', 'BOOLEAN'),
];

export const BOOK_LEVELS = 25;

function levelColumns(): DerivedColumn[] {
  const out: DerivedColumn[] = [];
  for (const side of ['yes', 'no']) {
    for (let i = 1; i <= BOOK_LEVELS; i++) out.push(m(`${side}_price_${i}`, PRICE, true), m(`${side}_size_${i}`, SIZE, true));
  }
  return out;
}

const CANDLE: readonly DerivedColumn[] = [
  c('ticker', 'VARCHAR'),
  c('interval_start', 'BIGINT'),
  c('interval_end', 'BIGINT'),
  // YES prices of the interval's trades in (exchange_ts, trade_id) order; NULL when no trade.
  c('open', PRICE, true),
  c('high', PRICE, true),
  c('low', PRICE, true),
  c('close', PRICE, true),
  c('volume', 'DECIMAL(24,2)'),
  // Σ count × yes_price: what the YES side paid, in dollars, exact.
  c('dollar_volume', 'DECIMAL(32,8)'),
  c('trade_count', 'BIGINT'),
  // dollar_volume / volume rounded half away from zero to 6 decimals; NULL when no trade.
  c('vwap', PRICE, true),
  // open_interest of the last ticker message at or before interval_end within the file's period.
  c('open_interest', SIZE, true),
];

function candles(name: DerivedName, periodUs: number): DerivedDataset {
  return {
    name,
    tier: 'aggregates',
    periodUs,
    columns: CANDLE,
    sortColumns: ['ticker', 'interval_start'],
    timeColumn: 'interval_start',
    sources: ['trades', 'tickers'],
  };
}

export const DERIVED_DATASETS: readonly DerivedDataset[] = [
  {
    name: 'quotes',
    tier: 'processed',
    periodUs: HOUR_US,
    columns: [c('ticker', 'VARCHAR'), c('exchange_ts', 'BIGINT'), ...TOP, ...BUILT_ON],
    sortColumns: ['ticker', 'exchange_ts'],
    timeColumn: 'exchange_ts',
    sources: ['orderbook_deltas', 'orderbook_snapshots'],
  },
  {
    name: 'book_snapshots_25',
    tier: 'processed',
    periodUs: HOUR_US,
    columns: [
      c('ticker', 'VARCHAR'),
      c('snapshot_at', 'BIGINT'),
      c('reason', 'VARCHAR'),
      c('yes_levels', 'SMALLINT'),
      c('no_levels', 'SMALLINT'),
      ...levelColumns(),
      ...BUILT_ON,
    ],
    sortColumns: ['ticker', 'snapshot_at'],
    timeColumn: 'snapshot_at',
    sources: ['orderbook_deltas', 'orderbook_snapshots'],
  },
  {
    name: 'trades',
    tier: 'processed',
    periodUs: HOUR_US,
    columns: [
      c('trade_id', 'VARCHAR'),
      c('ticker', 'VARCHAR'),
      c('exchange_ts', 'BIGINT'),
      m('yes_price', PRICE),
      m('no_price', PRICE),
      m('count', SIZE),
      c('taker_side', 'VARCHAR', true),
      c('source', 'VARCHAR'),
      ...TOP,
      m('mid', MID, true, 7),
      m('spread', PRICE, true),
      c('book_known', 'BOOLEAN'),
      c('chain_gap', 'BOOLEAN'),
    ],
    sortColumns: ['ticker', 'exchange_ts', 'trade_id'],
    timeColumn: 'exchange_ts',
    sources: ['trades', 'orderbook_deltas', 'orderbook_snapshots'],
  },
  candles('candles_1m', HOUR_US),
  candles('candles_1h', HOUR_US),
  candles('candles_1d', DAY_US),
];

export const PROCESSED_NAMES = DERIVED_DATASETS.filter((d) => d.tier === 'processed').map((d) => d.name);
export const AGGREGATE_NAMES = DERIVED_DATASETS.filter((d) => d.tier === 'aggregates').map((d) => d.name);

export function derivedByName(name: string): DerivedDataset {
  const d = DERIVED_DATASETS.find((x) => x.name === name);
  invariant(d, `unknown derived dataset ${name}`);
  return d;
}

/** Candle interval length per aggregate dataset (µs). */
export const CANDLE_INTERVAL_US: Readonly<Record<string, number>> = { candles_1m: 60_000_000, candles_1h: HOUR_US, candles_1d: DAY_US };

/** The export_cursors.table_name of a derived dataset: `<tier>/<name>` never clashes with a raw table name. */
export const cursorName = (d: DerivedDataset): string => `${d.tier}/${d.name}`;
