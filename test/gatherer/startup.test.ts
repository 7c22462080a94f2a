// Markets created while a gatherer starts: after discovery has listed the markets and before the
// lifecycle subscription is live, a new market is in neither. It must not wait for the periodic
// reconcile (10 minutes) with its book unrecorded: the gatherer reconciles once its all-markets
// subscriptions are live, subscribes what it finds and ledgers the lost opening as 'new_market'.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { createLogger } from '../../src/core/log';
import { startGatherer } from '../../src/gatherer/service';
import { startSimulator, type Simulator } from '../../src/sim/simulator';
import { startPg, withClient, type TestPg } from '../harness/pg';
import { gathererOptions, migratedGathererDb, waitFor } from '../harness/gatherer';

let pg: TestPg;
let sim: Simulator | undefined;
before(async () => {
  pg = await startPg();
});
after(async () => {
  await sim?.stop();
  await pg?.close();
});

const CREATED = 6;

test('markets created between discovery and the lifecycle subscription get their books at once and new_market rows', async () => {
  sim = await startSimulator({ markets: 40, rate: 300, seed: 41 });
  const url = await migratedGathererDb(pg);
  // One connection that waits up to 5 s (random) before connecting: the start-up window.
  const options = gathererOptions(url, sim, {
    connections: { count: 1, startJitterMs: 5_000 },
    rest: { reconcileIntervalMs: 600_000 },
    log: { level: 'info' },
  });
  const logLines: string[] = [];
  let firstNew = -1;
  const simulator = sim;
  const sink = new Writable({
    write(chunk, _enc, done) {
      const line = String(chunk);
      if (logLines.length < 2000) logLines.push(line);
      // 'gatherer started' is written once discovery is done and the connections are scheduled,
      // before any has connected: a creation burst now falls in the window.
      if (firstNew < 0 && line.includes('"gatherer started"')) {
        firstNew = simulator.state.marketList.length;
        simulator.injectFault({ kind: 'create', count: CREATED });
      }
      done();
    },
  });
  const gatherer = await startGatherer(options, createLogger('gatherer', { level: 'info', destination: sink }));
  try {
    await waitFor('the burst created', () => firstNew >= 0 && sim!.state.marketList.length >= firstNew + CREATED);
    const burst = sim.state.marketList.slice(firstNew, firstNew + CREATED).map((m) => m.def.ticker);
    await waitFor('the lifecycle subscription live', () => gatherer.manager.globalSubscribed());
    // Each gets its book recorded (the snapshot after its subscription), long before the periodic
    // reconcile (600 s) would have found it.
    await waitFor(`a book snapshot of each of the ${CREATED} markets created in the window`, async () =>
      withClient(url, async (c) => {
        const r = await c.query(`SELECT count(DISTINCT ticker)::int AS n FROM orderbook_snapshots WHERE ticker = ANY($1)`, [burst]);
        return r.rows[0].n === CREATED;
      }),
    );
    assert.equal(gatherer.controlPlane.registry.stats.foundLate, CREATED, 'found by the start-up reconcile, not announced by created');
    // Those that opened before their subscription have their lost opening ledgered (recovered by
    // the snapshot); one subscribed ahead of its open lost nothing and needs no row.
    await waitFor('the gap tracker idle', () => gatherer.gaps.idle());
    await withClient(url, async (c) => {
      const ledgered = new Set(
        (await c.query(`SELECT DISTINCT t FROM gap_ledger, unnest(tickers) t WHERE kind = 'new_market' AND recovered AND t = ANY($1)`, [burst])).rows.map(
          (r) => r.t as string,
        ),
      );
      const first = await c.query(`SELECT ticker, min(received_at)::text AS us FROM orderbook_snapshots WHERE ticker = ANY($1) GROUP BY ticker`, [burst]);
      for (const r of first.rows as { ticker: string; us: string }[]) {
        const openMs = gatherer.controlPlane.registry.market(r.ticker)?.openTimeMs ?? Infinity;
        if (openMs * 1000 < Number(r.us)) assert.ok(ledgered.has(r.ticker), `${r.ticker} opened before its first snapshot: a new_market row`);
      }
    });
  } catch (err) {
    console.error(logLines.join(''));
    throw err;
  } finally {
    await gatherer.stop();
  }
});
