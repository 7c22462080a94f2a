// Exact comparison of production with an expected record of what the exchange emitted (the
// simulator's ground truth, or any other trusted source). The truth-file reader is not here: it
// turns its file into a TruthSet and calls compareWithTruth / verifyAgainstTruth.
//   trades: matched by trade_id. A trade_id absent from production is lost; present more than
//     once (e.g. under two exchange_ts) duplicated; unknown to the truth invented; present once
//     with a different ticker/price/count/time/side a value mismatch.
//   deltas: no exchange id exists, so each market's deltas compare as multisets of
//     (exchange_ts, side, price, delta). Surplus copies of an expected change are duplicated,
//     changes the truth never had invented, missing ones lost; a lost and an invented change at the
//     same (market, exchange_ts, side, price) pair up as one value mismatch. A missing change that
//     no API could have returned and that the gap ledger records (a new market's deltas before its
//     book subscription: `new_market` rows) is counted as unrecoverable, not lost.
import type { ClientBase } from 'pg';
import { canonicalDecimal } from './decimal';

export interface TruthTrade {
  readonly tradeId: string;
  readonly ticker: string;
  readonly yesPrice: string;
  readonly noPrice: string;
  readonly count: string;
  readonly exchangeTs: number;
  /** Compared only when the expectation gives it. */
  readonly takerSide?: string | null;
}

export interface TruthDelta {
  readonly ticker: string;
  readonly exchangeTs: number;
  readonly side: string;
  readonly price: string;
  readonly delta: string;
}

export interface TruthSet {
  readonly trades: readonly TruthTrade[];
  readonly deltas: readonly TruthDelta[];
}

export interface Discrepancies<T> {
  /** Full counts; the lists keep at most SAMPLE_MAX examples each. */
  readonly counts: { lost: number; duplicated: number; invented: number; mismatched: number };
  readonly lost: T[];
  readonly duplicated: T[];
  readonly invented: T[];
  readonly mismatched: { expected: T; actual: T }[];
}

export interface TruthComparison {
  readonly ok: boolean;
  readonly trades: Discrepancies<TruthTrade> & { expected: number; actual: number };
  readonly deltas: Discrepancies<TruthDelta> & {
    expected: number;
    actual: number;
    marketsWithDifferences: string[];
    /** Missing changes excused as unrecoverable and ledgered (see UnrecoverableWindow). */
    unrecoverable: number;
  };
}

/**
 * Deltas of `ticker` with exchange_ts in [fromUs, toUs] that no API can return: a new market's
 * changes between its open and its book subscription (`new_market` ledger rows). A missing change
 * is excused only inside such a window and before the market's first change in production.
 */
export interface UnrecoverableWindow {
  readonly ticker: string;
  readonly fromUs: number;
  readonly toUs: number;
}

export const SAMPLE_MAX = 20;

function emptyDiscrepancies<T>(): Discrepancies<T> {
  return {
    counts: { lost: 0, duplicated: 0, invented: 0, mismatched: 0 },
    lost: [],
    duplicated: [],
    invented: [],
    mismatched: [],
  };
}

function note<T>(d: Discrepancies<T>, kind: 'lost' | 'duplicated' | 'invented', item: T): void {
  d.counts[kind]++;
  if (d[kind].length < SAMPLE_MAX) d[kind].push(item);
}

function noteMismatch<T>(d: Discrepancies<T>, expected: T, actual: T): void {
  d.counts.mismatched++;
  if (d.mismatched.length < SAMPLE_MAX) d.mismatched.push({ expected, actual });
}

function sameTrade(e: TruthTrade, a: TruthTrade): boolean {
  return (
    e.ticker === a.ticker &&
    e.exchangeTs === a.exchangeTs &&
    canonicalDecimal(e.yesPrice) === canonicalDecimal(a.yesPrice) &&
    canonicalDecimal(e.noPrice) === canonicalDecimal(a.noPrice) &&
    canonicalDecimal(e.count) === canonicalDecimal(a.count) &&
    (e.takerSide === undefined || e.takerSide === a.takerSide)
  );
}

export function compareTrades(expected: readonly TruthTrade[], actual: readonly TruthTrade[]): Discrepancies<TruthTrade> {
  const d = emptyDiscrepancies<TruthTrade>();
  const byId = new Map<string, TruthTrade[]>();
  for (const a of actual) {
    const id = a.tradeId.toLowerCase();
    const list = byId.get(id);
    if (list) list.push(a);
    else byId.set(id, [a]);
  }
  const expectedIds = new Set<string>();
  for (const e of expected) {
    const id = e.tradeId.toLowerCase();
    expectedIds.add(id);
    const copies = byId.get(id) ?? [];
    if (copies.length === 0) {
      note(d, 'lost', e);
      continue;
    }
    const match = copies.find((a) => sameTrade(e, a));
    if (!match) noteMismatch(d, e, copies[0]!);
    for (const extra of copies.filter((a) => a !== (match ?? copies[0]))) note(d, 'duplicated', extra);
  }
  for (const [id, copies] of byId) if (!expectedIds.has(id)) for (const a of copies) note(d, 'invented', a);
  return d;
}

