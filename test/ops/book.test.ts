// kdp book against real PostgreSQL: the rebuilt book equals an independent replay of the full
// delta stream from an empty book (integer hundredths of a cent, no decimals library), for a
// constructed case (two identical deltas in one µs, a level going to zero) and for random streams.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import fc from 'fast-check';
import type { Client } from 'pg';
import type { KdpError } from '../../src/core/errors';
import { formatBook, formatTimeUs, parseTimeUs, reconstructBook, type Book } from '../../src/ops/book';
import { formatTruthComparison, loadProductionSet, runTruthCheck, type TruthFileReader } from '../../src/ops/truth';
import { migrate } from '../../src/schema/migrate';
import { startPg, withClient, type TestPg } from '../harness/pg';
import { insertRows, type Row } from './fixture';
import { repoRoot } from './helpers';

let pg: TestPg;
let prod: string;
before(async () => {
  pg = await startPg();
  prod = await pg.newDatabase('kdp_book');
  await withClient(prod, (c) => migrate(c, { kind: 'production', engine: 'postgres' }));
});
after(async () => {
  await pg?.close();
});

const BASE = Date.UTC(2026, 10, 23, 12) * 1000;
interface D {
  ts: number;
  side: 'yes' | 'no';
  price: string;
  delta: string;
}

// Independent model: prices and sizes as integer 1/10000 units in plain numbers.
const units = (s: string): number => Math.round(Number(s) * 10_000);
const text = (u: number): string => (u / 10_000).toFixed(4);
function replay(deltas: readonly D[], upTo: number): Record<'yes' | 'no', Map<number, number>> {
  const book = { yes: new Map<number, number>(), no: new Map<number, number>() };
  for (const d of deltas) if (d.ts <= upTo) book[d.side].set(units(d.price), (book[d.side].get(units(d.price)) ?? 0) + units(d.delta));
  return book;
}
const ladder = (side: Map<number, number>): [string, string][] =>
  [...side.entries()]
    .filter(([, s]) => s > 0)
    .sort((a, b) => b[0] - a[0])
    .map(([p, s]) => [text(p), text(s)]);
const bookLadder = (levels: Book['yes']): [string, string][] => levels.map((l) => [text(units(l.price)), text(units(l.size))]);

/**
 * Rows for production: deltas with occurrence numbering, and the snapshot a gatherer took after
 * `anchorTs` (its last_delta_ts), or, with `next`, right before the delta at `next.ts` (its
 * next_delta_ts; last_delta_ts `next.last`, null as after lost frames).
 */
async function store(c: Client, ticker: string, deltas: readonly D[], anchorTs: number, next?: { ts: number; last: number | null }): Promise<void> {
  const seen = new Map<string, number>();
  const rows: Row[] = deltas.map((d) => {
    const k = `${d.ts}|${d.side}|${d.price}|${units(d.delta)}`;
    const occurrence = seen.get(k) ?? 0;
    seen.set(k, occurrence + 1);
    return {
      ticker,
      side: d.side,
      price: d.price,
      delta: d.delta,
      exchange_ts: d.ts,
      occurrence,
      received_at: d.ts + 300,
      gatherer: 'g1',
    };
  });
  await insertRows(c, 'orderbook_deltas', rows, true);
  const at = next ? replay(deltas, next.ts - 1) : replay(deltas, anchorTs);
  // Exchange snapshots list bids ascending (best last), sizes as decimal strings.
  const asc = (m: Map<number, number>) => ladder(m).reverse();
  await insertRows(
    c,
    'orderbook_snapshots',
    [
      {
        ticker,
        yes_levels: asc(at.yes),
        no_levels: asc(at.no),
        snapshot_ts: anchorTs + 2,
        source: 'ws',
        last_delta_ts: next ? next.last : anchorTs,
        next_delta_ts: next?.ts ?? null,
        seq: 12,
        received_at: anchorTs + 2,
        gatherer: 'g2',
        conn_id: 4,
        sid: 7,
      },
    ],
    true,
  );
}

