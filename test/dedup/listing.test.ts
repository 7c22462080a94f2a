// Regression: the batch listing must order by the xid value, not by its text. With the ::text
// output aliases, "ORDER BY xid" sorted "1000" before "984", so a cycle merged later batches first,
// moved the cursor past earlier ones, and re-read them in later cycles.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { LIST_BATCHES, LIST_BATCHES_OF_XID } from '../../src/dedup/statements';
import { migrate } from '../../src/schema/migrate';
import { startPg, withClient, type TestPg } from '../harness/pg';

let pg: TestPg;
before(async () => {
  pg = await startPg();
});
after(async () => {
  await pg?.close();
});

test('batches are listed in xid order (then batch id) across a power of ten', async () => {
  const url = await pg.newDatabase();
  await withClient(url, async (c) => {
    await migrate(c, { kind: 'gatherer', engine: 'postgres' });
    // Explicit xids (the column's default is the writing transaction's): 984, 999, 1000, 1001, 10000.
    const rows: [number, number][] = [
      [5, 1000],
      [1, 984],
      [12, 10000],
      [3, 999],
      [4, 1001],
      [2, 999],
    ];
    for (const [id, xid] of rows) {
      await c.query(`INSERT INTO ingest_batches (batch_id, writer, table_name, row_count, xid) VALUES ($1, 'w', 'trades', 1, $2::xid8)`, [id, String(xid)]);
    }
    const listed = await c.query(LIST_BATCHES, ['0', '100000', 10]);
    assert.deepEqual(
      listed.rows.map((r) => [Number(r.batch_id), Number(r.xid)]),
      [
        [1, 984],
        [2, 999],
        [3, 999],
        [5, 1000],
        [4, 1001],
        [12, 10000],
      ],
    );
    const limited = await c.query(LIST_BATCHES, ['999', '1001', 10]);
    assert.deepEqual(
      limited.rows.map((r) => Number(r.batch_id)),
      [2, 3, 5],
    );
    await c.query(`INSERT INTO ingest_batches (batch_id, writer, table_name, row_count, xid) VALUES (10, 'w', 'trades', 1, '999'::xid8)`);
    const group = await c.query(LIST_BATCHES_OF_XID, ['999']);
    assert.deepEqual(
      group.rows.map((r) => Number(r.batch_id)),
      [2, 3, 10],
      'batch ids in numeric order too',
    );
  });
});
