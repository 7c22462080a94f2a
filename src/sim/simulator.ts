// The simulated Kalshi exchange: one uWS app serving the WebSocket protocol and REST on one port,
// driven either by the seeded generator or by a recorded truth file (replay). The exchange
// advances on a virtual clock paced against wall time (or as fast as readers take it).
import uWS = require('../http/uws');
import { KdpError } from '../core/errors';
import { resolveOptions, type Resolved, type Spec } from '../config/validate';
import { loadPublicKeys, REST_PREFIX, WS_PATH } from './auth';
import { BurstSchedule, CreationSchedule, FiringClock, InactiveSchedule, LOAD_KINDS, parseFaultSpec, type FaultPlan } from './faults';
import { ArrayFeed, type RecordFeed } from './feed';
import { Generator } from './generator';
import { RestApi } from './rest';
import { ExchangeState } from './state';
import {
  isExchangeRecord,
  readTruth,
  TRUTH_VERSION,
  TruthWriter,
  type ClientRec,
  type Draft,
  type ExchangeRecord,
  type FaultRec,
  type Level,
  type MetaRec,
} from './truth';
import { WsHub, type Conn } from './ws';

export const SIM_SPEC = {
  host: { kind: 'string', doc: 'address to bind', default: '127.0.0.1' },
  port: { kind: 'int', doc: 'port (0 = any free port)', default: 0, min: 0, max: 65535 },
  seed: { kind: 'int', doc: 'seed of the market generator', default: 1, min: 0, max: 0xffffffff },
  markets: { kind: 'int', doc: 'active markets at start', default: 50, min: 1, max: 200_000 },
  rate: { kind: 'number', doc: 'target exchange messages per second (deltas + trades + tickers)', default: 2000, min: 0.01, max: 1e8 },
  startUs: { kind: 'number', doc: 'exchange clock at start, µs since epoch (default: now, truncated to the second)', optional: true },
  durationS: { kind: 'number', doc: 'stop the exchange clock after this many exchange seconds (default: run until stopped)', optional: true, min: 0 },
  pace: {
    kind: 'enum',
    doc: 'realtime: exchange time tracks wall time x speed; fast: as fast as readers take it',
    values: ['realtime', 'fast'],
    default: 'realtime',
  },
  speed: { kind: 'number', doc: 'exchange seconds per wall second when pace = realtime', default: 1, min: 0.001, max: 1e6 },
  marketLifetimeS: { kind: 'number', doc: 'mean market life from open to close, exchange seconds', default: 600, min: 1 },
  activitySkew: {
    kind: 'number',
    doc: 'power-law exponent of activity over markets (0 = uniform; 1.2: of 40,000 markets the busiest 300 carry ~3/4 of the messages, the quieter half ~2 %)',
    default: 1.2,
    min: 0,
    max: 3,
  },
  checkpointIntervalMs: { kind: 'int', doc: 'book checkpoints in the truth file every this many exchange ms', default: 5000, min: 10 },
  deciCentShare: { kind: 'number', doc: 'share of markets with 0.001 price steps', default: 0.5, min: 0, max: 1 },
  truthFile: { kind: 'string', doc: 'write the ground truth (NDJSON) here', optional: true },
  fromFile: { kind: 'string', doc: 'replay this truth file instead of generating', optional: true },
  faults: { kind: 'string', doc: 'fault spec (docs/simulator.md)', default: '' },
  pingIntervalMs: { kind: 'int', doc: 'WebSocket Ping every this many ms', default: 10_000, min: 10 },
  marketsPerSubMax: { kind: 'int', doc: 'markets one subscription may hold (error 26 above)', default: 1000, min: 1 },
  slowConsumerBytes: { kind: 'int', doc: 'buffered bytes that make a reader too slow (error 25)', default: 16 * 1024 * 1024, min: 1024 },
  commandsPerSecMax: { kind: 'number', doc: 'WebSocket commands per second per connection (error 27 above)', default: 100, min: 0.1 },
  requireAuth: { kind: 'boolean', doc: 'refuse unsigned WebSocket handshakes (401)', default: false },
  restTokensPerSec: { kind: 'number', doc: 'REST token refill per second per client', default: 200, min: 0 },
  restBurstTokens: { kind: 'number', doc: 'REST token bucket size', default: 200, min: 1 },
  restCostTokens: { kind: 'number', doc: 'tokens per REST request', default: 10, min: 0 },
  restNewMarketDelayMs: { kind: 'int', doc: 'GET /markets/{ticker} answers 404 this long after creation', default: 0, min: 0 },
  tickerTsMsMissingRate: { kind: 'number', doc: 'share of ticker messages sent without ts_ms (as Kalshi occasionally does)', default: 0.001, min: 0, max: 1 },
  tradesKeptMax: { kind: 'int', doc: 'trades kept for REST /markets/trades', default: 200_000, min: 100 },
  fastWaitMsMax: { kind: 'int', doc: 'fast pace: a reader behind this long is dropped with error 25', default: 5000, min: 1 },
  batchMax: { kind: 'int', doc: 'exchange records per event-loop turn', default: 4096, min: 1 },
} as const satisfies Spec;
export type SimConfig = Resolved<typeof SIM_SPEC>;

