// Consumer side of ring-check.ts (the cross-thread ring test and benchmark): drains a ring, checks
// every frame's sequence number and content pattern, and reports a checksum to the parent.
import { parentPort, workerData } from 'node:worker_threads';
import { RingConsumer } from './ring';

const ring = new RingConsumer(workerData.buffer as SharedArrayBuffer);
let checksum = 0;
let errors = 0;
let expectedSeq = 0;
parentPort!.postMessage('ready');
const frames = ring.consumeUntilDrained((frame) => {
  const len = frame.length;
  // Frame layout written by the producer: u32 LE sequence number, then bytes (seq + i) & 255.
  const seq = frame[0]! | (frame[1]! << 8) | (frame[2]! << 16) | (frame[3]! * 0x1000000);
  if (seq !== expectedSeq || len < 4) errors++;
  for (let i = 4; i < len; i++) if (frame[i] !== ((seq + i) & 255)) errors++;
  checksum = (checksum + len * 31 + seq) % 0x7fffffff;
  expectedSeq = seq + 1;
});
parentPort!.postMessage({ frames, checksum, errors });
