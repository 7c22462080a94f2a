// Whether production's delta chain of one market is whole over a window (the trust part of
// `kdp book`; docs/semantics.md "Order-book reconstruction").
//
// Rule. Production's deltas are the union of every gatherer's copies, so a delta is lost for good
// only when *every* gatherer missed it. A gatherer g misses the deltas of market M received while
//   - it was not yet recording M: before its first WebSocket snapshot of M (a subscription starts
//     with one), or
//   - one of its gap_ledger rows covers M (tickers holds M, or lists none) on the book stream
//     (channel orderbook_delta, or NULL: disconnects, restarts), from window_start to window_end
//     (else recovered_at; open-ended while neither is set). Recovered or not: a resync restores
//     the gatherer's book, never the deltas themselves (no API returns them). Not `new_market`:
//     what it lost lies before the gatherer's first snapshot of the market (the rule above), and
//     its window ends at the ack's processing, after that snapshot's receipt (chaos seed 362: 112
//     of 300 books called untrusted for a zero-length overlap there, every one of them right).
// Windows are half-open (src/coverage/intervals.ts): deltas lost in one were received strictly
// inside it, so windows that only touch share nothing.
// The chain has a gap wherever these intervals of all gatherers intersect. Ledger windows and
// snapshot_ts are receive times (our clocks), deltas' exchange_ts the exchange's: the window is
// taken in receive time, from the anchor's snapshot_ts to the receipt of the market's first
// production delta after TIME (open-ended when there is none yet), its end widened by
// RECEIVE_SKEW_US for gatherers' clocks and the copies' receive times differing.
import type { ClientBase } from 'pg';
import { intersect, intersectAll, union, type Interval as Span } from '../coverage/intervals';

/** How far two gatherers' receive times of one message may differ (NTP-synced clocks, network paths). */
export const RECEIVE_SKEW_US = 100_000;
const OPEN = Number.MAX_SAFE_INTEGER;

export interface Interval {
  readonly fromUs: number;
  readonly toUs: number;
}

export interface ChainCheck {
  /** Receive-time window the check covered. */
  readonly window: Interval;
  /** Sub-windows (receive time) in which every gatherer that ever recorded the market lost deltas. */
  readonly gaps: Interval[];
  /** Gatherers that recorded the market and lost nothing in the window. */
  readonly gatherersWithoutLoss: string[];
  /** Gatherers that ever recorded the market (a WebSocket snapshot of it). */
  readonly gatherers: string[];
}

/**
 * gap_ledger rows that cost a gatherer book deltas: the book stream (or the whole connection), and
 * not new_market (deltas before a market's first snapshot, which no book holds anyway). The
 * processed archive tier reads the ledger with the same filter (src/archive/chaingaps.ts).
 */
export const BOOK_LOSS_LEDGER_SQL = `(channel IS NULL OR channel = 'orderbook_delta') AND kind <> 'new_market'`;
/** A ledger row's gatherer name: a rebuilt gatherer's rows are named gatherer@instance. */
export const LEDGER_GATHERER_SQL = `split_part(gatherer, '@', 1)`;

const LOSS_SQL = `
  SELECT ${LEDGER_GATHERER_SQL} AS gatherer, window_start::float8 AS from_us,
         coalesce(window_end, recovered_at)::float8 AS to_us
    FROM gap_ledger
   WHERE ${BOOK_LOSS_LEDGER_SQL}
     AND (cardinality(tickers) = 0 OR $1 = ANY (tickers))
     AND window_start <= $3 AND coalesce(window_end, recovered_at, ${OPEN}) >= $2`;

const FIRST_SNAPSHOTS_SQL = `
  SELECT gatherer, min(snapshot_ts)::float8 AS first_us
    FROM orderbook_snapshots WHERE ticker = $1 AND source = 'ws' GROUP BY gatherer`;

const RECEIVED_AFTER_SQL = `
  SELECT received_at::float8 AS received_at FROM orderbook_deltas
   WHERE ticker = $1 AND exchange_ts > $2 ORDER BY exchange_ts LIMIT 1`;

/** Checks the chain of `ticker` from an anchor received at `anchorReceivedUs` up to exchange time `atUs`. */
export async function checkChain(client: ClientBase, ticker: string, anchorReceivedUs: number, atUs: number): Promise<ChainCheck> {
  const after = await client.query<{ received_at: number }>(RECEIVED_AFTER_SQL, [ticker, atUs]);
  const endUs = after.rows[0] ? after.rows[0].received_at + RECEIVE_SKEW_US : OPEN;
  // From the anchor's own receipt: its gatherer lost nothing between the snapshot and its bound.
  const window = { fromUs: anchorReceivedUs, toUs: endUs };
  const firsts = await client.query<{ gatherer: string; first_us: number }>(FIRST_SNAPSHOTS_SQL, [ticker]);
  const losses = await client.query<{ gatherer: string; from_us: number; to_us: number | null }>(LOSS_SQL, [ticker, window.fromUs, window.toUs]);
  const w: Span = [window.fromUs, window.toUs];
  const lostLists: Span[][] = [];
  const withoutLoss: string[] = [];
  const gatherers = firsts.rows.map((r) => r.gatherer).sort();
  for (const g of gatherers) {
    const first = firsts.rows.find((r) => r.gatherer === g)!.first_us;
    const lost = union([[-OPEN, first], ...losses.rows.filter((r) => r.gatherer === g).map((r): Span => [r.from_us, r.to_us ?? OPEN])]);
    if (intersect(lost, w).length === 0) withoutLoss.push(g);
    lostLists.push(lost);
  }
  const common = gatherers.length === 0 ? [w] : intersectAll([[w], ...lostLists]);
  return { window, gaps: common.map(([fromUs, toUs]) => ({ fromUs, toUs })), gatherersWithoutLoss: withoutLoss, gatherers };
}
