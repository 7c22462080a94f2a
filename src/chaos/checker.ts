// The chaos checker: after a run has gone quiet, production is compared with the simulator's
// ground truth. Each check names its violations; the run passes only with none.
//   trades      lost / duplicated / invented / value mismatches (src/ops/truth.ts, by trade_id);
//   deltas      per market, as multisets per exchange timestamp: equal multisets at every µs mean
//               equal streams in exchange-time order (production orders deltas by exchange_ts and
//               occurrence; no finer order exists in a row);
//   books       every sampled checkpoint is judged: production's book (src/ops/book.ts: anchored
//               snapshot + merged deltas) equals the exchange's book, or the rebuild said why not
//               (untrusted: a gap every gatherer shared; counted, and a violation only if it
//               called a wrong book trusted). A checkpoint that cannot be anchored is a violation
//               unless it precedes the market's first snapshot's place in the stream; one in the
//               µs of one of its market's deltas, or a mismatch with a tie at the anchor, is the
//               known residual (counted);
//   drift       every REST snapshot of production equals the book rebuilt from the WebSocket chain
//               within the tolerance rule (src/ops/drift.ts): the nemesis corrupts no delta;
//   lifecycle   every market/event lifecycle message of the window is in production, none unknown
//               to the truth is;
//   gaps        every fault the exchange injected that breaks a gatherer's stream (skipped seq,
//               drop, stall, error 25) has a ledger row of that gatherer, and every
//               ledger row is recovered;
//   gatherers   each gatherer's own database holds every trade of the window: every loss a
//               gatherer notices is ledgered and its trades backfilled over REST, so a trade
//               missing from one gatherer was lost silently (e.g. dropped before the ring), even
//               when another gatherer's copy keeps production whole.
import type { ClientBase } from 'pg';
import { withClient } from '../core/pgclient';
import { KdpError } from '../core/errors';
import { reconstructBook, type BookLevel } from '../ops/book';
import { runDriftPass } from '../ops/drift';
import { canonicalDecimal } from '../ops/decimal';
import { compareTrades, formatTruthComparison, loadProductionSet, verifyAgainstTruth, type TruthComparison } from '../ops/truth';
import { readTruthExpectation, type TruthExpectation } from '../ops/truth-file';
import type { BookRec, FaultRec, Level } from '../sim/truth';
import { seededRandom } from './nemesis';

export interface ChaosCheckInput {
  readonly truthFile: string;
  /** The run's exchange records: afterN < n <= throughN. */
  readonly afterN: number;
  readonly throughN: number;
  /** At most this many book checkpoints are rebuilt (a seeded sample when there are more). */
  readonly booksMax: number;
  readonly seed: number;
  /** Each gatherer's own database (the per-gatherer trade check); none = not checked. */
  readonly gatherers?: readonly { readonly name: string; readonly url: string }[];
}

export interface Violation {
  readonly check: 'trades' | 'deltas' | 'books' | 'drift' | 'lifecycle' | 'gaps' | 'ledger' | 'gatherers';
  readonly detail: string;
}

export interface GapCheck {
  /** Faults that broke a gatherer's stream, and how each is accounted for. */
  injected: number;
  inLedger: number;
  /** The gatherer was killed before it saw the break: its restart row covers the window. */
  coveredByRestart: number;
  /** Injected on no connection (nothing to break). */
  notDelivered: number;
  missing: number;
}

export interface ChaosCheckReport {
  readonly ok: boolean;
  readonly violations: Violation[];
  readonly truth: TruthComparison;
  readonly books: BookCheck;
  /** REST snapshots compared with the rebuilt book (src/ops/drift.ts), by verdict. */
  readonly drift: Record<string, number>;
  readonly lifecycle: { expected: number; production: number; missing: number; invented: number };
  readonly gaps: GapCheck;
  readonly ledger: { rows: number; unrecovered: number; byKind: Record<string, number> };
  /** Trades of the window missing from each gatherer's own database. */
  readonly gathererTrades: Record<string, number>;
}

export interface BookCheck {
  checkpoints: number;
  sampled: number;
  /** Rebuilt and compared with the exchange's book. */
  checked: number;
  equal: number;
  /** Trusted and wrong: violations. */
  mismatched: number;
  /** Rebuilt but untrusted (with a reason), and of those, how many were indeed wrong. */
  untrusted: number;
  untrustedWrong: number;
  /** Wrong with a possible tie at the anchor (a delta in next_delta_ts's µs): the known residual. */
  anchorTie: number;
  /** Before the market's first snapshot's place in the delta stream (no book can exist yet). */
  beforeFirstSnapshot: number;
  /** Not anchored although the market had an earlier snapshot: violations. */
  unanchored: number;
  /** In the µs of one of the market's deltas: cannot be placed among them. */
  sameMicrosecond: number;
}

