// Shared runner for the micro benchmarks: every task's output is checked once before timing (a
// benchmark of wrong code is worthless), then tinybench measures and one line per task reports
// operations per second with the relative margin of error and the latency spread.
import assert from 'node:assert/strict';
import { loadavg } from 'node:os';
import { emitResult } from './common';
// tinybench is ESM-only and this package is CommonJS: types via resolution-mode, code via import().
import type { Fn, FnOptions } from 'tinybench' with { 'resolution-mode': 'import' };

/** A live-shaped orderbook_delta message (~99 % of the exchange's traffic): the bus benchmarks' payload. */
export const DELTA_JSON = Buffer.from(
  '{"type":"orderbook_delta","sid":2,"seq":2,"msg":{"market_ticker":"FED-23DEC-T3.00","market_id":"9b0f6b43-5b0e-4c4c-9a0e-000000000001",' +
    '"price_dollars":"0.9600","delta_fp":"-54.00","side":"yes","ts":"2026-05-28T05:35:09.623423Z","ts_ms":1779946509623}}',
);

export interface MicroTask {
  readonly name: string;
  /** Operations one call performs (calls are batched so timer overhead stays negligible). */
  readonly opsPerCall: number;
  readonly fn: Fn;
  /** Runs once before timing; throws when the task's output is wrong. */
  readonly check: () => void | Promise<void>;
  readonly options?: FnOptions;
}

export interface MicroResult {
  readonly name: string;
  readonly opsPerSec: number;
  readonly rmePercent: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly samples: number;
}

export async function runMicro(suite: string, tasks: readonly MicroTask[], timeMs = Number(process.env.KDP_BENCH_MS ?? 500)): Promise<MicroResult[]> {
  for (const t of tasks) await t.check();
  const { Bench } = await import('tinybench');
  // KDP_BENCH_ITERATIONS lowers tinybench's minimum sample count (64) for `--quick` runs.
  const bench = new Bench({ name: suite, time: timeMs, warmupTime: Math.min(200, timeMs / 2), iterations: Number(process.env.KDP_BENCH_ITERATIONS ?? 64) });
  for (const t of tasks) bench.add(t.name, t.fn, t.options);
  await bench.run();
  const results: MicroResult[] = [];
  for (const task of bench.tasks) {
    const spec = tasks.find((t) => t.name === task.name)!;
    const r = task.result;
    assert.ok(r.state === 'completed', `${suite}/${task.name} did not complete: ${r.state === 'errored' ? r.error.message : r.state}`);
    results.push({
      name: task.name,
      opsPerSec: r.throughput.mean * spec.opsPerCall,
      rmePercent: r.latency.rme,
      p50Ms: r.latency.p50,
      p99Ms: r.latency.p99,
      samples: r.latency.samples?.length ?? 0,
    });
  }
  for (const x of results) {
    console.log(
      `${suite.padEnd(8)} ${x.name.padEnd(34)} ${Math.round(x.opsPerSec).toLocaleString('en-US').padStart(13)} ops/s  ±${x.rmePercent.toFixed(1)}%  ` +
        `(per call p50 ${x.p50Ms.toFixed(3)} ms, p99 ${x.p99Ms.toFixed(3)} ms)`,
    );
  }
  emitResult(`micro-${suite}`, { timeMs, loadavg: loadavg().map((x) => +x.toFixed(2)), results });
  return results;
}

/** True when the module is the program being run (not imported by a suite runner). */
export const isMain = (mod: NodeModule): boolean => require.main === mod;
