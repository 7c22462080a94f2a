// kdp verify against real PostgreSQL: PASS on a healthy merge of three gatherers; FAIL naming the
// problem for each planted defect (rows missing in production, a trade stored twice, a stale open
// market, an old unrecovered gap, missing REST snapshots, an unreachable gatherer). The CLI is run
// as a child process for its exit code and output.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { resolveVerifyOptions, runVerify, type VerifyReport } from '../../src/ops/verify';
import { startPg, withClient, type TestPg } from '../harness/pg';
import { createOpsDbs, healthyDataset, insertRows, loadHealthy, OPEN_MARKETS, type Dataset, type OpsDbs } from './fixture';
import { repoRoot } from './helpers';

let pg: TestPg;
let dbs: OpsDbs;
let data: Dataset;
before(async () => {
  pg = await startPg();
  dbs = await createOpsDbs(pg);
  data = healthyDataset(Date.now() * 1000);
  await loadHealthy(dbs, data);
});
after(async () => {
  await pg?.close();
});

const verify = (extra: Record<string, unknown> = {}): Promise<VerifyReport> =>
  runVerify(
    resolveVerifyOptions({
      productionUrl: dbs.production,
      gatherers: dbs.gatherers,
      nowUs: data.nowUs,
      ...extra,
    }),
  );
const onProduction = (sql: string, params: unknown[] = []) => withClient(dbs.production, (c) => c.query(sql, params));
const kinds = (r: VerifyReport) => r.problems.map((p) => p.kind).sort();