const FLAG_ALIASES: Readonly<Record<string, string>> = { truthFile: 'truth', fromFile: 'from' };
/** The `kdp sim` flag of an option: `truthFile` -> `truth`, `marketsPerSubMax` -> `markets-per-sub-max`. */
export function simFlag(key: keyof typeof SIM_SPEC): string {
  return FLAG_ALIASES[key] ?? key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}
export type SimulatorOptions = Partial<{ -readonly [K in keyof SimConfig]: SimConfig[K] }> & {
  /** key id -> PEM public key; when set, WebSocket signatures are verified. */
  publicKeys?: Record<string, string>;
  /**
   * Replay these records instead of generating (as fromFile, streamed: `kdp replay`). `prime` is
   * applied to the state before the server listens and is never sent to anyone: the universe and
   * books at the replay's start. Numbered 1, 2, ... with the feed's records after them. `paused`:
   * the exchange clock waits for resume() (even fast pace sends nothing before it).
   */
  replay?: { readonly prime: readonly ExchangeRecord[]; readonly feed: RecordFeed; readonly paused?: boolean };
};

export type FaultRequest =
  | { kind: 'disconnect'; conn?: number }
  | { kind: 'stall'; conn?: number; forMs: number }
  | { kind: 'oversized'; conn?: number; bytes?: number }
  | { kind: 'err25'; conn?: number; sid?: number }
  | { kind: 'skipseq'; conn: number; sid: number }
  /** The sid's next sequenced data frame is sent twice / preceded by a truncated copy (book sids). */
  | { kind: 'dup' | 'malformed'; conn: number; sid: number }
  /** The sid's next sequenced data frame (book, trade or lifecycle) consumes its seq and is not sent. */
  | { kind: 'lose'; conn: number; sid: number }
  /** Exchange load: the message rate times x for forMs; count markets created at once. */
  | { kind: 'burst'; forMs: number; x: number }
  | { kind: 'create'; count: number }
  | { kind: 'rest429' | 'rest5xx'; forMs: number }
  /** The exchange's next positive order-book delta goes out 1 contract too large to every subscriber. */
  | { kind: 'corrupt' };

export interface SimConnection {
  id: number;
  client: string;
  sids: number[];
  /** markets = null for an all-markets subscription (lifecycle). */
  subs: Array<{ sid: number; channel: string; markets: number | null }>;
}

export interface Simulator {
  readonly host: string;
  readonly port: number;
  /** ws://host:port/trade-api/ws/v2 */
  readonly wsUrl: string;
  /** http://host:port/trade-api/v2 */
  readonly restUrl: string;
  readonly config: SimConfig;
  readonly state: ExchangeState;
  /** Resolves when the exchange clock reached durationS (or the replay ended). */
  readonly finished: Promise<void>;
  nowUs(): number;
  /** The current book of a market, levels ascending (as REST shows it). */
  book(ticker: string): { yes: Level[]; no: Level[] };
  /** Live connections, their client (User-Agent) and their sids. */
  connections(): SimConnection[];
  /** Order-book subscriptions covering a market now (kdp replay holds its clock until every open market has one). */
  bookSubscriptions(ticker: string): number;
  injectFault(f: FaultRequest): void;
  /** Freezes / resumes the exchange clock (tests comparing surfaces at one instant). */
  pause(): void;
  resume(): void;
  /** Called with every exchange record as it is committed. */
  onRecord(cb: (rec: ExchangeRecord) => void): void;
  stats(): { records: number; framesDropped: number; restRequests: number; restLimited: number; connections: number };
  stop(): Promise<void>;
}

