// Records a live Kalshi feed (or our simulator) into the truth-file format, so a real session can
// be replayed through the simulator. What the exchange did is reconstructed from what one client
// saw: snapshots become deltas against the book known so far, and a seq gap triggers get_snapshot.
import WebSocket from 'ws';
import { backoffDelayMs } from '../core/backoff';
import { KdpError } from '../core/errors';
import { signRequest, WS_PATH } from './auth';
import { parsePrice, parseRfc3339Micros, parseSize, formatPrice, formatSize } from './fixed';
import { Book } from './state';
import { TRUTH_VERSION, TruthWriter, type Draft, type Level, type MarketDef, type MarketStatus, type PriceStructure, type Side } from './truth';

export interface CaptureOptions {
  wsUrl: string;
  restUrl: string;
  keyId?: string;
  privateKeyPem?: string;
  truthFile: string;
  /** Markets to record; default: the first `marketsMax` open markets from REST. */
  tickers?: string[];
  marketsMax?: number;
  marketsPerSub?: number;
  checkpointIntervalMs?: number;
}
export interface CaptureStats {
  records: number;
  gaps: number;
  errors: number;
  markets: number;
}
export interface Capture {
  stats(): CaptureStats;
  stop(): Promise<CaptureStats>;
}

type Json = Record<string, any>;
const REST_TRIES_MAX = 6;

async function restGet(o: CaptureOptions, pathAndQuery: string): Promise<Json> {
  const url = new URL(o.restUrl.replace(/\/$/, '') + pathAndQuery);
  for (let attempt = 1; ; attempt++) {
    const headers: Record<string, string> = o.keyId && o.privateKeyPem ? { ...signRequest(o.keyId, o.privateKeyPem, 'GET', url.pathname) } : {};
    const res = await fetch(url, { headers });
    if (res.ok) return (await res.json()) as Json;
    if ((res.status !== 429 && res.status < 500) || attempt >= REST_TRIES_MAX) {
      throw new KdpError(
        res.status === 429 ? 'KDP_ERR_REST_RATE_LIMITED' : res.status >= 500 ? 'KDP_ERR_REST_SERVER' : 'KDP_ERR_REST_CLIENT',
        `GET ${url.pathname}: HTTP ${res.status}`,
      );
    }
    // Back off with equal jitter (Kalshi sends no Retry-After). Was 100 ms * 2^attempt * [0.5, 1.5);
    // now [1/2, 1] of 200 ms * 2^attempt: the same doubling and order of magnitude, one formula.
    await new Promise((r) => setTimeout(r, backoffDelayMs(attempt, { initialMs: 200, maxMs: 10_000, jitter: 'equal' })));
  }
}

async function listMarkets(o: CaptureOptions): Promise<Json[]> {
  if (o.tickers && o.tickers.length > 0) {
    const out: Json[] = [];
    for (let i = 0; i < o.tickers.length; i += 100) {
      out.push(...(await restGet(o, `/markets?limit=1000&tickers=${o.tickers.slice(i, i + 100).join(',')}`)).markets);
    }
    return out;
  }
  const max = o.marketsMax ?? 100;
  const out: Json[] = [];
  let cursor = '';
  do {
    const page = await restGet(o, `/markets?status=open&mve_filter=exclude&limit=${Math.min(1000, max)}${cursor ? `&cursor=${cursor}` : ''}`);
    out.push(...page.markets);
    cursor = page.cursor ?? '';
  } while (cursor && out.length < max);
  return out.slice(0, max);
}

const secondsToUs = (iso: string | undefined): number => (iso ? Date.parse(iso) * 1000 : 0);

function marketDef(m: Json, marketId: string): MarketDef {
  return {
    ticker: m.ticker,
    event_ticker: m.event_ticker,
    series_ticker: String(m.event_ticker).split('-')[0]!,
    market_id: marketId,
    title: m.title ?? '',
    yes_sub_title: m.yes_sub_title ?? '',
    floor_strike: Number(m.floor_strike ?? 0),
    price_level_structure: (m.price_level_structure ?? 'linear_cent') as PriceStructure,
    status: (m.status ?? 'active') as MarketStatus,
    created_us: secondsToUs(m.created_time),
    open_us: secondsToUs(m.open_time),
    close_us: secondsToUs(m.close_time),
  };
}

const LIFECYCLE_STATUS: Record<string, MarketStatus> = { deactivated: 'inactive', activated: 'active', determined: 'determined', settled: 'finalized' };

