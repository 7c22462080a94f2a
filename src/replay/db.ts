// The replay's reads of production after the start: short statements (keyset pages), so a lost
// connection costs nothing but a reconnect; the stream resumes after the last row it read. A
// replay at real time runs as long as its window, long enough to outlive a production restart or
// failover. Retried only for retryable codes (connection, timeout), with the one backoff.
import { Client, type QueryResultRow } from 'pg';
import { Backoff } from '../core/backoff';
import { classifyDbError } from '../core/errors';
import type { Logger } from '../core/log';

/** The application_name of every replay connection (pg_stat_activity shows who reads). */
export const REPLAY_APPLICATION_NAME = 'kdp-replay';

export class ReplayDb {
  private client: Client | null = null;
  /** Statements retried after a retryable failure. */
  retries = 0;
  private closed = false;
  // Full jitter: several replays restarting against one production should not reconnect in step.
  private readonly backoff = new Backoff({ initialMs: 200, maxMs: 10_000, jitter: 'full' });

  constructor(
    private readonly url: string,
    private readonly retriesMax: number,
    private readonly log: Logger,
  ) {}

  /** A connected client (the start's transaction runs on it). */
  async connection(): Promise<Client> {
    if (this.client) return this.client;
    const c = new Client({ connectionString: this.url, application_name: REPLAY_APPLICATION_NAME });
    // A server that goes away fails the statement in flight; the 'error' event must not crash us.
    c.on('error', (err) => this.log.warn({ err: classifyDbError(err) }, 'production connection lost'));
    await c.connect();
    this.client = c;
    return c;
  }

  /** One statement, retried on a new connection (up to retriesMax times in a row) when the failure is retryable. */
  async query<R extends QueryResultRow>(sql: string, params: readonly unknown[]): Promise<R[]> {
    for (;;) {
      try {
        const rows = (await (await this.connection()).query<R>(sql, params as unknown[])).rows;
        this.backoff.reset();
        return rows;
      } catch (err) {
        const e = classifyDbError(err);
        this.drop();
        if (this.closed || !e.retryable || this.backoff.attempts >= this.retriesMax) throw e;
        this.retries++;
        const delayMs = this.backoff.nextDelayMs();
        this.log.warn({ code: e.code, attempt: this.backoff.attempts, delayMs }, 'reading production failed; retrying');
        await new Promise((r) => setTimeout(r, delayMs));
      }
    }
  }

  private drop(): void {
    const c = this.client;
    this.client = null;
    c?.end().catch(() => undefined);
  }

  async end(): Promise<void> {
    this.closed = true;
    const c = this.client;
    this.client = null;
    await c?.end().catch(() => undefined);
  }
}
