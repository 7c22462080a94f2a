// Options of the cold-storage archiver (`kdp archive`), validated once into a resolved type.
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DATABASE_SPEC, LOG_SPEC } from '../config/specs';
import { resolveOptions, type Resolved, type Spec } from '../config/validate';
import { KdpError } from '../core/errors';
import { TIME_SERIES_TABLES, type TimeSeriesTableName } from '../schema/tables';
import { AGGREGATE_NAMES, DERIVED_DATASETS, PROCESSED_NAMES } from './datasets';

const ALL_TABLES = TIME_SERIES_TABLES.map((t) => t.name);

export const STORE_SPEC = {
  kind: { kind: 'enum', doc: 'object store: a local directory or S3 (any S3-compatible store)', values: ['local', 's3'], default: 'local' },
  dir: { kind: 'string', doc: 'root directory of the local store', default: './archive' },
  bucket: { kind: 'string', doc: 'S3 bucket (kind s3)', optional: true },
  prefix: { kind: 'string', doc: 'key prefix of the raw tier (exported tables)', default: 'raw', pattern: /^[A-Za-z0-9._\-/]*$/ },
  endpoint: { kind: 'string', doc: 'S3 endpoint URL (unset: AWS)', optional: true },
  region: { kind: 'string', doc: 'S3 region', default: 'us-east-1' },
  accessKeyId: { kind: 'string', doc: 'S3 access key id (unset: the SDK default credential chain)', optional: true },
  secretAccessKey: { kind: 'string', doc: 'S3 secret access key', optional: true, secret: true },
  forcePathStyle: { kind: 'boolean', doc: 'path-style S3 URLs (MinIO, s3rver, ...)', default: false },
  maxAttempts: { kind: 'int', doc: 'attempts per object write/read before failing', default: 5, min: 1, max: 20 },
  retryBaseMs: { kind: 'int', doc: 'first retry delay (doubles per attempt, with jitter)', default: 200, min: 1 },
  retryMaxMs: { kind: 'int', doc: 'largest retry delay', default: 10_000, min: 1 },
  requestTimeoutMs: { kind: 'int', doc: 'timeout of one S3 request', default: 120_000, min: 100 },
} as const satisfies Spec;

const PREFIX_PATTERN = /^[A-Za-z0-9._\-/]*$/;

export const PROCESSED_SPEC = {
  enabled: { kind: 'boolean', doc: 'derive processed/ (quotes, book_snapshots_25, enriched trades) from production after raw/', default: true },
  prefix: { kind: 'string', doc: 'key prefix of the processed tier', default: 'processed', pattern: PREFIX_PATTERN },
  bookIntervalMs: {
    kind: 'int',
    doc: 'book_snapshots_25: a row per market every this often when its book changed (must divide an hour)',
    default: 10_000,
    min: 1_000,
    max: 3_600_000,
  },
} as const satisfies Spec;

export const AGGREGATES_SPEC = {
  enabled: { kind: 'boolean', doc: 'derive aggregates/ (candles) from production after raw/', default: true },
  prefix: { kind: 'string', doc: 'key prefix of the aggregates tier', default: 'aggregates', pattern: PREFIX_PATTERN },
  datasets: { kind: 'stringList', doc: 'candle datasets to write', default: AGGREGATE_NAMES },
} as const satisfies Spec;

export const ARCHIVE_SPEC = {
  production: { kind: 'object', doc: 'the production database', fields: DATABASE_SPEC },
  store: { kind: 'object', doc: 'where the Parquet files go', fields: STORE_SPEC },
  tables: { kind: 'stringList', doc: 'time-series tables to archive', default: ALL_TABLES },
  coverage: {
    kind: 'boolean',
    doc: 'write the coverage certificates of every exported hour beside it (<raw prefix>/_coverage/) and into production',
    default: true,
  },
  processed: { kind: 'object', doc: 'the processed/ tier (docs/archive.md)', fields: PROCESSED_SPEC },
  aggregates: { kind: 'object', doc: 'the aggregates/ tier (docs/archive.md)', fields: AGGREGATES_SPEC },
  intervalMs: { kind: 'int', doc: 'pause between export cycles', default: 300_000, min: 100 },
  exportLagMs: {
    kind: 'int',
    doc: 'an hour is exported once hour end + this lag has passed on the production clock and in every live deduplicator cursor',
    default: 600_000,
    min: 0,
  },
  gathererStaleMs: {
    kind: 'int',
    doc: 'a dedup cursor not updated for this long is a dead gatherer: it no longer holds exports back',
    default: 900_000,
    min: 1_000,
  },
  lateLookbackHours: {
    kind: 'int',
    doc: 'exported hours this far back (from now) are re-checked for late rows every cycle',
    default: 72,
    min: 0,
    max: 24 * 366,
  },
  compression: { kind: 'enum', doc: 'Parquet compression codec', values: ['zstd', 'snappy'], default: 'zstd' },
  rowGroupRows: { kind: 'int', doc: 'rows per Parquet row group', default: 122_880, min: 1_024 },
  workDir: { kind: 'string', doc: 'scratch directory for CSV and Parquet temp files', default: join(tmpdir(), 'kdp-archive') },
  workMemMb: {
    kind: 'int',
    doc: "PostgreSQL work_mem of the archiver's sessions: the derived tiers sort and group an hour (candles, the per-market replay)",
    default: 256,
    min: 4,
    max: 16_384,
  },
  duckdbMemoryMb: { kind: 'int', doc: 'DuckDB memory limit (spills to workDir beyond it)', default: 1024, min: 64 },
  duckdbThreads: { kind: 'int', doc: 'DuckDB worker threads', default: 2, min: 1, max: 64 },
  progressIntervalMs: { kind: 'int', doc: 'progress line every this often while exporting a backlog', default: 5_000, min: 100 },
  metricsPort: { kind: 'int', doc: 'port of /metrics and /health (0 = any free port; unset = no HTTP server)', optional: true, min: 0, max: 65535 },
  metricsHost: { kind: 'string', doc: 'address /metrics binds', default: '0.0.0.0' },
  log: { kind: 'object', doc: 'logging', fields: LOG_SPEC },
} as const satisfies Spec;

