// `kdp export`: any archived dataset (raw/ table, processed/ or aggregates/ dataset) for a time
// range and, optionally, some tickers, as one Parquet or CSV file — for people who don't query
// the object store themselves. Reads the archive through the configured store (local directory
// or S3: the partitions overlapping the range are fetched to a scratch directory), filters and
// sorts with DuckDB, and writes with DuckDB's writers (exact DECIMAL types in Parquet; decimals
// printed exactly in CSV).
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { KdpError } from '../core/errors';
import { TIME_SERIES_TABLES, tableByName, type TimeSeriesTableName } from '../schema/tables';
import { DERIVED_DATASETS, derivedByName } from './datasets';
import { HOUR_US, tableLayout } from './layout';
import type { ArchiveOptions } from './options';
import { openStore } from './store';

export interface ExportRequest {
  /** `raw/<table>`, `processed/<name>` or `aggregates/<name>`. */
  readonly dataset: string;
  readonly fromUs: number;
  readonly toUs: number;
  readonly tickers: readonly string[];
  readonly format: 'parquet' | 'csv';
  readonly outPath: string;
}

export interface ExportResult {
  readonly rows: number;
  readonly partitionsRead: number;
}

interface Resolved {
  readonly prefix: string;
  readonly name: string;
  readonly timeColumn: string;
  readonly sortColumns: readonly string[];
  readonly periodUs: number;
  readonly columns: readonly { name: string; parquetType: string }[];
}

export const EXPORTABLE = [...TIME_SERIES_TABLES.map((t) => `raw/${t.name}`), ...DERIVED_DATASETS.map((d) => `${d.tier}/${d.name}`)];

function resolveDataset(opts: ArchiveOptions, dataset: string): Resolved {
  if (!EXPORTABLE.includes(dataset)) throw new KdpError('KDP_ERR_USAGE', `unknown dataset ${dataset} (one of: ${EXPORTABLE.join(', ')})`);
  const [tier, name] = dataset.split('/') as [string, string];
  if (tier === 'raw') {
    const layout = tableLayout(tableByName(name as TimeSeriesTableName));
    return {
      prefix: opts.store.prefix,
      name,
      timeColumn: layout.table.timeColumn,
      sortColumns: layout.sortColumns,
      periodUs: HOUR_US,
      columns: layout.columns,
    };
  }
  const d = derivedByName(name);
  const prefix = d.tier === 'processed' ? opts.processed.prefix : opts.aggregates.prefix;
  return { prefix, name, timeColumn: d.timeColumn, sortColumns: d.sortColumns, periodUs: d.periodUs, columns: d.columns };
}

/** Start (µs) of the partition a key belongs to, from its Hive path (date=…[/hour=…]). */
function partitionStartUs(key: string): number | undefined {
  const m = /\/date=(\d{4}-\d{2}-\d{2})(?:\/hour=(\d{2}))?\/part-\d+\.parquet$/.exec(key);
  if (!m) return undefined;
  return Date.parse(`${m[1]}T${m[2] ?? '00'}:00:00Z`) * 1000;
}

const sqlString = (s: string): string => `'${s.replace(/'/g, "''")}'`;
const ident = (s: string): string => `"${s.replace(/"/g, '""')}"`;

export async function exportDataset(opts: ArchiveOptions, req: ExportRequest): Promise<ExportResult> {
  if (!(req.fromUs < req.toUs)) throw new KdpError('KDP_ERR_USAGE', '--from must be before --to');
  const ds = resolveDataset(opts, req.dataset);
  const store = await openStore(opts.store);
  const scratch = await mkdtemp(join(opts.workDir.replace(/\/+$/, '') + '-export-'));
  try {
    const keys = (await store.list(`${ds.prefix.replace(/\/+$/, '')}/${ds.name}/`)).filter((k) => {
      const start = partitionStartUs(k);
      return start !== undefined && start < req.toUs && start + ds.periodUs > req.fromUs;
    });
    const files: string[] = [];
    for (const [i, key] of keys.entries()) {
      const bytes = await store.get(key);
      if (!bytes) continue; // listed, then replaced: the next export sees the new file
      const file = join(scratch, `p${i}.parquet`);
      await writeFile(file, bytes);
      files.push(file);
    }
    await mkdir(join(req.outPath, '..'), { recursive: true });
    return { rows: await writeSelection(files, ds, req), partitionsRead: files.length };
  } finally {
    await store.close();
    await rm(scratch, { recursive: true, force: true });
  }
}

async function writeSelection(files: readonly string[], ds: Resolved, req: ExportRequest): Promise<number> {
  const inst = await DuckDBInstance.create(':memory:', { autoinstall_known_extensions: 'false', autoload_known_extensions: 'false' });
  const conn = await inst.connect();
  try {
    const time = ident(ds.timeColumn);
    const tickers = req.tickers.length > 0 ? ` AND ticker IN (${req.tickers.map(sqlString).join(', ')})` : '';
    // No partition in range: the same columns and types, no rows (readers still see the schema).
    const source =
      files.length > 0
        ? `read_parquet([${files.map(sqlString).join(', ')}])`
        : `(SELECT ${ds.columns.map((c) => `CAST(NULL AS ${c.parquetType}) AS ${ident(c.name)}`).join(', ')} WHERE false)`;
    const select =
      `SELECT * FROM ${source} WHERE ${time} >= ${req.fromUs} AND ${time} < ${req.toUs}${tickers} ` + `ORDER BY ${ds.sortColumns.map(ident).join(', ')}`;
    const format = req.format === 'parquet' ? '(FORMAT parquet, COMPRESSION zstd)' : '(FORMAT csv, HEADER true)';
    await conn.run(`COPY (${select}) TO ${sqlString(req.outPath)} ${format}`);
    const reader = await conn.runAndReadAll(`SELECT count(*)::BIGINT FROM (${select})`);
    return Number(reader.getRows()[0]![0] as bigint);
  } finally {
    conn.closeSync();
    inst.closeSync();
  }
}
