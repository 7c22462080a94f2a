// Reconnect backoff: a per-connection attempt counter over the shared full-jitter formula in
// ratelimit.ts (three gatherers must not reconnect in lockstep; Kalshi's 429s carry no Retry-After).
import { backoffDelayMs } from './ratelimit';

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  /** Random source in [0,1): injectable for deterministic tests. */
  random?: () => number;
}

export class Backoff {
  private attempt = 0;

  constructor(private readonly opts: BackoffOptions) {}

  /** Delay before the next attempt; each call widens the ceiling until maxMs. */
  nextDelayMs(): number {
    const delay = backoffDelayMs(this.attempt, { backoffInitialMs: this.opts.initialMs, backoffMaxMs: this.opts.maxMs }, this.opts.random);
    this.attempt = Math.min(this.attempt + 1, 30);
    return delay;
  }

  get attempts(): number {
    return this.attempt;
  }

  reset(): void {
    this.attempt = 0;
  }
}
