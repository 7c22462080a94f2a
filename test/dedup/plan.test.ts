// Pure parts of the deduplicator: the batch planner (property-tested), the market status map,
// the frozen-feed tracker and option validation.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { isKdpError } from '../../src/core/errors';
import { FrozenFeedTracker } from '../../src/dedup/frozen';
import { marketStatusOf } from '../../src/dedup/metadata';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/load';
import { DEDUP_SPEC, checkDedupOptions, resolveDedupOptions } from '../../src/dedup/options';
import { planCycle, planWholeXid, type BatchRow } from '../../src/dedup/plan';

/** Batches sorted by (xid, batch_id); several may share one xid (one transaction, many tables). */
const batchesArb = fc.array(fc.record({ gap: fc.integer({ min: 0, max: 3 }), rows: fc.integer({ min: 0, max: 500 }) }), { maxLength: 60 }).map((xs) => {
  let xid = 100n;
  return xs.map((x, i): BatchRow => {
    xid += BigInt(x.gap);
    return { batchId: BigInt(i + 1), table: 'orderbook_deltas', rows: x.rows, xid };
  });
});

/** Simulates the merge loop over the planner: list (with LIMIT), plan, advance; returns what got merged. */
function simulate(all: readonly BatchRow[], horizon: bigint, batchesMax: number, rowsMax: number): { merged: BatchRow[]; cycles: number } {
  let cursor = 0n;
  const merged: BatchRow[] = [];
  for (let cycles = 1; cycles < 10_000; cycles++) {
    const listed = all.filter((b) => b.xid >= cursor && b.xid < horizon).slice(0, batchesMax + 1);
    let plan = planCycle(listed, horizon, { batchesMax, rowsMax });
    if (plan.needWholeXid !== undefined)
      plan = planWholeXid(
        all.filter((b) => b.xid === plan.needWholeXid),
        plan.needWholeXid,
      );
    for (const b of plan.batches) {
      assert.ok(b.xid >= cursor && b.xid < plan.nextCursor, 'merged batches lie in [cursor, next)');
    }
    // Nothing in [cursor, next) is left out.
    const window = all.filter((b) => b.xid >= cursor && b.xid < plan.nextCursor);
    assert.deepEqual(new Set(window.map((b) => b.batchId)), new Set(plan.batches.map((b) => b.batchId)));
    assert.ok(plan.nextCursor <= horizon, 'never past the horizon');
    assert.ok(plan.nextCursor > cursor || (listed.length === 0 && plan.nextCursor >= cursor), 'progress');
    merged.push(...plan.batches);
    cursor = plan.nextCursor;
    if (!plan.more) return { merged, cycles };
  }
  throw new Error('no progress');
}

test('planner: any limits merge every batch below the horizon exactly once, none above it', () => {
  fc.assert(
    fc.property(batchesArb, fc.integer({ min: 0, max: 40 }), fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 2_000 }), (all, cut, bMax, rMax) => {
      const horizon = all.length ? all[Math.min(cut, all.length - 1)]!.xid + BigInt(cut % 2) : 50n;
      const { merged } = simulate(all, horizon, bMax, rMax);
      const expected = all.filter((b) => b.xid < horizon).map((b) => b.batchId);
      assert.deepEqual(
        merged.map((b) => b.batchId).sort((a, b) => (a < b ? -1 : 1)),
        expected,
      );
    }),
    { numRuns: 300 },
  );
});

test('planner: a cycle respects its limits unless one transaction alone exceeds them', () => {
  fc.assert(
    fc.property(batchesArb, fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 2_000 }), (all, bMax, rMax) => {
      const horizon = 1_000n;
      const listed = all.slice(0, bMax + 1);
      const plan = planCycle(listed, horizon, { batchesMax: bMax, rowsMax: rMax });
      const xids = new Set(plan.batches.map((b) => b.xid));
      if (xids.size > 1) {
        assert.ok(plan.batches.length <= bMax);
        // Rows may exceed only by the last group (a group is never split).
        const lastXid = plan.batches[plan.batches.length - 1]!.xid;
        const beforeLast = plan.batches.filter((b) => b.xid !== lastXid).reduce((s, b) => s + b.rows, 0);
        assert.ok(beforeLast <= rMax);
      }
    }),
    { numRuns: 300 },
  );
});

