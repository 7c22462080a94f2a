// `capture` against our own simulator: what it records matches the simulator's ground truth,
// and the capture replays through the simulator to the same books.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSimulator } from '../../src/sim/simulator';
import { startCapture } from '../../src/sim/capture';
import { readTruth, isExchangeRecord, type ExchangeRecord, type TradeRec, type BookRec } from '../../src/sim/truth';
import { sleep } from './client';

const dir = mkdtempSync(join(tmpdir(), 'kdp-sim-capture-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

test('capture of the simulator equals its truth; the capture replays to the same books', async () => {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const simTruth = join(dir, 'sim.ndjson');
  const capFile = join(dir, 'cap.ndjson');
  const sim = await startSimulator({
    markets: 6,
    rate: 3000,
    seed: 8,
    truthFile: simTruth,
    requireAuth: true,
    restBurstTokens: 1e6,
    publicKeys: { cap: publicKey.export({ type: 'spki', format: 'pem' }).toString() },
  });
  const cap = await startCapture({
    wsUrl: sim.wsUrl,
    restUrl: sim.restUrl,
    keyId: 'cap',
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    truthFile: capFile,
    marketsMax: 4,
    checkpointIntervalMs: 300,
  });
  await sleep(1500);
  sim.pause();
  await sleep(200);
  const finalBooks = new Map<string, { yes: unknown; no: unknown }>();
  const stats = await cap.stop();
  const captured = readTruth(capFile).filter(isExchangeRecord);
  const markets = captured.flatMap((r) => (r.k === 'market' ? [r.market.ticker] : []));
  assert.equal(markets.length, 4);
  for (const m of markets) finalBooks.set(m, sim.book(m));
  await sim.stop();
  assert.equal(stats.gaps, 0);
  const truth = readTruth(simTruth).filter(isExchangeRecord);
  const truthTrades = new Map(truth.filter((r): r is TradeRec & ExchangeRecord => r.k === 'trade').map((r) => [r.trade_id, r]));
  const capTrades = captured.filter((r): r is TradeRec & ExchangeRecord => r.k === 'trade');
  assert.ok(capTrades.length > 0);
  for (const t of capTrades) {
    const want = truthTrades.get(t.trade_id)!;
    assert.ok(want, t.trade_id);
    assert.deepEqual({ ...t, n: 0, t: Math.floor(t.t / 1000) }, { ...want, n: 0, t: Math.floor(want.t / 1000) });
  }
  // Deltas after the first snapshot of a market are exactly the simulator's deltas.
  for (const m of markets) {
    const firstBook = captured.findIndex((r) => r.k === 'book' && r.m === m);
    const live = captured.slice(firstBook).flatMap((r) => (r.k === 'delta' && r.m === m ? [[r.t, r.side, r.p, r.d]] : []));
    assert.ok(live.length > 5, m);
    const t0 = live[0]![0] as number;
    const t1 = live[live.length - 1]![0] as number;
    const within = (d: unknown[]): boolean => (d[0] as number) > t0 && (d[0] as number) <= t1;
    const truthDeltas = truth.flatMap((r) => (r.k === 'delta' && r.m === m ? [[r.t, r.side, r.p, r.d]] : []));
    assert.deepEqual(live.filter(within), truthDeltas.filter(within), m);
  }
  const lastBooks = new Map<string, BookRec>();
  for (const r of captured) if (r.k === 'book') lastBooks.set(r.m, r);
  for (const m of markets) assert.deepEqual({ yes: lastBooks.get(m)!.yes, no: lastBooks.get(m)!.no }, finalBooks.get(m), m);
  const rep = await startSimulator({ fromFile: capFile, pace: 'fast' });
  await rep.finished;
  for (const m of markets) assert.deepEqual(rep.book(m), finalBooks.get(m));
  await rep.stop();
});
