// The cold-storage archiver: exports every due hour of each time-series table from production to
// Parquet on the object store, re-exports hours that received late rows, and records each
// exported partition in production's export_cursors. Idempotent and resumable: a partition's
// object key is fixed, files appear atomically, and the cursor row is written last, so a crash at
// any point leads the next run to redo (overwrite) at most the partition in flight.
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createWriteStream } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { backoffDelayMs } from '../core/backoff';
import { KdpError, classifyDbError, isKdpError } from '../core/errors';
import { failpoint } from '../core/failpoint';
import { createLogger, type Logger } from '../core/log';
import { ARCHIVE_METRICS, createMetrics, createRegistry, type MetricSet } from '../core/metrics';
import { requireSchema } from '../schema/migrate';
import { tableByName, type TimeSeriesTableName } from '../schema/tables';
import { dueEndUs, exportFrontierUs, hoursWithLateRows, mergeWatermark, nextHourWithRows, productionNowUs, recordExport, tryArchiveLock } from './cursors';
import { HOUR_US, buildManifest, partitionPath, tableLayout, type PartitionResult, type TableLayout } from './layout';

export type { PartitionResult } from './layout';
import type { ArchiveOptions } from './options';
import { ParquetWriter } from './parquet';
import { openStore, type ObjectStore } from './store';
import { Progress } from './progress';
import { certifyExported } from './certificates';
import { deriveCycle, type DeriveSession } from './derive';

export type ArchiveMetrics = MetricSet<typeof ARCHIVE_METRICS>;

/**
 * What the archiver's /health reports; runArchiver keeps it current. A failed cycle is retried
 * (database, store or disk trouble): one failure is degraded, UNHEALTHY_FAILURES in a row mean
 * the archive is not advancing and someone must look (503).
 */
export class ArchiverHealth {
  private static readonly UNHEALTHY_FAILURES = 3;
  readonly startedAtMs = Date.now();
  lastCycleOkAtMs: number | undefined;
  consecutiveFailures = 0;
  lastErrorCode: string | undefined;

  cycleOk(): void {
    this.lastCycleOkAtMs = Date.now();
    this.consecutiveFailures = 0;
    this.lastErrorCode = undefined;
  }

  cycleFailed(code: string): void {
    this.consecutiveFailures++;
    this.lastErrorCode = code;
  }

  report(): { status: number; body: Record<string, unknown> } {
    const failing = this.consecutiveFailures;
    const status = failing >= ArchiverHealth.UNHEALTHY_FAILURES ? 'unhealthy' : failing > 0 ? 'degraded' : 'healthy';
    return {
      status: status === 'unhealthy' ? 503 : 200,
      body: {
        status,
        last_cycle_ok_ms_ago: this.lastCycleOkAtMs === undefined ? null : Date.now() - this.lastCycleOkAtMs,
        consecutive_failures: failing,
        last_error_code: this.lastErrorCode ?? null,
        uptime_s: Math.round((Date.now() - this.startedAtMs) / 1000),
      },
    };
  }
}

export interface ArchiveDeps {
  readonly log?: Logger;
  /** Kept current by runArchiver for the service's /health. */
  readonly health?: ArchiverHealth;
  readonly metrics?: ArchiveMetrics;
  /** Receives plain progress lines while a backlog is exported. */
  readonly progress?: (line: string) => void;
  /** Stops after the partition in flight (and ends runArchiver's loop). */
  readonly signal?: AbortSignal;
  /** Clock override (µs) for tests; default: production's clock. */
  readonly nowUs?: () => number;
  /**
   * Production is known to be fully merged up to this time (µs): it replaces the deduplicator
   * cursors' watermark. Only for a stopped platform whose deduplicator has made its final merge
   * (`kdp demo` at its end, `kdp archive --once --merged-through`), so the last hours close.
   */
  readonly mergedThroughUs?: number;
}

