// Reads the simulator's truth file (src/sim/truth.ts, docs/simulator.md) into the expectation the
// comparison in truth.ts checks production (or a gatherer database) against: every trade and delta
// the exchange made inside a window of exchange time, plus the window's book checkpoints,
// lifecycle events and injected faults.
import { streamTruth, type BookRec, type DeltaRec, type EventLifecycleRec, type FaultRec, type LifecycleRec, type TradeRec } from '../sim/truth';
import type { TruthDelta, TruthSet, TruthSpan, TruthTrade } from './truth';

/** A truth trade as production stores it (exchange_ts on the millisecond: docs/semantics.md). */
export function truthTradeOf(r: TradeRec): TruthTrade {
  return {
    tradeId: r.trade_id,
    ticker: r.m,
    yesPrice: r.yes_price_dollars,
    noPrice: r.no_price_dollars,
    count: r.count_fp,
    exchangeTs: Math.floor(r.t / 1000) * 1000,
    takerSide: r.taker_side,
  };
}

export function truthDeltaOf(r: DeltaRec): TruthDelta {
  return { ticker: r.m, exchangeTs: r.t, side: r.side, price: r.p, delta: r.d };
}

export interface TruthWindow {
  /** Exchange time (µs) from which the platform was recording every market (inclusive). */
  readonly fromUs?: number | undefined;
  /** Exchange time (µs) up to which it must have everything (inclusive). */
  readonly toUs?: number | undefined;
  /** Exchange record numbers (`n`): only records with fromN < n <= toN (a run between a resume and a pause). */
  readonly afterN?: number | undefined;
  readonly throughN?: number | undefined;
}

export interface TruthExpectation {
  readonly expected: TruthSet;
  readonly span: TruthSpan;
  readonly books: readonly BookRec[];
  readonly lifecycle: readonly LifecycleRec[];
  readonly eventLifecycle: readonly EventLifecycleRec[];
  readonly faults: readonly FaultRec[];
  /** Markets the truth file knows (created before or inside the window). */
  readonly markets: ReadonlySet<string>;
}

/** Streams the file once; records outside [fromUs, toUs] are left out (faults too). */
export async function readTruthExpectation(file: string, window: TruthWindow = {}): Promise<TruthExpectation> {
  const from = window.fromUs ?? -Infinity;
  const to = window.toUs ?? Infinity;
  const afterN = window.afterN ?? 0;
  const throughN = window.throughN ?? Infinity;
  const trades: TruthSet['trades'][number][] = [];
  const deltas: TruthSet['deltas'][number][] = [];
  const books: BookRec[] = [];
  const lifecycle: LifecycleRec[] = [];
  const eventLifecycle: EventLifecycleRec[] = [];
  const faults: FaultRec[] = [];
  const markets = new Set<string>();
  let first = Infinity;
  let last = -Infinity;
  for await (const r of streamTruth(file)) {
    if (r.k === 'meta' || r.k === 'client') continue;
    if (r.k === 'market') markets.add(r.market.ticker);
    if (r.t < from || r.t > to) continue;
    if (r.k === 'fault') {
      faults.push(r);
      continue;
    }
    if (r.n <= afterN || r.n > throughN) continue;
    first = Math.min(first, r.t);
    last = Math.max(last, r.t);
    switch (r.k) {
      case 'trade':
        trades.push(truthTradeOf(r));
        break;
      case 'delta':
        deltas.push(truthDeltaOf(r));
        break;
      case 'book':
        books.push(r);
        break;
      case 'lifecycle':
        lifecycle.push(r);
        break;
      case 'event_lifecycle':
        eventLifecycle.push(r);
        break;
      default:
        break;
    }
  }
  // Trades are stored per millisecond: the span starts on the millisecond of the first record.
  const span: TruthSpan = {
    fromUs: Number.isFinite(from) ? from : Math.floor(first / 1000) * 1000,
    toUs: Number.isFinite(to) ? to : last,
  };
  return { expected: { trades, deltas }, span, books, lifecycle, eventLifecycle, faults, markets };
}
