// Coverage certificates of a real chaos run (src/chaos/: three gatherers, the deduplicator and
// production as separate processes, seeded faults that never impair every gatherer at once):
// every market-hour a recovered gap touched grades "recovered", every untouched one "complete",
// none "incomplete"; and the certificates' row counts add up to production's rows with every row
// naming at least one gatherer that delivered it. Called from a chaos seed's after-check in
// test/chaos/chaos.test.ts, so the suite pays for one chaos run, not two.
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { withClient } from '../../src/core/pgclient';
import { HOUR_US, certificateFor, type CoverageCertificate } from '../../src/coverage/certificate';
import type { Stack } from '../../src/demo/stack';

interface LedgerRow {
  tickers: string[];
  window_start: number;
  window_end: number | null;
  recovered: boolean;
}

interface RunCoverage {
  certs: CoverageCertificate[];
  ledger: LedgerRow[];
  deltasInRange: number;
  deltasWithoutGatherer: number;
  /** The longer quiet stretch no ledger window touched: before the first window opened, or after
   *  the last one closed (a REST recovery may finish later: the data the window names is what a
   *  certificate judges) and before the exchange stopped. */
  tail: CoverageCertificate[];
  tailRange: { fromUs: number; toUs: number };
}

async function readRunCoverage(productionUrl: string): Promise<RunCoverage> {
  return withClient(productionUrl, async (c) => {
    const span = (await c.query(`SELECT min(received_at)::float8 AS lo, max(received_at)::float8 AS hi FROM orderbook_deltas`)).rows[0];
    // Whole hours, as the archiver asks.
    const range = { fromUs: Math.floor(span.lo / HOUR_US) * HOUR_US, toUs: (Math.floor(span.hi / HOUR_US) + 1) * HOUR_US };
    const certs = await certificateFor(c, range);
    const ledger: LedgerRow[] = (await c.query(`SELECT tickers, window_start::float8, window_end::float8, recovered FROM gap_ledger`)).rows;
    const d = await c.query(
      `SELECT count(*)::int AS n, count(*) FILTER (WHERE delivered_by IS NULL OR delivered_by = 0)::int AS none FROM orderbook_deltas WHERE exchange_ts >= $1 AND exchange_ts < $2`,
      [range.fromUs, range.toUs],
    );
    const edges = await c.query(`SELECT min(window_start)::float8 AS first, max(greatest(window_end, detected_at))::float8 AS last FROM gap_ledger`);
    const head = { fromUs: span.lo as number, toUs: (edges.rows[0].first as number) - 1 };
    const end = { fromUs: (edges.rows[0].last as number) + 1, toUs: span.hi as number };
    const tailRange = head.toUs - head.fromUs > end.toUs - end.fromUs ? head : end;
    const tail = tailRange.toUs > tailRange.fromUs ? await certificateFor(c, tailRange) : [];
    return { certs, ledger, deltasInRange: d.rows[0].n, deltasWithoutGatherer: d.rows[0].none, tail, tailRange };
  });
}

/** Checks the certificates of a finished chaos run's production against its gap ledger. */
export async function checkRunCertificates(t: TestContext, stack: Stack, markets: number): Promise<void> {
  const { certs, ledger, deltasInRange, deltasWithoutGatherer, tail, tailRange } = await readRunCoverage(stack.productionUrl);
  assert.ok(ledger.length > 0 && ledger.every((g) => g.recovered), 'the run ledgered gaps and recovered every one');
  assert.ok(certs.length >= markets, `certificates: ${certs.length}`);
  const grades: Record<string, number> = {};
  for (const c of certs) {
    grades[c.grade] = (grades[c.grade] ?? 0) + 1;
    // The market's part of the hour, as the certificate bounds it.
    const hourEnd = c.hourStartUs + HOUR_US;
    const touching = ledger.filter(
      (g) => (g.tickers.length === 0 || g.tickers.includes(c.ticker)) && g.window_start < hourEnd && (g.window_end ?? hourEnd) > c.hourStartUs,
    );
    const where = `${c.ticker} ${c.hour}: ${c.gradeReason}`;
    if (touching.length > 0) assert.equal(c.grade, 'recovered', where);
    else assert.equal(c.grade, 'complete', where);
  }
  t.diagnostic(`${ledger.length} ledger rows, ${certs.length} certificates ${JSON.stringify(grades)}`);
  assert.equal(grades.incomplete ?? 0, 0);
  // Untouched: a stretch no gap touched grades every market complete, all of it covered. Its length
  // depends on how fast the last restart is recovered on a busy machine (a clean-clone CI run beside
  // a 40,000-market demo left 0.7 s after the last window): under a second it is not graded.
  const quietUs = tailRange.toUs - tailRange.fromUs;
  t.diagnostic(`quiet stretch: ${(quietUs / 1e6).toFixed(1)} s, ${tail.length} certificates`);
  if (quietUs >= 1_000_000) {
    assert.ok(tail.length >= markets);
    for (const c of tail) {
      assert.equal(c.grade, 'complete', `${c.ticker}: ${c.gradeReason}`);
      assert.equal(c.coveredSeconds, c.windowSeconds, c.ticker);
    }
  }
  assert.ok((grades.recovered ?? 0) > 0, `grades ${JSON.stringify(grades)}`);
  // Row counts: the certificates partition production's deltas of the range.
  const certified = certs.reduce((s, c) => s + (c.tables.orderbook_deltas?.rows ?? 0), 0);
  assert.equal(certified, deltasInRange);
  assert.equal(deltasWithoutGatherer, 0, 'every delta names a gatherer in delivered_by');
}
