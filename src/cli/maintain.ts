// `kdp maintain`: the storage maintenance loop of one gatherer or production database.
import { loadConfig } from '../config/load';
import { KdpError } from '../core/errors';
import { createLogger } from '../core/log';
import { MAINTAIN_METRICS, createMetrics, createRegistry } from '../core/metrics';
import { startHttpServer, type HttpServer } from '../http/server';
import { MAINTAIN_SPEC } from '../maintain/options';
import { maintainOnce, runMaintainer } from '../maintain/service';
import { intOption, parseOptions, type Command } from './command';

export const maintainCommand: Command = {
  name: 'maintain',
  summary: 'storage upkeep of a gatherer or production database: partitions ahead, DEFAULT drained, guarded retention',
  help: `kdp maintain --kind gatherer|production (--url URL | --config FILE) [--once] [--interval-ms N]
            [--days-ahead N] [--metrics-port N]

Keeps one database's storage in shape, as the owner of its tables (the service roles cannot
create or drop tables). Plain PostgreSQL: creates day partitions ahead of today, moves rows out
of the DEFAULT partitions, and on a gatherer drops partitions past retention only when the
deduplicator has merged every row in them (dedup_watermark). TimescaleDB: runs the compression
policies and, on a gatherer, the guarded retention jobs (kdp_drop_merged_chunks) with CALL run_job.
Every action is logged and counted (maintenance_* metrics, gatherer_oldest_unmerged_row_age_seconds,
table_bytes). Runs as a service (a cycle every --interval-ms) unless --once.
  --kind          gatherer or production (or the config's kind)
  --url           PostgreSQL connection URL of the database (or env KDP_DATABASE_URL)
  --config        YAML: kind, database.{url,statementTimeoutMs}, intervalMs, partitionDaysAhead,
                  backoffInitialMs, backoffMaxMs, metricsPort, metricsHost, log.level
                  (see config/maintain.example.yaml); flags override it
  --once          one cycle, then exit (0 when it succeeded)
  --interval-ms   pause between cycles (default 900000)
  --days-ahead    day partitions kept ahead of today on plain PostgreSQL (default 7)
  --metrics-port  serve /metrics on this port (service mode)
SIGTERM/SIGINT stop the loop after the cycle in flight.`,
  async run(argv) {
    const { values } = parseOptions(argv, {
      kind: { type: 'string' },
      url: { type: 'string' },
      config: { type: 'string' },
      once: { type: 'boolean', default: false },
      'interval-ms': { type: 'string' },
      'days-ahead': { type: 'string' },
      'metrics-port': { type: 'string' },
    });
    const url = values.url ?? (values.config ? undefined : process.env.KDP_DATABASE_URL);
    if (!url && !values.config) throw new KdpError('KDP_ERR_USAGE', 'give --url, --config or KDP_DATABASE_URL');
    const optional = (name: 'interval-ms' | 'days-ahead' | 'metrics-port') => (values[name] === undefined ? undefined : intOption(values[name], name, 0));
    const opts = loadConfig(MAINTAIN_SPEC, values.config, process.env, {
      kind: values.kind,
      database: { url },
      intervalMs: optional('interval-ms'),
      partitionDaysAhead: optional('days-ahead'),
      metricsPort: optional('metrics-port'),
    });
    const log = createLogger('maintain', { level: opts.log.level });
    const registry = createRegistry(true);
    const metrics = createMetrics(MAINTAIN_METRICS, registry);
    const stop = new AbortController();
    const deps = { log, metrics, signal: stop.signal };
    if (values.once) {
      const r = await maintainOnce(opts, deps);
      process.stderr.write(
        `maintain: ${opts.kind} on ${r.engine}: ${r.created.length} partitions created, ${r.dropped.length} dropped, ` +
          `${r.keptUnmerged.length} kept unmerged, ${r.compressed.length} chunks compressed, ${r.jobs.length} jobs run\n`,
      );
      return 0;
    }
    for (const sig of ['SIGTERM', 'SIGINT'] as const) {
      process.once(sig, () => {
        log.info({ signal: sig }, 'stopping after the cycle in flight');
        stop.abort();
      });
    }
    let http: HttpServer | undefined;
    if (opts.metricsPort !== undefined) {
      http = await startHttpServer(opts.metricsHost, opts.metricsPort, [
        { method: 'GET', path: '/metrics', handler: async () => ({ status: 200, body: await registry.metrics(), contentType: registry.contentType }) },
      ]);
      log.info({ port: http.port }, 'metrics listening');
    }
    try {
      await runMaintainer(opts, deps);
      return 0;
    } finally {
      http?.close();
    }
  },
};
