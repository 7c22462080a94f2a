// The market registry: which markets exist, which are live (subscribable), and their metadata.
// - Discovery / reconcile: lists unopened, open and paused markets over REST (all pages,
//   mve_filter=exclude unless multivariate markets are included), plus series, events and
//   recently closed markets, and upserts them into the gatherer database. Markets tracked but no longer listed are looked up
//   by ticker and dropped once finished.
// - Lifecycle: applies market_lifecycle_v2 / multivariate_market_lifecycle / event_lifecycle
//   messages in arrival order (one serial queue, bounded). `created` tracks the market from the
//   message at once and fetches it over REST, retrying while GET /markets/{ticker} still 404s.
// - Time: Kalshi sends no event when open_time or close_time passes, so one timer is armed for
//   the earliest due open/close time (a heap with lazy invalidation, not a timer per market).
// Emits `marketsAdded(tickers)` / `marketsRemoved(tickers)` whenever the live set changes.
import { EventEmitter } from 'node:events';
import type { Logger } from '../core/log';
import { isKdpError } from '../core/errors';
import type { GATHERER_METRICS, MetricSet } from '../core/metrics';
import { MAX_TIMER_MS, systemClock, type Clock, type TimerHandle } from './clock';
import { DueQueue } from './duequeue';
import { parseLifecycle, type MarketLifecycle } from './lifecycle';
import type { RegistryOptions } from './options';
import { RegistryStore, type MarketPatch, type Queryable } from './registry-store';
import type { RestClient } from './rest';
import type { KalshiMarket } from './shapes';

export interface TrackedMarket {
  readonly ticker: string;
  eventTicker: string | null;
  /** Kalshi status as last known (including transitions implied by open/close time). */
  status: string;
  openTimeMs: number | null;
  closeTimeMs: number | null;
  /** Clock ms the information was current: a listing that started earlier does not override it. */
  changedAtMs: number;
}

export type LifecycleOutcome = 'applied' | 'ignored' | 'rejected';

export interface ReconcileResult {
  readonly listed: number;
  readonly tracked: number;
  readonly live: number;
  readonly vanished: number;
}

export interface RegistryStats {
  lifecycleApplied: number;
  lifecycleIgnored: number;
  lifecycleRejected: number;
  createdNotFoundRetries: number;
  fetchFailures: number;
  reconciles: number;
  reconcileErrors: number;
  metadataErrors: number;
  dbErrors: number;
  timerFirings: number;
  /** Markets first seen in a listing after discovery, never announced by a 'created' message. */
  foundLate: number;
}

export interface RegistryDeps {
  readonly rest: RestClient;
  readonly db: Queryable;
  readonly clock?: Clock;
  readonly log?: Logger;
  readonly metrics?: Pick<MetricSet<typeof GATHERER_METRICS>, 'market_registry_markets'>;
}

const TRACKED_LISTINGS = ['unopened', 'open', 'paused'] as const;
const UNFINISHED = new Set(['initialized', 'active', 'inactive']);
// Markets waiting for a REST look-up (beyond it the reconcile repairs them), and per request.
const MAX_QUEUED_LOOKUPS = 100_000;
const LOOKUP_BATCH_MAX = 100;
// Created markets whose subscription is not acked yet, remembered for the latency metric (a creation
// burst is hundreds; markets never subscribed, e.g. finished at once, must not grow it forever).
const CREATED_TIMES_MAX = 100_000;

/**
 * Finished = closed by the exchange (a status past UNFINISHED), or `afterCloseMs` past close_time by
 * this machine's clock. No WS event marks the close, and a book can still change at close_time on
 * the exchange's clock, which may run behind ours: unsubscribing at close_time by our clock lost the
 * last 30 s of deltas of markets in a 40,000-market demo whose exchange ran 141 s behind wall time.
 */
export function isFinished(m: TrackedMarket, nowMs: number, afterCloseMs = 0): boolean {
  return !UNFINISHED.has(m.status) || (m.closeTimeMs !== null && m.closeTimeMs + afterCloseMs <= nowMs);
}

