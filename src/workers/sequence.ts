// Sequence checking per (connection, sid). Kalshi keeps one `seq` counter per subscription,
// starting at 1, shared by every market on it and by every seq-bearing frame (orderbook_snapshot,
// orderbook_delta, and the ok / unsubscribed acks). A jump forward is a gap that invalidates every
// book on the sid; a repeat or step back is a duplicate that must not be written twice.
// Trade and lifecycle sids carry a seq too (captured live frames 2025-2026; Kalshi's 2026 docs make
// it required on lifecycle messages) and are checked the same way; whether their acks share the
// counter is undocumented, so an ack's seq on such a sid is only a claim (see claimAckSeq).
import { KdpError } from '../core/errors';

/** 'closed' is no gap: it reports where a closed connection's stream ended (see closeConnection). */
export type GapKind = 'gap' | 'terminal-error' | 'ring-drop' | 'bad-message' | 'closed';

export interface GapEvent {
  readonly kind: GapKind;
  readonly connId: number;
  readonly sid: number;
  /** Channel of the sid when known (from `subscribed` or the manager). */
  readonly channel: string | null;
  /** Next seq that was due (null when unknown, e.g. ring-drop on an unsequenced sid). */
  readonly expectedSeq: number | null;
  /** Seq that arrived instead (null for terminal errors and ring drops). */
  readonly gotSeq: number | null;
  /** Exchange error code for terminal errors (10, 17, 25), else null. */
  readonly errorCode: number | null;
  /** Markets known on the sid: all their books are unsynced until a fresh snapshot. */
  readonly tickers: readonly string[];
  /** Receive time (µs) of the last in-order frame on the sid: the loss window starts after it. */
  readonly lastGoodUs: number | null;
  /** Exchange time (µs) of the last in-order message with one: a REST backfill window starts there,
   *  so a reader lagging the exchange by minutes still asks for the right trades. */
  readonly lastGoodExchangeUs: number | null;
  /** Receive time (µs) of the frame that revealed the loss. */
  readonly detectedUs: number;
}

// Acks a non-book sid can have outstanding at once (one per update_subscription in flight).
const ACK_CLAIMS_MAX = 64;

export const TERMINAL_ERROR_CODES: ReadonlySet<number> = new Set([10, 17, 25]);

/** What `check` decided for one seq-bearing frame. */
export const SeqVerdict = { inOrder: 0, duplicate: 1, gap: 2 } as const;
export type SeqVerdict = (typeof SeqVerdict)[keyof typeof SeqVerdict];

class SidState {
  channel: string | null = null;
  nextSeq = 1;
  lastGoodUs: number | null = null;
  /** Exchange time (µs) of the last in-order message on the sid whose body carried one. */
  lastGoodExchangeUs: number | null = null;
  /** Seqs that acks on a non-book sid carried: skipped over when data jumps past them. */
  readonly ackSeqs: number[] = [];
  readonly markets = new Set<string>();
  /**
   * exchange_ts of the last delta received in order on this sid (any market); null when none has
   * been or frames were lost since. A snapshot arriving next holds every change up to this instant
   * and none after it (the sid's stream is in exchange order), including changes lost in a gap
   * detected earlier — so it anchors the snapshot, where the snapshot market's own last delta
   * would be stale after a gap (found by the chaos run's book check).
   */
  anchorTs: number | null = null;
  /** Markets whose book is invalid (after a gap) until their next snapshot. */
  readonly unsynced = new Set<string>();
  /** Markets that have had a snapshot on this sid (see noteSnapshot). */
  readonly snapshotted = new Set<string>();
}

export interface SequenceLimits {
  readonly sidsPerConnectionMax: number;
  readonly marketsPerSidMax: number;
}

export class SequenceChecker {
  private readonly connections = new Map<number, Map<number, SidState>>();
  /** The gap found by the last `check` that returned SeqVerdict.gap. */
  lastGap: GapEvent | null = null;
  gaps = 0;
  duplicates = 0;
  terminalErrors = 0;
  marketsUntracked = 0;

  constructor(private readonly limits: SequenceLimits) {}

  private state(connId: number, sid: number): SidState {
    let sids = this.connections.get(connId);
    if (sids === undefined) {
      sids = new Map();
      this.connections.set(connId, sids);
    }
    let st = sids.get(sid);
    if (st === undefined) {
      // A connection cannot legitimately hold this many live subscriptions: the input is broken.
      if (sids.size >= this.limits.sidsPerConnectionMax) {
        throw new KdpError('KDP_ERR_MSG_SHAPE', `more than ${this.limits.sidsPerConnectionMax} sids on connection ${connId}`);
      }
      st = new SidState();
      sids.set(sid, st);
    }
    return st;
  }

