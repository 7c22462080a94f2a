// Recorded history read from a production database for `kdp replay`: the universe and books at
// the window's start (held in memory: one market definition and one book per market), then every
// recorded delta, trade, ticker and lifecycle message of the window in exchange-time order,
// streamed in keyset pages of `fetchRows` rows per table, so memory does not grow with the window.
// The universe, books and REST history are read in one short REPEATABLE READ transaction (one
// consistent snapshot); the pages are separate statements (see StreamSpec).
import type { Client } from 'pg';
import { KdpError } from '../core/errors';
import type { Logger } from '../core/log';
import type { ReplayDb } from './db';
import { reconstructBook } from '../ops/book';
import { LIFECYCLE_EVENTS, ORDERBOOK_DELTAS, quoteIdent, TICKERS, TRADES, type TimeSeriesTable } from '../schema/tables';
import type { Level, MarketStatus } from '../sim/truth';
import {
  deltaRecord,
  isoUs,
  lifecycleRecords,
  marketDef,
  statusAfter,
  tickerRecord,
  tradeRecord,
  wirePrice,
  wireSize,
  type LifecycleRow,
  type MarketRow,
  type Timed,
} from './records';

export interface ReplayWindow {
  /** Exclusive: the books are those at startUs, records follow with startUs < t <= endUs (µs). */
  readonly startUs: number;
  readonly endUs: number;
  /** null = every market. */
  readonly tickers: readonly string[] | null;
  /** REST history before the start: trades (at most tradesMax) and each market's last ticker from this long before startUs. */
  readonly historyUs: number;
  readonly tradesMax: number;
}

/**
 * Markets closed this long before the window are left out: Kalshi settles within hours of a close,
 * so none of them has anything left to send (their REST listing as `finalized` is lost).
 */
const CLOSED_LOOKBACK_US = 7 * 86_400_000_000;

export interface Universe {
  /** Applied before anyone connects: series, events, markets of startUs, their books (deltas from empty + a checkpoint). */
  readonly prime: Timed[];
  /** Markets created in the window and the silent opens and closes (status records), in time order. */
  readonly scheduled: Timed[];
  /** Status of each market served, as of the record last emitted (the stream keeps it current). */
  readonly status: Map<string, MarketStatus>;
  /** Open markets left out because no book could be anchored at startUs (KDP_ERR_BOOK_NO_ANCHOR). */
  readonly unanchored: string[];
  /** Closed (not trading) markets served with an empty book: none was recorded (gatherers do not subscribe closed markets). */
  readonly closedWithoutBook: string[];
  /** Markets open (active or paused) at startUs: the books a client subscribes to. */
  readonly openAtStart: string[];
}

const MARKETS_SQL = `
  SELECT ticker, event_ticker, series_ticker, price_level_structure, open_time::text, close_time::text, raw
    FROM markets
   WHERE ($1::text[] IS NULL OR ticker = ANY($1))
     AND (close_time IS NULL OR close_time >= $2)
   ORDER BY ticker`;

const STATUS_EVENTS_SQL = `
  SELECT ticker, event_type, payload
    FROM lifecycle_events
   WHERE channel = 'market_lifecycle_v2' AND ticker = ANY($1) AND COALESCE(sent_at, received_at) <= $2
   ORDER BY COALESCE(sent_at, received_at), fingerprint`;

/** Kalshi status of a market at `atUs` from its open and close times (no event marks either). */
function clockStatus(def: { open_us: number; close_us: number }, atUs: number): MarketStatus {
  if (def.open_us > atUs) return 'initialized';
  return def.close_us > 0 && def.close_us <= atUs ? 'closed' : 'active';
}

