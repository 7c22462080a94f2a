// Coverage certificates against real PostgreSQL: three gatherer databases with ledgered gaps on
// chosen markets, merged by the real deduplicator (rows, delivered_by, gap ledger), then
// certificateFor and `kdp coverage` read production. Every figure is checked against what the
// test wrote: grades, covered seconds, each gap and how it was recovered, rows per gatherer.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import fc from 'fast-check';
import type { Client } from 'pg';
import { HOUR_US, certificateFor, type CoverageCertificate } from '../../src/coverage/certificate';
import { intersect, lengthOf, subtract, union, type Interval } from '../../src/coverage/intervals';
import { startDeduplicator } from '../../src/dedup/service';
import { TIME_SERIES_TABLES, tableByName, type TimeSeriesTableName } from '../../src/schema/tables';
import { startPg, type TestPg } from '../harness/pg';
import { repoRoot } from '../ops/helpers';
import { NOW_US, copyFor, dedupOptions, makeWorld, newDb, writeCopy, type Row } from '../dedup/fixtures';

let PG: TestPg;
const open: Client[] = [];
before(async () => {
  PG = await startPg();
});
after(async () => {
  for (const c of open) await c.end().catch(() => undefined);
  await PG?.close();
});

const MIN = 60_000_000;
const H0 = NOW_US; // 2026-11-23T12:00Z, an hour start
const [A, B, C, D] = ['KXBTCD-26NOV2312-T97499.99', 'KXETHD-26NOV2312-T3599.99', 'KXNBAGAME-26NOV23LALBOS-LAL', 'KXHIGHNY-26NOV23-B48.5'];
const NAMES = ['g1', 'g2', 'g3'];

interface Gap {
  gatherer: number;
  ticker: string | undefined; // undefined: every market (tickers '{}')
  from: number;
  to: number;
  kind: string;
  method: string | null; // null: not recovered
}

// Hour 1: A lost by g1 (recovered by snapshot); B lost by g2, never recovered (g1 and g3 have it);
// C lost by all three, all recovered; D lost by all three, none recovered; g1 restarted (every
// market, recovered). Hour 2: nothing happens.
const GAPS: readonly Gap[] = [
  { gatherer: 0, ticker: A, from: H0 + 10 * MIN, to: H0 + 12 * MIN, kind: 'seq_gap', method: 'get_snapshot' },
  { gatherer: 1, ticker: B, from: H0 + 20 * MIN, to: H0 + 21 * MIN, kind: 'ring_drop', method: null },
  ...[0, 1, 2].map((g) => ({ gatherer: g, ticker: C, from: H0 + 30 * MIN, to: H0 + 31 * MIN, kind: 'disconnect', method: 'resubscribe' })),
  ...[0, 1, 2].map((g) => ({ gatherer: g, ticker: D, from: H0 + 40 * MIN, to: H0 + 41 * MIN, kind: 'error_17', method: null })),
  { gatherer: 0, ticker: undefined, from: H0 + 50 * MIN, to: H0 + 52 * MIN, kind: 'gatherer_restart', method: 'resubscribe' },
];

/** A gatherer's copy of the world minus the rows its gaps lost. */
function lossyCopy(world: ReturnType<typeof makeWorld>, gi: number): Record<string, Row[]> {
  const copy = copyFor(world, NAMES[gi]!, [], 1_000 + gi * 300);
  const mine = GAPS.filter((g) => g.gatherer === gi);
  const lost = (t: string, r: Row): boolean => {
    const at = Number(r[tableByName(t as TimeSeriesTableName).timeColumn]);
    return mine.some((g) => (g.ticker === undefined || g.ticker === r.ticker) && at >= g.from && at < g.to);
  };
  return Object.fromEntries(Object.entries(copy).map(([t, rows]) => [t, rows.filter((r) => t === 'lifecycle_events' || !lost(t, r))]));
}

async function writeLedger(c: Client, gi: number): Promise<void> {
  for (const g of GAPS.filter((x) => x.gatherer === gi)) {
    await c.query(
      `INSERT INTO gap_ledger (gatherer, conn_id, kind, tickers, window_start, window_end, detected_at, recovered, recovered_at, recovery_method)
       VALUES ($1, 1, $2, $3, $4, $5, $5, $6, $7, $8)`,
      [NAMES[gi], g.kind, g.ticker ? [g.ticker] : [], g.from, g.to, g.method !== null, g.method ? g.to + 1_000 : null, g.method],
    );
  }
}