/**
 * Live = worth subscribing: open (or paused) and before close_time, or unopened with open_time at
 * most `leadMs` away. Kalshi sends no event at open_time and the book starts moving at once, so a
 * subscription made when the open timer fires loses the first changes; subscribing ahead does not.
 */
export function isLive(m: TrackedMarket, nowMs: number, leadMs = 0, afterCloseMs = 0): boolean {
  if (isFinished(m, nowMs, afterCloseMs)) return false;
  if (m.status === 'active' || m.status === 'inactive') return true;
  return m.openTimeMs !== null && m.openTimeMs - leadMs <= nowMs;
}

export interface MarketRegistry {
  on(event: 'marketsAdded' | 'marketsRemoved', listener: (tickers: string[]) => void): this;
  emit(event: 'marketsAdded' | 'marketsRemoved', tickers: string[]): boolean;
}

export class MarketRegistry extends EventEmitter {
  readonly stats: RegistryStats = {
    lifecycleApplied: 0,
    lifecycleIgnored: 0,
    lifecycleRejected: 0,
    createdNotFoundRetries: 0,
    fetchFailures: 0,
    reconciles: 0,
    reconcileErrors: 0,
    metadataErrors: 0,
    dbErrors: 0,
    timerFirings: 0,
    foundLate: 0,
  };
  private readonly tracked = new Map<string, TrackedMarket>();
  private readonly live = new Set<string>();
  private readonly eventSeries = new Map<string, string>();
  /** Clock ms at which recently finished markets were forgotten: a listing that started earlier must not revive them. */
  private readonly finishedAt = new Map<string, number>();
  private readonly due = new DueQueue();
  private readonly store: RegistryStore;
  private readonly clock: Clock;
  private armed: { dueMs: number; handle: TimerHandle } | undefined;
  private reconcileTimer: TimerHandle | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private queued = 0;
  private readonly background = new Set<Promise<void>>();
  /** Markets waiting for a REST look-up, with the attempts left (see queueLookup). */
  private readonly lookups = new Map<string, number>();
  private lookupRunning = false;
  /** Placeholder rows of markets created since the chain last wrote them (see trackCreated). */
  private readonly placeholders: KalshiMarket[] = [];
  private reconciling: Promise<ReconcileResult> | undefined;
  private stopped = false;

  constructor(
    private readonly opts: RegistryOptions,
    private readonly deps: RegistryDeps,
  ) {
    super();
    this.clock = deps.clock ?? systemClock;
    this.store = new RegistryStore(deps.db, opts.registryUpsertBatchRows);
  }

  /** Full discovery (throws if it fails: the caller retries), then periodic reconcile. */
  async start(): Promise<ReconcileResult> {
    const result = await this.reconcile();
    this.discovered = true;
    this.scheduleReconcile();
    return result;
  }

  stop(): void {
    this.stopped = true;
    this.armed?.handle.cancel();
    this.armed = undefined;
    this.reconcileTimer?.cancel();
  }

  /** Tickers to subscribe to now. */
  activeTickers(): string[] {
    return [...this.live];
  }

  market(ticker: string): Readonly<TrackedMarket> | undefined {
    return this.tracked.get(ticker);
  }

  trackedCount(): number {
    return this.tracked.size;
  }

  /** Resolves when queued lifecycle work and background look-ups have finished. */
  async whenIdle(): Promise<void> {
    for (;;) {
      const chain = this.chain;
      await chain;
      await Promise.all([...this.background]);
      if (this.chain === chain && this.background.size === 0) return;
    }
  }

  // ---- lifecycle -------------------------------------------------------------------------------

  /** When each market's 'created' message arrived (ms), until its subscription is acked. */
  private readonly createdAtMs = new Map<string, number>();

  /**
   * Markets a listing found after discovery that no 'created' message announced (created between
   * discovery's listing and the lifecycle subscription, or while lifecycle frames were lost): their
   * books are subscribed late like a created market's, so they are ledgered like one.
   */
  private readonly foundLate = new Set<string>();
  private discovered = false;

  /** Whether the market was found late (see foundLate), once. */
  takeFoundLate(ticker: string): boolean {
    return this.foundLate.delete(ticker);
  }

