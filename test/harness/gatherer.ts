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
import { migrate } from '../../src/schema/migrate';
import { startSimulator, type Simulator, type SimulatorOptions } from '../../src/sim/simulator';
import type { ExchangeRecord } from '../../src/sim/truth';
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
