// Trade backfill: after a gap, reconnect or outage, fetch GET /markets/trades for the affected
// markets and window and store every trade through the injected writer. The trades table is
// UNIQUE (exchange_ts, trade_id) and the writer inserts ON CONFLICT DO NOTHING, so trades already
// recorded live (same trade_id, same millisecond-truncated exchange_ts) collapse with the REST copy.
// - Windows are widened by `backfillMarginMs` on both sides (Kalshi filters by whole seconds).
// - Per ticker, queued windows that overlap (or touch) merge; a request arriving while its ticker
//   is being fetched queues behind it. `tickers: 'all'` fetches every market's trades in one
//   listing (what to do when every connection dropped at once).
// - At most `backfillConcurrency` tickers are fetched at once; at most `backfillMaxQueuedWindows`
//   windows wait; beyond that a ticker is refused and reported (backpressure as a return value).
import type { Logger } from '../core/log';
import { isKdpError } from '../core/errors';
import type { GATHERER_METRICS, MetricSet } from '../core/metrics';
import { systemClock, type Clock } from './clock';
import type { BackfillOptions } from './options';
import type { RestClient } from './rest';
import { tradeRowLine, type WriteRows } from './rows';

export interface BackfillRequest {
  /** Affected markets, or 'all' for one listing across every market. */
  readonly tickers: readonly string[] | 'all';
  /** Window, µs since the epoch (the gap's start and end). */
  readonly fromUs: number;
  readonly toUs: number;
}

export interface BackfillResult {
  /** Ticker windows fetched to completion for this request (after merging). */
  readonly completed: number;
  /** Ticker windows that failed (REST or writer errors after retries). */
  readonly failed: number;
  /** Tickers refused because the queue was full. */
  readonly refused: number;
  /** Trades fetched and handed to the writer (before de-duplication by the table key). */
  readonly trades: number;
}

export interface BackfillDeps {
  readonly rest: RestClient;
  readonly writeRows: WriteRows;
  readonly gatherer: string;
  readonly clock?: Clock;
  readonly log?: Logger;
  readonly metrics?: Pick<MetricSet<typeof GATHERER_METRICS>, 'trade_backfill_trades_total'>;
}

export interface BackfillStats {
  windowsFetched: number;
  windowsFailed: number;
  windowsMerged: number;
  refused: number;
  trades: number;
  pages: number;
}

interface WindowOutcome {
  readonly ok: boolean;
  readonly trades: number;
}

interface Window {
  fromUs: number;
  toUs: number;
  readonly waiters: ((o: WindowOutcome) => void)[];
}

const ALL = '*';

export class TradeBackfill {
  readonly stats: BackfillStats = {
    windowsFetched: 0,
    windowsFailed: 0,
    windowsMerged: 0,
    refused: 0,
    trades: 0,
    pages: 0,
  };
  private readonly clock: Clock;
  /** Windows waiting, per ticker key; disjoint after merging. */
  private readonly pending = new Map<string, Window[]>();
  private pendingCount = 0;
  private readonly queue: string[] = [];
  private readonly running = new Set<string>();
  private stopped = false;

  constructor(
    private readonly opts: BackfillOptions,
    private readonly deps: BackfillDeps,
  ) {
    this.clock = deps.clock ?? systemClock;
  }

  /** Queues the windows and resolves when every one of them has been fetched (or failed). */
  backfill(req: BackfillRequest): Promise<BackfillResult> {
    const keys = req.tickers === 'all' ? [ALL] : [...new Set(req.tickers)];
    const marginUs = this.opts.backfillMarginMs * 1000;
    const fromUs = Math.min(req.fromUs, req.toUs) - marginUs;
    const toUs = Math.max(req.fromUs, req.toUs) + marginUs;
    const outcomes: Promise<WindowOutcome>[] = [];
    let refused = 0;
    for (const key of keys) {
      if (this.stopped || this.pendingCount >= this.opts.backfillMaxQueuedWindows) {
        refused++;
        continue;
      }
      outcomes.push(new Promise<WindowOutcome>((resolve) => this.enqueue(key, fromUs, toUs, resolve)));
    }
    if (refused > 0) {
      this.stats.refused += refused;
      this.deps.log?.warn({ refused, queued: this.pendingCount }, 'backfill queue full: tickers refused');
    }
    this.pump();
    return Promise.all(outcomes).then((list) => ({
      completed: list.filter((o) => o.ok).length,
      failed: list.filter((o) => !o.ok).length,
      refused,
      trades: list.reduce((n, o) => n + o.trades, 0),
    }));
  }

