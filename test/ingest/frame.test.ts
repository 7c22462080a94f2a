import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Unpackr } from 'msgpackr';
import { FRAME_HEADER_BYTES, FrameCodec, FrameKind, type BusFrame } from '../../src/ingest/frame';
import { isKdpError, type ErrorCode } from '../../src/core/errors';

const codec = new FrameCodec(64 * 1024);
const FRAME_CODES: ErrorCode[] = ['KDP_ERR_FRAME_TRUNCATED', 'KDP_ERR_FRAME_DECODE', 'KDP_ERR_FRAME_TOO_LARGE', 'KDP_ERR_MSG_JSON'];

// A data frame carries a WebSocket text message (UTF-8, any code points); control frames any bytes.
const frameArb = fc
  .record({
    kind: fc.constantFrom(...Object.values(FrameKind)),
    connId: fc.integer({ min: 0, max: 0x7fffffff }),
    receivedUs: fc.oneof(fc.integer({ min: 0, max: 2 ** 32 }), fc.maxSafeNat()),
    arg: fc.integer({ min: 0, max: 0xffffffff }),
    bytes: fc.uint8Array({ maxLength: 2048 }),
    text: fc.string({ unit: 'binary', maxLength: 600 }),
  })
  .map(({ bytes, text, ...f }) => ({ ...f, payload: f.kind === FrameKind.data ? new Uint8Array(Buffer.from(text, 'utf8')) : bytes }));

function decodeOrCode(bytes: Uint8Array): BusFrame | ErrorCode {
  try {
    return codec.decode(bytes);
  } catch (err) {
    if (isKdpError(err) && FRAME_CODES.includes(err.code)) return err.code;
    throw err;
  }
}

test('every frame is a msgpack array a general decoder reads as [version, kind, 0, connId, receivedUs, arg, payload]', () => {
  const msgpack = new Unpackr({ useRecords: false, int64AsType: 'number' });
  fc.assert(
    fc.property(frameArb, (f) => {
      const bytes = codec.encodeFrame(f as BusFrame);
      const v = msgpack.unpack(bytes) as unknown[];
      assert.deepEqual(v.slice(0, 6), [1, f.kind, 0, f.connId, f.receivedUs, f.arg]);
      assert.deepEqual(Uint8Array.from(v[6] as Uint8Array), f.payload);
      assert.equal(bytes.length, FRAME_HEADER_BYTES + f.payload.length, 'fixed-width header');
    }),
  );
});

test('encode/decode round-trips every field exactly', () => {
  fc.assert(
    fc.property(frameArb, (f) => {
      const decoded = codec.decode(codec.encodeFrame(f as BusFrame));
      assert.equal(decoded.kind, f.kind);
      assert.equal(decoded.connId, f.connId);
      assert.equal(decoded.receivedUs, f.receivedUs);
      assert.equal(decoded.arg, f.arg);
      assert.deepEqual(Uint8Array.from(decoded.payload), f.payload);
    }),
    { numRuns: 500 },
  );
});

test('decode works on a view into a larger reused buffer (as read off the ring)', () => {
  const bytes = codec.encode(FrameKind.data, 7, 1_779_946_509_623_423, Buffer.from('{"type":"ok"}'));
  const scratch = new Uint8Array(4096).fill(0xee);
  scratch.set(bytes, 0);
  const frame = codec.decode(scratch.subarray(0, bytes.length));
  assert.equal(Buffer.from(frame.payload).toString(), '{"type":"ok"}');
  assert.equal(frame.receivedUs, 1_779_946_509_623_423);
});

test('every truncation of a valid frame is KDP_ERR_FRAME_TRUNCATED', () => {
  fc.assert(
    fc.property(frameArb, fc.nat(), (f, cut) => {
      const bytes = codec.encodeFrame(f as BusFrame);
      const at = cut % bytes.length;
      assert.equal(decodeOrCode(bytes.subarray(0, at)), 'KDP_ERR_FRAME_TRUNCATED');
    }),
    { numRuns: 500 },
  );
});

test('garbage bytes and mutated frames yield only coded frame errors', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      const r = decodeOrCode(bytes);
      assert.ok(typeof r === 'object' || FRAME_CODES.includes(r));
    }),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(frameArb, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), (f, edits) => {
      const bytes = Uint8Array.from(codec.encodeFrame(f as BusFrame));
      for (const [pos, value] of edits) bytes[pos % bytes.length] = value;
      const r = decodeOrCode(bytes);
      assert.ok(typeof r === 'object' || FRAME_CODES.includes(r));
    }),
    { numRuns: 2000 },
  );
});

