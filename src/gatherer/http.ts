// The gatherer's HTTP surface: GET /health (and /admin on the admin address) on the health port,
// GET /metrics on the metrics port. Worker-thread counters are folded into prom-client at scrape time.
import { timingSafeEqual } from 'node:crypto';
import type { Pool } from 'pg';
import type { Registry } from 'prom-client';
import type { Logger } from '../core/log';
import type { GATHERER_METRICS, MetricSet } from '../core/metrics';
import { json, startHttpServer, type HttpRequest, type Route } from '../http/server';
import type { RingRouter } from '../ingest/router';
import { TIME_SERIES_TABLES } from '../schema/tables';
import { WRITER_ERROR_TYPES } from '../copy/stats';
import { REJECT_CODES, type WorkerCounterName } from '../workers/protocol';
import { UNBOUNDED_REASONS } from '../workers/held';
import type { GathererOptions } from './config';
import type { ConnectionManager } from './connections';
import type { GapTracker } from './gaps';
import type { Pipeline } from './pipeline';
import type { SnapshotPoller } from './poller';

export interface GathererHttpDeps {
  readonly registry: Registry;
  readonly metrics: MetricSet<typeof GATHERER_METRICS>;
  readonly pipeline: Pipeline;
  readonly manager: ConnectionManager;
  readonly router: RingRouter;
  readonly gaps: GapTracker;
  readonly pool: Pool;
  readonly poller: SnapshotPoller;
  readonly log: Logger;
}

export interface GathererHttp {
  readonly healthPort: number;
  readonly metricsPort: number;
  health(): { status: number; body: Record<string, unknown> };
  close(): void;
}

// The database is probed this often; the health endpoint reports the last result.
const DB_PROBE_INTERVAL_MS = 5_000;

/** prom-client counters only go up: add the difference since the last scrape. */
class CounterSync {
  private readonly last = new Map<string, number>();
  sync(key: string, total: number, inc: (by: number) => void): void {
    const before = this.last.get(key) ?? 0;
    if (total > before) inc(total - before);
    this.last.set(key, total);
  }
}

function syncMetrics(d: GathererHttpDeps, counters: CounterSync): void {
  const m = d.metrics;
  const p = d.pipeline;
  const total = (n: WorkerCounterName): number => p.total(n);
  counters.sync('messages', total('messages'), (by) => m.ws_client_messages_received_total.inc(by));
  for (const t of TIME_SERIES_TABLES) {
    counters.sync(`rows:${t.name}`, total(`rows:${t.name}`), (by) => m.writer_inserts_total.inc({ table: t.name }, by));
    counters.sync(`batches:${t.name}`, total(`batches:${t.name}`), (by) => m.writer_batches_total.inc({ table: t.name }, by));
  }
  for (const type of WRITER_ERROR_TYPES) {
    counters.sync(`err:${type}`, total(`writer_errors:${type}`), (by) => m.writer_errors_total.inc({ type }, by));
  }
  for (const code of REJECT_CODES) {
    counters.sync(`rej:${code}`, total(`rejected:${code}`), (by) => m.messages_rejected_total.inc({ code }, by));
  }
  counters.sync('deltasGeneric', total('deltas_generic_path'), (by) => m.worker_deltas_generic_path_total.inc(by));
  for (const reason of UNBOUNDED_REASONS) {
    counters.sync(`unb:${reason}`, total(`snapshots_unbounded:${reason}`), (by) => m.worker_snapshots_unbounded_total.inc({ reason }, by));
  }
  const r = d.router.stats;
  counters.sync('dropped', r.framesDropped + r.framesTooLarge, (by) => m.router_messages_dropped_total.inc(by));
  counters.sync('ringfull', r.ringFullEvents, (by) => m.router_ring_full_total.inc(by));
  counters.sync('held', r.framesHeld, (by) => m.router_frames_held_total.inc(by));
  for (const slot of p.slots) m.router_ring_used_bytes.set({ worker: String(slot.index) }, slot.ring.usedBytes());
  m.writer_pending_rows.set(total('pending_rows'));
  const oldest = p.oldestUncommittedAtMs();
  m.writer_oldest_uncommitted_seconds.set(oldest === 0 ? 0 : Math.max(0, Date.now() - oldest) / 1000);
  m.ws_client_connected.set(d.manager.openConnections());
  m.conn_manager_connections.set(d.manager.connectionIds().length);
  m.conn_manager_connections_healthy.set(d.manager.healthyConnections());
  m.conn_manager_subscriptions.set(d.manager.subscriptionCount());
  m.conn_manager_markets_subscribed.set(d.manager.marketCount());
}

function isLoopback(address: string): boolean {
  return (
    address === 'localhost' ||
    address === '::1' ||
    address.startsWith('127.') ||
    address.startsWith('::ffff:127.') ||
    /^0{0,4}(:0{0,4}){6}:0{0,3}1$/.test(address)
  );
}

function bearerMatches(req: HttpRequest, token: string | undefined): boolean {
  if (!token) return false;
  const got = Buffer.from(req.headers.authorization ?? '');
  const want = Buffer.from(`Bearer ${token}`);
  return got.length === want.length && timingSafeEqual(got, want);
}

/** The database as a periodic `SELECT 1` last found it. */
interface DbProbe {
  ok: boolean;
  checkedAt: number;
  stop(): void;
}

function startDbProbe(pool: GathererHttpDeps['pool']): DbProbe {
  const probe: DbProbe = { ok: true, checkedAt: Date.now(), stop: () => clearInterval(timer) };
  const timer = setInterval(() => {
    pool.query('SELECT 1').then(
      () => ((probe.ok = true), (probe.checkedAt = Date.now())),
      () => ((probe.ok = false), (probe.checkedAt = Date.now())),
    );
  }, DB_PROBE_INTERVAL_MS);
  timer.unref();
  return probe;
}

