// Kill the archiver at its worst moments (SIGKILL through failpoints, in a child process running
// the real `kdp archive --once`) and re-run it: no partial or duplicate file, nothing missing.
// Also: SIGTERM stops the service loop cleanly after the partition in flight.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { HOUR_US, hourStartOf } from '../../src/archive/layout';
import { migrate } from '../../src/schema/migrate';
import { TIME_SERIES_TABLES, tableByName } from '../../src/schema/tables';
import { startPg, withClient, type TestPg } from '../harness/pg';
import { filesUnder, parquetRows, productionRows, seedProduction } from './fixture';

const KDP = join(__dirname, '..', '..', '..', 'bin', 'kdp.js');
const HOURS = 3;
const ROWS_PER_HOUR = 40;
const PARTITIONS = HOURS * TIME_SERIES_TABLES.length;
const FIRST_HOUR = hourStartOf(Date.now() * 1000) - (HOURS + 2) * HOUR_US;

let pg: TestPg;
const scratch = mkdtempSync(join(tmpdir(), 'kdp-archive-crash-'));
before(async () => {
  pg = await startPg();
});
after(async () => {
  await pg?.close();
  rmSync(scratch, { recursive: true, force: true });
});

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function runKdp(args: string[], env: Record<string, string> = {}, onStdout?: (line: string, child: ReturnType<typeof spawn>) => void): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [KDP, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let partial = '';
    // onStdout sees whole lines only (a JSON log line may arrive in two chunks).
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop()!;
      for (const line of lines) if (line) onStdout?.(line, child);
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

const visibleFiles = (root: string): string[] => filesUnder(root, ['.kdp-staging']);

/** Every visible Parquet file is whole: it reads back with exactly its hour's production rows. */
async function assertNoPartialFile(url: string, root: string): Promise<number> {
  const parquet = visibleFiles(root).filter((f) => f.endsWith('.parquet'));
  for (const f of parquet) {
    const [, table, date, hour] = /^raw\/([a-z_]+)\/date=([\d-]+)\/hour=(\d\d)\//.exec(f)!;
    const t = tableByName(table as 'trades');
    const start = Date.parse(`${date}T${hour}:00:00Z`) * 1000;
    const rows = await parquetRows([join(root, f)], t);
    await withClient(url, async (c) => {
      const r = await c.query(`SELECT count(*)::int AS n FROM ${t.name} WHERE ${t.timeColumn} >= $1 AND ${t.timeColumn} < $2`, [start, start + HOUR_US]);
      assert.equal(rows.length, r.rows[0].n, `${f} holds its whole hour`);
    });
  }
  return parquet.length;
}

async function cursorCount(url: string): Promise<number> {
  return withClient(url, async (c) => (await c.query(`SELECT count(*)::int AS n FROM export_cursors`)).rows[0].n);
}

describe('crash safety', () => {
  let url: string;
  let config: string;
  const root = join(scratch, 'store');
  before(async () => {
    url = await pg.newDatabase('kdp_archive_crash');
    await withClient(url, async (c) => {
      await migrate(c, { kind: 'production', engine: 'postgres' });
      await seedProduction(c, FIRST_HOUR, HOURS, ROWS_PER_HOUR, 5);
    });
    config = join(scratch, 'archive.yaml');
    writeFileSync(
      config,
      [
        'production:',
        `  url: ${url}`,
        'store:',
        '  kind: local',
        `  dir: ${root}`,
        `workDir: ${join(scratch, 'work')}`,
        'intervalMs: 60000',
        // raw/ only: the failpoint counts below are raw partitions.
        'processed:',
        '  enabled: false',
        'aggregates:',
        '  enabled: false',
        'coverage: false',
        'log:',
        '  level: info',
        '',
      ].join('\n'),
    );
  });

  test('SIGKILL between the temp file and the rename/upload, during the rename, and before the cursor commit', async () => {
    // 3rd partition: its Parquet temp file is written, not yet in the store.
    let r = await runKdp(['archive', '--config', config, '--once'], { KDP_FAILPOINT: 'archive.after_temp_write:3' });
    assert.equal(r.signal, 'SIGKILL');
    assert.equal(await cursorCount(url), 2);
    assert.equal(await assertNoPartialFile(url, root), 2);
    // 2nd put of this run (the manifest of the 1st partition it redoes) dies before its rename.
    r = await runKdp(['archive', '--config', config, '--once'], { KDP_FAILPOINT: 'archive.before_rename:2' });
    assert.equal(r.signal, 'SIGKILL');
    assert.equal(await cursorCount(url), 2);
    assert.equal(await assertNoPartialFile(url, root), 3);
    // Files and manifest uploaded, the export_cursors row not yet committed.
    r = await runKdp(['archive', '--config', config, '--once'], { KDP_FAILPOINT: 'archive.after_upload:1' });
    assert.equal(r.signal, 'SIGKILL');
    assert.equal(await cursorCount(url), 2);
    assert.equal(await assertNoPartialFile(url, root), 3);
  });

  test('the re-run completes: every partition once, archive equals production, staging empty', async () => {
    const r = await runKdp(['archive', '--config', config, '--once']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`exported ${PARTITIONS - 2} partitions`));
    assert.equal(await cursorCount(url), PARTITIONS);
    assert.equal(await assertNoPartialFile(url, root), PARTITIONS);
    const files = visibleFiles(root);
    assert.equal(files.filter((f) => f.endsWith('_manifest.json')).length, PARTITIONS);
    await withClient(url, async (c) => {
      for (const t of TIME_SERIES_TABLES) {
        const parts = files.filter((f) => f.startsWith(`raw/${t.name}/`) && f.endsWith('.parquet')).map((f) => join(root, f));
        assert.deepEqual(await parquetRows(parts, t), await productionRows(c, t), `${t.name}: no duplicate, nothing missing`);
      }
    });
    assert.deepEqual(readdirSync(join(root, '.kdp-staging')), []);
    const again = await runKdp(['archive', '--config', config, '--once']);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /exported 0 partitions/);
  });

  test('SIGTERM stops the service after the partition in flight, exit code 0', async () => {
    await withClient(url, (c) => c.query(`DELETE FROM export_cursors`));
    let signalled = false;
    const r = await runKdp(['archive', '--config', config], {}, (chunk, child) => {
      if (!signalled && chunk.includes('partition exported')) {
        signalled = true;
        child.kill('SIGTERM');
      }
    });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(signalled);
    const recorded = await cursorCount(url);
    // In service mode the process only exits on a signal: exiting 0 proves SIGTERM was handled.
    assert.ok(recorded >= 1 && recorded <= PARTITIONS);
    assert.equal(await assertNoPartialFile(url, root), PARTITIONS);
  });

  test('service mode serves /metrics with the archive metrics and /health on the same port', async () => {
    await withClient(url, (c) => c.query(`DELETE FROM export_cursors WHERE table_name = 'trades'`));
    const withMetrics = join(scratch, 'archive-metrics.yaml');
    writeFileSync(withMetrics, readFileSync(config, 'utf8') + 'metricsPort: 0\nmetricsHost: 127.0.0.1\n');
    let port = 0;
    let body = '';
    let health: { status: number; body: Record<string, unknown> } | undefined;
    let done = false;
    const r = await runKdp(['archive', '--config', withMetrics], {}, (chunk, child) => {
      const entry = JSON.parse(chunk) as { msg?: string; port?: number };
      if (entry.msg === 'metrics listening') port = entry.port!;
      if (entry.msg === 'archive cycle done' && !done) {
        done = true;
        fetch(`http://127.0.0.1:${port}/metrics`)
          .then((res) => res.text())
          .then((text) => (body = text))
          .then(() => fetch(`http://127.0.0.1:${port}/health`))
          .then(async (res) => (health = { status: res.status, body: (await res.json()) as Record<string, unknown> }))
          .finally(() => child.kill('SIGTERM'));
      }
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(body, new RegExp(`archive_rows_exported_total\\{table="trades"\\} ${HOURS * ROWS_PER_HOUR}`));
    assert.match(body, /archive_partitions_exported_total\{table="trades"\} 3/);
    assert.match(body, /archive_lag_seconds\{table="trades"\}/);
    assert.equal(health?.status, 200);
    assert.equal(health?.body.status, 'healthy');
    assert.equal(health?.body.consecutive_failures, 0);
    assert.equal(typeof health?.body.last_cycle_ok_ms_ago, 'number');
  });
});
