// The per-table batch writer of a worker thread. Rows (COPY text row lines, see text.ts) are
// appended to an open batch; a batch is sealed by size (rows / bytes) or age (flushIntervalMs) and
// committed as ONE transaction with its ingest_batches row (batch.ts). One batch is in flight per
// writer, so a writer's batches commit in order.
//
// One connection per writer (not per worker): the five tables of a worker commit in parallel, a
// slow or failing table never holds the others' batches, and each writer's retry state (its
// session, its ambiguous backend) is its own. The cost is 5 connections per worker thread.
//
// Memory is bounded: open + queued + in-flight rows never exceed pendingRowsMax; at the cap
// append() returns false and does NOT take the row (backpressure); whenWritable() resolves when
// there is room. Rows stay in memory until their batch is committed: transient failures are
// retried with exponential backoff and full jitter, forever but in bounded memory; a batch keeps
// its batch id across retries, and after a failure with the COMMIT in flight the writer settles
// the old backend and looks the batch id up in ingest_batches before sending again.
import { performance } from 'node:perf_hooks';
import { backoffDelayMs } from '../core/backoff';
import { classifyDbError, invariant, isKdpError, KdpError } from '../core/errors';
import { createLogger, type Logger } from '../core/log';
import { runBatchTransaction, type BatchAttempt, type BatchResult, type PhaseHook } from './batch';
import { resolveCopyWriterOptions, type CopyWriterOptions } from './options';
import { tablePlan, type TablePlan } from './plan';
import { committedBatchRows, dropClient, fetchBatchIds, openSession, settlePreviousBackend, type BackendIdentity, type Session } from './session';
import { NULL_STATS, type WriterErrorType, type WriterStatsSink } from './stats';

export interface CopyWriterDeps {
  readonly stats?: WriterStatsSink;
  readonly log?: Logger;
  /** Test-only: awaited at the COPY and COMMIT phases of every attempt. */
  readonly phaseHook?: PhaseHook;
}

export interface CloseResult {
  /** Rows not confirmed committed when close() gave up (0 after a clean close). */
  readonly unflushedRows: number;
}

interface Batch {
  rows: string[];
  bytes: number;
  /** Smallest receivedAtUs of the rows; +Infinity when the caller passed none. */
  minReceivedAtUs: number;
  /** Sequence number of the last sealed batch merged into this one (for flush()). */
  seq: number;
  batchId: number | undefined;
  attempts: number;
  /** Backend that may hold this batch's in-flight COMMIT (set after an ambiguous failure). */
  ambiguousBackend: BackendIdentity | undefined;
  rejectedBeforeCommit: number;
  /** Wall-clock ms when the batch was sealed (for a merged batch: its first part's). */
  sealedAtMs: number;
}

const SUFFIX_BYTES_APPROX = 12; // "\t<batch id>\n"
const SETTLE_WAIT_MS = 5_000;
// After a close gave up: how long settling a batch whose COMMIT was sent may take (a new session
// plus terminating the old backend), inside the gatherer's stop grace (pipeline.ts, 8 s).
const SETTLE_AT_CLOSE_MS = 3_000;

const newBatch = (): Batch => ({
  rows: [],
  bytes: 0,
  minReceivedAtUs: Number.POSITIVE_INFINITY,
  seq: 0,
  batchId: undefined,
  attempts: 0,
  ambiguousBackend: undefined,
  rejectedBeforeCommit: 0,
  sealedAtMs: 0,
});

export class CopyWriter {
  readonly options: CopyWriterOptions;
  private readonly plan: TablePlan;
  private readonly stats: WriterStatsSink;
  private readonly log: Logger;
  private readonly phaseHook: PhaseHook | undefined;
  private open: Batch = newBatch();
  private readonly queue: Batch[] = [];
  private inFlight: Batch | undefined;
  private pending = 0;
  private sealedSeq = 0;
  private committedSeq = 0;
  private timer: NodeJS.Timeout | undefined;
  private pumping = false;
  private session: Session | undefined;
  private batchIds: number[] = [];
  private closing = false;
  private aborted = false;
  private closed: Promise<CloseResult> | undefined;
  private wakeSleep: (() => void) | undefined;
  private flushWaiters: { seq: number; resolve: () => void; reject: (e: Error) => void }[] = [];
  private roomWaiters: (() => void)[] = [];