  private track(st: SidState, ticker: string): void {
    if (st.markets.has(ticker)) return;
    if (st.markets.size >= this.limits.marketsPerSidMax) {
      this.marketsUntracked++;
      return;
    }
    st.markets.add(ticker);
  }

  /** The manager's view of a subscription: its channel and markets ('set' replaces the list). */
  registerSubscription(connId: number, sid: number, channel: string | null, tickers: readonly string[], mode: 'set' | 'add' | 'remove'): void {
    const st = this.state(connId, sid);
    if (channel !== null) st.channel = channel;
    if (mode === 'set') {
      st.markets.clear();
      st.snapshotted.clear();
    }
    for (const t of tickers) {
      if (mode === 'remove') {
        st.markets.delete(t);
        st.unsynced.delete(t);
        st.snapshotted.delete(t);
      } else this.track(st, t);
    }
  }

  /** The connection (re)opened or closed: its sids are gone, new ones will count from 1. */
  resetConnection(connId: number): void {
    this.connections.delete(connId);
  }

  /**
   * The connection closed: where its stream ended, in exchange time (the latest exchange time seen
   * on any of its sids; frames are sent in exchange order, so whatever the exchange produced after
   * it may be lost) and receive time, null when unknown. Resets it.
   */
  closeConnection(connId: number, receivedUs: number): GapEvent {
    let exchangeUs: number | null = null;
    let lastGoodUs: number | null = null;
    for (const st of this.connections.get(connId)?.values() ?? []) {
      if (st.lastGoodExchangeUs !== null && (exchangeUs === null || st.lastGoodExchangeUs > exchangeUs)) exchangeUs = st.lastGoodExchangeUs;
      if (st.lastGoodUs !== null && (lastGoodUs === null || st.lastGoodUs > lastGoodUs)) lastGoodUs = st.lastGoodUs;
    }
    this.resetConnection(connId);
    return {
      kind: 'closed',
      connId,
      sid: 0,
      channel: null,
      expectedSeq: null,
      gotSeq: null,
      errorCode: null,
      tickers: [],
      lastGoodUs,
      lastGoodExchangeUs: exchangeUs,
      detectedUs: receivedUs,
    };
  }

  /** The subscription ended (unsubscribed): forget it. */
  forgetSid(connId: number, sid: number): void {
    this.connections.get(connId)?.delete(sid);
  }

  /** Checks one seq-bearing frame. On a gap, `lastGap` describes it. */
  check(connId: number, sid: number, seq: number, receivedUs: number): SeqVerdict {
    const st = this.state(connId, sid);
    if (seq < st.nextSeq) {
      this.duplicates++;
      return SeqVerdict.duplicate;
    }
    let verdict: SeqVerdict = SeqVerdict.inOrder;
    while (seq > st.nextSeq && st.ackSeqs.length > 0 && st.ackSeqs[0]! <= st.nextSeq) {
      // An ack on this sid consumed the seq we were waiting for (see claimAckSeq).
      if (st.ackSeqs.shift() === st.nextSeq) st.nextSeq++;
    }
    if (seq > st.nextSeq) {
      this.gaps++;
      this.lastGap = this.invalidate(st, 'gap', connId, sid, st.nextSeq, seq, null, receivedUs);
      verdict = SeqVerdict.gap;
    }
    st.nextSeq = seq + 1;
    st.lastGoodUs = receivedUs;
    return verdict;
  }

  /**
   * An ok / unsubscribed ack on a trade or lifecycle sid carried `seq`. If the sid's counter is the
   * one acks use (as on book sids), the data's next seq jumps past it; if not, it does not. Either
   * way no gap and no duplicate: the seq is remembered and skipped only when the data jumps over
   * it. Bounded: claims older than the next expected seq are discarded.
   */
  claimAckSeq(connId: number, sid: number, seq: number): void {
    const st = this.state(connId, sid);
    while (st.ackSeqs.length > 0 && st.ackSeqs[0]! < st.nextSeq) st.ackSeqs.shift();
    if (seq < st.nextSeq || st.ackSeqs.length >= ACK_CLAIMS_MAX) return;
    st.ackSeqs.push(seq);
    st.ackSeqs.sort((a, b) => a - b);
  }

  /** The exchange time of the message just checked in order on the sid. */
  noteExchangeTime(connId: number, sid: number, exchangeUs: number): void {
    const st = this.connections.get(connId)?.get(sid);
    if (st !== undefined) st.lastGoodExchangeUs = exchangeUs;
  }

