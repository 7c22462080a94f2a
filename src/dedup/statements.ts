// SQL the deduplicator runs, prepared once from the row schemas in tables.ts (the one owner of
// column lists and keys). Control plane prepares, data plane copies.
import { DELIVERED_BY, TIME_SERIES_TABLES, TRADES, columnNames, quoteIdent, type TimeSeriesTable, type TimeSeriesTableName } from '../schema/tables';
import { TRADE_COARSE_TIME_US } from '../kalshi/protocol';

/**
 * Staging holds every copy a round streamed, each tagged with its gatherer's delivered_by bit in
 * this column (the gatherer's COPY adds it as a constant: no per-row work on production).
 */
export const STAGED_MASK = 'kdp_mask';

export interface TableStatements {
  readonly table: TimeSeriesTable;
  readonly staging: string;
  /** CREATE TEMP TABLE for the staging copy of the table (no keys: COPY as fast as it goes). */
  readonly createStaging: string;
  /** `COPY staging FROM STDIN` on production (the table's columns, then STAGED_MASK). */
  readonly copyIn: string;
  /**
   * The general path: the deduplicated staged rows (`dedupStaged`) INSERTed with ON CONFLICT DO
   * NOTHING; `$1` = merged_at (µs). Returns one row: `merged` (inserted) and `held` (staged keys
   * production already had).
   */
  readonly merge: string;
  /**
   * The fast path, for tables whose key leads with their time column: `$1` = merged_at, `$2`..`$3`
   * = the staged rows' time range (from `timeBounds`). One merge join of the deduplicated staged
   * rows with production's key index over that range flags the keys production holds; a plain
   * INSERT (no speculative insertion per row: ON CONFLICT costs ~1.5x a plain insert on new rows)
   * writes the rest. Returns `merged` and `held` like `merge`. It raises unique_violation only
   * when a writer outside the merge lock committed one of the keys meanwhile: the caller then rolls
   * back to a savepoint and runs `merge`.
   */
  readonly mergeFast: string | undefined;
  /**
   * Per-row provenance for the staged keys production already held: ORs the bits of every staged
   * copy of the key into its delivered_by where one is missing (NULL, pre-migration rows, stay
   * NULL). Run only when `held` > 0. `$1`..`$2` = the staged time range when `markBounded`.
   */
  readonly markDelivered: string;
  readonly markBounded: boolean;
  /** `SELECT lo, hi` = min/max of the time column over the staged rows (text; NULLs when empty). */
  readonly timeBounds: string | undefined;
  /** Markets recorded in this round's staging rows per gatherer bit, with their newest received_at (frozen-feed check). */
  readonly tickersSeen: string | undefined;
  /** `COPY (SELECT …, <mask> WHERE batch_id …) TO STDOUT` on a gatherer, for a list of batch ids. */
  copyOut(batchIds: readonly bigint[], mask: bigint): string;
}

/**
 * One row per staged key: the OR of the bits of all its staged copies, and the other columns of
 * the copy received first (ties: the lower bit; PostgreSQL feeds a sorted subquery's rows to the
 * aggregate in order, documented as usual rather than promised; which copy's provenance a row
 * keeps is not part of the contract). A GroupAggregate over one sort, ~25 % faster than a window
 * with DISTINCT ON (3 x 300 k deltas), and its output comes in key order, the order the key index
 * is cheapest to fill in. Columns: the table's, then STAGED_MASK.
 */
function dedupStaged(t: TimeSeriesTable, staging: string): string {
  const key = t.productionKey.map(quoteIdent).join(', ');
  const row = 'kdp_row';
  const out = columnNames(t)
    .map((c) => (t.productionKey.includes(c) ? quoteIdent(c) : `(${row}).${quoteIdent(c)}`))
    .join(', ');
  return (
    `SELECT ${out}, ${STAGED_MASK} FROM (SELECT ${key}, bit_or(${STAGED_MASK}) AS ${STAGED_MASK}, (array_agg(${row}))[1] AS ${row}` +
    ` FROM (SELECT s.*, s AS ${row} FROM ${staging} s ORDER BY ${key}, received_at, ${STAGED_MASK}) o GROUP BY ${key}) g`
  );
}