  /** Validates raw options (unknown keys rejected) and builds a writer; connects lazily. */
  static create(rawOptions: unknown, deps: CopyWriterDeps = {}): CopyWriter {
    return new CopyWriter(resolveCopyWriterOptions(rawOptions), deps);
  }

  constructor(options: CopyWriterOptions, deps: CopyWriterDeps = {}) {
    this.options = options;
    this.plan = tablePlan(options.table as Parameters<typeof tablePlan>[0]);
    this.stats = deps.stats ?? NULL_STATS;
    this.log = deps.log ?? createLogger('copy-writer');
    this.phaseHook = deps.phaseHook;
  }

  /** Rows held: open + queued + in flight (the writer_pending_rows gauge). */
  get pendingRows(): number {
    return this.pending;
  }

  /**
   * Takes one row line (text.ts contract: every column but batch_id, no trailing newline).
   * `receivedAtUs`, when given, feeds the batch's minimum receive time (frame->commit latency).
   * Returns false, without taking the row, when pendingRowsMax rows are already held.
   */
  append(rowLine: string, receivedAtUs?: number): boolean {
    if (this.closing) throw new KdpError('KDP_ERR_SHUTDOWN', `writer ${this.options.writerName} is closing`);
    if (this.pending >= this.options.pendingRowsMax) return false;
    invariant(rowLine.indexOf('\n') === -1, 'a row line holds no raw newline (text.ts escapes it)');
    const open = this.open;
    if (open.rows.length === 0) this.armTimer();
    open.rows.push(rowLine);
    open.bytes += rowLine.length + SUFFIX_BYTES_APPROX;
    if (receivedAtUs !== undefined && receivedAtUs < open.minReceivedAtUs) open.minReceivedAtUs = receivedAtUs;
    this.pending++;
    if (open.rows.length >= this.options.batchRowsMax || open.bytes >= this.options.batchBytesMax) {
      this.seal();
      this.kick();
    }
    return true;
  }

  /**
   * When the oldest batch still waiting to commit was sealed (0 when none waits). Healthy writes
   * keep it within a flush interval plus a commit; a writer whose every attempt fails lets it age.
   */
  get oldestUncommittedAtMs(): number {
    return this.inFlight?.sealedAtMs ?? this.queue[0]?.sealedAtMs ?? 0;
  }

  /** Resolves when append() would take a row again. */
  whenWritable(): Promise<void> {
    if (this.pending < this.options.pendingRowsMax || this.closing) return Promise.resolve();
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  /** Seals the open batch; resolves when every row appended before the call is committed. */
  flush(): Promise<void> {
    this.seal();
    this.kick();
    const seq = this.sealedSeq;
    if (this.committedSeq >= seq) return Promise.resolve();
    if (this.aborted) return Promise.reject(this.abortError());
    return new Promise((resolve, reject) => this.flushWaiters.push({ seq, resolve, reject }));
  }

  /**
   * Flushes everything pending (waiting at most timeoutMs, by default closeTimeoutMs), then ends the
   * connection. After the deadline the writer stops retrying and reports the rows it could not
   * confirm. The owner's stop bound (a gatherer's drain timeout) is passed here; the first call's wins.
   */
  close(timeoutMs: number = this.options.closeTimeoutMs): Promise<CloseResult> {
    this.closed ??= this.closeOnce(timeoutMs);
    return this.closed;
  }

  private async closeOnce(timeoutMs: number): Promise<CloseResult> {
    const drained = this.flush().then(
      () => true,
      () => false,
    );
    this.closing = true;
    for (const wake of this.roomWaiters.splice(0)) wake();
    let deadline: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => {
      deadline = setTimeout(() => resolve(false), timeoutMs);
    });
    const clean = await Promise.race([drained, timedOut]);
    clearTimeout(deadline);
    if (!clean) {
      await this.abort();
      await this.settleAbandoned();
    }
    const session = this.session;
    this.session = undefined;
    if (session) await endGracefully(session);
    const unflushedRows = this.pending;
    if (unflushedRows > 0) {
      this.log.error({ table: this.plan.table.name, writer: this.options.writerName, unflushedRows }, 'writer closed with rows not committed');
    }
    return { unflushedRows };
  }

