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
