// The exchange state every surface reads: books, markets, events, series, recent trades. It
// changes only through `apply(record)`, so a live run, a replay of its truth file and a checker
// applying the truth's deltas all compute the same books.
import { KdpError } from '../core/errors';
import { formatPrice, formatSize, parsePrice, parseSize, PRICE_ONE } from './fixed';
import { marketPrefix } from '../kalshi/encode';
import { TradeRing } from './trades';
import type { EventDef, ExchangeRecord, Level, MarketDef, MarketStatus, SeriesDef, Side, TickerRec, TradeRec } from './truth';

/** One side of a book: price units -> size units (only positive sizes are kept). */
export type BookSide = Map<number, number>;

export class Book {
  readonly yes: BookSide = new Map();
  readonly no: BookSide = new Map();
  // Best bid per side, cached: -1 = empty, -2 = unknown (recomputed on demand).
  private bestYes = -1;
  private bestNo = -1;

  /** Applies a signed delta; a level at <= 0 disappears (as on Kalshi). */
  apply(side: Side, priceUnits: number, deltaUnits: number): void {
    const levels = side === 'yes' ? this.yes : this.no;
    const size = (levels.get(priceUnits) ?? 0) + deltaUnits;
    const best = side === 'yes' ? this.bestYes : this.bestNo;
    let next = best;
    if (size > 0) {
      levels.set(priceUnits, size);
      if (best !== -2 && priceUnits > best) next = priceUnits;
    } else {
      levels.delete(priceUnits);
      if (priceUnits === best) next = -2;
    }
    if (side === 'yes') this.bestYes = next;
    else this.bestNo = next;
  }
  best(side: Side): number {
    let best = side === 'yes' ? this.bestYes : this.bestNo;
    if (best !== -2) return best;
    best = -1;
    for (const p of (side === 'yes' ? this.yes : this.no).keys()) if (p > best) best = p;
    if (side === 'yes') this.bestYes = best;
    else this.bestNo = best;
    return best;
  }
  size(side: Side, priceUnits: number): number {
    return (side === 'yes' ? this.yes : this.no).get(priceUnits) ?? 0;
  }
  /** Levels ascending by price (best bid last), as strings. */
  levels(side: Side, depth = 0): Level[] {
    const levels = side === 'yes' ? this.yes : this.no;
    const prices = [...levels.keys()].sort((a, b) => a - b);
    const kept = depth > 0 ? prices.slice(-depth) : prices;
    return kept.map((p) => [formatPrice(p), formatSize(levels.get(p)!)]);
  }
  clear(): void {
    this.yes.clear();
    this.no.clear();
    this.bestYes = -1;
    this.bestNo = -1;
  }
  static fromLevels(yes: readonly Level[], no: readonly Level[]): Book {
    const b = new Book();
    for (const [p, s] of yes) b.apply('yes', parsePrice(p), parseSize(s));
    for (const [p, s] of no) b.apply('no', parsePrice(p), parseSize(s));
    return b;
  }
}

export interface MarketState {
  readonly def: MarketDef;
  status: MarketStatus;
  closeUs: number;
  result: Side | '';
  readonly book: Book;
  /** Latest ticker record (null until the first one). */
  ticker: TickerRec | null;
  lastTradeUnits: number;
  /** Position in ExchangeState.marketList (the trade ring refers to markets by it). */
  readonly idx: number;
  /** Wire prefix of this market's payloads (see wire.ts). */
  readonly wirePrefix: string;
}

export interface StateOptions {
  /** Trades kept in memory for REST /markets/trades (oldest dropped first). */
  tradesKeptMax: number;
}

export class ExchangeState {
  readonly series = new Map<string, SeriesDef>();
  readonly events = new Map<string, EventDef>();
  readonly markets = new Map<string, MarketState>();
  /** Markets in creation order (REST pagination order). */
  readonly marketList: MarketState[] = [];
  readonly eventList: EventDef[] = [];
  /** The most recent trades (REST /markets/trades). */
  readonly trades: TradeRing;
  exchangeActive = true;
  tradingActive = true;
  nowUs = 0;
  lastN = 0;

  constructor(opts: StateOptions) {
    this.trades = new TradeRing(opts.tradesKeptMax);
  }

  market(ticker: string): MarketState {
    const m = this.markets.get(ticker);
    if (!m) throw new KdpError('KDP_ERR_INTERNAL', `unknown market ${ticker}`);
    return m;
  }

  apply(rec: ExchangeRecord): void {
    if (rec.n !== this.lastN + 1) throw new KdpError('KDP_ERR_INTERNAL', `exchange record ${rec.n} after ${this.lastN}`);
    this.lastN = rec.n;
    if (rec.t > this.nowUs) this.nowUs = rec.t;
    switch (rec.k) {
      case 'series':
        this.series.set(rec.series.ticker, rec.series);
        return;
      case 'event':
        this.events.set(rec.event.event_ticker, rec.event);
        this.eventList.push(rec.event);
        return;
      case 'market':
        return this.addMarket(rec.market);
      case 'delta':
        this.market(rec.m).book.apply(rec.side, parsePrice(rec.p), parseSize(rec.d));
        return;
      case 'trade':
        return this.addTrade(rec);
      case 'ticker':
        this.market(rec.m).ticker = rec;
        return;
      case 'status': {
        const m = this.market(rec.m);
        m.status = rec.status;
        if (rec.close_us !== undefined) m.closeUs = rec.close_us;
        if (rec.result !== undefined) m.result = rec.result;
        return;
      }
      case 'exchange':
        this.exchangeActive = rec.exchange_active;
        this.tradingActive = rec.trading_active;
        return;
      case 'book': {
        // A checkpoint states the book; applying it must not change anything (checked in tests).
        return;
      }
      case 'lifecycle':
      case 'event_lifecycle':
        return;
    }
  }

  private addMarket(def: MarketDef): void {
    if (this.markets.has(def.ticker)) throw new KdpError('KDP_ERR_INTERNAL', `market ${def.ticker} created twice`);
    const m: MarketState = {
      def,
      status: def.status,
      closeUs: def.close_us,
      result: '',
      book: new Book(),
      ticker: null,
      lastTradeUnits: -1,
      idx: this.marketList.length,
      wirePrefix: marketPrefix(def.ticker, def.market_id),
    };
    this.markets.set(def.ticker, m);
    this.marketList.push(m);
  }

  private addTrade(rec: TradeRec): void {
    const m = this.market(rec.m);
    m.lastTradeUnits = parsePrice(rec.yes_price_dollars);
    this.trades.push(rec, m.idx);
  }
}

/** Best YES ask implied by the NO bids (1 - best NO bid), or -1 when there is none. */
export function yesAsk(book: Book): number {
  const bestNo = book.best('no');
  return bestNo < 0 ? -1 : PRICE_ONE - bestNo;
}