  /** The arrival time of the market's 'created' message, once (for the creation-to-subscribed latency). */
  takeCreatedAt(ticker: string): number | undefined {
    const t = this.createdAtMs.get(ticker);
    this.createdAtMs.delete(ticker);
    return t;
  }

  /** Applies one lifecycle message (the parsed JSON envelope). Never throws: bad input is counted. */
  applyLifecycle(envelope: unknown): Promise<LifecycleOutcome> {
    if (this.queued >= this.opts.lifecycleQueueMax) {
      this.stats.lifecycleRejected++;
      this.deps.log?.warn({ queued: this.queued }, 'lifecycle queue full: message refused, next reconcile repairs');
      return Promise.resolve('rejected');
    }
    let parsed;
    try {
      parsed = parseLifecycle(envelope);
    } catch (err) {
      this.stats.lifecycleRejected++;
      this.deps.log?.warn({ code: isKdpError(err) ? err.code : 'unknown', err: (err as Error).message }, 'lifecycle message rejected');
      return Promise.resolve('rejected');
    }
    this.queued++;
    if (parsed.kind !== 'event' && parsed.eventType === 'created' && this.applies(parsed)) {
      if (this.createdAtMs.size < CREATED_TIMES_MAX) this.createdAtMs.set(parsed.ticker, this.clock.nowMs());
      this.trackCreated(parsed);
    }
    const work =
      parsed.kind === 'event'
        ? async (): Promise<LifecycleOutcome> => {
            if (parsed.event.seriesTicker) this.eventSeries.set(parsed.event.eventTicker, parsed.event.seriesTicker);
            await this.persist(() => this.store.upsertEvents([parsed.event], this.nowUs()));
            return 'applied';
          }
        : () => this.applyMarketLifecycle(parsed);
    return this.serialize(work)
      .then((outcome) => {
        if (outcome === 'applied') this.stats.lifecycleApplied++;
        else this.stats.lifecycleIgnored++;
        return outcome;
      })
      .finally(() => this.queued--);
  }

  /** False for multivariate markets when they are not recorded. */
  private applies(msg: MarketLifecycle): boolean {
    const multivariate = msg.channel === 'multivariate_market_lifecycle' || msg.ticker.startsWith('KXMVE');
    return !multivariate || this.opts.includeMultivariate;
  }

  private async applyMarketLifecycle(msg: MarketLifecycle): Promise<LifecycleOutcome> {
    if (!this.applies(msg)) return 'ignored';
    const now = this.clock.nowMs();
    const patch: MarketPatch = {};
    switch (msg.eventType) {
      case 'created':
        return this.onCreated(msg, now);
      case 'activated':
        patch.status = 'active';
        break;
      case 'deactivated':
        patch.status = msg.isDeactivated === false ? 'active' : 'inactive';
        break;
      case 'close_date_updated':
        if (msg.closeTimeMs === null) return 'ignored';
        patch.closeTimeMs = msg.closeTimeMs;
        break;
      case 'determined':
        patch.status = 'determined';
        if (msg.result) patch.result = msg.result;
        break;
      case 'settled':
        patch.status = 'finalized';
        break;
      case 'price_level_structure_updated':
        if (msg.priceLevelStructure) patch.priceLevelStructure = msg.priceLevelStructure;
        break;
      case 'metadata_updated':
        patch.rawPatch = { lifecycle_metadata: msg.raw };
        break;
      default:
        return 'ignored';
    }
    await this.applyPatch(msg.ticker, patch, now, msg.eventType === 'metadata_updated');
    return 'applied';
  }

