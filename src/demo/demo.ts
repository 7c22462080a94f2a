// `kdp demo` (= `npm start`): the whole platform on this machine, with a live view, optional
// faults, a graceful stop, and an exact verification of production against the simulator's
// ground truth. Exit code 0 only when the verification passed.
import { Client } from 'pg';
import { KdpError } from '../core/errors';
import { withClient } from '../core/pgclient';
import { formatTruthComparison, verifyAgainstTruth, type TruthComparison } from '../ops/truth';
import { readTruthExpectation } from '../ops/truth-file';
import { histogramQuantile, scrape, sumOf } from '../ops/scrape';
import { finalArchivePass } from './archive-check';
import { Stack } from './stack';
import { LiveView, type ViewPeaks } from './view';

export interface DemoOptions {
  readonly seconds: number | undefined;
  readonly markets: number;
  readonly rate: number;
  readonly seed: number;
  /** Demo faults (kill-gatherer:every=20s) and simulator faults (docs/simulator.md), comma-separated. */
  readonly faults: string;
  readonly keep: boolean;
  readonly dataDir: string | undefined;
}

interface DemoFault {
  readonly kind: 'kill-gatherer';
  readonly everyMs: number;
}

/** Splits --faults into the demo's own process faults and the simulator's exchange faults. */
export function splitFaults(spec: string): { demo: DemoFault[]; sim: string } {
  const demo: DemoFault[] = [];
  const sim: string[] = [];
  for (const item of spec
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    if (!item.startsWith('kill-gatherer')) {
      sim.push(item);
      continue;
    }
    const m = /^kill-gatherer(?::every=(\d+)(ms|s|m))?$/.exec(item);
    if (!m) throw new KdpError('KDP_ERR_USAGE', `bad demo fault "${item}" (expected kill-gatherer:every=20s)`);
    const n = Number(m[1] ?? 20);
    const unit = m[2] ?? 's';
    demo.push({ kind: 'kill-gatherer', everyMs: unit === 'ms' ? n : unit === 's' ? n * 1000 : n * 60_000 });
  }
  return { demo, sim: sim.join(',') };
}

async function productionTotal(url: string): Promise<number> {
  const r = await withClient(url, (c) =>
    c.query(
      `SELECT (SELECT count(*) FROM trades) + (SELECT count(*) FROM orderbook_deltas) + (SELECT count(*) FROM tickers)
            + (SELECT count(*) FROM orderbook_snapshots) + (SELECT count(*) FROM lifecycle_events) AS n`,
    ),
  );
  return Number(r.rows[0].n);
}

