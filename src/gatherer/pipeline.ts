// The worker side of the gatherer as seen from the ingest thread: one SharedArrayBuffer ring and
// one long-running piscina task per worker. Piscina supervises the threads: when a worker dies its
// task promise rejects, piscina starts a replacement thread, and we resubmit the task on the same
// ring (the new worker resumes at the ring's read index). What the dead worker had read but not
// committed is lost to this gatherer; the service records it as a gap and resyncs.
// Relaunches are spaced by the full-jitter Backoff of core/backoff.ts and bounded: a worker that keeps
// dying right after each relaunch (a config or environment it cannot run with) makes the pipeline
// give up with KDP_ERR_WORKER_FAILED rather than relaunch it, and reconnect its connections, forever.
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { join } from 'node:path';
import Piscina from 'piscina';
import { KdpError } from '../core/errors';
import type { Logger } from '../core/log';
import { SharedCounters } from '../core/shared-counters';
import { createRingBuffer, RingProducer } from '../ingest/ring';
import { Backoff } from '../core/backoff';
import type { ExchangeReply } from '../workers/protocol';
import type { GapEvent } from '../workers/sequence';
import { WORKER_COUNTERS, type WorkerCounterName, type WorkerMessage, type WorkerReport, type WorkerTask, type WorkerTaskOptions } from '../workers/protocol';

export interface PipelineOptions {
  readonly workers: number;
  readonly ringBytes: number;
  readonly frameBytesMax: number;
  readonly task: WorkerTaskOptions;
  readonly restart: WorkerRestartPolicy;
}

export interface WorkerRestartPolicy {
  readonly backoffInitialMs: number;
  readonly backoffMaxMs: number;
  /** Relaunches in a row of a worker that dies within stableMs of its launch; one more death gives up. */
  readonly restartsMax: number;
  /** A worker up this long counts as healthy: its relaunch count and backoff start over. */
  readonly stableMs: number;
  /** Random source in [0,1) of the backoff jitter: injectable for deterministic tests. */
  readonly random?: () => number;
}

export interface PipelineEvents {
  reply(reply: ExchangeReply): void;
  gap(gap: GapEvent): void;
  lifecycle(channel: string, msg: Record<string, unknown>): void;
  /** A worker thread died and is relaunched after delayMs; its connections lost what it had not committed. */
  workerRestarted(workerIndex: number, error: string, delayMs: number): void;
  /** A worker kept dying past restartsMax relaunches in a row and is not relaunched: the gatherer must stop. */
  workerFailed(workerIndex: number, err: KdpError): void;
  /** One committed COPY batch. */
  flush(table: string, rows: number, seconds: number, minReceivedUs: number): void;
}

interface WorkerSlot {
  readonly index: number;
  readonly ring: RingProducer;
  readonly ringBuffer: SharedArrayBuffer;
  readonly counters: SharedCounters<WorkerCounterName>;
  port: MessagePort | undefined;
  running: Promise<void> | undefined;
  restarts: number;
  /** Relaunches since the worker was last healthy (up for stableMs). */
  restartsInRow: number;
  readonly backoff: Backoff;
  /** Ends the wait before a relaunch early (stop). */
  wake: (() => void) | undefined;
  /** False once the worker died while stopping or was given up: its ring was not drained. */
  clean: boolean;
  /** Rows the worker's writers could not commit by the end of its drain (its final report). */
  unflushedRows: number;
}

const WORKER_FILE = join(__dirname, '..', 'workers', 'task.js');
// Workers' writers give up at the drain bound; this is their time to settle a batch whose COMMIT
// was sent (up to 3 s, copy/writer.ts), drop their connections (a session end waits up to 2 s) and
// report what they left, before the threads are destroyed.
const STOP_REPORT_GRACE_MS = 8_000;

export class Pipeline {
  readonly slots: WorkerSlot[] = [];
  private readonly pool: Piscina;
  private stopping = false;

  constructor(
    private readonly opts: PipelineOptions,
    private readonly events: PipelineEvents,
    private readonly log: Logger,
  ) {
    // One long task per thread; atomics disabled so piscina never parks a worker's event loop
    // (the task needs it for its database I/O).
    this.pool = new Piscina({
      filename: WORKER_FILE,
      minThreads: opts.workers,
      maxThreads: opts.workers,
      concurrentTasksPerWorker: 1,
      idleTimeout: 2 ** 31 - 1,
      atomics: 'disabled',
      maxQueue: opts.workers,
    });
    for (let index = 0; index < opts.workers; index++) {
      const ringBuffer = createRingBuffer({ ringBytes: opts.ringBytes, frameBytesMax: opts.frameBytesMax });
      this.slots.push({
        index,
        ring: new RingProducer(ringBuffer),
        ringBuffer,
        counters: new SharedCounters(WORKER_COUNTERS),
        port: undefined,
        running: undefined,
        restarts: 0,
        restartsInRow: 0,
        backoff: new Backoff({ initialMs: opts.restart.backoffInitialMs, maxMs: opts.restart.backoffMaxMs, jitter: 'full', random: opts.restart.random }),
        wake: undefined,
        clean: true,
        unflushedRows: 0,
      });
    }
  }

  get rings(): readonly RingProducer[] {
    return this.slots.map((s) => s.ring);
  }

  start(): void {
    for (const slot of this.slots) slot.running = this.supervise(slot);
  }

