// `kdp sim`: the simulated Kalshi exchange (WebSocket + REST on one port).
import { readFileSync } from 'node:fs';
import { KdpError } from '../core/errors';
import { parseOptions, type Command } from './command';
import { SIM_SPEC, simFlag, startSimulator, type FaultRequest, type SimConnection, type SimulatorOptions } from '../sim/simulator';
import { startCapture } from '../sim/capture';

type SpecKey = keyof typeof SIM_SPEC;
const SPEC_KEYS = Object.keys(SIM_SPEC) as SpecKey[];

function helpText(): string {
  const lines = SPEC_KEYS.map((k) => {
    const f = SIM_SPEC[k];
    const dflt = 'default' in f && f.default !== undefined && f.default !== '' ? ` (default ${String(f.default)})` : '';
    return `  --${simFlag(k).padEnd(28)}${f.doc}${k === 'speed' ? '; "max" = as fast as readers take it' : ''}${dflt}`;
  });
  return `kdp sim [options]

Runs the simulated Kalshi exchange: WebSocket at /trade-api/ws/v2 and REST under /trade-api/v2
(docs/simulator.md). Prints both URLs; stops cleanly on SIGINT / SIGTERM (or after --duration-s,
or at the end of a --from replay).
${lines.join('\n')}
  --${'auth-public-key ID=FILE'.padEnd(28)}verify handshake signatures of key ID with this PEM public key (repeatable)
  --${'ready-json'.padEnd(28)}print one JSON line {wsUrl, restUrl, port, pid} instead of text`;
}

type FlagSpec = { type: 'string' | 'boolean'; multiple?: boolean };

/** Flags come from SIM_SPEC (one per option); values are validated by resolveOptions. */
export function simOptionsFromArgv(argv: string[]): { options: SimulatorOptions; readyJson: boolean } {
  const flags: Record<string, FlagSpec> = { 'auth-public-key': { type: 'string', multiple: true }, 'ready-json': { type: 'boolean' } };
  for (const k of SPEC_KEYS) flags[simFlag(k)] = { type: SIM_SPEC[k].kind === 'boolean' ? 'boolean' : 'string' };
  const { values } = parseOptions(argv, flags);
  const v = values as Record<string, string | boolean | string[] | undefined>;
  const raw: Record<string, unknown> = {};
  for (const k of SPEC_KEYS) if (v[simFlag(k)] !== undefined) raw[k] = v[simFlag(k)];
  if (raw.speed === 'max') {
    delete raw.speed;
    raw.pace = 'fast';
  }
  const publicKeys: Record<string, string> = {};
  for (const item of (v['auth-public-key'] as string[] | undefined) ?? []) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new KdpError('KDP_ERR_USAGE', `--auth-public-key wants ID=FILE, got ${item}`);
    publicKeys[item.slice(0, eq)] = readFileSync(item.slice(eq + 1), 'utf8');
  }
  const options = raw as SimulatorOptions;
  if (Object.keys(publicKeys).length > 0) options.publicKeys = publicKeys;
  return { options, readyJson: v['ready-json'] === true };
}

const num = (v: string | undefined): number | undefined => (v === undefined ? undefined : Number(v));

export const simCommand: Command = {
  name: 'sim',
  summary: 'run the simulated Kalshi exchange (WebSocket + REST, ground truth, faults, replay)',
  get help() {
    return helpText();
  },
  async run(argv) {
    const { options, readyJson } = simOptionsFromArgv(argv);
    const sim = await startSimulator(options);
    if (readyJson) process.stdout.write(JSON.stringify({ wsUrl: sim.wsUrl, restUrl: sim.restUrl, port: sim.port, pid: process.pid }) + '\n');
    else process.stdout.write(`kdp sim: ws   ${sim.wsUrl}\nkdp sim: rest ${sim.restUrl}\n`);
    // A parent that spawned us with IPC may inject faults on demand.
    // It may also freeze and resume the exchange clock (the demo holds the exchange until every
    // gatherer has subscribed); the reply gives the exchange clock and the last record number.
    const onIpc = (msg: unknown): void => {
      const m = msg as { inject?: FaultRequest; clock?: 'pause' | 'resume'; connections?: boolean; id?: number };
      let error: string | undefined;
      let connections: SimConnection[] | undefined;
      // resume() emits the first batch at once: the reply's record number is the last one made
      // before the clock moved again, so a window "after the resume" starts after it.
      const recordsBefore = sim.stats().records;
      try {
        if (m.inject) sim.injectFault(m.inject);
        else if (m.connections) connections = sim.connections();
        else if (m.clock === 'pause') sim.pause();
        else if (m.clock === 'resume') sim.resume();
        else return;
      } catch (err) {
        error = (err as Error).message;
      }
      const records = m.clock === 'resume' ? recordsBefore : sim.stats().records;
      process.send?.({ id: m.id, error, nowUs: sim.nowUs(), records, connections });
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
    // The parent may already be gone (its IPC channel closed): only disconnect a live channel.
    if (process.send && process.connected) process.disconnect();
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
      truth: { type: 'string' },
      'ws-url': { type: 'string' },
      'rest-url': { type: 'string' },
      'key-id': { type: 'string' },
      'private-key': { type: 'string' },
      tickers: { type: 'string' },
      markets: { type: 'string' },
      seconds: { type: 'string' },
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
