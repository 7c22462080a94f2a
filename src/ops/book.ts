// `kdp book`: the order book of one market at a moment, rebuilt from production, with how far to
// trust it (docs/semantics.md "Order-book reconstruction").
//
// Anchoring rule. A WebSocket snapshot at seq S of its sid reflects every change before S and none
// after (one seq counter per subscription, in exchange order). Its row carries up to two bounds:
//   next_delta_ts  exchange_ts of the first delta received in order on the sid after it: the
//                  snapshot holds every delta of its market with exchange_ts < it and none from it
//                  on, whatever was lost before the snapshot; the chain is the deltas >= it;
//   last_delta_ts  exchange_ts of the last delta received in order before it with nothing lost
//                  since: it holds every delta <= it and none after; the chain is the deltas > it.
// next_delta_ts is used when known. The book at TIME is the snapshot whose bound is the latest one
// <= TIME, plus every production delta of the chain up to TIME in (exchange_ts, occurrence) order,
// summed exactly (scaled integers); a level ending <= 0 is removed. Production deltas are the merge
// of all gatherers, so a delta the snapshot's own gatherer missed is still applied.
// Edge cases (see docs/runbooks.md "Reconstruct an order book"):
//   - REST snapshots have no seq and no place in the delta stream: never anchors (said so when
//     they are all there is);
//   - a snapshot whose bounds are both NULL (frames lost right before it and its sid broke right
//     after it) cannot be placed;
//   - ties: a delta in the same µs as next_delta_ts that came before the snapshot is counted twice
//     (flagged when last_delta_ts equals next_delta_ts; invisible after lost frames);
//   - TIME earlier than every bound, or no snapshot: KDP_ERR_BOOK_NO_ANCHOR, naming why.
// Trust: whether every gatherer lost deltas somewhere in the chain's window (src/ops/chain.ts). The
// anchor is the snapshot placed latest, so a snapshot taken after such a loss (a resync) is used
// whenever one is placed at or before TIME; otherwise the book is untrusted, with the reason.
import type { ClientBase } from 'pg';
import { KdpError } from '../core/errors';
import { checkChain, type Interval } from './chain';
import { ONE, formatScaled, parseScaled } from './decimal';

export interface BookLevel {
  readonly price: string;
  readonly size: string;
}

export interface BookAnchor {
  readonly source: 'ws';
  readonly gatherer: string;
  readonly connId: number;
  readonly sid: number;
  readonly seq: number | null;
  /** Receive time of the snapshot (µs). */
  readonly snapshotTs: number;
  readonly lastDeltaTs: number | null;
  readonly nextDeltaTs: number | null;
  /** The chain: deltas with exchange_ts >= chainFromTs (inclusive) or > it (exclusive). */
  readonly chainFromTs: number;
  readonly chainInclusive: boolean;
}

export interface BookTrust {
  /** No reason below: the chain is whole, the book is not crossed, no tie at the anchor. */
  readonly trusted: boolean;
  readonly reasons: string[];
  /** No gap that every gatherer shared lies in the chain's window. */
  readonly gapFree: boolean;
  /** Receive-time windows in which every gatherer lost deltas of the market (after the anchor used). */
  readonly gaps: Interval[];
  /** Best YES bid + best NO bid > 1 $: impossible on the exchange, so the rebuild is wrong. */
  readonly crossed: boolean;
  /** A delta in next_delta_ts's µs may have been counted twice (last_delta_ts = next_delta_ts). */
  readonly anchorTie: boolean;
  /**
   * The newest REST snapshot of the market at or before TIME (receive time), its age at TIME, and
   * the drift check's verdict on it (book_drift; null while not compared yet).
   */
  readonly lastRest: { readonly snapshotTs: number; readonly ageUs: number; readonly gatherer: string; readonly drift: string | null } | null;
  /** Gatherers whose copies the applied deltas are (production keeps the first merged copy's provenance). */
  readonly chainGatherers: string[];
  /** Gatherers that recorded the market and lost none of its deltas in the chain's window. */
  readonly gatherersWithoutLoss: string[];
}

export interface Book {
  readonly ticker: string;
  readonly atUs: number;
  /** Bids, best (highest price) first. */
  readonly yes: BookLevel[];
  readonly no: BookLevel[];
  /** Implied best asks: YES ask = 1 - best NO bid, NO ask = 1 - best YES bid (null when no bid). */
  readonly yesAsk: string | null;
  readonly noAsk: string | null;
  readonly anchor: BookAnchor;
  readonly deltasApplied: number;
  readonly trust: BookTrust;
}

