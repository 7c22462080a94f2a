// The one owner of the bus frame format: what the ingest thread puts on a ring and a worker takes
// off. A frame is one msgpack array of seven elements, every element in a fixed-width encoding, so
// the header is always the same 32 bytes and the payload bytes follow it as they are:
//
//   offset size  msgpack                  field
//        0    1  0x97 fixarray(7)         the frame's magic: anything else is not a bus frame
//        1    1  positive fixint          version FRAME_VERSION (1); another is refused, never guessed at
//        2    1  positive fixint          kind (FrameKind below)
//        3    1  positive fixint 0        reserved
//        4    5  0xce uint32 (BE)         connId <= 2^31-1: connection id (gatherer-local, >= 1; 0 = none)
//        9    9  0xcf uint64 (BE)         receivedUs: receive time in µs since the epoch (< 2^53)
//       18    9  0xcf uint64 (BE)         arg < 2^32: kind-specific count (ring-drop: frames dropped; else 0)
//       27    5  0xc6 bin32 length (BE)   payloadLen: exactly the bytes after the header
//       32    …  bin32 data               data: the raw WebSocket message bytes, never parsed on the ingest
//                                         thread; control kinds: UTF-8 JSON detail (see FrameKind) or empty
//
// Why fixed widths (issue 21): the ingest thread used to pack every message with msgpackr into a
// fresh array and then copy that into the ring. Now the ring writes this header and the payload
// straight into its bytes (RingProducer.tryWriteFrame with writeFrameHeader below) and the worker
// reads the frame as a view of the ring, at fixed offsets (no copy, no general unpacking). Any
// msgpack decoder still reads a frame as [version, kind, 0, connId, receivedUs, arg, payload]
// (test/ingest/frame.test.ts checks it with msgpackr); arg takes 8 bytes so the header is 32.
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

export const FRAME_HEADER_BYTES = 32;
/** The first byte of every frame: msgpack fixarray of 7 elements. */
export const FRAME_MAGIC = 0x97;
export const FRAME_VERSION = 1;
// msgpack type bytes at fixed offsets: uint32, uint64, uint64, bin32.
const AT_CONN = 4;
const AT_RECEIVED = 9;
const AT_ARG = 18;
const AT_LEN = 27;
const MP_UINT32 = 0xce;
const MP_UINT64 = 0xcf;
const MP_BIN32 = 0xc6;
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
  // Big-endian, as msgpack is: [fixarray 7][version][kind][0] then each typed element.
  view.setUint32(at, (FRAME_MAGIC << 24) | (FRAME_VERSION << 16) | (kind << 8), false);
  view.setUint8(at + AT_CONN, MP_UINT32);
  view.setUint32(at + AT_CONN + 1, connId, false);
  view.setUint8(at + AT_RECEIVED, MP_UINT64);
  view.setUint32(at + AT_RECEIVED + 1, Math.floor(receivedUs / U32), false);
  view.setUint32(at + AT_RECEIVED + 5, receivedUs % U32, false);
  view.setUint8(at + AT_ARG, MP_UINT64);
  view.setUint32(at + AT_ARG + 1, 0, false);
  view.setUint32(at + AT_ARG + 5, arg, false);
  view.setUint8(at + AT_LEN, MP_BIN32);
  view.setUint32(at + AT_LEN + 1, payloadBytes, false);
}

const u32At = (b: Uint8Array, at: number): number => b[at]! * 0x1000000 + ((b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!);

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
    if (bytes[3] !== 0) decodeError('frame reserved element is not 0');
    if (bytes[AT_CONN] !== MP_UINT32 || bytes[AT_RECEIVED] !== MP_UINT64 || bytes[AT_ARG] !== MP_UINT64 || bytes[AT_LEN] !== MP_BIN32) {
      decodeError('frame header elements are not the fixed msgpack types');
    }
    const connId = u32At(bytes, AT_CONN + 1);
    if (connId > CONN_ID_MAX) decodeError('frame connId invalid');
    const receivedHi = u32At(bytes, AT_RECEIVED + 1);
    if (receivedHi > RECEIVED_HI_MAX) decodeError('frame receivedUs invalid');
    if (u32At(bytes, AT_ARG + 1) !== 0) decodeError('frame arg invalid');
    const payloadBytes = u32At(bytes, AT_LEN + 1);
    if (payloadBytes > n - FRAME_HEADER_BYTES) {
      throw new KdpError('KDP_ERR_FRAME_TRUNCATED', `frame payload of ${payloadBytes} bytes, ${n - FRAME_HEADER_BYTES} present`);
    }
    if (payloadBytes < n - FRAME_HEADER_BYTES) decodeError(`frame has ${n - FRAME_HEADER_BYTES - payloadBytes} bytes past its payload`);
    const payload = payloadBytes === 0 ? EMPTY : bytes.subarray(FRAME_HEADER_BYTES, n);
    // Counted as a message that is not JSON text: the frame itself is sound.
    if (kind === FrameKind.data && !isUtf8(payload)) throw new KdpError('KDP_ERR_MSG_JSON', 'message is not valid UTF-8');
    return { kind: kind as FrameKind, connId, receivedUs: receivedHi * U32 + u32At(bytes, AT_RECEIVED + 5), arg: u32At(bytes, AT_ARG + 5), payload };
  }
}
