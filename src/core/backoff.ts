// The one exponential backoff of the platform: every retry loop (reconnects, REST retries, COPY
// batches, ledger writes, deduplicator and archiver cycles, object-store puts) takes its delay
// from backoffDelayMs, so the ceiling formula and the jitter kinds live here only. Callers name
// their jitter and say why:
// - 'full' (uniform in [0, ceiling]): many peers retrying against one server (three gatherers'
//   reconnects and REST calls, writers of several workers on one database) must not move in lockstep;
// - 'equal' (uniform in [ceiling/2, ceiling]): spread restarts out but keep a floor, so a retry
//   against a slow remote (production, S3) is never immediate;
// - 'none': a single caller whose retries nobody else shares (a process-local ledger write or
//   recovery), where a predictable schedule is easier to reason about in logs and tests.

export type Jitter = 'full' | 'equal' | 'none';

export interface BackoffPolicy {
  /** Ceiling of attempt 0; doubles per attempt. */
  readonly initialMs: number;
  /** Largest ceiling. */
  readonly maxMs: number;
  readonly jitter: Jitter;
  /** Random source in [0,1): injectable for deterministic tests. */
  readonly random?: () => number;
}

/** Doubling stops here: 2^30 times any initial delay is past every maxMs (and a safe number). */
const EXPONENT_MAX = 30;

/** Delay before retry number `attempt` (from 0): ceiling min(maxMs, initialMs * 2^attempt), jittered. */
export function backoffDelayMs(attempt: number, policy: BackoffPolicy): number {
  const ceiling = Math.min(policy.maxMs, policy.initialMs * 2 ** Math.min(Math.max(attempt, 0), EXPONENT_MAX));
  const random = policy.random ?? Math.random;
  switch (policy.jitter) {
    case 'full':
      return Math.floor(random() * ceiling);
    case 'equal':
      return Math.round(ceiling / 2 + random() * (ceiling / 2));
    case 'none':
      return ceiling;
  }
}

/** An attempt counter over backoffDelayMs, for loops that reset on success (reconnects, relaunches). */
export class Backoff {
  private attempt = 0;

  constructor(private readonly policy: BackoffPolicy) {}

  /** Delay before the next attempt; each call widens the ceiling until maxMs. */
  nextDelayMs(): number {
    const delay = backoffDelayMs(this.attempt, this.policy);
    this.attempt = Math.min(this.attempt + 1, EXPONENT_MAX);
    return delay;
  }

  get attempts(): number {
    return this.attempt;
  }

  reset(): void {
    this.attempt = 0;
  }
}
