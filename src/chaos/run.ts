// `kdp chaos` (= `npm run chaos`): seeded chaos runs. Each run starts its own platform — the
// simulator, three gatherers each on its own PostgreSQL, the deduplicator and production
// PostgreSQL, as separate processes — lets the exchange run for --seconds while the nemesis
// (nemesis.ts) injects its seeded schedule, then stops the exchange, lets everything recover and
// merge, and runs the checker (checker.ts). Exit code 0 only when every run had no violation.
import { Client } from 'pg';
import { KdpError } from '../core/errors';
import { withClient } from '../core/pgclient';
import { Stack } from '../demo/stack';
import { getJson } from '../ops/scrape';
import { checkChaosRun, formatChaosReport, type ChaosCheckInput, type ChaosCheckReport } from './checker';
import { describeAction, planNemesis, seededRandom, type ChaosAction, type ScheduledFault } from './nemesis';

export interface ChaosOptions {
  readonly seed: number;
  readonly seconds: number;
  readonly runs: number;
  readonly markets: number;
  readonly rate: number;
  readonly meanGapMs: number;
  readonly keep: boolean;
  readonly booksMax: number;
}

export interface ExecutedFault {
  readonly atMs: number;
  readonly description: string;
  /** 'done', or why it was skipped. */
  readonly outcome: string;
}

export interface ChaosRunResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly faults: readonly ExecutedFault[];
  readonly injected: number;
  readonly report: ChaosCheckReport | undefined;
  readonly error: string | undefined;
  readonly exchangeRecords: number;
  readonly dir: string;
}

// Recovery bounds after the exchange stops (each a wait with a deadline, not a sleep).
const SUBSCRIBED_WAIT_MS = 120_000;
const MERGE_QUIET_MS = 4_000;
const MERGE_WAIT_MS = 180_000;
const RECOVERY_WAIT_MS = 120_000;

type Say = (line: string) => void;

export async function runChaos(o: ChaosOptions, say: Say): Promise<number> {
  const results: ChaosRunResult[] = [];
  for (let i = 0; i < o.runs; i++) {
    const seed = o.seed + i;
    say(`\n=== chaos run seed ${seed}: ${o.seconds} s, ${o.markets} markets at ${o.rate} msg/s`);
    const r = await runOnce(seed, o, say);
    results.push(r);
    say(`=== seed ${seed}: ${r.ok ? 'PASS' : 'FAIL'} (${r.injected} faults injected, ${r.exchangeRecords} exchange records)`);
  }
  say('\nchaos summary:');
  for (const r of results) {
    const t = r.report?.truth;
    say(
      `  seed ${r.seed}: ${r.ok ? 'PASS' : 'FAIL'} faults=${r.injected} records=${r.exchangeRecords}` +
        (t ? ` trades=${t.trades.expected} deltas=${t.deltas.expected} books=${r.report!.books.checked} gaps=${r.report!.gaps.injected}` : '') +
        ` violations=${r.report?.violations.length ?? 'n/a'}${r.error ? ` error: ${r.error}` : ''}`,
    );
  }
  return results.every((r) => r.ok) ? 0 : 1;
}

/** Test hook: runs on the quiet stack after the check, before it is torn down. */
export type AfterCheck = (stack: Stack, report: ChaosCheckReport, input: ChaosCheckInput) => Promise<void>;

export async function runOnce(seed: number, o: ChaosOptions, say: Say, afterCheck?: AfterCheck): Promise<ChaosRunResult> {
  const stack = new Stack({
    gatherers: 3,
    markets: o.markets,
    ratePerSec: o.rate,
    seed,
    simFaults: '',
    dataDir: undefined,
    keep: o.keep,
    restartDelayMs: 1000,
    onEvent: (line) => say(`  [${clock()}] ${line}`),
  });
  const executed: ExecutedFault[] = [];
  let exchangeRecords = 0;
  try {
    const dbUrls = await stack.startDatabases(true);
    const sim = await stack.startSimulator();
    await stack.startGatherers(dbUrls);
    await stack.waitGatherersSubscribed(SUBSCRIBED_WAIT_MS);
    const started = await sim.clock('resume');
    await stack.startDedup();
    const schedule = planNemesis({
      seed,
      durationMs: o.seconds * 1000,
      gatherers: 3,
      meanGapMs: o.meanGapMs,
      quietStartMs: 2_000,
      quietEndMs: Math.min(15_000, o.seconds * 250),
    });
    say(`  schedule: ${schedule.length} faults planned (data in ${stack.dir})`);
    const nemesis = new Nemesis(stack, seed, (f) => {
      executed.push(f);
      say(`  [${clock()}] +${(f.atMs / 1000).toFixed(1)}s ${f.description}: ${f.outcome}`);
    });
    await nemesis.play(schedule, o.seconds * 1000);
    const end = await sim.clock('pause');
    exchangeRecords = end.records - started.records;
    await nemesis.settle();
    await quiesce(stack, say);
    // The truth file is complete (flushed and closed) only once the simulator has stopped.
    await sim.stop();
    const gatherers = stack.gatherers.map((g, i) => ({ name: g.name, url: dbUrls[i]! }));
    const input: ChaosCheckInput = { truthFile: stack.truthFile, afterN: started.records, throughN: end.records, booksMax: o.booksMax, seed, gatherers };
    const report: ChaosCheckReport = await withClient(stack.productionUrl, (c) => checkChaosRun(c, input));
    say(formatChaosReport(report).replace(/^/gm, '  '));
    if (afterCheck) await afterCheck(stack, report, input);
    const injected = executed.filter((f) => f.outcome === 'done').length;
    return { seed, ok: report.ok, faults: executed, injected, report, error: undefined, exchangeRecords, dir: stack.dir };
  } catch (err) {
    const error = (err as Error).message;
    say(`  run failed: ${error}`);
    const injected = executed.filter((f) => f.outcome === 'done').length;
    return { seed, ok: false, faults: executed, injected, report: undefined, error, exchangeRecords, dir: stack.dir };
  } finally {
    await stack.destroy();
  }
}

