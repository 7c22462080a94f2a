// Wiring of the gatherer's REST control plane from resolved options: signer (when a key is
// configured), REST client, market registry, snapshot poller and trade backfill. The service
// (src/gatherer/service.ts) owns the database pool, the writer and the metrics registry and
// passes them in; it subscribes the connection manager to the registry's events.
import type { Logger } from '../core/log';
import { KdpError } from '../core/errors';
import type { GATHERER_METRICS, MetricSet } from '../core/metrics';
import { KalshiSigner } from './auth';
import { TradeBackfill } from './backfill';
import type { Clock } from './clock';
import type { GathererRestOptions } from './options';
import { SnapshotPoller } from './poller';
import { MarketRegistry } from './registry';
import type { Queryable } from './registry-store';
import { RestClient } from './rest';
import type { WriteRows } from './rows';

export interface ControlPlaneDeps {
  /** Gatherer database (pg Pool). */
  readonly db: Queryable;
  /** One transaction per call, with its ingest_batches row (src/copy/). */
  readonly writeRows: WriteRows;
  /** This gatherer's name (provenance). */
  readonly gatherer: string;
  readonly metrics?: MetricSet<typeof GATHERER_METRICS>;
  readonly log?: Logger;
  readonly clock?: Clock;
}

export interface RestControlPlane {
  readonly signer: KalshiSigner | undefined;
  readonly rest: RestClient;
  readonly registry: MarketRegistry;
  readonly poller: SnapshotPoller;
  readonly backfill: TradeBackfill;
  /** Discovery (throws if it fails; retry), then reconcile timer and, if enabled, the poller. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Loads the signing key once when both keyId and privateKeyPath are set. */
export function loadSigner(opts: Pick<GathererRestOptions, 'keyId' | 'privateKeyPath'>): KalshiSigner | undefined {
  if (!opts.keyId && !opts.privateKeyPath) return undefined;
  if (!opts.keyId || !opts.privateKeyPath) {
    throw new KdpError('KDP_ERR_CONFIG_MISSING', 'keyId and privateKeyPath must be set together', {
      key: opts.keyId ? 'privateKeyPath' : 'keyId',
    });
  }
  return KalshiSigner.fromPemFile(opts.keyId, opts.privateKeyPath);
}

export function createRestControlPlane(opts: GathererRestOptions, deps: ControlPlaneDeps): RestControlPlane {
  const signer = loadSigner(opts);
  const common = { clock: deps.clock, log: deps.log };
  const rest = new RestClient(opts, { ...common, signer, metrics: deps.metrics });
  const registry = new MarketRegistry(opts, {
    ...common,
    rest,
    db: deps.db,
    metrics: deps.metrics,
  });
  const poller = new SnapshotPoller(opts, {
    ...common,
    rest,
    tickers: () => registry.activeTickers(),
    writeRows: deps.writeRows,
    gatherer: deps.gatherer,
    metrics: deps.metrics,
  });
  const backfill = new TradeBackfill(opts, {
    ...common,
    rest,
    writeRows: deps.writeRows,
    gatherer: deps.gatherer,
    metrics: deps.metrics,
  });
  return {
    signer,
    rest,
    registry,
    poller,
    backfill,
    async start() {
      await registry.start();
      if (opts.pollEnabled) poller.start();
    },
    async stop() {
      backfill.stop();
      registry.stop();
      rest.stop();
      await poller.stop();
      await registry.whenIdle();
    },
  };
}
