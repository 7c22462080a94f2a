// The one owner of the bus frame format: what the ingest thread puts on a ring and a worker takes
// off. A frame is a fixed 24-byte little-endian header followed by the payload bytes as they are:
//
//   offset size  field
//        0    1  magic       0x4b ('K'): a frame that does not start with it is not a bus frame
//        1    1  version     FRAME_VERSION (1); another version is refused, never guessed at
//        2    1  kind        FrameKind below
//        3    1  reserved    0
//        4    4  connId      uint32 <= 2^31-1: connection id (gatherer-local, >= 1; 0 = none)
//        8    4  receivedLo  receive time in µs since the epoch, low 32 bits
//       12    4  receivedHi  ... high bits (< 2^21: a safe integer)
//       16    4  arg         uint32, kind-specific count (ring-drop: frames dropped; else 0)
//       20    4  payloadLen  uint32: exactly the bytes after the header
//       24    …  payload     data: the raw WebSocket message bytes, never parsed on the ingest
//                            thread; control kinds: UTF-8 JSON detail (see FrameKind) or empty
//
// Why not msgpack any more (issue 21): the ingest thread packed every message into a fresh
// msgpack array and then copied it into the ring; now the ring writes this header and the payload
// straight into its bytes (RingProducer.tryWriteFrame with writeFrameHeader below), and the worker
// reads the frame as a view of the ring (no copy, no unpacking). The header is 4-aligned, so the
// payload lands 4-aligned in the ring's 4-aligned records.
//
// Decoding is defensive: the worker may be handed bytes from a corrupted or hostile source, so a
// bad frame yields a coded KdpError (TRUNCATED / DECODE / TOO_LARGE) and nothing is allocated
// but the frame object (the payload is a view into the input). A data frame's payload must be
// UTF-8 (a WebSocket text message, RFC 6455 §5.6; JSON text, RFC 8259 §8.1): the gatherer's ws
// client skips that check (skipUTF8Validation) to spare the ingest thread, so decode makes it.
import { isUtf8 } from 'node:buffer';
import { KdpError, invariant } from '../core/errors';

export const FrameKind = {
  /** A WebSocket message; payload = raw bytes. */
  data: 0,
  /** A connection is up; payload empty. Its sids start fresh. */
  connectionOpened: 1,
  /** A connection closed; payload empty. All its sids are forgotten. */
  connectionClosed: 2,
  /** The manager asked for fresh snapshots; payload JSON {"sid":n,"tickers":[...]}. */
  resyncMarker: 3,
  /** The ingest thread dropped `arg` frames of this connection (ring full); payload empty. */
  ringDrop: 4,
  /** A subscription's markets; payload JSON {"sid":n,"channel":"...","tickers":[...]}. */
  subscription: 5,
} as const;
export type FrameKind = (typeof FrameKind)[keyof typeof FrameKind];
const KIND_MAX = 5;

export interface BusFrame {
  readonly kind: FrameKind;
  readonly connId: number;
  readonly receivedUs: number;
  readonly arg: number;
  readonly payload: Uint8Array;
}

export const FRAME_HEADER_BYTES = 24;
export const FRAME_MAGIC = 0x4b;
export const FRAME_VERSION = 1;
const CONN_ID_MAX = 0x7fffffff;
const U32 = 0x1_0000_0000;
const RECEIVED_HI_MAX = 0x1fffff; // hi * 2^32 + lo <= 2^53 - 1
const EMPTY = new Uint8Array(0);

function checkHeaderFields(kind: number, connId: number, receivedUs: number, arg: number): void {
  // The ingest thread is the only writer: a bad field is a bug there, not bad input. (One test, and
  // the message built only on failure: this runs for every message.)
  const ok =
    Number.isInteger(kind) &&
    kind >= 0 &&
    kind <= KIND_MAX &&
    Number.isInteger(connId) &&
    connId >= 0 &&
    connId <= CONN_ID_MAX &&
    Number.isSafeInteger(receivedUs) &&
    receivedUs >= 0 &&
    Number.isInteger(arg) &&
    arg >= 0 &&
    arg < U32;
  invariant(ok, ok ? '' : `frame header fields invalid: kind ${kind}, connId ${connId}, receivedUs ${receivedUs}, arg ${arg}`);
}

/**
 * Writes a frame header for a payload of `payloadBytes` at `at` of `view` (the ring's data area,
 * or a frame of its own); the payload goes right after it, at `at + FRAME_HEADER_BYTES`.
 */
export function writeFrameHeader(view: DataView, at: number, kind: FrameKind, connId: number, receivedUs: number, arg: number, payloadBytes: number): void {
  checkHeaderFields(kind, connId, receivedUs, arg);
  view.setUint32(at, FRAME_MAGIC | (FRAME_VERSION << 8) | (kind << 16), true);
  view.setUint32(at + 4, connId, true);
  view.setUint32(at + 8, receivedUs % U32, true);
  view.setUint32(at + 12, Math.floor(receivedUs / U32), true);
  view.setUint32(at + 16, arg, true);
  view.setUint32(at + 20, payloadBytes, true);
}

