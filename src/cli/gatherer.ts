import { createLogger } from '../core/log';
import { loadGathererConfig } from '../gatherer/config';
import { startGatherer } from '../gatherer/service';
import { parseOptions, type Command } from './command';

export const gathererCommand: Command = {
  name: 'gatherer',
  summary: 'run a gatherer: record every market of the exchange into its own PostgreSQL',
  help: `kdp gatherer --config FILE

Runs one gatherer: discovers every market over REST, subscribes order books, trades, tickers and
lifecycle over WebSockets, and writes them to the gatherer database (run kdp migrate --kind
gatherer first). Health on http.healthPort (/health, POST /admin/poll-market?ticker=), metrics on
http.metricsPort (/metrics). SIGTERM or SIGINT: stop reading, drain, commit, exit 0 (1 when rows
were left uncommitted). A worker thread that keeps dying past pipeline.workerRestartsMax stops it
with exit 1.
Config: see config/gatherer.example.yaml; KDP__SECTION__KEY environment variables override it.`,
  async run(argv) {
    const { values } = parseOptions(argv, { config: { type: 'string' } });
    const options = loadGathererConfig(values.config);
    const log = createLogger('gatherer', { level: options.log.level }).child({ gatherer: options.gathererId });
    const gatherer = await startGatherer(options, log);
    return new Promise<number>((resolve) => {
      const stopWith = (exitCode: number): void => {
        process.removeListener('SIGTERM', onSignal);
        process.removeListener('SIGINT', onSignal);
        gatherer.stop().then(
          (drained) => resolve(drained ? exitCode : 1),
          (err: unknown) => {
            log.error({ err: (err as Error).message }, 'stop failed');
            resolve(1);
          },
        );
      };
      const onSignal = (signal: NodeJS.Signals): void => {
        log.info({ signal }, 'signal received');
        stopWith(0);
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
      // A worker that cannot run (it kept dying past its relaunch limit) ends the process loudly
      // rather than leaving its connections unrecorded; systemd or the supervisor restarts it.
      void gatherer.failed.then((err) => {
        log.error({ code: err.code, err: err.message }, 'gatherer failed; stopping');
        stopWith(1);
      });
    });
  },
};
