// Coverage certificates (`kdp coverage`, and the archiver beside each archived hour): per market
// and hour of the platform's receive clock, how much of the hour some gatherer recorded with no
// ledgered break, every gap with how it was recovered, which gatherers delivered each table
// (production's delivered_by), and a grade. The rule and its limits: docs/semantics.md
// "Coverage certificates".
import type { ClientBase } from 'pg';
import { KdpError } from '../core/errors';
import { TIME_SERIES_TABLES, quoteIdent, type TimeSeriesTable } from '../schema/tables';
import { intersect, lengthOf, subtract, union, type Interval } from './intervals';

export const HOUR_US = 3_600_000_000;
/** A certificate run covers at most a week of hours (each hour reads the hour's rows once). */
export const COVERAGE_RANGE_MAX_US = 7 * 24 * HOUR_US;
/** Certificates held in memory by one call (~1 KiB each): 40,000 markets x 5 hours. */
export const COVERAGE_CERTIFICATES_MAX = 200_000;
/**
 * A gatherer's first/last row of an hour this close to the hour's edge counts as recording from
 * that edge: a live feed delivers tickers and deltas of some market many times a minute, so a
 * first row 2 s into the hour is timing, not an outage (outages are in the ledger).
 */
export const EDGE_SNAP_US = 60_000_000;

export type Grade = 'complete' | 'recovered' | 'incomplete';

export interface CertificateGap {
  readonly gatherer: string;
  readonly gapId: string;
  readonly kind: string;
  readonly windowStartUs: number;
  readonly windowEndUs: number | null;
  readonly recovered: boolean;
  readonly recoveryMethod: string | null;
  /** recovery_method when recovered; else 'other_gatherer' when another gatherer recorded all of its window in the hour; else 'none'. */
  readonly how: string;
}

export interface TableDelivery {
  readonly rows: number;
  /** Rows delivered by exactly one gatherer. */
  readonly singleCopy: number;
  /** Rows merged before per-row provenance (delivered_by NULL). */
  readonly unknown: number;
  readonly byGatherer: Record<string, number>;
}

export interface CoverageCertificate {
  readonly ticker: string;
  readonly hourStartUs: number;
  readonly hour: string;
  /** The part of the hour certified: the hour ∩ the market's open..close ∩ the gatherers' recording. */
  readonly windowStartUs: number | null;
  readonly windowEndUs: number | null;
  readonly windowSeconds: number;
  readonly coveredSeconds: number;
  /** Stretches no gatherer recorded without a ledgered break [fromUs, toUs). */
  readonly uncovered: readonly Interval[];
  readonly gatherersRecording: readonly string[];
  readonly gaps: readonly CertificateGap[];
  readonly tables: Record<string, TableDelivery>;
  /**
   * REST snapshot vs the book rebuilt from the WebSocket chain (production's book_drift, written by
   * kdp maintain): REST snapshots of the market received in the hour per verdict; null when none
   * was compared (yet).
   */
  readonly bookAgreement: BookAgreement | null;
  readonly grade: Grade;
  readonly gradeReason: string;
}

export interface BookAgreement {
  readonly compared: number;
  readonly match: number;
  readonly mismatch: number;
  /** no_anchor, untrusted, unreadable: REST snapshots that could not be judged. */
  readonly notJudged: number;
}

export interface CertificateRange {
  readonly fromUs: number;
  readonly toUs: number;
  readonly tickers?: readonly string[] | undefined;
}

interface LedgerRow {
  gatherer: string;
  gap_id: string;
  kind: string;
  tickers: string[];
  window_start: string;
  window_end: string | null;
  recovered_at: string | null;
  recovered: boolean;
  recovery_method: string | null;
}

/** Time-column slack around the range: a row's exchange time trails its receipt by the exchange's clock lag (up to 141 s measured under load). */
const EXCHANGE_LAG_SLACK_US = 300_000_000;

/** The hours of the range, aligned. */
function hoursOf({ fromUs, toUs }: CertificateRange): number[] {
  const out: number[] = [];
  for (let h = Math.floor(fromUs / HOUR_US) * HOUR_US; h < toUs; h += HOUR_US) out.push(h);
  return out;
}

interface Bits {
  readonly names: readonly string[];
  readonly bits: readonly number[];
}

/**
 * One pass over a table's rows of the range, grouped by (ticker, hour of the time column, hour of
 * receipt): row counts, single copies, unknown provenance, and per gatherer bit its rows and its
 * first/last receive time. A row is a gatherer's when its bit is set; rows merged before migration
 * 4 count for their `gatherer` column.
 */
