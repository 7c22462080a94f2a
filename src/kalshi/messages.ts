// Parsing of Kalshi WebSocket market-data message bodies (2026 fixed-point protocol) into
// normalised rows: the one place field names and units of WS messages are read. Each function
// reads one `msg` object and fills the table-specific fields of a reusable row object, or throws a
// coded KdpError naming what is wrong. Decimals are validated and passed through unchanged;
// timestamps become µs integers. Unknown extra fields are ignored here and kept in lifecycle
// payloads, so a new field never costs a row.
import { KdpError, type ErrorCode } from '../core/errors';
import type { DeltaRow, LifecycleRow, SnapshotRow, TickerRow, TradeRow } from '../workers/encoders';
import { fnv1a64Signed } from '../workers/fnv';
import { isPrice, isSignedSize, isSize, isTicker, isUuid, parseRfc3339Us, unitsToUs } from '../workers/scalars';
import { IMPLIED_EVENT_TYPE, tradeCountFp, tradeKeyTimeUs } from './protocol';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export function fail(code: ErrorCode, why: string): never {
  throw new KdpError(code, why);
}

export function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function ticker(msg: JsonObject, field = 'market_ticker'): string {
  const t = msg[field];
  if (!isTicker(t)) fail('KDP_ERR_MSG_SHAPE', `${field} missing or invalid`);
  return t;
}

function price(msg: JsonObject, field: string): string {
  return priceValue(msg[field], field);
}

function priceValue(v: unknown, field: string): string {
  if (typeof v !== 'string') fail('KDP_ERR_MSG_SHAPE', `${field} missing or not a string`);
  if (!isPrice(v)) fail('KDP_ERR_MSG_DECIMAL', `${field} is not a price decimal`);
  return v;
}

function sizeValue(v: unknown, field: string, signed: boolean): string {
  if (typeof v !== 'string') fail('KDP_ERR_MSG_SHAPE', `${field} missing or not a string`);
  if (!(signed ? isSignedSize(v) : isSize(v))) fail('KDP_ERR_MSG_DECIMAL', `${field} is not a size decimal`);
  return v;
}

/** An optional decimal: absent, null or "" (never traded) is NULL. */
function optionalDecimal(msg: JsonObject, field: string, check: (s: unknown) => s is string): string | null {
  const v = msg[field];
  if (v === undefined || v === null || v === '') return null;
  if (typeof v !== 'string') fail('KDP_ERR_MSG_SHAPE', `${field} is not a string`);
  if (!check(v)) fail('KDP_ERR_MSG_DECIMAL', `${field} is not an exact decimal in range`);
  return v;
}

function optionalEnum(msg: JsonObject, field: string, allowed: readonly string[]): string | null {
  const v = msg[field];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string' || !allowed.includes(v)) fail('KDP_ERR_MSG_SHAPE', `${field} is not one of ${allowed.join('|')}`);
  return v;
}

/**
 * Whole-dollar integers such as dollar_volume / dollar_open_interest (a number, or a digit
 * string). Kalshi documents them as signed: a negative value is valid and must not cost the row.
 */
function optionalSignedInt(msg: JsonObject, field: string): number | null {
  const v = msg[field];
  if (v === undefined || v === null) return null;
  if (typeof v === 'number' && Number.isSafeInteger(v)) return v;
  if (typeof v === 'string' && /^-?\d{1,15}$/.test(v)) return Number(v);
  return fail('KDP_ERR_MSG_SHAPE', `${field} is not an integer`);
}

/** exchange µs from an RFC3339 field, else ts_ms, else seconds `ts`; -1 when none is usable. */
function exchangeTimeUs(msg: JsonObject, rfcField: string | null): number {
  if (rfcField !== null && msg[rfcField] !== undefined) {
    const us = parseRfc3339Us(msg[rfcField]);
    if (us < 0) fail('KDP_ERR_MSG_TIMESTAMP', `${rfcField} is not an RFC3339 UTC time in range`);
    return us;
  }
  if (msg.ts_ms !== undefined) {
    const us = unitsToUs(msg.ts_ms, 1000);
    if (us < 0) fail('KDP_ERR_MSG_TIMESTAMP', 'ts_ms is not an integer time in range');
    return us;
  }
  if (msg.ts !== undefined) {
    const us = unitsToUs(msg.ts, 1_000_000);
    if (us < 0) fail('KDP_ERR_MSG_TIMESTAMP', 'ts is not an integer time in range');
    return us;
  }
  return fail('KDP_ERR_MSG_TIMESTAMP', 'no exchange time (ts / ts_ms) in message');
}

