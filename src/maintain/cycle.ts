// One storage maintenance cycle on one database (`kdp maintain`), as the owner of its tables.
// Plain PostgreSQL: day partitions created ahead, DEFAULT partitions drained, and on a gatherer
// expired partitions dropped only once the deduplicator merged every row in them
// (partitions.ts). TimescaleDB: chunks are made by the extension; the cycle runs the compression
// policies and, on a gatherer, the guarded retention jobs (ddl.ts guardedRetentionDdl) with
// CALL run_job. Then it measures: bytes per table, the oldest unmerged batch, expired partitions
// kept for the deduplicator. Serialised with `kdp migrate` and other cycles by an advisory lock.
import type { ClientBase } from 'pg';
import { KdpError } from '../core/errors';
import { isPartitioned, type Engine, type SchemaKind } from '../schema/ddl';
import { SCHEMA_LOCK_KEY, requireSchema } from '../schema/migrate';
import { drainDefaultPartitions, dropExpiredPartitions, ensurePartitions, pruneIngestBatches } from '../schema/partitions';
import { DAY_US, TIME_SERIES_TABLES } from '../schema/tables';

export interface CycleOptions {
  readonly kind: SchemaKind;
  readonly nowUs: number;
  readonly partitionDaysAhead: number;
  /** Gatherer: ingest_batches rows of merged, expired, emptied batches deleted per cycle at most. */
  readonly batchesPrunedPerCycleMax: number;
}

/** A partition (plain PostgreSQL) or chunk (TimescaleDB) of a table. */
export interface PartRef {
  readonly table: string;
  readonly name: string;
}

export interface JobRun {
  readonly jobId: number;
  readonly proc: string;
  readonly table: string;
  /** The job's error; undefined when it succeeded. */
  readonly error?: unknown;
}

export interface CycleResult {
  readonly engine: Engine;
  readonly created: readonly PartRef[];
  readonly dropped: readonly PartRef[];
  /** Past retention but holding rows the deduplicator has not merged: kept. */
  readonly keptUnmerged: readonly PartRef[];
  readonly compressed: readonly PartRef[];
  readonly jobs: readonly JobRun[];
  /** Gatherer only: ingest_batches rows deleted (partitions.ts pruneIngestBatches). */
  readonly batchesPruned: number | undefined;
  /** Gatherer only: age of the oldest batch not merged yet (0 when none). */
  readonly oldestUnmergedAgeSeconds: number | undefined;
  readonly tableBytes: Readonly<Record<string, number>>;
}

type Upkeep = Pick<CycleResult, 'created' | 'dropped' | 'keptUnmerged' | 'compressed' | 'jobs'>;

const partRef = (name: string): PartRef => ({ table: name.replace(/_p\d{8}$/, ''), name });

/** Runs one cycle; throws KDP_ERR_MAINTAIN_BUSY when another holds the database's schema lock. */
export async function runCycle(client: ClientBase, opts: CycleOptions): Promise<CycleResult> {
  const lock = await client.query('SELECT pg_try_advisory_lock($1) AS ok', [SCHEMA_LOCK_KEY]);
  if (!lock.rows[0].ok) {
    throw new KdpError('KDP_ERR_MAINTAIN_BUSY', 'another kdp maintain (or kdp migrate) holds the schema lock of this database');
  }
  try {
    const info = await requireSchema(client, opts.kind);
    const upkeep = info.engine === 'postgres' ? await partitionUpkeep(client, opts) : await timescaleUpkeep(client, opts);
    return {
      engine: info.engine,
      ...upkeep,
      // After retention dropped partitions: their batches' bookkeeping rows go with them.
      batchesPruned: opts.kind === 'gatherer' ? await pruneIngestBatches(client, opts.nowUs, opts.batchesPrunedPerCycleMax) : undefined,
      oldestUnmergedAgeSeconds: opts.kind === 'gatherer' ? await oldestUnmergedAgeSeconds(client, opts.nowUs) : undefined,
      tableBytes: await tableBytes(client, opts.kind, info.engine),
    };
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [SCHEMA_LOCK_KEY]);
  }
}

