// `kdp gatherer`: one gatherer process. The main thread is the ingest thread and the control
// plane: it owns the WebSocket connections (connection manager), routes every frame onto a worker
// ring untouched, follows the market registry, and turns the workers' gap reports into ledger rows,
// resyncs and trade backfills. Worker threads parse and COPY (src/workers/task.ts).
import { Pool } from 'pg';
import { backoffDelayMs } from '../core/backoff';
import { KdpError } from '../core/errors';
import { withClient } from '../core/pgclient';
import type { Logger } from '../core/log';
import { createMetrics, createRegistry, GATHERER_METRICS, type MetricSet } from '../core/metrics';
import { writeRowsOnce } from '../copy/once';
import { FrameCodec } from '../ingest/frame';
import { CHANNELS } from '../kalshi/protocol';
import { RingRouter } from '../ingest/router';
import { requireSchema } from '../schema/migrate';
import type { TimeSeriesTableName } from '../schema/tables';
import { createRestControlPlane, type RestControlPlane } from './controlplane';
import { ConnectionManager } from './connections';
import { checkGathererOptions, type GathererOptions } from './config';
import { GapTracker, readRestartState } from './gaps';
import { startGathererHttp, type GathererHttp } from './http';
import { Pipeline } from './pipeline';

export interface Gatherer {
  readonly options: GathererOptions;
  readonly pipeline: Pipeline;
  readonly manager: ConnectionManager;
  readonly controlPlane: RestControlPlane;
  readonly router: RingRouter;
  readonly gaps: GapTracker;
  readonly http: GathererHttp;
  readonly metrics: MetricSet<typeof GATHERER_METRICS>;
  /**
   * Resolves (never rejects) when the gatherer cannot go on: a worker kept dying past its relaunch
   * limit (KDP_ERR_WORKER_FAILED). The owner must stop it; `kdp gatherer` then exits non-zero.
   */
  readonly failed: Promise<KdpError>;
  /** Graceful stop: close sockets, drain rings, commit, close. Resolves true when nothing was left behind. */
  stop(): Promise<boolean>;
}

// A worker holds at most a ring (32 MiB) of frames plus its writers' pending rows: at the exchange's
// rates that is seconds of data; a minute of trade backfill covers it with a wide margin.
const WORKER_LOSS_LOOKBACK_US = 60_000_000;

const NOTICE_FLUSH_INTERVAL_MS = 100;

async function checkDatabase(pool: Pool): Promise<void> {
  await withClient(pool, (client) => requireSchema(client, 'gatherer'));
}

/** The pipeline, router, connection manager and gap tracker call one another; built in turn, bound late. */
interface Parts {
  manager: ConnectionManager;
  router: RingRouter;
  gaps: GapTracker;
}

export async function startGatherer(o: GathererOptions, log: Logger): Promise<Gatherer> {
  // Options resolved without loadGathererConfig get the same cross-field checks: a config the
  // workers would refuse fails here, before the database is opened or a worker starts.
  checkGathererOptions(o);
  const pool = openPool(o, log);
  await checkDatabase(pool);
  // Before anything of this process writes: see readRestartState.
  const restart = await readRestartState(pool, Date.now() * 1000);
  let failedWith: (err: KdpError) => void = () => undefined;
  const failed = new Promise<KdpError>((resolve) => (failedWith = resolve));
  const registry = createRegistry();
  const metrics = createMetrics(GATHERER_METRICS, registry);
  const writeRows = async (table: TimeSeriesTableName, rowLines: string[]): Promise<void> => {
    if (rowLines.length === 0) return;
    await withClient(pool, (client) => writeRowsOnce(client, table, rowLines, `${o.gathererId}/rest/${table}`));
  };
  const controlPlane = createRestControlPlane(o.rest, { db: pool, writeRows, gatherer: o.gathererId, metrics, log: log.child({ part: 'rest' }) });
  const parts = {} as Parts;
  const pipeline = createPipeline(o, parts, controlPlane, metrics, failedWith, log);
  const router = createRouter(o, pipeline);
  const manager = createManager(o, router, parts, controlPlane, metrics, log);
  const gaps = new GapTracker(o.gathererId, pool, manager, controlPlane.backfill, metrics, log.child({ part: 'gaps' }), () =>
    controlPlane.registry.reconcile(),
  );
  Object.assign(parts, { manager, router, gaps });
  controlPlane.registry.on('marketsAdded', (tickers) => manager.addMarkets(tickers));
  controlPlane.registry.on('marketsRemoved', (tickers) => manager.removeMarkets(tickers));

  const http = await startGathererHttp(o, { registry, metrics, pipeline, manager, router, gaps, pool, poller: controlPlane.poller, log });
  pipeline.start();
  await discoverWithRetry(controlPlane, log);
  manager.addMarkets(controlPlane.registry.activeTickers());
  manager.start();
  gaps.onStarted(controlPlane.registry.activeTickers(), restart);
  log.info({ markets: manager.marketCount(), workers: o.pipeline.workers, connections: o.connections.count }, 'gatherer started');

  // Ring-drop notices of a connection that went quiet after its drop, and notices queued behind a
  // full ring, go out within this interval instead of waiting for the connection's next frame.
  const noticeFlush = setInterval(() => router.flushNotices(), NOTICE_FLUSH_INTERVAL_MS);
  noticeFlush.unref();

  let stopped: Promise<boolean> | undefined;
  const stop = (): Promise<boolean> =>
    (stopped ??= (async () => {
      log.info('stopping: closing connections, draining rings');
      await manager.stop();
      clearInterval(noticeFlush);
      // Frames held for a full ring (pause mode) go in before the rings close.
      const heldLeft = await router.drainBacklog(o.pipeline.drainTimeoutMs);
      if (heldLeft > 0) log.error({ frames: heldLeft }, 'frames held for a full ring were left behind at stop');
      const drained = (await pipeline.stop()) && heldLeft === 0;
      await gaps.stop();
      await controlPlane.stop();
      http.close();
      await pool.end();
      log.info({ drained }, 'gatherer stopped');
      return drained;
    })());
  return { options: o, pipeline, manager, controlPlane, router, gaps, http, metrics, failed, stop };
}

