// docs/runbooks.md against a migrated production and gatherer database holding data: every SQL
// block and every `psql ... -c "..."` command runs without error on the database it names (the
// rebuild blocks on a freshly migrated gatherer, the TimescaleDB blocks on a migrated TimescaleDB
// gatherer and production, skipped only where TimescaleDB is not installed), the checks return
// what the planted data says they must, every metric the runbook greps for exists, every name the
// seed mapping table gives as ours exists, and every section an alert links to is there.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { ClientBase, QueryResult } from 'pg';
import { migrate } from '../../src/schema/migrate';
import { DAY_US } from '../../src/schema/tables';
import { startPg, startTimescale, timescaleSkip, withClient, type TestPg } from '../harness/pg';
import { createOpsDbs, healthyDataset, insertRows, loadHealthy, OPEN_MARKETS, type Dataset, type OpsDbs, type Row } from './fixture';
import { ourMetricNames, repoRoot } from './helpers';
import { alertNames, codeSpans, isCommand, isConfigKey, isEndpoint, isErrorCode, isUnit, kindOf, mappingRows, metricOrLiteral, sourceText } from './mapping';
import { headingAnchors } from './markdown';
import { DOC, runAsPsql, runbookQueries, substitute, type Query } from './runbook-sql';

let pg: TestPg;
let dbs: OpsDbs;
let data: Dataset;
let fresh: string; // a migrated gatherer nobody wrote to: the rebuild procedure's new database
const STALE = 'KXSTALE-26NOV23';
before(async () => {
  pg = await startPg();
  dbs = await createOpsDbs(pg, ['g1']);
  data = healthyDataset(Date.now() * 1000);
  await loadHealthy(dbs, data);
  // Something for the checks to find: an open market nobody records, an old unrecovered gap.
  await withClient(dbs.production, async (c) => {
    await c.query(`INSERT INTO markets (ticker, status, market_status, open_time, raw, updated_at) VALUES ($1, 'active', 'open', $2, '{}', $2)`, [
      STALE,
      data.nowUs - 600 * 60_000_000,
    ]);
    await c.query(
      `INSERT INTO gap_ledger (gatherer, gap_id, conn_id, sid, kind, tickers, window_start, detected_at, recovered, updated_at)
       VALUES ('g1', 99, 1, 5, 'seq_gap', ARRAY[$1], $2, $2, false, $2)`,
      [OPEN_MARKETS[1], data.nowUs - 40 * 60_000_000],
    );
  });
  await withClient(dbs.gatherers[0]!.url, (c) =>
    c.query(`INSERT INTO dedup_watermark (merged_xid, merged_batch_id, updated_at) VALUES ('100', 1, $1)`, [data.nowUs]),
  );
  fresh = await pg.newDatabase('kdp_new');
  await withClient(fresh, (c) => migrate(c, { kind: 'gatherer', engine: 'postgres' }));
});
after(async () => {
  await pg?.close();
});

async function run(q: Query, url: string, productionUrl = dbs.production, nowUs = data.nowUs): Promise<QueryResult[]> {
  return withClient(url, async (c) => {
    try {
      return await runAsPsql(c, substitute(q.sql, { nowUs, productionUrl }));
    } catch (err) {
      throw new Error(`${q.where} failed on ${url.split('/').pop()}: ${(err as Error).message}\n${q.sql}`);
    }
  });
}

const find = (fragment: string): Query => {
  const q = runbookQueries().find((x) => x.sql.includes(fragment));
  assert.ok(q, `no runbook query contains ${fragment}`);
  return q;
};

