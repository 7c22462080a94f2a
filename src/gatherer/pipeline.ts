// The worker side of the gatherer as seen from the ingest thread: one SharedArrayBuffer ring and
// one long-running piscina task per worker. Piscina supervises the threads: when a worker dies its
// task promise rejects, piscina starts a replacement thread, and we resubmit the task on the same
// ring (the new worker resumes at the ring's read index). What the dead worker had read but not
// committed is lost to this gatherer; the service records it as a gap and resyncs.
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { join } from 'node:path';
import Piscina from 'piscina';
import type { Logger } from '../core/log';
import { SharedCounters } from '../core/shared-counters';
import { createRingBuffer, RingProducer } from '../ingest/ring';
import type { ExchangeReply } from './control';
import type { GapEvent } from '../workers/sequence';
import { WORKER_COUNTERS, type WorkerCounterName, type WorkerMessage, type WorkerTask, type WorkerTaskOptions } from '../workers/protocol';

export interface PipelineOptions {
  readonly workers: number;
  readonly ringBytes: number;
  readonly frameBytesMax: number;
  readonly task: WorkerTaskOptions;
}

export interface PipelineEvents {
  reply(reply: ExchangeReply): void;
  gap(gap: GapEvent): void;
  lifecycle(channel: string, msg: Record<string, unknown>): void;
  /** A worker thread died and was replaced; its connections lost what it had not committed. */
  workerRestarted(workerIndex: number, error: string): void;
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
}

const WORKER_FILE = join(__dirname, '..', 'workers', 'task.js');

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
      });
    }
  }

  get rings(): readonly RingProducer[] {
    return this.slots.map((s) => s.ring);
  }

  start(): void {
    for (const slot of this.slots) this.launch(slot);
  }

  private launch(slot: WorkerSlot): void {
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
    slot.running = this.pool.run(task, { transferList: [port2] }).then(
      () => {
        port1.close();
      },
      (err: unknown) => {
        port1.close();
        if (this.stopping && slot.ring.isProducerClosed()) return;
        slot.restarts += 1;
        const message = err instanceof Error ? err.message : String(err);
        this.log.error({ worker: slot.index, err: message, restarts: slot.restarts }, 'worker died; restarting on the same ring');
        this.events.workerRestarted(slot.index, message);
        if (!this.stopping) this.launch(slot);
      },
    );
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

  /** Test hook and fault injection: makes one worker thread crash. */
  crashWorker(index: number): void {
    this.slots[index]?.port?.postMessage({ t: 'crash' });
  }

  /**
   * Graceful stop: the producer side closes each ring; workers drain what is in it, flush and
   * commit, then their tasks resolve. Bounded by timeoutMs.
   */
  async stop(timeoutMs: number): Promise<boolean> {
    this.stopping = true;
    for (const slot of this.slots) slot.ring.close();
    const all = Promise.all(this.slots.map((s) => s.running));
    const timedOut = await Promise.race([
      all.then(() => false),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(true), timeoutMs).unref()),
    ]);
    await this.pool.destroy();
    return !timedOut;
  }
}
