import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { isKdpError } from '../../src/core/errors';
import { createLogger } from '../../src/core/log';
import { insertGap, markGapRecovered } from '../../src/copy/gaps';
import { writeRowsOnce } from '../../src/copy/once';
import { WriterCounters } from '../../src/copy/stats';
import { CopyWriter } from '../../src/copy/writer';
import { startPg, withClient, type TestPg } from '../harness/pg';
import { count, delta, deltaLine, gathererDb, NOW_US, tradeId, tradeLine } from './helpers';

let pg: TestPg;
before(async () => {
  pg = await startPg();
});
after(async () => {
  await pg?.close();
});

const silent = createLogger('copy-writer-test', { level: 'silent' });

describe('trades: staging + ON CONFLICT DO NOTHING', () => {
  test('live trades duplicating backfilled ones collapse; inserted vs duplicate counts are right', async () => {
    const url = await gathererDb(pg);
    // REST backfill first: trades 1..5.
    const backfill = await withClient(url, (c) =>
      writeRowsOnce(
        c,
        'trades',
        [1, 2, 3, 4, 5].map((n) => tradeLine(tradeId(n), NOW_US + n * 1000, 'rest')),
        'g1/backfill',
      ),
    );
    assert.ok(backfill);
    assert.deepEqual([backfill.rows, backfill.duplicates, backfill.alreadyCommitted], [5, 0, false]);

    const stats = new WriterCounters();
    const w = CopyWriter.create({ url, table: 'trades', writerName: 'g1/w0/trades', flushIntervalMs: 60_000, batchRowsMax: 100 }, { stats, log: silent });
    // Live: 4..8 (4 and 5 already backfilled) plus a second copy of 8 inside the same batch.
    for (const n of [4, 5, 6, 7, 8, 8]) assert.ok(w.append(tradeLine(tradeId(n), NOW_US + n * 1000, 'ws')));
    await w.flush();
    assert.equal(stats.rowsCommitted.get('trades'), 3);
    assert.equal(stats.duplicates.get('trades'), 3);
    await withClient(url, async (c) => {
      assert.equal(await count(c, `SELECT count(*) AS n FROM trades`), 8);
      const bySource = await c.query(`SELECT source, count(*)::int AS n FROM trades GROUP BY 1 ORDER BY 1`);
      assert.deepEqual(bySource.rows, [
        { source: 'rest', n: 5 },
        { source: 'ws', n: 3 },
      ]);
      const batches = await c.query(`SELECT writer, row_count FROM ingest_batches ORDER BY batch_id`);
      assert.deepEqual(batches.rows, [
        { writer: 'g1/backfill', row_count: 5 },
        { writer: 'g1/w0/trades', row_count: 3 },
      ]);
      // The staging table of the writer's session is empty after commit; nothing leaked into trades twice.
      assert.equal(await count(c, `SELECT count(*) AS n FROM (SELECT trade_id FROM trades GROUP BY 1 HAVING count(*) > 1) d`), 0);
    });
    await w.close();
  });

  test('a bad trade among good ones is rejected, the others merge', async () => {
    const url = await gathererDb(pg);
    const stats = new WriterCounters();
    const w = CopyWriter.create({ url, table: 'trades', writerName: 'g1/w1/trades', flushIntervalMs: 60_000 }, { stats, log: silent });
    w.append(tradeLine(tradeId(1), NOW_US, 'ws'));
    w.append(tradeLine('not-a-uuid', NOW_US, 'ws'));
    w.append(tradeLine(tradeId(3), NOW_US, 'ws'));
    await w.flush();
    assert.equal(stats.rowsCommitted.get('trades'), 2);
    assert.equal(stats.rowsRejected.get('trades'), 1);
    assert.equal(stats.errors.constraint, 1);
    await w.close();
  });
});