/** Reads the universe at the window's start; the client must be inside the replay's transaction. */
export async function loadUniverse(client: Client, w: ReplayWindow, log: Logger): Promise<Universe> {
  const rows = (await client.query(MARKETS_SQL, [w.tickers, w.startUs - CLOSED_LOOKBACK_US])).rows as MarketRow[];
  const status = new Map<string, MarketStatus>();
  for (const r of rows) status.set(r.ticker, clockStatus(marketDef(r, 'active'), w.startUs));
  const events = await client.query(STATUS_EVENTS_SQL, [rows.map((r) => r.ticker), w.startUs]);
  for (const e of events.rows) status.set(e.ticker, statusAfter(e.event_type, status.get(e.ticker)) ?? 'active');
  const prime: Timed[] = [];
  const scheduled: Timed[] = [];
  const kept: MarketRow[] = [];
  for (const r of rows) {
    const def = marketDef(r, status.get(r.ticker)!);
    if (def.created_us > w.endUs) continue;
    // Settled before the window: nothing of it is left to serve.
    if (def.status === 'finalized') continue;
    kept.push(r);
    if (def.created_us <= w.startUs) prime.push({ k: 'market', market: def, t: w.startUs });
    else {
      def.status = def.open_us <= def.created_us ? 'active' : 'initialized';
      status.set(r.ticker, def.status);
      scheduled.push({ k: 'market', market: def, t: def.created_us });
    }
    if (def.open_us > w.startUs && def.open_us <= w.endUs && def.open_us > def.created_us)
      scheduled.push({ k: 'status', m: r.ticker, status: 'active', t: def.open_us });
    if (def.close_us > w.startUs && def.close_us <= w.endUs) scheduled.push({ k: 'status', m: r.ticker, status: 'closed', t: def.close_us });
  }
  const keptTickers = new Set(kept.map((r) => r.ticker));
  for (const ticker of [...status.keys()]) if (!keptTickers.has(ticker)) status.delete(ticker);
  const registry = await registryRecords(client, kept, w.startUs);
  const books = await bookRecords(client, prime, w.startUs, log);
  const primed = new Set(prime.flatMap((r) => (r.k === 'market' && !books.unanchored.includes(r.market.ticker) ? [r.market.ticker] : [])));
  const history = await historyRecords(client, w, (m) => primed.has(m));
  for (const m of books.unanchored) status.delete(m);
  const primeKept = prime.filter((r) => r.k !== 'market' || !books.unanchored.includes(r.market.ticker));
  scheduled.sort((a, b) => a.t - b.t || (a.k === 'market' ? -1 : b.k === 'market' ? 1 : 0));
  const openAtStart = primeKept.flatMap((r) => (r.k === 'market' && (r.market.status === 'active' || r.market.status === 'inactive') ? [r.market.ticker] : []));
  return {
    prime: [...registry, ...primeKept, ...books.records, ...history],
    scheduled,
    status,
    unanchored: books.unanchored,
    closedWithoutBook: books.closed,
    openAtStart,
  };
}

/** Series and events of the markets served (all of them before the window: the registry keeps no history). */
async function registryRecords(client: Client, markets: readonly MarketRow[], atUs: number): Promise<Timed[]> {
  const out: Timed[] = [];
  const seriesTickers = [...new Set(markets.map((m) => m.series_ticker).filter((s): s is string => s !== null))];
  const eventTickers = [...new Set(markets.map((m) => m.event_ticker).filter((s): s is string => s !== null))];
  const series = await client.query(`SELECT series_ticker, title, category, frequency FROM series WHERE series_ticker = ANY($1) ORDER BY 1`, [seriesTickers]);
  for (const s of series.rows) {
    out.push({ k: 'series', series: { ticker: s.series_ticker, title: s.title ?? '', category: s.category ?? '', frequency: s.frequency ?? '' }, t: atUs });
  }
  const events = await client.query(`SELECT event_ticker, series_ticker, title, sub_title, raw FROM events WHERE event_ticker = ANY($1) ORDER BY 1`, [
    eventTickers,
  ]);
  const known = new Set<string>();
  for (const e of events.rows) {
    known.add(e.event_ticker);
    const def = {
      event_ticker: e.event_ticker,
      series_ticker: e.series_ticker ?? '',
      title: e.title ?? '',
      sub_title: e.sub_title ?? '',
      strike_date_us: isoUs(e.raw?.strike_date) ?? 0,
      created_us: 0,
    };
    out.push({ k: 'event', event: def, t: atUs });
  }
  // A market whose event row was never recorded still needs its event for REST /events/{ticker}.
  for (const e of eventTickers.filter((x) => !known.has(x))) {
    const series_ticker = markets.find((m) => m.event_ticker === e)?.series_ticker ?? '';
    out.push({ k: 'event', event: { event_ticker: e, series_ticker, title: e, sub_title: '', strike_date_us: 0, created_us: 0 }, t: atUs });
  }
  return out;
}

