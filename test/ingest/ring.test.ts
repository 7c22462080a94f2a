import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { createRingBuffer, RING_HEADER_BYTES, RING_SLOTS, RingConsumer, RingProducer } from '../../src/ingest/ring';
import { isKdpError } from '../../src/core/errors';
import { produceFrames } from '../../src/ingest/ring-check';
import { FRAME_HEADER_BYTES, FrameCodec, FrameKind, type BusFrame } from '../../src/ingest/frame';

const CAPACITY = 4096;
const FRAME_MAX = CAPACITY / 2 - 4;

function pair(startIndex = 0, ringBytes = CAPACITY, frameBytesMax = FRAME_MAX) {
  const sab = createRingBuffer({ ringBytes, frameBytesMax, startIndex });
  return { sab, producer: new RingProducer(sab), consumer: new RingConsumer(sab) };
}

const frameOf = (len: number, tag: number): Uint8Array => Uint8Array.from({ length: len }, (_, i) => (tag * 7 + i) & 255);
const recordBytes = (len: number): number => 4 + ((len + 3) & ~3);

type Op = { write: number } | { read: true };
const opArb = fc.oneof(
  fc.record({ write: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: FRAME_MAX })) }),
  fc.constant({ read: true as const }),
);

test('ring behaves like a bounded FIFO queue (model-based, across the uint32 index wrap)', () => {
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 400 }), fc.boolean(), (ops: Op[], nearWrap) => {
      const start = nearWrap ? 0x1_0000_0000 - 2048 : 0;
      const { producer, consumer } = pair(start);
      const model: Uint8Array[] = [];
      // Model of the documented layout: records never split; a record that does not fit before
      // the end of the area wastes the tail.
      let written = 0;
      let read = 0;
      const modelWaste: number[] = [];
      let tag = 0;
      for (const op of ops) {
        if ('write' in op) {
          const frame = frameOf(op.write, tag++);
          const need = recordBytes(op.write);
          const tail = CAPACITY - ((start + written) % CAPACITY);
          const waste = tail < need ? tail : 0;
          const fits = written - read + waste + need <= CAPACITY;
          assert.equal(producer.tryWrite(frame), fits);
          if (fits) {
            model.push(frame);
            modelWaste.push(waste + need);
            written += waste + need;
          }
          if (model.length === 0) assert.ok(fits, 'an empty ring always takes a maximal frame');
        } else {
          const got = consumer.read();
          const want = model.shift();
          assert.deepEqual(got, want);
          if (want !== undefined) read += modelWaste.shift()!;
        }
        assert.equal(consumer.usedBytes(), written - read);
        assert.equal(producer.freeBytes(), CAPACITY - (written - read));
      }
    }),
    { numRuns: 300 },
  );
});

test('frames of every size from 0 to frameBytesMax round-trip, wrapping repeatedly', () => {
  const { producer, consumer } = pair(0x1_0000_0000 - 1024);
  for (let len = 0; len <= FRAME_MAX; len++) {
    const frame = frameOf(len, len);
    assert.ok(producer.tryWrite(frame), `write ${len}`);
    if (len % 3 === 0) {
      // Keep a second frame in flight at times so wrap markers land between live records.
      assert.deepEqual(consumer.peek(), frame);
      consumer.release();
    } else {
      assert.deepEqual(consumer.read(), frame);
    }
    assert.equal(consumer.read(), undefined);
  }
});

