// Fault spec grammar (docs/simulator.md):
//   SPEC  := ITEM ("," ITEM)*
//   ITEM  := KIND (":" KEY "=" VALUE)*
//   KIND  := disconnect | stall | skipseq | dup | malformed | oversized | err25
//          | rest429 | rest5xx | inactive
//   KEY   := every (duration) | at (duration, once) | for (duration) | rate (probability 0..1)
//            | bytes (int, oversized frame size)
//   duration := INT ("ms" | "s" | "m")
// Periodic faults fire at start + k*every (k = 1, 2, ...) on the exchange clock, and once at
// start + at. Rate faults (skipseq, dup, malformed) roll a seeded die per sequenced frame.
import { KdpError } from '../core/errors';

export const PERIODIC_KINDS = ['disconnect', 'stall', 'oversized', 'err25', 'rest429', 'rest5xx', 'inactive'] as const;
export const RATE_KINDS = ['skipseq', 'dup', 'malformed'] as const;
export type PeriodicKind = (typeof PERIODIC_KINDS)[number];
export type RateKind = (typeof RATE_KINDS)[number];
export type FaultKind = PeriodicKind | RateKind;
const NEEDS_FOR: ReadonlySet<string> = new Set(['stall', 'rest429', 'rest5xx', 'inactive']);

export interface PeriodicFault {
  kind: PeriodicKind;
  everyUs: number;
  atUs: number;
  forUs: number;
  bytes: number;
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
  for (const key of kv.keys()) if (!['every', 'at', 'for', 'bytes'].includes(key)) bad(`unknown key "${key}" for ${kind}`);
  if (!kv.has('every') && !kv.has('at')) bad(`${kind} needs every=DURATION or at=DURATION`);
  if (NEEDS_FOR.has(kind!) && !kv.has('for')) bad(`${kind} needs for=DURATION`);
  const fault: PeriodicFault = {
    kind: kind as PeriodicKind,
    everyUs: kv.has('every') ? parseDurationUs(kv.get('every')!) : 0,
    atUs: kv.has('at') ? parseDurationUs(kv.get('at')!) : 0,
    forUs: kv.has('for') ? parseDurationUs(kv.get('for')!) : 0,
    bytes: kv.has('bytes') ? Number(kv.get('bytes')) : 2 * 1024 * 1024,
  };
  if (kv.has('every') && fault.everyUs <= 0) bad(`${kind}: every must be > 0`);
  if (!Number.isInteger(fault.bytes) || fault.bytes < 1024) bad(`${kind}: bytes must be an integer >= 1024`);
  if (fault.forUs > 0 && fault.everyUs > 0 && fault.forUs >= fault.everyUs) bad(`${kind}: for must be shorter than every`);
  plan.periodic.push(fault);
}

export function parseFaultSpec(spec: string): FaultPlan {
  const plan: FaultPlan = { periodic: [], rates: { skipseq: 0, dup: 0, malformed: 0 } };
  for (const item of spec.split(',').map((s) => s.trim()).filter(Boolean)) parseItem(item, plan);
  return plan;
}

/** The firing times of one periodic fault, produced lazily in time order (no horizon, no big arrays). */
export class FiringClock {
  private k = 1;
  private atPending: boolean;
  /** The last time it fired (for windows: rest429, rest5xx). */
  lastUs = -Infinity;
  constructor(readonly f: PeriodicFault, private readonly startUs: number) {
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

/** Inactive windows starting before startUs + horizonUs (tests, documentation). */
export function inactiveWindows(plan: FaultPlan, startUs: number, horizonUs: number): Array<[number, number]> {
  const sched = new InactiveSchedule(plan, startUs);
  const out: Array<[number, number]> = [];
  for (let w = sched.current(); w && w[0] < startUs + horizonUs; sched.advance(), w = sched.current()) out.push([w[0], w[1]]);
  return out;
}
