// `kdp sim`: the simulated Kalshi exchange (WebSocket + REST on one port).
import { readFileSync } from 'node:fs';
import { KdpError } from '../core/errors';
import { parseOptions, type Command } from './command';
import { startSimulator, type FaultRequest, type SimulatorOptions } from '../sim/simulator';
import { startCapture } from '../sim/capture';

const HELP = `kdp sim [options]

Runs the simulated Kalshi exchange: WebSocket at /trade-api/ws/v2 and REST under /trade-api/v2.
  --host H                  bind address (default 127.0.0.1)
  --port N                  port (default 0 = any free port; the URLs are printed)
  --markets N               active markets at start (default 50)
  --rate R                  exchange messages per second (default 2000)
  --seed S                  generator seed (default 1)
  --start-us US             exchange clock at start, µs since epoch (default now, whole second)
  --duration-s S            stop the exchange clock after S exchange seconds, then exit
  --truth FILE              write the ground truth (NDJSON; docs/simulator.md)
  --faults SPEC             inject faults, e.g. disconnect:every=20s,skipseq:rate=0.001
  --from FILE               replay a truth file instead of generating
  --speed X                 exchange seconds per wall second, or "max" (as fast as readers take it)
  --market-lifetime-s S     mean market life (default 600)
  --checkpoint-interval-ms  book checkpoints in the truth file (default 5000)
  --ping-interval-ms MS     WebSocket Ping interval (default 10000)
  --markets-per-sub-max N   markets per subscription before error 26 (default 1000)
  --slow-consumer-bytes N   buffered bytes before error 25 (default 16 MiB)
  --commands-per-sec-max N  WebSocket commands per second per connection (default 100)
  --rest-tokens-per-sec N   REST token refill (default 200; 10 tokens per request)
  --rest-burst-tokens N     REST bucket size (default 200)
  --auth-public-key ID=FILE verify handshake signatures of key ID with this PEM public key (repeatable)
  --require-auth            refuse unsigned handshakes (401)
  --trades-kept-max N       trades kept for REST /markets/trades (default 200000)
  --batch-max N             exchange records per event-loop turn (default 4096)
  --ready-json              print one JSON line {wsUrl, restUrl, port, pid} instead of text
Stops cleanly on SIGINT / SIGTERM.`;

const num = (v: string | undefined): number | undefined => (v === undefined ? undefined : Number(v));

export function simOptionsFromArgv(argv: string[]): { options: SimulatorOptions; readyJson: boolean } {
  const { values } = parseOptions(argv, {
    host: { type: 'string' }, port: { type: 'string' }, markets: { type: 'string' }, rate: { type: 'string' },
    seed: { type: 'string' }, 'start-us': { type: 'string' }, 'duration-s': { type: 'string' }, truth: { type: 'string' },
    faults: { type: 'string' }, from: { type: 'string' }, speed: { type: 'string' }, 'market-lifetime-s': { type: 'string' },
    'checkpoint-interval-ms': { type: 'string' }, 'ping-interval-ms': { type: 'string' }, 'markets-per-sub-max': { type: 'string' },
    'slow-consumer-bytes': { type: 'string' }, 'commands-per-sec-max': { type: 'string' }, 'rest-tokens-per-sec': { type: 'string' },
    'rest-burst-tokens': { type: 'string' }, 'auth-public-key': { type: 'string', multiple: true },
    'require-auth': { type: 'boolean' }, 'ready-json': { type: 'boolean' }, 'batch-max': { type: 'string' },
    'trades-kept-max': { type: 'string' },
  });
  const publicKeys: Record<string, string> = {};
  for (const item of values['auth-public-key'] ?? []) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new KdpError('KDP_ERR_USAGE', `--auth-public-key wants ID=FILE, got ${item}`);
    publicKeys[item.slice(0, eq)] = readFileSync(item.slice(eq + 1), 'utf8');
  }
  const raw: Record<string, unknown> = {
    host: values.host, port: num(values.port), markets: num(values.markets), rate: num(values.rate), seed: num(values.seed),
    startUs: num(values['start-us']), durationS: num(values['duration-s']), truthFile: values.truth, faults: values.faults,
    fromFile: values.from, marketLifetimeS: num(values['market-lifetime-s']), checkpointIntervalMs: num(values['checkpoint-interval-ms']),
    pingIntervalMs: num(values['ping-interval-ms']), marketsPerSubMax: num(values['markets-per-sub-max']),
    slowConsumerBytes: num(values['slow-consumer-bytes']), commandsPerSecMax: num(values['commands-per-sec-max']),
    restTokensPerSec: num(values['rest-tokens-per-sec']), restBurstTokens: num(values['rest-burst-tokens']),
    requireAuth: values['require-auth'], batchMax: num(values['batch-max']),
    tradesKeptMax: num(values['trades-kept-max']),
  };
  if (values.speed === 'max') raw.pace = 'fast';
  else raw.speed = num(values.speed);
  const options = Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== undefined)) as SimulatorOptions;
  if (Object.keys(publicKeys).length > 0) options.publicKeys = publicKeys;
  return { options, readyJson: values['ready-json'] === true };
}

