// REST client for Kalshi's market-data endpoints. Every request passes a client-side token
// bucket, is optionally signed, has a per-attempt timeout, and is retried with full-jitter
// exponential backoff on 429 (Kalshi sends no Retry-After), 5xx and network failures, up to a
// bound. Other 4xx fail at once with KDP_ERR_REST_CLIENT. Errors are counted per route
// *template* (`/markets/{ticker}/orderbook`), never per ticker, so metric cardinality is bounded.
import { encodeQuery, ORDERBOOKS_TICKERS_MAX, parseRestError, REST_ROUTES, type QueryValue, type RouteSpec } from '../kalshi/protocol';
import type { Logger } from '../core/log';
import { KdpError, invariant, isKdpError, type ErrorCode } from '../core/errors';
import type { GATHERER_METRICS, MetricSet } from '../core/metrics';
import type { KalshiSigner } from './auth';
import { systemClock, shutdownError, type Clock } from './clock';
import type { RestClientOptions } from './options';
import { TokenBucket } from './ratelimit';
import { backoffDelayMs } from '../core/backoff';
import {
  asArray,
  asObject,
  parseCursor,
  parseEvent,
  parseExchangeStatus,
  parseMarket,
  parseOrderbookFp,
  parseSeries,
  parseTrade,
  reqString,
  type ExchangeStatus,
  type KalshiEvent,
  type KalshiMarket,
  type KalshiSeries,
  type OrderbookLevels,
  type RestTrade,
} from './shapes';

export const ROUTES = {
  markets: REST_ROUTES.markets.path,
  market: REST_ROUTES.market.path,
  orderbook: REST_ROUTES.orderbook.path,
  orderbooks: REST_ROUTES.orderbooks.path,
  trades: REST_ROUTES.trades.path,
  events: REST_ROUTES.events.path,
  series: REST_ROUTES.series.path,
  exchangeStatus: REST_ROUTES.exchangeStatus.path,
} as const;
export type Route = (typeof ROUTES)[keyof typeof ROUTES];

export type RestOutcome = 'ok' | 'rate_limited' | 'server_error' | 'client_error' | 'network_error' | 'bad_response';
export type RestMetrics = Pick<MetricSet<typeof GATHERER_METRICS>, 'market_registry_rest_errors_total' | 'rest_requests_total'>;

export interface RestStats {
  /** Calls of request() (one per logical request, however many attempts). */
  requests: number;
  /** HTTP attempts made. */
  attempts: number;
  /** Attempts that were retries. */
  retries: number;
  readonly byOutcome: Record<RestOutcome, number>;
  /** Failed attempts per route template. */
  readonly errorsByEndpoint: Map<Route, number>;
  /** List items dropped because they failed validation (the rest of the page is kept). */
  rejectedItems: number;
  /** Backoff waits in order (ms), for observability and tests. */
  readonly backoffsMs: number[];
}

export interface Page<T> {
  readonly items: T[];
  readonly cursor: string | null;
}

export interface MarketsQuery {
  status?: 'unopened' | 'open' | 'paused' | 'closed' | 'settled';
  limit?: number;
  cursor?: string;
  mve_filter?: 'exclude' | 'only';
  event_ticker?: string;
  series_ticker?: string;
  tickers?: readonly string[];
  min_close_ts?: number;
  max_close_ts?: number;
}

export interface TradesQuery {
  ticker?: string;
  /** Seconds since the epoch (inclusive bounds as Kalshi defines them). */
  min_ts?: number;
  max_ts?: number;
  limit?: number;
  cursor?: string;
}

export interface EventsQuery {
  status?: 'unopened' | 'open' | 'closed' | 'settled';
  series_ticker?: string;
  limit?: number;
  cursor?: string;
}

export interface SeriesQuery {
  category?: string;
  cursor?: string;
}

export interface RestClientDeps {
  readonly clock?: Clock;
  readonly signer?: KalshiSigner;
  readonly metrics?: RestMetrics;
  readonly log?: Logger;
  /** Jitter source (tests pass a fixed one). */
  readonly random?: () => number;
}

type Query = Record<string, QueryValue>;

export const MAX_BATCH_ORDERBOOK_TICKERS = ORDERBOOKS_TICKERS_MAX;

/** The wire spec of a route template (param names and array styles live in src/kalshi). */
function routeSpec(route: Route): RouteSpec {
  const spec = Object.values(REST_ROUTES).find((r) => r.path === route);
  invariant(spec !== undefined, `route ${route} has no wire spec`);
  return spec;
}

