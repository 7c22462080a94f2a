// DDL generated from the row schemas in tables.ts, for both storage engines.
// Plain PostgreSQL: native RANGE partitioning by day on the BIGINT µs time column, plus a DEFAULT
// partition so a row with an unexpected time never fails a COPY (partition maintenance moves
// such rows out; see partitions.ts). TimescaleDB: hypertables on the same column with
// integer_now, compression policies, and on gatherers a guarded retention job (guardedRetentionDdl).
import { DAY_US, DELIVERED_BY, GATHERER_BITS_MAX, PRODUCTION_EXTRA_COLUMNS, TIME_SERIES_TABLES, quoteIdent, type Column, type TimeSeriesTable } from './tables';

export type SchemaKind = 'gatherer' | 'production';
export type Engine = 'postgres' | 'timescale';

const columnDdl = (c: Column): string => `${quoteIdent(c.name)} ${c.type}${c.nullable ? '' : ' NOT NULL'}`;

/** Whether a table is time-partitioned in this kind of schema. */
export function isPartitioned(t: TimeSeriesTable, kind: SchemaKind): boolean {
  // Production's lifecycle key has no time column (see tables.ts), so it is a plain table.
  return !(kind === 'production' && t.name === 'lifecycle_events');
}

function timeSeriesDdl(t: TimeSeriesTable, kind: SchemaKind, engine: Engine): string[] {
  const cols = [...t.columns, ...(kind === 'production' ? PRODUCTION_EXTRA_COLUMNS : [])].map(columnDdl);
  const partitioned = isPartitioned(t, kind);
  const out: string[] = [];
  const keyCols = t.productionKey.map(quoteIdent).join(', ');
  if (kind === 'production') cols.push(`PRIMARY KEY (${keyCols})`);
  // Gatherer trades are unique by exchange key too, so REST backfill and live copies collapse.
  if (kind === 'gatherer' && t.name === 'trades') cols.push(`UNIQUE (exchange_ts, trade_id)`);
  const partitionClause = partitioned && engine === 'postgres' ? ` PARTITION BY RANGE (${quoteIdent(t.timeColumn)})` : '';
  out.push(`CREATE TABLE ${t.name} (\n  ${cols.join(',\n  ')}\n)${partitionClause}`);
  if (partitioned && engine === 'postgres') {
    out.push(`CREATE TABLE ${t.name}_default PARTITION OF ${t.name} DEFAULT`);
  }
  if (partitioned && engine === 'timescale') {
    out.push(
      `SELECT create_hypertable('${t.name}', by_range('${t.timeColumn}', ${DAY_US}::bigint), create_default_indexes => false)`,
      `SELECT set_integer_now_func('${t.name}', 'kdp_now_us')`,
    );
  }
  if (kind === 'gatherer') {
    // The deduplicator reads new rows by batch; batch ids grow with insertion order, so a BRIN
    // index finds them at almost no cost to COPY (a btree here would cost like a second key).
    out.push(`CREATE INDEX ${t.name}_batch_brin ON ${t.name} USING brin (batch_id)`);
  }
  if (kind === 'production' && (t.name === 'orderbook_deltas' || t.name === 'tickers' || t.name === 'trades')) {
    out.push(`CREATE INDEX ${t.name}_ticker_time ON ${t.name} (ticker, ${quoteIdent(t.timeColumn)})`);
  }
  if (t.name === 'orderbook_snapshots') {
    out.push(`CREATE INDEX ${t.name}_ticker_time ON ${t.name} (ticker, snapshot_ts)`);
  }
  return out;
}

function timescalePolicies(t: TimeSeriesTable, kind: SchemaKind): string[] {
  if (!isPartitioned(t, kind)) return [];
  const segmentBy = t.columns.some((c) => c.name === 'ticker') ? 'ticker' : '';
  const out = [
    `ALTER TABLE ${t.name} SET (timescaledb.compress${segmentBy ? `, timescaledb.compress_segmentby = '${segmentBy}'` : ''}, timescaledb.compress_orderby = '${t.timeColumn}')`,
    `SELECT add_compression_policy('${t.name}', compress_after => ${2 * DAY_US}::bigint)`,
  ];
  // Retention only on gatherers. This blind policy (it dropped chunks whether merged or not) is
  // replaced by migration 2's guarded job (guardedRetentionDdl); version 1 stays as released.
  if (kind === 'gatherer' && t.gathererRetentionDays > 0) {
    out.push(`SELECT add_retention_policy('${t.name}', drop_after => ${(t.gathererRetentionDays + 7) * DAY_US}::bigint)`);
  }
  return out;
}

