// The archiver against real parts: embedded PostgreSQL (production schema), DuckDB reading the
// Parquet files back, a local directory store and an S3 server (s3rver) on loopback.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, sep } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import S3rver = require('s3rver');
import { exportOnce, type ArchiveDeps } from '../../src/archive/archiver';
import { HOUR_US, hourStartOf, type Manifest } from '../../src/archive/layout';
import { resolveArchiveOptions } from '../../src/archive/options';
import { createLogger } from '../../src/core/log';
import { migrate } from '../../src/schema/migrate';
import { TIME_SERIES_TABLES, tableByName } from '../../src/schema/tables';
import { startPg, withClient, type TestPg } from '../harness/pg';
import { filesUnder, insertRows, makeRow, parquetRows, parquetSchema, productionRows, rng, seedProduction } from './fixture';

let pg: TestPg;
const scratch = mkdtempSync(join(tmpdir(), 'kdp-archive-test-'));
before(async () => {
  pg = await startPg();
});
after(async () => {
  await pg?.close();
  rmSync(scratch, { recursive: true, force: true });
});

const HOURS = 4;
const ROWS_PER_HOUR = 150;
// Four closed hours ending two hours before now: all due under the default 10-minute lag.
const FIRST_HOUR = hourStartOf(Date.now() * 1000) - (HOURS + 2) * HOUR_US;
const quiet: ArchiveDeps = { log: createLogger('archive-test', { level: 'silent' }) };

async function productionDb(): Promise<string> {
  const url = await pg.newDatabase('kdp_archive');
  await withClient(url, async (c) => {
    await migrate(c, { kind: 'production', engine: 'postgres' });
    await seedProduction(c, FIRST_HOUR, HOURS, ROWS_PER_HOUR);
  });
  return url;
}

// These tests are about raw/; the derived tiers have their own (tiers.test.ts).
const RAW_ONLY = { processed: { enabled: false }, aggregates: { enabled: false }, coverage: false };

function localOptions(url: string, dir: string, extra: Record<string, unknown> = {}) {
  return resolveArchiveOptions({
    ...RAW_ONLY,
    production: { url },
    store: { kind: 'local', dir },
    workDir: join(dir, '..', `${dir.split(sep).pop()}-work`),
    ...extra,
  });
}

/** Every table's production rows equal the rows of its Parquet files under root. */
async function assertArchiveEqualsProduction(url: string, root: string): Promise<void> {
  const files = filesUnder(root);
  await withClient(url, async (c) => {
    for (const t of TIME_SERIES_TABLES) {
      const parts = files.filter((f) => f.startsWith(`raw/${t.name}/`) && f.endsWith('.parquet')).map((f) => join(root, f));
      assert.deepEqual(await parquetRows(parts, t), await productionRows(c, t), `${t.name}: archive equals production`);
    }
  });
}

function assertManifestsMatch(root: string): void {
  const files = filesUnder(root).filter((f) => f.endsWith('.parquet'));
  for (const f of files) {
    const manifest = JSON.parse(readFileSync(join(root, f.replace(/part-00000\.parquet$/, '_manifest.json')), 'utf8')) as Manifest;
    const sha = createHash('sha256')
      .update(readFileSync(join(root, f)))
      .digest('hex');
    assert.equal(manifest.sha256, sha, `${f}: manifest checksum is the file's`);
    assert.equal(manifest.object, f);
  }
}

