// processed/: one pass over an hour of production's book data rebuilds every market's order book
// in exchange-time order and writes three datasets (src/archive/datasets.ts): quotes (top of book
// whenever it changes), book_snapshots_25 (25 levels per side every `bookIntervalMs` when the book
// changed, and every known book at the end of the hour) and trades enriched with the top of book.
//
// Event order for one market (docs/archive.md "processed/"), at equal exchange time t:
//   1. the book_snapshots_25 grid point t (the book after every change before t),
//   2. trades at t (a trade's time is its millisecond: the book before any change in it),
//   3. a shared-gap break point (chaingaps.ts): the chain is flagged from here,
//   4. WebSocket snapshots placed at t that hold the changes before t (next_delta_ts = t),
//   5. deltas at t, in occurrence order,
//   6. WebSocket snapshots placed at t that hold the changes up to t (last_delta_ts = t);
//   at 4 and 6 the book is replaced by the snapshot and the chain is whole again (placement as
//   kdp book's, src/ops/book.ts SNAPSHOT_POSITION_SQL);
// then one quote row if the top of book changed at t. A market's book is unknown (no quotes, no
// snapshot rows, enriched trades with book_known false) until its first anchored snapshot;
// books carry over from the previous hour through the book state (bookstate.ts).
import type { ClientBase } from 'pg';
import { KdpError, invariant } from '../core/errors';
import { applyChange, best, emptyBook, micro, topLevels, type BookState, type MarketBook } from './bookstate';
import { BOOK_LEVELS } from './datasets';
import type { ChainGaps } from './chaingaps';
import { CsvOut } from './csvout';
import { RECEIVE_AFTER_POSITION_MAX_US, SNAPSHOT_POSITION_SQL } from '../ops/book';
import { HOUR_US } from './layout';
import { GroupedRows, unescapeCopyText } from './rowstream';

export interface BookHourInput {
  readonly hourStartUs: number;
  readonly bookIntervalUs: number;
  readonly prior: BookState | undefined;
  readonly gaps: ChainGaps;
  /** Tickers whose books are dropped at this hour's start (closed markets), from markets.close_time. */
  readonly retired: ReadonlySet<string>;
  readonly out: { quotes: CsvOut; snapshots: CsvOut; trades: CsvOut };
}

export interface SourceFacts {
  readonly table: string;
  readonly rows: number;
  /** sha256 of the rows exactly as production streamed them (COPY text). */
  readonly sha256: string;
}

export interface BookHourResult {
  readonly state: BookState;
  readonly sources: readonly SourceFacts[];
  readonly rows: { quotes: number; book_snapshots_25: number; trades: number };
  readonly chainGapRows: number;
  readonly badRows: number;
  readonly badRowExample: string | undefined;
}

const copy = (sql: string): string => `COPY (${sql}) TO STDOUT`;

function sourceSql(hourStartUs: number): { deltas: string; snapshots: string; trades: string } {
  const from = hourStartUs;
  const to = hourStartUs + HOUR_US;
  return {
    deltas: copy(
      `SELECT ticker, exchange_ts, side, price, delta FROM orderbook_deltas WHERE exchange_ts >= ${from} AND exchange_ts < ${to} ` +
        `ORDER BY ticker COLLATE "C", exchange_ts, occurrence`,
    ),
    // Placed as kdp book places them (SNAPSHOT_POSITION_SQL); `before`: it holds the deltas before
    // its position (next_delta_ts known), so it applies before that instant's deltas, else after.
    snapshots: copy(
      `SELECT ticker, ${SNAPSHOT_POSITION_SQL}, snapshot_ts, gatherer, yes_levels::text, no_levels::text, next_delta_ts IS NOT NULL ` +
        `FROM orderbook_snapshots WHERE source = 'ws' ` +
        `AND snapshot_ts >= ${from - RECEIVE_AFTER_POSITION_MAX_US} AND snapshot_ts < ${to + RECEIVE_AFTER_POSITION_MAX_US} ` +
        `AND ${SNAPSHOT_POSITION_SQL} >= ${from} AND ${SNAPSHOT_POSITION_SQL} < ${to} ` +
        `ORDER BY ticker COLLATE "C", ${SNAPSHOT_POSITION_SQL}, next_delta_ts IS NULL, snapshot_ts, gatherer`,
    ),
    trades: copy(
      `SELECT ticker, exchange_ts, trade_id, yes_price, no_price, count, taker_side, source FROM trades ` +
        `WHERE exchange_ts >= ${from} AND exchange_ts < ${to} ORDER BY ticker COLLATE "C", exchange_ts, trade_id`,
    ),
  };
}