export const simCommand: Command = {
  name: 'sim',
  summary: 'run the simulated Kalshi exchange (WebSocket + REST, ground truth, faults, replay)',
  help: HELP,
  async run(argv) {
    const { options, readyJson } = simOptionsFromArgv(argv);
    const sim = await startSimulator(options);
    if (readyJson) process.stdout.write(JSON.stringify({ wsUrl: sim.wsUrl, restUrl: sim.restUrl, port: sim.port, pid: process.pid }) + '\n');
    else process.stdout.write(`kdp sim: ws   ${sim.wsUrl}\nkdp sim: rest ${sim.restUrl}\n`);
    // A parent that spawned us with IPC may inject faults on demand.
    // It may also freeze and resume the exchange clock (the demo holds the exchange until every
    // gatherer has subscribed); the reply gives the exchange clock and the last record number.
    const onIpc = (msg: unknown): void => {
      const m = msg as { inject?: FaultRequest; clock?: 'pause' | 'resume'; id?: number };
      let error: string | undefined;
      try {
        if (m.inject) sim.injectFault(m.inject);
        else if (m.clock === 'pause') sim.pause();
        else if (m.clock === 'resume') sim.resume();
        else return;
      } catch (err) {
        error = (err as Error).message;
      }
      process.send?.({ id: m.id, error, nowUs: sim.nowUs(), records: sim.stats().records });
    };
    if (process.send) process.on('message', onIpc);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
      process.once('disconnect', resolve);
      if (options.durationS !== undefined || options.fromFile !== undefined) void sim.finished.then(resolve);
    });
    await sim.stop();
    process.off('message', onIpc);
    if (process.send) process.disconnect();
    return 0;
  },
};

export const captureCommand: Command = {
  name: 'capture',
  summary: 'record a live Kalshi feed (or the simulator) into a truth file that `kdp sim --from` replays',
  help: `kdp capture --truth FILE [options]

Connects to the exchange, subscribes to orderbook_delta, ticker, trade and market_lifecycle_v2 for
the chosen markets and writes what it sees in the truth-file format (docs/simulator.md).
  --ws-url URL        default wss://external-api-ws.kalshi.com/trade-api/ws/v2
  --rest-url URL      default https://external-api.kalshi.com/trade-api/v2
  --key-id ID         API key id (the handshake is signed when given with --private-key)
  --private-key FILE  PEM private key (never printed)
  --tickers A,B,...   markets to record (default: the first --markets open markets)
  --markets N         default 100
  --seconds S         stop after S seconds (default: until SIGINT / SIGTERM)
  --checkpoint-interval-ms MS  book checkpoints (default 5000)`,
  async run(argv) {
    const { values } = parseOptions(argv, {
      truth: { type: 'string' }, 'ws-url': { type: 'string' }, 'rest-url': { type: 'string' }, 'key-id': { type: 'string' },
      'private-key': { type: 'string' }, tickers: { type: 'string' }, markets: { type: 'string' }, seconds: { type: 'string' },
      'checkpoint-interval-ms': { type: 'string' },
    });
    if (!values.truth) throw new KdpError('KDP_ERR_USAGE', '--truth FILE is required');
    const cap = await startCapture({
      wsUrl: values['ws-url'] ?? 'wss://external-api-ws.kalshi.com/trade-api/ws/v2',
      restUrl: values['rest-url'] ?? 'https://external-api.kalshi.com/trade-api/v2',
      keyId: values['key-id'],
      privateKeyPem: values['private-key'] ? readFileSync(values['private-key'], 'utf8') : undefined,
      truthFile: values.truth,
      tickers: values.tickers ? values.tickers.split(',').filter(Boolean) : undefined,
      marketsMax: num(values.markets) ?? 100,
      checkpointIntervalMs: num(values['checkpoint-interval-ms']) ?? 5000,
    });
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
      if (values.seconds) setTimeout(resolve, Number(values.seconds) * 1000);
    });
    const stats = await cap.stop();
    process.stdout.write(`kdp capture: ${stats.records} records from ${stats.markets} markets, ${stats.gaps} seq gaps, ${stats.errors} errors\n`);
    return 0;
  },
};