  /** Stops retrying: drops the connection so an in-flight attempt fails now, then waits for the pump. */
  private async abort(): Promise<void> {
    this.aborted = true;
    if (this.session) dropClient(this.session.client);
    this.wakeSleep?.();
    // The in-flight attempt now fails fast (its socket is gone); a connect in progress is bounded
    // by connectTimeoutMs. The bound below only guards against a bug keeping the pump alive.
    const limit = Date.now() + this.options.attemptTimeoutMs + this.options.connectTimeoutMs;
    while (this.pumping && Date.now() < limit) await new Promise((r) => setTimeout(r, 5));
    for (const w of this.flushWaiters.splice(0)) w.reject(this.abortError());
  }

  /**
   * A batch abandoned after its COMMIT was sent may still commit: its backend, waiting (on a lock,
   * say) when the socket was dropped, does not notice the client is gone and commits when the wait
   * ends. Terminate that backend, then look the batch up, so the close reports only rows that are
   * really not committed. If the database does not answer within SETTLE_AT_CLOSE_MS the rows stay
   * counted as not committed (the report errs toward loss, which the ledger and backfill cover).
   */
  private async settleAbandoned(): Promise<void> {
    const ambiguous = this.queue.filter((b) => b.ambiguousBackend !== undefined);
    if (ambiguous.length === 0) return;
    const o = this.options;
    let session: Session | undefined;
    let timer: NodeJS.Timeout | undefined;
    const settle = (async (): Promise<void> => {
      session = await openSession(
        { url: o.url, applicationName: o.writerName.slice(0, 63), statementTimeoutMs: SETTLE_AT_CLOSE_MS, connectTimeoutMs: SETTLE_AT_CLOSE_MS },
        this.plan,
      );
      for (const batch of ambiguous) {
        const result = await this.resolveAmbiguity(session, batch);
        if (result === undefined) continue;
        this.queue.splice(this.queue.indexOf(batch), 1);
        this.pending -= batch.rows.length;
        this.report(batch, result, 0, true);
      }
    })();
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new KdpError('KDP_ERR_DB_TIMEOUT', `settling abandoned batches took over ${SETTLE_AT_CLOSE_MS} ms`)), SETTLE_AT_CLOSE_MS);
    });
    try {
      await Promise.race([settle, late]);
    } catch (err) {
      const coded = classifyDbError(err);
      this.log.warn(
        { table: this.plan.table.name, code: coded.code, err: coded.message },
        'could not settle batches whose COMMIT was sent; counted as not committed',
      );
    } finally {
      clearTimeout(timer);
      settle.catch(() => undefined);
      if (session) dropClient(session.client);
    }
  }

  private abortError(): KdpError {
    return new KdpError('KDP_ERR_SHUTDOWN', `writer ${this.options.writerName} closed before its rows committed`);
  }

  private armTimer(): void {
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.seal();
      this.kick();
    }, this.options.flushIntervalMs);
  }

  private seal(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.open.rows.length === 0) return;
    this.open.seq = ++this.sealedSeq;
    this.open.sealedAtMs = Date.now();
    this.queue.push(this.open);
    this.open = newBatch();
  }

  private kick(): void {
    if (this.pumping || this.queue.length === 0 || this.aborted) return;
    this.pumping = true;
    // A rejection here is a broken invariant (KDP_ERR_INTERNAL): left unhandled, it crashes the
    // thread, which is what a bug in the commit path must do.
    void this.pump();
  }

  private async pump(): Promise<void> {
    try {
      while (this.queue.length > 0 && !this.aborted) {
        const batch = this.takeNext();
        this.inFlight = batch;
        const done = await this.commitUntilDone(batch);
        this.inFlight = undefined;
        if (!done) {
          this.queue.unshift(batch);
          break;
        }
        this.pending -= batch.rows.length;
        this.committedSeq = batch.seq;
        this.notify();
      }
    } finally {
      this.inFlight = undefined;
      this.pumping = false;
    }
  }

  /** Next queued batch, coalescing small sealed batches (not yet sent) up to the batch limits. */
  private takeNext(): Batch {
    const first = this.queue.shift()!;
    if (first.batchId !== undefined) return first;
    while (this.queue.length > 0) {
      const next = this.queue[0]!;
      if (
        next.batchId !== undefined ||
        first.rows.length + next.rows.length > this.options.batchRowsMax ||
        first.bytes + next.bytes > this.options.batchBytesMax
      ) {
        break;
      }
      this.queue.shift();
      for (const row of next.rows) first.rows.push(row);
      first.bytes += next.bytes;
      first.minReceivedAtUs = Math.min(first.minReceivedAtUs, next.minReceivedAtUs);
      first.seq = next.seq;
    }
    return first;
  }

  private notify(): void {
    const committed = this.committedSeq;
    if (this.flushWaiters.length > 0) {
      this.flushWaiters = this.flushWaiters.filter((w) => (w.seq <= committed ? (w.resolve(), false) : true));
    }
    if (this.pending < this.options.pendingRowsMax) for (const wake of this.roomWaiters.splice(0)) wake();
  }

  /** Retries one batch until it is committed (true) or the writer is aborted (false). */
  private async commitUntilDone(batch: Batch): Promise<boolean> {
    let failuresInTry = 0;
    for (;;) {
      if (this.aborted) return false;
      batch.attempts++;
      const started = performance.now();
      try {
        const outcome = await this.attemptWithDeadline(batch);
        this.report(batch, outcome.result, (performance.now() - started) / 1000, outcome.confirmed);
        return true;
      } catch (err) {
        if (isKdpError(err, 'KDP_ERR_INTERNAL')) throw err;
        const coded = classifyDbError(err);
        this.stats.error(errorType(coded), this.plan.table.name);
        this.log.warn(
          {
            table: this.plan.table.name,
            batchId: batch.batchId,
            attempt: batch.attempts,
            code: coded.code,
            sqlState: coded.details?.sqlState,
            err: coded.message,
          },
          'batch attempt failed; retrying',
        );
        failuresInTry++;
        if (failuresInTry >= this.options.retryAttemptsMax) {
          this.log.error(
            { table: this.plan.table.name, batchId: batch.batchId, rows: batch.rows.length, attempts: batch.attempts, code: coded.code, err: coded.message },
            'batch not committed after retryAttemptsMax attempts; rows kept, still retrying',
          );
          failuresInTry = 0;
        }
        await this.sleep(this.backoffMs(failuresInTry));
      }
    }
  }

  private backoffMs(failures: number): number {
    // Full jitter: the writers of every worker (and table) retry against one database together.
    // failures 0 = a whole round of retryAttemptsMax failed: wait up to the largest ceiling.
    const attempt = failures === 0 ? Number.POSITIVE_INFINITY : failures - 1;
    return backoffDelayMs(attempt, { initialMs: this.options.retryBaseMs, maxMs: this.options.retryMaxMs, jitter: 'full' });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done(): void {
        clearTimeout(t);
        resolve();
      }
      this.wakeSleep = done;
    });
  }

  /** One attempt, abandoned (connection dropped, counted as timeout) after attemptTimeoutMs. */
  private async attemptWithDeadline(batch: Batch): Promise<{ result: BatchResult; confirmed: boolean }> {
    let timedOut = false;
    const watchdog = setTimeout(() => {
      timedOut = true;
      if (this.session) dropClient(this.session.client);
    }, this.options.attemptTimeoutMs);
    try {
      return await this.attempt(batch);
    } catch (err) {
      if (timedOut) throw new KdpError('KDP_ERR_DB_TIMEOUT', `batch attempt exceeded ${this.options.attemptTimeoutMs} ms`, {}, err);
      throw err;
    } finally {
      clearTimeout(watchdog);
    }
  }

  private async attempt(batch: Batch): Promise<{ result: BatchResult; confirmed: boolean }> {
    const session = await this.ensureSession();
    try {
      if (batch.ambiguousBackend) {
        const confirmed = await this.resolveAmbiguity(session, batch);
        if (confirmed) return { result: confirmed, confirmed: true };
      }
      batch.batchId ??= await this.nextBatchId(session);
      const attempt: BatchAttempt = {
        batchId: batch.batchId,
        writerName: this.options.writerName,
        rows: batch.rows,
        commitSent: false,
        rejectedBeforeCommit: 0,
      };
      try {
        return { result: await runBatchTransaction(session.client, this.plan, attempt, this.phaseHook), confirmed: false };
      } finally {
        if (attempt.commitSent) batch.rejectedBeforeCommit = attempt.rejectedBeforeCommit;
        // Marked before we know the outcome; cleared by success (the batch is then done anyway).
        if (attempt.commitSent) batch.ambiguousBackend = session.backend;
      }
    } catch (err) {
      // Whatever failed, the transaction is gone or unknown: start the next attempt on a new session.
      this.session = undefined;
      dropClient(session.client);
      throw err;
    }
  }

  /** After a lost COMMIT: settle the old backend, then ingest_batches says whether the batch is in. */
  private async resolveAmbiguity(session: Session, batch: Batch): Promise<BatchResult | undefined> {
    await settlePreviousBackend(session.client, batch.ambiguousBackend!, SETTLE_WAIT_MS);
    const rows = await committedBatchRows(session.client, batch.batchId!);
    batch.ambiguousBackend = undefined;
    if (rows === undefined) return undefined;
    const rejected = batch.rejectedBeforeCommit;
    return { rows, rejected, duplicates: batch.rows.length - rejected - rows, rejectedSample: undefined };
  }

  private async ensureSession(): Promise<Session> {
    if (this.session && !this.session.broken()) return this.session;
    if (this.session) dropClient(this.session.client);
    this.session = undefined;
    const o = this.options;
    this.session = await openSession(
      { url: o.url, applicationName: o.writerName.slice(0, 63), statementTimeoutMs: o.statementTimeoutMs, connectTimeoutMs: o.connectTimeoutMs },
      this.plan,
    );
    return this.session;
  }

  private async nextBatchId(session: Session): Promise<number> {
    if (this.batchIds.length === 0) this.batchIds = await fetchBatchIds(session.client, this.options.batchIdPrefetch);
    return this.batchIds.shift()!;
  }

  private report(batch: Batch, result: BatchResult, flushSeconds: number, confirmed: boolean): void {
    const table = this.plan.table.name;
    if (result.rejected > 0) {
      for (let i = 0; i < result.rejected; i++) this.stats.error('constraint', table);
      this.log.warn(
        { table, batchId: batch.batchId, rejected: result.rejected, sample: result.rejectedSample },
        'rows rejected by the database; rest of the batch committed',
      );
    }
    this.stats.batchCommitted({
      table,
      writer: this.options.writerName,
      batchId: batch.batchId!,
      rows: result.rows,
      rejected: result.rejected,
      duplicates: result.duplicates,
      flushSeconds,
      attempts: batch.attempts,
      minReceivedAtUs: Number.isFinite(batch.minReceivedAtUs) ? batch.minReceivedAtUs : undefined,
      committedAtUs: Date.now() * 1000,
      confirmedAfterAmbiguity: confirmed,
    });
  }
}

export function errorType(err: KdpError): WriterErrorType {
  switch (err.code) {
    case 'KDP_ERR_DB_CONNECTION':
      return 'connection';
    case 'KDP_ERR_DB_TIMEOUT':
      return 'timeout';
    case 'KDP_ERR_DB_CONSTRAINT':
      return 'constraint';
    case 'KDP_ERR_DB_DISK_FULL':
      return 'disk_full';
    case 'KDP_ERR_DB_SCHEMA':
      return 'schema';
    default:
      return 'other';
  }
}

async function endGracefully(session: Session): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const ended = session.client.end().catch(() => undefined);
  const late = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, 2_000);
  });
  await Promise.race([ended, late]);
  clearTimeout(timer);
  dropClient(session.client);
}
