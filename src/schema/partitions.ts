// Partition maintenance for the plain-PostgreSQL engine: daily RANGE partitions on the BIGINT µs
// time column, created ahead of time; rows that landed in the DEFAULT partition (unexpected times,
// e.g. a replay of an old session) are moved into proper day partitions; gatherer retention drops
// old day partitions only once the deduplicator has merged every row in them.
import type { ClientBase } from 'pg';
import { isPartitioned, type SchemaKind } from './ddl';
import { DAY_US, TIME_SERIES_TABLES, quoteIdent, type TimeSeriesTable } from './tables';

export interface PartitionRange {
  kind: SchemaKind;
  fromUs: number;
  toUs: number;
}

const dayStart = (us: number): number => Math.floor(us / DAY_US) * DAY_US;
export function partitionName(table: string, dayStartUs: number): string {
  const d = new Date(dayStartUs / 1000);
  const ymd = `${d.getUTCFullYear()}${String(d.getUTCMonth() + 1).padStart(2, '0')}${String(d.getUTCDate()).padStart(2, '0')}`;
  return `${table}_p${ymd}`;
}

async function existingPartitions(client: ClientBase, table: string): Promise<Set<string>> {
  const r = await client.query(
    `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = $1`,
    [table],
  );
  return new Set(r.rows.map((x: { relname: string }) => x.relname));
}

/** Runs fn in one transaction on client: committed when it returns, rolled back when it throws. */
async function inTransaction<T>(client: ClientBase, fn: () => Promise<T>): Promise<T> {
  await client.query('BEGIN');
  try {
    const out = await fn();
    await client.query('COMMIT');
    return out;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** Creates one day partition, moving any rows of that day out of the DEFAULT partition. */
async function createDayPartition(client: ClientBase, t: TimeSeriesTable, day: number): Promise<void> {
  const name = partitionName(t.name, day);
  const time = quoteIdent(t.timeColumn);
  const moved = await client.query(`SELECT 1 FROM ${t.name}_default WHERE ${time} >= $1 AND ${time} < $2 LIMIT 1`, [day, day + DAY_US]);
  await inTransaction(client, async () => {
    if ((moved.rowCount ?? 0) === 0) {
      await client.query(`CREATE TABLE IF NOT EXISTS ${name} PARTITION OF ${t.name} FOR VALUES FROM (${day}) TO (${day + DAY_US})`);
    } else {
      // PostgreSQL refuses a new partition whose range has rows in DEFAULT: detach DEFAULT,
      // create the day, move the rows through the parent, re-attach. One transaction.
      await client.query(`ALTER TABLE ${t.name} DETACH PARTITION ${t.name}_default`);
      await client.query(`CREATE TABLE ${name} PARTITION OF ${t.name} FOR VALUES FROM (${day}) TO (${day + DAY_US})`);
      await client.query(
        `WITH moved AS (DELETE FROM ${t.name}_default WHERE ${time} >= $1 AND ${time} < $2 RETURNING *)
         INSERT INTO ${t.name} SELECT * FROM moved`,
        [day, day + DAY_US],
      );
      await client.query(`ALTER TABLE ${t.name} ATTACH PARTITION ${t.name}_default DEFAULT`);
    }
  });
}

/** Ensures day partitions cover [fromUs, toUs) for every partitioned table. Returns names created. */
export async function ensurePartitions(client: ClientBase, range: PartitionRange): Promise<string[]> {
  const created: string[] = [];
  for (const t of TIME_SERIES_TABLES) {
    if (!isPartitioned(t, range.kind)) continue;
    const have = await existingPartitions(client, t.name);
    for (let day = dayStart(range.fromUs); day < range.toUs; day += DAY_US) {
      const name = partitionName(t.name, day);
      if (have.has(name)) continue;
      await createDayPartition(client, t, day);
      created.push(name);
    }
  }
  return created;
}

/** Moves rows out of DEFAULT partitions into day partitions (created as needed). */
export async function drainDefaultPartitions(client: ClientBase, kind: SchemaKind): Promise<string[]> {
  const created: string[] = [];
  for (const t of TIME_SERIES_TABLES) {
    if (!isPartitioned(t, kind)) continue;
    const time = quoteIdent(t.timeColumn);
    const days = await client.query(`SELECT DISTINCT (${time} / ${DAY_US}) * ${DAY_US} AS day FROM ${t.name}_default ORDER BY 1 LIMIT 1000`);
    for (const row of days.rows as { day: string }[]) {
      await createDayPartition(client, t, Number(row.day));
      created.push(partitionName(t.name, Number(row.day)));
    }
  }
  return created;
}

export interface RetentionResult {
  dropped: string[];
  keptUnmerged: string[];
}

/**
 * Gatherer retention: drops day partitions older than each table's retention, but only those whose
 * every row belongs to a batch the deduplicator has merged (dedup_watermark). Without a watermark
 * nothing is dropped: unmerged rows are never lost to retention. The check runs in the transaction
 * that drops, after locking the table against writers (the parent, which writers lock first and
 * DROP needs anyway, so no lock-order deadlock with a COPY): a late COPY of old rows (a replay) in
 * flight commits first and its rows keep the partition; one after waits, then lands in DEFAULT.
 * Writers wait only for the check, which reads the batch_id BRIN index: a partition is kept while
 * it has a row at or above the first unmerged batch id (conservative: batch ids and commit order
 * may differ, never the other way). TimescaleDB's chunks get the same guard from the
 * kdp_drop_merged_chunks job (ddl.ts guardedRetentionDdl).
 */
export async function dropExpiredPartitions(client: ClientBase, nowUs: number): Promise<RetentionResult> {
  const result: RetentionResult = { dropped: [], keptUnmerged: [] };
  const wm = await client.query(`SELECT merged_xid FROM dedup_watermark`);
  if (wm.rowCount === 0) return result;
  for (const t of TIME_SERIES_TABLES) {
    if (t.gathererRetentionDays <= 0) continue;
    const cutoff = dayStart(nowUs) - t.gathererRetentionDays * DAY_US;
    for (const name of await existingPartitions(client, t.name)) {
      const m = /_p(\d{4})(\d{2})(\d{2})$/.exec(name);
      if (!m) continue;
      const start = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])) * 1000;
      if (start + DAY_US > cutoff) continue;
      const dropped = await inTransaction(client, async () => {
        await client.query(`LOCK TABLE ${t.name} IN SHARE ROW EXCLUSIVE MODE`);
        const unmerged = await client.query(
          `SELECT 1 FROM ${name} WHERE batch_id >= (SELECT min(batch_id) FROM ingest_batches
             WHERE xid >= (SELECT merged_xid FROM dedup_watermark)) LIMIT 1`,
        );
        if ((unmerged.rowCount ?? 0) > 0) return false;
        await client.query(`DROP TABLE ${name}`);
        return true;
      });
      (dropped ? result.dropped : result.keptUnmerged).push(name);
    }
  }
  return result;
}

