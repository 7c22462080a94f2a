// One-shot writes that follow the same batch rule as the streaming writers: the REST snapshot
// poller and the trade backfill write a set of rows as ONE transaction that also inserts its
// ingest_batches row (trades through the staging table and ON CONFLICT DO NOTHING). Bad rows are
// isolated and rejected like in the streaming writer.
//
// The caller owns the connection, so this does not retry by itself. On failure it throws a coded
// KdpError whose details carry { batchId, ambiguous, backend }. To retry exactly once, call again
// with `batchId` and `previousBackend` from those details (on a new connection if the old one
// died): the old backend is terminated and awaited if it still exists (its COMMIT may be in
// flight), then the id is looked up in ingest_batches and, if the earlier attempt committed,
// nothing is sent again.
import type { ClientBase } from 'pg';
import { classifyDbError, KdpError } from '../core/errors';
import type { TimeSeriesTableName } from '../schema/tables';
import { runBatchTransaction, type BatchAttempt, type RejectedSample } from './batch';
import { WRITER_NAME_PATTERN } from './options';
import { tablePlan } from './plan';
import { committedBatchRows, settlePreviousBackend, type BackendIdentity } from './session';

export interface WriteOnceResult {
  readonly batchId: number;
  /** Rows written under batchId (ingest_batches.row_count). */
  readonly rows: number;
  readonly rejected: number;
  /** Trades already present (collapsed by ON CONFLICT). */
  readonly duplicates: number;
  readonly rejectedSample: RejectedSample | undefined;
  /** True when batchId was already committed by an earlier call: nothing was written now. */
  readonly alreadyCommitted: boolean;
}

export interface WriteOnceOptions {
  /** Retry of an earlier failed call: reuse its batch id (the error's details.batchId). */
  readonly batchId?: number;
  /** Retry after an ambiguous failure: the error's details.backend, settled before the lookup. */
  readonly previousBackend?: BackendIdentity;
}

const SETTLE_WAIT_MS = 5_000;
const ONCE_IDENTITY_AND_ID = `SELECT pid, backend_start::text AS backend_start,
  CASE WHEN $1::boolean THEN nextval('ingest_batch_id_seq') END AS id
  FROM pg_stat_activity WHERE pid = pg_backend_pid()`;

/**
 * Writes `rowLines` (text.ts row lines, without batch_id) into `table` as one batch transaction.
 * The client must not be inside a transaction (and, as with any pg client, must have an 'error'
 * listener). Returns undefined when there are no rows: no batch is written.
 */
export async function writeRowsOnce(
  client: ClientBase,
  table: TimeSeriesTableName,
  rowLines: readonly string[],
  writerName: string,
  opts: WriteOnceOptions = {},
): Promise<WriteOnceResult | undefined> {
  if (!WRITER_NAME_PATTERN.test(writerName)) {
    throw new KdpError('KDP_ERR_CONFIG_INVALID', `writer name ${JSON.stringify(writerName)} must match ${WRITER_NAME_PATTERN}`);
  }
  if (rowLines.length === 0) return undefined;
  const plan = tablePlan(table);
  let backend: BackendIdentity | undefined;
  const run: BatchAttempt = { batchId: opts.batchId ?? 0, writerName, rows: rowLines, commitSent: false, rejectedBeforeCommit: 0 };
  try {
    if (opts.batchId !== undefined) {
      if (opts.previousBackend) await settlePreviousBackend(client, opts.previousBackend, SETTLE_WAIT_MS);
      const rows = await committedBatchRows(client, opts.batchId);
      if (rows !== undefined) {
        return { batchId: opts.batchId, rows, rejected: 0, duplicates: 0, rejectedSample: undefined, alreadyCommitted: true };
      }
    }
    // Everything else happens inside the batch transaction: no extra commit (and with synchronous
    // replication no extra wait) for the staging table, the backend identity or the batch id.
    const onBegin = async (c: ClientBase): Promise<void> => {
      for (const sql of plan.sessionSetupSql) await c.query(sql);
      if (backend && run.batchId > 0) return;
      const r = await c.query<{ pid: number; backend_start: string; id: string | null }>(ONCE_IDENTITY_AND_ID, [run.batchId === 0]);
      backend = { pid: r.rows[0]!.pid, backendStart: r.rows[0]!.backend_start };
      if (run.batchId === 0) run.batchId = Number(r.rows[0]!.id);
    };
    const result = await runBatchTransaction(client, plan, run, undefined, onBegin);
    return { batchId: run.batchId, ...result, alreadyCommitted: false };
  } catch (err) {
    const coded = classifyDbError(err);
    if (coded.code === 'KDP_ERR_INTERNAL') throw coded;
    if (!run.commitSent) await client.query('ROLLBACK').catch(() => undefined);
    const batchId = run.batchId > 0 ? run.batchId : undefined;
    throw new KdpError(coded.code, coded.message, { ...coded.details, batchId, ambiguous: run.commitSent, backend }, err);
  }
}
