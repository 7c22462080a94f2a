// End-to-end gatherer throughput: the simulator in its own process generating as fast as its
// readers take frames, against (1) a receive-only client that just counts frames (the ceiling of
// this machine for one reader) and (2) our gatherer, frame -> row committed in PostgreSQL.
// The gatherer run is checked before it is timed: every message it received became committed rows
// (no rows pending, rings empty after the drain), and (3) a naive single-thread recorder
// (JSON.parse + multi-row INSERT). Usage: node dist/bench/gatherer-e2e.js [seconds]
import { cpus, loadavg } from 'node:os';
import { Writable } from 'node:stream';
import { Client } from 'pg';
import WebSocket from 'ws';
import { createLogger } from '../src/core/log';
import { PgCluster } from '../src/core/pgcluster';
import { resolveOptions } from '../src/config/validate';
import { checkGathererOptions, GATHERER_SPEC } from '../src/gatherer/config';
import { startGatherer } from '../src/gatherer/service';
import { migrate } from '../src/schema/migrate';
import { spawnSimulator } from '../src/sim/spawn';

const SECONDS = Number(process.argv[2] ?? 10);
const MARKETS = 200;

async function receiveOnly(wsUrl: string, restUrl: string, seconds: number): Promise<number> {
  const res = (await (await fetch(`${restUrl}/markets?status=open&limit=1000`)).json()) as { markets: { ticker: string }[] };
  const tickers = res.markets.map((m) => m.ticker);
  const ws = new WebSocket(wsUrl, { perMessageDeflate: false });
  let frames = 0;
  await new Promise((r) => ws.once('open', r));
  ws.on('message', () => frames++);
  ws.send(JSON.stringify({ id: 1, cmd: 'subscribe', params: { channels: ['orderbook_delta', 'ticker', 'trade'], market_tickers: tickers } }));
  await new Promise((r) => setTimeout(r, 1000));
  const start = frames;
  const t0 = Date.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const rate = (frames - start) / ((Date.now() - t0) / 1000);
  ws.close();
  return rate;
}

/**
 * The naive recorder the spec compares against: one thread, JSON.parse of every message, rows
 * written with multi-row INSERTs (500 rows a statement, socket paused while one runs). Only
 * order-book deltas are stored (the bulk of the traffic); every message counts as processed once
 * the INSERT holding its rows committed.
 */
async function naiveRun(wsUrl: string, restUrl: string, dbUrl: string, seconds: number): Promise<number> {
  const res = (await (await fetch(`${restUrl}/markets?status=open&limit=1000`)).json()) as { markets: { ticker: string }[] };
  const db = new Client({ connectionString: dbUrl });
  await db.connect();
  const ws = new WebSocket(wsUrl, { perMessageDeflate: false });
  await new Promise((r) => ws.once('open', r));
  let rows: unknown[] = [];
  let pendingMessages = 0;
  let committed = 0;
  let seq = 0;
  let inflight: Promise<void> = Promise.resolve();
  const flush = async (): Promise<void> => {
    const batch = rows;
    const messages = pendingMessages;
    rows = [];
    pendingMessages = 0;
    if (batch.length > 0) {
      const n = batch.length / 12;
      const values = Array.from({ length: n }, (_, i) => `(${Array.from({ length: 12 }, (_, j) => `$${i * 12 + j + 1}`).join(',')})`);
      await db.query(
        `INSERT INTO orderbook_deltas (ticker, side, price, delta, exchange_ts, occurrence, received_at, gatherer, conn_id, sid, seq, batch_id) VALUES ${values.join(',')}`,
        batch,
      );
    }
    committed += messages;
  };
  ws.on('message', (data: Buffer) => {
    const m = JSON.parse(data.toString()) as { type: string; sid?: number; seq?: number; msg?: Record<string, string | number> };
    pendingMessages++;
    if (m.type === 'orderbook_delta' && m.msg) {
      const d = m.msg;
      rows.push(d.market_ticker, d.side, d.price_dollars, d.delta_fp, Number(d.ts_ms) * 1000, 0, Date.now() * 1000, 'naive', 1, m.sid ?? 0, m.seq ?? ++seq, 0);
    }
    if (rows.length >= 500 * 12) {
      ws.pause();
      inflight = flush().then(() => ws.resume());
    }
  });
  ws.send(JSON.stringify({ id: 1, cmd: 'subscribe', params: { channels: ['orderbook_delta', 'ticker', 'trade'], market_tickers: res.markets.map((m) => m.ticker) } }));
  await new Promise((r) => setTimeout(r, 1000));
  const start = committed;
  const t0 = Date.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const rate = (committed - start) / ((Date.now() - t0) / 1000);
  ws.removeAllListeners('message');
  ws.terminate();
  await inflight;
  await db.end();
  return rate;
}

