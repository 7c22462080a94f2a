// Overload run (platform spec §5 "Memory: bounded"; issue 10): the simulator in fast pace offers
// as many messages as the gatherer's sockets take (its maximum, several times what the gatherer
// commits) to a gatherer with small rings and bounded pending rows, for --seconds. RSS is sampled
// every 500 ms and must stay under --rss-cap-mib. Then the data is checked against the simulator's
// ground truth: every trade of the window present exactly once (live, or recovered by the REST
// trade backfill after a counted ring drop), every drop episode in the gap ledger, every ledger
// row recovered. Two modes, each its own gatherer:
//   drop:  onRingFull = drop  -> counted drops -> ring_drop ledger rows -> get_snapshot + backfill
//   pause: onRingFull = pause -> the socket is paused (TCP backpressure), nothing may be lost
// Deltas lost to drops cannot be fetched again (the resync snapshot restores the book), so they are
// counted, not required. Usage:
//   node dist/bench/overload.js [--seconds 20] [--modes drop,pause] [--ring-kib 256] [--pending-rows 20000] [--rss-cap-mib 1024] [--markets 200] [--rate 120000] [--settle-seconds 60] [--slack-seconds 45]
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { PgCluster } from '../src/core/pgcluster';
import { resolveOptions } from '../src/config/validate';
import { checkGathererOptions, GATHERER_SPEC, type GathererOptions } from '../src/gatherer/config';
import { startGatherer, type Gatherer } from '../src/gatherer/service';
import { compareTrades, type TruthTrade } from '../src/ops/truth';
import { spawnSimulator, type SpawnedSimulator } from '../src/sim/spawn';
import {
  RESULT_MARKER,
  emitResult,
  environment,
  rssBytes,
  migratedGathererDb,
  peakRssBytes,
  quietLogger,
  resetPeakRss,
  sampleRss,
  sleep,
  truthWindow,
  waitSubscribed,
} from './common';
import { withClient } from '../src/core/pgclient';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '20' },
    modes: { type: 'string', default: 'pause,drop' },
    'settle-seconds': { type: 'string', default: '60' },
    'slack-seconds': { type: 'string', default: '45' },
    'ring-kib': { type: 'string', default: '256' },
    'pending-rows': { type: 'string', default: '20000' },
    'rss-cap-mib': { type: 'string', default: '1024' },
    markets: { type: 'string', default: '200' },
    'child-mode': { type: 'string' },
    'db-url': { type: 'string' },
    'work-dir': { type: 'string' },
    rate: { type: 'string', default: '120000' },
  },
});
const SECONDS = Number(args.seconds);
const MODES = args.modes!.split(',') as ('drop' | 'pause')[];
const RING_BYTES = Number(args['ring-kib']) * 1024;
const PENDING_ROWS = Number(args['pending-rows']);
const RSS_CAP_MIB = Number(args['rss-cap-mib']);
const MARKETS = Number(args.markets);
const RATE = Number(args.rate);
const MiB = 1024 * 1024;
const SETTLE_MS_MAX = Number(args['settle-seconds']) * 1000;
const progress = (what: string): void => void process.stderr.write(`overload ${new Date().toISOString().slice(11, 19)} ${what}\n`);

function overloadOptions(dbUrl: string, sim: SpawnedSimulator, mode: 'drop' | 'pause'): GathererOptions {
  return checkGathererOptions(
    resolveOptions(GATHERER_SPEC, {
      gathererId: 'overload',
      database: { url: dbUrl },
      exchange: { wsUrl: sim.wsUrl },
      rest: { restBaseUrl: sim.restUrl, pollEnabled: false, restTokensPerSec: 10_000, restBurstTokens: 10_000 },
      connections: { count: 2, startJitterMs: 0, backoffInitialMs: 100, backoffMaxMs: 1000 },
      pipeline: { workers: 2, ringBytes: RING_BYTES, frameBytesMax: Math.min(256 * 1024, RING_BYTES / 4), onRingFull: mode },
      writer: { pendingRowsMax: PENDING_ROWS },
      http: { host: '127.0.0.1', healthPort: 0, metricsPort: 0 },
      log: { level: 'error' },
    }),
  );
}

interface Ledger {
  byKind: Record<string, { rows: number; recovered: number }>;
  rows: number;
  open: number;
}

async function ledger(dbUrl: string): Promise<Ledger> {
  return withClient(dbUrl, async (c) => {
    const r = await c.query(`SELECT kind, count(*)::int AS n, count(*) FILTER (WHERE recovered)::int AS rec FROM gap_ledger GROUP BY kind ORDER BY kind`);
    const byKind: Ledger['byKind'] = {};
    let rows = 0;
    let open = 0;
    for (const x of r.rows as { kind: string; n: number; rec: number }[]) {
      byKind[x.kind] = { rows: x.n, recovered: x.rec };
      rows += x.n;
      open += x.n - x.rec;
    }
    return { byKind, rows, open };
  });
}

