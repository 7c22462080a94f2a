// Options of a worker thread: the frame processor's, validated once into a resolved object, and
// the mapping of the gatherer's writer options onto each of its COPY writers.
import { resolveOptions, type Resolved, type Spec } from '../config/validate';
import { checkWriterLimits, type CopyWriterOptions } from '../copy/options';
import type { TimeSeriesTableName } from '../schema/tables';
import type { WorkerTaskOptions, WorkerWriterOptions } from './protocol';

export const PROCESSOR_SPEC = {
  gathererId: { kind: 'string', doc: "this gatherer's id, written to every row", pattern: /^[A-Za-z0-9_.-]{1,64}$/ },
  frameBytesMax: { kind: 'int', doc: 'largest bus frame accepted (bytes)', default: 1 << 20, min: 1024, max: 1 << 28 },
  recentTradeIdsMax: { kind: 'int', doc: 'trade ids remembered to drop duplicate trade frames', default: 100_000, min: 1, max: 10_000_000 },
  marketsTrackedMax: { kind: 'int', doc: 'markets with occurrence state kept per worker', default: 200_000, min: 1, max: 10_000_000 },
  sidsPerConnectionMax: { kind: 'int', doc: 'subscriptions tracked per connection', default: 4096, min: 1, max: 1_000_000 },
  marketsPerSidMax: { kind: 'int', doc: 'markets tracked per subscription', default: 100_000, min: 1, max: 10_000_000 },
  snapshotLevelsMax: { kind: 'int', doc: 'price levels accepted per snapshot side', default: 20_000, min: 1, max: 1_000_000 },
  snapshotsHeldMax: {
    kind: 'int',
    doc: "WS snapshot rows held for their sid's next delta (next_delta_ts); past it the oldest goes without",
    default: 10_000,
    min: 0,
    max: 1_000_000,
  },
  snapshotHoldMs: {
    kind: 'int',
    doc: "longest a WS snapshot row waits for its sid's next delta before it is written without next_delta_ts",
    default: 10_000,
    min: 1,
    max: 600_000,
  },
  payloadDepthMax: { kind: 'int', doc: 'nesting accepted in a lifecycle payload', default: 16, min: 1, max: 256 },
  payloadNodesMax: { kind: 'int', doc: 'JSON values accepted in a lifecycle payload', default: 10_000, min: 1, max: 1_000_000 },
  rejectSamplesMax: { kind: 'int', doc: 'rejected messages kept for diagnosis', default: 32, min: 0, max: 10_000 },
  rejectSampleCharsMax: { kind: 'int', doc: 'characters kept of each rejected message', default: 512, min: 16, max: 65_536 },
} as const satisfies Spec;

export type ProcessorOptions = Resolved<typeof PROCESSOR_SPEC>;

export function resolveProcessorOptions(raw: unknown): ProcessorOptions {
  return resolveOptions(PROCESSOR_SPEC, raw, 'processor');
}

// The gatherer's `writer` section (WorkerWriterOptions) and a COPY writer name two limits
// differently: COPY writer key -> gatherer key, the one mapping between the two.
const WRITER_KEY_OF = {
  batchRowsMax: 'batchRowsMax',
  batchBytesMax: 'batchBytesMax',
  flushIntervalMs: 'flushIntervalMs',
  pendingRowsMax: 'pendingRowsMax',
  retryAttemptsMax: 'retryAttemptsMax',
  retryBaseMs: 'retryBackoffInitialMs',
  retryMaxMs: 'retryBackoffMaxMs',
} as const satisfies Partial<Record<keyof CopyWriterOptions, keyof WorkerWriterOptions>>;

type WriterLimitsOfSection = { -readonly [K in keyof typeof WRITER_KEY_OF]: number };

function copyWriterLimits(w: WorkerWriterOptions): WriterLimitsOfSection {
  const out = {} as WriterLimitsOfSection;
  for (const [copyKey, key] of Object.entries(WRITER_KEY_OF)) out[copyKey as keyof WriterLimitsOfSection] = w[key];
  return out;
}

/** Raw options of one COPY writer of a worker, from the worker task's options. */
export function copyWriterOptionsOf(task: WorkerTaskOptions, workerIndex: number, table: TimeSeriesTableName): Record<string, unknown> {
  return { url: task.databaseUrl, table, writerName: `${task.gathererId}/w${workerIndex}/${table}`, ...copyWriterLimits(task.writer) };
}

/**
 * The COPY writer's own cross-field rules applied to the gatherer's `writer` section at start-up,
 * with errors naming that section's keys: what passes here passes in every worker.
 */
export function checkWorkerWriterOptions(w: WorkerWriterOptions, path = 'writer'): void {
  checkWriterLimits(copyWriterLimits(w), (field) => `${path}.${WRITER_KEY_OF[field]}`);
}
