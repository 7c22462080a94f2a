// Shared pieces of the end-to-end benchmarks: the machine-readable result line run-bench.js
// stores, spread statistics, a throw-away gatherer database, peak-RSS sampling, CPU accounting,
// `psql` for the database ceiling, and the ground-truth pass over the simulator's truth file.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../src/core/log';
import type { Gatherer } from '../src/gatherer/service';
import type { PgCluster } from '../src/core/pgcluster';
import { withClient } from '../src/core/pgclient';
import { migrate } from '../src/schema/migrate';
import { truthDeltaOf, truthTradeOf } from '../src/ops/truth-file';
import type { TruthSet } from '../src/ops/truth';
import { streamTruth } from '../src/sim/truth';

/** The last line a benchmark prints: run-bench.js parses the JSON after this marker. */
export const RESULT_MARKER = 'BENCH_RESULT ';

export function emitResult(bench: string, result: Record<string, unknown>): void {
  process.stdout.write(`${RESULT_MARKER}${JSON.stringify({ bench, ...result })}\n`);
}

/** Environment recorded with every figure: the machine is shared, so the load goes with it. */
export function environment(): Record<string, unknown> {
  return { node: process.version, cpu: cpus()[0]?.model, cores: cpus().length, loadavg: loadavg().map((x) => +x.toFixed(2)) };
}

export interface Spread {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly n: number;
}

export function spread(values: readonly number[]): Spread {
  const s = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (s.length === 0) return { median: NaN, min: NaN, max: NaN, n: 0 };
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  const r = (x: number): number => +x.toFixed(3);
  return { median: r(median), min: r(s[0]!), max: r(s[s.length - 1]!), n: s.length };
}

/** Exact quantile of a sample (nearest rank). */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function quietLogger(): Logger {
  return createLogger('bench', { level: 'error', destination: new Writable({ write: (_c, _e, cb) => cb() }) });
}

export async function migratedGathererDb(pg: PgCluster, name: string): Promise<string> {
  const url = await pg.createDatabase(name);
  await withClient(url, (c) => migrate(c, { kind: 'gatherer', engine: 'postgres' }));
  return url;
}

/** Resident set size of this process (all its threads) in bytes, from /proc (Linux). */
export function rssBytes(pid: number | 'self' = 'self'): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN; // the process is gone
  }
}