function tableScanSql(t: TimeSeriesTable, bits: Bits): string {
  const time = quoteIdent(t.timeColumn);
  const mine = (i: number): string =>
    `(x.delivered_by & ${1n << BigInt(bits.bits[i]!)}::bigint <> 0 OR (x.delivered_by IS NULL AND x.gatherer = ${literal(bits.names[i]!)}))`;
  const per = bits.names.map(
    (_, i) =>
      `count(*) FILTER (WHERE ${mine(i)} AND x.${time} >= $1 AND x.${time} < $2)::int AS n${i}, ` +
      `min(x.received_at) FILTER (WHERE ${mine(i)})::float8 AS lo${i}, max(x.received_at) FILTER (WHERE ${mine(i)})::float8 AS hi${i}`,
  );
  return `SELECT x.ticker, (x.${time} / ${HOUR_US}) * ${HOUR_US} AS hour, (x.received_at / ${HOUR_US}) * ${HOUR_US} AS rhour,
    count(*) FILTER (WHERE x.${time} >= $1 AND x.${time} < $2)::int AS n,
    count(*) FILTER (WHERE x.delivered_by & (x.delivered_by - 1) = 0 AND x.${time} >= $1 AND x.${time} < $2)::int AS single,
    count(*) FILTER (WHERE x.delivered_by IS NULL AND x.${time} >= $1 AND x.${time} < $2)::int AS unknown${per.map((p) => ',\n    ' + p).join('')}
    FROM ${t.name} x
    WHERE x.${time} >= $1::bigint - ${EXCHANGE_LAG_SLACK_US} AND x.${time} < $2::bigint + ${EXCHANGE_LAG_SLACK_US} AND x.ticker IS NOT NULL
    GROUP BY 1, 2, 3`;
}

const literal = (text: string): string => `'${text.replace(/'/g, "''")}'`;

interface Scan {
  /** (hour of receipt) -> gatherer -> first/last receive time of its rows (any market). */
  readonly spans: Map<number, Map<string, Interval>>;
  /** `${table} ${ticker} ${hour}` -> rows. */
  readonly deliveries: Map<string, TableDelivery>;
}

/**
 * Reads each table's rows of the range once, every market's: a gatherer's recording spans come
 * from all its rows, so a certificate does not depend on which markets were asked for.
 */
async function scanTables(client: ClientBase, r: CertificateRange, bits: Bits): Promise<Scan> {
  const spans = new Map<number, Map<string, Interval>>();
  const deliveries = new Map<string, TableDelivery>();
  const fromHour = Math.floor(r.fromUs / HOUR_US) * HOUR_US;
  for (const t of TIME_SERIES_TABLES) {
    const q = await client.query(tableScanSql(t, bits), [fromHour, r.toUs]);
    for (const row of q.rows as Record<string, number | string | null>[]) {
      const hour = Number(row.hour);
      const rhour = Number(row.rhour);
      const key = `${t.name} ${row.ticker} ${hour}`;
      const d = deliveries.get(key) ?? { rows: 0, singleCopy: 0, unknown: 0, byGatherer: {} };
      const byGatherer: Record<string, number> = { ...d.byGatherer };
      bits.names.forEach((name, i) => {
        const n = Number(row[`n${i}`]);
        if (n > 0) byGatherer[name] = (byGatherer[name] ?? 0) + n;
        const lo = row[`lo${i}`];
        const hi = row[`hi${i}`];
        // Lifecycle rows carry receipt time only; every market's rows count for liveness.
        if (lo === null || hi === null || rhour < fromHour || rhour >= r.toUs) return;
        const m = spans.get(rhour) ?? new Map<string, Interval>();
        const old = m.get(name);
        m.set(name, old ? [Math.min(old[0], Number(lo)), Math.max(old[1], Number(hi))] : [Number(lo), Number(hi)]);
        spans.set(rhour, m);
      });
      const total = { rows: d.rows + Number(row.n), singleCopy: d.singleCopy + Number(row.single), unknown: d.unknown + Number(row.unknown), byGatherer };
      if (total.rows > 0 && (!r.tickers || r.tickers.includes(String(row.ticker)))) deliveries.set(key, total);
    }
  }
  return { spans, deliveries };
}

const baseName = (ledgerGatherer: string): string => ledgerGatherer.split('@')[0]!;
const gapInterval = (g: LedgerRow, openEndUs: number): Interval => [Number(g.window_start), g.window_end === null ? openEndUs : Number(g.window_end)];
const touches = (g: LedgerRow, ticker: string): boolean => g.tickers.length === 0 || g.tickers.includes(ticker);