describe('writeRowsOnce', () => {
  test('writes one batch transaction; a retry with the same batch id does not write twice', async () => {
    const url = await gathererDb(pg);
    const rows = [1, 2, 3].map((i) => deltaLine(delta(i)));
    const first = await withClient(url, (c) => writeRowsOnce(c, 'orderbook_deltas', rows, 'g1/snapshots'));
    assert.ok(first);
    assert.equal(first.rows, 3);
    const again = await withClient(url, (c) => writeRowsOnce(c, 'orderbook_deltas', rows, 'g1/snapshots', { batchId: first.batchId }));
    assert.ok(again);
    assert.equal(again.alreadyCommitted, true);
    assert.equal(again.rows, 3);
    await withClient(url, async (c) => {
      assert.equal(await count(c, `SELECT count(*) AS n FROM orderbook_deltas WHERE batch_id = $1`, [first.batchId]), 3);
      assert.equal(await count(c, `SELECT count(*) AS n FROM ingest_batches`), 1);
    });
    assert.equal(await withClient(url, (c) => writeRowsOnce(c, 'orderbook_deltas', [], 'g1/snapshots')), undefined);
  });

  test('a failure leaves the client usable and carries the batch id and ambiguity in its details', async () => {
    const url = await gathererDb(pg);
    await withClient(url, async (c) => {
      await c.query(`ALTER TABLE orderbook_deltas RENAME TO od_away`);
      const err = await writeRowsOnce(c, 'orderbook_deltas', [deltaLine(delta(1))], 'g1/snapshots').then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(isKdpError(err, 'KDP_ERR_DB_SCHEMA'), 'a missing table is a schema mismatch');
      assert.equal(typeof err.details?.batchId, 'number');
      assert.equal(err.details?.ambiguous, false);
      await c.query(`ALTER TABLE od_away RENAME TO orderbook_deltas`);
      const retry = await writeRowsOnce(c, 'orderbook_deltas', [deltaLine(delta(1))], 'g1/snapshots', { batchId: err.details?.batchId as number });
      assert.equal(retry?.alreadyCommitted, false);
      assert.equal(retry?.batchId, err.details?.batchId);
      assert.equal(await count(c, `SELECT count(*) AS n FROM orderbook_deltas`), 1);
    });
  });
});

describe('gap ledger', () => {
  test('inserts a gap and marks it recovered', async () => {
    const url = await gathererDb(pg);
    await withClient(url, async (c) => {
      const gapId = await insertGap(c, {
        gatherer: 'g1',
        connId: 3,
        sid: 7,
        channel: 'orderbook_delta',
        kind: 'seq_gap',
        tickers: ['KX-A', 'KX-B'],
        expectedSeq: 41,
        gotSeq: 45,
        errorCode: null,
        windowStartUs: NOW_US,
        windowEndUs: null,
        detectedAtUs: NOW_US + 5,
      });
      const before = (await c.query(`SELECT * FROM gap_ledger WHERE gap_id = $1`, [gapId])).rows[0];
      assert.deepEqual(before.tickers, ['KX-A', 'KX-B']);
      assert.deepEqual([before.expected_seq, before.got_seq, before.recovered, before.recovered_at], ['41', '45', false, null]);
      assert.equal(before.window_end, null);
      assert.equal(await markGapRecovered(c, gapId, { recoveredAtUs: NOW_US + 900, method: 'rest_snapshot', windowEndUs: NOW_US + 800 }), true);
      const afterRow = (await c.query(`SELECT * FROM gap_ledger WHERE gap_id = $1`, [gapId])).rows[0];
      assert.deepEqual(
        [afterRow.recovered, afterRow.recovered_at, afterRow.recovery_method, afterRow.window_end],
        [true, String(NOW_US + 900), 'rest_snapshot', String(NOW_US + 800)],
      );
      assert.ok(BigInt(afterRow.updated_at) >= BigInt(before.updated_at));
      assert.equal(await markGapRecovered(c, gapId + 1000, { recoveredAtUs: NOW_US, method: 'resubscribe' }), false);
    });
  });
});
