import { KdpError } from '../core/errors';
import { runDemo } from '../demo/demo';
import { intOption, parseOptions, type Command } from './command';

export const demoCommand: Command = {
  name: 'demo',
  summary: 'run the whole platform locally (npm start): simulator, 3 gatherers, deduplicator, archiver',
  help: `kdp demo [--seconds N] [--markets N] [--rate N] [--seed N] [--faults SPEC] [--keep] [--data-dir DIR]

Starts embedded PostgreSQL, the exchange simulator, three gatherers, the deduplicator and the
archiver as separate processes, shows live progress, and on Ctrl-C (or after --seconds) stops
everything gracefully and verifies production against the simulator's ground truth.
Exit code 0 only when that verification passed.
  --seconds N     stop by itself after N seconds (default: run until Ctrl-C)
  --markets N     markets at start (default 200)
  --rate N        exchange messages per second (default 2000)
  --seed N        simulator seed (default 1)
  --faults SPEC   kill-gatherer:every=20s (kill -9 a random gatherer; it restarts like under systemd)
                  and/or simulator faults, e.g. disconnect:every=15s,skipseq:rate=0.001
  --keep          keep the data directory (databases, logs, configs, truth file, archive)
  --data-dir DIR  where to put it (default: a new temporary directory)`,
  async run(argv) {
    const { values } = parseOptions(argv, {
      seconds: { type: 'string' },
      markets: { type: 'string' },
      rate: { type: 'string' },
      seed: { type: 'string' },
      faults: { type: 'string', default: '' },
      keep: { type: 'boolean', default: false },
      'data-dir': { type: 'string' },
    });
    const rate = Number(values.rate ?? 2000);
    if (!(rate > 0)) throw new KdpError('KDP_ERR_USAGE', '--rate must be a positive number');
    return runDemo({
      seconds: values.seconds === undefined ? undefined : intOption(values.seconds, 'seconds', 60, 1),
      markets: intOption(values.markets, 'markets', 200, 1),
      rate,
      seed: intOption(values.seed, 'seed', 1, 0),
      faults: values.faults ?? '',
      keep: values.keep ?? false,
      dataDir: values['data-dir'],
    });
  },
};