interface HourContext {
  readonly hourStartUs: number;
  readonly range: CertificateRange;
  readonly spans: Map<string, Interval>;
  readonly ledger: readonly LedgerRow[];
  readonly tables: Record<string, TableDelivery>;
  readonly agreement?: BookAgreement | undefined;
}

/** One market's certificate for one hour (pure). */
export function certifyMarketHour(ticker: string, market: MarketTimes, h: HourContext): CoverageCertificate {
  const hour: Interval = [Math.max(h.hourStartUs, h.range.fromUs), Math.min(h.hourStartUs + HOUR_US, h.range.toUs)];
  const snapped = new Map<string, Interval>();
  for (const [g, [a, b]] of h.spans) snapped.set(g, [a - hour[0] <= EDGE_SNAP_US ? hour[0] : a, hour[1] - b <= EDGE_SNAP_US ? hour[1] : b]);
  const recording = union([...snapped.values()]);
  const open: Interval = [
    Math.max(hour[0], market.openUs ?? hour[0], recording[0]?.[0] ?? hour[1]),
    Math.min(hour[1], market.closeUs ?? hour[1], recording.at(-1)?.[1] ?? hour[0]),
  ];
  const window = open[1] > open[0] ? open : null;
  const mine = h.ledger.filter((g) => touches(g, ticker) && gapInterval(g, hour[1])[0] < hour[1] && gapInterval(g, hour[1])[1] > hour[0]);
  const perGatherer = [...snapped].map(([g, span]) =>
    subtract(
      [span],
      mine.filter((x) => baseName(x.gatherer) === g).map((x) => gapInterval(x, hour[1])),
    ),
  );
  const covered = window ? intersect(union(perGatherer.flat()), window) : [];
  const uncovered = window ? subtract([window], covered) : [];
  const gaps = mine.map((g): CertificateGap => {
    const w = gapInterval(g, hour[1]);
    const lostHere = window ? lengthOf(intersect(subtract([w], covered), window)) : 0;
    return {
      gatherer: g.gatherer,
      gapId: g.gap_id,
      kind: g.kind,
      windowStartUs: Number(g.window_start),
      windowEndUs: g.window_end === null ? null : Number(g.window_end),
      recovered: g.recovered,
      recoveryMethod: g.recovery_method,
      how: g.recovered ? (g.recovery_method ?? 'recovered') : lostHere === 0 ? 'other_gatherer' : 'none',
    };
  });
  const { grade, reason } = gradeOf(gaps, uncovered, mine, hour[1]);
  return {
    ticker,
    hourStartUs: h.hourStartUs,
    hour: new Date(h.hourStartUs / 1000).toISOString(),
    windowStartUs: window?.[0] ?? null,
    windowEndUs: window?.[1] ?? null,
    windowSeconds: window ? (window[1] - window[0]) / 1e6 : 0,
    coveredSeconds: lengthOf(covered) / 1e6,
    uncovered,
    gatherersRecording: [...h.spans.keys()].sort(),
    gaps,
    tables: h.tables,
    bookAgreement: h.agreement ?? null,
    grade,
    gradeReason: reason,
  };
}

/**
 * complete: no gap touches the market in the hour and some gatherer recorded all of it.
 * recovered: gaps, but every stretch no gatherer recorded lies in a gap that was recovered.
 * incomplete: a stretch no gatherer recorded that no recovered gap explains (an open gap, or none).
 */
function gradeOf(
  gaps: readonly CertificateGap[],
  uncovered: readonly Interval[],
  mine: readonly LedgerRow[],
  openEndUs: number,
): { grade: Grade; reason: string } {
  const recoveredWindows = mine.filter((g) => g.recovered).map((g) => gapInterval(g, openEndUs));
  const unexplained = lengthOf(subtract(uncovered, recoveredWindows));
  if (unexplained > 0) return { grade: 'incomplete', reason: `${(unexplained / 1e6).toFixed(3)} s recorded by no gatherer and not inside a recovered gap` };
  if (gaps.length === 0 && uncovered.length === 0) return { grade: 'complete', reason: 'no gap; recorded throughout' };
  const lost = lengthOf(uncovered);
  return {
    grade: 'recovered',
    reason:
      lost > 0
        ? `${gaps.length} gap(s); ${(lost / 1e6).toFixed(3)} s recorded by no gatherer, restored by its recovery (deltas of that stretch are lost)`
        : `${gaps.length} gap(s), every second recorded by some gatherer`,
  };
}

/**
 * The certificates of every market open in [fromUs, toUs) (or of `tickers`), one per market and
 * hour, sorted by hour then ticker. Plain JSON-able objects: the archiver writes them beside each
 * archived hour.
 */