/** Rebuilds one hour; `clients` are three connections (one COPY stream each). */
export async function deriveBookHour(clients: readonly [ClientBase, ClientBase, ClientBase], input: BookHourInput): Promise<BookHourResult> {
  const sql = sourceSql(input.hourStartUs);
  const streams = {
    deltas: GroupedRows.open(clients[0], sql.deltas),
    snapshots: GroupedRows.open(clients[1], sql.snapshots),
    trades: GroupedRows.open(clients[2], sql.trades),
  };
  const books = new Map<string, MarketBook>();
  for (const [t, b] of input.prior?.books ?? []) if (!input.retired.has(t)) books.set(t, b);
  const carried = [...books.keys()].sort();
  const w = new MarketWriter(input);
  let ci = 0;
  for (;;) {
    let ticker: string | undefined = carried[ci];
    for (const s of Object.values(streams)) {
      const p = await s.peek();
      if (p !== undefined && (ticker === undefined || p < ticker)) ticker = p;
    }
    if (ticker === undefined) break;
    if (carried[ci] === ticker) ci++;
    const [deltas, snaps, trades] = [await streams.deltas.take(ticker), await streams.snapshots.take(ticker), await streams.trades.take(ticker)];
    const book = w.market(ticker, books.get(ticker), deltas, snaps, trades);
    if (book) books.set(ticker, book);
    await w.drain();
  }
  await w.drain();
  return {
    state: { atUs: input.hourStartUs + HOUR_US, books },
    sources: [
      { table: 'orderbook_deltas', rows: streams.deltas.rows, sha256: streams.deltas.digest() },
      { table: 'orderbook_snapshots', rows: streams.snapshots.rows, sha256: streams.snapshots.digest() },
      { table: 'trades', rows: streams.trades.rows, sha256: streams.trades.digest() },
    ],
    rows: { quotes: input.out.quotes.rows, book_snapshots_25: input.out.snapshots.rows, trades: input.out.trades.rows },
    chainGapRows: w.chainGapRows,
    badRows: w.badRows,
    badRowExample: w.badRowExample,
  };
}

function levelsOf(json: string | null, what: string): [number, number][] {
  const parsed: unknown = json === null ? [] : JSON.parse(json);
  if (!Array.isArray(parsed)) throw new KdpError('KDP_ERR_MSG_SHAPE', `${what}: snapshot levels are not a list`);
  return parsed.map((l: unknown) => {
    if (!Array.isArray(l) || l.length !== 2) throw new KdpError('KDP_ERR_MSG_SHAPE', `${what}: level ${JSON.stringify(l)}`);
    return [micro(String(l[0])), micro(String(l[1]))];
  });
}

function bookFromSnapshot(row: string[], ticker: string): MarketBook {
  const book = emptyBook(Number(row[2]), row[3]!);
  for (const [p, s] of levelsOf(unescapeCopyText(row[4]!), `${ticker} yes`)) applyChange(book.yes, p, s);
  for (const [p, s] of levelsOf(unescapeCopyText(row[5]!), `${ticker} no`)) applyChange(book.no, p, s);
  return book;
}

