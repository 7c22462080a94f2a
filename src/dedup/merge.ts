// One merge round: the due gatherers' batches below their xid horizons, streamed gatherer ->
// production staging with COPY (no per-row work in Node), each copy tagged with its gatherer's
// delivered_by bit; then one deduplicating INSERT per table (one row per key, the OR of the bits
// of all its copies) and every member's cursor, in one production transaction. See
// docs/semantics.md "Deduplicator".
import { pipeline } from 'node:stream/promises';
import type { Readable, Writable } from 'node:stream';
import type { Client } from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { KdpError, classifyDbError } from '../core/errors';
import { TRADE_COARSE_TIME_US } from '../kalshi/protocol';
import { batchesByTable, planCycle, planWholeXid, type BatchRow, type CyclePlan, type PlanLimits } from './plan';
import { failpoint, failpointActive, midStreamKiller } from '../core/failpoint';
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
/** How a table's staged rows went in: merge join + plain INSERT, ON CONFLICT, or fast then ON CONFLICT. */
export type MergePath = 'fast' | 'conflict' | 'fallback';

export interface TableCounts {
  read: number;
  /** Rows inserted into production (some may replace a `refined` trade copy). */
  merged: number;
  duplicates: number;
  /** Trades only: whole-second copies in production replaced by a copy with the finer time. */
  refined?: number;
  /** Rows production held before the round whose delivered_by gained a staged copy's bit. */
  marked?: number;
  path?: MergePath;
}

/** What a round did for one of its gatherers. */
export interface GathererMerge {
  readonly name: string;
  readonly instanceId: string;
  readonly horizon: bigint;
  readonly cursorBefore: bigint;
  readonly cursorAfter: bigint;
  readonly ledgerUpdatedAt: bigint;
  readonly batches: number;
  /** Largest batch id merged from this database so far (this round's, else the cursor's). */
  readonly maxBatchId: bigint;
  readonly expectedRows: number;
  /** Rows streamed from this gatherer, per table. */
  readonly read: ReadonlyMap<string, number>;
  /** More batches wait below the horizon (a limit stopped this round): run again at once. */
  readonly more: boolean;
  /** Markets seen in this gatherer's staged rows (ticker -> newest received_at µs), for frozen-feed checks. */
  readonly markets: ReadonlyMap<string, number>;
  readonly unknownTables: readonly string[];
}

export interface RoundResult {
  readonly merged: readonly GathererMerge[];
  /** Members whose gatherer failed: their staged rows were rolled back, the others' committed. */
  readonly failed: readonly { readonly name: string; readonly error: SideError }[];
  /** Per table, over all members: rows staged, inserted, duplicates. */
  readonly tables: ReadonlyMap<string, TableCounts>;
  /** Milliseconds spent streaming (COPY out -> staging), merging (INSERTs) and committing. */
  readonly timingsMs: { stream: number; merge: number; commit: number };
}

/** mergeOnce's result: one gatherer's round. */
export interface MergeResult extends GathererMerge {
  readonly tables: ReadonlyMap<string, TableCounts>;
  readonly timingsMs: RoundResult['timingsMs'];
}

export interface RoundContext {
  readonly limits: PlanLimits;
  readonly trackMarkets: boolean;
  readonly nowUs: () => number;
  readonly beforeCommit?: ((gatherer: string) => Promise<void> | void) | undefined;
  /**
   * Widest time span (µs) of staged rows the merge-join fast path covers: it scans production's
   * key index over the span, so a round mixing old rows (REST backfill) with new ones goes row by row.
   */
  readonly fastPathSpanMaxUs: number;
}

export interface RoundMember {
  readonly name: string;
  readonly gatherer: Client;
  /** This gatherer's delivered_by bit as a mask (1 << gatherer_bits.bit; provenance.ts). */
  readonly deliveredMask: bigint;
}

