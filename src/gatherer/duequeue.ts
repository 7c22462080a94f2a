// A min-heap of (dueMs, key) with lazy invalidation: the registry pushes a market's open and
// close times and re-checks the market when an entry falls due, so stale entries are harmless.
// One timer is armed for the earliest entry (never one timer per market).

export interface DueEntry {
  readonly dueMs: number;
  readonly key: string;
}

export class DueQueue {
  private heap: DueEntry[] = [];

  get size(): number {
    return this.heap.length;
  }

  peek(): DueEntry | undefined {
    return this.heap[0];
  }

  push(dueMs: number, key: string): void {
    const h = this.heap;
    h.push({ dueMs, key });
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (h[parent]!.dueMs <= h[i]!.dueMs) break;
      [h[parent], h[i]] = [h[i]!, h[parent]!];
      i = parent;
    }
  }

  /** Removes and returns every entry due at or before `nowMs`, earliest first. */
  popDue(nowMs: number): DueEntry[] {
    const out: DueEntry[] = [];
    while (this.heap.length > 0 && this.heap[0]!.dueMs <= nowMs) out.push(this.pop()!);
    return out;
  }

  /** Replaces the contents (compaction: drops stale entries). */
  rebuild(entries: readonly DueEntry[]): void {
    this.heap = [];
    for (const e of entries) this.push(e.dueMs, e.key);
  }

  private pop(): DueEntry | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && h[l]!.dueMs < h[m]!.dueMs) m = l;
        if (r < h.length && h[r]!.dueMs < h[m]!.dueMs) m = r;
        if (m === i) break;
        [h[m], h[i]] = [h[i]!, h[m]!];
        i = m;
      }
    }
    return top;
  }
}
