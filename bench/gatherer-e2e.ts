// End-to-end gatherer benchmark, every contender in the same run (platform spec §5, issue 10):
//   1. receive-only ceiling: one `ws` client that only counts the simulator's frames;
//   2. our gatherer, frame -> row committed in PostgreSQL (checked: every frame routed was
//      processed and committed, rings drained); its peak RSS and CPU per message;
//   3. a naive recorder: one thread, JSON.parse, 500-row multi-row INSERTs;
//   4. the database ceiling: `psql \copy` of exactly the rows our gatherer committed, into a fresh
//      database with the same schema;
// repeated --reps times (interleaved, so a change of machine load hits every contender alike), then
//   5. latency at a fixed offered load (--rate, default 50,000 msg/s; simulator in realtime pace):
//      p50/p99/max frame receipt -> commit, offered vs achieved rate, checked against the
//      simulator's ground truth (every trade and delta of the window present exactly once).
// The simulator always runs in its own process. Usage:
//   node dist/bench/gatherer-e2e.js [--seconds 8] [--reps 3] [--rate 50000] [--latency-seconds 10] [--markets 200]
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Client } from 'pg';
import WebSocket from 'ws';
import { PgCluster } from '../src/core/pgcluster';
import { resolveOptions } from '../src/config/validate';
import { checkGathererOptions, GATHERER_SPEC } from '../src/gatherer/config';
import { startGatherer, type Gatherer } from '../src/gatherer/service';
import { compareWithTruth, loadProductionSet, type TruthComparison } from '../src/ops/truth';
import { TIME_SERIES_TABLES, columnNames, quoteIdent } from '../src/schema/tables';
import { spawnSimulator, type SpawnedSimulator } from '../src/sim/spawn';
import {
  emitResult,
  environment,
  migratedGathererDb,
  peakRssBytes,
  cpuWindow,
  psql,
  quantile,
  quietLogger,
  resetPeakRss,
  sampleRss,
  sleep,
  spread,
  truthWindow,
  waitSubscribed,
} from './common';
import { withClient } from '../src/core/pgclient';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '8' },
    reps: { type: 'string', default: '3' },
    rate: { type: 'string', default: '50000' },
    'latency-seconds': { type: 'string', default: '10' },
    markets: { type: 'string', default: '200' },
  },
});
const SECONDS = Number(args.seconds);
const REPS = Number(args.reps);
const RATE = Number(args.rate);
const LATENCY_SECONDS = Number(args['latency-seconds']);
const MARKETS = Number(args.markets);
const MiB = 1024 * 1024;

async function openTickers(restUrl: string): Promise<string[]> {
  const res = (await (await fetch(`${restUrl}/markets?status=open&limit=1000`)).json()) as { markets: { ticker: string }[] };
  return res.markets.map((m) => m.ticker);
}

function subscribeAll(ws: WebSocket, tickers: string[]): void {
  ws.send(JSON.stringify({ id: 1, cmd: 'subscribe', params: { channels: ['orderbook_delta', 'ticker', 'trade'], market_tickers: tickers } }));
}

/** A contender's wall-clock rate and its CPU per message: its own process, the simulator's, PostgreSQL's. */
interface Contender {
  readonly msgsPerSec: number;
  readonly cpuUsPerMsg: number;
  /** The process's main thread alone: for our gatherer its ingest thread. */
  readonly mainThreadCpuUsPerMsg: number;
  readonly simCpuUsPerMsg: number;
  readonly pgCpuUsPerMsg: number;
}

function contender(messages: number, seconds: number, cpu: ReturnType<ReturnType<typeof cpuWindow>>): Contender {
  const per = (us: number): number => +(us / Math.max(messages, 1)).toFixed(2);
  return {
    msgsPerSec: messages / seconds,
    cpuUsPerMsg: per(cpu.selfCpuUs),
    mainThreadCpuUsPerMsg: per(cpu.mainThreadCpuUs),
    simCpuUsPerMsg: per(cpu.simCpuUs),
    pgCpuUsPerMsg: per(cpu.pgCpuUs),
  };
}

