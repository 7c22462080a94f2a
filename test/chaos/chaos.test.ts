// Short seeded chaos runs of the whole platform (separate processes, a PostgreSQL cluster per
// database), and the checker's own test: defects planted into a real run's production — a dropped
// row, a duplicated row, a changed value, a cursor that skips — must each be caught.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from 'pg';
import { checkChaosRun, type ChaosCheckInput, type Violation } from '../../src/chaos/checker';
import { runOnce, waitMergeSettled, type ChaosOptions } from '../../src/chaos/run';
import type { Stack } from '../../src/demo/stack';
import { migrate } from '../../src/schema/migrate';
import { checkRunCertificates } from '../coverage/chaos-certificates';

const SHORT: ChaosOptions = { seed: 0, seconds: 25, runs: 1, markets: 30, rate: 600, meanGapMs: 1_200, keep: false, booksMax: 150 };
const lines: string[] = [];
const say = (line: string): void => void lines.push(line);

function failureText(r: { error: string | undefined }): string {
  return `${r.error ?? ''}\n${lines.slice(-60).join('\n')}`;
}

for (const seed of [11, 21]) {
  // Seed 21 also grades the run's coverage certificates (one chaos run serves both checks), over
  // 40 s: its schedule leaves a quiet tail (no gap open) of several seconds before the exchange
  // stops, which the certificate check needs (seed 12 at 25 or 35 s left 1.5 s or none).
  const certificates = seed === 21;
  const seconds = certificates ? 40 : SHORT.seconds;
  const name = certificates
    ? `chaos seed ${seed}: production equals the truth; recovered gaps grade their market-hours "recovered", untouched ones "complete", none "incomplete"`
    : `chaos seed ${seed}: faults injected, production equals the truth (trades, deltas, books, lifecycle, ledger)`;
  test(name, { timeout: 300_000 }, async (t) => {
    lines.length = 0;
    const r = await runOnce(seed, { ...SHORT, seed, seconds }, say, async (stack, report) => {
      if (certificates && report.ok) await checkRunCertificates(t, stack, SHORT.markets);
    });
    assert.equal(r.error, undefined, failureText(r));
    assert.ok(r.injected >= 5, `faults injected: ${r.injected}`);
    assert.ok(r.report!.truth.trades.expected > 500 && r.report!.truth.deltas.expected > 1000, 'the exchange traded');
    assert.ok(r.ok, failureText(r));
  });
}

async function expectCaught(c: Client, input: ChaosCheckInput, plant: readonly string[], check: Violation['check'], detail: RegExp): Promise<void> {
  await c.query('BEGIN');
  try {
    for (const sql of plant) await c.query(sql);
    const r = await checkChaosRun(c, input);
    assert.equal(r.ok, false, `planted defect (${plant.join('; ')}) went unnoticed`);
    assert.ok(
      r.violations.some((v) => v.check === check && detail.test(v.detail)),
      `expected a ${check} violation matching ${detail}; got ${JSON.stringify(r.violations.slice(0, 5))}`,
    );
  } finally {
    await c.query('ROLLBACK');
  }
}

/** Copies one row of `table` (the middle one by time) with `change` applied, then inserts the copy. */
function duplicateOf(table: string, timeColumn: string, change: string): string[] {
  return [
    `CREATE TEMP TABLE planted ON COMMIT DROP AS SELECT * FROM ${table} ORDER BY ${timeColumn} OFFSET (SELECT count(*) / 2 FROM ${table}) LIMIT 1`,
    `UPDATE planted SET ${change}`,
    `INSERT INTO ${table} SELECT * FROM planted`,
  ];
}

const MIDDLE_TRADE = `(SELECT trade_id FROM trades ORDER BY exchange_ts OFFSET (SELECT count(*) / 2 FROM trades) LIMIT 1)`;
const MIDDLE_DELTA = `(SELECT ctid FROM orderbook_deltas ORDER BY exchange_ts OFFSET (SELECT count(*) / 2 FROM orderbook_deltas) LIMIT 1)`;

/**
 * A second production database merged by a real deduplicator whose cursors were set to skip the
 * first third of every gatherer's batches: the rows those batches held never reach it.
 */