type WriterState = 'committing' | 'stalled' | 'schema_mismatch';

/**
 * The writers as /health judges them. SELECT 1 passing says nothing about writes: a batch waiting
 * longer than pipeline.commitStallMs to commit is a gatherer that records nothing (disk full,
 * every attempt failing: degraded), and one whose failures since it last committed include
 * schema errors (a table or column missing) will not recover without `kdp migrate` (unhealthy).
 */
class WriterWatch {
  private schemaErrorsWhenCommitting: number;

  constructor(
    private readonly pipeline: Pipeline,
    private readonly stallMs: number,
  ) {
    this.schemaErrorsWhenCommitting = pipeline.total('writer_errors:schema');
  }

  check(): { state: WriterState; uncommittedMs: number } {
    const oldest = this.pipeline.oldestUncommittedAtMs();
    const uncommittedMs = oldest === 0 ? 0 : Math.max(0, Date.now() - oldest);
    const schemaErrors = this.pipeline.total('writer_errors:schema');
    if (uncommittedMs <= this.stallMs) {
      this.schemaErrorsWhenCommitting = schemaErrors;
      return { state: 'committing', uncommittedMs };
    }
    return { state: schemaErrors > this.schemaErrorsWhenCommitting ? 'schema_mismatch' : 'stalled', uncommittedMs };
  }
}

function healthOf(
  o: GathererOptions,
  d: GathererHttpDeps,
  db: DbProbe,
  writers: WriterWatch,
  startedMs: number,
): { status: number; body: Record<string, unknown> } {
  const wanted = d.manager.connectionIds().length;
  const open = d.manager.openConnections();
  const healthy = d.manager.healthyConnections();
  const writer = writers.check();
  const unhealthy = !db.ok || open === 0 || writer.state === 'schema_mismatch';
  const status = unhealthy ? 'unhealthy' : healthy < wanted || writer.state === 'stalled' ? 'degraded' : 'healthy';
  return {
    status: status === 'unhealthy' ? 503 : 200,
    body: {
      status,
      ws_connections: open,
      ws_connections_healthy: healthy,
      ws_connections_wanted: wanted,
      db: db.ok ? 'connected' : 'unreachable',
      db_checked_ms_ago: Date.now() - db.checkedAt,
      writer: writer.state,
      writer_pending_rows: d.pipeline.total('pending_rows'),
      writer_oldest_uncommitted_ms: writer.uncommittedMs,
      gatherer: o.gathererId,
      markets: d.manager.marketCount(),
      subscribed: d.manager.allSubscribed(),
      subscriptions: d.manager.subscriptionCount(),
      workers: d.pipeline.slots.length,
      worker_restarts: d.pipeline.restarts(),
      gaps_recorded: d.gaps.stats.recorded,
      gaps_recovered: d.gaps.stats.recovered,
      uptime_s: Math.round((Date.now() - startedMs) / 1000),
    },
  };
}

function adminPollRoute(o: GathererOptions, d: GathererHttpDeps): Route {
  const loopbackOnly = isLoopback(o.http.adminHost);
  return {
    method: 'POST',
    path: '/admin/poll-market',
    handler: async (req) => {
      // Admin shares the health port (:8080, as the runbooks use it) but answers only callers on the
      // admin address: loopback unless http.adminHost names another.
      if (loopbackOnly && !isLoopback(req.remoteAddress)) return json(403, { error: 'admin is loopback-only', code: 'KDP_ERR_ADMIN_UNAUTHORIZED' });
      if (!bearerMatches(req, o.http.adminToken)) return json(401, { error: 'unauthorized', code: 'KDP_ERR_ADMIN_UNAUTHORIZED' });
      const ticker = req.query.get('ticker');
      if (!ticker) return json(400, { error: 'ticker required', code: 'KDP_ERR_USAGE' });
      try {
        const r = await d.poller.pollNow(ticker);
        return json(200, { ticker: r.ticker, snapshot_ts: r.snapshotTs, yes_levels: r.yesLevels, no_levels: r.noLevels });
      } catch (err) {
        const code = (err as { code?: string }).code ?? 'KDP_ERR_INTERNAL';
        return json(502, { error: (err as Error).message, code });
      }
    },
  };
}

export async function startGathererHttp(o: GathererOptions, d: GathererHttpDeps): Promise<GathererHttp> {
  const db = startDbProbe(d.pool);
  const started = Date.now();
  const writers = new WriterWatch(d.pipeline, o.pipeline.commitStallMs);
  const health = (): { status: number; body: Record<string, unknown> } => healthOf(o, d, db, writers, started);
  const counters = new CounterSync();
  const healthRoute: Route = {
    method: 'GET',
    path: '/health',
    handler: () => {
      const h = health();
      return json(h.status, h.body);
    },
  };
  const metricsServer = await startHttpServer(o.http.host, o.http.metricsPort, [
    {
      method: 'GET',
      path: '/metrics',
      handler: async () => {
        syncMetrics(d, counters);
        return { status: 200, body: await d.registry.metrics(), contentType: d.registry.contentType };
      },
    },
  ]);
  const healthServer = await startHttpServer(o.http.host, o.http.healthPort, [healthRoute, adminPollRoute(o, d)]);
  return {
    healthPort: healthServer.port,
    metricsPort: metricsServer.port,
    health,
    close() {
      db.stop();
      metricsServer.close();
      healthServer.close();
    },
  };
}
