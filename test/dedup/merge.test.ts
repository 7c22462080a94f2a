// The deduplicator against real PostgreSQL: three gatherer databases with overlapping copies and
// different gaps merge into exactly their union; out-of-order commits are never skipped; gatherers
// down or rebuilt do not lose or confuse anything.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Client } from 'pg';
import { startDeduplicator, type Deduplicator } from '../../src/dedup/service';
import { ORDERBOOK_DELTAS, TIME_SERIES_TABLES, quoteIdent } from '../../src/schema/tables';
import { startPg, type TestPg } from '../harness/pg';
import {
  NOW_US,
  connect,
  copyFor,
  countOf,
  dedupOptions,
  diffKeys,
  makeWorld,
  newDb,
  unionOf,
  writeBatch,
  writeBatchOpen,
  writeCopy,
  writeTruth,
  type Row,
} from './fixtures';

let G: TestPg; // gatherer databases (and the truth)
let H: TestPg; // a second gatherer server: stopped for outages, fresh xids for rebuilds
let P: TestPg; // production
const open: Client[] = [];
before(async () => {
  [G, H, P] = await Promise.all([startPg(), startPg(), startPg()]);
});
after(async () => {
  for (const c of open) await c.end().catch(() => undefined);
  await Promise.all([G?.close(), H?.close(), P?.close()]);
});

const db = (pg: TestPg, kind: 'gatherer' | 'production'): Promise<{ url: string; c: Client }> => newDb(pg, kind, open);

/** Runs cycles until one reports nothing more to do (bounded). */
async function drain(d: Deduplicator, cyclesMax = 500): Promise<{ cycles: number; merged: number; duplicates: number }> {
  let merged = 0;
  let duplicates = 0;
  for (let i = 1; i <= cyclesMax; i++) {
    const r = await d.runOnce();
    merged += r.merged;
    duplicates += r.duplicates;
    if (!r.more) return { cycles: i, merged, duplicates };
  }
  throw new Error('deduplicator did not catch up');
}

const MS = 1_000;

/** A key value as text both sides agree on: exact integers, decimals by value ('0.35' = '0.350000'). */
const norm = (v: unknown): string => {
  const x = String(v);
  if (/^-?\d+$/.test(x)) return BigInt(x).toString();
  return /^-?\d+\.\d+$/.test(x) ? String(Number(x)) : x;
};

/**
 * Per-row provenance against the copies (computed here, not by SQL): every production row's
 * delivered_by is exactly the bits of the gatherers whose copy held its key, and the per-gatherer
 * duplicate query of docs/semantics.md counts, per gatherer, the rows another copy also held.
 */
async function assertDeliveredBy(
  c: Client,
  copies: readonly Record<string, Row[]>[],
  names: readonly string[],
  tables: readonly string[] = TIME_SERIES_TABLES.map((t) => t.name),
): Promise<void> {
  const bits = await c.query(`SELECT gatherer, bit FROM gatherer_bits ORDER BY bit`);
  assert.deepEqual(bits.rows.map((r) => r.gatherer).sort(), [...names].sort(), 'one bit per gatherer name');
  const bitOf = new Map(bits.rows.map((r) => [r.gatherer as string, 1n << BigInt(r.bit)]));
  const keyOf = (t: (typeof TIME_SERIES_TABLES)[number], r: Row): string => JSON.stringify(t.productionKey.map((col) => norm(r[col])));
  for (const t of TIME_SERIES_TABLES.filter((x) => tables.includes(x.name))) {
    const want = new Map<string, bigint>();
    copies.forEach((copy, i) => {
      for (const r of copy[t.name] ?? []) want.set(keyOf(t, r), (want.get(keyOf(t, r)) ?? 0n) | bitOf.get(names[i]!)!);
    });
    const keyCols = t.productionKey.map((col) => `${quoteIdent(col)}::text AS ${quoteIdent(col)}`).join(', ');
    const got = await c.query(`SELECT ${keyCols}, delivered_by::text AS mask FROM ${t.name}`);
    assert.equal(got.rowCount, want.size, `${t.name}: rows`);
    let multi = 0;
    for (const r of got.rows as Row[]) {
      assert.equal(r.mask, want.get(keyOf(t, r))?.toString(), `${t.name} ${keyOf(t, r)}: delivered_by`);
      if (bitCount(BigInt(r.mask as string)) > 1) multi++;
    }
    if (t.name !== 'orderbook_snapshots') assert.ok(multi > 0, `${t.name}: some rows came from several gatherers`);
  }
  const dups = await c.query(`SELECT b.gatherer, count(*)::int AS n FROM orderbook_deltas d JOIN gatherer_bits b
    ON d.delivered_by & (1::bigint << b.bit) <> 0 WHERE d.delivered_by <> (1::bigint << b.bit) GROUP BY 1 ORDER BY 1`);
  const keysOfCopy = copies.map((cp) => new Set((cp.orderbook_deltas ?? []).map((r) => keyOf(ORDERBOOK_DELTAS, r))));
  const expected = names
    .map((name, i) => ({ gatherer: name, n: [...keysOfCopy[i]!].filter((k) => keysOfCopy.some((o, j) => j !== i && o.has(k))).length }))
    .filter((x) => x.n > 0)
    .sort((a, b) => a.gatherer.localeCompare(b.gatherer));
  assert.deepEqual(dups.rows, expected);
}