/** Per-market replay and the rows it writes. */
class MarketWriter {
  chainGapRows = 0;
  /** Rows of production that could not be applied (never expected; counted, not fatal). */
  badRows = 0;
  badRowExample: string | undefined;
  private readonly gridUs: number[] = [];

  constructor(private readonly input: BookHourInput) {
    const { hourStartUs, bookIntervalUs } = input;
    invariant(HOUR_US % bookIntervalUs === 0, `book interval ${bookIntervalUs} µs does not divide an hour`);
    for (let t = hourStartUs + bookIntervalUs; t <= hourStartUs + HOUR_US; t += bookIntervalUs) this.gridUs.push(t);
  }

  /** Replays one market's hour; returns its book at the end (undefined while unknown). */
  market(ticker: string, start: MarketBook | undefined, deltas: string[][], snaps: string[][], trades: string[][]): MarketBook | undefined {
    let book = start;
    // The top of book last quoted (yes price, size, no price, size; -1: that side empty): numbers, not text, per change.
    const lastTop = [-1, -1, -1, -1];
    if (book) topChanged(book, lastTop);
    const breaks = this.input.gaps.breaksOf(ticker);
    const hourStart = this.input.hourStartUs;
    let di = 0;
    let si = 0;
    let ti = 0;
    let bi = 0;
    let gi = 0;
    const grid = this.gridUs;
    for (;;) {
      const t = Math.min(
        gi < grid.length ? grid[gi]! : Infinity,
        ti < trades.length ? Number(trades[ti]![1]) : Infinity,
        bi < breaks.length ? Math.max(hourStart, breaks[bi]!) : Infinity,
        di < deltas.length ? Number(deltas[di]![1]) : Infinity,
        si < snaps.length ? Number(snaps[si]![1]) : Infinity,
      );
      if (t === Infinity) break;
      while (gi < grid.length && grid[gi] === t) this.gridRow(ticker, book, t, gi++ === grid.length - 1);
      while (ti < trades.length && Number(trades[ti]![1]) === t) this.tradeRow(trades[ti++]!, book);
      while (bi < breaks.length && Math.max(hourStart, breaks[bi]!) === t) {
        bi++;
        if (book) book.chainGap = true;
      }
      let changed = false;
      // Snapshots that hold the deltas before t (next_delta_ts = t): before t's deltas.
      while (si < snaps.length && Number(snaps[si]![1]) === t && snaps[si]![6] === 't') {
        const next = this.snapshot(ticker, snaps[si++]!);
        if (!next) continue;
        book = next;
        changed = true;
      }
      while (di < deltas.length && Number(deltas[di]![1]) === t) {
        const d = deltas[di++]!;
        if (book) changed = this.applyDelta(ticker, book, d) || changed;
      }
      while (si < snaps.length && Number(snaps[si]![1]) === t) {
        const next = this.snapshot(ticker, snaps[si++]!);
        if (!next) continue;
        book = next;
        changed = true;
      }
      if (changed && book) {
        book.dirty = true;
        if (topChanged(book, lastTop)) this.quoteRow(ticker, t, book);
      }
    }
    return book;
  }

  /** A delta production should never hold (unknown side, bad decimal) is counted and breaks the chain. */
  private applyDelta(ticker: string, book: MarketBook, d: string[]): boolean {
    try {
      const side = d[2] === 'yes' ? book.yes : d[2] === 'no' ? book.no : undefined;
      if (!side) throw new KdpError('KDP_ERR_MSG_SHAPE', `${ticker}: delta on unknown side ${JSON.stringify(d[2])}`);
      applyChange(side, micro(d[3]!), micro(d[4]!));
      return true;
    } catch (err) {
      this.badRow(err, ticker);
      book.chainGap = true;
      return false;
    }
  }

