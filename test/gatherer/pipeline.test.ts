// The gatherer's Pipeline with real worker threads (piscina, dist/src/workers/task.js): how it
// relaunches a dying worker, and what its graceful stop reports.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { Client } from 'pg';
import type { KdpError } from '../../src/core/errors';
import { createLogger } from '../../src/core/log';
import { Pipeline, type PipelineEvents, type PipelineOptions } from '../../src/gatherer/pipeline';
import { FrameCodec, FrameKind } from '../../src/ingest/frame';
import { migrate } from '../../src/schema/migrate';
import type { WorkerTaskOptions } from '../../src/workers/protocol';
import { count, waitUntil } from '../copy/helpers';
import { startPg, withClient, type TestPg } from '../harness/pg';

let pg: TestPg;
before(async () => {
  pg = await startPg();
});
after(async () => {
  await pg?.close();
});

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
    snapshotsHeldMax: 100,
    snapshotHoldMs: 1000,
    logLevel: 'warn',
    drainTimeoutMs: 10_000,
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

test(
  'a worker that dies at every start is relaunched after growing backoff delays, at most workerRestartsMax times, then the pipeline gives up with a coded, logged error',
  { timeout: 120_000 },
  async () => {
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
      await waitUntil(
        () => seen.failed.length > 0 || seen.restarts.length > 4,
        'the pipeline to give up on the worker, or to relaunch it past the limit',
        60_000,
      );
      assert.equal(seen.restarts.length, 4, `relaunches: ${JSON.stringify(seen.restarts)}`);
      assert.match(seen.restarts[0]!.error, /pendingRowsMax/);
      const delays = seen.restarts.map((r) => r.delayMs);
      assert.deepEqual(delays, [9, 19, 39, 79]);
      assert.equal(seen.failed.length, 1);
      assert.equal(seen.failed[0]!.worker, 0);
      assert.equal(seen.failed[0]!.err.code, 'KDP_ERR_WORKER_FAILED');
      assert.ok(
        lines.some((l) => l.includes('KDP_ERR_WORKER_FAILED') && JSON.parse(l).level === 50),
        'an error log line carries the code',
      );
    } finally {
      drained = await pipeline.stop();
    }
    assert.equal(drained, false, 'a pipeline that gave up on a worker cannot say its rings were drained');
    assert.equal(pipeline.restarts(), 4, 'nothing was relaunched after giving up');
  },
);

function tradeFrame(codec: FrameCodec, i: number, nowMs: number): Uint8Array {
  const trade = {
    type: 'trade',
    sid: 2,
    msg: {
      trade_id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
      market_ticker: 'KX-STOP',
      yes_price_dollars: '0.3000',
      no_price_dollars: '0.7000',
      count_fp: '1.00',
      taker_side: 'yes',
      ts_ms: nowMs + i,
    },
  };
  return codec.encode(FrameKind.data, 1, nowMs * 1000 + i, Buffer.from(JSON.stringify(trade)));
}

test(
  "a graceful stop whose database never takes the pending rows reports false and logs how many rows were left, after the drain timeout rather than the writer's own",
  { timeout: 120_000 },
  async () => {
    const url = await pg.newDatabase('kdp_g');
    await withClient(url, (c) => migrate(c, { kind: 'gatherer', engine: 'postgres' }));
    // Another session holds the trades table against writes (reads, such as the writer's session
    // set-up, still pass): the writer's INSERT blocks, nothing commits.
    const holder = new Client({ connectionString: url });
    await holder.connect();
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE trades IN EXCLUSIVE MODE');
    const { log, lines } = memoryLog();
    const { events, seen } = recordingEvents();
    const pipeline = new Pipeline(
      {
        workers: 1,
        ringBytes: 64 * 1024,
        frameBytesMax: 4096,
        // Longer than the COPY writer's own 10 s close default, which used to end the drain early and clean.
        task: { ...taskOptions(url), frameBytesMax: 4096, drainTimeoutMs: 12_000 },
        restart: { backoffInitialMs: 10, backoffMaxMs: 100, restartsMax: 0, stableMs: 1 },
      },
      events,
      log,
    );
    pipeline.start();
    const codec = new FrameCodec(4096);
    const ring = pipeline.rings[0]!;
    const nowMs = Date.now();
    assert.ok(ring.tryWrite(codec.encode(FrameKind.connectionOpened, 1, nowMs * 1000, new Uint8Array(0))));
    for (let i = 0; i < 5; i++) assert.ok(ring.tryWrite(tradeFrame(codec, i, nowMs)));
    let drained: boolean | undefined;
    try {
      await waitUntil(() => pipeline.total('pending_rows') === 5, 'the worker to hold the 5 trade rows', 30_000);
      await waitUntil(
        async () => (await count(holder, `SELECT count(*) AS n FROM pg_locks WHERE NOT granted AND relation = 'trades'::regclass`)) > 0,
        'the writer to wait on the lock',
        30_000,
      );
      drained = await pipeline.stop();
    } finally {
      if (drained === undefined) await pipeline.stop();
      await holder.query('ROLLBACK');
    }
    try {
      assert.equal(drained, false);
      const left = lines.map((l) => JSON.parse(l) as { msg: string; unflushedRows?: number }).find((l) => l.msg === 'rows left uncommitted at stop');
      assert.equal(left?.unflushedRows, 5, `log: ${lines.join('')}`);
      assert.equal(await count(holder, 'SELECT count(*) AS n FROM trades'), 0);
      assert.deepEqual(seen.restarts, []);
    } finally {
      await holder.end();
    }
  },
);
