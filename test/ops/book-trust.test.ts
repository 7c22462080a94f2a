// kdp book's trust against real PostgreSQL: three gatherers' snapshots and ledgers, a gap one
// gatherer had (filled by the others: trusted), a gap all three shared (the delta in it is in no
// copy: the rebuild starts again from the snapshot after it, or says the book is untrusted), a
// crossed book, a market with only REST snapshots. Ground truth: an independent replay of every
// delta the exchange sent, the lost one included.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import type { Client } from 'pg';
import type { KdpError } from '../../src/core/errors';
import { reconstructBook, type Book } from '../../src/ops/book';
import { migrate } from '../../src/schema/migrate';
import { startPg, withClient, type TestPg } from '../harness/pg';
import { insertRows, type Row } from './fixture';
import { repoRoot } from './helpers';

let pg: TestPg;
let prod: string;
before(async () => {
  pg = await startPg();
  prod = await pg.newDatabase('kdp_book_trust');
  await withClient(prod, (c) => migrate(c, { kind: 'production', engine: 'postgres' }));
});
after(async () => {
  await pg?.close();
});

const BASE = Date.UTC(2026, 10, 24, 12) * 1000;
const MS = 1000; // fixture times below are ms after BASE
const M = 'KXTRUST-1';
// The exchange's deltas of M (exchange time BASE + ts); the one at 2600 reached no gatherer.
const ALL = [1000, 2000, 2600, 3000, 4000, 5000, 6000].map((ts, i) => ({ ts: BASE + ts * MS, price: `0.${10 + i}`, delta: `${i + 1}.00` }));
const LOST = BASE + 2600 * MS;
const RECEIVE_LAG = 300 * MS; // receive time = exchange time + 300 ms in this fixture
const at = (ms: number): number => BASE + ms * MS;

/** The exchange's YES ladder at `atUs` (best first), from every delta it sent. */
function truth(atUs: number): { price: string; size: string }[] {
  return ALL.filter((d) => d.ts <= atUs)
    .map((d) => ({ price: d.price, size: d.delta }))
    .sort((a, b) => Number(b.price) - Number(a.price));
}

async function ledger(c: Client, gatherer: string, gapId: number, fromUs: number, toUs: number, kind = 'seq_gap'): Promise<void> {
  await c.query(
    `INSERT INTO gap_ledger (gatherer, gap_id, conn_id, sid, channel, kind, tickers, window_start, window_end, detected_at, recovered, recovered_at, recovery_method, updated_at)
     VALUES ($1, $2, 1, 1, 'orderbook_delta', $6, $3, $4, $5::bigint, $5::bigint, true, $5::bigint + 50, 'get_snapshot', $5::bigint)`,
    [gatherer, gapId, [M], fromUs, toUs, kind],
  );
}

