// REST market data under /trade-api/v2, served from the same state as the WebSocket side (so a
// REST book equals the WS book at that moment). Token-bucket rate limiting answers 429 with
// {"error":"too many requests"} and no Retry-After, as Kalshi does.
import uWS = require('../http/uws');
import { statusLine } from '../http/server';
import { REST_PREFIX } from './auth';
import { formatPrice, PRICE_ONE } from './fixed';
import { yesAsk, type ExchangeState, type MarketState } from './state';
import { isoMicros } from '../kalshi/encode';
import { decodeListParam, ORDERBOOKS_TICKERS_MAX, REST_ROUTES } from '../kalshi/protocol';
import type { MarketStatus } from './truth';

export interface RestOptions {
  /** Token refill per second per client (Kalshi Basic tier: 200). */
  restTokensPerSec: number;
  /** Bucket size (burst). */
  restBurstTokens: number;
  /** Tokens one request costs (Kalshi: 10 for most reads). */
  restCostTokens: number;
  /** GET /markets/{ticker} answers 404 for this long (exchange ms) after a market is created (observed on Kalshi). */
  restNewMarketDelayMs: number;
}

type Query = URLSearchParams;
type Reply = [number, unknown];
type Handler = (q: Query, params: string[]) => Reply;

export const STATUS_FILTER: Readonly<Record<string, readonly MarketStatus[]>> = {
  unopened: ['initialized'],
  open: ['active'],
  paused: ['inactive'],
  closed: ['closed', 'determined'],
  settled: ['finalized'],
};

const bad = (message: string): Reply => [400, { error: { code: 'bad_request', message } }];
const notFound = (message: string): Reply => [404, { error: { code: 'not_found', message } }];

function encodeCursor(n: number): string {
  return Buffer.from(`p${n}`).toString('base64url');
}
function decodeCursor(cursor: string | null): number | null {
  if (!cursor) return 0;
  const text = Buffer.from(cursor, 'base64url').toString();
  const n = Number(text.slice(1));
  return text.startsWith('p') && Number.isInteger(n) && n >= 0 ? n : null;
}
function limitParam(q: Query, dflt: number, max: number): number | null {
  const raw = q.get('limit');
  if (raw === null || raw === '') return dflt;
  const n = Number(raw);
  return Number.isInteger(n) && n >= 1 && n <= max ? n : null;
}

/** The fields of a market object that follow the exchange state: status, close, prices from the book and ticker. */
function marketStateJson(m: MarketState): Record<string, unknown> {
  const bid = m.book.best('yes');
  const ask = yesAsk(m.book);
  const bestNo = m.book.best('no');
  const t = m.ticker;
  return {
    close_time: new Date(Math.floor(m.closeUs / 1000)).toISOString().replace('.000Z', 'Z'),
    status: m.status,
    result: m.result,
    yes_bid_dollars: formatPrice(bid < 0 ? 0 : bid),
    yes_ask_dollars: formatPrice(ask < 0 ? PRICE_ONE : ask),
    no_bid_dollars: formatPrice(bestNo < 0 ? 0 : bestNo),
    no_ask_dollars: formatPrice(bid < 0 ? PRICE_ONE : PRICE_ONE - bid),
    last_price_dollars: m.lastTradeUnits < 0 ? '0.0000' : formatPrice(m.lastTradeUnits),
    volume_fp: t?.volume_fp ?? '0.00',
    volume_24h_fp: t?.volume_fp ?? '0.00',
    open_interest_fp: t?.open_interest_fp ?? '0.00',
  };
}

/** A market object; a replayed market (`def.raw`, its recorded REST object) keeps its recorded fields under the state's. */
export function marketJson(m: MarketState): Record<string, unknown> {
  if (m.def.raw) return { ...m.def.raw, ...marketStateJson(m) };
  return {
    ticker: m.def.ticker,
    event_ticker: m.def.event_ticker,
    market_type: 'binary',
    title: m.def.title,
    yes_sub_title: m.def.yes_sub_title,
    no_sub_title: m.def.yes_sub_title,
    created_time: isoMicros(m.def.created_us).replace(/\.\d+Z$/, 'Z'),
    open_time: new Date(Math.floor(m.def.open_us / 1000)).toISOString().replace('.000Z', 'Z'),
    expected_expiration_time: new Date(Math.floor(m.closeUs / 1000)).toISOString().replace('.000Z', 'Z'),
    can_close_early: true,
    ...marketStateJson(m),
    notional_value_dollars: '1.0000',
    price_level_structure: m.def.price_level_structure,
    price_ranges: [{ start: '0.0000', end: '1.0000', step: m.def.price_level_structure === 'deci_cent' ? '0.0010' : '0.0100' }],
    strike_type: 'greater',
    floor_strike: m.def.floor_strike,
    rules_primary: `Resolves Yes if the value is above ${m.def.floor_strike}.`,
  };
}

