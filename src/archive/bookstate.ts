// The order books the processed/ tier carries from one hour to the next: every market's full book
// (not only 25 levels) at the end of the hour, in integer micro units (10^-6 dollars and
// contracts). Prices are NUMERIC(12,6) and sizes NUMERIC(20,2), so 10^-6 units hold both exactly
// and, below 2^53 µ-units (9·10^9 contracts), in a double without loss: every value is checked.
import { gunzipSync, gzipSync } from 'node:zlib';
import { KdpError, invariant } from '../core/errors';

export const STATE_FORMAT_VERSION = 1;

export interface MarketBook {
  /** price (µ$) -> size (µ contracts); only sizes > 0 are kept. */
  readonly yes: Map<number, number>;
  readonly no: Map<number, number>;
  /** receive time and gatherer of the WS snapshot the chain starts from. */
  anchorSnapshotTs: number;
  anchorGatherer: string;
  /** A gap every gatherer had has touched the market since the anchor (docs/archive.md). */
  chainGap: boolean;
  /** Changed since the last book_snapshots_25 row. */
  dirty: boolean;
}

export interface BookState {
  /** End of the hour the books are at (µs); the next hour starts from here. */
  readonly atUs: number;
  readonly books: Map<string, MarketBook>;
}

const DECIMAL_RE = /^(-?)(\d+)(?:\.(\d+))?$/;

/** "0.3600" -> 360000 (µ-units). Exact; rejects more than 6 significant decimals or values beyond 2^53 µ-units. */
export function micro(text: string): number {
  const m = DECIMAL_RE.exec(text);
  const frac = (m?.[3] ?? '').replace(/0+$/, '');
  if (!m || frac.length > 6) throw new KdpError('KDP_ERR_MSG_DECIMAL', `not a decimal with at most 6 decimals: ${JSON.stringify(text)}`);
  const v = Number(m[2]) * 1_000_000 + Number(frac.padEnd(6, '0'));
  if (!Number.isSafeInteger(v)) throw new KdpError('KDP_ERR_MSG_DECIMAL', `${text} is too large to rebuild a book exactly`);
  return m[1] === '-' ? -v : v;
}

/**
 * 360000 -> "0.36", 10500000 -> "10.5", 2000000 -> "2": the shortest exact text. The derived CSV is
 * parsed by DuckDB at a cost that grows with its bytes, and a 25-level book row holds 100 decimals.
 */
export function fromMicro(v: number): string {
  invariant(Number.isSafeInteger(v), `not an integer µ-value: ${v}`);
  const abs = Math.abs(v);
  const frac = abs % 1_000_000;
  const whole = `${v < 0 ? '-' : ''}${Math.floor(abs / 1_000_000)}`;
  if (frac === 0) return whole;
  return `${whole}.${String(frac).padStart(6, '0').replace(/0+$/, '')}`;
}

export function emptyBook(anchorSnapshotTs: number, anchorGatherer: string): MarketBook {
  return { yes: new Map(), no: new Map(), anchorSnapshotTs, anchorGatherer, chainGap: false, dirty: true };
}

export function applyChange(side: Map<number, number>, price: number, delta: number): void {
  const size = (side.get(price) ?? 0) + delta;
  if (size > 0) side.set(price, size);
  else side.delete(price);
}

/** Best (highest) bid of a side: [price, size], or undefined when the side is empty. */
export function best(side: Map<number, number>): [number, number] | undefined {
  let bp = -1;
  let bs = 0;
  for (const [p, s] of side) {
    if (p > bp) {
      bp = p;
      bs = s;
    }
  }
  return bp < 0 ? undefined : [bp, bs];
}

/** The n best levels, best first. */
export function topLevels(side: Map<number, number>, n: number): [number, number][] {
  return [...side.entries()].sort((a, b) => b[0] - a[0]).slice(0, n);
}

interface StoredBook {
  readonly y: [number, number][];
  readonly n: [number, number][];
  readonly a: number;
  readonly g: string;
  readonly gap: boolean;
}

export function encodeState(state: BookState): Buffer {
  const books: [string, StoredBook][] = [];
  for (const [ticker, b] of state.books) {
    books.push([ticker, { y: [...b.yes], n: [...b.no], a: b.anchorSnapshotTs, g: b.anchorGatherer, gap: b.chainGap }]);
  }
  return gzipSync(JSON.stringify({ version: STATE_FORMAT_VERSION, atUs: state.atUs, books }));
}

export function decodeState(bytes: Buffer, where: string): BookState {
  let doc: { version?: unknown; atUs?: unknown; books?: unknown };
  try {
    doc = JSON.parse(gunzipSync(bytes).toString('utf8'));
  } catch (err) {
    throw new KdpError('KDP_ERR_ARCHIVE_STATE', `book state ${where} is unreadable: ${(err as Error).message}`);
  }
  if (doc.version !== STATE_FORMAT_VERSION || typeof doc.atUs !== 'number' || !Array.isArray(doc.books)) {
    throw new KdpError('KDP_ERR_ARCHIVE_STATE', `book state ${where} has format ${String(doc.version)}, expected ${STATE_FORMAT_VERSION}`);
  }
  const books = new Map<string, MarketBook>();
  for (const [ticker, b] of doc.books as [string, StoredBook][]) {
    books.set(ticker, { yes: new Map(b.y), no: new Map(b.n), anchorSnapshotTs: b.a, anchorGatherer: b.g, chainGap: b.gap, dirty: false });
  }
  return { atUs: doc.atUs, books };
}