function defaultStartUs(): number {
  return Math.floor(Date.now() / 1000) * 1e6;
}

export async function startSimulator(options: SimulatorOptions = {}): Promise<Simulator> {
  const { publicKeys, replay, ...raw } = options;
  const cfg = resolveOptions(SIM_SPEC, raw, 'sim');
  if (replay && cfg.fromFile) throw new KdpError('KDP_ERR_USAGE', 'sim: give fromFile or a replay feed, not both');
  const plan = parseFaultSpec(cfg.faults);
  const core = new SimCore(cfg, plan, loadPublicKeys(publicKeys ?? {}), replay);
  await core.listen();
  core.start();
  return core.api();
}

class SimCore {
  readonly state: ExchangeState;
  readonly ws: WsHub;
  readonly rest: RestApi;
  private readonly truth: TruthWriter | null;
  private generator: Generator | null = null;
  private replay: RecordFeed | null = null;
  private startUs: number;
  /** Rate and creation bursts (from the spec, and injected by chaos runs); set at start(). */
  private bursts!: BurstSchedule;
  private creations!: CreationSchedule;
  private endUs: number;
  private wallStartMs = 0;
  private pausedAtMs = 0;
  private behindSinceMs = 0;
  private paused = false;
  private readonly startPaused: boolean;
  private timer: NodeJS.Timeout | NodeJS.Immediate | null = null;
  private stopped = false;
  private n = 0;
  private listenToken: uWS.us_listen_socket | null = null;
  port = 0;
  private listeners: Array<(rec: ExchangeRecord) => void> = [];
  private faultClocks: FiringClock[] = [];
  /** REST fault windows injected on demand: [startUs, endUs, status]. */
  private injectedRest: Array<[number, number, number]> = [];
  private finish!: () => void;
  readonly finished = new Promise<void>((resolve) => (this.finish = resolve));

  constructor(
    readonly cfg: SimConfig,
    private readonly plan: FaultPlan,
    keys: ReturnType<typeof loadPublicKeys>,
    feed?: SimulatorOptions['replay'],
  ) {
    this.state = new ExchangeState({ tradesKeptMax: cfg.tradesKeptMax });
    this.startUs = cfg.startUs ?? defaultStartUs();
    if (cfg.fromFile) this.loadReplay(cfg.fromFile);
    if (feed) this.replay = feed.feed;
    this.startPaused = feed?.paused === true;
    this.endUs = cfg.durationS !== undefined ? this.startUs + cfg.durationS * 1e6 : Infinity;
    this.ws = new WsHub(
      this.state,
      {
        pingIntervalMs: cfg.pingIntervalMs,
        marketsPerSubMax: cfg.marketsPerSubMax,
        slowConsumerBytes: cfg.slowConsumerBytes,
        commandsPerSecMax: cfg.commandsPerSecMax,
        requireAuth: cfg.requireAuth,
        publicKeys: keys,
        rates: plan.rates,
        faultSeed: (cfg.seed ^ 0x5eed5eed) >>> 0,
        tickerTsMsMissingRate: cfg.tickerTsMsMissingRate,
      },
      (rec) => this.writeClient(rec),
    );
    this.rest = new RestApi(this.state, cfg);
    this.rest.faultStatus = () => this.restFault();
    this.truth = cfg.truthFile ? new TruthWriter(cfg.truthFile) : null;
    const meta: MetaRec = {
      k: 'meta',
      version: TRUTH_VERSION,
      source: cfg.fromFile || feed ? 'replay' : 'sim',
      seed: cfg.seed,
      start_us: this.startUs,
      options: { ...cfg },
    };
    this.truth?.write(meta);
    for (const rec of feed?.prime ?? []) this.commitReplayed(rec);
  }

  private loadReplay(file: string): void {
    const all = readTruth(file);
    const meta = all.find((r) => r.k === 'meta') as MetaRec | undefined;
    const recs = all.filter(isExchangeRecord);
    if (recs.length === 0) throw new KdpError('KDP_ERR_USAGE', `${file}: no exchange records to replay`);
    this.replay = new ArrayFeed(recs);
    this.startUs = meta?.start_us ?? recs[0]!.t;
  }

