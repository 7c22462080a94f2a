// REST order-book snapshot poller: every live market once per `pollIntervalMs` (default 15 min),
// with the requests spread evenly across the interval so the poller never bursts against the
// REST budget (the client's token bucket still has the last word; 429/5xx are retried there).
// Books are fetched 100 tickers per GET /markets/orderbooks and stored as orderbook_snapshots rows
// with source 'rest', snapshot_ts = receive time (µs), last_delta_ts NULL, conn_id 0, sid 0.
import type { Logger } from '../core/log';
import { isKdpError } from '../core/errors';
import type { GATHERER_METRICS, MetricSet } from '../core/metrics';
import { shutdownError, systemClock, type Clock } from './clock';
import type { PollerOptions, RestClientOptions } from './options';
import type { RestClient } from './rest';
import { snapshotRowLine, type WriteRows } from './rows';
import type { OrderbookLevels } from './shapes';

export interface PollerDeps {
  readonly rest: RestClient;
  /** The live markets (MarketRegistry.activeTickers). */
  readonly tickers: () => readonly string[];
  readonly writeRows: WriteRows;
  /** This gatherer's name (provenance column `gatherer`). */
  readonly gatherer: string;
  readonly clock?: Clock;
  readonly log?: Logger;
  readonly metrics?: Pick<MetricSet<typeof GATHERER_METRICS>, 'snapshot_poller_snapshots_total'>;
  /** Called after each full cycle (service health, tests). */
  readonly onCycle?: (result: CycleResult) => void;
}

export interface CycleResult {
  readonly tickers: number;
  readonly requests: number;
  readonly stored: number;
  readonly missing: number;
  readonly failedRequests: number;
}

export interface PollNowResult {
  readonly ticker: string;
  readonly snapshotTs: number;
  readonly yesLevels: number;
  readonly noLevels: number;
}

export interface PollerStats {
  cycles: number;
  stored: number;
  missing: number;
  failedRequests: number;
  failedWrites: number;
}

export class SnapshotPoller {
  readonly stats: PollerStats = {
    cycles: 0,
    stored: 0,
    missing: 0,
    failedRequests: 0,
    failedWrites: 0,
  };
  private readonly clock: Clock;
  private stopper = new AbortController();
  private loop: Promise<void> | undefined;

  constructor(
    private readonly opts: PollerOptions & Pick<RestClientOptions, 'restTokensPerSec' | 'restCostPerRequest'>,
    private readonly deps: PollerDeps,
  ) {
    this.clock = deps.clock ?? systemClock;
  }

  start(): void {
    if (this.loop) return;
    this.stopper = new AbortController();
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopper.abort();
    await this.loop;
    this.loop = undefined;
  }

  private async run(): Promise<void> {
    while (!this.stopper.signal.aborted) {
      const cycleStart = this.clock.nowMs();
      try {
        const result = await this.runCycle();
        this.deps.onCycle?.(result);
        await this.sleepUntil(cycleStart + this.opts.pollIntervalMs);
      } catch (err) {
        if (isKdpError(err, 'KDP_ERR_SHUTDOWN')) return;
        throw err;
      }
    }
  }

