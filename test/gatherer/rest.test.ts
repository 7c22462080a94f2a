import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { after, before, beforeEach, describe, test } from 'node:test';
import { isKdpError } from '../../src/core/errors';
import { GATHERER_METRICS, createMetrics, createRegistry } from '../../src/core/metrics';
import { resolveOptions } from '../../src/config/validate';
import { KalshiSigner } from '../../src/gatherer/auth';
import { ManualClock } from '../../src/gatherer/clock';
import { REST_CLIENT_SPEC, type RestClientOptions } from '../../src/gatherer/options';
import { backoffDelayMs } from '../../src/core/backoff';
import { RestClient, restStatus, type RestClientDeps } from '../../src/gatherer/rest';
import { freePort } from '../../src/core/pgcluster';
import { KalshiTestServer, market } from './fixtures/kalshi-test-server';

let server: KalshiTestServer;
let baseUrl: string;
before(async () => {
  server = new KalshiTestServer();
  baseUrl = await server.start();
});
after(() => server.close());
beforeEach(() => {
  server.requests.length = 0;
  server.markets.clear();
  server.overrides.clear();
  server.rateLimitNext = 0;
  server.serverErrorNext = 0;
  server.stallNext = 0;
  server.verifyKey = undefined;
});

function opts(over: Record<string, unknown> = {}): RestClientOptions {
  return resolveOptions(REST_CLIENT_SPEC, {
    restBaseUrl: baseUrl,
    backoffInitialMs: 100,
    backoffMaxMs: 1000,
    restTokensPerSec: 1e6,
    restBurstTokens: 1e6,
    ...over,
  });
}
function client(over: Record<string, unknown> = {}, deps: RestClientDeps = {}): RestClient {
  return new RestClient(opts(over), {
    clock: new ManualClock(1_700_000_000_000),
    random: () => 0.5,
    ...deps,
  });
}

describe('pagination', () => {
  test('collects every page until the cursor is empty', async () => {
    for (let i = 0; i < 250; i++) server.markets.set(`M-${i}`, market(`KX-E${i % 7}-M${i}`, 'active'));
    const rest = client();
    const all = await rest.collect(rest.listMarkets({ status: 'open', limit: 100, mve_filter: 'exclude' }));
    assert.equal(all.length, 250);
    assert.equal(new Set(all.map((m) => m.ticker)).size, 250);
    const calls = server.requests.filter((r) => r.path.endsWith('/markets'));
    assert.equal(calls.length, 3);
    assert.equal(calls[0]!.query.get('cursor'), null);
    assert.ok(calls[1]!.query.get('cursor') && calls[2]!.query.get('cursor'));
    assert.equal(calls[0]!.query.get('status'), 'open');
    assert.equal(calls[0]!.query.get('mve_filter'), 'exclude');
    assert.equal(all[0]!.closeTimeMs, Date.parse('2026-11-30T00:00:00Z'));
  });

  test('a repeated cursor or too many pages is a coded error, not an endless loop', async () => {
    server.overrides.set('/markets', {
      status: 200,
      body: { markets: [market('A-B-C', 'active')], cursor: 'same' },
    });
    const rest = client();
    await assert.rejects(rest.collect(rest.listMarkets()), (e) => isKdpError(e, 'KDP_ERR_REST_PAGE_LIMIT'));
    assert.equal(server.count('/trade-api/v2/markets'), 2);
    let n = 0;
    server.overrides.set('/markets', { status: 200, body: { markets: [], cursor: 'x' } });
    const limited = client({ restMaxPages: 3 });
    const gen = limited.pages(async () => ({ items: [n], cursor: `c${n++}` }));
    await assert.rejects(limited.collect(gen), (e) => isKdpError(e, 'KDP_ERR_REST_PAGE_LIMIT'));
    assert.equal(n, 3);
  });
});

