// Client-side rate limiting for the exchange REST API: a token bucket (Kalshi meters reads in
// tokens per second per tier). The retry delays after 429 / 5xx / network errors are core/backoff.ts's.
import { KdpError } from '../core/errors';
import type { Clock } from './clock';

export interface TokenBucketOptions {
  readonly tokensPerSec: number;
  readonly burstTokens: number;
  /** Callers allowed to wait at once; more are refused (backpressure, not an unbounded queue). */
  readonly maxWaiters: number;
}

/**
 * FIFO token bucket. `take(cost)` resolves when `cost` tokens were taken; waiters are served in
 * arrival order so a cheap request cannot starve an expensive one.
 */
export class TokenBucket {
  private tokens: number;
  private lastRefillMs: number;
  private waiters = 0;
  private tail: Promise<void> = Promise.resolve();
  /** Total ms this bucket asked the clock to sleep (observability and tests). */
  waitedMs = 0;
  /** take() calls that had to wait at least once. */
  throttled = 0;

  constructor(
    private readonly opts: TokenBucketOptions,
    private readonly clock: Clock,
  ) {
    if (!(opts.tokensPerSec > 0) || !(opts.burstTokens > 0)) throw new KdpError('KDP_ERR_CONFIG_INVALID', 'token bucket rate and burst must be > 0');
    this.tokens = opts.burstTokens;
    this.lastRefillMs = clock.nowMs();
  }

  /** Takes `cost` tokens, waiting in line. Throws KDP_ERR_REST_RATE_LIMITED when the line is full. */
  take(cost: number, signal?: AbortSignal): Promise<void> {
    if (this.waiters >= this.opts.maxWaiters) {
      return Promise.reject(
        new KdpError('KDP_ERR_REST_RATE_LIMITED', `client-side REST queue full (${this.opts.maxWaiters} waiting)`, { queued: this.waiters }),
      );
    }
    this.waiters++;
    const turn = this.tail.then(() => this.takeNow(Math.min(cost, this.opts.burstTokens), signal));
    // The chain continues whether this caller succeeds or is aborted.
    this.tail = turn.catch(() => undefined);
    return turn.finally(() => this.waiters--);
  }

  /** Empties the bucket: after a 429 the server's budget is spent, so everyone slows down. */
  drain(): void {
    this.refill();
    this.tokens = Math.min(this.tokens, 0);
  }

  available(): number {
    this.refill();
    return this.tokens;
  }

  private async takeNow(cost: number, signal?: AbortSignal): Promise<void> {
    let waited = false;
    for (;;) {
      this.refill();
      if (this.tokens >= cost) {
        this.tokens -= cost;
        if (waited) this.throttled++;
        return;
      }
      const waitMs = Math.ceil(((cost - this.tokens) / this.opts.tokensPerSec) * 1000);
      waited = true;
      this.waitedMs += waitMs;
      await this.clock.sleep(waitMs, signal);
    }
  }

  private refill(): void {
    const now = this.clock.nowMs();
    const elapsed = now - this.lastRefillMs;
    if (elapsed > 0) {
      this.tokens = Math.min(this.opts.burstTokens, this.tokens + (elapsed / 1000) * this.opts.tokensPerSec);
      this.lastRefillMs = now;
    }
  }
}
