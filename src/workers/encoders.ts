// Row encoders for COPY text, generated from the one schema owner (src/schema/tables.ts) at
// setup. Each encoder turns a row object whose keys are the table's column names into a row line
// in the contract of src/copy/text.ts: every column but the final batch_id, TAB-separated,
// COPY-escaped, NULL as \N, no newline. Generating a straight-line function per table (rather
// than looping over column metadata per row) keeps the hot path monomorphic and allocation-free
// apart from the result string; the column names come from our own schema, never from input.
import { COPY_NULL, copyText } from '../copy/text';
import { KdpError } from '../core/errors';
import {
  LIFECYCLE_EVENTS,
  ORDERBOOK_DELTAS,
  ORDERBOOK_SNAPSHOTS,
  TICKERS,
  TRADES,
  type Column,
  type TimeSeriesTable,
  type TimeSeriesTableName,
} from '../schema/tables';

/** Columns every row carries after its own (batch_id excluded: the writer appends it). */
export interface Provenance {
  received_at: number;
  gatherer: string;
  conn_id: number;
  sid: number;
  seq: number | null;
  /** µs: the envelope's sending_ts_ms x 1000, else null. */
  sent_at: number | null;
}

export interface TradeRow extends Provenance {
  trade_id: string;
  ticker: string;
  yes_price: string;
  no_price: string;
  count: string;
  taker_side: string | null;
  taker_outcome_side: string | null;
  taker_book_side: string | null;
  is_block_trade: boolean | null;
  exchange_ts: number;
  source: string;
}

export interface DeltaRow extends Provenance {
  ticker: string;
  side: string;
  price: string;
  delta: string;
  exchange_ts: number;
  occurrence: number;
}

export interface SnapshotRow extends Provenance {
  ticker: string;
  yes_levels: string;
  no_levels: string;
  snapshot_ts: number;
  source: string;
  last_delta_ts: number | null;
  next_delta_ts: number | null;
}

export interface TickerRow extends Provenance {
  ticker: string;
  price: string | null;
  yes_bid: string | null;
  yes_ask: string | null;
  yes_bid_size: string | null;
  yes_ask_size: string | null;
  last_trade_size: string | null;
  volume: string | null;
  open_interest: string | null;
  dollar_volume: number | null;
  dollar_open_interest: number | null;
  exchange_ts: number;
  fingerprint: string;
  occurrence: number;
}

export interface LifecycleRow extends Provenance {
  channel: string;
  ticker: string | null;
  event_ticker: string | null;
  event_type: string;
  payload: string;
  fingerprint: string;
}

export type RowEncoder<R> = (row: R) => string;

/** The columns an encoder writes: the table's columns minus the writer-owned batch_id. */
export function encodedColumns(table: TimeSeriesTable): readonly Column[] {
  const last = table.columns[table.columns.length - 1];
  if (last?.name !== 'batch_id') throw new KdpError('KDP_ERR_INTERNAL', `table ${table.name} does not end with batch_id`);
  return table.columns.slice(0, -1);
}

/** JS expression rendering `v` (an already validated value) in COPY text for one column type. */
function valueExpression(column: Column, v: string): string {
  let text: string;
  switch (column.type) {
    case 'text':
    case 'uuid':
    case 'jsonb':
    case 'text[]':
      text = `esc(${v})`;
      break;
    case 'boolean':
      text = `(${v} ? 't' : 'f')`;
      break;
    case 'numeric(12,6)':
    case 'numeric(20,2)':
      // Validated decimal strings: digits, sign and dot only, nothing to escape.
      text = v;
      break;
    case 'bigint':
    case 'integer':
    case 'smallint':
    case 'xid8':
      text = `('' + ${v})`;
      break;
  }
  return column.nullable ? `(${v} === null || ${v} === undefined ? NUL : ${text})` : text;
}

/** Builds the row-line encoder of `table` from its column list. */
export function compileEncoder<R>(table: TimeSeriesTable): RowEncoder<R> {
  const parts = encodedColumns(table).map((c) => {
    if (!/^[a-z_][a-z0-9_]*$/.test(c.name)) throw new KdpError('KDP_ERR_INTERNAL', `unsafe column name ${c.name}`);
    return valueExpression(c, `r.${c.name}`);
  });
  const body = `return ${parts.join(" + '\\t' + ")};`;
  const factory = new Function('esc', 'NUL', `return function encode_${table.name}(r) { ${body} };`) as (
    esc: (s: string) => string,
    nul: string,
  ) => RowEncoder<R>;
  return factory(copyText, COPY_NULL);
}

export interface Encoders {
  readonly trades: RowEncoder<TradeRow>;
  readonly orderbook_deltas: RowEncoder<DeltaRow>;
  readonly orderbook_snapshots: RowEncoder<SnapshotRow>;
  readonly tickers: RowEncoder<TickerRow>;
  readonly lifecycle_events: RowEncoder<LifecycleRow>;
}

export function compileEncoders(): Encoders {
  return {
    trades: compileEncoder<TradeRow>(TRADES),
    orderbook_deltas: compileEncoder<DeltaRow>(ORDERBOOK_DELTAS),
    orderbook_snapshots: compileEncoder<SnapshotRow>(ORDERBOOK_SNAPSHOTS),
    tickers: compileEncoder<TickerRow>(TICKERS),
    lifecycle_events: compileEncoder<LifecycleRow>(LIFECYCLE_EVENTS),
  };
}

export const TABLE_NAMES: readonly TimeSeriesTableName[] = ['trades', 'orderbook_deltas', 'orderbook_snapshots', 'tickers', 'lifecycle_events'];