const COMMON_META = [
  `CREATE TABLE IF NOT EXISTS kdp_schema (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  kind text NOT NULL,
  version integer NOT NULL,
  engine text NOT NULL,
  -- A fresh id for every newly created database: a rebuilt gatherer gets a new one, which tells
  -- the deduplicator its cursors for the old database no longer apply.
  instance_id uuid NOT NULL,
  created_at bigint NOT NULL,
  updated_at bigint NOT NULL
)`,
  `CREATE OR REPLACE FUNCTION kdp_now_us() RETURNS bigint LANGUAGE sql STABLE AS
  $$ SELECT (extract(epoch from clock_timestamp()) * 1000000)::bigint $$`,
];

const REGISTRY_TABLES = [
  `CREATE TABLE series (
  series_ticker text PRIMARY KEY,
  title text,
  category text,
  frequency text,
  raw jsonb NOT NULL,
  updated_at bigint NOT NULL
)`,
  `CREATE TABLE events (
  event_ticker text PRIMARY KEY,
  series_ticker text,
  title text,
  sub_title text,
  mutually_exclusive boolean,
  raw jsonb NOT NULL,
  updated_at bigint NOT NULL
)`,
  `CREATE TABLE markets (
  ticker text PRIMARY KEY,
  event_ticker text,
  series_ticker text,
  -- Kalshi's own status (initialized, inactive, active, closed, determined, disputed, amended,
  -- finalized) as last seen; production adds market_status, the runbooks' coarse status.
  status text NOT NULL,
  price_level_structure text,
  open_time bigint,
  close_time bigint,
  result text,
  raw jsonb NOT NULL,
  updated_at bigint NOT NULL
)`,
];

/** Gap-ledger columns shared by the gatherer's ledger and production's copy of all of them. */
const GAP_LEDGER_COLUMNS = `  conn_id integer NOT NULL,
  sid integer,
  channel text,
  kind text NOT NULL,
  tickers text[] NOT NULL DEFAULT '{}',
  expected_seq bigint,
  got_seq bigint,
  error_code integer,
  window_start bigint NOT NULL,
  window_end bigint,
  detected_at bigint NOT NULL,
  recovered boolean NOT NULL DEFAULT false,
  recovered_at bigint,
  recovery_method text`;

const GATHERER_ONLY = [
  `CREATE SEQUENCE ingest_batch_id_seq`,
  `CREATE TABLE ingest_batches (
  batch_id bigint PRIMARY KEY,
  writer text NOT NULL,
  table_name text NOT NULL,
  row_count integer NOT NULL,
  -- The committing transaction's id: the deduplicator only reads batches below the snapshot
  -- horizon (pg_snapshot_xmin), i.e. batches whose transactions can no longer be in flight.
  xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
  committed_at bigint NOT NULL DEFAULT kdp_now_us()
)`,
  `CREATE INDEX ingest_batches_xid ON ingest_batches (xid)`,
  `CREATE TABLE gap_ledger (
  gap_id bigserial PRIMARY KEY,
  gatherer text NOT NULL,
${GAP_LEDGER_COLUMNS},
  updated_at bigint NOT NULL DEFAULT kdp_now_us()
)`,
  `CREATE INDEX gap_ledger_updated ON gap_ledger (updated_at)`,
  // Written by the deduplicator: how far it has merged this database. Retention reads it.
  `CREATE TABLE dedup_watermark (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  merged_xid xid8 NOT NULL,
  merged_batch_id bigint NOT NULL,
  updated_at bigint NOT NULL
)`,
];

const PRODUCTION_ONLY = [
  `ALTER TABLE markets ADD COLUMN market_status text NOT NULL DEFAULT 'unknown'`,
  `CREATE INDEX markets_market_status ON markets (market_status)`,
  // Every gatherer's ledger, keyed by gatherer (the deduplicator copies it by updated_at).
  `CREATE TABLE gap_ledger (
  gatherer text NOT NULL,
  gap_id bigint NOT NULL,
${GAP_LEDGER_COLUMNS},
  updated_at bigint NOT NULL,
  PRIMARY KEY (gatherer, gap_id)
)`,
  `CREATE TABLE dedup_cursors (
  gatherer text NOT NULL,
  -- kdp_schema.instance_id of the gatherer database the cursor belongs to.
  instance_id uuid NOT NULL,
  -- Every batch with xid below this horizon has been merged.
  merged_xid xid8 NOT NULL,
  merged_batch_id bigint NOT NULL DEFAULT 0,
  ledger_updated_at bigint NOT NULL DEFAULT 0,
  updated_at bigint NOT NULL,
  PRIMARY KEY (gatherer, instance_id)
)`,
  `CREATE TABLE export_cursors (
  table_name text NOT NULL,
  -- Start of the exported hour (µs); one row per exported partition.
  hour_start bigint NOT NULL,
  row_count bigint NOT NULL,
  max_merged_at bigint NOT NULL,
  object_key text NOT NULL,
  checksum text NOT NULL,
  exported_at bigint NOT NULL,
  PRIMARY KEY (table_name, hour_start)
)`,
];

