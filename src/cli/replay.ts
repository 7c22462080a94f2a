// `kdp replay`: recorded history served through the Kalshi protocol (src/replay/, docs/replay.md).
import { createLogger } from '../core/log';
import { KdpError } from '../core/errors';
import { parseTimeUs } from '../ops/book';
import { startReplay } from '../replay/replay';
import { parseOptions, type Command } from './command';

export const replayCommand: Command = {
  name: 'replay',
  summary: 'serve recorded history on the Kalshi WebSocket and REST paths (backtests, load tests)',
  help: `kdp replay --from-production URL | --from-archive DIR --start T1 --end T2 [options]

Serves the window (T1, T2] of production's recorded history on ws://HOST:PORT/trade-api/ws/v2 and
http://HOST:PORT/trade-api/v2 with the Kalshi protocol: a subscription gets its own sid and seqs,
book snapshots equal to the book at T1 (then as of the replay clock), then the recorded deltas,
trades, tickers and lifecycle messages in exchange-time order. Exits when the window is served
(or on SIGINT / SIGTERM). docs/replay.md.
  --from-production URL   production PostgreSQL (or env KDP_PRODUCTION_URL)
  --from-archive DIR      a local archive store's directory (kdp archive's store.dir): the hours needed are
                          loaded into a throw-away PostgreSQL first; markets come from what the archive holds
  --archive-prefix P      the archive's store.prefix (default raw)
  --anchor-lookback-ms MS from the archive: books anchored from snapshots up to this long before T1 (default 6 h)
  --start T1, --end T2    RFC 3339 (2026-11-23T12:00:00Z) or integer µs since the epoch
  --speed X               1 = real time (default), 10 = ten times faster; 0 or max = as fast as clients read
  --tickers A,B,...       only these markets
  --host H, --port P      bind address (default 127.0.0.1, port 8700; 0 = any free port)
  --wait-for-books        hold the clock at T1 until order-book subscriptions cover every market open then
  --truth FILE            also write the served exchange records as a truth file (docs/simulator.md)
  --ready-json            print one JSON line {wsUrl, restUrl, port, pid} when serving`,
  async run(argv) {
    const { values } = parseOptions(argv, {
      'from-production': { type: 'string' },
      'from-archive': { type: 'string' },
      'archive-prefix': { type: 'string' },
      'anchor-lookback-ms': { type: 'string' },
      start: { type: 'string' },
      end: { type: 'string' },
      speed: { type: 'string', default: '1' },
      tickers: { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '8700' },
      'wait-for-books': { type: 'boolean', default: false },
      truth: { type: 'string' },
      'ready-json': { type: 'boolean', default: false },
    });
    const archive = values['from-archive'];
    const url = archive === undefined ? (values['from-production'] ?? process.env.KDP_PRODUCTION_URL) : values['from-production'];
    if ((url === undefined) === (archive === undefined)) {
      throw new KdpError('KDP_ERR_USAGE', 'give --from-production URL (or KDP_PRODUCTION_URL) or --from-archive DIR, not both');
    }
    if (!values.start || !values.end) throw new KdpError('KDP_ERR_USAGE', '--start and --end are required');
    const fast = values.speed === 'max' || Number(values.speed) === 0;
    const log = createLogger('replay');
    const replay = await startReplay(
      {
        ...(archive === undefined ? { productionUrl: url } : { archiveDir: archive }),
        ...(values['archive-prefix'] !== undefined ? { archivePrefix: values['archive-prefix'] } : {}),
        ...(values['anchor-lookback-ms'] !== undefined ? { anchorLookbackMs: values['anchor-lookback-ms'] } : {}),
        startUs: parseTimeUs(values.start),
        endUs: parseTimeUs(values.end),
        pace: fast ? 'fast' : 'realtime',
        ...(fast ? {} : { speed: values.speed }),
        ...(values.tickers ? { tickers: values.tickers.split(',').filter(Boolean) } : {}),
        host: values.host,
        port: values.port,
        waitForBooks: values['wait-for-books'],
        ...(values.truth ? { truthFile: values.truth } : {}),
      },
      log,
    );
    if (values['ready-json'])
      process.stdout.write(JSON.stringify({ wsUrl: replay.wsUrl, restUrl: replay.restUrl, port: replay.sim.port, pid: process.pid }) + '\n');
    else process.stdout.write(`kdp replay: ws   ${replay.wsUrl}\nkdp replay: rest ${replay.restUrl}\n`);
    let failed = false;
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
      replay.finished.then(resolve, () => {
        failed = true;
        resolve();
      });
    });
    await replay.stop();
    const s = replay.stats();
    process.stderr.write(
      `kdp replay: ${s.recordsServed} records served (${s.recordsRead} read from the window), ${replay.universe.markets} markets, ` +
        `${replay.universe.unanchored.length} left out (no book at the start), ${s.skippedUnknownMarket + s.skippedUnsendable} rows skipped\n`,
    );
    return failed ? 1 : 0;
  },
};
