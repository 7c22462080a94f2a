// A worker thread's long-running piscina task: take bus frames off its ring, run them through the
// FrameProcessor (decode, parse, sequence-check, encode rows) and feed the per-table COPY writers.
// It returns only when the ingest thread closed the ring and everything read has been committed.
//
// Loss accounting: a frame is taken off the ring (read index advanced) before its rows commit. If
// this thread dies, what it held is lost to this gatherer (never written twice); the ingest thread
// records the loss as a gap for the worker's connections and resyncs them.
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { KdpError, type ErrorCode } from '../core/errors';
import { createLogger } from '../core/log';
import { SharedCounters } from '../core/shared-counters';
import { WRITER_ERROR_TYPES, type BatchCommitted, type WriterErrorType, type WriterStatsSink } from '../copy/stats';
import { CopyWriter } from '../copy/writer';
import { RingConsumer } from '../ingest/ring';
import { TIME_SERIES_TABLES, type TimeSeriesTableName } from '../schema/tables';
import { copyWriterOptionsOf } from './options';
import { FrameProcessor, type ControlEvent, type GapEvent } from './processor';
import { UNBOUNDED_REASONS, type UnboundedReason } from './held';
import { WORKER_COUNTERS, type IngestMessage, type WorkerCounterName, type WorkerMessage, type WorkerReport, type WorkerTask } from './protocol';

// Frames handled before yielding to the event loop so the writers' socket I/O keeps flowing.
const FRAMES_PER_TURN = 2048;
const IDLE_WAIT_MS = 20;

type Counters = SharedCounters<WorkerCounterName>;

function statsSink(counters: Counters, post: (m: WorkerMessage) => void): WriterStatsSink {
  const rowSlots = new Map(TIME_SERIES_TABLES.map((t) => [t.name, counters.slot(`rows:${t.name}`)]));
  const batchSlots = new Map(TIME_SERIES_TABLES.map((t) => [t.name, counters.slot(`batches:${t.name}`)]));
  // Every class is counted: a writer that can never commit (disk full, schema mismatch) must show
  // in writer_errors_total, or no alert can fire.
  const errorSlots = Object.fromEntries(WRITER_ERROR_TYPES.map((type) => [type, counters.slot(`writer_errors:${type}`)])) as Record<WriterErrorType, number>;
  return {
    batchCommitted(e: BatchCommitted) {
      const table = e.table as TimeSeriesTableName;
      counters.add(rowSlots.get(table)!, e.rows);
      counters.add(batchSlots.get(table)!, 1);
      post({ t: 'flush', table, rows: e.rows, seconds: e.flushSeconds, minReceivedUs: e.minReceivedAtUs ?? e.committedAtUs });
    },
    error(type: WriterErrorType) {
      counters.add(errorSlots[type]);
    },
  };
}

function controlToMessage(e: ControlEvent): WorkerMessage | undefined {
  switch (e.kind) {
    case 'subscribed':
      return { t: 'reply', reply: { type: 'subscribed', connId: e.connId, id: e.id ?? 0, channel: e.channel, sid: e.sid } };
    case 'ok':
      return { t: 'reply', reply: { type: 'ok', connId: e.connId, id: e.id ?? 0, sid: e.sid ?? undefined } };
    case 'unsubscribed':
      return { t: 'reply', reply: { type: 'unsubscribed', connId: e.connId, id: e.id ?? 0, sid: e.sid } };
    case 'error':
      return {
        t: 'reply',
        reply: { type: 'error', connId: e.connId, id: e.id ?? undefined, sid: e.sid ?? undefined, code: e.code, msg: e.message },
      };
    default:
      return undefined;
  }
}

type Writers = Map<TimeSeriesTableName, CopyWriter>;
/** Rows a writer at its pending-rows cap refused; handed back before the next frame is taken. */
type Refused = { table: TimeSeriesTableName; line: string; receivedUs: number }[];

export default async function runWorker(task: WorkerTask): Promise<WorkerReport> {
  const { options, port } = task;
  const log = createLogger('worker', { level: options.logLevel }).child({ worker: task.workerIndex });
  const counters = new SharedCounters(WORKER_COUNTERS, task.countersBuffer);
  const post = (m: WorkerMessage): void => port.postMessage(m);
  port.on('message', (m: IngestMessage) => {
    // Fault injection: an uncaught exception kills this thread the way a bug would.
    if (m.t === 'crash')
      setTimeout(() => {
        throw new KdpError('KDP_ERR_INTERNAL', 'injected worker crash');
      }, 0);
  });
  const stats = statsSink(counters, post);
  const writers: Writers = new Map();
  for (const t of TIME_SERIES_TABLES) {
    writers.set(t.name, CopyWriter.create(copyWriterOptionsOf(options, task.workerIndex, t.name), { stats, log }));
  }
  // The processor stops after the frame that got a refusal, so at most one frame's rows wait here.
  const refused: Refused = [];
  const processor = newProcessor(options, writers, refused, counters, post);
  const { frames, drainDeadline } = await consumeRing(new RingConsumer(task.ringBuffer), processor, writers, refused, counters, options.drainTimeoutMs);
  // The ring is closed and empty: commit everything still held within what is left of the drain
  // bound, then report what was not committed (the gatherer's stop must not call that clean).
  const closeWithinMs = Math.max(0, drainDeadline - Date.now());
  const results = await Promise.all([...writers.values()].map((w) => w.close(closeWithinMs)));
  const unflushedRows = results.reduce((s, r) => s + r.unflushedRows, 0);
  counters.set(counters.slot('pending_rows'), unflushedRows);
  if (unflushedRows > 0) log.error({ unflushed: unflushedRows }, 'rows not committed at shutdown');
  port.close();
  return { frames, unflushedRows };
}

