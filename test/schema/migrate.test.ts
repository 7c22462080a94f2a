import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { isKdpError } from '../../src/core/errors';
import { migrate, readSchemaInfo, SCHEMA_VERSION } from '../../src/schema/migrate';
import { dropExpiredPartitions, drainDefaultPartitions, ensurePartitions, partitionName } from '../../src/schema/partitions';
import { DAY_US, TIME_SERIES_TABLES } from '../../src/schema/tables';
import { backendPid, untilWaitingForLock } from '../harness/locks';
import { startPg, withClient, type TestPg } from '../harness/pg';

let pg: TestPg;
before(async () => {
  pg = await startPg();
});
after(async () => {
  await pg?.close();
});

const NOW_US = Date.UTC(2026, 10, 23, 12) * 1000;

async function tablesOf(url: string): Promise<string[]> {
  return withClient(url, async (c) => (await c.query(`SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`)).rows.map((r) => r.tablename));
}

describe('gatherer schema', () => {
  test('migrates an empty database to the current version with every table, partitions and the batch log', async () => {
    const url = await pg.newDatabase();
    const result = await withClient(url, (c) => migrate(c, { kind: 'gatherer', engine: 'postgres', nowUs: NOW_US }));
    assert.equal(result.fromVersion, 0);
    assert.equal(result.toVersion, SCHEMA_VERSION);
    assert.equal(result.engine, 'postgres');
    const tables = await tablesOf(url);
    for (const t of TIME_SERIES_TABLES) {
      assert.ok(tables.includes(`${t.name}_default`), `${t.name} has a default partition`);
      assert.ok(tables.includes(partitionName(t.name, Math.floor(NOW_US / DAY_US) * DAY_US)), `${t.name} has today's partition`);
    }
    for (const name of ['ingest_batches', 'gap_ledger', 'dedup_watermark', 'markets', 'events', 'series', 'kdp_schema']) {
      assert.ok(tables.includes(name), `has ${name}`);
    }
  });

  test('a second migrate is a no-op that keeps the instance id', async () => {
    const url = await pg.newDatabase();
    const first = await withClient(url, (c) => migrate(c, { kind: 'gatherer', engine: 'postgres', nowUs: NOW_US }));
    const tablesBefore = await tablesOf(url);
    const second = await withClient(url, (c) => migrate(c, { kind: 'gatherer', engine: 'postgres', nowUs: NOW_US }));
    assert.deepEqual(second.applied, []);
    assert.equal(second.fromVersion, SCHEMA_VERSION);
    assert.equal(second.instanceId, first.instanceId);
    assert.deepEqual(await tablesOf(url), tablesBefore);
  });

  test('a version-3 production database is upgraded to 4: delivered_by on every time-series table (old rows NULL = unknown) and gatherer_bits; a gatherer is left as it was', async () => {
    for (const kind of ['gatherer', 'production'] as const) {
      const url = await pg.newDatabase();
      await withClient(url, async (c) => {
        await migrate(c, { kind, engine: 'postgres', nowUs: NOW_US });
        if (kind === 'production') {
          // What version 3 made: no delivered_by, no gatherer_bits.
          for (const t of TIME_SERIES_TABLES) await c.query(`ALTER TABLE ${t.name} DROP COLUMN delivered_by`);
          await c.query(`DROP TABLE gatherer_bits`);
          await c.query(
            `INSERT INTO trades (trade_id, ticker, yes_price, no_price, count, exchange_ts, source, received_at, gatherer, conn_id, sid, batch_id, merged_at)
             VALUES ('00000000-0000-4000-8000-000000000001', 'KX-T', 0.36, 0.64, 1, $1, 'ws', $1, 'g1', 1, 2, 1, $1)`,
            [NOW_US],
          );
        }
        await c.query(`UPDATE kdp_schema SET version = 3`);
        const r = await migrate(c, { kind, engine: 'postgres', nowUs: NOW_US });
        assert.deepEqual([r.fromVersion, r.toVersion], [3, SCHEMA_VERSION], kind);
        const cols = await c.query(`SELECT table_name FROM information_schema.columns WHERE column_name = 'delivered_by' AND table_name = ANY($1) ORDER BY 1`, [
          TIME_SERIES_TABLES.map((t) => t.name),
        ]);
        const bits = await c.query(`SELECT to_regclass('gatherer_bits') IS NOT NULL AS ok`);
        if (kind === 'gatherer') {
          assert.deepEqual([cols.rowCount, bits.rows[0].ok], [0, false]);
          return;
        }
        assert.deepEqual(
          cols.rows.map((x) => x.table_name),
          TIME_SERIES_TABLES.map((t) => t.name).sort(),
        );
        assert.equal(bits.rows[0].ok, true);
        const kept = await c.query(`SELECT count(*)::int AS n, count(delivered_by)::int AS known FROM trades`);
        assert.deepEqual(kept.rows[0], { n: 1, known: 0 });
      });
    }
  });

  test('a version-2 database of either kind is upgraded to 3: every time-series table gains sent_at, its rows kept', async () => {
    for (const kind of ['gatherer', 'production'] as const) {
      const url = await pg.newDatabase();
      await withClient(url, async (c) => {
        await migrate(c, { kind, engine: 'postgres', nowUs: NOW_US });
        // What version 2 made: no sent_at anywhere.
        for (const t of TIME_SERIES_TABLES) await c.query(`ALTER TABLE ${t.name} DROP COLUMN sent_at`);
        await c.query(`UPDATE kdp_schema SET version = 2`);
        await c.query(
          `INSERT INTO trades (trade_id, ticker, yes_price, no_price, count, exchange_ts, source, received_at, gatherer, conn_id, sid, batch_id${kind === 'production' ? ', merged_at' : ''})
           VALUES ('00000000-0000-4000-8000-000000000001', 'KX-T', 0.36, 0.64, 1, $1, 'ws', $1, 'g1', 1, 2, 1${kind === 'production' ? ', $1' : ''})`,
          [NOW_US],
        );
        const r = await migrate(c, { kind, engine: 'postgres', nowUs: NOW_US });
        assert.deepEqual([r.fromVersion, r.toVersion], [2, SCHEMA_VERSION], kind);
        const cols = await c.query(`SELECT table_name FROM information_schema.columns WHERE column_name = 'sent_at' AND table_name = ANY($1) ORDER BY 1`, [
          TIME_SERIES_TABLES.map((t) => t.name),
        ]);
        assert.deepEqual(
          cols.rows.map((x) => x.table_name),
          TIME_SERIES_TABLES.map((t) => t.name).sort(),
          kind,
        );
        const kept = await c.query(`SELECT count(*)::int AS n, count(sent_at)::int AS s FROM trades`);
        assert.deepEqual(kept.rows[0], { n: 1, s: 0 }, kind);
      });
    }
  });

  test('gatherer trades reject a second copy of the same trade', async () => {
    const url = await pg.newDatabase();
    await withClient(url, async (c) => {
      await migrate(c, { kind: 'gatherer', engine: 'postgres', nowUs: NOW_US });
      const insert = `INSERT INTO trades (trade_id, ticker, yes_price, no_price, count, exchange_ts, source, received_at, gatherer, conn_id, sid, batch_id)
        VALUES ('d91bc706-ee49-470d-82d8-11418bda6fed', 'T', 0.36, 0.64, 136.5, ${NOW_US}, 'ws', ${NOW_US}, 'g1', 1, 1, 1)`;
      await c.query(insert);
      await assert.rejects(c.query(insert), (e: { code?: string }) => e.code === '23505');
      const r = await c.query(`SELECT count::text, yes_price::text FROM trades`);
      assert.deepEqual(r.rows[0], { count: '136.50', yes_price: '0.360000' });
    });
  });
});

