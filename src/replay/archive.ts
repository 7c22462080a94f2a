// `kdp replay --from-archive DIR`: the archive's Parquet hours (docs/archive.md) that a replay of
// the window needs are loaded into a scratch production database on a throw-away embedded
// PostgreSQL cluster, and the production replay serves from it: one book rebuild
// (src/ops/book.ts), one stream reader, one protocol server. The load goes through files
// (DuckDB writes CSV, PostgreSQL COPYs it in), so memory does not grow with the window; the
// scratch cluster's disk does, and is deleted when the replay stops.
// The archive holds no market registry: markets, events and their open and close times are
// rebuilt from what it does hold (docs/replay.md, "From the archive").
import { mkdtempSync, rmSync, createReadStream, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { DuckDBInstance } from '@duckdb/node-api';
import type { Client } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { hourStartOf, HOUR_US, partitionPath, tableLayout } from '../archive/layout';
import { KdpError } from '../core/errors';
import type { Logger } from '../core/log';
import { withClient } from '../core/pgclient';
import { PgCluster } from '../core/pgcluster';
import { migrate } from '../schema/migrate';
import { quoteIdent, TIME_SERIES_TABLES, type TimeSeriesTable } from '../schema/tables';

export interface ArchiveWindow {
  /** The store's root directory (a local store: `store.dir`) and its prefix (`store.prefix`, default raw). */
  readonly dir: string;
  readonly prefix: string;
  readonly startUs: number;
  readonly endUs: number;
  readonly tickers: readonly string[] | null;
  /** How far before the start books are anchored from (snapshots and deltas loaded). */
  readonly anchorLookbackUs: number;
  /** REST history before the start (trades, tickers), as the production replay's historyMs. */
  readonly historyUs: number;
}

const sqlString = (s: string): string => `'${s.replace(/'/g, "''")}'`;

/** The hours [fromUs, toUs] of one table that exist in the archive. */
function hourFiles(w: ArchiveWindow, table: string, fromUs: number, toUs: number): string[] {
  const out: string[] = [];
  for (let h = hourStartOf(fromUs); h <= toUs; h += HOUR_US) {
    const file = join(w.dir, partitionPath(w.prefix, table, h).objectKey);
    if (existsSync(file)) out.push(file);
  }
  return out;
}

/** First time each table is needed from: books back to the anchor lookback, REST history, lifecycle for status. */
function loadFromUs(w: ArchiveWindow, t: TimeSeriesTable): number {
  if (t.name === 'trades' || t.name === 'tickers') return w.startUs - w.historyUs;
  return w.startUs - w.anchorLookbackUs;
}

/** Copies one table's rows of the needed hours from Parquet into the scratch database; returns the row count. */
async function loadTable(duck: Awaited<ReturnType<DuckDBInstance['connect']>>, pg: Client, w: ArchiveWindow, t: TimeSeriesTable, csv: string): Promise<number> {
  const files = hourFiles(w, t.name, loadFromUs(w, t), w.endUs);
  if (files.length === 0) return 0;
  const layout = tableLayout(t);
  const cols = layout.columns.map((c) => quoteIdent(c.name));
  const time = quoteIdent(t.timeColumn);
  const tickers = w.tickers && t.columns.some((c) => c.name === 'ticker') ? ` AND ticker IN (${w.tickers.map(sqlString).join(', ')})` : '';
  const source = `read_parquet([${files.map(sqlString).join(', ')}])`;
  // Decimals as their exact text; NULL as an unquoted empty field, "" as a quoted one (PostgreSQL's CSV rule).
  const select = layout.columns.map((c) => (c.parquetType.startsWith('DECIMAL') ? `CAST(${quoteIdent(c.name)} AS VARCHAR)` : quoteIdent(c.name))).join(', ');
  await duck.run(
    `COPY (SELECT ${select} FROM ${source} WHERE ${time} > ${loadFromUs(w, t)} AND ${time} <= ${w.endUs}${tickers}) ` +
      `TO ${sqlString(csv)} (FORMAT csv, HEADER false, QUOTE '"', ESCAPE '"', NULLSTR '', FORCE_QUOTE *)`,
  );
  const sink = pg.query(copyFrom(`COPY ${t.name} (${cols.join(', ')}) FROM STDIN (FORMAT csv)`));
  await pipeline(createReadStream(csv), sink);
  return Number(sink.rowCount ?? 0);
}

/**
 * Markets and events the archive implies: every ticker it holds, its event from its `created`
 * message (else the ticker up to its last '-', Kalshi's event-market form), open and close times
 * and titles from that message; no series. Status then follows from the times and lifecycle
 * events as for production (src/replay/production.ts).
 */
const REGISTRY_SQL = [
  `INSERT INTO markets (ticker, event_ticker, series_ticker, status, price_level_structure, open_time, close_time, raw, updated_at)
   SELECT t.ticker,
          COALESCE(c.payload->'additional_metadata'->>'event_ticker', regexp_replace(t.ticker, '-[^-]*$', '')),
          NULL, 'active', NULL,
          (c.payload->>'open_ts')::bigint * 1000000, (c.payload->>'close_ts')::bigint * 1000000,
          jsonb_strip_nulls(jsonb_build_object(
            'ticker', t.ticker,
            'title', c.payload->'additional_metadata'->>'title',
            'yes_sub_title', c.payload->'additional_metadata'->>'yes_sub_title',
            'created_time', CASE WHEN c.at IS NULL THEN NULL ELSE to_char(to_timestamp(c.at / 1e6) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') END)),
          0
     FROM (SELECT ticker FROM orderbook_snapshots UNION SELECT ticker FROM orderbook_deltas UNION SELECT ticker FROM trades
           UNION SELECT ticker FROM tickers UNION SELECT ticker FROM lifecycle_events WHERE ticker IS NOT NULL) t
     LEFT JOIN LATERAL (SELECT payload, COALESCE(sent_at, received_at) AS at FROM lifecycle_events l
                         WHERE l.ticker = t.ticker AND l.event_type = 'created' ORDER BY 2 LIMIT 1) c ON true`,
  `INSERT INTO events (event_ticker, raw, updated_at) SELECT DISTINCT event_ticker, '{}'::jsonb, 0 FROM markets WHERE event_ticker IS NOT NULL`,
];

export interface ScratchProduction {
  readonly url: string;
  readonly rows: Record<string, number>;
  destroy(): Promise<void>;
}

/** Starts the scratch cluster and loads the window's hours; the caller destroys it. */
export async function loadArchive(w: ArchiveWindow, log: Logger): Promise<ScratchProduction> {
  if (!existsSync(w.dir)) throw new KdpError('KDP_ERR_USAGE', `--from-archive ${w.dir}: no such directory`);
  const work = mkdtempSync(join(tmpdir(), 'kdp-replay-archive-'));
  const cluster = await PgCluster.start();
  const destroy = async (): Promise<void> => {
    await cluster.destroy();
    rmSync(work, { recursive: true, force: true });
  };
  try {
    const url = await cluster.createDatabase('kdp_replay');
    const duck = await (
      await DuckDBInstance.create(':memory:', { autoinstall_known_extensions: 'false', autoload_known_extensions: 'false', temp_directory: work })
    ).connect();
    const rows: Record<string, number> = {};
    await withClient(url, async (c) => {
      await migrate(c, { kind: 'production', engine: 'postgres', nowUs: w.startUs });
      for (const t of TIME_SERIES_TABLES) rows[t.name] = await loadTable(duck, c, w, t, join(work, `${t.name}.csv`));
      for (const sql of REGISTRY_SQL) await c.query(sql);
      await c.query('ANALYZE');
    });
    duck.closeSync();
    log.info({ rows }, 'archive hours loaded into the scratch production database');
    return { url, rows, destroy };
  } catch (err) {
    await destroy();
    throw err;
  }
}
