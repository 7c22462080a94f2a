// The one owner of the bus ring layout: a single-producer / single-consumer byte ring on a
// SharedArrayBuffer. The ingest thread is the only producer of a ring, one worker thread its only
// consumer. Frames are variable-size and length-prefixed; everything is 4-byte aligned.
//
// Layout (byte offsets into the SharedArrayBuffer, all slots Int32):
//   [  0]  WRITE   producer's write index          (cache line 0, written only by the producer)
//   [  4]  CWAIT   1 while the consumer sleeps in Atomics.wait on WRITE
//   [ 64]  READ    consumer's read index           (cache line 1, written only by the consumer)
//   [ 68]  PWAIT   1 while the producer sleeps in Atomics.wait on READ
//   [128]  MAGIC, CAPACITY, FRAME_MAX, FLAGS       (cache line 2, set at creation; FLAGS bit 0 =
//                                                   producer closed)
//   [192]  data area, CAPACITY bytes (a power of two)
//
// Indexes are free-running uint32 byte counters (they wrap modulo 2^32, never reset): the byte
// at index i lives at data[i & (CAPACITY-1)], used bytes = (WRITE - READ) >>> 0. Because the
// capacity is a power of two <= 2^30 it divides 2^32 and the counters' wrap is seamless.
//
// Record = uint32 little-endian length + payload, padded to a multiple of 4. The payload is opaque
// to the ring except in tryWriteFrame, which lays a bus frame (src/ingest/frame.ts owns its
// layout) straight into it; a worker reads frames in place with peek()/release(). Wrap-around: when a
// record does not fit between the write position and the end of the data area, the producer
// writes the WRAP marker (0xFFFFFFFF) in the length slot and the record starts at offset 0; the
// consumer skips the rest of the area on seeing the marker. Records are never split, so the
// consumer can hand out one contiguous view. Since 2 x (4 + frameBytesMax) <= CAPACITY, a
// maximal frame always fits in an empty ring wherever its indexes stand.
//
// Memory ordering: payload bytes are written with plain stores and then published by an
// Atomics.store of WRITE; the consumer Atomics.loads WRITE before reading them (and the reverse
// for READ), which the JS memory model orders (sequentially consistent atomics synchronise).
import { KdpError, invariant } from '../core/errors';
import { FRAME_HEADER_BYTES, writeFrameHeader, type FrameKind } from './frame';

const I_WRITE = 0;
const I_CWAIT = 1;
const I_READ = 16;
const I_PWAIT = 17;
const I_MAGIC = 32;
const I_CAPACITY = 33;
const I_FRAME_MAX = 34;
const I_FLAGS = 35;
const HEADER_BYTES = 192;
const RING_MAGIC = 0x4b445052; // "KDPR"
const FLAG_PRODUCER_CLOSED = 1;
const WRAP = 0xffffffff;
const LEN_BYTES = 4;

export const RING_HEADER_BYTES = HEADER_BYTES;
/** Int32 slot numbers of the header, for diagnostics and corruption tests; no one else writes them. */
export const RING_SLOTS = Object.freeze({
  write: I_WRITE,
  consumerWaiting: I_CWAIT,
  read: I_READ,
  producerWaiting: I_PWAIT,
  magic: I_MAGIC,
  capacity: I_CAPACITY,
  frameBytesMax: I_FRAME_MAX,
  flags: I_FLAGS,
});

// Atomics.waitAsync exists in Node 20 (V8) but is typed only from lib es2024.
interface AtomicsWithWaitAsync {
  waitAsync(
    typedArray: Int32Array,
    index: number,
    value: number,
    timeoutMs?: number,
  ): { async: false; value: string } | { async: true; value: Promise<string> };
}

export interface RingOptions {
  /** Data-area size in bytes; a power of two between 4 KiB and 1 GiB. */
  readonly ringBytes: number;
  /** Largest frame accepted; 2 x (frameBytesMax + 4) must fit in ringBytes. */
  readonly frameBytesMax: number;
  /** Initial value of both indexes (default 0); tests start near 2^32 to cross the index wrap. */
  readonly startIndex?: number;
}

const align4 = (n: number): number => (n + 3) & ~3;
const recordBytes = (len: number): number => LEN_BYTES + align4(len);

function corrupt(message: string, details: Record<string, unknown>): never {
  throw new KdpError('KDP_ERR_RING_CORRUPT', `ring corrupt: ${message}`, details);
}

