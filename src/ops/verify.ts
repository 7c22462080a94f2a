// `kdp verify`: the "verify data integrity" routine as one command. Checks, over a window that ends
// `settleSeconds` before now (rows younger than that may legitimately still be on their way):
//   1. completeness: every distinct key each gatherer holds in the window is in production
//      (the keys are streamed gatherer -> production temp table with COPY, then anti-joined);
//   2. duplicates: the duplicate rate (rows in gatherers vs unique rows in production), and trades
//      present in production more than once under different exchange_ts;
//   3. REST snapshot coverage: share of open markets with a source='rest' snapshot in the window;
//   4. market coverage: open markets the exchange was active in that we hold no delta for
//      (stale): a trade in the window, or two REST snapshots in the window that differ. A quiet
//      market is not stale: most of the exchange's ~40,000 open markets are quiet for hours;
//   5. open gaps: gap-ledger entries not recovered and older than `gapAgeMinutes`.
// Any failed check is a named problem; the verdict is FAIL when there is at least one.
import { pipeline } from 'node:stream/promises';
import { Client } from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { classifyDbError, invariant } from '../core/errors';
import { redactUrl } from '../core/log';
import { resolveOptions, type Resolved, type Spec } from '../config/validate';
import { TIME_SERIES_TABLES, quoteIdent, type TimeSeriesTable } from '../schema/tables';

export const VERIFY_SPEC = {
  productionUrl: { kind: 'string', doc: 'production PostgreSQL URL', secret: true },
  gatherers: {
    kind: 'list',
    doc: 'gatherer databases to compare with production',
    item: {
      name: { kind: 'string', doc: 'gatherer name (g1, g2, ...)', pattern: /^[A-Za-z0-9_.-]+$/ },
      url: { kind: 'string', doc: 'gatherer PostgreSQL URL', secret: true },
    },
    default: [],
  },
  windowMinutes: {
    kind: 'int',
    doc: 'length of the checked window',
    default: 60,
    min: 1,
    max: 7 * 24 * 60,
  },
  settleSeconds: {
    kind: 'int',
    doc: 'newest seconds left out (normal merge lag)',
    default: 60,
    min: 0,
    max: 86_400,
  },
  gapAgeMinutes: {
    kind: 'int',
    doc: 'an unrecovered gap older than this is a problem',
    default: 15,
    min: 0,
  },
  minSnapshotCoverage: {
    kind: 'number',
    doc: 'required share of open markets with a REST snapshot',
    default: 0.9,
    min: 0,
    max: 1,
  },
  maxStaleMarkets: {
    kind: 'int',
    doc: 'open markets allowed with exchange activity in the window (a trade, a changed REST snapshot) but no delta',
    default: 0,
    min: 0,
  },
  nowUs: {
    kind: 'int',
    doc: 'the present in µs (tests); defaults to the clock',
    optional: true,
    min: 0,
  },
} as const satisfies Spec;
export type VerifyOptions = Resolved<typeof VERIFY_SPEC>;

export type ProblemKind = 'gatherer_unreachable' | 'missing_rows' | 'duplicate_trades' | 'snapshot_coverage' | 'stale_markets' | 'open_gaps';

export interface Problem {
  readonly kind: ProblemKind;
  readonly message: string;
}

export interface TableCheck {
  readonly table: string;
  readonly productionRows: number;
  /** Per gatherer: rows in the window, distinct keys, keys production lacks (with examples). */
  readonly gatherers: {
    name: string;
    rows: number;
    distinctKeys: number;
    missingInProduction: number;
    examples: string[];
  }[];
}

export interface VerifyReport {
  readonly verdict: 'PASS' | 'FAIL';
  readonly window: { fromUs: number; toUs: number };
  readonly problems: Problem[];
  readonly tables: TableCheck[];
  readonly duplicateRate: { gathererRows: number; productionRows: number; rate: number | null };
  readonly duplicateTrades: { count: number; examples: string[] };
  readonly snapshotCoverage: {
    openMarkets: number;
    covered: number;
    share: number | null;
    uncovered: string[];
  };
  readonly staleMarkets: { count: number; examples: string[] };
  readonly openGaps: { count: number; examples: string[] };
}

const EXAMPLES = 5;
/** Tables whose key time is the exchange's: their window counts compare across databases. */
const EXCHANGE_TIMED = new Set(['trades', 'orderbook_deltas', 'tickers']);

export function resolveVerifyOptions(raw: unknown): VerifyOptions {
  return resolveOptions(VERIFY_SPEC, raw, 'verify');
}

