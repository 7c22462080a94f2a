// Test harness: waiting for a database session to block on a lock, to test what happens while it
// waits (e.g. retention against a writer whose transaction is still open).
import type { ClientBase } from 'pg';
import { waitFor } from './gatherer';
import { withClient } from './pg';

/** Resolves once backend `pid` of the database at `url` waits for a lock. */
export async function untilWaitingForLock(url: string, pid: number, what: string): Promise<void> {
  await withClient(url, (monitor) =>
    waitFor(what, async () => {
      const r = await monitor.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'`, [pid]);
      return r.rows[0].n > 0;
    }),
  );
}

/** The server process id of the session `c` (for untilWaitingForLock). */
export async function backendPid(c: ClientBase): Promise<number> {
  return (await c.query(`SELECT pg_backend_pid() AS pid`)).rows[0].pid as number;
}