/** Allocates and initialises the SharedArrayBuffer for one ring (the ingest thread does this). */
export function createRingBuffer(options: RingOptions): SharedArrayBuffer {
  const { ringBytes, frameBytesMax } = options;
  if (!Number.isInteger(ringBytes) || ringBytes < 4096 || ringBytes > 2 ** 30 || (ringBytes & (ringBytes - 1)) !== 0) {
    throw new KdpError('KDP_ERR_CONFIG_INVALID', `ringBytes must be a power of two in [4096, 2^30], got ${ringBytes}`);
  }
  if (!Number.isInteger(frameBytesMax) || frameBytesMax < 1 || 2 * recordBytes(frameBytesMax) > ringBytes) {
    throw new KdpError('KDP_ERR_CONFIG_INVALID', `frameBytesMax must be >= 1 and 2 x (frameBytesMax + 4) <= ringBytes, got ${frameBytesMax}`);
  }
  const sab = new SharedArrayBuffer(HEADER_BYTES + ringBytes);
  const header = new Int32Array(sab, 0, HEADER_BYTES / 4);
  header[I_CAPACITY] = ringBytes;
  header[I_FRAME_MAX] = frameBytesMax;
  const start = options.startIndex ?? 0;
  if (!Number.isInteger(start) || start < 0 || start > 0xffffffff || (start & 3) !== 0) {
    throw new KdpError('KDP_ERR_CONFIG_INVALID', `startIndex must be a 4-aligned uint32, got ${start}`);
  }
  header[I_WRITE] = start | 0;
  header[I_READ] = start | 0;
  Atomics.store(header, I_MAGIC, RING_MAGIC);
  return sab;
}

/** Shared view of one ring: header checks and metrics common to both ends. */
abstract class RingEnd {
  protected readonly header: Int32Array;
  protected readonly data: Uint8Array;
  protected readonly dataView: DataView;
  protected readonly mask: number;
  readonly capacity: number;
  readonly frameBytesMax: number;

  constructor(readonly buffer: SharedArrayBuffer) {
    if (buffer.byteLength < HEADER_BYTES + 4096) corrupt('buffer too small', { bytes: buffer.byteLength });
    this.header = new Int32Array(buffer, 0, HEADER_BYTES / 4);
    if (Atomics.load(this.header, I_MAGIC) !== RING_MAGIC) corrupt('bad magic', {});
    this.capacity = this.header[I_CAPACITY]!;
    this.frameBytesMax = this.header[I_FRAME_MAX]!;
    if (this.capacity + HEADER_BYTES !== buffer.byteLength || (this.capacity & (this.capacity - 1)) !== 0) {
      corrupt('capacity does not match the buffer', { capacity: this.capacity, bytes: buffer.byteLength });
    }
    if (this.frameBytesMax < 1 || 2 * recordBytes(this.frameBytesMax) > this.capacity) corrupt('bad frameBytesMax', { frameBytesMax: this.frameBytesMax });
    this.data = new Uint8Array(buffer, HEADER_BYTES, this.capacity);
    this.dataView = new DataView(buffer, HEADER_BYTES, this.capacity);
    this.mask = this.capacity - 1;
  }

  /** Bytes written and not yet consumed (records, padding and wrap waste included). */
  usedBytes(): number {
    const used = (Atomics.load(this.header, I_WRITE) - Atomics.load(this.header, I_READ)) >>> 0;
    if (used > this.capacity) corrupt('used bytes exceed capacity', { used, capacity: this.capacity });
    return used;
  }

  freeBytes(): number {
    return this.capacity - this.usedBytes();
  }

  isProducerClosed(): boolean {
    return (Atomics.load(this.header, I_FLAGS) & FLAG_PRODUCER_CLOSED) !== 0;
  }
}

export class RingProducer extends RingEnd {
  // The producer's own index is cached: only this thread writes it.
  private writeIndex: number;
  private lastReadIndex: number;

  constructor(buffer: SharedArrayBuffer) {
    super(buffer);
    this.writeIndex = Atomics.load(this.header, I_WRITE) >>> 0;
    this.lastReadIndex = Atomics.load(this.header, I_READ) >>> 0;
  }

  /** Appends one frame; false when the ring lacks room (backpressure, nothing written). */
  tryWrite(bytes: Uint8Array): boolean {
    const at = this.reserve(bytes.length);
    if (at < 0) return false;
    this.data.set(bytes, at);
    this.publish();
    return true;
  }

