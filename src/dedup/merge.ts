// One merge cycle for one gatherer: read the xid horizon, pick the batches below it that the
// cursor has not passed, stream their rows gatherer -> production staging with COPY (no per-row
// work in Node), INSERT … ON CONFLICT DO NOTHING into the keyed tables and advance the cursor in
// the same production transaction. See docs/semantics.md "Deduplicator".
import { pipeline } from 'node:stream/promises';
import type { Readable, Writable } from 'node:stream';
import type { Client } from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { KdpError, classifyDbError } from '../core/errors';
import { TRADE_COARSE_TIME_US } from '../kalshi/protocol';
import { batchesByTable, planCycle, planWholeXid, type BatchRow, type CyclePlan, type PlanLimits } from './plan';
import { failpoint, failpointActive, midStreamKiller } from '../core/failpoint';
import type { StreamGate } from './gate';
import {
  LIST_BATCHES,
  LIST_BATCHES_OF_XID,
  LOCK_GATHERER,
  LOCK_MERGE,
  READ_CURSOR,
  READ_HORIZON,
  TABLE_STATEMENTS,
  TRADE_PRECISION,
  UPSERT_CURSOR,
  type TableStatements,
} from './statements';

export type Side = 'gatherer' | 'production';

/** An operating error tagged with the database it came from, so the caller knows what is down. */
export class SideError extends Error {
  constructor(
    readonly side: Side,
    override readonly cause: KdpError,
  ) {
    super(`${side}: ${cause.message}`);
  }
}

/** How a table's staged rows went in: anti-join + plain INSERT, ON CONFLICT, or fast then ON CONFLICT. */
export type MergePath = 'fast' | 'conflict' | 'fallback';

export interface TableCounts {
  read: number;
  /** Rows inserted into production (some may replace a `refined` trade copy). */
  merged: number;
  duplicates: number;
  /** Trades only: whole-second copies in production replaced by a copy with the finer time. */
  refined?: number;
  /** Duplicates whose production row gained this gatherer's delivered_by bit (the rest had it already). */
  marked?: number;
  path?: MergePath;
}

export interface MergeResult {
  readonly instanceId: string;
  readonly horizon: bigint;
  readonly cursorBefore: bigint;
  readonly cursorAfter: bigint;
  readonly ledgerUpdatedAt: bigint;
  readonly batches: number;
  /** Largest batch id merged from this database so far (this cycle's, else the cursor's). */
  readonly maxBatchId: bigint;
  readonly expectedRows: number;
  readonly tables: ReadonlyMap<string, TableCounts>;
  /** More batches wait below the horizon (a limit stopped this cycle): run again at once. */
  readonly more: boolean;
  /** Markets seen in the staged rows (ticker -> newest received_at µs), for frozen-feed checks. */
  readonly markets: ReadonlyMap<string, number>;
  readonly unknownTables: readonly string[];
  /** Milliseconds spent streaming (COPY out -> staging), merging (INSERTs) and committing. */
  readonly timingsMs: { stream: number; merge: number; commit: number };
}

export interface MergeContext {
  readonly name: string;
  readonly limits: PlanLimits;
  readonly trackMarkets: boolean;
  readonly nowUs: () => number;
  readonly beforeCommit?: ((gatherer: string) => Promise<void> | void) | undefined;
  /**
   * Widest time span (µs) of staged rows the anti-join fast path covers: it scans production's
   * key index over the span, so a cycle mixing old rows (REST backfill) with new ones goes row by row.
   */
  readonly fastPathSpanMaxUs: number;
  /** Shared by parallel cycles: their COPY streams take turns (see gate.ts). */
  readonly streamGate?: StreamGate | undefined;
  /** This gatherer's delivered_by bit as a mask (1 << gatherer_bits.bit; provenance.ts). */
  readonly deliveredMask: bigint;
}

const FROZEN_TABLES = new Set(['orderbook_deltas', 'trades']);

/** Runs `fn` and tags its failure with `side`. */
export async function onSide<T>(side: Side, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof SideError) throw err;
    throw new SideError(side, classifyDbError(err));
  }
}

const toBatch = (r: { batch_id: string; table_name: string; row_count: number; xid: string }): BatchRow => ({
  batchId: BigInt(r.batch_id),
  table: r.table_name,
  rows: r.row_count,
  xid: BigInt(r.xid),
});