type Side = Map<bigint, bigint>;

function levelsFromJson(levels: unknown, what: string): Side {
  const side: Side = new Map();
  if (!Array.isArray(levels)) throw new KdpError('KDP_ERR_MSG_SHAPE', `${what}: snapshot levels are not a list`);
  for (const level of levels) {
    if (!Array.isArray(level) || level.length !== 2) throw new KdpError('KDP_ERR_MSG_SHAPE', `${what}: level ${JSON.stringify(level)}`);
    const price = parseScaled(String(level[0]));
    side.set(price, (side.get(price) ?? 0n) + parseScaled(String(level[1])));
  }
  return side;
}

function ladder(side: Side): BookLevel[] {
  return [...side.entries()]
    .filter(([, size]) => size > 0n)
    .sort((a, b) => (a[0] === b[0] ? 0 : a[0] > b[0] ? -1 : 1))
    .map(([price, size]) => ({ price: formatScaled(price), size: formatScaled(size) }));
}

// A snapshot's receive time can trail its exchange-time position by the exchange clock's lag
// behind ours (141 s seen in a loaded demo): candidates are searched up to this far past TIME.
export const RECEIVE_AFTER_POSITION_MAX_US = 3_600_000_000;

/**
 * A WS snapshot's position in its market's delta stream (exchange µs; NULL: cannot be placed). With
 * next_delta_ts the snapshot holds the deltas before it (the chain starts at it, inclusive); with
 * only last_delta_ts it holds the deltas up to it (the chain starts after it). The processed
 * archive tier places snapshots by the same rule (src/archive/books.ts).
 */
export const SNAPSHOT_POSITION_SQL = 'coalesce(next_delta_ts, last_delta_ts)';

const ANCHOR_SQL = `
  SELECT snapshot_ts::float8 AS snapshot_ts, last_delta_ts::float8 AS last_delta_ts, next_delta_ts::float8 AS next_delta_ts,
         gatherer, conn_id, sid, seq::float8 AS seq, yes_levels, no_levels
    FROM orderbook_snapshots
   WHERE ticker = $1 AND source = 'ws' AND snapshot_ts <= $2::bigint + ${RECEIVE_AFTER_POSITION_MAX_US}
     AND ${SNAPSHOT_POSITION_SQL} <= $2
   ORDER BY ${SNAPSHOT_POSITION_SQL} DESC, snapshot_ts DESC
   LIMIT 1`;

const DELTAS_SQL = `
  SELECT side, price::text, delta::text, gatherer
    FROM orderbook_deltas
   WHERE ticker = $1 AND (exchange_ts > $2 OR ($4 AND exchange_ts = $2)) AND exchange_ts <= $3
   ORDER BY exchange_ts, occurrence`;

const LAST_REST_SQL = `
  SELECT s.snapshot_ts::float8 AS snapshot_ts, s.gatherer, d.verdict
    FROM orderbook_snapshots s
    LEFT JOIN book_drift d ON d.ticker = s.ticker AND d.snapshot_ts = s.snapshot_ts AND d.gatherer = s.gatherer
   WHERE s.ticker = $1 AND s.source = 'rest' AND s.snapshot_ts <= $2 ORDER BY s.snapshot_ts DESC LIMIT 1`;

/** The WS snapshot of `ticker` with the latest bound <= atUs. */
async function findAnchor(client: ClientBase, ticker: string, atUs: number): Promise<Anchored | null> {
  const r = await client.query(ANCHOR_SQL, [ticker, atUs]);
  const s = r.rows[0];
  if (!s) return null;
  const inclusive = s.next_delta_ts !== null;
  const anchor: BookAnchor = {
    source: 'ws',
    gatherer: s.gatherer,
    connId: s.conn_id,
    sid: s.sid,
    seq: s.seq,
    snapshotTs: s.snapshot_ts,
    lastDeltaTs: s.last_delta_ts,
    nextDeltaTs: s.next_delta_ts,
    chainFromTs: inclusive ? s.next_delta_ts : s.last_delta_ts,
    chainInclusive: inclusive,
  };
  return { anchor, yesLevels: s.yes_levels, noLevels: s.no_levels };
}

interface Anchored {
  readonly anchor: BookAnchor;
  readonly yesLevels: unknown;
  readonly noLevels: unknown;
}