export interface ArchiveStats {
  partitions: number;
  reexports: number;
  rows: number;
  bytes: number;
  elapsedMs: number;
  rowsPerSecond: number;
  /** True when dedup cursors exist but none moved within gathererStaleMs: nothing was due. */
  dedupStalled: boolean;
  exported: PartitionResult[];
}

const emptyStats = (): ArchiveStats => ({
  partitions: 0,
  reexports: 0,
  rows: 0,
  bytes: 0,
  elapsedMs: 0,
  rowsPerSecond: 0,
  dedupStalled: false,
  exported: [],
});

/** What one run holds open: production connection (with the archive lock), store, DuckDB. */
interface Session {
  readonly opts: ArchiveOptions;
  readonly client: Client;
  readonly store: ObjectStore;
  readonly writer: ParquetWriter;
  readonly layouts: readonly TableLayout[];
  /** Extra connections for the processed tier (undefined when it is off). */
  readonly readers: readonly [Client, Client, Client] | undefined;
  readonly log: Logger;
  readonly metrics: ArchiveMetrics;
  readonly deps: ArchiveDeps;
}

async function prepareWorkDir(workDir: string): Promise<string> {
  await mkdir(workDir, { recursive: true });
  // Leftovers of a killed run: only our own file names, never anything else in the directory.
  for (const name of await readdir(workDir)) {
    if (/^[a-z0-9_]+-\d+\.(csv|parquet)$/.test(name)) await rm(join(workDir, name), { force: true });
  }
  const duckTmp = join(workDir, 'duckdb-tmp');
  await rm(duckTmp, { recursive: true, force: true });
  await mkdir(duckTmp, { recursive: true });
  return duckTmp;
}

async function connectProduction(opts: ArchiveOptions, cleanup: (() => Promise<void> | void)[]): Promise<Client> {
  const client = new Client({
    connectionString: opts.production.url,
    connectionTimeoutMillis: opts.production.connectTimeoutMs,
    statement_timeout: opts.production.statementTimeoutMs,
    application_name: 'kdp-archive',
  });
  await client.connect().catch((err: unknown) => {
    throw classifyDbError(err);
  });
  cleanup.push(() => client.end());
  // The default 4 MB makes PostgreSQL sort an hour's candle grid and book rows on disk.
  await client.query(`SET work_mem = '${opts.workMemMb}MB'`);
  return client;
}

async function openSession(opts: ArchiveOptions, deps: ArchiveDeps): Promise<Session> {
  const log = deps.log ?? createLogger('archive', { level: opts.log.level });
  const metrics = deps.metrics ?? createMetrics(ARCHIVE_METRICS, createRegistry(false));
  const cleanup: (() => Promise<void> | void)[] = [];
  try {
    const client = await connectProduction(opts, cleanup);
    client.on('error', (err) => log.warn({ err: err.message }, 'production connection error'));
    await requireSchema(client, 'production');
    if (!(await tryArchiveLock(client))) {
      throw new KdpError('KDP_ERR_ARCHIVE_BUSY', 'another archiver holds the archive lock on this production database');
    }
    const duckTmp = await prepareWorkDir(opts.workDir);
    const store = await openStore(opts.store, (err, attempt, delayMs) => {
      metrics.archive_errors_total.inc({ type: 'store_retry' });
      log.warn({ err: (err as Error).message, attempt, delayMs }, 'object store operation failed; retrying');
    });
    cleanup.push(() => store.close());
    const writer = await ParquetWriter.open({
      memoryMb: opts.duckdbMemoryMb,
      threads: opts.duckdbThreads,
      tempDir: duckTmp,
      compression: opts.compression as 'zstd' | 'snappy',
      rowGroupRows: opts.rowGroupRows,
    });
    const layouts = opts.tables.map((name) => tableLayout(tableByName(name as TimeSeriesTableName)));
    const readers = opts.processed.enabled
      ? ([await connectProduction(opts, cleanup), await connectProduction(opts, cleanup), await connectProduction(opts, cleanup)] as const)
      : undefined;
    return { opts, client, store, writer, layouts, readers, log, metrics, deps };
  } catch (err) {
    for (const f of cleanup.reverse()) await Promise.resolve(f()).catch(() => undefined);
    throw err;
  }
}