/**
 * The envelope's `sending_ts_ms` (when Kalshi queued the message at its network layer; optional in
 * the AsyncAPI description) in µs, or null when absent or not an integer time in range. Provenance
 * only: a bad value never costs the row.
 */
export function sendingTimeUs(v: unknown): number | null {
  if (v === undefined || v === null) return null;
  const us = unitsToUs(v, 1000);
  return us < 0 ? null : us;
}

const SIDES = ['yes', 'no'] as const;

/**
 * A delta's exchange time (µs) from its `ts` and `ts_ms` values. `ts_ms` is the documented field
 * (`ts`, RFC3339 with µs, is deprecated): it decides the millisecond. `ts` adds its microseconds
 * only when it falls in that same millisecond; when the two disagree `ts_ms` wins. Without `ts_ms`,
 * `ts` alone is used.
 */
export function deltaTimeUs(ts: unknown, tsMs: unknown): number {
  if (tsMs === undefined || tsMs === null) {
    if (ts === undefined) fail('KDP_ERR_MSG_TIMESTAMP', tsMs === null ? 'ts_ms is not an integer time in range' : 'no exchange time (ts / ts_ms) in message');
    const us = parseRfc3339Us(ts);
    if (us < 0) fail('KDP_ERR_MSG_TIMESTAMP', 'ts is not an RFC3339 UTC time in range');
    return us;
  }
  const ms = unitsToUs(tsMs, 1000);
  if (ms < 0) fail('KDP_ERR_MSG_TIMESTAMP', 'ts_ms is not an integer time in range');
  const us = ts === undefined ? -1 : parseRfc3339Us(ts);
  return us >= ms && us < ms + 1000 ? us : ms;
}

/** orderbook_delta: fills ticker, side, price, delta, exchange_ts (deltaTimeUs). */
export function readDelta(msg: JsonObject, row: DeltaRow): void {
  readDeltaFields(msg.market_ticker, msg.side, msg.price_dollars, msg.delta_fp, msg.ts, msg.ts_ms, row);
}

/**
 * readDelta on the body's field values (undefined = absent): the one validation of a delta, shared
 * by the generic path and the worker's byte-level reader (src/workers/delta-scan.ts).
 */
export function readDeltaFields(ticker: unknown, side: unknown, priceDollars: unknown, deltaFp: unknown, ts: unknown, tsMs: unknown, row: DeltaRow): void {
  if (!isTicker(ticker)) fail('KDP_ERR_MSG_SHAPE', 'market_ticker missing or invalid');
  row.ticker = ticker;
  if (side !== 'yes' && side !== 'no') fail('KDP_ERR_MSG_SHAPE', 'side is not yes|no');
  row.side = side;
  row.price = priceValue(priceDollars, 'price_dollars');
  row.delta = sizeValue(deltaFp, 'delta_fp', true);
  row.exchange_ts = deltaTimeUs(ts, tsMs);
}

/** One side of a snapshot as JSON text `[["0.0800","300.00"],...]` (validated, unchanged). */
function levelsJson(msg: JsonObject, field: string, levelsMax: number): string {
  const levels = msg[field];
  if (levels === undefined || levels === null) return '[]';
  if (!Array.isArray(levels)) fail('KDP_ERR_MSG_SHAPE', `${field} is not an array`);
  if (levels.length > levelsMax) fail('KDP_ERR_MSG_SHAPE', `${field} has more than ${levelsMax} levels`);
  let out = '[';
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i];
    if (!Array.isArray(level) || level.length !== 2) fail('KDP_ERR_MSG_SHAPE', `${field}[${i}] is not a [price, size] pair`);
    const [p, s] = level;
    if (typeof p !== 'string' || typeof s !== 'string') fail('KDP_ERR_MSG_SHAPE', `${field}[${i}] holds non-strings`);
    if (!isPrice(p) || !isSize(s)) fail('KDP_ERR_MSG_DECIMAL', `${field}[${i}] is not an exact decimal pair`);
    out += (i === 0 ? '["' : ',["') + p + '","' + s + '"]';
  }
  return out + ']';
}