async function planBatches(gatherer: Client, cursor: bigint, horizon: bigint, limits: PlanLimits): Promise<CyclePlan> {
  const listed = await gatherer.query(LIST_BATCHES, [cursor.toString(), horizon.toString(), limits.batchesMax + 1]);
  const plan = planCycle(listed.rows.map(toBatch), horizon, limits);
  if (plan.needWholeXid === undefined) return plan;
  const group = await gatherer.query(LIST_BATCHES_OF_XID, [plan.needWholeXid.toString()]);
  return planWholeXid(group.rows.map(toBatch), plan.needWholeXid);
}

/** Streams one table's rows of the given batches into its production staging table. */
async function streamTable(gatherer: Client, production: Client, table: string, ids: bigint[], first: boolean): Promise<number> {
  const stmt = TABLE_STATEMENTS.get(table)!;
  let failed: Side | undefined;
  const source: Readable = gatherer.query(copyTo(stmt.copyOut(ids)));
  const sink = production.query(copyFrom(stmt.copyIn));
  source.once('error', () => (failed ??= 'gatherer'));
  (sink as Writable).once('error', () => (failed ??= 'production'));
  try {
    if (first && failpointActive('dedup.mid_stream')) await pipeline(source, midStreamKiller(), sink);
    else await pipeline(source, sink);
  } catch (err) {
    throw new SideError(failed ?? 'production', classifyDbError(err));
  }
  return sink.rowCount;
}

/** min/max of the staged rows' time column (text; NULLs when nothing is staged). */
interface StagedBounds {
  readonly lo: string | null;
  readonly hi: string | null;
}

async function stagedBounds(production: Client, stmt: TableStatements): Promise<StagedBounds> {
  const r = await production.query(stmt.timeBounds!);
  return r.rows[0] as StagedBounds;
}

const UNIQUE_VIOLATION = '23505';
const SAVEPOINT = 'kdp_merge_fast';

/**
 * Inserts one table's staged rows whose keys production lacks; returns how many went in. Tries
 * the anti-join fast path inside a savepoint; a unique violation there (the staged rows repeat a
 * key among themselves, or a writer outside the merge lock committed one) rolls back to the
 * savepoint and the ON CONFLICT statement does the same work row by row. Either way each key is
 * inserted at most once, and the count is the number of rows inserted.
 */
async function insertStaged(
  production: Client,
  stmt: TableStatements,
  mergedAt: number,
  spanMaxUs: number,
  mask: string,
  bounds: StagedBounds | undefined,
): Promise<{ merged: number; path: MergePath }> {
  const rowByRow = async (): Promise<{ merged: number; path: MergePath }> => {
    const r = await production.query(stmt.merge, [mergedAt, mask]);
    return { merged: r.rowCount ?? 0, path: 'conflict' };
  };
  if (!stmt.mergeFast || !bounds) return rowByRow();
  const { lo, hi } = bounds;
  if (lo === null || hi === null) return { merged: 0, path: 'fast' };
  if (spanMaxUs <= 0 || BigInt(hi) - BigInt(lo) > BigInt(spanMaxUs)) return rowByRow();
  await production.query(`SAVEPOINT ${SAVEPOINT}`);
  try {
    const r = await production.query(stmt.mergeFast, [mergedAt, lo, hi, mask]);
    await production.query(`RELEASE SAVEPOINT ${SAVEPOINT}`);
    return { merged: r.rowCount ?? 0, path: 'fast' };
  } catch (err) {
    if ((err as { code?: unknown }).code !== UNIQUE_VIOLATION) throw err;
  }
  await production.query(`ROLLBACK TO SAVEPOINT ${SAVEPOINT}`);
  await production.query(`RELEASE SAVEPOINT ${SAVEPOINT}`);
  const r = await production.query(stmt.merge, [mergedAt, mask]);
  return { merged: r.rowCount ?? 0, path: 'fallback' };
}

/**
 * Inserts one table's staged rows (insertStaged) and records this gatherer in the delivered_by of
 * the rows production already held. The UPDATE runs only when the insert left duplicates (a cycle
 * of new rows costs nothing extra) and writes only rows whose bit is not set yet.
 */