describe('kdp book trust', () => {
  before(async () => {
    await withClient(prod, async (c) => {
      const deltas: Row[] = ALL.filter((d) => d.ts !== LOST).map((d, i) => ({
        ticker: M,
        side: 'yes',
        price: d.price,
        delta: d.delta,
        exchange_ts: d.ts,
        occurrence: 0,
        received_at: d.ts + RECEIVE_LAG,
        gatherer: ['g1', 'g2', 'g3'][i % 3]!,
      }));
      await insertRows(c, 'orderbook_deltas', deltas, true);
      const ws = (gatherer: string, receivedUs: number, levels: { price: string; size: string }[], next: number, last: number | null): Row => ({
        ticker: M,
        yes_levels: levels.map((l) => [l.price, l.size]).reverse(),
        no_levels: [],
        snapshot_ts: receivedUs,
        source: 'ws',
        last_delta_ts: last,
        next_delta_ts: next,
        received_at: receivedUs,
        gatherer,
      });
      await insertRows(
        c,
        'orderbook_snapshots',
        [
          // Every gatherer subscribed before the first delta: empty books bounded by it.
          ws('g1', at(100), [], at(1000), null),
          ws('g2', at(101), [], at(1000), null),
          ws('g3', at(102), [], at(1000), null),
          // g2's resync after the shared gap: it holds the lost delta; nothing before it is known.
          ws('g2', at(2950), truth(at(2999)), at(3000), null),
        ],
        true,
      );
      await insertRows(
        c,
        'orderbook_snapshots',
        [
          {
            ticker: M,
            yes_levels: [['0.99', '1.00']],
            no_levels: [],
            snapshot_ts: at(4500),
            source: 'rest',
            last_delta_ts: null,
            received_at: at(4500),
            gatherer: 'g3',
            conn_id: 0,
            sid: 0,
          },
        ],
        true,
      );
      // M opened before any gatherer's subscription was acked (after its snapshot's receipt, as the
      // ingest thread processes the ack later): what that lost is in the snapshots, not the chain.
      for (const [i, g] of ['g1', 'g2', 'g3'].entries()) await ledger(c, g, 10 + i, at(50), at(150), 'new_market');
      // g1 alone loses 1200..1400 (receive time): the others have the delta at 1000 (received 1300).
      await ledger(c, 'g1', 1, at(1200), at(1400));
      // All three lose the delta at 2600 (received at 2900).
      await ledger(c, 'g1', 2, at(2500), at(3000));
      await ledger(c, 'g2', 1, at(2450), at(2940));
      await ledger(c, 'g3', 1, at(2800), at(3100));
    });
  });

  test("a gap one gatherer had is filled by the others' copies: trusted, and the book is the exchange's", async () => {
    const book = await withClient(prod, (c) => reconstructBook(c, M, at(1500)));
    assert.deepEqual(book.yes, truth(at(1500)));
    assert.equal(book.trust.trusted, true, book.trust.reasons.join());
    assert.equal(book.trust.gapFree, true);
    assert.deepEqual(book.trust.gatherersWithoutLoss, ['g2', 'g3']);
    assert.deepEqual(book.trust.chainGatherers, ['g1']);
    assert.equal(book.deltasApplied, 1);
    assert.equal(book.trust.lastRest, null);
  });

  test('a gap every gatherer shared: the snapshot after it (a resync) is the anchor, and the book equals the exchange, lost delta included', async () => {
    const book = await withClient(prod, (c) => reconstructBook(c, M, at(5000)));
    assert.deepEqual(book.yes, truth(at(5000)));
    assert.equal(book.trust.trusted, true, book.trust.reasons.join());
    assert.deepEqual([book.anchor.gatherer, book.anchor.snapshotTs, book.anchor.nextDeltaTs], ['g2', at(2950), at(3000)]);
    assert.deepEqual(book.trust.lastRest, { snapshotTs: at(4500), ageUs: 500 * MS, gatherer: 'g3', drift: null });
  });

  test('between the shared gap and the resync snapshot the book is untrusted and says why (the lost delta is in no copy)', async () => {
    const between = await withClient(prod, (c) => reconstructBook(c, M, at(2990)));
    assert.notDeepEqual(between.yes, truth(at(2990)), 'the lost delta is in no copy');
    assert.equal(between.trust.trusted, false, 'the resync snapshot is placed at 3000, after TIME');
    assert.equal(between.trust.gapFree, false);
    assert.deepEqual(between.trust.gaps, [{ fromUs: at(2800), toUs: at(2940) }]);
    assert.match(between.trust.reasons[0]!, /every gatherer lost deltas/);
    // Before the lost delta in exchange time, but its receipt cannot be placed before or after
    // TIME: the next delta production holds comes after it, so the book is not vouched for.
    const before = await withClient(prod, (c) => reconstructBook(c, M, at(2100)));
    assert.deepEqual(before.yes, truth(at(2100)));
    assert.equal(before.trust.trusted, false);
  });

  test('a crossed book is flagged and untrusted; a market with only REST snapshots cannot be anchored, and says so', async () => {
    await withClient(prod, async (c) => {
      await insertRows(
        c,
        'orderbook_snapshots',
        [
          {
            ticker: 'KXCROSS-1',
            yes_levels: [['0.60', '1.00']],
            no_levels: [['0.45', '2.00']],
            snapshot_ts: at(10),
            source: 'ws',
            last_delta_ts: BASE,
            next_delta_ts: at(5),
            received_at: at(10),
            gatherer: 'g1',
          },
          {
            ticker: 'KXREST-1',
            yes_levels: [],
            no_levels: [],
            snapshot_ts: at(10),
            source: 'rest',
            last_delta_ts: null,
            received_at: at(10),
            gatherer: 'g1',
            conn_id: 0,
            sid: 0,
          },
        ],
        true,
      );
      const crossed = await reconstructBook(c, 'KXCROSS-1', at(20));
      assert.equal(crossed.trust.crossed, true);
      assert.equal(crossed.trust.trusted, false);
      await assert.rejects(reconstructBook(c, 'KXREST-1', at(20)), (err: KdpError) => {
        assert.equal(err.code, 'KDP_ERR_BOOK_NO_ANCHOR');
        assert.match(err.message, /only REST snapshots/);
        return true;
      });
    });
  });

  test('the CLI refuses an untrusted book with KDP_ERR_BOOK_UNTRUSTED, prints it marked with --allow-untrusted, and shows the trust of a trusted one', async () => {
    const run = promisify(execFile);
    const base = [join(repoRoot(), 'bin', 'kdp.js'), 'book', '--ticker', M, '--production', prod];
    await assert.rejects(run(process.execPath, [...base, '--at', String(at(2990))]), (err: { code?: number; stderr?: string }) => {
      assert.equal(err.code, 1);
      assert.match(err.stderr ?? '', /KDP_ERR_BOOK_UNTRUSTED/);
      return true;
    });
    const shown = await run(process.execPath, [...base, '--at', String(at(2990)), '--allow-untrusted']);
    assert.match(shown.stdout, /trust: UNTRUSTED; chain has a gap every gatherer shared/);
    assert.match(shown.stdout, /UNTRUSTED: every gatherer lost deltas/);
    const json = JSON.parse((await run(process.execPath, [...base, '--at', String(at(5000)), '--json'])).stdout) as Book;
    assert.equal(json.trust.trusted, true);
    const table = await run(process.execPath, [...base, '--at', String(at(5000))]);
    assert.match(table.stdout, /trust: TRUSTED; chain gap-free; crossed: no/);
    assert.match(table.stdout, /last REST snapshot: 0\.500 s before TIME \(g3\), drift check: not yet/);
  });
});