export class RestApi {
  private readonly buckets = new Map<string, { tokens: number; atMs: number }>();
  /** Returns the fault status to answer right now (429 / 503) or 0. */
  faultStatus: () => number = () => 0;
  requests = 0;
  limited = 0;

  constructor(
    private readonly state: ExchangeState,
    private readonly o: RestOptions,
  ) {}

  attach(app: uWS.TemplatedApp): void {
    const P = REST_PREFIX;
    this.get(app, `${P}/markets`, (q) => this.markets(q));
    this.get(app, `${P}/markets/trades`, (q) => this.trades(q));
    this.get(app, `${P}/markets/orderbooks`, (q) => this.orderbooks(q));
    this.get(app, `${P}/markets/:ticker/orderbook`, (q, p) => this.orderbook(p[0]!, q));
    this.get(app, `${P}/markets/:ticker`, (_q, p) => {
      const m = this.state.markets.get(p[0]!);
      const young = m !== undefined && this.state.nowUs - m.def.created_us < this.o.restNewMarketDelayMs * 1000;
      return m && !young ? [200, { market: marketJson(m) }] : notFound(`market ${p[0]} not found`);
    });
    this.get(app, `${P}/events`, (q) => this.events(q));
    this.get(app, `${P}/events/:ticker`, (_q, p) => {
      const e = this.state.events.get(p[0]!);
      return e
        ? [200, { event: this.eventJson(e.event_ticker), markets: this.state.marketList.filter((m) => m.def.event_ticker === e.event_ticker).map(marketJson) }]
        : notFound(`event ${p[0]} not found`);
    });
    this.get(app, `${P}/series`, () => [200, { series: [...this.state.series.values()].map((s) => ({ ...s })) }]);
    this.get(app, `${P}/series/:ticker`, (_q, p) => {
      const s = this.state.series.get(p[0]!);
      return s ? [200, { series: { ...s } }] : notFound(`series ${p[0]} not found`);
    });
    this.get(app, `${P}/exchange/status`, () => [
      200,
      { exchange_active: this.state.exchangeActive, trading_active: this.state.tradingActive, exchange_estimated_resume_time: null },
    ]);
  }

  private get(app: uWS.TemplatedApp, path: string, handler: Handler): void {
    const names = path.split('/').filter((s) => s.startsWith(':'));
    app.get(path, (res, req) => {
      this.requests++;
      let out: Reply;
      try {
        const params = names.map((_n, i) => decodeURIComponent(req.getParameter(i) ?? ''));
        const key = req.getHeader('kalshi-access-key') || Buffer.from(res.getRemoteAddressAsText()).toString();
        const query = new URLSearchParams(req.getQuery() ?? '');
        const fault = this.faultStatus();
        if (fault === 429 || !this.take(key)) {
          this.limited++;
          out = [429, { error: { code: 'too_many_requests', message: 'too many requests' } }];
        } else if (fault >= 500) out = [fault, { error: 'service unavailable' }];
        else out = handler(query, params);
      } catch (err) {
        // Bad input (e.g. a malformed %-escape) must never take the exchange down.
        out = err instanceof URIError ? bad('malformed URL') : [500, { error: { code: 'internal', message: 'internal error' } }];
      }
      const body = JSON.stringify(out[1]);
      res.cork(() => res.writeStatus(statusLine(out[0])).writeHeader('content-type', 'application/json').end(body));
    });
  }

  private take(key: string): boolean {
    const now = Date.now();
    let b = this.buckets.get(key);
    if (!b) this.buckets.set(key, (b = { tokens: this.o.restBurstTokens, atMs: now }));
    b.tokens = Math.min(this.o.restBurstTokens, b.tokens + ((now - b.atMs) * this.o.restTokensPerSec) / 1000);
    b.atMs = now;
    if (b.tokens < this.o.restCostTokens) return false;
    b.tokens -= this.o.restCostTokens;
    return true;
  }

  private markets(q: Query): Reply {
    const limit = limitParam(q, 100, 1000);
    if (limit === null) return bad('limit must be an integer 1-1000');
    const start = decodeCursor(q.get('cursor'));
    if (start === null) return bad('bad cursor');
    const status = q.get('status');
    if (status && !STATUS_FILTER[status]) return bad(`status must be one of ${Object.keys(STATUS_FILTER).join(',')}`);
    const mve = q.get('mve_filter');
    if (mve && mve !== 'exclude' && mve !== 'only') return bad('mve_filter must be exclude or only');
    const statuses = status ? STATUS_FILTER[status]! : null;
    const ev = q.get('event_ticker');
    const series = q.get('series_ticker');
    const listed = decodeListParam(REST_ROUTES.markets, q, 'tickers');
    const tickers = listed.length > 0 ? new Set(listed) : null;
    const list = this.state.marketList;
    const out: Record<string, unknown>[] = [];
    let i = start;
    for (; i < list.length && out.length < limit && mve !== 'only'; i++) {
      const m = list[i]!;
      if (statuses && !statuses.includes(m.status)) continue;
      if (ev && m.def.event_ticker !== ev) continue;
      if (series && m.def.series_ticker !== series) continue;
      if (tickers && !tickers.has(m.def.ticker)) continue;
      out.push(marketJson(m));
    }
    return [200, { markets: out, cursor: i < list.length && out.length === limit ? encodeCursor(i) : '' }];
  }

