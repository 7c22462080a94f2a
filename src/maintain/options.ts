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
  backoffInitialMs: { kind: 'int', doc: 'first retry delay after a failed cycle (doubles per failure, equal jitter)', default: 5_000, min: 1 },
  backoffMaxMs: { kind: 'int', doc: 'largest retry delay after failed cycles (never beyond intervalMs)', default: 300_000, min: 1 },
  metricsPort: { kind: 'int', doc: 'port of /metrics (0 = any free port; unset = no HTTP server)', optional: true, min: 0, max: 65535 },
  metricsHost: { kind: 'string', doc: 'address /metrics binds', default: '0.0.0.0' },
  log: { kind: 'object', doc: 'logging', fields: LOG_SPEC },
} as const satisfies Spec;

export type MaintainOptions = Resolved<typeof MAINTAIN_SPEC>;

/** Validates a raw config (YAML document or object) into maintenance options. */
export function resolveMaintainOptions(raw: unknown): MaintainOptions {
  return resolveOptions(MAINTAIN_SPEC, raw);
}