const deltaKey = (x: TruthDelta): string =>
  `${x.ticker}\u0000${x.exchangeTs}\u0000${x.side}\u0000${canonicalDecimal(x.price)}\u0000${canonicalDecimal(x.delta)}`;
const levelKey = (x: TruthDelta): string => `${x.ticker}\u0000${x.exchangeTs}\u0000${x.side}\u0000${canonicalDecimal(x.price)}`;

export function compareDeltas(
  expected: readonly TruthDelta[],
  actual: readonly TruthDelta[],
  excused: (missing: TruthDelta) => boolean = () => false,
): Discrepancies<TruthDelta> & { unrecoverable: number } {
  const d = { ...emptyDiscrepancies<TruthDelta>(), unrecoverable: 0 };
  const want = new Map<string, TruthDelta[]>();
  for (const e of expected) {
    const k = deltaKey(e);
    const list = want.get(k);
    if (list) list.push(e);
    else want.set(k, [e]);
  }
  const have = new Map<string, number>();
  const surplus: { item: TruthDelta; known: boolean }[] = [];
  for (const a of actual) {
    const k = deltaKey(a);
    const n = (have.get(k) ?? 0) + 1;
    have.set(k, n);
    const expectedCopies = want.get(k)?.length ?? 0;
    if (n > expectedCopies) surplus.push({ item: a, known: expectedCopies > 0 });
  }
  const missing: TruthDelta[] = [];
  for (const [k, list] of want) for (const e of list.slice(have.get(k) ?? 0)) missing.push(e);
  // A lost change and an invented one at the same level and time are one wrong value.
  const inventedByLevel = new Map<string, TruthDelta[]>();
  for (const s of surplus) {
    if (s.known) note(d, 'duplicated', s.item);
    else {
      const k = levelKey(s.item);
      const list = inventedByLevel.get(k);
      if (list) list.push(s.item);
      else inventedByLevel.set(k, [s.item]);
    }
  }
  for (const e of missing) {
    const partner = inventedByLevel.get(levelKey(e))?.shift();
    if (partner) noteMismatch(d, e, partner);
    else if (excused(e)) d.unrecoverable++;
    else note(d, 'lost', e);
  }
  for (const list of inventedByLevel.values()) for (const a of list) note(d, 'invented', a);
  return d;
}

/** The predicate that excuses a missing delta inside an unrecoverable window (see UnrecoverableWindow). */
function excuser(windows: readonly UnrecoverableWindow[], actual: readonly TruthDelta[]): (e: TruthDelta) => boolean {
  if (windows.length === 0) return () => false;
  const byTicker = new Map<string, UnrecoverableWindow[]>();
  for (const w of windows) byTicker.set(w.ticker, [...(byTicker.get(w.ticker) ?? []), w]);
  const firstSeen = new Map<string, number>();
  for (const a of actual) if (a.exchangeTs < (firstSeen.get(a.ticker) ?? Infinity)) firstSeen.set(a.ticker, a.exchangeTs);
  return (e) =>
    e.exchangeTs < (firstSeen.get(e.ticker) ?? Infinity) && (byTicker.get(e.ticker) ?? []).some((w) => e.exchangeTs >= w.fromUs && e.exchangeTs <= w.toUs);
}

export function compareWithTruth(expected: TruthSet, actual: TruthSet, unrecoverable: readonly UnrecoverableWindow[] = []): TruthComparison {
  const trades = compareTrades(expected.trades, actual.trades);
  const deltas = compareDeltas(expected.deltas, actual.deltas, excuser(unrecoverable, actual.deltas));
  const markets = new Set<string>();
  for (const x of [...deltas.lost, ...deltas.duplicated, ...deltas.invented]) markets.add(x.ticker);
  for (const x of deltas.mismatched) markets.add(x.expected.ticker);
  const clean = (c: Discrepancies<unknown>['counts']) => c.lost + c.duplicated + c.invented + c.mismatched === 0;
  return {
    ok: clean(trades.counts) && clean(deltas.counts),
    trades: { ...trades, expected: expected.trades.length, actual: actual.trades.length },
    deltas: {
      ...deltas,
      expected: expected.deltas.length,
      actual: actual.deltas.length,
      marketsWithDifferences: [...markets].sort(),
    },
  };
}