/** Waits (bounded) until every ledger row is recovered and the trade backfill has nothing queued. */
async function settle(g: Gatherer, dbUrl: string): Promise<{ settled: boolean; ms: number }> {
  const t0 = Date.now();
  let quietSince = Date.now();
  let lastWork = -1;
  while (Date.now() - t0 < SETTLE_MS_MAX) {
    const l = await ledger(dbUrl);
    const s = g.controlPlane.backfill.stats;
    const work = s.windowsFetched + s.windowsFailed + s.windowsMerged + s.pages;
    if (work !== lastWork) {
      lastWork = work;
      quietSince = Date.now();
    }
    const idle = g.controlPlane.backfill.queuedWindows() === 0 && Date.now() - quietSince >= 2000;
    if (l.open === 0 && l.rows === g.gaps.stats.recorded && idle) return { settled: true, ms: Date.now() - t0 };

    if ((Date.now() - t0) % 5000 < 250)
      progress(
        `settling: ledger ${l.rows} rows, ${l.open} open, recorded ${g.gaps.stats.recorded}; backfill queued ${g.controlPlane.backfill.queuedWindows()} ${JSON.stringify(s)}`,
      );
    await sleep(250);
  }
  return { settled: false, ms: Date.now() - t0 };
}

async function storedTrades(dbUrl: string, fromUs: number, toUs: number): Promise<TruthTrade[]> {
  return withClient(dbUrl, async (c) => {
    const r = await c.query(
      `SELECT trade_id::text, ticker, yes_price::text, no_price::text, count::text, exchange_ts::text, taker_side FROM trades WHERE exchange_ts BETWEEN $1 AND $2`,
      [fromUs, toUs],
    );
    return r.rows.map((x) => ({
      tradeId: x.trade_id,
      ticker: x.ticker,
      yesPrice: x.yes_price,
      noPrice: x.no_price,
      count: x.count,
      exchangeTs: Number(x.exchange_ts),
      takerSide: x.taker_side,
    }));
  });
}

/** The simulator answers clock requests between its own batches; bounded, since it is overloaded too. */
async function clock(sim: SpawnedSimulator, action: 'pause' | 'resume'): Promise<{ nowUs: number; records: number }> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, fail) => {
    timer = setTimeout(() => fail(new Error(`simulator did not answer clock ${action} within 60 s`)), 60_000);
  });
  return Promise.race([sim.clock(action), limit]).finally(() => clearTimeout(timer));
}

let current: Gatherer | undefined;

/** The stored trades and deltas of the window against the exchange's record of it. */
async function judgeAgainstTruth(dbUrl: string, truthFile: string, afterN: number, throughN: number) {
  const truth = await truthWindow(truthFile, afterN, throughN, false);
  const actual = (await storedTrades(dbUrl, truth.fromUs, truth.toUs)).filter((t) => !truth.tradeIdsBefore.has(t.tradeId));
  const trades = compareTrades(truth.trades, actual);
  const deltasStored = await withClient(dbUrl, async (c) =>
    Number((await c.query(`SELECT count(*)::bigint AS n FROM orderbook_deltas WHERE exchange_ts BETWEEN $1 AND $2`, [truth.fromUs, truth.toUs])).rows[0].n),
  );
  return { truth, actual, trades, deltasStored };
}

function capsOf(options: ReturnType<typeof overloadOptions>): Record<string, number> {
  return {
    workers: options.pipeline.workers,
    ringBytes: RING_BYTES,
    ringBytesTotal: RING_BYTES * options.pipeline.workers,
    frameBytesMax: options.pipeline.frameBytesMax,
    pendingRowsMaxPerTable: PENDING_ROWS,
    rssCapMiB: RSS_CAP_MIB,
  };
}

function rssReport(samples: readonly number[], maxMiB: number): Record<string, unknown> {
  return {
    maxMiB,
    firstMiB: Math.round(samples[0]! / MiB),
    lastMiB: Math.round(samples[samples.length - 1]! / MiB),
    samples: samples.length,
    seriesMiB: samples.map((x) => Math.round(x / MiB)),
  };
}