/** Waits until production stops growing (the deduplicator merged everything the gatherers hold). */
async function waitMerged(url: string, quietMs: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last = -1;
  let quietSince = Date.now();
  for (;;) {
    const n = await productionTotal(url).catch(() => last);
    if (n !== last) {
      last = n;
      quietSince = Date.now();
    } else if (Date.now() - quietSince >= quietMs || Date.now() > deadline) {
      return n;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

export async function runDemo(o: DemoOptions, out: NodeJS.WriteStream = process.stdout): Promise<number> {
  const faults = splitFaults(o.faults);
  const say = (line: string): void => void out.write(`${line}\n`);
  const events: string[] = [];
  // Events (restarts, injected faults) show in the live view's header on a terminal, as lines otherwise.
  const note = (line: string): void => {
    const stamped = `[${new Date().toISOString().slice(11, 19)}] ${line}`;
    events.push(stamped);
    if (!out.isTTY) say(stamped);
  };
  const stack = new Stack({
    gatherers: 3,
    markets: o.markets,
    ratePerSec: o.rate,
    seed: o.seed,
    simFaults: faults.sim,
    dataDir: o.dataDir,
    keep: o.keep,
    restartDelayMs: 2000,
    onEvent: (line) => note(line),
  });
  let stopRequested = false;
  const onSignal = (): void => {
    if (stopRequested) process.exit(130);
    stopRequested = true;
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    say(`kdp demo: data in ${stack.dir}`);
    say('starting embedded PostgreSQL (3 gatherer databases + production) ...');
    const dbUrls = await stack.startDatabases();
    say(`starting the exchange simulator: ${o.markets} markets, ${o.rate} msg/s, seed ${o.seed}${faults.sim ? `, faults ${faults.sim}` : ''} ...`);
    const sim = await stack.startSimulator();
    say(`starting 3 gatherers against ${sim.wsUrl} ...`);
    await stack.startGatherers(dbUrls);
    await stack.waitGatherersSubscribed(120_000);
    const started = await sim.clock('resume');
    say('every market subscribed by every gatherer: the exchange is running');
    await stack.startDedupAndArchive();
    await stack.startMaintainers();
    const view = new LiveView(stack.endpoints(), out, () => header(o, started.nowUs, sim.wsUrl, events));
    const t0 = Date.now();
    const nextKill = faults.demo.map((f) => t0 + f.everyMs);
    while (!stopRequested && (o.seconds === undefined || Date.now() - t0 < o.seconds * 1000)) {
      await view.render();
      faults.demo.forEach((f, i) => {
        if (Date.now() < nextKill[i]!) return;
        nextKill[i] = Date.now() + f.everyMs;
        const alive = stack.gatherers.filter((g) => g.service.state().running);
        if (alive.length < 2) return; // never take the last gatherer down
        const victim = alive[Math.floor(Math.random() * alive.length)]!;
        if (victim.service.kill9()) note(`fault: kill -9 ${victim.name}`);
      });
      await new Promise((r) => setTimeout(r, 1000));
    }
    return await finish(stack, o, started.records, say, view.peaks);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await stack.destroy();
    if (o.keep) say(`data kept in ${stack.dir} (logs/, config/, truth.ndjson, archive/, pg/)`);
  }
}

const mib = (bytes: number | undefined): string => (bytes === undefined ? 'not sampled' : `${(bytes / 1048576).toFixed(0)} MiB`);

function header(o: DemoOptions, startUs: number, wsUrl: string, events: readonly string[]): string {
  const up = Math.round((Date.now() * 1000 - startUs) / 1e6);
  return [
    `Kalshi Data Platform demo: ${o.markets} markets at ${o.rate} msg/s from ${wsUrl}, running ${up} s${o.seconds ? ` of ${o.seconds}` : ''}`,
    ...(events.length ? ['', 'events:', ...events.slice(-5).map((e) => `  ${e}`)] : []),
  ].join('\n');
}

/** p50 / p99 of market_created_to_subscribed_seconds over every gatherer, as one line. */
async function creationLatency(stack: Stack): Promise<string> {
  const samples = (
    await Promise.all(
      stack
        .endpoints()
        .filter((e) => e.kind === 'gatherer')
        .map((e) => scrape(e.metricsUrl)),
    )
  ).flatMap((s) => s ?? []);
  const n = sumOf(samples, 'market_created_to_subscribed_seconds_count');
  if (n === 0) return 'no market was created during the run';
  const fmt = (q: number): string => `${(histogramQuantile(samples, 'market_created_to_subscribed_seconds', q) ?? 0).toFixed(2)} s`;
  return `${n} subscriptions, p50 ${fmt(0.5)}, p99 ${fmt(0.99)}`;
}

async function finish(stack: Stack, o: DemoOptions, afterN: number, say: (l: string) => void, peaks: ViewPeaks): Promise<number> {
  say('\nstopping: pausing the exchange, draining the gatherers, letting the deduplicator catch up ...');
  const sim = stack.sim!;
  const end = await sim.clock('pause');
  const latency = await creationLatency(stack);
  await new Promise((r) => setTimeout(r, 3000));
  await Promise.all(stack.gatherers.map((g) => g.service.stop(60_000)));
  await sim.stop();
  const merged = await waitMerged(stack.productionUrl, 4000, 120_000);
  await stack.dedup?.stop(30_000);
  await stack.archive?.stop(30_000);
  await Promise.all(stack.maintainers.map((m) => m.service.stop(30_000)));
  const truth = await readTruthExpectation(stack.truthFile, { afterN, throughN: end.records });
  const c = new Client({ connectionString: stack.productionUrl });
  await c.connect();
  let comparison: TruthComparison;
  try {
    comparison = await verifyAgainstTruth(c, truth.expected, truth.span);
    const gaps = await c.query(`SELECT count(*)::int AS n, count(*) FILTER (WHERE recovered)::int AS r FROM gap_ledger`);
    say('');
    say(
      `summary: ${merged} rows in production; ${truth.expected.trades.length} trades and ${truth.expected.deltas.length} deltas made by the exchange in the run`,
    );
    say(`gap ledger: ${gaps.rows[0].n} gaps recorded, ${gaps.rows[0].r} recovered`);
    say(`new markets, 'created' to book subscription acked: ${latency}`);
    for (const g of stack.gatherers) say(`${g.name}: started ${g.service.state().starts} time(s), peak RSS ${mib(peaks.rssBytesMax.get(g.name))}`);
    say(`deduplicator lag (dedup_sync_lag_seconds, worst gatherer, largest of ${peaks.samples} samples over the run): ${peaks.lagSecondsMax.toFixed(1)} s`);
  } finally {
    await c.end();
  }
  say('');
  say("verification against the simulator's ground truth (kdp verify --truth):");
  say(formatTruthComparison(comparison));
  let archived = true;
  if (stack.archiveConfig) {
    say('');
    const check = await finalArchivePass(stack.archiveConfig, stack.productionUrl);
    for (const line of check.lines) say(line);
    archived = check.ok;
  }
  void o;
  return comparison.ok && archived ? 0 : 1;
}
