// The storage maintenance loop (`kdp maintain`): one cycle (cycle.ts) every intervalMs on one
// database, each action logged and counted; a failed cycle is retried after an equal-jitter
// backoff (one maintainer per database, whose retries nobody else shares, against a database
// that may be busy: keep a floor). The clock and the pause are injectable, so a test can drive
// months of partition life through the loop in minutes.
import { setTimeout as delay } from 'node:timers/promises';
import { Backoff } from '../core/backoff';
import { classifyDbError, isKdpError, KdpError } from '../core/errors';
import type { Logger } from '../core/log';
import type { MAINTAIN_METRICS, MetricSet } from '../core/metrics';
import { withClient } from '../core/pgclient';
import { runDriftPass, type DriftPass } from '../ops/drift';
import { runCycle, type CycleResult } from './cycle';
import type { MaintainOptions } from './options';

export interface MaintainDeps {
  readonly log: Logger;
  readonly metrics: MetricSet<typeof MAINTAIN_METRICS>;
  /** Aborting it ends the loop after the cycle in flight. */
  readonly signal: AbortSignal;
  /** µs since the epoch; defaults to the system clock. */
  readonly nowUs?: () => number;
  /** The pause between cycles; defaults to an abortable timer. */
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

const systemNowUs = (): number => Date.now() * 1000;

async function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  await delay(ms, undefined, { signal }).catch(() => undefined);
}

/** Logs and counts what a cycle did. */
function record(result: CycleResult & { drift?: DriftPass }, deps: MaintainDeps): void {
  const { log, metrics } = deps;
  if (result.drift) recordDrift(result.drift, deps);
  for (const p of result.created) metrics.maintenance_partitions_created_total.inc({ table: p.table });
  for (const p of result.dropped) metrics.maintenance_partitions_dropped_total.inc({ table: p.table });
  if (result.batchesPruned) metrics.maintenance_batches_pruned_total.inc(result.batchesPruned);
  for (const p of result.compressed) metrics.maintenance_chunks_compressed_total.inc({ table: p.table });
  for (const j of result.jobs) {
    metrics.maintenance_jobs_run_total.inc({ proc: j.proc, outcome: j.error === undefined ? 'ok' : 'error' });
    if (j.error !== undefined) log.error({ job: j.jobId, proc: j.proc, table: j.table, err: classifyDbError(j.error) }, 'TimescaleDB job failed');
  }
  metrics.maintenance_partitions_kept_unmerged.set(result.keptUnmerged.length);
  if (result.oldestUnmergedAgeSeconds !== undefined) metrics.gatherer_oldest_unmerged_row_age_seconds.set(result.oldestUnmergedAgeSeconds);
  for (const [table, bytes] of Object.entries(result.tableBytes)) metrics.table_bytes.set({ table }, bytes);
  if (result.created.length) log.info({ partitions: result.created.map((p) => p.name) }, 'partitions created');
  if (result.dropped.length) log.info({ dropped: result.dropped.map((p) => p.name) }, 'expired partitions dropped (merged)');
  if (result.compressed.length) log.info({ chunks: result.compressed.map((p) => p.name) }, 'chunks compressed');
  if (result.keptUnmerged.length) {
    log.warn({ kept: result.keptUnmerged.map((p) => p.name) }, 'expired partitions kept: the deduplicator has not merged all their rows');
  }
}

function recordDrift(pass: DriftPass, deps: MaintainDeps): void {
  const byVerdict = new Map<string, number>();
  for (const d of pass.checked) {
    deps.metrics.book_drift_snapshots_total.inc({ verdict: d.verdict });
    byVerdict.set(d.verdict, (byVerdict.get(d.verdict) ?? 0) + 1);
  }
  const mismatched = pass.checked.filter((d) => d.verdict === 'mismatch');
  if (mismatched.length > 0) {
    const sample = mismatched.slice(0, 10).map((d) => ({ ticker: d.ticker, snapshotTs: d.snapshotTs, gatherer: d.gatherer, detail: d.detail }));
    deps.log.warn({ mismatched: mismatched.length, sample }, 'REST snapshots disagree with the book rebuilt from the WebSocket chain');
  }
  if (pass.checked.length > 0) deps.log.info({ ...Object.fromEntries(byVerdict), upToUs: pass.upToUs }, 'drift pass done');
}

/** One cycle against the configured database: recorded, and thrown (coded) when it or a job failed. */
export async function maintainOnce(opts: MaintainOptions, deps: MaintainDeps): Promise<CycleResult & { drift?: DriftPass }> {
  const nowUs = (deps.nowUs ?? systemNowUs)();
  const result = await withClient(opts.database.url, async (client) => {
    await client.query(`SET statement_timeout = ${opts.database.statementTimeoutMs}`);
    const cycle = await runCycle(client, {
      kind: opts.kind as 'gatherer' | 'production',
      nowUs,
      partitionDaysAhead: opts.partitionDaysAhead,
      batchesPrunedPerCycleMax: opts.batchesPrunedPerCycleMax,
    });
    const d = opts.drift;
    if (opts.kind !== 'production' || !d.enabled) return cycle;
    const driftOpts = {
      windowUs: d.windowMs * 1000,
      settleUs: d.settleMs * 1000,
      snapshotsMax: d.snapshotsPerCycleMax,
      staleUs: d.gathererStaleMs * 1000,
      nowUs,
    };
    return { ...cycle, drift: await runDriftPass(client, driftOpts) };
  });
  record(result, deps);
  const failed = result.jobs.find((j) => j.error !== undefined);
  if (failed) throw classifyDbError(failed.error);
  deps.metrics.maintenance_runs_total.inc({ outcome: 'ok' });
  deps.metrics.maintenance_last_success_timestamp_seconds.set(nowUs / 1e6);
  deps.log.info(
    {
      engine: result.engine,
      created: result.created.length,
      dropped: result.dropped.length,
      keptUnmerged: result.keptUnmerged.length,
      batchesPruned: result.batchesPruned,
    },
    'maintenance cycle done',
  );
  return result;
}

/** Cycles until deps.signal aborts. Failures are logged, counted and retried; nothing is fatal. */
export async function runMaintainer(opts: MaintainOptions, deps: MaintainDeps): Promise<void> {
  const sleep = deps.sleep ?? abortableSleep;
  const backoff = new Backoff({
    initialMs: Math.min(opts.backoffInitialMs, opts.intervalMs),
    maxMs: Math.min(opts.backoffMaxMs, opts.intervalMs),
    jitter: 'equal',
  });
  deps.log.info({ kind: opts.kind, intervalMs: opts.intervalMs, partitionDaysAhead: opts.partitionDaysAhead }, 'maintenance loop started');
  while (!deps.signal.aborted) {
    let pauseMs = opts.intervalMs;
    try {
      await maintainOnce(opts, deps);
      backoff.reset();
    } catch (err) {
      const e = err instanceof KdpError ? err : classifyDbError(err);
      const busy = isKdpError(e, 'KDP_ERR_MAINTAIN_BUSY');
      deps.metrics.maintenance_runs_total.inc({ outcome: busy ? 'busy' : 'error' });
      if (!busy) pauseMs = backoff.nextDelayMs();
      deps.log[busy ? 'warn' : 'error']({ err: e, code: e.code, retryInMs: pauseMs }, 'maintenance cycle failed');
    }
    await sleep(pauseMs, deps.signal);
  }
  deps.log.info('maintenance loop stopped');
}