/** The frame processor of this worker, its rows going to the writers and its events to the ingest thread. */
function newProcessor(
  options: WorkerTask['options'],
  writers: Writers,
  refused: Refused,
  counters: Counters,
  post: (m: WorkerMessage) => void,
): FrameProcessor {
  const rejectSlots = new Map<string, number>();
  for (const name of WORKER_COUNTERS) if (name.startsWith('rejected:')) rejectSlots.set(name.slice(9), counters.slot(name));
  const gapSlot = counters.slot('seq_gaps');
  const terminalSlot = counters.slot('terminal_errors');
  return new FrameProcessor(
    {
      gathererId: options.gathererId,
      frameBytesMax: options.frameBytesMax,
      recentTradeIdsMax: Math.max(1, options.recentTradeIdsMax),
      snapshotsHeldMax: options.snapshotsHeldMax,
      snapshotHoldMs: options.snapshotHoldMs,
    },
    {
      rows: {
        append(table, line, receivedUs) {
          if (refused.length === 0 && writers.get(table)!.append(line, receivedUs)) return true;
          refused.push({ table, line, receivedUs });
          return false;
        },
      },
      control(e) {
        const m = controlToMessage(e);
        if (m) post(m);
      },
      gap(g: GapEvent) {
        counters.add(g.errorCode === null ? gapSlot : terminalSlot);
        post({ t: 'gap', gap: g });
      },
      lifecycle(channel, msg) {
        post({ t: 'lifecycle', channel, msg });
      },
      reject(code: ErrorCode) {
        const slot = rejectSlots.get(code);
        if (slot !== undefined) counters.add(slot);
      },
    },
  );
}

/**
 * Takes frames off the ring until the producer closed it and it is empty, publishing the counters
 * each turn. Returns the frames read and the drain deadline (the bound runs from the moment this
 * worker first sees its ring closed: the gatherer's stop).
 */
async function consumeRing(
  ring: RingConsumer,
  processor: FrameProcessor,
  writers: Writers,
  refused: Refused,
  counters: Counters,
  drainTimeoutMs: number,
): Promise<{ frames: number; drainDeadline: number }> {
  const slots = {
    frames: counters.slot('frames'),
    messages: counters.slot('messages'),
    seqDup: counters.slot('seq_duplicates'),
    tradeDup: counters.slot('duplicate_trades_dropped'),
    deltasGeneric: counters.slot('deltas_generic_path'),
    pending: counters.slot('pending_rows'),
    oldest: counters.slot('oldest_uncommitted_at_ms'),
    held: counters.slot('snapshots_held'),
    unbounded: Object.fromEntries(UNBOUNDED_REASONS.map((r) => [r, counters.slot(`snapshots_unbounded:${r}`)])) as Record<UnboundedReason, number>,
  };
  let frames = 0;
  let drainDeadline: number | undefined;
  for (;;) {
    if (drainDeadline === undefined && ring.isProducerClosed()) drainDeadline = Date.now() + drainTimeoutMs;
    let n = 0;
    let frame: Uint8Array | undefined;
    // Each frame is decoded in place, a view of the ring (no copy into a scratch buffer): the
    // processor keeps nothing of the bytes (rows and samples are strings), and the frame goes back
    // to the producer as soon as it is processed.
    while (n < FRAMES_PER_TURN && (frame = ring.peek()) !== undefined) {
      n++;
      const keepFeeding = processor.processBytes(frame);
      ring.release();
      // A writer at its pending-rows cap: stop taking frames until the refused rows are in. The
      // ring fills and the ingest thread pauses the socket: backpressure up to the exchange.
      if (!keepFeeding) await handBack(refused, writers);
    }
    frames += n;
    // Snapshots held for their sid's next delta past the hold bound, or all once the ring is done.
    const drained = ring.isDrained();
    if (!processor.releaseHeldSnapshots(performance.now(), drained)) await handBack(refused, writers);
    const c = processor.counters;
    counters.set(slots.frames, c.frames);
    counters.set(slots.messages, c.messages);
    counters.set(slots.seqDup, c.duplicateSeqDropped);
    counters.set(slots.tradeDup, c.duplicateTradesDropped);
    counters.set(slots.deltasGeneric, c.deltasGenericPath);
    counters.set(slots.held, processor.heldSnapshots.held);
    for (const reason of UNBOUNDED_REASONS) counters.set(slots.unbounded[reason], processor.heldSnapshots.unbounded[reason]);
    let pending = 0;
    let oldest = 0;
    for (const w of writers.values()) {
      pending += w.pendingRows;
      const at = w.oldestUncommittedAtMs;
      if (at > 0 && (oldest === 0 || at < oldest)) oldest = at;
    }
    counters.set(slots.pending, pending);
    counters.set(slots.oldest, oldest);
    if (n === FRAMES_PER_TURN) await yieldToLoop();
    else if (drained) break;
    else if (n === 0) await ring.waitForDataAsync(IDLE_WAIT_MS);
  }
  // The loop can see the ring closed and empty in the same turn it first sees it closed (the stop
  // landed between the two checks): the whole bound is then still ahead, not zero (a zero bound
  // aborted the in-flight COPY and left its rows uncommitted: the CI failure of 2026-12-03).
  return { frames, drainDeadline: drainDeadline ?? Date.now() + drainTimeoutMs };
}

async function handBack(refused: Refused, writers: Writers): Promise<void> {
  while (refused.length > 0) {
    const r = refused[0]!;
    const w = writers.get(r.table)!;
    if (w.append(r.line, r.receivedUs)) refused.shift();
    else await w.whenWritable();
  }
}