  /** One pass over every live market, spread evenly over `pollIntervalMs`. */
  async runCycle(): Promise<CycleResult> {
    const tickers = [...this.deps.tickers()];
    const size = this.opts.pollUseBatchEndpoint ? this.opts.pollBatchTickers : 1;
    const batches: string[][] = [];
    for (let i = 0; i < tickers.length; i += size) batches.push(tickers.slice(i, i + size));
    this.warnIfOverBudget(batches.length);
    const start = this.clock.nowMs();
    let stored = 0;
    let missing = 0;
    let failedRequests = 0;
    // Each batch starts at its slot; when answers are slower than the slots (40,000 markets = 400
    // requests; a loaded exchange answered a 100-market batch in ~1.2 s, so one at a time a pass
    // took 8 minutes) up to pollInFlightMax run at once. The REST client's token bucket still
    // bounds the rate.
    const inFlight = new Set<Promise<void>>();
    let thrown: unknown; // only KDP_ERR_SHUTDOWN escapes pollBatch
    for (let i = 0; i < batches.length && thrown === undefined; i++) {
      while (inFlight.size >= this.opts.pollInFlightMax) await Promise.race(inFlight);
      await this.sleepUntil(start + Math.floor((i * this.opts.pollIntervalMs) / batches.length));
      const p: Promise<void> = this.pollBatch(batches[i]!)
        .then(
          (r) => {
            stored += r.stored;
            missing += r.missing;
            failedRequests += r.failed ? 1 : 0;
          },
          (err: unknown) => {
            thrown ??= err;
          },
        )
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
    await Promise.all(inFlight);
    if (thrown !== undefined) throw thrown;
    this.stats.cycles++;
    return { tickers: tickers.length, requests: batches.length, stored, missing, failedRequests };
  }

  /** Polls one market now and stores its book (admin: POST /admin/poll-market?ticker=). Throws coded errors. */
  async pollNow(ticker: string): Promise<PollNowResult> {
    const book = await this.deps.rest.getOrderbook(ticker, this.opts.pollDepth || undefined);
    const snapshotTs = this.clock.nowMs() * 1000;
    await this.deps.writeRows('orderbook_snapshots', [snapshotRowLine(ticker, book, snapshotTs, this.deps.gatherer)]);
    this.countStored(1);
    return { ticker, snapshotTs, yesLevels: book.yes.length, noLevels: book.no.length };
  }

  private async pollBatch(batch: readonly string[]): Promise<{ stored: number; missing: number; failed: boolean }> {
    let books: Map<string, OrderbookLevels>;
    try {
      books = await this.fetchBooks(batch);
    } catch (err) {
      if (isKdpError(err, 'KDP_ERR_SHUTDOWN')) throw err;
      this.stats.failedRequests++;
      this.deps.log?.warn(
        {
          tickers: batch.length,
          code: isKdpError(err) ? err.code : 'unknown',
          err: (err as Error).message,
        },
        'snapshot poll failed; next cycle retries',
      );
      return { stored: 0, missing: 0, failed: true };
    }
    const receivedUs = this.clock.nowMs() * 1000;
    const rows: string[] = [];
    for (const t of batch) {
      const book = books.get(t);
      if (book) rows.push(snapshotRowLine(t, book, receivedUs, this.deps.gatherer));
    }
    const missing = batch.length - rows.length;
    this.stats.missing += missing;
    if (rows.length === 0) return { stored: 0, missing, failed: false };
    try {
      await this.deps.writeRows('orderbook_snapshots', rows);
    } catch (err) {
      this.stats.failedWrites++;
      this.deps.log?.error({ rows: rows.length, err: (err as Error).message }, 'snapshot write failed; next cycle retries');
      return { stored: 0, missing, failed: false };
    }
    this.countStored(rows.length);
    return { stored: rows.length, missing, failed: false };
  }

  private async fetchBooks(batch: readonly string[]): Promise<Map<string, OrderbookLevels>> {
    if (this.opts.pollUseBatchEndpoint) return this.deps.rest.getOrderbooks(batch);
    const out = new Map<string, OrderbookLevels>();
    out.set(batch[0]!, await this.deps.rest.getOrderbook(batch[0]!, this.opts.pollDepth || undefined));
    return out;
  }

  private countStored(n: number): void {
    this.stats.stored += n;
    this.deps.metrics?.snapshot_poller_snapshots_total.inc(n);
  }

  private async sleepUntil(dueMs: number): Promise<void> {
    if (this.stopper.signal.aborted) throw shutdownError();
    const wait = dueMs - this.clock.nowMs();
    if (wait > 0) await this.clock.sleep(wait, this.stopper.signal);
  }

  private warnIfOverBudget(requests: number): void {
    const tokensPerSec = (requests * this.opts.restCostPerRequest) / (this.opts.pollIntervalMs / 1000);
    if (tokensPerSec > this.opts.restTokensPerSec / 2) {
      this.deps.log?.warn({ requests, tokensPerSec, budget: this.opts.restTokensPerSec }, 'snapshot polling needs over half the REST token budget');
    }
  }
}
