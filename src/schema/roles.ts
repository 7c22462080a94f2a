// Least-privilege PostgreSQL roles, created and granted by `kdp migrate` (idempotent: every run
// re-applies the grants, so tables added by later migrations are covered). The roles are NOLOGIN
// groups: an operator creates login users and grants them a group
// (`CREATE ROLE gatherer1 LOGIN PASSWORD '…' IN ROLE kdp_gatherer_writer`).
// Roles are cluster-wide, grants are per database: a gatherer and a production database may share
// one cluster (tests, the demo) and each gets only its own grants.
import type { ClientBase } from 'pg';
import type { SchemaKind } from './ddl';
import { TIME_SERIES_TABLES, quoteIdent } from './tables';

export interface RoleGrant {
  readonly role: string;
  /** What the role is for (shown in docs/runbooks.md). */
  readonly purpose: string;
  /** `GRANT <privileges> ON <objects>` clauses, applied in order. */
  readonly grants: readonly string[];
}

const TS_TABLES = TIME_SERIES_TABLES.map((t) => t.name).join(', ');
const REGISTRY = 'series, events, markets';

export const GATHERER_ROLES: readonly RoleGrant[] = [
  {
    role: 'kdp_gatherer_writer',
    purpose: 'the gatherer service: COPY rows, log batches and gaps, keep the market registry',
    grants: [
      `SELECT, INSERT ON ${TS_TABLES}, ingest_batches`,
      `SELECT, INSERT, UPDATE ON gap_ledger`,
      `SELECT, INSERT, UPDATE ON ${REGISTRY}`,
      `SELECT ON kdp_schema, dedup_watermark`,
      `USAGE ON ALL SEQUENCES IN SCHEMA public`,
    ],
  },
  {
    role: 'kdp_dedup_reader',
    purpose: 'the deduplicator reading a gatherer: read everything, publish its merge watermark',
    grants: [`SELECT ON ALL TABLES IN SCHEMA public`, `INSERT, UPDATE ON dedup_watermark`],
  },
  {
    role: 'kdp_readonly',
    purpose: 'operators, kdp verify, dashboards',
    grants: [`SELECT ON ALL TABLES IN SCHEMA public`],
  },
];

export const PRODUCTION_ROLES: readonly RoleGrant[] = [
  {
    role: 'kdp_dedup_writer',
    purpose: 'the deduplicator writing production: merge rows, registry, gap ledger and cursors',
    // UPDATE: a later copy sets its bit in delivered_by; DELETE: a whole-second trade copy is
    // replaced by its finer copy (statements.ts TRADE_PRECISION).
    grants: [
      `SELECT, INSERT, UPDATE, DELETE ON ${TS_TABLES}`,
      `SELECT, INSERT, UPDATE ON ${REGISTRY}, gap_ledger, dedup_cursors`,
      `SELECT, INSERT ON gatherer_bits`,
      `SELECT ON kdp_schema, export_cursors`,
    ],
  },
  {
    role: 'kdp_archiver',
    purpose: 'the archiver: read production, record exported partitions and coverage certificates',
    grants: [`SELECT ON ALL TABLES IN SCHEMA public`, `INSERT, UPDATE, DELETE ON export_cursors, coverage_certificates`],
  },
  {
    role: 'kdp_readonly',
    purpose: 'operators, kdp verify, kdp book, dashboards',
    grants: [`SELECT ON ALL TABLES IN SCHEMA public`],
  },
];

export const rolesFor = (kind: SchemaKind): readonly RoleGrant[] => (kind === 'gatherer' ? GATHERER_ROLES : PRODUCTION_ROLES);

// SQLSTATEs of a concurrent CREATE ROLE of the same name (another database of the same cluster
// migrating at the same moment): the role exists, which is all we wanted.
const ROLE_RACE_STATES = new Set(['42710', '23505']);

async function ensureRole(client: ClientBase, role: string): Promise<void> {
  const exists = await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role]);
  if ((exists.rowCount ?? 0) > 0) return;
  try {
    await client.query(`CREATE ROLE ${quoteIdent(role)} NOLOGIN`);
  } catch (err) {
    if (!ROLE_RACE_STATES.has((err as { code?: string }).code ?? '')) throw err;
  }
}

/** Creates the roles of `kind` (if missing) and (re)applies their grants in the current database. */
export async function ensureRoles(client: ClientBase, kind: SchemaKind): Promise<readonly string[]> {
  const roles = rolesFor(kind);
  const db = (await client.query('SELECT current_database() AS db')).rows[0].db as string;
  for (const r of roles) await ensureRole(client, r.role);
  await client.query('BEGIN');
  try {
    for (const r of roles) {
      const role = quoteIdent(r.role);
      // Temporary tables: the deduplicator's staging and kdp verify's key lists.
      await client.query(`GRANT CONNECT, TEMPORARY ON DATABASE ${quoteIdent(db)} TO ${role}`);
      await client.query(`GRANT USAGE ON SCHEMA public TO ${role}`);
      for (const g of r.grants) await client.query(`GRANT ${g} TO ${role}`);
    }
    // Tables created later by the migrating user (new partitions, future migrations) stay readable.
    const readers = roles.filter((r) => r.grants.some((g) => g.startsWith('SELECT ON ALL TABLES'))).map((r) => quoteIdent(r.role));
    await client.query(`ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO ${readers.join(', ')}`);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
  return roles.map((r) => r.role);
}