async function mergeWithSkippingCursors(stack: Stack): Promise<string> {
  const url = await stack.clusters.get('production')!.createDatabase('kdp_production_skip');
  const prod = new Client({ connectionString: url });
  await prod.connect();
  try {
    await migrate(prod, { kind: 'production', engine: 'postgres' });
    for (const g of stack.gatherers) {
      const gc = new Client({ connectionString: g.dbUrl });
      await gc.connect();
      try {
        const id = (await gc.query(`SELECT instance_id::text AS id FROM kdp_schema`)).rows[0].id;
        const cut = await gc.query(`SELECT xid::text AS xid FROM ingest_batches ORDER BY xid OFFSET (SELECT count(*) / 3 FROM ingest_batches) LIMIT 1`);
        await prod.query(`INSERT INTO dedup_cursors (gatherer, instance_id, merged_xid, merged_batch_id, updated_at) VALUES ($1, $2, $3::xid8, 0, 0)`, [
          g.name,
          id,
          cut.rows[0].xid,
        ]);
      } finally {
        await gc.end();
      }
    }
  } finally {
    await prod.end();
  }
  stack.productionUrl = url;
  await stack.startDedup();
  await waitMergeSettled(stack);
  return url;
}

test(
  "the checker catches planted defects in a real run: dropped, duplicated and changed rows, a missing ledger row, a skipping cursor, a trade dropped before one gatherer's ring",
  { timeout: 300_000 },
  async () => {
    lines.length = 0;
    const r = await runOnce(13, { ...SHORT, seed: 13 }, say, async (stack, report, input) => {
      const productionUrl = stack.productionUrl; // the skipping-cursor check below points the stack elsewhere
      assert.ok(report.ok, `the unplanted run passes:\n${lines.slice(-40).join('\n')}`);
      assert.ok(report.books.checked > 0 && report.lifecycle.expected > 0, 'books and lifecycle were compared');
      const c = new Client({ connectionString: stack.productionUrl });
      await c.connect();
      try {
        await expectCaught(c, input, [`DELETE FROM trades WHERE trade_id = ${MIDDLE_TRADE}`], 'trades', /^lost trade/);
        await expectCaught(c, input, [`DELETE FROM orderbook_deltas WHERE ctid = ${MIDDLE_DELTA}`], 'deltas', /^lost delta/);
        await expectCaught(c, input, duplicateOf('trades', 'exchange_ts', 'exchange_ts = exchange_ts + 1000'), 'trades', /^duplicated trade/);
        await expectCaught(c, input, duplicateOf('orderbook_deltas', 'exchange_ts', 'occurrence = occurrence + 100'), 'deltas', /^duplicated delta/);
        await expectCaught(c, input, [`UPDATE trades SET yes_price = yes_price + 0.01 WHERE trade_id = ${MIDDLE_TRADE}`], 'trades', /differs/);
        await expectCaught(c, input, [`UPDATE orderbook_deltas SET delta = delta + 1 WHERE ctid = ${MIDDLE_DELTA}`], 'deltas', /^changed delta/);
        await expectCaught(c, input, [`UPDATE orderbook_snapshots SET yes_levels = '[["0.5000","1.00"]]' WHERE source = 'ws'`], 'books', /book at/);
        await expectCaught(c, input, [`DELETE FROM lifecycle_events`], 'lifecycle', /^missing/);
        if (report.gaps.inLedger > 0) await expectCaught(c, input, [`DELETE FROM gap_ledger`], 'gaps', /has no ledger row/);
        if (report.ledger.rows > 0) await expectCaught(c, input, [`UPDATE gap_ledger SET recovered = false`], 'ledger', /is not recovered/);
      } finally {
        await c.end();
      }
      const skipped = new Client({ connectionString: await mergeWithSkippingCursors(stack) });
      await skipped.connect();
      try {
        const s = await checkChaosRun(skipped, input);
        assert.equal(s.ok, false, 'a production merged with skipping cursors fails the check');
        assert.ok(
          s.truth.trades.counts.lost > 0 && s.truth.deltas.counts.lost > 0,
          `lost: ${JSON.stringify(s.truth.trades.counts)} ${JSON.stringify(s.truth.deltas.counts)}`,
        );
      } finally {
        await skipped.end();
      }
      // A trade dropped before one gatherer's ring with no count or ledger row (the old pause-mode
      // hole): production stays whole from the other gatherers' copies, but that gatherer's own
      // database lacks it. Planted last: it is committed in g1's database.
      const g1 = new Client({ connectionString: input.gatherers![0]!.url });
      await g1.connect();
      const prod = new Client({ connectionString: productionUrl });
      await prod.connect();
      try {
        const gone = await g1.query(`DELETE FROM trades WHERE trade_id = ${MIDDLE_TRADE} RETURNING trade_id::text`);
        assert.equal(gone.rowCount, 1);
        const r2 = await checkChaosRun(prod, input);
        assert.equal(r2.truth.trades.counts.lost, 0, 'production is still whole');
        assert.ok(
          r2.violations.some((v) => v.check === 'gatherers' && v.detail.includes(gone.rows[0].trade_id)),
          `the silent drop is caught: ${JSON.stringify(r2.violations.slice(0, 5))}`,
        );
      } finally {
        await g1.end();
        await prod.end();
      }
    });
    assert.equal(r.error, undefined, failureText(r));
  },
);
