// Exact fixed-point and time helpers for the simulator. Prices are integers in 1/10000 dollar
// ("price units", so "0.4530" = 4530); sizes are integers in 1/100 contract ("size units",
// "12.50" = 1250). Timestamps are integer microseconds since the Unix epoch (safe in a double
// until the year 2255). Nothing here goes through binary floating point for a value on the wire.
import { KdpError } from '../core/errors';

export const PRICE_ONE = 10_000;

function pad(n: number, width: number): string {
  const s = String(n);
  return s.length >= width ? s : '0'.repeat(width - s.length) + s;
}

// Formatted strings are cached: every delta, trade and ticker formats prices and sizes, and
// reusing the strings keeps the allocation rate (and GC time) of the hot path down.
const PRICE_STRINGS: Array<string | undefined> = new Array<string | undefined>(PRICE_ONE + 1).fill(undefined);
// Order sizes are mostly below 200.00 contracts: dense (packed) arrays cover those both ways.
const SIZE_CACHE_MAX = 20_001;
const SIZE_POS: Array<string | undefined> = new Array<string | undefined>(SIZE_CACHE_MAX).fill(undefined);
const SIZE_NEG: Array<string | undefined> = new Array<string | undefined>(SIZE_CACHE_MAX).fill(undefined);

/** 4530 -> "0.4530"; 10000 -> "1.0000". */
export function formatPrice(units: number): string {
  if (!Number.isInteger(units) || units < 0) throw new KdpError('KDP_ERR_INTERNAL', `bad price units ${units}`);
  if (units <= PRICE_ONE) {
    const hit = PRICE_STRINGS[units];
    if (hit !== undefined) return hit;
  }
  const s = `${Math.floor(units / PRICE_ONE)}.${pad(units % PRICE_ONE, 4)}`;
  if (units <= PRICE_ONE) PRICE_STRINGS[units] = s;
  return s;
}

/** 1250 -> "12.50"; -1250 -> "-12.50". */
export function formatSize(units: number): string {
  if (!Number.isInteger(units)) throw new KdpError('KDP_ERR_INTERNAL', `bad size units ${units}`);
  const neg = units < 0;
  const a = neg ? -units : units;
  if (a >= SIZE_CACHE_MAX) return `${neg ? '-' : ''}${Math.floor(a / 100)}.${pad(a % 100, 2)}`;
  const cache = neg ? SIZE_NEG : SIZE_POS;
  let hit = cache[a];
  if (hit === undefined) cache[a] = hit = `${neg ? '-' : ''}${Math.floor(a / 100)}.${pad(a % 100, 2)}`;
  return hit;
}

/** Parses an exact decimal string into integer units of 10^-scale; throws on anything else. */
export function parseScaled(text: string, scale: number): number {
  // Hand-rolled (no regex, no float): this runs for every delta the state applies.
  const len = text.length;
  let i = 0;
  let neg = false;
  if (len > 0 && text.charCodeAt(0) === 45) {
    neg = true;
    i = 1;
  }
  let units = 0;
  let digits = 0;
  for (; i < len; i++) {
    const c = text.charCodeAt(i) - 48;
    if (c < 0 || c > 9) break;
    units = units * 10 + c;
    digits++;
  }
  let frac = 0;
  if (i < len && text.charCodeAt(i) === 46) {
    i++;
    let fracDigits = 0;
    for (; i < len; i++) {
      const c = text.charCodeAt(i) - 48;
      if (c < 0 || c > 9) break;
      if (fracDigits < scale) units = units * 10 + c;
      else if (c !== 0) throw new KdpError('KDP_ERR_MSG_DECIMAL', `more than ${scale} decimals: ${text}`);
      fracDigits++;
      frac++;
    }
    if (fracDigits === 0) digits = 0;
    for (let k = Math.min(fracDigits, scale); k < scale; k++) units *= 10;
  } else {
    for (let k = 0; k < scale; k++) units *= 10;
  }
  if (digits === 0 || i !== len) throw new KdpError('KDP_ERR_MSG_DECIMAL', `not a decimal: ${JSON.stringify(text)}`);
  if (!Number.isSafeInteger(units)) throw new KdpError('KDP_ERR_MSG_DECIMAL', `out of range: ${text}`);
  return neg ? -units : units;
}
export const parsePrice = (text: string): number => parseScaled(text, 4);
export const parseSize = (text: string): number => parseScaled(text, 2);

/** Microseconds -> "2026-05-28T05:35:09.623423Z". */
export function rfc3339Micros(us: number): string {
  const ms = Math.floor(us / 1000);
  const iso = new Date(ms).toISOString(); // ...T05:35:09.623Z
  return `${iso.slice(0, 23)}${pad(us % 1000, 3)}Z`;
}

/** Parses RFC3339 with up to 9 fractional digits into integer microseconds (truncating). */
export function parseRfc3339Micros(text: string): number {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(text);
  if (!m) throw new KdpError('KDP_ERR_MSG_TIMESTAMP', `not RFC3339: ${JSON.stringify(text)}`);
  const secMs = Date.parse(`${m[1]}${m[3]}`);
  if (!Number.isFinite(secMs)) throw new KdpError('KDP_ERR_MSG_TIMESTAMP', `bad time: ${text}`);
  const micros = Number(((m[2] ?? '') + '000000').slice(0, 6));
  return secMs * 1000 + micros;
}

/** Seeded PRNG (sfc32, seeded through splitmix32): fast, 32-bit state words, reproducible. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  constructor(seed: number) {
    let s = seed >>> 0;
    const mix = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = mix();
    this.b = mix();
    this.c = mix();
    this.d = mix();
    for (let i = 0; i < 12; i++) this.u32();
  }
  u32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }
  /** Uniform in [0, 1). */
  next(): number {
    return this.u32() / 4294967296;
  }
  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** Uniform integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  /** Exponential sample with the given mean. */
  exp(mean: number): number {
    return -Math.log(1 - this.next()) * mean;
  }
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new KdpError('KDP_ERR_INTERNAL', 'pick from empty list');
    return items[this.int(items.length)]!;
  }
  /** A version-4 UUID drawn from this generator (deterministic per seed). */
  uuid(): string {
    const b = UUID_BYTES;
    b.writeUInt32BE(this.u32(), 0);
    b.writeUInt32BE(((this.u32() & 0xffff0fff) | 0x00004000) >>> 0, 4);
    b.writeUInt32BE(((this.u32() & 0x3fffffff) | 0x80000000) >>> 0, 8);
    b.writeUInt32BE(this.u32(), 12);
    const x = b.toString('hex');
    return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
  }
}

const UUID_BYTES = Buffer.alloc(16);

const MONTHS = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'];
/** Kalshi-style date code: 2026-11-23 -> "26NOV23". */
export function dateCode(us: number): string {
  const d = new Date(Math.floor(us / 1000));
  return `${pad(d.getUTCFullYear() % 100, 2)}${MONTHS[d.getUTCMonth()]}${pad(d.getUTCDate(), 2)}`;
}
