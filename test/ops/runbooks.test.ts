// docs/runbooks.md against a migrated production and gatherer database holding data: every SQL
// block and every `psql ... -c "..."` command runs without error on the database it names, the
// checks return what the planted data says they must, every metric the runbook greps for exists,
// and every section an alert links to is there.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { QueryResult } from 'pg';
import { startPg, withClient, type TestPg } from '../harness/pg';
import { createOpsDbs, healthyDataset, loadHealthy, OPEN_MARKETS, type Dataset, type OpsDbs } from './fixture';
import { ourMetricNames, repoRoot } from './helpers';
import { fencedBlocks, headingAnchors } from './markdown';

const DOC = readFileSync(join(repoRoot(), 'docs', 'runbooks.md'), 'utf8');
type Target = 'production' | 'gatherer' | 'either' | 'timescale';
interface Query {
  readonly target: Target;
  readonly sql: string;
  readonly where: string;
}

/** ```sql blocks (target from their "-- run on:" line) and psql -c commands in bash blocks. */
function runbookQueries(): Query[] {
  const out: Query[] = [];
  for (const b of fencedBlocks(DOC)) {
    if (b.lang === 'sql') {
      const m = /^\s*-- run on: (production|gatherer|either|timescale)\b/.exec(b.body);
      assert.ok(m, `sql block at line ${b.line} must start with "-- run on: production|gatherer|either|timescale"`);
      out.push({ target: m[1] as Target, sql: b.body, where: `sql block at line ${b.line}` });
    }
    if (b.lang === 'bash') {
      for (const m of b.body.matchAll(/psql "\$(PROD_DB|GATHERER_DB)"[^\n]*? -c "([^"]+)"/g)) {
        out.push({
          target: m[1] === 'PROD_DB' ? 'production' : 'gatherer',
          sql: m[2]!,
          where: `psql -c in bash block at line ${b.line}`,
        });
      }
    }
  }
  return out;
}

let pg: TestPg;
let dbs: OpsDbs;
let data: Dataset;
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
});
after(async () => {
  await pg?.close();
});

function substitute(sql: string): string {
  return sql
    .replace(/:'ticker'/g, `'${OPEN_MARKETS[0]}'`)
    .replace(/:start_us\b/g, String(data.nowUs - 120 * 60_000_000))
    .replace(/:end_us\b/g, String(data.nowUs));
}

async function run(q: Query, url: string): Promise<QueryResult[]> {
  return withClient(url, async (c) => {
    try {
      const r = (await c.query(substitute(q.sql))) as QueryResult | QueryResult[];
      return Array.isArray(r) ? r : [r];
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
  test('every SQL block and psql -c command runs on the database it names', async () => {
    const queries = runbookQueries();
    assert.ok(queries.length >= 25, `only ${queries.length} queries found`);
    let ran = 0;
    for (const q of queries) {
      if (q.target === 'timescale') continue; // TimescaleDB cannot be installed here; these blocks are marked
      if (q.target !== 'gatherer') await run(q, dbs.production);
      if (q.target !== 'production') await run(q, dbs.gatherers[0]!.url);
      ran++;
    }
    assert.equal(ran, queries.filter((q) => q.target !== 'timescale').length);
    assert.ok(queries.filter((q) => q.target === 'timescale').length <= 1, 'only the TimescaleDB chunk block is unrunnable here');
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

  test('every section an alert links to exists', () => {
    const anchors = headingAnchors(DOC);
    const alerts = readFileSync(join(repoRoot(), 'ops', 'prometheus', 'alerts.yml'), 'utf8');
    for (const m of alerts.matchAll(/runbook: "docs\/runbooks\.md#([a-z0-9-]+)"/g)) assert.ok(anchors.has(m[1]!), `#${m[1]}`);
    for (const m of DOC.matchAll(/\]\(#([a-z0-9-]+)\)/g)) assert.ok(anchors.has(m[1]!), `internal link #${m[1]}`);
  });
});

/** "a_(b|c)_d" -> ["a_b_d", "a_c_d"]; top-level "x|y" -> ["x", "y"]. */
function expandAlternation(p: string): string[] {
  const group = /\(([^()]*)\)/.exec(p);
  if (group) return group[1]!.split('|').flatMap((alt) => expandAlternation(p.slice(0, group.index) + alt + p.slice(group.index + group[0].length)));
  return p.split('|').filter((x) => x.length > 0);
}