  /**
   * Appends one bus frame, its header (src/ingest/frame.ts owns the layout) and payload written
   * straight into the ring's bytes: no intermediate encoded frame (issue 21: the ingest thread
   * packed every message into a fresh array and then copied that in). False when the ring lacks room.
   */
  tryWriteFrame(kind: FrameKind, connId: number, receivedUs: number, arg: number, payload: Uint8Array): boolean {
    const at = this.reserve(FRAME_HEADER_BYTES + payload.length);
    if (at < 0) return false;
    writeFrameHeader(this.dataView, at, kind, connId, receivedUs, arg, payload.length);
    this.data.set(payload, at + FRAME_HEADER_BYTES);
    this.publish();
    return true;
  }

  // The record reserve() laid out, published by publish(): the write index after it.
  private nextWriteIndex = 0;

  /**
   * Lays out a record of `len` bytes (wrap marker and length slot written) and returns the offset
   * in the data area where its `len` bytes go, or -1 when the ring lacks room.
   */
  private reserve(len: number): number {
    if (len > this.frameBytesMax) {
      throw new KdpError('KDP_ERR_FRAME_TOO_LARGE', `frame of ${len} bytes exceeds frameBytesMax ${this.frameBytesMax}`, { len });
    }
    if (this.isProducerClosed()) throw new KdpError('KDP_ERR_INTERNAL', 'write to a closed ring');
    const readIndex = Atomics.load(this.header, I_READ) >>> 0;
    // The read index only moves forward, and never past what was written.
    if ((readIndex - this.lastReadIndex) >>> 0 > (this.writeIndex - this.lastReadIndex) >>> 0) {
      corrupt('read index moved backwards or past the write index', { readIndex, lastReadIndex: this.lastReadIndex, writeIndex: this.writeIndex });
    }
    this.lastReadIndex = readIndex;
    const used = (this.writeIndex - readIndex) >>> 0;
    const need = recordBytes(len);
    const offset = this.writeIndex & this.mask;
    const tail = this.capacity - offset;
    const waste = tail < need ? tail : 0;
    if (used + waste + need > this.capacity) return -1;
    let at = offset;
    if (waste > 0) {
      this.dataView.setUint32(offset, WRAP, true);
      at = 0;
    }
    this.dataView.setUint32(at, len, true);
    this.nextWriteIndex = (this.writeIndex + waste + need) >>> 0;
    return at + LEN_BYTES;
  }

  /** Publishes the reserved record (its bytes written), waking a sleeping consumer. */
  private publish(): void {
    this.writeIndex = this.nextWriteIndex;
    Atomics.store(this.header, I_WRITE, this.writeIndex | 0);
    if (Atomics.load(this.header, I_CWAIT) !== 0) Atomics.notify(this.header, I_WRITE);
  }

  /** Marks the end of the stream; the consumer drains what is left and then sees `closed`. */
  close(): void {
    Atomics.or(this.header, I_FLAGS, FLAG_PRODUCER_CLOSED);
    Atomics.notify(this.header, I_WRITE);
  }

  /**
   * Blocks (Atomics.wait) until at least `bytes` are free or the timeout passes. For tools,
   * benchmarks and tests: the ingest thread must not block, it pauses sockets instead.
   */
  waitForSpace(bytes: number, timeoutMs: number): boolean {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const readIndex = Atomics.load(this.header, I_READ);
      if (this.freeBytes() >= bytes) return true;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      Atomics.store(this.header, I_PWAIT, 1);
      if (this.freeBytes() < bytes) Atomics.wait(this.header, I_READ, readIndex, Math.min(left, 50));
      Atomics.store(this.header, I_PWAIT, 0);
    }
  }
}

export class RingConsumer extends RingEnd {
  private readIndex: number;

  constructor(buffer: SharedArrayBuffer) {
    super(buffer);
    this.readIndex = Atomics.load(this.header, I_READ) >>> 0;
  }

  /**
   * Locates the next record: returns its payload offset in the data area and sets
   * `pendingLength` / `pendingAdvance`, or returns -1 when the ring is empty.
   */
  private pendingLength = 0;
  private pendingAdvance = 0;
  private peeked = false;
  private locate(): number {
    invariant(!this.peeked, 'a frame read before the peeked one was released');
    const writeIndex = Atomics.load(this.header, I_WRITE) >>> 0;
    const used = (writeIndex - this.readIndex) >>> 0;
    if (used === 0) return -1;
    // The write index only moves forward, at most a capacity ahead of the read index, 4-aligned.
    if (used > this.capacity || (used & 3) !== 0) corrupt('write index inconsistent', { used, writeIndex, readIndex: this.readIndex });
    if (Atomics.load(this.header, I_READ) >>> 0 !== this.readIndex) corrupt('read index changed by another thread', { readIndex: this.readIndex });
    let offset = this.readIndex & this.mask;
    let waste = 0;
    let len = this.dataView.getUint32(offset, true);
    if (len === WRAP) {
      waste = this.capacity - offset;
      if (waste >= used) corrupt('wrap marker past the write index', { used, waste });
      offset = 0;
      len = this.dataView.getUint32(0, true);
    }
    if (len > this.frameBytesMax || waste + recordBytes(len) > used) {
      corrupt('record length out of range', { len, used, waste, frameBytesMax: this.frameBytesMax });
    }
    this.pendingLength = len;
    this.pendingAdvance = waste + recordBytes(len);
    return offset + LEN_BYTES;
  }