  /** Runs a worker's task until it returns, relaunching it after each death within the restart policy. */
  private async supervise(slot: WorkerSlot): Promise<void> {
    for (;;) {
      const launchedAt = Date.now();
      try {
        slot.unflushedRows = (await this.runTask(slot)).unflushedRows;
        return;
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        if (this.stopping) {
          // Died while draining (or destroyed after the drain bound): what it held is not committed.
          slot.clean = false;
          this.log.error({ worker: slot.index, err: message }, 'worker died while stopping; its ring was not drained');
          return;
        }
        const delayMs = this.relaunchDelayMs(slot, Date.now() - launchedAt);
        if (delayMs === undefined) return this.giveUp(slot, message);
        slot.restarts += 1;
        this.log.error({ worker: slot.index, err: message, restarts: slot.restarts, delayMs }, 'worker died; relaunching on the same ring');
        this.events.workerRestarted(slot.index, message, delayMs);
        // A stop during the wait relaunches at once: the new worker drains the ring.
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delayMs);
          slot.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        slot.wake = undefined;
      }
    }
  }

  /** The backoff before the next relaunch, or undefined once restartsMax relaunches in a row died too. */
  private relaunchDelayMs(slot: WorkerSlot, upMs: number): number | undefined {
    const policy = this.opts.restart;
    if (upMs >= policy.stableMs) {
      slot.restartsInRow = 0;
      slot.backoff.reset();
    }
    if (slot.restartsInRow >= policy.restartsMax) return undefined;
    slot.restartsInRow += 1;
    return slot.backoff.nextDelayMs();
  }

  private giveUp(slot: WorkerSlot, lastError: string): void {
    slot.clean = false;
    const err = new KdpError(
      'KDP_ERR_WORKER_FAILED',
      `worker ${slot.index} died again after ${slot.restartsInRow} relaunches in a row; not relaunching it (last error: ${lastError})`,
      { worker: slot.index, restarts: slot.restartsInRow, lastError },
    );
    this.log.error({ worker: slot.index, code: err.code, restarts: slot.restartsInRow, err: lastError }, 'worker keeps dying; giving up on it');
    this.events.workerFailed(slot.index, err);
  }

  /** One run of the worker's piscina task on the slot's ring. */
  private async runTask(slot: WorkerSlot): Promise<WorkerReport> {
    const { port1, port2 } = new MessageChannel();
    slot.port = port1;
    port1.on('message', (m: WorkerMessage) => this.onMessage(slot, m));
    const task: WorkerTask = {
      workerIndex: slot.index,
      ringBuffer: slot.ringBuffer,
      countersBuffer: slot.counters.buffer,
      port: port2,
      options: this.opts.task,
    };
    try {
      return (await this.pool.run(task, { transferList: [port2] })) as WorkerReport;
    } finally {
      port1.close();
    }
  }

  private onMessage(slot: WorkerSlot, m: WorkerMessage): void {
    switch (m.t) {
      case 'reply':
        return this.events.reply(m.reply);
      case 'gap':
        return this.events.gap(m.gap);
      case 'lifecycle':
        return this.events.lifecycle(m.channel, m.msg);
      case 'flush':
        return this.events.flush(m.table, m.rows, m.seconds, m.minReceivedUs);
      case 'log':
        this.log[m.level]({ worker: slot.index, ...m.detail }, m.msg);
        return;
    }
  }

  /** Counter totals across workers, for /metrics. */
  total(name: WorkerCounterName): number {
    let sum = 0;
    for (const s of this.slots) sum += s.counters.get(name);
    return sum;
  }

  restarts(): number {
    return this.slots.reduce((n, s) => n + s.restarts, 0);
  }

  /** Epoch ms of the oldest batch any worker still has to commit; 0 when none waits. */
  oldestUncommittedAtMs(): number {
    let oldest = 0;
    for (const slot of this.slots) {
      const at = slot.counters.get('oldest_uncommitted_at_ms');
      if (at > 0 && (oldest === 0 || at < oldest)) oldest = at;
    }
    return oldest;
  }

  /** Test hook and fault injection: makes one worker thread crash. */
  crashWorker(index: number): void {
    this.slots[index]?.port?.postMessage({ t: 'crash' });
  }

  /**
   * Graceful stop: the producer side closes each ring; workers drain what is in it, flush and
   * commit within task.drainTimeoutMs (the gatherer's pipeline.drainTimeoutMs), then report.
   * Resolves true only when every worker drained its ring and committed every row.
   */
  async stop(): Promise<boolean> {
    this.stopping = true;
    for (const slot of this.slots) {
      slot.ring.close();
      slot.wake?.();
    }
    const drainTimeoutMs = this.opts.task.drainTimeoutMs;
    const all = Promise.all(this.slots.map((s) => s.running));
    const timedOut = await Promise.race([
      all.then(() => false),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(true), drainTimeoutMs + STOP_REPORT_GRACE_MS).unref()),
    ]);
    await this.pool.destroy();
    if (timedOut) this.log.error({ drainTimeoutMs }, 'workers did not finish draining in time; rows they held are lost to this gatherer');
    const unflushedRows = this.slots.reduce((n, s) => n + s.unflushedRows, 0);
    if (unflushedRows > 0) this.log.error({ unflushedRows, drainTimeoutMs }, 'rows left uncommitted at stop');
    return !timedOut && unflushedRows === 0 && this.slots.every((s) => s.clean);
  }
}