/** The HTTP status of a REST error, when it has one. */
export function restStatus(err: unknown): number | undefined {
  return isKdpError(err) && typeof err.details?.status === 'number' ? err.details.status : undefined;
}

class AttemptError extends Error {
  constructor(
    readonly kdp: KdpError,
    readonly outcome: RestOutcome,
  ) {
    super(kdp.message);
  }
}

export class RestClient {
  readonly stats: RestStats = {
    requests: 0,
    attempts: 0,
    retries: 0,
    byOutcome: {
      ok: 0,
      rate_limited: 0,
      server_error: 0,
      client_error: 0,
      network_error: 0,
      bad_response: 0,
    },
    errorsByEndpoint: new Map(),
    rejectedItems: 0,
    backoffsMs: [],
  };
  readonly bucket: TokenBucket;
  private readonly clock: Clock;
  private readonly base: URL;
  private readonly stopper = new AbortController();

  constructor(
    private readonly opts: RestClientOptions,
    private readonly deps: RestClientDeps = {},
  ) {
    this.clock = deps.clock ?? systemClock;
    this.base = new URL(opts.restBaseUrl.replace(/\/+$/, ''));
    this.bucket = new TokenBucket(
      {
        tokensPerSec: opts.restTokensPerSec,
        burstTokens: opts.restBurstTokens,
        maxWaiters: opts.restMaxQueuedRequests,
      },
      this.clock,
    );
  }

  /** Abandons waits and in-flight requests (they fail with KDP_ERR_SHUTDOWN). */
  stop(): void {
    this.stopper.abort();
  }

  // ---- typed endpoints -------------------------------------------------------------------

  async getMarkets(q: MarketsQuery = {}): Promise<Page<KalshiMarket>> {
    const query: Query = { ...q };
    return this.request(ROUTES.markets, {}, query, (body) => this.page(body, 'markets', ROUTES.markets, parseMarket));
  }

  /** Every market matching `q`, page by page (memory: one page at a time). */
  listMarkets(q: Omit<MarketsQuery, 'cursor'> = {}): AsyncGenerator<KalshiMarket[]> {
    return this.pages((cursor) => this.getMarkets(cursor ? { ...q, cursor } : q));
  }

  async getMarket(ticker: string): Promise<KalshiMarket> {
    return this.request(ROUTES.market, { ticker }, {}, (body) => parseMarket(asObject(body, 'market response').market, 'market'));
  }

  async getOrderbook(ticker: string, depth?: number): Promise<OrderbookLevels> {
    return this.request(ROUTES.orderbook, { ticker }, { depth: depth || undefined }, (body) =>
      parseOrderbookFp(asObject(body, 'orderbook response').orderbook_fp, 'orderbook_fp'),
    );
  }

  /** Batch form, 1-100 tickers. Books come back keyed by ticker; a ticker may be missing. */
  async getOrderbooks(tickers: readonly string[]): Promise<Map<string, OrderbookLevels>> {
    invariant(tickers.length >= 1 && tickers.length <= MAX_BATCH_ORDERBOOK_TICKERS, `getOrderbooks takes 1-100 tickers, got ${tickers.length}`);
    return this.request(ROUTES.orderbooks, {}, { tickers }, (body) => {
      const list = asArray(asObject(body, 'orderbooks response').orderbooks, 'orderbooks');
      const out = new Map<string, OrderbookLevels>();
      list.forEach((item, i) => {
        try {
          const o = asObject(item, `orderbooks[${i}]`);
          out.set(reqString(o, 'ticker', `orderbooks[${i}]`), parseOrderbookFp(o.orderbook_fp, `orderbooks[${i}].orderbook_fp`));
        } catch (err) {
          this.rejectItem(ROUTES.orderbooks, err);
        }
      });
      return out;
    });
  }

  async getTrades(q: TradesQuery = {}): Promise<Page<RestTrade>> {
    return this.request(ROUTES.trades, {}, { ...q }, (body) => this.page(body, 'trades', ROUTES.trades, parseTrade));
  }

  listTrades(q: Omit<TradesQuery, 'cursor'>): AsyncGenerator<RestTrade[]> {
    return this.pages((cursor) => this.getTrades(cursor ? { ...q, cursor } : q));
  }

  async getEvents(q: EventsQuery = {}): Promise<Page<KalshiEvent>> {
    return this.request(ROUTES.events, {}, { ...q }, (body) => this.page(body, 'events', ROUTES.events, parseEvent));
  }

  listEvents(q: Omit<EventsQuery, 'cursor'> = {}): AsyncGenerator<KalshiEvent[]> {
    return this.pages((cursor) => this.getEvents(cursor ? { ...q, cursor } : q));
  }

