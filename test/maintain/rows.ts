// Rows of every time-series table for one simulated day, written as the gatherer's writers do:
// one transaction per table holding the rows and their ingest_batches row (batch id from
// ingest_batch_id_seq, commit time and xid from the defaults).
import { randomUUID } from 'node:crypto';
import type { ClientBase } from 'pg';
import { TIME_SERIES_TABLES, quoteIdent, type Column, type TimeSeriesTable } from '../../src/schema/tables';

export interface WrittenBatch {
  readonly table: string;
  readonly id: number;
  readonly dayUs: number;
  readonly rows: number;
}

let serial = 0;

/** A plausible value of the column's type; the time column and batch_id are the row's own. */
function valueOf(c: Column, t: TimeSeriesTable, atUs: number, batchId: number): unknown {
  if (c.name === t.timeColumn) return atUs;
  if (c.name === 'batch_id') return batchId;
  switch (c.type) {
    case 'uuid':
      return randomUUID();
    case 'bigint':
      return ++serial;
    case 'integer':
      return 1;
    case 'smallint':
      return 0;
    case 'boolean':
      return false;
    case 'jsonb':
      return '{}';
    case 'text[]':
      return '{}';
    case 'numeric(12,6)':
    case 'numeric(20,2)':
      return '0.5';
    default:
      return 'x';
  }
}

async function writeBatch(c: ClientBase, t: TimeSeriesTable, dayUs: number, rows: number): Promise<WrittenBatch> {
  await c.query('BEGIN');
  try {
    const id = Number((await c.query(`SELECT nextval('ingest_batch_id_seq') AS id`)).rows[0].id);
    const names = t.columns.map((col) => quoteIdent(col.name)).join(', ');
    const marks = t.columns.map((_, i) => `$${i + 1}`).join(', ');
    for (let i = 0; i < rows; i++) {
      const atUs = dayUs + 3_600_000_000 * (i + 1);
      await c.query(
        `INSERT INTO ${t.name} (${names}) VALUES (${marks})`,
        t.columns.map((col) => valueOf(col, t, atUs, id)),
      );
    }
    await c.query(`INSERT INTO ingest_batches (batch_id, writer, table_name, row_count) VALUES ($1, 'test', $2, $3)`, [id, t.name, rows]);
    await c.query('COMMIT');
    return { table: t.name, id, dayUs, rows };
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** `rows` rows in each time-series table at hours 1..rows of the day starting at dayUs. */
export async function insertDayRows(c: ClientBase, dayUs: number, rows: number): Promise<WrittenBatch[]> {
  const out: WrittenBatch[] = [];
  for (const t of TIME_SERIES_TABLES) out.push(await writeBatch(c, t, dayUs, rows));
  return out;
}
