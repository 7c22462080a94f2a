// WebSocket messages per second from the simulator (own process, pace = fast) to one reader.
// The reader counts frames (no JSON parsing) so the figure is the simulator's delivery rate.
// Run: node dist/bench/sim-throughput.js [--seconds 5] [--reps 3] [--markets 200]
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { spawnSimulator } from '../src/sim/spawn';

interface Rep {
  messages: number;
  bytes: number;
  seconds: number;
}

async function measure(wsUrl: string, restUrl: string, seconds: number): Promise<Rep> {
  const markets = (await (await fetch(`${restUrl}/markets?status=open&limit=1000`)).json()) as { markets: Array<{ ticker: string }> };
  const ws = new WebSocket(wsUrl, { perMessageDeflate: false });
  await new Promise((r, j) => {
    ws.once('open', r);
    ws.once('error', j);
  });
  let messages = 0;
  let bytes = 0;
  let counting = false;
  ws.on('message', (data: Buffer) => {
    if (!counting) return;
    messages++;
    bytes += data.length;
  });
  ws.send(JSON.stringify({ id: 1, cmd: 'subscribe', params: { channels: ['orderbook_delta'], market_tickers: markets.markets.map((m) => m.ticker) } }));
  ws.send(JSON.stringify({ id: 2, cmd: 'subscribe', params: { channels: ['ticker', 'trade'] } }));
  await new Promise((r) => setTimeout(r, 500)); // warm-up
  counting = true;
  const t0 = process.hrtime.bigint();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  counting = false;
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  ws.terminate();
  return { messages, bytes, seconds: elapsed };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, reps: { type: 'string', default: '3' }, markets: { type: 'string', default: '200' } } });
  const seconds = Number(values.seconds);
  const reps = Number(values.reps);
  const rates: number[] = [];
  for (let i = 0; i < reps; i++) {
    // A fresh simulator per repetition; fast pace: it produces as fast as the reader takes frames.
    const sim = await spawnSimulator({ markets: Number(values.markets), rate: 1_000_000, seed: 100 + i, pace: 'fast', slowConsumerBytes: 64 * 1024 * 1024 });
    try {
      const r = await measure(sim.wsUrl, sim.restUrl, seconds);
      const rate = r.messages / r.seconds;
      rates.push(rate);
      process.stdout.write(`rep ${i + 1}: ${r.messages} messages in ${r.seconds.toFixed(2)} s = ${Math.round(rate)} msg/s, ${(r.bytes / r.seconds / 1e6).toFixed(1)} MB/s, ${Math.round(r.bytes / Math.max(1, r.messages))} B/msg\n`);
    } finally {
      await sim.stop();
    }
  }
  const sorted = [...rates].sort((a, b) => a - b);
  process.stdout.write(`sim-throughput: median ${Math.round(sorted[Math.floor(sorted.length / 2)]!)} msg/s, min ${Math.round(sorted[0]!)}, max ${Math.round(sorted[sorted.length - 1]!)} (${reps} reps x ${seconds} s, one reader)\n`);
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exitCode = 1;
});
