// classifyDbError against the errors the real `pg` driver throws (not hand-made objects): the
// connection timeouts of pg-pool and pg's Client carry no code, only a message.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { after, before, test } from 'node:test';
import { Client, Pool } from 'pg';
import { classifyDbError } from '../../src/core/errors';
import { startPg, type TestPg } from '../harness/pg';

let pg: TestPg;
before(async () => {
  pg = await startPg();
});
after(async () => {
  await pg?.close();
});

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

test('a pool starved past connectionTimeoutMillis is a retryable database timeout', { timeout: 60_000 }, async () => {
  const url = await pg.newDatabase();
  const pool = new Pool({ connectionString: url, max: 1, connectionTimeoutMillis: 200 });
  const held = await pool.connect();
  try {
    const err = await rejection(pool.connect());
    const coded = classifyDbError(err);
    assert.equal(coded.code, 'KDP_ERR_DB_TIMEOUT', `classified ${(err as Error).message} as ${coded.code}`);
    assert.equal(coded.retryable, true);
  } finally {
    held.release();
    await pool.end();
  }
});

test(
  'a connection attempt the server never answers times out as a retryable database timeout, from a Client and from a Pool',
  { timeout: 60_000 },
  async () => {
    // A listener that accepts and never speaks: the driver's own connection timeout fires.
    const silent: Server = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as { port: number }).port;
    const target = { host: '127.0.0.1', port, user: 'kdp', database: 'kdp', connectionTimeoutMillis: 200 };
    try {
      const client = new Client(target);
      const fromClient = classifyDbError(await rejection(client.connect()));
      assert.equal(fromClient.code, 'KDP_ERR_DB_TIMEOUT', fromClient.message);
      assert.equal(fromClient.retryable, true);
      const pool = new Pool(target);
      const fromPool = classifyDbError(await rejection(pool.connect()));
      await pool.end();
      assert.equal(fromPool.code, 'KDP_ERR_DB_TIMEOUT', fromPool.message);
      assert.equal(fromPool.retryable, true);
    } finally {
      silent.close();
    }
  },
);

test(
  'real server errors are classed: disk full (53100), schema mismatch (missing table, missing column), a missing grant is a plain query error',
  { timeout: 60_000 },
  async () => {
    const url = await pg.newDatabase();
    const client = new Client({ connectionString: url });
    await client.connect();
    try {
      await client.query('CREATE TABLE t (a int)');
      await client.query(
        `CREATE FUNCTION full_disk() RETURNS void LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'could not extend file' USING ERRCODE = '53100'; END $$`,
      );
      const cases: [string, string][] = [
        ['SELECT full_disk()', 'KDP_ERR_DB_DISK_FULL'],
        ['SELECT * FROM no_such_table', 'KDP_ERR_DB_SCHEMA'],
        ['SELECT no_such_column FROM t', 'KDP_ERR_DB_SCHEMA'],
        ['SET ROLE pg_read_all_data; INSERT INTO t VALUES (1)', 'KDP_ERR_DB_QUERY'],
      ];
      for (const [sql, code] of cases) {
        const coded = classifyDbError(await rejection(client.query(sql)));
        assert.equal(coded.code, code, `${sql}: ${coded.message}`);
        await client.query('RESET ROLE');
      }
    } finally {
      await client.end();
    }
  },
);