export interface DdlPlan {
  readonly statements: readonly string[];
}

/** Version 1 of a schema: everything from scratch. */
export function initialDdl(kind: SchemaKind, engine: Engine): string[] {
  const out: string[] = [];
  if (engine === 'timescale') out.push('CREATE EXTENSION IF NOT EXISTS timescaledb');
  out.push(...REGISTRY_TABLES);
  out.push(...(kind === 'gatherer' ? GATHERER_ONLY : PRODUCTION_ONLY));
  for (const t of TIME_SERIES_TABLES) out.push(...timeSeriesDdl(t, kind, engine));
  if (engine === 'timescale') for (const t of TIME_SERIES_TABLES) out.push(...timescalePolicies(t, kind));
  return out;
}

/**
 * Gatherer retention on TimescaleDB that never drops unmerged rows, as dropExpiredPartitions
 * (partitions.ts) does on plain PostgreSQL: a job per table drops a chunk only when it lies
 * wholly before now - retention AND none of its rows belongs to a batch at or above the
 * deduplicator's merged horizon (dedup_watermark.merged_xid; checked as in partitions.ts: no row
 * at or above the first unmerged batch id); without a watermark it drops nothing. The chunk (not
 * the hypertable: writes to other chunks go on) is locked against writers before the check: a
 * late COPY of old rows (a replay) in flight commits first and its rows keep the chunk; one
 * arriving later waits, then lands in a new chunk. Each chunk commits on its own. Replaces
 * add_retention_policy, which dropped chunks 7 days after retention whether merged or not. Run by
 * the TimescaleDB scheduler hourly; by hand: CALL run_job(job_id) (timescaledb_information.jobs,
 * proc_name kdp_drop_merged_chunks).
 */
export function guardedRetentionDdl(kind: SchemaKind, engine: Engine): string[] {
  if (kind !== 'gatherer' || engine !== 'timescale') return [];
  const out = [
    `CREATE OR REPLACE PROCEDURE kdp_drop_merged_chunks(job_id integer, config jsonb)
LANGUAGE plpgsql AS $$
DECLARE
  rel regclass := (config->>'hypertable')::regclass;
  time_column text := config->>'time_column';
  cutoff bigint := kdp_now_us() - (config->>'drop_after')::bigint;
  horizon xid8;
  first_unmerged bigint;
  unmerged boolean;
  ch record;
BEGIN
  FOR ch IN
    SELECT c.chunk_schema, c.chunk_name, c.range_start_integer AS lo, c.range_end_integer AS hi
    FROM timescaledb_information.chunks c
    JOIN pg_class k ON k.oid = rel
    JOIN pg_namespace n ON n.oid = k.relnamespace
    WHERE c.hypertable_schema = n.nspname AND c.hypertable_name = k.relname
      AND c.range_end_integer <= cutoff
    ORDER BY c.range_start_integer
  LOOP
    EXECUTE format('LOCK TABLE %I.%I IN SHARE ROW EXCLUSIVE MODE', ch.chunk_schema, ch.chunk_name);
    SELECT merged_xid INTO horizon FROM dedup_watermark;
    IF horizon IS NULL THEN
      RAISE LOG 'kdp retention: % keeps every chunk: no dedup_watermark yet', rel;
      RETURN;
    END IF;
    -- Conservative, as on plain PostgreSQL (partitions.ts): kept while any row is at or above the
    -- first unmerged batch id; nothing unmerged anywhere needs no scan of the chunk at all.
    SELECT min(batch_id) INTO first_unmerged FROM ingest_batches WHERE xid >= horizon;
    unmerged := false;
    IF first_unmerged IS NOT NULL THEN
      EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE %I >= $1 AND %I < $2 AND batch_id >= $3)',
        rel, time_column, time_column)
        INTO unmerged USING ch.lo, ch.hi, first_unmerged;
    END IF;
    IF unmerged THEN
      RAISE LOG 'kdp retention: kept %.% of %: rows the deduplicator has not merged', ch.chunk_schema, ch.chunk_name, rel;
    ELSE
      PERFORM drop_chunks(rel, older_than => ch.hi, newer_than => ch.lo);
      RAISE LOG 'kdp retention: dropped %.% of %', ch.chunk_schema, ch.chunk_name, rel;
    END IF;
    COMMIT;
  END LOOP;
END $$`,
  ];
  for (const t of TIME_SERIES_TABLES) {
    if (!isPartitioned(t, kind) || t.gathererRetentionDays <= 0) continue;
    const config = JSON.stringify({
      hypertable: t.name,
      time_column: t.timeColumn,
      drop_after: t.gathererRetentionDays * DAY_US,
    });
    out.push(
      `SELECT remove_retention_policy('${t.name}', if_exists => true)`,
      `SELECT add_job('kdp_drop_merged_chunks', '1 hour', config => '${config}'::jsonb)`,
    );
  }
  return out;
}