/**
 * Each primed market's book at atUs (src/ops/book.ts reconstructBook: anchored snapshot plus merged
 * deltas) as the deltas that build it from empty, then a checkpoint. A market not yet open has an
 * empty book; an open one with no anchor is left out of the replay (logged): guessing its book would
 * serve a wrong one. A closed one without is served with an empty book (it no longer trades, and
 * gatherers record no book of a market closed when they subscribe).
 */
async function bookRecords(
  client: Client,
  prime: readonly Timed[],
  atUs: number,
  log: Logger,
): Promise<{ records: Timed[]; unanchored: string[]; closed: string[] }> {
  const records: Timed[] = [];
  const unanchored: string[] = [];
  const closed: string[] = [];
  for (const r of prime) {
    if (r.k !== 'market' || r.market.status === 'initialized') continue;
    const ticker = r.market.ticker;
    let book;
    try {
      book = await reconstructBook(client, ticker, atUs);
    } catch (err) {
      if (!(err instanceof KdpError) || err.code !== 'KDP_ERR_BOOK_NO_ANCHOR') throw err;
      const trading = r.market.status === 'active' || r.market.status === 'inactive';
      (trading ? unanchored : closed).push(ticker);
      continue;
    }
    const levels = (side: 'yes' | 'no'): Level[] => book[side].map((l): Level => [wirePrice(l.price), wireSize(l.size)]).reverse();
    for (const side of ['yes', 'no'] as const) {
      for (const [p, d] of levels(side)) records.push({ k: 'delta', m: ticker, side, p, d, t: atUs });
    }
    records.push({ k: 'book', m: ticker, yes: levels('yes'), no: levels('no'), t: atUs });
  }
  if (unanchored.length > 0) {
    log.warn(
      { code: 'KDP_ERR_BOOK_NO_ANCHOR', markets: unanchored.length, examples: unanchored.slice(0, 10) },
      'markets left out of the replay: no book at the start',
    );
  }
  return { records, unanchored, closed };
}

const HISTORY_TRADES_SQL = `
  SELECT * FROM (
    SELECT ticker, trade_id::text, yes_price::text, no_price::text, count::text, taker_side, taker_outcome_side, taker_book_side,
           is_block_trade, exchange_ts::text AS t FROM trades
     WHERE exchange_ts > $1 AND exchange_ts <= $2 AND ($3::text[] IS NULL OR ticker = ANY($3))
     ORDER BY exchange_ts DESC, trade_id DESC LIMIT $4) x
   ORDER BY t::bigint, trade_id`;

const HISTORY_TICKERS_SQL = `
  SELECT DISTINCT ON (ticker) ticker, price::text, yes_bid::text, yes_ask::text, yes_bid_size::text, yes_ask_size::text,
         last_trade_size::text, volume::text, open_interest::text, dollar_volume::text, dollar_open_interest::text, exchange_ts::text AS t
    FROM tickers
   WHERE exchange_ts > $1 AND exchange_ts <= $2 AND ($3::text[] IS NULL OR ticker = ANY($3))
   ORDER BY ticker, exchange_ts DESC, fingerprint DESC, occurrence DESC`;

/**
 * What REST shows of the time before the start (never sent on the WebSocket: primed): the newest
 * trades (GET /markets/trades, a gatherer's backfill of a gap right after the start, the last
 * price) and each market's last ticker (volume and open interest in GET /markets).
 */
async function historyRecords(client: Client, w: ReplayWindow, served: (ticker: string) => boolean): Promise<Timed[]> {
  const params = [w.startUs - w.historyUs, w.startUs, w.tickers];
  const trades = (await client.query(HISTORY_TRADES_SQL, [...params, w.tradesMax])).rows.filter((r) => served(r.ticker)).map((r) => tradeRecord(r));
  const tickers = (await client.query(HISTORY_TICKERS_SQL, params)).rows.filter((r) => served(r.ticker)).map((r) => tickerRecord(r));
  return [...trades, ...tickers];
}

// ---------------- the window's records, streamed ----------------