/** orderbook_snapshot: fills ticker, yes_levels, no_levels. */
export function readSnapshot(msg: JsonObject, row: SnapshotRow, levelsMax: number): void {
  row.ticker = ticker(msg);
  row.yes_levels = levelsJson(msg, 'yes_dollars_fp', levelsMax);
  row.no_levels = levelsJson(msg, 'no_dollars_fp', levelsMax);
}

/** trade: fills every trade column; exchange_ts is the trade key time (tradeKeyTimeUs) of ts_ms, else `ts`. */
export function readTrade(msg: JsonObject, row: TradeRow): void {
  const id = msg.trade_id;
  if (!isUuid(id)) fail('KDP_ERR_MSG_SHAPE', 'trade_id is not a UUID');
  row.trade_id = id.toLowerCase();
  row.ticker = ticker(msg);
  row.yes_price = price(msg, 'yes_price_dollars');
  row.no_price = price(msg, 'no_price_dollars');
  // count_fp, or the integer `count` of trades from before the fixed-point migration.
  row.count = sizeValue(tradeCountFp(msg), 'count_fp', false);
  row.taker_side = optionalEnum(msg, 'taker_side', SIDES);
  row.taker_outcome_side = optionalEnum(msg, 'taker_outcome_side', SIDES);
  row.taker_book_side = optionalEnum(msg, 'taker_book_side', ['bid', 'ask']);
  const block = msg.is_block_trade;
  if (block !== undefined && block !== null && typeof block !== 'boolean') fail('KDP_ERR_MSG_SHAPE', 'is_block_trade is not a boolean');
  row.is_block_trade = typeof block === 'boolean' ? block : null;
  // The key time (the millisecond), as the REST copy's created_time; early-2026 trades carry only `ts`.
  row.exchange_ts = tradeKeyTimeUs(exchangeTimeUs(msg, null));
}

/** ticker: fills the content columns and the fingerprint (occurrence is the caller's). */
export function readTicker(msg: JsonObject, row: TickerRow): void {
  row.ticker = ticker(msg);
  row.price = optionalDecimal(msg, 'price_dollars', isPrice);
  row.yes_bid = optionalDecimal(msg, 'yes_bid_dollars', isPrice);
  row.yes_ask = optionalDecimal(msg, 'yes_ask_dollars', isPrice);
  row.yes_bid_size = optionalDecimal(msg, 'yes_bid_size_fp', isSize);
  row.yes_ask_size = optionalDecimal(msg, 'yes_ask_size_fp', isSize);
  row.last_trade_size = optionalDecimal(msg, 'last_trade_size_fp', isSize);
  row.volume = optionalDecimal(msg, 'volume_fp', isSize);
  row.open_interest = optionalDecimal(msg, 'open_interest_fp', isSize);
  row.dollar_volume = optionalSignedInt(msg, 'dollar_volume');
  row.dollar_open_interest = optionalSignedInt(msg, 'dollar_open_interest');
  row.exchange_ts = exchangeTimeUs(msg, 'time');
  row.fingerprint = fnv1a64Signed(tickerContent(row));
}

const SEP = '\x1f';
const NUL = '\x00';
const orNul = (v: string | number | null): string => (v === null ? NUL : String(v));

/**
 * The normalised content a ticker fingerprint covers: every non-provenance column in table
 * order, unit-separated, NULL as a NUL byte. Stable across gatherers and restarts.
 */
export function tickerContent(row: TickerRow): string {
  return (
    row.ticker +
    SEP +
    orNul(row.price) +
    SEP +
    orNul(row.yes_bid) +
    SEP +
    orNul(row.yes_ask) +
    SEP +
    orNul(row.yes_bid_size) +
    SEP +
    orNul(row.yes_ask_size) +
    SEP +
    orNul(row.last_trade_size) +
    SEP +
    orNul(row.volume) +
    SEP +
    orNul(row.open_interest) +
    SEP +
    orNul(row.dollar_volume) +
    SEP +
    orNul(row.dollar_open_interest) +
    SEP +
    row.exchange_ts
  );
}