const clock = (): string => new Date().toISOString().slice(11, 19);

/**
 * After the exchange stopped: every gatherer back and subscribed (restart rows recovered), their
 * last frames committed, then stopped gracefully; then the merge settles (waitMergeSettled).
 */
async function quiesce(stack: Stack, say: Say): Promise<void> {
  await stack.waitGatherersSubscribed(SUBSCRIBED_WAIT_MS);
  await new Promise((r) => setTimeout(r, 3_000));
  // Recoveries still running (REST backfills retried after a 5xx burst) end at a graceful stop:
  // give them until every ledger row is recovered (bounded; the checker reports what is left).
  const open = await waitLedgersRecovered(stack, RECOVERY_WAIT_MS);
  if (open > 0) say(`  [${clock()}] ${open} ledger row(s) still open after ${RECOVERY_WAIT_MS} ms`);
  await Promise.all(stack.gatherers.map((g) => g.service.stop(60_000)));
  say(`  [${clock()}] quiet: ${await waitMergeSettled(stack)}`);
}

/**
 * Lets the deduplicator merge until production and its ledger stop changing and every gatherer's
 * ledger is in production, then stops it. Resolves with the final state.
 */
export async function waitMergeSettled(stack: Stack): Promise<string> {
  const deadline = Date.now() + MERGE_WAIT_MS;
  let last = '';
  let quietSince = Date.now();
  for (;;) {
    const state = await mergeState(stack).catch((err: Error) => `error ${err.message}`);
    if (state !== last) {
      last = state;
      quietSince = Date.now();
    } else if (Date.now() - quietSince >= MERGE_QUIET_MS && !state.startsWith('error') && state.endsWith('ledgers-synced')) {
      break;
    }
    if (Date.now() > deadline) throw new KdpError('KDP_ERR_VERIFY_FAILED', `production did not settle within ${MERGE_WAIT_MS} ms (last state: ${state})`);
    await new Promise((r) => setTimeout(r, 500));
  }
  await stack.dedup?.stop(30_000);
  return last;
}