async function gathererRun(wsUrl: string, restUrl: string, dbUrl: string, seconds: number): Promise<{ msgsPerSec: number; rowsPerSec: number; p99Ms: number }> {
  const quiet = new Writable({ write: (_c, _e, cb) => cb() });
  const options = checkGathererOptions(
    resolveOptions(GATHERER_SPEC, {
      gathererId: 'bench',
      database: { url: dbUrl },
      exchange: { wsUrl },
      rest: { restBaseUrl: restUrl, pollEnabled: false },
      connections: { count: 2, startJitterMs: 0 },
      http: { host: '127.0.0.1', healthPort: 0, metricsPort: 0 },
      log: { level: 'error' },
    }),
  );
  const g = await startGatherer(options, createLogger('bench', { level: 'error', destination: quiet }));
  while (!g.manager.allSubscribed()) await new Promise((r) => setTimeout(r, 100));
  await new Promise((r) => setTimeout(r, 1000));
  const rowsNow = (): number => ['orderbook_deltas', 'orderbook_snapshots', 'trades', 'tickers', 'lifecycle_events'].reduce((s, t) => s + g.pipeline.total(`rows:${t}` as 'rows:trades'), 0);
  const m0 = g.pipeline.total('messages');
  const r0 = rowsNow();
  const t0 = Date.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const dt = (Date.now() - t0) / 1000;
  const m1 = g.pipeline.total('messages');
  const r1 = rowsNow();
  const hist = (await g.metrics.frame_to_commit_seconds.get()).values;
  const drained = await g.stop();
  // Check before trusting the figures: everything taken off the sockets was committed.
  if (!drained || g.pipeline.total('pending_rows') !== 0) throw new Error('gatherer did not drain: figures invalid');
  if (g.pipeline.total('messages') !== g.router.stats.framesRouted) throw new Error('frames routed != frames processed');
  return { msgsPerSec: (m1 - m0) / dt, rowsPerSec: (r1 - r0) / dt, p99Ms: quantileMs(hist, 0.99) };
}

function quantileMs(values: { labels: Partial<Record<string, string | number>>; value: number; metricName?: string }[], q: number): number {
  const buckets = values.filter((v) => v.metricName?.endsWith('_bucket')).map((v) => ({ le: Number(v.labels.le), n: v.value }));
  const total = buckets.find((b) => !Number.isFinite(b.le))?.n ?? 0;
  const hit = buckets.find((b) => b.n >= q * total);
  return hit && Number.isFinite(hit.le) ? hit.le * 1000 : NaN;
}

async function main(): Promise<void> {
  const pg = await PgCluster.start();
  try {
    const dbUrl = await pg.createDatabase('bench_g');
    const c = new Client({ connectionString: dbUrl });
    await c.connect();
    await migrate(c, { kind: 'gatherer', engine: 'postgres' });
    await c.end();
    const env = { node: process.version, cpu: cpus()[0]?.model, cores: cpus().length, loadavg: loadavg() };
    const sim1 = await spawnSimulator({ markets: MARKETS, rate: 1e7, pace: 'fast', seed: 5 });
    const ceiling = await receiveOnly(sim1.wsUrl, sim1.restUrl, SECONDS);
    await sim1.stop();
    const sim2 = await spawnSimulator({ markets: MARKETS, rate: 1e7, pace: 'fast', seed: 5 });
    const ours = await gathererRun(sim2.wsUrl, sim2.restUrl, dbUrl, SECONDS);
    await sim2.stop();
    const naiveDb = await pg.createDatabase('bench_naive');
    const c2 = new Client({ connectionString: naiveDb });
    await c2.connect();
    await migrate(c2, { kind: 'gatherer', engine: 'postgres' });
    await c2.end();
    const sim3 = await spawnSimulator({ markets: MARKETS, rate: 1e7, pace: 'fast', seed: 5 });
    const naive = await naiveRun(sim3.wsUrl, sim3.restUrl, naiveDb, SECONDS);
    await sim3.stop();
    const result = {
      env,
      seconds: SECONDS,
      receiveOnlyMsgsPerSec: Math.round(ceiling),
      gathererMsgsPerSec: Math.round(ours.msgsPerSec),
      gathererRowsCommittedPerSec: Math.round(ours.rowsPerSec),
      shareOfReceiveCeiling: Number((ours.msgsPerSec / ceiling).toFixed(3)),
      naiveBaselineMsgsPerSec: Math.round(naive),
      ratioToNaiveBaseline: Number((ours.msgsPerSec / naive).toFixed(2)),
      frameToCommitP99MsAtFullLoad: ours.p99Ms,
    };
    process.stdout.write(JSON.stringify(result, null, 2) + '\n');
  } finally {
    await pg.destroy();
  }
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(1);
});
