// Wire encodings of exchange records as Kalshi sends them (the `msg` part; envelopes are added
// per subscriber because sid and seq differ). Built as strings: this is the hot path.
import { formatPrice, parsePrice, PRICE_ONE, rfc3339Micros } from './fixed';
import type { Book } from './state';
import type { DeltaRec, Level, TickerRec, TradeRec } from './truth';

let isoMs = -1;
let isoPrefix = '';
/** RFC3339 with microseconds, caching the millisecond part (consecutive records share it). */
export function isoMicros(us: number): string {
  const ms = Math.floor(us / 1000);
  if (ms !== isoMs) {
    isoMs = ms;
    isoPrefix = rfc3339Micros(ms * 1000).slice(0, 23);
  }
  const micro = us - ms * 1000;
  return `${isoPrefix}${micro < 10 ? '00' : micro < 100 ? '0' : ''}${micro}Z`;
}

const q = JSON.stringify;

/** `{"market_ticker":"T","market_id":"M",`: the opening every per-market payload shares (built once per market). */
export function marketPrefix(ticker: string, marketId: string): string {
  return `{"market_ticker":${q(ticker)},"market_id":"${marketId}",`;
}

export function deltaMsg(rec: DeltaRec, prefix: string): string {
  return `${prefix}"price_dollars":"${rec.p}","delta_fp":"${rec.d}","side":"${rec.side}","ts":"${isoMicros(rec.t)}","ts_ms":${Math.floor(rec.t / 1000)}}`;
}

export function tradeMsg(rec: TradeRec): string {
  const ms = Math.floor(rec.t / 1000);
  return `{"trade_id":"${rec.trade_id}","market_ticker":${q(rec.m)},"yes_price_dollars":"${rec.yes_price_dollars}","no_price_dollars":"${rec.no_price_dollars}","count_fp":"${rec.count_fp}","taker_side":"${rec.taker_side}","taker_outcome_side":"${rec.taker_outcome_side}","taker_book_side":"${rec.taker_book_side}","ts":${Math.floor(ms / 1000)},"ts_ms":${ms}}`;
}

/** `withTsMs = false` drops `ts_ms`, which Kalshi occasionally omits from tickers. */
export function tickerMsg(rec: TickerRec, prefix: string, withTsMs = true): string {
  const ms = Math.floor(rec.t / 1000);
  return `${prefix}"price_dollars":"${rec.price_dollars}","yes_bid_dollars":"${rec.yes_bid_dollars}","yes_ask_dollars":"${rec.yes_ask_dollars}","yes_bid_size_fp":"${rec.yes_bid_size_fp}","yes_ask_size_fp":"${rec.yes_ask_size_fp}","last_trade_size_fp":"${rec.last_trade_size_fp}","volume_fp":"${rec.volume_fp}","open_interest_fp":"${rec.open_interest_fp}","dollar_volume":${rec.dollar_volume},"dollar_open_interest":${rec.dollar_open_interest},"ts":${Math.floor(ms / 1000)},${withTsMs ? `"ts_ms":${ms},` : ''}"time":"${isoMicros(rec.t)}"}`;
}

/** orderbook_snapshot payload; an empty side is omitted (as on Kalshi). */
export function snapshotMsg(ticker: string, marketId: string, book: Book, useYesPrice = false): string {
  const msg: Record<string, unknown> = { market_ticker: ticker, market_id: marketId };
  const yes = book.levels('yes');
  const no = useYesPrice ? book.levels('no').map(([p, q]): Level => [formatPrice(PRICE_ONE - parsePrice(p)), q]).reverse() : book.levels('no');
  if (yes.length > 0) msg.yes_dollars_fp = yes;
  if (no.length > 0) msg.no_dollars_fp = no;
  return JSON.stringify(msg);
}
