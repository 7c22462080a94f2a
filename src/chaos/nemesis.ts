// The chaos run's nemesis: a seeded, repeatable schedule of faults over a run (pure: no I/O).
//
// The promise under test is "nothing lost while one gatherer lives": a fault that can make a
// gatherer miss data (kill -9, its PostgreSQL stopped, a WebSocket drop/stall, a seq gap, error
// 25) *impairs* that gatherer for a window around it. The schedule never lets every gatherer be impaired at once, so at every instant one gatherer records the whole stream.
// Faults that cannot lose exchange data (deduplicator kills and failpoints, production PostgreSQL
// restarts, REST 429/5xx bursts, duplicated, malformed and oversized frames) are placed freely.
// Every run also carries exchange load as the real exchange makes it: a rate burst (the message
// rate times 3-8 for 2-5 s) and a creation burst (100-400 markets created and opened at once);
// they hit every gatherer together, so they must cost none of them data.
import type { FailpointName } from '../core/failpoint';
import { Rng } from '../sim/fixed';

export type ChaosAction =
  | { kind: 'kill-gatherer'; target: number }
  | { kind: 'stop-gatherer-pg'; target: number; forMs: number }
  | { kind: 'ws-disconnect'; target: number }
  | { kind: 'ws-stall'; target: number; forMs: number }
  | { kind: 'skipseq'; target: number }
  | { kind: 'err25'; target: number }
  | { kind: 'oversized'; target: number }
  | { kind: 'dup'; target: number }
  | { kind: 'malformed'; target: number }
  | { kind: 'kill-dedup'; failpoint: FailpointName | null }
  | { kind: 'stop-production-pg'; forMs: number }
  | { kind: 'rest429'; forMs: number }
  | { kind: 'rest5xx'; forMs: number }
  | { kind: 'rate-burst'; forMs: number; x: number }
  | { kind: 'create-burst'; count: number };

export type ChaosKind = ChaosAction['kind'];

export interface ScheduledFault {
  /** Milliseconds after the exchange started running. */
  readonly atMs: number;
  readonly action: ChaosAction;
}

export interface NemesisOptions {
  readonly seed: number;
  readonly durationMs: number;
  readonly gatherers: number;
  /** Mean time between faults. */
  readonly meanGapMs: number;
  /** No fault in the first / last this many ms (start-up, and time to recover before the stop). */
  readonly quietStartMs: number;
  readonly quietEndMs: number;
}

/** The faults and how often each is drawn (relative weights). */
const WEIGHTS: ReadonlyArray<readonly [ChaosKind, number]> = [
  ['kill-gatherer', 4],
  ['stop-gatherer-pg', 1],
  ['ws-disconnect', 3],
  ['ws-stall', 2],
  ['skipseq', 3],
  ['err25', 2],
  ['oversized', 1],
  ['dup', 2],
  ['malformed', 2],
  ['kill-dedup', 3],
  ['stop-production-pg', 1],
  ['rest429', 1],
  ['rest5xx', 1],
  ['rate-burst', 1],
  ['create-burst', 1],
];

const FAILPOINTS: readonly (FailpointName | null)[] = [null, 'dedup.mid_stream', 'dedup.after_merge_before_commit', 'dedup.after_commit_before_watermark'];

/**
 * How long a fault can keep its gatherer from recording, measured from the fault (ms before, ms
 * after). Frames a killed process had received but not committed are lost from up to a flush
 * before the kill; a restart takes RestartSec (1 s) + start-up + subscription (~3-5 s measured).
 */
export function impairment(a: ChaosAction): { beforeMs: number; afterMs: number } | null {
  switch (a.kind) {
    case 'kill-gatherer':
      return { beforeMs: 2_000, afterMs: 12_000 };
    case 'stop-gatherer-pg':
      return { beforeMs: 1_000, afterMs: a.forMs + 12_000 };
    case 'ws-stall':
      return { beforeMs: 1_000, afterMs: a.forMs + 8_000 };
    case 'ws-disconnect':
    case 'skipseq':
    case 'err25':
      return { beforeMs: 1_000, afterMs: 8_000 };
    default:
      return null;
  }
}