const VIOLATIONS_SHOWN_PER_CHECK = 20;
// KDP_ERR_BOOK_NO_ANCHOR reasons that mean no book existed in production yet at the checkpoint.
const BEFORE_FIRST_SNAPSHOT: ReadonlySet<unknown> = new Set(['before_first_anchor', 'no_snapshot', 'rest_only']);

export async function checkChaosRun(client: ClientBase, input: ChaosCheckInput): Promise<ChaosCheckReport> {
  const truth = await readTruthExpectation(input.truthFile, { afterN: input.afterN, throughN: input.throughN });
  const violations: Violation[] = [];
  const add = (v: Violation): void => void violations.push(v);
  const comparison = await verifyAgainstTruth(client, truth.expected, truth.span);
  tradeAndDeltaViolations(comparison, add);
  const books = await checkBooks(client, truth, input, add);
  const drift = await checkDrift(client, add);
  const lifecycle = await checkLifecycle(client, input.truthFile, truth, add);
  const { gaps, ledger } = await checkGaps(client, truth.faults, add);
  const gathererTrades = await checkGathererTrades(input, truth, add);
  return { ok: violations.length === 0, violations, truth: comparison, books, drift, lifecycle, gaps, ledger, gathererTrades };
}

/** Trades of the window absent from each gatherer's own database (see `gatherers` above). */
async function checkGathererTrades(input: ChaosCheckInput, truth: TruthExpectation, add: (v: Violation) => void): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const g of input.gatherers ?? []) {
    await withClient(g.url, async (c) => {
      const own = await loadProductionSet(c, truth.span);
      const lost = compareTrades(truth.expected.trades, own.trades);
      out[g.name] = lost.counts.lost;
      for (const x of lost.lost)
        add({ check: 'gatherers', detail: `${g.name} lacks trade ${x.tradeId} ${x.ticker} at ${x.exchangeTs}, with no ledger row: lost silently` });
      if (lost.counts.lost > lost.lost.length) add({ check: 'gatherers', detail: `${g.name} lacks ${lost.counts.lost - lost.lost.length} more trades` });
    });
  }
  return out;
}

function tradeAndDeltaViolations(c: TruthComparison, add: (v: Violation) => void): void {
  const t = c.trades;
  for (const x of t.lost) add({ check: 'trades', detail: `lost trade ${x.tradeId} ${x.ticker} at ${x.exchangeTs}` });
  for (const x of t.duplicated) add({ check: 'trades', detail: `duplicated trade ${x.tradeId} ${x.ticker}` });
  for (const x of t.invented) add({ check: 'trades', detail: `invented trade ${x.tradeId} ${x.ticker}` });
  for (const m of t.mismatched)
    add({ check: 'trades', detail: `trade ${m.expected.tradeId} differs: expected ${JSON.stringify(m.expected)}, production ${JSON.stringify(m.actual)}` });
  const d = c.deltas;
  const show = (kind: string, x: { ticker: string; exchangeTs: number; side: string; price: string; delta: string }): string =>
    `${kind} delta ${x.ticker} ${x.side} ${x.price} ${x.delta} at ${x.exchangeTs}`;
  for (const x of d.lost) add({ check: 'deltas', detail: show('lost', x) });
  for (const x of d.duplicated) add({ check: 'deltas', detail: show('duplicated', x) });
  for (const x of d.invented) add({ check: 'deltas', detail: show('invented', x) });
  for (const m of d.mismatched) add({ check: 'deltas', detail: `${show('changed', m.expected)} -> ${m.actual.delta}` });
  // The lists above are samples: make sure the full counts fail the run too.
  const sampled = t.lost.length + t.duplicated.length + t.invented.length + t.mismatched.length;
  const total = t.counts.lost + t.counts.duplicated + t.counts.invented + t.counts.mismatched;
  if (total > sampled) add({ check: 'trades', detail: `${total - sampled} more trade differences (counts: ${JSON.stringify(t.counts)})` });
  const dSampled = d.lost.length + d.duplicated.length + d.invented.length + d.mismatched.length;
  const dTotal = d.counts.lost + d.counts.duplicated + d.counts.invented + d.counts.mismatched;
  if (dTotal > dSampled) add({ check: 'deltas', detail: `${dTotal - dSampled} more delta differences (counts: ${JSON.stringify(d.counts)})` });
}