describe('production schema', () => {
  test('has merge keys leading with time, market_status, cursors and the gap ledger', async () => {
    const url = await pg.newDatabase();
    await withClient(url, async (c) => {
      await migrate(c, { kind: 'production', engine: 'postgres', nowUs: NOW_US });
      const keys = await c.query(
        `SELECT cl.relname AS t, pg_get_constraintdef(co.oid) AS def FROM pg_constraint co
         JOIN pg_class cl ON cl.oid = co.conrelid WHERE co.contype = 'p' AND cl.relkind IN ('r','p') AND cl.relispartition = false`,
      );
      const byTable = Object.fromEntries(keys.rows.map((r) => [r.t, r.def]));
      for (const t of TIME_SERIES_TABLES) {
        assert.equal(byTable[t.name], `PRIMARY KEY (${t.productionKey.join(', ')})`);
      }
      assert.equal(byTable.dedup_cursors, 'PRIMARY KEY (gatherer, instance_id)');
      const status = await c.query(`SELECT column_name FROM information_schema.columns WHERE table_name = 'markets' AND column_name = 'market_status'`);
      assert.equal(status.rowCount, 1);
    });
  });

  test('two identical deltas in one microsecond are kept apart by occurrence, a repeated copy collides', async () => {
    const url = await pg.newDatabase();
    await withClient(url, async (c) => {
      await migrate(c, { kind: 'production', engine: 'postgres', nowUs: NOW_US });
      const row = (occ: number) =>
        `INSERT INTO orderbook_deltas (ticker, side, price, delta, exchange_ts, occurrence, received_at, gatherer, conn_id, sid, seq, batch_id, merged_at)
         VALUES ('T', 'yes', 0.96, -54, ${NOW_US}, ${occ}, ${NOW_US}, 'g1', 1, 2, ${10 + occ}, 1, ${NOW_US}) ON CONFLICT DO NOTHING`;
      assert.equal((await c.query(row(0))).rowCount, 1);
      assert.equal((await c.query(row(1))).rowCount, 1);
      assert.equal((await c.query(row(1))).rowCount, 0);
    });
  });

  test('refuses a gatherer migrate on a production database, and a schema newer than this build', async () => {
    const url = await pg.newDatabase();
    await withClient(url, async (c) => {
      await migrate(c, { kind: 'production', engine: 'postgres', nowUs: NOW_US });
      await assert.rejects(migrate(c, { kind: 'gatherer', engine: 'postgres' }), (e) => isKdpError(e, 'KDP_ERR_SCHEMA_KIND'));
      await c.query(`UPDATE kdp_schema SET version = ${SCHEMA_VERSION + 1}`);
      await assert.rejects(migrate(c, { kind: 'production', engine: 'postgres' }), (e) => isKdpError(e, 'KDP_ERR_SCHEMA_TOO_NEW'));
      assert.equal((await readSchemaInfo(c))?.version, SCHEMA_VERSION + 1);
    });
  });

  test('engine timescale is refused with a coded error where the extension is missing', async () => {
    const url = await pg.newDatabase();
    await withClient(url, async (c) => {
      await assert.rejects(migrate(c, { kind: 'production', engine: 'timescale' }), (e) => isKdpError(e, 'KDP_ERR_TIMESCALE_UNAVAILABLE'));
    });
  });
});

