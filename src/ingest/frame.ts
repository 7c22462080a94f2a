// The one owner of the bus frame format: what the ingest thread puts on a ring and a worker takes
// off. A frame is one msgpack array of five elements (positional, like a msgpackr record but
// without a structure table to keep in sync between threads):
//
//   [kind, connId, receivedUs, arg, payload]
//   kind        uint   FrameKind below
//   connId      uint   connection id (gatherer-local, >= 1; 0 = not tied to a connection)
//   receivedUs  uint   receive time in µs since the epoch (safe integer)
//   arg         uint   kind-specific count (ring-drop: frames dropped; else 0)
//   payload     bin    data: the raw WebSocket message bytes, never parsed on the ingest thread;
//                      control kinds: UTF-8 JSON detail (see FrameKind) or empty
//
// Decoding is defensive: the worker may be handed bytes from a corrupted or hostile source, so a
// bad frame yields a coded KdpError (TRUNCATED / DECODE / TOO_LARGE) and nothing bigger than the
// frame itself is ever allocated (the payload is a view into the input, msgpackr's default).
import { Packr, Unpackr } from 'msgpackr';
import { KdpError } from '../core/errors';

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

const FIXARRAY_5 = 0x95;
const EMPTY = new Uint8Array(0);

/** Prepared encoder/decoder pair; create one per thread at setup and reuse it. */
export class FrameCodec {
  private readonly packr = new Packr({ useRecords: false, variableMapSize: true });
  // No records, no structured clone, no bundled strings: the decoder understands plain msgpack
  // only, so a hostile frame cannot steer it into extension handlers.
  private readonly unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

  constructor(readonly frameBytesMax: number) {
    if (!Number.isInteger(frameBytesMax) || frameBytesMax < 16) {
      throw new KdpError('KDP_ERR_CONFIG_INVALID', `frameBytesMax must be an integer >= 16, got ${frameBytesMax}`);
    }
  }

  /** Encodes a frame; throws KDP_ERR_FRAME_TOO_LARGE when the result exceeds frameBytesMax. */
  encode(kind: FrameKind, connId: number, receivedUs: number, payload: Uint8Array, arg = 0): Uint8Array {
    const bytes = this.packr.pack([kind, connId, receivedUs, arg, payload]);
    if (bytes.length > this.frameBytesMax) {
      throw new KdpError('KDP_ERR_FRAME_TOO_LARGE', `frame of ${bytes.length} bytes exceeds ${this.frameBytesMax}`, { bytes: bytes.length });
    }
    return bytes;
  }

  encodeFrame(frame: BusFrame): Uint8Array {
    return this.encode(frame.kind, frame.connId, frame.receivedUs, frame.payload, frame.arg);
  }

  /** The largest payload that still fits a frame (fixed overhead of the header elements). */
  payloadBytesMax(): number {
    // 1 (array) + 1 (kind) + 5 (connId) + 9 (µs) + 5 (arg) + 5 (bin32 header)
    return this.frameBytesMax - 26;
  }

  /** Decodes a frame; `bytes` may be a view into a reused buffer (the payload views it too). */
  decode(bytes: Uint8Array): BusFrame {
    if (bytes.length > this.frameBytesMax) {
      throw new KdpError('KDP_ERR_FRAME_TOO_LARGE', `frame of ${bytes.length} bytes exceeds ${this.frameBytesMax}`, { bytes: bytes.length });
    }
    if (bytes.length === 0) throw new KdpError('KDP_ERR_FRAME_TRUNCATED', 'empty frame');
    if (bytes[0] !== FIXARRAY_5) throw new KdpError('KDP_ERR_FRAME_DECODE', `frame does not start with a 5-element array (0x${bytes[0]!.toString(16)})`);
    let value: unknown;
    try {
      value = this.unpackr.unpack(bytes);
    } catch (err) {
      const incomplete = typeof err === 'object' && err !== null && (err as { incomplete?: boolean }).incomplete === true;
      const code = incomplete ? 'KDP_ERR_FRAME_TRUNCATED' : 'KDP_ERR_FRAME_DECODE';
      throw new KdpError(code, `frame is not valid msgpack: ${String((err as Error)?.message ?? err).slice(0, 120)}`, undefined, err);
    }
    return checkShape(value);
  }
}

function isUint(v: unknown, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;
}

function checkShape(value: unknown): BusFrame {
  if (!Array.isArray(value) || value.length !== 5) throw new KdpError('KDP_ERR_FRAME_DECODE', 'frame is not a 5-element array');
  const [kind, connId, receivedUs, arg, payload] = value as unknown[];
  if (!isUint(kind, KIND_MAX)) throw new KdpError('KDP_ERR_FRAME_DECODE', 'frame kind invalid');
  if (!isUint(connId, 0x7fffffff)) throw new KdpError('KDP_ERR_FRAME_DECODE', 'frame connId invalid');
  if (!isUint(receivedUs, Number.MAX_SAFE_INTEGER)) throw new KdpError('KDP_ERR_FRAME_DECODE', 'frame receivedUs invalid');
  if (!isUint(arg, 0xffffffff)) throw new KdpError('KDP_ERR_FRAME_DECODE', 'frame arg invalid');
  if (!(payload instanceof Uint8Array)) throw new KdpError('KDP_ERR_FRAME_DECODE', 'frame payload is not binary');
  return { kind: kind as FrameKind, connId, receivedUs, arg, payload: payload.length === 0 ? EMPTY : payload };
}
