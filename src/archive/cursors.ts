// Production-side bookkeeping of the archiver: which hours are due, which exported hours received
// late rows, and the export_cursors rows (one per exported partition).
import type { ClientBase } from 'pg';
import { quoteIdent, type TimeSeriesTable } from '../schema/tables';
import { HOUR_US } from './layout';

/** Production's clock (µs): the same clock the deduplicator's cursor timestamps come from. */
export async function productionNowUs(client: ClientBase): Promise<number> {
  const r = await client.query(`SELECT kdp_now_us()::text AS now`);
  return Number(r.rows[0].now);
}

export interface MergeWatermark {
  /** Everything the live deduplicator cursors could merge was read at or after this time (µs). */
  readonly watermarkUs: number;
  readonly liveGatherers: number;
  readonly staleGatherers: number;
  /** True when cursors exist but none is live: the deduplicator is stalled, nothing is due. */
  readonly stalled: boolean;
}

/**
 * The merge watermark: min over live gatherers of the newest dedup_cursors.updated_at (over the
 * gatherer's instances), capped at now. A gatherer whose cursor has not moved for staleUs is
 * presumed dead and ignored (it would hold every export back forever); rows it contributes later
 * reach already exported hours as late rows, which re-export the partition. With no cursor rows
 * at all (no deduplicator has ever written), only the time rule applies.
 */
export async function mergeWatermark(client: ClientBase, nowUs: number, staleUs: number): Promise<MergeWatermark> {
  const r = await client.query(`SELECT gatherer, max(updated_at)::text AS updated_at FROM dedup_cursors GROUP BY gatherer`);
  const times = r.rows.map((row: { updated_at: string }) => Number(row.updated_at));
  const live = times.filter((t) => t >= nowUs - staleUs);
  if (times.length > 0 && live.length === 0) {
    return { watermarkUs: Number.NEGATIVE_INFINITY, liveGatherers: 0, staleGatherers: times.length, stalled: true };
  }
  const watermarkUs = Math.min(nowUs, ...live);
  return { watermarkUs, liveGatherers: live.length, staleGatherers: times.length - live.length, stalled: false };
}

/** End (exclusive) of the due hours: an hour [s, s+1h) is due iff s < dueEndUs. */
export function dueEndUs(watermarkUs: number, exportLagMs: number): number {
  if (!Number.isFinite(watermarkUs)) return Number.NEGATIVE_INFINITY;
  return Math.floor((watermarkUs - exportLagMs * 1000) / HOUR_US) * HOUR_US;
}

export interface ExportCursor {
  readonly hourStartUs: number;
  readonly rowCount: number;
  readonly maxMergedAtUs: number;
  readonly objectKey: string;
  readonly checksum: string;
}

/**
 * End of the newest exported period of the table (an hour, or a derived dataset's `periodUs`: a
 * day for candles_1d, whose cursor row is keyed by the day's start), or undefined when nothing was
 * exported yet.
 */
export async function exportFrontierUs(client: ClientBase, table: string, periodUs = HOUR_US): Promise<number | undefined> {
  const r = await client.query(`SELECT max(hour_start)::text AS h FROM export_cursors WHERE table_name = $1`, [table]);
  return r.rows[0].h === null ? undefined : Number(r.rows[0].h) + periodUs;
}

/** Start of the first hour at or after fromUs (and before toUs) that holds a row, if any. */
export async function nextHourWithRows(client: ClientBase, t: TimeSeriesTable, fromUs: number, toUs: number): Promise<number | undefined> {
  const time = quoteIdent(t.timeColumn);
  const lower = Number.isFinite(fromUs) ? `${time} >= ${fromUs} AND ` : '';
  const r = await client.query(`SELECT min(${time})::text AS m FROM ${t.name} WHERE ${lower}${time} < $1`, [toUs]);
  if (r.rows[0].m === null) return undefined;
  const m = Number(r.rows[0].m);
  return Math.floor(m / HOUR_US) * HOUR_US;
}

/**
 * Hours in [fromUs, toUs) whose production rows differ from what was exported: never exported
 * although they hold rows (they were empty when the frontier passed them), more rows than
 * exported, or a merged_at above the exported maximum. Production deletes no row without putting
 * one in its place, so "more rows" catches a late row even when its merged_at is not above the
 * recorded maximum (the deduplicator's clock is not a commit order). The one replacement, a
 * whole-second trade copy by its finer copy (src/dedup/statements.ts TRADE_PRECISION, same hour),
 * keeps the count and is caught by its merged_at, taken later under the merge lock.
 */
export async function hoursWithLateRows(client: ClientBase, t: TimeSeriesTable, fromUs: number, toUs: number): Promise<number[]> {
  if (!(fromUs < toUs)) return [];
  const time = quoteIdent(t.timeColumn);
  const r = await client.query(
    `WITH p AS (
       SELECT (${time} / ${HOUR_US}) * ${HOUR_US} AS hour_start, count(*) AS n, max(merged_at) AS m
       FROM ${t.name} WHERE ${time} >= $1 AND ${time} < $2 GROUP BY 1)
     SELECT p.hour_start::text AS h FROM p
     LEFT JOIN export_cursors e ON e.table_name = $3 AND e.hour_start = p.hour_start
     WHERE e.hour_start IS NULL OR p.n > e.row_count OR p.m > e.max_merged_at
     ORDER BY 1`,
    [fromUs, toUs, t.name],
  );
  return r.rows.map((row: { h: string }) => Number(row.h));
}

export async function recordExport(client: ClientBase, table: string, c: ExportCursor, exportedAtUs: number): Promise<void> {
  await client.query(
    `INSERT INTO export_cursors (table_name, hour_start, row_count, max_merged_at, object_key, checksum, exported_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (table_name, hour_start) DO UPDATE SET row_count = EXCLUDED.row_count,
       max_merged_at = EXCLUDED.max_merged_at, object_key = EXCLUDED.object_key,
       checksum = EXCLUDED.checksum, exported_at = EXCLUDED.exported_at`,
    [table, c.hourStartUs, c.rowCount, c.maxMergedAtUs, c.objectKey, c.checksum, exportedAtUs],
  );
}

// Arbitrary constant ("kdpa"): one archiver per production database at a time.
export const ARCHIVE_LOCK_KEY = 0x6b647061;

export async function tryArchiveLock(client: ClientBase): Promise<boolean> {
  const r = await client.query(`SELECT pg_try_advisory_lock($1) AS ok`, [ARCHIVE_LOCK_KEY]);
  return r.rows[0].ok === true;
}