test('market_status maps every Kalshi status; unknown ones are visible as unknown', () => {
  assert.equal(marketStatusOf('initialized'), 'unopened');
  assert.equal(marketStatusOf('active'), 'open');
  assert.equal(marketStatusOf('inactive'), 'paused');
  assert.equal(marketStatusOf('closed'), 'closed');
  for (const s of ['determined', 'disputed', 'amended']) assert.equal(marketStatusOf(s), 'determined');
  assert.equal(marketStatusOf('finalized'), 'settled');
  assert.equal(marketStatusOf('something_new'), 'unknown');
});

test('frozen-feed tracker: flags a market only one gatherer stopped recording, not a gatherer that is merely behind', () => {
  const f = new FrozenFeedTracker(1_000_000, 100);
  f.record(
    'g1',
    new Map([
      ['A', 10_000_000],
      ['B', 10_000_000],
    ]),
  );
  f.record(
    'g2',
    new Map([
      ['A', 10_000_000],
      ['B', 10_000_000],
    ]),
  );
  f.record(
    'g3',
    new Map([
      ['A', 10_000_000],
      ['B', 2_000_000],
    ]),
  );
  assert.deepEqual(Object.fromEntries(f.frozen(['g1', 'g2', 'g3'])), { g1: [], g2: [], g3: ['B'] });
  // g4 is behind (its data reaches 3 s): others' newer rows are not held against it.
  f.record(
    'g4',
    new Map([
      ['A', 3_000_000],
      ['B', 3_000_000],
    ]),
  );
  assert.deepEqual(f.frozen(['g1', 'g4']).get('g4'), []);
  f.forget('g3');
  assert.deepEqual(f.frozen(['g1', 'g3']).get('g3'), []);
});

test('options: unknown keys, duplicate names and bad values are refused with coded errors', () => {
  const base = {
    gatherers: [{ name: 'g1', url: 'postgres://x/g1' }],
    production: { url: 'postgres://x/p' },
  };
  const ok = resolveDedupOptions(base);
  assert.equal(ok.sync.intervalMs, 1_000);
  assert.equal(ok.http.healthPort, 8080);
  assert.equal(ok.http.metricsPort, 9090);
  assert.throws(
    () => resolveDedupOptions({ ...base, sync: { intervalSeconds: 1 } }),
    (e) => isKdpError(e, 'KDP_ERR_CONFIG_UNKNOWN_KEY'),
  );
  assert.throws(
    () => resolveDedupOptions({ ...base, gatherers: [base.gatherers[0], base.gatherers[0]] }),
    (e) => isKdpError(e, 'KDP_ERR_CONFIG_INVALID'),
  );
  assert.throws(
    () => resolveDedupOptions({ ...base, gatherers: [] }),
    (e) => isKdpError(e, 'KDP_ERR_CONFIG_INVALID'),
  );
  assert.throws(
    () => resolveDedupOptions({ gatherers: base.gatherers }),
    (e) => isKdpError(e, 'KDP_ERR_CONFIG_MISSING'),
  );
});

test('config/dedup.example.yaml is a valid config', () => {
  const opts = checkDedupOptions(loadConfig(DEDUP_SPEC, join(__dirname, '..', '..', '..', 'config', 'dedup.example.yaml'), {}));
  assert.deepEqual(
    opts.gatherers.map((g) => g.name),
    ['g1', 'g2', 'g3'],
  );
  assert.equal(opts.http.healthPort, 8080);
});