  async getSeries(q: SeriesQuery = {}): Promise<Page<KalshiSeries>> {
    return this.request(ROUTES.series, {}, { ...q }, (body) => this.page(body, 'series', ROUTES.series, parseSeries));
  }

  listSeries(q: Omit<SeriesQuery, 'cursor'> = {}): AsyncGenerator<KalshiSeries[]> {
    return this.pages((cursor) => this.getSeries(cursor ? { ...q, cursor } : q));
  }

  async getExchangeStatus(): Promise<ExchangeStatus> {
    return this.request(ROUTES.exchangeStatus, {}, {}, (body) => parseExchangeStatus(body, 'exchange status'));
  }

  // ---- pagination ---------------------------------------------------------------------------

  /**
   * Follows cursors until one is empty or null. Bounded: more than `restMaxPages` pages, or a
   * cursor seen before (a server loop), fails with KDP_ERR_REST_PAGE_LIMIT.
   */
  async *pages<T>(fetchPage: (cursor: string | undefined) => Promise<Page<T>>): AsyncGenerator<T[]> {
    const seen = new Set<string>();
    let cursor: string | undefined;
    for (let n = 1; ; n++) {
      const page = await fetchPage(cursor);
      yield page.items;
      if (page.cursor === null) return;
      if (seen.has(page.cursor)) throw new KdpError('KDP_ERR_REST_PAGE_LIMIT', `pagination repeated a cursor after ${n} pages`, { pages: n });
      if (n >= this.opts.restMaxPages) {
        throw new KdpError('KDP_ERR_REST_PAGE_LIMIT', `pagination exceeded ${this.opts.restMaxPages} pages`, { pages: n });
      }
      seen.add(page.cursor);
      cursor = page.cursor;
    }
  }

  /** Collects every page of a listing into one array. */
  async collect<T>(gen: AsyncGenerator<T[]>): Promise<T[]> {
    const out: T[] = [];
    for await (const items of gen) for (const item of items) out.push(item);
    return out;
  }

  private page<T>(body: unknown, key: string, route: Route, parse: (v: unknown, where: string) => T): Page<T> {
    const o = asObject(body, `${route} response`);
    const items: T[] = [];
    // `series` and `events` may be null on an empty listing.
    const list = o[key] === null ? [] : asArray(o[key], key);
    list.forEach((v, i) => {
      try {
        items.push(parse(v, `${key}[${i}]`));
      } catch (err) {
        this.rejectItem(route, err);
      }
    });
    return { items, cursor: parseCursor(o, `${route} response`) };
  }

  private rejectItem(route: Route, err: unknown): void {
    if (!isKdpError(err)) throw err;
    this.stats.rejectedItems++;
    this.deps.log?.warn({ endpoint: route, code: err.code, err: err.message }, 'REST list item rejected');
  }

  // ---- the request loop -----------------------------------------------------------------------

  /** One logical request: bucket, sign, fetch, classify, retry with backoff, parse. */
  async request<T>(route: Route, pathParams: Record<string, string>, query: Query, parse: (body: unknown) => T): Promise<T> {
    this.stats.requests++;
    const url = this.buildUrl(route, pathParams, query);
    for (let attempt = 0; ; attempt++) {
      if (this.stopper.signal.aborted) throw shutdownError();
      await this.bucket.take(this.opts.restCostPerRequest, this.stopper.signal);
      this.stats.attempts++;
      if (attempt > 0) this.stats.retries++;
      try {
        const body = await this.attempt(route, url);
        const value = this.parseBody(body, parse);
        this.count(route, 'ok');
        return value;
      } catch (err) {
        if (!(err instanceof AttemptError)) throw err;
        this.count(route, err.outcome);
        if (!err.kdp.retryable || attempt >= this.opts.restRetryMax) throw err.kdp;
        if (err.outcome === 'rate_limited') this.bucket.drain();
        // Full jitter: three gatherers share one exchange and its 429s carry no Retry-After.
        const waitMs = backoffDelayMs(attempt, {
          initialMs: this.opts.backoffInitialMs,
          maxMs: this.opts.backoffMaxMs,
          jitter: 'full',
          random: this.deps.random,
        });
        this.stats.backoffsMs.push(waitMs);
        this.deps.log?.debug({ endpoint: route, attempt, waitMs, code: err.kdp.code }, 'REST retry');
        await this.clock.sleep(waitMs, this.stopper.signal);
      }
    }
  }

