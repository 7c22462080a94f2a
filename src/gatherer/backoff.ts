// Exponential backoff with full jitter, bounded. Kalshi's 429s carry no Retry-After and three
// gatherers must not reconnect in lockstep: full jitter spreads retries over [0, ceiling].

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  /** Multiplier per attempt. */
  factor?: number;
  /** Random source in [0,1): injectable for deterministic tests. */
  random?: () => number;
}

export class Backoff {
  private attempt = 0;
  private readonly factor: number;
  private readonly random: () => number;

  constructor(private readonly opts: BackoffOptions) {
    this.factor = opts.factor ?? 2;
    this.random = opts.random ?? Math.random;
  }

  /** The ceiling for the current attempt, without jitter. */
  ceilingMs(): number {
    return Math.min(this.opts.maxMs, this.opts.initialMs * this.factor ** this.attempt);
  }

  /** Delay before the next attempt: the first retry waits at least half of initialMs. */
  nextDelayMs(): number {
    const ceiling = this.ceilingMs();
    this.attempt = Math.min(this.attempt + 1, 64);
    const floor = Math.min(ceiling, this.opts.initialMs / 2);
    return Math.round(floor + this.random() * (ceiling - floor));
  }

  get attempts(): number {
    return this.attempt;
  }

  reset(): void {
    this.attempt = 0;
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