const bitCount = (m: bigint): number => m.toString(2).replace(/0/g, '').length;

describe('merge of three gatherers', () => {
  for (const roundMerge of [false, true])
    test(`production equals the union of three overlapping copies with different gaps (${roundMerge ? 'one round of all three' : 'one gatherer at a time'})`, async () => {
      const world = makeWorld(1, 400);
      const gaps: Record<string, [number, number][]> = {
        g1: [[NOW_US + 50 * MS, NOW_US + 120 * MS]],
        g2: [
          [NOW_US + 100 * MS, NOW_US + 200 * MS],
          [NOW_US + 380 * MS, NOW_US + 390 * MS],
        ],
        g3: [
          [NOW_US, NOW_US + 60 * MS],
          [NOW_US + 300 * MS, NOW_US + 392 * MS],
        ],
      };
      const copies = Object.entries(gaps).map(([g, gap], i) => copyFor(world, g, gap, 1_000 + i * 700));
      const dbs = await Promise.all(['g1', 'g2', 'g3'].map(() => db(G, 'gatherer')));
      for (let i = 0; i < 3; i++) await writeCopy(dbs[i]!.c, copies[i]!, 23 + i * 10);
      const prod = await db(P, 'production');
      const truth = await db(G, 'production');
      const expected = unionOf(copies);
      await writeTruth(truth.c, expected);
      // Small cycle limits: many cycles, cuts between batches, catch-up mode.
      const d = await startDeduplicator({
        options: dedupOptions(
          dbs.map((x, i) => ({ name: `g${i + 1}`, url: x.url })),
          prod.url,
          { sync: { batchesPerCycleMax: 7, rowsPerCycleMax: 150, roundMerge } },
        ),
        loop: false,
        http: false,
      });
      try {
        const run = await drain(d);
        assert.ok(run.cycles > 3, 'the limits forced several cycles');
        const diff = await diffKeys(prod.c, truth.c);
        for (const [table, x] of Object.entries(diff)) assert.ok(x.equal, `${table}: production ${x.production} rows, expected ${x.truth}`);
        // The window 380-390 ms is missing in g2 and g3: g1 alone filled it.
        assert.ok((await countOf(prod.c, 'trades', `exchange_ts >= ${NOW_US + 380 * MS} AND exchange_ts < ${NOW_US + 390 * MS}`)) > 0);
        // Identical deltas in one microsecond survive as occurrence 0 and 1.
        const twins = await countOf(prod.c, 'orderbook_deltas', 'occurrence = 1');
        assert.equal(twins, expected.orderbook_deltas!.filter((r) => r.occurrence === 1).length);
        assert.ok(twins > 0);
        // Distinct ticker updates of one market in one microsecond are not merged.
        const sameUs = await prod.c.query(`SELECT count(*)::int AS n FROM (SELECT ticker, exchange_ts FROM tickers GROUP BY 1, 2 HAVING count(*) > 1) x`);
        assert.ok(sameUs.rows[0].n > 0);
        // Snapshots are kept per gatherer, with provenance.
        assert.deepEqual((await prod.c.query(`SELECT gatherer, count(*)::int AS n FROM orderbook_snapshots GROUP BY 1 ORDER BY 1`)).rows, [
          { gatherer: 'g1', n: 4 },
          { gatherer: 'g2', n: 4 },
          { gatherer: 'g3', n: 4 },
        ]);
        const readTotal = copies.reduce((s, c) => s + Object.values(c).reduce((a, rows) => a + rows.length, 0), 0);
        const unionTotal = Object.values(expected).reduce((a, rows) => a + rows.length, 0);
        assert.equal(run.merged, unionTotal);
        assert.equal(run.merged + run.duplicates, readTotal);
        // Cursors in production, watermarks published to each gatherer, both at the same xid.
        const cursors = await prod.c.query(`SELECT gatherer, instance_id::text, merged_xid::text FROM dedup_cursors ORDER BY 1`);
        assert.equal(cursors.rowCount, 3);
        for (let i = 0; i < 3; i++) {
          const wm = await dbs[i]!.c.query(`SELECT merged_xid::text, merged_batch_id::text FROM dedup_watermark`);
          assert.equal(wm.rows[0].merged_xid, cursors.rows[i].merged_xid);
          const maxBatch = await dbs[i]!.c.query(`SELECT max(batch_id)::text AS m FROM ingest_batches`);
          assert.equal(wm.rows[0].merged_batch_id, maxBatch.rows[0].m);
        }
        await assertDeliveredBy(prod.c, copies, ['g1', 'g2', 'g3']);
        // Nothing new: a further cycle merges nothing and changes nothing.
        const again = await d.runOnce();
        assert.equal(again.merged + again.duplicates, 0);
      } finally {
        await d.stop();
      }
    });

  test('a batch committed after a later-xid batch (out of order across the cursor) is not skipped', async () => {
    const g = await db(G, 'gatherer');
    const prod = await db(P, 'production');
    const world = makeWorld(2, 30);
    const copy = copyFor(world, 'g1', []);
    const trades = copy.trades!;
    await writeBatch(g.c, 'trades', trades.slice(0, 10));
    // A: a long transaction takes its xid first and keeps its batch uncommitted.
    const a = await connect(g.url);
    open.push(a);
    await a.query('BEGIN');
    const xidA = BigInt((await a.query(`SELECT pg_current_xact_id()::text AS x`)).rows[0].x);
    await writeBatchOpen(a, 'trades', trades.slice(10, 20));
    // B: a later xid, committed first.
    await writeBatch(g.c, 'trades', trades.slice(20, 30));
    const d = await startDeduplicator({
      options: dedupOptions([{ name: 'g1', url: g.url }], prod.url),
      loop: false,
      http: false,
    });
    try {
      await drain(d);
      const cursor = BigInt((await prod.c.query(`SELECT merged_xid::text AS x FROM dedup_cursors`)).rows[0].x);
      assert.ok(cursor <= xidA, 'the cursor stops at the oldest transaction still running');
      assert.equal(await countOf(prod.c, 'trades'), 10, "B waits: its xid is above A's, which may still commit");
      await a.query('COMMIT');
      await drain(d);
      assert.equal(await countOf(prod.c, 'trades'), 30, 'A and B both merged');
      const ids = (await prod.c.query(`SELECT trade_id::text AS id FROM trades ORDER BY 1`)).rows.map((r) => r.id);
      assert.deepEqual(ids, trades.map((t) => t.trade_id as string).sort());
    } finally {
      await d.stop();
    }
  });

  test('two gatherers down for a window: the third alone fills it; they are skipped, not waited for', async () => {
    const g1 = await db(G, 'gatherer');
    const [g2, g3] = [await db(H, 'gatherer'), await db(H, 'gatherer')];
    const prod = await db(P, 'production');
    const truth = await db(G, 'production');
    const world = makeWorld(3, 300);
    const part = (from: number, to: number): [number, number][] => [
      [NOW_US - 1, NOW_US + from * MS],
      [NOW_US + to * MS, NOW_US + 10_000 * MS],
    ];
    const d = await startDeduplicator({
      options: dedupOptions(
        [
          { name: 'g1', url: g1.url },
          { name: 'g2', url: g2.url },
          { name: 'g3', url: g3.url },
        ],
        prod.url,
      ),
      loop: false,
    });
    try {
      const phase1 = ['g1', 'g2', 'g3'].map((n, i) => copyFor(world, n, part(0, 100), 900 + i * 100));
      for (const [i, g] of [g1, g2, g3].entries())
        await writeCopy(g.c, {
          trades: phase1[i]!.trades!,
          orderbook_deltas: phase1[i]!.orderbook_deltas!,
        });
      await drain(d);
      for (const c of [g2.c, g3.c]) await c.end();
      open.splice(open.indexOf(g2.c), 1);
      open.splice(open.indexOf(g3.c), 1);
      await H.cluster!.stopServer();
      const phase2 = copyFor(world, 'g1', part(100, 200));
      await writeCopy(g1.c, { trades: phase2.trades!, orderbook_deltas: phase2.orderbook_deltas! });
      const down = await d.runOnce();
      assert.equal(down.gatherers.g2!.status, 'unreachable');
      assert.equal(down.gatherers.g3!.status, 'unreachable');
      assert.equal(down.gatherers.g1!.status, 'connected');
      assert.ok(down.merged > 0);
      const h = d.health();
      assert.equal(h.status, 'degraded');
      assert.deepEqual(h.gatherers, { g1: 'connected', g2: 'unreachable', g3: 'unreachable' });
      const res = await fetch(`http://127.0.0.1:${d.healthPort}/health`);
      assert.equal(res.status, 200);
      assert.equal(((await res.json()) as { gatherers: Record<string, string> }).gatherers.g2, 'unreachable');
      await H.cluster!.startServer();
      const phase3 = ['g1', 'g2', 'g3'].map((n, i) => copyFor(world, n, part(200, 300), 900 + i * 100));
      const g2b = await connect(g2.url);
      const g3b = await connect(g3.url);
      open.push(g2b, g3b);
      for (const [i, c] of [g1.c, g2b, g3b].entries())
        await writeCopy(c, {
          trades: phase3[i]!.trades!,
          orderbook_deltas: phase3[i]!.orderbook_deltas!,
        });
      await drain(d);
      assert.equal(d.health().gatherers.g2, 'connected');
      const expected = unionOf(
        [...phase1, phase2, ...phase3].map((c) => ({
          trades: c.trades!,
          orderbook_deltas: c.orderbook_deltas!,
        })),
      );
      await writeTruth(truth.c, expected);
      const diff = await diffKeys(prod.c, truth.c);
      assert.ok(diff.trades!.equal && diff.orderbook_deltas!.equal, JSON.stringify(diff));
      assert.equal(diff.trades!.truth, 300);
    } finally {
      await d.stop();
    }
  });

  test('a rebuilt gatherer (new instance_id, xids restarting low) gets a fresh cursor and nothing is skipped', async () => {
    const old = await db(G, 'gatherer');
    const prod = await db(P, 'production');
    const world = makeWorld(4, 120);
    const first = copyFor(world, 'g1', [[NOW_US + 60 * MS, NOW_US + 1_000 * MS]]);
    await writeCopy(old.c, { trades: first.trades! });
    const ledgerRow = (c: Client, detectedAt: number): Promise<unknown> =>
      c.query(
        `INSERT INTO gap_ledger (gatherer, conn_id, sid, kind, window_start, detected_at, updated_at)
         VALUES ('g1', 1, 3, 'reconnect', $1, $1, $1)`,
        [detectedAt],
      );
    await ledgerRow(old.c, NOW_US);
    // Push the old server's xids far above what the fresh server will use.
    for (let i = 0; i < 1500; i++) await old.c.query('SELECT pg_current_xact_id()');
    const d1 = await startDeduplicator({
      options: dedupOptions([{ name: 'g1', url: old.url }], prod.url),
      loop: false,
      http: false,
    });
    await drain(d1);
    await d1.stop();
    const oldCursor = BigInt((await prod.c.query(`SELECT merged_xid::text AS x FROM dedup_cursors`)).rows[0].x);
    // The rebuilt gatherer: a new database on another server, same name in the config.
    const rebuilt = await db(H, 'gatherer');
    const second = copyFor(world, 'g1', [[NOW_US, NOW_US + 40 * MS]]);
    await writeCopy(rebuilt.c, { trades: second.trades! });
    await ledgerRow(rebuilt.c, NOW_US + 7_000_000); // gap_id 1 again, a different gap
    const maxXid = BigInt((await rebuilt.c.query(`SELECT max(xid)::text AS x FROM ingest_batches`)).rows[0].x);
    assert.ok(maxXid < oldCursor, `precondition: rebuilt xids (${maxXid}) below the old cursor (${oldCursor})`);
    const d2 = await startDeduplicator({
      options: dedupOptions([{ name: 'g1', url: rebuilt.url }], prod.url),
      loop: false,
      http: false,
    });
    try {
      await drain(d2);
      assert.equal(await countOf(prod.c, 'trades'), 120, 'old copy 0-60 ms + rebuilt copy 40-120 ms = everything once');
      const cursors = await prod.c.query(`SELECT instance_id::text FROM dedup_cursors WHERE gatherer = 'g1'`);
      assert.equal(cursors.rowCount, 2, 'one cursor per gatherer database instance');
      // The rebuilt database's gap_id 1 does not overwrite the old gap 1.
      const inst = (await rebuilt.c.query(`SELECT instance_id::text AS i FROM kdp_schema`)).rows[0].i as string;
      const ledger = await prod.c.query(`SELECT gatherer, gap_id::int, detected_at::text FROM gap_ledger ORDER BY detected_at`);
      assert.deepEqual(ledger.rows, [
        { gatherer: 'g1', gap_id: 1, detected_at: String(NOW_US) },
        { gatherer: `g1@${inst.slice(0, 8)}`, gap_id: 1, detected_at: String(NOW_US + 7_000_000) },
      ]);
      assert.equal(d2.health().cursors.g1!.instance_id, (await rebuilt.c.query(`SELECT instance_id::text AS i FROM kdp_schema`)).rows[0].i);
    } finally {
      await d2.stop();
    }
  });
  test('a gatherer failing mid-merge (its COPY errors) leaves production untouched; the next cycle merges everything', async () => {
    const g = await db(G, 'gatherer');
    const prod = await db(P, 'production');
    const copy = copyFor(makeWorld(6, 60), 'g1', []);
    await writeCopy(g.c, { trades: copy.trades!, orderbook_deltas: copy.orderbook_deltas! });
    const d = await startDeduplicator({
      options: dedupOptions([{ name: 'g1', url: g.url }], prod.url),
      loop: false,
      http: false,
    });
    try {
      // Deltas stream first (after trades); breaking that table makes the second COPY fail.
      await g.c.query('ALTER TABLE orderbook_deltas RENAME TO orderbook_deltas_broken');
      const failed = await d.runOnce();
      assert.equal(failed.gatherers.g1!.status, 'error');
      assert.equal(failed.rds, 'connected');
      assert.equal(await countOf(prod.c, 'trades'), 0, 'the trades streamed before the failure were rolled back');
      assert.equal(await countOf(prod.c, 'dedup_cursors'), 0);
      await g.c.query('ALTER TABLE orderbook_deltas_broken RENAME TO orderbook_deltas');
      await drain(d);
      assert.equal(await countOf(prod.c, 'trades'), copy.trades!.length);
      assert.equal(await countOf(prod.c, 'orderbook_deltas'), copy.orderbook_deltas!.length);
      assert.equal(d.health().gatherers.g1, 'connected');
    } finally {
      await d.stop();
    }
  });

  test('one gatherer of a round failing mid-stream: its staged rows roll back, the others commit with their bits; it catches up later', async () => {
    const world = makeWorld(7, 90);
    const copies = ['g1', 'g2', 'g3'].map((n, i) => copyFor(world, n, [], 900 + i * 100));
    const dbs = await Promise.all(['g1', 'g2', 'g3'].map(() => db(G, 'gatherer')));
    for (const [i, g] of dbs.entries()) await writeCopy(g.c, { trades: copies[i]!.trades!, orderbook_deltas: copies[i]!.orderbook_deltas! });
    const prod = await db(P, 'production');
    const d = await startDeduplicator({
      options: dedupOptions(
        dbs.map((x, i) => ({ name: `g${i + 1}`, url: x.url })),
        prod.url,
      ),
      loop: false,
      http: false,
    });
    try {
      // g2's trades stream, then its deltas COPY fails: in the middle of the round's staging.
      await dbs[1]!.c.query('ALTER TABLE orderbook_deltas RENAME TO orderbook_deltas_broken');
      const r = await d.runOnce();
      assert.deepEqual(Object.fromEntries(Object.entries(r.gatherers).map(([n, c]) => [n, c.status])), { g1: 'connected', g2: 'error', g3: 'connected' });
      assert.equal(await countOf(prod.c, 'dedup_cursors'), 2);
      const bits = new Map(
        (await prod.c.query(`SELECT gatherer, (1::bigint << bit)::text AS m FROM gatherer_bits`)).rows.map((b) => [b.gatherer, BigInt(b.m)]),
      );
      const g1g3 = (bits.get('g1')! | bits.get('g3')!).toString();
      // Nothing of g2's staged trades survived the rollback: no row names it.
      for (const t of ['trades', 'orderbook_deltas']) {
        assert.equal(await countOf(prod.c, t), copies[0]![t]!.length, t);
        assert.equal(await countOf(prod.c, t, `delivered_by <> ${g1g3}`), 0, `${t}: every row from g1 and g3, none from g2`);
      }
      await dbs[1]!.c.query('ALTER TABLE orderbook_deltas_broken RENAME TO orderbook_deltas');
      await drain(d);
      await assertDeliveredBy(
        prod.c,
        copies.map((c) => ({ trades: c.trades!, orderbook_deltas: c.orderbook_deltas! })),
        ['g1', 'g2', 'g3'],
        ['trades', 'orderbook_deltas'],
      );
    } finally {
      await d.stop();
    }
  });
});