  /** True for a sid whose channel is known and is not an order-book channel. */
  isNonBookSid(connId: number, sid: number): boolean {
    const channel = this.channelOf(connId, sid);
    return channel !== null && channel !== 'orderbook_delta';
  }

  private invalidate(
    st: SidState,
    kind: GapKind,
    connId: number,
    sid: number,
    expectedSeq: number | null,
    gotSeq: number | null,
    errorCode: number | null,
    detectedUs: number,
  ): GapEvent {
    for (const t of st.markets) st.unsynced.add(t);
    st.anchorTs = null;
    return {
      kind,
      connId,
      sid,
      channel: st.channel,
      expectedSeq,
      gotSeq,
      errorCode,
      tickers: [...st.markets],
      lastGoodUs: st.lastGoodUs,
      lastGoodExchangeUs: st.lastGoodExchangeUs,
      detectedUs,
    };
  }

  /** An error 10/17/25 on a live sid: the subscription is dead; every book on it is invalid. */
  terminalError(connId: number, sid: number, errorCode: number, receivedUs: number): GapEvent {
    this.terminalErrors++;
    const st = this.state(connId, sid);
    const event = this.invalidate(st, 'terminal-error', connId, sid, st.nextSeq, null, errorCode, receivedUs);
    // The sid is dead: the exchange sends nothing more on it, and a later ring drop must not
    // report it (its gap could never be resynced: chaos seed 206). Its markets come back under the
    // new sid of the resubscription.
    this.forgetSid(connId, sid);
    return event;
  }

  /** Frames of this connection were dropped before reaching us: every sid on it is suspect. */
  ringDrop(connId: number, receivedUs: number): GapEvent[] {
    const sids = this.connections.get(connId);
    if (sids === undefined) return [];
    const events: GapEvent[] = [];
    for (const [sid, st] of sids) events.push(this.invalidate(st, 'ring-drop', connId, sid, st.nextSeq, null, null, receivedUs));
    return events;
  }

  /** A book message on the sid could not be used (rejected body): treat like a one-frame gap. */
  badMessage(connId: number, sid: number, seq: number | null, receivedUs: number): GapEvent {
    const st = this.state(connId, sid);
    return this.invalidate(st, 'bad-message', connId, sid, seq, seq, null, receivedUs);
  }

  /** Records a delta; returns false when the market's book is unsynced (awaiting a snapshot). */
  noteDelta(connId: number, sid: number, ticker: string, exchangeTs: number): boolean {
    const st = this.state(connId, sid);
    this.track(st, ticker);
    st.anchorTs = exchangeTs;
    st.lastGoodExchangeUs = exchangeTs;
    return !st.unsynced.has(ticker);
  }

  /**
   * Records a snapshot (the market is synced again); returns its anchor (SidState.anchorTs). A
   * market's first snapshot on the sid has none: none of its deltas came on this sid before it, so
   * the sid's last delta (another market's) can be older than this market's own changes that the
   * snapshot already holds, and a book rebuilt from it would count those twice (chaos seed 301: four
   * markets of a creation burst, added to a quiet sid after they opened). Like a new sid's first
   * snapshots, it is not used as an anchor; the market's next snapshot on the sid is. Except an
   * empty one: a market subscribed ahead of its open (the usual case, rest.subscribeLeadMs) has no
   * book before it, so no change can be counted twice (without it, chaos runs with creation bursts
   * had few books left to judge).
   */
  noteSnapshot(connId: number, sid: number, ticker: string, empty = false): number | null {
    const st = this.state(connId, sid);
    this.track(st, ticker);
    st.unsynced.delete(ticker);
    if (st.snapshotted.has(ticker)) return st.anchorTs;
    if (st.snapshotted.size < this.limits.marketsPerSidMax) st.snapshotted.add(ticker);
    return empty ? st.anchorTs : null;
  }

  isBookSynced(connId: number, sid: number, ticker: string): boolean {
    return !(this.connections.get(connId)?.get(sid)?.unsynced.has(ticker) ?? false);
  }

  /** Sids of the connection that have unsynced books (resync still pending). */
  sidsAwaitingResync(connId: number): number[] {
    const out: number[] = [];
    for (const [sid, st] of this.connections.get(connId) ?? []) if (st.unsynced.size > 0) out.push(sid);
    return out;
  }

  channelOf(connId: number, sid: number): string | null {
    return this.connections.get(connId)?.get(sid)?.channel ?? null;
  }
}
