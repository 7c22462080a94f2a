// Fault spec grammar (docs/simulator.md):
//   SPEC  := ITEM ("," ITEM)*
//   ITEM  := KIND (":" KEY "=" VALUE)*
//   KIND  := disconnect | stall | skipseq | dup | malformed | oversized | err25 | corrupt
//          | rest429 | rest5xx | inactive | create | burst
//   KEY   := every (duration) | at (duration, once) | for (duration) | rate (probability 0..1)
//            | bytes (int, oversized frame size) | count (int, markets per creation burst)
//            | x (number > 1, rate multiplier of a burst)
// `create` creates `count` markets at once, all opening within the next second (as daily and hourly
// series do on Kalshi); `burst` multiplies the exchange's message rate by x for `for`. Both are load,
// not faults of the wire: the generator applies them on its own clock (seeded, reproducible).
// `corrupt` sends the exchange's next positive order-book delta to every subscriber with 1 contract
// more than the exchange applied (a silent corruption: seq, shape and REST book stay right).
//   duration := INT ("ms" | "s" | "m")
// Periodic faults fire at start + k*every (k = 1, 2, ...) on the exchange clock, and once at
// start + at. Rate faults (skipseq, dup, malformed) roll a seeded die per sequenced frame.
import { KdpError } from '../core/errors';

export const PERIODIC_KINDS = ['disconnect', 'stall', 'oversized', 'err25', 'corrupt', 'rest429', 'rest5xx', 'inactive', 'create', 'burst'] as const;
/** Periodic kinds the generator applies itself (exchange load), not the simulator's fault loop. */
export const LOAD_KINDS: ReadonlySet<string> = new Set(['inactive', 'create', 'burst']);
export const RATE_KINDS = ['skipseq', 'dup', 'malformed'] as const;
export type PeriodicKind = (typeof PERIODIC_KINDS)[number];
export type RateKind = (typeof RATE_KINDS)[number];
export type FaultKind = PeriodicKind | RateKind;
const NEEDS_FOR: ReadonlySet<string> = new Set(['stall', 'rest429', 'rest5xx', 'inactive', 'burst']);

export interface PeriodicFault {
  kind: PeriodicKind;
  everyUs: number;
  atUs: number;
  forUs: number;
  bytes: number;
  /** Markets per creation burst (create). */
  count: number;
  /** Rate multiplier (burst). */
  x: number;
}
export interface FaultPlan {
  periodic: PeriodicFault[];
  rates: Record<RateKind, number>;
}

function bad(why: string): never {
  throw new KdpError('KDP_ERR_CONFIG_INVALID', `faults: ${why}`);
}

export function parseDurationUs(text: string): number {
  const m = /^(\d+)(ms|s|m)$/.exec(text);
  if (!m) bad(`bad duration ${JSON.stringify(text)} (use 500ms, 20s or 5m)`);
  const n = Number(m[1]);
  return m[2] === 'ms' ? n * 1000 : m[2] === 's' ? n * 1e6 : n * 60e6;
}

function parseItem(item: string, plan: FaultPlan): void {
  const [kind, ...pairs] = item.split(':');
  const kv = new Map<string, string>();
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) bad(`"${pair}" in "${item}" is not key=value`);
    const key = pair.slice(0, eq);
    if (kv.has(key)) bad(`"${key}" given twice in "${item}"`);
    kv.set(key, pair.slice(eq + 1));
  }
  if ((RATE_KINDS as readonly string[]).includes(kind!)) {
    for (const key of kv.keys()) if (key !== 'rate') bad(`unknown key "${key}" for ${kind}`);
    const rate = Number(kv.get('rate'));
    if (!kv.has('rate') || !Number.isFinite(rate) || rate < 0 || rate > 1) bad(`${kind} needs rate=P with 0 <= P <= 1`);
    plan.rates[kind as RateKind] = rate;
    return;
  }
  if (!(PERIODIC_KINDS as readonly string[]).includes(kind!)) bad(`unknown fault kind "${kind}"`);
  const keys = kind === 'create' ? ['every', 'at', 'count'] : kind === 'burst' ? ['every', 'at', 'for', 'x'] : ['every', 'at', 'for', 'bytes'];
  for (const key of kv.keys()) if (!keys.includes(key)) bad(`unknown key "${key}" for ${kind}`);
  if (!kv.has('every') && !kv.has('at')) bad(`${kind} needs every=DURATION or at=DURATION`);
  if (NEEDS_FOR.has(kind!) && !kv.has('for')) bad(`${kind} needs for=DURATION`);
  const fault: PeriodicFault = {
    kind: kind as PeriodicKind,
    everyUs: kv.has('every') ? parseDurationUs(kv.get('every')!) : 0,
    atUs: kv.has('at') ? parseDurationUs(kv.get('at')!) : 0,
    forUs: kv.has('for') ? parseDurationUs(kv.get('for')!) : 0,
    bytes: kv.has('bytes') ? Number(kv.get('bytes')) : 2 * 1024 * 1024,
    count: kv.has('count') ? Number(kv.get('count')) : 300,
    x: kv.has('x') ? Number(kv.get('x')) : 10,
  };
  if (!Number.isInteger(fault.count) || fault.count < 1 || fault.count > 100_000) bad(`${kind}: count must be an integer 1-100000`);
  if (!Number.isFinite(fault.x) || fault.x <= 1 || fault.x > 1000) bad(`${kind}: x must be a number > 1 and <= 1000`);
  if (kv.has('every') && fault.everyUs <= 0) bad(`${kind}: every must be > 0`);
  if (!Number.isInteger(fault.bytes) || fault.bytes < 1024) bad(`${kind}: bytes must be an integer >= 1024`);
  if (fault.forUs > 0 && fault.everyUs > 0 && fault.forUs >= fault.everyUs) bad(`${kind}: for must be shorter than every`);
  plan.periodic.push(fault);
}

