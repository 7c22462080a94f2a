// Validation of Kalshi REST response bodies into typed values. Anything unexpected becomes a
// coded KDP_ERR_MSG_SHAPE / _DECIMAL / _TIMESTAMP error naming the field, never a crash later.
// Prices and sizes stay the exchange's decimal strings (validated, never turned into floats).
import { KdpError } from '../core/errors';
import { tradeCountFp, tradeKeyTimeUs } from '../kalshi/protocol';

export type JsonObject = Record<string, unknown>;

/** [price_dollars, size_fp] exact decimal strings; bids ascending (best bid last), as Kalshi sends. */
export type Level = readonly [string, string];

export interface OrderbookLevels {
  readonly yes: readonly Level[];
  readonly no: readonly Level[];
}

export interface KalshiMarket {
  readonly ticker: string;
  readonly eventTicker: string | null;
  /** Kalshi status: initialized, inactive, active, closed, determined, disputed, amended, finalized. */
  readonly status: string;
  readonly openTimeMs: number | null;
  readonly closeTimeMs: number | null;
  readonly result: string | null;
  readonly priceLevelStructure: string | null;
  readonly mveCollectionTicker: string | null;
  readonly raw: JsonObject;
}

export interface KalshiEvent {
  readonly eventTicker: string;
  readonly seriesTicker: string | null;
  readonly title: string | null;
  readonly subTitle: string | null;
  readonly mutuallyExclusive: boolean | null;
  readonly raw: JsonObject;
}

export interface KalshiSeries {
  readonly ticker: string;
  readonly title: string | null;
  readonly category: string | null;
  readonly frequency: string | null;
  readonly raw: JsonObject;
}

export interface RestTrade {
  readonly tradeId: string;
  readonly ticker: string;
  readonly yesPrice: string;
  readonly noPrice: string;
  readonly count: string;
  readonly takerSide: string | null;
  readonly takerOutcomeSide: string | null;
  readonly takerBookSide: string | null;
  readonly isBlockTrade: boolean | null;
  /** created_time truncated to the millisecond (tradeKeyTimeUs), in µs (docs/semantics.md: trades key). */
  readonly exchangeTsUs: number;
}

export interface ExchangeStatus {
  readonly exchangeActive: boolean;
  readonly tradingActive: boolean;
  readonly estimatedResumeTime: string | null;
}

export function shapeError(where: string, why: string): KdpError {
  return new KdpError('KDP_ERR_MSG_SHAPE', `${where}: ${why}`, { where });
}

export function asObject(v: unknown, where: string): JsonObject {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw shapeError(where, 'expected an object');
  return v as JsonObject;
}

export function asArray(v: unknown, where: string): unknown[] {
  if (!Array.isArray(v)) throw shapeError(where, 'expected an array');
  return v;
}

export function reqString(o: JsonObject, key: string, where: string): string {
  const v = o[key];
  if (typeof v !== 'string' || v.length === 0) throw shapeError(`${where}.${key}`, 'expected a non-empty string');
  return v;
}

export function optString(o: JsonObject, key: string, where: string): string | null {
  const v = o[key];
  if (v === undefined || v === null || v === '') return null;
  if (typeof v !== 'string') throw shapeError(`${where}.${key}`, 'expected a string');
  return v;
}

function optBoolean(o: JsonObject, key: string, where: string): boolean | null {
  const v = o[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'boolean') throw shapeError(`${where}.${key}`, 'expected a boolean');
  return v;
}

/** Pagination cursor: absent, null and "" all mean "last page". */
export function parseCursor(o: JsonObject, where: string): string | null {
  const v = o.cursor;
  if (v === undefined || v === null || v === '') return null;
  if (typeof v !== 'string') throw shapeError(`${where}.cursor`, 'expected a string');
  return v;
}

// NUMERIC(12,6) dollars and NUMERIC(20,2) contracts (src/schema/tables.ts).
const PRICE_RE = /^(0|[1-9]\d{0,5})(\.\d{1,6})?$/;
const SIZE_RE = /^(0|[1-9]\d{0,17})(\.\d{1,2})?$/;

export function checkPrice(v: unknown, where: string): string {
  if (typeof v !== 'string' || !PRICE_RE.test(v)) throw new KdpError('KDP_ERR_MSG_DECIMAL', `${where}: not a price decimal string`, { where });
  return v;
}

export function checkSize(v: unknown, where: string): string {
  if (typeof v !== 'string' || !SIZE_RE.test(v)) throw new KdpError('KDP_ERR_MSG_DECIMAL', `${where}: not a size decimal string`, { where });
  return v;
}

const RFC3339_RE = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/;