export interface MergeContext extends RoundContext {
  readonly name: string;
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

/** Streams one table's rows of the given batches into its production staging table, tagged with `mask`. */
async function streamTable(gatherer: Client, production: Client, table: string, ids: bigint[], mask: bigint, first: boolean): Promise<number> {
  const stmt = TABLE_STATEMENTS.get(table)!;
  let failed: Side | undefined;
  const source: Readable = gatherer.query(copyTo(stmt.copyOut(ids, mask)));
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
const SAVEPOINT_FAST = 'kdp_merge_fast';
const SAVEPOINT_MEMBER = 'kdp_member';
// A production session that cannot roll a failed member's stream back within this is discarded.
const MEMBER_ROLLBACK_WAIT_MS = 2_000;

interface Inserted {
  readonly merged: number;
  /** Staged keys production already held (their delivered_by may lack some staged bits). */
  readonly held: number;
  readonly path: MergePath;
}

const insertedOf = (r: { rows: { merged: number; held: number }[] }, path: MergePath): Inserted => ({ ...r.rows[0]!, path });

/**
 * Inserts one table's staged keys production lacks, one row per key. Tries the merge-join fast
 * path inside a savepoint; a unique violation there (a writer outside the merge lock committed a
 * key meanwhile) rolls back to the savepoint and the ON CONFLICT statement does the same work row
 * by row. Either way each key is inserted at most once.
 */
async function insertStaged(
  production: Client,
  stmt: TableStatements,
  mergedAt: number,
  spanMaxUs: number,
  bounds: StagedBounds | undefined,
): Promise<Inserted> {
  const rowByRow = async (path: MergePath): Promise<Inserted> => insertedOf(await production.query(stmt.merge, [mergedAt]), path);
  if (!stmt.mergeFast || !bounds) return rowByRow('conflict');
  const { lo, hi } = bounds;
  if (lo === null || hi === null) return { merged: 0, held: 0, path: 'fast' };
  if (spanMaxUs <= 0 || BigInt(hi) - BigInt(lo) > BigInt(spanMaxUs)) return rowByRow('conflict');
  await production.query(`SAVEPOINT ${SAVEPOINT_FAST}`);
  try {
    const r = await production.query(stmt.mergeFast, [mergedAt, lo, hi]);
    await production.query(`RELEASE SAVEPOINT ${SAVEPOINT_FAST}`);
    return insertedOf(r, 'fast');
  } catch (err) {
    if ((err as { code?: unknown }).code !== UNIQUE_VIOLATION) throw err;
  }
  await production.query(`ROLLBACK TO SAVEPOINT ${SAVEPOINT_FAST}`);
  await production.query(`RELEASE SAVEPOINT ${SAVEPOINT_FAST}`);
  return rowByRow('fallback');
}

/**
 * Inserts one table's staged rows (insertStaged) and records the staged copies' gatherers in the
 * delivered_by of the rows production already held. The UPDATE runs only when some staged key was
 * held (copies delivered together in one round cost nothing extra) and writes only rows that lack
 * a bit.
 */
async function mergeTable(
  production: Client,
  stmt: TableStatements,
  ctx: { mergedAt: number; spanMaxUs: number },
  known?: StagedBounds,
): Promise<{ merged: number; path: MergePath; marked: number }> {
  const bounds = stmt.timeBounds ? (known ?? (await stagedBounds(production, stmt))) : undefined;
  const { merged, held, path } = await insertStaged(production, stmt, ctx.mergedAt, ctx.spanMaxUs, bounds);
  if (held === 0) return { merged, path, marked: 0 };
  if (stmt.markBounded && (bounds?.lo == null || bounds.hi == null)) return { merged, path, marked: 0 };
  const r = await production.query(stmt.markDelivered, stmt.markBounded ? [bounds!.lo, bounds!.hi] : []);
  return { merged, path, marked: r.rowCount ?? 0 };
}

/** Markets in the staged rows per gatherer bit (mask text -> ticker -> newest received_at µs). */
async function marketsSeen(production: Client, tables: Iterable<string>): Promise<Map<string, Map<string, number>>> {
  const out = new Map<string, Map<string, number>>();
  for (const table of tables) {
    const sql = TABLE_STATEMENTS.get(table)?.tickersSeen;
    if (!FROZEN_TABLES.has(table) || !sql) continue;
    const r = await production.query(sql);
    for (const row of r.rows as { mask: string; ticker: string; last_us: string }[]) {
      let m = out.get(row.mask);
      if (!m) out.set(row.mask, (m = new Map()));
      const at = Number(row.last_us);
      if ((m.get(row.ticker) ?? 0) < at) m.set(row.ticker, at);
    }
  }
  return out;
}

/**
 * Settles the staged trades' seconds-only copies against their finer copies (TRADE_PRECISION):
 * drops staged whole-second copies of trades held finer, deletes production's whole-second copies
 * of trades staged finer. Returns the production rows deleted (each is replaced by the insert that
 * follows). Costs one probe per staged trade; trades are ~1 % of the rows.
 */
async function settleTradePrecision(production: Client, { lo, hi }: StagedBounds): Promise<DeletedCopies> {
  const none = { ts: [], id: [], mask: [] };
  if (lo === null || hi === null) return none;
  const range = [(BigInt(lo) - BigInt(TRADE_COARSE_TIME_US)).toString(), (BigInt(hi) + BigInt(TRADE_COARSE_TIME_US)).toString()];
  await production.query(TRADE_PRECISION.dropCoarseStagedByStaged);
  await production.query(TRADE_PRECISION.dropCoarseStagedByProduction, range);
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
async function mergeStaged(production: Client, tables: Map<string, TableCounts>, mergedAt: number, ctx: RoundContext): Promise<void> {
  for (const [table, counts] of tables) {
    if (counts.read === 0) continue;
    const stmt = TABLE_STATEMENTS.get(table)!;
    // Trades: one scan of the staged range serves both the precision settling and the insert (the
    // settling only removes staged rows, so the range still bounds what is left).
    const bounds = table === 'trades' ? await stagedBounds(production, stmt) : undefined;
    const deleted = bounds ? await settleTradePrecision(production, bounds) : undefined;
    const { merged, path, marked } = await mergeTable(production, stmt, { mergedAt, spanMaxUs: ctx.fastPathSpanMaxUs }, bounds);
    if (deleted && deleted.ts.length > 0) await production.query(TRADE_PRECISION.restoreDeliveredBy, [deleted.ts, deleted.id, deleted.mask]);
    counts.merged = merged;
    counts.duplicates = counts.read - merged;
    counts.marked = marked;
    counts.path = path;
    if (table === 'trades') counts.refined = deleted?.ts.length ?? 0;
  }
}

/** A member whose batches are staged (or that had none). */
interface Staged {
  readonly member: RoundMember;
  readonly base: { instanceId: string; horizon: bigint; cursorBefore: bigint; ledgerUpdatedAt: bigint };
  readonly mergedBatchIdBefore: bigint;
  readonly plan: CyclePlan | undefined;
  readonly read: Map<string, number>;
  readonly unknownTables: string[];
}

/** Reads a member's horizon and cursor and plans its batches (production transaction open, its lock held). */
async function planMember(ctx: RoundContext, m: RoundMember, production: Client): Promise<Omit<Staged, 'read' | 'unknownTables'>> {
  const head = await onSide('gatherer', () => m.gatherer.query(READ_HORIZON));
  const horizon = BigInt(head.rows[0].horizon);
  const instanceId: string | null = head.rows[0].instance_id;
  if (!instanceId) throw new SideError('gatherer', new KdpError('KDP_ERR_SCHEMA_KIND', 'gatherer database has no kdp_schema row'));
  const cur = await onSide('production', () => production.query(READ_CURSOR, [m.name, instanceId]));
  const cursorBefore = cur.rowCount ? BigInt(cur.rows[0].merged_xid) : 0n;
  const ledgerUpdatedAt = cur.rowCount ? BigInt(cur.rows[0].ledger_updated_at) : 0n;
  const mergedBatchIdBefore = cur.rowCount ? BigInt(cur.rows[0].merged_batch_id) : 0n;
  const plan = cursorBefore >= horizon ? undefined : await onSide('gatherer', () => planBatches(m.gatherer, cursorBefore, horizon, ctx.limits));
  return { member: m, base: { instanceId, horizon, cursorBefore, ledgerUpdatedAt }, mergedBatchIdBefore, plan };
}

/** Streams a planned member's batches into staging; `first` arms the mid-stream failpoint. */
async function stageMember(p: Omit<Staged, 'read' | 'unknownTables'>, production: Client, first: boolean): Promise<Staged> {
  const read = new Map<string, number>();
  const unknownTables: string[] = [];
  for (const [table, ids] of batchesByTable(p.plan?.batches ?? [])) {
    if (!TABLE_STATEMENTS.has(table)) {
      unknownTables.push(table);
      continue;
    }
    read.set(table, await streamTable(p.member.gatherer, production, table, ids, p.member.deliveredMask, first && read.size === 0));
  }
  return { ...p, read, unknownTables };
}

/**
 * Plans and stages one member inside a savepoint. A gatherer failure rolls its staged rows back
 * (bounded wait) and is returned; a production failure is thrown (the round is lost).
 */
async function tryMember(ctx: RoundContext, m: RoundMember, production: Client, first: boolean): Promise<Staged | SideError> {
  await onSide('production', () => production.query(`SAVEPOINT ${SAVEPOINT_MEMBER}`));
  try {
    const staged = await stageMember(await planMember(ctx, m, production), production, first);
    await onSide('production', () => production.query(`RELEASE SAVEPOINT ${SAVEPOINT_MEMBER}`));
    return staged;
  } catch (err) {
    if (!(err instanceof SideError) || err.side !== 'gatherer') throw err;
    const undone = await Promise.race([
      production.query(`ROLLBACK TO SAVEPOINT ${SAVEPOINT_MEMBER}`).then(
        () => true,
        () => false,
      ),
      new Promise<boolean>((r) => setTimeout(() => r(false), MEMBER_ROLLBACK_WAIT_MS).unref()),
    ]);
    if (!undone) throw new SideError('production', new KdpError('KDP_ERR_DB_TIMEOUT', `could not roll back ${m.name}'s staged rows`));
    return err;
  }
}

/** Per-table totals over the staged members. */
function tableTotals(staged: readonly Staged[]): Map<string, TableCounts> {
  const tables = new Map<string, TableCounts>();
  for (const s of staged)
    for (const [table, n] of s.read) {
      const c = tables.get(table);
      if (c) c.read += n;
      else tables.set(table, { read: n, merged: 0, duplicates: 0 });
    }
  return tables;
}

function gathererMerge(s: Staged, markets: ReadonlyMap<string, number> | undefined): GathererMerge {
  const batches = s.plan?.batches ?? [];
  let maxBatchId = s.mergedBatchIdBefore;
  let expectedRows = 0;
  for (const b of batches) {
    if (b.batchId > maxBatchId) maxBatchId = b.batchId;
    expectedRows += b.rows;
  }
  return {
    name: s.member.name,
    ...s.base,
    // Nothing below the horizon: the cursor stays (saves a write per idle round); the next batch
    // will have an xid at or above the current horizon anyway.
    cursorAfter: batches.length > 0 ? s.plan!.nextCursor : s.base.cursorBefore,
    batches: batches.length,
    maxBatchId,
    expectedRows,
    read: s.read,
    more: batches.length > 0 && s.plan!.more,
    markets: markets ?? new Map(),
    unknownTables: s.unknownTables,
  };
}

/**
 * One round over `members` (distinct names). `production` must have the staging tables
 * (openProduction) and no open transaction. A member's gatherer failing leaves it out of the
 * round (in `failed`); any production failure throws a production SideError, and the caller must
 * then discard the production session and every member's gatherer client (their state is unknown).
 */
export async function mergeRound(ctx: RoundContext, members: readonly RoundMember[], production: Client): Promise<RoundResult> {
  const t0 = performance.now();
  await onSide('production', async () => {
    await production.query('BEGIN');
    // Name order: two deduplicators locking overlapping rounds never wait on each other in a cycle.
    for (const name of members.map((m) => m.name).sort()) await production.query(LOCK_GATHERER, [name]);
  });
  const staged: Staged[] = [];
  const failed: { name: string; error: SideError }[] = [];
  for (const m of members) {
    const r = await tryMember(
      ctx,
      m,
      production,
      staged.every((s) => s.read.size === 0),
    );
    if (r instanceof SideError) failed.push({ name: m.name, error: r });
    else staged.push(r);
  }
  const tables = tableTotals(staged);
  const busy = staged.filter((s) => (s.plan?.batches.length ?? 0) > 0);
  const markets = ctx.trackMarkets && tables.size > 0 ? await onSide('production', () => marketsSeen(production, tables.keys())) : new Map();
  const t1 = performance.now();
  if (busy.length > 0) {
    // Held from the first INSERT to COMMIT (see LOCK_MERGE); merged_at is taken under it, so it
    // grows in commit order across deduplicators.
    await onSide('production', () => production.query(LOCK_MERGE));
    await onSide('production', () => mergeStaged(production, tables, ctx.nowUs(), ctx));
  }
  const t2 = performance.now();
  if (busy.length > 0) failpoint('dedup.after_merge_before_commit');
  for (const s of busy) if (ctx.beforeCommit) await ctx.beforeCommit(s.member.name);
  const merged = staged.map((s) => gathererMerge(s, markets.get(s.member.deliveredMask.toString())));
  await onSide('production', async () => {
    for (const g of merged)
      if (g.batches > 0) await production.query(UPSERT_CURSOR, [g.name, g.instanceId, g.cursorAfter.toString(), g.maxBatchId.toString(), ctx.nowUs()]);
    await production.query('COMMIT');
  });
  return { merged, failed, tables, timingsMs: { stream: t1 - t0, merge: t2 - t1, commit: performance.now() - t2 } };
}

/** A round of one gatherer (tools and tests); its gatherer's failure is thrown. */
export async function mergeOnce(ctx: MergeContext, gatherer: Client, production: Client): Promise<MergeResult> {
  const r = await mergeRound(ctx, [{ name: ctx.name, gatherer, deliveredMask: ctx.deliveredMask }], production);
  if (r.failed.length > 0) throw r.failed[0]!.error;
  return { ...r.merged[0]!, tables: r.tables, timingsMs: r.timingsMs };
}
