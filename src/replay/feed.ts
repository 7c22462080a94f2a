// The bounded buffer between the database reader (async) and the simulator's loop (which takes
// records synchronously): the reader stops fetching while `capacity` records wait, so a replay
// of a whole day holds at most `capacity` records plus one batch however slow its client reads (the server's
// own send buffers are bounded by the simulator: fast pace waits for slow readers).
import { invariant } from '../core/errors';
import type { RecordFeed } from '../sim/feed';
import type { ExchangeRecord } from '../sim/truth';
import type { Timed } from './records';

export class PumpedFeed implements RecordFeed {
  private buf: ExchangeRecord[] = [];
  private head = 0;
  private finished = false;
  private room: (() => void) | null = null;
  private stopped = false;
  /** Records the reader produced so far. */
  produced = 0;

  /** `nextN`: the exchange order number of the first record (after the primed ones). */
  constructor(
    private readonly capacity: number,
    private nextN: number,
  ) {
    invariant(capacity >= 1, 'feed capacity must be positive');
  }

  /** Reads `source` into the buffer until it ends or stop(); rejects with the reader's error. */
  async pump(source: AsyncIterable<readonly Timed[]>): Promise<void> {
    try {
      for await (const batch of source) {
        if (this.stopped) return;
        for (const rec of batch) {
          const full = rec as unknown as ExchangeRecord;
          full.n = this.nextN++;
          this.buf.push(full);
        }
        this.produced += batch.length;
        if (this.buf.length - this.head >= this.capacity) await new Promise<void>((resolve) => (this.room = resolve));
      }
    } finally {
      this.finished = true;
    }
  }

  stop(): void {
    this.stopped = true;
    this.wake();
  }

  peek(): ExchangeRecord | undefined {
    return this.buf[this.head];
  }

  shift(): void {
    this.head++;
    // Compact once the taken part dominates (amortised O(1) per record).
    if (this.head >= 4096 && this.head * 2 >= this.buf.length) {
      this.buf = this.buf.slice(this.head);
      this.head = 0;
    }
    if (this.buf.length - this.head <= this.capacity / 2) this.wake();
  }

  ended(): boolean {
    return this.finished && this.head >= this.buf.length;
  }

  /** Records waiting in the buffer. */
  held(): number {
    return this.buf.length - this.head;
  }

  private wake(): void {
    const r = this.room;
    this.room = null;
    r?.();
  }
}
