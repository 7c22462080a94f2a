// One batch transaction on one connection: BEGIN; COPY; (merge;) INSERT ingest_batches; COMMIT.
// A data error (SQLSTATE class 22 or 23) in the COPY does not lose the batch: the transaction is
// restarted and the rows are bisected under savepoints until the bad rows are isolated; those
// are rejected and the rest commits under the same batch id. Shared by the streaming writer
// (writer.ts) and the one-shot writes of the REST poller and trade backfill (once.ts).
import type { ClientBase } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { classifyDbError, invariant, type KdpError } from '../core/errors';
import type { TablePlan } from './plan';

export type BatchPhase = 'copy' | 'commit';

/**
 * Test-only hook: awaited at a phase of every attempt, with the attempt's connection and backend
 * pid, so tests can kill the connection at an exact point (mid-COPY, at COMMIT).
 */
export type PhaseHook = (phase: BatchPhase, ctx: { client: ClientBase; batchId: number }) => Promise<void>;

export interface BatchAttempt {
  /** May be 0 when `onBegin` assigns it inside the transaction. */
  batchId: number;
  readonly writerName: string;
  readonly rows: readonly string[];
  /** Set just before the final INSERT + COMMIT is sent: from then on a failure is ambiguous. */
  commitSent: boolean;
  /** Rows isolated as bad in this attempt, set before the commit is sent (for ambiguous outcomes). */
  rejectedBeforeCommit: number;
}

export interface RejectedSample {
  readonly row: string;
  readonly code: string;
  readonly sqlState: string;
  readonly message: string;
}

export interface BatchResult {
  /** Rows written under the batch id (ingest_batches.row_count). */
  readonly rows: number;
  readonly rejected: number;
  /** Trades: rows copied but already present. 0 for the other tables. */
  readonly duplicates: number;
  readonly rejectedSample: RejectedSample | undefined;
}

const SAVEPOINT = 'SAVEPOINT kdp_seg';
const SAVEPOINT_RELEASE = 'RELEASE SAVEPOINT kdp_seg';
const SAVEPOINT_UNDO = 'ROLLBACK TO SAVEPOINT kdp_seg; RELEASE SAVEPOINT kdp_seg';

/** Errors a single row can cause: data exceptions (22xxx) and integrity violations (23xxx). */
export function isRowError(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && (code.startsWith('22') || code.startsWith('23'));
}

/**
 * Runs the batch transaction; throws the raw error of the first non-row failure. `onBegin` runs
 * after every BEGIN (the bisect path begins twice), inside the transaction.
 */
export async function runBatchTransaction(
  client: ClientBase,
  plan: TablePlan,
  attempt: BatchAttempt,
  hook?: PhaseHook,
  onBegin?: (client: ClientBase) => Promise<void>,
): Promise<BatchResult> {
  const n = attempt.rows.length;
  invariant(n > 0, 'a batch holds at least one row');
  await client.query('BEGIN');
  if (onBegin) await onBegin(client);
  invariant(attempt.batchId > 0, 'the batch has its id before its rows are copied');
  let accepted = n;
  let rejected: number[] = [];
  let firstError: KdpError | undefined;
  try {
    await copySegment(client, plan, attempt, 0, n, hook);
  } catch (err) {
    if (!isRowError(err)) throw err;
    // The whole COPY is void; redo the batch row by row range under savepoints.
    await client.query('ROLLBACK');
    await client.query('BEGIN');
    if (onBegin) await onBegin(client);
    const isolated = { accepted: 0, rejected: [] as number[], firstError: classifyDbError(err) };
    await bisect(client, plan, attempt, 0, n, isolated);
    accepted = isolated.accepted;
    rejected = isolated.rejected;
    firstError = isolated.firstError;
  }
  if (hook) await hook('commit', { client, batchId: attempt.batchId });
  attempt.rejectedBeforeCommit = rejected.length;
  attempt.commitSent = true;
  const results = (await client.query(plan.finishSql(attempt.batchId, attempt.writerName, accepted))) as unknown as {
    rows: { row_count: number }[];
  }[];
  const written = Number(results[0]!.rows[0]!.row_count);
  invariant(plan.staged ? written <= accepted : written === accepted, `batch ${attempt.batchId} wrote ${written} of ${accepted} rows`);
  return {
    rows: written,
    rejected: rejected.length,
    duplicates: accepted - written,
    rejectedSample: rejected.length > 0 ? sampleOf(attempt.rows[rejected[0]!]!, firstError!) : undefined,
  };
}