  listen(): Promise<void> {
    const app = uWS.App();
    this.ws.attach(app);
    this.rest.attach(app);
    app.any('/*', (res) => {
      res.cork(() =>
        res.writeStatus('404 Not Found').writeHeader('content-type', 'application/json').end('{"error":{"code":"not_found","message":"not found"}}'),
      );
    });
    return new Promise((resolve, reject) => {
      app.listen(this.cfg.host, this.cfg.port, (token) => {
        if (!token) return reject(new KdpError('KDP_ERR_USAGE', `cannot listen on ${this.cfg.host}:${this.cfg.port}`));
        this.listenToken = token;
        this.port = uWS.us_socket_local_port(token);
        resolve();
      });
    });
  }

  start(): void {
    this.scheduleFaults();
    this.bursts = new BurstSchedule(this.plan, this.startUs);
    this.creations = new CreationSchedule(this.plan, this.startUs);
    if (!this.replay) {
      this.generator = new Generator(
        {
          seed: this.cfg.seed,
          startUs: this.startUs,
          markets: this.cfg.markets,
          rate: this.cfg.rate,
          marketLifetimeS: this.cfg.marketLifetimeS,
          checkpointIntervalMs: this.cfg.checkpointIntervalMs,
          deciCentShare: this.cfg.deciCentShare,
          inactive: new InactiveSchedule(this.plan, this.startUs),
          bursts: this.bursts,
          creations: this.creations,
          activitySkew: this.cfg.activitySkew,
        },
        this.state,
        (d, t) => this.commit(d, t),
      );
      this.generator.seed();
    }
    this.state.nowUs = Math.max(this.state.nowUs, this.startUs);
    this.ws.flush();
    this.wallStartMs = Date.now();
    if (this.startPaused) {
      this.paused = true;
      this.pausedAtMs = this.wallStartMs;
      return;
    }
    this.loop();
  }

  private commit(draft: Draft, t: number): void {
    // The draft becomes the record (no copy: this is the hot path).
    const rec = draft as ExchangeRecord;
    rec.n = ++this.n;
    rec.t = t;
    this.state.apply(rec);
    this.truth?.write(rec);
    this.ws.publish(rec);
    for (const cb of this.listeners) cb(rec);
  }

  private commitReplayed(rec: ExchangeRecord): void {
    this.n = rec.n;
    this.state.apply(rec);
    this.truth?.write(rec);
    this.ws.publish(rec);
    for (const cb of this.listeners) cb(rec);
  }

  private writeClient(rec: FaultRec | ClientRec): void {
    this.truth?.write(rec);
  }

  private targetUs(): number {
    if (this.cfg.pace === 'fast') return this.endUs;
    const t = this.startUs + Math.floor((Date.now() - this.wallStartMs) * 1000 * this.cfg.speed);
    return Math.min(t, this.endUs);
  }

  /**
   * Fast pace waits while any reader has a quarter of the slow-consumer limit buffered. A reader
   * that stays behind for fastWaitMsMax (stopped, dead) is dropped with error 25 so it cannot
   * hold the exchange forever.
   */
  private readersBehind(): boolean {
    if (this.cfg.pace !== 'fast') return false;
    const limit = this.cfg.slowConsumerBytes / 4;
    const behind = [...this.ws.conns.values()].filter((c) => c.ws && c.ws.getBufferedAmount() > limit);
    if (behind.length === 0) {
      this.behindSinceMs = 0;
      return false;
    }
    const now = Date.now();
    if (this.behindSinceMs === 0) this.behindSinceMs = now;
    if (now - this.behindSinceMs < this.cfg.fastWaitMsMax) return true;
    for (const c of behind) this.ws.dropSlow(c);
    this.behindSinceMs = 0;
    return false;
  }