describe('export to a local directory', () => {
  let url: string;
  const root = join(scratch, 'local');
  before(async () => {
    url = await productionDb();
  });

  test('exports every closed hour of every table; values exact; Hive layout; manifests', async () => {
    const stats = await exportOnce(localOptions(url, root), quiet);
    assert.equal(stats.partitions, HOURS * TIME_SERIES_TABLES.length);
    assert.equal(stats.rows, HOURS * ROWS_PER_HOUR * TIME_SERIES_TABLES.length);
    assert.equal(stats.reexports, 0);
    await assertArchiveEqualsProduction(url, root);
    assertManifestsMatch(root);
    const files = filesUnder(root);
    const d = new Date(FIRST_HOUR / 1000).toISOString();
    const firstKey = `raw/trades/date=${d.slice(0, 10)}/hour=${d.slice(11, 13)}/part-00000.parquet`;
    assert.ok(files.includes(firstKey), `has ${firstKey}`);
    assert.equal(files.filter((f) => f.endsWith('.parquet')).length, HOURS * TIME_SERIES_TABLES.length);
    // The manifest of the first trades hour.
    const m = JSON.parse(readFileSync(join(root, firstKey.replace('part-00000.parquet', '_manifest.json')), 'utf8')) as Manifest;
    assert.equal(m.rowCount, ROWS_PER_HOUR);
    assert.equal(m.hourStartUs, FIRST_HOUR);
    assert.ok(m.minTimeUs >= FIRST_HOUR && m.maxTimeUs < FIRST_HOUR + HOUR_US);
    assert.equal(m.compression, 'zstd');
    assert.deepEqual(m.sortedBy.slice(0, 2), ['ticker', 'exchange_ts']);
  });

  test('column types keep exact values: DECIMAL prices and sizes, INT64 times, never a float', async () => {
    const files = filesUnder(root).filter((f) => f.endsWith('.parquet'));
    const trades = await parquetSchema(
      join(
        root,
        files.find((f) => f.startsWith('raw/trades/'))!,
      ),
    );
    assert.match(trades.get('yes_price')!.logical!, /DecimalType\(scale=6, precision=12\)/);
    assert.match(trades.get('count')!.logical!, /DecimalType\(scale=2, precision=20\)/);
    assert.equal(trades.get('exchange_ts')!.type, 'INT64');
    assert.equal(trades.get('merged_at')!.type, 'INT64');
    for (const f of files) {
      for (const [name, t] of await parquetSchema(join(root, f))) {
        assert.ok(!['FLOAT', 'DOUBLE'].includes(t.type), `${f} ${name} is not a float`);
      }
    }
  });

  test('a second run with nothing new exports nothing', async () => {
    const stats = await exportOnce(localOptions(url, root), quiet);
    assert.equal(stats.partitions, 0);
  });

  test('a late row re-exports exactly its partition, once; the next run exports nothing', async () => {
    const t = tableByName('orderbook_deltas');
    const hour = FIRST_HOUR + HOUR_US;
    await withClient(url, (c) => insertRows(c, t, [makeRow(t.name, rng(99), hour + 17, Date.now() * 1000, 1_000_001)]));
    const stats = await exportOnce(localOptions(url, root), quiet);
    assert.equal(stats.partitions, 1);
    assert.equal(stats.reexports, 1);
    assert.equal(stats.exported[0]!.table, 'orderbook_deltas');
    assert.equal(stats.exported[0]!.hourStartUs, hour);
    assert.equal(stats.exported[0]!.rows, ROWS_PER_HOUR + 1);
    await assertArchiveEqualsProduction(url, root);
    assertManifestsMatch(root);
    assert.equal((await exportOnce(localOptions(url, root), quiet)).partitions, 0);
  });

  test('a late row whose merged_at is not above the recorded maximum is still caught (row count)', async () => {
    const t = tableByName('trades');
    await withClient(url, (c) => insertRows(c, t, [makeRow(t.name, rng(7), FIRST_HOUR + 99, 1, 0)]));
    const stats = await exportOnce(localOptions(url, root), quiet);
    assert.deepEqual(
      stats.exported.map((p) => [p.table, p.hourStartUs, p.reason]),
      [['trades', FIRST_HOUR, 'late']],
    );
    await assertArchiveEqualsProduction(url, root);
  });

  test('export_cursors holds one row per partition with the file checksum', async () => {
    await withClient(url, async (c) => {
      const r = await c.query(`SELECT table_name, hour_start::text AS h, row_count::int AS n, object_key, checksum FROM export_cursors`);
      assert.equal(r.rowCount, HOURS * TIME_SERIES_TABLES.length);
      for (const row of r.rows) {
        const sha = createHash('sha256')
          .update(readFileSync(join(root, row.object_key)))
          .digest('hex');
        assert.equal(row.checksum, sha);
      }
    });
  });
});