test('bus frames written in place (tryWriteFrame) and read in place (peek/release) are the frames the codec encodes, with the same fit, byte for byte', () => {
  const codec = new FrameCodec(FRAME_MAX);
  const frameArb = fc.record({
    kind: fc.constantFrom(...Object.values(FrameKind)),
    connId: fc.integer({ min: 0, max: 0x7fffffff }),
    receivedUs: fc.maxSafeNat(),
    arg: fc.nat(),
    text: fc.string({ maxLength: 40 }),
    big: fc.integer({ min: 0, max: FRAME_MAX - FRAME_HEADER_BYTES }),
  });
  const op = fc.oneof(frameArb, frameArb, fc.constant({ peek: true as const }));
  fc.assert(
    fc.property(fc.array(op, { maxLength: 300 }), fc.boolean(), (ops, nearWrap) => {
      // Two rings in lockstep: one written in place, the other with the codec's encoded frames.
      const start = nearWrap ? 0x1_0000_0000 - 2048 : 0;
      const inPlace = pair(start);
      const encoded = pair(start);
      let written = 0;
      for (const o of ops) {
        if ('peek' in o) {
          const got = inPlace.consumer.peek();
          const want = encoded.consumer.read();
          assert.deepEqual(got === undefined ? undefined : Uint8Array.from(got), want);
          if (got !== undefined) inPlace.consumer.release();
          continue;
        }
        // Mostly small text payloads; at times a large one, so records wrap and the ring fills.
        const payload = o.big % 5 === 0 ? new Uint8Array(o.big).fill(0x61) : new Uint8Array(Buffer.from(o.text));
        const bytes = codec.encode(o.kind as FrameKind, o.connId, o.receivedUs, payload, o.arg);
        const ok = inPlace.producer.tryWriteFrame(o.kind as FrameKind, o.connId, o.receivedUs, o.arg, payload);
        assert.equal(ok, encoded.producer.tryWrite(bytes));
        if (ok) written++;
        const decoded: BusFrame = codec.decode(bytes);
        assert.deepEqual(
          [decoded.kind, decoded.connId, decoded.receivedUs, decoded.arg, decoded.payload.length],
          [o.kind, o.connId, o.receivedUs, o.arg, payload.length],
        );
      }
      for (let got = inPlace.consumer.peek(); got !== undefined; got = inPlace.consumer.peek()) {
        assert.deepEqual(Uint8Array.from(got), encoded.consumer.read());
        inPlace.consumer.release();
      }
      assert.equal(encoded.consumer.read(), undefined);
      assert.ok(written > 0 || ops.every((o) => 'peek' in o));
    }),
    { numRuns: 300 },
  );
});

test('a peeked frame holds its bytes in the ring until released; reading on before releasing is a bug', () => {
  const { producer, consumer } = pair();
  assert.ok(producer.tryWrite(frameOf(100, 1)));
  const view = consumer.peek()!;
  const free = producer.freeBytes();
  assert.equal(free, CAPACITY - recordBytes(100), 'not yet given back');
  assert.throws(
    () => consumer.peek(),
    (e) => isKdpError(e, 'KDP_ERR_INTERNAL'),
  );
  assert.throws(
    () => consumer.read(),
    (e) => isKdpError(e, 'KDP_ERR_INTERNAL'),
  );
  assert.deepEqual(Uint8Array.from(view), frameOf(100, 1));
  consumer.release();
  assert.equal(producer.freeBytes(), CAPACITY);
  assert.throws(
    () => consumer.release(),
    (e) => isKdpError(e, 'KDP_ERR_INTERNAL'),
  );
  assert.equal(consumer.peek(), undefined);
  assert.throws(
    () => producer.tryWriteFrame(FrameKind.data, 1, 1, 0, new Uint8Array(FRAME_MAX - FRAME_HEADER_BYTES + 1)),
    (e) => isKdpError(e, 'KDP_ERR_FRAME_TOO_LARGE'),
  );
});

test('full ring refuses writes without overwriting, and accepts them again after a read', () => {
  const { producer, consumer } = pair();
  const frame = frameOf(100, 1);
  let accepted = 0;
  while (producer.tryWrite(frame)) accepted++;
  assert.equal(accepted, Math.floor(CAPACITY / recordBytes(100)));
  assert.equal(producer.tryWrite(frame), false);
  assert.deepEqual(consumer.read(), frame);
  assert.ok(producer.tryWrite(frame));
  let drained = 0;
  while (consumer.read() !== undefined) drained++;
  assert.equal(drained, accepted);
});

test('oversized frames and bad options are coded errors', () => {
  const { producer } = pair();
  assert.throws(
    () => producer.tryWrite(new Uint8Array(FRAME_MAX + 1)),
    (e) => isKdpError(e, 'KDP_ERR_FRAME_TOO_LARGE'),
  );
  assert.throws(
    () => createRingBuffer({ ringBytes: 5000, frameBytesMax: 10 }),
    (e) => isKdpError(e, 'KDP_ERR_CONFIG_INVALID'),
  );
  assert.throws(
    () => createRingBuffer({ ringBytes: 4096, frameBytesMax: 2045 }),
    (e) => isKdpError(e, 'KDP_ERR_CONFIG_INVALID'),
  );
  assert.throws(
    () => new RingConsumer(new SharedArrayBuffer(RING_HEADER_BYTES + 4096)),
    (e) => isKdpError(e, 'KDP_ERR_RING_CORRUPT'),
  );
});

