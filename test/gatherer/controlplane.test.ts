import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'pg';
import { after, before, test } from 'node:test';
import { resolveOptions } from '../../src/config/validate';
import { isKdpError } from '../../src/core/errors';
import { GATHERER_METRICS, createMetrics, createRegistry } from '../../src/core/metrics';
import { createRestControlPlane, loadSigner } from '../../src/gatherer/controlplane';
import { GATHERER_REST_SPEC } from '../../src/gatherer/options';
import { migrate } from '../../src/schema/migrate';
import { waitFor } from '../harness/gatherer';
import { startPg, withClient, type TestPg } from '../harness/pg';
import { KalshiTestServer, market } from './fixtures/kalshi-test-server';
import { pgWriteRows } from './fixtures/pg-writer';

let pg: TestPg;
let pool: Pool;
let server: KalshiTestServer;
let baseUrl: string;
const keyDir = mkdtempSync(join(tmpdir(), 'kdp-cp-'));
const keyPath = join(keyDir, 'key.pem');

before(async () => {
  pg = await startPg();
  const url = await pg.newDatabase();
  await withClient(url, (c) => migrate(c, { kind: 'gatherer', engine: 'postgres' }));
  pool = new Pool({ connectionString: url, max: 2 });
  // An idle client whose server goes away at teardown emits 'error'; unhandled it would crash.
  pool.on('error', () => undefined);
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  writeFileSync(keyPath, privateKey.export({ type: 'pkcs8', format: 'pem' }));
  server = new KalshiTestServer();
  server.verifyKey = publicKey;
  baseUrl = await server.start();
  const now = Date.now();
  for (let i = 0; i < 5; i++) {
    const t = `KXW-E1-M${i}`;
    server.markets.set(
      t,
      market(t, 'active', {
        open_time: new Date(now - 3_600_000).toISOString(),
        close_time: new Date(now + 3_600_000).toISOString(),
      }),
    );
    server.orderbooks.set(t, { yes_dollars: [['0.2000', '3.00']] });
  }
});
after(async () => {
  await pool?.end();
  await server?.close();
  await pg?.close();
});

test('options are validated with defaults carrying units; unknown keys are refused', () => {
  const o = resolveOptions(GATHERER_REST_SPEC, {});
  assert.equal(o.restBaseUrl, 'https://external-api.kalshi.com/trade-api/v2');
  assert.equal(o.restTokensPerSec, 200);
  assert.equal(o.restCostPerRequest, 10);
  assert.equal(o.pollIntervalMs, 900_000);
  assert.equal(o.includeMultivariate, false);
  assert.throws(
    () => resolveOptions(GATHERER_REST_SPEC, { pollIntervalMinutes: 15 }),
    (e) => isKdpError(e, 'KDP_ERR_CONFIG_UNKNOWN_KEY'),
  );
  assert.throws(
    () => loadSigner({ keyId: 'k', privateKeyPath: undefined }),
    (e) => isKdpError(e, 'KDP_ERR_CONFIG_MISSING'),
  );
});

test('the wired control plane discovers markets with signed requests, polls them and stops cleanly', async () => {
  const opts = resolveOptions(GATHERER_REST_SPEC, {
    restBaseUrl: baseUrl,
    keyId: 'kid',
    privateKeyPath: keyPath,
    pollIntervalMs: 60_000,
    discoverMetadata: false,
  });
  const promRegistry = createRegistry(false);
  const cp = createRestControlPlane(opts, {
    db: pool,
    writeRows: pgWriteRows(pool),
    gatherer: 'g3',
    metrics: createMetrics(GATHERER_METRICS, promRegistry),
  });
  const added: string[] = [];
  cp.registry.on('marketsAdded', (t) => added.push(...t));
  await cp.start();
  assert.equal(added.length, 5);
  await waitFor('the first snapshot batch stored', () => cp.poller.stats.stored >= 5, 30_000, 20);
  await cp.stop();
  assert.equal(cp.poller.stats.stored, 5, 'one batch of 5 at the start of the first cycle');
  assert.ok(
    server.requests.every((r) => r.headers['kalshi-access-key'] === 'kid'),
    'every request signed',
  );
  assert.equal((await pool.query(`SELECT count(*)::int AS n FROM orderbook_snapshots WHERE source = 'rest' AND gatherer = 'g3'`)).rows[0].n, 5);
  const snapshots = await promRegistry.getSingleMetric('snapshot_poller_snapshots_total')!.get();
  assert.equal(snapshots.values[0]!.value, 5);
});