const u32At = (b: Uint8Array, at: number): number => (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16)) + b[at + 3]! * 0x1000000;

function decodeError(message: string, details?: Record<string, unknown>): never {
  throw new KdpError('KDP_ERR_FRAME_DECODE', message, details);
}

/** Prepared codec with the frame size bound; create one per thread at setup and reuse it. */
export class FrameCodec {
  constructor(readonly frameBytesMax: number) {
    if (!Number.isInteger(frameBytesMax) || frameBytesMax < 2 * FRAME_HEADER_BYTES) {
      throw new KdpError('KDP_ERR_CONFIG_INVALID', `frameBytesMax must be an integer >= ${2 * FRAME_HEADER_BYTES}, got ${frameBytesMax}`);
    }
  }

  /**
   * Encodes a frame into a fresh array (the ring's tryWriteFrame writes the hot path's data frames
   * in place instead: this is for notices, frames held while a ring is full, and tests). Throws
   * KDP_ERR_FRAME_TOO_LARGE when the result exceeds frameBytesMax.
   */
  encode(kind: FrameKind, connId: number, receivedUs: number, payload: Uint8Array, arg = 0): Uint8Array {
    const bytes = FRAME_HEADER_BYTES + payload.length;
    if (bytes > this.frameBytesMax) {
      throw new KdpError('KDP_ERR_FRAME_TOO_LARGE', `frame of ${bytes} bytes exceeds ${this.frameBytesMax}`, { bytes });
    }
    const frame = new Uint8Array(bytes);
    writeFrameHeader(new DataView(frame.buffer), 0, kind, connId, receivedUs, arg, payload.length);
    frame.set(payload, FRAME_HEADER_BYTES);
    return frame;
  }

  encodeFrame(frame: BusFrame): Uint8Array {
    return this.encode(frame.kind, frame.connId, frame.receivedUs, frame.payload, frame.arg);
  }

  /** The largest payload that still fits a frame. */
  payloadBytesMax(): number {
    return this.frameBytesMax - FRAME_HEADER_BYTES;
  }

  /**
   * Decodes a frame; `bytes` may be a view into a reused buffer or into the ring itself (the
   * payload views it too, valid as long as those bytes are).
   */
  decode(bytes: Uint8Array): BusFrame {
    const n = bytes.length;
    if (n > this.frameBytesMax) throw new KdpError('KDP_ERR_FRAME_TOO_LARGE', `frame of ${n} bytes exceeds ${this.frameBytesMax}`, { bytes: n });
    if (n > 0 && bytes[0] !== FRAME_MAGIC) decodeError(`frame does not start with the bus magic (0x${bytes[0]!.toString(16)})`);
    if (n > 1 && bytes[1] !== FRAME_VERSION) decodeError(`frame version ${bytes[1]} is not ${FRAME_VERSION}`);
    if (n < FRAME_HEADER_BYTES) throw new KdpError('KDP_ERR_FRAME_TRUNCATED', `frame of ${n} bytes is shorter than its ${FRAME_HEADER_BYTES}-byte header`);
    const kind = bytes[2]!;
    if (kind > KIND_MAX) decodeError(`frame kind ${kind} invalid`);
    if (bytes[3] !== 0) decodeError('frame reserved byte is not 0');
    const connId = u32At(bytes, 4);
    if (connId > CONN_ID_MAX) decodeError('frame connId invalid');
    const receivedHi = u32At(bytes, 12);
    if (receivedHi > RECEIVED_HI_MAX) decodeError('frame receivedUs invalid');
    const payloadBytes = u32At(bytes, 20);
    if (payloadBytes > n - FRAME_HEADER_BYTES) {
      throw new KdpError('KDP_ERR_FRAME_TRUNCATED', `frame payload of ${payloadBytes} bytes, ${n - FRAME_HEADER_BYTES} present`);
    }
    if (payloadBytes < n - FRAME_HEADER_BYTES) decodeError(`frame has ${n - FRAME_HEADER_BYTES - payloadBytes} bytes past its payload`);
    const payload = payloadBytes === 0 ? EMPTY : bytes.subarray(FRAME_HEADER_BYTES, n);
    // Counted as a message that is not JSON text: the frame itself is sound.
    if (kind === FrameKind.data && !isUtf8(payload)) throw new KdpError('KDP_ERR_MSG_JSON', 'message is not valid UTF-8');
    return { kind: kind as FrameKind, connId, receivedUs: receivedHi * U32 + u32At(bytes, 8), arg: u32At(bytes, 16), payload };
  }
}
