// A whole local platform: one embedded PostgreSQL (a database per gatherer and one for
// production), the exchange simulator, three gatherers, the deduplicator and the archiver, each
// as its own process like in production. Used by `kdp demo` and the chaos run.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { stringify } from 'yaml';
import { freePort, PgCluster } from '../core/pgcluster';
import { migrate } from '../schema/migrate';
import { Service, type ServiceSpec } from '../ops/supervisor';
import type { Endpoint } from './view';

export interface StackOptions {
  readonly gatherers: number;
  readonly markets: number;
  readonly ratePerSec: number;
  readonly seed: number;
  /** Simulator fault spec (see docs/simulator.md), passed through. */
  readonly simFaults: string | undefined;
  /** Where data, logs, configs and the truth file go; a temporary directory when absent. */
  readonly dataDir: string | undefined;
  readonly keep: boolean;
  /** systemd RestartSec equivalent for crashed services. */
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

export class Stack {
  pg: PgCluster | undefined;
  sim: Service | undefined;
  simPort = 0;
  gatherers: GathererProc[] = [];
  dedup: Service | undefined;
  dedupPorts = { health: 0, metrics: 0 };
  archive: Service | undefined;
  archiveMetricsPort = 0;
  productionUrl = '';
  readonly dir: string;
  readonly truthFile: string;
  readonly archiveDir: string;
  private readonly ownsDir: boolean;

  constructor(readonly opts: StackOptions) {
    this.ownsDir = opts.dataDir === undefined;
    this.dir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'kdp-demo-'));
    for (const sub of ['logs', 'config', 'archive']) mkdirSync(join(this.dir, sub), { recursive: true });
    this.truthFile = join(this.dir, 'truth.ndjson');
    this.archiveDir = join(this.dir, 'archive');
  }

  private spec(name: string, args: string[]): ServiceSpec {
    return { name, args, restartDelayMs: this.opts.restartDelayMs, restartBurstMax: 50, restartWindowMs: 600_000 };
  }

  private service(name: string, args: string[]): Service {
    return new Service(this.spec(name, args), join(this.dir, 'logs'), this.opts.onEvent);
  }

  private writeConfig(name: string, value: unknown): string {
    const file = join(this.dir, 'config', `${name}.yaml`);
    writeFileSync(file, stringify(value));
    return file;
  }

  /** PostgreSQL with migrated gatherer and production databases. */
  async startDatabases(): Promise<void> {
    this.pg = await PgCluster.start({ dataDir: join(this.dir, 'pg'), keep: true });
    const names = [...Array.from({ length: this.opts.gatherers }, (_, i) => `g${i + 1}`), 'production'];
    for (const name of names) {
      const url = await this.pg.createDatabase(`kdp_${name}`);
      const c = new Client({ connectionString: url });
      await c.connect();
      try {
        await migrate(c, { kind: name === 'production' ? 'production' : 'gatherer', engine: 'postgres' });
      } finally {
        await c.end();
      }
      if (name === 'production') this.productionUrl = url;
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
        metricsUrl: `http://127.0.0.1:${this.dedupPorts.metrics}/metrics`,
        healthUrl: `http://127.0.0.1:${this.dedupPorts.health}/health`,
      },
      { name: 'archive', kind: 'archive' as const, metricsUrl: `http://127.0.0.1:${this.archiveMetricsPort}/metrics`, healthUrl: undefined },
    ];
  }

  async destroy(): Promise<void> {
    for (const s of [this.sim, this.dedup, this.archive, ...this.gatherers.map((g) => g.service)]) {
      if (!s) continue;
      await s.stop(5000);
      s.closeLog();
    }
    if (this.pg) {
      await this.pg.stopServer().catch(() => undefined);
    }
    if (!this.opts.keep && this.ownsDir) rmSync(this.dir, { recursive: true, force: true });
  }

  async ports(n: number): Promise<number[]> {
    const out: number[] = [];
    while (out.length < n) {
      const p = await freePort();
      if (!out.includes(p)) out.push(p);
    }
    return out;
  }

  // Service launchers (configs written in each service's documented format).
  startService(name: string, args: string[]): Service {
    const s = this.service(name, args);
    s.start();
    return s;
  }

  config(name: string, value: unknown): string {
    return this.writeConfig(name, value);
  }
}