  private loop(): void {
    this.timer = null;
    if (this.stopped || this.paused) return;
    let busy = false;
    if (!this.readersBehind()) {
      const target = this.targetUs();
      const emitted = this.advance(target, this.cfg.batchMax);
      busy = emitted >= this.cfg.batchMax;
      this.state.nowUs = Math.max(this.state.nowUs, this.clockUs());
      this.runFaults();
      this.ws.flush();
      if (!busy && this.clockUs() >= this.endUs) return this.end();
    }
    if (busy) this.timer = setImmediate(() => this.loop());
    else this.timer = setTimeout(() => this.loop(), this.cfg.pace === 'fast' && this.readersBehind() ? 1 : 2);
  }

  private clockUs(): number {
    if (this.generator) return this.generator.nowUs;
    return this.replay!.ended() ? this.endUs : this.state.nowUs;
  }

  private advance(target: number, max: number): number {
    if (this.generator) return this.generator.advanceTo(target, max);
    const feed = this.replay!;
    let emitted = 0;
    for (let rec = feed.peek(); emitted < max && rec !== undefined && rec.t <= target; rec = feed.peek()) {
      feed.shift();
      this.commitReplayed(rec);
      emitted++;
    }
    if (feed.ended()) this.endUs = Math.min(this.endUs, this.state.nowUs);
    return emitted;
  }

  private end(): void {
    this.truth?.flush();
    this.finish();
  }

  // ---------------- faults ----------------
  private scheduleFaults(): void {
    this.faultClocks = this.plan.periodic.filter((f) => !LOAD_KINDS.has(f.kind)).map((f) => new FiringClock(f, this.startUs));
  }

  private restFault(): number {
    const now = this.state.nowUs;
    for (const c of this.faultClocks) {
      if ((c.f.kind === 'rest429' || c.f.kind === 'rest5xx') && now >= c.lastUs && now < c.lastUs + c.f.forUs) return c.f.kind === 'rest429' ? 429 : 503;
    }
    this.injectedRest = this.injectedRest.filter(([, b]) => b > now);
    for (const [a, b, status] of this.injectedRest) if (now >= a && now < b) return status;
    return 0;
  }

  /** Fires every periodic fault due by now, in time order. */
  private runFaults(): void {
    for (;;) {
      let due: FiringClock | undefined;
      for (const c of this.faultClocks) if (c.peek() <= this.state.nowUs && c.peek() < (due?.peek() ?? Infinity)) due = c;
      if (!due) return;
      due.pop();
      this.fire(due.f.kind, undefined, due.f.forUs, due.f.bytes);
    }
  }

  private fire(kind: string, connId: number | undefined, forUs: number, bytes: number, sid?: number): void {
    if (kind === 'rest429' || kind === 'rest5xx') {
      return this.writeClient({ k: 'fault', t: this.state.nowUs, wall_ms: Date.now(), kind, until_us: this.state.nowUs + forUs });
    }
    if (kind === 'corrupt') {
      // Every subscriber gets the same wrong delta: recorded when it is sent (WsExchange.corrupted).
      this.ws.corruptPending = true;
      return;
    }
    const conn: Conn | undefined = this.ws.pickConn(connId);
    if (!conn || !conn.ws) {
      return this.writeClient({ k: 'fault', t: this.state.nowUs, wall_ms: Date.now(), kind, detail: 'no connection' });
    }
    if (kind === 'disconnect') this.ws.disconnect(conn);
    else if (kind === 'stall') this.ws.stall(conn, forUs);
    else if (kind === 'oversized') this.ws.oversized(conn, bytes);
    else if (kind === 'err25') this.ws.err25(conn, sid);
  }

