// `kdp book`: the order book of one market at a moment, rebuilt from production.
//
// Anchoring rule. A WebSocket snapshot row carries `last_delta_ts`: the exchange_ts of the last
// delta (of any market) the gatherer received in order on the same subscription before the
// snapshot, so the snapshot already contains every delta with exchange_ts <= last_delta_ts and
// none after (docs/semantics.md). The book at TIME is
//   the newest WS snapshot of the market with snapshot_ts <= TIME and a known last_delta_ts <= TIME,
//   plus every production delta with last_delta_ts < exchange_ts <= TIME,
// applied in (exchange_ts, occurrence) order with exact decimal arithmetic. A level whose size
// ends <= 0 is removed. Production deltas are the merge of all gatherers, so a delta the
// snapshot's own gatherer missed is still applied.
// Edge cases (see docs/runbooks.md "Reconstruct an order book"):
//   - snapshots with last_delta_ts NULL (no delta had arrived on that subscription yet, or frames
//     were lost right before) and REST
//     snapshots cannot be placed in the delta stream and are skipped;
//   - a snapshot taken between two deltas of the same microsecond would be anchored after both:
//     the second one is then missing from the book (the same residual case as the delta key);
//   - a snapshot whose last_delta_ts is later than TIME (exchange clock ahead of our receive
//     clock) already holds changes after TIME and is skipped;
//   - with no usable snapshot the command fails with KDP_ERR_BOOK_NO_ANCHOR instead of guessing.
import type { ClientBase } from 'pg';
import { KdpError } from '../core/errors';
import { ONE, formatScaled, parseScaled } from './decimal';

export interface BookLevel {
  readonly price: string;
  readonly size: string;
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
  readonly anchor: {
    readonly snapshotTs: number;
    readonly lastDeltaTs: number;
    readonly gatherer: string;
    readonly connId: number;
    readonly sid: number;
  };
  readonly deltasApplied: number;
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

const SNAPSHOT_SQL = `
  SELECT yes_levels, no_levels, snapshot_ts::text, last_delta_ts::text, gatherer, conn_id, sid
    FROM orderbook_snapshots
   WHERE ticker = $1 AND source = 'ws' AND snapshot_ts <= $2
     AND last_delta_ts IS NOT NULL AND last_delta_ts <= $2
   ORDER BY snapshot_ts DESC, last_delta_ts DESC
   LIMIT 1`;

const DELTAS_SQL = `
  SELECT side, price::text, delta::text
    FROM orderbook_deltas
   WHERE ticker = $1 AND exchange_ts > $2 AND exchange_ts <= $3
   ORDER BY exchange_ts, occurrence`;

/** Rebuilds the book of `ticker` at `atUs` (µs since the epoch) from a production database. */
export async function reconstructBook(client: ClientBase, ticker: string, atUs: number): Promise<Book> {
  const snap = await client.query(SNAPSHOT_SQL, [ticker, atUs]);
  if (snap.rowCount === 0) {
    throw new KdpError(
      'KDP_ERR_BOOK_NO_ANCHOR',
      `no WebSocket snapshot of ${ticker} with a known last_delta_ts at or before ${atUs} µs: the book cannot be anchored`,
      { ticker, atUs },
    );
  }
  const s = snap.rows[0];
  const sides: Record<string, Side> = {
    yes: levelsFromJson(s.yes_levels, `${ticker} yes`),
    no: levelsFromJson(s.no_levels, `${ticker} no`),
  };
  const lastDeltaTs = Number(s.last_delta_ts);
  const deltas = await client.query(DELTAS_SQL, [ticker, lastDeltaTs, atUs]);
  for (const d of deltas.rows) {
    const side = sides[d.side];
    if (!side) throw new KdpError('KDP_ERR_MSG_SHAPE', `${ticker}: delta on unknown side ${JSON.stringify(d.side)}`);
    const price = parseScaled(d.price);
    side.set(price, (side.get(price) ?? 0n) + parseScaled(d.delta));
  }
  const yes = ladder(sides.yes!);
  const no = ladder(sides.no!);
  const impliedAsk = (otherBids: BookLevel[]) => (otherBids[0] ? formatScaled(ONE - parseScaled(otherBids[0].price)) : null);
  return {
    ticker,
    atUs,
    yes,
    no,
    yesAsk: impliedAsk(no),
    noAsk: impliedAsk(yes),
    anchor: {
      snapshotTs: Number(s.snapshot_ts),
      lastDeltaTs,
      gatherer: s.gatherer,
      connId: s.conn_id,
      sid: s.sid,
    },
    deltasApplied: deltas.rowCount ?? 0,
  };
}

/** Human-readable book: both bid ladders side by side, best first, then the implied asks. */
export function formatBook(book: Book): string {
  const lines = [
    `${book.ticker} at ${formatTimeUs(book.atUs)} (${book.atUs} µs)`,
    `anchor: ${book.anchor.gatherer} ws snapshot at ${book.anchor.snapshotTs} µs (includes deltas <= ${book.anchor.lastDeltaTs} µs), ` +
      `${book.deltasApplied} deltas applied after it`,
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