  private advance(): void {
    this.readIndex = (this.readIndex + this.pendingAdvance) >>> 0;
    Atomics.store(this.header, I_READ, this.readIndex | 0);
    if (Atomics.load(this.header, I_PWAIT) !== 0) Atomics.notify(this.header, I_READ);
  }

  /** Takes the next frame as a fresh copy, or undefined when the ring is empty. */
  read(): Uint8Array | undefined {
    const at = this.locate();
    if (at < 0) return undefined;
    const frame = this.data.slice(at, at + this.pendingLength);
    this.advance();
    return frame;
  }

  /**
   * The next frame as a view of the ring's own bytes (no copy), or undefined when the ring is
   * empty. The frame stays in the ring, and the view valid, until release(): a caller keeps
   * nothing of it past that (it copies what it keeps). The hot path of a worker.
   */
  peek(): Uint8Array | undefined {
    const at = this.locate();
    if (at < 0) return undefined;
    this.peeked = true;
    return this.data.subarray(at, at + this.pendingLength);
  }

  /** Gives the peeked frame's bytes back to the producer. */
  release(): void {
    invariant(this.peeked, 'release() without a peeked frame');
    this.peeked = false;
    this.advance();
  }

  /** True when the producer closed the ring and every frame has been consumed. */
  isDrained(): boolean {
    return this.isProducerClosed() && this.usedBytes() === 0;
  }

  /**
   * Blocks (Atomics.wait, worker threads only) until data arrives, the producer closes, or the
   * timeout passes. Returns true when data is waiting. Notify cost on the producer is paid only
   * while the consumer is actually asleep (CWAIT).
   */
  waitForData(timeoutMs: number): boolean {
    const writeIndex = Atomics.load(this.header, I_WRITE);
    if (writeIndex >>> 0 !== this.readIndex) return true;
    if (this.isProducerClosed()) return false;
    Atomics.store(this.header, I_CWAIT, 1);
    // Re-check after announcing the wait: a write in between would otherwise go unnoticed.
    if (Atomics.load(this.header, I_WRITE) >>> 0 === this.readIndex && !this.isProducerClosed()) {
      Atomics.wait(this.header, I_WRITE, writeIndex, timeoutMs);
    }
    Atomics.store(this.header, I_CWAIT, 0);
    return Atomics.load(this.header, I_WRITE) >>> 0 !== this.readIndex;
  }

  /**
   * Blocking consume loop for a thread with nothing else to do (Atomics.wait, worker threads only):
   * hands each frame (a view of the ring, valid until the callback returns) to onFrame until the
   * producer closed the ring and every frame was read. Returns the number of frames read.
   */
  consumeUntilDrained(onFrame: (frame: Uint8Array) => void, waitMs = 100): number {
    let frames = 0;
    for (;;) {
      const frame = this.peek();
      if (frame === undefined) {
        if (this.isDrained()) return frames;
        this.waitForData(waitMs);
        continue;
      }
      frames++;
      try {
        onFrame(frame);
      } finally {
        this.release();
      }
    }
  }

  /** Non-blocking variant for a thread with an event loop: resolves like waitForData. */
  async waitForDataAsync(timeoutMs: number): Promise<boolean> {
    const writeIndex = Atomics.load(this.header, I_WRITE);
    if (writeIndex >>> 0 !== this.readIndex) return true;
    if (this.isProducerClosed()) return false;
    Atomics.store(this.header, I_CWAIT, 1);
    if (Atomics.load(this.header, I_WRITE) >>> 0 === this.readIndex && !this.isProducerClosed()) {
      const waited = (Atomics as unknown as AtomicsWithWaitAsync).waitAsync(this.header, I_WRITE, writeIndex, timeoutMs);
      if (waited.async) await waited.value;
    }
    Atomics.store(this.header, I_CWAIT, 0);
    return Atomics.load(this.header, I_WRITE) >>> 0 !== this.readIndex;
  }
}