async function partitionUpkeep(client: ClientBase, opts: CycleOptions): Promise<Upkeep> {
  const ahead = await ensurePartitions(client, {
    kind: opts.kind,
    fromUs: opts.nowUs,
    toUs: opts.nowUs + opts.partitionDaysAhead * DAY_US,
  });
  const drained = await drainDefaultPartitions(client, opts.kind);
  const retention = opts.kind === 'gatherer' ? await dropExpiredPartitions(client, opts.nowUs) : { dropped: [], keptUnmerged: [] };
  return {
    created: [...ahead, ...drained].map(partRef),
    dropped: retention.dropped.map(partRef),
    keptUnmerged: retention.keptUnmerged.map(partRef),
    compressed: [],
    jobs: [],
  };
}

interface ChunkRow {
  hypertable_name: string;
  chunk_name: string;
  is_compressed: boolean;
}

async function chunks(client: ClientBase): Promise<Map<string, ChunkRow>> {
  const r = await client.query<ChunkRow>(`SELECT hypertable_name, chunk_name, is_compressed FROM timescaledb_information.chunks`);
  return new Map(r.rows.map((c) => [c.chunk_name, c]));
}

/**
 * Compression policies first (chunks compress days before retention), then the guarded retention
 * jobs. A failing job does not stop the others; the caller sees it in `jobs`.
 */
async function timescaleUpkeep(client: ClientBase, opts: CycleOptions): Promise<Upkeep> {
  const jobs = await client.query<{ job_id: number; proc_name: string; hypertable_name: string }>(
    `SELECT job_id, proc_name, coalesce(hypertable_name, config->>'hypertable') AS hypertable_name
       FROM timescaledb_information.jobs
      WHERE proc_name IN ('policy_compression', 'kdp_drop_merged_chunks')
      ORDER BY proc_name = 'kdp_drop_merged_chunks', job_id`,
  );
  const before = await chunks(client);
  const runs: JobRun[] = [];
  for (const j of jobs.rows) {
    const run = { jobId: Number(j.job_id), proc: j.proc_name, table: j.hypertable_name };
    try {
      // CALL, not in a transaction block: the retention procedure commits chunk by chunk.
      await client.query(`CALL run_job(${run.jobId})`);
      runs.push(run);
    } catch (error) {
      runs.push({ ...run, error });
    }
  }
  const after = await chunks(client);
  const ref = (c: ChunkRow): PartRef => ({ table: c.hypertable_name, name: c.chunk_name });
  const kept = await client.query<ChunkRow>(
    `SELECT c.hypertable_name, c.chunk_name, c.is_compressed
       FROM timescaledb_information.jobs j
       JOIN timescaledb_information.chunks c ON c.hypertable_name = j.config->>'hypertable'
      WHERE j.proc_name = 'kdp_drop_merged_chunks'
        AND c.range_end_integer <= $1::bigint - (j.config->>'drop_after')::bigint`,
    [opts.nowUs],
  );
  return {
    created: [],
    dropped: [...before.values()].filter((c) => !after.has(c.chunk_name)).map(ref),
    keptUnmerged: kept.rows.map(ref),
    compressed: [...after.values()].filter((c) => c.is_compressed && before.get(c.chunk_name)?.is_compressed === false).map(ref),
    jobs: runs,
  };
}

/** Age of the oldest batch at or above the deduplicator's published horizon (all, without one). */
async function oldestUnmergedAgeSeconds(client: ClientBase, nowUs: number): Promise<number> {
  const r = await client.query(
    `SELECT min(committed_at)::text AS oldest FROM ingest_batches
      WHERE xid >= coalesce((SELECT merged_xid FROM dedup_watermark), '0'::xid8)`,
  );
  const oldest = r.rows[0].oldest as string | null;
  return oldest === null ? 0 : Math.max(0, (nowUs - Number(oldest)) / 1e6);
}

/** Bytes of each time-series table (partitions or chunks, indexes, TOAST) and of ingest_batches. */
async function tableBytes(client: ClientBase, kind: SchemaKind, engine: Engine): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const names = [...TIME_SERIES_TABLES.map((t) => t.name), ...(kind === 'gatherer' ? ['ingest_batches'] : [])];
  for (const name of names) {
    const t = TIME_SERIES_TABLES.find((x) => x.name === name);
    const hypertable = engine === 'timescale' && t !== undefined && isPartitioned(t, kind);
    const r = await client.query(
      hypertable
        ? `SELECT coalesce(hypertable_size($1::regclass), 0)::text AS bytes`
        : `SELECT coalesce(sum(pg_total_relation_size(relid)), 0)::text AS bytes FROM pg_partition_tree($1::regclass)`,
      [name],
    );
    out[name] = Number(r.rows[0].bytes);
  }
  return out;
}