/** A [0, 1) generator from a seed (the simulator's seeded PRNG): the same seed gives the same run. */
export function seededRandom(seed: number): () => number {
  const rng = new Rng(seed);
  return () => rng.next();
}

function draw(rand: () => number, target: number, gatherers: number, forced?: ChaosKind): ChaosAction {
  const total = WEIGHTS.reduce((s, [, w]) => s + w, 0);
  let r = rand() * total;
  let kind: ChaosKind = forced ?? WEIGHTS[0]![0];
  for (const [k, w] of forced ? [] : WEIGHTS) {
    if ((r -= w) < 0) {
      kind = k;
      break;
    }
  }
  const ms = (lo: number, hi: number): number => Math.round(lo + rand() * (hi - lo));
  void gatherers;
  switch (kind) {
    case 'stop-gatherer-pg':
      return { kind, target, forMs: ms(1_000, 6_000) };
    case 'ws-stall':
      return { kind, target, forMs: ms(500, 4_000) };
    case 'kill-dedup':
      return { kind, failpoint: FAILPOINTS[Math.floor(rand() * FAILPOINTS.length)]! };
    case 'stop-production-pg':
      return { kind, forMs: ms(1_000, 6_000) };
    case 'rest429':
    case 'rest5xx':
      return { kind, forMs: ms(1_000, 5_000) };
    case 'rate-burst':
      return { kind, forMs: ms(2_000, 5_000), x: ms(3, 8) };
    case 'create-burst':
      return { kind, count: ms(100, 400) };
    default:
      return { kind, target } as ChaosAction;
  }
}

/** Gatherers (0-based) impaired at some point of [fromMs, toMs] by the faults planned so far. */
function impairedDuring(planned: readonly ScheduledFault[], fromMs: number, toMs: number): Set<number> {
  const out = new Set<number>();
  for (const f of planned) {
    const w = impairment(f.action);
    if (!w || !('target' in f.action)) continue;
    if (f.atMs - w.beforeMs <= toMs && f.atMs + w.afterMs >= fromMs) out.add(f.action.target);
  }
  return out;
}

/** The fault schedule of one seeded run, in time order. */
export function planNemesis(o: NemesisOptions): ScheduledFault[] {
  const rand = seededRandom(o.seed ^ 0x9e3779b9);
  const planned: ScheduledFault[] = [];
  const endMs = o.durationMs - o.quietEndMs;
  // Exponential gaps between faults (a Poisson process), at least 200 ms apart.
  for (let t = o.quietStartMs; ;) {
    t += Math.max(200, Math.round(-Math.log(1 - rand()) * o.meanGapMs));
    if (t >= endMs) break;
    const target = Math.floor(rand() * o.gatherers);
    const action = draw(rand, target, o.gatherers);
    const w = impairment(action);
    if (w) {
      const others = impairedDuring(planned, t - w.beforeMs, t + w.afterMs);
      others.delete(target);
      // Keep one gatherer whole: impair this one only if another stays untouched all along.
      if (others.size >= o.gatherers - 1) continue;
    }
    planned.push({ atMs: t, action });
  }
  // One of each load burst in every run, wherever the draws put them (or did not), never at the
  // same millisecond as another fault (the schedule is strictly ordered).
  for (const kind of ['rate-burst', 'create-burst'] as const) {
    if (endMs - o.quietStartMs < 4) break;
    let atMs = o.quietStartMs + 1 + Math.floor(rand() * (endMs - o.quietStartMs - 2));
    while (planned.some((f) => f.atMs === atMs)) atMs = atMs + 1 < endMs ? atMs + 1 : o.quietStartMs + 1;
    planned.push({ atMs, action: draw(() => rand(), 0, o.gatherers, kind) });
  }
  return planned.sort((a, b) => a.atMs - b.atMs);
}

export function describeAction(a: ChaosAction): string {
  const who = 'target' in a ? ` g${a.target + 1}` : '';
  const extra =
    a.kind === 'rate-burst'
      ? ` x${a.x} for ${a.forMs} ms`
      : a.kind === 'create-burst'
        ? ` of ${a.count} markets`
        : 'forMs' in a
          ? ` for ${a.forMs} ms`
          : a.kind === 'kill-dedup' && a.failpoint
            ? ` at ${a.failpoint}`
            : '';
  return `${a.kind}${who}${extra}`;
}
