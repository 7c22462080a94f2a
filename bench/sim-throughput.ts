// WebSocket messages per second from the simulator (own process, pace = fast) to one reader.
// The reader counts frames (no JSON parsing) so the figure is the simulator's delivery rate. The
// machine is shared, so the simulator's own CPU time is reported too (messages per CPU-second).
// Run: node dist/bench/sim-throughput.js [--seconds 5] [--reps 3] [--markets 200]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { spawnSimulator } from '../src/sim/spawn';
import { emitResult, environment, spread } from './common';

interface Rep {
  messages: number;
  bytes: number;
  seconds: number;
  simCpuSeconds: number;
  readerCpuSeconds: number;
}

/** CPU seconds (user + system) a process has used so far, from /proc (Linux). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

async function measure(wsUrl: string, restUrl: string, seconds: number, simPid: number): Promise<Rep> {
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
  const cpu0 = cpuSeconds(simPid);
  const reader0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  counting = false;
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  const simCpuSeconds = cpuSeconds(simPid) - cpu0;
  const readerUsage = process.cpuUsage(reader0);
  const readerCpuSeconds = (readerUsage.user + readerUsage.system) / 1e6;
  ws.terminate();
  return { messages, bytes, seconds: elapsed, simCpuSeconds, readerCpuSeconds };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { seconds: { type: 'string', default: '5' }, reps: { type: 'string', default: '3' }, markets: { type: 'string', default: '200' } },
  });
  const seconds = Number(values.seconds);
  const reps = Number(values.reps);
  const rates: number[] = [];
  const env = environment();
  for (let i = 0; i < reps; i++) {
    // A fresh simulator per repetition; fast pace: it produces as fast as the reader takes frames.
    const sim = await spawnSimulator({
      markets: Number(values.markets),
      rate: 1_000_000,
      seed: 100 + i,
      pace: 'fast',
      slowConsumerBytes: 64 * 1024 * 1024,
      batchMax: Number(process.env.SIM_BATCH_MAX ?? 4096),
      tradesKeptMax: Number(process.env.SIM_TRADES_KEPT ?? 200_000),
    });
    try {
      const r = await measure(sim.wsUrl, sim.restUrl, seconds, sim.pid);
      const rate = r.messages / r.seconds;
      rates.push(rate);
      process.stdout.write(
        `rep ${i + 1}: ${r.messages} messages in ${r.seconds.toFixed(2)} s = ${Math.round(rate)} msg/s, ${(r.bytes / r.seconds / 1e6).toFixed(1)} MB/s, ${Math.round(r.bytes / Math.max(1, r.messages))} B/msg; simulator used ${r.simCpuSeconds.toFixed(2)} CPU s = ${Math.round(r.messages / Math.max(0.01, r.simCpuSeconds))} msg per simulator CPU-second; reader used ${r.readerCpuSeconds.toFixed(2)} CPU s\n`,
      );
    } finally {
      await sim.stop();
    }
  }
  const sorted = [...rates].sort((a, b) => a - b);
  process.stdout.write(
    `sim-throughput: median ${Math.round(sorted[Math.floor(sorted.length / 2)]!)} msg/s, min ${Math.round(sorted[0]!)}, max ${Math.round(sorted[sorted.length - 1]!)} (${reps} reps x ${seconds} s, one reader)\n`,
  );
  emitResult('sim-throughput', { env, seconds, reps, msgsPerSec: spread(rates.map(Math.round)), loadavgAtEnd: environment().loadavg });
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exitCode = 1;
});
