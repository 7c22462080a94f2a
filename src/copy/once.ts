// One-shot writes that follow the same batch rule as the streaming writers: the REST snapshot
// poller and the trade backfill write a set of rows as ONE transaction that also inserts its
// ingest_batches row (trades through the staging table and ON CONFLICT DO NOTHING). Bad rows are
// isolated and rejected like in the streaming writer.
//
// The caller owns the connection, so this does not retry by itself. On failure it throws a coded
// KdpError whose details carry { batchId, ambiguous }. To retry exactly once, call again with
// `batchId` set to that id (on a new connection if the old one died): the id is looked up in
// ingest_batches first and, if the earlier attempt did commit, nothing is sent again.
import type { ClientBase } from 'pg';
import { classifyDbError, KdpError } from '../core/errors';
import type { TimeSeriesTableName } from '../schema/tables';
import { runBatchTransaction, type BatchAttempt, type RejectedSample } from './batch';
import { WRITER_NAME_PATTERN } from './options';
import { tablePlan } from './plan';
import { committedBatchRows, fetchBatchIds } from './session';

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
  /** Retry of an earlier failed call: reuse its batch id (from the error's details.batchId). */
  readonly batchId?: number;
}

/**
 * Writes `rowLines` (text.ts row lines, without batch_id) into `table` as one batch transaction.
 * The client must not be inside a transaction. Returns undefined batch-less result for no rows.
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
  let batchId = opts.batchId;
  const attempt = { commitSent: false };
  try {
    if (batchId !== undefined) {
      const rows = await committedBatchRows(client, batchId);
      if (rows !== undefined) {
        return { batchId, rows, rejected: 0, duplicates: 0, rejectedSample: undefined, alreadyCommitted: true };
      }
    }
    batchId ??= (await fetchBatchIds(client, 1))[0]!;
    for (const sql of plan.sessionSetupSql) await client.query(sql);
    const run: BatchAttempt = { batchId, writerName, rows: rowLines, commitSent: false, rejectedBeforeCommit: 0 };
    const result = await runBatchTransaction(client, plan, run, undefined).finally(() => {
      attempt.commitSent = run.commitSent;
    });
    return { batchId, ...result, alreadyCommitted: false };
  } catch (err) {
    const coded = classifyDbError(err);
    if (coded.code === 'KDP_ERR_INTERNAL') throw coded;
    if (!attempt.commitSent) await client.query('ROLLBACK').catch(() => undefined);
    throw new KdpError(coded.code, coded.message, { ...coded.details, batchId, ambiguous: attempt.commitSent }, err);
  }
}
