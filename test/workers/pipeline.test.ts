// The assembled data path across a real thread boundary: codec -> ring -> worker FrameProcessor.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { FrameCodec, FrameKind } from '../../src/ingest/frame';
import { createRingBuffer, RingProducer } from '../../src/ingest/ring';
import { Capture } from './harness';

function messages(count: number): unknown[] {
  const out: unknown[] = [];
  let seq = 0;
  for (let i = 0; i < count; i++) {
    const us = String(100000 + (i >> 2)).padStart(6, '0'); // four messages share each µs
    const ticker = `M-${i % 7}`;
    switch (i % 5) {
      case 0:
        out.push({ type: 'orderbook_snapshot', sid: 1, seq: ++seq, msg: { market_ticker: ticker, yes_dollars_fp: [['0.1000', `${i}.00`]] } });
        break;
      case 4:
        out.push({
          type: 'trade',
          sid: 2,
          msg: {
            trade_id: `00000000-0000-0000-0000-${String(i).padStart(12, '0')}`,
            market_ticker: ticker,
            yes_price_dollars: '0.3000',
            no_price_dollars: '0.7000',
            count_fp: '1.00',
            ts_ms: 1_700_000_000_000 + i,
          },
        });
        break;
      default:
        if (i === 5003) seq += 2; // a gap in the middle: 4003 seq-bearing frames came before, so 4004 and 4005 are lost
        out.push({
          type: 'orderbook_delta',
          sid: 1,
          seq: ++seq,
          msg: { market_ticker: ticker, price_dollars: '0.1000', delta_fp: '1.00', side: 'no', ts: `2026-05-28T05:35:09.${us}Z` },
        });
    }
  }
  out.push('{"type": broken');
  return out;
}

test('frames through a ring into a worker FrameProcessor give the same rows and events as in-thread processing', async () => {
  const codec = new FrameCodec(1 << 16);
  const sab = createRingBuffer({ ringBytes: 1 << 16, frameBytesMax: 1 << 14 });
  const worker = new Worker(join(__dirname, 'pipeline-worker.js'), { workerData: { buffer: sab } });
  const done = new Promise<{ rows: string[]; events: string[] }>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  const frames = [codec.encode(FrameKind.connectionOpened, 3, 1, new Uint8Array(0))];
  messages(20_000).forEach((m, i) =>
    frames.push(codec.encode(FrameKind.data, 3, 1_779_946_510_000_000 + i, Buffer.from(typeof m === 'string' ? m : JSON.stringify(m)))),
  );
  const producer = new RingProducer(sab);
  for (const f of frames) while (!producer.tryWrite(f)) producer.waitForSpace(f.length + 8, 1000);
  producer.close();
  const got = await done;
  await worker.terminate();

  const local = new Capture({ frameBytesMax: 1 << 14 });
  const events: string[] = [];
  for (const f of frames) local.processor.processBytes(f);
  for (const e of local.controls) events.push(`control:${e.kind}`);
  assert.deepEqual(
    got.rows,
    local.rows.map((r) => `${r.table}|${r.line}`),
  );
  assert.equal(got.rows.length, 20_000);
  assert.deepEqual(
    got.events.filter((e) => e.startsWith('gap')),
    ['gap:gap:1:4004:4006'],
  );
  assert.deepEqual(
    got.events.filter((e) => e.startsWith('reject')),
    ['reject:KDP_ERR_MSG_JSON'],
  );
  assert.deepEqual(
    got.events.filter((e) => e.startsWith('control')),
    events,
  );
});