  /**
   * A market's 'created' message takes effect at once, outside the serial chain: tracked, timers
   * armed and, when live, subscribed. Queued behind the chain's database writes and REST look-ups,
   * a 40,000-market run took 17.5 s (p50) from 'created' to the book subscription and lost the
   * first deltas of every new market. Its placeholder row and REST look-up follow in the chain.
   */
  private trackCreated(msg: MarketLifecycle): void {
    const now = this.clock.nowMs();
    const existing = this.tracked.get(msg.ticker);
    const m: TrackedMarket = existing ?? {
      ticker: msg.ticker,
      eventTicker: null,
      status: 'initialized',
      openTimeMs: null,
      closeTimeMs: null,
      changedAtMs: now,
    };
    m.openTimeMs = msg.openTimeMs ?? m.openTimeMs;
    m.closeTimeMs = msg.closeTimeMs ?? m.closeTimeMs;
    m.changedAtMs = now;
    this.tracked.set(m.ticker, m);
    this.finishedAt.delete(m.ticker);
    this.pushDue(m);
    this.settle([m.ticker]);
    // A placeholder row until the REST object arrives; never overwrites an existing row.
    this.placeholders.push({
      ticker: m.ticker,
      eventTicker: null,
      status: m.status,
      openTimeMs: m.openTimeMs,
      closeTimeMs: m.closeTimeMs,
      result: null,
      priceLevelStructure: null,
      mveCollectionTicker: null,
      raw: { ticker: m.ticker, status: m.status, lifecycle_created: msg.raw },
    });
  }

  /** The chain's part of 'created': the placeholder rows gathered so far in one write, then the look-up. */
  private async onCreated(msg: MarketLifecycle, now: number): Promise<LifecycleOutcome> {
    const rows = this.placeholders.splice(0);
    if (rows.length > 0) await this.persist(() => this.store.upsertMarkets(rows, () => null, now * 1000, -1));
    this.queueLookup(msg.ticker, this.opts.createdFetchRetries);
    return 'applied';
  }

  private async applyPatch(ticker: string, patch: MarketPatch, now: number, refetch: boolean): Promise<void> {
    const m = this.tracked.get(ticker);
    if (m) {
      if (patch.status) m.status = patch.status;
      if (patch.closeTimeMs !== undefined) {
        m.closeTimeMs = patch.closeTimeMs;
        // A close time moved into the future reopens a market that had closed by time.
        if (m.status === 'closed' && patch.closeTimeMs > now) m.status = 'active';
      }
      m.changedAtMs = now;
      this.pushDue(m);
    }
    this.settle([ticker]);
    const rawPatch: Record<string, unknown> = { ...patch.rawPatch };
    if (patch.status) rawPatch.status = patch.status;
    if (patch.closeTimeMs !== undefined) rawPatch.close_time = new Date(patch.closeTimeMs).toISOString();
    if (patch.result) rawPatch.result = patch.result;
    if (patch.priceLevelStructure) rawPatch.price_level_structure = patch.priceLevelStructure;
    const exists = await this.persist(() => this.store.patchMarket(ticker, { ...patch, rawPatch }, now * 1000));
    const revived = !m && (patch.status === 'active' || patch.status === 'inactive' || (patch.closeTimeMs ?? 0) > now);
    if (exists === false || revived || (m && refetch)) this.queueLookup(ticker, 1);
  }

  /**
   * Queues a REST look-up of a market; look-ups are batched, LOOKUP_BATCH_MAX markets per
   * GET /markets?tickers= request. One GET per market could not keep up with a creation rate
   * of ~50 markets/s at 40,000 markets under the 20 requests/s budget (850 were still queued at
   * the end of a two-minute run). A market not listed yet (just created) is asked for again after
   * createdFetchDelayMs, up to `attempts` times; past the queue's bound the reconcile repairs it.
   */
  private queueLookup(ticker: string, attempts: number): void {
    if (this.stopped) return;
    if (!this.lookups.has(ticker) && this.lookups.size >= MAX_QUEUED_LOOKUPS) {
      this.stats.fetchFailures++;
      return;
    }
    this.lookups.set(ticker, Math.max(attempts, this.lookups.get(ticker) ?? 0));
    if (this.lookupRunning) return;
    this.lookupRunning = true;
    const p: Promise<void> = this.runLookups().finally(() => {
      this.lookupRunning = false;
      this.background.delete(p);
    });
    this.background.add(p);
  }

