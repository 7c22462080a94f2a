// The seeded market generator: universe, lifecycles and order-book dynamics on a virtual clock.
// It only reads the exchange state and emits record drafts with their exchange time; nothing
// here depends on clients or wall time, so the same seed and options give the same stream.
import { dateCode, formatPrice, formatSize, PRICE_ONE, Rng } from './fixed';
import { yesAsk, type ExchangeState, type MarketState } from './state';
import type { BurstSchedule, CreationSchedule, InactiveSchedule } from './faults';
import type { Draft, EventDef, MarketDef, MarketStatus, SeriesDef, Side } from './truth';

export interface GeneratorOptions {
  seed: number;
  startUs: number;
  /** Active markets at start (a few more are created unopened, closed and settled). */
  markets: number;
  /** Target exchange messages (deltas + trades + tickers) per second of exchange time. */
  rate: number;
  /** Mean life of a market from open to close, exchange seconds. */
  marketLifetimeS: number;
  checkpointIntervalMs: number;
  /** Share of markets quoted in 0.001 steps (deci_cent); the rest use 0.01 (linear_cent). */
  deciCentShare: number;
  /** Exchange-wide inactive windows (from the `inactive` fault). */
  inactive: InactiveSchedule;
  /** Rate bursts (`burst` fault) and creation bursts (`create` fault); absent = none. */
  bursts?: BurstSchedule;
  creations?: CreationSchedule;
  /** Power-law exponent of activity over markets (0 = uniform); see SIM_SPEC.activitySkew. */
  activitySkew?: number;
}

export type Emit = (draft: Draft, tUs: number) => void;

type Job = { t: number; order: number; kind: 'open' | 'close' | 'determine' | 'settle' | 'pause' | 'resume' | 'extend'; m: string };

const SERIES: readonly SeriesDef[] = [
  { ticker: 'KXSIMTEMP', title: 'Simulated high temperature', category: 'Climate and Weather', frequency: 'daily' },
  { ticker: 'KXSIMBTC', title: 'Simulated Bitcoin price', category: 'Crypto', frequency: 'hourly' },
  { ticker: 'KXSIMFED', title: 'Simulated Fed funds rate', category: 'Economics', frequency: 'monthly' },
  { ticker: 'KXSIMRAIN', title: 'Simulated rainfall', category: 'Climate and Weather', frequency: 'daily' },
  { ticker: 'KXSIMNBA', title: 'Simulated basketball totals', category: 'Sports', frequency: 'daily' },
  { ticker: 'KXSIM', title: 'Simulated index level', category: 'Financials', frequency: 'daily' },
];
const MARKETS_PER_EVENT = 5;

interface Dyn {
  fair: number;
  tick: number;
  volume: number;
  openInterest: number;
  dollarVolumeMicro: number;
  lastTradeSize: number;
  lastBid: number;
  lastAsk: number;
}

export class Generator {
  private readonly rng: Rng;
  private readonly jobs: Job[] = [];
  private jobOrder = 0;
  private nextActionUs: number;
  private nextCheckpointUs: number;
  private nextCreateUs: number;
  private readonly dyn = new Map<string, Dyn>();
  private readonly active: string[] = [];
  private readonly activeIdx = new Map<string, number>();
  private eventCounter = 0;
  private currentEvent: EventDef | null = null;
  private eventFill = 0;
  private inWindow = false;
  private readonly meanGapUs: number;
  nowUs: number;

  constructor(
    private readonly o: GeneratorOptions,
    private readonly state: ExchangeState,
    private readonly emit: Emit,
  ) {
    this.rng = new Rng(o.seed);
    this.nowUs = o.startUs;
    // ~2.1 messages per action on average (measured), so the message rate matches `rate`.
    this.meanGapUs = (1e6 * 2.12) / o.rate;
    this.nextActionUs = o.startUs + 1;
    this.nextCheckpointUs = o.startUs + o.checkpointIntervalMs * 1000;
    this.nextCreateUs = o.startUs + this.createGapUs();
  }

