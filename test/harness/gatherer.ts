// Test harness: a real simulator (in this process, so tests can pause its exchange clock) and a
// real gatherer (worker threads, rings, COPY into a migrated embedded PostgreSQL database).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Client } from 'pg';
import { createLogger } from '../../src/core/log';
import { resolveOptions } from '../../src/config/validate';
import { checkGathererOptions, GATHERER_SPEC, type GathererOptions } from '../../src/gatherer/config';
import { startGatherer, type Gatherer } from '../../src/gatherer/service';
import type { ConnectionManagerOptions } from '../../src/gatherer/connections';
import { migrate } from '../../src/schema/migrate';
import { startSimulator, type Simulator, type SimulatorOptions } from '../../src/sim/simulator';
import type { DeltaRec, ExchangeRecord, TradeRec } from '../../src/sim/truth';
import type { TruthSet } from '../../src/ops/truth';
import { truthDeltaOf, truthTradeOf } from '../../src/ops/truth-file';
import type { TestPg } from './pg';

export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 30_000, stepMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

export async function migratedGathererDb(pg: TestPg): Promise<string> {
  const url = await pg.newDatabase('kdp_g');
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    await migrate(c, { kind: 'gatherer', engine: 'postgres' });
  } finally {
    await c.end();
  }
  return url;
}

export interface SimRun {
  readonly sim: Simulator;
  readonly truthFile: string;
  /** Exchange records committed so far, in order. */
  readonly records: ExchangeRecord[];
}

/** Starts the simulator with its exchange clock paused (nothing happens until resume()). */
export async function startPausedSimulator(opts: SimulatorOptions): Promise<SimRun> {
  const truthFile = join(mkdtempSync(join(tmpdir(), 'kdp-truth-')), 'truth.ndjson');
  const sim = await startSimulator({ truthFile, ...opts });
  sim.pause();
  const records: ExchangeRecord[] = [];
  sim.onRecord((r) => records.push(r));
  return { sim, truthFile, records };
}

export function gathererOptions(dbUrl: string, sim: Simulator, overrides: Record<string, unknown> = {}): GathererOptions {
  const base: Record<string, unknown> = {
    gathererId: 'g1',
    database: { url: dbUrl },
    exchange: { wsUrl: sim.wsUrl },
    rest: { restBaseUrl: sim.restUrl, pollEnabled: false, restTokensPerSec: 10_000, restBurstTokens: 10_000 },
    connections: { count: 2, startJitterMs: 0, marketsPerSubscription: 100, backoffInitialMs: 100, backoffMaxMs: 1000 },
    pipeline: { workers: 2, ringBytes: 4 * 1024 * 1024, frameBytesMax: 256 * 1024 },
    writer: { flushIntervalMs: 20 },
    http: { host: '127.0.0.1', healthPort: 0, metricsPort: 0 },
    log: { level: 'warn' },
  };
  for (const [k, v] of Object.entries(overrides)) {
    base[k] = typeof v === 'object' && v !== null && !Array.isArray(v) ? { ...(base[k] as object), ...(v as object) } : v;
  }
  return checkGathererOptions(resolveOptions(GATHERER_SPEC, base));
}

/** Options of a bare ConnectionManager (one connection, no channels) for tests that drive it alone. */
export function managerOptions(wsUrl: string, overrides: Partial<ConnectionManagerOptions> = {}): ConnectionManagerOptions {
  return {
    wsUrl,
    connections: 1,
    marketsPerSubscription: 100,
    marketsPerSubscriptionMin: 1,
    silenceTimeoutMs: 60_000,
    backoffInitialMs: 100,
    backoffMaxMs: 1000,
    startJitterMs: 0,
    handshakeTimeoutMs: 5000,
    commandTimeoutMs: 5000,
    wsMaxPayloadBytes: 1024 * 1024,
    marketChannels: [],
    globalChannels: [],
    useYesPrice: true,
    ...overrides,
  };
}

/** A gatherer whose log lines are kept in memory (tests read them on failure). */
export async function startTestGatherer(options: GathererOptions): Promise<{ gatherer: Gatherer; logLines: string[] }> {
  const logLines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      if (logLines.length < 2000) logLines.push(String(chunk));
      cb();
    },
  });
  const log = createLogger('gatherer', { level: options.log.level, destination: sink });
  return { gatherer: await startGatherer(options, log), logLines };
}

