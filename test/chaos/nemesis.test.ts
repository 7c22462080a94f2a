// The nemesis schedule: repeatable per seed, inside the run, and never impairing every gatherer
// at once (the "one gatherer lives" promise the chaos run tests).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { impairment, planNemesis, type NemesisOptions, type ScheduledFault } from '../../src/chaos/nemesis';

const options = (seed: number, durationMs: number, meanGapMs: number): NemesisOptions => ({
  seed,
  durationMs,
  gatherers: 3,
  meanGapMs,
  quietStartMs: 2_000,
  quietEndMs: 15_000,
});

/** Gatherers impaired at instant t. */
function impairedAt(schedule: readonly ScheduledFault[], t: number): Set<number> {
  const out = new Set<number>();
  for (const f of schedule) {
    const w = impairment(f.action);
    if (w && 'target' in f.action && t >= f.atMs - w.beforeMs && t <= f.atMs + w.afterMs) out.add(f.action.target);
  }
  return out;
}

test('a seed gives the same schedule every time, and another seed a different one', () => {
  assert.deepEqual(planNemesis(options(7, 120_000, 2_500)), planNemesis(options(7, 120_000, 2_500)));
  assert.notDeepEqual(planNemesis(options(7, 120_000, 2_500)), planNemesis(options(8, 120_000, 2_500)));
});

test('at every instant of any schedule at least one gatherer is unimpaired; faults stay inside the run', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 2 ** 31 }),
      fc.integer({ min: 20_000, max: 300_000 }),
      fc.integer({ min: 300, max: 5_000 }),
      (seed, durationMs, gap) => {
        const schedule = planNemesis(options(seed, durationMs, gap));
        for (let i = 1; i < schedule.length; i++) assert.ok(schedule[i]!.atMs > schedule[i - 1]!.atMs, 'faults in time order');
        for (const f of schedule) {
          assert.ok(f.atMs > 2_000 && f.atMs < durationMs - 15_000, `fault at ${f.atMs} ms is inside the run`);
        }
        // Impairment only changes at window edges: checking every edge checks every instant.
        const edges = schedule.flatMap((f) => {
          const w = impairment(f.action);
          return w ? [f.atMs - w.beforeMs, f.atMs + w.afterMs] : [];
        });
        for (const t of edges) assert.ok(impairedAt(schedule, t).size < 3, `at ${t} ms every gatherer is impaired`);
      },
    ),
    { numRuns: 200 },
  );
});

test('two-minute schedules with a 2 s mean gap hold at least 30 faults of many kinds (seeds 1-20)', () => {
  for (let seed = 1; seed <= 20; seed++) {
    const schedule = planNemesis(options(seed, 120_000, 2_000));
    assert.ok(schedule.length >= 30, `seed ${seed}: ${schedule.length} faults`);
    const kinds = new Set(schedule.map((f) => f.action.kind));
    assert.ok(kinds.size >= 8, `seed ${seed}: ${[...kinds].join(', ')}`);
  }
});