async function mergeTable(
  production: Client,
  stmt: TableStatements,
  ctx: { mergedAt: number; spanMaxUs: number; mask: bigint; staged: number },
  known?: StagedBounds,
): Promise<{ merged: number; path: MergePath; marked: number }> {
  const mask = ctx.mask.toString();
  const bounds = stmt.timeBounds ? (known ?? (await stagedBounds(production, stmt))) : undefined;
  const { merged, path } = await insertStaged(production, stmt, ctx.mergedAt, ctx.spanMaxUs, mask, bounds);
  if (merged >= ctx.staged) return { merged, path, marked: 0 };
  if (stmt.markBounded && (bounds?.lo == null || bounds.hi == null)) return { merged, path, marked: 0 };
  const params = stmt.markBounded ? [mask, bounds!.lo, bounds!.hi] : [mask];
  const r = await production.query(stmt.markDelivered, params);
  return { merged, path, marked: r.rowCount ?? 0 };
}

async function marketsSeen(production: Client, tables: Iterable<string>): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const table of tables) {
    const sql = TABLE_STATEMENTS.get(table)?.tickersSeen;
    if (!FROZEN_TABLES.has(table) || !sql) continue;
    const r = await production.query(sql);
    for (const row of r.rows as { ticker: string; last_us: string }[]) {
      const at = Number(row.last_us);
      if ((out.get(row.ticker) ?? 0) < at) out.set(row.ticker, at);
    }
  }
  return out;
}

/**
 * One cycle for one gatherer. `production` must have the staging tables (setupProduction) and no
 * open transaction. On error the caller must discard both clients (their state is unknown).
 */
export async function mergeOnce(ctx: MergeContext, gatherer: Client, production: Client): Promise<MergeResult> {
  const head = await onSide('gatherer', () => gatherer.query(READ_HORIZON));
  const horizon = BigInt(head.rows[0].horizon);
  const instanceId: string | null = head.rows[0].instance_id;
  if (!instanceId) throw new SideError('gatherer', new KdpError('KDP_ERR_SCHEMA_KIND', 'gatherer database has no kdp_schema row'));
  await onSide('production', async () => {
    await production.query('BEGIN');
    await production.query(LOCK_GATHERER, [ctx.name]);
  });
  const cur = await onSide('production', () => production.query(READ_CURSOR, [ctx.name, instanceId]));
  const cursorBefore = cur.rowCount ? BigInt(cur.rows[0].merged_xid) : 0n;
  const ledgerUpdatedAt = cur.rowCount ? BigInt(cur.rows[0].ledger_updated_at) : 0n;
  const mergedBatchIdBefore = cur.rowCount ? BigInt(cur.rows[0].merged_batch_id) : 0n;
  const plan = cursorBefore >= horizon ? undefined : await onSide('gatherer', () => planBatches(gatherer, cursorBefore, horizon, ctx.limits));
  const base = { instanceId, horizon, cursorBefore, ledgerUpdatedAt };
  if (!plan || plan.batches.length === 0) {
    // Nothing below the horizon: every batch there is merged. Leave the cursor (saves a write
    // per idle cycle); the next batch will have an xid at or above the current horizon anyway.
    await onSide('production', () => production.query('COMMIT'));
    return {
      ...base,
      cursorAfter: cursorBefore,
      batches: 0,
      maxBatchId: mergedBatchIdBefore,
      expectedRows: 0,
      tables: new Map(),
      more: false,
      markets: new Map(),
      unknownTables: [],
      timingsMs: { stream: 0, merge: 0, commit: 0 },
    };
  }
  return mergePlan(ctx, gatherer, production, plan, base, mergedBatchIdBefore);
}

/** Streams each table's batches of the plan from the gatherer into production staging (the stream gate held). */
async function streamPlan(
  ctx: MergeContext,
  gatherer: Client,
  production: Client,
  plan: CyclePlan,
): Promise<{ tables: Map<string, TableCounts>; unknownTables: string[] }> {
  const tables = new Map<string, TableCounts>();
  const unknownTables: string[] = [];
  let first = true;
  const release = await ctx.streamGate?.acquire();
  try {
    for (const [table, ids] of batchesByTable(plan.batches)) {
      if (!TABLE_STATEMENTS.has(table)) {
        unknownTables.push(table);
        continue;
      }
      const read = await streamTable(gatherer, production, table, ids, first);
      first = false;
      tables.set(table, { read, merged: 0, duplicates: 0 });
    }
  } finally {
    release?.();
  }
  return { tables, unknownTables };
}

/**
 * Settles the staged trades' seconds-only copies against their finer copies (TRADE_PRECISION):
 * drops staged whole-second copies of trades held finer, deletes production's whole-second copies
 * of trades staged finer. Returns how many production rows were deleted (each is replaced by the
 * insert that follows). Costs one probe per staged trade; trades are ~1 % of the rows.
 */
