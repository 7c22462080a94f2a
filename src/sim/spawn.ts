// Runs the simulator in its own process (`node bin/kdp.js sim --ready-json`), so a component under
// test does not share an event loop with it. Faults are injected over the IPC channel.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { KdpError } from '../core/errors';
import { SIM_SPEC, simFlag, type FaultRequest, type SimConnection, type SimulatorOptions } from './simulator';

export interface SpawnedSimulator {
  readonly wsUrl: string;
  readonly restUrl: string;
  readonly port: number;
  readonly pid: number;
  readonly child: ChildProcess;
  injectFault(f: FaultRequest): Promise<void>;
  /** Freezes / resumes the exchange clock; resolves with the clock (µs) and records made so far. */
  clock(action: 'pause' | 'resume'): Promise<{ nowUs: number; records: number }>;
  /** The simulator's live connections with their clients and sids (chaos targets faults with it). */
  connections(): Promise<SimConnection[]>;
  /** SIGTERM, then waits for the exit (SIGKILL after timeoutMs). */
  stop(timeoutMs?: number): Promise<void>;
}

function argvFor(options: SimulatorOptions, keyDir: string): string[] {
  const argv: string[] = [];
  for (const [key, value] of Object.entries(options)) {
    if (value === undefined) continue;
    if (key === 'publicKeys') {
      for (const [id, pem] of Object.entries(value as Record<string, string>)) {
        const file = join(keyDir, `${id.replace(/[^A-Za-z0-9_-]/g, '_')}.pem`);
        writeFileSync(file, pem);
        argv.push('--auth-public-key', `${id}=${file}`);
      }
    } else if (key === 'requireAuth') {
      if (value) argv.push('--require-auth');
    } else if (key === 'pace') {
      if (value === 'fast') argv.push('--speed', 'max');
    } else if (key === 'speed') {
      if (options.pace !== 'fast') argv.push('--speed', String(value));
    } else {
      if (!(key in SIM_SPEC)) throw new KdpError('KDP_ERR_USAGE', `spawnSimulator: unknown option ${key}`);
      argv.push(`--${simFlag(key as keyof typeof SIM_SPEC)}`, String(value));
    }
  }
  return argv;
}

export async function spawnSimulator(options: SimulatorOptions = {}, startTimeoutMs = 15_000): Promise<SpawnedSimulator> {
  const keyDir = mkdtempSync(join(tmpdir(), 'kdp-sim-'));
  const bin = resolve(__dirname, '..', '..', '..', 'bin', 'kdp.js');
  const child = spawn(process.execPath, [bin, 'sim', '--ready-json', ...argvFor(options, keyDir)], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const ready = await new Promise<{ wsUrl: string; restUrl: string; port: number; pid: number }>((ok, fail) => {
    const timer = setTimeout(() => fail(new KdpError('KDP_ERR_INTERNAL', 'simulator did not start in time')), startTimeoutMs);
    const rl = createInterface({ input: child.stdout! });
    rl.once('line', (line) => {
      clearTimeout(timer);
      ok(JSON.parse(line));
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      fail(new KdpError('KDP_ERR_INTERNAL', `simulator exited with code ${code} before it was ready`));
    });
  }).finally(() => rmSync(keyDir, { recursive: true, force: true }));
  let nextId = 1;
  type Reply = { id: number; error?: string; nowUs: number; records: number; connections?: SimConnection[] };
  const waiting = new Map<number, (reply: Reply) => void>();
  child.on('message', (m: Reply) => waiting.get(m.id)?.(m));
  const request = (body: Record<string, unknown>): Promise<Reply> =>
    new Promise((ok, fail) => {
      const id = nextId++;
      waiting.set(id, (reply) => {
        waiting.delete(id);
        if (reply.error) fail(new KdpError('KDP_ERR_USAGE', reply.error));
        else ok(reply);
      });
      child.send({ id, ...body });
    });
  return {
    ...ready,
    child,
    injectFault: async (f) => {
      await request({ inject: f });
    },
    connections: async () => (await request({ connections: true })).connections ?? [],
    clock: async (action) => {
      const r = await request({ clock: action });
      return { nowUs: r.nowUs, records: r.records };
    },
    stop: async (timeoutMs = 10_000) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      await exited;
      clearTimeout(timer);
    },
  };
}