/** Merge-join fast path: only for keys that lead with the time column (the range bounds the scan). */
function fastPathStatements(t: TimeSeriesTable, cols: string, staging: string): Pick<TableStatements, 'mergeFast' | 'timeBounds'> {
  if (t.productionKey[0] !== t.timeColumn) return { mergeFast: undefined, timeBounds: undefined };
  const time = quoteIdent(t.timeColumn);
  const keyEq = t.productionKey.map((k) => `p.${quoteIdent(k)} = s.${quoteIdent(k)}`).join(' AND ');
  const sCols = columnNames(t)
    .map((c) => `s.${quoteIdent(c)}`)
    .join(', ');
  return {
    // The time bounds (bind parameters, so the plan is made for their values) prune partitions
    // and limit production's side of the join to the staged range of the key index.
    mergeFast:
      `WITH d AS MATERIALIZED (SELECT ${sCols}, s.${STAGED_MASK}, p.${time} IS NOT NULL AS held FROM (${dedupStaged(t, staging)}) s` +
      ` LEFT JOIN ${t.name} p ON ${keyEq} AND p.${time} BETWEEN $2::bigint AND $3::bigint),` +
      ` ins AS (INSERT INTO ${t.name} (${cols}, merged_at, ${DELIVERED_BY.name}) SELECT ${cols}, $1::bigint, ${STAGED_MASK} FROM d WHERE NOT held)` +
      ` SELECT count(*) FILTER (WHERE NOT held)::int AS merged, count(*) FILTER (WHERE held)::int AS held FROM d`,
    timeBounds: `SELECT min(${time})::text AS lo, max(${time})::text AS hi FROM ${staging}`,
  };
}

/** The UPDATE that records later copies' gatherers in delivered_by (see `markDelivered`). */
function markStatement(t: TimeSeriesTable, staging: string): Pick<TableStatements, 'markDelivered' | 'markBounded'> {
  const key = t.productionKey.map(quoteIdent).join(', ');
  const keyEq = t.productionKey.map((k) => `p.${quoteIdent(k)} = s.${quoteIdent(k)}`).join(' AND ');
  const mask = DELIVERED_BY.name;
  // Bounded like the fast path when the key leads with time (partition pruning, key-index range).
  const markBounded = t.productionKey[0] === t.timeColumn;
  const range = markBounded ? ` AND p.${quoteIdent(t.timeColumn)} BETWEEN $1::bigint AND $2::bigint` : '';
  const staged = `(SELECT ${key}, bit_or(${STAGED_MASK}) AS m FROM ${staging} GROUP BY ${key}) s`;
  return {
    markDelivered: `UPDATE ${t.name} p SET ${mask} = p.${mask} | s.m FROM ${staged} WHERE ${keyEq}${range} AND p.${mask} & s.m <> s.m`,
    markBounded,
  };
}

function statementsFor(t: TimeSeriesTable): TableStatements {
  const cols = columnNames(t).map(quoteIdent).join(', ');
  const staging = `kdp_stage_${t.name}`;
  const colDdl = t.columns.map((c) => `${quoteIdent(c.name)} ${c.type}`).join(', ');
  return {
    ...fastPathStatements(t, cols, staging),
    ...markStatement(t, staging),
    table: t,
    staging,
    // ON COMMIT DELETE ROWS: the staging table is empty at the start of every merge transaction,
    // also after a rollback, without a TRUNCATE per cycle.
    createStaging: `CREATE TEMP TABLE IF NOT EXISTS ${staging} (${colDdl}, ${STAGED_MASK} bigint NOT NULL) ON COMMIT DELETE ROWS`,
    copyIn: `COPY ${staging} (${cols}, ${STAGED_MASK}) FROM STDIN`,
    merge:
      `WITH d AS MATERIALIZED (${dedupStaged(t, staging)}),` +
      ` ins AS (INSERT INTO ${t.name} (${cols}, merged_at, ${DELIVERED_BY.name}) SELECT ${cols}, $1::bigint, ${STAGED_MASK} FROM d ON CONFLICT DO NOTHING RETURNING 1)` +
      ` SELECT (SELECT count(*) FROM ins)::int AS merged, ((SELECT count(*) FROM d) - (SELECT count(*) FROM ins))::int AS held`,
    tickersSeen: t.columns.some((c) => c.name === 'ticker')
      ? `SELECT ${STAGED_MASK}::text AS mask, ticker, max(received_at)::text AS last_us FROM ${staging} WHERE ticker IS NOT NULL GROUP BY 1, 2`
      : undefined,
    copyOut(batchIds, mask) {
      // COPY takes no bind parameters: the ids are bigints we read from ingest_batches and the mask
      // our own gatherer_bits value, printed as integers. The BETWEEN lets the BRIN index on batch_id skip block ranges; ANY filters.
      let min = batchIds[0]!;
      let max = min;
      for (const id of batchIds) {
        if (id < min) min = id;
        if (id > max) max = id;
      }
      return (
        `COPY (SELECT ${cols}, ${mask}::bigint FROM ${t.name} WHERE batch_id BETWEEN ${min} AND ${max}` +
        ` AND batch_id = ANY('{${batchIds.join(',')}}'::bigint[])) TO STDOUT`
      );
    },
  };
}