  /** Emits the initial universe at startUs. */
  seed(): void {
    const t = this.o.startUs;
    this.emit({ k: 'exchange', exchange_active: true, trading_active: true }, t);
    for (const s of SERIES) this.emit({ k: 'series', series: s }, t);
    for (let i = 0; i < this.o.markets; i++) this.createMarket(t, 'active', false);
    const extra = Math.max(3, Math.ceil(this.o.markets * 0.05));
    const others: MarketStatus[] = ['initialized', 'closed', 'finalized'];
    for (let i = 0; i < extra; i++) this.createMarket(t, others[i % 3]!, false);
    this.checkpoint(t);
  }

  /** Runs the exchange up to targetUs, or until maxDrafts drafts were emitted; returns drafts emitted. */
  advanceTo(targetUs: number, maxDrafts: number): number {
    let emitted = 0;
    while (emitted < maxDrafts) {
      const t = Math.min(
        this.nextActionUs,
        this.nextCheckpointUs,
        this.nextCreateUs,
        this.jobs[0]?.t ?? Infinity,
        this.nextWindowEdge(),
        this.o.creations?.nextUs() ?? Infinity,
      );
      if (t > targetUs) break;
      this.nowUs = t;
      emitted += this.step(t);
    }
    if (emitted < maxDrafts && targetUs > this.nowUs) this.nowUs = targetUs;
    return emitted;
  }

  private step(t: number): number {
    const before = this.state.lastN;
    if (t === this.nextWindowEdge()) this.windowEdge(t);
    else if (this.jobs.length > 0 && this.jobs[0]!.t === t) this.runJob(this.popJob(), t);
    else if (t === this.nextCheckpointUs) {
      this.checkpoint(t);
      this.nextCheckpointUs += this.o.checkpointIntervalMs * 1000;
    } else if (t === this.o.creations?.nextUs()) {
      // A creation burst: every market opens within the next second, as a daily series' do.
      for (let n = this.o.creations.take(t); n > 0; n--) this.createMarket(t, 'initialized', true, true);
    } else if (t === this.nextCreateUs) {
      this.createMarket(t, 'initialized', true);
      this.nextCreateUs = t + this.createGapUs();
    } else {
      if (this.inWindow) {
        this.nextActionUs = this.nextWindowEdge();
        return 1;
      }
      if (this.active.length > 0) this.tradeAction(t);
      const x = this.o.bursts?.multiplierAt(t) ?? 1;
      // A burst's edge is not waited out: an action drawn at the slow rate may end up to one mean gap late.
      this.nextActionUs = t + Math.round(this.rng.exp(this.meanGapUs / x));
    }
    // Guarantee progress: a zero-gap action stream must still let time move eventually.
    if (this.nextActionUs <= t && this.state.lastN === before) this.nextActionUs = t + 1;
    return Math.max(1, this.state.lastN - before);
  }

  /** Delay from close to determination and from determination to settlement (at most ~15 s). */
  private afterCloseUs(): number {
    return Math.round(Math.min(10e6, this.o.marketLifetimeS * 2.5e5) * (0.5 + this.rng.next()));
  }

  private createGapUs(): number {
    return Math.max(1000, Math.round(this.rng.exp((this.o.marketLifetimeS * 1e6) / Math.max(1, this.o.markets))));
  }

  private nextWindowEdge(): number {
    const w = this.o.inactive.current();
    if (!w) return Infinity;
    return this.inWindow ? w[1] : w[0];
  }

  private windowEdge(t: number): void {
    this.inWindow = !this.inWindow;
    if (!this.inWindow) this.o.inactive.advance();
    this.emit({ k: 'exchange', exchange_active: !this.inWindow, trading_active: !this.inWindow }, t);
  }

