// The demo's live view: scrapes every service's /metrics once a second and renders one screen
// (a TTY) or one line every few seconds (a pipe or a CI log).
import { scrape, sumOf, type Sample } from '../ops/scrape';

export interface Endpoint {
  readonly name: string;
  readonly kind: 'gatherer' | 'dedup' | 'archive' | 'maintain';
  readonly metricsUrl: string;
  readonly healthUrl: string | undefined;
}

export interface ViewRow {
  readonly name: string;
  readonly up: boolean;
  readonly values: Readonly<Record<string, number>>;
  readonly rates: Readonly<Record<string, number>>;
}

const GATHERER_COLUMNS = {
  msgs: 'ws_client_messages_received_total',
  rows: 'writer_inserts_total',
  gaps: 'sequence_gaps_total',
  recovered: 'sequence_gaps_recovered_total',
  conns: 'ws_client_connected',
  markets: 'conn_manager_markets_subscribed',
  reconnects: 'reconnects_total',
  dropped: 'router_messages_dropped_total',
  // prom-client's default process metric: the gatherer process with its ingest and worker threads.
  rss: 'process_resident_memory_bytes',
} as const;
const DEDUP_COLUMNS = {
  merged: 'dedup_rows_merged_total',
  duplicates: 'dedup_rows_duplicate_total',
  lag: 'dedup_sync_lag_seconds',
  dupRate: 'dedup_duplicate_rate',
  rds: 'dedup_rds_connected',
} as const;
const ARCHIVE_COLUMNS = { exported: 'archive_rows_exported_total', partitions: 'archive_partitions_exported_total' } as const;
const MAINTAIN_COLUMNS = {
  runs: 'maintenance_runs_total',
  created: 'maintenance_partitions_created_total',
  dropped: 'maintenance_partitions_dropped_total',
} as const;
const COLUMNS = { gatherer: GATHERER_COLUMNS, dedup: DEDUP_COLUMNS, archive: ARCHIVE_COLUMNS, maintain: MAINTAIN_COLUMNS } as const;

function columnsOf(kind: Endpoint['kind']): Record<string, string> {
  return COLUMNS[kind];
}

const sumValues = (rows: readonly ViewRow[], col: string): number => rows.reduce((n, r) => n + (r.values[col] ?? 0), 0);

/** The worst values seen over the whole run, for the demo's closing summary (issue 21's targets). */
export interface ViewPeaks {
  /** Largest dedup_sync_lag_seconds of any gatherer in any sample. */
  lagSecondsMax: number;
  /** Largest resident set per gatherer (bytes) in any sample. */
  readonly rssBytesMax: Map<string, number>;
  samples: number;
}

export class LiveView {
  readonly peaks: ViewPeaks = { lagSecondsMax: 0, rssBytesMax: new Map(), samples: 0 };
  private previous = new Map<string, { at: number; values: Record<string, number> }>();
  private lastLineAt = 0;

  constructor(
    private readonly endpoints: readonly Endpoint[],
    private readonly out: NodeJS.WriteStream,
    private readonly header: () => string,
  ) {}

  async sample(): Promise<ViewRow[]> {
    const now = Date.now();
    const scraped = await Promise.all(this.endpoints.map((e) => scrape(e.metricsUrl, 900)));
    const rows = this.endpoints.map((e, i) => this.row(e, scraped[i], now));
    this.notePeaks(rows);
    return rows;
  }

  private notePeaks(rows: readonly ViewRow[]): void {
    this.peaks.samples += 1;
    for (const r of rows) {
      if (!r.up) continue;
      const lag = r.values.lag;
      if (lag !== undefined) this.peaks.lagSecondsMax = Math.max(this.peaks.lagSecondsMax, lag);
      const rss = r.values.rss;
      if (rss !== undefined) this.peaks.rssBytesMax.set(r.name, Math.max(this.peaks.rssBytesMax.get(r.name) ?? 0, rss));
    }
  }

  private row(e: Endpoint, samples: Sample[] | undefined, now: number): ViewRow {
    const values: Record<string, number> = {};
    const rates: Record<string, number> = {};
    if (samples) {
      for (const [col, metric] of Object.entries(columnsOf(e.kind))) {
        // The lag gauge is per gatherer: show the worst.
        values[col] = col === 'lag' ? Math.max(0, ...samples.filter((s) => s.name === metric).map((s) => s.value)) : sumOf(samples, metric);
      }
      const prev = this.previous.get(e.name);
      if (prev) {
        const dt = (now - prev.at) / 1000;
        for (const col of ['msgs', 'rows', 'merged', 'exported']) {
          if (col in values && col in prev.values) rates[col] = Math.max(0, (values[col]! - prev.values[col]!) / dt);
        }
      }
      this.previous.set(e.name, { at: now, values });
    }
    return { name: e.name, up: samples !== undefined, values, rates };
  }