const byTicker = (certs: readonly CoverageCertificate[], hour: number): Map<string, CoverageCertificate> =>
  new Map(certs.filter((c) => c.hourStartUs === hour).map((c) => [c.ticker, c]));

describe('coverage certificates', () => {
  let prodUrl = '';
  let certs: CoverageCertificate[] = [];
  let copies: Record<string, Row[]>[] = [];

  before(async () => {
    // An event every 5 s for two hours, the four markets in turn: every market every 20 s.
    const world = makeWorld(5, 1440, H0, 5_000_000);
    copies = [0, 1, 2].map((gi) => lossyCopy(world, gi));
    const dbs = [];
    for (let gi = 0; gi < 3; gi++) {
      const g = await newDb(PG, 'gatherer', open);
      await writeCopy(g.c, copies[gi]!, 200);
      await writeLedger(g.c, gi);
      dbs.push({ name: NAMES[gi]!, url: g.url });
    }
    const prod = await newDb(PG, 'production', open);
    prodUrl = prod.url;
    // D closes half way through hour 2.
    for (const t of [A, B, C, D])
      await prod.c.query(`INSERT INTO markets (ticker, status, open_time, close_time, raw, updated_at) VALUES ($1, 'active', $2, $3, '{}', 0)`, [
        t,
        H0 - 24 * HOUR_US,
        t === D ? H0 + HOUR_US + 30 * MIN : null,
      ]);
    const d = await startDeduplicator({ options: dedupOptions(dbs, prodUrl), loop: false, http: false });
    try {
      for (let i = 0; i < 50 && (await d.runOnce()).more; i++);
    } finally {
      await d.stop();
    }
    certs = await certificateFor(prod.c, { fromUs: H0, toUs: H0 + 2 * HOUR_US });
  });

  test('grades: one gatherer lost and recovered, or lost but others recorded -> recovered; all lost but recovered -> recovered; all lost, none recovered -> incomplete; untouched hour -> complete', () => {
    assert.equal(certs.length, 8, 'four markets x two hours');
    const h1 = byTicker(certs, H0);
    assert.deepEqual(
      [A, B, C, D].map((t) => h1.get(t)!.grade),
      ['recovered', 'recovered', 'recovered', 'incomplete'],
    );
    const h2 = byTicker(certs, H0 + HOUR_US);
    for (const t of [A, B, C, D]) assert.equal(h2.get(t)!.grade, 'complete', t);
    assert.deepEqual(
      [A, B, C].map((t) => h2.get(t)!.windowSeconds),
      [3600, 3600, 3600],
    );
    assert.equal(h2.get(D)!.windowSeconds, 1800, 'D closed half way through hour 2');
    for (const t of [A, B, C, D]) assert.equal(h2.get(t)!.coveredSeconds, h2.get(t)!.windowSeconds);
  });

  test('covered seconds and uncovered stretches are exactly where every gatherer had a gap on the market', () => {
    const h1 = byTicker(certs, H0);
    assert.deepEqual(h1.get(A)!.uncovered, []);
    assert.deepEqual(h1.get(B)!.uncovered, []);
    assert.deepEqual(h1.get(C)!.uncovered, [[H0 + 30 * MIN, H0 + 31 * MIN]]);
    assert.deepEqual(h1.get(D)!.uncovered, [[H0 + 40 * MIN, H0 + 41 * MIN]]);
    assert.equal(h1.get(C)!.coveredSeconds, 3540);
    assert.deepEqual(h1.get(A)!.gatherersRecording, NAMES);
  });

  test('every ledgered gap touching the market is listed with kind, window, and how it was recovered', () => {
    const h1 = byTicker(certs, H0);
    for (const t of [A, B, C, D]) {
      const want = GAPS.filter((g) => g.ticker === undefined || g.ticker === t)
        .map((g) => ({
          gatherer: NAMES[g.gatherer],
          kind: g.kind,
          windowStartUs: g.from,
          windowEndUs: g.to,
          recovered: g.method !== null,
          how: g.method ?? (t === B ? 'other_gatherer' : 'none'),
        }))
        .sort((x, y) => x.windowStartUs - y.windowStartUs || x.gatherer!.localeCompare(y.gatherer!));
      const got = h1.get(t)!.gaps.map((g) => ({
        gatherer: g.gatherer,
        kind: g.kind,
        windowStartUs: g.windowStartUs,
        windowEndUs: g.windowEndUs,
        recovered: g.recovered,
        how: g.how,
      }));
      assert.deepEqual(got, want, t);
    }
    assert.deepEqual(byTicker(certs, H0 + HOUR_US).get(A)!.gaps, []);
  });

  test('rows per table and per gatherer are what each copy held (delivered_by)', () => {
    for (const c of certs) {
      for (const t of TIME_SERIES_TABLES) {
        if (t.name === 'lifecycle_events') continue;
        const inHour = (r: Row): boolean => r.ticker === c.ticker && Math.floor(Number(r[t.timeColumn]) / HOUR_US) * HOUR_US === c.hourStartUs;
        const per = copies.map((cp) => (cp[t.name] ?? []).filter(inHour));
        const byGatherer = Object.fromEntries(per.map((rows, gi) => [NAMES[gi]!, rows.length]).filter(([, n]) => n !== 0));
        const got = c.tables[t.name];
        if (Object.keys(byGatherer).length === 0) {
          assert.equal(got, undefined, `${c.ticker} ${t.name}`);
          continue;
        }
        assert.deepEqual(got?.byGatherer, byGatherer, `${c.ticker} ${c.hour} ${t.name}`);
        assert.equal(got.unknown, 0);
      }
    }
    // B in hour 1: g2 missed a minute of its deltas and g1 two minutes: g3 and one other still delivered each.
    const b = byTicker(certs, H0).get(B)!.tables.orderbook_deltas!;
    assert.ok(b.byGatherer.g2! < b.byGatherer.g3!, 'g2 delivered fewer B deltas than g3, which lost none');
    assert.equal(b.singleCopy, 0, 'every B delta had at least two copies');
  });

  test('kdp coverage prints the same certificates as JSON, and a table', async () => {
    const run = promisify(execFile);
    const base = [join(repoRoot(), 'bin', 'kdp.js'), 'coverage', '--production', prodUrl, '--from', '2026-11-23T12:00:00Z', '--to', String(H0 + 2 * HOUR_US)];
    const json = JSON.parse((await run(process.execPath, [...base, '--ticker', C, '--json'])).stdout) as CoverageCertificate[];
    assert.deepEqual(
      json,
      certs.filter((c) => c.ticker === C),
    );
    const table = (await run(process.execPath, base)).stdout;
    assert.match(table, /8 certificates: 3 recovered, 1 incomplete, 4 complete/);
    assert.match(table, new RegExp(`${D.replace(/\./g, '\\.')}\\s+incomplete`));
    await assert.rejects(run(process.execPath, [...base.slice(0, 4), '--from', String(H0), '--to', String(H0)]), (err: { stderr?: string }) => {
      assert.match(err.stderr ?? '', /KDP_ERR_USAGE/);
      return true;
    });
  });
});