/** What the run must show, whatever its speed: bounded memory, a clean stop, every trade once, every drop ledgered and recovered. */
function overloadChecks(
  mode: 'drop' | 'pause',
  g: Gatherer,
  r: {
    maxRssMiB: number;
    drained: boolean;
    settled: boolean;
    trades: { lost: number; duplicated: number; invented: number; mismatched: number };
    dropped: number;
    gapLedger: Awaited<ReturnType<typeof ledger>>;
  },
): Record<string, boolean> {
  const ringDropRows = r.gapLedger.byKind.ring_drop?.rows ?? 0;
  return {
    rssUnderCap: r.maxRssMiB <= RSS_CAP_MIB,
    drained: r.drained,
    settled: r.settled,
    tradesExactlyOnce: r.trades.lost + r.trades.duplicated + r.trades.invented + r.trades.mismatched === 0,
    everyDropInLedger: r.dropped === 0 ? ringDropRows === 0 : ringDropRows > 0,
    everyGapRecorded: g.gaps.stats.unrecorded === 0 && r.gapLedger.rows === g.gaps.stats.recorded,
    everyGapRecovered: r.gapLedger.open === 0,
    // pause mode: the gatherer itself never drops (the exchange may still cut a slow reader: error 25).
    noDropsInPauseMode: mode === 'drop' || r.dropped === 0,
  };
}

/** SECONDS of exchange load on a subscribed gatherer: what it received and processed, RSS sampled throughout. */
async function measureWindow(g: Gatherer, sim: Awaited<ReturnType<typeof spawnSimulator>>) {
  await sleep(1500);
  resetPeakRss();
  const rss = sampleRss(500);
  const m0 = g.pipeline.total('messages');
  const f0 = g.router.stats.framesRouted + g.router.stats.framesDropped;
  const resumed = await clock(sim, 'resume'); // not paused: only reads the record count
  const t0 = Date.now();
  await sleep(SECONDS * 1000);
  const stopped = await clock(sim, 'pause');
  const dt = (Date.now() - t0) / 1000;
  const received = g.router.stats.framesRouted + g.router.stats.framesDropped - f0;
  const processed = g.pipeline.total('messages') - m0;
  return { rss, resumed, stopped, dt, received, processed };
}

async function overloadRun(dbUrl: string, mode: 'drop' | 'pause', dir: string): Promise<Record<string, unknown>> {
  const load = environment().loadavg;
  const truthFile = join(dir, 'truth.ndjson');
  const sim = await spawnSimulator({
    markets: MARKETS,
    rate: RATE,
    pace: 'realtime',
    seed: 31,
    truthFile,
    tradesKeptMax: 5_000_000,
    restTokensPerSec: 1e6,
    restBurstTokens: 1e6,
  });
  try {
    // The exchange clock is not paused while the gatherer subscribes: a pause would put exchange
    // time behind wall time, and gap windows (receipt times) would no longer cover the exchange
    // times of the trades they should backfill. The window starts at the record count read below.
    progress(`${mode}: simulator started`);
    const options = overloadOptions(dbUrl, sim, mode);
    const g = await startGatherer(options, quietLogger());
    current = g;
    await waitSubscribed(g);
    progress(`${mode}: gatherer subscribed`);
    const { rss, resumed, stopped, dt, received, processed } = await measureWindow(g, sim);
    progress(`${mode}: exchange paused; settling`);
    const settled = await settle(g, dbUrl);
    progress(`${mode}: settled=${settled.settled} in ${settled.ms} ms; stopping gatherer`);
    const drained = await g.stop();
    current = undefined;
    progress(`${mode}: gatherer stopped`);
    const rssSeries = rss.stop();
    await sim.stop();
    const gapLedger = await ledger(dbUrl);
    progress(`${mode}: reading truth`);
    const { truth, actual, trades, deltasStored } = await judgeAgainstTruth(dbUrl, truthFile, resumed.records, stopped.records);
    const dropped = g.router.stats.framesDropped;
    const maxRssMiB = Math.round(Math.max(rssSeries.maxBytes, peakRssBytes()) / MiB);
    const checks = overloadChecks(mode, g, { maxRssMiB, drained, settled: settled.settled, trades: trades.counts, dropped, gapLedger });
    const ok = Object.values(checks).every(Boolean);
    if (!ok) process.exitCode = 1;
    const b = g.controlPlane.backfill.stats;
    return {
      mode,
      loadavgAtStart: load,
      loadavgAtEnd: environment().loadavg,
      seconds: +dt.toFixed(2),
      caps: capsOf(options),
      receivedMsgsPerSec: Math.round(received / dt),
      processedMsgsPerSec: Math.round(processed / dt),
      exchangeMsgsPerSec: Math.round((truth.deltaCount + truth.trades.length + truth.tickerCount) / dt),
      framesDropped: dropped,
      ringFullEvents: g.router.stats.ringFullEvents,
      reconnects: await g.metrics.reconnects_total.get().then((x) => x.values.reduce((s, v) => s + v.value, 0)),
      gapLedger,
      gapsRecorded: g.gaps.stats.recorded,
      gapsRecovered: g.gaps.stats.recovered,
      gapsUnrecorded: g.gaps.stats.unrecorded,
      settleMs: settled.ms,
      backfill: { windowsFetched: b.windowsFetched, windowsFailed: b.windowsFailed, refused: b.refused, tradesFetched: b.trades, pages: b.pages },
      rss: rssReport(rssSeries.samples, maxRssMiB),
      trades: { expected: truth.trades.length, stored: actual.length, ...trades.counts },
      deltas: { expected: truth.deltaCount, stored: deltasStored, notStored: truth.deltaCount - deltasStored },
      checks,
      ok,
    };
  } finally {
    // On a failure the gatherer is still running: stop it (bounded) before its database goes away.
    if (current) await Promise.race([current.stop(), sleep(20_000)]);
    await sim.stop();
  }
}