export async function runVerify(opts: VerifyOptions): Promise<VerifyReport> {
  const nowUs = opts.nowUs ?? Date.now() * 1000;
  const toUs = nowUs - opts.settleSeconds * 1_000_000;
  const fromUs = toUs - opts.windowMinutes * 60_000_000;
  const w = { fromUs, toUs };
  const problems: Problem[] = [];
  const prod = new Client({ connectionString: opts.productionUrl });
  await prod.connect().catch((err: unknown) => {
    throw classifyDbError(err);
  });
  try {
    const tables = await checkCompleteness(prod, opts, w, problems);
    const duplicateTrades = await checkDuplicateTrades(prod, w, problems);
    const snapshotCoverage = await checkSnapshotCoverage(prod, opts, w, problems);
    const staleMarkets = await checkStaleMarkets(prod, opts, w, problems);
    const openGaps = await checkOpenGaps(prod, opts, nowUs, problems);
    const gathererRows = sum(tables.filter((t) => EXCHANGE_TIMED.has(t.table)).flatMap((t) => t.gatherers.map((g) => g.rows)));
    const productionRows = sum(tables.filter((t) => EXCHANGE_TIMED.has(t.table)).map((t) => t.productionRows));
    const rate = gathererRows > 0 ? Math.max(0, 1 - productionRows / gathererRows) : null;
    return {
      verdict: problems.length === 0 ? 'PASS' : 'FAIL',
      window: w,
      problems,
      tables,
      duplicateRate: { gathererRows, productionRows, rate },
      duplicateTrades,
      snapshotCoverage,
      staleMarkets,
      openGaps,
    };
  } finally {
    await prod.end();
  }
}

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
type Window = { fromUs: number; toUs: number };

async function checkCompleteness(prod: Client, opts: VerifyOptions, w: Window, problems: Problem[]): Promise<TableCheck[]> {
  const checks: TableCheck[] = [];
  for (const t of TIME_SERIES_TABLES) {
    const r = await prod.query(`SELECT count(*)::bigint AS n FROM ${t.name} WHERE ${inWindow(t)}`, [w.fromUs, w.toUs]);
    checks.push({ table: t.name, productionRows: Number(r.rows[0].n), gatherers: [] });
  }
  for (const g of opts.gatherers) {
    const gc = new Client({ connectionString: g.url });
    try {
      await gc.connect();
    } catch (err) {
      problems.push({
        kind: 'gatherer_unreachable',
        message: `gatherer ${g.name} (${redactUrl(g.url)}): ${(err as Error).message}`,
      });
      continue;
    }
    try {
      for (const [i, t] of TIME_SERIES_TABLES.entries()) {
        const result = await compareTable(gc, prod, t, w);
        checks[i]!.gatherers.push({ name: g.name, ...result });
        if (result.missingInProduction > 0) {
          problems.push({
            kind: 'missing_rows',
            message:
              `production lacks ${result.missingInProduction} of gatherer ${g.name}'s ${result.distinctKeys} ${t.name} keys in the window` +
              ` (e.g. ${result.examples.join('; ')})`,
          });
        }
      }
    } finally {
      await gc.end();
    }
  }
  return checks;
}

const inWindow = (t: TimeSeriesTable): string => `${quoteIdent(t.timeColumn)} > $1 AND ${quoteIdent(t.timeColumn)} <= $2`;

function keyColumns(t: TimeSeriesTable) {
  return t.productionKey.map((name) => {
    const c = t.columns.find((x) => x.name === name);
    invariant(c, `${t.name}: key column ${name} is not a column`);
    return c;
  });
}

