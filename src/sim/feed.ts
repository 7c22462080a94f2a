// Where a replaying simulator takes its exchange records from. A truth file (`kdp sim --from`) is
// read into memory and handed over whole (ArrayFeed); `kdp replay` streams recorded history from
// a database through a bounded feed filled by an async reader (src/replay/feed.ts). The simulator
// takes records synchronously in its loop, so a feed only ever says what it holds now.
import type { ExchangeRecord } from './truth';

export interface RecordFeed {
  /** The next record if one is held now; undefined when none is (not yet read, or the feed ended). */
  peek(): ExchangeRecord | undefined;
  /** Takes the record peek() returned. */
  shift(): void;
  /** True once every record has been taken and no more will come. */
  ended(): boolean;
}

export class ArrayFeed implements RecordFeed {
  private i = 0;
  constructor(private readonly recs: readonly ExchangeRecord[]) {}
  peek(): ExchangeRecord | undefined {
    return this.recs[this.i];
  }
  shift(): void {
    this.i++;
  }
  ended(): boolean {
    return this.i >= this.recs.length;
  }
}
