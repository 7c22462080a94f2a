// Production rows -> the simulator's exchange records (src/sim/truth.ts), the form the one Kalshi
// server (src/sim/ws.ts, rest.ts) serves. Decimals come back from PostgreSQL in the column's scale
// ("0.450000", "12.00") and are re-rendered in Kalshi's wire formats (prices with 4 decimals,
// "0.4500", deci-cent "0.4510"; sizes with 2), so a replayed message carries the strings the
// exchange sent: the ticker fingerprint (src/kalshi/messages.ts) hashes those strings.
import { createHash } from 'node:crypto';
import { KdpError } from '../core/errors';
import { formatScaled, parseScaled } from '../ops/decimal';
import type { DeltaRow as WorkerDeltaRow, TickerRow as WorkerTickerRow, TradeRow as WorkerTradeRow } from '../workers/encoders';
import type { Draft, MarketDef, MarketStatus, PriceStructure, Side } from '../sim/truth';

/** A record before the feed numbers it (n) and places it (t is set). */
export type Timed = Draft & { t: number };

export const wirePrice = (text: string): string => formatScaled(parseScaled(text), 4);
export const wireSize = (text: string): string => formatScaled(parseScaled(text), 2);
const optionalPrice = (text: string | null): string => (text === null ? '' : wirePrice(text));
const optionalSize = (text: string | null): string => (text === null ? '' : wireSize(text));

// Rows as the streams select them: the worker's content columns (src/workers/encoders.ts), with
// numerics and times as text (exact; bigint times beyond 2^53 never reach a float).
export type DeltaRow = Pick<WorkerDeltaRow, 'ticker' | 'side' | 'price' | 'delta'> & { t: string };
export type TradeRow = Pick<
  WorkerTradeRow,
  'ticker' | 'trade_id' | 'yes_price' | 'no_price' | 'count' | 'taker_side' | 'taker_outcome_side' | 'taker_book_side' | 'is_block_trade'
> & { t: string };
export type TickerRow = Pick<
  WorkerTickerRow,
  'ticker' | 'price' | 'yes_bid' | 'yes_ask' | 'yes_bid_size' | 'yes_ask_size' | 'last_trade_size' | 'volume' | 'open_interest'
> & { dollar_volume: string | null; dollar_open_interest: string | null; t: string };
export interface LifecycleRow {
  channel: string;
  ticker: string | null;
  event_ticker: string | null;
  event_type: string;
  payload: Record<string, unknown>;
  t: string;
}

function side(text: string, what: string): Side {
  if (text !== 'yes' && text !== 'no') throw new KdpError('KDP_ERR_MSG_SHAPE', `${what}: side ${JSON.stringify(text)}`);
  return text;
}

export function deltaRecord(r: DeltaRow): Timed {
  return { k: 'delta', m: r.ticker, side: side(r.side, r.ticker), p: wirePrice(r.price), d: wireSize(r.delta), t: Number(r.t) };
}

export function tradeRecord(r: TradeRow): Timed {
  const takerSide = r.taker_side === null ? '' : side(r.taker_side, r.trade_id);
  const outcome = r.taker_outcome_side === null ? '' : side(r.taker_outcome_side, r.trade_id);
  const book = r.taker_book_side === 'bid' || r.taker_book_side === 'ask' ? r.taker_book_side : '';
  return {
    k: 'trade',
    m: r.ticker,
    trade_id: r.trade_id,
    yes_price_dollars: wirePrice(r.yes_price),
    no_price_dollars: wirePrice(r.no_price),
    count_fp: wireSize(r.count),
    taker_side: takerSide,
    taker_outcome_side: outcome,
    taker_book_side: book,
    ...(r.is_block_trade === null ? {} : { is_block_trade: r.is_block_trade }),
    t: Number(r.t),
  };
}

/**
 * The simulator's ticker record always sends every field; production stores an empty decimal
 * (`price_dollars` "" before a market's first trade) as NULL, sent back as "". A NULL dollar volume
 * or open interest (a message without it) is sent as 0: the encoder has no absent integer.
 */