  private async runLookups(): Promise<void> {
    while (this.lookups.size > 0 && !this.stopped) {
      const batch = [...this.lookups].slice(0, LOOKUP_BATCH_MAX);
      for (const [t] of batch) this.lookups.delete(t);
      const startedMs = this.clock.nowMs();
      let found: KalshiMarket[];
      try {
        found = await this.deps.rest.collect(this.deps.rest.listMarkets({ tickers: batch.map(([t]) => t), limit: LOOKUP_BATCH_MAX }));
      } catch (err) {
        this.stats.fetchFailures += batch.length;
        this.deps.log?.warn(
          { markets: batch.length, code: isKdpError(err) ? err.code : 'unknown', err: (err as Error).message },
          'market look-up failed; reconcile will retry',
        );
        continue;
      }
      await this.serialize(() => this.applyListed(found, startedMs));
      const listed = new Set(found.map((m) => m.ticker));
      const retry = batch.filter(([t, left]) => !listed.has(t) && left > 1);
      this.stats.fetchFailures += batch.filter(([t, left]) => !listed.has(t) && left <= 1).length;
      if (retry.length === 0) continue;
      this.stats.createdNotFoundRetries += retry.length;
      // Just created: not listed for a moment. Ask again after the delay, with one attempt fewer.
      const p: Promise<void> = this.clock
        .sleep(this.opts.createdFetchDelayMs)
        .catch(() => undefined)
        .then(() => {
          for (const [t, left] of retry) this.queueLookup(t, left - 1);
        })
        .finally(() => this.background.delete(p));
      this.background.add(p);
    }
  }

  // ---- reconcile ------------------------------------------------------------------------------

  /** Re-lists everything and repairs the registry; concurrent calls share one run. */
  reconcile(): Promise<ReconcileResult> {
    this.reconciling ??= this.runReconcile().finally(() => (this.reconciling = undefined));
    return this.reconciling;
  }

  private async runReconcile(): Promise<ReconcileResult> {
    const startedMs = this.clock.nowMs();
    if (this.opts.discoverMetadata) await this.syncMetadata();
    const seen = new Set<string>();
    let listed = 0;
    const mve_filter = this.opts.includeMultivariate ? undefined : ('exclude' as const);
    for (const status of TRACKED_LISTINGS) {
      for await (const page of this.deps.rest.listMarkets({
        status,
        limit: this.opts.marketsPageLimit,
        mve_filter,
      })) {
        listed += page.length;
        for (const m of page) seen.add(m.ticker);
        await this.serialize(() => this.applyListed(page, startedMs));
      }
    }
    if (this.opts.recentlyClosedMs > 0) await this.persistRecentlyClosed(startedMs, mve_filter);
    const vanished = [...this.tracked.values()].filter((m) => !seen.has(m.ticker) && m.changedAtMs <= startedMs).map((m) => m.ticker);
    await this.resolveVanished(vanished, startedMs);
    // Tombstones older than this listing can no longer be needed (one reconcile runs at a time).
    for (const [t, ms] of this.finishedAt) if (ms <= startedMs) this.finishedAt.delete(t);
    this.stats.reconciles++;
    this.updateGauge();
    return { listed, tracked: this.tracked.size, live: this.live.size, vanished: vanished.length };
  }

  /** Markets that closed recently (e.g. while the gatherer was down): metadata for verify and backfill. */
  private async persistRecentlyClosed(startedMs: number, mve_filter: 'exclude' | undefined): Promise<void> {
    const min_close_ts = Math.floor((startedMs - this.opts.recentlyClosedMs) / 1000);
    for await (const page of this.deps.rest.listMarkets({
      status: 'closed',
      min_close_ts,
      limit: this.opts.marketsPageLimit,
      mve_filter,
    })) {
      await this.persist(() => this.store.upsertMarkets(page, (e) => (e ? (this.eventSeries.get(e) ?? null) : null), this.nowUs(), startedMs * 1000));
    }
  }

