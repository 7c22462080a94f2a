// Small bounded state the processor keeps per worker stream: occurrence numbering of identical
// changes inside one timestamp, and the recent trade ids used to drop duplicate trade frames.
import { KdpError } from '../core/errors';

/** Largest occurrence a SMALLINT column holds. */
export const OCCURRENCE_MAX = 32767;

interface MarketInstant {
  exchangeTs: number;
  counts: Map<string, number>;
}

/**
 * Numbers identical keys within one (market, exchange_ts): the first is 0, the next identical 1,
 * ... A market's counts reset when its exchange_ts moves on, so state is one small map per
 * market; markets beyond `marketsMax` evict the least recently inserted (its next change then
 * restarts numbering, the documented segment-boundary edge case).
 */
export class OccurrenceCounter {
  private readonly markets = new Map<string, MarketInstant>();
  evictions = 0;

  constructor(private readonly marketsMax: number) {}

  /** Occurrence of `key` at (ticker, exchangeTs); -1 when more identical keys than SMALLINT holds. */
  next(ticker: string, exchangeTs: number, key: string): number {
    let instant = this.markets.get(ticker);
    if (instant === undefined) {
      if (this.markets.size >= this.marketsMax) this.evictOldest();
      instant = { exchangeTs, counts: new Map() };
      this.markets.set(ticker, instant);
    } else if (instant.exchangeTs !== exchangeTs) {
      instant.exchangeTs = exchangeTs;
      instant.counts.clear();
    }
    const seen = instant.counts.get(key) ?? 0;
    if (seen > OCCURRENCE_MAX) return -1;
    instant.counts.set(key, seen + 1);
    return seen;
  }

  private evictOldest(): void {
    const oldest = this.markets.keys().next();
    if (!oldest.done) this.markets.delete(oldest.value);
    this.evictions++;
  }

  get size(): number {
    return this.markets.size;
  }
}

/** The last `capacity` ids seen, FIFO-evicted: a bounded "seen recently" set. */
export class RecentIds {
  private readonly ids = new Set<string>();
  // Insertion order, grown up to capacity and then overwritten in a circle.
  private readonly order: string[] = [];
  private cursor = 0;

  constructor(private readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new KdpError('KDP_ERR_CONFIG_INVALID', `RecentIds capacity must be >= 1`);
  }

  /** Records `id`; false when it was already among the recent ids. */
  add(id: string): boolean {
    if (this.ids.has(id)) return false;
    if (this.order.length < this.capacity) {
      this.order.push(id);
    } else {
      this.ids.delete(this.order[this.cursor]!);
      this.order[this.cursor] = id;
      this.cursor = (this.cursor + 1) % this.capacity;
    }
    this.ids.add(id);
    return true;
  }

  get size(): number {
    return this.ids.size;
  }
}
