// The gatherer's options: one spec, validated once into GathererOptions.
import { KdpError } from '../core/errors';
import { loadConfig } from '../config/load';
import { DATABASE_SPEC, HTTP_SPEC, LOG_SPEC } from '../config/specs';
import type { Resolved, Spec } from '../config/validate';
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
  frameBytesMax: { kind: 'int', doc: 'largest bus frame; larger messages are refused and counted', default: 1 * MiB, min: 1024 },
  onRingFull: { kind: 'enum', doc: 'pause the socket, or drop + count + resync', values: ['pause', 'drop'], default: 'pause' },
  recentTradeIdsMax: { kind: 'int', doc: 'trade ids remembered per worker to drop duplicated frames', default: 100_000, min: 0 },
  drainTimeoutMs: { kind: 'int', doc: 'graceful-stop bound for draining rings and flushing', default: 30_000, min: 100 },
} as const satisfies Spec;

export const WRITER_SPEC = {
  batchRowsMax: { kind: 'int', doc: 'rows per COPY batch', default: 20_000, min: 1 },
  batchBytesMax: { kind: 'int', doc: 'bytes per COPY batch', default: 8 * MiB, min: 1024 },
  flushIntervalMs: { kind: 'int', doc: 'longest a row waits before its batch is flushed', default: 50, min: 1 },
  pendingRowsMax: { kind: 'int', doc: 'rows held in memory per table before backpressure', default: 200_000, min: 1 },
  retryAttemptsMax: { kind: 'int', doc: 'attempts per retry round before the error is reported (rows stay pending)', default: 8, min: 1 },
  retryBackoffInitialMs: { kind: 'int', doc: 'first retry delay', default: 100, min: 1 },
  retryBackoffMaxMs: { kind: 'int', doc: 'largest retry delay', default: 10_000, min: 1 },
} as const satisfies Spec;

export const EXCHANGE_SPEC = {
  wsUrl: { kind: 'string', doc: 'exchange WebSocket URL', default: 'wss://external-api-ws.kalshi.com/trade-api/ws/v2' },
} as const satisfies Spec;

export const GATHERER_SPEC = {
  gathererId: { kind: 'string', doc: 'this gatherer\'s name (provenance on every row)', pattern: /^[a-z0-9][a-z0-9_-]{0,31}$/ },
  database: { kind: 'object', doc: 'the gatherer\'s own PostgreSQL', fields: DATABASE_SPEC },
  exchange: { kind: 'object', doc: 'exchange WebSocket endpoint', fields: EXCHANGE_SPEC },
  rest: { kind: 'object', doc: 'REST client, signing key, market registry, snapshot poller, trade backfill', fields: GATHERER_REST_SPEC },
  connections: { kind: 'object', doc: 'WebSocket connections', fields: CONNECTIONS_SPEC },
  pipeline: { kind: 'object', doc: 'rings and worker threads', fields: PIPELINE_SPEC },
  writer: { kind: 'object', doc: 'COPY writers', fields: WRITER_SPEC },
  http: { kind: 'object', doc: 'health, metrics and admin endpoints', fields: HTTP_SPEC },
  log: { kind: 'object', doc: 'logging', fields: LOG_SPEC },
} as const satisfies Spec;

export type GathererOptions = Resolved<typeof GATHERER_SPEC>;

/** Cross-field rules the per-field spec cannot say. */
export function checkGathererOptions(o: GathererOptions): GathererOptions {
  const ring = o.pipeline.ringBytes;
  if ((ring & (ring - 1)) !== 0) {
    throw new KdpError('KDP_ERR_CONFIG_INVALID', `config pipeline.ringBytes: must be a power of two, got ${ring}`, { key: 'pipeline.ringBytes' });
  }
  if (ring < 4 * o.pipeline.frameBytesMax) {
    throw new KdpError('KDP_ERR_CONFIG_INVALID', 'config pipeline.ringBytes: must be at least 4 x pipeline.frameBytesMax', {
      key: 'pipeline.ringBytes',
    });
  }
  if (o.connections.backoffMaxMs < o.connections.backoffInitialMs) {
    throw new KdpError('KDP_ERR_CONFIG_INVALID', 'config connections.backoffMaxMs: must be >= backoffInitialMs', { key: 'connections.backoffMaxMs' });
  }
  return o;
}

export function loadGathererConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env): GathererOptions {
  return checkGathererOptions(loadConfig(GATHERER_SPEC, file, env));
}
