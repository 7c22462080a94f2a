import assert from 'node:assert/strict';
import { once } from 'node:events';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { startPg, withClient, type TestPg } from '../harness/pg';
import { count, gathererDb } from './helpers';

let pg: TestPg;
before(async () => {
  pg = await startPg();
});
after(async () => {
  await pg?.close();
});

test('writers run inside a real worker thread and report their counters to the parent', { timeout: 60_000 }, async () => {
  const url = await gathererDb(pg);
  const worker = new Worker(join(__dirname, 'fixtures', 'writer-worker.js'), { workerData: { url, rows: 5_000 } });
  // A worker that exits without reporting fails the test at once with its exit code (waiting on
  // 'message' alone would hang until the test's time limit: seen once in CI, cause unknown).
  const exited = once(worker, 'exit').then(([code]) => {
    throw new Error(`writer worker exited with code ${code} before reporting`);
  });
  const [report] = (await Promise.race([once(worker, 'message'), exited])) as [
    {
      closed: { unflushedRows: number }[];
      rowsCommitted: Record<string, number>;
      batches: Record<string, number>;
      errors: Record<string, number>;
      samples: { flushSeconds: number[]; frameToCommitSeconds: number[] };
    },
  ];
  await exited.catch(() => undefined); // it exits after its report
  assert.deepEqual(report.closed, [{ unflushedRows: 0 }, { unflushedRows: 0 }]);
  assert.deepEqual(report.rowsCommitted, { orderbook_deltas: 5_000, trades: 500 });
  assert.deepEqual(report.errors, { connection: 0, constraint: 0, timeout: 0, disk_full: 0, schema: 0, other: 0 });
  const batches = report.batches.orderbook_deltas! + report.batches.trades!;
  assert.equal(report.samples.flushSeconds.length, batches);
  assert.equal(report.samples.frameToCommitSeconds.length, batches);
  await withClient(url, async (c) => {
    assert.equal(await count(c, `SELECT count(*) AS n FROM orderbook_deltas`), 5_000);
    assert.equal(await count(c, `SELECT count(*) AS n FROM trades`), 500);
    assert.equal(await count(c, `SELECT count(*) AS n FROM ingest_batches`), batches);
    assert.equal(await count(c, `SELECT sum(row_count) AS n FROM ingest_batches`), 5_500);
  });
});