export function parseFaultSpec(spec: string): FaultPlan {
  const plan: FaultPlan = { periodic: [], rates: { skipseq: 0, dup: 0, malformed: 0 } };
  for (const item of spec
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean))
    parseItem(item, plan);
  return plan;
}

/** The firing times of one periodic fault, produced lazily in time order (no horizon, no big arrays). */
export class FiringClock {
  private k = 1;
  private atPending: boolean;
  /** The last time it fired (for windows: rest429, rest5xx). */
  lastUs = -Infinity;
  constructor(
    readonly f: PeriodicFault,
    private readonly startUs: number,
  ) {
    this.atPending = f.atUs > 0;
  }
  peek(): number {
    const at = this.atPending ? this.startUs + this.f.atUs : Infinity;
    const every = this.f.everyUs > 0 ? this.startUs + this.k * this.f.everyUs : Infinity;
    return Math.min(at, every);
  }
  pop(): number {
    const t = this.peek();
    if (this.atPending && t === this.startUs + this.f.atUs) this.atPending = false;
    else this.k++;
    this.lastUs = t;
    return t;
  }
}

/** Exchange-wide inactive windows [start, end), overlapping ones merged, produced lazily. */
export class InactiveSchedule {
  private readonly clocks: FiringClock[];
  private window: [number, number] | null = null;
  constructor(plan: FaultPlan, startUs: number) {
    this.clocks = plan.periodic.filter((f) => f.kind === 'inactive').map((f) => new FiringClock(f, startUs));
  }
  private earliest(): FiringClock | undefined {
    let best: FiringClock | undefined;
    for (const c of this.clocks) if (c.peek() < (best?.peek() ?? Infinity)) best = c;
    return best;
  }
  /** The next window not yet passed, or null when there is none. */
  current(): readonly [number, number] | null {
    if (this.window) return this.window;
    let c = this.earliest();
    if (!c) return null;
    const start = c.pop();
    let end = start + c.f.forUs;
    while ((c = this.earliest()) && c.peek() <= end) {
      const t = c.pop();
      end = Math.max(end, t + c.f.forUs);
    }
    this.window = [start, end];
    return this.window;
  }
  /** Moves past the current window. */
  advance(): void {
    this.window = null;
  }
}

/**
 * The exchange's message-rate multiplier over time, from the `burst` faults: x inside a burst
 * window (the largest when windows overlap), 1 outside. Queried with non-decreasing times.
 */
export class BurstSchedule {
  private readonly clocks: FiringClock[];
  private readonly open: Array<{ endUs: number; x: number }> = [];
  constructor(plan: FaultPlan, startUs: number) {
    this.clocks = plan.periodic.filter((f) => f.kind === 'burst').map((f) => new FiringClock(f, startUs));
  }
  multiplierAt(t: number): number {
    for (const c of this.clocks) while (c.peek() <= t) this.open.push({ endUs: c.pop() + c.f.forUs, x: c.f.x });
    let x = 1;
    for (let i = this.open.length - 1; i >= 0; i--) {
      if (this.open[i]!.endUs <= t) this.open.splice(i, 1);
      else x = Math.max(x, this.open[i]!.x);
    }
    return x;
  }
  /** A burst injected at run time (chaos): rate times x from startUs for forUs. */
  inject(startUs: number, forUs: number, x: number): void {
    this.open.push({ endUs: startUs + forUs, x });
  }

  /** The next time the multiplier may change after t (a burst starting or ending). */
  nextChangeUs(): number {
    let next = Infinity;
    for (const c of this.clocks) next = Math.min(next, c.peek());
    for (const w of this.open) next = Math.min(next, w.endUs);
    return next;
  }
}

/** Creation bursts (`create` faults): when the next one is due and how many markets it makes. */
export class CreationSchedule {
  private readonly clocks: FiringClock[];
  constructor(plan: FaultPlan, startUs: number) {
    this.clocks = plan.periodic.filter((f) => f.kind === 'create').map((f) => new FiringClock(f, startUs));
  }
  private readonly injected: Array<{ atUs: number; count: number }> = [];
  nextUs(): number {
    let next = Infinity;
    for (const c of this.clocks) next = Math.min(next, c.peek());
    for (const i of this.injected) next = Math.min(next, i.atUs);
    return next;
  }
  /** A burst injected at run time (chaos): count markets at atUs. */
  inject(atUs: number, count: number): void {
    this.injected.push({ atUs, count });
  }
  /** Pops every burst due at t; returns the markets to create. */
  take(t: number): number {
    let n = 0;
    for (let i = this.injected.length - 1; i >= 0; i--) {
      if (this.injected[i]!.atUs > t) continue;
      n += this.injected[i]!.count;
      this.injected.splice(i, 1);
    }
    for (const c of this.clocks)
      while (c.peek() <= t) {
        c.pop();
        n += c.f.count;
      }
    return n;
  }
}

/** Inactive windows starting before startUs + horizonUs (tests, documentation). */
export function inactiveWindows(plan: FaultPlan, startUs: number, horizonUs: number): Array<[number, number]> {
  const sched = new InactiveSchedule(plan, startUs);
  const out: Array<[number, number]> = [];
  for (let w = sched.current(); w && w[0] < startUs + horizonUs; sched.advance(), w = sched.current()) out.push([w[0], w[1]]);
  return out;
}
