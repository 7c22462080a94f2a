// The stream gate: turns are taken in arrival order, a holder's failure still hands the turn on,
// and a waiter stuck behind a holder that never finishes goes ahead after waitMaxMs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StreamGate } from '../../src/dedup/gate';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

test('stream gate: one holder at a time, in arrival order; a failing holder releases in finally', async () => {
  const gate = new StreamGate(60_000);
  const log: string[] = [];
  let inside = 0;
  const turn = async (name: string, fail: boolean): Promise<void> => {
    const release = await gate.acquire();
    try {
      inside++;
      assert.equal(inside, 1, 'two holders at once');
      log.push(`${name}:in`);
      for (let i = 0; i < 3; i++) await tick();
      if (fail) throw new Error(`${name} failed`);
    } finally {
      inside--;
      log.push(`${name}:out`);
      release();
    }
  };
  const results = await Promise.allSettled([turn('a', false), turn('b', true), turn('c', false)]);
  assert.deepEqual(
    results.map((r) => r.status),
    ['fulfilled', 'rejected', 'fulfilled'],
  );
  assert.deepEqual(log, ['a:in', 'a:out', 'b:in', 'b:out', 'c:in', 'c:out']);
  assert.equal(gate.waitsTimedOut, 0);
});

test('stream gate: a holder that never releases delays the next by at most waitMaxMs', async () => {
  const gate = new StreamGate(30);
  await gate.acquire(); // never released: a hung gatherer stream
  const second = await gate.acquire(); // goes ahead after the wait
  assert.equal(gate.waitsTimedOut, 1);
  second();
  await gate.acquire(); // still queued behind the hung holder: waits again, bounded
  assert.equal(gate.waitsTimedOut, 2);
});