async function closeSession(s: Session): Promise<void> {
  s.writer.close();
  for (const r of s.readers ?? []) await r.end().catch(() => undefined);
  await s.store.close().catch(() => undefined);
  await s.client.end().catch(() => undefined);
}

/** Streams one hour out of production as CSV; returns the file's size. */
async function copyHourToCsv(s: Session, layout: TableLayout, hourStartUs: number, csvPath: string): Promise<number> {
  try {
    await pipeline(s.client.query(copyTo(layout.copyOutSql(hourStartUs))), createWriteStream(csvPath));
  } catch (err) {
    throw classifyDbError(err);
  }
  return (await stat(csvPath)).size;
}

/** Exports one partition; undefined when the hour holds no rows. */
async function exportPartition(s: Session, layout: TableLayout, hourStartUs: number, reason: 'new' | 'late'): Promise<PartitionResult | undefined> {
  const table = layout.table.name;
  const csvPath = join(s.opts.workDir, `${table}-${hourStartUs}.csv`);
  const parquetPath = join(s.opts.workDir, `${table}-${hourStartUs}.parquet`);
  try {
    const t0 = Date.now();
    if ((await copyHourToCsv(s, layout, hourStartUs, csvPath)) === 0) return undefined;
    const t1 = Date.now();
    const file = await s.writer.convert(layout, csvPath, parquetPath);
    const t2 = Date.now();
    await rm(csvPath, { force: true });
    const path = partitionPath(s.opts.store.prefix, table, hourStartUs);
    failpoint('archive.after_temp_write');
    await s.store.putFile(path.objectKey, parquetPath, 'application/vnd.apache.parquet');
    const exportedAtUs = Date.now() * 1000;
    const manifest = buildManifest(layout, path, hourStartUs, file, s.opts.compression, exportedAtUs);
    await s.store.putBytes(path.manifestKey, Buffer.from(JSON.stringify(manifest, null, 2) + '\n'), 'application/json');
    failpoint('archive.after_upload');
    // Written last: until this commits, the next run redoes the partition (same keys, overwritten).
    await recordExport(
      s.client,
      table,
      { hourStartUs, rowCount: file.rowCount, maxMergedAtUs: file.maxMergedAtUs, objectKey: path.objectKey, checksum: file.sha256 },
      exportedAtUs,
    ).catch((err: unknown) => {
      throw classifyDbError(err);
    });
    s.metrics.archive_rows_exported_total.inc({ table }, file.rowCount);
    s.metrics.archive_partitions_exported_total.inc({ table });
    const timingsMs = { copyOut: t1 - t0, parquet: t2 - t1, store: Date.now() - t2 };
    s.log.info({ table, hourStartUs, key: path.objectKey, rows: file.rowCount, bytes: file.bytes, reason, timingsMs }, 'partition exported');
    return { table, hourStartUs, objectKey: path.objectKey, rows: file.rowCount, bytes: file.bytes, sha256: file.sha256, reason };
  } finally {
    await rm(csvPath, { force: true });
    await rm(parquetPath, { force: true });
  }
}

interface TablePlan {
  readonly layout: TableLayout;
  readonly lateHours: readonly number[];
  /** Start of the forward backlog: the end of the newest exported hour, else the first row's hour (dueEnd when none). */
  readonly forwardFromUs: number;
}

