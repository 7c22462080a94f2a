import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { FrameCodec, FrameKind, type BusFrame } from '../../src/ingest/frame';
import { isKdpError, type ErrorCode } from '../../src/core/errors';

const codec = new FrameCodec(64 * 1024);
const FRAME_CODES: ErrorCode[] = ['KDP_ERR_FRAME_TRUNCATED', 'KDP_ERR_FRAME_DECODE', 'KDP_ERR_FRAME_TOO_LARGE'];

const frameArb = fc.record({
  kind: fc.constantFrom(...Object.values(FrameKind)),
  connId: fc.integer({ min: 0, max: 0x7fffffff }),
  receivedUs: fc.oneof(fc.integer({ min: 0, max: 2 ** 32 }), fc.maxSafeNat()),
  arg: fc.integer({ min: 0, max: 0xffffffff }),
  payload: fc.uint8Array({ maxLength: 2048 }),
});

function decodeOrCode(bytes: Uint8Array): BusFrame | ErrorCode {
  try {
    return codec.decode(bytes);
  } catch (err) {
    if (isKdpError(err) && FRAME_CODES.includes(err.code)) return err.code;
    throw err;
  }
}

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

test('hostile declared lengths do not allocate: truncated, not out-of-memory', () => {
  // bin32 payload claiming 4 GiB, array32 / map32 / str32 claiming 2^32-1 entries.
  const header = [0x95, 0x00, 0x01, 0x01, 0x00];
  const cases = [
    [...header, 0xc6, 0xff, 0xff, 0xff, 0xff, 1, 2, 3],
    [0x95, 0xdd, 0xff, 0xff, 0xff, 0xff, 0x01],
    [0x95, 0x00, 0x01, 0x01, 0x00, 0xdf, 0xff, 0xff, 0xff, 0xff],
    [0x95, 0x00, 0x01, 0x01, 0x00, 0xdb, 0xff, 0xff, 0xff, 0xff, 0x41],
  ];
  for (const c of cases) {
    const r = decodeOrCode(Uint8Array.from(c));
    assert.ok(r === 'KDP_ERR_FRAME_TRUNCATED' || r === 'KDP_ERR_FRAME_DECODE', String(r));
  }
});

test('wrong shapes and types are KDP_ERR_FRAME_DECODE; oversize is KDP_ERR_FRAME_TOO_LARGE', () => {
  const packr = new Packr({ useRecords: false });
  const bad: unknown[] = [
    [0, 1, 2, 0],
    [9, 1, 2, 0, Buffer.alloc(1)],
    [0, -1, 2, 0, Buffer.alloc(1)],
    [0, 1, 1.5, 0, Buffer.alloc(1)],
    [0, 1, 2, 0, 'text payload'],
    [0, 1, 2 ** 60, 0, Buffer.alloc(1)],
    { kind: 0 },
    'frame',
  ];
  for (const value of bad) assert.equal(decodeOrCode(packr.pack(value)), 'KDP_ERR_FRAME_DECODE', JSON.stringify(value));
  assert.equal(decodeOrCode(new Uint8Array(64 * 1024 + 1)), 'KDP_ERR_FRAME_TOO_LARGE');
  assert.equal(decodeOrCode(new Uint8Array(0)), 'KDP_ERR_FRAME_TRUNCATED');
  assert.throws(
    () => codec.encode(FrameKind.data, 1, 1, new Uint8Array(64 * 1024)),
    (e) => isKdpError(e, 'KDP_ERR_FRAME_TOO_LARGE'),
  );
  assert.ok(codec.encode(FrameKind.data, 0x7fffffff, Number.MAX_SAFE_INTEGER, new Uint8Array(codec.payloadBytesMax()), 0xffffffff));
});