/** Child process: one mode against the database the parent made; prints its result line. */
async function child(mode: 'drop' | 'pause', dbUrl: string, dir: string): Promise<void> {
  const r = await overloadRun(dbUrl, mode, dir);
  const { rss, ...brief } = r as { rss: { seriesMiB: number[] } };
  process.stdout.write(`${mode}: ${JSON.stringify({ ...brief, rss: { ...rss, seriesMiB: undefined } })}\n`);
  emitResult('overload-mode', r);
  process.exit(0); // the gatherer's pools may still hold timers: the result is out, leave
}

/**
 * Parent: owns PostgreSQL and runs each mode in its own process group with a hard time limit
 * enforced from here. An overloaded gatherer can saturate its own event loop so completely that no
 * timer inside it fires; that is a finding to report, and must not hang `npm run bench` or leave
 * the simulator running (it is in the child's process group and dies with it).
 */
async function runMode(pg: PgCluster, mode: 'drop' | 'pause'): Promise<Record<string, unknown>> {
  const name = `bench_overload_${mode}`;
  const dbUrl = await migratedGathererDb(pg, name);
  // The parent owns the truth file's directory: a killed child cannot clean up after itself.
  const dir = mkdtempSync(join(tmpdir(), 'kdp-bench-overload-'));
  const limitMs = (SECONDS * 2 + SETTLE_MS_MAX / 1000 + Number(args['slack-seconds'])) * 1000;
  const argv = [
    __filename,
    ...process.argv.slice(2).filter((a, i, all) => !['--modes'].includes(a) && all[i - 1] !== '--modes'),
    '--child-mode',
    mode,
    '--db-url',
    dbUrl,
    '--work-dir',
    dir,
  ];
  const p = spawn(process.execPath, argv, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let lastProgress = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr.on('data', (d: Buffer) => {
    process.stderr.write(d);
    const lines = d.toString().trim().split('\n');
    lastProgress = lines[lines.length - 1] ?? lastProgress;
  });
  // Sampled from outside too: a child whose event loop is blocked cannot report its own memory.
  let childRssMaxBytes = 0;
  const rssTimer = setInterval(() => {
    const v = rssBytes(p.pid!);
    if (Number.isFinite(v)) childRssMaxBytes = Math.max(childRssMaxBytes, v);
  }, 500);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    progress(`${mode}: no result after ${limitMs} ms; killing the run's process group`);
    try {
      process.kill(-p.pid!, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }, limitMs);
  const code = await new Promise<number | null>((r) => p.once('exit', (c) => r(c)));
  clearTimeout(timer);
  clearInterval(rssTimer);
  const childRssMaxMiB = Math.round(childRssMaxBytes / MiB);
  await sleep(500);
  await withClient(pg.url(), (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
  rmSync(dir, { recursive: true, force: true });
  for (const l of out.split('\n')) if (!l.startsWith(RESULT_MARKER) && l) process.stdout.write(`${l}\n`);
  const line = out.split('\n').find((l) => l.startsWith(RESULT_MARKER));
  if (line) return { ...(JSON.parse(line.slice(RESULT_MARKER.length)) as Record<string, unknown>), childRssMaxMiB };
  return {
    mode,
    ok: false,
    timedOut,
    exitCode: code,
    limitMs,
    lastProgress,
    rssCapMiB: RSS_CAP_MIB,
    childRssMaxMiB,
    rssUnderCap: childRssMaxMiB <= RSS_CAP_MIB,
  };
}

async function main(): Promise<void> {
  if (args['child-mode']) return child(args['child-mode'] as 'drop' | 'pause', args['db-url']!, args['work-dir']!);
  const env = environment();
  const pg = await PgCluster.start();
  try {
    const runs: Record<string, unknown>[] = [];
    for (const mode of MODES) runs.push(await runMode(pg, mode));
    emitResult('overload', { env, secondsPerMode: SECONDS, runs, ok: runs.every((r) => r.ok === true), loadavgAtEnd: environment().loadavg });
    if (!runs.every((r) => r.ok === true)) process.exitCode = 1;
  } finally {
    await pg.destroy();
  }
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(1);
});