/** The floor of receiving a frame in Node: a ws client that counts messages and does nothing else. */
async function receiveOnly(sim: SpawnedSimulator, seconds: number): Promise<Contender> {
  const ws = new WebSocket(sim.wsUrl, { perMessageDeflate: false });
  let frames = 0;
  await new Promise((r) => ws.once('open', r));
  ws.on('message', () => frames++);
  subscribeAll(ws, await openTickers(sim.restUrl));
  await sleep(1000);
  const start = frames;
  const t0 = Date.now();
  const cpu = cpuWindow(sim.pid, undefined);
  await sleep(seconds * 1000);
  const used = cpu();
  const r = contender(frames - start, (Date.now() - t0) / 1000, used);
  ws.terminate();
  return r;
}

/**
 * The naive recorder the spec compares against: one thread, JSON.parse of every message, rows
 * written with multi-row INSERTs (500 rows a statement, socket paused while one runs). Only
 * order-book deltas are stored (the bulk of the traffic); every message counts as processed once
 * the INSERT holding its rows committed.
 */
async function naiveRun(sim: SpawnedSimulator, dbUrl: string, seconds: number, pgPid: number | undefined): Promise<Contender> {
  const tickers = await openTickers(sim.restUrl);
  const db = new Client({ connectionString: dbUrl });
  await db.connect();
  const ws = new WebSocket(sim.wsUrl, { perMessageDeflate: false });
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
  subscribeAll(ws, tickers);
  await sleep(1000);
  const start = committed;
  const t0 = Date.now();
  const cpu = cpuWindow(sim.pid, pgPid);
  await sleep(seconds * 1000);
  const used = cpu();
  const r = contender(committed - start, (Date.now() - t0) / 1000, used);
  ws.removeAllListeners('message');
  ws.terminate();
  await inflight;
  await db.end();
  return r;
}

async function benchGatherer(dbUrl: string, sim: SpawnedSimulator): Promise<Gatherer> {
  const options = checkGathererOptions(
    resolveOptions(GATHERER_SPEC, {
      gathererId: 'bench',
      database: { url: dbUrl },
      exchange: { wsUrl: sim.wsUrl },
      rest: { restBaseUrl: sim.restUrl, pollEnabled: false },
      connections: { count: 2, startJitterMs: 0 },
      http: { host: '127.0.0.1', healthPort: 0, metricsPort: 0 },
      log: { level: 'error' },
    }),
  );
  const g = await startGatherer(options, quietLogger());
  await waitSubscribed(g);
  return g;
}

/**
 * Exact frame->commit samples. The service observes one value per committed COPY batch (now minus
 * the oldest receipt time in the batch) into frame_to_commit_seconds; wrapping the histogram's
 * observe() from outside keeps every value instead of only bucket counts. Each sample is therefore
 * the worst latency inside one batch: percentiles over batches bound the per-message ones above.
 */
/** Every frame->commit value (ms) the gatherer observes, with the table of its batch. */
function captureLatency(g: Gatherer): { samples: number[]; tables: string[] } {
  const h = g.metrics.frame_to_commit_seconds as unknown as { observe: (...a: unknown[]) => void };
  const original = h.observe.bind(h);
  const box = { samples: [] as number[], tables: [] as string[] };
  h.observe = (...a: unknown[]) => {
    const v = a.find((x) => typeof x === 'number');
    const labels = a.find((x) => typeof x === 'object' && x !== null) as { table?: string } | undefined;
    if (typeof v === 'number' && box.samples.length < 1_000_000) {
      box.samples.push(v * 1000);
      box.tables.push(labels?.table ?? '');
    }
    original(...a);
  };
  return box;
}