/**
 * One table's rows of the window, read by keyset pages on production's primary key (each page is
 * its own short statement: a replay at real time runs for hours, and an open transaction or cursor
 * would hold production's xmin horizon and its ACCESS SHARE locks that long; partition upkeep
 * waiting behind them would queue the deduplicator's inserts). Lifecycle events have no time in
 * their key: their pages are ordered by time, fingerprint, event type (a small, unpartitioned table).
 */
interface StreamSpec {
  readonly table: string;
  /** Content columns, as text where numeric. */
  readonly select: string;
  /** The time expression, then the rest of the key, with their types (pages restart after the last key). */
  readonly key: ReadonlyArray<readonly [expr: string, type: string]>;
  /** Lifecycle: event_lifecycle rows name no market, only their event. */
  readonly withEvents?: true;
}

// Qualified: a bare name in ORDER BY means the output column, and `price::text AS price` sorted as
// text, which neither follows the index nor agrees with the keyset's numeric row comparison
// (EXPLAIN: a sort of every row after the key on each page; 4,300 instead of ~60,000 records/s).
const keyOf = (t: TimeSeriesTable): Array<[string, string]> =>
  t.productionKey.map((name) => [`${t.name}.${quoteIdent(name)}`, t.columns.find((c) => c.name === name)!.type]);

const STREAMS: readonly StreamSpec[] = [
  {
    table: 'lifecycle_events',
    select: 'channel, ticker, event_ticker, event_type, payload',
    key: [['COALESCE(sent_at, received_at)', 'bigint'], ...keyOf(LIFECYCLE_EVENTS)],
    withEvents: true,
  },
  { table: 'orderbook_deltas', select: 'ticker, side, price::text, delta::text', key: keyOf(ORDERBOOK_DELTAS) },
  {
    table: 'trades',
    select: 'ticker, trade_id::text, yes_price::text, no_price::text, count::text, taker_side, taker_outcome_side, taker_book_side, is_block_trade',
    key: keyOf(TRADES),
  },
  {
    table: 'tickers',
    select:
      'ticker, price::text, yes_bid::text, yes_ask::text, yes_bid_size::text, yes_ask_size::text, last_trade_size::text, volume::text, open_interest::text, dollar_volume::text, dollar_open_interest::text',
    key: keyOf(TICKERS),
  },
];

/** A page: $1 start, $2 end, $3 tickers, then the last key's values (after the first page), then the event tickers. */
function pageSql(s: StreamSpec, after: boolean, limit: number): string {
  const time = s.key[0]![0];
  const keyList = s.key.map(([e]) => e).join(', ');
  const keyText = s.key.map(([e], i) => `${e}::text AS k${i}`).join(', ');
  const afterKey = after ? ` AND (${keyList}) > (${s.key.map(([, type], i) => `$${4 + i}::${type}`).join(', ')})` : '';
  const ev = `$${after ? 4 + s.key.length : 4}`;
  const markets = s.withEvents
    ? `($3::text[] IS NULL OR ticker = ANY($3) OR (ticker IS NULL AND event_ticker = ANY(${ev})))`
    : '($3::text[] IS NULL OR ticker = ANY($3))';
  return `SELECT ${s.select}, ${time}::text AS t, ${keyText} FROM ${s.table}
           WHERE ${time} > $1 AND ${time} <= $2 AND ${markets}${afterKey}
           ORDER BY ${keyList} LIMIT ${limit}`;
}

type Row = Record<string, unknown> & { t: string };

/** One table's stream, read a page at a time; its head is read without awaiting while rows are buffered. */
class PagedStream {
  private rows: Row[] = [];
  private i = 0;
  private done = false;
  private last: unknown[] | null = null;
  /** Time of the head row (Infinity at the end). */
  headT = Infinity;
  constructor(
    private readonly db: ReplayDb,
    private readonly spec: StreamSpec,
    private readonly params: readonly unknown[],
    private readonly events: readonly string[],
    private readonly pageRows: number,
  ) {}
  /** True when the head must be fetched first. */
  empty(): boolean {
    return this.i >= this.rows.length && !this.done;
  }
  async fetch(): Promise<void> {
    const params = [...this.params, ...(this.last ?? []), ...(this.spec.withEvents ? [this.events] : [])];
    this.rows = await this.db.query<Row>(pageSql(this.spec, this.last !== null, this.pageRows), params);
    this.i = 0;
    if (this.rows.length < this.pageRows) this.done = true;
    const tail = this.rows[this.rows.length - 1];
    if (tail) this.last = this.spec.key.map((_k, i) => tail[`k${i}`]);
    this.setHead();
  }
  take(): Row {
    const row = this.rows[this.i++]!;
    this.setHead();
    return row;
  }
  private setHead(): void {
    const row = this.rows[this.i];
    this.headT = row === undefined ? Infinity : Number(row.t);
  }
}

