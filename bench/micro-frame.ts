// Bus frame codec: encode on the ingest thread, decode on the worker.
import assert from 'node:assert/strict';
import { FrameCodec, FrameKind } from '../src/ingest/frame';
import { isMain, runMicro, type MicroResult } from './micro-common';

const DELTA_JSON = Buffer.from(
  '{"type":"orderbook_delta","sid":2,"seq":2,"msg":{"market_ticker":"FED-23DEC-T3.00","market_id":"9b0f6b43-5b0e-4c4c-9a0e-000000000001",' +
    '"price_dollars":"0.9600","delta_fp":"-54.00","side":"yes","ts":"2026-05-28T05:35:09.623423Z","ts_ms":1779946509623}}',
);
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