describe('gap ledger, registry and frozen feeds', () => {
  test('gap ledger rows sync and later updates (recovered) follow; markets get market_status; newest updated_at wins', async () => {
    const [g1, g2] = [await db(G, 'gatherer'), await db(G, 'gatherer')];
    const prod = await db(P, 'production');
    const gap = (c: Client, name: string, at: number): Promise<unknown> =>
      c.query(
        `INSERT INTO gap_ledger (gatherer, conn_id, sid, channel, kind, tickers, expected_seq, got_seq, window_start, detected_at, updated_at)
         VALUES ($1, 2, 7, 'orderbook_delta', 'seq_gap', '{KXBTCD-26NOV2312-T97499.99}', 1041, 1045, $2, $2, $2)`,
        [name, at],
      );
    await gap(g1.c, 'g1', NOW_US);
    await gap(g2.c, 'g2', NOW_US + 5);
    const market = (c: Client, status: string, updatedAt: number, title = 'BTC above 97,500'): Promise<unknown> =>
      c.query(
        `INSERT INTO markets (ticker, event_ticker, series_ticker, status, open_time, close_time, raw, updated_at)
         VALUES ('KXBTCD-26NOV2312-T97499.99', 'KXBTCD-26NOV2312', 'KXBTCD', $1, $2, $3, $4, $5)
         ON CONFLICT (ticker) DO UPDATE SET status = EXCLUDED.status, raw = EXCLUDED.raw, updated_at = EXCLUDED.updated_at`,
        [status, NOW_US, NOW_US + 3_600_000_000, JSON.stringify({ title }), updatedAt],
      );
    await g1.c.query(
      `INSERT INTO series (series_ticker, title, category, frequency, raw, updated_at) VALUES ('KXBTCD', 'Bitcoin daily', 'Crypto', 'daily', '{}', $1)`,
      [NOW_US],
    );
    await g1.c.query(
      `INSERT INTO events (event_ticker, series_ticker, title, mutually_exclusive, raw, updated_at) VALUES ('KXBTCD-26NOV2312', 'KXBTCD', 'BTC at noon', true, '{}', $1)`,
      [NOW_US],
    );
    await market(g1.c, 'active', NOW_US + 10);
    await market(g2.c, 'initialized', NOW_US + 5);
    const d = await startDeduplicator({
      options: dedupOptions(
        [
          { name: 'g1', url: g1.url },
          { name: 'g2', url: g2.url },
        ],
        prod.url,
        { sync: { metadataIntervalMs: 10 } },
      ),
      loop: false,
      http: false,
    });
    try {
      await drain(d);
      assert.equal(await countOf(prod.c, 'gap_ledger'), 2);
      const m = await prod.c.query(`SELECT status, market_status FROM markets`);
      assert.deepEqual(m.rows, [{ status: 'active', market_status: 'open' }], 'g2 had an older row: g1 wins');
      assert.equal(await countOf(prod.c, 'series'), 1);
      assert.equal(await countOf(prod.c, 'events'), 1);
      // Recovery marks the gap later; the market closes on g2 (newer than g1's row).
      const later = Date.now() * 1000;
      await g1.c.query(`UPDATE gap_ledger SET recovered = true, recovered_at = $1, recovery_method = 'get_snapshot', updated_at = $1`, [later]);
      await market(g2.c, 'closed', NOW_US + 20);
      await new Promise((r) => setTimeout(r, 20));
      await drain(d);
      const g = await prod.c.query(`SELECT gatherer, recovered, recovery_method FROM gap_ledger ORDER BY gatherer`);
      assert.deepEqual(g.rows, [
        { gatherer: 'g1', recovered: true, recovery_method: 'get_snapshot' },
        { gatherer: 'g2', recovered: false, recovery_method: null },
      ]);
      assert.deepEqual((await prod.c.query(`SELECT market_status FROM markets`)).rows, [{ market_status: 'closed' }]);
      const lc = await prod.c.query(`SELECT ledger_updated_at::text AS l FROM dedup_cursors WHERE gatherer = 'g1'`);
      assert.equal(lc.rows[0].l, String(later));
    } finally {
      await d.stop();
    }
  });

  test('a gatherer that stops recording a market the others record is flagged (health + metric)', async () => {
    const dbs = [await db(G, 'gatherer'), await db(G, 'gatherer'), await db(G, 'gatherer')];
    const prod = await db(P, 'production');
    const world = makeWorld(5, 200, NOW_US, 20 * MS); // 4 s of exchange time
    const frozenTicker = 'KXETHD-26NOV2312-T3599.99';
    for (const [i, g] of dbs.entries()) {
      const copy = copyFor(world, `g${i + 1}`, []);
      // g3's feed of one market froze after 1 s (its connection stayed up).
      const deltas =
        i === 2 ? copy.orderbook_deltas!.filter((r: Row) => r.ticker !== frozenTicker || Number(r.exchange_ts) < NOW_US + 1_000 * MS) : copy.orderbook_deltas!;
      await writeCopy(g.c, { orderbook_deltas: deltas });
    }
    const d = await startDeduplicator({
      options: dedupOptions(
        dbs.map((g, i) => ({ name: `g${i + 1}`, url: g.url })),
        prod.url,
        { frozenFeed: { windowMs: 1_500 } },
      ),
      loop: false,
    });
    try {
      await drain(d);
      // Window 1.5 s: g3's last row of the market (< 1 s) is older than the others' (~4 s) by more.
      const h = d.health();
      assert.deepEqual(h.frozen_feed_markets, { g1: 0, g2: 0, g3: 1 });
      assert.deepEqual(h.frozen_feed_examples.g3, [frozenTicker]);
      assert.equal(h.status, 'degraded');
      const text = await (await fetch(`http://127.0.0.1:${d.metricsPort}/metrics`)).text();
      assert.match(text, /dedup_frozen_feed_markets\{gatherer="g3"\} 1/);
      assert.match(text, /dedup_frozen_feed_markets\{gatherer="g1"\} 0/);
      for (const name of [
        'dedup_sync_lag_seconds{gatherer="g1"}',
        'dedup_duplicate_rate',
        'dedup_gatherer_health{gatherer="g2"} 1',
        'dedup_rds_connected 1',
        'dedup_rows_merged_total{table="orderbook_deltas"}',
        'dedup_rows_duplicate_total{table="orderbook_deltas"}',
        'dedup_cycle_duration_seconds_bucket',
      ]) {
        assert.ok(text.includes(name), `metrics include ${name}`);
      }
      const connections = Number(/^dedup_rds_connections (\d+)$/m.exec(text)?.[1]);
      const max = Number(/^dedup_rds_max_connections (\d+)$/m.exec(text)?.[1]);
      assert.ok(connections >= 1 && connections <= max, `production backends sampled: ${connections} of ${max}`);
      const health = await fetch(`http://127.0.0.1:${d.healthPort}/health`);
      const body = (await health.json()) as {
        status: string;
        rds: string;
        gatherers: Record<string, string>;
      };
      assert.equal(health.status, 200);
      assert.equal(body.rds, 'connected');
      assert.deepEqual(body.gatherers, { g1: 'connected', g2: 'connected', g3: 'connected' });
    } finally {
      await d.stop();
    }
  });
});
