// Bus frame codec: encode on the ingest thread, decode on the worker.
import assert from 'node:assert/strict';
import { FrameCodec, FrameKind } from '../src/ingest/frame';
import { DELTA_JSON, isMain, runMicro, type MicroResult } from './micro-common';

const BATCH = 1000;

export async function benchFrame(): Promise<MicroResult[]> {
  const codec = new FrameCodec(1 << 20);
  const encoded = codec.encode(FrameKind.data, 3, 1_779_946_509_623_423, DELTA_JSON);
  let sink = 0;
  return runMicro('frame', [
    {
      name: `encode data frame (${DELTA_JSON.length} B payload)`,
      opsPerCall: BATCH,
      check: () => assert.deepEqual(Buffer.from(codec.decode(codec.encode(FrameKind.data, 3, 1, DELTA_JSON)).payload), DELTA_JSON),
      fn: () => {
        for (let i = 0; i < BATCH; i++) sink += codec.encode(FrameKind.data, 3, 1_779_946_509_623_423 + i, DELTA_JSON).length;
      },
    },
    {
      name: 'decode data frame',
      opsPerCall: BATCH,
      check: () => {
        const f = codec.decode(encoded);
        assert.equal(f.receivedUs, 1_779_946_509_623_423);
        assert.deepEqual(Buffer.from(f.payload), DELTA_JSON);
      },
      fn: () => {
        for (let i = 0; i < BATCH; i++) sink += codec.decode(encoded).payload.length;
      },
    },
  ]).finally(() => assert.ok(sink >= 0));
}

if (isMain(module)) void benchFrame();
