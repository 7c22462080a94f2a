// `kdp migrate`: creates or upgrades a gatherer or production schema. Idempotent (a second run
// is a no-op), serialised by an advisory lock, and refuses a database whose schema is newer than
// this build or of the other kind.
import { randomUUID } from 'node:crypto';
import type { ClientBase } from 'pg';
import { KdpError } from '../core/errors';
import { COMMON_META, coverageDdl, guardedRetentionDdl, initialDdl, provenanceDdl, bookAnchorDdl, sentAtDdl, type Engine, type SchemaKind } from './ddl';
import { ensurePartitions } from './partitions';
import { ensureRoles } from './roles';

export interface Migration {
  readonly version: number;
  readonly name: string;
  statements(kind: SchemaKind, engine: Engine): string[];
}

/** Ordered; append only. A released migration is never edited. */
export const MIGRATIONS: readonly Migration[] = [
  { version: 1, name: 'initial schema', statements: initialDdl },
  { version: 2, name: 'guarded TimescaleDB retention', statements: guardedRetentionDdl },
  { version: 3, name: 'sent_at (Kalshi sending_ts_ms) on time-series rows', statements: sentAtDdl },
  { version: 4, name: 'per-row provenance: delivered_by bitmask and gatherer_bits (production)', statements: provenanceDdl },
  { version: 5, name: 'coverage certificates of archived hours (production)', statements: coverageDdl },
  { version: 6, name: 'next_delta_ts (upper anchor) on order-book snapshots; book_drift (production)', statements: bookAnchorDdl },
];
export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

// Arbitrary constant: the advisory lock key that serialises `kdp migrate` runs, and `kdp maintain`
// cycles with them and each other (both create partitions).
export const SCHEMA_LOCK_KEY = 0x6b6470; // "kdp"

export interface MigrateOptions {
  kind: SchemaKind;
  /** 'auto' picks timescale when the extension is available on the server. */
  engine: Engine | 'auto';
  /** Days of daily partitions to create behind and ahead of now (plain PostgreSQL). */
  partitionDaysBack?: number;
  partitionDaysAhead?: number;
  nowUs?: number;
}

export interface MigrateResult {
  readonly kind: SchemaKind;
  readonly engine: Engine;
  readonly fromVersion: number;
  readonly toVersion: number;
  readonly applied: readonly string[];
  readonly instanceId: string;
}

export interface SchemaInfo {
  kind: SchemaKind;
  version: number;
  engine: Engine;
  instanceId: string;
}

export async function readSchemaInfo(client: ClientBase): Promise<SchemaInfo | undefined> {
  const exists = await client.query(`SELECT to_regclass('kdp_schema') IS NOT NULL AS ok`);
  if (!exists.rows[0].ok) return undefined;
  const r = await client.query(`SELECT kind, version, engine, instance_id FROM kdp_schema`);
  if (r.rowCount === 0) return undefined;
  const row = r.rows[0];
  return { kind: row.kind, version: row.version, engine: row.engine, instanceId: row.instance_id };
}

export async function timescaleAvailable(client: ClientBase): Promise<boolean> {
  const r = await client.query(`SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'`);
  return (r.rowCount ?? 0) > 0;
}

async function chooseEngine(client: ClientBase, wanted: Engine | 'auto'): Promise<Engine> {
  const available = await timescaleAvailable(client);
  if (wanted === 'timescale' && !available) {
    throw new KdpError('KDP_ERR_TIMESCALE_UNAVAILABLE', 'engine timescale requested but the timescaledb extension is not available');
  }
  return wanted === 'auto' ? (available ? 'timescale' : 'postgres') : wanted;
}

export async function migrate(client: ClientBase, opts: MigrateOptions): Promise<MigrateResult> {
  await client.query('SELECT pg_advisory_lock($1)', [SCHEMA_LOCK_KEY]);
  try {
    return await migrateLocked(client, opts);
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [SCHEMA_LOCK_KEY]);
  }
}

async function migrateLocked(client: ClientBase, opts: MigrateOptions): Promise<MigrateResult> {
  const nowUs = opts.nowUs ?? Date.now() * 1000;
  const current = await readSchemaInfo(client);
  if (current && current.kind !== opts.kind) {
    throw new KdpError('KDP_ERR_SCHEMA_KIND', `database holds a ${current.kind} schema, not ${opts.kind}`, { ...current });
  }
  if (current && current.version > SCHEMA_VERSION) {
    throw new KdpError('KDP_ERR_SCHEMA_TOO_NEW', `database schema version ${current.version} is newer than this build's ${SCHEMA_VERSION}; upgrade kdp first`, {
      ...current,
      supported: SCHEMA_VERSION,
    });
  }
  const engine = current ? current.engine : await chooseEngine(client, opts.engine);
  const fromVersion = current?.version ?? 0;
  const applied: string[] = [];
  let instanceId = current?.instanceId ?? randomUUID();
  for (const m of MIGRATIONS) {
    if (m.version <= fromVersion) continue;
    await client.query('BEGIN');
    try {
      if (m.version === 1) for (const sql of COMMON_META) await client.query(sql);
      for (const sql of m.statements(opts.kind, engine)) await client.query(sql);
      await client.query(
        `INSERT INTO kdp_schema (kind, version, engine, instance_id, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $5)
         ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version, updated_at = EXCLUDED.updated_at`,
        [opts.kind, m.version, engine, instanceId, nowUs],
      );
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
    applied.push(`${m.version}: ${m.name}`);
  }
  if (engine === 'postgres') {
    await ensurePartitions(client, {
      kind: opts.kind,
      fromUs: nowUs - (opts.partitionDaysBack ?? 2) * 86_400_000_000,
      toUs: nowUs + (opts.partitionDaysAhead ?? 7) * 86_400_000_000,
    });
  }
  await ensureRoles(client, opts.kind);
  const info = await readSchemaInfo(client);
  instanceId = info?.instanceId ?? instanceId;
  return { kind: opts.kind, engine, fromVersion, toVersion: SCHEMA_VERSION, applied, instanceId };
}

/** Throws unless the database holds a current schema of `kind` (services call this at start). */
export async function requireSchema(client: ClientBase, kind: SchemaKind): Promise<SchemaInfo> {
  const info = await readSchemaInfo(client);
  if (!info) throw new KdpError('KDP_ERR_SCHEMA_KIND', `database has no kdp schema; run kdp migrate --kind ${kind}`);
  if (info.kind !== kind) throw new KdpError('KDP_ERR_SCHEMA_KIND', `database holds a ${info.kind} schema, not ${kind}`);
  if (info.version > SCHEMA_VERSION) {
    throw new KdpError('KDP_ERR_SCHEMA_TOO_NEW', `schema version ${info.version} is newer than this build's ${SCHEMA_VERSION}`);
  }
  if (info.version < SCHEMA_VERSION) {
    throw new KdpError('KDP_ERR_SCHEMA_KIND', `schema version ${info.version} is older than ${SCHEMA_VERSION}; run kdp migrate`);
  }
  return info;
}
