// Archiver options and the store retry policy: no database needed.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { join } from 'node:path';
import { ARCHIVE_SPEC, checkArchiveOptions, resolveArchiveOptions } from '../../src/archive/options';
import { loadConfig } from '../../src/config/load';
import { partitionPath, tableLayout, HOUR_US } from '../../src/archive/layout';
import { withRetry } from '../../src/archive/store';
import { isKdpError } from '../../src/core/errors';
import { TRADES, ORDERBOOK_SNAPSHOTS, LIFECYCLE_EVENTS } from '../../src/schema/tables';

const base = { production: { url: 'postgres://u:p@localhost/prod' } };

describe('archive options', () => {
  test('defaults: local store under raw/, zstd, all five tables', () => {
    const o = resolveArchiveOptions(base);
    assert.equal(o.store.kind, 'local');
    assert.equal(o.store.prefix, 'raw');
    assert.equal(o.compression, 'zstd');
    assert.equal(o.tables.length, 5);
    assert.deepEqual([o.processed.enabled, o.processed.prefix, o.processed.bookIntervalMs], [true, 'processed', 10_000]);
    assert.deepEqual([o.aggregates.enabled, o.aggregates.prefix, o.aggregates.datasets], [true, 'aggregates', ['candles_1m', 'candles_1h', 'candles_1d']]);
  });

  test('a subset of tables is fine once the derived tiers that need the others are off', () => {
    const o = resolveArchiveOptions({ ...base, tables: ['trades', 'tickers'], processed: { enabled: false } });
    assert.deepEqual(o.tables, ['trades', 'tickers']);
  });

  test('unknown keys, unknown tables, s3 without bucket and half credentials are refused with coded errors', () => {
    const cases: [unknown, string, string][] = [
      [{ ...base, exportLag: 1 }, 'KDP_ERR_CONFIG_UNKNOWN_KEY', 'exportLag'],
      [{ ...base, store: { kind: 'local', bucketName: 'x' } }, 'KDP_ERR_CONFIG_UNKNOWN_KEY', 'store.bucketName'],
      [{ ...base, tables: ['trades', 'fills'] }, 'KDP_ERR_CONFIG_INVALID', 'tables'],
      [{ ...base, store: { kind: 's3' } }, 'KDP_ERR_CONFIG_MISSING', 'store.bucket'],
      [{ ...base, store: { kind: 's3', bucket: 'b', accessKeyId: 'AK' } }, 'KDP_ERR_CONFIG_INVALID', 'store.accessKeyId'],
      [{ ...base, store: { prefix: '../up' } }, 'KDP_ERR_CONFIG_INVALID', 'store.prefix'],
      [{ ...base, compression: 'gzip' }, 'KDP_ERR_CONFIG_INVALID', 'compression'],
      [{}, 'KDP_ERR_CONFIG_MISSING', 'production.url'],
      // A derived tier reads raw tables it must also archive; its prefix is its own.
      [{ ...base, tables: ['trades', 'tickers'] }, 'KDP_ERR_CONFIG_INVALID', 'processed.enabled'],
      [{ ...base, tables: ['orderbook_deltas', 'orderbook_snapshots', 'trades'] }, 'KDP_ERR_CONFIG_INVALID', 'aggregates.enabled'],
      [{ ...base, aggregates: { datasets: ['candles_5m'] } }, 'KDP_ERR_CONFIG_INVALID', 'aggregates.datasets'],
      [{ ...base, processed: { prefix: 'raw' } }, 'KDP_ERR_CONFIG_INVALID', 'processed.prefix'],
      [{ ...base, processed: { bookIntervalMs: 500 } }, 'KDP_ERR_CONFIG_INVALID', 'processed.bookIntervalMs'],
      [{ ...base, processed: { bookIntervalMs: 7_000 } }, 'KDP_ERR_CONFIG_INVALID', 'processed.bookIntervalMs'],
    ];
    for (const [raw, code, key] of cases) {
      assert.throws(
        () => resolveArchiveOptions(raw),
        (e: unknown) => isKdpError(e) && e.code === code && e.details?.key === key,
        `${code} ${key}`,
      );
    }
  });
});

describe('layout', () => {
  test('Hive-style keys from the hour start (UTC)', () => {
    const hour = Date.UTC(2026, 10, 23, 7) * 1000;
    const p = partitionPath('raw', 'trades', hour);
    assert.equal(p.objectKey, 'raw/trades/date=2026-11-23/hour=07/part-00000.parquet');
    assert.equal(p.manifestKey, 'raw/trades/date=2026-11-23/hour=07/_manifest.json');
    assert.equal(partitionPath('', 'tickers', hour).objectKey, 'tickers/date=2026-11-23/hour=07/part-00000.parquet');
    assert.throws(() => partitionPath('raw', 'trades', hour + 1));
  });

  test('exact column types, sort keys, and an hour-bounded COPY', () => {
    const trades = tableLayout(TRADES);
    const byName = new Map(trades.columns.map((c) => [c.name, c.parquetType]));
    assert.equal(byName.get('yes_price'), 'DECIMAL(12,6)');
    assert.equal(byName.get('count'), 'DECIMAL(20,2)');
    assert.equal(byName.get('exchange_ts'), 'BIGINT');
    assert.equal(byName.get('merged_at'), 'BIGINT');
    assert.deepEqual(trades.sortColumns, ['ticker', 'exchange_ts', 'trade_id']);
    assert.deepEqual(tableLayout(ORDERBOOK_SNAPSHOTS).sortColumns.slice(0, 2), ['ticker', 'snapshot_ts']);
    assert.deepEqual(tableLayout(LIFECYCLE_EVENTS).sortColumns, ['ticker', 'received_at', 'fingerprint', 'event_type']);
    const sql = trades.copyOutSql(HOUR_US * 10);
    assert.match(sql, new RegExp(`exchange_ts >= ${HOUR_US * 10} AND exchange_ts < ${HOUR_US * 11}`));
    assert.match(tableLayout(ORDERBOOK_SNAPSHOTS).copyOutSql(0), /yes_levels::text/);
  });
});

describe('store retry', () => {
  test('retries a failing operation a bounded number of times, then KDP_ERR_ARCHIVE_STORE', async () => {
    let calls = 0;
    const delays: number[] = [];
    await assert.rejects(
      withRetry('op', { maxAttempts: 4, retryBaseMs: 1, retryMaxMs: 4, onRetry: (_e, _a, d) => delays.push(d) }, async () => {
        calls++;
        throw new Error('boom');
      }),
      (e: unknown) => isKdpError(e, 'KDP_ERR_ARCHIVE_STORE') && /boom/.test(e.message),
    );
    assert.equal(calls, 4);
    assert.equal(delays.length, 3);
    for (const [i, d] of delays.entries()) assert.ok(d <= Math.min(4, 2 ** i), `delay ${d} within its ceiling`);
  });

  test('a transient failure is retried and succeeds', async () => {
    let calls = 0;
    const v = await withRetry('op', { maxAttempts: 3, retryBaseMs: 1, retryMaxMs: 2 }, async () => {
      if (++calls < 3) throw new Error('transient');
      return 42;
    });
    assert.equal(v, 42);
  });
});

describe('example config', () => {
  test('config/archive.example.yaml validates', () => {
    const o = loadConfig(ARCHIVE_SPEC, join(__dirname, '..', '..', '..', 'config', 'archive.example.yaml'), {});
    checkArchiveOptions(o);
    assert.equal(o.store.prefix, 'raw');
    assert.equal(o.exportLagMs, 600_000);
  });
});
