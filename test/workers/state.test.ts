import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { OccurrenceCounter, RecentIds } from '../../src/workers/state';

test('RecentIds remembers exactly the last `capacity` distinct ids', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 8 }), fc.array(fc.integer({ min: 0, max: 12 }), { maxLength: 80 }), (capacity, ids) => {
      const recent = new RecentIds(capacity);
      const model: string[] = [];
      for (const n of ids) {
        const id = `t${n}`;
        const fresh = !model.includes(id);
        assert.equal(recent.add(id), fresh);
        if (fresh) {
          model.push(id);
          if (model.length > capacity) model.shift();
        }
        assert.equal(recent.size, model.length);
      }
    }),
    { numRuns: 500 },
  );
});

test('OccurrenceCounter is bounded in markets and restarts numbering after eviction', () => {
  const occ = new OccurrenceCounter(2);
  assert.equal(occ.next('A', 1, 'k'), 0);
  assert.equal(occ.next('A', 1, 'k'), 1);
  assert.equal(occ.next('B', 1, 'k'), 0);
  assert.equal(occ.next('C', 1, 'k'), 0); // evicts A
  assert.equal(occ.size, 2);
  assert.equal(occ.evictions, 1);
  assert.equal(occ.next('A', 1, 'k'), 0);
});

test('OccurrenceCounter numbers each (side, price, delta) key per market instant as a model of joined-key counts does', () => {
  const change = fc.record({
    ticker: fc.constantFrom('A', 'B', 'C'),
    ts: fc.integer({ min: 1, max: 3 }),
    side: fc.constantFrom('yes', 'no'),
    price: fc.constantFrom('0.10', '0.1', '0.20'),
    delta: fc.constantFrom('1.00', '-1.00', '2.00'),
  });
  fc.assert(
    fc.property(fc.array(change, { maxLength: 60 }), (changes) => {
      const occ = new OccurrenceCounter(10);
      const model = new Map<string, { ts: number; counts: Map<string, number> }>();
      for (const c of changes) {
        let m = model.get(c.ticker);
        if (m === undefined || m.ts !== c.ts) model.set(c.ticker, (m = { ts: c.ts, counts: new Map() }));
        const key = JSON.stringify([c.side, c.price, c.delta]);
        const want = m.counts.get(key) ?? 0;
        m.counts.set(key, want + 1);
        assert.equal(occ.next(c.ticker, c.ts, c.side, c.price, c.delta), want, JSON.stringify(c));
      }
    }),
    { numRuns: 500 },
  );
});
