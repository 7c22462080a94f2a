// Ring throughput: single-thread write+read pairs, and the real thing, a producer on this thread
// and a consumer worker checking every frame (sequence and content) on another.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { FRAME_HEADER_BYTES, FrameKind } from '../src/ingest/frame';
import { createRingBuffer, RingConsumer, RingProducer } from '../src/ingest/ring';
import { produceFrames } from '../src/ingest/ring-check';
import { DELTA_JSON, isMain, runMicro, type MicroResult } from './micro-common';

const CROSS_FRAMES = 500_000;
const BATCH = 1000;
type Outcome = { frames: number; checksum: number; errors: number };

/** Starts a consumer worker on a fresh ring and resolves once it is ready. */
async function startConsumer(): Promise<{ sab: SharedArrayBuffer; worker: Worker; done: Promise<Outcome> }> {
  const sab = createRingBuffer({ ringBytes: 1 << 20, frameBytesMax: 4096 });
  const worker = new Worker(join(__dirname, '..', 'src', 'ingest', 'ring-check-worker.js'), { workerData: { buffer: sab } });
  let ready!: () => void;
  const readyP = new Promise<void>((r) => (ready = r));
  const done = new Promise<Outcome>((resolve, reject) => {
    worker.on('message', (m: unknown) => (m === 'ready' ? ready() : resolve(m as Outcome)));
    worker.once('error', reject);
  });
  await readyP;
  return { sab, worker, done };
}

export async function benchRing(): Promise<MicroResult[]> {
  const sab = createRingBuffer({ ringBytes: 1 << 20, frameBytesMax: 4096 });
  const producer = new RingProducer(sab);
  const consumer = new RingConsumer(sab);
  const frame = new Uint8Array(64).fill(7);
  let current: Awaited<ReturnType<typeof startConsumer>> | null = null;
  let expected = 0;
  let sink = 0;
  return runMicro('ring', [
    {
      name: 'same thread tryWrite+peek/release 64 B',
      opsPerCall: BATCH,
      check: () => {
        assert.ok(producer.tryWrite(frame));
        assert.deepEqual(consumer.peek(), frame);
        consumer.release();
      },
      fn: () => {
        for (let i = 0; i < BATCH; i++) {
          producer.tryWrite(frame);
          sink += consumer.peek()!.length;
          consumer.release();
        }
      },
    },
    {
      // The ingest thread's hot path: header and payload laid straight into the ring.
      name: `same thread tryWriteFrame+peek/release (${DELTA_JSON.length} B message)`,
      opsPerCall: BATCH,
      check: () => {
        assert.ok(producer.tryWriteFrame(FrameKind.data, 3, 1_779_946_509_623_423, 0, DELTA_JSON));
        assert.equal(consumer.peek()!.length, FRAME_HEADER_BYTES + DELTA_JSON.length);
        consumer.release();
      },
      fn: () => {
        for (let i = 0; i < BATCH; i++) {
          producer.tryWriteFrame(FrameKind.data, 3, 1_779_946_509_623_423 + i, 0, DELTA_JSON);
          sink += consumer.peek()!.length;
          consumer.release();
        }
      },
    },
    {
      name: `cross-thread 8-64 B frames (${CROSS_FRAMES / 1000}k/run, checked)`,
      opsPerCall: CROSS_FRAMES,
      check: async () => {
        const c = await startConsumer();
        const checksum = produceFrames(new RingProducer(c.sab), 10_000, 8, 64);
        assert.deepEqual(await c.done, { frames: 10_000, checksum, errors: 0 });
        await c.worker.terminate();
      },
      fn: async () => {
        expected = produceFrames(new RingProducer(current!.sab), CROSS_FRAMES, 8, 64);
        const got = await current!.done;
        if (got.errors !== 0 || got.checksum !== expected) throw new Error('cross-thread frames corrupted');
      },
      options: {
        beforeEach: async () => {
          current = await startConsumer();
        },
        afterEach: async () => {
          await current?.worker.terminate();
          current = null;
        },
      },
    },
  ]).finally(() => assert.ok(sink >= 0));
}

if (isMain(module)) void benchRing();
