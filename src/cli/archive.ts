// `kdp archive`: the cold-storage archiver service (or one pass with --once).
import { loadConfig } from '../config/load';
import { createLogger } from '../core/log';
import { ARCHIVE_METRICS, createMetrics, createRegistry } from '../core/metrics';
import { json, startHttpServer, type HttpServer } from '../http/server';
import { ArchiverHealth, exportOnce, runArchiver, type ArchiveStats } from '../archive/archiver';
import { ARCHIVE_SPEC, checkArchiveOptions } from '../archive/options';
import { KdpError } from '../core/errors';
import { parseTimeUs } from '../ops/book';
import { parseOptions, type Command } from './command';

function summary(stats: ArchiveStats): string {
  return (
    `archive: exported ${stats.partitions} partitions (${stats.reexports} re-exports), ${stats.rows} rows, ` +
    `${stats.bytes} bytes in ${(stats.elapsedMs / 1000).toFixed(1)}s (${stats.rowsPerSecond} rows/s)` +
    (stats.dedupStalled ? '; deduplicator cursors are stale: nothing was due' : '')
  );
}

export const archiveCommand: Command = {
  name: 'archive',
  summary: 'export closed hours from production to Parquet (local directory or S3)',
  help: `kdp archive --config FILE [--once]

Exports every closed hour of the time-series tables from production to Parquet files
(<prefix>/<table>/date=YYYY-MM-DD/hour=HH/part-00000.parquet + _manifest.json) on a local
directory or an S3-compatible store, re-exports hours that received late rows, and records
each partition in production's export_cursors. Safe to kill at any point and re-run.
  --config FILE   YAML: production.url, store.{kind,dir,bucket,prefix,endpoint,region,
                  accessKeyId,secretAccessKey,forcePathStyle}, intervalMs, exportLagMs, tables, ...
                  (see config/archive.example.yaml and docs/archive.md)
  --once          export what is due now and exit (exit 0), instead of running as a service
  --merged-through TIME
                  with --once: production is fully merged up to TIME (RFC 3339 or µs); use
                  only once the deduplicator has stopped after its final merge (closes the
                  last hours of a finished recording instead of waiting on dedup cursors)
Besides raw/, the processed/ (quotes, book_snapshots_25, enriched trades) and aggregates/
(candles) tiers are derived from production for every hour raw/ has exported (docs/archive.md).
Progress lines go to stderr, JSON logs to stdout. SIGTERM/SIGINT stop after the partition in flight.`,
  async run(argv) {
    const { values } = parseOptions(argv, { config: { type: 'string' }, once: { type: 'boolean', default: false }, 'merged-through': { type: 'string' } });
    if (!values.config) throw new KdpError('KDP_ERR_USAGE', '--config FILE is required');
    const through = values['merged-through'];
    if (through !== undefined && !values.once) throw new KdpError('KDP_ERR_USAGE', '--merged-through needs --once (a service must follow the deduplicator)');
    const opts = loadConfig(ARCHIVE_SPEC, values.config);
    checkArchiveOptions(opts);
    const log = createLogger('archive', { level: opts.log.level });
    const registry = createRegistry(true);
    const metrics = createMetrics(ARCHIVE_METRICS, registry);
    const health = new ArchiverHealth();
    const stop = new AbortController();
    const onSignal = (sig: string) => {
      log.info({ signal: sig }, 'stopping after the partition in flight');
      stop.abort();
    };
    process.once('SIGTERM', () => onSignal('SIGTERM'));
    process.once('SIGINT', () => onSignal('SIGINT'));
    let http: HttpServer | undefined;
    if (opts.metricsPort !== undefined && !values.once) {
      http = await startHttpServer(opts.metricsHost, opts.metricsPort, [
        { method: 'GET', path: '/metrics', handler: async () => ({ status: 200, body: await registry.metrics(), contentType: registry.contentType }) },
        {
          method: 'GET',
          path: '/health',
          handler: () => {
            const h = health.report();
            return json(h.status, h.body);
          },
        },
      ]);
      log.info({ port: http.port }, 'metrics listening');
    }
    const deps = {
      log,
      metrics,
      health,
      signal: stop.signal,
      progress: (line: string) => process.stderr.write(line + '\n'),
      ...(through !== undefined ? { mergedThroughUs: parseTimeUs(through) } : {}),
    };
    try {
      const stats = values.once ? await exportOnce(opts, deps) : await runArchiver(opts, deps);
      process.stderr.write(summary(stats) + '\n');
      return 0;
    } finally {
      http?.close();
    }
  },
};
