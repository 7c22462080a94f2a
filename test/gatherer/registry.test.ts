import assert from 'node:assert/strict';
import { Pool } from 'pg';
import { after, before, describe, test } from 'node:test';
import { resolveOptions } from '../../src/config/validate';
import { GATHERER_METRICS, createMetrics, createRegistry } from '../../src/core/metrics';
import { ManualClock } from '../../src/gatherer/clock';
import { REGISTRY_SPEC, REST_CLIENT_SPEC } from '../../src/gatherer/options';
import { MarketRegistry } from '../../src/gatherer/registry';
import { RestClient } from '../../src/gatherer/rest';
import { waitFor } from '../harness/gatherer';
import { startRestTestEnv, type RestTestEnv } from './fixtures/env';
import { KalshiTestServer, market } from './fixtures/kalshi-test-server';

const T0 = Date.UTC(2026, 10, 23, 12, 0, 0);
const iso = (ms: number): string => new Date(ms).toISOString().replace('.000Z', 'Z');
const HOUR = 3_600_000;
const LEAD_MS = 10 * 60_000;
const AFTER_CLOSE_MS = 90_000;

let pool: Pool;
let server: KalshiTestServer;
let clock: ManualClock;
let registry: MarketRegistry;
const added: string[] = [];
const removed: string[] = [];
const promRegistry = createRegistry(false);

let env: RestTestEnv;
before(async () => {
  env = await startRestTestEnv(T0 * 1000);
  ({ pool, server } = env);
  const baseUrl = env.baseUrl;
  const open = { open_time: iso(T0 - HOUR), close_time: iso(T0 + 24 * HOUR) };
  server.markets.set(
    'KXA-E1-M1',
    market('KXA-E1-M1', 'active', {
      event_ticker: 'KXA-E1',
      open_time: iso(T0 - HOUR),
      close_time: iso(T0 + 2 * HOUR),
    }),
  );
  server.markets.set(
    'KXA-E1-M2',
    market('KXA-E1-M2', 'initialized', {
      event_ticker: 'KXA-E1',
      open_time: iso(T0 + HOUR),
      close_time: iso(T0 + 3 * HOUR),
    }),
  );
  server.markets.set('KXA-E2-M3', market('KXA-E2-M3', 'inactive', { event_ticker: 'KXA-E2', ...open }));
  server.markets.set(
    'KXA-E3-M4',
    market('KXA-E3-M4', 'closed', {
      event_ticker: 'KXA-E3',
      open_time: iso(T0 - 2 * HOUR),
      close_time: iso(T0 - HOUR),
    }),
  );
  server.markets.set('KXMVECROSS-X-1', market('KXMVECROSS-X-1', 'active', { mve_collection_ticker: 'KXMVECROSS', ...open }));
  for (let i = 0; i < 230; i++) server.markets.set(`KXB-E5-N${i}`, market(`KXB-E5-N${i}`, 'active', { event_ticker: 'KXB-E5', ...open }));
  server.series.set('KXA', {
    ticker: 'KXA',
    title: 'Series A',
    category: 'Economics',
    frequency: 'daily',
  });
  server.events.set('KXA-E1', {
    event_ticker: 'KXA-E1',
    series_ticker: 'KXA',
    title: 'Event one',
    sub_title: 'one',
    mutually_exclusive: true,
  });
  server.events.set('KXB-E5', {
    event_ticker: 'KXB-E5',
    series_ticker: 'KXB',
    title: 'Event five',
    mutually_exclusive: false,
  });
  clock = new ManualClock(T0);
  const rest = new RestClient(
    resolveOptions(REST_CLIENT_SPEC, {
      restBaseUrl: baseUrl,
      restTokensPerSec: 1e6,
      restBurstTokens: 1e6,
    }),
    { clock, random: () => 0 },
  );
  const opts = resolveOptions(REGISTRY_SPEC, {
    marketsPageLimit: 100,
    createdFetchDelayMs: 200,
    reconcileIntervalMs: 24 * HOUR,
    subscribeLeadMs: LEAD_MS,
    unsubscribeAfterCloseMs: AFTER_CLOSE_MS,
  });
  registry = new MarketRegistry(opts, {
    rest,
    db: pool,
    clock,
    metrics: createMetrics(GATHERER_METRICS, promRegistry),
  });
  registry.on('marketsAdded', (t) => added.push(...t));
  registry.on('marketsRemoved', (t) => removed.push(...t));
});