class Recorder {
  private readonly out: TruthWriter;
  private n = 0;
  lastT: number;
  readonly books = new Map<string, Book>();
  constructor(file: string, startUs: number, options: Record<string, unknown>) {
    this.out = new TruthWriter(file);
    this.lastT = startUs;
    this.out.write({ k: 'meta', version: TRUTH_VERSION, source: 'capture', seed: 0, start_us: startUs, options });
  }
  emit(d: Draft, t = this.lastT): void {
    if (t > this.lastT) this.lastT = t;
    this.out.write({ ...d, n: ++this.n, t } as never);
  }
  get records(): number {
    return this.n;
  }
  /** A snapshot, as the deltas that turn the known book into it, then a checkpoint. */
  snapshot(ticker: string, yes: Level[], no: Level[]): void {
    const book = this.books.get(ticker)!;
    const target = Book.fromLevels(yes, no);
    for (const side of ['yes', 'no'] as Side[]) {
      const have = side === 'yes' ? book.yes : book.no;
      const want = side === 'yes' ? target.yes : target.no;
      const prices = new Set([...have.keys(), ...want.keys()]);
      for (const p of [...prices].sort((a, b) => a - b)) {
        const diff = (want.get(p) ?? 0) - (have.get(p) ?? 0);
        if (diff !== 0) this.delta(ticker, side, formatPrice(p), formatSize(diff), this.lastT);
      }
    }
    this.checkpoint(ticker);
  }
  delta(m: string, side: Side, p: string, d: string, t: number): void {
    this.books.get(m)!.apply(side, parsePrice(p), parseSize(d));
    this.emit({ k: 'delta', m, side, p, d }, t);
  }
  checkpoint(m: string): void {
    const b = this.books.get(m)!;
    this.emit({ k: 'book', m, yes: b.levels('yes'), no: b.levels('no') });
  }
  close(): void {
    this.out.close();
  }
}

/** One capture connection: subscribes, converts frames to truth records, repairs seq gaps. */
class CaptureSession {
  readonly stats: CaptureStats;
  private readonly byTicker: Map<string, Json>;
  private readonly seenEvents = new Set<string>();
  private readonly lastSeq = new Map<number, number>();
  private readonly sidTickers = new Map<number, string[]>();
  private readonly pendingBooks = new Map<number, string[]>();
  private nextId = 0;

  constructor(
    private readonly ws: WebSocket,
    private readonly rec: Recorder,
    markets: Json[],
    private readonly marketsPerSub: number,
  ) {
    this.byTicker = new Map(markets.map((m) => [m.ticker as string, m]));
    this.stats = { records: 0, gaps: 0, errors: 0, markets: markets.length };
  }

  private send(cmd: string, params: Json): number {
    this.ws.send(JSON.stringify({ id: ++this.nextId, cmd, params }));
    return this.nextId;
  }

  subscribe(): void {
    const tickers = [...this.byTicker.keys()];
    for (let i = 0; i < tickers.length; i += this.marketsPerSub) {
      const chunk = tickers.slice(i, i + this.marketsPerSub);
      this.pendingBooks.set(this.send('subscribe', { channels: ['orderbook_delta'], market_tickers: chunk, use_yes_price: false }), chunk);
    }
    this.send('subscribe', { channels: ['ticker', 'trade'], market_tickers: tickers });
    this.send('subscribe', { channels: ['market_lifecycle_v2'] });
  }

  onRaw(data: string): void {
    let j: Json;
    try {
      j = JSON.parse(data);
    } catch {
      this.stats.errors++;
      return;
    }
    this.onFrame(j);
  }

  private ensureMarket(ticker: string, marketId: string): void {
    if (this.rec.books.has(ticker)) return;
    const m = this.byTicker.get(ticker)!;
    if (!this.seenEvents.has(m.event_ticker)) {
      this.seenEvents.add(m.event_ticker);
      this.rec.emit({
        k: 'event',
        event: {
          event_ticker: m.event_ticker,
          series_ticker: String(m.event_ticker).split('-')[0]!,
          title: '',
          sub_title: '',
          strike_date_us: 0,
          created_us: 0,
        },
      });
    }
    this.rec.books.set(ticker, new Book());
    this.rec.emit({ k: 'market', market: marketDef(m, marketId) });
  }

  private onBook(j: Json): void {
    const msg = j.msg as Json;
    const prev = this.lastSeq.get(j.sid);
    if (prev !== undefined && j.seq !== prev + 1) {
      // A gap invalidates every book on the sid: ask for fresh snapshots (they are diffed in).
      this.stats.gaps++;
      this.send('update_subscription', { sid: j.sid, action: 'get_snapshot', market_tickers: this.sidTickers.get(j.sid) ?? [] });
    }
    this.lastSeq.set(j.sid, j.seq);
    this.ensureMarket(msg.market_ticker, msg.market_id);
    if (j.type === 'orderbook_snapshot') this.rec.snapshot(msg.market_ticker, msg.yes_dollars_fp ?? [], msg.no_dollars_fp ?? []);
    else this.rec.delta(msg.market_ticker, msg.side, msg.price_dollars, msg.delta_fp, parseRfc3339Micros(msg.ts));
  }

