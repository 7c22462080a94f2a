// The gap tracker on a real gatherer database: a storm of gaps costs a bounded number of trade
// backfills, and gaps whose REST recovery failed for a while are still recovered. The REST side
// is a counting stand-in for TradeBackfill (what is tested is the tracker's scheduling; the real
// backfill against the simulator is covered in backfill.test.ts and faults.test.ts).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Pool } from 'pg';
import { createLogger } from '../../src/core/log';
import { createMetrics, createRegistry, GATHERER_METRICS } from '../../src/core/metrics';
import type { BackfillRequest, BackfillResult, TradeBackfill } from '../../src/gatherer/backfill';
import type { ConnectionManager } from '../../src/gatherer/connections';
import { GapTracker, readRestartState } from '../../src/gatherer/gaps';
import type { GapEvent } from '../../src/workers/sequence';
import { migratedGathererDb, waitFor } from '../harness/gatherer';
import { startPg, type TestPg } from '../harness/pg';

let pg: TestPg;
before(async () => {
  pg = await startPg();
});
after(async () => {
  await pg?.close();
});

function fakeBackfill(failFirst: number): { backfill: TradeBackfill; calls: BackfillRequest[] } {
  const calls: BackfillRequest[] = [];
  const backfill = {
    async backfill(req: BackfillRequest): Promise<BackfillResult> {
      calls.push(req);
      await new Promise((r) => setTimeout(r, 30));
      const failed = calls.length <= failFirst ? 1 : 0;
      return { completed: 1 - failed, failed, refused: 0, trades: 0 };
    },
    stop() {},
  } as unknown as TradeBackfill;
  return { backfill, calls };
}

const manager = {
  tickersOfSid: () => [],
  resync: (_c: number, _s: number, _t: boolean, done: (ok: boolean) => void) => done(true),
  allSubscribed: () => true,
  globalSubscribed: () => true,
  hasSid: () => true,
  connectionWhole: () => true,
} as unknown as ConnectionManager;

function ringDrop(sid: number, channel: string, i: number): GapEvent {
  const t = Date.now() * 1000;
  return {
    kind: 'ring-drop',
    connId: 1,
    sid,
    channel,
    expectedSeq: null,
    gotSeq: null,
    errorCode: null,
    tickers: [`M-${i % 7}`],
    lastGoodUs: t - 1000,
    lastGoodExchangeUs: null,
    detectedUs: t,
  };
}

async function tracker(pool: Pool, backfill: TradeBackfill, mgr: ConnectionManager = manager): Promise<GapTracker> {
  const metrics = createMetrics(GATHERER_METRICS, createRegistry(false));
  return new GapTracker('g1', pool, mgr, backfill, metrics, createLogger('test', { level: 'silent' }), async () => undefined);
}

async function openGaps(pool: Pool): Promise<{ n: number; open: number }> {
  const r = await pool.query(`SELECT count(*)::int AS n, count(*) FILTER (WHERE NOT recovered)::int AS open FROM gap_ledger`);
  return r.rows[0];
}

test('a storm of 500 ring drops on a trade and a ticker sid makes one ledger row per sid and at most two trade backfills; every row is recovered', async () => {
  const pool = new Pool({ connectionString: await migratedGathererDb(pg) });
  const { backfill, calls } = fakeBackfill(0);
  const gaps = await tracker(pool, backfill);
  try {
    for (let i = 0; i < 250; i++) {
      gaps.onWorkerGap(ringDrop(2, 'trade', i));
      gaps.onWorkerGap(ringDrop(3, 'ticker', i));
    }
    await waitFor('every gap recorded and recovered', async () => {
      const s = await openGaps(pool);
      return s.n >= 2 && s.open === 0;
    });
    assert.equal((await openGaps(pool)).n, 2, 'one ring_drop row per sid');
    assert.equal(gaps.stats.coalesced, 498);
    assert.ok(calls.length >= 1 && calls.length <= 2, `trade backfills run: ${calls.length}`);
    assert.deepEqual([...(calls.at(-1)!.tickers as string[])].sort().slice(0, 3), ['M-0', 'M-1', 'M-2'], 'the merged backfill covers every market');
  } finally {
    await gaps.stop();
    await pool.end();
  }
});

