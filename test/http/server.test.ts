import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createMetrics, createRegistry, GATHERER_METRICS } from '../../src/core/metrics';
import { SharedCounters } from '../../src/core/shared-counters';
import { json, startHttpServer } from '../../src/http/server';
import { parsePrometheusText, sumOf } from '../../src/ops/scrape';

test('the uWS adapter serves JSON health, Prometheus metrics, POST bodies and 404', async () => {
  const registry = createRegistry();
  const m = createMetrics(GATHERER_METRICS, registry);
  m.writer_inserts_total.inc({ table: 'trades' }, 3);
  m.writer_errors_total.inc({ type: 'connection' });
  const server = await startHttpServer('127.0.0.1', 0, [
    { method: 'GET', path: '/health', handler: () => json(503, { status: 'unhealthy', ws_connections: 0 }) },
    { method: 'GET', path: '/metrics', handler: async () => ({ status: 200, body: await registry.metrics(), contentType: registry.contentType }) },
    { method: 'POST', path: '/echo', handler: (req) => json(200, { got: req.body.toString(), q: req.query.get('ticker') }) },
  ]);
  try {
    const base = `http://127.0.0.1:${server.port}`;
    const health = await fetch(`${base}/health`);
    assert.equal(health.status, 503);
    assert.deepEqual(await health.json(), { status: 'unhealthy', ws_connections: 0 });
    const samples = parsePrometheusText(await (await fetch(`${base}/metrics`)).text());
    assert.equal(sumOf(samples, 'writer_inserts_total', { table: 'trades' }), 3);
    assert.equal(sumOf(samples, 'writer_errors_total', { type: 'connection' }), 1);
    assert.ok(
      samples.some((s) => s.name === 'process_resident_memory_bytes'),
      'process metrics present',
    );
    const echo = await fetch(`${base}/echo?ticker=KX-1`, { method: 'POST', body: 'hello' });
    assert.deepEqual(await echo.json(), { got: 'hello', q: 'KX-1' });
    assert.equal((await fetch(`${base}/nope`)).status, 404);
  } finally {
    server.close();
  }
});

test('shared counters written in one view are read in another built over the same buffer', () => {
  const names = ['a', 'b'] as const;
  const writer = new SharedCounters(names);
  const reader = new SharedCounters(names, writer.buffer);
  writer.add(writer.slot('b'), 5);
  writer.add(writer.slot('b'));
  assert.equal(reader.get('b'), 6);
  assert.equal(reader.get('a'), 0);
  assert.throws(() => new SharedCounters(['x'], writer.buffer));
});
