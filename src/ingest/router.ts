// The ingest thread's side of the bus: encodes each WebSocket message into a bus frame and writes
// it into the ring of the worker that owns the connection (connId % workers), so one connection's
// messages are always sequence-checked by one worker. A full ring never loses silently:
// - onRingFull 'pause': push() returns false and the connection manager pauses the socket until
//   waitForRoom() resolves (TCP backpressure reaches the exchange);
// - onRingFull 'drop': the frame is dropped and counted, and before the connection's next frame a
//   ring-drop notice goes onto the ring: the worker marks every sid of the connection for resync and
//   reports ring-drop gaps, which the service records, resyncs and backfills. Oversized frames are
//   refused the same way.
import type { ConnectionNotice, FrameSink } from '../gatherer/connections';

/** The producer half of a ring, as the router needs it. */
export interface RingProducer {
  /** Appends a frame (waking a sleeping consumer); false when full. */
  tryWrite(frame: Uint8Array): boolean;
  freeBytes(): number;
  readonly capacity: number;
}

export interface FrameEncoder {
  data(connId: number, receivedAtUs: number, payload: Buffer): Uint8Array;
  notice(connId: number, receivedAtUs: number, notice: ConnectionNotice): Uint8Array;
}

export interface RouterStats {
  framesRouted: number;
  framesDropped: number;
  ringFullEvents: number;
  framesTooLarge: number;
}

export interface RouterOptions {
  readonly onRingFull: 'pause' | 'drop';
  readonly frameBytesMax: number;
  /** How often a paused connection checks its ring for room. */
  readonly drainPollMs: number;
  /** Notices waiting for a full ring, per ring; a notice is never dropped, so the cap is an invariant. */
  readonly noticeBacklogMax: number;
}

export class RingRouter implements FrameSink {
  readonly stats: RouterStats = { framesRouted: 0, framesDropped: 0, ringFullEvents: 0, framesTooLarge: 0 };
  private readonly backlog: Uint8Array[][];

  /** Frames lost per connection since its last ring-drop notice went out. */
  private readonly pendingDrops = new Map<number, number>();

  constructor(
    private readonly rings: readonly RingProducer[],
    private readonly encoder: FrameEncoder,
    private readonly opts: RouterOptions,
  ) {
    this.backlog = rings.map(() => []);
  }

  ringOf(connId: number): number {
    return connId % this.rings.length;
  }

  push(connId: number, receivedAtUs: number, data: Buffer): boolean {
    if (data.byteLength > this.opts.frameBytesMax) {
      // Oversized frames are refused before the ring: counted, and the loss is handled like a drop.
      this.stats.framesTooLarge += 1;
      this.noteDrop(connId);
      return true;
    }
    const r = this.ringOf(connId);
    if (this.backlog[r]!.length > 0 && !this.flushBacklog(r)) return this.full(connId);
    const ring = this.rings[r]!;
    const dropped = this.pendingDrops.get(connId);
    if (dropped !== undefined) {
      if (!ring.tryWrite(this.encoder.notice(connId, receivedAtUs, { kind: 'ring-drop', count: dropped }))) return this.full(connId);
      this.pendingDrops.delete(connId);
    }
    if (ring.tryWrite(this.encoder.data(connId, receivedAtUs, data))) {
      this.stats.framesRouted += 1;
      return true;
    }
    return this.full(connId);
  }

  private full(connId: number): boolean {
    this.stats.ringFullEvents += 1;
    if (this.opts.onRingFull === 'pause') return false;
    this.stats.framesDropped += 1;
    this.noteDrop(connId);
    return true;
  }

  private noteDrop(connId: number): void {
    this.pendingDrops.set(connId, (this.pendingDrops.get(connId) ?? 0) + 1);
  }

  notice(connId: number, notice: ConnectionNotice): void {
    const r = this.ringOf(connId);
    const frame = this.encoder.notice(connId, Date.now() * 1000, notice);
    const queue = this.backlog[r]!;
    if (queue.length === 0 && this.rings[r]!.tryWrite(frame)) return;
    if (queue.length >= this.opts.noticeBacklogMax) {
      throw new Error(`invariant violated: notice backlog of ring ${r} exceeds ${this.opts.noticeBacklogMax}`);
    }
    queue.push(frame);
  }

  private flushBacklog(r: number): boolean {
    const queue = this.backlog[r]!;
    const ring = this.rings[r]!;
    while (queue.length > 0) {
      if (!ring.tryWrite(queue[0]!)) return false;
      queue.shift();
    }
        return true;
  }

  /** Resolves once the connection's ring has room for a large frame again (and its notices are in). */
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

  /** Writes any queued notices (called periodically and before shutdown). */
  flushNotices(): boolean {
    let all = true;
    for (let r = 0; r < this.rings.length; r++) all = this.flushBacklog(r) && all;
    return all;
  }
}