export async function certificateFor(client: ClientBase, range: CertificateRange): Promise<CoverageCertificate[]> {
  if (!(range.toUs > range.fromUs)) throw new KdpError('KDP_ERR_USAGE', 'coverage range is empty: --to must be after --from');
  if (range.toUs - range.fromUs > COVERAGE_RANGE_MAX_US) throw new KdpError('KDP_ERR_USAGE', 'coverage range is longer than 7 days; ask for less');
  const listed = await client.query(
    `SELECT ticker, open_time::float8 AS open_us, close_time::float8 AS close_us FROM markets
     WHERE (open_time IS NULL OR open_time < $2) AND (close_time IS NULL OR close_time > $1) AND ($3::text[] IS NULL OR ticker = ANY($3))`,
    [range.fromUs, range.toUs, range.tickers ?? null],
  );
  const markets = new Map<string, MarketTimes>(
    (listed.rows as { ticker: string; open_us: number | null; close_us: number | null }[]).map((m) => [m.ticker, { openUs: m.open_us, closeUs: m.close_us }]),
  );
  if (markets.size * hoursOf(range).length > COVERAGE_CERTIFICATES_MAX) throw tooMany(markets.size, range);
  const ledger = await client.query(
    `SELECT gatherer, gap_id::text, kind, tickers, window_start::text, window_end::text, recovered_at::text, recovered, recovery_method
     FROM gap_ledger WHERE window_start < $2 AND (window_end IS NULL OR window_end > $1) ORDER BY window_start, gatherer, gap_id`,
    [range.fromUs, range.toUs],
  );
  const bitRows = await client.query(`SELECT gatherer, bit FROM gatherer_bits ORDER BY bit`);
  const bits = { names: bitRows.rows.map((b) => b.gatherer as string), bits: bitRows.rows.map((b) => Number(b.bit)) };
  const { spans, deliveries } = await scanTables(client, range, bits);
  const agreements = await bookAgreements(client, range);
  // A market with rows but no registry row yet (the registry syncs on its own interval) is
  // certified too, with its open and close unknown.
  for (const key of deliveries.keys()) {
    const ticker = key.split(' ')[1]!;
    if (!markets.has(ticker)) markets.set(ticker, { openUs: null, closeUs: null });
  }
  if (markets.size * hoursOf(range).length > COVERAGE_CERTIFICATES_MAX) throw tooMany(markets.size, range);
  const out: CoverageCertificate[] = [];
  const tickers = [...markets.keys()].sort();
  for (const hourStartUs of hoursOf(range)) {
    for (const ticker of tickers) {
      const tables: Record<string, TableDelivery> = {};
      for (const t of TIME_SERIES_TABLES) {
        const x = deliveries.get(`${t.name} ${ticker} ${hourStartUs}`);
        if (x) tables[t.name] = x;
      }
      const agreement = agreements.get(`${ticker} ${hourStartUs}`);
      const ctx = { hourStartUs, range, spans: spans.get(hourStartUs) ?? new Map(), ledger: ledger.rows as LedgerRow[], tables, agreement };
      out.push(certifyMarketHour(ticker, markets.get(ticker)!, ctx));
    }
  }
  return out;
}

interface MarketTimes {
  readonly openUs: number | null;
  readonly closeUs: number | null;
}

const tooMany = (markets: number, range: CertificateRange): KdpError =>
  new KdpError(
    'KDP_ERR_USAGE',
    `${markets} markets x ${hoursOf(range).length} hours is more than ${COVERAGE_CERTIFICATES_MAX} certificates; ask for fewer hours or markets`,
  );

/** book_drift verdicts per market and hour of the REST snapshot's receive time. */
async function bookAgreements(client: ClientBase, range: CertificateRange): Promise<Map<string, BookAgreement>> {
  const r = await client.query(
    `SELECT ticker, (snapshot_ts / ${HOUR_US}) * ${HOUR_US} AS h, count(*)::int AS compared,
            count(*) FILTER (WHERE verdict = 'match')::int AS match, count(*) FILTER (WHERE verdict = 'mismatch')::int AS mismatch
       FROM book_drift WHERE snapshot_ts >= $1 AND snapshot_ts < $2 AND ($3::text[] IS NULL OR ticker = ANY($3)) GROUP BY 1, 2`,
    [range.fromUs, range.toUs, range.tickers ?? null],
  );
  const out = new Map<string, BookAgreement>();
  for (const x of r.rows as { ticker: string; h: string; compared: number; match: number; mismatch: number }[]) {
    out.set(`${x.ticker} ${Number(x.h)}`, { compared: x.compared, match: x.match, mismatch: x.mismatch, notJudged: x.compared - x.match - x.mismatch });
  }
  return out;
}