  private buildUrl(route: Route, pathParams: Record<string, string>, query: Query): URL {
    const path = route.replace(/\{(\w+)\}/g, (_, name: string) => {
      const v = pathParams[name];
      invariant(typeof v === 'string' && v.length > 0, `missing path parameter ${name} for ${route}`);
      return encodeURIComponent(v);
    });
    const url = new URL(this.base.toString());
    url.pathname = `${this.base.pathname}${path}`;
    // Array parameters are encoded per route as Kalshi's OpenAPI describes them (src/kalshi).
    encodeQuery(routeSpec(route), query, url.searchParams);
    return url;
  }

  private async attempt(route: Route, url: URL): Promise<unknown> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.deps.signer && this.opts.signRestRequests) Object.assign(headers, this.deps.signer.headers('GET', url.pathname, this.clock.nowMs()));
    const timeout = AbortSignal.timeout(this.opts.restTimeoutMs);
    const signal = typeof AbortSignal.any === 'function' ? AbortSignal.any([timeout, this.stopper.signal]) : timeout;
    let res: Response;
    let text: string;
    try {
      res = await fetch(url, { method: 'GET', headers, signal });
      text = await this.readBody(res);
    } catch (err) {
      if (this.stopper.signal.aborted) throw shutdownError();
      if (err instanceof AttemptError) throw err;
      const why = timeout.aborted ? `timed out after ${this.opts.restTimeoutMs} ms` : (err as Error).message;
      throw this.fail('KDP_ERR_REST_NETWORK', 'network_error', `GET ${route}: ${why}`, {
        endpoint: route,
      });
    }
    if (res.status === 429)
      throw this.fail('KDP_ERR_REST_RATE_LIMITED', 'rate_limited', `GET ${route}: 429 ${describeRestError(text) ?? 'too many requests'}`, {
        endpoint: route,
        status: 429,
      });
    if (res.status >= 500)
      throw this.fail('KDP_ERR_REST_SERVER', 'server_error', `GET ${route}: HTTP ${res.status}`, {
        endpoint: route,
        status: res.status,
      });
    if (res.status < 200 || res.status >= 300) {
      throw this.fail('KDP_ERR_REST_CLIENT', 'client_error', `GET ${route}: HTTP ${res.status} ${text.slice(0, 200)}`, { endpoint: route, status: res.status });
    }
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw this.fail('KDP_ERR_MSG_JSON', 'bad_response', `GET ${route}: response is not JSON`, {
        endpoint: route,
        status: res.status,
      });
    }
  }

  private async readBody(res: Response): Promise<string> {
    const declared = Number(res.headers.get('content-length') ?? '0');
    if (declared > this.opts.restMaxResponseBytes) {
      await res.body?.cancel().catch(() => undefined);
      throw this.fail('KDP_ERR_FRAME_TOO_LARGE', 'bad_response', `response of ${declared} bytes exceeds ${this.opts.restMaxResponseBytes}`, {});
    }
    const buf = await res.arrayBuffer();
    if (buf.byteLength > this.opts.restMaxResponseBytes) {
      throw this.fail('KDP_ERR_FRAME_TOO_LARGE', 'bad_response', `response of ${buf.byteLength} bytes exceeds ${this.opts.restMaxResponseBytes}`, {});
    }
    return Buffer.from(buf).toString('utf8');
  }

  private parseBody<T>(body: unknown, parse: (body: unknown) => T): T {
    try {
      return parse(body);
    } catch (err) {
      if (!isKdpError(err)) throw err;
      throw new AttemptError(err, 'bad_response');
    }
  }

  private fail(code: ErrorCode, outcome: RestOutcome, message: string, details: Record<string, unknown>): AttemptError {
    return new AttemptError(new KdpError(code, message, details), outcome);
  }

  private count(route: Route, outcome: RestOutcome): void {
    this.stats.byOutcome[outcome]++;
    this.deps.metrics?.rest_requests_total.inc({ endpoint: route, outcome });
    if (outcome !== 'ok') {
      this.stats.errorsByEndpoint.set(route, (this.stats.errorsByEndpoint.get(route) ?? 0) + 1);
      this.deps.metrics?.market_registry_rest_errors_total.inc({ endpoint: route });
    }
  }
}

/** Kalshi's error body (`{"error":{"code":...,"message":...}}`) as `code: message`, when it is one. */
function describeRestError(text: string): string | null {
  try {
    const e = parseRestError(JSON.parse(text));
    return e === null ? null : `${e.code}: ${e.message}`.slice(0, 200);
  } catch {
    return null;
  }
}
