// A FIFO gate the parallel merge cycles pass through for their COPY streams. Merges serialise on
// production (LOCK_MERGE), so the first gatherer to finish streaming holds the critical path;
// streaming one gatherer at a time lets it finish early and merge while the others stream beside
// it, instead of all three sharing the CPU and reaching the merge lock together. The gate is an
// optimisation only: a waiter goes ahead after `waitMaxMs` (a slow or hung gatherer must not hold
// the others back), so correctness never depends on it.
export class StreamGate {
  private tail: Promise<void> = Promise.resolve();
  waitsTimedOut = 0;

  constructor(private readonly waitMaxMs: number) {}

  /** Waits for the streams ahead (at most waitMaxMs); call the returned function when done. */
  async acquire(): Promise<() => void> {
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const ahead = this.tail;
    this.tail = ahead.then(() => mine);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([ahead.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), this.waitMaxMs)))]);
    clearTimeout(timer);
    if (timedOut) this.waitsTimedOut++;
    return release;
  }
}
