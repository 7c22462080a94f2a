// Where each exported hour goes and what its Parquet columns are. Derived from the row schemas in
// src/schema/tables.ts (the one owner of columns), plus production's merged_at.
import { invariant } from '../core/errors';
import { SCHEMA_VERSION } from '../schema/migrate';
import { PRODUCTION_EXTRA_COLUMNS, quoteIdent, type Column, type PgType, type TimeSeriesTable } from '../schema/tables';

export const HOUR_US = 3_600_000_000;
/** Version of the file layout + manifest format (bumped when either changes incompatibly). */
export const ARCHIVE_FORMAT_VERSION = 1;
/** One file per partition today; a stable name so a re-export overwrites it in place. */
export const PART_FILE = 'part-00000.parquet';
/** Leading underscore: Hive, Spark, Athena and DuckDB globs on *.parquet all skip it. */
export const MANIFEST_FILE = '_manifest.json';

export const hourStartOf = (us: number): number => Math.floor(us / HOUR_US) * HOUR_US;

/** One partition an archive pass wrote (raw table or derived dataset; `table` is its export_cursors name). */
export interface PartitionResult {
  readonly table: string;
  readonly hourStartUs: number;
  readonly objectKey: string;
  readonly rows: number;
  readonly bytes: number;
  readonly sha256: string;
  readonly reason: 'new' | 'late';
}

export interface PartitionPath {
  readonly date: string;
  readonly hour: string;
  readonly dir: string;
  readonly objectKey: string;
  readonly manifestKey: string;
}

export function partitionPath(prefix: string, table: string, hourStartUs: number): PartitionPath {
  invariant(hourStartUs % HOUR_US === 0, `hour start ${hourStartUs} is not on an hour`);
  const iso = new Date(hourStartUs / 1000).toISOString();
  const date = iso.slice(0, 10);
  const hour = iso.slice(11, 13);
  const dir = [prefix.replace(/\/+$/, ''), table, `date=${date}`, `hour=${hour}`].filter(Boolean).join('/');
  return { date, hour, dir, objectKey: `${dir}/${PART_FILE}`, manifestKey: `${dir}/${MANIFEST_FILE}` };
}

/** A derived dataset's partition: hourly like raw/, or `date=` only for a daily dataset. */
export function periodPath(prefix: string, dataset: string, periodStartUs: number, periodUs: number): PartitionPath {
  if (periodUs === HOUR_US) return partitionPath(prefix, dataset, periodStartUs);
  invariant(periodUs === 24 * HOUR_US && periodStartUs % periodUs === 0, `period ${periodUs} µs at ${periodStartUs} is not a UTC day`);
  const date = new Date(periodStartUs / 1000).toISOString().slice(0, 10);
  const dir = [prefix.replace(/\/+$/, ''), dataset, `date=${date}`].filter(Boolean).join('/');
  return { date, hour: '', dir, objectKey: `${dir}/${PART_FILE}`, manifestKey: `${dir}/${MANIFEST_FILE}` };
}

/** Parquet (DuckDB) type keeping the exact value of each PostgreSQL type. Never a float. */
const PARQUET_TYPE: Partial<Record<PgType, string>> = {
  text: 'VARCHAR',
  // UUIDs as their canonical text: Spark and older Athena engines cannot read Parquet's UUID type.
  uuid: 'VARCHAR',
  bigint: 'BIGINT',
  integer: 'INTEGER',
  smallint: 'SMALLINT',
  boolean: 'BOOLEAN',
  // JSON as its text (jsonb's normalised form); query with json_extract / get_json_object.
  jsonb: 'VARCHAR',
  'numeric(12,6)': 'DECIMAL(12,6)',
  'numeric(20,2)': 'DECIMAL(20,2)',
};

export interface ArchiveColumn {
  readonly name: string;
  readonly pgType: PgType;
  readonly parquetType: string;
  readonly nullable: boolean;
}

export interface TableLayout {
  readonly table: TimeSeriesTable;
  readonly columns: readonly ArchiveColumn[];
  /** Column order of the file: rows are sorted so readers can skip by ticker and time. */
  readonly sortColumns: readonly string[];
  /** `COPY (SELECT ...) TO STDOUT` body for one hour; $1/$2 are not allowed in COPY, so literals. */
  copyOutSql(hourStartUs: number): string;
}

export function tableLayout(table: TimeSeriesTable): TableLayout {
  const all: readonly Column[] = [...table.columns, ...PRODUCTION_EXTRA_COLUMNS];
  const columns = all.map((c) => {
    const parquetType = PARQUET_TYPE[c.type];
    invariant(parquetType !== undefined, `no Parquet mapping for ${table.name}.${c.name} ${c.type}`);
    return { name: c.name, pgType: c.type, parquetType, nullable: c.nullable };
  });
  const hasTicker = all.some((c) => c.name === 'ticker');
  const lead = hasTicker ? ['ticker', table.timeColumn] : [table.timeColumn];
  const sortColumns = [...lead, ...table.productionKey.filter((k) => !lead.includes(k))];
  const selectList = columns.map((c) => (c.pgType === 'jsonb' ? `${quoteIdent(c.name)}::text` : quoteIdent(c.name))).join(', ');
  const time = quoteIdent(table.timeColumn);
  return {
    table,
    columns,
    sortColumns,
    copyOutSql(hourStartUs: number): string {
      invariant(Number.isSafeInteger(hourStartUs) && hourStartUs % HOUR_US === 0, `bad hour start ${hourStartUs}`);
      return (
        `COPY (SELECT ${selectList} FROM ${table.name} WHERE ${time} >= ${hourStartUs} AND ${time} < ${hourStartUs + HOUR_US}) ` + `TO STDOUT (FORMAT csv)`
      );
    },
  };
}

export interface Manifest {
  readonly formatVersion: number;
  /** Production schema version (src/schema/migrate.ts) the rows were read from. */
  readonly schemaVersion: number;
  readonly table: string;
  readonly date: string;
  readonly hour: string;
  readonly hourStartUs: number;
  readonly hourEndUs: number;
  readonly timeColumn: string;
  readonly object: string;
  readonly rowCount: number;
  readonly minTimeUs: number;
  readonly maxTimeUs: number;
  readonly maxMergedAtUs: number;
  readonly sha256: string;
  readonly bytes: number;
  readonly compression: string;
  readonly sortedBy: readonly string[];
  readonly columns: readonly ArchiveColumn[];
  readonly exportedAtUs: number;
}

export function buildManifest(
  layout: TableLayout,
  path: PartitionPath,
  hourStartUs: number,
  file: { rowCount: number; minTimeUs: number; maxTimeUs: number; maxMergedAtUs: number; sha256: string; bytes: number },
  compression: string,
  exportedAtUs: number,
): Manifest {
  return {
    formatVersion: ARCHIVE_FORMAT_VERSION,
    schemaVersion: SCHEMA_VERSION,
    table: layout.table.name,
    date: path.date,
    hour: path.hour,
    hourStartUs,
    hourEndUs: hourStartUs + HOUR_US,
    timeColumn: layout.table.timeColumn,
    object: path.objectKey,
    ...file,
    compression,
    sortedBy: layout.sortColumns,
    columns: layout.columns,
    exportedAtUs,
  };
}
