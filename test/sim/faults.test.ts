// Fault injection: the grammar, and every fault kind observed by a client and recorded in the truth.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseFaultSpec, inactiveWindows } from '../../src/sim/faults';
import { startSimulator } from '../../src/sim/simulator';
import { spawnSimulator } from '../../src/sim/spawn';
import { readTruth, type FaultRec } from '../../src/sim/truth';
import { isKdpError } from '../../src/core/errors';
import { TestClient, sleep } from './client';

const dir = mkdtempSync(join(tmpdir(), 'kdp-sim-faults-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

test('fault spec grammar', () => {
  const plan = parseFaultSpec(
    'disconnect:every=20s,stall:every=45s:for=35s,skipseq:rate=0.001,dup:rate=0.001,malformed:rate=0.0005,oversized:every=60s,' +
      'err25:every=90s,rest429:every=30s:for=3s,rest5xx:every=50s:for=2s,inactive:every=300s:for=10s,disconnect:at=500ms',
  );
  assert.equal(plan.periodic.length, 8);
  assert.deepEqual(plan.rates, { skipseq: 0.001, dup: 0.001, malformed: 0.0005 });
  assert.equal(plan.periodic.find((f) => f.kind === 'stall')!.forUs, 35e6);
  assert.equal(plan.periodic[plan.periodic.length - 1]!.atUs, 500_000);
  assert.deepEqual(inactiveWindows(plan, 0, 700e6), [
    [300e6, 310e6],
    [600e6, 610e6],
  ]);
  for (const bad of [
    'boom:every=1s',
    'stall:every=10s',
    'disconnect',
    'skipseq:rate=2',
    'dup:every=1s',
    'disconnect:every=1h',
    'stall:every=5s:for=6s',
    'err25:every=1s:x=1',
    'disconnect:every',
  ]) {
    assert.throws(
      () => parseFaultSpec(bad),
      (e) => isKdpError(e, 'KDP_ERR_CONFIG_INVALID'),
      bad,
    );
  }
  assert.deepEqual(parseFaultSpec('').periodic, []);
});

test('rate faults: skipped seqs, duplicated and malformed frames are seen by the client and recorded', async () => {
  const truth = join(dir, 'rate.ndjson');
  const sim = await startSimulator({ markets: 6, rate: 20_000, seed: 2, truthFile: truth, faults: 'skipseq:rate=0.01,dup:rate=0.01,malformed:rate=0.01' });
  const c = await TestClient.open(sim.wsUrl);
  const tickers = sim.state.marketList.filter((m) => m.status === 'active').map((m) => m.def.ticker);
  const sid = (await c.reply(c.send('subscribe', { channels: ['orderbook_delta'], market_tickers: tickers })))[0]!.msg.sid;
  await c.until(() => c.frames.length > 3000, 10_000);
  await sim.stop();
  c.close();
  const faults = readTruth(truth).filter((r): r is FaultRec => r.k === 'fault');
  const seqs = c.frames.flatMap((f) => (f.json && f.json.sid === sid ? [f.json.seq as number] : []));
  const skipped = new Set<number>();
  const dups = new Set<number>();
  for (let i = 1; i < seqs.length; i++) {
    if (seqs[i] === seqs[i - 1]) dups.add(seqs[i]!);
    else for (let s = seqs[i - 1]! + 1; s < seqs[i]!; s++) skipped.add(s);
  }
  const recordedSkips = new Set(faults.filter((f) => f.kind === 'skipseq').map((f) => f.seq!));
  const recordedDups = new Set(faults.filter((f) => f.kind === 'dup').map((f) => f.seq!));
  assert.ok(skipped.size > 0 && dups.size > 0);
  for (const s of skipped) assert.ok(recordedSkips.has(s), `skipped seq ${s} recorded`);
  for (const s of dups) assert.ok(recordedDups.has(s), `duplicated seq ${s} recorded`);
  const malformed = c.frames.filter((f) => f.json === null).length;
  assert.ok(malformed > 0);
  assert.ok(faults.filter((f) => f.kind === 'malformed').length >= malformed);
});

test('periodic faults: disconnect, stall, oversized, err25, REST 429 and 5xx windows', async () => {
  const truth = join(dir, 'periodic.ndjson');
  const sim = await startSimulator({
    markets: 4,
    rate: 2000,
    seed: 3,
    truthFile: truth,
    pingIntervalMs: 50,
    // The stall ends 400 ms after it fires, and a loaded machine fires it late: the oversized
    // frame comes 600 ms after the stall's end, or it would be withheld (failed 1 run in 4 under load).
    faults:
      'stall:at=200ms:for=400ms,oversized:at=1200ms:bytes=300000,err25:at=1400ms,rest429:at=1500ms:for=300ms,rest5xx:at=1900ms:for=300ms,disconnect:at=2300ms',
  });
  const c = await TestClient.open(sim.wsUrl);
  const tickers = sim.state.marketList.filter((m) => m.status === 'active').map((m) => m.def.ticker);
  await c.reply(c.send('subscribe', { channels: ['orderbook_delta'], market_tickers: tickers }));
  const statuses = new Set<number>();
  const until = Date.now() + 4000;
  while (Date.now() < until && !c.closed) {
    statuses.add((await fetch(`${sim.restUrl}/exchange/status`)).status);
    await sleep(40);
  }
  await c.until(() => c.closed, 3000);
  const dropped = sim.stats().framesDropped;
  await sim.stop();
  assert.ok(dropped > 0, 'frames are withheld from a stalled connection');
  assert.ok(
    c.frames.some((f) => f.raw.length === 300_000),
    'oversized frame',
  );
  const e25 = c.ofType('error').find((e) => e.msg.code === 25);
  assert.ok(e25 && typeof e25.sid === 'number', 'error 25 on a sid');
  assert.ok(statuses.has(429) && statuses.has(503) && statuses.has(200), [...statuses].join(','));
  const faults = readTruth(truth).filter((r): r is FaultRec => r.k === 'fault');
  assert.deepEqual(
    faults.map((f) => f.kind),
    ['stall', 'oversized', 'err25', 'rest429', 'rest5xx', 'disconnect'],
  );
  assert.equal(faults.find((f) => f.kind === 'err25')!.sid, e25.sid);
  // A stalled connection sends no frames at all (no pings either) until the stall ends.
  const stall = faults.find((f) => f.kind === 'stall')!;
  assert.ok(stall.until_us! - stall.t === 400_000);
});

test('spawnSimulator runs the exchange in its own process and injects faults over IPC', async () => {
  const sim = await spawnSimulator({ markets: 3, rate: 500, seed: 4 });
  try {
    assert.notEqual(sim.pid, process.pid);
    const c = await TestClient.open(sim.wsUrl);
    const markets = (await (await fetch(`${sim.restUrl}/markets?status=open`)).json()) as { markets: Array<{ ticker: string }> };
    await c.reply(c.send('subscribe', { channels: ['orderbook_delta'], market_tickers: markets.markets.map((m) => m.ticker) }));
    await sim.injectFault({ kind: 'disconnect' });
    await c.until(() => c.closed, 3000);
    await assert.rejects(sim.injectFault({ kind: 'skipseq', conn: 99, sid: 1 }));
  } finally {
    await sim.stop();
  }
  assert.ok(sim.child.exitCode === 0, `exit code ${sim.child.exitCode}`);
});

test('fast pace waits for a slow reader, and drops one that stops reading with error 25', async () => {
  const sim = await startSimulator({ markets: 6, rate: 100_000, seed: 5, pace: 'fast', slowConsumerBytes: 256 * 1024, fastWaitMsMax: 800 });
  const c = await TestClient.open(sim.wsUrl);
  const tickers = sim.state.marketList.filter((m) => m.status === 'active').map((m) => m.def.ticker);
  const sid = (await c.reply(c.send('subscribe', { channels: ['orderbook_delta'], market_tickers: tickers })))[0]!.msg.sid;
  (c.ws as any)._socket.pause();
  await sleep(300);
  const before = sim.stats().records;
  await sleep(300);
  assert.ok(sim.stats().records - before < 20_000, 'the exchange waits for the reader');
  await sleep(1000);
  (c.ws as any)._socket.resume();
  await c.until(() => c.ofType('error').some((e) => e.msg.code === 25 && e.sid === sid), 10_000);
  const seqs = c.frames.flatMap((f) => (f.json && f.json.sid === sid && typeof f.json.seq === 'number' ? [f.json.seq as number] : []));
  seqs.forEach((s, i) => assert.equal(s, i + 1, 'nothing lost before the drop'));
  c.close();
  await sim.stop();
});
