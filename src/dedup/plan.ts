// Which ingest batches one merge cycle takes. Pure: the property tests drive it directly.
//
// Input: batches with cursor <= xid < horizon, sorted by (xid, batch_id), at most
// `batchesMax + 1` of them (the extra one tells whether more exist). Output: the batches to
// merge and the new cursor. The cut always falls between two different xids, so every batch
// below the new cursor is merged and none at or above it is: that keeps the invariant
// "every batch with xid < merged_xid is in production" true for any limit.
export interface BatchRow {
  readonly batchId: bigint;
  readonly table: string;
  readonly rows: number;
  readonly xid: bigint;
}

export interface CyclePlan {
  readonly batches: readonly BatchRow[];
  /** The cursor after this plan commits (exclusive upper bound of merged xids). */
  readonly nextCursor: bigint;
  /** True when the plan stopped at a limit and more batches wait below the horizon. */
  readonly more: boolean;
  /** Set when the listing was truncated inside its first xid: fetch that whole xid group. */
  readonly needWholeXid: bigint | undefined;
}

export interface PlanLimits {
  readonly batchesMax: number;
  readonly rowsMax: number;
}

export function planCycle(listed: readonly BatchRow[], horizon: bigint, limits: PlanLimits): CyclePlan {
  const truncated = listed.length > limits.batchesMax;
  let rows = 0;
  let taken = 0;
  for (let i = 0; i < listed.length; i++) {
    const b = listed[i]!;
    const startsGroup = i === 0 || b.xid !== listed[i - 1]!.xid;
    const overLimit = taken + 1 > limits.batchesMax || rows + b.rows > limits.rowsMax;
    // A cut is allowed only at a group start and never before the first group.
    if (startsGroup && overLimit && taken > 0) {
      return {
        batches: listed.slice(0, i),
        nextCursor: b.xid,
        more: true,
        needWholeXid: undefined,
      };
    }
    rows += b.rows;
    taken++;
  }
  if (!truncated) return { batches: listed, nextCursor: horizon, more: false, needWholeXid: undefined };
  // The listing stopped inside a group. Cut before the last (possibly partial) group if an
  // earlier group exists; else the first group alone is larger than the limit: take all of it.
  const lastXid = listed[listed.length - 1]!.xid;
  const firstOfLast = listed.findIndex((b) => b.xid === lastXid);
  if (firstOfLast > 0)
    return {
      batches: listed.slice(0, firstOfLast),
      nextCursor: lastXid,
      more: true,
      needWholeXid: undefined,
    };
  return { batches: [], nextCursor: listed[0]!.xid, more: true, needWholeXid: lastXid };
}

/** The plan for one whole xid group (a single transaction that wrote many batches). */
export function planWholeXid(group: readonly BatchRow[], xid: bigint): CyclePlan {
  return { batches: group, nextCursor: xid + 1n, more: true, needWholeXid: undefined };
}

/** Groups batch ids by table name, keeping order. */
export function batchesByTable(batches: readonly BatchRow[]): Map<string, bigint[]> {
  const out = new Map<string, bigint[]>();
  for (const b of batches) {
    const list = out.get(b.table);
    if (list) list.push(b.batchId);
    else out.set(b.table, [b.batchId]);
  }
  return out;
}
