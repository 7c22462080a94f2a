// CSV (streamed out of production) -> Parquet with DuckDB's built-in writer. No DuckDB extension
// is loaded or downloaded: read_csv and the Parquet writer are part of the core build.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { invariant } from '../core/errors';
import type { DerivedDataset } from './datasets';
import type { TableLayout } from './layout';

export interface ParquetWriterOptions {
  readonly memoryMb: number;
  readonly threads: number;
  readonly tempDir: string;
  readonly compression: 'zstd' | 'snappy';
  readonly rowGroupRows: number;
}

export interface ParquetFileStats {
  rowCount: number;
  minTimeUs: number;
  maxTimeUs: number;
  maxMergedAtUs: number;
  sha256: string;
  bytes: number;
}

export type DerivedFileStats = Omit<ParquetFileStats, 'maxMergedAtUs'>;

const sqlString = (s: string): string => `'${s.replace(/'/g, "''")}'`;
const duckIdent = (s: string): string => `"${s.replace(/"/g, '""')}"`;

export class ParquetWriter {
  private constructor(
    private readonly instance: DuckDBInstance,
    private readonly conn: DuckDBConnection,
    private readonly opts: ParquetWriterOptions,
  ) {}

  static async open(opts: ParquetWriterOptions): Promise<ParquetWriter> {
    const instance = await DuckDBInstance.create(':memory:', {
      // The network is closed and the archiver needs nothing beyond the core build.
      autoinstall_known_extensions: 'false',
      autoload_known_extensions: 'false',
      memory_limit: `${opts.memoryMb}MB`,
      threads: String(opts.threads),
      temp_directory: opts.tempDir,
      preserve_insertion_order: 'true',
    });
    return new ParquetWriter(instance, await instance.connect(), opts);
  }

  /**
   * Converts PostgreSQL's CSV of one hour into a sorted, compressed Parquet file with exact types,
   * then reads the file back for the manifest's figures (which also proves it is readable).
   */
  async convert(layout: TableLayout, csvPath: string, parquetPath: string): Promise<ParquetFileStats> {
    const time = duckIdent(layout.table.timeColumn);
    const [count, minTime, maxTime, maxMerged] = await this.write(layout.columns, layout.sortColumns, csvPath, parquetPath, [
      `min(${time})`,
      `max(${time})`,
      'max(merged_at)',
    ]);
    invariant(count! > 0, `parquet file ${parquetPath} is empty`);
    return { rowCount: count!, minTimeUs: minTime!, maxTimeUs: maxTime!, maxMergedAtUs: maxMerged!, ...(await fileFacts(parquetPath)) };
  }

  /**
   * The same for a derived dataset's CSV (src/archive/datasets.ts owns its columns and order). The
   * processed replay writes its rows already in sort order (market by market in byte order, each in
   * time order), so no sort is asked for: sorting 720,000 rows of 100 decimals was most of an hour's
   * derivation (2,000 markets, 10 s grid: 88 s).
   */
  async convertDerived(d: DerivedDataset, csvPath: string, parquetPath: string): Promise<DerivedFileStats> {
    const time = duckIdent(d.timeColumn);
    const [count, minTime, maxTime] = await this.write(d.columns, [], csvPath, parquetPath, [`min(${time})`, `max(${time})`]);
    return { rowCount: count!, minTimeUs: minTime!, maxTimeUs: maxTime!, ...(await fileFacts(parquetPath)) };
  }

  /** A DuckDB query's rows (in the dataset's column order) -> sorted Parquet, read back. */
  async writeDerivedQuery(d: DerivedDataset, selectSql: string, parquetPath: string): Promise<DerivedFileStats> {
    const order = d.sortColumns.map(duckIdent).join(', ');
    await this.conn.run(
      `COPY (SELECT * FROM (${selectSql}) ORDER BY ${order}) TO ${sqlString(parquetPath)} ` +
        `(FORMAT parquet, COMPRESSION ${this.opts.compression}, ROW_GROUP_SIZE ${this.opts.rowGroupRows})`,
    );
    const time = duckIdent(d.timeColumn);
    const r = await this.conn.runAndReadAll(`SELECT count(*)::BIGINT, min(${time})::BIGINT, max(${time})::BIGINT FROM read_parquet(${sqlString(parquetPath)})`);
    const [count, minTime, maxTime] = r.getRows()[0]!.map((v) => (v === null ? 0 : Number(v as bigint)));
    return { rowCount: count!, minTimeUs: minTime!, maxTimeUs: maxTime!, ...(await fileFacts(parquetPath)) };
  }

  /** CSV -> sorted Parquet; returns count(*) and the given BIGINT aggregates read back from the file. */
  private async write(
    cols: readonly { name: string; parquetType: string; csvScaledInteger?: number }[],
    sortColumns: readonly string[],
    csvPath: string,
    parquetPath: string,
    aggregates: readonly string[],
  ): Promise<number[]> {
    const columns = cols.map((c) => `${sqlString(c.name)}: ${sqlString(c.csvScaledInteger === undefined ? c.parquetType : 'BIGINT')}`).join(', ');
    // Scaled integers become their DECIMAL exactly: integer x 10^-scale (DECIMAL x DECIMAL is exact in DuckDB).
    const projection = cols
      .map((c) =>
        c.csvScaledInteger === undefined
          ? duckIdent(c.name)
          : `CAST(CAST(${duckIdent(c.name)} AS DECIMAL(18,0)) * CAST(${(1 / 10 ** c.csvScaledInteger).toFixed(c.csvScaledInteger)} AS DECIMAL(${c.csvScaledInteger + 1},${c.csvScaledInteger})) AS ${c.parquetType}) AS ${duckIdent(c.name)}`,
      )
      .join(', ');
    // PostgreSQL CSV: NULL is an unquoted empty field, an empty string is "" (quoted): keep them apart.
    const source =
      `read_csv(${sqlString(csvPath)}, header = false, auto_detect = false, delim = ',', quote = '"', escape = '"', ` +
      `nullstr = '', allow_quoted_nulls = false, columns = {${columns}})`;
    // preserve_insertion_order (set at open) keeps the CSV's order when no sort is asked for.
    const order = sortColumns.length > 0 ? ` ORDER BY ${sortColumns.map(duckIdent).join(', ')}` : '';
    await this.conn.run(
      `COPY (SELECT ${projection} FROM ${source}${order}) TO ${sqlString(parquetPath)} ` +
        `(FORMAT parquet, COMPRESSION ${this.opts.compression}, ROW_GROUP_SIZE ${this.opts.rowGroupRows})`,
    );
    const select = ['count(*)::BIGINT', ...aggregates.map((a) => `${a}::BIGINT`)].join(', ');
    const reader = await this.conn.runAndReadAll(`SELECT ${select} FROM read_parquet(${sqlString(parquetPath)})`);
    return reader.getRows()[0]!.map((v) => (v === null ? 0 : Number(v as bigint)));
  }

  close(): void {
    this.conn.closeSync();
    this.instance.closeSync();
  }
}

async function fileFacts(path: string): Promise<{ sha256: string; bytes: number }> {
  const { size } = await stat(path);
  return { sha256: await sha256File(path), bytes: size };
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
