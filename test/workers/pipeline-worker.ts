// Worker side of the pipeline test: ring -> FrameProcessor -> rows, the way a gatherer worker
// thread runs it (each frame decoded in place, its payload a view of the ring).
import { parentPort, workerData } from 'node:worker_threads';
import { RingConsumer } from '../../src/ingest/ring';
import { FrameProcessor } from '../../src/workers/processor';

const ring = new RingConsumer(workerData.buffer as SharedArrayBuffer);
const rows: string[] = [];
const events: string[] = [];
const processor = new FrameProcessor(
  { gathererId: 'g1', frameBytesMax: ring.frameBytesMax },
  {
    rows: { append: (table, line) => (rows.push(`${table}|${line}`), true) },
    control: (e) => events.push(`control:${e.kind}`),
    gap: (e) => events.push(`gap:${e.kind}:${e.sid}:${e.expectedSeq}:${e.gotSeq}`),
    reject: (code) => events.push(`reject:${code}`),
    lifecycle: (channel) => events.push(`lifecycle:${channel}`),
  },
);
ring.consumeUntilDrained((frame) => processor.processBytes(frame));
parentPort!.postMessage({ rows, events, counters: processor.counters });
