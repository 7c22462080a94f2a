// Least-privilege roles from `kdp migrate`: they exist as NOLOGIN groups with exactly the intended
// grants, migrate stays idempotent, and login users given a group can do what it allows and no more.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client } from 'pg';
import { gathererBit } from '../../src/dedup/provenance';
import { migrate } from '../../src/schema/migrate';
import { GATHERER_ROLES, PRODUCTION_ROLES } from '../../src/schema/roles';
import { startPg, withClient, type TestPg } from '../harness/pg';

let pg: TestPg;
let gathererUrl: string;
let productionUrl: string;
before(async () => {
  pg = await startPg();
  gathererUrl = await pg.newDatabase('kdp_roles_g');
  productionUrl = await pg.newDatabase('kdp_roles_p');
  // Both at once on one cluster: the roles are shared, creating them must not race.
  await Promise.all([
    withClient(gathererUrl, (c) => migrate(c, { kind: 'gatherer', engine: 'postgres' })),
    withClient(productionUrl, (c) => migrate(c, { kind: 'production', engine: 'postgres' })),
  ]);
  await withClient(gathererUrl, async (c) => {
    for (const [user, role] of [
      ['ops_reader', 'kdp_readonly'],
      ['gw', 'kdp_gatherer_writer'],
      ['dr', 'kdp_dedup_reader'],
    ]) {
      await c.query(`CREATE ROLE ${user} LOGIN PASSWORD 'pw' IN ROLE ${role}`);
    }
  });
  await withClient(productionUrl, async (c) => {
    for (const [user, role] of [
      ['dw', 'kdp_dedup_writer'],
      ['arch', 'kdp_archiver'],
    ])
      await c.query(`CREATE ROLE ${user} LOGIN PASSWORD 'pw' IN ROLE ${role}`);
  });
});
after(async () => {
  await pg?.close();
});

function as(url: string, user: string): string {
  const u = new URL(url);
  u.username = user;
  u.password = 'pw';
  return u.toString();
}

