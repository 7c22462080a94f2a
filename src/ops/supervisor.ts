// Runs platform services as child processes the way systemd does in production
// (Restart=always, RestartSec): used by `kdp demo` and the chaos run. Each service's output goes
// to its own log file; kill -9 and graceful stop are explicit so fault injection is repeatable.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { join } from 'node:path';

export interface ServiceSpec {
  readonly name: string;
  readonly args: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  /** Restart after an unexpected exit, after this delay (systemd RestartSec). */
  readonly restartDelayMs: number;
  /** Give up restarting after this many restarts within restartWindowMs (systemd StartLimitBurst). */
  readonly restartBurstMax: number;
  readonly restartWindowMs: number;
}

export interface ServiceState {
  readonly name: string;
  readonly pid: number | undefined;
  readonly running: boolean;
  readonly starts: number;
  readonly lastExit: string | undefined;
}

const KDP_BIN = join(__dirname, '..', '..', '..', 'bin', 'kdp.js');

export class Service {
  private child: ChildProcess | undefined;
  private starts = 0;
  private recentStarts: number[] = [];
  private lastExit: string | undefined;
  private wanted = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private readonly log: WriteStream;
  private exitWaiters: (() => void)[] = [];
  /** Extra environment for the next start only (a chaos run arms a failpoint this way). */
  private nextStartEnv: Readonly<Record<string, string>> | undefined;

  constructor(
    readonly spec: ServiceSpec,
    logDir: string,
    private readonly onEvent: (line: string) => void = () => undefined,
  ) {
    this.log = createWriteStream(join(logDir, `${spec.name}.log`), { flags: 'a' });
  }

  start(): void {
    this.wanted = true;
    this.spawnChild();
  }

  private spawnChild(): void {
    if (!this.wanted || this.child) return;
    const now = Date.now();
    this.recentStarts = this.recentStarts.filter((t) => now - t < this.spec.restartWindowMs);
    if (this.recentStarts.length >= this.spec.restartBurstMax) {
      this.onEvent(`${this.spec.name}: start limit hit (${this.spec.restartBurstMax} in ${this.spec.restartWindowMs} ms); not restarting`);
      this.wanted = false;
      return;
    }
    this.recentStarts.push(now);
    this.starts += 1;
    const onceEnv = this.nextStartEnv;
    this.nextStartEnv = undefined;
    const child = spawn(process.execPath, [KDP_BIN, ...this.spec.args], {
      env: { ...process.env, ...this.spec.env, ...onceEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    child.stdout!.pipe(this.log, { end: false });
    child.stderr!.pipe(this.log, { end: false });
    child.on('exit', (code, signal) => this.onExit(child, code, signal));
  }

  private onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.child !== child) return;
    this.child = undefined;
    this.lastExit = signal ? `signal ${signal}` : `code ${code}`;
    for (const w of this.exitWaiters.splice(0)) w();
    if (!this.wanted) return;
    this.onEvent(`${this.spec.name} exited (${this.lastExit}); restarting in ${this.spec.restartDelayMs} ms`);
    this.restartTimer = setTimeout(() => this.spawnChild(), this.spec.restartDelayMs);
  }

  /**
   * kill -9: the service gets no chance to clean up; it is restarted like systemd would, with
   * nextStartEnv added to the environment of that one restart.
   */
  kill9(nextStartEnv?: Readonly<Record<string, string>>): boolean {
    if (!this.child?.pid) return false;
    this.nextStartEnv = nextStartEnv;
    this.child.kill('SIGKILL');
    return true;
  }

  /** Graceful stop: SIGTERM, then SIGKILL after timeoutMs. No restart. Resolves with the exit description. */
  async stop(timeoutMs: number): Promise<string | undefined> {
    this.wanted = false;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    const child = this.child;
    if (!child) return this.lastExit;
    const exited = new Promise<void>((resolve) => this.exitWaiters.push(resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    await exited;
    clearTimeout(timer);
    return this.lastExit;
  }

  state(): ServiceState {
    return { name: this.spec.name, pid: this.child?.pid, running: this.child !== undefined, starts: this.starts, lastExit: this.lastExit };
  }

  closeLog(): void {
    this.log.end();
  }
}