/** Levels as "price:size" strings, best bid first, decimals canonical. */
function renderTruthLevels(levels: readonly Level[]): string {
  return levels
    .map(([p, s]) => [canonicalDecimal(p), canonicalDecimal(s)] as const)
    .filter(([, s]) => s !== '0')
    .sort((a, b) => Number(b[0]) - Number(a[0]))
    .map(([p, s]) => `${p}:${s}`)
    .join(' ');
}

function renderBookLevels(levels: readonly BookLevel[]): string {
  return levels.map((l) => `${canonicalDecimal(l.price)}:${canonicalDecimal(l.size)}`).join(' ');
}

async function checkBooks(
  client: ClientBase,
  truth: TruthExpectation,
  input: ChaosCheckInput,
  add: (v: Violation) => void,
): Promise<ChaosCheckReport['books']> {
  // A checkpoint in the same µs as one of its market's deltas cannot be placed among them.
  const deltaInstants = new Set(truth.expected.deltas.map((d) => `${d.ticker}@${d.exchangeTs}`));
  let sample: readonly BookRec[] = truth.books;
  if (sample.length > input.booksMax) {
    const rand = seededRandom(input.seed);
    const copy = [...truth.books];
    for (let i = copy.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [copy[i], copy[j]] = [copy[j]!, copy[i]!];
    }
    sample = copy.slice(0, input.booksMax);
  }
  const out: BookCheck = {
    checkpoints: truth.books.length,
    sampled: sample.length,
    checked: 0,
    equal: 0,
    mismatched: 0,
    untrusted: 0,
    untrustedWrong: 0,
    anchorTie: 0,
    beforeFirstSnapshot: 0,
    unanchored: 0,
    sameMicrosecond: 0,
  };
  for (const cp of sample) {
    if (deltaInstants.has(`${cp.m}@${cp.t}`)) {
      out.sameMicrosecond++;
      continue;
    }
    await judgeCheckpoint(client, cp, out, add);
  }
  return out;
}

async function judgeCheckpoint(client: ClientBase, cp: BookRec, out: BookCheck, add: (v: Violation) => void): Promise<void> {
  let book;
  try {
    book = await reconstructBook(client, cp.m, cp.t);
  } catch (err) {
    if (!(err instanceof KdpError) || err.code !== 'KDP_ERR_BOOK_NO_ANCHOR') throw err;
    if (BEFORE_FIRST_SNAPSHOT.has(err.details?.reason)) out.beforeFirstSnapshot++;
    else {
      out.unanchored++;
      add({ check: 'books', detail: `${cp.m} at ${cp.t} (checkpoint ${cp.n}) after its first snapshot: ${err.message}` });
    }
    return;
  }
  out.checked++;
  let wrong: string | null = null;
  for (const side of ['yes', 'no'] as const) {
    const want = renderTruthLevels(cp[side]);
    const got = renderBookLevels(book[side]);
    if (want !== got) {
      wrong = `${cp.m} ${side.toUpperCase()} book at ${cp.t} (checkpoint ${cp.n}): exchange [${want}] production [${got}]`;
      break;
    }
  }
  if (!book.trust.trusted) {
    out.untrusted++;
    if (wrong !== null) out.untrustedWrong++;
    if (wrong !== null && book.trust.anchorTie) out.anchorTie++;
    return;
  }
  if (wrong === null) out.equal++;
  else {
    out.mismatched++;
    add({ check: 'books', detail: `${wrong}; anchor ${JSON.stringify(book.anchor)}` });
  }
}

// The chaos run's REST snapshots against the rebuilt books: no fault of the nemesis corrupts a
// delta, so any mismatch is a wrong WebSocket chain (or a tolerance rule too tight). Merged and quiet
// by now: every REST snapshot is compared (the 2 s window of `kdp maintain`'s default).
const DRIFT_WINDOW_US = 2_000_000;

