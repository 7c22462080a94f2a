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

/** Firing times (exchange µs) of one periodic fault within [startUs, endUs). */
export function firingTimes(f: PeriodicFault, startUs: number, endUs: number): number[] {
  const out: number[] = [];
  if (f.atUs > 0 && startUs + f.atUs < endUs) out.push(startUs + f.atUs);
  if (f.everyUs > 0) for (let t = startUs + f.everyUs; t < endUs; t += f.everyUs) out.push(t);
  return out.sort((a, b) => a - b);
}

/** Exchange-wide inactive windows, merged and sorted, up to horizonUs after start. */
export function inactiveWindows(plan: FaultPlan, startUs: number, horizonUs: number): Array<[number, number]> {
  const windows: Array<[number, number]> = [];
  for (const f of plan.periodic) {
    if (f.kind !== 'inactive') continue;
    for (const t of firingTimes(f, startUs, startUs + horizonUs)) windows.push([t, t + f.forUs]);
  }
  windows.sort((a, b) => a[0] - b[0]);
  const merged: Array<[number, number]> = [];
  for (const w of windows) {
    const last = merged[merged.length - 1];
    if (last && w[0] <= last[1]) last[1] = Math.max(last[1], w[1]);
    else merged.push([w[0], w[1]]);
  }
  return merged;
}
