// Options of `kdp dedup`: validated once into a frozen, resolved type. Durations carry their unit.
import { KdpError } from '../core/errors';
import { HTTP_SPEC, LOG_SPEC } from '../config/specs';
import { resolveOptions, type Resolved, type Spec } from '../config/validate';

const GATHERER_SPEC = {
  name: {
    kind: 'string',
    doc: 'gatherer name used in cursors, health and metric labels',
    pattern: /^[A-Za-z0-9_.-]{1,40}$/,
  },
  url: { kind: 'string', doc: 'PostgreSQL URL of the gatherer database', secret: true },
  connectTimeoutMs: { kind: 'int', doc: 'connection attempt timeout', default: 5_000, min: 100 },
  statementTimeoutMs: {
    kind: 'int',
    doc: 'statement timeout on the gatherer (COPY out included)',
    default: 300_000,
    min: 100,
  },
} as const satisfies Spec;

export const DEDUP_SPEC = {
  gatherers: { kind: 'list', doc: 'gatherer databases to merge (1 to 16)', item: GATHERER_SPEC },
  production: {
    kind: 'object',
    doc: 'the production database',
    fields: {
      url: { kind: 'string', doc: 'PostgreSQL URL of production', secret: true },
      connectTimeoutMs: {
        kind: 'int',
        doc: 'connection attempt timeout',
        default: 5_000,
        min: 100,
      },
      statementTimeoutMs: {
        kind: 'int',
        doc: 'statement timeout on production',
        default: 600_000,
        min: 100,
      },
      tempBuffersMb: {
        kind: 'int',
        doc: 'temp_buffers of the merge session (staging tables live there: ~150 bytes per staged delta)',
        default: 256,
        min: 1,
        max: 8192,
      },
      workMemMb: {
        kind: 'int',
        doc: 'work_mem of the merge session: the round sorts its staged copies by key (3 x 300 k deltas sort in 137 MB)',
        default: 256,
        min: 4,
        max: 8192,
      },
    },
  },
  sync: {
    kind: 'object',
    doc: 'merge cycle',
    fields: {
      intervalMs: {
        kind: 'int',
        doc: 'pause between cycles once caught up',
        default: 1_000,
        min: 10,
      },
      batchesPerCycleMax: {
        kind: 'int',
        doc: 'ingest batches merged per gatherer per cycle',
        default: 2_000,
        min: 1,
        max: 100_000,
      },
      rowsPerCycleMax: {
        kind: 'int',
        // 3 x 250 k staged copies sort within workMemMb and stay in tempBuffersMb; 3 x 1 M rows
        // spilled both and merged 0.27 of psql \copy against 0.34 (bench/dedup.ts, 1 M rows).
        doc: "rows merged per gatherer per cycle (a round's transaction holds up to gatherers x this)",
        default: 250_000,
        min: 1,
      },
      fastPathSpanMaxMs: {
        kind: 'int',
        doc: 'staged rows spanning more exchange time than this merge row by row (ON CONFLICT), not by anti-join over the span (0: always row by row)',
        default: 3_600_000,
        min: 0,
      },
      ledgerOverlapMs: {
        kind: 'int',
        doc: 're-read window of gap-ledger updates (late commits)',
        default: 60_000,
        min: 0,
      },
      pageRowsMax: {
        kind: 'int',
        doc: 'gap-ledger / metadata rows per page',
        default: 2_000,
        min: 1,
        max: 100_000,
      },
      metadataIntervalMs: {
        kind: 'int',
        doc: 'how often series/events/markets are synced',
        default: 30_000,
        min: 10,
      },
      backoffInitialMs: {
        kind: 'int',
        doc: 'first retry delay after a failure',
        default: 500,
        min: 1,
      },
      backoffMaxMs: { kind: 'int', doc: 'retry delay cap', default: 60_000, min: 1 },
      roundMerge: {
        kind: 'boolean',
        doc: 'merge every due gatherer in one production transaction per cycle (copies delivered together are inserted once, with all their bits); false: one transaction per gatherer',
        default: true,
      },
      lagDegradedSeconds: {
        kind: 'number',
        doc: 'sync lag above which health is degraded',
        default: 30,
        min: 0,
      },
    },
  },
  frozenFeed: {
    kind: 'object',
    doc: 'detection of a gatherer that stopped recording markets the others record',
    fields: {
      enabled: { kind: 'boolean', doc: 'track markets per gatherer', default: true },
      windowMs: {
        kind: 'int',
        doc: 'recent window (received_at) compared across gatherers',
        default: 120_000,
        min: 1_000,
      },
      marketsTrackedMax: {
        kind: 'int',
        doc: 'markets remembered per gatherer',
        default: 500_000,
        min: 1,
      },
    },
  },
  http: { kind: 'object', doc: 'health and metrics servers', fields: HTTP_SPEC },
  log: { kind: 'object', doc: 'logging', fields: LOG_SPEC },
} as const satisfies Spec;

export type DedupOptions = Resolved<typeof DEDUP_SPEC>;
export type GathererOptions = DedupOptions['gatherers'][number];

/** Checks what the spec cannot express: 1..16 gatherers with distinct names. */
export function checkDedupOptions(opts: DedupOptions): DedupOptions {
  if (opts.gatherers.length < 1 || opts.gatherers.length > 16) {
    throw new KdpError('KDP_ERR_CONFIG_INVALID', `config gatherers: expected 1 to 16 gatherers, got ${opts.gatherers.length}`, {
      key: 'gatherers',
    });
  }
  const names = new Set<string>();
  for (const g of opts.gatherers) {
    if (names.has(g.name))
      throw new KdpError('KDP_ERR_CONFIG_INVALID', `config gatherers: duplicate name ${g.name}`, {
        key: 'gatherers',
      });
    names.add(g.name);
  }
  if (opts.sync.backoffMaxMs < opts.sync.backoffInitialMs) {
    throw new KdpError('KDP_ERR_CONFIG_INVALID', 'config sync.backoffMaxMs: must be >= sync.backoffInitialMs', { key: 'sync.backoffMaxMs' });
  }
  return opts;
}

export function resolveDedupOptions(raw: unknown): DedupOptions {
  return checkDedupOptions(resolveOptions(DEDUP_SPEC, raw));
}