export const TABLE_STATEMENTS: ReadonlyMap<string, TableStatements> = new Map(
  TIME_SERIES_TABLES.map((t) => [t.name, statementsFor(t)] as [TimeSeriesTableName, TableStatements]),
);

/**
 * Trades of the seconds-only era (divergence 7, docs/kalshi.md): a WS trade that carried only `ts`
 * keys at its whole second, a REST copy of the same trade at its millisecond, so the key cannot
 * collapse them. trade_id is the exchange's unique id: two rows with one trade_id whose times share
 * a second, one exactly on it, are one trade, and the finer time is the better. Run before the
 * insert, in the merge transaction; `$1`, `$2` = the staged time range widened by a second (prunes
 * partitions, bounds the probes). The result does not depend on which copy merges first.
 */
export interface TradePrecisionStatements {
  /** Staged whole-second copies with a finer staged copy of the same trade: removed from staging, their bits added to the finer copies. */
  readonly dropCoarseStagedByStaged: string;
  /** Staged whole-second copies whose finer copy production holds: removed from staging, their bits set on the finer copy. */
  readonly dropCoarseStagedByProduction: string;
  /**
   * Production's whole-second copies of trades staged with their finer time: deleted (the staged row
   * replaces them); returns each one's delivered_by for `restoreDeliveredBy`.
   */
  readonly deleteCoarseProduction: string;
  /** After the insert: the replacing rows gain the deleted copies' delivered_by ($1 times, $2 trade ids, $3 masks; a NULL mask stays unknown). */
  readonly restoreDeliveredBy: string;
}

function tradePrecisionStatements(): TradePrecisionStatements {
  const staging = TABLE_STATEMENTS.get(TRADES.name)!.staging;
  const S = TRADE_COARSE_TIME_US;
  // "b is a finer copy of a": same trade, b inside a's second and not on it, a on its second.
  const finer = (a: string, b: string): string =>
    `${a}.exchange_ts % ${S} = 0 AND ${b}.trade_id = ${a}.trade_id AND ${b}.exchange_ts > ${a}.exchange_ts AND ${b}.exchange_ts < ${a}.exchange_ts + ${S}`;
  const bounded = 'p.exchange_ts BETWEEN $1::bigint AND $2::bigint';
  const mask = DELIVERED_BY.name;
  // The dropped copies' bits, one row per trade (an UPDATE … FROM applies one matching row only).
  const dropped = `(SELECT trade_id, exchange_ts, bit_or(m) AS m FROM d GROUP BY 1, 2) d`;
  return {
    // A finer copy is never on a whole second, so the UPDATE never touches a row the DELETE removes.
    dropCoarseStagedByStaged:
      `WITH d AS (DELETE FROM ${staging} s USING ${staging} q WHERE ${finer('s', 'q')} RETURNING s.trade_id, s.exchange_ts, s.${STAGED_MASK} AS m)` +
      ` UPDATE ${staging} q SET ${STAGED_MASK} = q.${STAGED_MASK} | d.m FROM ${dropped} WHERE ${finer('d', 'q')}`,
    dropCoarseStagedByProduction:
      `WITH d AS (DELETE FROM ${staging} s USING ${TRADES.name} p WHERE ${finer('s', 'p')} AND ${bounded}` +
      ` RETURNING p.exchange_ts, p.trade_id, s.${STAGED_MASK} AS m)` +
      ` UPDATE ${TRADES.name} p SET ${mask} = p.${mask} | d.m FROM ${dropped} WHERE p.exchange_ts = d.exchange_ts AND p.trade_id = d.trade_id` +
      ` AND ${bounded} AND p.${mask} & d.m <> d.m`,
    deleteCoarseProduction:
      `DELETE FROM ${TRADES.name} p USING ${staging} s WHERE s.exchange_ts % ${S} <> 0 AND p.trade_id = s.trade_id` +
      ` AND p.exchange_ts = s.exchange_ts - s.exchange_ts % ${S} AND ${bounded}` +
      ` RETURNING s.exchange_ts::text AS ts, s.trade_id::text AS id, p.${mask}::text AS mask`,
    restoreDeliveredBy:
      `UPDATE ${TRADES.name} p SET ${mask} = CASE WHEN u.m IS NULL THEN NULL ELSE p.${mask} | u.m END` +
      ` FROM unnest($1::bigint[], $2::uuid[], $3::bigint[]) AS u(ts, id, m) WHERE p.exchange_ts = u.ts AND p.trade_id = u.id`,
  };
}