describe('interval arithmetic', () => {
  test('property: union, subtract and intersect agree with a point-by-point count', () => {
    const iv = fc.tuple(fc.integer({ min: 0, max: 60 }), fc.integer({ min: 0, max: 60 })).map(([a, b]): Interval => [Math.min(a, b), Math.max(a, b)]);
    fc.assert(
      fc.property(fc.array(iv, { maxLength: 6 }), fc.array(iv, { maxLength: 6 }), iv, (xs, ys, w) => {
        const inAny = (s: readonly Interval[], p: number): boolean => s.some(([a, b]) => p >= a && p < b);
        const count = (f: (p: number) => boolean): number => Array.from({ length: 61 }, (_, p) => p).filter(f).length;
        assert.equal(
          lengthOf(union(xs)),
          count((p) => inAny(xs, p)),
        );
        assert.equal(
          lengthOf(subtract(xs, ys)),
          count((p) => inAny(xs, p) && !inAny(ys, p)),
        );
        assert.equal(
          lengthOf(intersect(xs, w)),
          count((p) => inAny(xs, p) && p >= w[0] && p < w[1]),
        );
        const u = union(xs);
        for (let i = 1; i < u.length; i++) assert.ok(u[i]![0] > u[i - 1]![1], 'disjoint and sorted');
      }),
      { numRuns: 300, seed: 11 },
    );
  });
});