describe('retries and rate limits', () => {
  test('429s without Retry-After are retried with growing full-jitter backoff and counted per route template', async () => {
    server.orderbooks.set('T-1', {
      yes_dollars: [['0.1500', '100.00']],
      no_dollars: [['0.8000', '5.50']],
    });
    server.rateLimitNext = 3;
    const registry = createRegistry(false);
    const metrics = createMetrics(GATHERER_METRICS, registry);
    const clock = new ManualClock(1_700_000_000_000);
    const rest = client({}, { clock, metrics });
    const book = await rest.getOrderbook('T-1');
    assert.deepEqual(book, { yes: [['0.1500', '100.00']], no: [['0.8000', '5.50']] });
    assert.equal(rest.stats.byOutcome.rate_limited, 3);
    assert.equal(rest.stats.retries, 3);
    assert.equal(rest.stats.attempts, 4);
    // random() = 0.5: half of 100, 200, 400 ms ceilings.
    assert.deepEqual(rest.stats.backoffsMs, [50, 100, 200]);
    assert.deepEqual(clock.sleeps.slice(0, 3), [50, 100, 200]);
    const errors = await registry.getSingleMetric('market_registry_rest_errors_total')!.get();
    assert.deepEqual(
      errors.values.map((v) => [v.labels.endpoint, v.value]),
      [['/markets/{ticker}/orderbook', 3]],
    );
    const outcomes = await registry.getSingleMetric('rest_requests_total')!.get();
    const byOutcome = Object.fromEntries(outcomes.values.map((v) => [v.labels.outcome, v.value]));
    assert.deepEqual(byOutcome, { rate_limited: 3, ok: 1 });
  });

  test('retries are bounded: persistent 429 ends in KDP_ERR_REST_RATE_LIMITED, 5xx in KDP_ERR_REST_SERVER', async () => {
    server.rateLimitNext = 100;
    const rest = client({ restRetryMax: 2 });
    await assert.rejects(rest.getExchangeStatus(), (e) => isKdpError(e, 'KDP_ERR_REST_RATE_LIMITED') && restStatus(e) === 429);
    assert.equal(server.requests.length, 3);
    server.rateLimitNext = 0;
    server.serverErrorNext = 2;
    const ok = client({ restRetryMax: 2 });
    assert.deepEqual(await ok.getExchangeStatus(), {
      exchangeActive: true,
      tradingActive: true,
      estimatedResumeTime: null,
    });
    assert.equal(ok.stats.byOutcome.server_error, 2);
    server.serverErrorNext = 5;
    await assert.rejects(client({ restRetryMax: 1 }).getExchangeStatus(), (e) => isKdpError(e, 'KDP_ERR_REST_SERVER') && restStatus(e) === 503);
  });

  test('4xx fails at once with KDP_ERR_REST_CLIENT and its status; network failures are KDP_ERR_REST_NETWORK', async () => {
    const rest = client();
    await assert.rejects(rest.getMarket('NOPE-1'), (e) => isKdpError(e, 'KDP_ERR_REST_CLIENT') && restStatus(e) === 404);
    assert.equal(server.requests.length, 1, 'no retry on 404');
    const port = await freePort();
    const dead = new RestClient(opts({ restBaseUrl: `http://127.0.0.1:${port}/trade-api/v2`, restRetryMax: 2 }), {
      clock: new ManualClock(0),
      random: () => 0,
    });
    await assert.rejects(dead.getExchangeStatus(), (e) => isKdpError(e, 'KDP_ERR_REST_NETWORK'));
    assert.equal(dead.stats.byOutcome.network_error, 3);
  });

  test('a request that gets no answer times out as KDP_ERR_REST_NETWORK and is retried', async () => {
    server.stallNext = 1;
    const rest = client({ restTimeoutMs: 200, restRetryMax: 1 });
    const status = await rest.getExchangeStatus();
    assert.equal(status.exchangeActive, true);
    assert.equal(rest.stats.byOutcome.network_error, 1);
    server.stallNext = 5;
    await assert.rejects(
      client({ restTimeoutMs: 200, restRetryMax: 0 }).getExchangeStatus(),
      (e) => isKdpError(e, 'KDP_ERR_REST_NETWORK') && /timed out/.test(e.message),
    );
  });

  test('bad response shapes are KDP_ERR_MSG_SHAPE; one bad list item is dropped and counted, the page kept', async () => {
    server.overrides.set('/markets', { status: 200, body: { markets: 5, cursor: '' } });
    await assert.rejects(client().getMarkets(), (e) => isKdpError(e, 'KDP_ERR_MSG_SHAPE'));
    server.overrides.set('/markets', {
      status: 200,
      body: {
        markets: [market('A-B-1', 'active'), { ticker: 7 }, market('A-B-2', 'active')],
        cursor: null,
      },
    });
    const rest = client();
    const page = await rest.getMarkets();
    assert.deepEqual(
      page.items.map((m) => m.ticker),
      ['A-B-1', 'A-B-2'],
    );
    assert.equal(rest.stats.rejectedItems, 1);
    server.overrides.set('/markets/X-1/orderbook', {
      status: 200,
      body: { orderbook_fp: { yes_dollars: [['0.1', 3]] } },
    });
    await assert.rejects(rest.getOrderbook('X-1'), (e) => isKdpError(e, 'KDP_ERR_MSG_DECIMAL'));
    server.overrides.set('/exchange/status', { status: 200, body: { exchange_active: 'yes' } });
    await assert.rejects(rest.getExchangeStatus(), (e) => isKdpError(e, 'KDP_ERR_MSG_SHAPE'));
    assert.equal(rest.stats.byOutcome.bad_response, 2, 'the orderbook and the status response');
    server.overrides.set('/series', { status: 200, body: { series: null } });
    assert.deepEqual((await rest.getSeries()).items, []);
  });

  test('the token bucket paces requests: burst first, then one per cost/rate, FIFO', async () => {
    for (let i = 0; i < 12; i++) server.orderbooks.set(`B-${i}`, { yes_dollars: [['0.5000', '1.00']] });
    const clock = new ManualClock(1_700_000_000_000);
    // 100 tokens/s, burst 20, cost 10: two requests at once, then one per 100 ms.
    const rest = client({ restTokensPerSec: 100, restBurstTokens: 20, restCostPerRequest: 10 }, { clock });
    await Promise.all(Array.from({ length: 12 }, (_, i) => rest.getOrderbook(`B-${i}`)));
    assert.equal(rest.bucket.throttled, 10);
    assert.deepEqual(clock.sleeps, Array(10).fill(100));
    assert.equal(clock.nowMs() - 1_700_000_000_000, 1000, 'virtual time advanced exactly by the deficit');
    assert.deepEqual(
      server.requests.map((r) => decodeURIComponent(r.path.split('/')[4]!)),
      Array.from({ length: 12 }, (_, i) => `B-${i}`),
      'served in arrival order',
    );
  });

  test('a full client-side queue refuses new requests (backpressure) instead of growing', async () => {
    const clock = new ManualClock(0);
    const rest = client(
      {
        restTokensPerSec: 1,
        restBurstTokens: 10,
        restCostPerRequest: 10,
        restMaxQueuedRequests: 2,
      },
      { clock },
    );
    const results = await Promise.allSettled([rest.getExchangeStatus(), rest.getExchangeStatus(), rest.getExchangeStatus()]);
    assert.deepEqual(
      results.map((r) => r.status),
      ['fulfilled', 'fulfilled', 'rejected'],
    );
    const refused = results[2] as PromiseRejectedResult;
    assert.ok(isKdpError(refused.reason, 'KDP_ERR_REST_RATE_LIMITED'));
    assert.equal(server.requests.length, 2, 'the refused request never reached the server');
  });

  test('backoff ceilings double up to the maximum', () => {
    const o = { initialMs: 100, maxMs: 1000, jitter: 'full' as const };
    assert.deepEqual(
      [0, 1, 2, 3, 4, 40].map((a) => backoffDelayMs(a, { ...o, random: () => 0.999999 })),
      [99, 199, 399, 799, 999, 999],
    );
    assert.equal(backoffDelayMs(3, { ...o, random: () => 0 }), 0);
    // Equal jitter keeps half the ceiling as a floor; none is the ceiling itself.
    assert.deepEqual(
      [0, 0.5, 0.999999].map((r) => backoffDelayMs(3, { ...o, jitter: 'equal', random: () => r })),
      [400, 600, 800],
    );
    assert.deepEqual(
      [0, 3, 40].map((a) => backoffDelayMs(a, { ...o, jitter: 'none' })),
      [100, 800, 1000],
    );
  });
});

describe('signing', () => {
  test('signed requests pass a verifying server; unsigned ones are refused', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    server.verifyKey = publicKey;
    server.markets.set('S-1', market('S-E-1', 'active'));
    const signer = KalshiSigner.fromPem('kid', privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const signed = client({}, { signer });
    assert.equal((await signed.getMarkets({ status: 'open', limit: 5 })).items.length, 1);
    assert.equal(server.requests[0]!.headers['kalshi-access-key'], 'kid');
    await assert.rejects(client().getMarkets(), (e) => isKdpError(e, 'KDP_ERR_REST_CLIENT') && restStatus(e) === 401);
  });
});