  private async syncMetadata(): Promise<void> {
    try {
      const series = await this.deps.rest.collect(this.deps.rest.listSeries());
      await this.store.upsertSeries(series, this.nowUs());
      for (const status of ['unopened', 'open'] as const) {
        for await (const page of this.deps.rest.listEvents({
          status,
          limit: this.opts.eventsPageLimit,
        })) {
          for (const e of page) if (e.seriesTicker) this.eventSeries.set(e.eventTicker, e.seriesTicker);
          await this.store.upsertEvents(page, this.nowUs());
        }
      }
    } catch (err) {
      // Metadata is descriptive; market discovery must not wait for it.
      this.stats.metadataErrors++;
      this.deps.log?.warn({ code: isKdpError(err) ? err.code : 'unknown', err: (err as Error).message }, 'series/events sync failed');
    }
  }

  /** Markets no longer in the tracked listings: look them up by ticker to learn their fate. */
  private async resolveVanished(tickers: readonly string[], startedMs: number): Promise<void> {
    for (let i = 0; i < tickers.length; i += LOOKUP_BATCH_MAX) {
      const batch = tickers.slice(i, i + LOOKUP_BATCH_MAX);
      const page = await this.deps.rest.getMarkets({ tickers: batch, limit: LOOKUP_BATCH_MAX });
      await this.serialize(async () => {
        const found = new Set(page.items.map((m) => m.ticker));
        for (const t of batch) {
          const m = this.tracked.get(t);
          if (!found.has(t) && m && m.changedAtMs <= startedMs) this.tracked.delete(t);
        }
        await this.applyListed(page.items, startedMs);
        this.settle(batch);
      });
    }
  }

  /** Applies REST market objects current as of `asOfMs` (unless a later lifecycle change won). */
  private async applyListed(markets: readonly KalshiMarket[], asOfMs: number): Promise<void> {
    const now = this.clock.nowMs();
    for (const r of markets) {
      const cur = this.tracked.get(r.ticker);
      if (cur && cur.changedAtMs > asOfMs) continue;
      if ((this.finishedAt.get(r.ticker) ?? -Infinity) > asOfMs) continue;
      this.finishedAt.delete(r.ticker);
      if (this.discovered && !cur && this.foundLate.size < CREATED_TIMES_MAX) {
        this.foundLate.add(r.ticker);
        this.stats.foundLate++;
      }
      const m: TrackedMarket = {
        ticker: r.ticker,
        eventTicker: r.eventTicker,
        status: r.status,
        openTimeMs: r.openTimeMs,
        closeTimeMs: r.closeTimeMs,
        changedAtMs: asOfMs,
      };
      this.tracked.set(m.ticker, m); // settle() below forgets it again if it is finished
      this.pushDue(m);
    }
    this.settle(markets.map((m) => m.ticker));
    await this.persist(() => this.store.upsertMarkets(markets, (e) => (e ? (this.eventSeries.get(e) ?? null) : null), now * 1000, asOfMs * 1000));
  }

  private scheduleReconcile(): void {
    if (this.stopped) return;
    this.reconcileTimer = this.clock.setTimer(() => {
      this.reconcile()
        .catch((err) => {
          this.stats.reconcileErrors++;
          this.deps.log?.error({ code: isKdpError(err) ? err.code : 'unknown', err: (err as Error).message }, 'reconcile failed');
        })
        .finally(() => this.scheduleReconcile());
    }, this.opts.reconcileIntervalMs);
  }

  // ---- time: open/close timers ------------------------------------------------------------------

  private pushDue(m: TrackedMarket): void {
    const now = this.clock.nowMs();
    if (m.status === 'initialized' && m.openTimeMs !== null && m.openTimeMs > now) {
      this.due.push(m.openTimeMs, m.ticker);
      const subscribeAt = m.openTimeMs - this.opts.subscribeLeadMs;
      if (subscribeAt > now) this.due.push(subscribeAt, m.ticker);
    }
    const finishAt = m.closeTimeMs === null ? null : m.closeTimeMs + this.opts.unsubscribeAfterCloseMs;
    if (finishAt !== null && finishAt > now && UNFINISHED.has(m.status)) this.due.push(finishAt, m.ticker);
    if (this.due.size > 2 * this.tracked.size + 1024) this.compactDue();
    this.arm();
  }