/** RFC3339 -> epoch milliseconds, sub-millisecond digits truncated (exact; no float parsing of the fraction). */
export function parseRfc3339Ms(v: unknown, where: string): number {
  const m = typeof v === 'string' ? RFC3339_RE.exec(v) : null;
  const wholeMs = m ? Date.parse(`${m[1]}${m[3]}`) : NaN;
  if (!m || !Number.isFinite(wholeMs)) throw new KdpError('KDP_ERR_MSG_TIMESTAMP', `${where}: not an RFC3339 time`, { where });
  const frac = (m[2] ?? '').padEnd(3, '0').slice(0, 3);
  return wholeMs + Number(frac);
}

function optTimeMs(o: JsonObject, key: string, where: string): number | null {
  const v = o[key];
  if (v === undefined || v === null || v === '') return null;
  return parseRfc3339Ms(v, `${where}.${key}`);
}

export function parseMarket(v: unknown, where: string): KalshiMarket {
  const o = asObject(v, where);
  return {
    ticker: reqString(o, 'ticker', where),
    eventTicker: optString(o, 'event_ticker', where),
    status: reqString(o, 'status', where),
    openTimeMs: optTimeMs(o, 'open_time', where),
    closeTimeMs: optTimeMs(o, 'close_time', where),
    result: optString(o, 'result', where),
    priceLevelStructure: optString(o, 'price_level_structure', where),
    mveCollectionTicker: optString(o, 'mve_collection_ticker', where),
    raw: o,
  };
}

export function parseEvent(v: unknown, where: string): KalshiEvent {
  const o = asObject(v, where);
  return {
    eventTicker: reqString(o, 'event_ticker', where),
    seriesTicker: optString(o, 'series_ticker', where),
    title: optString(o, 'title', where),
    // REST events say `sub_title`; the event_lifecycle message says `subtitle`.
    subTitle: optString(o, 'sub_title', where) ?? optString(o, 'subtitle', where),
    mutuallyExclusive: optBoolean(o, 'mutually_exclusive', where),
    raw: o,
  };
}

export function parseSeries(v: unknown, where: string): KalshiSeries {
  const o = asObject(v, where);
  return {
    ticker: reqString(o, 'ticker', where),
    title: optString(o, 'title', where),
    category: optString(o, 'category', where),
    frequency: optString(o, 'frequency', where),
    raw: o,
  };
}

function parseLevels(v: unknown, where: string): Level[] {
  if (v === undefined || v === null) return []; // an empty side is omitted
  return asArray(v, where).map((lv, i) => {
    const pair = asArray(lv, `${where}[${i}]`);
    if (pair.length < 2) throw shapeError(`${where}[${i}]`, 'expected [price, size]');
    return [checkPrice(pair[0], `${where}[${i}][0]`), checkSize(pair[1], `${where}[${i}][1]`)] as const;
  });
}

/** `orderbook_fp: {yes_dollars: [[p, s], ...], no_dollars: [...]}`. */
export function parseOrderbookFp(v: unknown, where: string): OrderbookLevels {
  const o = asObject(v, where);
  return {
    yes: parseLevels(o.yes_dollars, `${where}.yes_dollars`),
    no: parseLevels(o.no_dollars, `${where}.no_dollars`),
  };
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** One element of GET /markets/trades `trades` (fields `ticker`, `created_time`, *_dollars, count_fp). */
export function parseTrade(v: unknown, where: string): RestTrade {
  const o = asObject(v, where);
  const tradeId = reqString(o, 'trade_id', where);
  if (!UUID_RE.test(tradeId)) throw shapeError(`${where}.trade_id`, 'expected a UUID');
  return {
    tradeId,
    ticker: reqString(o, 'ticker', where),
    yesPrice: checkPrice(o.yes_price_dollars, `${where}.yes_price_dollars`),
    noPrice: checkPrice(o.no_price_dollars, `${where}.no_price_dollars`),
    count: checkSize(tradeCountFp(o), `${where}.count_fp`),
    takerSide: optString(o, 'taker_side', where),
    takerOutcomeSide: optString(o, 'taker_outcome_side', where),
    takerBookSide: optString(o, 'taker_book_side', where),
    isBlockTrade: optBoolean(o, 'is_block_trade', where),
    exchangeTsUs: tradeKeyTimeUs(parseRfc3339Ms(o.created_time, `${where}.created_time`) * 1000),
  };
}

export function parseExchangeStatus(v: unknown, where: string): ExchangeStatus {
  const o = asObject(v, where);
  if (typeof o.exchange_active !== 'boolean' || typeof o.trading_active !== 'boolean') {
    throw shapeError(where, 'expected boolean exchange_active and trading_active');
  }
  return {
    exchangeActive: o.exchange_active,
    tradingActive: o.trading_active,
    estimatedResumeTime: optString(o, 'exchange_estimated_resume_time', where),
  };
}