describe('kdp verify', () => {
  test('a healthy merge passes, with a duplicate rate of 2/3 for three full copies', async () => {
    const r = await verify();
    assert.deepEqual(r.problems, []);
    assert.equal(r.verdict, 'PASS');
    const trades = r.tables.find((t) => t.table === 'trades')!;
    assert.equal(trades.productionRows, 6, 'two trades per market are inside the window (the newest is settling)');
    assert.deepEqual(
      trades.gatherers.map((g) => [g.name, g.distinctKeys, g.missingInProduction]),
      [
        ['g1', 6, 0],
        ['g2', 6, 0],
        ['g3', 6, 0],
      ],
    );
    const deltas = r.tables.find((t) => t.table === 'orderbook_deltas')!;
    assert.equal(deltas.productionRows, 12, 'identical deltas in one µs are both kept');
    assert.ok(Math.abs(r.duplicateRate.rate! - 2 / 3) < 1e-9, `duplicate rate ${r.duplicateRate.rate}`);
    assert.deepEqual(r.snapshotCoverage, { openMarkets: 3, covered: 3, share: 1, uncovered: [] });
    assert.equal(r.openGaps.count, 0, 'the unrecovered gap is only 2 minutes old');
  });

  test('rows missing in production fail, naming the table, every gatherer holding them and the key', async () => {
    const victim = data.trades[0]!;
    await onProduction(`DELETE FROM trades WHERE trade_id = $1`, [victim.trade_id]);
    try {
      const r = await verify();
      assert.equal(r.verdict, 'FAIL');
      assert.deepEqual(kinds(r), ['missing_rows', 'missing_rows', 'missing_rows']);
      for (const g of ['g1', 'g2', 'g3']) {
        const p = r.problems.find((x) => x.message.includes(`gatherer ${g}'s`))!;
        assert.match(p.message, /production lacks 1 of gatherer g\d's 6 trades keys/);
        assert.ok(p.message.includes(`trade_id=${victim.trade_id}`), p.message);
      }
    } finally {
      await withClient(dbs.production, (c) => insertRows(c, 'trades', [{ ...victim, gatherer: 'g1' }], true));
    }
    assert.equal((await verify()).verdict, 'PASS');
  });

  test('a delta only one gatherer recorded is missing when production lacks it', async () => {
    const extra = {
      ticker: OPEN_MARKETS[1],
      side: 'no',
      price: '0.61',
      delta: '3.00',
      exchange_ts: data.nowUs - 12 * 60_000_000,
      occurrence: 0,
      received_at: data.nowUs - 12 * 60_000_000,
      gatherer: 'g2',
    };
    await withClient(dbs.gatherers[1]!.url, (c) => insertRows(c, 'orderbook_deltas', [extra], false));
    try {
      const r = await verify();
      assert.deepEqual(kinds(r), ['missing_rows']);
      assert.match(r.problems[0]!.message, /lacks 1 of gatherer g2's 13 orderbook_deltas keys/);
      assert.match(r.problems[0]!.message, /price=0\.610000/);
    } finally {
      await withClient(dbs.gatherers[1]!.url, (c) => c.query(`DELETE FROM orderbook_deltas WHERE price = 0.61`));
    }
  });

  test('the same trade twice under different exchange_ts fails as duplicate_trades', async () => {
    const t = data.trades[1]!;
    await withClient(dbs.production, (c) => insertRows(c, 'trades', [{ ...t, exchange_ts: (t.exchange_ts as number) + 1000, gatherer: 'g3' }], true));
    try {
      const r = await verify();
      assert.deepEqual(kinds(r), ['duplicate_trades']);
      assert.ok(r.problems[0]!.message.includes(`trade_id=${t.trade_id} x2`), r.problems[0]!.message);
    } finally {
      await onProduction(`DELETE FROM trades WHERE trade_id = $1 AND exchange_ts = $2`, [t.trade_id, (t.exchange_ts as number) + 1000]);
    }
  });

  test('an open market the exchange was active in but with no delta is stale (a trade, REST snapshots that differ); a quiet market is not', async () => {
    const MIN_US = 60_000_000;
    const markets = ['KXQUIET-1', 'KXTRADED-1', 'KXMOVED-1'];
    for (const m of markets) {
      await onProduction(`INSERT INTO markets (ticker, status, market_status, open_time, raw, updated_at) VALUES ($1, 'active', 'open', $2, '{}', $2)`, [
        m,
        data.nowUs - 600 * MIN_US,
      ]);
    }
    const snapshot = (ticker: string, minutesAgo: number, yes: [string, string][]) => ({
      ticker,
      yes_levels: yes,
      no_levels: [],
      snapshot_ts: data.nowUs - minutesAgo * MIN_US,
      source: 'rest',
      received_at: data.nowUs - minutesAgo * MIN_US,
      gatherer: 'g1',
      conn_id: 0,
      sid: 0,
    });
    const book = (price: string): [string, string][] => [[price, '10.00']];
    await withClient(dbs.production, async (c) => {
      // Quiet for the whole window: the same book twice, no trade, no delta.
      await insertRows(c, 'orderbook_snapshots', [snapshot('KXQUIET-1', 20, book('0.40')), snapshot('KXQUIET-1', 5, book('0.40'))], true);
      await insertRows(c, 'orderbook_snapshots', [snapshot('KXTRADED-1', 5, book('0.40'))], true);
      await insertRows(c, 'orderbook_snapshots', [snapshot('KXMOVED-1', 20, book('0.40')), snapshot('KXMOVED-1', 5, book('0.41'))], true);
      const trade = data.trades[0]!;
      await insertRows(
        c,
        'trades',
        [{ ...trade, gatherer: 'g1', ticker: 'KXTRADED-1', trade_id: '00000000-0000-4000-8000-00000000beef', exchange_ts: data.nowUs - 10 * MIN_US }],
        true,
      );
    });
    try {
      const r = await verify();
      assert.deepEqual(kinds(r), ['stale_markets']);
      assert.equal(r.staleMarkets.count, 2);
      assert.deepEqual(r.staleMarkets.examples, ['KXMOVED-1 (book moved)', 'KXTRADED-1 (traded)']);
      assert.equal((await verify({ maxStaleMarkets: 2 })).verdict, 'PASS', 'the allowance is honoured');
    } finally {
      for (const m of markets) {
        await onProduction(`DELETE FROM markets WHERE ticker = $1`, [m]);
        await onProduction(`DELETE FROM orderbook_snapshots WHERE ticker = $1`, [m]);
        await onProduction(`DELETE FROM trades WHERE ticker = $1`, [m]);
      }
    }
  });

  test('an unrecovered gap older than the threshold fails as open_gaps', async () => {
    await onProduction(
      `INSERT INTO gap_ledger (gatherer, gap_id, conn_id, sid, kind, tickers, window_start, detected_at, recovered, updated_at)
       VALUES ('g2', 77, 2, 9, 'seq_gap', '{KXB-26NOV23}', $1, $1, false, $1)`,
      [data.nowUs - 45 * 60_000_000],
    );
    try {
      const r = await verify();
      assert.deepEqual(kinds(r), ['open_gaps']);
      assert.match(r.problems[0]!.message, /1 gaps are unrecovered after more than 15 minutes \(e\.g\. g2#77 seq_gap \[KXB-26NOV23\]/);
      assert.equal((await verify({ gapAgeMinutes: 60 })).verdict, 'PASS');
    } finally {
      await onProduction(`DELETE FROM gap_ledger WHERE gap_id = 77`);
    }
  });

  test('open markets without a REST snapshot in the window fail snapshot coverage', async () => {
    await onProduction(`UPDATE orderbook_snapshots SET snapshot_ts = snapshot_ts - 7200000000 WHERE ticker = $1 AND source = 'rest'`, [OPEN_MARKETS[2]]);
    try {
      // Production alone (the moved rows would otherwise also count as missing from the gatherers).
      const r = await verify({ gatherers: [] });
      assert.deepEqual(kinds(r), ['snapshot_coverage']);
      assert.match(r.problems[0]!.message, /only 2 of 3 open markets \(66\.7 %\) have a REST snapshot.*KXC-26NOV23/);
    } finally {
      await onProduction(`UPDATE orderbook_snapshots SET snapshot_ts = snapshot_ts + 7200000000 WHERE ticker = $1 AND source = 'rest'`, [OPEN_MARKETS[2]]);
    }
  });

  test('an unreachable gatherer is a named problem, the others are still compared', async () => {
    const dead = { name: 'g9', url: 'postgres://postgres:x@127.0.0.1:1/nothing' };
    const r = await verify({ gatherers: [...dbs.gatherers, dead] });
    assert.deepEqual(kinds(r), ['gatherer_unreachable']);
    assert.ok(r.problems[0]!.message.startsWith('gatherer g9 (postgres://postgres:***@127.0.0.1:1/nothing)'), r.problems[0]!.message);
    assert.equal(r.tables[0]!.gatherers.length, 3);
  });

  test('the CLI prints the verdict and exits 0 on PASS, 1 on FAIL; bad options are usage errors', async () => {
    const run = promisify(execFile);
    const bin = join(repoRoot(), 'bin', 'kdp.js');
    const args = [bin, 'verify', '--production', dbs.production, ...dbs.gatherers.flatMap((g) => ['--gatherer', `${g.name}=${g.url}`])];
    const ok = await run(process.execPath, args);
    assert.match(ok.stdout, /VERDICT: PASS/);
    assert.match(ok.stdout, /duplicate rate: 66\.7 %/);
    const json = JSON.parse((await run(process.execPath, [...args, '--json', '--window-minutes', '30'])).stdout) as VerifyReport;
    assert.equal(json.verdict, 'PASS');
    assert.equal(json.window.toUs - json.window.fromUs, 30 * 60_000_000);
    await onProduction(`UPDATE gap_ledger SET detected_at = detected_at - 3600000000 WHERE NOT recovered AND gatherer = 'g1'`);
    try {
      await assert.rejects(run(process.execPath, args), (err: { code?: number; stdout?: string }) => {
        assert.equal(err.code, 1);
        assert.match(err.stdout ?? '', /VERDICT: FAIL\n {2}- \[open_gaps\]/);
        return true;
      });
    } finally {
      await onProduction(`UPDATE gap_ledger SET detected_at = detected_at + 3600000000 WHERE NOT recovered AND gatherer = 'g1'`);
    }
    await assert.rejects(run(process.execPath, [...args, '--gatherer', 'no-equals-sign']), (err: { code?: number; stderr?: string }) => {
      assert.equal(err.code, 2);
      assert.match(err.stderr ?? '', /KDP_ERR_USAGE: --gatherer must be NAME=URL/);
      return true;
    });
    await assert.rejects(run(process.execPath, [...args, '--window-minutes', '0']), (err: { code?: number; stderr?: string }) => {
      assert.match(err.stderr ?? '', /KDP_ERR_CONFIG_INVALID: config verify.windowMinutes: must be >= 1/);
      return true;
    });
  });
});
