// COPY throughput into orderbook_deltas: the batch writer (BEGIN; COPY; INSERT ingest_batches;
// COMMIT per batch) against `psql \copy` of the same rows (one COPY, one transaction, no batch
// bookkeeping), measured in the same run on a throw-away embedded PostgreSQL cluster.
//   node dist/bench/copy-throughput.js [rows=200000] [batchRowsMax=5000]
// Each contender writes into its own freshly migrated database; row lines are built before timing.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { withClient } from '../src/core/pgclient';
import { createLogger } from '../src/core/log';
import { PgCluster } from '../src/core/pgcluster';
import { copyText } from '../src/copy/text';
import { WriterCounters } from '../src/copy/stats';
import { CopyWriter } from '../src/copy/writer';
import { migrate } from '../src/schema/migrate';
import { columnNames, ORDERBOOK_DELTAS, quoteIdent } from '../src/schema/tables';
import { emitResult, environment } from './common';

const NOW_US = Date.now() * 1000;

function rowLines(n: number): string[] {
  const out: string[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const ticker = copyText(`KXBTCD-26NOV2317-T${90000 + (i % 400) * 250}`);
    out[i] =
      `${ticker}\t${i % 2 ? 'yes' : 'no'}\t0.${String(1000 + (i % 9000)).slice(-4)}\t${(i % 300) - 150}.00\t${NOW_US + i}\t0\t${NOW_US + i + 900}\tg1\t1\t${1 + (i % 16)}\t${i}\t${NOW_US + i - 100}`;
  }
  return out;
}

async function freshDb(cluster: PgCluster, name: string): Promise<string> {
  const url = await cluster.createDatabase(name);
  await withClient(url, (c) => migrate(c, { kind: 'gatherer', engine: 'postgres', nowUs: NOW_US }));
  return url;
}

async function countRows(url: string): Promise<number> {
  return withClient(url, async (c) => Number((await c.query(`SELECT count(*) AS n FROM orderbook_deltas`)).rows[0].n));
}

async function viaWriter(url: string, rows: string[], batchRowsMax: number): Promise<{ seconds: number; batches: number }> {
  const stats = new WriterCounters();
  const w = CopyWriter.create(
    { url, table: 'orderbook_deltas', writerName: 'bench', batchRowsMax, flushIntervalMs: 50 },
    { stats, log: createLogger('bench', { level: 'warn' }) },
  );
  const start = performance.now();
  const received = Date.now() * 1000;
  for (const row of rows) {
    while (!w.append(row, received)) await w.whenWritable();
  }
  await w.flush();
  const seconds = (performance.now() - start) / 1000;
  await w.close();
  return { seconds, batches: stats.batchesCommitted.get('orderbook_deltas') ?? 0 };
}

function viaPsql(url: string, rows: string[]): number {
  const dir = mkdtempSync(join(tmpdir(), 'kdp-bench-'));
  try {
    const file = join(dir, 'rows.tsv');
    writeFileSync(file, rows.join('\t1\n') + '\t1\n');
    const cols = columnNames(ORDERBOOK_DELTAS).map(quoteIdent).join(', ');
    const start = performance.now();
    const r = spawnSync('/usr/bin/psql', [url, '-v', 'ON_ERROR_STOP=1', '-q', '-c', `\\copy orderbook_deltas (${cols}) FROM '${file}'`], {
      encoding: 'utf8',
    });
    const seconds = (performance.now() - start) / 1000;
    if (r.status !== 0) throw new Error(`psql failed: ${r.stderr}`);
    return seconds;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 200_000);
  const batchRowsMax = Number(process.argv[3] ?? 5_000);
  const cluster = await PgCluster.start();
  try {
    const rows = rowLines(n);
    const bytes = rows.reduce((s, r) => s + r.length + 3, 0);
    const psqlUrl = await freshDb(cluster, 'bench_psql');
    const writerUrl = await freshDb(cluster, 'bench_writer');
    // psql first, writer second, then each once more on a fresh database: two samples each.
    const psql1 = viaPsql(psqlUrl, rows);
    const writer1 = await viaWriter(writerUrl, rows, batchRowsMax);
    const writer2 = await viaWriter(await freshDb(cluster, 'bench_writer2'), rows, batchRowsMax);
    const psql2 = viaPsql(await freshDb(cluster, 'bench_psql2'), rows);
    if ((await countRows(psqlUrl)) !== n || (await countRows(writerUrl)) !== n) throw new Error('row count mismatch');
    const rate = (s: number): number => Math.round(n / s);
    const result = {
      rows: n,
      megabytes: +(bytes / 1e6).toFixed(1),
      batchRowsMax,
      writer: {
        seconds: [writer1.seconds, writer2.seconds].map((s) => +s.toFixed(3)),
        rowsPerSec: [rate(writer1.seconds), rate(writer2.seconds)],
        batches: writer1.batches,
      },
      psqlCopy: { seconds: [psql1, psql2].map((s) => +s.toFixed(3)), rowsPerSec: [rate(psql1), rate(psql2)] },
    };
    console.log(JSON.stringify(result, null, 2));
    emitResult('copy-throughput', { env: environment(), ...result });
  } finally {
    await cluster.destroy();
  }
}

void main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
