// Connections of the deduplicator: one client per gatherer and one to production. A client whose
// state is uncertain (an error mid-transaction or mid-COPY) is discarded, never reused.
import { Client } from 'pg';
import { classifyDbError } from '../core/errors';
import { requireSchema } from '../schema/migrate';
import type { DedupOptions, GathererOptions } from './options';
import { SideError } from './merge';
import { STAGING_SETUP } from './statements';

export interface Link {
  client: Client;
  broken: boolean;
}

async function open(url: string, connectTimeoutMs: number, statementTimeoutMs: number): Promise<Link> {
  const client = new Client({
    connectionString: url,
    connectionTimeoutMillis: connectTimeoutMs,
    statement_timeout: statementTimeoutMs,
    application_name: 'kdp-dedup',
  });
  const link: Link = { client, broken: false };
  // An idle connection that dies emits 'error': mark it so the next use reconnects.
  client.on('error', () => (link.broken = true));
  try {
    await client.connect();
  } catch (err) {
    dropLink(link);
    throw err;
  }
  return link;
}

export async function openGatherer(g: GathererOptions): Promise<Link> {
  try {
    const link = await open(g.url, g.connectTimeoutMs, g.statementTimeoutMs);
    try {
      await requireSchema(link.client, 'gatherer');
    } catch (err) {
      dropLink(link);
      throw err;
    }
    return link;
  } catch (err) {
    throw new SideError('gatherer', classifyDbError(err));
  }
}

/** Connects to production, checks its schema and creates the session's staging tables. */
export async function openProduction(p: DedupOptions['production']): Promise<Link> {
  try {
    const link = await open(p.url, p.connectTimeoutMs, p.statementTimeoutMs);
    try {
      await requireSchema(link.client, 'production');
      // temp_buffers must be set before the session's first use of a temporary table.
      await link.client.query(`SET temp_buffers = '${p.tempBuffersMb}MB'`);
      // The round's dedup sort: in memory when it fits, else PostgreSQL spills it to temp files.
      await link.client.query(`SET work_mem = '${p.workMemMb}MB'`);
      // Staging tables have no statistics; a JIT compile of the merge INSERT costs more than it saves.
      await link.client.query('SET jit = off');
      for (const sql of STAGING_SETUP) await link.client.query(sql);
    } catch (err) {
      dropLink(link);
      throw err;
    }
    return link;
  } catch (err) {
    throw new SideError('production', classifyDbError(err));
  }
}

/** Closes at once: the socket is destroyed, so the server rolls back any open transaction. */
export function dropLink(link: Link | undefined): void {
  if (!link) return;
  link.broken = true;
  const conn = (link.client as unknown as { connection?: { stream?: { destroy(): void } } }).connection;
  conn?.stream?.destroy();
  link.client.end().catch(() => undefined);
}