function openPool(o: GathererOptions, log: Logger): Pool {
  const pool = new Pool({
    connectionString: o.database.url,
    max: o.database.poolSize,
    connectionTimeoutMillis: o.database.connectTimeoutMs,
    statement_timeout: o.database.statementTimeoutMs,
  });
  pool.on('error', (err) => log.warn({ err: err.message }, 'idle database connection failed'));
  // pg-pool listens for errors only on idle clients: a checked-out client whose server goes away
  // emits 'error' with no listener and would crash the process (found by the chaos run stopping the
  // gatherer's PostgreSQL). The query in flight fails with its own error, which its caller retries.
  pool.on('connect', (client) => client.on('error', (err) => log.warn({ err: err.message }, 'database connection failed while in use')));
  return pool;
}

function createPipeline(
  o: GathererOptions,
  parts: Parts,
  controlPlane: RestControlPlane,
  metrics: MetricSet<typeof GATHERER_METRICS>,
  failedWith: (err: KdpError) => void,
  log: Logger,
): Pipeline {
  const task = {
    gathererId: o.gathererId,
    databaseUrl: o.database.url,
    frameBytesMax: o.pipeline.frameBytesMax,
    writer: o.writer,
    recentTradeIdsMax: o.pipeline.recentTradeIdsMax,
    snapshotsHeldMax: o.pipeline.snapshotsHeldMax,
    snapshotHoldMs: o.pipeline.snapshotHoldMs,
    logLevel: o.log.level,
    drainTimeoutMs: o.pipeline.drainTimeoutMs,
  };
  const restart = {
    backoffInitialMs: o.pipeline.workerRestartBackoffInitialMs,
    backoffMaxMs: o.pipeline.workerRestartBackoffMaxMs,
    restartsMax: o.pipeline.workerRestartsMax,
    stableMs: o.pipeline.workerStableMs,
  };
  const p = o.pipeline;
  return new Pipeline(
    { workers: p.workers, ringBytes: p.ringBytes, frameBytesMax: p.frameBytesMax, task, restart },
    {
      reply: (r) => parts.manager.onReply(r),
      gap: (g) => parts.gaps.onWorkerGap(g),
      lifecycle: (_channel, envelope) => void controlPlane.registry.applyLifecycle(envelope),
      workerRestarted: (index) => {
        metrics.worker_restarts_total.inc();
        // The dead worker may have held frames received well before its connections' last frame;
        // the trade backfill after the reconnect looks back this far to cover them.
        const lossSinceUs = Date.now() * 1000 - WORKER_LOSS_LOOKBACK_US;
        for (const connId of parts.manager.connectionIds()) {
          if (parts.router.ringOf(connId) === index) parts.manager.forceReconnect(connId, 'worker_restart', lossSinceUs);
        }
      },
      workerFailed: (_index, err) => {
        metrics.worker_failures_total.inc();
        failedWith(err);
      },
      flush: (table, rows, seconds, minReceivedUs) => {
        metrics.writer_flush_duration_seconds.observe({ table }, seconds);
        if (rows > 0) metrics.frame_to_commit_seconds.observe({ table }, Math.max(0, Date.now() * 1000 - minReceivedUs) / 1e6);
      },
    },
    log.child({ part: 'pipeline' }),
  );
}

