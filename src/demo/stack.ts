// A whole local platform: one embedded PostgreSQL (a database per gatherer and one for
// production), the exchange simulator, three gatherers, the deduplicator, the archiver and a
// storage maintainer per database, each as its own process like in production. Used by `kdp demo`.
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KdpError } from '../core/errors';
import { withClient } from '../core/pgclient';
import { stringify } from 'yaml';
import { freePort, PgCluster } from '../core/pgcluster';
import { getJson } from '../ops/scrape';
import { Service } from '../ops/supervisor';
import { migrate } from '../schema/migrate';
import { spawnSimulator, type SpawnedSimulator } from '../sim/spawn';
import type { Endpoint } from './view';

export interface StackOptions {
  readonly gatherers: number;
  readonly markets: number;
  readonly ratePerSec: number;
  readonly seed: number;
  /** Simulator fault spec (docs/simulator.md), passed through. */
  readonly simFaults: string;
  /** Where data, logs, configs and the truth file go; a temporary directory when absent. */
  readonly dataDir: string | undefined;
  readonly keep: boolean;
  /** systemd RestartSec for crashed services. */
  readonly restartDelayMs: number;
  readonly onEvent: (line: string) => void;
}

export interface GathererProc {
  readonly name: string;
  readonly dbUrl: string;
  readonly healthPort: number;
  readonly metricsPort: number;
  readonly service: Service;
}

const MARKETS_PER_CONNECTION = 500;
const WORKERS = 2;

/**
 * The REST poller's book snapshots per gatherer are markets / pollIntervalMs. 60 s shows the drift
 * check within a short demo, but at 40,000 markets it is 40,000 snapshots a minute per gatherer,
 * 15 x what the production default (15 min) sends, and those rows alone outran the deduplicator
 * (2026-12-04, bench/README). Past 2,400 markets the interval grows to hold 40 snapshots/s per
 * gatherer, up to the production default, reached at 36,000 markets.
 */
export function demoPollIntervalMs(markets: number): number {
  return Math.min(900_000, Math.max(60_000, Math.ceil(markets / 40) * 1000));
}

export class Stack {
  pg: PgCluster | undefined;
  /** The cluster holding each database: g1, g2, ..., production. */
  readonly clusters = new Map<string, PgCluster>();
  sim: SpawnedSimulator | undefined;
  gatherers: GathererProc[] = [];
  dedup: Service | undefined;
  archive: Service | undefined;
  /** One `kdp maintain` per database: g1, g2, ..., production. */
  maintainers: { readonly name: string; readonly metricsPort: number; readonly service: Service }[] = [];
  productionUrl = '';
  readonly ports = { dedupHealth: 0, dedupMetrics: 0, archiveMetrics: 0 };
  readonly dir: string;
  readonly truthFile: string;
  readonly archiveDir: string;
  private readonly ownsDir: boolean;

