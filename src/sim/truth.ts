// Ground truth: everything the simulated exchange did, as NDJSON (one JSON object per line).
// Exchange records (`n`, `t` present) depend only on seed and options; client records
// (`fault`, `client`) depend on who was connected and how fast they read. Format: docs/simulator.md.
import { closeSync, openSync, readFileSync, writeSync, createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { KdpError } from '../core/errors';

export const TRUTH_VERSION = 1;
export type Side = 'yes' | 'no';
export type MarketStatus = 'initialized' | 'inactive' | 'active' | 'closed' | 'determined' | 'finalized';
export type PriceStructure = 'linear_cent' | 'deci_cent';
/** A level: [price "0.4500", size "12.00"]. */
export type Level = [string, string];

export interface SeriesDef {
  ticker: string;
  title: string;
  category: string;
  frequency: string;
}
export interface EventDef {
  event_ticker: string;
  series_ticker: string;
  title: string;
  sub_title: string;
  strike_date_us: number;
  created_us: number;
}
export interface MarketDef {
  ticker: string;
  event_ticker: string;
  series_ticker: string;
  market_id: string;
  title: string;
  yes_sub_title: string;
  floor_strike: number;
  price_level_structure: PriceStructure;
  status: MarketStatus;
  created_us: number;
  open_us: number;
  close_us: number;
  /** The recorded REST market object (kdp replay): served with the state's fields over it. */
  raw?: Record<string, unknown>;
}

/** Common header of exchange records: n = exchange order (1, 2, ...), t = exchange time in µs. */
interface Exch {
  n: number;
  t: number;
}
export interface MetaRec {
  k: 'meta';
  version: number;
  source: 'sim' | 'replay' | 'capture';
  seed: number;
  start_us: number;
  options: Record<string, unknown>;
}
export interface SeriesRec extends Exch {
  k: 'series';
  series: SeriesDef;
}
export interface EventRec extends Exch {
  k: 'event';
  event: EventDef;
}
export interface MarketRec extends Exch {
  k: 'market';
  market: MarketDef;
}
export interface DeltaRec extends Exch {
  k: 'delta';
  m: string;
  side: Side;
  /** price "0.4500" */
  p: string;
  /** signed size change "-10.00" */
  d: string;
}
export interface TradeRec extends Exch {
  k: 'trade';
  m: string;
  trade_id: string;
  yes_price_dollars: string;
  no_price_dollars: string;
  count_fp: string;
  /** '' = not known (replayed history whose trade lacked the field: left out of the message). */
  taker_side: Side | '';
  taker_outcome_side: Side | '';
  taker_book_side: 'bid' | 'ask' | '';
  /** Replayed history only (the generator makes no block trades). */
  is_block_trade?: boolean;
}
export interface TickerRec extends Exch {
  k: 'ticker';
  m: string;
  price_dollars: string;
  yes_bid_dollars: string;
  yes_ask_dollars: string;
  yes_bid_size_fp: string;
  yes_ask_size_fp: string;
  last_trade_size_fp: string;
  volume_fp: string;
  open_interest_fp: string;
  dollar_volume: number;
  dollar_open_interest: number;
}
/** A `market_lifecycle_v2` message; `msg` is the wire payload exactly as sent. */
export interface LifecycleRec extends Exch {
  k: 'lifecycle';
  m: string;
  event_type: string;
  msg: Record<string, unknown>;
}
export interface EventLifecycleRec extends Exch {
  k: 'event_lifecycle';
  e: string;
  msg: Record<string, unknown>;
}
/** A market status change, including the silent ones (open at open_time, close at close_time). */
export interface StatusRec extends Exch {
  k: 'status';
  m: string;
  status: MarketStatus;
  close_us?: number;
  result?: Side;
}
export interface ExchangeRec extends Exch {
  k: 'exchange';
  exchange_active: boolean;
  trading_active: boolean;
}
/** Book checkpoint: the full book of one market at exchange time t (levels ascending). */
export interface BookRec extends Exch {
  k: 'book';
  m: string;
  yes: Level[];
  no: Level[];
}
/** Client-dependent records: t is the exchange clock when it happened, wall_ms the wall clock. */
export interface FaultRec {
  k: 'fault';
  t: number;
  wall_ms: number;
  kind: string;
  conn?: number;
  sid?: number;
  markets?: string[];
  seq?: number;
  until_us?: number;
  detail?: string;
  /** User-Agent of the connection's client (which gatherer held it). */
  client?: string;
}
export interface ClientRec {
  k: 'client';
  t: number;
  wall_ms: number;
  event: 'connect' | 'disconnect' | 'err25';
  conn: number;
  client?: string;
  sid?: number;
  buffered_bytes?: number;
}

export type ExchangeRecord =
  SeriesRec | EventRec | MarketRec | DeltaRec | TradeRec | TickerRec | LifecycleRec | EventLifecycleRec | StatusRec | ExchangeRec | BookRec;
export type TruthRecord = MetaRec | ExchangeRecord | FaultRec | ClientRec;
/** Exchange records without their order/time header, as the generator produces them. */
export type Draft = ExchangeRecord extends infer R ? (R extends ExchangeRecord ? Omit<R, 'n' | 't'> & { n?: number; t?: number } : never) : never;

export const EXCHANGE_KINDS: ReadonlySet<string> = new Set([
  'series',
  'event',
  'market',
  'delta',
  'trade',
  'ticker',
  'lifecycle',
  'event_lifecycle',
  'status',
  'exchange',
  'book',
]);
export const isExchangeRecord = (r: TruthRecord): r is ExchangeRecord => EXCHANGE_KINDS.has(r.k);

const FLUSH_BYTES = 1 << 20;

/** Appends NDJSON lines with large synchronous writes (ordered, nothing lost on stop). */
export class TruthWriter {
  private fd: number;
  private parts: string[] = [];
  private bytes = 0;
  constructor(readonly file: string) {
    this.fd = openSync(file, 'w');
  }
  write(rec: TruthRecord): void {
    const line = JSON.stringify(rec) + '\n';
    this.parts.push(line);
    this.bytes += line.length;
    if (this.bytes >= FLUSH_BYTES) this.flush();
  }
  flush(): void {
    if (this.parts.length === 0 || this.fd < 0) return;
    writeSync(this.fd, this.parts.join(''));
    this.parts = [];
    this.bytes = 0;
  }
  close(): void {
    if (this.fd < 0) return;
    this.flush();
    closeSync(this.fd);
    this.fd = -1;
  }
}

function parseLine(line: string, lineNo: number, file: string): TruthRecord {
  let rec: unknown;
  try {
    rec = JSON.parse(line);
  } catch (err) {
    throw new KdpError('KDP_ERR_MSG_JSON', `${file}:${lineNo}: not JSON`, { line: lineNo }, err);
  }
  if (typeof rec !== 'object' || rec === null || typeof (rec as { k?: unknown }).k !== 'string') {
    throw new KdpError('KDP_ERR_MSG_SHAPE', `${file}:${lineNo}: record without "k"`, { line: lineNo });
  }
  return rec as TruthRecord;
}

/** Reads a whole truth file into memory (tests, small runs). */
export function readTruth(file: string): TruthRecord[] {
  const out: TruthRecord[] = [];
  const lines = readFileSync(file, 'utf8').split('\n');
  lines.forEach((line, i) => {
    if (line.length > 0) out.push(parseLine(line, i + 1, file));
  });
  return out;
}

/** Streams a truth file record by record (large runs). */
export async function* streamTruth(file: string): AsyncGenerator<TruthRecord> {
  const rl = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  let lineNo = 0;
  for await (const line of rl) {
    lineNo++;
    if (line.length > 0) yield parseLine(line, lineNo, file);
  }
}
