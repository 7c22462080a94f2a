// Turns every break the gatherer notices into a gap-ledger row and a recovery:
// - a worker's sequence gap / terminal error / ring drop on a sid -> get_snapshot on a book sid (or a
//   new subscription when the sid is dead), then the row is marked recovered; on a live trade sid a
//   REST trade backfill, on a ticker sid the next ticker (full state), on a lifecycle sid a REST
//   reconcile of the market registry recover it;
// - a dropped connection -> one 'disconnect' row for its markets, recovered when every shard is
//   subscribed again;
// - where trades may have been lost (connection down, ring drop, trade sid broken), a REST trade
//   backfill of the window, so trades stay complete even when every connection dropped together.
import type { Pool } from 'pg';
import { backoffDelayMs, type BackoffPolicy } from '../core/backoff';
import { KdpError, classifyDbError } from '../core/errors';
import { withClient } from '../core/pgclient';
import type { Logger } from '../core/log';
import type { GATHERER_METRICS, MetricSet } from '../core/metrics';
import { insertGap, markGapRecovered, type GapInsert } from '../copy/gaps';
import type { GapEvent } from '../workers/sequence';
import type { TradeBackfill } from './backfill';
import type { ConnectionManager } from './connections';

const LEDGER_KIND: Record<Exclude<GapEvent['kind'], 'closed'>, string> = {
  gap: 'seq_gap',
  'terminal-error': 'error',
  'ring-drop': 'ring_drop',
  'bad-message': 'bad_message',
};
// Ledger writes are retried this often before the gap is logged as unrecorded: with the delay
// capped at 5 s that is ~40 s, longer than a database restart (a chaos run stops the gatherer's
// PostgreSQL for up to 8 s and the gap must still reach the ledger). No jitter, here and for
// recoveries: the retries are this process's own (its pool, its REST client, which jitters its own
// retries), so a fixed schedule spreads nothing out and keeps logs and tests predictable.
const LEDGER_ATTEMPTS_MAX = 12;
const LEDGER_RETRY: BackoffPolicy = { initialMs: 200, maxMs: 5_000, jitter: 'none' };
// A failed REST recovery (trade backfill, registry reconcile) is repeated this often, 2 s, 4 s, ...
// up to 30 s apart (~2.5 min in all).
const RECOVERY_ATTEMPTS_MAX = 7;
const RECOVERY_RETRY: BackoffPolicy = { initialMs: 1_000, maxMs: 30_000, jitter: 'none' };
// A ticker sid's gap is taken as recovered this long after it (see recoverNonBook).
const TICKER_RECOVERY_DELAY_MS = 1_000;
// A gap on a sid the manager does not hold is checked again after this delay, this often, before
// the sid counts as retired (see retiredSid).
const RETIRED_SID_CHECK_DELAY_MS = 1_000;
const RETIRED_SID_CHECKS_MAX = 3;
// Trade backfills of more markets than this list every market's trades in the window at once.
const BACKFILL_PER_MARKET_MAX = 50;
// Without a last good frame, the trade backfill looks back this far.
const BACKFILL_LOOKBACK_US = 60_000_000;
// A reconnected connection's trade backfill waits at most this long for its worker to say where the
// closed stream ended in exchange time (the worker reads the close notice behind the frames still
// in its ring: well under a second at the rates measured in bench/).
const STREAM_END_WAIT_MS = 30_000;

// At start-up: when this database last received rows (the newest batch, by its primary key), and
// the gaps a previous process left open.
// The newest committed trade gives where the dead process's trade stream ended in exchange time: a
// process lagging the exchange committed its last rows long after the exchange made them, and a
// backfill from the commit time (wall clock) missed the trades in between (chaos seeds 11 and 12
// with the exchange clock 10-20 s behind the wall clock: 1 and 227 trades missing from the
// restarted gatherer's own database). Trades only: each table has its own writer, and the delta
// writer ahead of the trade writer at the kill made a backfill from the newest delta miss 432
// trades (chaos seed 304).
const RESTART_STATE_SQL = `SELECT
    (SELECT committed_at::text FROM ingest_batches ORDER BY batch_id DESC LIMIT 1) AS last,
    (SELECT max(exchange_ts) FROM trades)::text AS last_exchange,
    (SELECT min(window_start)::text FROM gap_ledger WHERE NOT recovered AND detected_at < $1) AS open_from,
    (SELECT array_agg(gap_id::text) FROM gap_ledger WHERE NOT recovered AND detected_at < $1) AS open_ids`;

