// REST vs WebSocket drift, end to end: the simulator sends one order-book delta 1 contract too large
// (the `corrupt` fault: seq and shape intact, its REST books right), a real gatherer records the
// WebSocket feed and polls REST snapshots, the real deduplicator merges into production, and the
// drift pass (the one `kdp maintain` runs) compares every REST snapshot with the rebuilt book:
// exactly the corrupted market disagrees, from the corruption on, and every other market agrees.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { startDeduplicator } from '../../src/dedup/service';
import { reconstructBook } from '../../src/ops/book';
import { canonicalDecimal, parseScaled } from '../../src/ops/decimal';
import { runDriftPass, type DriftResult } from '../../src/ops/drift';
import { migrate } from '../../src/schema/migrate';
import type { FaultRec } from '../../src/sim/truth';
import { dedupOptions } from '../dedup/fixtures';
import { gathererOptions, migratedGathererDb, quiesce, startPausedSimulator, startTestGatherer, waitFor, waitSubscribed } from '../harness/gatherer';
import { startPg, withClient, type TestPg } from '../harness/pg';

let pg: TestPg;
before(async () => {
  pg = await startPg();
});
after(async () => {
  await pg?.close();
});

const MARKETS = 12;
const WINDOW_US = 2_000_000;

test('a delta corrupted on the wire is found by the drift check in exactly its market, from the corruption on', async () => {
  const gUrl = await migratedGathererDb(pg);
  const prodUrl = await pg.newDatabase('kdp_drift_prod');
  await withClient(prodUrl, (c) => migrate(c, { kind: 'production', engine: 'postgres' }));
  const run = await startPausedSimulator({ markets: MARKETS, rate: 200, seed: 29, pingIntervalMs: 1000, marketLifetimeS: 1_000_000 });
  const { gatherer, logLines } = await startTestGatherer(
    gathererOptions(gUrl, run.sim, {
      rest: { restBaseUrl: run.sim.restUrl, pollEnabled: true, pollIntervalMs: 1000, restTokensPerSec: 10_000, restBurstTokens: 10_000 },
    }),
  );
  const restCount = (sinceUs: number, untilUs = Number.MAX_SAFE_INTEGER): Promise<number> =>
    withClient(gUrl, async (c) => {
      const r = await c.query(`SELECT count(*)::int AS n FROM orderbook_snapshots WHERE source = 'rest' AND snapshot_ts > $1 AND snapshot_ts <= $2`, [
        sinceUs,
        untilUs,
      ]);
      return r.rows[0].n as number;
    });
  let corruptedAtUs = 0;
  try {
    await waitSubscribed(gatherer, MARKETS);
    run.sim.resume();
    await waitFor('two REST rounds before the corruption', async () => (await restCount(0)) >= 2 * MARKETS, 30_000, 100);
    corruptedAtUs = Date.now() * 1000;
    run.sim.injectFault({ kind: 'corrupt' });
    // The drift pass compares a REST snapshot once the merge watermark is a window past it: wait
    // until three rounds after the corruption are older than that.
    await waitFor(
      'three REST rounds after it, a window old',
      async () => (await restCount(corruptedAtUs + 2_000_000, Date.now() * 1000 - 2 * WINDOW_US)) >= 3 * MARKETS,
      40_000,
      100,
    );
    run.sim.pause();
    await quiesce(gatherer);
    assert.equal(await gatherer.stop(), true, 'the gatherer drained');
  } catch (err) {
    process.stderr.write(logLines.slice(-20).join(''));
    await gatherer.stop().catch(() => undefined);
    throw err;
  } finally {
    await run.sim.stop();
  }
  const faults = readFileSync(run.truthFile, 'utf8')
    .split('\n')
    .filter((l) => l.includes('"corrupt"'))
    .map((l) => JSON.parse(l) as FaultRec);
  assert.equal(faults.length, 1, 'one delta corrupted');
  const corrupted = faults[0]!.markets![0]!;

  const d = await startDeduplicator({ options: dedupOptions([{ name: 'g1', url: gUrl }], prodUrl), loop: false, http: false });
  try {
    await waitFor('the deduplicator merged everything', async () => !(await d.runOnce()).more, 60_000, 0);
  } finally {
    await d.stop();
  }

  const results = await withClient(prodUrl, async (c) => {
    const nowUs = Date.now() * 1000;
    const pass = await runDriftPass(c, { windowUs: WINDOW_US, settleUs: 0, snapshotsMax: 100_000, nowUs, staleUs: 3_600_000_000 });
    const again = await runDriftPass(c, { windowUs: WINDOW_US, settleUs: 0, snapshotsMax: 100_000, nowUs, staleUs: 3_600_000_000 });
    assert.equal(again.checked.length, 0, 'a REST snapshot is compared once');
    const rows = await c.query(`SELECT verdict, count(*)::int AS n FROM book_drift GROUP BY 1`);
    assert.equal(
      rows.rows.reduce((n, r) => n + (r.n as number), 0),
      pass.checked.length,
      'one book_drift row per REST snapshot compared',
    );
    return pass.checked;
  });
  const summary = (rs: DriftResult[]): string => rs.map((r) => `${r.ticker}@${r.snapshotTs}:${r.verdict}${r.detail ? ` (${r.detail})` : ''}`).join('\n');
  const mismatched = results.filter((r) => r.verdict === 'mismatch');
  assert.deepEqual([...new Set(mismatched.map((r) => r.ticker))], [corrupted], summary(mismatched));
  const mine = results.filter((r) => r.ticker === corrupted && r.snapshotTs > corruptedAtUs + 2_000_000);
  assert.ok(mine.length >= 2, `REST snapshots of ${corrupted} after the corruption were compared: ${summary(mine)}`);
  assert.ok(
    mine.every((r) => r.verdict === 'mismatch'),
    summary(mine),
  );
  // Where the timing lines up, the only difference is the corrupted level, the WebSocket book 1
  // contract above the exchange's (other boundaries can also differ by a delta in flight).
  const [, side, price] = /^delta n=\d+ (yes|no) (\S+) /.exec(faults[0]!.detail ?? '')!;
  const level = new RegExp(`^${side} ${canonicalDecimal(price!).replace('.', '\\.')}: rest (\\S+) ws (\\S+)$`);
  const exact = mine.filter((r) => {
    const m = level.exec(r.detail ?? '');
    return m !== null && parseScaled(m[2]!) - parseScaled(m[1]!) === parseScaled('1');
  });
  assert.ok(exact.length > 0, `some REST snapshot differs from the rebuilt book by exactly the corrupted ${side} ${price} +1: ${summary(mine)}`);
  const others = results.filter((r) => r.ticker !== corrupted);
  assert.ok(
    others.filter((r) => r.verdict === 'match').length >= 3 * (MARKETS - 1),
    `the other markets agree: ${summary(others.filter((r) => r.verdict !== 'match'))}`,
  );
  assert.equal(results.filter((r) => r.ticker === corrupted && r.snapshotTs < corruptedAtUs && r.verdict === 'mismatch').length, 0, 'it agreed before');

  // kdp book shows the newest REST snapshot's verdict.
  const last = mine[mine.length - 1]!;
  const book = await withClient(prodUrl, (c) => reconstructBook(c, corrupted, last.snapshotTs + 1));
  assert.equal(book.trust.lastRest?.drift, 'mismatch');
});