function latencySummary(samplesMs: number[]): { batches: number; p50Ms: number; p99Ms: number; maxMs: number } {
  const s = [...samplesMs].sort((a, b) => a - b);
  const r = (x: number): number => +x.toFixed(1);
  return { batches: s.length, p50Ms: r(quantile(s, 0.5)), p99Ms: r(quantile(s, 0.99)), maxMs: r(s[s.length - 1] ?? NaN) };
}

/**
 * Over every batch, over the batches of the streamed tables (WS snapshot rows wait up to
 * snapshotHoldMs for their sid's next delta by design, so their batches measure the hold, not the
 * pipeline), and per table.
 */
function latencyByTable(box: { samples: number[]; tables: string[] }): Record<string, ReturnType<typeof latencySummary>> {
  const out: Record<string, ReturnType<typeof latencySummary>> = { all: latencySummary(box.samples) };
  out.streamed = latencySummary(box.samples.filter((_, i) => box.tables[i] !== 'orderbook_snapshots'));
  for (const t of new Set(box.tables)) out[t] = latencySummary(box.samples.filter((_, i) => box.tables[i] === t));
  return out;
}

const committedRows = (g: Gatherer): number => TIME_SERIES_TABLES.reduce((s, t) => s + g.pipeline.total(`rows:${t.name}` as 'rows:trades'), 0);

interface GathererFigures {
  msgsPerSec: number;
  rowsPerSec: number;
  messagesTotal: number;
  cpuUsPerMsg: number;
  mainThreadCpuUsPerMsg: number;
  simCpuUsPerMsg: number;
  pgCpuUsPerMsg: number;
  peakRssMiB: number;
  sampledMaxRssMiB: number;
  latencyAtSaturation: ReturnType<typeof latencySummary>;
}

async function gathererRun(sim: SpawnedSimulator, dbUrl: string, seconds: number, pgPid: number | undefined): Promise<GathererFigures> {
  resetPeakRss();
  const rss = sampleRss(250);
  const g = await benchGatherer(dbUrl, sim);
  const latency = captureLatency(g);
  await sleep(1000);
  latency.samples.length = 0;
  latency.tables.length = 0;
  const m0 = g.pipeline.total('messages');
  const r0 = committedRows(g);
  const cpu = cpuWindow(sim.pid, pgPid);
  const t0 = Date.now();
  await sleep(seconds * 1000);
  const dt = (Date.now() - t0) / 1000;
  const used = cpu();
  const messages = g.pipeline.total('messages') - m0;
  const rows = committedRows(g) - r0;
  const samples = [...latency.samples];
  const drained = await g.stop();
  const rssSeries = rss.stop();
  // Check before trusting the figures: everything taken off the sockets was committed.
  if (!drained || g.pipeline.total('pending_rows') !== 0) throw new Error('gatherer did not drain: figures invalid');
  if (g.pipeline.total('messages') !== g.router.stats.framesRouted) throw new Error('frames routed != frames processed');
  if (g.router.stats.framesDropped !== 0) throw new Error('frames dropped in a pause-mode run');
  return {
    ...contender(messages, dt, used),
    rowsPerSec: rows / dt,
    messagesTotal: g.pipeline.total('messages'),
    peakRssMiB: Math.round(peakRssBytes() / MiB),
    sampledMaxRssMiB: Math.round(rssSeries.maxBytes / MiB),
    latencyAtSaturation: latencySummary(samples),
  };
}

/**
 * The database ceiling: the rows our gatherer committed, exported with COPY TO (not timed), loaded
 * with `psql \copy` (one psql process, one \copy per table) into a freshly migrated database of the
 * same schema. Messages/s equivalent = messages the gatherer turned into those rows / seconds.
 */
