// Ground truth: determinism, self-consistency of checkpoints, and replay.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSimulator, type SimulatorOptions } from '../../src/sim/simulator';
import { Book } from '../../src/sim/state';
import { parsePrice, parseSize } from '../../src/sim/fixed';
import { isExchangeRecord, readTruth, type ExchangeRecord, type TruthRecord } from '../../src/sim/truth';
import { TestClient } from './client';

const dir = mkdtempSync(join(tmpdir(), 'kdp-sim-truth-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const BASE: SimulatorOptions = {
  markets: 12,
  rate: 20_000,
  pace: 'fast',
  durationS: 4,
  startUs: 1_790_000_000_000_000,
  marketLifetimeS: 2,
  checkpointIntervalMs: 500,
  faults: 'inactive:every=1500ms:for=300ms',
};

async function run(name: string, opts: SimulatorOptions): Promise<TruthRecord[]> {
  const file = join(dir, name);
  const sim = await startSimulator({ ...BASE, ...opts, truthFile: file });
  await sim.finished;
  await sim.stop();
  return readTruth(file);
}
const exchange = (recs: TruthRecord[]): ExchangeRecord[] => recs.filter(isExchangeRecord);

test('same seed and options give the same exchange stream; another seed does not', async () => {
  const a = exchange(await run('a.ndjson', { seed: 5, markets: 30 }));
  // A reader connected during the second run must not change the exchange stream.
  const file = join(dir, 'b.ndjson');
  const sim = await startSimulator({ ...BASE, seed: 5, markets: 30, truthFile: file });
  const c = await TestClient.open(sim.wsUrl).catch(() => null);
  c?.send('subscribe', { channels: ['ticker', 'trade'] });
  await sim.finished;
  c?.close();
  await sim.stop();
  const b = exchange(readTruth(file));
  assert.ok(a.length > 20_000, `a long enough stream (${a.length})`);
  assert.deepEqual(b, a);
  // Pacing changes when records are emitted, never which: realtime at 8x gives the same stream.
  const paced = exchange(await run('p.ndjson', { seed: 5, markets: 30, pace: 'realtime', speed: 8 }));
  assert.deepEqual(paced, a);
  const other = exchange(await run('c.ndjson', { seed: 6, markets: 30 }));
  assert.notDeepEqual(other.slice(0, 2000), a.slice(0, 2000));
  const kinds = new Set<string>(a.map((r) => r.k));
  for (const k of ['series', 'event', 'market', 'delta', 'trade', 'ticker', 'lifecycle', 'event_lifecycle', 'status', 'exchange', 'book']) {
    assert.ok(kinds.has(k), `stream has ${k}`);
  }
  const lifecycle = new Set(a.flatMap((r) => (r.k === 'lifecycle' ? [r.event_type] : [])));
  for (const e of ['created', 'deactivated', 'activated', 'close_date_updated', 'determined', 'settled']) assert.ok(lifecycle.has(e), e);
});

test('stream invariants: order, identical deltas in one timestamp, no trading while inactive, fractional sizes', async () => {
  const recs = exchange(await run('d.ndjson', { seed: 9 }));
  let lastT = 0;
  recs.forEach((r, i) => {
    assert.equal(r.n, i + 1);
    assert.ok(r.t >= lastT, 'exchange time never goes back');
    lastT = r.t;
  });
  // Several identical deltas at one price in the same timestamp (one taker, several makers).
  let repeats = 0;
  for (let i = 1; i < recs.length; i++) {
    const a = recs[i - 1]!;
    const b = recs[i + 1];
    const d = recs[i]!;
    if (d.k !== 'delta' || !b || b.k !== 'trade' || a.k !== 'trade') continue;
    const prev = recs[i - 2];
    if (prev && prev.k === 'delta' && prev.t === d.t && prev.m === d.m && prev.p === d.p && prev.d === d.d) repeats++;
  }
  assert.ok(repeats >= 20, `identical same-ts deltas occur often (${repeats})`);
  assert.ok(
    recs.some((r) => r.k === 'delta' && !r.d.endsWith('.00')),
    'fractional sizes',
  );
  const deci = recs.some((r) => r.k === 'market' && r.market.price_level_structure === 'deci_cent');
  const lin = recs.some((r) => r.k === 'market' && r.market.price_level_structure === 'linear_cent');
  assert.ok(deci && lin);
  let active = true;
  for (const r of recs) {
    if (r.k === 'exchange') active = r.trading_active;
    if (!active) assert.ok(r.k !== 'trade' && r.k !== 'delta', `no trading while inactive (${r.k} at ${r.t})`);
  }
  // No lifecycle message when a market opens or closes at its scheduled time.
  const silent = recs.filter((r) => r.k === 'status' && (r.status === 'closed' || r.status === 'active'));
  assert.ok(silent.length > 0);
  for (const s of silent)
    assert.ok(
      !recs.some(
        (r) => r.k === 'lifecycle' && r.t === s.t && r.m === (s as { m: string }).m && r.event_type !== 'close_date_updated' && r.event_type !== 'activated',
      ),
    );
});

test('book checkpoints equal the books obtained by applying the deltas', async () => {
  const recs = exchange(await run('e.ndjson', { seed: 3 }));
  const books = new Map<string, Book>();
  let checked = 0;
  for (const r of recs) {
    if (r.k === 'market') books.set(r.market.ticker, new Book());
    if (r.k === 'delta') books.get(r.m)!.apply(r.side, parsePrice(r.p), parseSize(r.d));
    if (r.k === 'book') {
      const b = books.get(r.m)!;
      assert.deepEqual({ yes: b.levels('yes'), no: b.levels('no') }, { yes: r.yes, no: r.no }, `${r.m} at ${r.t}`);
      checked++;
    }
  }
  assert.ok(checked > 50, `${checked} checkpoints`);
  // Books never cross: best YES bid + best NO bid < 1 after every delta.
  const live = new Map<string, Book>();
  for (const r of recs) {
    if (r.k === 'market') live.set(r.market.ticker, new Book());
    if (r.k !== 'delta') continue;
    const b = live.get(r.m)!;
    b.apply(r.side, parsePrice(r.p), parseSize(r.d));
    const yes = b.best('yes');
    const no = b.best('no');
    if (yes >= 0 && no >= 0) assert.ok(yes + no < 10_000, `${r.m} crossed at n=${r.n}`);
  }
});

test('replay of a truth file reproduces the exchange stream; REST books equal the final checkpoints', async () => {
  const original = join(dir, 'f.ndjson');
  const sim = await startSimulator({ ...BASE, seed: 4, durationS: 2, truthFile: original, restBurstTokens: 1e6 });
  await sim.finished;
  const recs = exchange(readTruth(original));
  const endT = recs[recs.length - 1]!.t;
  const finalCheckpoints = recs.filter((r) => r.k === 'book' && r.t === endT);
  assert.ok(finalCheckpoints.length > 5, 'checkpoints at the end of the run');
  for (const r of finalCheckpoints) {
    if (r.k !== 'book') continue;
    const rest = (await (await fetch(`${sim.restUrl}/markets/${r.m}/orderbook`)).json()) as { orderbook_fp: unknown };
    assert.deepEqual(rest.orderbook_fp, { yes_dollars: r.yes, no_dollars: r.no }, r.m);
  }
  await sim.stop();
  const replayed = join(dir, 'g.ndjson');
  const rep = await startSimulator({ fromFile: original, pace: 'fast', truthFile: replayed, faults: '' });
  await rep.finished;
  for (const r of finalCheckpoints) if (r.k === 'book') assert.deepEqual(rep.book(r.m), { yes: r.yes, no: r.no });
  await rep.stop();
  assert.deepEqual(exchange(readTruth(replayed)), recs);
});
