// `kdp maintain` from the command line on a production database (plain PostgreSQL): one cycle
// creates the day partitions ahead and drains DEFAULT; options are validated (unknown keys
// refused); a second maintainer (or a migrate) holding the schema lock makes the cycle busy.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { runCli } from '../../src/cli/main';
import { isKdpError } from '../../src/core/errors';
import { createLogger } from '../../src/core/log';
import { MAINTAIN_METRICS, createMetrics, createRegistry } from '../../src/core/metrics';
import { resolveMaintainOptions } from '../../src/maintain/options';
import { maintainOnce } from '../../src/maintain/service';
import { SCHEMA_LOCK_KEY, migrate } from '../../src/schema/migrate';
import { partitionName } from '../../src/schema/partitions';
import { DAY_US } from '../../src/schema/tables';
import { startPg, withClient, type TestPg } from '../harness/pg';

let pg: TestPg;
let url: string;
before(async () => {
  pg = await startPg();
  url = await pg.newDatabase();
  await withClient(url, (c) => migrate(c, { kind: 'production', engine: 'postgres', partitionDaysAhead: 1 }));
});
after(async () => {
  await pg?.close();
});

test('kdp maintain --once creates partitions ahead and drains DEFAULT on production', async () => {
  const today = Math.floor((Date.now() * 1000) / DAY_US) * DAY_US;
  const farDay = today + 20 * DAY_US;
  await withClient(url, (c) =>
    c.query(
      `INSERT INTO trades (trade_id, ticker, yes_price, no_price, count, exchange_ts, source, received_at, gatherer, conn_id, sid, batch_id, merged_at)
       VALUES (gen_random_uuid(), 'T', 0.5, 0.5, 1, $1, 'ws', $1, 'g1', 1, 1, 1, $1)`,
      [farDay + 1],
    ),
  );
  assert.equal(await runCli(['maintain', '--kind', 'production', '--url', url, '--once', '--days-ahead', '5']), 0);
  await withClient(url, async (c) => {
    const parts = await c.query(`SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'trades'::regclass`);
    const names = parts.rows.map((r) => r.relname as string);
    for (let d = 0; d <= 5; d++) assert.ok(names.includes(partitionName('trades', today + d * DAY_US)), `day +${d}`);
    assert.ok(names.includes(partitionName('trades', farDay)), 'the DEFAULT row got its day partition');
    const left = await c.query(`SELECT count(*)::int AS n FROM trades_default`);
    assert.equal(left.rows[0].n, 0);
    const moved = await c.query(`SELECT count(*)::int AS n FROM trades`);
    assert.equal(moved.rows[0].n, 1);
  });
});

test('kdp maintain refuses unknown config keys and a missing database', async () => {
  const file = join(tmpdir(), `kdp-maintain-${process.pid}.yaml`);
  writeFileSync(file, `kind: production\ndatabase:\n  url: ${url}\nretentionDays: 3\n`);
  assert.equal(await runCli(['maintain', '--config', file, '--once']), 1);
  assert.equal(await runCli(['maintain', '--kind', 'production', '--once']), process.env.KDP_DATABASE_URL ? 1 : 2);
});

test('a cycle is busy while the schema lock is held elsewhere', async () => {
  const metrics = createMetrics(MAINTAIN_METRICS, createRegistry(false));
  const opts = resolveMaintainOptions({ kind: 'production', database: { url } });
  const deps = { log: createLogger('maintain', { level: 'silent' }), metrics, signal: new AbortController().signal };
  await withClient(url, async (holder) => {
    await holder.query('SELECT pg_advisory_lock($1)', [SCHEMA_LOCK_KEY]);
    await assert.rejects(maintainOnce(opts, deps), (err) => isKdpError(err, 'KDP_ERR_MAINTAIN_BUSY'));
  });
  const r = await maintainOnce(opts, deps);
  assert.equal(r.engine, 'postgres');
  assert.ok((r.tableBytes.trades ?? 0) > 0);
});