  private compactDue(): void {
    const entries = [];
    for (const m of this.tracked.values()) {
      if (m.status === 'initialized' && m.openTimeMs !== null) {
        entries.push({ dueMs: m.openTimeMs, key: m.ticker });
        entries.push({ dueMs: m.openTimeMs - this.opts.subscribeLeadMs, key: m.ticker });
      }
      if (m.closeTimeMs !== null) entries.push({ dueMs: m.closeTimeMs + this.opts.unsubscribeAfterCloseMs, key: m.ticker });
    }
    this.due.rebuild(entries);
  }

  private arm(): void {
    const next = this.due.peek();
    if (!next || this.stopped) return;
    if (this.armed && this.armed.dueMs <= next.dueMs) return;
    this.armed?.handle.cancel();
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, next.dueMs - this.clock.nowMs()));
    this.armed = { dueMs: next.dueMs, handle: this.clock.setTimer(() => this.onTimer(), delay) };
  }

  private onTimer(): void {
    this.armed = undefined;
    if (this.stopped) return;
    const tickers = [...new Set(this.due.popDue(this.clock.nowMs()).map((e) => e.key))];
    this.arm();
    if (tickers.length === 0) return;
    this.stats.timerFirings++;
    void this.serialize(() => this.applyTimeTransitions(tickers));
  }

  /** open_time passed: initialized -> active; unsubscribeAfterCloseMs past close_time: -> closed (finished). */
  private async applyTimeTransitions(tickers: readonly string[]): Promise<void> {
    const now = this.clock.nowMs();
    const changed: [string, string][] = [];
    for (const t of tickers) {
      const m = this.tracked.get(t);
      if (!m) continue;
      const implied =
        m.closeTimeMs !== null && m.closeTimeMs + this.opts.unsubscribeAfterCloseMs <= now && UNFINISHED.has(m.status)
          ? 'closed'
          : m.status === 'initialized' && m.openTimeMs !== null && m.openTimeMs <= now
            ? 'active'
            : undefined;
      if (!implied) continue;
      m.status = implied;
      changed.push([t, implied]);
    }
    this.settle(tickers);
    this.updateGauge();
    for (const [t, status] of changed) await this.persist(() => this.store.patchMarket(t, { status, rawPatch: { status } }, now * 1000));
  }

  // ---- plumbing --------------------------------------------------------------------------------

  /** Recomputes liveness of `tickers`, forgets finished markets, emits the differences. */
  private settle(tickers: Iterable<string>): void {
    const now = this.clock.nowMs();
    const added: string[] = [];
    const removed: string[] = [];
    for (const t of tickers) {
      const m = this.tracked.get(t);
      const liveNow = m !== undefined && isLive(m, now, this.opts.subscribeLeadMs, this.opts.unsubscribeAfterCloseMs);
      if (m && isFinished(m, now, this.opts.unsubscribeAfterCloseMs)) {
        this.tracked.delete(t);
        this.finishedAt.set(t, now);
      }
      if (liveNow && !this.live.has(t)) {
        this.live.add(t);
        added.push(t);
      } else if (!liveNow && this.live.delete(t)) removed.push(t);
    }
    if (added.length > 0) this.emit('marketsAdded', added);
    if (removed.length > 0) this.emit('marketsRemoved', removed);
  }

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Database writes never stop the registry: failures are counted and reconcile rewrites. */
  private async persist<T>(fn: () => Promise<T>): Promise<T | undefined> {
    try {
      return await fn();
    } catch (err) {
      this.stats.dbErrors++;
      this.deps.log?.error({ err: (err as Error).message }, 'registry database write failed');
      return undefined;
    }
  }

  private updateGauge(): void {
    const gauge = this.deps.metrics?.market_registry_markets;
    if (!gauge) return;
    const counts = new Map<string, number>();
    for (const m of this.tracked.values()) counts.set(m.status, (counts.get(m.status) ?? 0) + 1);
    gauge.reset();
    for (const [status, n] of counts) gauge.set({ status }, n);
  }

  private nowUs(): number {
    return this.clock.nowMs() * 1000;
  }
}