async function privileges(url: string, role: string, table: string): Promise<string[]> {
  return withClient(url, async (c) => {
    const out: string[] = [];
    for (const p of ['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) {
      if ((await c.query(`SELECT has_table_privilege($1, $2, $3) AS ok`, [role, table, p])).rows[0].ok) out.push(p);
    }
    return out;
  });
}

const denied = (e: { code?: string }) => e.code === '42501';
const trade = (ts: number) =>
  `INSERT INTO trades (trade_id, ticker, yes_price, no_price, count, exchange_ts, source, received_at, gatherer, conn_id, sid, batch_id)
   VALUES (gen_random_uuid(), 'T', 0.5, 0.5, 1, ${ts}, 'ws', ${ts}, 'g1', 1, 1, 1)`;

describe('roles', () => {
  test('every role exists as a NOLOGIN group', async () => {
    const names = [...new Set([...GATHERER_ROLES, ...PRODUCTION_ROLES].map((r) => r.role))];
    const r = await withClient(gathererUrl, (c) => c.query(`SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = ANY($1) ORDER BY 1`, [names]));
    assert.deepEqual(
      r.rows,
      names.sort().map((rolname) => ({ rolname, rolcanlogin: false })),
    );
  });

  test('gatherer grants', async () => {
    assert.deepEqual(await privileges(gathererUrl, 'kdp_gatherer_writer', 'trades'), ['SELECT', 'INSERT']);
    assert.deepEqual(await privileges(gathererUrl, 'kdp_gatherer_writer', 'orderbook_deltas'), ['SELECT', 'INSERT']);
    assert.deepEqual(await privileges(gathererUrl, 'kdp_gatherer_writer', 'ingest_batches'), ['SELECT', 'INSERT']);
    assert.deepEqual(await privileges(gathererUrl, 'kdp_gatherer_writer', 'gap_ledger'), ['SELECT', 'INSERT', 'UPDATE']);
    assert.deepEqual(await privileges(gathererUrl, 'kdp_gatherer_writer', 'markets'), ['SELECT', 'INSERT', 'UPDATE']);
    assert.deepEqual(await privileges(gathererUrl, 'kdp_gatherer_writer', 'dedup_watermark'), ['SELECT']);
    assert.deepEqual(await privileges(gathererUrl, 'kdp_dedup_reader', 'trades'), ['SELECT']);
    assert.deepEqual(await privileges(gathererUrl, 'kdp_dedup_reader', 'dedup_watermark'), ['SELECT', 'INSERT', 'UPDATE']);
    assert.deepEqual(await privileges(gathererUrl, 'kdp_readonly', 'gap_ledger'), ['SELECT']);
    const seq = await withClient(gathererUrl, (c) => c.query(`SELECT has_sequence_privilege('kdp_gatherer_writer', 'ingest_batch_id_seq', 'USAGE') AS ok`));
    assert.equal(seq.rows[0].ok, true);
  });

  test('production grants', async () => {
    // UPDATE: delivered_by bits of later copies; DELETE: a whole-second trade replaced by its finer copy.
    assert.deepEqual(await privileges(productionUrl, 'kdp_dedup_writer', 'trades'), ['SELECT', 'INSERT', 'UPDATE', 'DELETE']);
    assert.deepEqual(await privileges(productionUrl, 'kdp_dedup_writer', 'gatherer_bits'), ['SELECT', 'INSERT']);
    for (const t of ['markets', 'events', 'series', 'gap_ledger', 'dedup_cursors']) {
      assert.deepEqual(await privileges(productionUrl, 'kdp_dedup_writer', t), ['SELECT', 'INSERT', 'UPDATE'], t);
    }
    assert.deepEqual(await privileges(productionUrl, 'kdp_dedup_writer', 'export_cursors'), ['SELECT']);
    assert.deepEqual(await privileges(productionUrl, 'kdp_archiver', 'trades'), ['SELECT']);
    assert.deepEqual(await privileges(productionUrl, 'kdp_archiver', 'export_cursors'), ['SELECT', 'INSERT', 'UPDATE', 'DELETE']);
    assert.deepEqual(await privileges(productionUrl, 'kdp_readonly', 'dedup_cursors'), ['SELECT']);
    // Grants are per database: the gatherer-only role has nothing on production's tables.
    assert.deepEqual(await privileges(productionUrl, 'kdp_gatherer_writer', 'trades'), []);
  });

  test('a login user in kdp_readonly can read but not write', async () => {
    const c = new Client({ connectionString: as(gathererUrl, 'ops_reader') });
    await c.connect();
    try {
      assert.equal((await c.query(`SELECT count(*)::int AS n FROM trades`)).rows[0].n, 0);
      await assert.rejects(c.query(trade(1_795_435_200_000_000)), denied);
      await assert.rejects(c.query(`UPDATE markets SET status = 'x'`), denied);
      await assert.rejects(c.query(`DELETE FROM gap_ledger`), denied);
    } finally {
      await c.end();
    }
  });

  test('the gatherer writer writes rows and batches but cannot delete; the dedup writer cannot touch export cursors', async () => {
    await withClient(as(gathererUrl, 'gw'), async (c) => {
      await c.query(`INSERT INTO ingest_batches (batch_id, writer, table_name, row_count) VALUES (nextval('ingest_batch_id_seq'), 'w1', 'trades', 1)`);
      await c.query(trade(1_795_435_200_000_001));
      await assert.rejects(c.query(`DELETE FROM trades`), denied);
      await assert.rejects(c.query(`INSERT INTO dedup_watermark (merged_xid, merged_batch_id, updated_at) VALUES ('1', 1, 1)`), denied);
    });
    await withClient(as(gathererUrl, 'dr'), async (c) => {
      await c.query(`INSERT INTO dedup_watermark (merged_xid, merged_batch_id, updated_at) VALUES ('1', 1, 1)`);
      await assert.rejects(c.query(trade(1_795_435_200_000_002)), denied);
    });
    await withClient(as(productionUrl, 'dw'), async (c) => {
      await c.query(`CREATE TEMP TABLE staging_trades (LIKE trades)`);
      // What the merge does as this role: assign a gatherer's bit, set it on a row, settle a trade copy.
      assert.equal(await gathererBit(c, 'g1', 1), 0);
      await c.query(
        `INSERT INTO trades (trade_id, ticker, yes_price, no_price, count, exchange_ts, source, received_at, gatherer, conn_id, sid, batch_id, merged_at, delivered_by)
         VALUES (gen_random_uuid(), 'T', 0.5, 0.5, 1, 1795435200000003, 'ws', 1795435200000003, 'g1', 1, 1, 1, 0, 1)`,
      );
      assert.equal((await c.query(`UPDATE trades SET delivered_by = delivered_by | 2 WHERE delivered_by & 2 = 0`)).rowCount, 1);
      assert.equal((await c.query(`DELETE FROM trades`)).rowCount, 1);
      await assert.rejects(c.query(`DELETE FROM export_cursors`), denied);
      await assert.rejects(c.query(`CREATE TABLE not_allowed (x int)`), denied);
    });
    await withClient(as(productionUrl, 'arch'), async (c) => {
      await c.query(`INSERT INTO export_cursors VALUES ('trades', 0, 0, 0, 'k', 'c', 0)`);
      await assert.rejects(c.query(`UPDATE markets SET status = 'x'`), denied);
    });
  });

  test('migrate again keeps the roles and grants (idempotent)', async () => {
    const r = await withClient(productionUrl, (c) => migrate(c, { kind: 'production', engine: 'postgres' }));
    assert.deepEqual(r.applied, []);
    assert.deepEqual(await privileges(productionUrl, 'kdp_dedup_writer', 'trades'), ['SELECT', 'INSERT', 'UPDATE', 'DELETE']);
    assert.deepEqual(await privileges(productionUrl, 'kdp_readonly', 'trades'), ['SELECT']);
  });
});
