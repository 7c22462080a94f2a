// Plain progress lines while a backlog is exported: partitions, rows, rate, share of the backlog
// done and ETA. The backlog is measured in hours of time span (cheap: no counting query), so the
// ETA assumes later hours are as full as the ones done so far.
import { HOUR_US } from './layout';

interface PlanLike {
  readonly lateHours: readonly number[];
  readonly forwardFromUs: number;
}

export class Progress {
  private readonly started = Date.now();
  private lastPrint = Date.now();
  private readonly totalSpanUs: number;
  private doneSpanUs = 0;
  private rows = 0;
  private partitions = 0;

  constructor(
    plans: readonly PlanLike[],
    dueEndUs: number,
    private readonly intervalMs: number,
    private readonly sink: ((line: string) => void) | undefined,
  ) {
    let total = 0;
    for (const p of plans) {
      total += p.lateHours.length * HOUR_US;
      if (Number.isFinite(p.forwardFromUs) && p.forwardFromUs < dueEndUs) total += dueEndUs - p.forwardFromUs;
    }
    this.totalSpanUs = total;
  }

  /** spanDoneUs: backlog time span this step covered (a late re-export counts one hour). */
  advance(rows: number, spanDoneUs: number, exported: boolean): void {
    this.rows += rows;
    if (exported) this.partitions++;
    this.doneSpanUs += spanDoneUs > 0 ? spanDoneUs : exported ? HOUR_US : 0;
    if (this.sink && Date.now() - this.lastPrint >= this.intervalMs) {
      this.lastPrint = Date.now();
      this.sink(this.line());
    }
  }

  finish(): void {
    // Trailing empty hours of the backlog hold no partition to advance over: the pass is complete.
    this.doneSpanUs = this.totalSpanUs;
    if (this.sink && this.partitions > 0) this.sink(`${this.line()} (done)`);
  }

  private line(): string {
    const elapsedS = Math.max((Date.now() - this.started) / 1000, 1e-3);
    const rate = Math.round(this.rows / elapsedS);
    let eta = '?';
    if (this.totalSpanUs > 0 && this.doneSpanUs > 0) {
      const share = Math.min(1, this.doneSpanUs / this.totalSpanUs);
      eta = share >= 1 ? '0s' : `${Math.round((elapsedS * (1 - share)) / share)}s`;
      return `archive: ${this.partitions} partitions, ${this.rows} rows, ${rate} rows/s, ${Math.round(share * 100)}% of backlog, ETA ${eta}`;
    }
    return `archive: ${this.partitions} partitions, ${this.rows} rows, ${rate} rows/s, ETA ${eta}`;
  }
}

/**
 * Progress of one derived dataset's backlog (periods from its frontier to the due limit): a line
 * at most every intervalMs while more than one period is due, and one at the end.
 */
export class DerivedProgress {
  private readonly started = Date.now();
  private lastPrint = Date.now();
  private done = 0;
  private rows = 0;

  constructor(
    private readonly name: string,
    private readonly totalPeriods: number,
    private readonly intervalMs: number,
    private readonly sink: ((line: string) => void) | undefined,
  ) {}

  advance(sourceRows: number): void {
    this.done++;
    this.rows += sourceRows;
    if (this.sink && this.totalPeriods > 1 && Date.now() - this.lastPrint >= this.intervalMs) {
      this.lastPrint = Date.now();
      this.sink(this.line());
    }
  }

  finish(): void {
    if (this.sink && this.totalPeriods > 1 && this.done > 0) this.sink(`${this.line()} (done)`);
  }

  private line(): string {
    const elapsedS = Math.max((Date.now() - this.started) / 1000, 1e-3);
    const share = Math.min(1, this.done / this.totalPeriods);
    const eta = share >= 1 ? '0s' : `${Math.round((elapsedS * (1 - share)) / Math.max(share, 1e-9))}s`;
    return `archive ${this.name}: ${this.done} of ${this.totalPeriods} periods, ${this.rows} source rows, ${Math.round(this.rows / elapsedS)} rows/s, ETA ${eta}`;
  }
}
