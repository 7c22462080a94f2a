// The Grafana dashboard: valid JSON, unique panel ids, the required topics present, and every
// metric it queries exported by our services (src/core/metrics.ts) or a standard exporter.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { bareMetricNames, isStandardMetric, ourMetricNames, repoRoot } from './helpers';

interface Panel {
  id: number;
  type: string;
  title: string;
  targets?: { expr: string }[];
}
const dashboard = JSON.parse(readFileSync(join(repoRoot(), 'ops', 'grafana', 'kdp-pipeline.json'), 'utf8')) as { panels: Panel[]; uid: string };
const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));

describe('grafana dashboard', () => {
  test('has a uid, unique panel ids and a query on every graph', () => {
    assert.equal(dashboard.uid, 'kdp-pipeline');
    const ids = dashboard.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length);
    for (const p of dashboard.panels) if (p.type !== 'row') assert.ok((p.targets ?? []).length > 0, `${p.title} has no query`);
  });

  test('covers throughput, gaps, lag, errors, connections and writer flush latency', () => {
    const uses = (metric: string) => exprs.some((e) => e.expr.includes(metric));
    for (const metric of [
      'ws_client_messages_received_total',
      'writer_inserts_total',
      'dedup_rows_merged_total',
      'sequence_gaps_total',
      'router_messages_dropped_total',
      'dedup_sync_lag_seconds',
      'writer_errors_total',
      'ws_client_errors_total',
      'ws_client_connected',
      'conn_manager_connections_healthy',
      'reconnects_total',
      'writer_flush_duration_seconds_bucket',
      'dedup_duplicate_rate',
      'dedup_rds_connected',
    ]) {
      assert.ok(uses(metric), `dashboard does not show ${metric}`);
    }
  });

  test('every metric queried exists in src/core/metrics.ts or is a standard process/node_exporter metric', () => {
    const ours = ourMetricNames();
    for (const { panel, expr } of exprs) {
      const names = bareMetricNames(expr);
      assert.ok(names.length > 0, `${panel}: no metric in ${expr}`);
      for (const n of names) assert.ok(ours.has(n) || isStandardMetric(n), `${panel}: unknown metric ${n} in ${expr}`);
    }
  });

  test('the name check itself catches a misspelt metric', () => {
    const names = bareMetricNames('sum by (gatherer) (rate(writer_insert_total{job="gatherer"}[5m]))');
    assert.deepEqual(names, ['writer_insert_total']);
    assert.equal(ourMetricNames().has('writer_insert_total'), false);
  });
});