describe('which hours are due', () => {
  test('only hours whose end + lag precede every live dedup cursor; a stalled deduplicator holds all', async () => {
    const url = await productionDb();
    const root = join(scratch, 'due');
    const lastHourEnd = FIRST_HOUR + HOURS * HOUR_US;
    const nowUs = lastHourEnd + 2 * HOUR_US;
    const opts = localOptions(url, root, { exportLagMs: 60_000, gathererStaleMs: 3_600_000 });
    // g1's cursor moved 30 min ago (stale limit 1 h): live. All cursors stale -> nothing due.
    await withClient(url, (c) =>
      c.query(
        `INSERT INTO dedup_cursors (gatherer, instance_id, merged_xid, updated_at) VALUES
         ('g1', gen_random_uuid(), '1', $1), ('g2', gen_random_uuid(), '1', $2)`,
        [nowUs - 2 * 3_600_000_000, nowUs - 3 * 3_600_000_000],
      ),
    );
    const stalled = await exportOnce(opts, { ...quiet, nowUs: () => nowUs });
    assert.equal(stalled.partitions, 0);
    assert.equal(stalled.dedupStalled, true);
    // g1 live, its cursor 61 s past the end of the 2nd hour: hours 1 and 2 are due; g2 is dead.
    await withClient(url, async (c) => {
      await c.query(`UPDATE dedup_cursors SET updated_at = $1 WHERE gatherer = 'g1'`, [FIRST_HOUR + 2 * HOUR_US + 61_000_000]);
      await c.query(`UPDATE dedup_cursors SET updated_at = $1 WHERE gatherer = 'g2'`, [FIRST_HOUR - 10 * HOUR_US]);
    });
    const partial = await exportOnce(opts, { ...quiet, nowUs: () => FIRST_HOUR + 2 * HOUR_US + 1_800_000_000 });
    assert.deepEqual([...new Set(partial.exported.map((p) => p.hourStartUs))], [FIRST_HOUR, FIRST_HOUR + HOUR_US]);
    assert.equal(partial.partitions, 2 * TIME_SERIES_TABLES.length);
  });
});

describe('export to S3 (s3rver on loopback)', () => {
  let server: S3rver;
  let endpoint: string;
  const s3dir = join(scratch, 's3rver');
  const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
  before(async () => {
    server = new S3rver({ address: '127.0.0.1', port: 0, directory: s3dir, silent: true });
    const addr = await server.run();
    endpoint = `http://127.0.0.1:${addr.port}`;
  });
  after(async () => {
    server.httpServer?.closeAllConnections();
    await server.close();
  });

  test('writes the same partitions to a bucket; downloaded files read back equal production', async () => {
    const sdk = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { ...credentials } });
    try {
      await sdk.send(new CreateBucketCommand({ Bucket: 'kdp-archive' }));
      const url = await productionDb();
      const opts = resolveArchiveOptions({
        ...RAW_ONLY,
        production: { url },
        store: { kind: 's3', bucket: 'kdp-archive', prefix: 'raw', endpoint, region: 'us-east-1', forcePathStyle: true, ...credentials },
        workDir: join(scratch, 's3-work'),
      });
      const stats = await exportOnce(opts, quiet);
      assert.equal(stats.partitions, HOURS * TIME_SERIES_TABLES.length);
      const listed = await sdk.send(new ListObjectsV2Command({ Bucket: 'kdp-archive', Prefix: 'raw/' }));
      const keys = (listed.Contents ?? []).map((o) => o.Key!).sort();
      assert.equal(keys.filter((k) => k.endsWith('.parquet')).length, HOURS * TIME_SERIES_TABLES.length);
      assert.equal(keys.filter((k) => k.endsWith('/_manifest.json')).length, HOURS * TIME_SERIES_TABLES.length);
      const down = join(scratch, 's3-download');
      for (const key of keys) {
        const r = await sdk.send(new GetObjectCommand({ Bucket: 'kdp-archive', Key: key }));
        const path = join(down, ...key.split('/'));
        (await import('node:fs')).mkdirSync(join(path, '..'), { recursive: true });
        writeFileSync(path, Buffer.from(await r.Body!.transformToByteArray()));
      }
      await assertArchiveEqualsProduction(url, down);
      assertManifestsMatch(down);
      // A late row: the S3 object of its partition is overwritten, no second object appears.
      const t = tableByName('trades');
      await withClient(url, (c) => insertRows(c, t, [makeRow(t.name, rng(5), FIRST_HOUR + 2 * HOUR_US + 5, Date.now() * 1000, 0)]));
      const late = await exportOnce(opts, quiet);
      assert.deepEqual(
        late.exported.map((p) => [p.table, p.hourStartUs, p.reason]),
        [['trades', FIRST_HOUR + 2 * HOUR_US, 'late']],
      );
      const relisted = await sdk.send(new ListObjectsV2Command({ Bucket: 'kdp-archive', Prefix: 'raw/' }));
      assert.deepEqual((relisted.Contents ?? []).map((o) => o.Key!).sort(), keys);
      const key = late.exported[0]!.objectKey;
      const r = await sdk.send(new GetObjectCommand({ Bucket: 'kdp-archive', Key: key }));
      writeFileSync(join(down, ...key.split('/')), Buffer.from(await r.Body!.transformToByteArray()));
      const m = await sdk.send(new GetObjectCommand({ Bucket: 'kdp-archive', Key: key.replace('part-00000.parquet', '_manifest.json') }));
      writeFileSync(join(down, ...key.replace('part-00000.parquet', '_manifest.json').split('/')), Buffer.from(await m.Body!.transformToByteArray()));
      await assertArchiveEqualsProduction(url, down);
      assertManifestsMatch(down);
    } finally {
      sdk.destroy();
    }
  });

  test('an unreachable store fails with KDP_ERR_ARCHIVE_STORE after bounded retries', async () => {
    const url = await productionDb();
    const opts = resolveArchiveOptions({
      ...RAW_ONLY,
      production: { url },
      store: { kind: 's3', bucket: 'kdp-archive', endpoint: 'http://127.0.0.1:9', forcePathStyle: true, maxAttempts: 3, retryBaseMs: 5, ...credentials },
      workDir: join(scratch, 's3-work-bad'),
      tables: ['trades'],
    });
    await assert.rejects(exportOnce(opts, quiet), (e: { code?: string; details?: { attempts?: number } }) => {
      assert.equal(e.code, 'KDP_ERR_ARCHIVE_STORE');
      assert.equal(e.details?.attempts, 3);
      return true;
    });
    // Nothing was recorded as exported, so the next successful run exports it.
    await withClient(url, async (c) => assert.equal((await c.query('SELECT 1 FROM export_cursors')).rowCount, 0));
  });
});