test('hostile declared lengths do not allocate or read past the frame: truncated, not out-of-memory', () => {
  const frame = codec.encode(FrameKind.data, 1, 1, Buffer.from('{}'));
  for (const declared of [3, 0xffff, 0xffffffff]) {
    const bytes = Uint8Array.from(frame);
    new DataView(bytes.buffer).setUint32(28, declared); // the bin32 length, big-endian
    assert.equal(decodeOrCode(bytes), 'KDP_ERR_FRAME_TRUNCATED', `payload length ${declared}`);
  }
});

test('a wrong magic, version, kind, reserved element, element type, connId, receivedUs, arg or trailing bytes are KDP_ERR_FRAME_DECODE; oversize is KDP_ERR_FRAME_TOO_LARGE', () => {
  const good = codec.encode(FrameKind.data, 7, 1_779_946_509_623_423, Buffer.from('{"type":"ok"}'));
  const edits: [string, (b: Uint8Array, v: DataView) => void][] = [
    ['magic', (b) => (b[0] = 0x95)],
    ['version', (b) => (b[1] = 2)],
    ['kind', (b) => (b[2] = 6)],
    ['reserved', (b) => (b[3] = 1)],
    ['connId type', (b) => (b[4] = 0xcd)],
    ['connId', (_, v) => v.setUint32(5, 0x80000000)],
    ['receivedUs type', (b) => (b[9] = 0xce)],
    ['receivedUs past 2^53', (_, v) => v.setUint32(10, 0x200000)],
    ['arg type', (b) => (b[18] = 0xd3)],
    ['arg past 2^32', (_, v) => v.setUint32(19, 1)],
    ['payload type', (b) => (b[27] = 0xc5)],
    ['payload length short of the frame', (_, v) => v.setUint32(28, 12)],
  ];
  for (const [what, edit] of edits) {
    const bytes = Uint8Array.from(good);
    edit(bytes, new DataView(bytes.buffer));
    assert.equal(decodeOrCode(bytes), 'KDP_ERR_FRAME_DECODE', what);
  }
  assert.equal(decodeOrCode(new Uint8Array(64 * 1024 + 1)), 'KDP_ERR_FRAME_TOO_LARGE');
  assert.equal(decodeOrCode(new Uint8Array(0)), 'KDP_ERR_FRAME_TRUNCATED');
  assert.equal(decodeOrCode(good.subarray(0, FRAME_HEADER_BYTES - 1)), 'KDP_ERR_FRAME_TRUNCATED');
  assert.throws(
    () => codec.encode(FrameKind.data, 1, 1, new Uint8Array(64 * 1024 - FRAME_HEADER_BYTES + 1)),
    (e) => isKdpError(e, 'KDP_ERR_FRAME_TOO_LARGE'),
  );
  const largest = codec.decode(codec.encode(FrameKind.ringDrop, 0x7fffffff, Number.MAX_SAFE_INTEGER, new Uint8Array(codec.payloadBytesMax()), 0xffffffff));
  assert.deepEqual(
    [largest.connId, largest.receivedUs, largest.arg, largest.payload.length],
    [0x7fffffff, Number.MAX_SAFE_INTEGER, 0xffffffff, 64 * 1024 - FRAME_HEADER_BYTES],
  );
  // Fields the ingest thread must never produce are a bug there, refused at encode.
  for (const [kind, connId, us, arg] of [
    [6, 1, 1, 0],
    [0, -1, 1, 0],
    [0, 1, 1.5, 0],
    [0, 1, 2 ** 53, 0],
    [0, 1, 1, 2 ** 32],
  ]) {
    assert.throws(
      () => codec.encode(kind as FrameKind, connId!, us!, new Uint8Array(1), arg),
      (e) => isKdpError(e, 'KDP_ERR_INTERNAL'),
    );
  }
});

test('a data frame whose message is not UTF-8 is KDP_ERR_MSG_JSON (the ws client skips that check); control payloads are not text-checked', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (payload) => {
      const valid = Buffer.from(payload).equals(Buffer.from(Buffer.from(payload).toString('utf8'), 'utf8'));
      const r = decodeOrCode(codec.encode(FrameKind.data, 1, 1, payload));
      assert.equal(typeof r === 'object', valid);
      if (!valid) assert.equal(r, 'KDP_ERR_MSG_JSON');
      assert.equal(typeof decodeOrCode(codec.encode(FrameKind.subscription, 1, 1, payload)), 'object');
    }),
    { numRuns: 1000 },
  );
  for (const bad of [[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0x7b, 0xf4, 0x90, 0x80, 0x80, 0x7d]]) {
    assert.equal(decodeOrCode(codec.encode(FrameKind.data, 1, 1, Uint8Array.from(bad))), 'KDP_ERR_MSG_JSON', JSON.stringify(bad));
  }
  assert.equal(Buffer.from(codec.decode(codec.encode(FrameKind.data, 1, 1, Buffer.from('{"t":"€𝄞"}'))).payload).toString(), '{"t":"€𝄞"}');
});