  /** Refuses new work; queued windows resolve as failed once reached. */
  stop(): void {
    this.stopped = true;
  }

  queuedWindows(): number {
    return this.pendingCount;
  }

  private enqueue(key: string, fromUs: number, toUs: number, waiter: (o: WindowOutcome) => void): void {
    const list = this.pending.get(key) ?? [];
    let merged: Window = { fromUs, toUs, waiters: [waiter] };
    let keep: Window[] = list;
    // Overlapping or touching windows merge into one fetch; repeat while the merged one grows.
    for (let grew = true; grew;) {
      grew = false;
      const next: Window[] = [];
      for (const w of keep) {
        if (w.fromUs <= merged.toUs && merged.fromUs <= w.toUs) {
          merged = {
            fromUs: Math.min(w.fromUs, merged.fromUs),
            toUs: Math.max(w.toUs, merged.toUs),
            waiters: [...w.waiters, ...merged.waiters],
          };
          this.pendingCount--;
          this.stats.windowsMerged++;
          grew = true;
        } else next.push(w);
      }
      keep = next;
    }
    keep.push(merged);
    this.pendingCount++;
    this.pending.set(key, keep);
    if (list.length === 0 && !this.running.has(key)) this.queue.push(key);
  }

  private pump(): void {
    while (this.running.size < this.opts.backfillConcurrency && this.queue.length > 0) {
      const key = this.queue.shift()!;
      const windows = this.pending.get(key) ?? [];
      this.pending.delete(key);
      this.pendingCount -= windows.length;
      this.running.add(key);
      void this.runKey(key, windows).finally(() => {
        this.running.delete(key);
        if (this.pending.has(key)) this.queue.push(key);
        this.pump();
      });
    }
  }

  private async runKey(key: string, windows: readonly Window[]): Promise<void> {
    for (const w of windows) {
      const outcome = this.stopped ? { ok: false, trades: 0 } : await this.fetchWindow(key, w);
      if (outcome.ok) this.stats.windowsFetched++;
      else this.stats.windowsFailed++;
      for (const resolve of w.waiters) resolve(outcome);
    }
  }

  private async fetchWindow(key: string, w: Window): Promise<WindowOutcome> {
    const min_ts = Math.floor(w.fromUs / 1_000_000);
    const max_ts = Math.ceil(w.toUs / 1_000_000);
    const ticker = key === ALL ? undefined : key;
    let trades = 0;
    try {
      for await (const page of this.deps.rest.listTrades({
        ticker,
        min_ts,
        max_ts,
        limit: this.opts.backfillPageLimit,
      })) {
        this.stats.pages++;
        if (page.length === 0) continue;
        const receivedUs = this.clock.nowMs() * 1000;
        const rows = page.map((t) => tradeRowLine(t, receivedUs, this.deps.gatherer));
        await this.deps.writeRows('trades', rows);
        trades += rows.length;
        this.stats.trades += rows.length;
        this.deps.metrics?.trade_backfill_trades_total.inc(rows.length);
      }
      return { ok: true, trades };
    } catch (err) {
      this.deps.log?.error(
        {
          ticker: key,
          min_ts,
          max_ts,
          code: isKdpError(err) ? err.code : 'unknown',
          err: (err as Error).message,
        },
        'trade backfill window failed',
      );
      return { ok: false, trades };
    }
  }
}
