// The one "run fn on a database client, then give it back" of the platform (services, commands,
// tests and benchmarks): a pooled client is released, a connection opened from a URL is ended,
// whatever fn does. Retry policies stay with the callers; this only owns the client's lifetime.
import { Client, type Pool, type PoolClient } from 'pg';
import { classifyDbError } from './errors';

export async function withClient<T>(pool: Pool, fn: (client: PoolClient) => Promise<T>): Promise<T>;
export async function withClient<T>(url: string, fn: (client: Client) => Promise<T>): Promise<T>;
export async function withClient<T>(db: Pool | string, fn: (client: PoolClient & Client) => Promise<T>): Promise<T> {
  if (typeof db !== 'string') {
    const client = await db.connect();
    try {
      return await fn(client as PoolClient & Client);
    } finally {
      client.release();
    }
  }
  const client = new Client({ connectionString: db });
  // A server that goes away fails the query in flight, which rejects; without a listener the
  // 'error' event it also emits would crash the process.
  client.on('error', () => undefined);
  await client.connect().catch((err: unknown) => {
    throw classifyDbError(err);
  });
  try {
    return await fn(client as PoolClient & Client);
  } finally {
    await client.end().catch(() => undefined);
  }
}
