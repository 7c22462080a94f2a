// Parsing of lifecycle channel messages into what the registry applies. Envelopes:
//   {"type":"market_lifecycle_v2","sid":13,"msg":{"market_ticker":"X","event_type":"created","open_ts":...,"close_ts":...}}
//   {"type":"multivariate_market_lifecycle", ...same payload...}
//   {"type":"event_lifecycle","sid":5,"msg":{"event_ticker":"E","series_ticker":"S","title":...}}
// Timestamps (open_ts, close_ts, determination_ts, settled_ts) are seconds.
import { asObject, optString, parseEvent, reqString, shapeError, type JsonObject, type KalshiEvent } from './shapes';

export const MARKET_LIFECYCLE_CHANNELS = ['market_lifecycle_v2', 'multivariate_market_lifecycle'] as const;
export type MarketLifecycleChannel = (typeof MARKET_LIFECYCLE_CHANNELS)[number];

export const MARKET_EVENT_TYPES = [
  'created',
  'activated',
  'deactivated',
  'close_date_updated',
  'determined',
  'settled',
  'price_level_structure_updated',
  'metadata_updated',
] as const;
export type MarketEventType = (typeof MARKET_EVENT_TYPES)[number];

export interface MarketLifecycle {
  readonly kind: 'market';
  readonly channel: MarketLifecycleChannel;
  readonly ticker: string;
  readonly eventType: MarketEventType | string;
  readonly openTimeMs: number | null;
  readonly closeTimeMs: number | null;
  readonly result: string | null;
  readonly priceLevelStructure: string | null;
  readonly isDeactivated: boolean | null;
  readonly raw: JsonObject;
}

export interface EventLifecycle {
  readonly kind: 'event';
  readonly event: KalshiEvent;
}

export type Lifecycle = MarketLifecycle | EventLifecycle;

function optSeconds(o: JsonObject, key: string, where: string): number | null {
  const v = o[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > 32_503_680_000) throw shapeError(`${where}.${key}`, 'expected epoch seconds');
  return v * 1000;
}

/** Throws KDP_ERR_MSG_SHAPE for anything that is not a lifecycle message. */
export function parseLifecycle(envelope: unknown): Lifecycle {
  const env = asObject(envelope, 'lifecycle message');
  const type = reqString(env, 'type', 'lifecycle message');
  const msg = asObject(env.msg, `${type}.msg`);
  if (type === 'event_lifecycle') return { kind: 'event', event: parseEvent(msg, 'event_lifecycle.msg') };
  if (type !== 'market_lifecycle_v2' && type !== 'multivariate_market_lifecycle') throw shapeError('lifecycle message', `unexpected type ${type}`);
  const where = `${type}.msg`;
  // Some feeds put event creation on the market channel: a payload with no market_ticker.
  if (msg.market_ticker === undefined && typeof msg.event_ticker === 'string') return { kind: 'event', event: parseEvent(msg, where) };
  const deact = msg.is_deactivated;
  return {
    kind: 'market',
    channel: type,
    ticker: reqString(msg, 'market_ticker', where),
    eventType: reqString(msg, 'event_type', where),
    openTimeMs: optSeconds(msg, 'open_ts', where),
    closeTimeMs: optSeconds(msg, 'close_ts', where),
    result: optString(msg, 'result', where),
    priceLevelStructure: optString(msg, 'price_level_structure', where),
    isDeactivated: typeof deact === 'boolean' ? deact : null,
    raw: msg,
  };
}