describe('exactness over generated values (fast-check)', () => {
  test('decimals at full precision, signs, NULL vs empty string, quotes/commas/newlines survive the export', async () => {
    const fc = await import('fast-check');
    const url = await pg.newDatabase('kdp_archive_prop');
    const root = join(scratch, 'prop');
    const t = tableByName('tickers');
    const decimal = (digits: bigint, scale: number) =>
      fc.bigInt({ min: -(digits - 1n), max: digits - 1n }).map((n) => {
        const s = (n < 0n ? -n : n).toString().padStart(scale + 1, '0');
        return `${n < 0n ? '-' : ''}${s.slice(0, -scale)}.${s.slice(-scale)}`;
      });
    const text = fc.string({ unit: 'grapheme', maxLength: 12 }).map((s) => s.replace(/\0/g, ''));
    const row = fc.record({
      ticker: fc.oneof(text, fc.constantFrom('', '"', ',', 'a\nb', '\\N', 'NULL')),
      price: fc.option(decimal(10n ** 12n, 6)),
      yes_bid_size: fc.option(decimal(10n ** 20n, 2)),
      volume: fc.option(decimal(10n ** 20n, 2)),
      dollar_volume: fc.option(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(String)),
    });
    const rows = fc.sample(row, { numRuns: 400, seed: 42 });
    const base = hourStartOf(Date.now() * 1000) - 3 * HOUR_US;
    await withClient(url, async (c) => {
      await migrate(c, { kind: 'production', engine: 'postgres' });
      await insertRows(
        c,
        t,
        rows.map((r, i) => ({
          ...makeRow('tickers', rng(i), base + i * 1000, base + HOUR_US, i),
          ...r,
          // The generated ticker text drives the key: keep rows distinct through the time column.
          exchange_ts: base + i * 1000,
        })),
      );
    });
    const stats = await exportOnce(localOptions(url, root, { tables: ['tickers'] }), quiet);
    assert.equal(stats.rows, rows.length);
    await withClient(url, async (c) => {
      const parts = filesUnder(root)
        .filter((f) => f.endsWith('.parquet'))
        .map((f) => join(root, f));
      assert.deepEqual(await parquetRows(parts, t), await productionRows(c, t));
    });
  });
});