export interface StreamStats {
  /** Records of markets outside the served universe (unanchored, filtered, unknown to the registry). */
  skippedUnknownMarket: number;
  /** Lifecycle rows the server cannot send (types the platform keeps whole as 'unknown'). */
  skippedUnsendable: number;
}

export interface StreamOptions {
  /** Rows per page and table. */
  readonly pageRows: number;
  /**
   * Records handed over per step (at most the feed's capacity): one await per batch, not per
   * record (500,000 deltas to one reader in the same process, load ~5.5: 56k -> 62k records/s at 512).
   */
  readonly batchMax: number;
}

async function openStreams(db: ReplayDb, w: ReplayWindow, u: Universe, pageRows: number): Promise<PagedStream[]> {
  const eventTickers = [...new Set([...u.prime, ...u.scheduled].flatMap((r) => (r.k === 'market' ? [r.market.event_ticker] : [])))];
  const streams: PagedStream[] = [];
  for (const s of STREAMS) {
    const stream = new PagedStream(db, s, [w.startUs, w.endUs, w.tickers], eventTickers, pageRows);
    await stream.fetch();
    streams.push(stream);
  }
  return streams;
}

/**
 * The window's records in exchange-time order, in batches: scheduled records (creations, silent
 * opens and closes) first among equal times, then lifecycle, deltas, trades, tickers. A market
 * created in the window is announced (its `market` record) before its first record whatever the
 * times say.
 */
export async function* streamWindow(db: ReplayDb, w: ReplayWindow, u: Universe, o: StreamOptions, stats: StreamStats): AsyncGenerator<Timed[]> {
  const streams = await openStreams(db, w, u, o.pageRows);
  const pendingMarkets = new Map<string, Timed>();
  for (const r of u.scheduled) if (r.k === 'market') pendingMarkets.set(r.market.ticker, r);
  let next = 0;
  const convert = [
    (r: Row) => lifecycleRecords(r as unknown as LifecycleRow, (m) => u.status.get(m)),
    (r: Row) => [deltaRecord(r as never)],
    (r: Row) => [tradeRecord(r as never)],
    (r: Row) => [tickerRecord(r as never)],
  ];
  let batch: Timed[] = [];
  for (;;) {
    for (const c of streams) if (c.empty()) await c.fetch();
    let best = -1;
    let bestT = u.scheduled[next]?.t ?? Infinity;
    if (bestT < Infinity) best = 0;
    for (let i = 0; i < streams.length; i++) if (streams[i]!.headT < bestT) [best, bestT] = [i + 1, streams[i]!.headT];
    if (best < 0) break;
    const recs = best === 0 ? [u.scheduled[next++]!] : convert[best - 1]!(streams[best - 1]!.take());
    if (recs === null) stats.skippedUnsendable++;
    for (const rec of recs ?? []) for (const out of emit(rec, u, pendingMarkets, stats)) batch.push(out);
    if (batch.length >= o.batchMax) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
}

function* emit(rec: Timed, u: Universe, pending: Map<string, Timed>, stats: StreamStats): Generator<Timed> {
  if (rec.k === 'market') {
    // Announced early (below) or a creation of a market the stream never mentioned before.
    if (!pending.delete(rec.market.ticker)) return;
    yield rec;
    return;
  }
  const m = 'm' in rec ? rec.m : undefined;
  if (m !== undefined) {
    const early = pending.get(m);
    if (early) {
      pending.delete(m);
      yield { ...early, t: rec.t };
    }
    if (!u.status.has(m)) {
      stats.skippedUnknownMarket++;
      return;
    }
    if (rec.k === 'status') u.status.set(m, rec.status);
  }
  yield rec;
}
