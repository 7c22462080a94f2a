// The merge's two INSERT paths against real PostgreSQL: the merge-join fast path (plain INSERT of
// the deduplicated staged keys production lacks) and its fallback to ON CONFLICT when a writer
// outside the merge commits one of those keys meanwhile. Both must leave production holding each
// key exactly once and count merged + duplicates = rows read, whatever production already holds.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import type { Client } from 'pg';
import { dropLink, openGatherer, openProduction, type Link } from '../../src/dedup/connect';
import { mergeOnce, type MergeContext, type MergeResult } from '../../src/dedup/merge';
import { gathererBit, maskOf } from '../../src/dedup/provenance';
import { startPg, type TestPg } from '../harness/pg';
import { NOW_US, connect, copyFor, countOf, dedupOptions, diffKeys, makeWorld, newDb, unionOf, writeCopy, writeRows, writeTruth, type Row } from './fixtures';

let PG: TestPg;
const clients: Client[] = [];
const links: Link[] = [];
before(async () => {
  PG = await startPg();
});
after(async () => {
  for (const l of links) dropLink(l);
  for (const c of clients) await c.end().catch(() => undefined);
  await PG?.close();
});

const db = (kind: 'gatherer' | 'production'): Promise<{ url: string; c: Client }> => newDb(PG, kind, clients);

const ctxFor = (name: string, fastPathSpanMaxUs: number, deliveredMask: bigint): MergeContext => ({
  name,
  fastPathSpanMaxUs,
  limits: { batchesMax: 10_000, rowsMax: 10_000_000 },
  trackMarkets: false,
  nowUs: () => Date.now() * 1000,
  deliveredMask,
});

/** mergeOnce with fresh deduplicator sessions (staging tables created as the service does). */
async function mergeWith(name: string, gathererUrl: string, productionUrl: string, spanMaxUs = 3_600_000_000): Promise<MergeResult> {
  const opts = dedupOptions([{ name, url: gathererUrl }], productionUrl);
  const g = await openGatherer(opts.gatherers[0]!);
  links.push(g);
  const p = await openProduction(opts.production);
  links.push(p);
  const mask = maskOf(await gathererBit(p.client, name, Date.now() * 1000));
  return mergeOnce(ctxFor(name, spanMaxUs, mask), g.client, p.client);
}

const pathsOf = (r: MergeResult): Record<string, string | undefined> => Object.fromEntries([...r.tables].map(([t, c]) => [t, c.path]));