  /** The book of a snapshot row, or undefined (counted) when the row is unreadable: the chain goes on. */
  private snapshot(ticker: string, row: string[]): MarketBook | undefined {
    try {
      return bookFromSnapshot(row, ticker);
    } catch (err) {
      this.badRow(err, ticker);
      return undefined;
    }
  }

  private badRow(err: unknown, ticker: string): void {
    if (!(err instanceof KdpError) && !(err instanceof SyntaxError)) throw err;
    this.badRows++;
    this.badRowExample ??= `${ticker}: ${(err as Error).message}`;
  }

  private quoteRow(ticker: string, t: number, book: MarketBook): void {
    if (book.chainGap) this.chainGapRows++;
    this.input.out.quotes.line([ticker, String(t), ...topFields(book), String(book.anchorSnapshotTs), book.anchorGatherer, String(book.chainGap)]);
  }

  private gridRow(ticker: string, book: MarketBook | undefined, t: number, hourEnd: boolean): void {
    if (!book || (!hourEnd && !book.dirty)) return;
    book.dirty = false;
    const fields: string[] = [ticker, String(t), hourEnd ? 'hour_end' : 'interval'];
    const yes = topLevels(book.yes, BOOK_LEVELS);
    const no = topLevels(book.no, BOOK_LEVELS);
    fields.push(String(yes.length), String(no.length));
    for (const side of [yes, no]) {
      for (let i = 0; i < BOOK_LEVELS; i++) {
        const l = side[i];
        fields.push(l ? String(l[0]) : '', l ? String(l[1]) : '');
      }
    }
    if (book.chainGap) this.chainGapRows++;
    fields.push(String(book.anchorSnapshotTs), book.anchorGatherer, String(book.chainGap));
    this.input.out.snapshots.line(fields);
  }

  private tradeRow(r: string[], book: MarketBook | undefined): void {
    // COPY text fields: ticker, exchange_ts, trade_id, yes_price, no_price, count, taker_side, source.
    const base = [r[2]!, r[0]!, r[1]!, String(micro(r[3]!)), String(micro(r[4]!)), String(micro(r[5]!)), unescapeCopyText(r[6]!) ?? '', r[7]!];
    if (!book) {
      this.input.out.trades.line([...base, '', '', '', '', '', '', '', '', 'false', 'false']);
      return;
    }
    const yb = best(book.yes);
    const nb = best(book.no);
    let mid = '';
    let spread = '';
    if (yb && nb) {
      const yesAsk = 1_000_000 - nb[0];
      mid = String((yb[0] + yesAsk) * 5);
      spread = String(yesAsk - yb[0]);
    }
    if (book.chainGap) this.chainGapRows++;
    this.input.out.trades.line([...base, ...topFields(book), mid, spread, 'true', String(book.chainGap)]);
  }

  /** Writes out buffered rows (after each market: a market's hour is the most ever buffered). */
  async drain(): Promise<void> {
    await Promise.all([this.input.out.quotes.drain(), this.input.out.snapshots.drain(), this.input.out.trades.drain()]);
  }
}

function topFields(book: MarketBook): string[] {
  const yb = best(book.yes);
  const nb = best(book.no);
  return [
    yb ? String(yb[0]) : '',
    yb ? String(yb[1]) : '',
    nb ? String(nb[0]) : '',
    nb ? String(nb[1]) : '',
    nb ? String(1_000_000 - nb[0]) : '',
    nb ? String(nb[1]) : '',
  ];
}

/** Whether the book's top differs from `last`; updates `last` to it. */
function topChanged(book: MarketBook, last: number[]): boolean {
  const yb = best(book.yes);
  const nb = best(book.no);
  const now = [yb?.[0] ?? -1, yb?.[1] ?? -1, nb?.[0] ?? -1, nb?.[1] ?? -1];
  let changed = false;
  for (let i = 0; i < 4; i++) {
    if (last[i] !== now[i]) changed = true;
    last[i] = now[i]!;
  }
  return changed;
}