export function tickerRecord(r: TickerRow): Timed {
  return {
    k: 'ticker',
    m: r.ticker,
    price_dollars: optionalPrice(r.price),
    yes_bid_dollars: optionalPrice(r.yes_bid),
    yes_ask_dollars: optionalPrice(r.yes_ask),
    yes_bid_size_fp: optionalSize(r.yes_bid_size),
    yes_ask_size_fp: optionalSize(r.yes_ask_size),
    last_trade_size_fp: optionalSize(r.last_trade_size),
    volume_fp: optionalSize(r.volume),
    open_interest_fp: optionalSize(r.open_interest),
    dollar_volume: Number(r.dollar_volume ?? 0),
    dollar_open_interest: Number(r.dollar_open_interest ?? 0),
    t: Number(r.t),
  };
}

/**
 * A lifecycle row -> its message record, preceded by the status change it means for the market
 * (the generator emits the same pairs: src/sim/generator.ts). null: a message the server cannot
 * send (a type the platform does not model, kept whole as `unknown`).
 */
export function lifecycleRecords(r: LifecycleRow, statusOf: (ticker: string) => MarketStatus | undefined): Timed[] | null {
  const t = Number(r.t);
  if (r.channel === 'event_lifecycle') return r.event_ticker === null ? null : [{ k: 'event_lifecycle', e: r.event_ticker, msg: r.payload, t }];
  if (r.channel !== 'market_lifecycle_v2' || r.ticker === null) return null;
  const out: Timed[] = [];
  const current = statusOf(r.ticker);
  const next = statusAfter(r.event_type, current);
  const p = r.payload;
  const closeTs = r.event_type === 'close_date_updated' && typeof p.close_ts === 'number' ? { close_us: p.close_ts * 1e6 } : {};
  const result = r.event_type === 'determined' && (p.result === 'yes' || p.result === 'no') ? { result: p.result as Side } : {};
  if (current !== undefined && (next !== current || 'close_us' in closeTs))
    out.push({ k: 'status', m: r.ticker, status: next ?? current, ...closeTs, ...result, t });
  out.push({ k: 'lifecycle', m: r.ticker, event_type: r.event_type, msg: p, t });
  return out;
}

/** A market's Kalshi status after a lifecycle event (undefined: the event does not change it). */
export function statusAfter(eventType: string, current: MarketStatus | undefined): MarketStatus | undefined {
  switch (eventType) {
    case 'deactivated':
      return current === 'active' ? 'inactive' : current;
    case 'activated':
      return current === 'inactive' ? 'active' : current;
    case 'determined':
      return 'determined';
    case 'settled':
      return 'finalized';
    default:
      return current;
  }
}

export interface MarketRow {
  ticker: string;
  event_ticker: string | null;
  series_ticker: string | null;
  price_level_structure: string | null;
  open_time: string | null;
  close_time: string | null;
  raw: Record<string, unknown>;
}

const isoUs = (v: unknown): number | undefined => {
  if (typeof v !== 'string') return undefined;
  const ms = Date.parse(v);
  return Number.isFinite(ms) ? ms * 1000 : undefined;
};

/** A stable market_id for a market whose recorded REST object has none (production does not store the WS market_id). */
function derivedMarketId(ticker: string): string {
  const h = createHash('sha256').update(`kdp-replay:${ticker}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** The simulator's market definition of a production `markets` row (fields from its recorded REST object where present). */
export function marketDef(r: MarketRow, status: MarketStatus): MarketDef {
  const raw = r.raw;
  const openUs = r.open_time === null ? 0 : Number(r.open_time);
  const closeUs = r.close_time === null ? 0 : Number(r.close_time);
  const structure: PriceStructure = r.price_level_structure === 'deci_cent' ? 'deci_cent' : 'linear_cent';
  return {
    ticker: r.ticker,
    event_ticker: r.event_ticker ?? '',
    series_ticker: r.series_ticker ?? '',
    market_id: typeof raw.market_id === 'string' ? raw.market_id : typeof raw.id === 'string' ? raw.id : derivedMarketId(r.ticker),
    title: typeof raw.title === 'string' ? raw.title : r.ticker,
    yes_sub_title: typeof raw.yes_sub_title === 'string' ? raw.yes_sub_title : '',
    floor_strike: typeof raw.floor_strike === 'number' ? raw.floor_strike : 0,
    price_level_structure: structure,
    status,
    created_us: isoUs(raw.created_time) ?? openUs,
    open_us: openUs,
    close_us: closeUs,
    raw,
  };
}

export { isoUs };