async function planTable(s: Session, layout: TableLayout, nowUs: number, dueEnd: number): Promise<TablePlan> {
  const frontier = await exportFrontierUs(s.client, layout.table.name);
  let lateHours: number[] = [];
  if (frontier !== undefined && s.opts.lateLookbackHours > 0) {
    const lookbackStart = Math.floor((nowUs - s.opts.lateLookbackHours * HOUR_US) / HOUR_US) * HOUR_US;
    lateHours = await hoursWithLateRows(s.client, layout.table, lookbackStart, Math.min(frontier, dueEnd));
  }
  // Never exported: the backlog starts at the first hour holding a row (known span for the ETA).
  const forwardFromUs = frontier ?? (await nextHourWithRows(s.client, layout.table, Number.NEGATIVE_INFINITY, dueEnd)) ?? dueEnd;
  return { layout, lateHours, forwardFromUs };
}

function deriveSession(s: Session, record: (r: PartitionResult, spanDoneUs: number) => void): DeriveSession {
  return {
    opts: s.opts,
    client: s.client,
    readers: s.readers,
    store: s.store,
    writer: s.writer,
    log: s.log,
    signal: s.deps.signal,
    progress: s.deps.progress,
    onPartition: (r) => {
      s.metrics.archive_rows_exported_total.inc({ table: r.table }, r.rows);
      s.metrics.archive_partitions_exported_total.inc({ table: r.table });
      record(r, 0);
    },
  };
}

/** One pass: export every due hour (late re-exports first, then the forward backlog). */
async function exportCycle(s: Session): Promise<ArchiveStats> {
  const started = Date.now();
  const stats = emptyStats();
  const nowUs = s.deps.nowUs?.() ?? (await productionNowUs(s.client));
  const mark =
    s.deps.mergedThroughUs !== undefined
      ? { watermarkUs: s.deps.mergedThroughUs, stalled: false, staleGatherers: 0, liveGatherers: 0 }
      : await mergeWatermark(s.client, nowUs, s.opts.gathererStaleMs * 1000);
  const dueEnd = dueEndUs(mark.watermarkUs, s.opts.exportLagMs);
  stats.dedupStalled = mark.stalled;
  if (mark.stalled) s.log.warn({ staleGatherers: mark.staleGatherers }, 'no deduplicator cursor moved recently: nothing is due');
  const plans: TablePlan[] = [];
  if (!Number.isFinite(dueEnd)) return { ...stats, elapsedMs: Date.now() - started };
  for (const layout of s.layouts) plans.push(await planTable(s, layout, nowUs, dueEnd));
  const progress = new Progress(plans, dueEnd, s.opts.progressIntervalMs, s.deps.progress);
  const record = (r: PartitionResult | undefined, spanDoneUs: number): void => {
    progress.advance(r?.rows ?? 0, spanDoneUs, r !== undefined);
    if (!r) return;
    stats.partitions++;
    if (r.reason === 'late') stats.reexports++;
    stats.rows += r.rows;
    stats.bytes += r.bytes;
    stats.exported.push(r);
  };
  for (const plan of plans) {
    for (const hour of plan.lateHours) {
      if (s.deps.signal?.aborted) break;
      record(await exportPartition(s, plan.layout, hour, 'late'), 0);
    }
    let from = plan.forwardFromUs;
    while (!s.deps.signal?.aborted) {
      const hour = await nextHourWithRows(s.client, plan.layout.table, from, dueEnd);
      if (hour === undefined) break;
      // The span covered includes the empty hours skipped to reach this one.
      record(await exportPartition(s, plan.layout, hour, 'new'), hour + HOUR_US - from);
      from = hour + HOUR_US;
    }
    const frontier = await exportFrontierUs(s.client, plan.layout.table.name);
    if (frontier !== undefined) s.metrics.archive_lag_seconds.set({ table: plan.layout.table.name }, Math.max(0, (nowUs - frontier) / 1e6));
  }
  progress.finish();
  const certify = { client: s.client, store: s.store, rawPrefix: s.opts.store.prefix, onPartition: (r: PartitionResult) => record(r, 0) };
  if (s.opts.coverage) await certifyExported(certify, [...stats.exported], s.deps.signal);
  // raw/ is complete below dueEnd unless the pass was stopped: only then may the derived tiers read it.
  if (!s.deps.signal?.aborted) await deriveCycle(deriveSession(s, record), nowUs, dueEnd);
  stats.elapsedMs = Date.now() - started;
  stats.rowsPerSecond = stats.elapsedMs > 0 ? Math.round((stats.rows * 1000) / stats.elapsedMs) : 0;
  return stats;
}