function createRouter(o: GathererOptions, pipeline: Pipeline): RingRouter {
  return new RingRouter(pipeline.rings, new FrameCodec(o.pipeline.frameBytesMax), {
    onRingFull: o.pipeline.onRingFull as 'pause' | 'drop',
    drainPollMs: 2,
    noticeBacklogMax: 4096,
    // What `ws` delivers after socket.pause() is at most the chunk it had read (<= 64 KiB) plus
    // one message (<= frameBytesMax) per connection; half a ring covers every connection of a
    // ring with a wide margin (ringBytes >= 4 x frameBytesMax is validated).
    heldBytesMax: o.pipeline.ringBytes / 2,
  });
}

function createManager(
  o: GathererOptions,
  router: RingRouter,
  parts: Parts,
  controlPlane: RestControlPlane,
  metrics: MetricSet<typeof GATHERER_METRICS>,
  log: Logger,
): ConnectionManager {
  const c = o.connections;
  const signer = controlPlane.signer;
  const userAgent = `kdp-gatherer/${o.gathererId}`;
  return new ConnectionManager(
    {
      wsUrl: o.exchange.wsUrl,
      connections: c.count,
      marketsPerSubscription: c.marketsPerSubscription,
      marketsPerSubscriptionMin: c.marketsPerSubscriptionMin,
      silenceTimeoutMs: c.silenceTimeoutMs,
      backoffInitialMs: c.backoffInitialMs,
      backoffMaxMs: c.backoffMaxMs,
      startJitterMs: c.startJitterMs,
      handshakeTimeoutMs: c.handshakeTimeoutMs,
      commandTimeoutMs: c.commandTimeoutMs,
      wsMaxPayloadBytes: c.wsMaxPayloadBytes,
      // Trades and tickers on all-markets subscriptions: a market's first trade arrives before its
      // book shard is subscribed (at 40,000 markets per-shard trade subscriptions lost 1.5 % of
      // trades, all of new markets' first seconds).
      marketChannels: [CHANNELS.orderbook],
      // event_lifecycle messages arrive on the market_lifecycle_v2 subscription (no channel of their
      // own); multivariate (KXMVE*) markets' lifecycle has its own channel, needed when they are recorded.
      globalChannels: [CHANNELS.lifecycle, CHANNELS.ticker, CHANNELS.trade, ...(o.rest.includeMultivariate ? [CHANNELS.multivariateLifecycle] : [])],
      useYesPrice: c.useYesPrice,
    },
    router,
    {
      disconnected: (connId, tickers, sinceUs, reason) => parts.gaps.onDisconnected(connId, tickers, sinceUs, reason),
      marketsSubscribed: (connId, tickers) => ledgerLateSubscriptions(connId, tickers, controlPlane, metrics, parts.gaps),
      resubscribed: (connId, tickers, sinceUs) => parts.gaps.onResubscribed(connId, tickers, sinceUs),
      error: (type) => metrics.ws_client_errors_total.inc({ type }),
      reconnect: () => metrics.reconnects_total.inc(),
    },
    // The user agent names the gatherer, so the exchange side (and the chaos checker reading the
    // simulator's truth) can tell which gatherer held a connection.
    () => ({ 'user-agent': userAgent, ...(signer ? signer.wsHeaders() : {}) }),
    log.child({ part: 'connections' }),
  );
}

/**
 * New markets (announced by 'created', or found late by a listing) whose book was subscribed after
 * they opened: their deltas before the subscription's snapshot are lost (no API returns them). One
 * ledger row per ack.
 */
function ledgerLateSubscriptions(
  connId: number,
  tickers: readonly string[],
  controlPlane: RestControlPlane,
  metrics: MetricSet<typeof GATHERER_METRICS>,
  gaps: GapTracker,
): void {
  const now = Date.now();
  const late: string[] = [];
  let openedMs = now;
  for (const t of tickers) {
    const created = controlPlane.registry.takeCreatedAt(t);
    const foundLate = controlPlane.registry.takeFoundLate(t);
    if (created === undefined && !foundLate) continue;
    if (created !== undefined) metrics.market_created_to_subscribed_seconds.observe((now - created) / 1000);
    const open = controlPlane.registry.market(t)?.openTimeMs;
    if (open === null || open === undefined || open >= now) continue;
    late.push(t);
    openedMs = Math.min(openedMs, open);
  }
  if (late.length > 0) gaps.onLateSubscription(connId, late, openedMs * 1000, now * 1000);
}

/** Market discovery must succeed before subscribing; retried with capped backoff until it does. */
async function discoverWithRetry(controlPlane: RestControlPlane, log: Logger): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await controlPlane.start();
      return;
    } catch (err) {
      const code = err instanceof KdpError ? err.code : 'KDP_ERR_INTERNAL';
      // No jitter: each gatherer has its own API key and rate limit, so nothing is shared to spread.
      const delayMs = backoffDelayMs(attempt, { initialMs: 500, maxMs: 30_000, jitter: 'none' });
      log.warn({ code, err: (err as Error).message, delayMs }, 'market discovery failed; retrying');
      await new Promise((r) => setTimeout(r, delayMs));
    }
  }
}