async function checkDrift(client: ClientBase, add: (v: Violation) => void): Promise<Record<string, number>> {
  const nowUs = Date.now() * 1000 + 3_600_000_000;
  const pass = await runDriftPass(client, { windowUs: DRIFT_WINDOW_US, settleUs: 0, snapshotsMax: 1_000_000, nowUs, staleUs: Number.MAX_SAFE_INTEGER });
  const out: Record<string, number> = {};
  for (const d of pass.checked) {
    out[d.verdict] = (out[d.verdict] ?? 0) + 1;
    if (d.verdict === 'mismatch') add({ check: 'drift', detail: `REST snapshot of ${d.ticker} by ${d.gatherer} at ${d.snapshotTs}: ${d.detail}` });
  }
  return out;
}

/** JSON with object keys sorted: the same message compares equal however it was serialised. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

async function checkLifecycle(
  client: ClientBase,
  truthFile: string,
  window: TruthExpectation,
  add: (v: Violation) => void,
): Promise<ChaosCheckReport['lifecycle']> {
  const key = (channel: string, payload: unknown): string => `${channel} ${canonicalJson(payload)}`;
  const expected = new Set([
    ...window.lifecycle.map((r) => key('market_lifecycle_v2', r.msg)),
    ...window.eventLifecycle.map((r) => key('event_lifecycle', r.msg)),
  ]);
  // Production may also hold messages from before the window (the exchange ran while gatherers
  // subscribed): "invented" means unknown to the whole truth file.
  const whole = await readTruthExpectation(truthFile);
  const known = new Set([...whole.lifecycle.map((r) => key('market_lifecycle_v2', r.msg)), ...whole.eventLifecycle.map((r) => key('event_lifecycle', r.msg))]);
  const rows = await client.query<{ channel: string; payload: unknown }>(`SELECT channel, payload FROM lifecycle_events`);
  const production = new Set(rows.rows.map((r) => key(r.channel, r.payload)));
  let missing = 0;
  let invented = 0;
  for (const k of expected) {
    if (production.has(k)) continue;
    missing++;
    add({ check: 'lifecycle', detail: `missing ${k}` });
  }
  for (const k of production) {
    if (known.has(k)) continue;
    invented++;
    add({ check: 'lifecycle', detail: `invented ${k}` });
  }
  return { expected: expected.size, production: production.size, missing, invented };
}

interface LedgerRow {
  gatherer: string;
  kind: string;
  sid: number | null;
  expected_seq: number | null;
  detected_at: number;
  window_start: number;
  recovered: boolean;
}

// The exchange faults that break a gatherer's stream, and the ledger kinds that record each.
const GAP_KINDS: Record<string, readonly string[]> = {
  skipseq: ['seq_gap'],
  disconnect: ['disconnect'],
  stall: ['seq_gap', 'disconnect'],
  err25: ['error_25'],
};
// Not gaps: an oversized frame is refused and counted by the ingest thread (it is no market data);
// a duplicated frame is dropped and a truncated copy rejected before the intact frame arrives.
// A break the gatherer could not observe because its connection dropped (or its worker died)
// first is recorded by that row instead.
const CONNECTION_KINDS: readonly string[] = ['disconnect', 'worker_restart', 'ring_drop'];
// How long after a fault its ledger row may be detected (the next frame on a quiet sid, a
// silence timeout, a ledger write retried through a database restart).
const DETECT_WITHIN_US = 45_000_000;

function explainFault(f: FaultRec, rows: readonly LedgerRow[]): 'ledger' | 'restart' | null {
  const gatherer = /^kdp-gatherer\/(.+)$/.exec(f.client ?? '')?.[1];
  const atUs = f.wall_ms * 1000;
  const stallUs = f.kind === 'stall' && f.until_us !== undefined ? f.until_us - f.t : 0;
  const near = (r: LedgerRow): boolean => r.detected_at >= atUs - 1_000_000 && r.detected_at <= atUs + stallUs + DETECT_WITHIN_US;
  const mine = rows.filter((r) => r.gatherer === gatherer && near(r));
  const kinds = GAP_KINDS[f.kind]!;
  const exact = mine.some((r) => {
    if (!kinds.includes(r.kind)) return false;
    if (f.kind === 'skipseq') return r.sid === f.sid && r.expected_seq === f.seq;
    if (f.kind === 'err25' && f.sid !== undefined) return r.sid === f.sid;
    return true;
  });
  if (exact || mine.some((r) => CONNECTION_KINDS.includes(r.kind))) return 'ledger';
  // Killed before it noticed: the restart row's window starts at its last commit.
  if (mine.some((r) => r.kind === 'gatherer_restart' && r.window_start <= atUs + stallUs + DETECT_WITHIN_US)) return 'restart';
  return null;
}

async function checkGaps(
  client: ClientBase,
  faults: readonly FaultRec[],
  add: (v: Violation) => void,
): Promise<{ gaps: GapCheck; ledger: ChaosCheckReport['ledger'] }> {
  const r = await client.query(
    `SELECT gatherer, kind, sid, expected_seq::float8 AS expected_seq, detected_at::float8 AS detected_at,
            window_start::float8 AS window_start, recovered FROM gap_ledger`,
  );
  const rows = r.rows as LedgerRow[];
  const gaps: GapCheck = { injected: 0, inLedger: 0, coveredByRestart: 0, notDelivered: 0, missing: 0 };
  for (const f of faults) {
    if (!(f.kind in GAP_KINDS)) continue;
    gaps.injected++;
    if (f.detail === 'no connection' || f.conn === undefined) {
      gaps.notDelivered++;
      continue;
    }
    const how = explainFault(f, rows);
    if (how === 'ledger') gaps.inLedger++;
    else if (how === 'restart') gaps.coveredByRestart++;
    else {
      gaps.missing++;
      add({
        check: 'gaps',
        detail: `${f.kind} on conn ${f.conn}${f.sid !== undefined ? ` sid ${f.sid}` : ''}${f.seq !== undefined ? ` seq ${f.seq}` : ''} of ${f.client ?? 'an unknown client'} at ${new Date(f.wall_ms).toISOString()} has no ledger row`,
      });
    }
  }
  const byKind: Record<string, number> = {};
  let unrecovered = 0;
  for (const row of rows) {
    byKind[row.kind] = (byKind[row.kind] ?? 0) + 1;
    if (row.recovered) continue;
    unrecovered++;
    add({ check: 'ledger', detail: `${row.gatherer} ${row.kind} gap detected at ${new Date(row.detected_at / 1000).toISOString()} is not recovered` });
  }
  return { gaps, ledger: { rows: rows.length, unrecovered, byKind } };
}

function formatBookCheck(b: BookCheck): string {
  return (
    `books   checkpoints=${b.checkpoints} sampled=${b.sampled} rebuilt=${b.checked} equal=${b.equal} mismatched=${b.mismatched} ` +
    `untrusted=${b.untrusted} (wrong ${b.untrustedWrong}, anchor tie ${b.anchorTie}) unanchored=${b.unanchored} ` +
    `(not judged: ${b.beforeFirstSnapshot} before the market's first snapshot, ${b.sameMicrosecond} in a delta's µs)`
  );
}

export function formatChaosReport(r: ChaosCheckReport): string {
  const lines = [
    formatTruthComparison(r.truth).replace(/\nTRUTH: (PASS|FAIL)$/, ''),
    formatBookCheck(r.books),
    `drift   REST snapshots compared with the rebuilt book: ${
      Object.entries(r.drift)
        .map(([k, n]) => `${k}=${n}`)
        .join(' ') || 'none'
    }`,
    `lifecycle expected=${r.lifecycle.expected} production=${r.lifecycle.production} missing=${r.lifecycle.missing} invented=${r.lifecycle.invented}`,
    `gaps    injected=${r.gaps.injected} in-ledger=${r.gaps.inLedger} covered-by-restart=${r.gaps.coveredByRestart} not-delivered=${r.gaps.notDelivered} missing=${r.gaps.missing}`,
    `ledger  rows=${r.ledger.rows} unrecovered=${r.ledger.unrecovered} ${Object.entries(r.ledger.byKind)
      .map(([k, n]) => `${k}=${n}`)
      .join(' ')}`,
    `gatherers trades missing from their own databases: ${
      Object.entries(r.gathererTrades)
        .map(([g, n]) => `${g}=${n}`)
        .join(' ') || 'not checked'
    }`,
  ];
  const byCheck = new Map<string, Violation[]>();
  for (const v of r.violations) byCheck.set(v.check, [...(byCheck.get(v.check) ?? []), v]);
  for (const [check, vs] of byCheck) {
    lines.push(`${check}: ${vs.length} violation(s)`);
    for (const v of vs.slice(0, VIOLATIONS_SHOWN_PER_CHECK)) lines.push(`  ${v.detail}`);
  }
  lines.push(`CHECK: ${r.ok ? 'PASS' : 'FAIL'} (${r.violations.length} violation(s))`);
  return lines.join('\n');
}
