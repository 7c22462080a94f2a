// The one owner of metric names. The seed runbooks and ops/prometheus/alerts.yml use these names;
// change one here and there together. Label sets are bounded (no per-market labels).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

type Def =
  | { readonly type: 'counter' | 'gauge'; readonly help: string; readonly labels?: readonly string[] }
  | { readonly type: 'histogram'; readonly help: string; readonly labels?: readonly string[]; readonly buckets: readonly number[] };

export const GATHERER_METRICS = {
  ws_client_connected: { type: 'gauge', help: 'WebSocket connections currently open to the exchange' },
  ws_client_messages_received_total: { type: 'counter', help: 'WebSocket messages received from the exchange' },
  ws_client_bytes_received_total: { type: 'counter', help: 'WebSocket payload bytes received from the exchange' },
  ws_client_errors_total: {
    type: 'counter',
    help: 'WebSocket errors by type: connect, http_<status> (handshake refused), stale, command_timeout, exchange_<code>',
    labels: ['type'],
  },
  conn_manager_connections: { type: 'gauge', help: 'Connections the connection manager wants open' },
  conn_manager_connections_healthy: { type: 'gauge', help: 'Connections open, subscribed and recently active' },
  conn_manager_subscriptions: { type: 'gauge', help: 'Live subscriptions (sids) across all connections' },
  conn_manager_markets_subscribed: { type: 'gauge', help: 'Markets covered by live order-book subscriptions' },
  reconnects_total: { type: 'counter', help: 'WebSocket reconnect attempts' },
  sequence_gaps_total: { type: 'counter', help: 'Sequence gaps and terminal subscription errors detected' },
  sequence_gaps_recovered_total: { type: 'counter', help: 'Gaps whose markets were resynchronised' },
  writer_seq_gaps_total: { type: 'counter', help: 'Gaps recorded in the gap ledger by the writers' },
  router_messages_dropped_total: {
    type: 'counter',
    help: 'Frames dropped because a ring was full (drop mode); each marks its subscription for resync',
  },
  router_ring_full_total: { type: 'counter', help: 'Times a ring was full when the ingest thread wrote to it' },
  router_frames_held_total: { type: 'counter', help: 'Frames kept in order for a full ring (pause mode) and written once it had room' },
  router_ring_used_bytes: { type: 'gauge', help: 'Bytes waiting in each worker ring', labels: ['worker'] },
  market_created_to_subscribed_seconds: {
    type: 'histogram',
    help: "From a market's lifecycle 'created' message to the ack of its order-book subscription",
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300],
  },
  messages_rejected_total: { type: 'counter', help: 'Messages rejected as malformed or unknown, by error code', labels: ['code'] },
  writer_inserts_total: { type: 'counter', help: 'Rows committed to the gatherer database', labels: ['table'] },
  writer_batches_total: { type: 'counter', help: 'COPY batches committed', labels: ['table'] },
  writer_errors_total: { type: 'counter', help: 'Writer errors by type', labels: ['type'] },
  writer_flush_duration_seconds: {
    type: 'histogram',
    help: 'Time to COPY and commit one batch',
    labels: ['table'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  },
  writer_pending_rows: { type: 'gauge', help: 'Rows parsed but not yet committed' },
  writer_oldest_uncommitted_seconds: {
    type: 'gauge',
    help: 'Age of the oldest batch a writer still has to commit (0 when none waits); grows while every attempt fails',
  },
  worker_snapshots_unbounded_total: {
    type: 'counter',
    help: "WS snapshots written without next_delta_ts (their sid's next delta unknown): gap, close, cap, expired",
    labels: ['reason'],
  },
  worker_deltas_generic_path_total: {
    type: 'counter',
    help: 'orderbook_delta messages the byte-level reader handed to JSON.parse (an unusual shape or an invalid body); near 0 normally',
  },
  worker_restarts_total: { type: 'counter', help: 'Worker threads that died and were restarted' },
  worker_failures_total: {
    type: 'counter',
    help: 'Worker threads given up on after dying past pipeline.workerRestartsMax relaunches in a row (the gatherer stops)',
  },
  market_registry_markets: { type: 'gauge', help: 'Markets known to the registry by status', labels: ['status'] },
  market_registry_rest_errors_total: { type: 'counter', help: 'REST errors by endpoint', labels: ['endpoint'] },
  rest_requests_total: { type: 'counter', help: 'REST requests by endpoint and outcome', labels: ['endpoint', 'outcome'] },
  snapshot_poller_snapshots_total: { type: 'counter', help: 'REST order-book snapshots stored' },
  trade_backfill_trades_total: { type: 'counter', help: 'Trades fetched by REST backfill (before deduplication)' },
  frame_to_commit_seconds: {
    type: 'histogram',
    help: "Latency from frame receipt to the commit of its rows, per committed batch (its oldest row); WS snapshot rows wait for their sid's next delta by design",
    labels: ['table'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  },
} as const satisfies Record<string, Def>;

export const DEDUP_METRICS = {
  dedup_sync_lag_seconds: {
    type: 'gauge',
    help: 'Seconds since the deduplicator last held everything the gatherer had committed (grows during outages and catch-up)',
    labels: ['gatherer'],
  },
  dedup_duplicate_rate: { type: 'gauge', help: 'Share of rows read from gatherers that were already in production (last cycle)' },
  dedup_gatherer_health: { type: 'gauge', help: '1 when the gatherer database is reachable, else 0', labels: ['gatherer'] },
  dedup_rds_connected: { type: 'gauge', help: '1 when production PostgreSQL is reachable, else 0' },
  dedup_rds_connections: { type: 'gauge', help: "Backends on production PostgreSQL's server (pg_stat_activity), sampled by the deduplicator" },
  dedup_rds_max_connections: { type: 'gauge', help: "Production PostgreSQL's max_connections" },
  dedup_rows_read_total: { type: 'counter', help: 'Rows streamed from gatherers', labels: ['gatherer', 'table'] },
  dedup_rows_merged_total: { type: 'counter', help: 'Rows inserted into production (new)', labels: ['table'] },
  dedup_rows_duplicate_total: { type: 'counter', help: 'Rows already present in production', labels: ['table'] },
  dedup_trades_refined_total: {
    type: 'counter',
    help: 'Trades whose whole-second copy (a WS trade with only ts, early 2026) in production was replaced by a copy with the finer time',
  },
  dedup_cycle_duration_seconds: {
    type: 'histogram',
    help: 'Duration of one sync cycle',
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
  },
  dedup_errors_total: { type: 'counter', help: 'Deduplicator errors by type', labels: ['type'] },
  dedup_frozen_feed_markets: {
    type: 'gauge',
    help: 'Markets one gatherer lacks while the others record them (last window)',
    labels: ['gatherer'],
  },
} as const satisfies Record<string, Def>;

export const ARCHIVE_METRICS = {
  archive_rows_exported_total: { type: 'counter', help: 'Rows written to Parquet', labels: ['table'] },
  archive_partitions_exported_total: { type: 'counter', help: 'Partitions written (including re-exports)', labels: ['table'] },
  archive_lag_seconds: { type: 'gauge', help: 'Age of the newest exported window end', labels: ['table'] },
  archive_errors_total: { type: 'counter', help: 'Archiver errors by type', labels: ['type'] },
} as const satisfies Record<string, Def>;

export const MAINTAIN_METRICS = {
  maintenance_runs_total: {
    type: 'counter',
    help: 'Maintenance cycles by outcome (ok, error, busy: another kdp maintain holds the database)',
    labels: ['outcome'],
  },
  maintenance_last_success_timestamp_seconds: { type: 'gauge', help: 'Unix time of the last maintenance cycle that completed' },
  maintenance_partitions_created_total: { type: 'counter', help: 'Day partitions created (ahead of time, or to drain DEFAULT)', labels: ['table'] },
  maintenance_partitions_dropped_total: {
    type: 'counter',
    help: 'Gatherer day partitions or TimescaleDB chunks dropped past retention (all their rows merged)',
    labels: ['table'],
  },
  maintenance_batches_pruned_total: {
    type: 'counter',
    help: 'Gatherer ingest_batches rows deleted: merged batches older than retention whose rows are all gone',
  },
  maintenance_partitions_kept_unmerged: {
    type: 'gauge',
    help: 'Partitions or chunks past retention kept because the deduplicator has not merged all their rows (last cycle)',
  },
  maintenance_chunks_compressed_total: { type: 'counter', help: 'TimescaleDB chunks compressed by the compression jobs the loop ran', labels: ['table'] },
  maintenance_jobs_run_total: { type: 'counter', help: 'TimescaleDB jobs run (CALL run_job) by procedure and outcome', labels: ['proc', 'outcome'] },
  gatherer_oldest_unmerged_row_age_seconds: {
    type: 'gauge',
    help: 'Age of the oldest gatherer batch the deduplicator has not merged (0 when everything is merged)',
  },
  table_bytes: { type: 'gauge', help: 'On-disk bytes of a table with its partitions or chunks, indexes and TOAST', labels: ['table'] },
  book_drift_snapshots_total: {
    type: 'counter',
    help: 'REST snapshots compared with the book rebuilt from the WebSocket chain, by verdict (match, mismatch, no_anchor, untrusted, unreadable); per market in book_drift',
    labels: ['verdict'],
  },
} as const satisfies Record<string, Def>;

type MetricOf<D extends Def> = D extends { type: 'counter' } ? Counter<string> : D extends { type: 'gauge' } ? Gauge<string> : Histogram<string>;
export type MetricSet<T extends Record<string, Def>> = { readonly [K in keyof T]: MetricOf<T[K]> };

/** Creates every metric of `defs` in `registry`. Call once per thread at setup. */
export function createMetrics<T extends Record<string, Def>>(defs: T, registry: Registry): MetricSet<T> {
  const out: Record<string, unknown> = {};
  for (const [name, def] of Object.entries(defs) as [string, Def][]) {
    const common = { name, help: def.help, labelNames: [...(def.labels ?? [])], registers: [registry] };
    out[name] =
      def.type === 'counter'
        ? new Counter(common)
        : def.type === 'gauge'
          ? new Gauge(common)
          : new Histogram({ ...common, buckets: 'buckets' in def ? [...def.buckets] : undefined });
  }
  return out as MetricSet<T>;
}

/** A registry with the usual process metrics (process_*, nodejs_*). */
export function createRegistry(withDefaults = true): Registry {
  const registry = new Registry();
  if (withDefaults) collectDefaultMetrics({ register: registry });
  return registry;
}