/** Waits until no gatherer database holds an unrecovered gap; resolves with how many are left. */
async function waitLedgersRecovered(stack: Stack, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let open = 0;
    for (const g of stack.gatherers) {
      open += await withClient(
        g.dbUrl,
        async (c) => (await c.query(`SELECT count(*)::int AS n FROM gap_ledger WHERE NOT recovered`)).rows[0].n as number,
      ).catch(
        () => 1, // unreachable right now: not known to be recovered
      );
    }
    if (open === 0 || Date.now() > deadline) return open;
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Production's row counts and whether each gatherer's ledger (rows, recovered flags) is in production. */
async function mergeState(stack: Stack): Promise<string> {
  const prod = new Client({ connectionString: stack.productionUrl });
  prod.on('error', () => undefined); // a failed query rejects; the event alone must not crash us
  await prod.connect();
  try {
    const counts = await prod.query(
      `SELECT (SELECT count(*) FROM trades) AS t, (SELECT count(*) FROM orderbook_deltas) AS d,
              (SELECT count(*) FROM orderbook_snapshots) AS s, (SELECT count(*) FROM lifecycle_events) AS l`,
    );
    let synced = true;
    for (const g of stack.gatherers) {
      const q = `SELECT count(*)::int AS n, count(*) FILTER (WHERE recovered)::int AS r FROM gap_ledger`;
      const mine = (await withClient(g.dbUrl, (gc) => gc.query(q))).rows[0];
      const theirs = (await prod.query(`${q} WHERE gatherer = $1`, [g.name])).rows[0];
      if (mine.n !== theirs.n || mine.r !== theirs.r) synced = false;
    }
    const c = counts.rows[0];
    return `trades=${c.t} deltas=${c.d} snapshots=${c.s} lifecycle=${c.l} ${synced ? 'ledgers-synced' : 'ledgers-behind'}`;
  } finally {
    await prod.end();
  }
}

/** Executes a schedule against a running stack, keeping one gatherer whole at every step. */
class Nemesis {
  private readonly rand: () => number;
  private readonly restarts = new Set<Promise<void>>();
  private readonly clustersDown = new Set<string>();
  private t0 = 0;

  constructor(
    private readonly stack: Stack,
    seed: number,
    private readonly onFault: (f: ExecutedFault) => void,
  ) {
    this.rand = seededRandom(seed ^ 0x5bd1e995);
  }

  async play(schedule: readonly ScheduledFault[], durationMs: number): Promise<void> {
    this.t0 = Date.now();
    for (const f of schedule) {
      const wait = this.t0 + f.atMs - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const outcome = await this.execute(f.action).catch((err: Error) => `failed: ${err.message}`);
      this.onFault({ atMs: Date.now() - this.t0, description: describeAction(f.action), outcome });
    }
    const rest = this.t0 + durationMs - Date.now();
    if (rest > 0) await new Promise((r) => setTimeout(r, rest));
  }

  /** Waits for every stopped PostgreSQL to be running again. */
  async settle(): Promise<void> {
    await Promise.all([...this.restarts]);
  }

  private async execute(a: ChaosAction): Promise<string> {
    const sim = this.stack.sim!;
    if ('target' in a && a.kind !== 'dup' && a.kind !== 'malformed') {
      const whole = await this.otherGatherersWhole(a.target);
      if (!whole) return 'skipped: no other gatherer is healthy right now';
    }
    switch (a.kind) {
      case 'kill-gatherer':
        return this.stack.gatherers[a.target]!.service.kill9() ? 'done' : 'skipped: not running';
      case 'stop-gatherer-pg':
        return this.stopCluster(`g${a.target + 1}`, a.forMs);
      case 'stop-production-pg':
        return this.stopCluster('production', a.forMs);
      case 'kill-dedup':
        return this.stack.dedup!.kill9(a.failpoint ? { KDP_FAILPOINT: a.failpoint } : undefined) ? 'done' : 'skipped: not running';
      case 'rest429':
      case 'rest5xx':
        await sim.injectFault({ kind: a.kind, forMs: a.forMs });
        return 'done';
      case 'rate-burst':
        await sim.injectFault({ kind: 'burst', forMs: a.forMs, x: a.x });
        return 'done';
      case 'create-burst':
        await sim.injectFault({ kind: 'create', count: a.count });
        return 'done';
      default:
        return this.exchangeFault(a);
    }
  }

  private async exchangeFault(a: Extract<ChaosAction, { target: number }>): Promise<string> {
    const sim = this.stack.sim!;
    const client = `kdp-gatherer/${this.stack.gatherers[a.target]!.name}`;
    const conns = (await sim.connections()).filter((c) => c.client === client);
    if (conns.length === 0) return `skipped: ${client} has no connection`;
    const conn = conns[Math.floor(this.rand() * conns.length)]!;
    const book = conn.subs.find((s) => s.channel === 'orderbook_delta');
    switch (a.kind) {
      case 'ws-disconnect':
        await sim.injectFault({ kind: 'disconnect', conn: conn.id });
        return 'done';
      case 'ws-stall':
        await sim.injectFault({ kind: 'stall', conn: conn.id, forMs: a.forMs });
        return 'done';
      case 'oversized':
        await sim.injectFault({ kind: 'oversized', conn: conn.id });
        return 'done';
      case 'err25':
        await sim.injectFault({ kind: 'err25', conn: conn.id, ...(book ? { sid: book.sid } : {}) });
        return 'done';
      case 'skipseq':
      case 'dup':
      case 'malformed':
        if (!book) return `skipped: ${client} has no order-book subscription on conn ${conn.id}`;
        await sim.injectFault({ kind: a.kind, conn: conn.id, sid: book.sid });
        return 'done';
      default:
        return `skipped: ${a.kind} is not an exchange fault`;
    }
  }

  private stopCluster(name: string, forMs: number): string {
    const cluster = this.stack.clusters.get(name)!;
    if (this.clustersDown.has(name)) return 'skipped: already stopped';
    this.clustersDown.add(name);
    const restart = (async () => {
      await cluster.stopImmediate();
      await new Promise((r) => setTimeout(r, forMs));
      await cluster.startServer();
    })()
      .catch((err: Error) => this.onFault({ atMs: Date.now() - this.t0, description: `restart of ${name} PostgreSQL`, outcome: `failed: ${err.message}` }))
      .finally(() => this.clustersDown.delete(name));
    this.restarts.add(restart);
    void restart.finally(() => this.restarts.delete(restart));
    return 'done';
  }

  /** True when some other gatherer is running, subscribed and its database is up. */
  private async otherGatherersWhole(target: number): Promise<boolean> {
    const others = this.stack.gatherers.filter((_, i) => i !== target);
    const states = await Promise.all(
      others.map(async (g) => {
        if (this.clustersDown.has(g.name) || !g.service.state().running) return false;
        const h = await getJson(`http://127.0.0.1:${g.healthPort}/health`, 1000);
        const body = h?.body as { status?: string; subscribed?: boolean } | undefined;
        return body?.subscribed === true && body.status === 'healthy';
      }),
    );
    return states.some(Boolean);
  }
}
