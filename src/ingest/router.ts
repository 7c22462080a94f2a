// The ingest thread's side of the bus: writes each WebSocket message as a bus frame (header and raw
// bytes laid straight into the ring, src/ingest/frame.ts) into the ring of the worker that owns the
// connection (connId % workers), so one connection's messages are always sequence-checked by one
// worker. A full ring never loses silently:
// - onRingFull 'pause': the frame that found the ring full is kept, in order, in the ring's backlog
//   and push() returns false: the connection manager pauses the socket until waitForRoom() has
//   written the backlog out and the ring has room (TCP backpressure reaches the exchange). `ws`
//   still delivers the rest of the chunk it had read when the socket paused: those frames join the
//   backlog too. The backlog is bounded (heldBytesMax); a frame past the bound is dropped, counted
//   and ledgered like a drop-mode frame, never lost silently (issue 16: the frame that found the
//   ring full, and every frame delivered while paused, used to vanish with no count or row);
// - onRingFull 'drop': the frame is dropped and counted, and before the connection's next frame a
//   ring-drop notice goes onto the ring: the worker marks every sid of the connection for resync and
//   reports ring-drop gaps, which the service records, resyncs and backfills. Oversized frames are
//   refused the same way.
import { invariant } from '../core/errors';
import { FrameKind, type FrameCodec } from './frame';

// The contract between the connection manager (src/gatherer/connections.ts) and the ring router:
// defined here, by the lower layer, and implemented by RingRouter.

/** Where frames go. push() returning false means "ring full": the socket pauses until waitForRoom(). */
export interface FrameSink {
  push(connId: number, receivedAtUs: number, data: Buffer): boolean;
  waitForRoom(connId: number): Promise<void>;
  /** In-band notices to the worker owning connId, ordered with the data frames. */
  notice(connId: number, notice: ConnectionNotice): void;
}

export type ConnectionNotice =
  | { readonly kind: 'opened'; readonly epoch: number }
  | { readonly kind: 'closed'; readonly epoch: number }
  /** Frames of this connection were lost before reaching the ring (full ring in drop mode, oversized). */
  | { readonly kind: 'ring-drop'; readonly count: number };

/** The producer half of a ring, as the router needs it (src/ingest/ring.ts). */
export interface RingProducer {
  /** Appends an encoded frame (waking a sleeping consumer); false when full. */
  tryWrite(frame: Uint8Array): boolean;
  /** Writes a frame's header and payload straight into the ring; false when full. */
  tryWriteFrame(kind: FrameKind, connId: number, receivedUs: number, arg: number, payload: Uint8Array): boolean;
  freeBytes(): number;
  readonly capacity: number;
}

const NOTICE_KIND = { opened: FrameKind.connectionOpened, closed: FrameKind.connectionClosed, 'ring-drop': FrameKind.ringDrop } as const;
const EMPTY = new Uint8Array(0);

export interface RouterStats {
  framesRouted: number;
  framesDropped: number;
  ringFullEvents: number;
  framesTooLarge: number;
  /** Frames kept in a backlog because their ring was full (pause mode); written later, in order. */
  framesHeld: number;
}

export interface RouterOptions {
  readonly onRingFull: 'pause' | 'drop';
  /** How often a paused connection checks its ring for room. */
  readonly drainPollMs: number;
  /** Notices waiting for a full ring, per ring; a notice is never dropped, so the cap is an invariant. */
  readonly noticeBacklogMax: number;
  /** Data frames' bytes a ring's backlog may hold in pause mode; past it a frame is dropped and ledgered. */
  readonly heldBytesMax: number;
}

/** What a backlog entry is: data frames and ring-drop notices count against heldBytesMax, epoch
 *  notices (opened/closed) against noticeBacklogMax. */
const enum Held {
  data,
  dropNotice,
  notice,
}

interface Backlog {
  readonly frames: Uint8Array[];
  readonly kinds: Held[];
  notices: number;
  heldBytes: number;
}

export class RingRouter implements FrameSink {
  readonly stats: RouterStats = { framesRouted: 0, framesDropped: 0, ringFullEvents: 0, framesTooLarge: 0, framesHeld: 0 };
  private readonly backlog: Backlog[];

  /** Frames lost per connection since its last ring-drop notice went out. */
  private readonly pendingDrops = new Map<number, number>();

  /** The largest message a frame carries (frameBytesMax less the frame header). */
  private readonly payloadBytesMax: number;

  /** `codec` encodes the frames that cannot be laid into a ring at once (notices, held frames). */
  constructor(
    private readonly rings: readonly RingProducer[],
    private readonly codec: FrameCodec,
    private readonly opts: RouterOptions,
  ) {
    this.backlog = rings.map(() => ({ frames: [], kinds: [], notices: 0, heldBytes: 0 }));
    this.payloadBytesMax = codec.payloadBytesMax();
  }

  private encodeNotice(connId: number, receivedAtUs: number, notice: ConnectionNotice): Uint8Array {
    return this.codec.encode(NOTICE_KIND[notice.kind], connId, receivedAtUs, EMPTY, notice.kind === 'ring-drop' ? notice.count : 0);
  }

  ringOf(connId: number): number {
    return connId % this.rings.length;
  }