/** Streams one gatherer's distinct keys of the window into a production temp table and anti-joins. */
async function compareTable(gc: Client, prod: Client, t: TimeSeriesTable, w: Window) {
  const keys = keyColumns(t);
  const list = keys.map((c) => quoteIdent(c.name)).join(', ');
  const temp = `kdp_verify_${t.name}`;
  await prod.query(`CREATE TEMP TABLE IF NOT EXISTS ${temp} (${keys.map((c) => `${quoteIdent(c.name)} ${c.type}`).join(', ')})`);
  await prod.query(`TRUNCATE ${temp}`);
  const window = inWindow(t)
    .replace('$1', String(Math.trunc(w.fromUs)))
    .replace('$2', String(Math.trunc(w.toUs)));
  const source = gc.query(copyTo(`COPY (SELECT DISTINCT ${list} FROM ${t.name} WHERE ${window}) TO STDOUT`));
  const sink = prod.query(copyFrom(`COPY ${temp} (${list}) FROM STDIN`));
  await pipeline(source, sink);
  const rows = Number((await gc.query(`SELECT count(*)::bigint AS n FROM ${t.name} WHERE ${inWindow(t)}`, [w.fromUs, w.toUs])).rows[0].n);
  const match = keys.map((c) => `p.${quoteIdent(c.name)} = k.${quoteIdent(c.name)}`).join(' AND ');
  const missing = await prod.query(
    `SELECT count(*) OVER ()::bigint AS missing, ${keys.map((c) => `k.${quoteIdent(c.name)}::text AS ${quoteIdent(c.name)}`).join(', ')}
       FROM ${temp} k WHERE NOT EXISTS (SELECT 1 FROM ${t.name} p WHERE ${match})
      LIMIT ${EXAMPLES}`,
  );
  const distinct = Number((await prod.query(`SELECT count(*)::bigint AS n FROM ${temp}`)).rows[0].n);
  const missingCount = missing.rowCount ? Number(missing.rows[0].missing) : 0;
  const examples = missing.rows.map((r) => keys.map((c) => `${c.name}=${r[c.name]}`).join(' '));
  return { rows, distinctKeys: distinct, missingInProduction: missingCount, examples };
}

async function checkDuplicateTrades(prod: Client, w: Window, problems: Problem[]) {
  // A trade_id twice under different exchange_ts slips past the (exchange_ts, trade_id) key. Look an
  // hour beyond both window edges so a copy just outside the window is still found.
  const margin = 3_600_000_000;
  const r = await prod.query(
    `WITH ids AS (SELECT DISTINCT trade_id FROM trades WHERE exchange_ts > $1 AND exchange_ts <= $2),
          dup AS (SELECT t.trade_id, count(*) AS copies, string_agg(t.exchange_ts::text, ',' ORDER BY t.exchange_ts) AS ts
                    FROM trades t JOIN ids USING (trade_id)
                   WHERE t.exchange_ts > $1 - $3 AND t.exchange_ts <= $2 + $3
                   GROUP BY t.trade_id HAVING count(*) > 1)
     SELECT count(*) OVER ()::bigint AS n, trade_id::text, copies, ts FROM dup ORDER BY trade_id LIMIT ${EXAMPLES}`,
    [w.fromUs, w.toUs, margin],
  );
  const count = r.rowCount ? Number(r.rows[0].n) : 0;
  const examples = r.rows.map((x) => `trade_id=${x.trade_id} x${x.copies} at exchange_ts ${x.ts}`);
  if (count > 0) {
    problems.push({
      kind: 'duplicate_trades',
      message: `${count} trades appear more than once in production (e.g. ${examples.join('; ')})`,
    });
  }
  return { count, examples };
}

// Open markets that were already open when the window began (a market opened mid-window may
// not have been polled or traded yet).
const OPEN_MARKETS = `SELECT ticker FROM markets WHERE market_status = 'open' AND (open_time IS NULL OR open_time <= $1)`;

async function checkSnapshotCoverage(prod: Client, opts: VerifyOptions, w: Window, problems: Problem[]) {
  const r = await prod.query(
    `SELECT o.ticker, EXISTS (SELECT 1 FROM orderbook_snapshots s WHERE s.ticker = o.ticker AND s.source = 'rest'
                                 AND s.snapshot_ts > $1 AND s.snapshot_ts <= $2) AS covered
       FROM (${OPEN_MARKETS}) o ORDER BY o.ticker`,
    [w.fromUs, w.toUs],
  );
  const openMarkets = r.rowCount ?? 0;
  const uncoveredAll = r.rows.filter((x) => !x.covered).map((x) => x.ticker as string);
  const covered = openMarkets - uncoveredAll.length;
  const share = openMarkets > 0 ? covered / openMarkets : null;
  if (share !== null && share < opts.minSnapshotCoverage) {
    problems.push({
      kind: 'snapshot_coverage',
      message:
        `only ${covered} of ${openMarkets} open markets (${(share * 100).toFixed(1)} %) have a REST snapshot in the window, ` +
        `below ${(opts.minSnapshotCoverage * 100).toFixed(1)} % (e.g. ${uncoveredAll.slice(0, EXAMPLES).join(', ')})`,
    });
  }
  return { openMarkets, covered, share, uncovered: uncoveredAll.slice(0, EXAMPLES) };
}

/**
 * Stale: the exchange had activity in the market that our delta stream lacks. A trade always
 * comes with the book change it made (the taker's fill removes resting size: an orderbook_delta),
 * and two REST snapshots that differ mean the book moved; either with no delta in the window means
 * lost or frozen book data. No activity is not evidence of loss: a quiet market is not stale.
 */
