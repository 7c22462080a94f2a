// REST vs WebSocket drift: every REST order-book snapshot is compared with the book rebuilt from the
// WebSocket chain (src/ops/book.ts) at that moment; one `book_drift` row per REST snapshot
// (docs/semantics.md "REST vs WebSocket drift").
//
// Tolerance rule. A REST snapshot's snapshot_ts is our receive time R; the answer reflects the
// exchange at some instant before it, and the WebSocket copies of the deltas around that instant
// reach us with their own delay. The deltas are placed by *their* receive times (the same clocks):
// the REST book agrees when it equals the rebuilt book at any delta boundary among the market's
// deltas received within [R - window, R + window] — the book before the first of them, then after
// each exchange µs up to the last of them. With none received in the window, the one book before
// the next delta is compared. The rebuild's exchange-time search spans [R - window - LAG_MAX_US,
// R + window + 1 s]: the exchange clock may trail our receive clock (141 s seen in a loaded demo).
import type { ClientBase } from 'pg';
import { KdpError } from '../core/errors';
import { mergeWatermark } from '../archive/cursors';
import { reconstructBook, type Book, type BookLevel } from './book';
import { formatScaled, parseScaled } from './decimal';

export const DRIFT_VERDICTS = ['match', 'mismatch', 'no_anchor', 'untrusted', 'unreadable'] as const;
export type DriftVerdict = (typeof DRIFT_VERDICTS)[number];

const LAG_MAX_US = 600_000_000;
const EXCHANGE_AHEAD_MAX_US = 1_000_000;

export interface RestSnapshot {
  readonly ticker: string;
  readonly snapshotTs: number;
  readonly gatherer: string;
  readonly yes: unknown;
  readonly no: unknown;
}

export interface DriftResult {
  readonly ticker: string;
  readonly snapshotTs: number;
  readonly gatherer: string;
  readonly verdict: DriftVerdict;
  /** WebSocket book states compared (delta boundaries). */
  readonly compared: number;
  readonly anchorGatherer: string | null;
  /** mismatch: the differences at the boundary closest to it (fewest differing levels); otherwise why it was not compared. */
  readonly detail: string | null;
}

type Levels = Map<bigint, bigint>;
interface DeltaRow {
  ts: number;
  side: string;
  price: string;
  delta: string;
  rcv: number;
}

function restLevels(levels: unknown, what: string): Levels {
  if (!Array.isArray(levels)) throw new KdpError('KDP_ERR_MSG_SHAPE', `${what}: REST snapshot levels are not a list`);
  const out: Levels = new Map();
  for (const l of levels) {
    if (!Array.isArray(l) || l.length !== 2) throw new KdpError('KDP_ERR_MSG_SHAPE', `${what}: level ${JSON.stringify(l)}`);
    const p = parseScaled(String(l[0]));
    out.set(p, (out.get(p) ?? 0n) + parseScaled(String(l[1])));
  }
  for (const [p, s] of out) if (s <= 0n) out.delete(p);
  return out;
}

const bookLevels = (levels: readonly BookLevel[]): Levels => new Map(levels.map((l) => [parseScaled(l.price), parseScaled(l.size)]));

/** "side price: rest A ws B" for each level that differs, at most 5. */
function differences(rest: Record<string, Levels>, ws: Record<string, Levels>): string[] {
  const out: string[] = [];
  for (const side of ['yes', 'no']) {
    const prices = new Set([...rest[side]!.keys(), ...ws[side]!.keys()]);
    for (const p of [...prices].sort((a, b) => (a < b ? 1 : a > b ? -1 : 0))) {
      const a = rest[side]!.get(p) ?? 0n;
      const b = ws[side]!.get(p) ?? 0n;
      if (a !== b) out.push(`${side} ${formatScaled(p)}: rest ${formatScaled(a)} ws ${formatScaled(b)}`);
    }
  }
  return out.slice(0, 5);
}

const DELTAS_AROUND_SQL = `
  SELECT exchange_ts::float8 AS ts, side, price::text AS price, delta::text AS delta, received_at::float8 AS rcv
    FROM orderbook_deltas WHERE ticker = $1 AND exchange_ts BETWEEN $2 AND $3
   ORDER BY exchange_ts, occurrence`;

/** Exchange time of the book before the window's deltas, and the deltas to step through after it. */
function boundaries(rows: readonly DeltaRow[], lo: number, hi: number): { baseTs: number; steps: DeltaRow[] } {
  const inWindow = rows.filter((r) => r.rcv >= lo && r.rcv <= hi);
  if (inWindow.length > 0) {
    const first = inWindow[0]!.ts;
    const last = inWindow[inWindow.length - 1]!.ts;
    return { baseTs: first - 1, steps: rows.filter((r) => r.ts >= first && r.ts <= last) };
  }
  const before = rows.filter((r) => r.rcv < lo);
  if (before.length > 0) return { baseTs: before[before.length - 1]!.ts, steps: [] };
  if (rows.length > 0) return { baseTs: rows[0]!.ts - 1, steps: [] };
  return { baseTs: hi, steps: [] };
}

