// The simulator's load shape: skewed activity (a few markets carry most traffic), creation bursts
// and rate bursts, all on the exchange clock and reproducible from the seed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseFaultSpec } from '../../src/sim/faults';
import { startSimulator, type SimulatorOptions } from '../../src/sim/simulator';
import { isExchangeRecord, readTruth, type ExchangeRecord } from '../../src/sim/truth';

const dir = mkdtempSync(join(tmpdir(), 'kdp-sim-load-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const START_US = 1_790_000_000_000_000;

async function run(name: string, opts: SimulatorOptions): Promise<ExchangeRecord[]> {
  const file = join(dir, name);
  const sim = await startSimulator({
    markets: 400,
    rate: 20_000,
    pace: 'fast',
    durationS: 6,
    startUs: START_US,
    marketLifetimeS: 3600,
    seed: 9,
    ...opts,
    truthFile: file,
  });
  await sim.finished;
  await sim.stop();
  return readTruth(file).filter(isExchangeRecord);
}

/** Share of deltas + trades that the busiest `top` markets carry. */
function topShare(recs: readonly ExchangeRecord[], top: number): number {
  const per = new Map<string, number>();
  for (const r of recs) if (r.k === 'delta' || r.k === 'trade') per.set(r.m, (per.get(r.m) ?? 0) + 1);
  const counts = [...per.values()].sort((a, b) => b - a);
  const total = counts.reduce((a, b) => a + b, 0);
  return counts.slice(0, top).reduce((a, b) => a + b, 0) / total;
}

test('activity is skewed by default: the busiest 3 % of markets carry most messages; activitySkew 0 is near uniform', async () => {
  const skewed = await run('skewed.ndjson', {});
  const uniform = await run('uniform.ndjson', { activitySkew: 0 });
  // Power law s = 1.2 over 400 markets: the top 12 get (1 - 13^-0.2) / (1 - 401^-0.2) ~ 0.57.
  assert.ok(topShare(skewed, 12) > 0.45, `skewed top-12 share ${topShare(skewed, 12).toFixed(2)}`);
  assert.ok(topShare(uniform, 12) < 0.1, `uniform top-12 share ${topShare(uniform, 12).toFixed(2)}`);
});

test('a creation burst creates count markets in one exchange instant, each announced and opened within the next second', async () => {
  const recs = await run('create.ndjson', { faults: 'create:at=2s:count=150' });
  const burstUs = START_US + 2_000_000;
  const created = recs.filter((r) => r.k === 'lifecycle' && r.event_type === 'created' && r.t === burstUs);
  assert.equal(created.length, 150);
  const opened = new Set(recs.filter((r) => r.k === 'status' && r.status === 'active' && r.t <= burstUs + 2_000_000).map((r) => (r as { m: string }).m));
  for (const c of created) assert.ok(opened.has((c as { m: string }).m), `${(c as { m: string }).m} opened within a second of its creation`);
});

test('a rate burst multiplies the message rate by x for its window', async () => {
  const recs = await run('burst.ndjson', { rate: 5000, faults: 'burst:at=2s:for=2s:x=5' });
  const inWindow = (from: number, to: number): number =>
    recs.filter((r) => (r.k === 'delta' || r.k === 'trade' || r.k === 'ticker') && r.t >= START_US + from * 1e6 && r.t < START_US + to * 1e6).length;
  const before = inWindow(0, 2);
  const during = inWindow(2, 4);
  const after = inWindow(4, 6);
  assert.ok(during > 3.5 * before && during > 3.5 * after, `messages per 2 s: before ${before}, during ${during}, after ${after}`);
});

test('load faults are validated: count and x ranges, burst needs for', () => {
  assert.equal(parseFaultSpec('create:every=30s:count=500').periodic[0]!.count, 500);
  assert.equal(parseFaultSpec('burst:every=60s:for=5s:x=20').periodic[0]!.x, 20);
  assert.throws(() => parseFaultSpec('burst:every=60s:x=20'), /needs for/);
  assert.throws(() => parseFaultSpec('create:every=30s:count=0'), /count must be/);
  assert.throws(() => parseFaultSpec('burst:every=60s:for=5s:x=1'), /x must be/);
  assert.throws(() => parseFaultSpec('create:every=30s:bytes=4096'), /unknown key "bytes"/);
});
