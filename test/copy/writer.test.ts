import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Writable } from 'node:stream';
import fc from 'fast-check';
import { isKdpError } from '../../src/core/errors';
import { createLogger } from '../../src/core/log';
import { resolveCopyWriterOptions } from '../../src/copy/options';
import { WriterCounters } from '../../src/copy/stats';
import { CopyWriter } from '../../src/copy/writer';
import { startPg, withClient, type TestPg } from '../harness/pg';
import { count, delta, deltaLine, gathererDb, NOW_US, waitUntil } from './helpers';

let pg: TestPg;
before(async () => {
  pg = await startPg();
});
after(async () => {
  await pg?.close();
});

const silent = createLogger('copy-writer-test', { level: 'silent' });

function writer(url: string, over: Record<string, unknown> = {}, stats = new WriterCounters(), log = silent): CopyWriter {
  return CopyWriter.create({ url, table: 'orderbook_deltas', writerName: 'g1/w0/deltas', flushIntervalMs: 60_000, ...over }, { stats, log });
}

describe('CopyWriter: values and batches', () => {
  test('commits rows with exact values (decimals, NULLs, escaped tab/newline/backslash) and one ingest_batches row per batch', async () => {
    const url = await gathererDb(pg);
    const stats = new WriterCounters();
    const w = writer(url, { batchRowsMax: 4 }, stats);
    const rows = [
      delta(1, { ticker: 'KX\tTAB', price: '0.000001', delta: '-99999999999999999.99' }),
      delta(2, { ticker: 'KX\nNL\\back\rcr', price: '999999.999999', seq: null }),
      delta(3, { ticker: 'plain', price: '0.5', delta: '0.01' }),
      delta(4, { ticker: 'unicode-é€😀', delta: '12345678901234567.89' }),
      delta(5, { ticker: '\\N', side: 'no' }),
    ];
    for (const r of rows) assert.equal(w.append(deltaLine(r), r.receivedAt), true);
    await w.flush();
    assert.equal(w.pendingRows, 0);
    await withClient(url, async (c) => {
      const got = await c.query(
        `SELECT ticker, side, price::text, delta::text, exchange_ts::text, occurrence, seq::text, gatherer, conn_id, sid, batch_id::text
         FROM orderbook_deltas ORDER BY exchange_ts`,
      );
      assert.equal(got.rows.length, 5);
      for (const [i, r] of rows.entries()) {
        const g = got.rows[i];
        assert.equal(g.ticker, r.ticker);
        assert.equal(g.side, r.side);
        assert.equal(Number(g.price), Number(r.price));
        assert.equal(g.price, Number(r.price).toFixed(6));
        assert.equal(g.delta, r.delta.includes('.') && r.delta.split('.')[1]!.length === 2 ? r.delta : `${r.delta}0`);
        assert.equal(g.exchange_ts, String(r.exchangeTs));
        assert.equal(g.seq, r.seq === null ? null : String(r.seq));
        assert.deepEqual([g.gatherer, g.conn_id, g.sid], ['g1', 3, 7]);
      }
      const batches = await c.query(`SELECT batch_id::text, writer, table_name, row_count FROM ingest_batches ORDER BY batch_id`);
      assert.deepEqual(
        batches.rows.map((b) => [b.writer, b.table_name, b.row_count]),
        [
          ['g1/w0/deltas', 'orderbook_deltas', 4],
          ['g1/w0/deltas', 'orderbook_deltas', 1],
        ],
      );
      const perBatch = await c.query(`SELECT batch_id::text, count(*)::int AS n FROM orderbook_deltas GROUP BY 1 ORDER BY 1`);
      assert.deepEqual(
        perBatch.rows.map((r) => [r.batch_id, r.n]),
        batches.rows.map((b) => [b.batch_id, b.row_count]),
      );
    });
    assert.equal(stats.rowsCommitted.get('orderbook_deltas'), 5);
    assert.equal(stats.batchesCommitted.get('orderbook_deltas'), 2);
    const samples = stats.takeSamples();
    assert.equal(samples.flushSeconds.length, 2);
    assert.equal(samples.frameToCommitSeconds.length, 2);
    assert.ok(samples.frameToCommitSeconds.every((s) => s > 0));
    assert.deepEqual(await w.close(), { unflushedRows: 0 });
  });

  test('any text survives the row format round trip (property)', async () => {
    const url = await gathererDb(pg);
    const w = writer(url, { batchRowsMax: 1000 });
    let base = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.string({ unit: 'binary', maxLength: 40 }).filter((s) => !s.includes('\0')),
          { minLength: 1, maxLength: 60 },
        ),
        async (tickers) => {
          const from = base;
          tickers.forEach((t, i) => assert.ok(w.append(deltaLine(delta(from + i, { ticker: t })))));
          base += tickers.length;
          await w.flush();
          const got = await withClient(url, (c) =>
            c.query(`SELECT ticker FROM orderbook_deltas WHERE exchange_ts >= $1 AND exchange_ts < $2 ORDER BY exchange_ts`, [NOW_US + from, NOW_US + base]),
          );
          assert.deepEqual(
            got.rows.map((r) => r.ticker),
            tickers,
          );
        },
      ),
      { numRuns: 15 },
    );
    await w.close();
  });

  test('flushes by row count without waiting for the interval, and by interval for a partial batch', async () => {
    const url = await gathererDb(pg);
    const bySize = writer(url, { batchRowsMax: 10, flushIntervalMs: 60_000 });
    for (let i = 0; i < 25; i++) bySize.append(deltaLine(delta(i)));
    await withClient(url, async (c) => {
      await waitUntil(async () => (await count(c, `SELECT count(*) AS n FROM orderbook_deltas`)) === 20, 'two full batches');
      assert.equal(bySize.pendingRows, 5, 'the partial batch waits for its interval');
      assert.deepEqual(
        (await c.query(`SELECT row_count FROM ingest_batches`)).rows.map((r) => r.row_count),
        [10, 10],
      );
    });
    await bySize.close();
    const byTime = writer(url, { batchRowsMax: 1000, flushIntervalMs: 30 });
    for (let i = 100; i < 103; i++) byTime.append(deltaLine(delta(i)));
    await withClient(url, (c) => waitUntil(async () => (await count(c, `SELECT count(*) AS n FROM orderbook_deltas`)) === 28, 'the timed flush'));
    assert.equal(byTime.pendingRows, 0);
    await byTime.close();
  });

  test('flushes by bytes', async () => {
    const url = await gathererDb(pg);
    const w = writer(url, { batchRowsMax: 100_000, batchBytesMax: 2048, flushIntervalMs: 60_000 });
    const long = 'K'.repeat(500);
    for (let i = 0; i < 4; i++) w.append(deltaLine(delta(i, { ticker: long })));
    await withClient(url, (c) => waitUntil(async () => (await count(c, `SELECT count(*) AS n FROM ingest_batches`)) === 1, 'the byte-sized batch'));
    assert.equal(w.pendingRows, 0);
    await w.close();
  });

  test('a bad row is rejected and counted, the rest of its batch commits', async () => {
    const url = await gathererDb(pg);
    const stats = new WriterCounters();
    const logged: string[] = [];
    const log = createLogger('copy-writer-test', {
      level: 'warn',
      destination: new Writable({
        write(chunk, _enc, cb) {
          logged.push(String(chunk));
          cb();
        },
      }),
    });
    const w = writer(url, { batchRowsMax: 100 }, stats, log);
    for (let i = 0; i < 100; i++) {
      const over = i === 37 ? { price: 'not-a-number' } : i === 80 ? { side: null } : i === 81 ? { price: '1e999' } : {};
      w.append(deltaLine(delta(i, over)));
    }
    await w.flush();
    await withClient(url, async (c) => {
      assert.equal(await count(c, `SELECT count(*) AS n FROM orderbook_deltas`), 97);
      const missing = await c.query(
        `SELECT g FROM generate_series(0, 99) g WHERE NOT EXISTS (SELECT 1 FROM orderbook_deltas WHERE exchange_ts = $1::bigint + g) ORDER BY g`,
        [NOW_US],
      );
      assert.deepEqual(
        missing.rows.map((r) => r.g),
        [37, 80, 81],
      );
      assert.deepEqual((await c.query(`SELECT row_count FROM ingest_batches`)).rows, [{ row_count: 97 }]);
    });
    assert.equal(stats.errors.constraint, 3);
    assert.equal(stats.rowsRejected.get('orderbook_deltas'), 3);
    assert.equal(stats.rowsCommitted.get('orderbook_deltas'), 97);
    assert.equal(logged.length, 1, 'one log line per batch with rejects');
    assert.match(logged[0]!, /not-a-number/);
    await w.close();
  });

  test('bad rows in a multi-megabyte batch are isolated (the COPY fails while the client is still sending)', async () => {
    const url = await gathererDb(pg);
    const stats = new WriterCounters();
    const w = writer(url, { batchRowsMax: 40_000, batchBytesMax: 64 * 1024 * 1024 }, stats);
    const pad = 'P'.repeat(100);
    for (let i = 0; i < 30_000; i++) {
      const bad = i === 3 || i === 29_998;
      w.append(deltaLine(delta(i, { ticker: pad, price: bad ? 'x' : '0.5' })));
    }
    await w.flush();
    assert.equal(stats.rowsCommitted.get('orderbook_deltas'), 29_998);
    assert.equal(stats.rowsRejected.get('orderbook_deltas'), 2);
    assert.equal(await withClient(url, (c) => count(c, `SELECT count(*) AS n FROM orderbook_deltas`)), 29_998);
    await w.close();
  });

  test('append refuses rows at pendingRowsMax and whenWritable resolves after a commit', async () => {
    const url = await gathererDb(pg);
    const w = writer(url, { batchRowsMax: 5, pendingRowsMax: 12, flushIntervalMs: 60_000 });
    let accepted = 0;
    for (let i = 0; i < 12; i++) if (w.append(deltaLine(delta(i)))) accepted++;
    // 12 accepted synchronously: nothing could commit yet, so the 13th is refused.
    assert.equal(accepted, 12);
    assert.equal(w.append(deltaLine(delta(12))), false);
    assert.equal(w.pendingRows, 12);
    await w.whenWritable();
    assert.ok(w.pendingRows < 12);
    assert.equal(w.append(deltaLine(delta(12))), true);
    await w.close();
    assert.equal(await withClient(url, (c) => count(c, `SELECT count(*) AS n FROM orderbook_deltas`)), 13);
  });

  test('options are validated: unknown keys and inconsistent limits are refused', () => {
    const base = { url: 'postgres://x/y', table: 'trades', writerName: 'w' };
    assert.throws(
      () => resolveCopyWriterOptions({ ...base, batchRows: 5 }),
      (e) => isKdpError(e, 'KDP_ERR_CONFIG_UNKNOWN_KEY') && /batchRows/.test(e.message),
    );
    assert.throws(
      () => resolveCopyWriterOptions({ ...base, batchRowsMax: 10, pendingRowsMax: 5 }),
      (e) => isKdpError(e, 'KDP_ERR_CONFIG_INVALID'),
    );
    assert.throws(
      () => resolveCopyWriterOptions({ ...base, writerName: "w'; DROP" }),
      (e) => isKdpError(e, 'KDP_ERR_CONFIG_INVALID'),
    );
    assert.throws(
      () => resolveCopyWriterOptions({ ...base, table: 'markets' }),
      (e) => isKdpError(e, 'KDP_ERR_CONFIG_INVALID'),
    );
    const o = resolveCopyWriterOptions(base);
    assert.equal(o.batchRowsMax, 5000);
    assert.equal(o.flushIntervalMs, 200);
  });

  test('append after close is refused with a coded error', async () => {
    const url = await gathererDb(pg);
    const w = writer(url);
    await w.close();
    assert.throws(
      () => w.append(deltaLine(delta(1))),
      (e) => isKdpError(e, 'KDP_ERR_SHUTDOWN'),
    );
  });
});