  constructor(readonly opts: StackOptions) {
    this.ownsDir = opts.dataDir === undefined;
    this.dir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'kdp-demo-'));
    // As root the embedded server runs as the `postgres` user, which must reach pg/ inside.
    if (this.ownsDir) chmodSync(this.dir, 0o755);
    for (const sub of ['logs', 'config', 'archive', 'archive-work']) mkdirSync(join(this.dir, sub), { recursive: true });
    this.truthFile = join(this.dir, 'truth.ndjson');
    this.archiveDir = join(this.dir, 'archive');
  }

  private service(name: string, args: string[]): Service {
    const s = new Service(
      { name, args, restartDelayMs: this.opts.restartDelayMs, restartBurstMax: 50, restartWindowMs: 600_000 },
      join(this.dir, 'logs'),
      this.opts.onEvent,
    );
    s.start();
    return s;
  }

  private config(name: string, value: unknown): string {
    const file = join(this.dir, 'config', `${name}.yaml`);
    writeFileSync(file, stringify(value));
    return file;
  }

  /**
   * PostgreSQL with a migrated database per gatherer and one for production: in one cluster, or
   * with clusterPerDatabase in a cluster each (so one can be stopped alone, as a chaos run does).
   */
  async startDatabases(clusterPerDatabase = false): Promise<string[]> {
    const names = [...Array.from({ length: this.opts.gatherers }, (_, i) => `g${i + 1}`), 'production'];
    const settings = { max_connections: clusterPerDatabase ? '100' : '300' };
    if (clusterPerDatabase) {
      const clusters = await Promise.all(names.map((n) => PgCluster.start({ dataDir: join(this.dir, `pg-${n}`), keep: true, settings })));
      names.forEach((n, i) => this.clusters.set(n, clusters[i]!));
    } else {
      this.pg = await PgCluster.start({ dataDir: join(this.dir, 'pg'), keep: true, settings });
      for (const n of names) this.clusters.set(n, this.pg);
    }
    const urls: string[] = [];
    for (const n of names) {
      const production = n === 'production';
      const url = await this.clusters.get(n)!.createDatabase(production ? 'kdp_production' : `kdp_${n}`);
      await withClient(url, (c) => migrate(c, { kind: production ? 'production' : 'gatherer', engine: 'postgres' }));
      if (production) this.productionUrl = url;
      else urls.push(url);
    }
    return urls;
  }

  /** The simulator in its own process, its exchange clock frozen until release(). */
  async startSimulator(): Promise<SpawnedSimulator> {
    this.sim = await spawnSimulator({
      markets: this.opts.markets,
      rate: this.opts.ratePerSec,
      seed: this.opts.seed,
      truthFile: this.truthFile,
      faults: this.opts.simFaults,
      pingIntervalMs: 10_000,
    });
    await this.sim.clock('pause');
    return this.sim;
  }

  async startGatherers(dbUrls: readonly string[]): Promise<void> {
    const sim = this.sim!;
    // At least one connection per worker: a connection's frames all go to one worker.
    const connections = Math.max(WORKERS, Math.ceil(this.opts.markets / MARKETS_PER_CONNECTION));
    for (const [i, dbUrl] of dbUrls.entries()) {
      const name = `g${i + 1}`;
      const [healthPort, metricsPort] = [await freePort(), await freePort()];
      const file = this.config(name, {
        gathererId: name,
        database: { url: dbUrl },
        exchange: { wsUrl: sim.wsUrl },
        rest: { restBaseUrl: sim.restUrl, pollIntervalMs: demoPollIntervalMs(this.opts.markets) },
        connections: { count: connections, startJitterMs: 500, backoffInitialMs: 500, backoffMaxMs: 5_000 },
        pipeline: { workers: WORKERS, ringBytes: 16 * 1024 * 1024 },
        http: { host: '127.0.0.1', healthPort, metricsPort },
        log: { level: 'info' },
      });
      this.gatherers.push({ name, dbUrl, healthPort, metricsPort, service: this.service(name, ['gatherer', '--config', file]) });
    }
  }

  /** Resolves once every gatherer reports every market subscribed. */
  async waitGatherersSubscribed(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const states = await Promise.all(this.gatherers.map((g) => getJson(`http://127.0.0.1:${g.healthPort}/health`, 1000)));
      const ready = states.every((s) => {
        const b = s?.body as { subscribed?: boolean; markets?: number } | undefined;
        return b?.subscribed === true && (b.markets ?? 0) >= this.opts.markets;
      });
      if (ready) return;
      if (Date.now() > deadline) throw new KdpError('KDP_ERR_NOT_READY', 'gatherers did not subscribe every market in time (see the logs directory)');
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  async startDedupAndArchive(): Promise<void> {
    await this.startDedup();
    await this.startArchive();
  }

  async startDedup(): Promise<void> {
    this.ports.dedupHealth = await freePort();
    this.ports.dedupMetrics = await freePort();
    const dedupFile = this.config('dedup', {
      gatherers: this.gatherers.map((g) => ({ name: g.name, url: g.dbUrl })),
      production: { url: this.productionUrl },
      sync: { intervalMs: 500, backoffInitialMs: 200, backoffMaxMs: 5_000 },
      http: { host: '127.0.0.1', healthPort: this.ports.dedupHealth, metricsPort: this.ports.dedupMetrics },
      log: { level: 'info' },
    });
    this.dedup = this.service('dedup', ['dedup', '--config', dedupFile]);
  }

  /** The archiver's config file (the demo's last archive pass reads it too). */
  archiveConfig: string | undefined;

  async startArchive(): Promise<void> {
    this.ports.archiveMetrics = await freePort();
    const archiveFile = this.config('archive', {
      production: { url: this.productionUrl },
      store: { kind: 'local', dir: this.archiveDir, prefix: 'raw' },
      intervalMs: 10_000,
      exportLagMs: 60_000,
      workDir: join(this.dir, 'archive-work'),
      metricsPort: this.ports.archiveMetrics,
      metricsHost: '127.0.0.1',
      log: { level: 'info' },
    });
    this.archiveConfig = archiveFile;
    this.archive = this.service('archive', ['archive', '--config', archiveFile]);
  }

  /** `kdp maintain` for every gatherer database and production (partitions ahead, retention). */
  async startMaintainers(): Promise<void> {
    const dbs = [
      ...this.gatherers.map((g) => ({ name: g.name, kind: 'gatherer', url: g.dbUrl })),
      { name: 'production', kind: 'production', url: this.productionUrl },
    ];
    for (const db of dbs) {
      const metricsPort = await freePort();
      const file = this.config(`maintain-${db.name}`, {
        kind: db.kind,
        database: { url: db.url },
        intervalMs: 60_000,
        metricsPort,
        metricsHost: '127.0.0.1',
        log: { level: 'info' },
      });
      const service = this.service(`maintain-${db.name}`, ['maintain', '--config', file]);
      this.maintainers.push({ name: `maint-${db.name}`, metricsPort, service });
    }
  }

  endpoints(): Endpoint[] {
    return [
      ...this.gatherers.map((g) => ({
        name: g.name,
        kind: 'gatherer' as const,
        metricsUrl: `http://127.0.0.1:${g.metricsPort}/metrics`,
        healthUrl: `http://127.0.0.1:${g.healthPort}/health`,
      })),
      {
        name: 'dedup',
        kind: 'dedup' as const,
        metricsUrl: `http://127.0.0.1:${this.ports.dedupMetrics}/metrics`,
        healthUrl: `http://127.0.0.1:${this.ports.dedupHealth}/health`,
      },
      { name: 'archive', kind: 'archive' as const, metricsUrl: `http://127.0.0.1:${this.ports.archiveMetrics}/metrics`, healthUrl: undefined },
      ...this.maintainers.map((m) => ({
        name: m.name,
        kind: 'maintain' as const,
        metricsUrl: `http://127.0.0.1:${m.metricsPort}/metrics`,
        healthUrl: undefined,
      })),
    ];
  }

  /** Stops everything still running and removes the data directory unless kept. */
  async destroy(): Promise<void> {
    const services = [this.dedup, this.archive, ...this.gatherers.map((g) => g.service), ...this.maintainers.map((m) => m.service)];
    await Promise.all(services.map((s) => s?.stop(10_000)));
    for (const s of services) s?.closeLog();
    await this.sim?.stop().catch(() => undefined);
    for (const cluster of new Set(this.clusters.values())) await cluster.stopServer().catch(() => undefined);
    if (!this.opts.keep && this.ownsDir) rmSync(this.dir, { recursive: true, force: true });
  }
}