/** Resets the kernel's peak-RSS mark (VmHWM) of this process, so a phase's peak is its own. */
export function resetPeakRss(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

export function peakRssBytes(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** Samples RSS every intervalMs until stop(); keeps the series (bounded by the run's length). */
export function sampleRss(intervalMs: number): { stop(): { maxBytes: number; samples: number[] } } {
  const samples: number[] = [rssBytes()];
  const timer = setInterval(() => samples.push(rssBytes()), intervalMs);
  return {
    stop: () => {
      clearInterval(timer);
      samples.push(rssBytes());
      return { maxBytes: Math.max(...samples), samples };
    },
  };
}

/** CPU seconds (user + system) another process has used, from /proc (clock ticks of 1/100 s). */
export function processCpuSeconds(pid: number, statFile = `/proc/${pid}/stat`): number {
  const fields = readFileSync(statFile, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * CPU seconds of a PostgreSQL cluster: its postmaster and every process whose parent it is
 * (backends, walwriter, checkpointer, ...). Take a difference over a window in which the
 * connections stay open: a backend that exits meanwhile moves its time to the postmaster's
 * children total, which /proc/<pid>/stat keeps apart (cutime, cstime) and which is added too.
 */
export function clusterCpuSeconds(postmasterPid: number): number {
  let total = 0;
  const stat = (pid: number): string[] | undefined => {
    try {
      return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    } catch {
      return undefined; // exited meanwhile
    }
  };
  const own = stat(postmasterPid);
  if (own) total += (Number(own[11]) + Number(own[12]) + Number(own[13]) + Number(own[14])) / 100;
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const f = stat(Number(name));
    if (f && Number(f[1]) === postmasterPid) total += (Number(f[11]) + Number(f[12])) / 100;
  }
  return total;
}

/**
 * CPU seconds of this process's main thread alone (its task whose id is the pid): the gatherer's
 * ingest thread, apart from its worker threads (Node 20 has no process.threadCpuUsage).
 */
export function mainThreadCpuSeconds(): number {
  return processCpuSeconds(process.pid, `/proc/${process.pid}/task/${process.pid}/stat`);
}

/** CPU µs of this process (all threads and its main thread apart), the simulator and the PostgreSQL cluster over a window. */
export function cpuWindow(
  simPid: number,
  postmasterPid: number | undefined,
): () => { selfCpuUs: number; mainThreadCpuUs: number; simCpuUs: number; pgCpuUs: number } {
  const self0 = process.cpuUsage();
  const main0 = mainThreadCpuSeconds();
  const sim0 = processCpuSeconds(simPid);
  const pg0 = postmasterPid === undefined ? 0 : clusterCpuSeconds(postmasterPid);
  return () => {
    const self = process.cpuUsage(self0);
    return {
      selfCpuUs: self.user + self.system,
      mainThreadCpuUs: (mainThreadCpuSeconds() - main0) * 1e6,
      simCpuUs: (processCpuSeconds(simPid) - sim0) * 1e6,
      pgCpuUs: postmasterPid === undefined ? 0 : (clusterCpuSeconds(postmasterPid) - pg0) * 1e6,
    };
  };
}

export const PSQL = '/usr/bin/psql';

export function psql(url: string, ...commands: string[]): void {
  execFileSync(PSQL, [url, '-v', 'ON_ERROR_STOP=1', '-q', ...commands.flatMap((c) => ['-c', c])], { stdio: ['ignore', 'ignore', 'inherit'] });
}

export interface TruthWindowSet extends TruthSet {
  /** Trade ids the exchange made before the window (REST backfill may legitimately store them). */
  readonly tradeIdsBefore: ReadonlySet<string>;
  readonly deltaCount: number;
  readonly tickerCount: number;
  readonly fromUs: number;
  readonly toUs: number;
}

/**
 * One pass over the truth file: the trades (and, when keepDeltas, the deltas) of exchange records
 * afterN < n <= throughN, i.e. made between a clock resume and the next pause.
 */
export async function truthWindow(file: string, afterN: number, throughN: number, keepDeltas: boolean): Promise<TruthWindowSet> {
  const trades: TruthSet['trades'][number][] = [];
  const deltas: TruthSet['deltas'][number][] = [];
  const before = new Set<string>();
  let deltaCount = 0;
  let tickerCount = 0;
  let fromUs = Infinity;
  let toUs = -Infinity;
  for await (const r of streamTruth(file)) {
    if (r.k === 'meta' || r.k === 'client' || r.k === 'fault') continue;
    if (r.n <= afterN) {
      if (r.k === 'trade') before.add(r.trade_id);
      continue;
    }
    if (r.n > throughN) continue;
    fromUs = Math.min(fromUs, r.t);
    toUs = Math.max(toUs, r.t);
    if (r.k === 'trade') trades.push(truthTradeOf(r));
    else if (r.k === 'ticker') tickerCount++;
    else if (r.k === 'delta') {
      deltaCount++;
      if (keepDeltas) deltas.push(truthDeltaOf(r));
    }
  }
  // Trades are stored on the millisecond: the span starts on the millisecond of the first record.
  return { trades, deltas, tradeIdsBefore: before, deltaCount, tickerCount, fromUs: Math.floor(fromUs / 1000) * 1000, toUs };
}

/**
 * Waits (bounded) until the gatherer holds every market its registry lists as active. Not "the
 * simulator's market count": markets close and new ones open, so with the exchange clock paused
 * fewer than that many may be open, and an unbounded wait for them hung a bench run for good.
 */
export async function waitSubscribed(g: Gatherer, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const done = (): boolean => {
    const listed = g.controlPlane.registry.activeTickers().length;
    return listed > 0 && g.manager.allSubscribed() && g.manager.marketCount() >= listed;
  };
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`gatherer did not subscribe every listed market within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