/** What a previous process of this gatherer left behind: where its unrecorded time starts, its open gaps. */
export interface RestartState {
  readonly fromUs: number;
  readonly openGapIds: readonly number[];
}

/**
 * Reads the restart state at start-up, before this process's writers, REST backfills or gap rows
 * touch the database: read later, this process's own first commits (newer batches and trades)
 * moved the window's start past the dead process's last commit, and its stuck trades were never
 * backfilled (chaos seed 381: a restart during a database restart read the state only after its
 * own first trades were in; 9,280 trades missing from that gatherer, no ledger row covering them).
 * Undefined for a new database. Throws (the process exits and is restarted) when the database
 * cannot answer, like the schema check before it.
 */
export async function readRestartState(pool: Pool, atUs: number): Promise<RestartState | undefined> {
  type Row = { last: string | null; last_exchange: string | null; open_from: string | null; open_ids: string[] | null };
  const r = await pool.query<Row>(RESTART_STATE_SQL, [atUs]);
  const { last, last_exchange: lastExchange, open_from: openFrom, open_ids: openIds } = r.rows[0]!;
  if (last === null && openFrom === null) return undefined;
  const fromUs = Math.min(Number(last ?? Infinity), Number(lastExchange ?? Infinity), Number(openFrom ?? Infinity));
  return { fromUs, openGapIds: (openIds ?? []).map(Number) };
}
// A restart gap stays unrecovered (and is logged) when the markets are not all subscribed by then.
const RESTART_RECOVERY_WAIT_MS = 10 * 60_000;

const nowUs = (): number => Date.now() * 1000;

interface TradeBackfillQueue {
  running: boolean;
  next: { tickers: Set<string>; fromUs: number; recoveries: { ids: Promise<number | undefined>[]; method: string }[] } | undefined;
}

export interface GapStats {
  recorded: number;
  /** Ring drops joined to an open ring-drop row of the same sid, and seq gaps joined to the row of
   *  the resync in flight on their sid, instead of a row of their own. */
  coalesced: number;
  recovered: number;
  unrecorded: number;
}

export class GapTracker {
  readonly stats: GapStats = { recorded: 0, coalesced: 0, recovered: 0, unrecorded: 0 };
  /** Gap rows waiting for the resync in flight on `${connId}:${sid}`. */
  private readonly resyncWaiting = new Map<string, Promise<number | undefined>[]>();
  /** Gap rows of a connection waiting for its resubscription (a resync that could not be sent). */
  private readonly connWaiting = new Map<number, Promise<number | undefined>[]>();
  private readonly inflight = new Set<Promise<unknown>>();
  private stopping = false;
  /** Open ring-drop rows per `${connId}:${sid}` and how many drops joined them await recovery. */
  private readonly openRingDrops = new Map<string, { id: Promise<number | undefined>; pending: number }>();
  /** Per connection: the trade backfill running and the one gathering requests behind it. */
  private readonly tradeBackfills = new Map<number, TradeBackfillQueue>();
  /** Per connection: where the trade backfill of its outage must start (a dead trade sid before it). */
  private readonly connBackfillFromUs = new Map<number, number>();
  private readonly wakeups = new Set<() => void>();
  /** Connections whose outage began and whose worker has not yet reported where the stream ended. */
  private readonly awaitingStreamEnd = new Set<number>();
  /** Resubscriptions whose backfill waits for that report (see onStreamEnded). */
  private readonly parkedResubscriptions = new Map<number, () => void>();

  constructor(
    private readonly gatherer: string,
    private readonly pool: Pool,
    private readonly manager: ConnectionManager,
    private readonly backfill: TradeBackfill,
    private readonly metrics: MetricSet<typeof GATHERER_METRICS>,
    private readonly log: Logger,
    /** The market registry's REST reconcile (restores what lost lifecycle events changed). */
    private readonly reconcile: () => Promise<unknown>,
  ) {}