export const TRADE_PRECISION: TradePrecisionStatements = tradePrecisionStatements();

/** Production session setup: the staging tables (temp tables vanish with the session). */
export const STAGING_SETUP: readonly string[] = [...TABLE_STATEMENTS.values()].map((s) => s.createStaging);

// ---- cursor (production) ------------------------------------------------------------------
export const LOCK_GATHERER = `SELECT pg_advisory_xact_lock(hashtext('kdp.dedup.' || $1))`;
/**
 * Held from the first merge INSERT to COMMIT: merge phases of different gatherers (and of a second
 * deduplicator) run one at a time, so concurrent transactions never wait on each other's
 * uncommitted keys in an order that could deadlock; their COPY streams still overlap.
 */
export const LOCK_MERGE = `SELECT pg_advisory_xact_lock(hashtext('kdp.dedup.merge'))`;
export const READ_CURSOR = `SELECT merged_xid::text AS merged_xid, merged_batch_id::text AS merged_batch_id,
  ledger_updated_at::text AS ledger_updated_at FROM dedup_cursors WHERE gatherer = $1 AND instance_id = $2`;
export const UPSERT_CURSOR = `INSERT INTO dedup_cursors (gatherer, instance_id, merged_xid, merged_batch_id, updated_at)
  VALUES ($1, $2, $3::xid8, $4, $5)
  ON CONFLICT (gatherer, instance_id) DO UPDATE SET merged_xid = EXCLUDED.merged_xid,
    merged_batch_id = GREATEST(dedup_cursors.merged_batch_id, EXCLUDED.merged_batch_id), updated_at = EXCLUDED.updated_at`;
export const UPSERT_LEDGER_CURSOR = `INSERT INTO dedup_cursors (gatherer, instance_id, merged_xid, ledger_updated_at, updated_at)
  VALUES ($1, $2, '0'::xid8, $3, $4)
  ON CONFLICT (gatherer, instance_id) DO UPDATE SET
    ledger_updated_at = GREATEST(dedup_cursors.ledger_updated_at, EXCLUDED.ledger_updated_at), updated_at = EXCLUDED.updated_at`;

// ---- gatherer -----------------------------------------------------------------------------
/** Horizon: every transaction with an xid below it has finished (committed or aborted). */
export const READ_HORIZON = `SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS horizon,
  (SELECT instance_id::text FROM kdp_schema) AS instance_id`;
// ORDER BY names the table's columns: the bare names would resolve to the ::text output aliases
// and sort "1000" before "984" (found when xids crossed a power of ten between two batches).
export const LIST_BATCHES = `SELECT batch_id::text AS batch_id, table_name, row_count, xid::text AS xid FROM ingest_batches
  WHERE xid >= $1::xid8 AND xid < $2::xid8 ORDER BY ingest_batches.xid, ingest_batches.batch_id LIMIT $3`;
export const LIST_BATCHES_OF_XID = `SELECT batch_id::text AS batch_id, table_name, row_count, xid::text AS xid FROM ingest_batches
  WHERE xid = $1::xid8 ORDER BY ingest_batches.batch_id`;
export const PUBLISH_WATERMARK = `INSERT INTO dedup_watermark (merged_xid, merged_batch_id, updated_at) VALUES ($1::xid8, $2, $3)
  ON CONFLICT (singleton) DO UPDATE SET merged_xid = EXCLUDED.merged_xid,
    merged_batch_id = EXCLUDED.merged_batch_id, updated_at = EXCLUDED.updated_at`;
