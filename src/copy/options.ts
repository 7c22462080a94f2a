// Options of one per-table COPY writer, validated once at setup (see src/config/validate.ts).
// Every limit has a default with its unit in the name.
import { KdpError } from '../core/errors';
import { resolveOptions, type Resolved, type Spec } from '../config/validate';
import { TIME_SERIES_TABLES } from '../schema/tables';

/** Writer names go into ingest_batches.writer as a SQL literal: restricted so no quoting is needed. */
export const WRITER_NAME_PATTERN = /^[A-Za-z0-9_.:/-]{1,100}$/;

export const COPY_WRITER_SPEC = {
  url: { kind: 'string', doc: 'gatherer PostgreSQL URL', secret: true },
  table: { kind: 'enum', doc: 'time-series table this writer fills', values: TIME_SERIES_TABLES.map((t) => t.name) },
  writerName: { kind: 'string', doc: 'name recorded in ingest_batches.writer', pattern: WRITER_NAME_PATTERN },
  batchRowsMax: { kind: 'int', doc: 'rows that trigger a flush', default: 5_000, min: 1, max: 1_000_000 },
  batchBytesMax: { kind: 'int', doc: 'row bytes that trigger a flush', default: 4 * 1024 * 1024, min: 1024, max: 256 * 1024 * 1024 },
  flushIntervalMs: { kind: 'int', doc: 'longest a row waits before its batch is sealed', default: 200, min: 1, max: 60_000 },
  pendingRowsMax: {
    kind: 'int',
    doc: 'rows held (open + queued + in flight) before append() refuses more',
    default: 100_000,
    min: 1,
    max: 10_000_000,
  },
  batchIdPrefetch: { kind: 'int', doc: 'batch ids fetched from ingest_batch_id_seq per round trip', default: 64, min: 1, max: 10_000 },
  retryBaseMs: { kind: 'int', doc: 'first retry delay (doubles per attempt, full jitter)', default: 100, min: 1, max: 60_000 },
  retryMaxMs: { kind: 'int', doc: 'retry delay ceiling', default: 5_000, min: 1, max: 600_000 },
  retryAttemptsMax: {
    kind: 'int',
    doc: 'attempts per try before the writer logs the batch as stalled (it keeps the rows and keeps trying)',
    default: 8,
    min: 1,
    max: 1_000,
  },
  attemptTimeoutMs: {
    kind: 'int',
    doc: 'one commit attempt (connect + BEGIN..COMMIT) is abandoned after this long',
    default: 30_000,
    min: 100,
    max: 3_600_000,
  },
  statementTimeoutMs: { kind: 'int', doc: 'server-side statement_timeout of the writer session', default: 20_000, min: 100 },
  connectTimeoutMs: { kind: 'int', doc: 'connection attempt timeout', default: 5_000, min: 100 },
  closeTimeoutMs: { kind: 'int', doc: 'longest close() waits for pending rows to commit', default: 10_000, min: 0, max: 600_000 },
} as const satisfies Spec;

export type CopyWriterOptions = Resolved<typeof COPY_WRITER_SPEC>;

/** The limits a cross-field rule relates. */
export type WriterLimits = Pick<CopyWriterOptions, 'batchRowsMax' | 'pendingRowsMax' | 'retryBaseMs' | 'retryMaxMs'>;

// [limit, the limit it must not be below]
const WRITER_LIMIT_RULES = [
  ['pendingRowsMax', 'batchRowsMax'],
  ['retryMaxMs', 'retryBaseMs'],
] as const satisfies readonly (readonly [keyof WriterLimits, keyof WriterLimits])[];

/**
 * The cross-field rules of a writer's limits, in one place: the COPY writer applies them to its own
 * options and the gatherer to its `writer` section at start-up (under that section's key names,
 * given by `keyOf`), so a config the gatherer starts with is never refused in every worker thread.
 */
export function checkWriterLimits(o: WriterLimits, keyOf: (field: keyof WriterLimits) => string): void {
  for (const [limit, floor] of WRITER_LIMIT_RULES) {
    if (o[limit] < o[floor]) {
      throw new KdpError('KDP_ERR_CONFIG_INVALID', `config ${keyOf(limit)}: must be >= ${keyOf(floor)} (${o[floor]}), got ${o[limit]}`, {
        key: keyOf(limit),
        keys: [keyOf(limit), keyOf(floor)],
      });
    }
  }
}

/** Validates raw options; rejects unknown keys and inconsistent limits with a coded error. */
export function resolveCopyWriterOptions(raw: unknown, path = 'copyWriter'): CopyWriterOptions {
  const o = resolveOptions(COPY_WRITER_SPEC, raw, path);
  checkWriterLimits(o, (field) => `${path}.${field}`);
  return o;
}
