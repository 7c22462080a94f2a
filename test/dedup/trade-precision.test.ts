// Divergence 7 of the Kalshi protocol issue (docs/kalshi.md): an early-2026 WS trade carried only
// `ts` (seconds), so its row keys at the whole second, while the REST copy of the same trade keys at
// its millisecond. The production merge must keep one row per trade_id, at the finer time, whichever
// copy arrives first and from whichever gatherer; a trade whose real time is on a whole second must
// not be mistaken for a coarse copy.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import type { Client } from 'pg';
import { dropLink, openGatherer, openProduction } from '../../src/dedup/connect';
import { mergeOnce, mergeRound, type MergeResult, type TableCounts } from '../../src/dedup/merge';
import { gathererBit, maskOf } from '../../src/dedup/provenance';
import { startPg, type TestPg } from '../harness/pg';
import { writeRowsOnce } from '../../src/copy/once';
import { parseTrade } from '../../src/gatherer/shapes';
import { tradeRowLine } from '../../src/gatherer/rows';
import { Capture } from '../workers/harness';
import { CORPUS_RECEIVED_US, loadCorpus } from '../kalshi/corpus';
import { NOW_US, dedupOptions, newDb, writeRows, type Row } from './fixtures';

let PG: TestPg;
const clients: Client[] = [];
before(async () => {
  PG = await startPg();
});
after(async () => {
  for (const c of clients) await c.end().catch(() => undefined);
  await PG?.close();
});

const db = (kind: 'gatherer' | 'production'): Promise<{ url: string; c: Client }> => newDb(PG, kind, clients);

/** One merge cycle of gatherer `name` into production, on fresh deduplicator sessions. */
async function mergeWith(name: string, gathererUrl: string, productionUrl: string): Promise<MergeResult> {
  const opts = dedupOptions([{ name, url: gathererUrl }], productionUrl);
  const g = await openGatherer(opts.gatherers[0]!);
  const p = await openProduction(opts.production);
  try {
    const deliveredMask = maskOf(await gathererBit(p.client, name, Date.now() * 1000));
    return await mergeOnce(
      {
        name,
        fastPathSpanMaxUs: 3_600_000_000,
        limits: { batchesMax: 10_000, rowsMax: 10_000_000 },
        trackMarkets: false,
        nowUs: () => Date.now() * 1000,
        deliveredMask,
      },
      g.client,
      p.client,
    );
  } finally {
    dropLink(g);
    dropLink(p);
  }
}

/** One round of several gatherers (one production transaction), on fresh deduplicator sessions; the trades' counts. */
async function mergeTogether(gatherers: { name: string; url: string }[], productionUrl: string): Promise<TableCounts | undefined> {
  const opts = dedupOptions(gatherers, productionUrl);
  const links = await Promise.all(opts.gatherers.map((g) => openGatherer(g)));
  const p = await openProduction(opts.production);
  try {
    const members = [];
    for (const [i, g] of gatherers.entries())
      members.push({ name: g.name, gatherer: links[i]!.client, deliveredMask: maskOf(await gathererBit(p.client, g.name, Date.now() * 1000)) });
    const ctx = { fastPathSpanMaxUs: 3_600_000_000, limits: { batchesMax: 10_000, rowsMax: 10_000_000 }, trackMarkets: false, nowUs: () => Date.now() * 1000 };
    const r = await mergeRound(ctx, members, p.client);
    assert.deepEqual(r.failed, []);
    return r.tables.get('trades');
  } finally {
    for (const l of links) dropLink(l);
    dropLink(p);
  }
}

const SECOND = 1_000_000;
const BASE = Math.floor(NOW_US / SECOND) * SECOND; // a whole second
const ID = (i: number): string => `00000000-0000-4000-8000-${(i + 1).toString(16).padStart(12, '0')}`;

/** A trade row as a gatherer stores it; `coarse` = the seconds-only WS copy (its whole second). */
function tradeRow(i: number, fineUs: number, coarse: boolean, gatherer: string): Row {
  return {
    trade_id: ID(i),
    ticker: 'KXA-26NOV23-T1',
    yes_price: '0.360000',
    no_price: '0.640000',
    count: '136.00',
    taker_side: 'no',
    taker_outcome_side: null,
    taker_book_side: null,
    is_block_trade: null,
    exchange_ts: coarse ? fineUs - (fineUs % SECOND) : fineUs,
    source: coarse ? 'ws' : 'rest',
    received_at: fineUs + 5_000,
    gatherer,
    conn_id: coarse ? 1 : 0,
    sid: coarse ? 2 : 0,
    seq: coarse ? 7 : null,
  };
}

