// `kdp replay`: recorded history served through the Kalshi protocol. The window's universe and
// books are read from production, then its records are streamed (src/replay/production.ts) into
// the simulator's protocol server (src/sim/: the one Kalshi WebSocket + REST implementation), which
// gives every subscription its own sid and seq, snapshots on subscribe and get_snapshot, and REST
// answers from the state as of the replay clock. Semantics and what is equal: docs/replay.md.
import { KdpError } from '../core/errors';
import type { Logger } from '../core/log';
import { resolveOptions, type Resolved, type Spec } from '../config/validate';
import { SIM_SPEC, startSimulator, type Simulator } from '../sim/simulator';
import type { ExchangeRecord } from '../sim/truth';
import { PumpedFeed } from './feed';
import { loadArchive, type ArchiveWindow } from './archive';
import { ReplayDb } from './db';
import { loadUniverse, streamWindow, type ReplayWindow, type StreamStats, type Universe } from './production';

export const REPLAY_SPEC = {
  productionUrl: { kind: 'string', doc: 'production PostgreSQL to replay from (or archiveDir)', secret: true, optional: true },
  archiveDir: { kind: 'string', doc: "a local archive store's directory to replay from (kdp archive's store.dir)", optional: true },
  archivePrefix: { kind: 'string', doc: "the archive's store.prefix", default: 'raw' },
  anchorLookbackMs: {
    kind: 'int',
    doc: 'from the archive: snapshots and deltas loaded from this long before the start to anchor the books',
    default: 6 * 3_600_000,
    min: 0,
  },
  startUs: { kind: 'int', doc: 'window start (µs since the epoch): books are those at this instant', min: 0 },
  endUs: { kind: 'int', doc: 'window end (µs since the epoch, inclusive)', min: 0 },
  tickers: { kind: 'stringList', doc: 'markets to replay (default: every market)', optional: true },
  pace: {
    kind: 'enum',
    doc: 'realtime: the clock runs at speed x wall time; fast: as fast as clients read',
    values: ['realtime', 'fast'],
    default: 'realtime',
  },
  speed: SIM_SPEC.speed,
  host: SIM_SPEC.host,
  port: SIM_SPEC.port,
  waitForBooks: {
    kind: 'boolean',
    doc: "hold the clock at the start until order-book subscriptions cover every market open then (a recording gatherer's books are complete)",
    default: false,
  },
  historyMs: {
    kind: 'int',
    doc: "REST shows the trades (up to tradesKeptMax) and each market's last ticker from this long before the start",
    default: 3_600_000,
    min: 0,
  },
  tradesKeptMax: SIM_SPEC.tradesKeptMax,
  readRetriesMax: {
    kind: 'int',
    doc: 'retries in a row of a failed read of production (connection lost, timeout) before the replay fails',
    default: 10,
    min: 0,
    max: 1000,
  },
  fetchRows: { kind: 'int', doc: 'rows per page read from each table', default: 2000, min: 1, max: 100_000 },
  bufferRecordsMax: { kind: 'int', doc: 'records read ahead of the replay clock', default: 20_000, min: 1, max: 10_000_000 },
  truthFile: { kind: 'string', doc: "write the replay's exchange records (truth-file format) here", optional: true },
  pingIntervalMs: SIM_SPEC.pingIntervalMs,
  slowConsumerBytes: SIM_SPEC.slowConsumerBytes,
} as const satisfies Spec;
export type ReplayOptions = Resolved<typeof REPLAY_SPEC>;

export interface ReplayStats extends StreamStats {
  /** Reads of production retried after a lost connection or timeout. */
  readRetries: number;
  /** Records read from the window so far (after the primed universe and books). */
  recordsRead: number;
  /** Records read but not yet served (bounded by bufferRecordsMax). */
  recordsHeld: number;
  /** Exchange records committed by the server (primed ones included). */
  recordsServed: number;
}

export interface Replay {
  readonly sim: Simulator;
  readonly wsUrl: string;
  readonly restUrl: string;
  /** Markets served, markets open at the start, and markets left out (no book at the start). */
  readonly universe: {
    readonly markets: number;
    readonly openAtStart: number;
    readonly unanchored: readonly string[];
    readonly closedWithoutBook: readonly string[];
  };
  stats(): ReplayStats;
  /** Resolves once the window's last record was served; rejects when reading production failed. */
  readonly finished: Promise<void>;
  stop(): Promise<void>;
}

const WAIT_POLL_MS = 50;

/** Records handed to the feed per step (see StreamOptions.batchMax). */
const BATCH_RECORDS = 512;

