import { runChaos } from '../chaos/run';
import { intOption, parseOptions, type Command } from './command';

export const chaosCommand: Command = {
  name: 'chaos',
  summary: 'seeded chaos runs: faults injected into a whole platform, production checked against the truth',
  help: `kdp chaos --seed S [--seconds N] [--runs K] [--markets N] [--rate N] [--mean-gap-ms N] [--keep]

Each run starts embedded PostgreSQL (one cluster per gatherer and one for production), the
exchange simulator, three gatherers and the deduplicator as separate processes; the seeded
nemesis kills gatherers (one always stays whole) and the deduplicator (also at failpoints between
merge and commit), stops and restarts PostgreSQL clusters, drops and stalls WebSockets, skips and
duplicates seqs, sends error 25, malformed and oversized frames and REST 429/5xx bursts. After the
exchange stops and everything has merged, production is checked against the simulator's truth:
trades, deltas per market, books at checkpoints, lifecycle events, every injected gap in the
ledger. Runs use seeds S, S+1, ... Exit code 0 only when every run passed.
  --seed S         first seed (default 1)
  --seconds N      exchange run time per run (default 120)
  --runs K         number of runs (default 1)
  --markets N      markets (default 60)
  --rate N         exchange messages per second (default 1000)
  --mean-gap-ms N  mean time between faults (default 2000)
  --books-max N    book checkpoints rebuilt per run (default 400)
  --keep           keep each run's data directory (logs, configs, truth file, databases)`,
  async run(argv) {
    const { values } = parseOptions(argv, {
      seed: { type: 'string' },
      seconds: { type: 'string' },
      runs: { type: 'string' },
      markets: { type: 'string' },
      rate: { type: 'string' },
      'mean-gap-ms': { type: 'string' },
      'books-max': { type: 'string' },
      keep: { type: 'boolean', default: false },
    });
    return runChaos(
      {
        seed: intOption(values.seed, 'seed', 1, 0),
        seconds: intOption(values.seconds, 'seconds', 120, 10),
        runs: intOption(values.runs, 'runs', 1, 1),
        markets: intOption(values.markets, 'markets', 60, 1),
        rate: intOption(values.rate, 'rate', 1000, 1),
        meanGapMs: intOption(values['mean-gap-ms'], 'mean-gap-ms', 2000, 100),
        booksMax: intOption(values['books-max'], 'books-max', 400, 0),
        keep: values.keep ?? false,
      },
      (line) => void process.stdout.write(`${line}\n`),
    );
  },
};
