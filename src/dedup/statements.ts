// SQL the deduplicator runs, prepared once from the row schemas in tables.ts (the one owner of
// column lists and keys). Control plane prepares, data plane copies.
import { DELIVERED_BY, TIME_SERIES_TABLES, TRADES, columnNames, quoteIdent, type TimeSeriesTable, type TimeSeriesTableName } from '../schema/tables';
import { TRADE_COARSE_TIME_US } from '../kalshi/protocol';

export interface TableStatements {
  readonly table: TimeSeriesTable;
  readonly staging: string;
  /** CREATE TEMP TABLE for the staging copy of the table (no keys: COPY as fast as it goes). */
  readonly createStaging: string;
  /** `COPY staging FROM STDIN` on production. */
  readonly copyIn: string;
  /** INSERT … SELECT … ON CONFLICT DO NOTHING; $1 = merged_at (µs), $2 = this gatherer's delivered_by bit. The general path. */
  readonly merge: string;
  /**
   * The fast path, for tables whose key leads with their time column: `$1` = merged_at, `$2`..`$3`
   * = the staged rows' time range (from `timeBounds`), `$4` = the delivered_by bit. A plain INSERT of the staged rows whose key
   * is not in the table yet: no speculative insertion per row (ON CONFLICT costs ~1.5x a plain
   * insert on new rows) and one anti-join over the key range instead of an index probe per row.
   * It raises unique_violation when the staged rows repeat a key among themselves (or another
   * writer committed one meanwhile): the caller then rolls back to a savepoint and runs `merge`.
   */
  readonly mergeFast: string | undefined;
  /**
   * Per-row provenance for the staged rows production already held: sets this gatherer's bit
   * (`$1`) in their delivered_by where it is not set yet (NULL, pre-migration rows, stay NULL).
   * Run only when the insert left duplicates. `$2`..`$3` = the staged time range when `markBounded`.
   */
  readonly markDelivered: string;
  readonly markBounded: boolean;
  /** `SELECT lo, hi` = min/max of the time column over the staged rows (text; NULLs when empty). */
  readonly timeBounds: string | undefined;
  /** Markets recorded in this cycle's staging rows, with their newest received_at (frozen-feed check). */
  readonly tickersSeen: string | undefined;
  /** `COPY (SELECT … WHERE batch_id …) TO STDOUT` on a gatherer, for a list of batch ids. */
  copyOut(batchIds: readonly bigint[]): string;
}

/** Anti-join fast path: only for keys that lead with the time column (the range bounds the scan). */
function fastPathStatements(t: TimeSeriesTable, cols: string, staging: string): Pick<TableStatements, 'mergeFast' | 'timeBounds'> {
  if (t.productionKey[0] !== t.timeColumn) return { mergeFast: undefined, timeBounds: undefined };
  const time = quoteIdent(t.timeColumn);
  const keyEq = t.productionKey.map((k) => `p.${quoteIdent(k)} = s.${quoteIdent(k)}`).join(' AND ');
  const sCols = columnNames(t)
    .map((c) => `s.${quoteIdent(c)}`)
    .join(', ');
  return {
    // The time bounds (bind parameters, so the plan is made for their values) prune partitions
    // and limit the probe side to the staged range of the key index.
    mergeFast:
      `INSERT INTO ${t.name} (${cols}, merged_at, ${DELIVERED_BY.name}) SELECT ${sCols}, $1::bigint, $4::bigint FROM ${staging} s` +
      ` WHERE NOT EXISTS (SELECT 1 FROM ${t.name} p WHERE ${keyEq}` +
      ` AND p.${time} BETWEEN $2::bigint AND $3::bigint)`,
    timeBounds: `SELECT min(${time})::text AS lo, max(${time})::text AS hi FROM ${staging}`,
  };
}

/** The UPDATE that records a later copy's gatherer in delivered_by (see `markDelivered`). */
function markStatement(t: TimeSeriesTable, staging: string): Pick<TableStatements, 'markDelivered' | 'markBounded'> {
  const keyEq = t.productionKey.map((k) => `p.${quoteIdent(k)} = s.${quoteIdent(k)}`).join(' AND ');
  const mask = DELIVERED_BY.name;
  // Bounded like the fast path when the key leads with time (partition pruning, key-index range).
  const markBounded = t.productionKey[0] === t.timeColumn;
  const range = markBounded ? ` AND p.${quoteIdent(t.timeColumn)} BETWEEN $2::bigint AND $3::bigint` : '';
  return {
    markDelivered: `UPDATE ${t.name} p SET ${mask} = p.${mask} | $1::bigint FROM ${staging} s WHERE ${keyEq}${range} AND p.${mask} & $1::bigint = 0`,
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
    createStaging: `CREATE TEMP TABLE IF NOT EXISTS ${staging} (${colDdl}) ON COMMIT DELETE ROWS`,
    copyIn: `COPY ${staging} (${cols}) FROM STDIN`,
    merge: `INSERT INTO ${t.name} (${cols}, merged_at, ${DELIVERED_BY.name}) SELECT ${cols}, $1::bigint, $2::bigint FROM ${staging} ON CONFLICT DO NOTHING`,
    tickersSeen: t.columns.some((c) => c.name === 'ticker')
      ? `SELECT ticker, max(received_at)::text AS last_us FROM ${staging} WHERE ticker IS NOT NULL GROUP BY ticker`
      : undefined,
    copyOut(batchIds) {
      // COPY takes no bind parameters: the ids are bigints we read from ingest_batches, printed
      // as integers. The BETWEEN lets the BRIN index on batch_id skip block ranges; ANY filters.
      let min = batchIds[0]!;
      let max = min;
      for (const id of batchIds) {
        if (id < min) min = id;
        if (id > max) max = id;
      }
      return (
        `COPY (SELECT ${cols} FROM ${t.name} WHERE batch_id BETWEEN ${min} AND ${max}` + ` AND batch_id = ANY('{${batchIds.join(',')}}'::bigint[])) TO STDOUT`
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
  /** Staged whole-second copies with a finer staged copy of the same trade: removed from staging. */
  readonly dropCoarseStagedByStaged: string;
  /** Staged whole-second copies whose finer copy production holds: removed from staging, their bit (`$3`) set on the finer copy. */
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
  return {
    dropCoarseStagedByStaged: `DELETE FROM ${staging} s USING ${staging} q WHERE ${finer('s', 'q')}`,
    dropCoarseStagedByProduction:
      `WITH d AS (DELETE FROM ${staging} s USING ${TRADES.name} p WHERE ${finer('s', 'p')} AND ${bounded} RETURNING p.exchange_ts, p.trade_id)` +
      ` UPDATE ${TRADES.name} p SET ${mask} = p.${mask} | $3::bigint FROM d WHERE p.exchange_ts = d.exchange_ts AND p.trade_id = d.trade_id` +
      ` AND ${bounded} AND p.${mask} & $3::bigint = 0`,
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