export interface TruthSpan {
  /** Inclusive bounds on exchange_ts (µs). */
  readonly fromUs: number;
  readonly toUs: number;
  /** Only these markets (all when absent). */
  readonly tickers?: readonly string[];
}

/** Production's trades and deltas in a span, in the TruthSet shape. */
export async function loadProductionSet(client: ClientBase, span: TruthSpan): Promise<TruthSet> {
  const params: unknown[] = [span.fromUs, span.toUs];
  let tickerFilter = '';
  if (span.tickers) {
    params.push(span.tickers);
    tickerFilter = 'AND ticker = ANY($3)';
  }
  const trades = await client.query(
    `SELECT trade_id::text, ticker, yes_price::text, no_price::text, count::text, exchange_ts::text, taker_side
       FROM trades WHERE exchange_ts BETWEEN $1 AND $2 ${tickerFilter}`,
    params,
  );
  const deltas = await client.query(
    `SELECT ticker, exchange_ts::text, side, price::text, delta::text
       FROM orderbook_deltas WHERE exchange_ts BETWEEN $1 AND $2 ${tickerFilter} ORDER BY ticker, exchange_ts, occurrence`,
    params,
  );
  return {
    trades: trades.rows.map((r) => ({
      tradeId: r.trade_id,
      ticker: r.ticker,
      yesPrice: r.yes_price,
      noPrice: r.no_price,
      count: r.count,
      exchangeTs: Number(r.exchange_ts),
      takerSide: r.taker_side,
    })),
    deltas: deltas.rows.map((r) => ({
      ticker: r.ticker,
      exchangeTs: Number(r.exchange_ts),
      side: r.side,
      price: r.price,
      delta: r.delta,
    })),
  };
}

/** Loads production over the span the expectation covers and compares. */
export async function verifyAgainstTruth(client: ClientBase, expected: TruthSet, span: TruthSpan): Promise<TruthComparison> {
  return compareWithTruth(expected, await loadProductionSet(client, span), await loadUnrecoverableWindows(client));
}

/** The `new_market` ledger rows (every gatherer's, merged into production) as windows per market. */
export async function loadUnrecoverableWindows(client: ClientBase): Promise<UnrecoverableWindow[]> {
  const r = await client.query<{ tickers: string[]; from_us: string; to_us: string | null }>(
    `SELECT tickers, window_start::text AS from_us, window_end::text AS to_us FROM gap_ledger WHERE kind = 'new_market'`,
  );
  return r.rows.flatMap((row) => row.tickers.map((ticker) => ({ ticker, fromUs: Number(row.from_us), toUs: Number(row.to_us ?? Infinity) })));
}

/** Turns a truth file into the expectation and the span it covers (the simulator provides one). */
export type TruthFileReader = (path: string) => Promise<{ expected: TruthSet; span: TruthSpan }>;

/** `kdp verify --truth FILE`: read the expectation with `reader`, compare production over its span. */
export async function runTruthCheck(client: ClientBase, file: string, reader: TruthFileReader): Promise<TruthComparison> {
  const { expected, span } = await reader(file);
  return verifyAgainstTruth(client, expected, span);
}

export function formatTruthComparison(c: TruthComparison): string {
  const line = (what: string, d: Discrepancies<unknown> & { expected: number; actual: number }) =>
    `${what.padEnd(7)} expected=${d.expected} production=${d.actual} lost=${d.counts.lost} duplicated=${d.counts.duplicated} ` +
    `invented=${d.counts.invented} mismatched=${d.counts.mismatched}`;
  const examples = [
    ...c.trades.lost.slice(0, 3).map((t) => `  lost trade ${t.tradeId} ${t.ticker} at ${t.exchangeTs}`),
    ...c.trades.duplicated.slice(0, 3).map((t) => `  duplicated trade ${t.tradeId} ${t.ticker} at ${t.exchangeTs}`),
    ...c.trades.invented.slice(0, 3).map((t) => `  invented trade ${t.tradeId} ${t.ticker} at ${t.exchangeTs}`),
    ...c.trades.mismatched.slice(0, 3).map((m) => `  trade ${m.expected.tradeId} differs: ${JSON.stringify(m.actual)}`),
    ...(c.deltas.marketsWithDifferences.length ? [`  markets with delta differences: ${c.deltas.marketsWithDifferences.slice(0, 10).join(', ')}`] : []),
  ];
  return [
    line('trades', c.trades),
    line('deltas', c.deltas) + (c.deltas.unrecoverable > 0 ? ` unrecoverable(ledgered new_market)=${c.deltas.unrecoverable}` : ''),
    ...examples,
    `TRUTH: ${c.ok ? 'PASS' : 'FAIL'}`,
  ].join('\n');
}