async function settleTradePrecision(production: Client, { lo, hi }: StagedBounds, mask: bigint): Promise<DeletedCopies> {
  const none = { ts: [], id: [], mask: [] };
  if (lo === null || hi === null) return none;
  const range = [(BigInt(lo) - BigInt(TRADE_COARSE_TIME_US)).toString(), (BigInt(hi) + BigInt(TRADE_COARSE_TIME_US)).toString()];
  await production.query(TRADE_PRECISION.dropCoarseStagedByStaged);
  await production.query(TRADE_PRECISION.dropCoarseStagedByProduction, [...range, mask.toString()]);
  const deleted = await production.query(TRADE_PRECISION.deleteCoarseProduction, range);
  const rows = deleted.rows as { ts: string; id: string; mask: string | null }[];
  return { ts: rows.map((r) => r.ts), id: rows.map((r) => r.id), mask: rows.map((r) => r.mask) };
}

/** Production trade copies the precision settling deleted: their finer replacement inherits their delivered_by. */
interface DeletedCopies {
  readonly ts: string[];
  readonly id: string[];
  readonly mask: (string | null)[];
}

/** Merges every staged table into its keyed table, filling in the counts. */
async function mergeStaged(production: Client, tables: Map<string, TableCounts>, mergedAt: number, ctx: MergeContext): Promise<void> {
  for (const [table, counts] of tables) {
    if (counts.read === 0) continue;
    const stmt = TABLE_STATEMENTS.get(table)!;
    // Trades: one scan of the staged range serves both the precision settling and the insert (the
    // settling only removes staged rows, so the range still bounds what is left).
    const bounds = table === 'trades' ? await stagedBounds(production, stmt) : undefined;
    const deleted = bounds ? await settleTradePrecision(production, bounds, ctx.deliveredMask) : undefined;
    const sizes = { mergedAt, spanMaxUs: ctx.fastPathSpanMaxUs, mask: ctx.deliveredMask, staged: counts.read };
    const { merged, path, marked } = await mergeTable(production, stmt, sizes, bounds);
    if (deleted && deleted.ts.length > 0) await production.query(TRADE_PRECISION.restoreDeliveredBy, [deleted.ts, deleted.id, deleted.mask]);
    counts.merged = merged;
    counts.duplicates = counts.read - merged;
    counts.marked = marked;
    counts.path = path;
    if (table === 'trades') counts.refined = deleted?.ts.length ?? 0;
  }
}

async function mergePlan(
  ctx: MergeContext,
  gatherer: Client,
  production: Client,
  plan: CyclePlan,
  base: { instanceId: string; horizon: bigint; cursorBefore: bigint; ledgerUpdatedAt: bigint },
  mergedBatchIdBefore: bigint,
): Promise<MergeResult> {
  const t0 = performance.now();
  const { tables, unknownTables } = await streamPlan(ctx, gatherer, production, plan);
  const markets = ctx.trackMarkets ? await onSide('production', () => marketsSeen(production, tables.keys())) : new Map<string, number>();
  const t1 = performance.now();
  // merged_at is taken under the merge lock, so it grows in commit order across gatherers.
  await onSide('production', () => production.query(LOCK_MERGE));
  const mergedAt = ctx.nowUs();
  await onSide('production', () => mergeStaged(production, tables, mergedAt, ctx));
  const t2 = performance.now();
  failpoint('dedup.after_merge_before_commit');
  if (ctx.beforeCommit) await ctx.beforeCommit(ctx.name);
  let maxBatchId = mergedBatchIdBefore;
  let expectedRows = 0;
  for (const b of plan.batches) {
    if (b.batchId > maxBatchId) maxBatchId = b.batchId;
    expectedRows += b.rows;
  }
  await onSide('production', async () => {
    await production.query(UPSERT_CURSOR, [ctx.name, base.instanceId, plan.nextCursor.toString(), maxBatchId.toString(), ctx.nowUs()]);
    await production.query('COMMIT');
  });
  const timingsMs = { stream: t1 - t0, merge: t2 - t1, commit: performance.now() - t2 };
  return {
    ...base,
    cursorAfter: plan.nextCursor,
    batches: plan.batches.length,
    maxBatchId,
    expectedRows,
    tables,
    more: plan.more,
    markets,
    unknownTables,
    timingsMs,
  };
}
