// The gatherer's options: one spec, validated once into GathererOptions.
import { KdpError } from '../core/errors';
import { loadConfig } from '../config/load';
import { DATABASE_SPEC, HTTP_SPEC, LOG_SPEC } from '../config/specs';
import type { Resolved, Spec } from '../config/validate';
import { COPY_WRITER_SPEC } from '../copy/options';
import { checkWorkerWriterOptions, PROCESSOR_SPEC } from '../workers/options';
import { GATHERER_REST_SPEC } from './options';

const MiB = 1024 * 1024;

export const CONNECTIONS_SPEC = {
  count: { kind: 'int', doc: 'WebSocket connections to the exchange', default: 2, min: 1, max: 200 },
  marketsPerSubscription: {
    kind: 'int',
    doc: 'markets per subscribe command (halved on error 26); community recorders use 250-1000',
    default: 250,
    min: 1,
    max: 10_000,
  },
  marketsPerSubscriptionMin: { kind: 'int', doc: 'smallest shard after halving', default: 10, min: 1 },
  silenceTimeoutMs: {
    kind: 'int',
    doc: 'no frame for this long = dead connection (Kalshi pings every 10 s)',
    default: 30_000,
    min: 100,
  },
  backoffInitialMs: { kind: 'int', doc: 'first reconnect delay ceiling', default: 1_000, min: 1 },
  backoffMaxMs: { kind: 'int', doc: 'largest reconnect delay ceiling', default: 300_000, min: 1 },
  startJitterMs: { kind: 'int', doc: 'random delay before each first connect', default: 3_000, min: 0 },
  handshakeTimeoutMs: { kind: 'int', doc: 'WebSocket upgrade timeout', default: 10_000, min: 100 },
  commandTimeoutMs: { kind: 'int', doc: 'reply timeout for a command before reconnecting', default: 15_000, min: 100 },
  wsMaxPayloadBytes: { kind: 'int', doc: 'largest WebSocket message accepted by the socket', default: 16 * MiB, min: 1024 },
  useYesPrice: { kind: 'boolean', doc: 'use_yes_price sent on orderbook subscriptions', default: false },
} as const satisfies Spec;

export const PIPELINE_SPEC = {
  workers: { kind: 'int', doc: 'worker threads (each owns a ring and a database connection)', default: 2, min: 1, max: 64 },
  ringBytes: { kind: 'int', doc: 'bytes per worker ring (power of two)', default: 32 * MiB, min: 64 * 1024, max: 1024 * MiB },
  frameBytesMax: { ...PROCESSOR_SPEC.frameBytesMax, doc: 'largest bus frame; larger messages are refused and counted', default: 1 * MiB },
  onRingFull: { kind: 'enum', doc: 'pause the socket, or drop + count + resync', values: ['pause', 'drop'], default: 'pause' },
  recentTradeIdsMax: {
    ...PROCESSOR_SPEC.recentTradeIdsMax,
    doc: 'trade ids remembered per worker to drop duplicated frames',
    default: 100_000,
    min: 0,
  },
  snapshotsHeldMax: { ...PROCESSOR_SPEC.snapshotsHeldMax },
  snapshotHoldMs: { ...PROCESSOR_SPEC.snapshotHoldMs },
  commitStallMs: {
    kind: 'int',
    doc: 'a batch waiting longer than this to commit makes /health degraded (writes failing), unhealthy when the failures are schema errors',
    default: 30_000,
    min: 1_000,
  },
  drainTimeoutMs: {
    kind: 'int',
    doc: "graceful-stop bound for draining rings and committing the writers' rows; rows left after it make the stop report failure (exit 1)",
    default: 30_000,
    min: 100,
  },
  workerRestartBackoffInitialMs: { kind: 'int', doc: 'first relaunch delay ceiling of a dead worker (full jitter)', default: 500, min: 1 },
  workerRestartBackoffMaxMs: { kind: 'int', doc: 'largest relaunch delay ceiling of a dead worker', default: 30_000, min: 1 },
  workerRestartsMax: {
    kind: 'int',
    doc: 'relaunches in a row of a worker that dies again within workerStableMs; one more death stops the gatherer (KDP_ERR_WORKER_FAILED)',
    default: 10,
    min: 0,
    max: 1_000,
  },
  workerStableMs: { kind: 'int', doc: 'a worker up this long counts as healthy: its relaunch count and backoff start over', default: 60_000, min: 1 },
} as const satisfies Spec;