/** Why no snapshot of `ticker` anchors a book at atUs (the message of KDP_ERR_BOOK_NO_ANCHOR). */
async function noAnchorReason(client: ClientBase, ticker: string, atUs: number): Promise<{ reason: string; why: string }> {
  const r = await client.query(
    `SELECT count(*) FILTER (WHERE source = 'ws')::int AS ws, count(*) FILTER (WHERE source = 'rest')::int AS rest,
            count(*) FILTER (WHERE source = 'ws' AND ${SNAPSHOT_POSITION_SQL} IS NULL)::int AS unplaced,
            min(${SNAPSHOT_POSITION_SQL}) FILTER (WHERE source = 'ws')::float8 AS first_bound
       FROM orderbook_snapshots WHERE ticker = $1 AND snapshot_ts <= $2::bigint + ${RECEIVE_AFTER_POSITION_MAX_US}`,
    [ticker, atUs],
  );
  const c = r.rows[0];
  if (c.ws === 0 && c.rest > 0)
    return { reason: 'rest_only', why: `only REST snapshots (${c.rest}), which carry no seq and cannot be placed in the delta stream` };
  if (c.ws === 0) return { reason: 'no_snapshot', why: 'no snapshot of the market at all' };
  if (c.first_bound !== null && c.first_bound > atUs)
    return { reason: 'before_first_anchor', why: `TIME is before the first WebSocket snapshot's place in the delta stream (${c.first_bound} µs)` };
  return { reason: 'unplaced', why: `${c.unplaced} WebSocket snapshot(s) whose sid lost frames both right before and right after them` };
}
/** Rebuilds the book of `ticker` at `atUs` (µs since the epoch, exchange time) from a production database. */
export async function reconstructBook(client: ClientBase, ticker: string, atUs: number): Promise<Book> {
  // The snapshot placed latest at or before TIME: a snapshot taken after deltas every gatherer lost
  // holds them and is placed after them, so whenever one exists at or before TIME it is this one.
  const found = await findAnchor(client, ticker, atUs);
  if (found === null) {
    const { reason, why } = await noAnchorReason(client, ticker, atUs);
    throw new KdpError('KDP_ERR_BOOK_NO_ANCHOR', `${ticker} at ${atUs} µs cannot be anchored: ${why}`, { ticker, atUs, reason });
  }
  const chain = await checkChain(client, ticker, found.anchor.snapshotTs, atUs);
  const { anchor } = found;
  const sides: Record<string, Side> = { yes: levelsFromJson(found.yesLevels, `${ticker} yes`), no: levelsFromJson(found.noLevels, `${ticker} no`) };
  const deltas = await client.query(DELTAS_SQL, [ticker, anchor.chainFromTs, atUs, anchor.chainInclusive]);
  const chainGatherers = new Set<string>();
  for (const d of deltas.rows) {
    const side = sides[d.side];
    if (!side) throw new KdpError('KDP_ERR_MSG_SHAPE', `${ticker}: delta on unknown side ${JSON.stringify(d.side)}`);
    const price = parseScaled(d.price);
    side.set(price, (side.get(price) ?? 0n) + parseScaled(d.delta));
    chainGatherers.add(d.gatherer);
  }
  const yes = ladder(sides.yes!);
  const no = ladder(sides.no!);
  const rest = await client.query(LAST_REST_SQL, [ticker, atUs]);
  const r = rest.rows[0];
  const trust = judge({
    chainGaps: chain.gaps,
    crossed: yes[0] !== undefined && no[0] !== undefined && parseScaled(yes[0].price) + parseScaled(no[0].price) > ONE,
    anchorTie: anchor.nextDeltaTs !== null && anchor.lastDeltaTs === anchor.nextDeltaTs,
    lastRest: r ? { snapshotTs: r.snapshot_ts, ageUs: atUs - r.snapshot_ts, gatherer: r.gatherer, drift: r.verdict } : null,
    chainGatherers: [...chainGatherers].sort(),
    gatherersWithoutLoss: chain.gatherersWithoutLoss,
  });
  const impliedAsk = (otherBids: BookLevel[]) => (otherBids[0] ? formatScaled(ONE - parseScaled(otherBids[0].price)) : null);
  return { ticker, atUs, yes, no, yesAsk: impliedAsk(no), noAsk: impliedAsk(yes), anchor, deltasApplied: deltas.rowCount ?? 0, trust };
}