describe('merge INSERT paths', () => {
  test('overlapping copies take the fast path; production is their union, duplicates counted', async () => {
    const world = makeWorld(21, 120);
    const copies = [copyFor(world, 'g1', [[NOW_US + 20_000, NOW_US + 50_000]]), copyFor(world, 'g2', [[NOW_US + 70_000, NOW_US + 100_000]])];
    const prod = await db('production');
    const truth = await db('production');
    await writeTruth(truth.c, unionOf(copies));
    let merged = 0;
    let read = 0;
    for (const [i, copy] of copies.entries()) {
      const g = await db('gatherer');
      await writeCopy(g.c, copy, 17);
      const r = await mergeWith(`g${i + 1}`, g.url, prod.url);
      assert.deepEqual(pathsOf(r), {
        trades: 'fast',
        orderbook_deltas: 'fast',
        orderbook_snapshots: 'fast',
        tickers: 'fast',
        lifecycle_events: 'conflict', // its key has no time column to bound the anti-join
      });
      for (const c of r.tables.values()) {
        assert.equal(c.merged + c.duplicates, c.read);
        merged += c.merged;
        read += c.read;
      }
    }
    const diff = await diffKeys(prod.c, truth.c);
    for (const [table, d] of Object.entries(diff)) assert.ok(d.equal, `${table}: ${JSON.stringify(d)}`);
    const expected = Object.values(diff).reduce((n, d) => n + d.truth, 0);
    assert.equal(merged, expected);
    assert.ok(read > merged, 'the copies overlap');
  });

  test('staged rows spanning more than fastPathSpanMaxMs go row by row (old backfill + live rows)', async () => {
    const world = makeWorld(23, 40);
    const copy = copyFor(world, 'g1', []);
    const old = copyFor(makeWorld(24, 10, NOW_US - 2 * 3_600_000_000), 'g1', []);
    const g = await db('gatherer');
    const prod = await db('production');
    await writeRows(g.c, 'trades', [...copy.trades!, ...old.trades!], 9);
    const r = await mergeWith('g1', g.url, prod.url);
    const c = r.tables.get('trades')!;
    assert.equal(c.path, 'conflict');
    assert.equal(c.merged, copy.trades!.length + old.trades!.length);
    const wide = await mergeWith('g1', g.url, prod.url);
    assert.equal(wide.batches, 0);
  });

  test('a gatherer repeating a key within one cycle (two connections): each key once, on the fast path', async () => {
    const world = makeWorld(22, 80);
    const copy = copyFor(world, 'g1', []);
    const deltas = copy.orderbook_deltas!;
    // The same changes recorded again over a second connection, in later batches of the same cycle.
    // Received over the second connection a millisecond later, but staged first.
    const again = deltas.slice(10, 30).map((r) => ({ ...r, conn_id: 9, sid: 9, received_at: Number(r.received_at) + 1_000 }));
    const g = await db('gatherer');
    const prod = await db('production');
    await writeRows(g.c, 'orderbook_deltas', [...again, ...deltas], 25);
    const r = await mergeWith('g1', g.url, prod.url);
    const c = r.tables.get('orderbook_deltas')!;
    assert.equal(c.path, 'fast');
    assert.equal(c.read, deltas.length + again.length);
    assert.equal(c.merged, deltas.length);
    assert.equal(c.duplicates, again.length);
    const n = await prod.c.query(`SELECT count(*)::int AS n, count(DISTINCT merged_at)::int AS m FROM orderbook_deltas`);
    assert.deepEqual(n.rows[0], { n: deltas.length, m: 1 });
    // The copy kept is the one received first, whatever the staging order.
    assert.equal(await countOf(prod.c, 'orderbook_deltas', 'conn_id = 9'), 0);
    const next = await mergeWith('g1', g.url, prod.url);
    assert.equal(next.batches, 0, 'the cursor advanced with the merge');
  });

  test('a writer outside the merge commits a staged key meanwhile: the fast path falls back to ON CONFLICT, each key once', async () => {
    const world = makeWorld(26, 60);
    const deltas = copyFor(world, 'g1', []).orderbook_deltas!;
    const g = await db('gatherer');
    const prod = await db('production');
    await writeRows(g.c, 'orderbook_deltas', deltas, 25);
    // The outside writer holds one of the keys uncommitted: the merge's snapshot does not see it,
    // its INSERT waits on the key and fails with unique_violation once the writer commits.
    const outside = await connect(prod.url);
    clients.push(outside);
    await outside.query('BEGIN');
    await writeTruth(outside, { orderbook_deltas: [deltas[7]!] });
    await outside.query('UPDATE orderbook_deltas SET delivered_by = 0');
    const merging = mergeWith('g1', g.url, prod.url);
    const waiting = async (): Promise<boolean> =>
      (await prod.c.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'kdp-dedup' AND wait_event_type = 'Lock'`)).rows[0].n > 0;
    while (!(await waiting())) await new Promise((r) => setTimeout(r, 20));
    await outside.query('COMMIT');
    const r = await merging;
    const c = r.tables.get('orderbook_deltas')!;
    assert.equal(c.path, 'fallback');
    assert.deepEqual(
      { read: c.read, merged: c.merged, duplicates: c.duplicates, marked: c.marked },
      { read: deltas.length, merged: deltas.length - 1, duplicates: 1, marked: 1 },
    );
    assert.equal(await countOf(prod.c, 'orderbook_deltas'), deltas.length);
    // The row the outside writer committed gains the merging gatherer's bit like every other row.
    const bit = (await prod.c.query(`SELECT (1::bigint << bit)::text AS m FROM gatherer_bits WHERE gatherer = 'g1'`)).rows[0].m as string;
    assert.equal(await countOf(prod.c, 'orderbook_deltas', `delivered_by = ${bit}`), deltas.length);
  });

  test('delivered_by: a later copy adds its bit on either path (a replay writes nothing); rows merged before migration 4 stay unknown (NULL)', async () => {
    const world = makeWorld(25, 60);
    const prod = await db('production');
    const [g1, g2, g3] = [await db('gatherer'), await db('gatherer'), await db('gatherer')];
    for (const g of [g1, g2, g3]) await writeCopy(g.c, copyFor(world, 'x', []), 19);
    await mergeWith('g1', g1.url, prod.url);
    // Half the deltas as a database merged before migration 4 holds them: provenance unknown.
    await prod.c.query(`UPDATE orderbook_deltas SET delivered_by = NULL WHERE occurrence = 0 AND exchange_ts % 2 = 0`);
    const unknown = await countOf(prod.c, 'orderbook_deltas', 'delivered_by IS NULL');
    assert.ok(unknown > 0);
    const r2 = await mergeWith('g2', g2.url, prod.url);
    const deltas = r2.tables.get('orderbook_deltas')!;
    assert.deepEqual({ merged: deltas.merged, marked: deltas.marked }, { merged: 0, marked: deltas.read - unknown });
    assert.equal(r2.tables.get('lifecycle_events')!.path, 'conflict');
    const bits = new Map((await prod.c.query(`SELECT gatherer, bit FROM gatherer_bits`)).rows.map((b) => [b.gatherer, 1n << BigInt(b.bit)]));
    const both = (bits.get('g1')! | bits.get('g2')!).toString();
    for (const t of ['trades', 'orderbook_deltas', 'tickers', 'lifecycle_events']) {
      const m = await prod.c.query(`SELECT DISTINCT delivered_by::text AS m FROM ${t} ORDER BY 1`);
      assert.deepEqual(
        m.rows.map((x) => x.m),
        t === 'orderbook_deltas' ? [both, null] : [both],
        t,
      );
    }
    assert.equal(await countOf(prod.c, 'orderbook_deltas', 'delivered_by IS NULL'), unknown);
    // g3 is a rebuilt g2 (same name, new database): its copies are g2's again, nothing to write.
    const r3 = await mergeWith('g2', g3.url, prod.url);
    for (const c of r3.tables.values()) assert.equal(c.marked ?? 0, 0);
  });

  test('property: any overlap, repeats and time spread merge to exactly the union of keys', async () => {
    const g = await db('gatherer');
    const prod = await db('production');
    const truth = await db('production');
    const HOUR = 3_600_000_000;
    // Offsets cover one microsecond collisions, other hours, another day and the DEFAULT partition.
    const offsets = [0, 0, 1, 2, HOUR, 26 * HOUR, 40 * 24 * HOUR];
    const event = fc.record({
      at: fc.constantFrom(...offsets),
      ticker: fc.constantFrom('KXA-26NOV23-T1', 'KXB-26NOV23-T2'),
      side: fc.constantFrom('yes', 'no'),
      price: fc.constantFrom('0.35', '0.36'),
      delta: fc.constantFrom('5.00', '-5.00', '0.50'),
      occurrence: fc.integer({ min: 0, max: 1 }),
    });
    const arb = fc.record({
      events: fc.uniqueArray(event, {
        minLength: 1,
        maxLength: 40,
        selector: (e) => JSON.stringify([e.at, e.ticker, e.side, e.price, e.delta, e.occurrence]),
      }),
      // Per merge step: which events that gatherer copy holds and which it repeats.
      steps: fc.array(
        fc.record({
          hold: fc.array(fc.boolean(), { minLength: 40, maxLength: 40 }),
          repeat: fc.array(fc.boolean(), { minLength: 40, maxLength: 40 }),
        }),
        { minLength: 1, maxLength: 4 },
      ),
      preexisting: fc.array(fc.boolean(), { minLength: 40, maxLength: 40 }),
      // Row by row always, the default hour (most spans exceed it), or any span.
      spanMaxUs: fc.constantFrom(0, 3_600_000_000, Number.MAX_SAFE_INTEGER),
    });
    const pathsSeen = new Set<string | undefined>();
    await fc.assert(
      fc.asyncProperty(arb, async ({ events, steps, preexisting, spanMaxUs }) => {
        for (const c of [prod.c, truth.c]) await c.query('TRUNCATE orderbook_deltas, dedup_cursors');
        const row = (e: (typeof events)[number], conn: number): Row => ({
          ticker: e.ticker,
          side: e.side,
          price: e.price,
          delta: e.delta,
          exchange_ts: NOW_US + e.at,
          occurrence: e.occurrence,
          received_at: NOW_US,
          gatherer: 'g',
          conn_id: conn,
          sid: 1,
          seq: null,
        });
        const expected = new Set<number>();
        // Rows production already holds (merged earlier by some cycle).
        const held = events.filter((_, i) => preexisting[i]);
        events.forEach((_, i) => preexisting[i] && expected.add(i));
        await writeTruth(prod.c, { orderbook_deltas: held.map((e) => row(e, 0)) });
        let merged = 0;
        for (const step of steps) {
          await g.c.query('TRUNCATE orderbook_deltas, ingest_batches');
          const rows: Row[] = [];
          events.forEach((e, i) => {
            if (!step.hold[i]) return;
            rows.push(row(e, 1));
            if (step.repeat[i]) rows.push(row(e, 2));
          });
          if (rows.length === 0) continue;
          await writeRows(g.c, 'orderbook_deltas', rows, 7);
          await prod.c.query('TRUNCATE dedup_cursors');
          const r = await mergeWith('g', g.url, prod.url, spanMaxUs);
          const c = r.tables.get('orderbook_deltas')!;
          assert.equal(c.read, rows.length);
          assert.equal(c.merged + c.duplicates, c.read);
          merged += c.merged;
          events.forEach((_, i) => step.hold[i] && expected.add(i));
          pathsSeen.add(c.path);
        }
        await writeTruth(truth.c, {
          orderbook_deltas: [...expected].map((i) => row(events[i]!, 0)),
        });
        const d = (await diffKeys(prod.c, truth.c)).orderbook_deltas!;
        assert.ok(d.equal, JSON.stringify(d));
        assert.equal(merged, expected.size - held.length);
        for (const l of links.splice(0)) dropLink(l);
      }),
      { numRuns: 15 },
    );
    assert.ok(pathsSeen.has('fast') && pathsSeen.has('conflict'), `paths exercised: ${[...pathsSeen]}`);
  });
});