/** ingest_batches rows read per round trip of the prune walk. */
const PRUNE_CHUNK_ROWS = 10_000;

/**
 * Gatherer bookkeeping retention: deletes ingest_batches rows of batches that are merged (below
 * dedup_watermark), older than every table's retention (plus a day), and have no row left in
 * their table (retention dropped their partitions). Without it the table grew forever: one row per
 * committed COPY batch, ~30 per second per gatherer in a 60-market chaos run (2.6 M a day) and
 * more at the exchange's size (every writer commits every flushIntervalMs while it has rows). A batch with rows
 * still present (a far-future timestamp, a partition kept unmerged) keeps its row, so a rebuild of
 * production from the gatherers still finds every row a gatherer holds. Walks the oldest rows by
 * batch id (the primary key; ids grow with commit order, so old rows come first) and stops at the
 * first chunk with nothing old in it, or after rowsMax deletions. Returns the rows deleted.
 */
export async function pruneIngestBatches(client: ClientBase, nowUs: number, rowsMax: number): Promise<number> {
  const wm = await client.query(`SELECT merged_xid::text AS xid FROM dedup_watermark`);
  if (wm.rowCount === 0) return 0;
  const retentionDaysMax = Math.max(...TIME_SERIES_TABLES.map((t) => t.gathererRetentionDays));
  const cutoffUs = dayStart(nowUs) - (retentionDaysMax + 1) * DAY_US;
  type Row = { batch_id: string; table_name: string; old: boolean; merged: boolean };
  let after = '0';
  let deleted = 0;
  while (deleted < rowsMax) {
    const r = await client.query<Row>(
      // ORDER BY the column, not the text output of the same name (which would sort '10' before '5').
      `SELECT batch_id::text, table_name, committed_at < $2 AS old, xid < $3::xid8 AS merged
         FROM ingest_batches WHERE batch_id > $1::bigint ORDER BY ingest_batches.batch_id LIMIT ${PRUNE_CHUNK_ROWS}`,
      [after, cutoffUs, wm.rows[0].xid],
    );
    if (r.rows.length === 0 || !r.rows.some((b) => b.old)) break;
    after = r.rows[r.rows.length - 1]!.batch_id;
    const candidates = r.rows.filter((b) => b.old && b.merged).slice(0, rowsMax - deleted);
    deleted += await deleteEmptyBatches(client, candidates);
  }
  return deleted;
}

/** Deletes the ingest_batches rows of `batches` whose table holds none of their rows any more. */
async function deleteEmptyBatches(client: ClientBase, batches: readonly { batch_id: string; table_name: string }[]): Promise<number> {
  let deleted = 0;
  for (const t of TIME_SERIES_TABLES) {
    const ids = batches.filter((b) => b.table_name === t.name).map((b) => b.batch_id);
    if (ids.length === 0) continue;
    // The BETWEEN lets the batch_id BRIN index skip every block range outside the chunk's ids.
    const present = await client.query<{ batch_id: string }>(
      `SELECT DISTINCT batch_id::text FROM ${t.name} WHERE batch_id BETWEEN $1::bigint AND $2::bigint AND batch_id = ANY($3::bigint[])`,
      [ids[0], ids[ids.length - 1], ids],
    );
    const keep = new Set(present.rows.map((p) => p.batch_id));
    const gone = ids.filter((id) => !keep.has(id));
    if (gone.length === 0) continue;
    const d = await client.query(`DELETE FROM ingest_batches WHERE batch_id = ANY($1::bigint[])`, [gone]);
    deleted += d.rowCount ?? 0;
  }
  return deleted;
}