test('a trade backfill that fails twice (a REST 5xx burst) is repeated and its gap recovered', async () => {
  const pool = new Pool({ connectionString: await migratedGathererDb(pg) });
  const { backfill, calls } = fakeBackfill(2);
  const gaps = await tracker(pool, backfill);
  try {
    gaps.onWorkerGap(ringDrop(2, 'trade', 0));
    await waitFor('the gap recovered', async () => (await openGaps(pool)).open === 0 && calls.length === 3, 30_000);
    const r = await pool.query(`SELECT recovery_method FROM gap_ledger`);
    assert.equal(r.rows[0].recovery_method, 'rest_backfill');
  } finally {
    await gaps.stop();
    await pool.end();
  }
});

test("seq gaps on a book sid while its get_snapshot is in flight join that resync's row: 200 gaps, one row, recovered by the snapshot", async () => {
  const pool = new Pool({ connectionString: await migratedGathererDb(pg) });
  const { backfill } = fakeBackfill(0);
  let resyncs = 0;
  const slow = {
    ...manager,
    resync: (_c: number, _s: number, _t: boolean, done: (ok: boolean) => void) => {
      resyncs += 1;
      setTimeout(() => done(true), 300); // the ack takes a while under overload
    },
  } as unknown as ConnectionManager;
  const gaps = await tracker(pool, backfill, slow);
  try {
    const t = Date.now() * 1000;
    for (let i = 0; i < 200; i++) {
      gaps.onWorkerGap({
        kind: 'gap',
        connId: 1,
        sid: 5,
        channel: 'orderbook_delta',
        expectedSeq: 10 + 2 * i,
        gotSeq: 11 + 2 * i,
        errorCode: null,
        tickers: ['M-1'],
        lastGoodUs: t + i,
        lastGoodExchangeUs: null,
        detectedUs: t + i + 1,
      });
    }
    await waitFor('the gap recovered', async () => {
      // One read: two reads could see no row yet, then the row unrecovered.
      const g = await openGaps(pool);
      return g.n >= 1 && g.open === 0;
    });
    const r = await pool.query(`SELECT kind, expected_seq::int AS expected, recovery_method FROM gap_ledger`);
    assert.deepEqual(r.rows, [{ kind: 'seq_gap', expected: 10, recovery_method: 'get_snapshot' }], "one row, the first gap's");
    assert.equal(gaps.stats.coalesced, 199);
    assert.equal(resyncs, 1, 'one get_snapshot');
  } finally {
    await gaps.stop();
    await pool.end();
  }
});

test('a gap on a sid the connection no longer holds (unsubscribed or replaced) while the connection is whole: recovered as sid_retired after three checks; a sid learnt meanwhile is resynced', async () => {
  const pool = new Pool({ connectionString: await migratedGathererDb(pg) });
  const { backfill } = fakeBackfill(0);
  const resynced: number[] = [];
  const checks = new Map<number, number>();
  const retiring = {
    ...manager,
    resync: (_c: number, sid: number, _t: boolean, done: (ok: boolean) => void) => {
      resynced.push(sid);
      done(true);
    },
    // Sid 4 is gone for good; sid 6's subscription reply is learnt between the first and second check.
    hasSid: (_c: number, sid: number) => {
      checks.set(sid, (checks.get(sid) ?? 0) + 1);
      return sid === 6 && checks.get(sid)! > 1;
    },
  } as unknown as ConnectionManager;
  const gaps = await tracker(pool, backfill, retiring);
  try {
    gaps.onWorkerGap(ringDrop(4, 'orderbook_delta', 0));
    gaps.onWorkerGap(ringDrop(6, 'orderbook_delta', 1));
    await waitFor(
      'both gaps recovered',
      async () => {
        // One read: two reads could see no row yet, then the row unrecovered.
        const g = await openGaps(pool);
        return g.open === 0 && g.n === 2;
      },
      30_000,
    );
    const r = await pool.query(`SELECT sid, kind, recovery_method FROM gap_ledger ORDER BY sid`);
    assert.deepEqual(r.rows, [
      { sid: 4, kind: 'ring_drop', recovery_method: 'sid_retired' },
      { sid: 6, kind: 'ring_drop', recovery_method: 'get_snapshot' },
    ]);
    assert.deepEqual(resynced, [6], 'only the sid that turned out to be held is resynced');
    assert.equal(checks.get(4), 4, 'sid 4: checked when the gap came and three times after');
  } finally {
    await gaps.stop();
    await pool.end();
  }
});

