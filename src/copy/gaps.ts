// Gap ledger writes (gatherer database). Gaps are rare, so each is its own small statement /
// transaction on a connection the caller owns; the deduplicator copies the ledger to production
// by `updated_at`, which every write sets to the database clock (kdp_now_us()).
import type { ClientBase } from 'pg';
import { invariant } from '../core/errors';

export interface GapInsert {
  readonly gatherer: string;
  readonly connId: number;
  /** NULL when the gap concerns the connection, not one subscription. */
  readonly sid: number | null;
  readonly channel: string | null;
  /** e.g. 'seq_gap', 'sub_error', 'disconnect', 'ring_drop' (the detector's vocabulary). */
  readonly kind: string;
  readonly tickers: readonly string[];
  readonly expectedSeq: number | null;
  readonly gotSeq: number | null;
  /** Exchange error code for terminal subscription errors. */
  readonly errorCode: number | null;
  /** µs since the epoch. */
  readonly windowStartUs: number;
  readonly windowEndUs: number | null;
  readonly detectedAtUs: number;
}

export interface GapRecovery {
  readonly recoveredAtUs: number;
  /** e.g. 'resubscribe', 'rest_snapshot', 'rest_backfill'. */
  readonly method: string;
  /** Sets window_end when the gap was open-ended (left as is when already set). */
  readonly windowEndUs?: number;
}

const INSERT_GAP = `INSERT INTO gap_ledger
  (gatherer, conn_id, sid, channel, kind, tickers, expected_seq, got_seq, error_code, window_start, window_end, detected_at)
  VALUES ($1, $2, $3, $4, $5, $6::text[], $7, $8, $9, $10, $11, $12)
  RETURNING gap_id`;

const MARK_RECOVERED = `UPDATE gap_ledger
  SET recovered = true, recovered_at = $2, recovery_method = $3,
      window_end = COALESCE(window_end, $4), updated_at = kdp_now_us()
  WHERE gap_id = $1
  RETURNING gap_id`;

/** Inserts a gap and returns its gap_id. */
export async function insertGap(client: ClientBase, gap: GapInsert): Promise<number> {
  const r = await client.query<{ gap_id: string }>(INSERT_GAP, [
    gap.gatherer,
    gap.connId,
    gap.sid,
    gap.channel,
    gap.kind,
    [...gap.tickers],
    gap.expectedSeq,
    gap.gotSeq,
    gap.errorCode,
    gap.windowStartUs,
    gap.windowEndUs,
    gap.detectedAtUs,
  ]);
  const gapId = Number(r.rows[0]!.gap_id);
  invariant(Number.isSafeInteger(gapId) && gapId > 0, 'gap_id is a positive safe integer');
  return gapId;
}

/** Marks a gap recovered; false when no gap has that id. Repeating it keeps the first window_end. */
export async function markGapRecovered(client: ClientBase, gapId: number, recovery: GapRecovery): Promise<boolean> {
  const r = await client.query(MARK_RECOVERED, [gapId, recovery.recoveredAtUs, recovery.method, recovery.windowEndUs ?? null]);
  return (r.rowCount ?? 0) > 0;
}
