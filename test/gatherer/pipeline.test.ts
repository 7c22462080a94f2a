// The gatherer's Pipeline with real worker threads (piscina, dist/src/workers/task.js): how it
// relaunches a dying worker, and what its graceful stop reports.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import type { KdpError } from '../../src/core/errors';
import { createLogger } from '../../src/core/log';
import { Pipeline, type PipelineEvents, type PipelineOptions } from '../../src/gatherer/pipeline';
import type { WorkerTaskOptions } from '../../src/workers/protocol';
import { waitUntil } from '../copy/helpers';

function memoryLog(): { log: ReturnType<typeof createLogger>; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  return { log: createLogger('gatherer', { level: 'info', destination: sink }), lines };
}

function taskOptions(databaseUrl: string, writer: Partial<WorkerTaskOptions['writer']> = {}): WorkerTaskOptions {
  return {
    gathererId: 'g1',
    databaseUrl,
    frameBytesMax: 1024,
    writer: {
      batchRowsMax: 100,
      batchBytesMax: 1024 * 1024,
      flushIntervalMs: 20,
      pendingRowsMax: 1_000,
      retryAttemptsMax: 3,
      retryBackoffInitialMs: 10,
      retryBackoffMaxMs: 100,
      ...writer,
    },
    recentTradeIdsMax: 100,
    logLevel: 'warn',
  };
}

interface Seen {
  restarts: { worker: number; error: string; delayMs: number }[];
  failed: { worker: number; err: KdpError }[];
}

function recordingEvents(): { events: PipelineEvents; seen: Seen } {
  const seen: Seen = { restarts: [], failed: [] };
  const events: PipelineEvents = {
    reply: () => undefined,
    gap: () => undefined,
    lifecycle: () => undefined,
    flush: () => undefined,
    workerRestarted: (worker, error, delayMs) => seen.restarts.push({ worker, error, delayMs }),
    workerFailed: (worker, err) => seen.failed.push({ worker, err }),
  };
  return { events, seen };
}

test('a worker that dies at every start is relaunched after growing backoff delays, at most workerRestartsMax times, then the pipeline gives up with a coded, logged error', { timeout: 120_000 }, async () => {
  const { log, lines } = memoryLog();
  const { events, seen } = recordingEvents();
  // pendingRowsMax below batchRowsMax: the gatherer refuses this config at start-up, so only a
  // Pipeline built directly can hand it to a worker, whose COPY writers then refuse it at every start.
  const opts: PipelineOptions = {
    workers: 1,
    ringBytes: 64 * 1024,
    frameBytesMax: 1024,
    task: taskOptions('postgres://kdp@127.0.0.1:1/kdp', { batchRowsMax: 100, pendingRowsMax: 10 }),
    // The top of each jitter range, so each delay is its ceiling: 9, 19, 39, 79 ms.
    restart: { backoffInitialMs: 10, backoffMaxMs: 10_000, restartsMax: 4, stableMs: 600_000, random: () => 0.999 },
  };
  const pipeline = new Pipeline(opts, events, log);
  pipeline.start();
  let drained: boolean | undefined;
  try {
    await waitUntil(() => seen.failed.length > 0 || seen.restarts.length > 4, 'the pipeline to give up on the worker, or to relaunch it past the limit', 60_000);
    assert.equal(seen.restarts.length, 4, `relaunches: ${JSON.stringify(seen.restarts)}`);
    assert.match(seen.restarts[0]!.error, /pendingRowsMax/);
    const delays = seen.restarts.map((r) => r.delayMs);
    assert.deepEqual(delays, [9, 19, 39, 79]);
    assert.equal(seen.failed.length, 1);
    assert.equal(seen.failed[0]!.worker, 0);
    assert.equal(seen.failed[0]!.err.code, 'KDP_ERR_WORKER_FAILED');
    assert.ok(lines.some((l) => l.includes('KDP_ERR_WORKER_FAILED') && JSON.parse(l).level === 50), 'an error log line carries the code');
  } finally {
    drained = await pipeline.stop(10_000);
  }
  assert.equal(drained, false, 'a pipeline that gave up on a worker cannot say its rings were drained');
  assert.equal(pipeline.restarts(), 4, 'nothing was relaunched after giving up');
});
