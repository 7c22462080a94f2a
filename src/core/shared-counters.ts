// Counters shared between threads through a SharedArrayBuffer: worker threads add to them on the
// hot path (one Float64Array store, no message, no allocation) and the thread serving /metrics
// reads them at scrape time. prom-client registries are per thread, so this is how worker
// metrics reach the gatherer's /metrics. The slot list is the layout: both sides build it from
// the same list of names.
import { invariant } from './errors';

export class SharedCounters<Name extends string> {
  readonly buffer: SharedArrayBuffer;
  private readonly values: Float64Array;
  private readonly index: ReadonlyMap<Name, number>;

  constructor(
    readonly names: readonly Name[],
    buffer?: SharedArrayBuffer,
  ) {
    this.buffer = buffer ?? new SharedArrayBuffer(names.length * Float64Array.BYTES_PER_ELEMENT);
    invariant(this.buffer.byteLength === names.length * 8, 'shared counter layout mismatch');
    this.values = new Float64Array(this.buffer);
    this.index = new Map(names.map((n, i) => [n, i]));
  }

  /** Slot of a name, resolved once at setup so the hot path indexes directly. */
  slot(name: Name): number {
    const i = this.index.get(name);
    invariant(i !== undefined, `unknown counter ${name}`);
    return i;
  }

  // Single writer per slot (each worker has its own buffer), so plain stores are race-free;
  // readers may see a value a few increments old, which is fine for metrics.
  add(slot: number, by = 1): void {
    this.values[slot]! += by;
  }

  set(slot: number, value: number): void {
    this.values[slot] = value;
  }

  get(name: Name): number {
    return this.values[this.slot(name)]!;
  }

  read(slot: number): number {
    return this.values[slot]!;
  }
}