export type ArchiveOptions = Resolved<typeof ARCHIVE_SPEC>;
export type StoreOptions = ArchiveOptions['store'];

/** Validates a raw config (YAML document or object) into archiver options. */
export function resolveArchiveOptions(raw: unknown): ArchiveOptions {
  const opts = resolveOptions(ARCHIVE_SPEC, raw);
  checkArchiveOptions(opts);
  return opts;
}

/** Cross-field checks the per-field spec cannot express. */
export function checkArchiveOptions(opts: ArchiveOptions): void {
  for (const name of opts.tables) {
    if (!ALL_TABLES.includes(name as TimeSeriesTableName)) {
      throw new KdpError('KDP_ERR_CONFIG_INVALID', `config tables: unknown table ${name} (known: ${ALL_TABLES.join(', ')})`, { key: 'tables' });
    }
  }
  checkTiers(opts);
  if (opts.store.kind === 's3' && !opts.store.bucket) {
    throw new KdpError('KDP_ERR_CONFIG_MISSING', 'config store.bucket: required when store.kind is s3', { key: 'store.bucket' });
  }
  if ((opts.store.accessKeyId === undefined) !== (opts.store.secretAccessKey === undefined)) {
    throw new KdpError('KDP_ERR_CONFIG_INVALID', 'config store: give both accessKeyId and secretAccessKey, or neither', { key: 'store.accessKeyId' });
  }
  if (opts.store.prefix.startsWith('/') || opts.store.prefix.includes('..')) {
    throw new KdpError('KDP_ERR_CONFIG_INVALID', 'config store.prefix: must be relative, without ..', { key: 'store.prefix' });
  }
}

/** A derived tier reads raw tables' hours once they are archived: those tables must be archived too. */
function checkTiers(opts: ArchiveOptions): void {
  for (const name of opts.aggregates.datasets) {
    if (!(AGGREGATE_NAMES as readonly string[]).includes(name)) {
      throw new KdpError('KDP_ERR_CONFIG_INVALID', `config aggregates.datasets: unknown dataset ${name} (known: ${AGGREGATE_NAMES.join(', ')})`, {
        key: 'aggregates.datasets',
      });
    }
  }
  if (3_600_000 % opts.processed.bookIntervalMs !== 0) {
    throw new KdpError('KDP_ERR_CONFIG_INVALID', `config processed.bookIntervalMs: ${opts.processed.bookIntervalMs} does not divide an hour`, {
      key: 'processed.bookIntervalMs',
    });
  }
  const tiers = [
    { key: 'processed', on: opts.processed.enabled, names: PROCESSED_NAMES as readonly string[], prefix: opts.processed.prefix },
    { key: 'aggregates', on: opts.aggregates.enabled, names: opts.aggregates.datasets, prefix: opts.aggregates.prefix },
  ];
  for (const tier of tiers.filter((t) => t.on)) {
    const sources = new Set(DERIVED_DATASETS.filter((d) => tier.names.includes(d.name)).flatMap((d) => d.sources));
    for (const table of sources) {
      if (!opts.tables.includes(table)) {
        throw new KdpError(
          'KDP_ERR_CONFIG_INVALID',
          `config ${tier.key}: derived from ${table}, which tables must then archive (or set ${tier.key}.enabled false)`,
          {
            key: `${tier.key}.enabled`,
          },
        );
      }
    }
    const clash = [opts.store.prefix, ...tiers.filter((t) => t !== tier && t.on).map((t) => t.prefix)].includes(tier.prefix);
    if (clash || tier.prefix.startsWith('/') || tier.prefix.includes('..') || tier.prefix === '') {
      throw new KdpError('KDP_ERR_CONFIG_INVALID', `config ${tier.key}.prefix: must be relative, non-empty, without .., and differ from the other tiers'`, {
        key: `${tier.key}.prefix`,
      });
    }
  }
}