export async function startReplay(raw: Record<string, unknown>, log: Logger): Promise<Replay> {
  const o = resolveOptions(REPLAY_SPEC, raw, 'replay');
  if (o.endUs <= o.startUs) throw new KdpError('KDP_ERR_USAGE', `replay: the window end ${o.endUs} is not after its start ${o.startUs}`);
  const window: ReplayWindow = {
    startUs: o.startUs,
    endUs: o.endUs,
    tickers: o.tickers ?? null,
    historyUs: o.historyMs * 1000,
    tradesMax: o.tradesKeptMax,
  };
  if ((o.productionUrl === undefined) === (o.archiveDir === undefined))
    throw new KdpError('KDP_ERR_USAGE', 'replay: give a production URL or an archive directory (one of them)');
  const scratch = o.archiveDir === undefined ? null : await loadArchive(archiveWindow(o, o.archiveDir), log);
  const db = new ReplayDb(scratch?.url ?? o.productionUrl!, o.readRetriesMax, log);
  try {
    const client = await db.connection();
    // One snapshot for the registry, the books and the REST history; READ ONLY: a replay never
    // writes. Committed at once: the window's pages are short statements of their own.
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const universe = await loadUniverse(client, window, log);
    await client.query('COMMIT');
    const replay = await serve(o, window, universe, db, log);
    if (!scratch) return replay;
    return { ...replay, stop: () => replay.stop().finally(() => scratch.destroy()) };
  } catch (err) {
    await db.end();
    await scratch?.destroy();
    throw err;
  }
}

function archiveWindow(o: ReplayOptions, dir: string): ArchiveWindow {
  return {
    dir,
    prefix: o.archivePrefix,
    startUs: o.startUs,
    endUs: o.endUs,
    tickers: o.tickers ?? null,
    anchorLookbackUs: o.anchorLookbackMs * 1000,
    historyUs: o.historyMs * 1000,
  };
}

async function serve(o: ReplayOptions, window: ReplayWindow, universe: Universe, db: ReplayDb, log: Logger): Promise<Replay> {
  const prime = universe.prime.map((r, i) => ({ ...r, n: i + 1 }) as ExchangeRecord);
  const feed = new PumpedFeed(o.bufferRecordsMax, prime.length + 1);
  const streamStats: StreamStats = { skippedUnknownMarket: 0, skippedUnsendable: 0 };
  const sim = await startSimulator({
    host: o.host,
    port: o.port,
    startUs: o.startUs,
    pace: o.pace,
    speed: o.speed,
    pingIntervalMs: o.pingIntervalMs,
    slowConsumerBytes: o.slowConsumerBytes,
    tradesKeptMax: o.tradesKeptMax,
    // Recorded history: every ticker as recorded, markets listed from their creation on.
    tickerTsMsMissingRate: 0,
    restNewMarketDelayMs: 0,
    ...(o.truthFile ? { truthFile: o.truthFile } : {}),
    replay: { prime, feed, paused: true },
  });
  let stopping = false;
  const stream = streamWindow(db, window, universe, { pageRows: o.fetchRows, batchMax: Math.min(BATCH_RECORDS, o.bufferRecordsMax) }, streamStats);
  const pumped = feed.pump(stream).finally(() => db.end());
  const failed = pumped.then(
    () => new Promise<never>(() => undefined),
    (err) => {
      if (!stopping) log.error({ err }, 'reading the window from production failed');
      throw err;
    },
  );
  const finished = Promise.race([sim.finished, failed]);
  finished.catch(() => undefined);
  const stop = async (): Promise<void> => {
    stopping = true;
    feed.stop();
    await sim.stop();
    await pumped.catch(() => undefined);
  };
  if (o.waitForBooks) void holdForBooks(sim, universe.openAtStart, () => stopping).catch((err) => log.error({ err }, 'waiting for subscriptions failed'));
  else sim.resume();
  log.info(
    { markets: universe.status.size, openAtStart: universe.openAtStart.length, unanchored: universe.unanchored.length, startUs: o.startUs, endUs: o.endUs },
    'replay serving',
  );
  return {
    sim,
    wsUrl: sim.wsUrl,
    restUrl: sim.restUrl,
    universe: {
      markets: universe.status.size,
      openAtStart: universe.openAtStart.length,
      unanchored: universe.unanchored,
      closedWithoutBook: universe.closedWithoutBook,
    },
    stats: () => ({ ...streamStats, readRetries: db.retries, recordsRead: feed.produced, recordsHeld: feed.held(), recordsServed: sim.stats().records }),
    finished,
    stop,
  };
}

/** Resumes the clock once an order-book subscription covers every market open at the start. */
async function holdForBooks(sim: Simulator, markets: readonly string[], stopping: () => boolean): Promise<void> {
  let waiting = [...markets];
  while (!stopping() && waiting.length > 0) {
    await new Promise((r) => setTimeout(r, WAIT_POLL_MS));
    waiting = waiting.filter((m) => sim.bookSubscriptions(m) === 0);
  }
  if (!stopping()) sim.resume();
}