export interface CanonicalLimits {
  readonly depthMax: number;
  readonly nodesMax: number;
}

/**
 * Canonical JSON: object keys sorted (code-unit order), no whitespace, JSON.stringify's scalars.
 * Two gatherers receiving the same event with keys in any order produce the same text.
 */
export function canonicalJson(value: Json, limits: CanonicalLimits): string {
  let nodes = 0;
  const walk = (v: Json, depth: number): string => {
    if (++nodes > limits.nodesMax) fail('KDP_ERR_MSG_SHAPE', `payload has more than ${limits.nodesMax} values`);
    if (depth > limits.depthMax) fail('KDP_ERR_MSG_SHAPE', `payload nested deeper than ${limits.depthMax}`);
    if (v === null || typeof v !== 'object') {
      if (typeof v === 'number' && !Number.isFinite(v)) fail('KDP_ERR_MSG_SHAPE', 'payload number out of range');
      return JSON.stringify(v);
    }
    if (Array.isArray(v)) return '[' + v.map((x) => walk(x, depth + 1)).join(',') + ']';
    const keys = Object.keys(v).sort();
    return '{' + keys.map((k) => JSON.stringify(k) + ':' + walk(v[k]!, depth + 1)).join(',') + '}';
  };
  return walk(value, 0);
}

const EVENT_TYPE = /^[a-z_]{1,64}$/;

/** Lifecycle channels: payload = canonical JSON of `msg`, fingerprint over that text. */
export function readLifecycle(channel: string, msg: JsonObject, row: LifecycleRow, limits: CanonicalLimits): void {
  row.channel = channel;
  const mt = msg.market_ticker;
  const et = msg.event_ticker;
  if (mt !== undefined && mt !== null && !isTicker(mt)) fail('KDP_ERR_MSG_SHAPE', 'market_ticker invalid');
  if (et !== undefined && et !== null && !isTicker(et)) fail('KDP_ERR_MSG_SHAPE', 'event_ticker invalid');
  row.ticker = typeof mt === 'string' ? mt : null;
  row.event_ticker = typeof et === 'string' ? et : null;
  if (row.ticker === null && row.event_ticker === null) fail('KDP_ERR_MSG_SHAPE', 'lifecycle message names no market or event');
  const type = msg.event_type;
  const implied = IMPLIED_EVENT_TYPE[channel];
  if (type === undefined && implied !== undefined) {
    row.event_type = implied; // event_lifecycle / event_fee_update carry no event_type
  } else if (typeof type === 'string' && EVENT_TYPE.test(type)) {
    row.event_type = type;
  } else {
    fail('KDP_ERR_MSG_SHAPE', 'event_type missing or invalid');
  }
  row.payload = canonicalJson(msg, limits);
  row.fingerprint = fnv1a64Signed(row.payload);
}

/** Envelope fields that differ per connection or gatherer: left out of a kept payload so copies collapse. */
const PER_CONNECTION_FIELDS: ReadonlySet<string> = new Set(['sid', 'seq', 'id', 'sending_ts_ms']);

/**
 * A message of a type this platform does not model, kept whole: channel = its type, event_type
 * 'unknown', payload = canonical JSON of the envelope without its per-connection fields,
 * market / event ticker when `msg` names them.
 */
export function readUnknown(type: string, env: JsonObject, row: LifecycleRow, limits: CanonicalLimits): void {
  if (!/^[a-z0-9_]{1,64}$/.test(type)) fail('KDP_ERR_MSG_UNKNOWN_TYPE', `unknown message type ${JSON.stringify(type.slice(0, 64))}`);
  const kept: JsonObject = {};
  for (const key of Object.keys(env)) if (!PER_CONNECTION_FIELDS.has(key)) kept[key] = env[key]!;
  const msg = isObject(env.msg) ? env.msg : {};
  row.channel = type;
  row.ticker = isTicker(msg.market_ticker) ? msg.market_ticker : null;
  row.event_ticker = isTicker(msg.event_ticker) ? msg.event_ticker : null;
  row.event_type = 'unknown';
  row.payload = canonicalJson(kept, limits);
  row.fingerprint = fnv1a64Signed(row.payload);
}
