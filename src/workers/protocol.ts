// The one owner of what passes between the ingest thread and a worker thread besides the ring:
// the task a worker runs, the messages it posts back (rare events: replies, gaps, lifecycle,
// per-batch flush reports), and the layout of its shared counters (hot-path counts).
import type { MessagePort } from 'node:worker_threads';
import type { GapEvent } from './sequence';
import { TIME_SERIES_TABLES, type TimeSeriesTableName } from '../schema/tables';
import { UNBOUNDED_REASONS } from './held';

export interface WorkerWriterOptions {
  readonly batchRowsMax: number;
  readonly batchBytesMax: number;
  readonly flushIntervalMs: number;
  readonly pendingRowsMax: number;
  readonly retryAttemptsMax: number;
  readonly retryBackoffInitialMs: number;
  readonly retryBackoffMaxMs: number;
}

export interface WorkerTaskOptions {
  readonly gathererId: string;
  readonly databaseUrl: string;
  readonly frameBytesMax: number;
  readonly writer: WorkerWriterOptions;
  /** Recent trade ids remembered to drop duplicated trade frames. */
  readonly recentTradeIdsMax: number;
  /** WS snapshot rows held for their sid's next delta, and for how long (src/workers/held.ts). */
  readonly snapshotsHeldMax: number;
  readonly snapshotHoldMs: number;
  readonly logLevel: string;
  /**
   * The gatherer's graceful-stop bound (pipeline.drainTimeoutMs): from the moment the worker sees
   * its ring closed, draining it and committing the writers' rows must end within it.
   */
  readonly drainTimeoutMs: number;
}

/** What a worker task resolves with once its ring was closed and drained. */
export interface WorkerReport {
  readonly frames: number;
  /** Rows its writers could not commit within the drain bound (0 after a clean stop). */
  readonly unflushedRows: number;
}

export interface WorkerTask {
  readonly workerIndex: number;
  readonly ringBuffer: SharedArrayBuffer;
  readonly countersBuffer: SharedArrayBuffer;
  readonly port: MessagePort;
  readonly options: WorkerTaskOptions;
}

/**
 * A reply or notice the exchange sent on a connection, as reported by the worker that parsed it
 * (workers parse every frame, replies included, in stream order); the connection manager on the
 * ingest thread consumes these.
 */
export type ExchangeReply =
  | { readonly type: 'subscribed'; readonly connId: number; readonly id: number; readonly channel: string; readonly sid: number }
  | { readonly type: 'ok'; readonly connId: number; readonly id: number; readonly sid?: number | undefined }
  | { readonly type: 'unsubscribed'; readonly connId: number; readonly id: number; readonly sid: number }
  | {
      readonly type: 'error';
      readonly connId: number;
      readonly id?: number | undefined;
      readonly sid?: number | undefined;
      readonly code: number;
      readonly msg: string;
    };

export type WorkerMessage =
  | { readonly t: 'reply'; readonly reply: ExchangeReply }
  | { readonly t: 'gap'; readonly gap: GapEvent }
  | { readonly t: 'lifecycle'; readonly channel: string; readonly msg: Record<string, unknown> }
  | {
      readonly t: 'flush';
      readonly table: TimeSeriesTableName;
      readonly rows: number;
      readonly seconds: number;
      /** Earliest receive time (µs) among the batch's rows: frame-to-commit latency. */
      readonly minReceivedUs: number;
    }
  | { readonly t: 'log'; readonly level: 'info' | 'warn' | 'error'; readonly msg: string; readonly detail: Record<string, unknown> };

/** Messages from the ingest thread to a worker. */
export type IngestMessage = { readonly t: 'crash' };

const perTable = (prefix: string) => TIME_SERIES_TABLES.map((t) => `${prefix}:${t.name}` as const);

export const REJECT_CODES = [
  'KDP_ERR_FRAME_TRUNCATED',
  'KDP_ERR_FRAME_DECODE',
  'KDP_ERR_FRAME_TOO_LARGE',
  'KDP_ERR_MSG_JSON',
  'KDP_ERR_MSG_SHAPE',
  'KDP_ERR_MSG_DECIMAL',
  'KDP_ERR_MSG_TIMESTAMP',
  'KDP_ERR_MSG_UNKNOWN_TYPE',
] as const;

export const WORKER_COUNTERS = [
  'frames',
  'messages',
  'bytes',
  'seq_gaps',
  'seq_duplicates',
  'terminal_errors',
  'duplicate_trades_dropped',
  // orderbook_delta messages the byte reader (delta-scan.ts) handed to JSON.parse.
  'deltas_generic_path',
  'pending_rows',
  // Epoch ms of this worker's oldest batch not yet committed, 0 when none (a timestamp, not a sum).
  'oldest_uncommitted_at_ms',
  'writer_errors:connection',
  'writer_errors:constraint',
  'writer_errors:timeout',
  'writer_errors:disk_full',
  'writer_errors:schema',
  'writer_errors:other',
  ...perTable('rows'),
  ...perTable('batches'),
  ...REJECT_CODES.map((c) => `rejected:${c}` as const),
  // WS snapshot rows waiting for their sid's next delta now (a level, not a sum), and those written
  // without next_delta_ts, by why (src/workers/held.ts).
  'snapshots_held',
  ...UNBOUNDED_REASONS.map((r) => `snapshots_unbounded:${r}` as const),
] as const;
export type WorkerCounterName = (typeof WORKER_COUNTERS)[number];
