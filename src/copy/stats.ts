// What the COPY writers report. prom-client registries are per thread and the writers run inside
// worker threads, so the writers never touch prom-client: they call an injected sink, and the
// thread that owns the registry exports the numbers (writer_inserts_total, writer_batches_total,
// writer_errors_total{type}, writer_flush_duration_seconds, writer_pending_rows,
// frame_to_commit_seconds).

/**
 * Labels of writer_errors_total (bounded): the database went away, a row broke a constraint, an
 * attempt timed out, the disk is full, the schema does not match this build, anything else.
 */
export const WRITER_ERROR_TYPES = ['connection', 'constraint', 'timeout', 'disk_full', 'schema', 'other'] as const;
export type WriterErrorType = (typeof WRITER_ERROR_TYPES)[number];

export interface BatchCommitted {
  readonly table: string;
  readonly writer: string;
  readonly batchId: number;
  /** Rows now in the table under this batch id (= ingest_batches.row_count). */
  readonly rows: number;
  /** Rows refused by the database (bad values), isolated by bisection and not written. */
  readonly rejected: number;
  /** Trades only: rows already present (e.g. REST backfill vs live), collapsed by ON CONFLICT. */
  readonly duplicates: number;
  /** Duration of the successful attempt, BEGIN to COMMIT, in seconds. */
  readonly flushSeconds: number;
  /** Attempts this batch took (1 = no retry). */
  readonly attempts: number;
  /** Smallest receivedAtUs the caller passed for the batch's rows (undefined when none was). */
  readonly minReceivedAtUs: number | undefined;
  /** Wall clock (µs) when the commit was confirmed: frame->commit latency = committedAtUs - minReceivedAtUs. */
  readonly committedAtUs: number;
  /** True when the commit's reply was lost and the batch was found committed in ingest_batches. */
  readonly confirmedAfterAmbiguity: boolean;
}

export interface WriterStatsSink {
  batchCommitted(event: BatchCommitted): void;
  /** One failed attempt (connection / timeout / query) or one rejected row (constraint). */
  error(type: WriterErrorType, table: string): void;
}

const FLUSH_SAMPLES_MAX = 4096;

/**
 * A ready sink that accumulates plain numbers, for the metrics owner to read (and for tests).
 * Flush-duration and latency samples are kept in a bounded buffer; `takeSamples()` drains it.
 */
export class WriterCounters implements WriterStatsSink {
  readonly rowsCommitted = new Map<string, number>();
  readonly batchesCommitted = new Map<string, number>();
  readonly rowsRejected = new Map<string, number>();
  readonly duplicates = new Map<string, number>();
  readonly errors = Object.fromEntries(WRITER_ERROR_TYPES.map((t) => [t, 0])) as Record<WriterErrorType, number>;
  ambiguousCommitsConfirmed = 0;
  private flushSeconds: number[] = [];
  private frameToCommitSeconds: number[] = [];
  /** Samples dropped because nobody drained them (the buffer is bounded). */
  samplesDropped = 0;

  batchCommitted(e: BatchCommitted): void {
    add(this.rowsCommitted, e.table, e.rows);
    add(this.batchesCommitted, e.table, 1);
    add(this.rowsRejected, e.table, e.rejected);
    add(this.duplicates, e.table, e.duplicates);
    if (e.confirmedAfterAmbiguity) this.ambiguousCommitsConfirmed++;
    this.sample(this.flushSeconds, e.flushSeconds);
    if (e.minReceivedAtUs !== undefined) this.sample(this.frameToCommitSeconds, (e.committedAtUs - e.minReceivedAtUs) / 1e6);
  }

  error(type: WriterErrorType): void {
    this.errors[type]++;
  }

  /** Returns and clears the samples gathered since the last call (histogram-ready seconds). */
  takeSamples(): { flushSeconds: number[]; frameToCommitSeconds: number[] } {
    const out = { flushSeconds: this.flushSeconds, frameToCommitSeconds: this.frameToCommitSeconds };
    this.flushSeconds = [];
    this.frameToCommitSeconds = [];
    return out;
  }

  private sample(into: number[], value: number): void {
    if (into.length >= FLUSH_SAMPLES_MAX) {
      this.samplesDropped++;
      return;
    }
    into.push(value);
  }
}

function add(map: Map<string, number>, key: string, n: number): void {
  map.set(key, (map.get(key) ?? 0) + n);
}

export const NULL_STATS: WriterStatsSink = { batchCommitted: () => undefined, error: () => undefined };