async function productionTrades(c: Client): Promise<{ id: string; ts: number }[]> {
  const r = await c.query(`SELECT trade_id::text AS id, exchange_ts::text AS ts FROM trades ORDER BY trade_id, exchange_ts`);
  return r.rows.map((x) => ({ id: x.id as string, ts: Number(x.ts) }));
}

const tradesOf = (r: MergeResult): TableCounts => r.tables.get('trades')!;

describe('a seconds-only WS trade and its finer REST copy', () => {
  test('coarse copy merged first, finer copy later from another gatherer: one row, at the finer time', async () => {
    const [g1, g2, prod] = [await db('gatherer'), await db('gatherer'), await db('production')];
    const fine = BASE + 123_000;
    await writeRows(g1.c, 'trades', [tradeRow(0, fine, true, 'g1')]);
    await writeRows(g2.c, 'trades', [tradeRow(0, fine, false, 'g2')]);
    assert.equal(tradesOf(await mergeWith('g1', g1.url, prod.url)).merged, 1);
    assert.deepEqual(await productionTrades(prod.c), [{ id: ID(0), ts: BASE }]);
    const second = tradesOf(await mergeWith('g2', g2.url, prod.url));
    assert.deepEqual(
      { read: second.read, merged: second.merged, duplicates: second.duplicates, refined: second.refined },
      { read: 1, merged: 1, duplicates: 0, refined: 1 },
    );
    assert.deepEqual(await productionTrades(prod.c), [{ id: ID(0), ts: fine }]);
    const src = await prod.c.query(`SELECT source, gatherer FROM trades`);
    assert.deepEqual(src.rows, [{ source: 'rest', gatherer: 'g2' }]);
  });

  test('finer copy merged first: the later coarse copy is a duplicate', async () => {
    const [g1, g2, prod] = [await db('gatherer'), await db('gatherer'), await db('production')];
    const fine = BASE + 999_000;
    await writeRows(g1.c, 'trades', [tradeRow(0, fine, false, 'g1')]);
    await writeRows(g2.c, 'trades', [tradeRow(0, fine, true, 'g2')]);
    await mergeWith('g1', g1.url, prod.url);
    const second = tradesOf(await mergeWith('g2', g2.url, prod.url));
    assert.deepEqual({ merged: second.merged, duplicates: second.duplicates, refined: second.refined }, { merged: 0, duplicates: 1, refined: 0 });
    assert.deepEqual(await productionTrades(prod.c), [{ id: ID(0), ts: fine }]);
  });

  test('both copies in one gatherer and one cycle (live frame, then a backfill): one row, at the finer time', async () => {
    const [g, prod] = [await db('gatherer'), await db('production')];
    const fine = BASE + 1_000;
    await writeRows(g.c, 'trades', [tradeRow(0, fine, true, 'g1'), tradeRow(0, fine, false, 'g1')], 1);
    const r = tradesOf(await mergeWith('g1', g.url, prod.url));
    assert.deepEqual({ read: r.read, merged: r.merged, duplicates: r.duplicates }, { read: 2, merged: 1, duplicates: 1 });
    assert.deepEqual(await productionTrades(prod.c), [{ id: ID(0), ts: fine }]);
  });

  test('a trade whose real time is on a whole second is kept, and other trades of that second are not touched', async () => {
    const [g1, g2, prod] = [await db('gatherer'), await db('gatherer'), await db('production')];
    // Trade 0 happened at BASE exactly (every copy keys there); trade 1 is a different trade in the same second.
    await writeRows(g1.c, 'trades', [tradeRow(0, BASE, false, 'g1'), tradeRow(1, BASE + 400_000, true, 'g1')]);
    await writeRows(g2.c, 'trades', [tradeRow(0, BASE, true, 'g2'), tradeRow(1, BASE + 400_000, false, 'g2')]);
    await mergeWith('g1', g1.url, prod.url);
    await mergeWith('g2', g2.url, prod.url);
    assert.deepEqual(await productionTrades(prod.c), [
      { id: ID(0), ts: BASE },
      { id: ID(1), ts: BASE + 400_000 },
    ]);
  });

  test('the corpus seconds-only WS trade and its REST copy, through the real parsers and writers of two gatherers: one row, at the REST time', async () => {
    const TRADE_ID = '5d937db7-0c71-43cb-0b60-b56a4387af64';
    const corpus = loadCorpus();
    const ws = corpus.flatMap((c) => c.body.frames).find((f) => f.frame.includes(TRADE_ID) && f.frame.includes('"type":"trade"'))!;
    const rest = corpus.flatMap((c) => c.body.rest ?? []).find((r) => r.route === 'trades' && r.body.includes(TRADE_ID))!;
    assert.ok(ws && rest && !ws.frame.includes('ts_ms'), 'the corpus holds a seconds-only WS trade and its REST copy');
    const capture = new Capture({ gathererId: 'g1' });
    capture.feed(ws.frame, 1, CORPUS_RECEIVED_US);
    const restTrade = parseTrade((JSON.parse(rest.body) as { trades: unknown[] }).trades[0], 'trades[0]');
    const [g1, g2, prod] = [await db('gatherer'), await db('gatherer'), await db('production')];
    await writeRowsOnce(g1.c, 'trades', capture.lines('trades'), 'g1/w0/trades');
    await writeRowsOnce(g2.c, 'trades', [tradeRowLine(restTrade, CORPUS_RECEIVED_US, 'g2')], 'g2/rest/trades');
    await mergeWith('g1', g1.url, prod.url);
    await mergeWith('g2', g2.url, prod.url);
    const r = await prod.c.query(`SELECT trade_id::text AS id, exchange_ts::text AS ts, source, count::text AS count FROM trades`);
    assert.deepEqual(r.rows, [{ id: TRADE_ID, ts: '1773331880514000', source: 'rest', count: '3.00' }]);
  });

  test('property: any copies in any order from up to three gatherers, merged one by one or in one round, leave one row per trade, at its finest time merged, delivered_by naming every gatherer with a copy', async () => {
    const gs = [await db('gatherer'), await db('gatherer'), await db('gatherer')];
    const prod = await db('production');
    const trade = fc.record({
      // Fine times inside BASE's second and the next one, on the second included.
      fineUs: fc.constantFrom(0, 1_000, 500_000, 999_000, SECOND, SECOND + 250_000).map((d) => BASE + d),
      // Per gatherer: no copy, the coarse WS copy, the finer copy, or both.
      copies: fc.array(fc.constantFrom('none', 'coarse', 'fine', 'both'), { minLength: 3, maxLength: 3 }),
    });
    const arb = fc.record({
      trades: fc.array(trade, { minLength: 1, maxLength: 12 }),
      order: fc.shuffledSubarray([0, 1, 2], { minLength: 3, maxLength: 3 }),
      together: fc.boolean(),
    });
    await fc.assert(
      fc.asyncProperty(arb, async ({ trades, order, together }) => {
        await prod.c.query('TRUNCATE trades, dedup_cursors');
        for (const [gi, g] of gs.entries()) {
          await g.c.query('TRUNCATE trades, ingest_batches');
          const rows: Row[] = [];
          trades.forEach((t, i) => {
            const c = t.copies[gi]!;
            if (c === 'coarse' || c === 'both') rows.push(tradeRow(i, t.fineUs, true, `g${gi}`));
            // On a whole second both copies have one key: a gatherer stores that once (UNIQUE key).
            const same = c === 'both' && t.fineUs % SECOND === 0;
            if ((c === 'fine' || c === 'both') && !same) rows.push(tradeRow(i, t.fineUs, false, `g${gi}`));
          });
          if (rows.length > 0) await writeRows(g.c, 'trades', rows, 3);
        }
        let read = 0;
        let accounted = 0;
        const counted = (t: TableCounts | undefined): void => {
          read += t?.read ?? 0;
          accounted += t ? t.merged + t.duplicates : 0;
        };
        if (together)
          counted(
            await mergeTogether(
              order.map((gi) => ({ name: `g${gi}`, url: gs[gi]!.url })),
              prod.url,
            ),
          );
        else for (const gi of order) counted((await mergeWith(`g${gi}`, gs[gi]!.url, prod.url)).tables.get('trades'));
        assert.equal(accounted, read, 'every row read is merged or a duplicate');
        const expected = trades
          .map((t, i) => ({ t, i }))
          .filter(({ t }) => t.copies.some((c) => c !== 'none'))
          .map(({ t, i }) => ({ id: ID(i), ts: t.copies.some((c) => c === 'fine' || c === 'both') ? t.fineUs : t.fineUs - (t.fineUs % SECOND) }));
        assert.deepEqual(await productionTrades(prod.c), expected);
        // Per-row provenance survives the settling: the kept row names every gatherer that had any copy.
        const bits = await prod.c.query(`SELECT gatherer, bit FROM gatherer_bits`);
        const bitOf = new Map(bits.rows.map((b) => [b.gatherer as string, Number(b.bit)]));
        const masks = await prod.c.query(`SELECT trade_id::text AS id, delivered_by::text AS m FROM trades ORDER BY trade_id`);
        const want = trades
          .map((t, i) => ({ t, i }))
          .filter(({ t }) => t.copies.some((c) => c !== 'none'))
          .map(({ t, i }) => ({ id: ID(i), m: t.copies.reduce((m, c, gi) => (c === 'none' ? m : m | maskOf(bitOf.get(`g${gi}`)!)), 0n).toString() }));
        assert.deepEqual(masks.rows, want);
      }),
      { numRuns: 60, seed: 7 },
    );
  });
});