describe('kdp book', () => {
  const T = 'KXBOOK-1';
  const deltas: D[] = [
    { ts: BASE + 10, side: 'yes', price: '0.35', delta: '10.00' },
    { ts: BASE + 10, side: 'no', price: '0.60', delta: '4.50' },
    { ts: BASE + 20, side: 'yes', price: '0.36', delta: '3.00' },
    // anchor: the snapshot includes everything up to BASE + 20
    { ts: BASE + 30, side: 'yes', price: '0.35', delta: '-2.00' },
    { ts: BASE + 30, side: 'yes', price: '0.35', delta: '-2.00' }, // identical, same µs: both count
    { ts: BASE + 31, side: 'yes', price: '0.36', delta: '-3.00' }, // level goes to zero: vanishes
    { ts: BASE + 32, side: 'no', price: '0.62', delta: '1.25' },
    { ts: BASE + 40, side: 'no', price: '0.60', delta: '-4.50' }, // after TIME below
  ];
  before(async () => {
    await withClient(prod, async (c) => {
      await store(c, T, deltas, BASE + 20);
      // Distractors: an older anchorable snapshot, a newer one with neither bound, a newer REST
      // snapshot, and one placed after TIME in the delta stream: none may be chosen.
      await insertRows(
        c,
        'orderbook_snapshots',
        [
          {
            ticker: T,
            yes_levels: [['0.35', '10.00']],
            no_levels: [['0.60', '4.50']],
            snapshot_ts: BASE + 15,
            source: 'ws',
            last_delta_ts: BASE + 10,
            received_at: BASE + 15,
            gatherer: 'g1',
          },
          {
            ticker: T,
            yes_levels: [['0.99', '1.00']],
            no_levels: [],
            snapshot_ts: BASE + 33,
            source: 'ws',
            last_delta_ts: null,
            received_at: BASE + 33,
            gatherer: 'g3',
          },
          {
            ticker: T,
            yes_levels: [['0.98', '1.00']],
            no_levels: [],
            snapshot_ts: BASE + 34,
            source: 'rest',
            last_delta_ts: null,
            received_at: BASE + 34,
            gatherer: 'g1',
            conn_id: 0,
            sid: 0,
          },
          {
            ticker: T,
            yes_levels: [['0.97', '1.00']],
            no_levels: [],
            snapshot_ts: BASE + 34,
            source: 'ws',
            last_delta_ts: BASE + 36,
            received_at: BASE + 36,
            gatherer: 'g1',
          },
        ],
        true,
      );
    });
  });

  test('anchored on the newest usable snapshot; identical deltas both applied; a zero level vanishes', async () => {
    const book = await withClient(prod, (c) => reconstructBook(c, T, BASE + 35));
    assert.deepEqual(book.anchor, {
      source: 'ws',
      snapshotTs: BASE + 22,
      lastDeltaTs: BASE + 20,
      nextDeltaTs: null,
      chainFromTs: BASE + 20,
      chainInclusive: false,
      gatherer: 'g2',
      connId: 4,
      sid: 7,
      seq: 12,
    });
    assert.equal(book.trust.trusted, true, book.trust.reasons.join());
    assert.deepEqual(book.trust.chainGatherers, ['g1']);
    assert.deepEqual(book.trust.lastRest, { snapshotTs: BASE + 34, ageUs: 1, gatherer: 'g1', drift: null });
    assert.equal(book.deltasApplied, 4);
    assert.deepEqual(book.yes, [{ price: '0.35', size: '6.00' }]);
    assert.deepEqual(book.no, [
      { price: '0.62', size: '1.25' },
      { price: '0.60', size: '4.50' },
    ]);
    assert.equal(book.yesAsk, '0.38', 'YES ask = 1 - best NO bid 0.62');
    assert.equal(book.noAsk, '0.65', 'NO ask = 1 - best YES bid 0.35');
    const independent = replay(deltas, BASE + 35);
    assert.deepEqual(bookLadder(book.yes), ladder(independent.yes));
    assert.deepEqual(bookLadder(book.no), ladder(independent.no));
    const printed = formatBook(book);
    assert.match(printed, /YES bid +size \| +NO bid +size/);
    assert.match(printed, /0\.35 +6\.00 \| +0\.62 +1\.25\n +\| +0\.60 +4\.50/);
    assert.match(printed, /best YES ask \(1 - best NO bid\): 0\.38/);
  });

  test('later times use the later snapshot; a level removed entirely leaves the side empty', async () => {
    const book = await withClient(prod, (c) => reconstructBook(c, T, BASE + 40));
    assert.equal(book.anchor.snapshotTs, BASE + 34);
    assert.deepEqual(book.no, [], 'the anchoring snapshot of g1 lists no NO levels and nothing is added after it');
    assert.equal(book.yesAsk, null);
  });

  test('before any anchorable snapshot the book is refused with KDP_ERR_BOOK_NO_ANCHOR naming why; a snapshot is placed by its bound, not its receive time', async () => {
    const early = await withClient(prod, (c) => reconstructBook(c, T, BASE + 14));
    assert.equal(early.anchor.snapshotTs, BASE + 15, 'received after TIME, but it holds only deltas <= BASE + 10');
    await assert.rejects(
      withClient(prod, (c) => reconstructBook(c, T, BASE + 9)),
      (err: KdpError) => {
        assert.equal(err.code, 'KDP_ERR_BOOK_NO_ANCHOR');
        assert.match(err.message, /before the first WebSocket snapshot's place in the delta stream/);
        return true;
      },
    );
  });

  test('property: random delta streams, anchors and times equal an independent replay', async () => {
    const arbStream = fc.array(
      fc.record({
        step: fc.integer({ min: 0, max: 2 }),
        side: fc.constantFrom<'yes' | 'no'>('yes', 'no'),
        priceIdx: fc.integer({ min: 0, max: 3 }),
        add: fc.boolean(),
        amount: fc.integer({ min: 1, max: 500 }),
      }),
      { minLength: 2, maxLength: 40 },
    );
    let run = 0;
    await withClient(prod, async (c) => {
      await fc.assert(
        fc.asyncProperty(arbStream, fc.nat(), fc.nat(), fc.boolean(), async (ops, anchorPick, timePick, nextPick) => {
          const ticker = `KXPROP-${run++}`;
          const prices = ['0.01', '0.25', '0.5', '0.9999'];
          const state = { yes: new Map<string, number>(), no: new Map<string, number>() };
          let ts = BASE + 1000;
          const stream: D[] = [];
          for (const op of ops) {
            ts += op.step; // 0 puts two changes in one µs
            const price = prices[op.priceIdx]!;
            const have = state[op.side].get(price) ?? 0;
            const d = op.add ? op.amount : -Math.min(op.amount, have);
            if (d === 0) continue;
            state[op.side].set(price, have + d);
            stream.push({ ts, side: op.side, price, delta: (d / 100).toFixed(2) });
          }
          if (stream.length === 0) return;
          // Anchored by last_delta_ts (a delta's time), or by next_delta_ts (the snapshot right before
          // delta k, where k starts a new µs; its last_delta_ts lost half the time, as after a gap).
          const k = anchorPick % stream.length;
          const byNext = nextPick && (k === 0 || stream[k - 1]!.ts < stream[k]!.ts);
          const anchorTs = byNext ? stream[k]!.ts : stream[k]!.ts;
          const atUs = anchorTs + 2 + (timePick % (ts - anchorTs + 3));
          const last = k > 0 && anchorPick % 2 === 0 ? stream[k - 1]!.ts : null;
          await store(c, ticker, stream, anchorTs, byNext ? { ts: stream[k]!.ts, last } : undefined);
          const book = await reconstructBook(c, ticker, atUs);
          assert.equal(book.anchor.chainInclusive, byNext);
          const want = replay(stream, atUs);
          assert.deepEqual(bookLadder(book.yes), ladder(want.yes));
          assert.deepEqual(bookLadder(book.no), ladder(want.no));
        }),
        { numRuns: 30 },
      );
    });
  });

  test('loadProductionSet reads deltas back in the truth shape', async () => {
    const set = await withClient(prod, (c) => loadProductionSet(c, { fromUs: BASE, toUs: BASE + 100, tickers: [T] }));
    assert.equal(set.deltas.length, deltas.length);
    assert.deepEqual(
      set.deltas.filter((d) => d.exchangeTs === BASE + 30).map((d) => d.delta),
      ['-2.00', '-2.00'],
    );
  });

  test("runTruthCheck: a reader's expectation compared with production (equal, then one delta short)", async () => {
    const expectedDeltas = deltas.map((d) => ({
      ticker: T,
      exchangeTs: d.ts,
      side: d.side,
      price: d.price,
      delta: d.delta,
    }));
    const reader =
      (list: typeof expectedDeltas): TruthFileReader =>
      async () => ({
        expected: { trades: [], deltas: list },
        span: { fromUs: BASE, toUs: BASE + 100, tickers: [T] },
      });
    const same = await withClient(prod, (c) => runTruthCheck(c, 'unused', reader(expectedDeltas)));
    assert.equal(same.ok, true, formatTruthComparison(same));
    const fewer = await withClient(prod, (c) => runTruthCheck(c, 'unused', reader(expectedDeltas.slice(1))));
    assert.deepEqual(fewer.deltas.counts, { lost: 0, duplicated: 0, invented: 1, mismatched: 0 });
    assert.match(formatTruthComparison(fewer), /deltas +expected=7 production=8 lost=0 duplicated=0 invented=1[\s\S]*TRUTH: FAIL/);
  });

  test('TIME parsing: RFC 3339 with fraction and offset, integer µs, rejects nonsense', () => {
    assert.equal(parseTimeUs('2026-11-23T12:00:00.000035Z'), BASE + 35);
    assert.equal(parseTimeUs('2026-11-23T13:30:00.000035+01:30'), BASE + 35);
    assert.equal(parseTimeUs('2026-11-23T12:00:00.0000351234Z'), BASE + 35, 'sub-µs digits truncated');
    assert.equal(parseTimeUs(String(BASE + 35)), BASE + 35);
    assert.equal(formatTimeUs(BASE + 35), '2026-11-23T12:00:00.000035Z');
    for (const bad of ['yesterday', '2026-02-30T00:00:00Z', '2026-11-23 12:00', '1.5']) {
      assert.throws(() => parseTimeUs(bad), { code: 'KDP_ERR_USAGE' }, bad);
    }
  });

  test('the CLI prints the book as a table or JSON', async () => {
    const run = promisify(execFile);
    const bin = join(repoRoot(), 'bin', 'kdp.js');
    const base = [bin, 'book', '--ticker', T, '--production', prod];
    const table = await run(process.execPath, [...base, '--at', '2026-11-23T12:00:00.000035Z']);
    assert.match(table.stdout, /KXBOOK-1 at 2026-11-23T12:00:00\.000035Z/);
    assert.match(table.stdout, /best NO ask \(1 - best YES bid\): 0\.65/);
    const json = JSON.parse((await run(process.execPath, [...base, '--at', String(BASE + 35), '--json'])).stdout) as Book;
    assert.deepEqual(json.yes, [{ price: '0.35', size: '6.00' }]);
    await assert.rejects(run(process.execPath, [...base, '--at', String(BASE + 1)]), (err: { code?: number; stderr?: string }) => {
      assert.equal(err.code, 1);
      assert.match(err.stderr ?? '', /KDP_ERR_BOOK_NO_ANCHOR/);
      return true;
    });
  });
});