async function checkStaleMarkets(prod: Client, opts: VerifyOptions, w: Window, problems: Problem[]) {
  const r = await prod.query(
    `WITH traded AS (SELECT DISTINCT ticker FROM trades WHERE exchange_ts > $1 AND exchange_ts <= $2),
     moved AS (
       SELECT DISTINCT ticker FROM (
         SELECT ticker, yes_levels, no_levels,
                lag(yes_levels) OVER w AS prev_yes, lag(no_levels) OVER w AS prev_no, row_number() OVER w AS k
           FROM orderbook_snapshots
          WHERE source = 'rest' AND snapshot_ts > $1 AND snapshot_ts <= $2
         WINDOW w AS (PARTITION BY ticker ORDER BY snapshot_ts)) s
        WHERE k > 1 AND (yes_levels IS DISTINCT FROM prev_yes OR no_levels IS DISTINCT FROM prev_no))
     SELECT count(*) OVER ()::bigint AS n, o.ticker,
            CASE WHEN o.ticker IN (SELECT ticker FROM traded) THEN 'traded' ELSE 'book moved' END AS evidence
       FROM (${OPEN_MARKETS}) o
      WHERE (o.ticker IN (SELECT ticker FROM traded) OR o.ticker IN (SELECT ticker FROM moved))
        AND NOT EXISTS (SELECT 1 FROM orderbook_deltas d WHERE d.ticker = o.ticker AND d.exchange_ts > $1 AND d.exchange_ts <= $2)
      ORDER BY o.ticker LIMIT ${EXAMPLES}`,
    [w.fromUs, w.toUs],
  );
  const count = r.rowCount ? Number(r.rows[0].n) : 0;
  const examples = r.rows.map((x) => `${x.ticker as string} (${x.evidence as string})`);
  if (count > opts.maxStaleMarkets) {
    problems.push({
      kind: 'stale_markets',
      message: `${count} open markets were active on the exchange in the window (a trade, or REST snapshots that differ) but have no order-book delta (e.g. ${examples.join(', ')})`,
    });
  }
  return { count, examples };
}

async function checkOpenGaps(prod: Client, opts: VerifyOptions, nowUs: number, problems: Problem[]) {
  const r = await prod.query(
    `SELECT count(*) OVER ()::bigint AS n, gatherer, gap_id, kind, array_to_string(tickers, ',') AS tickers, detected_at::text
       FROM gap_ledger WHERE NOT recovered AND detected_at < $1 ORDER BY detected_at LIMIT ${EXAMPLES}`,
    [nowUs - opts.gapAgeMinutes * 60_000_000],
  );
  const count = r.rowCount ? Number(r.rows[0].n) : 0;
  const examples = r.rows.map((x) => `${x.gatherer}#${x.gap_id} ${x.kind} [${x.tickers}] detected_at=${x.detected_at}`);
  if (count > 0) {
    problems.push({
      kind: 'open_gaps',
      message: `${count} gaps are unrecovered after more than ${opts.gapAgeMinutes} minutes (e.g. ${examples.join('; ')})`,
    });
  }
  return { count, examples };
}

export function formatVerifyReport(r: VerifyReport): string {
  const pct = (x: number | null) => (x === null ? 'n/a' : `${(x * 100).toFixed(1)} %`);
  const lines = [`window: exchange/snapshot time in (${r.window.fromUs}, ${r.window.toUs}] µs`, ''];
  for (const t of r.tables) {
    const per = t.gatherers.map((g) => `${g.name}=${g.distinctKeys}${g.missingInProduction ? ` (${g.missingInProduction} missing in production)` : ''}`);
    lines.push(`${t.table.padEnd(20)} production=${t.productionRows}${per.length ? '  ' + per.join('  ') : ''}`);
  }
  lines.push(
    '',
    `duplicate rate: ${pct(r.duplicateRate.rate)} (${r.duplicateRate.gathererRows} gatherer rows -> ${r.duplicateRate.productionRows} unique)`,
    `duplicated trades in production: ${r.duplicateTrades.count}`,
    `REST snapshot coverage: ${r.snapshotCoverage.covered}/${r.snapshotCoverage.openMarkets} open markets (${pct(r.snapshotCoverage.share)})`,
    `stale open markets: ${r.staleMarkets.count}`,
    `unrecovered old gaps: ${r.openGaps.count}`,
    '',
    `VERDICT: ${r.verdict}`,
    ...r.problems.map((p) => `  - [${p.kind}] ${p.message}`),
  );
  return lines.join('\n');
}