  onWorkerGap(g: GapEvent): void {
    if (g.kind === 'closed') return this.onStreamEnded(g);
    const tickers = this.tickersAtRisk(g);
    const kind = g.kind === 'terminal-error' ? `error_${g.errorCode ?? 0}` : LEDGER_KIND[g.kind];
    const windowStartUs = g.lastGoodUs ?? g.detectedUs - BACKFILL_LOOKBACK_US;
    // Trades are fetched by exchange time: from the last good message's exchange time when the worker
    // knew it (a reader lagging the exchange received it long after), else from its receipt.
    const backfillFromUs = Math.min(windowStartUs, g.lastGoodExchangeUs ?? Infinity);
    const ringJoined = this.ringDropRow(g);
    const resyncJoined = ringJoined === undefined ? this.resyncRow(g) : undefined;
    const gapId =
      ringJoined ??
      resyncJoined ??
      this.record({
        gatherer: this.gatherer,
        connId: g.connId,
        sid: g.sid,
        channel: g.channel,
        kind,
        tickers,
        expectedSeq: g.expectedSeq,
        gotSeq: g.gotSeq,
        errorCode: g.errorCode,
        windowStartUs,
        windowEndUs: g.detectedUs,
        detectedAtUs: g.detectedUs,
      });
    if (g.kind === 'ring-drop' && !this.openRingDrops.has(`${g.connId}:${g.sid}`)) {
      this.openRingDrops.set(`${g.connId}:${g.sid}`, { id: gapId, pending: 1 });
    }
    this.metrics.sequence_gaps_total.inc();
    this.metrics.writer_seq_gaps_total.inc();
    const terminal = g.kind === 'terminal-error';
    // Trades carry no seq, so a lost trade is invisible on its own sid: a break of the connection's
    // book or trade stream may have lost trades, which are fetched over REST for the window. A dead
    // sid's window ends when it is subscribed again (below), a live one's now.
    if (!terminal && (g.channel === 'trade' || g.channel === 'orderbook_delta')) {
      this.queueTradeBackfill(g.connId, tickers, backfillFromUs, g.channel === 'trade' ? [gapId] : [], 'rest_backfill');
    }
    if (resyncJoined !== undefined) return; // the resync in flight recovers the row it joined
    // Only order books have snapshots; a live non-book sid is recovered its own way (a ring drop
    // reports every sid of the connection). A dead sid of any channel is subscribed again.
    if (!terminal && g.channel !== 'orderbook_delta') return this.recoverNonBook(g.channel, gapId);
    const key = `${g.connId}:${g.sid}`;
    const waiting = this.resyncWaiting.get(key);
    if (waiting) {
      waiting.push(gapId); // one resync in flight per sid answers every gap reported meanwhile
      return;
    }
    this.resyncWaiting.set(key, [gapId]);
    this.resyncSid(g, terminal, tickers, backfillFromUs);
  }

  /** Markets whose data the gap may have cost: an all-markets trade sid's gap costs every market's trades. */
  private tickersAtRisk(g: GapEvent): readonly string[] {
    if (g.tickers.length > 0) return g.tickers;
    const shard = this.manager.tickersOfSid(g.connId, g.sid);
    if (shard.length > 0) return shard;
    return g.channel === 'trade' ? this.manager.allTickers() : [];
  }

  /** Asks the connection manager to resync the sid; every gap row waiting on it is then recovered. */
  private resyncSid(g: GapEvent, terminal: boolean, tickers: readonly string[], windowStartUs: number): void {
    const key = `${g.connId}:${g.sid}`;
    if (!this.manager.hasSid(g.connId, g.sid) && this.manager.connectionWhole(g.connId)) {
      const ids = this.resyncWaiting.get(key) ?? [];
      this.resyncWaiting.delete(key);
      return this.retiredSid(g, terminal, tickers, windowStartUs, ids, RETIRED_SID_CHECKS_MAX);
    }
    this.manager.resync(g.connId, g.sid, terminal, (ok) => {
      const ids = this.resyncWaiting.get(key) ?? [];
      this.resyncWaiting.delete(key);
      if (!ok) {
        this.connWaiting.set(g.connId, [...(this.connWaiting.get(g.connId) ?? []), ...ids]);
        if (g.channel === 'trade') this.connBackfillFromUs.set(g.connId, Math.min(windowStartUs, this.connBackfillFromUs.get(g.connId) ?? Infinity));
      } else if (terminal && g.channel === 'trade') this.queueTradeBackfill(g.connId, tickers, windowStartUs, ids, 'resubscribe');
      else this.recover(ids, terminal ? 'resubscribe' : 'get_snapshot');
    });
  }