test('a corrupted record length is detected as KDP_ERR_RING_CORRUPT', () => {
  const { sab, producer, consumer } = pair();
  producer.tryWrite(frameOf(10, 1));
  new DataView(sab, RING_HEADER_BYTES).setUint32(0, 3000, true); // beyond frameBytesMax
  assert.throws(
    () => consumer.read(),
    (e) => isKdpError(e, 'KDP_ERR_RING_CORRUPT'),
  );
  const second = pair();
  second.producer.tryWrite(frameOf(10, 1));
  new DataView(second.sab, RING_HEADER_BYTES).setUint32(0, 100, true); // longer than what was written
  assert.throws(
    () => second.consumer.read(),
    (e) => isKdpError(e, 'KDP_ERR_RING_CORRUPT'),
  );
});

test('index invariants: a read index moving backwards or a write index running away is corruption', () => {
  const a = pair();
  a.producer.tryWrite(frameOf(10, 1));
  a.producer.tryWrite(frameOf(10, 2));
  a.consumer.read();
  a.producer.tryWrite(frameOf(10, 3));
  new Int32Array(a.sab)[RING_SLOTS.read] = 0; // back to the start
  assert.throws(
    () => a.producer.tryWrite(frameOf(10, 4)),
    (e) => isKdpError(e, 'KDP_ERR_RING_CORRUPT'),
  );
  const b = pair();
  b.producer.tryWrite(frameOf(10, 1));
  new Int32Array(b.sab)[RING_SLOTS.write] = CAPACITY + 64;
  assert.throws(
    () => b.consumer.read(),
    (e) => isKdpError(e, 'KDP_ERR_RING_CORRUPT'),
  );
  const c = pair();
  c.producer.tryWrite(frameOf(10, 1));
  new Int32Array(c.sab)[RING_SLOTS.write] = 6; // not 4-aligned
  assert.throws(
    () => c.consumer.read(),
    (e) => isKdpError(e, 'KDP_ERR_RING_CORRUPT'),
  );
});

test('close: the consumer drains what is left, then sees the end; waits time out when empty', async () => {
  const { producer, consumer } = pair();
  assert.equal(consumer.waitForData(1), false);
  producer.tryWrite(frameOf(5, 1));
  assert.equal(consumer.waitForData(1000), true);
  producer.close();
  assert.equal(consumer.isDrained(), false);
  assert.ok(consumer.read());
  assert.equal(consumer.isDrained(), true);
  assert.equal(await consumer.waitForDataAsync(1), false);
  assert.throws(() => producer.tryWrite(frameOf(1, 1)));
});

test('waitForDataAsync wakes when the producer writes', async () => {
  const { producer, consumer } = pair();
  const waiting = consumer.waitForDataAsync(5000);
  setTimeout(() => producer.tryWrite(frameOf(3, 1)), 5);
  assert.equal(await waiting, true);
});

test('cross-thread: 2,000,000 frames through a real worker, read in place, arrive complete, in order, intact', async () => {
  const sab = createRingBuffer({ ringBytes: 1 << 16, frameBytesMax: 1024 });
  const worker = new Worker(join(__dirname, '..', '..', 'src', 'ingest', 'ring-check-worker.js'), { workerData: { buffer: sab } });
  const result = new Promise<{ frames: number; checksum: number; errors: number }>((resolve, reject) => {
    worker.on('message', (m: unknown) => (m === 'ready' ? undefined : resolve(m as { frames: number; checksum: number; errors: number })));
    worker.once('error', reject);
  });
  const count = 2_000_000;
  const checksum = produceFrames(new RingProducer(sab), count, 8, 64);
  const got = await result;
  await worker.terminate();
  assert.deepEqual(got, { frames: count, checksum, errors: 0 });
});