/** Compares one REST snapshot with the WebSocket chain's books around its receipt. */
export async function compareRestSnapshot(client: ClientBase, rest: RestSnapshot, windowUs: number): Promise<DriftResult> {
  const base = { ticker: rest.ticker, snapshotTs: rest.snapshotTs, gatherer: rest.gatherer };
  const lo = rest.snapshotTs - windowUs;
  const hi = rest.snapshotTs + windowUs;
  const rows = (await client.query<DeltaRow>(DELTAS_AROUND_SQL, [rest.ticker, lo - LAG_MAX_US, hi + EXCHANGE_AHEAD_MAX_US])).rows;
  const { baseTs, steps } = boundaries(rows, lo, hi);
  let book: Book;
  try {
    book = await reconstructBook(client, rest.ticker, baseTs);
  } catch (err) {
    if (!(err instanceof KdpError) || err.code !== 'KDP_ERR_BOOK_NO_ANCHOR') throw err;
    return { ...base, verdict: 'no_anchor', compared: 0, anchorGatherer: null, detail: err.message };
  }
  const anchorGatherer = book.anchor.gatherer;
  if (!book.trust.trusted) return { ...base, verdict: 'untrusted', compared: 0, anchorGatherer, detail: book.trust.reasons.join('; ') };
  const want = { yes: restLevels(rest.yes, `${rest.ticker} yes`), no: restLevels(rest.no, `${rest.ticker} no`) };
  const ws: Record<string, Levels> = { yes: bookLevels(book.yes), no: bookLevels(book.no) };
  let diff = differences(want, ws);
  let closest = diff;
  let compared = 1;
  for (let i = 0; i < steps.length && diff.length > 0;) {
    const ts = steps[i]!.ts;
    for (; i < steps.length && steps[i]!.ts === ts; i++) {
      const s = steps[i]!;
      const side = ws[s.side]!;
      const p = parseScaled(s.price);
      const size = (side.get(p) ?? 0n) + parseScaled(s.delta);
      if (size > 0n) side.set(p, size);
      else side.delete(p);
    }
    compared++;
    diff = differences(want, ws);
    if (diff.length < closest.length) closest = diff;
  }
  if (diff.length === 0) return { ...base, verdict: 'match', compared, anchorGatherer, detail: null };
  return { ...base, verdict: 'mismatch', compared, anchorGatherer, detail: closest.join('; ') };
}

/** A REST snapshot whose stored levels cannot be read is recorded as such (counted), never retried forever. */
async function compareOrUnreadable(client: ClientBase, rest: RestSnapshot, windowUs: number): Promise<DriftResult> {
  try {
    return await compareRestSnapshot(client, rest, windowUs);
  } catch (err) {
    if (!(err instanceof KdpError) || (err.code !== 'KDP_ERR_MSG_SHAPE' && err.code !== 'KDP_ERR_MSG_DECIMAL')) throw err;
    return {
      ticker: rest.ticker,
      snapshotTs: rest.snapshotTs,
      gatherer: rest.gatherer,
      verdict: 'unreadable',
      compared: 0,
      anchorGatherer: null,
      detail: err.message,
    };
  }
}

export interface DriftPassOptions {
  readonly windowUs: number;
  /** Extra margin past the merge watermark before a REST snapshot is compared (late commits). */
  readonly settleUs: number;
  readonly snapshotsMax: number;
  readonly nowUs: number;
  /** A gatherer whose dedup cursor has not moved for this long is ignored by the watermark. */
  readonly staleUs: number;
}

export interface DriftPass {
  readonly checked: DriftResult[];
  /** REST snapshots compared up to this receive time (the merge watermark less window and settle). */
  readonly upToUs: number;
}

const PENDING_SQL = `
  SELECT s.ticker, s.snapshot_ts::float8 AS snapshot_ts, s.gatherer, s.yes_levels, s.no_levels
    FROM orderbook_snapshots s
   WHERE s.source = 'rest' AND s.snapshot_ts <= $1
     AND NOT EXISTS (SELECT 1 FROM book_drift d WHERE d.ticker = s.ticker AND d.snapshot_ts = s.snapshot_ts AND d.gatherer = s.gatherer)
   ORDER BY s.snapshot_ts
   LIMIT $2`;

const INSERT_SQL = `
  INSERT INTO book_drift (ticker, snapshot_ts, gatherer, verdict, compared, anchor_gatherer, detail, checked_at)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`;

/**
 * Compares the REST snapshots production holds that are not in book_drift yet and whose window the
 * deduplicator has merged (every live gatherer's cursor past it), oldest first, at most snapshotsMax;
 * each result is one book_drift row.
 */
export async function runDriftPass(client: ClientBase, o: DriftPassOptions): Promise<DriftPass> {
  const wm = await mergeWatermark(client, o.nowUs, o.staleUs);
  const upToUs = Math.min(o.nowUs, wm.watermarkUs) - o.windowUs - o.settleUs;
  if (!Number.isFinite(upToUs)) return { checked: [], upToUs };
  const pending = await client.query(PENDING_SQL, [Math.floor(upToUs), o.snapshotsMax]);
  const checked: DriftResult[] = [];
  for (const r of pending.rows) {
    const rest: RestSnapshot = { ticker: r.ticker, snapshotTs: r.snapshot_ts, gatherer: r.gatherer, yes: r.yes_levels, no: r.no_levels };
    const d = await compareOrUnreadable(client, rest, o.windowUs);
    await client.query(INSERT_SQL, [d.ticker, d.snapshotTs, d.gatherer, d.verdict, d.compared, d.anchorGatherer, d.detail, o.nowUs]);
    checked.push(d);
  }
  return { checked, upToUs };
}
