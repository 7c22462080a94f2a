// Connection handling of the COPY writers: open + per-session setup, hard drop, batch-id
// prefetch, and the check that makes a retry after an ambiguous COMMIT exactly-once.
import { Client, type ClientBase } from 'pg';
import { invariant, KdpError } from '../core/errors';
import type { TablePlan } from './plan';

/** Identifies one server backend across pid reuse (a restarted server may reuse a pid). */
export interface BackendIdentity {
  readonly pid: number;
  /** pg_stat_activity.backend_start as text (full µs precision). */
  readonly backendStart: string;
}

export interface SessionConfig {
  readonly url: string;
  readonly applicationName: string;
  readonly statementTimeoutMs: number;
  readonly connectTimeoutMs: number;
}

export interface Session {
  readonly client: Client;
  readonly backend: BackendIdentity;
  /** Becomes true when the client reported an error or ended: the session must be replaced. */
  readonly broken: () => boolean;
}

/** Connects and prepares a session (statement timeout, staging table). */
export async function openSession(cfg: SessionConfig, plan: TablePlan): Promise<Session> {
  const client = new Client({
    connectionString: cfg.url,
    application_name: cfg.applicationName,
    statement_timeout: cfg.statementTimeoutMs,
    connectionTimeoutMillis: cfg.connectTimeoutMs,
    keepAlive: true,
  });
  let broken = false;
  // Without a listener a lost connection would be an uncaught 'error' event and kill the thread.
  client.on('error', () => {
    broken = true;
  });
  client.on('end', () => {
    broken = true;
  });
  try {
    await client.connect();
    const backend = await backendIdentity(client);
    for (const sql of plan.sessionSetupSql) await client.query(sql);
    return { client, backend, broken: () => broken };
  } catch (err) {
    dropClient(client);
    throw err;
  }
}

export async function backendIdentity(client: ClientBase): Promise<BackendIdentity> {
  const r = await client.query<{ pid: number; backend_start: string }>(
    `SELECT pid, backend_start::text AS backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()`,
  );
  invariant(r.rows.length === 1, 'own backend is listed in pg_stat_activity');
  return { pid: r.rows[0]!.pid, backendStart: r.rows[0]!.backend_start };
}

/**
 * Closes a client at once, whatever state its socket is in: end() waits for the server, which
 * may be exactly what hangs. Destroying the socket makes pg fail every queued query.
 */
export function dropClient(client: Client): void {
  const stream = (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream;
  if (stream) stream.destroy();
  else void client.end().catch(() => undefined);
}

/**
 * After a connection was lost with a COMMIT possibly in flight, the old backend may still be
 * alive and about to commit. Terminate it (if it is still the same backend) and wait for it to
 * exit: from then on ingest_batches tells the final truth about the batch.
 */
export async function settlePreviousBackend(client: ClientBase, old: BackendIdentity, waitMs: number): Promise<void> {
  const r = await client.query<{ gone: boolean }>(
    `SELECT pg_terminate_backend(pid, $3) AS gone FROM pg_stat_activity WHERE pid = $1 AND backend_start = $2::timestamptz`,
    [old.pid, old.backendStart, waitMs],
  );
  if (r.rows.length > 0 && !r.rows[0]!.gone) {
    throw new KdpError('KDP_ERR_DB_TIMEOUT', `previous backend ${old.pid} did not exit within ${waitMs} ms`, { pid: old.pid });
  }
}

/** row_count of a committed batch, or undefined when the batch id is not in ingest_batches. */
export async function committedBatchRows(client: ClientBase, batchId: number): Promise<number | undefined> {
  const r = await client.query<{ row_count: number }>(`SELECT row_count FROM ingest_batches WHERE batch_id = $1`, [batchId]);
  return r.rows.length > 0 ? Number(r.rows[0]!.row_count) : undefined;
}

/** `count` fresh ids from ingest_batch_id_seq in one round trip, ascending. */
export async function fetchBatchIds(client: ClientBase, count: number): Promise<number[]> {
  const r = await client.query<{ id: string }>(`SELECT nextval('ingest_batch_id_seq') AS id FROM generate_series(1, $1)`, [count]);
  const ids = r.rows.map((row) => Number(row.id));
  invariant(ids.length === count && ids.every((id) => Number.isSafeInteger(id) && id > 0), 'batch ids are positive safe integers');
  return ids.sort((a, b) => a - b);
}
