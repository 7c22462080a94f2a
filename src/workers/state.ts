// Small bounded state the processor keeps per worker stream: occurrence numbering of identical
// changes inside one timestamp, and the recent trade ids used to drop duplicate trade frames.
import { KdpError } from '../core/errors';

/** Largest occurrence a SMALLINT column holds. */
export const OCCURRENCE_MAX = 32767;

class MarketInstant {
  // The instant's first change, held inline: most (market, exchange_ts) pairs see one change, so the
  // usual delta neither builds a joined key string nor touches a Map (the concatenated key and the
  // per-instant Map.clear were 7 % of a busy worker's profile).
  first1: string;
  first2: string;
  first3: string;
  firstCount = 1;
  /** Counts of the other keys (joined), created on the instant's second distinct key and kept. */
  others: Map<string, number> | null = null;

  constructor(
    public exchangeTs: number,
    k1: string,
    k2: string,
    k3: string,
  ) {
    this.first1 = k1;
    this.first2 = k2;
    this.first3 = k3;
  }

  /** Starts a new instant with its first change (`others` is emptied, not dropped: reused). */
  reset(exchangeTs: number, k1: string, k2: string, k3: string): void {
    this.exchangeTs = exchangeTs;
    this.first1 = k1;
    this.first2 = k2;
    this.first3 = k3;
    this.firstCount = 1;
    if (this.others !== null && this.others.size > 0) this.others.clear();
  }
}

/**
 * Numbers identical keys within one (market, exchange_ts): the first is 0, the next identical 1,
 * ... A key is up to three parts (a delta's side, price and delta; a ticker's fingerprint alone)
 * compared part by part, so callers need not join them. A market's counts reset when its
 * exchange_ts moves on, so state is one small record per market; markets beyond `marketsMax` evict
 * the least recently inserted (its next change then restarts numbering, the documented
 * segment-boundary edge case).
 */
export class OccurrenceCounter {
  private readonly markets = new Map<string, MarketInstant>();
  evictions = 0;

  constructor(private readonly marketsMax: number) {}

  /** Occurrence of key (k1, k2, k3) at (ticker, exchangeTs); -1 when more identical keys than SMALLINT holds. */
  next(ticker: string, exchangeTs: number, k1: string, k2 = '', k3 = ''): number {
    const instant = this.markets.get(ticker);
    if (instant === undefined) {
      if (this.markets.size >= this.marketsMax) this.evictOldest();
      this.markets.set(ticker, new MarketInstant(exchangeTs, k1, k2, k3));
      return 0;
    }
    if (instant.exchangeTs !== exchangeTs) {
      instant.reset(exchangeTs, k1, k2, k3);
      return 0;
    }
    if (instant.first1 === k1 && instant.first2 === k2 && instant.first3 === k3) {
      const seen = instant.firstCount;
      if (seen > OCCURRENCE_MAX) return -1;
      instant.firstCount = seen + 1;
      return seen;
    }
    // '|' appears in no part (sides, decimals, decimal fingerprints): the joined key is unambiguous.
    const key = k1 + '|' + k2 + '|' + k3;
    const others = (instant.others ??= new Map());
    const seen = others.get(key) ?? 0;
    if (seen > OCCURRENCE_MAX) return -1;
    others.set(key, seen + 1);
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
