// Recent trades for REST /markets/trades, kept in a ring of typed-array columns: at hundreds of
// thousands of trades a second, keeping one object (plus strings) per trade made the garbage
// collector copy every trade into the old generation. Columns are not scanned by the GC.
import { KdpError } from '../core/errors';
import { formatPrice, formatSize, parsePrice, parseSize } from './fixed';
import type { Side, TradeRec } from './truth';

const HEX = '0123456789abcdef';

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

export class TradeRing {
  private readonly n: Float64Array;
  private readonly t: Float64Array;
  private readonly market: Int32Array;
  private readonly yesPrice: Int32Array;
  private readonly noPrice: Int32Array;
  private readonly count: Float64Array;
  /** bit 0: taker_side yes; bit 1: taker_outcome_side yes; bit 2: taker_book_side bid. */
  private readonly flags: Uint8Array;
  private readonly ids: Uint8Array;
  /** trade_ids that are not UUIDs (captured feeds), by exchange order n. */
  private readonly oddIds = new Map<number, string>();
  private head = 0;
  size = 0;

  constructor(readonly capacity: number) {
    this.n = new Float64Array(capacity);
    this.t = new Float64Array(capacity);
    this.market = new Int32Array(capacity);
    this.yesPrice = new Int32Array(capacity);
    this.noPrice = new Int32Array(capacity);
    this.count = new Float64Array(capacity);
    this.flags = new Uint8Array(capacity);
    this.ids = new Uint8Array(capacity * 16);
  }

  push(rec: TradeRec, marketIdx: number): void {
    const i = this.head;
    if (this.size === this.capacity) this.oddIds.delete(this.n[i]!);
    this.n[i] = rec.n;
    this.t[i] = rec.t;
    this.market[i] = marketIdx;
    this.yesPrice[i] = parsePrice(rec.yes_price_dollars);
    this.noPrice[i] = parsePrice(rec.no_price_dollars);
    this.count[i] = parseSize(rec.count_fp);
    this.flags[i] = (rec.taker_side === 'yes' ? 1 : 0) | (rec.taker_outcome_side === 'yes' ? 2 : 0) | (rec.taker_book_side === 'bid' ? 4 : 0);
    if (!this.storeUuid(rec.trade_id, i * 16)) this.oddIds.set(rec.n, rec.trade_id);
    this.head = (i + 1) % this.capacity;
    if (this.size < this.capacity) this.size++;
  }

  private storeUuid(id: string, at: number): boolean {
    if (id.length !== 36) return false;
    let k = at;
    for (let j = 0; j < 36; j += 2) {
      if (j === 8 || j === 13 || j === 18 || j === 23) {
        if (id.charCodeAt(j) !== 45) return false;
        j--;
        continue;
      }
      const hi = hexValue(id.charCodeAt(j));
      const lo = hexValue(id.charCodeAt(j + 1));
      if (hi < 0 || lo < 0) return false;
      this.ids[k++] = (hi << 4) | lo;
    }
    return k === at + 16;
  }

  private uuid(i: number): string {
    let s = '';
    for (let j = 0; j < 16; j++) {
      const b = this.ids[i * 16 + j]!;
      s += HEX[b >> 4]! + HEX[b & 15]!;
      if (j === 3 || j === 5 || j === 7 || j === 9) s += '-';
    }
    return s;
  }

  /** Slot of the k-th newest trade (k = 0 is the newest). */
  slot(k: number): number {
    if (k < 0 || k >= this.size) throw new KdpError('KDP_ERR_INTERNAL', `trade ${k} of ${this.size}`);
    return (this.head - 1 - k + this.capacity) % this.capacity;
  }
  nAt(slot: number): number {
    return this.n[slot]!;
  }
  tAt(slot: number): number {
    return this.t[slot]!;
  }
  marketAt(slot: number): number {
    return this.market[slot]!;
  }

  /** The REST shape of the trade in `slot`. */
  json(slot: number, ticker: string, iso: (us: number) => string): Record<string, unknown> {
    const f = this.flags[slot]!;
    const side = (bit: number): Side => (f & bit ? 'yes' : 'no');
    return {
      trade_id: this.oddIds.get(this.n[slot]!) ?? this.uuid(slot),
      ticker,
      yes_price_dollars: formatPrice(this.yesPrice[slot]!),
      no_price_dollars: formatPrice(this.noPrice[slot]!),
      count_fp: formatSize(this.count[slot]!),
      taker_side: side(1),
      taker_outcome_side: side(2),
      taker_book_side: f & 4 ? 'bid' : 'ask',
      created_time: iso(this.t[slot]!),
    };
  }
}
