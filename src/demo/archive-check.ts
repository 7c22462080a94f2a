// The demo's last archive pass: once the deduplicator has made its final merge, production is
// complete, so the hours of the run are closed (the archiver is told production is merged through
// the end of the current hour) and every tier is written; then the files are read back with DuckDB
// and checked against production: raw/ row counts per table, processed/trades and the candles'
// trade counts against production's trades.
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { exportOnce } from '../archive/archiver';
import { DERIVED_DATASETS } from '../archive/datasets';
import { HOUR_US, hourStartOf } from '../archive/layout';
import { ARCHIVE_SPEC, checkArchiveOptions } from '../archive/options';
import { openStore } from '../archive/store';
import { loadConfig } from '../config/load';
import { createLogger } from '../core/log';
import { withClient } from '../core/pgclient';
import { DAY_US, TIME_SERIES_TABLES } from '../schema/tables';

export interface ArchiveCheck {
  readonly ok: boolean;
  readonly lines: readonly string[];
}

/** count(*) and, when the column exists, sum(trade_count) over a dataset's files. */
async function readBack(files: readonly string[], sumColumn: string | undefined): Promise<{ rows: number; sum: number }> {
  if (files.length === 0) return { rows: 0, sum: 0 };
  const inst = await DuckDBInstance.create(':memory:', { autoinstall_known_extensions: 'false', autoload_known_extensions: 'false' });
  const conn = await inst.connect();
  try {
    const list = files.map((f) => `'${f.replace(/'/g, "''")}'`).join(', ');
    const sum = sumColumn ? `coalesce(sum(${sumColumn}), 0)::BIGINT` : '0::BIGINT';
    const r = await conn.runAndReadAll(`SELECT count(*)::BIGINT, ${sum} FROM read_parquet([${list}], hive_partitioning = false)`);
    const [rows, total] = r.getRows()[0]!;
    return { rows: Number(rows as bigint), sum: Number(total as bigint) };
  } finally {
    conn.closeSync();
    inst.closeSync();
  }
}

export async function finalArchivePass(configFile: string, productionUrl: string): Promise<ArchiveCheck> {
  const opts = loadConfig(ARCHIVE_SPEC, configFile);
  checkArchiveOptions(opts);
  // Daily candles exist only for days that closed: the trades before the last closed day's end.
  const dueEndUs = hourStartOf(Date.now() * 1000) + HOUR_US;
  const closedDaysEndUs = Math.floor(dueEndUs / DAY_US) * DAY_US;
  const stats = await exportOnce(opts, { log: createLogger('archive', { level: 'silent' }), mergedThroughUs: dueEndUs + opts.exportLagMs * 1000 });
  const counts = await withClient(productionUrl, async (c) => {
    const out: Record<string, number> = {};
    for (const t of TIME_SERIES_TABLES) out[t.name] = Number((await c.query(`SELECT count(*)::bigint AS n FROM ${t.name}`)).rows[0].n);
    out.tradesOfClosedDays = Number((await c.query(`SELECT count(*)::bigint AS n FROM trades WHERE exchange_ts < $1`, [closedDaysEndUs])).rows[0].n);
    return out;
  });
  // The demo's store is a local directory: its keys are paths under store.dir.
  const store = await openStore(opts.store);
  const parquetFiles = async (prefix: string): Promise<string[]> =>
    (await store.list(`${prefix}/`)).filter((k) => k.endsWith('.parquet')).map((k) => join(opts.store.dir, k));
  const lines = [
    `archive: last pass wrote ${stats.partitions} partitions, ${stats.rows} rows in ${(stats.elapsedMs / 1000).toFixed(1)} s; read back with DuckDB:`,
  ];
  let ok = true;
  const raw: string[] = [];
  for (const t of TIME_SERIES_TABLES) {
    const back = await readBack(await parquetFiles(`${opts.store.prefix}/${t.name}`), undefined);
    ok &&= back.rows === counts[t.name];
    raw.push(`${t.name} ${back.rows}${back.rows === counts[t.name] ? '' : ` (production ${counts[t.name]})`}`);
  }
  lines.push(`  raw/        ${raw.join(', ')}`);
  for (const tier of ['processed', 'aggregates'] as const) {
    if (!opts[tier].enabled) continue;
    const parts: string[] = [];
    for (const d of DERIVED_DATASETS.filter((x) => x.tier === tier)) {
      if (tier === 'aggregates' && !opts.aggregates.datasets.includes(d.name)) continue;
      const isCandle = d.tier === 'aggregates';
      const back = await readBack(await parquetFiles(`${opts[tier].prefix}/${d.name}`), isCandle ? 'trade_count' : undefined);
      // Every trade is in processed/trades and counted once by each candle size (1d only once its day closed).
      const got = d.name === 'trades' ? back.rows : isCandle ? back.sum : undefined;
      const want = d.name === 'candles_1d' ? counts.tradesOfClosedDays : counts.trades;
      const good = got === undefined || got === want;
      ok &&= good;
      parts.push(`${d.name} ${back.rows}${isCandle ? ` (trades ${back.sum})` : ''}${good ? '' : ` (production trades ${want})`}`);
    }
    lines.push(`  ${`${tier}/`.padEnd(11)} ${parts.join(', ')}`);
  }
  await store.close();
  lines.push(`archive check: ${ok ? 'PASS' : 'FAIL'} (raw/ rows equal production per table; processed/trades and each candle size count every trade once)`);
  return { ok, lines };
}