  async render(): Promise<ViewRow[]> {
    const rows = await this.sample();
    if (this.out.isTTY) {
      this.out.write('\x1b[H\x1b[2J' + this.screen(rows) + '\n');
    } else if (Date.now() - this.lastLineAt >= 5000) {
      this.lastLineAt = Date.now();
      this.out.write(this.line(rows) + '\n');
    }
    return rows;
  }

  screen(rows: readonly ViewRow[]): string {
    const f = (n: number | undefined, digits = 0): string => (n === undefined ? '-' : n.toFixed(digits));
    const lines = [this.header(), ''];
    lines.push('gatherer  up   msg/s      rows/s     markets  conns  gaps(recovered)  reconnects  dropped');
    for (const r of rows.filter((x) => this.kindOf(x) === 'gatherer')) {
      const v = r.values;
      lines.push(
        `${r.name.padEnd(9)} ${(r.up ? 'yes' : 'DOWN').padEnd(4)} ${f(r.rates.msgs).padStart(9)}  ${f(r.rates.rows).padStart(9)}  ` +
          `${f(v.markets).padStart(7)}  ${f(v.conns).padStart(5)}  ${`${f(v.gaps)}(${f(v.recovered)})`.padStart(15)}  ${f(v.reconnects).padStart(10)}  ${f(v.dropped).padStart(7)}`,
      );
    }
    for (const r of rows.filter((x) => this.kindOf(x) === 'dedup')) {
      const v = r.values;
      lines.push(
        '',
        `deduplicator ${r.up ? '' : 'DOWN '}merged ${f(v.merged)} rows (${f(r.rates.merged)}/s), lag ${f(v.lag, 1)} s, duplicate rate ${f((v.dupRate ?? 0) * 100, 1)}%, production ${v.rds ? 'connected' : 'UNREACHABLE'}`,
      );
    }
    for (const r of rows.filter((x) => this.kindOf(x) === 'archive')) {
      lines.push(`archiver     ${r.up ? '' : 'DOWN '}exported ${f(r.values.exported)} rows in ${f(r.values.partitions)} partitions`);
    }
    const maint = rows.filter((x) => this.kindOf(x) === 'maintain');
    if (maint.length) {
      const each = maint.map((r) => (r.up ? `${r.name.replace(/^maint-/, '')} ${f(r.values.runs)} cycles` : `${r.name} DOWN`));
      lines.push(`maintenance  ${each.join(', ')}; partitions created ${f(sumValues(maint, 'created'))}, dropped ${f(sumValues(maint, 'dropped'))}`);
    }
    lines.push('', 'endpoints:');
    for (const e of this.endpoints) lines.push(`  ${e.name.padEnd(9)} ${e.healthUrl ?? ''}  ${e.metricsUrl}`);
    lines.push('', 'Ctrl-C stops everything gracefully and prints the verification.');
    return lines.join('\n');
  }

  line(rows: readonly ViewRow[]): string {
    const maint = rows.filter((r) => this.kindOf(r) === 'maintain');
    const parts = rows
      .filter((r) => this.kindOf(r) !== 'maintain')
      .map((r) => {
        if (!r.up) return `${r.name}=DOWN`;
        const k = this.kindOf(r);
        if (k === 'gatherer') return `${r.name} ${Math.round(r.rates.msgs ?? 0)}msg/s rows=${r.values.rows ?? 0} gaps=${r.values.gaps ?? 0}`;
        if (k === 'dedup') return `dedup merged=${r.values.merged ?? 0} lag=${(r.values.lag ?? 0).toFixed(1)}s`;
        return `archive rows=${r.values.exported ?? 0}`;
      });
    if (maint.length) parts.push(`maintain up=${maint.filter((r) => r.up).length}/${maint.length} cycles=${sumValues(maint, 'runs')}`);
    return `[${new Date().toISOString().slice(11, 19)}] ${parts.join(' | ')}`;
  }

  private kindOf(r: ViewRow): Endpoint['kind'] {
    return this.endpoints.find((e) => e.name === r.name)!.kind;
  }
}