test('after a crash, the restarted gatherer takes over the gaps the dead process left open: one restart row from the earliest, all recovered after the trade backfill', async () => {
  const pool = new Pool({ connectionString: await migratedGathererDb(pg) });
  const { backfill, calls } = fakeBackfill(0);
  try {
    const oldStartUs = Date.now() * 1000 - 30_000_000;
    await pool.query(`INSERT INTO gap_ledger (gatherer, conn_id, kind, tickers, window_start, detected_at) VALUES ('g1', 1, 'disconnect', '{M-1}', $1, $2)`, [
      oldStartUs,
      oldStartUs + 1000,
    ]);
    const restart = await readRestartState(pool, Date.now() * 1000);
    const gaps = await tracker(pool, backfill);
    try {
      gaps.onStarted(['M-1', 'M-2'], restart);
      await waitFor('both rows recovered', async () => {
        // One read: two reads could see no row yet, then the row unrecovered.
        const g = await openGaps(pool);
        return g.n === 2 && g.open === 0;
      });
      const rows = (await pool.query(`SELECT kind, window_start::float8 AS ws, recovery_method FROM gap_ledger ORDER BY gap_id`)).rows;
      assert.deepEqual(
        rows.map((r) => [r.kind, r.recovery_method]),
        [
          ['disconnect', 'resubscribe'],
          ['gatherer_restart', 'resubscribe'],
        ],
      );
      assert.equal(rows[1].ws, oldStartUs, 'the restart row starts at the orphaned gap');
      assert.equal(calls.length, 1);
      assert.ok(calls[0]!.fromUs <= oldStartUs, 'the trades of the whole window are fetched');
    } finally {
      await gaps.stop();
    }
  } finally {
    await pool.end();
  }
});

/** A trade as a gatherer's writer commits it: the row and its ingest_batches row. */
async function commitTrade(pool: Pool, batchId: number, tradeId: string, exchangeTs: number, committedAtUs: number): Promise<void> {
  await pool.query(`INSERT INTO ingest_batches (batch_id, writer, table_name, row_count, committed_at) VALUES ($1, 'g1/w1/trades', 'trades', 1, $2)`, [
    batchId,
    committedAtUs,
  ]);
  await pool.query(
    `INSERT INTO trades (trade_id, ticker, yes_price, no_price, count, exchange_ts, source, received_at, gatherer, conn_id, sid, batch_id)
     VALUES ($1, 'M-1', 0.36, 0.64, 1, $2, 'ws', $2, 'g1', 1, 1, $3)`,
    [tradeId, exchangeTs, batchId],
  );
}

test("a restart's window starts at the dead process's last commit even when the new process commits trades before the restart row is written", async () => {
  const pool = new Pool({ connectionString: await migratedGathererDb(pg) });
  const { backfill, calls } = fakeBackfill(0);
  try {
    const deadAtUs = Date.now() * 1000 - 20_000_000;
    await commitTrade(pool, 1, 'd91bc706-ee49-470d-82d8-11418bda6fed', deadAtUs - 5_000, deadAtUs);
    // Read at start-up, as the service does, before any writer of the new process exists.
    const restart = await readRestartState(pool, Date.now() * 1000);
    // The new process's first trades commit while the restart row waits for a database that is
    // still starting up (chaos seed 381): they must not move the window's start.
    await commitTrade(pool, 2, '6c5e1e0a-51a4-4c8e-9d8e-7bb2c4f1a001', Date.now() * 1000 - 3_000_000, Date.now() * 1000);
    const gaps = await tracker(pool, backfill);
    try {
      gaps.onStarted(['M-1', 'M-2'], restart);
      await waitFor('the restart row recovered', async () => {
        const g = await openGaps(pool);
        return g.n === 1 && g.open === 0;
      });
      const row = (await pool.query(`SELECT kind, window_start::float8 AS ws FROM gap_ledger`)).rows[0];
      assert.equal(row.kind, 'gatherer_restart');
      assert.equal(row.ws, deadAtUs - 5_000, 'the window starts at the last trade the dead process committed');
      assert.equal(calls.length, 1);
      assert.equal(calls[0]!.fromUs, deadAtUs - 5_000, 'the backfill fetches from there');
    } finally {
      await gaps.stop();
    }
  } finally {
    await pool.end();
  }
});