describe('partition maintenance', () => {
  test('rows outside the created days land in DEFAULT and are moved into a new day partition', async () => {
    const url = await pg.newDatabase();
    await withClient(url, async (c) => {
      await migrate(c, { kind: 'gatherer', engine: 'postgres', nowUs: NOW_US, partitionDaysBack: 0, partitionDaysAhead: 1 });
      const old = NOW_US - 30 * DAY_US;
      await c.query(
        `INSERT INTO orderbook_deltas (ticker, side, price, delta, exchange_ts, occurrence, received_at, gatherer, conn_id, sid, seq, batch_id)
         VALUES ('T', 'no', 0.5, 1, ${old}, 0, ${NOW_US}, 'g1', 1, 1, 1, 1)`,
      );
      assert.equal((await c.query(`SELECT count(*)::int AS n FROM orderbook_deltas_default`)).rows[0].n, 1);
      const created = await drainDefaultPartitions(c, 'gatherer');
      assert.ok(created.includes(partitionName('orderbook_deltas', Math.floor(old / DAY_US) * DAY_US)));
      assert.equal((await c.query(`SELECT count(*)::int AS n FROM orderbook_deltas_default`)).rows[0].n, 0);
      assert.equal((await c.query(`SELECT count(*)::int AS n FROM orderbook_deltas`)).rows[0].n, 1);
      assert.deepEqual(await ensurePartitions(c, { kind: 'gatherer', fromUs: NOW_US, toUs: NOW_US + DAY_US }), []);
    });
  });

  test('retention drops an expired partition only after the deduplicator merged its batches', async () => {
    const url = await pg.newDatabase();
    await withClient(url, async (c) => {
      const old = NOW_US - 10 * DAY_US;
      await migrate(c, { kind: 'gatherer', engine: 'postgres', nowUs: old, partitionDaysBack: 0, partitionDaysAhead: 1 });
      await c.query(`INSERT INTO ingest_batches (batch_id, writer, table_name, row_count) VALUES (1, 'w', 'tickers', 1)`);
      await c.query(
        `INSERT INTO tickers (ticker, exchange_ts, fingerprint, occurrence, received_at, gatherer, conn_id, sid, batch_id)
         VALUES ('T', ${old}, 42, 0, ${old}, 'g1', 1, 3, 1)`,
      );
      const name = partitionName('tickers', Math.floor(old / DAY_US) * DAY_US);
      let r = await dropExpiredPartitions(c, NOW_US);
      assert.ok(!r.dropped.includes(name), 'no watermark: nothing dropped');
      await c.query(`INSERT INTO dedup_watermark (merged_xid, merged_batch_id, updated_at) VALUES ('1'::xid8, 0, 0)`);
      r = await dropExpiredPartitions(c, NOW_US);
      assert.ok(r.keptUnmerged.includes(name), 'unmerged batch keeps the partition');
      await c.query(`UPDATE dedup_watermark SET merged_xid = pg_current_xact_id()`);
      r = await dropExpiredPartitions(c, NOW_US);
      assert.ok(r.dropped.includes(name), 'merged: dropped');
    });
  });

  test('a write into an expired partition that commits while retention checks it is seen, not dropped', async () => {
    const url = await pg.newDatabase();
    await withClient(url, async (c) => {
      const old = NOW_US - 10 * DAY_US;
      await migrate(c, { kind: 'gatherer', engine: 'postgres', nowUs: old, partitionDaysBack: 0, partitionDaysAhead: 1 });
      await c.query(`INSERT INTO dedup_watermark (merged_xid, merged_batch_id, updated_at) VALUES (pg_current_xact_id(), 0, 0)`);
      const name = partitionName('tickers', Math.floor(old / DAY_US) * DAY_US);
      const retentionPid = await backendPid(c);
      await withClient(url, async (writer) => {
        // A late COPY of old rows (a replay) is in flight when retention starts.
        await writer.query('BEGIN');
        await writer.query(`INSERT INTO ingest_batches (batch_id, writer, table_name, row_count) VALUES (1, 'w', 'tickers', 1)`);
        await writer.query(
          `INSERT INTO tickers (ticker, exchange_ts, fingerprint, occurrence, received_at, gatherer, conn_id, sid, batch_id)
           VALUES ('T', ${old}, 42, 0, ${old}, 'g1', 1, 3, 1)`,
        );
        const retention = dropExpiredPartitions(c, NOW_US);
        await untilWaitingForLock(url, retentionPid, 'retention waits for the writer');
        await writer.query('COMMIT');
        const r = await retention;
        assert.ok(r.keptUnmerged.includes(name) && !r.dropped.includes(name));
      });
      assert.equal((await c.query(`SELECT count(*)::int AS n FROM ${name}`)).rows[0].n, 1);
    });
  });
});