/** Exports everything that is due now, then returns (the `--once` mode). */
export async function exportOnce(opts: ArchiveOptions, deps: ArchiveDeps = {}): Promise<ArchiveStats> {
  const s = await openSession(opts, deps);
  try {
    return await exportCycle(s);
  } catch (err) {
    s.metrics.archive_errors_total.inc({ type: errorType(err) });
    throw err;
  } finally {
    await closeSession(s);
  }
}

const errorType = (err: unknown): string =>
  isKdpError(err, 'KDP_ERR_ARCHIVE_STORE')
    ? 'store'
    : isKdpError(err) && err.code.startsWith('KDP_ERR_DB')
      ? 'db'
      : isKdpError(err, 'KDP_ERR_ARCHIVE_BUSY')
        ? 'busy'
        : 'other';

function addStats(total: ArchiveStats, cycle: ArchiveStats): void {
  total.partitions += cycle.partitions;
  total.reexports += cycle.reexports;
  total.rows += cycle.rows;
  total.bytes += cycle.bytes;
  total.elapsedMs += cycle.elapsedMs;
  total.dedupStalled = cycle.dedupStalled;
  total.exported.push(...cycle.exported);
  total.rowsPerSecond = total.elapsedMs > 0 ? Math.round((total.rows * 1000) / total.elapsedMs) : 0;
}

/**
 * The service loop: a cycle every intervalMs until the signal aborts. Operating errors (production
 * or store unreachable, lock held) are counted, logged and retried on the next cycle with a fresh
 * session; a broken invariant (KDP_ERR_INTERNAL) ends the loop.
 */
export async function runArchiver(opts: ArchiveOptions, deps: ArchiveDeps = {}): Promise<ArchiveStats> {
  const log = deps.log ?? createLogger('archive', { level: opts.log.level });
  const metrics = deps.metrics ?? createMetrics(ARCHIVE_METRICS, createRegistry(false));
  const d: ArchiveDeps = { ...deps, log, metrics };
  const total = emptyStats();
  let session: Session | undefined;
  let failures = 0;
  while (!deps.signal?.aborted) {
    try {
      session ??= await openSession(opts, d);
      const cycle = await exportCycle(session);
      addStats(total, cycle);
      failures = 0;
      deps.health?.cycleOk();
      const { partitions, reexports, rows, bytes, elapsedMs, rowsPerSecond, dedupStalled } = cycle;
      log.info({ partitions, reexports, rows, bytes, elapsedMs, rowsPerSecond, dedupStalled }, 'archive cycle done');
    } catch (err) {
      // A broken invariant is a bug: crash. Everything else (database, store, disk) is retried.
      if (isKdpError(err, 'KDP_ERR_INTERNAL')) throw err;
      failures++;
      metrics.archive_errors_total.inc({ type: errorType(err) });
      const code = isKdpError(err) ? err.code : 'unclassified';
      deps.health?.cycleFailed(code);
      log.error({ code, err: (err as Error).message, failures }, 'archive cycle failed; retrying next cycle');
      if (session) await closeSession(session);
      session = undefined;
    }
    // No jitter: one archiver per production database. The ceiling stays at 2^8 s as before.
    const waitMs = failures === 0 ? opts.intervalMs : backoffDelayMs(failures, { initialMs: 1_000, maxMs: Math.min(opts.intervalMs, 256_000), jitter: 'none' });
    await sleep(waitMs, undefined, { signal: deps.signal }).catch(() => undefined);
  }
  if (session) await closeSession(session);
  return total;
}
