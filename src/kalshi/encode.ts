// Kalshi's wire encodings: the `msg` part of each data message and the envelopes around it, the
// inverse of messages.ts's readers. The simulator sends what these build, so a message's field
// names, units and formats live in this module beside the reader that parses them; the
// conformance test runs the simulator's frames through those readers and the corpus test runs
// frames captured from the live exchange through them. Built as strings: this is the simulator's
// hot path (one delta per order-book change at tens of thousands a second).

/** [price "0.4500", size "12.00"]: one book level as orderbook_snapshot sends it. */
export type WireLevel = readonly [string, string];

/** The fields of one order-book change (prices and sizes as exact decimal strings, time in µs). */
export interface DeltaFields {
  readonly side: string;
  readonly p: string;
  readonly d: string;
  readonly t: number;
}

export interface TradeFields {
  readonly m: string;
  readonly trade_id: string;
  readonly yes_price_dollars: string;
  readonly no_price_dollars: string;
  readonly count_fp: string;
  readonly taker_side: string;
  readonly taker_outcome_side: string;
  readonly taker_book_side: string;
  /** Sent only when known (recorded history: `kdp replay`); the simulator makes no block trades. */
  readonly is_block_trade?: boolean;
  readonly t: number;
}

export interface TickerFields {
  readonly price_dollars: string;
  readonly yes_bid_dollars: string;
  readonly yes_ask_dollars: string;
  readonly yes_bid_size_fp: string;
  readonly yes_ask_size_fp: string;
  readonly last_trade_size_fp: string;
  readonly volume_fp: string;
  readonly open_interest_fp: string;
  readonly dollar_volume: number;
  readonly dollar_open_interest: number;
  readonly t: number;
}

let isoMs = -1;
let isoPrefix = '';
/** RFC3339 with microseconds ("2026-05-28T05:35:09.623423Z"), caching the millisecond part (consecutive records share it). */
export function isoMicros(us: number): string {
  const ms = Math.floor(us / 1000);
  if (ms !== isoMs) {
    isoMs = ms;
    isoPrefix = new Date(ms).toISOString().slice(0, 23);
  }
  const micro = us - ms * 1000;
  return `${isoPrefix}${micro < 10 ? '00' : micro < 100 ? '0' : ''}${micro}Z`;
}

const q = JSON.stringify;

/** `{"market_ticker":"T","market_id":"M",`: the opening every per-market payload shares (built once per market). */
export function marketPrefix(ticker: string, marketId: string): string {
  return `{"market_ticker":${q(ticker)},"market_id":"${marketId}",`;
}

/** orderbook_delta payload: `ts` RFC3339 (deprecated on the exchange) and `ts_ms`, as Kalshi sends both. */
export function deltaMsg(rec: DeltaFields, prefix: string): string {
  return `${prefix}"price_dollars":"${rec.p}","delta_fp":"${rec.d}","side":"${rec.side}","ts":"${isoMicros(rec.t)}","ts_ms":${Math.floor(rec.t / 1000)}}`;
}

/** `"name":"value",`, or nothing for an empty value (a field the recorded trade did not have). */
const optionalField = (name: string, value: string): string => (value === '' ? '' : `"${name}":"${value}",`);

/**
 * trade payload: `ts` in seconds and `ts_ms` (2026 frames carry both; early-2026 ones only `ts`).
 * Taker fields that are empty are left out, as in older trades that lack them (replayed history).
 */
export function tradeMsg(rec: TradeFields): string {
  const ms = Math.floor(rec.t / 1000);
  const block = rec.is_block_trade === undefined ? '' : `"is_block_trade":${rec.is_block_trade},`;
  return `{"trade_id":"${rec.trade_id}","market_ticker":${q(rec.m)},"yes_price_dollars":"${rec.yes_price_dollars}","no_price_dollars":"${rec.no_price_dollars}","count_fp":"${rec.count_fp}",${optionalField('taker_side', rec.taker_side)}${optionalField('taker_outcome_side', rec.taker_outcome_side)}${optionalField('taker_book_side', rec.taker_book_side)}${block}"ts":${Math.floor(ms / 1000)},"ts_ms":${ms}}`;
}

/** ticker payload; `withTsMs = false` drops `ts_ms`, which Kalshi occasionally omits. Dollar volume and open interest are signed integers. */
export function tickerMsg(rec: TickerFields, prefix: string, withTsMs = true): string {
  const ms = Math.floor(rec.t / 1000);
  return `${prefix}"price_dollars":"${rec.price_dollars}","yes_bid_dollars":"${rec.yes_bid_dollars}","yes_ask_dollars":"${rec.yes_ask_dollars}","yes_bid_size_fp":"${rec.yes_bid_size_fp}","yes_ask_size_fp":"${rec.yes_ask_size_fp}","last_trade_size_fp":"${rec.last_trade_size_fp}","volume_fp":"${rec.volume_fp}","open_interest_fp":"${rec.open_interest_fp}","dollar_volume":${rec.dollar_volume},"dollar_open_interest":${rec.dollar_open_interest},"ts":${Math.floor(ms / 1000)},${withTsMs ? `"ts_ms":${ms},` : ''}"time":"${isoMicros(rec.t)}"}`;
}

/** orderbook_snapshot payload; an empty side is omitted (as on Kalshi). */
export function snapshotMsg(ticker: string, marketId: string, yes: readonly WireLevel[], no: readonly WireLevel[]): string {
  const msg: Record<string, unknown> = { market_ticker: ticker, market_id: marketId };
  if (yes.length > 0) msg.yes_dollars_fp = yes;
  if (no.length > 0) msg.no_dollars_fp = no;
  return JSON.stringify(msg);
}

/**
 * A data message on a subscription: `seq` on book, trade and lifecycle sids, none on tickers;
 * `sending_ts_ms` (the exchange's send time, ms) closes the envelope as on Kalshi.
 */
export function dataFrame(type: string, sid: number, seq: number | undefined, msg: string, sentMs: number): string {
  return seq === undefined
    ? `{"type":"${type}","sid":${sid},"msg":${msg},"sending_ts_ms":${sentMs}}`
    : `{"type":"${type}","sid":${sid},"seq":${seq},"msg":${msg},"sending_ts_ms":${sentMs}}`;
}

/** A sequenced reply to command `id` on a sid (a get_snapshot's snapshot, an update_subscription's ok), with `sending_ts_ms`. */
export function replyFrame(id: number, type: string, sid: number, seq: number, msg: string | undefined, sentMs: number): string {
  return msg === undefined
    ? `{"id":${id},"sid":${sid},"seq":${seq},"type":"${type}","sending_ts_ms":${sentMs}}`
    : `{"id":${id},"sid":${sid},"seq":${seq},"type":"${type}","msg":${msg},"sending_ts_ms":${sentMs}}`;
}

export function subscribedFrame(id: number, channel: string, sid: number): string {
  return `{"id":${id},"type":"subscribed","msg":{"channel":"${channel}","sid":${sid}}}`;
}

/** An error: to a command (`id` > 0), on a sid (`sid` given), or on the connection. */
export function errorFrame(code: number, text: string, id = 0, sid?: number): string {
  const msg = `{"code":${code},"msg":${q(text)}}`;
  if (id > 0) return `{"id":${id},"type":"error","msg":${msg}}`;
  return sid === undefined ? `{"type":"error","msg":${msg}}` : `{"type":"error","sid":${sid},"msg":${msg}}`;
}