  /**
   * A gap on a sid the connection manager does not hold while the connection is whole: the sid was
   * unsubscribed or replaced (killed by error 25 and subscribed again; its markets' books come back
   * with the new sid's snapshots). Waiting for the connection to resubscribe left such rows open
   * forever (chaos seed 206: a ring drop right after an error 25 reported the dead sid). The sid is
   * checked `checksLeft` times a second apart first (the manager may not have learnt a new sid's
   * reply yet); known by then, it is resynced as usual.
   */
  private retiredSid(
    g: GapEvent,
    terminal: boolean,
    tickers: readonly string[],
    windowStartUs: number,
    ids: Promise<number | undefined>[],
    checksLeft: number,
  ): void {
    const key = `${g.connId}:${g.sid}`;
    this.track(
      this.sleep(RETIRED_SID_CHECK_DELAY_MS).then(() => {
        if (this.manager.hasSid(g.connId, g.sid)) {
          this.resyncWaiting.set(key, [...(this.resyncWaiting.get(key) ?? []), ...ids]);
          return this.resyncSid(g, terminal, tickers, windowStartUs);
        }
        if (checksLeft > 1) return this.retiredSid(g, terminal, tickers, windowStartUs, ids, checksLeft - 1);
        this.recover(ids, 'sid_retired');
      }),
    );
  }

  /**
   * trade: recovered by the REST backfill started for it (backfillTrades); ticker: every ticker
   * message carries the market's full current values, so the next one restores them; lifecycle:
   * the market registry's REST reconcile restores what the lost events would have changed.
   */
  private recoverNonBook(channel: string | null, gapId: Promise<number | undefined>): void {
    if (channel === 'trade') return;
    if (channel === 'ticker') {
      // The next ticker of each market restores its values; markets tick within about a second
      // in active trading. Waiting that long also lets a storm of drops share one row.
      this.track(this.sleep(TICKER_RECOVERY_DELAY_MS).then(() => this.recover([gapId], 'next_update')));
      return;
    }
    const p = this.retry('registry reconcile after a lifecycle gap', async () => {
      await this.reconcile();
      return true;
    }).then((ok) => ok && this.recover([gapId], 'rest_reconcile'));
    this.track(p);
  }

  /**
   * New markets whose order book was subscribed after they opened: whatever changed their books
   * between the open and the subscription's snapshot is lost for good (no API returns deltas).
   * One 'new_market' row for the markets of one subscription ack, from the earliest open to the
   * ack; the snapshot that follows the ack on the sid restores the books, so it is recovered at once.
   */
  onLateSubscription(connId: number, tickers: readonly string[], openedUs: number, ackUs: number): void {
    const id = this.record({
      gatherer: this.gatherer,
      connId,
      sid: null,
      channel: 'orderbook_delta',
      kind: 'new_market',
      tickers,
      expectedSeq: null,
      gotSeq: null,
      errorCode: null,
      windowStartUs: openedUs,
      windowEndUs: ackUs,
      detectedAtUs: ackUs,
    });
    this.recover([id], 'subscribe_snapshot');
  }

  private readonly disconnects = new Map<number, Promise<number | undefined>>();

  onDisconnected(connId: number, tickers: readonly string[], sinceUs: number, reason: string): void {
    // A dead worker reports nothing more; a closed connection's worker reports where its stream ended.
    if (reason !== 'worker_restart') this.awaitingStreamEnd.add(connId);
    this.disconnects.set(
      connId,
      this.record({
        gatherer: this.gatherer,
        connId,
        sid: null,
        channel: null,
        kind: reason === 'worker_restart' ? 'worker_restart' : 'disconnect',
        tickers,
        expectedSeq: null,
        gotSeq: null,
        errorCode: null,
        windowStartUs: sinceUs,
        windowEndUs: null,
        detectedAtUs: nowUs(),
      }),
    );
  }

