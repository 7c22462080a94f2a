// Frozen-feed detection: a gatherer whose connection is "up" but silently stopped delivering some
// markets. Each merge reports, per gatherer, the markets its staged rows covered with their newest
// received_at. A market is frozen on gatherer g when another gatherer recorded it inside g's
// recent window (so g had time to record it too) and g's own newest row of it is older than
// that by more than the window. Bounded: at most `marketsMax` markets remembered per gatherer.
export class FrozenFeedTracker {
  private readonly seen = new Map<string, Map<string, number>>();
  /** Newest received_at (µs) merged per gatherer: how far its data reaches. */
  private readonly horizonUs = new Map<string, number>();

  constructor(
    private readonly windowUs: number,
    private readonly marketsMax: number,
  ) {}

  /** Records markets seen in one committed merge: ticker -> newest received_at (µs). */
  record(gatherer: string, markets: ReadonlyMap<string, number>): void {
    let mine = this.seen.get(gatherer);
    if (!mine) this.seen.set(gatherer, (mine = new Map()));
    let horizon = this.horizonUs.get(gatherer) ?? 0;
    for (const [ticker, lastUs] of markets) {
      if ((mine.get(ticker) ?? 0) < lastUs) mine.set(ticker, lastUs);
      if (lastUs > horizon) horizon = lastUs;
    }
    this.horizonUs.set(gatherer, horizon);
    if (mine.size > this.marketsMax) this.evictOldest(mine, horizon);
  }

  /** Frozen markets per gatherer (only gatherers in `among`, e.g. the reachable ones). */
  frozen(among: readonly string[]): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const g of among) {
      const horizon = this.horizonUs.get(g);
      const mine = this.seen.get(g) ?? new Map<string, number>();
      const frozen = new Set<string>();
      if (horizon !== undefined) {
        for (const other of among) {
          if (other === g) continue;
          for (const [ticker, lastUs] of this.seen.get(other) ?? []) {
            if (lastUs > horizon || lastUs <= horizon - this.windowUs) continue;
            const own = mine.get(ticker);
            if (own === undefined || own < lastUs - this.windowUs) frozen.add(ticker);
          }
        }
      }
      out.set(g, [...frozen].sort());
    }
    return out;
  }

  /** A rebuilt or reset gatherer starts over. */
  forget(gatherer: string): void {
    this.seen.delete(gatherer);
    this.horizonUs.delete(gatherer);
  }

  private evictOldest(mine: Map<string, number>, horizon: number): void {
    const cutoff = horizon - 10 * this.windowUs;
    for (const [t, at] of mine) if (at < cutoff) mine.delete(t);
    // Still too many: drop in insertion order (oldest first seen) down to the cap.
    for (const t of mine.keys()) {
      if (mine.size <= this.marketsMax) break;
      mine.delete(t);
    }
  }
}
