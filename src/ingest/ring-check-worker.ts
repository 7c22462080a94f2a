// Consumer side of ring-check.ts (the cross-thread ring test and benchmark): drains a ring, checks
// every frame's sequence number and content pattern, and reports a checksum to the parent.
import { parentPort, workerData } from 'node:worker_threads';
import { RingConsumer } from './ring';

const ring = new RingConsumer(workerData.buffer as SharedArrayBuffer);
const scratch = new Uint8Array(ring.frameBytesMax);
let frames = 0;
let checksum = 0;
let errors = 0;
let expectedSeq = 0;
parentPort!.postMessage('ready');
for (;;) {
  const len = ring.readInto(scratch);
  if (len < 0) {
    if (ring.isDrained()) break;
    ring.waitForData(100);
    continue;
  }
  // Frame layout written by the producer: u32 LE sequence number, then bytes (seq + i) & 255.
  const seq = scratch[0]! | (scratch[1]! << 8) | (scratch[2]! << 16) | (scratch[3]! * 0x1000000);
  if (seq !== expectedSeq || len < 4) errors++;
  for (let i = 4; i < len; i++) if (scratch[i] !== ((seq + i) & 255)) errors++;
  checksum = (checksum + len * 31 + seq) % 0x7fffffff;
  expectedSeq = seq + 1;
  frames++;
}
parentPort!.postMessage({ frames, checksum, errors });