/** Waits until the gatherer has subscribed every market the simulator lists. */
export async function waitSubscribed(g: Gatherer, markets: number): Promise<void> {
  await waitFor(`${markets} markets subscribed`, () => g.manager.marketCount() >= markets && g.manager.allSubscribed(), 30_000);
}

/**
 * Markets whose snapshot the gatherer has: committed, or held by a worker for its sid's next delta
 * (next_delta_ts; src/workers/held.ts) — with the exchange paused no delta comes, and the held rows
 * are written once it resumes (or at the stop).
 */
export async function snapshotsIn(db: Client, g: Gatherer): Promise<number> {
  const committed = (await db.query('SELECT count(DISTINCT ticker)::int AS n FROM orderbook_snapshots')).rows[0].n as number;
  return committed + g.pipeline.total('snapshots_held');
}

export interface RecordedWindow {
  /** Exchange records made while the exchange ran (after the gatherer subscribed everything). */
  readonly window: ExchangeRecord[];
  readonly resumedAtN: number;
  /** graceful stop result */
  readonly drained: boolean;
}

/**
 * Lets the paused exchange run for `runMs` once the gatherer has subscribed every market and
 * committed their snapshots, pauses it, lets the gatherer drain, and stops both (the truth file is
 * complete afterwards). `during` runs while the exchange is live (fault injection).
 */
export async function recordWindow(
  run: SimRun,
  g: Gatherer,
  dbUrl: string,
  markets: number,
  runMs: number,
  during: (elapsedMs: number) => void | Promise<void> = () => undefined,
): Promise<RecordedWindow> {
  try {
    await waitSubscribed(g, markets);
    const db = new Client({ connectionString: dbUrl });
    await db.connect();
    try {
      await waitFor('initial snapshots committed or held', async () => (await snapshotsIn(db, g)) >= markets);
    } finally {
      await db.end();
    }
  } catch (err) {
    // A gatherer left running would keep retrying against a database the suite is about to drop
    // and keep the test process alive: stop both before failing.
    await g.stop().catch(() => undefined);
    await run.sim.stop();
    throw err;
  }
  const resumedAtN = run.records.length === 0 ? 0 : run.records[run.records.length - 1]!.n;
  run.sim.resume();
  const started = Date.now();
  while (Date.now() - started < runMs) {
    await during(Date.now() - started);
    await new Promise((r) => setTimeout(r, 250));
  }
  run.sim.pause();
  await quiesce(g);
  const drained = await g.stop();
  await run.sim.stop();
  return { window: run.records.filter((r) => r.n > resumedAtN), resumedAtN, drained };
}

// Recoveries retry REST failures 2 s, 4 s, 8 s ... apart (src/gatherer/gaps.ts): after a 5xx burst
// and the simulator's own 429s that is well over ten seconds on a busy machine. A fixed 1.5 s wait
// here stopped the gatherer mid-retry and left the lifecycle ring-drop row open in 3 runs of 4
// (test/gatherer/faults.test.ts under load). Bounded: a test whose recovery never ends fails on
// its own assertions, not here.
const QUIESCE_TIMEOUT_MS = 90_000;
const QUIESCE_STABLE_CHECKS = 4;

/**
 * Waits until the paused exchange's frames have left the rings and the gap tracker has nothing in
 * flight (ledger writes, resyncs, REST recoveries and their retry delays), seen on several checks in
 * a row (a worker reports a gap after it has read the frame off the ring).
 */
export async function quiesce(g: Gatherer): Promise<void> {
  let stable = 0;
  await waitFor(
    'rings empty and gap recoveries finished',
    () => {
      const quiet = g.pipeline.rings.every((r) => r.usedBytes() === 0) && g.gaps.idle();
      stable = quiet ? stable + 1 : 0;
      return stable >= QUIESCE_STABLE_CHECKS;
    },
    QUIESCE_TIMEOUT_MS,
    250,
  ).catch(() => undefined);
}

/** The run's trades and deltas in the shape the truth comparison takes. */
export function expectedFrom(window: readonly ExchangeRecord[]): TruthSet {
  return {
    trades: window.filter((r): r is TradeRec => r.k === 'trade').map(truthTradeOf),
    deltas: window.filter((r): r is DeltaRec => r.k === 'delta').map(truthDeltaOf),
  };
}

/** Exchange-time span of a run; starts on the millisecond because trades are stored per millisecond. */
export function runSpan(window: readonly ExchangeRecord[]): { fromUs: number; toUs: number } {
  return { fromUs: Math.floor(window[0]!.t / 1000) * 1000, toUs: window[window.length - 1]!.t };
}
