// Options of the storage maintenance loop (`kdp maintain`), validated once into a resolved type.
import { DATABASE_SPEC, LOG_SPEC } from '../config/specs';
import { resolveOptions, type Resolved, type Spec } from '../config/validate';

export const MAINTAIN_SPEC = {
  kind: { kind: 'enum', doc: 'the schema kind of the database: gatherer or production', values: ['gatherer', 'production'] },
  database: { kind: 'object', doc: 'the database to maintain (as the owner of its tables)', fields: DATABASE_SPEC },
  intervalMs: { kind: 'int', doc: 'pause between maintenance cycles', default: 900_000, min: 100 },
  partitionDaysAhead: {
    kind: 'int',
    doc: 'day partitions kept created ahead of today on plain PostgreSQL (rows past them land in DEFAULT)',
    default: 7,
    min: 1,
    max: 366,
  },
  batchesPrunedPerCycleMax: {
    kind: 'int',
    doc: 'gatherer: ingest_batches rows of merged batches whose rows retention dropped, deleted per cycle at most (the rest wait for the next cycle)',
    default: 1_000_000,
    min: 1,
  },
  backoffInitialMs: { kind: 'int', doc: 'first retry delay after a failed cycle (doubles per failure, equal jitter)', default: 5_000, min: 1 },
  backoffMaxMs: { kind: 'int', doc: 'largest retry delay after failed cycles (never beyond intervalMs)', default: 300_000, min: 1 },
  drift: {
    kind: 'object',
    doc: 'REST vs WebSocket drift check of production (src/ops/drift.ts): every REST snapshot compared with the rebuilt book',
    fields: {
      enabled: { kind: 'boolean', doc: 'run a drift pass in every production cycle', default: true },
      windowMs: { kind: 'int', doc: 'deltas received this close to a REST snapshot are boundaries it may equal', default: 2_000, min: 0, max: 60_000 },
      settleMs: { kind: 'int', doc: 'margin past the merge watermark before a REST snapshot is compared', default: 10_000, min: 0 },
      snapshotsPerCycleMax: { kind: 'int', doc: 'REST snapshots compared per cycle (the rest wait for the next one)', default: 20_000, min: 1 },
      gathererStaleMs: { kind: 'int', doc: 'a dedup cursor not updated for this long no longer holds the watermark back', default: 900_000, min: 1_000 },
    },
  },
  metricsPort: { kind: 'int', doc: 'port of /metrics (0 = any free port; unset = no HTTP server)', optional: true, min: 0, max: 65535 },
  metricsHost: { kind: 'string', doc: 'address /metrics binds', default: '0.0.0.0' },
  log: { kind: 'object', doc: 'logging', fields: LOG_SPEC },
} as const satisfies Spec;

export type MaintainOptions = Resolved<typeof MAINTAIN_SPEC>;

/** Validates a raw config (YAML document or object) into maintenance options. */
export function resolveMaintainOptions(raw: unknown): MaintainOptions {
  return resolveOptions(MAINTAIN_SPEC, raw);
}
