// The Kalshi wire contract in one place: channels, message types, WebSocket error codes, REST
// routes and how their parameters are encoded, and the unit rules every parser and encoder of
// this project follows. The gatherer (worker parser, REST client, registry) and the simulator
// (its encoders and REST server) import these facts instead of restating them, so one protocol
// fact lives in one place. Source of the facts: /work/shared/kalshi-protocol.md, Kalshi's
// OpenAPI description (an excerpt in test/kalshi/fixtures/openapi-excerpt.yaml, which
// test/kalshi/openapi.test.ts checks the REST client's requests against) and the captured-frame
// corpus (test/kalshi/corpus/). Known differences between this model and the docs: docs/kalshi.md.

/** Channels a market-data recorder subscribes to. */
export const CHANNELS = {
  orderbook: 'orderbook_delta',
  ticker: 'ticker',
  trade: 'trade',
  lifecycle: 'market_lifecycle_v2',
  /** KXMVE* markets' lifecycle moved here (same payload as market_lifecycle_v2). */
  multivariateLifecycle: 'multivariate_market_lifecycle',
} as const;
export type Channel = (typeof CHANNELS)[keyof typeof CHANNELS];

/** Message `type` -> the channel whose subscription carries it. */
export const MESSAGE_CHANNEL: Readonly<Record<string, Channel>> = {
  orderbook_snapshot: 'orderbook_delta',
  orderbook_delta: 'orderbook_delta',
  trade: 'trade',
  ticker: 'ticker',
  market_lifecycle_v2: 'market_lifecycle_v2',
  // event_lifecycle and event_fee_update have no channel of their own: they arrive on the
  // market_lifecycle_v2 subscription, with that sid's seq.
  event_lifecycle: 'market_lifecycle_v2',
  event_fee_update: 'market_lifecycle_v2',
  multivariate_market_lifecycle: 'multivariate_market_lifecycle',
};

/** Message types stored in lifecycle_events (the `channel` column holds the message type). */
export const LIFECYCLE_MESSAGE_TYPES: ReadonlySet<string> = new Set([
  'market_lifecycle_v2',
  'multivariate_market_lifecycle',
  'event_lifecycle',
  'event_fee_update',
]);

/** Lifecycle message types the market registry applies (a fee update changes no market or event row). */
export const REGISTRY_MESSAGE_TYPES: ReadonlySet<string> = new Set(['market_lifecycle_v2', 'multivariate_market_lifecycle', 'event_lifecycle']);

/**
 * event_type recorded for lifecycle messages that carry none: event_lifecycle is the exchange's
 * event-creation notice; event_fee_update is a fee change of one event.
 */
export const IMPLIED_EVENT_TYPE: Readonly<Record<string, string>> = {
  event_lifecycle: 'created',
  event_fee_update: 'fee_update',
};

/** Reply / control message types (not data). */
export const CONTROL_TYPES = ['subscribed', 'ok', 'unsubscribed', 'error'] as const;

/**
 * WebSocket error codes and the text the exchange sends with each
 * (`{"type":"error","msg":{"code":N,"msg":"..."}}`); the simulator answers with these texts. 6
 * ("already subscribed") is listed as retired; 23/24/28/29 are in the docs' table but not relied
 * on here (their texts are not given). 10, 17 and 25 end a sid (TERMINAL_WS_ERROR_CODES).
 */
export const WS_ERROR_CODES: Readonly<Record<number, string>> = {
  1: 'Unable to process message',
  2: 'Params required',
  3: 'Channels required',
  4: 'Subscription IDs required',
  5: 'Unknown command',
  6: 'Already subscribed',
  7: 'Unknown subscription ID',
  8: 'Unknown channel name',
  9: 'Authentication required',
  10: 'Channel error',
  11: 'Invalid parameter',
  12: 'Exactly one subscription ID is required',
  13: 'Unsupported action',
  14: 'Market ticker required',
  15: 'Action required',
  16: 'Market not found',
  17: 'Internal error',
  18: 'Command timeout',
  23: 'Error 23',
  24: 'Error 24',
  25: 'Subscription buffer overflow',
  26: 'Subscription market limit exceeded',
  27: 'Too many requests',
  28: 'Error 28',
  29: 'Error 29',
};
/** Error 26: the subscription holds too many markets (the connection manager halves its shards). */
export const WS_ERROR_MARKET_LIMIT = 26;
/** Codes that end a sid: its messages were lost and a new subscription is needed. */
export const TERMINAL_WS_ERROR_CODES: ReadonlySet<number> = new Set([10, 17, 25]);

/** How a REST query parameter is put on the URL (OpenAPI `style: form`). */
export type ParamStyle = 'scalar' | 'comma' | 'repeated';

export interface RouteSpec {
  readonly path: string;
  /** Query parameters the client may send, and how arrays are encoded. */
  readonly params: Readonly<Record<string, ParamStyle>>;
  /**
   * The OpenAPI operation lists `security` (signed requests only). A 401 among its responses does
   * not count: most public reads list one. The client signs every request when keys are configured.
   */
  readonly authRequired: boolean;
}

/**
 * The market-data REST routes this platform calls. `tickers` on GET /markets is one
 * comma-separated string (OpenAPI TickersQuery); on GET /markets/orderbooks it is an array
 * sent form-exploded: `tickers=A&tickers=B`.
 */
