// When is a market's book chain in production broken? Production's deltas are the merge of every
// gatherer's copy, so one gatherer's gap is filled by the others: the chain is only broken where
// EVERY gatherer had a gap covering the market at the same time. This module turns production's
// gap_ledger into, per market, the instants at which such a shared gap begins ("break points").
// From a break point the derived book rows are flagged `chain_gap` until the market's next
// anchored WebSocket snapshot resets the book (src/archive/books.ts).
//
// The ledger rows are those `kdp book`'s trust reads (src/ops/chain.ts BOOK_LOSS_LEDGER_SQL: the
// book stream, not new_market); the gatherer set here is every gatherer with a deduplicator cursor
// (kdp book takes those that ever recorded the market: one query per market, too many per hour).
// Limits (docs/archive.md): ledger windows are gatherer receive times while book events are in
// exchange time (the two clocks differ by the network and ingest delay, and by any exchange clock
// skew); a ledger row with no tickers is taken to cover every market; a gap still open (no
// window_end and not recovered) lasts to the end of the hour.
import type { ClientBase } from 'pg';
import { intersectAll, union, type Interval } from '../coverage/intervals';
import { BOOK_LOSS_LEDGER_SQL, LEDGER_GATHERER_SQL } from '../ops/chain';

export interface LedgerSpan {
  readonly gatherer: string;
  readonly tickers: readonly string[];
  readonly startUs: number;
  readonly endUs: number;
}

export interface ChainGaps {
  /** Break points of one market within the hour (ascending µs); empty when none. */
  breaksOf(ticker: string): readonly number[];
  /** Ledger rows that overlap the hour and are not recovered (any gatherer): the manifest lists their count. */
  readonly unrecovered: number;
  /** Break points of all markets (for the manifest). */
  readonly marketsWithBreaks: number;
}

const NONE: readonly number[] = [];

/** Loads the ledger rows overlapping [fromUs, toUs) and the gatherer set (live deduplicator cursors, else the ledger's). */
export async function loadChainGaps(client: ClientBase, fromUs: number, toUs: number): Promise<ChainGaps> {
  const r = await client.query(
    `SELECT ${LEDGER_GATHERER_SQL} AS gatherer, ${BOOK_LOSS_LEDGER_SQL} AS book_loss, tickers, window_start::text AS s,
            coalesce(window_end, recovered_at)::text AS e, recovered
       FROM gap_ledger
      WHERE window_start < $2 AND coalesce(window_end, recovered_at, $2) >= $1`,
    [fromUs, toUs],
  );
  const g = await client.query(`SELECT DISTINCT gatherer FROM dedup_cursors`);
  const spans: LedgerSpan[] = [];
  let unrecovered = 0;
  for (const row of r.rows as { gatherer: string; book_loss: boolean; tickers: string[]; s: string; e: string | null; recovered: boolean }[]) {
    if (!row.recovered) unrecovered++;
    if (!row.book_loss) continue;
    spans.push({ gatherer: row.gatherer, tickers: row.tickers, startUs: Number(row.s), endUs: row.e === null ? toUs : Number(row.e) });
  }
  const gatherers = g.rows.length > 0 ? g.rows.map((x: { gatherer: string }) => x.gatherer) : [...new Set(spans.map((s) => s.gatherer))];
  const breaks = computeBreaks(spans, gatherers);
  return { breaksOf: (t) => breaks.named.get(t) ?? breaks.all, unrecovered, marketsWithBreaks: breaks.named.size + (breaks.all.length > 0 ? 1 : 0) };
}

export interface Breaks {
  /** Markets named by a ledger row. */
  readonly named: Map<string, number[]>;
  /** Every other market: only all-markets rows (no tickers) cover it. */
  readonly all: readonly number[];
}

/** Per market: starts of the intervals where every gatherer's spans (covering that market) overlap. */
export function computeBreaks(spans: readonly LedgerSpan[], gatherers: readonly string[]): Breaks {
  const out = new Map<string, number[]>();
  if (gatherers.length === 0) return { named: out, all: NONE };
  const byGatherer = new Map<string, LedgerSpan[]>();
  for (const s of spans) byGatherer.set(s.gatherer, [...(byGatherer.get(s.gatherer) ?? []), s]);
  // A shared gap needs a span from every gatherer: otherwise one copy was whole throughout.
  if (gatherers.some((name) => !byGatherer.has(name))) return { named: out, all: NONE };
  const named = new Set<string>();
  let anyAll = false;
  for (const s of spans) {
    if (s.tickers.length === 0) anyAll = true;
    for (const t of s.tickers) named.add(t);
  }
  // Markets named by no row can only be covered by all-markets rows: they share one answer.
  const allOnly = anyAll ? intersectStarts(gatherers.map((name) => intervalsFor(byGatherer.get(name)!, undefined))) : [];
  for (const ticker of named) {
    const starts = intersectStarts(gatherers.map((name) => intervalsFor(byGatherer.get(name)!, ticker)));
    if (starts.length > 0) out.set(ticker, starts);
  }
  return { named: out, all: allOnly };
}

/** One gatherer's spans covering `ticker` (undefined: all-markets rows only), as [start, end) intervals. */
function intervalsFor(spans: readonly LedgerSpan[], ticker: string | undefined): Interval[] {
  return union(spans.filter((s) => s.tickers.length === 0 || (ticker !== undefined && s.tickers.includes(ticker))).map((s): Interval => [s.startUs, s.endUs]));
}

/** Start times of the intervals common to every list. */
const intersectStarts = (lists: readonly Interval[][]): number[] => intersectAll(lists).map((iv) => iv[0]);
