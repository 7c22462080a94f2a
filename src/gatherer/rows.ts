// COPY text row lines for the REST-sourced rows (src/copy/text.ts contract: every column in
// tables.ts order except the final batch_id, which the writer appends). REST rows carry
// source 'rest', conn_id 0, sid 0 and seq NULL; a REST snapshot has no place in the delta stream, so
// both its anchors (last_delta_ts, next_delta_ts) are NULL (docs/semantics.md).
import { COPY_NULL, copyText } from '../copy/text';
import { invariant } from '../core/errors';
import { ORDERBOOK_SNAPSHOTS, TRADES, columnNames, type TimeSeriesTableName } from '../schema/tables';
import type { OrderbookLevels, RestTrade } from './shapes';

/** The writer the caller injects: one transaction with its ingest_batches row per call. */
export type WriteRows = (table: TimeSeriesTableName, rowLines: string[]) => Promise<void>;

// The encoders below hard-code column order; fail at load time if tables.ts changes under them.
const SNAPSHOT_COLUMNS = [
  'ticker',
  'yes_levels',
  'no_levels',
  'snapshot_ts',
  'source',
  'last_delta_ts',
  'next_delta_ts',
  'received_at',
  'gatherer',
  'conn_id',
  'sid',
  'seq',
  'sent_at',
  'batch_id',
];
const TRADE_COLUMNS = [
  'trade_id',
  'ticker',
  'yes_price',
  'no_price',
  'count',
  'taker_side',
  'taker_outcome_side',
  'taker_book_side',
  'is_block_trade',
  'exchange_ts',
  'source',
  'received_at',
  'gatherer',
  'conn_id',
  'sid',
  'seq',
  'sent_at',
  'batch_id',
];
invariant(columnNames(ORDERBOOK_SNAPSHOTS).join() === SNAPSHOT_COLUMNS.join(), 'orderbook_snapshots columns changed: update rows.ts');
invariant(columnNames(TRADES).join() === TRADE_COLUMNS.join(), 'trades columns changed: update rows.ts');

const REST_PROVENANCE_TAIL = '\t0\t0\t' + COPY_NULL + '\t' + COPY_NULL; // conn_id, sid, seq, sent_at

/** One orderbook_snapshots row: levels as JSON [[price, size], ...], snapshot_ts = receive time µs. */
export function snapshotRowLine(ticker: string, book: OrderbookLevels, receivedUs: number, gatherer: string): string {
  const us = String(receivedUs);
  return (
    `${copyText(ticker)}\t${copyText(JSON.stringify(book.yes))}\t${copyText(JSON.stringify(book.no))}\t${us}\trest\t${COPY_NULL}\t${COPY_NULL}` +
    `\t${us}\t${copyText(gatherer)}${REST_PROVENANCE_TAIL}`
  );
}

const nullable = (v: string | null): string => (v === null ? COPY_NULL : copyText(v));

/** One trades row from a REST trade (exchange_ts already truncated to the millisecond). */
export function tradeRowLine(t: RestTrade, receivedUs: number, gatherer: string): string {
  const block = t.isBlockTrade === null ? COPY_NULL : t.isBlockTrade ? 't' : 'f';
  return (
    `${t.tradeId}\t${copyText(t.ticker)}\t${t.yesPrice}\t${t.noPrice}\t${t.count}\t${nullable(t.takerSide)}` +
    `\t${nullable(t.takerOutcomeSide)}\t${nullable(t.takerBookSide)}\t${block}\t${t.exchangeTsUs}\trest` +
    `\t${receivedUs}\t${copyText(gatherer)}${REST_PROVENANCE_TAIL}`
  );
}
