// Options of the gatherer's REST control plane: client, signing, market registry, snapshot
// poller and trade backfill. One flat section (the service nests it, e.g. under `exchange:`);
// every default carries its unit in its name.
import type { Resolved, Spec } from '../config/validate';

export const REST_CLIENT_SPEC = {
  restBaseUrl: {
    kind: 'string',
    doc: 'Kalshi REST base URL including /trade-api/v2',
    default: 'https://external-api.kalshi.com/trade-api/v2',
    pattern: /^https?:\/\/[^\s]+$/,
  },
  restTokensPerSec: {
    kind: 'number',
    doc: 'client-side token bucket refill rate (Basic tier: 200)',
    default: 200,
    min: 0.001,
    max: 1_000_000,
  },
  restBurstTokens: {
    kind: 'number',
    doc: 'token bucket capacity (burst)',
    default: 200,
    min: 1,
    max: 1_000_000,
  },
  restCostPerRequest: {
    kind: 'number',
    doc: 'tokens one read costs (Kalshi: 10)',
    default: 10,
    min: 0,
    max: 1_000_000,
  },
  restTimeoutMs: {
    kind: 'int',
    doc: 'per-attempt request timeout',
    default: 10_000,
    min: 10,
    max: 600_000,
  },
  restRetryMax: {
    kind: 'int',
    doc: 'retries after the first attempt on 429, 5xx or network errors',
    default: 6,
    min: 0,
    max: 100,
  },
  backoffInitialMs: {
    kind: 'int',
    doc: 'first backoff ceiling (full jitter: wait uniform in [0, ceiling])',
    default: 250,
    min: 0,
    max: 600_000,
  },
  backoffMaxMs: {
    kind: 'int',
    doc: 'largest backoff ceiling',
    default: 30_000,
    min: 0,
    max: 3_600_000,
  },
  restMaxQueuedRequests: {
    kind: 'int',
    doc: 'requests allowed to wait for tokens before new ones are refused',
    default: 10_000,
    min: 1,
    max: 10_000_000,
  },
  restMaxResponseBytes: {
    kind: 'int',
    doc: 'largest response body accepted',
    default: 64 * 1024 * 1024,
    min: 1024,
  },
  restMaxPages: {
    kind: 'int',
    doc: 'page limit of one paginated listing',
    default: 10_000,
    min: 1,
  },
  keyId: { kind: 'string', doc: 'Kalshi API key id (KALSHI-ACCESS-KEY)', optional: true },
  privateKeyPath: {
    kind: 'string',
    doc: 'path of the PEM private key used to sign requests',
    optional: true,
    secret: true,
  },
  signRestRequests: {
    kind: 'boolean',
    doc: 'sign REST market-data requests too when a key is configured',
    default: true,
  },
} as const satisfies Spec;

export const REGISTRY_SPEC = {
  subscribeLeadMs: {
    kind: 'int',
    doc: 'subscribe unopened markets this long before open_time (no WS event marks the open)',
    default: 60_000,
    min: 0,
  },
  unsubscribeAfterCloseMs: {
    kind: 'int',
    doc: "keep a market subscribed this long past its close_time by this machine's clock (a determined/settled event ends it at once): the exchange's clock may run behind ours",
    default: 300_000,
    min: 0,
  },
  includeMultivariate: {
    kind: 'boolean',
    doc: 'also track multivariate (KXMVE*) markets (mve_filter is not sent)',
    default: false,
  },
  reconcileIntervalMs: {
    kind: 'int',
    doc: 'period of the full re-listing that repairs missed lifecycle events',
    default: 600_000,
    min: 1_000,
  },
  recentlyClosedMs: {
    kind: 'int',
    doc: 'also list (and persist, not track) markets closed this recently at discovery and reconcile; 0 = off',
    default: 86_400_000,
    min: 0,
  },
  discoverMetadata: {
    kind: 'boolean',
    doc: 'list series and events at discovery and reconcile',
    default: true,
  },
  createdFetchRetries: {
    kind: 'int',
    doc: 'look-ups (batched GET /markets?tickers=) of a market after `created` while it is not listed yet',
    default: 10,
    min: 1,
    max: 1_000,
  },
  createdFetchDelayMs: {
    kind: 'int',
    doc: 'wait between those attempts',
    default: 500,
    min: 0,
    max: 600_000,
  },
  marketsPageLimit: {
    kind: 'int',
    doc: 'GET /markets page size',
    default: 1000,
    min: 1,
    max: 1000,
  },
  eventsPageLimit: { kind: 'int', doc: 'GET /events page size', default: 200, min: 1, max: 200 },
  registryUpsertBatchRows: {
    kind: 'int',
    doc: 'rows per registry upsert statement',
    default: 1000,
    min: 1,
    max: 50_000,
  },
  lifecycleQueueMax: {
    kind: 'int',
    doc: 'lifecycle messages waiting to be applied before new ones are refused',
    default: 100_000,
    min: 1,
  },
} as const satisfies Spec;

export const POLLER_SPEC = {
  pollEnabled: { kind: 'boolean', doc: 'run the REST order-book snapshot poller', default: true },
  pollIntervalMs: {
    kind: 'int',
    doc: 'every active market is polled once per interval',
    default: 900_000,
    min: 1_000,
  },
  pollBatchTickers: {
    kind: 'int',
    doc: 'tickers per GET /markets/orderbooks request (Kalshi max 100)',
    default: 100,
    min: 1,
    max: 100,
  },
  pollUseBatchEndpoint: {
    kind: 'boolean',
    doc: 'use GET /markets/orderbooks; else one GET per market',
    default: true,
  },
  pollInFlightMax: {
    kind: 'int',
    doc: 'poll requests in flight at once when answers come slower than the schedule (the rate limit still applies)',
    default: 4,
    min: 1,
    max: 32,
  },
  pollDepth: {
    kind: 'int',
    doc: 'levels per side for single-market polls (0 = full book)',
    default: 0,
    min: 0,
    max: 100,
  },
} as const satisfies Spec;

export const BACKFILL_SPEC = {
  backfillConcurrency: {
    kind: 'int',
    doc: 'backfill windows fetched at once',
    default: 2,
    min: 1,
    max: 64,
  },
  backfillMarginMs: {
    kind: 'int',
    doc: 'margin added on both sides of a backfill window',
    default: 5_000,
    min: 0,
    max: 3_600_000,
  },
  backfillPageLimit: {
    kind: 'int',
    doc: 'GET /markets/trades page size',
    default: 1000,
    min: 1,
    max: 1000,
  },
  backfillMaxQueuedWindows: {
    kind: 'int',
    doc: 'per-ticker windows waiting before new requests are refused',
    default: 100_000,
    min: 1,
  },
} as const satisfies Spec;

export const GATHERER_REST_SPEC = {
  ...REST_CLIENT_SPEC,
  ...REGISTRY_SPEC,
  ...POLLER_SPEC,
  ...BACKFILL_SPEC,
} as const satisfies Spec;

export type RestClientOptions = Resolved<typeof REST_CLIENT_SPEC>;
export type RegistryOptions = Resolved<typeof REGISTRY_SPEC>;
export type PollerOptions = Resolved<typeof POLLER_SPEC>;
export type BackfillOptions = Resolved<typeof BACKFILL_SPEC>;
export type GathererRestOptions = Resolved<typeof GATHERER_REST_SPEC>;