  /**
   * Routes one WebSocket message. True: written (or, in drop mode / oversized, dropped and counted).
   * False (pause mode only): the ring is full; the frame is held in order, or, past heldBytesMax,
   * dropped and counted; the caller pauses the socket until waitForRoom() resolves.
   */
  push(connId: number, receivedAtUs: number, data: Buffer): boolean {
    if (data.byteLength > this.payloadBytesMax) {
      // Oversized frames are refused before the ring: counted, and the loss is handled like a drop.
      this.stats.framesTooLarge += 1;
      this.noteDrop(connId);
      return true;
    }
    const r = this.ringOf(connId);
    const clear = this.flushBacklog(r);
    const dropped = this.pendingDrops.get(connId);
    if (dropped !== undefined) {
      const notice = this.encodeNotice(connId, receivedAtUs, { kind: 'ring-drop', count: dropped });
      if (clear && this.rings[r]!.tryWrite(notice)) this.pendingDrops.delete(connId);
      else if (this.opts.onRingFull === 'drop' || !this.fitsHeld(r, notice.byteLength + data.byteLength)) return this.full(connId);
      else {
        // Pause mode: the notice is held ahead of this frame, so the worker still learns of the drop
        // before the connection's next frame.
        this.pendingDrops.delete(connId);
        this.enqueue(r, notice, Held.dropNotice);
      }
    }
    if (this.backlog[r]!.frames.length === 0 && this.rings[r]!.tryWriteFrame(FrameKind.data, connId, receivedAtUs, 0, data)) {
      this.stats.framesRouted += 1;
      return true;
    }
    return this.full(connId, receivedAtUs, data);
  }

  private fitsHeld(r: number, bytes: number): boolean {
    return this.backlog[r]!.heldBytes + bytes <= this.opts.heldBytesMax;
  }

  private full(connId: number, receivedAtUs = 0, data?: Buffer): boolean {
    this.stats.ringFullEvents += 1;
    if (this.opts.onRingFull === 'pause' && data !== undefined) {
      const r = this.ringOf(connId);
      if (this.fitsHeld(r, data.byteLength)) {
        this.enqueue(r, this.codec.encode(FrameKind.data, connId, receivedAtUs, data), Held.data);
        this.stats.framesHeld += 1;
        return false;
      }
    }
    this.stats.framesDropped += 1;
    this.noteDrop(connId);
    return this.opts.onRingFull === 'drop';
  }

  private noteDrop(connId: number): void {
    this.pendingDrops.set(connId, (this.pendingDrops.get(connId) ?? 0) + 1);
  }

  private enqueue(r: number, frame: Uint8Array, kind: Held): void {
    const b = this.backlog[r]!;
    if (kind === Held.notice) {
      invariant(b.notices < this.opts.noticeBacklogMax, `notice backlog of ring ${r} exceeds ${this.opts.noticeBacklogMax}`);
      b.notices += 1;
    } else b.heldBytes += frame.byteLength;
    b.frames.push(frame);
    b.kinds.push(kind);
  }

  notice(connId: number, notice: ConnectionNotice): void {
    const r = this.ringOf(connId);
    const frame = this.encodeNotice(connId, Date.now() * 1000, notice);
    if (this.backlog[r]!.frames.length === 0 && this.rings[r]!.tryWrite(frame)) return;
    this.enqueue(r, frame, Held.notice);
  }

  /** Writes the ring's backlog in order; true when it is empty. */
  private flushBacklog(r: number): boolean {
    const b = this.backlog[r]!;
    const ring = this.rings[r]!;
    let i = 0;
    for (; i < b.frames.length; i++) {
      const frame = b.frames[i]!;
      if (!ring.tryWrite(frame)) break;
      const kind = b.kinds[i]!;
      if (kind === Held.notice) b.notices -= 1;
      else b.heldBytes -= frame.byteLength;
      if (kind === Held.data) this.stats.framesRouted += 1;
    }
    if (i > 0) {
      b.frames.splice(0, i);
      b.kinds.splice(0, i);
    }
    return b.frames.length === 0;
  }

  /** Resolves once the connection's ring has room for a large frame again (and its backlog is in). */
  async waitForRoom(connId: number): Promise<void> {
    const r = this.ringOf(connId);
    const ring = this.rings[r]!;
    // Half the ring free before resuming: resuming at the first free byte would flap pause/resume.
    // (Options validation guarantees capacityBytes >= 4 x frameBytesMax.)
    const want = ring.capacity / 2;
    for (;;) {
      if (this.flushBacklog(r) && ring.freeBytes() >= want) return;
      await new Promise((resolve) => setTimeout(resolve, this.opts.drainPollMs));
    }
  }

  /**
   * Writes any backlog that fits now, and the ring-drop notices of connections that have sent
   * nothing since their drop (otherwise a drop at the end of a burst would wait for the next
   * frame to be reported). Called periodically and before shutdown; true when nothing waits.
   */
  flushNotices(): boolean {
    let all = true;
    for (let r = 0; r < this.rings.length; r++) all = this.flushBacklog(r) && all;
    for (const [connId, count] of this.pendingDrops) {
      const r = this.ringOf(connId);
      if (this.backlog[r]!.frames.length === 0 && this.rings[r]!.tryWrite(this.encodeNotice(connId, Date.now() * 1000, { kind: 'ring-drop', count }))) {
        this.pendingDrops.delete(connId);
      } else all = false;
    }
    return all;
  }

  /** Frames (held data and notices) still waiting for their rings. */
  backlogFrames(): number {
    return this.backlog.reduce((n, b) => n + b.frames.length, 0);
  }

  /**
   * At shutdown: writes the backlogs out as the workers drain their rings, for at most timeoutMs.
   * Returns the frames left behind (0 = nothing lost).
   */
  async drainBacklog(timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (!this.flushNotices() && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, this.opts.drainPollMs));
    }
    return this.backlogFrames();
  }
}
