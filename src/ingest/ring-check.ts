// A self-checking frame pattern across threads, producer side: the ring's cross-thread test and
// its benchmark both drive a real consumer thread (ring-check-worker.ts) with it, so it lives
// beside the ring rather than in either of them (the bench must not import test code).
import type { RingProducer } from './ring';

/** Fills `frame` (length len >= 4) with the pattern the consumer worker checks. */
export function fillFrame(frame: Uint8Array, seq: number): void {
  frame[0] = seq & 255;
  frame[1] = (seq >>> 8) & 255;
  frame[2] = (seq >>> 16) & 255;
  frame[3] = (seq >>> 24) & 255;
  for (let i = 4; i < frame.length; i++) frame[i] = (seq + i) & 255;
}

/** Writes `count` frames of sizes cycling through minLen..maxLen; returns the expected checksum. */
export function produceFrames(ring: RingProducer, count: number, minLen: number, maxLen: number): number {
  const pool: Uint8Array[] = [];
  for (let len = minLen; len <= maxLen; len++) pool.push(new Uint8Array(len));
  let checksum = 0;
  for (let seq = 0; seq < count; seq++) {
    const frame = pool[seq % pool.length]!;
    fillFrame(frame, seq);
    while (!ring.tryWrite(frame)) ring.waitForSpace(frame.length + 8, 1000);
    checksum = (checksum + frame.length * 31 + seq) % 0x7fffffff;
  }
  ring.close();
  return checksum;
}