async function dbCeiling(
  pg: PgCluster,
  fromUrl: string,
  name: string,
  messages: number,
): Promise<{ rows: number; seconds: number; rowsPerSec: number; msgsPerSecEquivalent: number; megabytes: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'kdp-bench-ceiling-'));
  try {
    const files = TIME_SERIES_TABLES.map((t) => ({ t, file: join(dir, `${t.name}.copy`), cols: columnNames(t).map(quoteIdent).join(', ') }));
    psql(fromUrl, ...files.map(({ t, file, cols }) => `\\copy (SELECT ${cols} FROM ${quoteIdent(t.name)}) TO '${file}'`));
    const rows = await withClient(fromUrl, async (c) => {
      let n = 0;
      for (const t of TIME_SERIES_TABLES) n += Number((await c.query(`SELECT count(*)::bigint AS n FROM ${quoteIdent(t.name)}`)).rows[0].n);
      return n;
    });
    const bytes = files.reduce((s, f) => s + statSync(f.file).size, 0);
    const toUrl = await migratedGathererDb(pg, name);
    await withClient(toUrl, (c) => c.query('CHECKPOINT'));
    const t0 = process.hrtime.bigint();
    psql(toUrl, ...files.map(({ t, file, cols }) => `\\copy ${quoteIdent(t.name)} (${cols}) FROM '${file}'`));
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const loaded = await withClient(toUrl, async (c) => {
      let n = 0;
      for (const t of TIME_SERIES_TABLES) n += Number((await c.query(`SELECT count(*)::bigint AS n FROM ${quoteIdent(t.name)}`)).rows[0].n);
      return n;
    });
    if (loaded !== rows) throw new Error(`psql \\copy loaded ${loaded} rows, expected ${rows}`);
    await dropDatabase(pg, name);
    return {
      rows,
      seconds: +seconds.toFixed(3),
      rowsPerSec: Math.round(rows / seconds),
      msgsPerSecEquivalent: Math.round(messages / seconds),
      megabytes: +(bytes / 1e6).toFixed(1),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function dropDatabase(pg: PgCluster, name: string): Promise<void> {
  await withClient(pg.url(), (c) => c.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`));
}

const SIM_FAST = { markets: MARKETS, rate: 1e7, pace: 'fast' as const, tradesKeptMax: 1_000_000 };

async function throughputRep(pg: PgCluster, rep: number): Promise<Record<string, unknown>> {
  const load = environment().loadavg;
  const sim1 = await spawnSimulator({ ...SIM_FAST, seed: 5 + rep });
  const pgPid = pg.postmasterPid();
  const ceiling = await receiveOnly(sim1, SECONDS).finally(() => sim1.stop());
  const gName = `bench_g${rep}`;
  const gUrl = await migratedGathererDb(pg, gName);
  const sim2 = await spawnSimulator({ ...SIM_FAST, seed: 5 + rep });
  const ours = await gathererRun(sim2, gUrl, SECONDS, pgPid).finally(() => sim2.stop());
  const db = await dbCeiling(pg, gUrl, `bench_ceiling${rep}`, ours.messagesTotal);
  await dropDatabase(pg, gName);
  const nName = `bench_naive${rep}`;
  const nUrl = await migratedGathererDb(pg, nName);
  const sim3 = await spawnSimulator({ ...SIM_FAST, seed: 5 + rep });
  const naive = await naiveRun(sim3, nUrl, SECONDS, pgPid).finally(() => sim3.stop());
  await dropDatabase(pg, nName);
  const r = {
    rep,
    loadavgAtStart: load,
    loadavgAtEnd: environment().loadavg,
    receiveOnlyMsgsPerSec: Math.round(ceiling.msgsPerSec),
    gathererMsgsPerSec: Math.round(ours.msgsPerSec),
    gathererRowsCommittedPerSec: Math.round(ours.rowsPerSec),
    naiveMsgsPerSec: Math.round(naive.msgsPerSec),
    dbCeiling: db,
    gathererOverReceiveOnly: +(ours.msgsPerSec / ceiling.msgsPerSec).toFixed(3),
    gathererOverNaive: +(ours.msgsPerSec / naive.msgsPerSec).toFixed(3),
    gathererOverDbCeiling: +(ours.msgsPerSec / db.msgsPerSecEquivalent).toFixed(3),
    // CPU per message, each contender's own process (the gatherer's includes its worker threads);
    // the simulator's and PostgreSQL's apart. Ratios on CPU: the target is gatherer <= 2x receive-only.
    receiveOnlyCpuUsPerMsg: ceiling.cpuUsPerMsg,
    naiveCpuUsPerMsg: naive.cpuUsPerMsg,
    naivePgCpuUsPerMsg: naive.pgCpuUsPerMsg,
    gathererCpuUsPerMsg: ours.cpuUsPerMsg,
    // Its ingest thread alone (receive, frame into the ring): the one thread every message crosses.
    gathererIngestThreadCpuUsPerMsg: ours.mainThreadCpuUsPerMsg,
    gathererPgCpuUsPerMsg: ours.pgCpuUsPerMsg,
    gathererCpuOverReceiveOnlyCpu: +(ours.cpuUsPerMsg / ceiling.cpuUsPerMsg).toFixed(2),
    gathererCpuOverNaiveCpu: +(ours.cpuUsPerMsg / naive.cpuUsPerMsg).toFixed(2),
    simulatorCpuUsPerMsg: ours.simCpuUsPerMsg,
    gathererPeakRssMiB: ours.peakRssMiB,
    gathererSampledMaxRssMiB: ours.sampledMaxRssMiB,
    frameToCommitAtSaturation: ours.latencyAtSaturation,
  };
  process.stdout.write(`rep ${rep}: ${JSON.stringify(r)}\n`);
  return r;
}

async function latencyRun(pg: PgCluster): Promise<Record<string, unknown>> {
  const load = environment().loadavg;
  const dir = mkdtempSync(join(tmpdir(), 'kdp-bench-latency-'));
  const truthFile = join(dir, 'truth.ndjson');
  const sim = await spawnSimulator({ markets: MARKETS, rate: RATE, pace: 'realtime', seed: 77, truthFile, tradesKeptMax: 1_000_000 });
  try {
    const paused = await sim.clock('pause');
    const dbUrl = await migratedGathererDb(pg, 'bench_latency');
    const g = await benchGatherer(dbUrl, sim);
    await sleep(1500); // initial REST snapshots committed before the exchange moves
    const latency = captureLatency(g);
    latency.samples.length = 0;
    latency.tables.length = 0;
    const m0 = g.pipeline.total('messages');
    const cpu0 = process.cpuUsage();
    const resumed = await sim.clock('resume');
    const t0 = Date.now();
    await sleep(LATENCY_SECONDS * 1000);
    const stopped = await sim.clock('pause');
    const dt = (Date.now() - t0) / 1000;
    await sleep(1500); // frames in flight reach the database
    const messages = g.pipeline.total('messages') - m0;
    const cpu = process.cpuUsage(cpu0);
    const byTable = latencyByTable(latency);
    const drained = await g.stop();
    await sim.stop();
    const truth = await truthWindow(truthFile, Math.max(paused.records, resumed.records), stopped.records, true);
    const comparison = await withClient(dbUrl, async (c) => {
      const actual = await loadProductionSet(c, { fromUs: truth.fromUs, toUs: truth.toUs });
      return compareWithTruth(truth, { trades: actual.trades.filter((t) => !truth.tradeIdsBefore.has(t.tradeId)), deltas: actual.deltas });
    });
    await dropDatabase(pg, 'bench_latency');
    const offered = truth.deltaCount + truth.trades.length + truth.tickerCount;
    const verified = drained && comparison.ok;
    if (!verified) process.exitCode = 1;
    return {
      loadavgAtStart: load,
      loadavgAtEnd: environment().loadavg,
      targetRateMsgsPerSec: RATE,
      seconds: +dt.toFixed(2),
      offeredMsgsPerSec: Math.round(offered / dt),
      achievedMsgsPerSec: Math.round(messages / dt),
      gathererCpuUsPerMsg: +((cpu.user + cpu.system) / messages).toFixed(2),
      frameToCommit: byTable.all,
      frameToCommitStreamed: byTable.streamed,
      frameToCommitByTable: byTable,
      verified,
      window: { fromUs: truth.fromUs, toUs: truth.toUs },
      truth: summarize(comparison),
    };
  } finally {
    await sim.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

function summarize(c: TruthComparison): Record<string, unknown> {
  return {
    ok: c.ok,
    trades: { expected: c.trades.expected, actual: c.trades.actual, ...c.trades.counts },
    deltas: { expected: c.deltas.expected, actual: c.deltas.actual, ...c.deltas.counts },
    // What a failed check found, to tell a window-edge artefact from a recording defect.
    ...(c.ok
      ? {}
      : {
          samples: {
            trades: { lost: c.trades.lost.slice(0, 3), invented: c.trades.invented.slice(0, 3) },
            deltas: { lost: c.deltas.lost.slice(0, 3), invented: c.deltas.invented.slice(0, 5) },
          },
        }),
  };
}

async function main(): Promise<void> {
  const env = environment();
  const pg = await PgCluster.start();
  try {
    const reps: Record<string, unknown>[] = [];
    for (let rep = 1; rep <= REPS; rep++) reps.push(await throughputRep(pg, rep));
    const latency = await latencyRun(pg);
    process.stdout.write(`latency: ${JSON.stringify(latency)}\n`);
    const col = (f: (r: Record<string, unknown>) => number) => spread(reps.map(f));
    const num = (k: string) => (r: Record<string, unknown>) => r[k] as number;
    const summary = {
      receiveOnlyMsgsPerSec: col(num('receiveOnlyMsgsPerSec')),
      gathererMsgsPerSec: col(num('gathererMsgsPerSec')),
      naiveMsgsPerSec: col(num('naiveMsgsPerSec')),
      dbCeilingMsgsPerSecEquivalent: col((r) => (r.dbCeiling as { msgsPerSecEquivalent: number }).msgsPerSecEquivalent),
      dbCeilingRowsPerSec: col((r) => (r.dbCeiling as { rowsPerSec: number }).rowsPerSec),
      gathererOverReceiveOnly: col(num('gathererOverReceiveOnly')),
      gathererOverNaive: col(num('gathererOverNaive')),
      gathererOverDbCeiling: col(num('gathererOverDbCeiling')),
      gathererCpuUsPerMsg: col(num('gathererCpuUsPerMsg')),
      gathererIngestThreadCpuUsPerMsg: col(num('gathererIngestThreadCpuUsPerMsg')),
      receiveOnlyCpuUsPerMsg: col(num('receiveOnlyCpuUsPerMsg')),
      naiveCpuUsPerMsg: col(num('naiveCpuUsPerMsg')),
      gathererPgCpuUsPerMsg: col(num('gathererPgCpuUsPerMsg')),
      naivePgCpuUsPerMsg: col(num('naivePgCpuUsPerMsg')),
      gathererCpuOverReceiveOnlyCpu: col(num('gathererCpuOverReceiveOnlyCpu')),
      gathererCpuOverNaiveCpu: col(num('gathererCpuOverNaiveCpu')),
      gathererPeakRssMiB: col(num('gathererPeakRssMiB')),
    };
    process.stdout.write(`summary: ${JSON.stringify(summary)}\n`);
    emitResult('gatherer-e2e', {
      env,
      secondsPerContender: SECONDS,
      reps: REPS,
      markets: MARKETS,
      summary,
      repetitions: reps,
      latency,
      loadavgAtEnd: environment().loadavg,
    });
  } finally {
    await pg.destroy();
  }
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(1);
});