after(async () => {
  registry?.stop();
  await registry?.whenIdle();
  await env?.close();
});

async function row(ticker: string): Promise<Record<string, unknown> | undefined> {
  return (await pool.query('SELECT * FROM markets WHERE ticker = $1', [ticker])).rows[0];
}
function lifecycle(event_type: string, market_ticker: string, extra: Record<string, unknown> = {}, type = 'market_lifecycle_v2'): unknown {
  return { type, sid: 13, msg: { market_ticker, event_type, ...extra } };
}
const sec = (ms: number): number => Math.floor(ms / 1000);

describe('market registry', () => {
  test('discovery lists every page of unopened/open/paused markets, excludes MVE, persists markets, events and series', async () => {
    const result = await registry.start();
    assert.equal(result.listed, 233);
    const live = new Set(registry.activeTickers());
    assert.equal(live.size, 232, 'open and paused markets are live; the unopened one waits for open_time');
    assert.ok(live.has('KXA-E1-M1') && live.has('KXA-E2-M3') && !live.has('KXA-E1-M2') && !live.has('KXMVECROSS-X-1'));
    assert.equal(added.length, 232);
    const marketCalls = server.requests.filter((r) => r.path.endsWith('/markets'));
    assert.ok(marketCalls.every((r) => r.query.get('mve_filter') === 'exclude'));
    assert.deepEqual([...new Set(marketCalls.map((r) => r.query.get('status')))], ['unopened', 'open', 'paused', 'closed']);
    const closedCall = marketCalls.find((r) => r.query.get('status') === 'closed')!;
    assert.equal(closedCall.query.get('min_close_ts'), String((T0 - 24 * HOUR) / 1000), 'recently closed: the last 24 h');
    assert.equal((await row('KXA-E3-M4'))?.status, 'closed', 'recently closed markets are persisted, not tracked');
    assert.equal(registry.market('KXA-E3-M4'), undefined);
    assert.equal(marketCalls.filter((r) => r.query.get('status') === 'open').length, 3, '231 open markets in pages of 100');
    const m1 = await row('KXA-E1-M1');
    assert.equal(m1?.status, 'active');
    assert.equal(m1?.series_ticker, 'KXA');
    assert.equal(Number(m1?.close_time), (T0 + 2 * HOUR) * 1000);
    assert.equal((m1?.raw as Record<string, unknown>).market_type, 'binary');
    assert.equal(Number(m1?.updated_at), T0 * 1000);
    assert.equal((await pool.query('SELECT count(*)::int AS n FROM markets')).rows[0].n, 234);
    assert.equal((await pool.query(`SELECT title FROM series WHERE series_ticker = 'KXA'`)).rows[0].title, 'Series A');
    assert.equal((await pool.query(`SELECT series_ticker FROM events WHERE event_ticker = 'KXB-E5'`)).rows[0].series_ticker, 'KXB');
    const gauge = await promRegistry.getSingleMetric('market_registry_markets')!.get();
    assert.deepEqual(Object.fromEntries(gauge.values.map((v) => [v.labels.status, v.value])), {
      active: 231,
      initialized: 1,
      inactive: 1,
    });
  });

  test('open and close times fire from one armed timer: the market is subscribed subscribeLeadMs before open_time, opens at open_time, goes away unsubscribeAfterCloseMs after close_time', async () => {
    added.length = 0;
    removed.length = 0;
    assert.ok(clock.pendingTimers() <= 2, 'one due-time timer plus the reconcile timer, not one per market');
    clock.advance(HOUR - LEAD_MS - 1);
    await registry.whenIdle();
    assert.deepEqual(added, []);
    clock.advance(1);
    await registry.whenIdle();
    assert.deepEqual(added, ['KXA-E1-M2'], 'subscribed ahead of the open (no WS event marks it)');
    assert.equal((await row('KXA-E1-M2'))?.status, 'initialized');
    clock.advance(LEAD_MS);
    await registry.whenIdle();
    assert.deepEqual(added, ['KXA-E1-M2'], 'added once');
    assert.equal((await row('KXA-E1-M2'))?.status, 'active');
    clock.advance(HOUR); // T0 + 2h: M1's close_time
    await registry.whenIdle();
    assert.deepEqual(removed, [], "kept past close_time: the exchange's clock may run behind ours");
    clock.advance(AFTER_CLOSE_MS);
    await registry.whenIdle();
    assert.deepEqual(removed, ['KXA-E1-M1']);
    assert.equal((await row('KXA-E1-M1'))?.status, 'closed');
    assert.equal(registry.market('KXA-E1-M1'), undefined, 'finished markets are forgotten');
    assert.ok(clock.pendingTimers() <= 2);
  });

  test('created is tracked at once and fetched over REST, retrying while GET /markets/{ticker} 404s', async () => {
    added.length = 0;
    const now = clock.nowMs();
    const t = 'KXA-E1-NEW';
    server.markets.set(
      t,
      market(t, 'active', {
        event_ticker: 'KXA-E1',
        open_time: iso(now - 1000),
        close_time: iso(now + 10 * HOUR),
        subtitle: 'from REST',
      }),
    );
    server.notFoundFor.set(t, 2);
    const outcome = await registry.applyLifecycle(
      lifecycle('created', t, {
        open_ts: sec(now - 1000),
        close_ts: sec(now + 10 * HOUR),
        additional_metadata: { title: 'new' },
      }),
    );
    assert.equal(outcome, 'applied');
    assert.deepEqual(added, [t], 'live before the REST object arrives');
    await registry.whenIdle();
    assert.equal(registry.stats.createdNotFoundRetries, 2);
    const r = await row(t);
    assert.equal((r?.raw as Record<string, unknown>).subtitle, 'from REST');
    assert.equal(r?.status, 'active');
    assert.equal(r?.series_ticker, 'KXA');
  });

  test('lifecycle events update state, rows and the live set; bad and multivariate messages are counted, not applied', async () => {
    added.length = 0;
    removed.length = 0;
    clock.advance(1000);
    assert.equal(await registry.applyLifecycle(lifecycle('deactivated', 'KXA-E2-M3', { is_deactivated: true })), 'applied');
    assert.equal((await row('KXA-E2-M3'))?.status, 'inactive');
    assert.equal(await registry.applyLifecycle(lifecycle('activated', 'KXA-E2-M3')), 'applied');
    assert.equal((await row('KXA-E2-M3'))?.status, 'active');
    // The exchange's REST state moves with the events (the registry may look markets up).
    for (const [t, status] of [
      ['KXB-E5-N0', 'determined'],
      ['KXB-E5-N1', 'closed'],
      ['KXA-E3-M4', 'finalized'],
    ] as const) {
      server.markets.set(t, { ...server.markets.get(t)!, status });
    }
    await registry.applyLifecycle(lifecycle('determined', 'KXB-E5-N0', { result: 'yes', determination_ts: sec(clock.nowMs()) }));
    await registry.applyLifecycle(lifecycle('close_date_updated', 'KXB-E5-N1', { close_ts: sec(clock.nowMs()) - 5 }));
    await registry.applyLifecycle(
      lifecycle('price_level_structure_updated', 'KXB-E5-N2', {
        price_level_structure: 'tapered_deci_cent',
      }),
    );
    await registry.applyLifecycle(lifecycle('settled', 'KXA-E3-M4', { settled_ts: sec(clock.nowMs()) }));
    await registry.applyLifecycle({
      type: 'event_lifecycle',
      sid: 5,
      msg: { event_ticker: 'KXC-E7', series_ticker: 'KXC', title: 'Seven', sub_title: 's' },
    });
    assert.equal(await registry.applyLifecycle(lifecycle('created', 'KXMVECROSS-Y-2', {}, 'multivariate_market_lifecycle')), 'ignored');
    assert.equal(
      await registry.applyLifecycle({
        type: 'market_lifecycle_v2',
        msg: { event_type: 'created' },
      }),
      'rejected',
    );
    assert.equal(await registry.applyLifecycle('not an object'), 'rejected');
    await registry.whenIdle();
    assert.deepEqual(removed.sort(), ['KXB-E5-N0'], 'determined ends a market at once; a close_time just passed keeps it a while');
    clock.advance(AFTER_CLOSE_MS);
    await registry.whenIdle();
    assert.deepEqual(removed.sort(), ['KXB-E5-N0', 'KXB-E5-N1']);
    const n0 = await row('KXB-E5-N0');
    assert.equal(n0?.status, 'determined');
    assert.equal(n0?.result, 'yes');
    assert.equal((await row('KXB-E5-N2'))?.price_level_structure, 'tapered_deci_cent');
    assert.equal((await row('KXA-E3-M4'))?.status, 'finalized');
    assert.equal((await pool.query(`SELECT title FROM events WHERE event_ticker = 'KXC-E7'`)).rows[0].title, 'Seven');
    assert.equal(registry.stats.lifecycleRejected, 2);
    assert.equal(registry.stats.lifecycleIgnored, 1);
    assert.ok(registry.activeTickers().includes('KXA-E2-M3') && registry.activeTickers().includes('KXB-E5-N2'));
    assert.equal((await pool.query(`SELECT count(*)::int AS n FROM markets WHERE ticker LIKE 'KXMVE%'`)).rows[0].n, 0);
  });

  test('reconcile finds new markets, drops vanished ones, and never undoes a lifecycle change made while it ran', async () => {
    added.length = 0;
    removed.length = 0;
    clock.advance(1000);
    const now = clock.nowMs();
    server.markets.set('KXA-E9-R1', market('KXA-E9-R1', 'active', { open_time: iso(now - HOUR), close_time: iso(now + HOUR) }));
    server.markets.set('KXB-E5-N3', { ...server.markets.get('KXB-E5-N3')!, status: 'finalized' });
    const running = registry.reconcile();
    clock.advance(1); // the lifecycle change below is newer than the listing's start
    await registry.applyLifecycle(lifecycle('determined', 'KXB-E5-N4', { result: 'no' }));
    const result = await running;
    await registry.whenIdle();
    assert.equal(result.vanished, 1);
    assert.deepEqual(added, ['KXA-E9-R1']);
    assert.deepEqual(removed.sort(), ['KXB-E5-N3', 'KXB-E5-N4']);
    assert.equal((await row('KXB-E5-N3'))?.status, 'finalized');
    const n4 = await row('KXB-E5-N4');
    assert.equal(n4?.status, 'determined', 'the stale listing did not overwrite the newer lifecycle state');
    assert.ok(!registry.activeTickers().includes('KXB-E5-N4'));
    assert.equal(registry.stats.dbErrors, 0);
  });

  test('the periodic reconcile runs from its timer', async () => {
    const before = registry.stats.reconciles;
    clock.advance(24 * HOUR);
    // A condition wait (the harness's waitFor), not a count of short sleeps: on a busy machine the
    // reconcile the timer starts took longer than the old 1 s budget (failed in 1 of 5 runs under load).
    await waitFor('the timer to start a reconcile', () => registry.stats.reconciles !== before, 30_000, 20);
    assert.equal(registry.stats.reconciles, before + 1);
    await registry.whenIdle();
  });
});