export const REST_ROUTES = {
  markets: {
    path: '/markets',
    params: {
      limit: 'scalar',
      cursor: 'scalar',
      status: 'scalar',
      event_ticker: 'scalar',
      series_ticker: 'scalar',
      tickers: 'comma',
      mve_filter: 'scalar',
      min_close_ts: 'scalar',
      max_close_ts: 'scalar',
    },
    authRequired: false,
  },
  market: { path: '/markets/{ticker}', params: {}, authRequired: false },
  orderbook: { path: '/markets/{ticker}/orderbook', params: { depth: 'scalar' }, authRequired: false },
  // OpenAPI 3.31.0 lists no `security` on GetMarketOrderbooks, though kalshi-protocol.md says it
  // requires auth: configure keys so the poller's batch requests are signed (docs/kalshi.md).
  orderbooks: { path: '/markets/orderbooks', params: { tickers: 'repeated' }, authRequired: false },
  trades: {
    path: '/markets/trades',
    params: { ticker: 'scalar', min_ts: 'scalar', max_ts: 'scalar', limit: 'scalar', cursor: 'scalar' },
    authRequired: false,
  },
  events: {
    path: '/events',
    params: { limit: 'scalar', cursor: 'scalar', status: 'scalar', series_ticker: 'scalar', with_nested_markets: 'scalar' },
    authRequired: false,
  },
  series: { path: '/series', params: { category: 'scalar', tags: 'scalar' }, authRequired: false },
  exchangeStatus: { path: '/exchange/status', params: {}, authRequired: false },
} as const satisfies Record<string, RouteSpec>;

/** Batch bound of GET /markets/orderbooks (OpenAPI: minItems 1, maxItems 100). */
export const ORDERBOOKS_TICKERS_MAX = 100;

export type QueryValue = string | number | boolean | readonly string[] | undefined;

/**
 * Appends `query` to `params` the way Kalshi expects for `route`: arrays as a comma list or as
 * repeated keys per the route's spec; empty values are left out.
 */
export function encodeQuery(route: RouteSpec, query: Readonly<Record<string, QueryValue>>, params: URLSearchParams): void {
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === '') continue;
    const style = route.params[key] ?? 'scalar';
    if (Array.isArray(value)) {
      if (value.length === 0) continue;
      if (style === 'repeated') for (const v of value) params.append(key, v);
      else params.set(key, value.join(','));
    } else {
      params.set(key, String(value));
    }
  }
}

/**
 * Reads a list parameter as a server: repeated keys, each possibly a comma list (GET /markets
 * takes commas; the simulator accepts both forms there). For a `repeated` route a comma inside
 * one value is part of the ticker, as on Kalshi.
 */
export function decodeListParam(route: RouteSpec, params: URLSearchParams, key: string): string[] {
  const values = params.getAll(key);
  if (route.params[key] === 'repeated') return values.filter((v) => v !== '');
  return values.flatMap((v) => v.split(',')).filter((v) => v !== '');
}

/**
 * The time a trade is keyed by (µs): its exchange time truncated to the millisecond, the precision
 * of the WS `ts_ms` since 2025, so a live trade and its REST copy (`created_time`, µs) get the same
 * (exchange_ts, trade_id) and collapse. Early-2026 WS trades carried only `ts` (seconds): such a copy
 * keys at its whole second (TRADE_COARSE_TIME_US) and the key cannot make it collapse with a REST
 * copy whose time has a fraction; the production merge settles that pair by trade_id (src/dedup,
 * docs/semantics.md). Truncating every copy to the second instead was tried and reverted: it cost
 * every trade its sub-second time and order for the sake of that era.
 */
/**
 * The unit of a seconds-only trade time (µs): two rows with one trade_id whose times share this
 * whole second, one of them exactly on it, are a seconds-only WS copy and a finer copy of one trade.
 */
export const TRADE_COARSE_TIME_US = 1_000_000;

export function tradeKeyTimeUs(us: number): number {
  return us - (us % 1_000);
}

/**
 * The contract count of a trade: `count_fp` (2-decimal string) since the fixed-point migration of
 * early 2026; before it trades carried only `count`, an integer of whole contracts (GET
 * /markets/trades items recorded from production on 2026-01-12, test/kalshi/corpus). Returns the
 * count_fp value as given (the caller validates it), else the legacy integer as "N.00", else
 * undefined.
 */
export function tradeCountFp(msg: Readonly<Record<string, unknown>>): unknown {
  if (msg.count_fp !== undefined && msg.count_fp !== null) return msg.count_fp;
  const legacy = msg.count;
  return typeof legacy === 'number' && Number.isSafeInteger(legacy) && legacy >= 0 ? `${legacy}.00` : undefined;
}

/** The 429 body Kalshi has been seen to send: `{"error":{"code":"too_many_requests","message":...}}`. */
export function parseRestError(body: unknown): { code: string; message: string } | null {
  if (typeof body !== 'object' || body === null) return null;
  const err = (body as Record<string, unknown>).error;
  if (typeof err !== 'object' || err === null) return null;
  const { code, message } = err as Record<string, unknown>;
  return typeof code === 'string' ? { code, message: typeof message === 'string' ? message : '' } : null;
}
