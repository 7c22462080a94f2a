// `kdp dedup --config FILE`: the deduplicator service. SIGTERM/SIGINT stop it gracefully (the
// running merge transaction finishes or rolls back; cursors make the next start resume).
import { loadConfig } from '../config/load';
import { KdpError } from '../core/errors';
import { createLogger } from '../core/log';
import { DEDUP_SPEC, checkDedupOptions } from '../dedup/options';
import { startDeduplicator } from '../dedup/service';
import { parseOptions, type Command } from './command';

export const dedupCommand: Command = {
  name: 'dedup',
  summary: 'merge the gatherer databases into production (the deduplicator service)',
  help: `kdp dedup --config FILE

Streams new rows from every gatherer database (COPY … TO STDOUT, batches below the xid horizon)
into production staging tables, merges them with INSERT … ON CONFLICT DO NOTHING and advances the
per-gatherer cursor in the same transaction. Health on http.healthPort (/health), Prometheus
metrics on http.metricsPort (/metrics). See config/dedup.example.yaml for every key.
  --config    YAML config (KDP__SECTION__KEY environment variables override it)`,
  async run(argv) {
    const { values } = parseOptions(argv, { config: { type: 'string' } });
    if (!values.config) throw new KdpError('KDP_ERR_USAGE', '--config FILE is required');
    const options = checkDedupOptions(loadConfig(DEDUP_SPEC, values.config));
    const log = createLogger('dedup', { level: options.log.level });
    const dedup = await startDeduplicator({ options, logger: log });
    log.info(
      {
        gatherers: options.gatherers.map((g) => g.name),
        healthPort: dedup.healthPort,
        metricsPort: dedup.metricsPort,
      },
      'deduplicator started',
    );
    await new Promise<void>((resolve) => {
      const onSignal = (signal: string): void => {
        log.info({ signal }, 'stopping');
        resolve();
      };
      process.once('SIGTERM', onSignal);
      process.once('SIGINT', onSignal);
    });
    await dedup.stop();
    log.info('deduplicator stopped');
    return 0;
  },
};