function judge(t: Omit<BookTrust, 'trusted' | 'reasons' | 'gapFree' | 'gaps'> & { chainGaps: Interval[] }): BookTrust {
  const reasons: string[] = [];
  const show = (i: Interval): string => `${i.fromUs}..${i.toUs === Number.MAX_SAFE_INTEGER ? 'open' : i.toUs} µs`;
  if (t.chainGaps.length > 0)
    reasons.push(
      `every gatherer lost deltas of the market after the anchor (receive time ${t.chainGaps.map(show).join(', ')}); no snapshot after that is placed at or before TIME`,
    );
  if (t.crossed) reasons.push('crossed book: best YES bid + best NO bid > 1 $');
  if (t.anchorTie) reasons.push("a delta in the µs of the anchor's next_delta_ts may be counted twice");
  const { chainGaps, ...rest } = t;
  return { trusted: reasons.length === 0, reasons, gapFree: chainGaps.length === 0, gaps: chainGaps, ...rest };
}

/** Human-readable book: both bid ladders side by side, best first, then the implied asks. */
export function formatBook(book: Book): string {
  const lines = [
    `${book.ticker} at ${formatTimeUs(book.atUs)} (${book.atUs} µs)`,
    `anchor: ${book.anchor.gatherer} ws snapshot received ${formatTimeUs(book.anchor.snapshotTs)} (conn ${book.anchor.connId} sid ${book.anchor.sid} seq ${book.anchor.seq ?? '-'}), ` +
      `holds deltas ${book.anchor.chainInclusive ? '<' : '<='} ${book.anchor.chainFromTs} µs; ${book.deltasApplied} deltas applied after it`,
    ...formatTrust(book),
    '',
    `${'YES bid'.padStart(10)} ${'size'.padStart(14)} | ${'NO bid'.padStart(10)} ${'size'.padStart(14)}`,
  ];
  const rows = Math.max(book.yes.length, book.no.length);
  for (let i = 0; i < rows; i++) {
    const y = book.yes[i];
    const n = book.no[i];
    lines.push(`${(y?.price ?? '').padStart(10)} ${(y?.size ?? '').padStart(14)} | ${(n?.price ?? '').padStart(10)} ${(n?.size ?? '').padStart(14)}`);
  }
  if (rows === 0) lines.push('(empty book)');
  lines.push('', `best YES ask (1 - best NO bid): ${book.yesAsk ?? '-'}`, `best NO ask (1 - best YES bid): ${book.noAsk ?? '-'}`);
  return lines.join('\n');
}

function formatTrust(book: Book): string[] {
  const t = book.trust;
  const rest = t.lastRest
    ? `${(t.lastRest.ageUs / 1e6).toFixed(3)} s before TIME (${t.lastRest.gatherer}), drift check: ${t.lastRest.drift ?? 'not yet'}`
    : 'none at or before TIME';
  return [
    `trust: ${t.trusted ? 'TRUSTED' : 'UNTRUSTED'}; chain ${t.gapFree ? 'gap-free' : 'has a gap every gatherer shared'}` +
      `; crossed: ${t.crossed ? 'yes' : 'no'}`,
    `chain copies from: ${t.chainGatherers.join(', ') || '-'}; gatherers without loss in the window: ${t.gatherersWithoutLoss.join(', ') || '-'}`,
    `last REST snapshot: ${rest}`,
    ...t.reasons.map((r) => `UNTRUSTED: ${r}`),
  ];
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$/;

/** TIME as µs since the epoch: an integer (µs) or RFC 3339 (fractions beyond µs are truncated). */
export function parseTimeUs(text: string): number {
  if (/^\d+$/.test(text)) {
    const us = Number(text);
    if (!Number.isSafeInteger(us)) throw new KdpError('KDP_ERR_USAGE', `time ${text} µs is out of range`);
    return us;
  }
  const m = RFC3339.exec(text);
  if (!m) throw new KdpError('KDP_ERR_USAGE', `time must be RFC 3339 (2026-11-23T12:00:00.123456Z) or integer µs, got ${text}`);
  const [, y, mo, d, h, mi, s, frac = '', zone] = m;
  const ms = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
  const check = new Date(ms);
  if (check.getUTCDate() !== Number(d) || check.getUTCHours() !== Number(h) || Number(s) > 59) {
    throw new KdpError('KDP_ERR_USAGE', `not a valid date/time: ${text}`);
  }
  let offsetMin = 0;
  if (zone !== 'Z' && zone !== 'z') {
    const sign = zone!.startsWith('-') ? -1 : 1;
    offsetMin = sign * (Number(zone!.slice(1, 3)) * 60 + Number(zone!.slice(4, 6)));
  }
  return (ms - offsetMin * 60_000) * 1000 + Number(frac.slice(0, 6).padEnd(6, '0'));
}

export function formatTimeUs(us: number): string {
  const iso = new Date(Math.floor(us / 1000)).toISOString();
  return `${iso.slice(0, 19)}.${String(us % 1_000_000).padStart(6, '0')}Z`;
}