  private onLifecycle(msg: Json): void {
    const rec = this.rec;
    const t = (msg.determination_ts ?? msg.settled_ts ?? 0) * 1e6 || rec.lastT;
    rec.emit({ k: 'lifecycle', m: msg.market_ticker, event_type: msg.event_type, msg }, t);
    if (!rec.books.has(msg.market_ticker)) return;
    const status = LIFECYCLE_STATUS[msg.event_type];
    if (status) rec.emit({ k: 'status', m: msg.market_ticker, status, ...(msg.result ? { result: msg.result } : {}) }, t);
    if (msg.event_type === 'close_date_updated') rec.emit({ k: 'status', m: msg.market_ticker, status: 'active', close_us: msg.close_ts * 1e6 }, t);
  }

  private onFrame(j: Json): void {
    const msg = j.msg as Json;
    const known = msg && this.rec.books.has(msg.market_ticker);
    switch (j.type) {
      case 'subscribed':
        if (this.pendingBooks.has(j.id)) this.sidTickers.set(msg.sid, this.pendingBooks.get(j.id)!);
        return;
      case 'orderbook_snapshot':
      case 'orderbook_delta':
        return this.onBook(j);
      case 'ok':
        if (typeof j.seq === 'number') this.lastSeq.set(j.sid, j.seq);
        return;
      case 'trade':
        if (!known) return;
        return this.rec.emit(
          {
            k: 'trade',
            m: msg.market_ticker,
            trade_id: msg.trade_id,
            yes_price_dollars: msg.yes_price_dollars,
            no_price_dollars: msg.no_price_dollars,
            count_fp: msg.count_fp,
            taker_side: msg.taker_side,
            taker_outcome_side: msg.taker_outcome_side ?? msg.taker_side,
            taker_book_side: msg.taker_book_side ?? (msg.taker_side === 'yes' ? 'bid' : 'ask'),
          },
          msg.ts_ms * 1000,
        );
      case 'ticker':
        if (!known) return;
        return this.rec.emit(
          {
            k: 'ticker',
            m: msg.market_ticker,
            price_dollars: msg.price_dollars ?? '',
            yes_bid_dollars: msg.yes_bid_dollars,
            yes_ask_dollars: msg.yes_ask_dollars,
            yes_bid_size_fp: msg.yes_bid_size_fp,
            yes_ask_size_fp: msg.yes_ask_size_fp,
            last_trade_size_fp: msg.last_trade_size_fp ?? '0.00',
            volume_fp: msg.volume_fp,
            open_interest_fp: msg.open_interest_fp,
            dollar_volume: msg.dollar_volume ?? 0,
            dollar_open_interest: msg.dollar_open_interest ?? 0,
          },
          msg.time ? parseRfc3339Micros(msg.time) : (msg.ts_ms ?? msg.ts * 1000) * 1000,
        );
      case 'market_lifecycle_v2':
        return this.onLifecycle(msg);
      case 'event_lifecycle':
        return this.rec.emit({ k: 'event_lifecycle', e: msg.event_ticker, msg });
      case 'error':
        this.stats.errors++;
        return;
      default:
        return;
    }
  }
}

function connect(o: CaptureOptions): Promise<WebSocket> {
  const headers = o.keyId && o.privateKeyPem ? { ...signRequest(o.keyId, o.privateKeyPem, 'GET', WS_PATH) } : {};
  const ws = new WebSocket(o.wsUrl, { perMessageDeflate: false, headers });
  return new Promise((ok, fail) => {
    ws.once('open', () => ok(ws));
    ws.once('error', fail);
    ws.once('unexpected-response', (_q, r) => fail(new KdpError('KDP_ERR_WS_CONNECT', `handshake answered HTTP ${r.statusCode}`)));
  });
}

export async function startCapture(o: CaptureOptions): Promise<Capture> {
  const startUs = Date.now() * 1000;
  const markets = await listMarkets(o);
  if (markets.length === 0) throw new KdpError('KDP_ERR_USAGE', 'no markets to capture');
  const ws = await connect(o);
  const rec = new Recorder(o.truthFile, startUs, { wsUrl: o.wsUrl, restUrl: o.restUrl, markets: markets.length });
  const session = new CaptureSession(ws, rec, markets, o.marketsPerSub ?? 250);
  ws.on('message', (data) => session.onRaw(data.toString()));
  session.subscribe();
  const timer = setInterval(() => {
    for (const m of rec.books.keys()) rec.checkpoint(m);
  }, o.checkpointIntervalMs ?? 5000);
  const closed = new Promise<void>((r) => ws.once('close', () => r()));
  let stopped = false;
  return {
    stats: () => ({ ...session.stats, records: rec.records }),
    stop: async () => {
      if (!stopped) {
        stopped = true;
        clearInterval(timer);
        for (const m of rec.books.keys()) rec.checkpoint(m);
        ws.close();
        await Promise.race([closed, new Promise((r) => setTimeout(r, 2000))]);
        rec.close();
      }
      return { ...session.stats, records: rec.records };
    },
  };
}
