// WebSocket snapshot rows held until their upper anchor is known.
//
// A sid's stream is in exchange order and a snapshot at seq S reflects every change before S and
// none after (kalshi-protocol.md: one seq counter per subscription). The first delta received in
// order after it (no seq lost in between) therefore bounds it from above: every delta of its
// market with exchange_ts < that delta's exchange_ts is in the snapshot, and none from it on —
// whatever was lost before the snapshot and however late the market joined the sid. The worker
// learns that bound only when the delta arrives, so the snapshot rows of a sid wait here for it
// (`next_delta_ts`). Bounded: at most `rowsMax` rows per worker and `holdMs` each; a row released
// without its bound (the sid broke or closed, the cap, the hold expired, the worker drains) keeps
// `last_delta_ts` and is counted by reason.
import type { SnapshotRow } from './encoders';

export const UNBOUNDED_REASONS = ['gap', 'close', 'cap', 'expired'] as const;
export type UnboundedReason = (typeof UNBOUNDED_REASONS)[number];

interface Held {
  readonly row: SnapshotRow;
  readonly connId: number;
  readonly sid: number;
  readonly heldAtMs: number;
  done: boolean;
}

export type ReleaseRow = (row: SnapshotRow) => void;

export class SnapshotHold {
  private readonly byConn = new Map<number, Map<number, Held[]>>();
  /** Every held row in arrival order (released ones skipped lazily): oldest first for cap and expiry. */
  private queue: Held[] = [];
  private head = 0;
  held = 0;
  readonly unbounded: Record<UnboundedReason, number> = { gap: 0, close: 0, cap: 0, expired: 0 };

  constructor(
    private readonly rowsMax: number,
    private readonly holdMs: number,
    private readonly emit: ReleaseRow,
  ) {}

  /** Holds a copy of `row` (its next_delta_ts still unknown) for the sid's next in-order delta. */
  hold(connId: number, sid: number, row: SnapshotRow, nowMs: number): void {
    if (this.rowsMax === 0) return this.emitUnbounded({ row: { ...row }, connId, sid, heldAtMs: nowMs, done: false }, 'cap');
    if (this.held >= this.rowsMax) this.releaseOldest('cap');
    const h: Held = { row: { ...row, next_delta_ts: null }, connId, sid, heldAtMs: nowMs, done: false };
    let sids = this.byConn.get(connId);
    if (sids === undefined) this.byConn.set(connId, (sids = new Map()));
    let list = sids.get(sid);
    if (list === undefined) sids.set(sid, (list = []));
    list.push(h);
    this.queue.push(h);
    this.held++;
    // Rows bound behind an older one still waiting stay in the queue until it goes: keep the queue
    // within a few times the cap.
    if (this.queue.length - this.head > 2 * this.rowsMax + 1024) {
      this.queue = this.queue.slice(this.head).filter((x) => !x.done);
      this.head = 0;
    }
  }

  /** The sid's next in-order delta arrived: its exchange time bounds every snapshot held for the sid. */
  bound(connId: number, sid: number, nextDeltaTs: number): void {
    const list = this.take(connId, sid);
    for (const h of list) {
      h.done = true;
      this.held--;
      h.row.next_delta_ts = nextDeltaTs;
      this.emit(h.row);
    }
  }

  /** The sid lost frames or ended: its held snapshots get no upper anchor. */
  breakSid(connId: number, sid: number, reason: UnboundedReason): void {
    for (const h of this.take(connId, sid)) this.emitUnbounded(h, reason);
  }

  breakConnection(connId: number, reason: UnboundedReason): void {
    const sids = this.byConn.get(connId);
    if (sids === undefined) return;
    for (const sid of [...sids.keys()]) this.breakSid(connId, sid, reason);
  }

  /** Releases rows held longer than holdMs (all of them with `all`, when the worker drains). */
  expire(nowMs: number, all = false): void {
    while (this.head < this.queue.length) {
      const h = this.queue[this.head]!;
      if (!h.done && !all && nowMs - h.heldAtMs < this.holdMs) break;
      this.head++;
      if (!h.done) this.releaseOne(h, all ? 'close' : 'expired');
    }
    this.compact();
  }

  private releaseOldest(reason: UnboundedReason): void {
    while (this.head < this.queue.length) {
      const h = this.queue[this.head++]!;
      if (!h.done) return this.releaseOne(h, reason);
    }
  }

  private releaseOne(h: Held, reason: UnboundedReason): void {
    const sids = this.byConn.get(h.connId);
    const list = sids?.get(h.sid);
    if (list !== undefined) {
      const rest = list.filter((x) => x !== h);
      if (rest.length > 0) sids!.set(h.sid, rest);
      else sids!.delete(h.sid);
      if (sids!.size === 0) this.byConn.delete(h.connId);
    }
    this.emitUnbounded(h, reason);
  }

  private take(connId: number, sid: number): Held[] {
    const sids = this.byConn.get(connId);
    const list = sids?.get(sid);
    if (list === undefined) return [];
    sids!.delete(sid);
    if (sids!.size === 0) this.byConn.delete(connId);
    return list;
  }

  private emitUnbounded(h: Held, reason: UnboundedReason): void {
    if (!h.done) {
      h.done = true;
      if (this.rowsMax > 0) this.held--;
    }
    this.unbounded[reason]++;
    h.row.next_delta_ts = null;
    this.emit(h.row);
  }

  /** Drops released entries from the queue's front once they are the bulk of it (amortised O(1)). */
  private compact(): void {
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
  }
}