/** Known-bad range [lo, hi): try each half under a savepoint, recurse into the halves that fail. */
async function bisect(
  client: ClientBase,
  plan: TablePlan,
  attempt: BatchAttempt,
  lo: number,
  hi: number,
  acc: { accepted: number; rejected: number[]; firstError: KdpError },
): Promise<void> {
  if (hi - lo === 1) {
    acc.rejected.push(lo);
    return;
  }
  const mid = (lo + hi) >>> 1;
  for (const [a, b] of [
    [lo, mid],
    [mid, hi],
  ] as const) {
    await client.query(SAVEPOINT);
    try {
      await copySegment(client, plan, attempt, a, b);
      await client.query(SAVEPOINT_RELEASE);
      acc.accepted += b - a;
    } catch (err) {
      if (!isRowError(err)) throw err;
      await client.query(SAVEPOINT_UNDO);
      await bisect(client, plan, attempt, a, b, acc);
    }
  }
}

/** COPYs rows [from, to) completed with the batch id, as ONE pre-joined buffer (one stream write). */
async function copySegment(client: ClientBase, plan: TablePlan, attempt: BatchAttempt, from: number, to: number, hook?: PhaseHook): Promise<void> {
  const payload = buildPayload(attempt.rows, from, to, attempt.batchId);
  const copied = await copyIn(client, plan.copySql, payload, hook && (() => hook('copy', { client, batchId: attempt.batchId })));
  invariant(copied === to - from, `COPY reported ${copied} rows for ${to - from} row lines (a row line holds a raw newline?)`);
}

export function buildPayload(rows: readonly string[], from: number, to: number, batchId: number): Buffer {
  const suffix = `\t${batchId}\n`;
  const part = from === 0 && to === rows.length ? rows : rows.slice(from, to);
  return Buffer.from(part.join(suffix) + suffix, 'utf8');
}

/**
 * One COPY FROM STDIN. pg-copy-streams reports completion with 'finish' (after the server's
 * CommandComplete + ReadyForQuery) and every failure (server ErrorResponse, lost connection) with
 * 'error'; the listener is attached before anything is awaited so no error goes unhandled.
 * After an 'error' the stream has let go of its connection (but is not marked destroyed), so a
 * later end() would fail on it: the first error is kept and is the one reported.
 */
export async function copyIn(client: ClientBase, sql: string, payload: Buffer, beforeEnd?: () => Promise<void>): Promise<number> {
  const stream = client.query(copyFrom(sql));
  let failure: Error | undefined;
  const done = new Promise<number>((resolve, reject) => {
    stream.on('error', (err: Error) => {
      failure ??= err;
      reject(failure);
    });
    stream.on('finish', () => resolve(stream.rowCount));
  });
  done.catch(() => undefined); // handled by the await below; avoids an unhandled rejection meanwhile
  if (beforeEnd) await beforeEnd();
  if (failure) throw failure;
  try {
    stream.end(payload);
  } catch (err) {
    throw failure ?? err;
  }
  return done;
}

function sampleOf(row: string, err: KdpError): RejectedSample {
  const sqlState = typeof err.details?.sqlState === 'string' ? err.details.sqlState : '';
  return { row: row.length > 500 ? `${row.slice(0, 500)}...` : row, code: err.code, sqlState, message: err.message };
}