  // ---- jobs (a binary heap ordered by time, then insertion) ----
  private schedule(t: number, kind: Job['kind'], m: string): void {
    const job: Job = { t, order: this.jobOrder++, kind, m };
    const h = this.jobs;
    h.push(job);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (less(h[p]!, h[i]!)) break;
      [h[p], h[i]] = [h[i]!, h[p]!];
      i = p;
    }
  }
  private popJob(): Job {
    const h = this.jobs;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let s = i;
        if (l < h.length && less(h[l]!, h[s]!)) s = l;
        if (r < h.length && less(h[r]!, h[s]!)) s = r;
        if (s === i) break;
        [h[s], h[i]] = [h[i]!, h[s]!];
        i = s;
      }
    }
    return top;
  }

  private runJob(job: Job, t: number): void {
    const m = this.state.market(job.m);
    switch (job.kind) {
      case 'open':
        return this.openMarket(m, t);
      case 'close':
        if (m.status !== 'active' && m.status !== 'inactive') return;
        if (m.closeUs !== t) return; // the close date moved; a later job closes it
        this.setActive(job.m, false);
        this.emit({ k: 'status', m: job.m, status: 'closed' }, t);
        // The book is frozen from here on: one last checkpoint records it.
        this.emit({ k: 'book', m: job.m, yes: m.book.levels('yes'), no: m.book.levels('no') }, t);
        this.schedule(t + this.afterCloseUs(), 'determine', job.m);
        return;
      case 'determine': {
        const result: Side = this.rng.chance(0.5) ? 'yes' : 'no';
        this.emit({ k: 'status', m: job.m, status: 'determined', result }, t);
        this.lifecycle(job.m, 'determined', t, { result, determination_ts: Math.floor(t / 1e6) });
        this.schedule(t + this.afterCloseUs(), 'settle', job.m);
        return;
      }
      case 'settle':
        this.emit({ k: 'status', m: job.m, status: 'finalized' }, t);
        this.lifecycle(job.m, 'settled', t, { settled_ts: Math.floor(t / 1e6) });
        return;
      case 'pause':
        if (m.status !== 'active') return;
        this.setActive(job.m, false);
        this.emit({ k: 'status', m: job.m, status: 'inactive' }, t);
        this.lifecycle(job.m, 'deactivated', t, { is_deactivated: true });
        // Pauses last a fraction of a market's life (at most 10 s).
        this.schedule(t + Math.round(Math.min(10e6, this.o.marketLifetimeS * 2e5) * (0.5 + this.rng.next())), 'resume', job.m);
        return;
      case 'resume':
        if (m.status !== 'inactive') return;
        this.setActive(job.m, true);
        this.emit({ k: 'status', m: job.m, status: 'active' }, t);
        this.lifecycle(job.m, 'activated', t, { is_deactivated: false });
        return;
      case 'extend':
        return this.extendClose(m, t);
    }
  }

  private extendClose(m: MarketState, t: number): void {
    if (m.status !== 'active' && m.status !== 'inactive') return;
    const closeUs = m.closeUs + this.rng.range(30, 120) * 1e6;
    this.emit({ k: 'status', m: m.def.ticker, status: m.status, close_us: closeUs }, t);
    this.lifecycle(m.def.ticker, 'close_date_updated', t, { close_ts: Math.floor(closeUs / 1e6) });
    this.schedule(closeUs, 'close', m.def.ticker);
  }

  private lifecycle(m: string, eventType: string, t: number, extra: Record<string, unknown>): void {
    this.emit({ k: 'lifecycle', m, event_type: eventType, msg: { market_ticker: m, event_type: eventType, ...extra } }, t);
  }

  /** O(1) membership changes (swap-remove): universes of tens of thousands of markets churn constantly. */
  private setActive(ticker: string, on: boolean): void {
    const i = this.activeIdx.get(ticker);
    if (on && i === undefined) {
      this.activeIdx.set(ticker, this.active.length);
      this.active.push(ticker);
    } else if (!on && i !== undefined) {
      const last = this.active.pop()!;
      this.activeIdx.delete(ticker);
      if (last !== ticker) {
        this.active[i] = last;
        this.activeIdx.set(last, i);
      }
    }
  }

  // ---- universe ----
  private nextEvent(t: number, announce: boolean): EventDef {
    if (this.currentEvent && this.eventFill < MARKETS_PER_EVENT) return this.currentEvent;
    const series = this.rng.pick(SERIES);
    this.eventCounter++;
    const ev: EventDef = {
      event_ticker: `${series.ticker}-${dateCode(t)}${String(this.eventCounter).padStart(3, '0')}`,
      series_ticker: series.ticker,
      title: `${series.title} #${this.eventCounter}`,
      sub_title: `On ${dateCode(t)}`,
      strike_date_us: t + this.o.marketLifetimeS * 2e6,
      created_us: t,
    };
    this.currentEvent = ev;
    this.eventFill = 0;
    this.emit({ k: 'event', event: ev }, t);
    if (announce) {
      this.emit(
        {
          k: 'event_lifecycle',
          e: ev.event_ticker,
          msg: {
            event_ticker: ev.event_ticker,
            title: ev.title,
            subtitle: ev.sub_title,
            collateral_return_type: 'MECNET',
            series_ticker: ev.series_ticker,
            strike_date: Math.floor(ev.strike_date_us / 1e6),
          },
        },
        t,
      );
    }
    return ev;
  }

  private createMarket(t: number, status: MarketStatus, announce: boolean, opensNow = false): void {
    const ev = this.nextEvent(t, announce);
    const strike = 20 + this.eventFill * 5 + 2.5 + this.rng.int(4) * 0.5;
    this.eventFill++;
    // Open and close times are whole seconds, as on Kalshi.
    const life = Math.max(1, Math.round(this.o.marketLifetimeS * (0.5 + this.rng.next()))) * 1e6;
    const sec = Math.ceil(t / 1e6) * 1e6;
    const openUs = status === 'initialized' ? sec + (opensNow ? 1 : this.rng.range(1, 5)) * 1e6 : sec - this.rng.range(60, 3600) * 1e6;
    const closeUs = status === 'closed' || status === 'finalized' ? sec - this.rng.range(1, 60) * 1e6 : (status === 'initialized' ? openUs : sec) + life;
    const def: MarketDef = {
      ticker: `${ev.event_ticker}-T${strike.toFixed(1)}`,
      event_ticker: ev.event_ticker,
      series_ticker: ev.series_ticker,
      market_id: this.rng.uuid(),
      title: `${ev.title}: above ${strike.toFixed(1)}?`,
      yes_sub_title: `Above ${strike.toFixed(1)}`,
      floor_strike: strike,
      price_level_structure: this.rng.chance(this.o.deciCentShare) ? 'deci_cent' : 'linear_cent',
      status,
      created_us: t,
      open_us: openUs,
      close_us: closeUs,
    };
    this.emit({ k: 'market', market: def }, t);
    this.dyn.set(def.ticker, {
      fair: 500 + this.rng.int(9000),
      tick: def.price_level_structure === 'deci_cent' ? 10 : 100,
      volume: 0,
      openInterest: 0,
      dollarVolumeMicro: 0,
      lastTradeSize: 0,
      lastBid: -2,
      lastAsk: -2,
    });
    if (announce) this.announceCreated(def, t);
    if (status === 'initialized') this.schedule(openUs, 'open', def.ticker);
    if (status === 'active') this.openMarket(this.state.market(def.ticker), t, false);
  }

  private announceCreated(def: MarketDef, t: number): void {
    this.lifecycle(def.ticker, 'created', t, {
      open_ts: Math.floor(def.open_us / 1e6),
      close_ts: Math.floor(def.close_us / 1e6),
      additional_metadata: {
        name: def.title,
        title: def.title,
        yes_sub_title: def.yes_sub_title,
        no_sub_title: def.yes_sub_title,
        rules_primary: `Resolves Yes if the value is above ${def.floor_strike}.`,
        rules_secondary: '',
        can_close_early: true,
        event_ticker: def.event_ticker,
        expected_expiration_ts: Math.floor(def.close_us / 1e6),
        strike_type: 'greater',
        floor_strike: def.floor_strike,
      },
    });
  }

  /** Opens a market (silently, as at open_time on Kalshi) and seeds its book. */
  private openMarket(m: MarketState, t: number, announceStatus = true): void {
    if (announceStatus) this.emit({ k: 'status', m: m.def.ticker, status: 'active' }, t);
    this.setActive(m.def.ticker, true);
    this.schedule(m.closeUs, 'close', m.def.ticker);
    const life = m.closeUs - t;
    if (this.rng.chance(0.15)) this.schedule(t + Math.round(life * this.rng.next()), 'pause', m.def.ticker);
    if (this.rng.chance(0.15)) this.schedule(t + Math.round(life * 0.8 * this.rng.next()), 'extend', m.def.ticker);
    if (this.inWindow) return; // no order activity while the exchange is inactive
    const levels = this.rng.range(4, 12);
    for (let i = 0; i < levels; i++) this.makerAdd(m, t, i % 2 === 0 ? 'yes' : 'no');
    this.maybeTicker(m, t, true);
  }

  private checkpoint(t: number): void {
    for (const m of this.state.marketList) {
      // Closed markets never change again; their last checkpoint was written at close.
      if (m.status === 'closed' || m.status === 'determined' || m.status === 'finalized') continue;
      this.emit({ k: 'book', m: m.def.ticker, yes: m.book.levels('yes'), no: m.book.levels('no') }, t);
    }
  }

  // ---- order-book dynamics ----
  private tradeAction(t: number): void {
    // Skewed choice: a few markets are much busier than the rest, as on Kalshi.
    const m = this.state.market(this.active[this.activityRank(this.rng.next(), this.active.length)]!);
    const d = this.dyn.get(m.def.ticker)!;
    if (this.rng.chance(0.3)) d.fair = clamp(d.fair + (this.rng.chance(0.5) ? d.tick : -d.tick), d.tick, PRICE_ONE - d.tick);
    const kind = this.rng.next();
    let traded = false;
    if (kind < 0.45) this.makerAdd(m, t, this.rng.chance(0.5) ? 'yes' : 'no');
    else if (kind < 0.8) this.cancel(m, t);
    else traded = this.taker(m, t);
    this.maybeTicker(m, t, traded);
  }

  /**
   * Rank (0 = busiest) of the market an action hits: a power law with exponent s over n markets
   * (inverse CDF of x^-s on [1, n+1)). On Kalshi a few hundred of ~40,000 markets carry most of the
   * traffic and most are quiet for long stretches; s = 1.2 gives the busiest 300 of 40,000 ~3/4 of
   * the messages and the quieter half ~2 %. s = 0 is uniform.
   */
  private activityRank(u: number, n: number): number {
    const s = this.o.activitySkew ?? 0;
    const x = Math.abs(s - 1) < 1e-9 ? Math.pow(n + 1, u) : Math.pow(1 - u * (1 - Math.pow(n + 1, 1 - s)), 1 / (1 - s));
    return Math.min(n - 1, Math.max(0, Math.floor(x) - 1));
  }

  private makerAdd(m: MarketState, t: number, side: Side): void {
    const d = this.dyn.get(m.def.ticker)!;
    const other = m.book.best(side === 'yes' ? 'no' : 'yes');
    const maxPrice = (other < 0 ? PRICE_ONE : PRICE_ONE - other) - d.tick;
    const anchor = side === 'yes' ? d.fair : PRICE_ONE - d.fair;
    const offset = d.tick * (1 + Math.min(15, Math.floor(this.rng.exp(3))));
    const price = Math.min(maxPrice, Math.max(d.tick, anchor - offset - (anchor % d.tick)));
    if (price < d.tick) return this.cancel(m, t);
    const size = this.rng.chance(0.3) ? this.rng.range(1, 20_000) : this.rng.range(1, 200) * 100;
    this.delta(m, t, side, price, size);
  }

  private cancel(m: MarketState, t: number): void {
    const side: Side = m.book.yes.size === 0 ? 'no' : m.book.no.size === 0 ? 'yes' : this.rng.chance(0.5) ? 'yes' : 'no';
    const levels = side === 'yes' ? m.book.yes : m.book.no;
    if (levels.size === 0) return this.makerAdd(m, t, 'yes');
    // The k-th level in insertion order (no array copy: cancels are a third of all actions).
    let k = this.rng.int(levels.size);
    let price = -1;
    for (const p of levels.keys()) {
      if (k-- === 0) {
        price = p;
        break;
      }
    }
    const size = levels.get(price)!;
    const cut = this.rng.chance(0.5) ? size : this.rng.range(1, size);
    this.delta(m, t, side, price, -cut);
  }

  /** A taker order walking the opposite bids; one resting level may fill as several identical pieces. */
  private taker(m: MarketState, t: number): boolean {
    const takerSide: Side = this.rng.chance(0.5) ? 'yes' : 'no';
    const bookSide: Side = takerSide === 'yes' ? 'no' : 'yes';
    let levelsToWalk = this.rng.chance(0.8) ? 1 : this.rng.range(2, 3);
    let traded = false;
    while (levelsToWalk-- > 0) {
      const price = m.book.best(bookSide);
      if (price < 0) break;
      const levelSize = m.book.size(bookSide, price);
      const pieces = this.rng.chance(0.45) ? this.rng.range(2, 4) : 1;
      let unit = Math.min(Math.floor(levelSize / pieces), this.rng.chance(0.5) ? this.rng.range(1, 50) * 100 : this.rng.range(1, 5000));
      if (unit < 1) unit = levelSize;
      const n = unit === levelSize ? 1 : pieces;
      for (let i = 0; i < n; i++) {
        this.delta(m, t, bookSide, price, -unit);
        this.trade(m, t, takerSide, price, unit);
        traded = true;
      }
    }
    return traded;
  }

  private delta(m: MarketState, t: number, side: Side, price: number, size: number): void {
    this.emit({ k: 'delta', n: 0, t: 0, m: m.def.ticker, side, p: formatPrice(price), d: formatSize(size) }, t);
  }

  private trade(m: MarketState, t: number, takerSide: Side, bookPrice: number, unit: number): void {
    const d = this.dyn.get(m.def.ticker)!;
    // The taker buys `takerSide` at 1 - (the opposite bid it hits).
    const yesPrice = takerSide === 'yes' ? PRICE_ONE - bookPrice : bookPrice;
    d.volume += unit;
    d.openInterest = this.rng.chance(0.6) ? d.openInterest + unit : Math.max(0, d.openInterest - unit);
    d.dollarVolumeMicro += unit * yesPrice;
    d.lastTradeSize = unit;
    d.fair = clamp(yesPrice - (yesPrice % d.tick), d.tick, PRICE_ONE - d.tick);
    this.emit(
      {
        k: 'trade',
        n: 0,
        t: 0,
        m: m.def.ticker,
        trade_id: this.rng.uuid(),
        yes_price_dollars: formatPrice(yesPrice),
        no_price_dollars: formatPrice(PRICE_ONE - yesPrice),
        count_fp: formatSize(unit),
        taker_side: takerSide,
        taker_outcome_side: takerSide,
        taker_book_side: takerSide === 'yes' ? 'bid' : 'ask',
      },
      t,
    );
  }

  /** Emits a ticker when the top of book moved or a trade printed. */
  private maybeTicker(m: MarketState, t: number, traded: boolean): void {
    const d = this.dyn.get(m.def.ticker)!;
    const bid = m.book.best('yes');
    const ask = yesAsk(m.book);
    if (!traded && bid === d.lastBid && ask === d.lastAsk) return;
    d.lastBid = bid;
    d.lastAsk = ask;
    const oiDollars = Math.floor((d.openInterest * (m.lastTradeUnits < 0 ? 0 : m.lastTradeUnits)) / 1e6);
    this.emit(
      {
        k: 'ticker',
        n: 0,
        t: 0,
        m: m.def.ticker,
        price_dollars: m.lastTradeUnits < 0 ? '' : formatPrice(m.lastTradeUnits),
        yes_bid_dollars: formatPrice(bid < 0 ? 0 : bid),
        yes_ask_dollars: formatPrice(ask < 0 ? PRICE_ONE : ask),
        yes_bid_size_fp: formatSize(bid < 0 ? 0 : m.book.size('yes', bid)),
        yes_ask_size_fp: formatSize(ask < 0 ? 0 : m.book.size('no', PRICE_ONE - ask)),
        last_trade_size_fp: formatSize(d.lastTradeSize),
        volume_fp: formatSize(d.volume),
        open_interest_fp: formatSize(d.openInterest),
        dollar_volume: Math.floor(d.dollarVolumeMicro / 1e6),
        dollar_open_interest: oiDollars,
      },
      t,
    );
  }
}

function less(a: Job, b: Job): boolean {
  return a.t < b.t || (a.t === b.t && a.order < b.order);
}
function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}