  private bookJson(m: MarketState, depth: number): Record<string, unknown> {
    return { yes_dollars: m.book.levels('yes', depth), no_dollars: m.book.levels('no', depth) };
  }

  private orderbook(ticker: string, q: Query): Reply {
    const m = this.state.markets.get(ticker);
    if (!m) return notFound(`market ${ticker} not found`);
    const depth = q.get('depth') ? Number(q.get('depth')) : 0;
    if (!Number.isInteger(depth) || depth < 0 || depth > 100) return bad('depth must be an integer 0-100');
    return [200, { orderbook_fp: this.bookJson(m, depth) }];
  }

  private orderbooks(q: Query): Reply {
    // An array parameter on Kalshi: repeated `tickers=A&tickers=B`; a comma is part of one ticker.
    const tickers = decodeListParam(REST_ROUTES.orderbooks, q, 'tickers');
    if (tickers.length < 1 || tickers.length > ORDERBOOKS_TICKERS_MAX) return bad(`tickers must list 1-${ORDERBOOKS_TICKERS_MAX} markets`);
    const out = [];
    for (const t of tickers) {
      const m = this.state.markets.get(t);
      if (!m) return notFound(`market ${t} not found`);
      out.push({ ticker: t, orderbook_fp: this.bookJson(m, 0) });
    }
    return [200, { orderbooks: out }];
  }

  private trades(q: Query): Reply {
    const limit = limitParam(q, 100, 1000);
    if (limit === null) return bad('limit must be an integer 1-1000');
    const cursorN = q.get('cursor') ? decodeCursor(q.get('cursor')) : Infinity;
    if (cursorN === null) return bad('bad cursor');
    const minTs = q.get('min_ts') ? Number(q.get('min_ts')) : 0;
    const maxTs = q.get('max_ts') ? Number(q.get('max_ts')) : Infinity;
    if (!Number.isFinite(minTs) || Number.isNaN(maxTs)) return bad('min_ts / max_ts must be Unix seconds');
    const ticker = q.get('ticker');
    const market = ticker ? this.state.markets.get(ticker) : undefined;
    if (ticker && !market) return [200, { trades: [], cursor: '' }];
    const ring = this.state.trades;
    const out: Record<string, unknown>[] = [];
    let lastN = 0;
    let more = false;
    // Newest first, as Kalshi lists trades.
    for (let k = 0; k < ring.size; k++) {
      const slot = ring.slot(k);
      const n = ring.nAt(slot);
      const t = ring.tAt(slot);
      if (n >= cursorN) continue;
      if (t < minTs * 1e6) break;
      if (t >= (maxTs + 1) * 1e6) continue;
      if (market && ring.marketAt(slot) !== market.idx) continue;
      if (out.length === limit) {
        more = true;
        break;
      }
      out.push(ring.json(slot, this.state.marketList[ring.marketAt(slot)]!.def.ticker, isoMicros));
      lastN = n;
    }
    return [200, { trades: out, cursor: more ? encodeCursor(lastN) : '' }];
  }

  private eventJson(ticker: string): Record<string, unknown> {
    const e = this.state.events.get(ticker)!;
    const s = this.state.series.get(e.series_ticker);
    return {
      event_ticker: e.event_ticker,
      series_ticker: e.series_ticker,
      title: e.title,
      sub_title: e.sub_title,
      mutually_exclusive: false,
      category: s?.category ?? '',
      strike_date: new Date(Math.floor(e.strike_date_us / 1000)).toISOString(),
    };
  }

  private events(q: Query): Reply {
    const limit = limitParam(q, 100, 200);
    if (limit === null) return bad('limit must be an integer 1-200');
    const start = decodeCursor(q.get('cursor'));
    if (start === null) return bad('bad cursor');
    const series = q.get('series_ticker');
    const nested = q.get('with_nested_markets') === 'true';
    const list = this.state.eventList;
    const out: Record<string, unknown>[] = [];
    let i = start;
    for (; i < list.length && out.length < limit; i++) {
      const e = list[i]!;
      if (series && e.series_ticker !== series) continue;
      const json = this.eventJson(e.event_ticker);
      if (nested) json.markets = this.state.marketList.filter((m) => m.def.event_ticker === e.event_ticker).map(marketJson);
      out.push(json);
    }
    return [200, { events: out, cursor: i < list.length && out.length === limit ? encodeCursor(i) : '' }];
  }
}