export { COMMON_META };

/**
 * Migration 3: every time-series table gains `sent_at` (µs, nullable), Kalshi's envelope
 * `sending_ts_ms` (kalshi-protocol.md). A database made by migration 1 of this build already has it
 * (initialDdl follows tables.ts), hence IF NOT EXISTS. Nullable without a default: no table
 * rewrite, and allowed on compressed TimescaleDB hypertables.
 */
export function sentAtDdl(_kind: SchemaKind, _engine: Engine): string[] {
  return TIME_SERIES_TABLES.map((t) => `ALTER TABLE ${t.name} ADD COLUMN IF NOT EXISTS sent_at bigint`);
}

/**
 * Migration 4 (production only): per-row provenance. Every time-series table gains
 * `delivered_by` (bigint bitmask, nullable without a default: no table rewrite, allowed on
 * compressed TimescaleDB hypertables; NULL = merged before this migration, provenance unknown),
 * and `gatherer_bits` maps each gatherer name to its bit once and for ever, so reordering or
 * renaming gatherers in the deduplicator's configuration never changes what an old bit means.
 */
export function provenanceDdl(kind: SchemaKind, _engine: Engine): string[] {
  if (kind !== 'production') return [];
  return [
    ...TIME_SERIES_TABLES.map((t) => `ALTER TABLE ${t.name} ADD COLUMN IF NOT EXISTS ${DELIVERED_BY.name} ${DELIVERED_BY.type}`),
    `CREATE TABLE IF NOT EXISTS gatherer_bits (
  gatherer text PRIMARY KEY,
  bit smallint NOT NULL UNIQUE CHECK (bit >= 0 AND bit < ${GATHERER_BITS_MAX}),
  assigned_at bigint NOT NULL
)`,
  ];
}

/**
 * Migration 5 (production): the coverage certificates the archiver computed for each archived hour
 * (src/archive/certificates.ts), one row per market and hour, replaced when the hour is certified
 * again; `certificate` is the whole certificate (src/coverage/certificate.ts) as jsonb.
 */
export function coverageDdl(kind: SchemaKind, _engine: Engine): string[] {
  if (kind !== 'production') return [];
  return [
    `CREATE TABLE IF NOT EXISTS coverage_certificates (
  ticker text NOT NULL,
  hour_start bigint NOT NULL,
  grade text NOT NULL CHECK (grade IN ('complete', 'recovered', 'incomplete')),
  covered_seconds numeric NOT NULL,
  window_seconds numeric NOT NULL,
  certificate jsonb NOT NULL,
  certified_at bigint NOT NULL,
  PRIMARY KEY (ticker, hour_start)
)`,
    `CREATE INDEX IF NOT EXISTS coverage_certificates_hour ON coverage_certificates (hour_start, grade)`,
  ];
}

/**
 * Migration 6: `orderbook_snapshots.next_delta_ts` (µs, nullable): the upper anchor of a WS snapshot
 * in the delta stream (tables.ts); IF NOT EXISTS and nullable without a default, as migration 3.
 * Production also gets `book_drift`: one row per REST snapshot compared with the book rebuilt from
 * the WebSocket chain (src/ops/drift.ts, docs/semantics.md "REST vs WebSocket drift").
 */
export function bookAnchorDdl(kind: SchemaKind, _engine: Engine): string[] {
  const out = [`ALTER TABLE orderbook_snapshots ADD COLUMN IF NOT EXISTS next_delta_ts bigint`];
  if (kind === 'production') {
    out.push(
      `CREATE TABLE IF NOT EXISTS book_drift (
  ticker text NOT NULL,
  -- the REST snapshot compared (orderbook_snapshots key: source 'rest', conn_id 0, sid 0)
  snapshot_ts bigint NOT NULL,
  gatherer text NOT NULL,
  -- match | mismatch | no_anchor | untrusted | unreadable
  verdict text NOT NULL,
  -- WebSocket book states (delta boundaries) compared
  compared integer NOT NULL,
  anchor_gatherer text,
  detail text,
  checked_at bigint NOT NULL,
  PRIMARY KEY (ticker, snapshot_ts, gatherer)
)`,
      `CREATE INDEX IF NOT EXISTS book_drift_snapshot_ts ON book_drift (snapshot_ts)`,
    );
  }
  return out;
}