// The limits a worker's COPY writers and frame processor check are the same specs (ranges) here, so
// a config the gatherer starts with is one every worker accepts; the gatherer sets its own defaults.
const COPY = COPY_WRITER_SPEC;
export const WRITER_SPEC = {
  batchRowsMax: { ...COPY.batchRowsMax, doc: 'rows per COPY batch', default: 20_000 },
  batchBytesMax: { ...COPY.batchBytesMax, doc: 'bytes per COPY batch', default: 8 * MiB },
  flushIntervalMs: { ...COPY.flushIntervalMs, doc: 'longest a row waits before its batch is flushed', default: 50 },
  pendingRowsMax: { ...COPY.pendingRowsMax, doc: 'rows held in memory per table before backpressure (>= batchRowsMax)', default: 200_000 },
  retryAttemptsMax: { ...COPY.retryAttemptsMax, doc: 'attempts per retry round before the error is reported (rows stay pending)', default: 8 },
  retryBackoffInitialMs: { ...COPY.retryBaseMs, doc: 'first retry delay', default: 100 },
  retryBackoffMaxMs: { ...COPY.retryMaxMs, doc: 'largest retry delay (>= retryBackoffInitialMs)', default: 10_000 },
} as const satisfies Spec;

export const EXCHANGE_SPEC = {
  wsUrl: { kind: 'string', doc: 'exchange WebSocket URL', default: 'wss://external-api-ws.kalshi.com/trade-api/ws/v2' },
} as const satisfies Spec;

export const GATHERER_SPEC = {
  gathererId: { kind: 'string', doc: "this gatherer's name (provenance on every row)", pattern: /^[a-z0-9][a-z0-9_-]{0,31}$/ },
  database: { kind: 'object', doc: "the gatherer's own PostgreSQL", fields: DATABASE_SPEC },
  exchange: { kind: 'object', doc: 'exchange WebSocket endpoint', fields: EXCHANGE_SPEC },
  rest: { kind: 'object', doc: 'REST client, signing key, market registry, snapshot poller, trade backfill', fields: GATHERER_REST_SPEC },
  connections: { kind: 'object', doc: 'WebSocket connections', fields: CONNECTIONS_SPEC },
  pipeline: { kind: 'object', doc: 'rings and worker threads', fields: PIPELINE_SPEC },
  writer: { kind: 'object', doc: 'COPY writers', fields: WRITER_SPEC },
  http: { kind: 'object', doc: 'health, metrics and admin endpoints', fields: HTTP_SPEC },
  log: { kind: 'object', doc: 'logging', fields: LOG_SPEC },
} as const satisfies Spec;

export type GathererOptions = Resolved<typeof GATHERER_SPEC>;

function atLeast(key: string, value: number, floorKey: string, floor: number): void {
  if (value < floor) {
    throw new KdpError('KDP_ERR_CONFIG_INVALID', `config ${key}: must be >= ${floorKey} (${floor}), got ${value}`, { key, keys: [key, floorKey] });
  }
}

/**
 * Cross-field rules the per-field spec cannot say, all of them: the gatherer's own, and the writer
 * rules its workers apply (checkWorkerWriterOptions runs the COPY writer's own check). Run at config
 * load and again by startGatherer, so a bad config fails start-up before any worker starts.
 */
export function checkGathererOptions(o: GathererOptions): GathererOptions {
  const ring = o.pipeline.ringBytes;
  if ((ring & (ring - 1)) !== 0) {
    throw new KdpError('KDP_ERR_CONFIG_INVALID', `config pipeline.ringBytes: must be a power of two, got ${ring}`, { key: 'pipeline.ringBytes' });
  }
  if (ring < 4 * o.pipeline.frameBytesMax) {
    throw new KdpError('KDP_ERR_CONFIG_INVALID', 'config pipeline.ringBytes: must be at least 4 x pipeline.frameBytesMax', {
      key: 'pipeline.ringBytes',
      keys: ['pipeline.ringBytes', 'pipeline.frameBytesMax'],
    });
  }
  const { connections: c, pipeline: p } = o;
  atLeast('connections.backoffMaxMs', c.backoffMaxMs, 'connections.backoffInitialMs', c.backoffInitialMs);
  atLeast('pipeline.workerRestartBackoffMaxMs', p.workerRestartBackoffMaxMs, 'pipeline.workerRestartBackoffInitialMs', p.workerRestartBackoffInitialMs);
  checkWorkerWriterOptions(o.writer);
  return o;
}

export function loadGathererConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env): GathererOptions {
  return checkGathererOptions(loadConfig(GATHERER_SPEC, file, env));
}