describe('docs/runbooks.md', () => {
  test('every SQL block and psql -c command for plain PostgreSQL runs on the database it names', async () => {
    const queries = runbookQueries();
    assert.ok(queries.length >= 25, `only ${queries.length} queries found`);
    let ran = 0;
    for (const q of queries) {
      if (q.target.startsWith('timescale')) continue; // the TimescaleDB suite below runs these
      if (q.target === 'new gatherer') await run(q, fresh);
      if (q.target === 'production' || q.target === 'either') await run(q, dbs.production);
      if (q.target === 'gatherer' || q.target === 'either') await run(q, dbs.gatherers[0]!.url);
      ran++;
    }
    assert.equal(ran, queries.filter((q) => !q.target.startsWith('timescale')).length);
    assert.ok(queries.filter((q) => q.target === 'new gatherer').length >= 3, 'the rebuild procedure has its blocks');
  });

  test("the rebuild blocks copy production's recent rows into the new gatherer under batches of its own", async () => {
    // The first test ran them on `fresh`, in the runbook's order, with the helper dropped at the end.
    await withClient(fresh, async (c) => {
      const batches = await c.query(`SELECT table_name, sum(row_count)::int AS n FROM ingest_batches WHERE writer = 'rebuild' GROUP BY 1 ORDER BY 1`);
      const byTable = Object.fromEntries(batches.rows.map((r) => [r.table_name, r.n]));
      assert.deepEqual(byTable, {
        orderbook_deltas: data.deltas.length,
        orderbook_snapshots: 2 * OPEN_MARKETS.length,
        tickers: data.tickers.length,
        trades: data.trades.length,
      });
      const orphans = await c.query(`SELECT count(*)::int AS n FROM trades t WHERE NOT EXISTS (SELECT 1 FROM ingest_batches b WHERE b.batch_id = t.batch_id)`);
      assert.equal(orphans.rows[0].n, 0, 'every copied row belongs to one of the new batches');
      const helper = await c.query(`SELECT count(*)::int AS n FROM pg_proc WHERE proname = 'kdp_rebuild_copy'`);
      assert.equal(helper.rows[0].n, 0, 'the helper is dropped at the end');
    });
  });

  test('the recent-rows checks count the rows of the last minute', async () => {
    const [r] = await run(find('FROM trades WHERE received_at > extract(epoch from now()) * 1000000 - 60000000'), dbs.gatherers[0]!.url);
    assert.equal(Number(r!.rows[0].count), OPEN_MARKETS.length, 'one trade per market arrived 20 s ago');
  });

  test('the integrity checks find the stale market, the missing REST snapshots and the old open gap', async () => {
    const [stale] = await run(find('AND NOT EXISTS (SELECT 1 FROM tickers k'), dbs.production);
    assert.deepEqual(
      stale!.rows.map((x) => x.ticker),
      [STALE],
    );
    const [noTrade] = await run(find('86400000000'), dbs.production);
    assert.deepEqual(
      noTrade!.rows.map((x) => x.ticker),
      [STALE],
    );
    const [rest] = await run(find("s.source = 'rest'"), dbs.production);
    assert.deepEqual(rest!.rows.map((x) => x.ticker).sort(), [...OPEN_MARKETS, STALE].sort(), 'one snapshot each, fewer than 4 per hour');
    const [gaps] = await run(find('WHERE NOT recovered AND detected_at < extract(epoch from now()) * 1000000 - 900000000'), dbs.production);
    assert.deepEqual(
      gaps!.rows.map((x) => [x.gatherer, Number(x.gap_id)]),
      [['g1', 99]],
    );
  });

  test('the gap and market queries return the planted rows', async () => {
    const [byTicker] = await run(find('unnest(g.tickers)'), dbs.gatherers[0]!.url);
    assert.deepEqual(
      byTicker!.rows.map((x) => [x.ticker, Number(x.gaps)]),
      [[OPEN_MARKETS[0], 2]],
    );
    const [perMinute] = await run(find("date_trunc('minute'"), dbs.production);
    assert.equal(
      perMinute!.rows.reduce((n, x) => n + Number(x.trades), 0),
      3,
    );
    const [, ledger] = await run(find(":'ticker' = ANY (tickers)"), dbs.production);
    assert.deepEqual(ledger!.rows.map((x) => x.recovered).sort(), [false, true], "the market's recovered and its fresh open gap");
  });

  test('every metric the runbook greps for is one our services export', () => {
    const names = [...ourMetricNames()];
    const patterns = DOC.split('\n')
      .filter((l) => l.includes('/metrics'))
      .flatMap((l) => [...l.matchAll(/grep(?: -E)? (?:'([^']+)'|([^\s|'"`]+))/g)].map((m) => (m[1] ?? m[2])!));
    assert.ok(patterns.length >= 15, `only ${patterns.length} metric greps`);
    for (const p of patterns) {
      for (const alt of expandAlternation(p.replace(/[\^$]/g, '').trim())) {
        assert.ok(
          names.some((n) => n.includes(alt)),
          `runbook greps /metrics for "${alt}", which no metric contains`,
        );
      }
    }
  });

  test('every name the seed mapping table gives as ours exists in the code or the schema', async () => {
    const rows = mappingRows(DOC);
    assert.ok(rows.length >= 60, `only ${rows.length} mapping rows`);
    const src = sourceText();
    const alerts = alertNames();
    const schema = new Set<string>();
    for (const url of [dbs.production, dbs.gatherers[0]!.url]) {
      const r = await withClient(url, (c) => c.query(`SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'`));
      for (const x of r.rows) schema.add(x.table_name).add(`${x.table_name}.${x.column_name}`);
    }
    let checked = 0;
    for (const row of rows) {
      assert.ok(row.seedStep && row.seedUses && row.ours, `mapping row at line ${row.line} has an empty cell`);
      for (const token of codeSpans(row.ours)) {
        const kind = kindOf(token);
        const ok = {
          command: () => isCommand(token),
          unit: () => isUnit(token),
          error: () => isErrorCode(token),
          alert: () => alerts.has(token),
          endpoint: () => isEndpoint(token, src),
          config: () => isConfigKey(token) || schema.has(token),
          'metric-or-schema': () => metricOrLiteral(token, src) || schema.has(token.replace(/\{.*$/, '')),
          other: () => true,
        }[kind]();
        assert.ok(ok, `mapping row at line ${row.line}: \`${token}\` (${kind}) does not exist in our system`);
        if (kind !== 'other') checked++;
      }
    }
    assert.ok(checked >= 100, `only ${checked} names checked`);
  });

  test('every section an alert links to exists', () => {
    const anchors = headingAnchors(DOC);
    const alerts = readFileSync(join(repoRoot(), 'ops', 'prometheus', 'alerts.yml'), 'utf8');
    for (const m of alerts.matchAll(/runbook: "docs\/runbooks\.md#([a-z0-9-]+)"/g)) assert.ok(anchors.has(m[1]!), `#${m[1]}`);
    for (const m of DOC.matchAll(/\]\(#([a-z0-9-]+)\)/g)) assert.ok(anchors.has(m[1]!), `internal link #${m[1]}`);
  });
});

// The TimescaleDB blocks on a migrated TimescaleDB gatherer and production. Each test (not the
// suite) carries the skip, so a machine without TimescaleDB reports them skipped, never passed.
const tsSkip = timescaleSkip();
describe('docs/runbooks.md on TimescaleDB', () => {
  let ts: TestPg | undefined;
  let tsGatherer: string;
  let tsProduction: string;
  const nowUs = Date.now() * 1000;
  const delta = (exchangeTs: number, batchId: string): Row => ({
    ticker: OPEN_MARKETS[0],
    side: 'yes',
    price: '0.35',
    delta: '1.00',
    exchange_ts: exchangeTs,
    occurrence: 0,
    received_at: exchangeTs + 500,
    gatherer: 'g1',
    batch_id: batchId,
  });
  /** One committed batch of one delta, as a gatherer writer commits it (rows and ingest_batches row together). */
  const writeDeltaBatch = (c: ClientBase, exchangeTs: number): Promise<string> =>
    (async () => {
      await c.query('BEGIN');
      const id = (await c.query(`SELECT nextval('ingest_batch_id_seq')::text AS id`)).rows[0].id as string;
      await insertRows(c, 'orderbook_deltas', [delta(exchangeTs, id)], false);
      await c.query(`INSERT INTO ingest_batches (batch_id, writer, table_name, row_count) VALUES ($1, 'test', 'orderbook_deltas', 1)`, [id]);
      const xid = (await c.query(`SELECT xid::text AS x FROM ingest_batches WHERE batch_id = $1`, [id])).rows[0].x as string;
      await c.query('COMMIT');
      return xid;
    })();
  const chunksOf = (c: ClientBase): Promise<{ start: number; compressed: boolean }[]> =>
    c
      .query(
        `SELECT range_start_integer::text AS s, is_compressed FROM timescaledb_information.chunks WHERE hypertable_name = 'orderbook_deltas' ORDER BY range_start_integer`,
      )
      .then((r) => r.rows.map((x) => ({ start: Number(x.s), compressed: x.is_compressed as boolean })));
  const dayOf = (us: number): number => Math.floor(us / DAY_US) * DAY_US;
  const merged = nowUs - 10.5 * DAY_US; // expired, merged: dropped
  const unmerged = nowUs - 8.5 * DAY_US; // expired, not merged: kept
  const recent = nowUs - 3_600_000_000; // young: neither compressed nor dropped

  before(async () => {
    if (tsSkip) return;
    ts = await startTimescale();
    tsGatherer = await ts.newDatabase('kdp_tsg');
    tsProduction = await ts.newDatabase('kdp_tsp');
    await withClient(tsProduction, async (c) => {
      await migrate(c, { kind: 'production', engine: 'timescale' });
      await insertRows(c, 'orderbook_deltas', [delta(nowUs - 3 * DAY_US, '1'), delta(recent, '2')], true);
    });
    await withClient(tsGatherer, async (c) => {
      await migrate(c, { kind: 'gatherer', engine: 'timescale' });
      await writeDeltaBatch(c, merged);
      const firstUnmergedXid = await writeDeltaBatch(c, unmerged);
      await writeDeltaBatch(c, recent);
      // The deduplicator merged every batch below the second one's xid: the oldest only.
      await c.query(`INSERT INTO dedup_watermark (merged_xid, merged_batch_id, updated_at) VALUES ($1::xid8, 1, $2)`, [firstUnmergedXid, nowUs]);
    });
  });
  after(async () => {
    await ts?.close();
  });

  test('every TimescaleDB block runs on the databases it names', { skip: tsSkip }, async () => {
    const queries = runbookQueries().filter((q) => q.target.startsWith('timescale'));
    assert.ok(queries.length >= 4, `only ${queries.length} TimescaleDB blocks`);
    for (const q of queries) {
      await run(q, tsGatherer, tsProduction, nowUs);
      if (q.target === 'timescale') await run(q, tsProduction, tsProduction, nowUs);
    }
  });

  test('the manual compression compresses chunks older than 2 days and leaves younger ones', { skip: tsSkip }, async () => {
    // The first test ran the blocks; here their effect.
    await withClient(tsProduction, async (c) => {
      assert.deepEqual(await chunksOf(c), [
        { start: dayOf(nowUs - 3 * DAY_US), compressed: true },
        { start: dayOf(recent), compressed: false },
      ]);
    });
  });

  test('the manual drop removes the expired merged chunk and keeps the expired chunk with unmerged rows', { skip: tsSkip }, async () => {
    await withClient(tsGatherer, async (c) => {
      assert.deepEqual(await chunksOf(c), [
        { start: dayOf(unmerged), compressed: true },
        { start: dayOf(recent), compressed: false },
      ]);
      const left = await c.query(`SELECT exchange_ts::text AS t FROM orderbook_deltas ORDER BY 1`);
      assert.deepEqual(
        left.rows.map((r) => Number(r.t)),
        [unmerged, recent].map((t) => Math.round(t)),
      );
    });
  });

  test('without a dedup watermark the manual drop drops nothing', { skip: tsSkip }, async () => {
    const drop = runbookQueries().find((q) => q.target === 'timescale gatherer' && q.sql.includes('drop_chunks'));
    assert.ok(drop, 'the runbook has a guarded drop_chunks block');
    await withClient(tsGatherer, (c) => c.query('DELETE FROM dedup_watermark'));
    const before = await withClient(tsGatherer, chunksOf);
    await run(drop, tsGatherer, tsProduction, nowUs);
    assert.deepEqual(await withClient(tsGatherer, chunksOf), before);
  });
});

/** "a_(b|c)_d" -> ["a_b_d", "a_c_d"]; top-level "x|y" -> ["x", "y"]. */
function expandAlternation(p: string): string[] {
  const group = /\(([^()]*)\)/.exec(p);
  if (group) return group[1]!.split('|').flatMap((alt) => expandAlternation(p.slice(0, group.index) + alt + p.slice(group.index + group[0].length)));
  return p.split('|').filter((x) => x.length > 0);
}