  injectFault(f: FaultRequest): void {
    switch (f.kind) {
      case 'rest429':
      case 'rest5xx': {
        const now = this.state.nowUs;
        this.injectedRest.push([now, now + f.forMs * 1000, f.kind === 'rest429' ? 429 : 503]);
        return this.fire(f.kind, undefined, f.forMs * 1000, 0);
      }
      case 'dup':
      case 'malformed': {
        const sub = this.ws.conns.get(f.conn)?.subs.get(f.sid);
        if (!sub || sub.channel !== 'orderbook_delta') throw new KdpError('KDP_ERR_USAGE', `no order-book sid ${f.sid} on connection ${f.conn}`);
        sub.nextFault = f.kind;
        return;
      }
      case 'burst':
      case 'create': {
        if (!this.generator) throw new KdpError('KDP_ERR_USAGE', `${f.kind} needs the generator (not a replay)`);
        // On the generator's clock (just ahead of what it made so far), as the spec's own bursts.
        const at = this.clockUs() + 1;
        if (f.kind === 'burst') this.bursts.inject(at, f.forMs * 1000, f.x);
        else this.creations.inject(at, f.count);
        return this.writeClient({
          k: 'fault',
          t: this.state.nowUs,
          wall_ms: Date.now(),
          kind: f.kind,
          detail: f.kind === 'burst' ? `x${f.x} for ${f.forMs} ms` : `${f.count} markets`,
        });
      }
      case 'lose': {
        const sub = this.ws.conns.get(f.conn)?.subs.get(f.sid);
        if (!sub || sub.channel === 'ticker') throw new KdpError('KDP_ERR_USAGE', `no sequenced sid ${f.sid} on connection ${f.conn}`);
        sub.nextFault = 'lose';
        return;
      }
      case 'skipseq': {
        const sub = this.ws.conns.get(f.conn)?.subs.get(f.sid);
        if (!sub) throw new KdpError('KDP_ERR_USAGE', `no sid ${f.sid} on connection ${f.conn}`);
        sub.seq++;
        const client = this.ws.conns.get(f.conn)?.client;
        return this.writeClient({
          k: 'fault',
          t: this.state.nowUs,
          wall_ms: Date.now(),
          kind: 'skipseq',
          conn: f.conn,
          sid: f.sid,
          seq: sub.seq,
          ...(client ? { client } : {}),
        });
      }
      case 'stall':
        return this.fire('stall', f.conn, f.forMs * 1000, 0);
      case 'oversized':
        return this.fire('oversized', f.conn, 0, f.bytes ?? 2 * 1024 * 1024);
      case 'err25':
        return this.fire('err25', f.conn, 0, 0, f.sid);
      case 'disconnect':
        return this.fire('disconnect', f.conn, 0, 0);
      case 'corrupt':
        return this.fire('corrupt', undefined, 0, 0);
    }
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) {
      clearTimeout(this.timer as NodeJS.Timeout);
      clearImmediate(this.timer as NodeJS.Immediate);
    }
    this.ws.close();
    if (this.listenToken) uWS.us_listen_socket_close(this.listenToken);
    this.listenToken = null;
    this.truth?.close();
    this.finish();
    // Let uWS run the close handlers of the sockets closed above.
    await new Promise((r) => setTimeout(r, 20));
  }

  api(): Simulator {
    const host = this.cfg.host;
    const hostForUrl = host === '0.0.0.0' ? '127.0.0.1' : host;
    return {
      host,
      port: this.port,
      config: this.cfg,
      state: this.state,
      finished: this.finished,
      wsUrl: `ws://${hostForUrl}:${this.port}${WS_PATH}`,
      restUrl: `http://${hostForUrl}:${this.port}${REST_PREFIX}`,
      nowUs: () => this.state.nowUs,
      book: (ticker) => {
        const m = this.state.market(ticker);
        return { yes: m.book.levels('yes'), no: m.book.levels('no') };
      },
      bookSubscriptions: (ticker) => this.ws.bookSubscriptions(ticker),
      connections: () =>
        this.ws.liveConns().map((c) => ({
          id: c.id,
          client: c.client,
          sids: [...c.subs.keys()],
          subs: [...c.subs.values()].map((s) => ({ sid: s.sid, channel: s.channel, markets: s.tickers?.size ?? null })),
        })),
      injectFault: (f) => this.injectFault(f),
      pause: () => {
        if (this.paused) return;
        this.paused = true;
        this.pausedAtMs = Date.now();
        if (this.timer) {
          clearTimeout(this.timer as NodeJS.Timeout);
          clearImmediate(this.timer as NodeJS.Immediate);
          this.timer = null;
        }
      },
      resume: () => {
        if (!this.paused) return;
        this.paused = false;
        this.wallStartMs += Date.now() - this.pausedAtMs;
        this.loop();
      },
      onRecord: (cb) => this.listeners.push(cb),
      stats: () => ({
        records: this.n,
        framesDropped: this.ws.framesDropped,
        restRequests: this.rest.requests,
        restLimited: this.rest.limited,
        connections: this.ws.conns.size,
      }),
      stop: () => this.stop(),
    };
  }
}