  /**
   * The worker read a connection's close notice: its stream ended at `lastGoodExchangeUs` in exchange
   * time. The outage's trade backfill starts there rather than at the last frame's receipt time, so a
   * reader lagging the exchange by minutes asks for every trade it missed.
   */
  private onStreamEnded(g: GapEvent): void {
    if (!this.awaitingStreamEnd.delete(g.connId)) return; // a failed reconnect attempt's close
    if (g.lastGoodExchangeUs !== null) {
      this.connBackfillFromUs.set(g.connId, Math.min(g.lastGoodExchangeUs, this.connBackfillFromUs.get(g.connId) ?? Infinity));
    }
    const parked = this.parkedResubscriptions.get(g.connId);
    this.parkedResubscriptions.delete(g.connId);
    parked?.();
  }

  /** Holds a resubscription's backfill until the stream-end report, STREAM_END_WAIT_MS or stop. */
  private parkResubscription(connId: number, tickers: readonly string[], sinceUs: number): void {
    const parked = new Promise<void>((resolve) => {
      let done = false;
      const run = (): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.wakeups.delete(run);
        this.parkedResubscriptions.delete(connId);
        this.awaitingStreamEnd.delete(connId);
        resolve();
        this.onResubscribed(connId, tickers, sinceUs);
      };
      const timer = setTimeout(run, STREAM_END_WAIT_MS);
      this.wakeups.add(run);
      this.parkedResubscriptions.set(connId, run);
    });
    this.track(parked);
  }

  onResubscribed(connId: number, shardTickers: readonly string[], sinceUs: number): void {
    let tickers = shardTickers;
    if (this.awaitingStreamEnd.has(connId) && !this.parkedResubscriptions.has(connId)) return this.parkResubscription(connId, tickers, sinceUs);
    const ids = [...(this.connWaiting.get(connId) ?? [])];
    this.connWaiting.delete(connId);
    const d = this.disconnects.get(connId);
    if (d) ids.push(d);
    this.disconnects.delete(connId);
    const fromUs = Math.min(sinceUs, this.connBackfillFromUs.get(connId) ?? Infinity);
    this.connBackfillFromUs.delete(connId);
    // The connection holding the all-markets trade subscription lost every market's trades.
    if (this.manager.holdsGlobal(connId, 'trade')) tickers = this.manager.allTickers();
    // Recovered once the trades of the outage are fetched too.
    if (tickers.length > 0) this.queueTradeBackfill(connId, tickers, fromUs, ids, 'resubscribe');
    else this.recover(ids, 'resubscribe');
  }

  /**
   * At start-up after a previous run (a crash, kill -9 or restart): the time since this database's
   * last committed batch was not recorded by this gatherer, and gaps the previous process had
   * ledgered but not yet recovered were orphaned by its death (found by a chaos run killing a
   * gatherer a second after a disconnect). One 'gatherer_restart' row (conn_id 0, every market)
   * covers both, from the earliest of them; once every market is subscribed and the window's trades
   * are fetched over REST, it and the orphaned rows are recovered. `restart` is what the dead
   * process left, read by readRestartState() before this process wrote anything.
   */
  onStarted(tickers: readonly string[], restart: RestartState | undefined): void {
    this.reconcileOnceSubscribed();
    if (restart === undefined) return; // a new database: nothing was missed
    const startedUs = nowUs();
    const gapId = this.record({
      gatherer: this.gatherer,
      connId: 0,
      sid: null,
      channel: null,
      kind: 'gatherer_restart',
      tickers,
      expectedSeq: null,
      gotSeq: null,
      errorCode: null,
      windowStartUs: restart.fromUs,
      windowEndUs: startedUs,
      detectedAtUs: startedUs,
    });
    const p = (async () => {
      await this.waitAllSubscribed(RESTART_RECOVERY_WAIT_MS);
      const orphans = restart.openGapIds.map((id) => Promise.resolve(id));
      this.queueTradeBackfill(0, tickers, restart.fromUs, [gapId, ...orphans], 'resubscribe');
    })();
    this.track(p.catch((err: unknown) => this.log.error({ err: (err as Error).message }, 'restart gap could not be recovered')));
  }

  /**
   * A market created after discovery listed the markets and before the lifecycle subscription was
   * live is in neither (up to connections.startJitterMs, 3 s by default, plus the listing itself):
   * without this it would wait for the periodic reconcile, 10 minutes, its book unrecorded (found
   * by the TimescaleDB pipeline test, 1 run in 6). One reconcile once every subscription is live
   * finds such markets; they are ledgered as 'new_market' when subscribed (registry foundLate).
   */
  private reconcileOnceSubscribed(): void {
    const p = (async () => {
      // The lifecycle subscription, not every market's: new markets keep books pending for good.
      await this.waitUntil('all-markets channels not subscribed', () => this.manager.globalSubscribed(), RESTART_RECOVERY_WAIT_MS);
      await this.retry('registry reconcile after start-up', async () => {
        await this.reconcile();
        return true;
      });
    })();
    this.track(p.catch((err: unknown) => this.log.error({ err: (err as Error).message }, 'start-up reconcile did not run')));
  }

  private waitAllSubscribed(timeoutMs: number): Promise<void> {
    return this.waitUntil('markets not all subscribed', () => this.manager.allSubscribed(), timeoutMs);
  }

  private async waitUntil(what: string, subscribed: () => boolean, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.stopping && !subscribed()) {
      if (Date.now() > deadline) throw new KdpError('KDP_ERR_NOT_READY', `${what} within ${timeoutMs} ms of start-up`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  private record(gap: GapInsert): Promise<number | undefined> {
    const p = this.withClientRetried(async (client) => insertGap(client, gap)).then(
      (id) => {
        this.stats.recorded += 1;
        return id;
      },
      (err: unknown) => {
        this.stats.unrecorded += 1;
        this.log.error({ err: (err as Error).message, kind: gap.kind, connId: gap.connId, sid: gap.sid }, 'gap could not be recorded');
        return undefined;
      },
    );
    return this.track(p);
  }

  /**
   * Under sustained overload the ingest thread drops frames again and again, and every drop notice
   * reports every sid of the connection: one row per notice flooded the ledger (75 k writes that
   * starved the pool in bench/overload.ts). A ring drop on a sid whose ring-drop row is still open
   * joins that row; the row is recovered when the recoveries of every drop it holds are done.
   */
  private ringDropRow(g: GapEvent): Promise<number | undefined> | undefined {
    if (g.kind !== 'ring-drop') return undefined;
    const open = this.openRingDrops.get(`${g.connId}:${g.sid}`);
    if (!open) return undefined;
    open.pending += 1;
    this.stats.coalesced += 1;
    return open.id;
  }

  /**
   * A seq gap (or bad message) on a book sid whose get_snapshot is already in flight joins that
   * resync's first row: the lost frames precede the snapshot ack on the sid (seqs are in order),
   * so the snapshots that follow it restore their books, and the row's window runs to that
   * recovery. One row per gap wrote 9,000 rows in 20 s of drop-mode overload and starved the
   * pool until 2,904 gaps could not be recorded at all (bench/overload.ts).
   */
  private resyncRow(g: GapEvent): Promise<number | undefined> | undefined {
    if ((g.kind !== 'gap' && g.kind !== 'bad-message') || g.channel !== 'orderbook_delta') return undefined;
    const first = this.resyncWaiting.get(`${g.connId}:${g.sid}`)?.[0];
    if (first === undefined) return undefined;
    this.stats.coalesced += 1;
    return first;
  }

  /** False while other drops joined to the same open ring-drop row still await their recovery. */
  private lastRecoveryOf(idP: Promise<number | undefined>): boolean {
    for (const [key, open] of this.openRingDrops) {
      if (open.id !== idP) continue;
      if (--open.pending > 0) return false;
      this.openRingDrops.delete(key);
      return true;
    }
    return true;
  }

  private recover(ids: readonly Promise<number | undefined>[], method: string): void {
    const at = nowUs();
    for (const idP of ids) {
      if (!this.lastRecoveryOf(idP)) continue;
      const p = idP.then(async (id) => {
        if (id === undefined) return;
        await this.withClientRetried((client) => markGapRecovered(client, id, { recoveredAtUs: at, method, windowEndUs: at }));
        this.stats.recovered += 1;
        this.metrics.sequence_gaps_recovered_total.inc();
      });
      this.track(p.catch((err: unknown) => this.log.error({ err: (err as Error).message }, 'gap recovery could not be recorded')));
    }
  }

  /**
   * Queues a REST trade backfill of `tickers` from `fromUs` to the time it runs; the gaps in
   * `gapIds` are recovered (with `method`) once it completed. One backfill runs per connection;
   * requests arriving meanwhile merge into the next one (union of markets, widest window), so a
   * burst of gaps costs two backfills, not one per gap (a ring-drop storm under overload queued
   * hundreds of thousands of windows on the ingest thread: bench/overload.ts).
   */
  private queueTradeBackfill(connId: number, tickers: readonly string[], fromUs: number, gapIds: Promise<number | undefined>[], method: string): void {
    let q = this.tradeBackfills.get(connId);
    if (q === undefined) {
      q = { running: false, next: undefined };
      this.tradeBackfills.set(connId, q);
    }
    const next = (q.next ??= { tickers: new Set(), fromUs, recoveries: [] });
    for (const t of tickers) next.tickers.add(t);
    next.fromUs = Math.min(next.fromUs, fromUs);
    if (gapIds.length > 0) next.recoveries.push({ ids: gapIds, method });
    if (!q.running) this.track(this.drainTradeBackfills(q));
  }

  private async drainTradeBackfills(q: TradeBackfillQueue): Promise<void> {
    q.running = true;
    try {
      while (q.next && !this.stopping) {
        const job = q.next;
        q.next = undefined;
        const toUs = nowUs();
        // Many markets over a short window: one listing of every market's trades costs a few
        // pages where one request per market would cost hundreds (REST is rate-limited).
        const tickers = job.tickers.size > BACKFILL_PER_MARKET_MAX ? 'all' : [...job.tickers];
        const ok =
          tickers.length === 0 ||
          (await this.retry('trade backfill', async () => {
            const r = await this.backfill.backfill({ tickers, fromUs: job.fromUs, toUs });
            if (r.failed > 0 || r.refused > 0) this.log.warn({ failed: r.failed, refused: r.refused, fromUs: job.fromUs, toUs }, 'trade backfill incomplete');
            return r.failed === 0 && r.refused === 0;
          }));
        if (ok) for (const r of job.recoveries) this.recover(r.ids, r.method);
      }
    } finally {
      q.running = false;
    }
  }

  /**
   * Runs a REST recovery until it succeeds (true), repeating failures (false or thrown) up to
   * RECOVERY_ATTEMPTS_MAX times 2 s, 4 s, ... up to 30 s apart: REST 5xx/429 bursts can outlast
   * one run's own retries. Both recoveries are idempotent, so repeating is safe. False = gave up.
   */
  private async retry(what: string, run: () => Promise<boolean>): Promise<boolean> {
    for (let attempt = 1; !this.stopping; attempt++) {
      const ok = await run().catch((err: unknown) => {
        this.log.warn({ err: (err as Error).message, attempt }, `${what} failed`);
        return false;
      });
      if (ok) return true;
      if (attempt >= RECOVERY_ATTEMPTS_MAX) {
        this.log.error({ attempts: attempt }, `${what} gave up; the gap stays open`);
        return false;
      }
      await this.sleep(backoffDelayMs(attempt, RECOVERY_RETRY));
    }
    return false;
  }

  /** Runs fn on a pooled client, retrying connection-type failures a bounded number of times. */
  private async withClientRetried<T>(fn: (client: import('pg').PoolClient) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await withClient(this.pool, fn);
      } catch (err) {
        const coded = classifyDbError(err);
        if (!coded.retryable || attempt >= LEDGER_ATTEMPTS_MAX) throw coded;
        this.metrics.writer_errors_total.inc({ type: coded.code === 'KDP_ERR_DB_TIMEOUT' ? 'timeout' : 'connection' });
        await new Promise((r) => setTimeout(r, backoffDelayMs(attempt, LEDGER_RETRY)));
      }
    }
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p));
    return p;
  }

  /** A delay that ends early when the tracker stops (a graceful stop does not wait out retries). */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.wakeups.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.wakeups.add(wake);
    });
  }

  /** True when no ledger write, recovery, retry delay or backfill is in flight. */
  idle(): boolean {
    return this.inflight.size === 0;
  }

  /** Waits for ledger writes and backfills in flight. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const wake of [...this.wakeups]) wake();
    this.backfill.stop();
    await Promise.allSettled([...this.inflight]);
  }
}
