// The WebSocket side of the simulated exchange: Kalshi's command protocol, per-sid seq, fan-out
// of exchange records, Ping keep-alive, slow-consumer drops (error 25) and connection faults.
// Frames for a connection are queued during an exchange batch and written corked at flush().
import uWS = require('../http/uws');
import type { KeyObject } from 'node:crypto';
import { formatPrice, formatSize, parsePrice, parseSize, PRICE_ONE, Rng } from './fixed';
import { checkHandshake, WS_PATH } from './auth';
import type { ExchangeState } from './state';
import type { ClientRec, DeltaRec, ExchangeRecord, FaultRec } from './truth';
import { dataFrame, deltaMsg, errorFrame, replyFrame, snapshotMsg, subscribedFrame, tickerMsg, tradeMsg, type WireLevel } from '../kalshi/encode';
import { WS_ERROR_CODES } from '../kalshi/protocol';
import type { RateKind } from './faults';

export const SEQUENCED = 'orderbook_delta';
const ALL_MARKET_CHANNELS = new Set(['ticker', 'trade']);
const GLOBAL_CHANNELS = new Set(['market_lifecycle_v2', 'multivariate_market_lifecycle']);
/** Channels that need an authenticated connection; the simulator has no orders, so they stay silent. */
const PRIVATE_CHANNELS = new Set(['fill', 'market_positions', 'communications', 'order_group_updates', 'user_orders']);

export interface WsOptions {
  pingIntervalMs: number;
  marketsPerSubMax: number;
  /** Buffered bytes on a socket above which its subscriptions are dropped with error 25. */
  slowConsumerBytes: number;
  commandsPerSecMax: number;
  requireAuth: boolean;
  publicKeys: Map<string, KeyObject>;
  rates: Record<RateKind, number>;
  faultSeed: number;
  /** Share of ticker messages sent without ts_ms (Kalshi omits it occasionally). */
  tickerTsMsMissingRate: number;
}

/** Whether ticker record n goes out without ts_ms: a hash of n, so every client sees the same. */
export function omitTsMs(n: number, rate: number): boolean {
  if (rate <= 0) return false;
  const h = Math.imul(n ^ (n >>> 16), 0x45d9f3b) >>> 0;
  return (Math.imul(h ^ (h >>> 16), 0x45d9f3b) >>> 0) / 4294967296 < rate;
}

export interface Sub {
  readonly conn: Conn;
  readonly sid: number;
  readonly channel: string;
  /** null = all markets (ticker, trade, lifecycle channels without tickers). */
  readonly tickers: Set<string> | null;
  /** use_yes_price: NO-side levels are priced as the YES price (1 - NO price). */
  readonly useYesPrice: boolean;
  seq: number;
  alive: boolean;
  /** A fault injected on demand, applied to the next sequenced data frame of this sid. */
  nextFault: 'malformed' | 'dup' | 'lose' | null;
}

interface ConnData {
  conn: Conn;
}

export interface Conn {
  readonly id: number;
  ws: uWS.WebSocket<ConnData> | null;
  readonly authed: boolean;
  /** The client's User-Agent (gatherers send kdp-gatherer/<id>): who held the connection. */
  readonly client: string;
  readonly subs: Map<number, Sub>;
  nextSid: number;
  out: string[];
  stalledUntilUs: number;
  tokens: number;
  tokensAtMs: number;
  framesSent: number;
}

type Cmd = { id: number; params: Record<string, unknown> | undefined };

export class WsHub {
  readonly conns = new Map<number, Conn>();
  private nextConnId = 1;
  private readonly pending = new Set<Conn>();
  private readonly bookIdx = new Map<string, Set<Sub>>();
  /** Order-book subscriptions covering a market now (any connection). */
  bookSubscriptions(ticker: string): number {
    return this.bookIdx.get(ticker)?.size ?? 0;
  }
  private readonly tickerIdx = new Map<string, Set<Sub>>();
  private readonly tradeIdx = new Map<string, Set<Sub>>();
  private readonly tickerAll = new Set<Sub>();
  private readonly tradeAll = new Set<Sub>();
  private readonly lifecycleSubs = new Set<Sub>();
  private readonly faultRng: Rng;
  private pingTimer: NodeJS.Timeout | null = null;
  framesDropped = 0;
  /** The `corrupt` fault: the next positive delta with subscribers goes out 1 contract too large. */
  corruptPending = false;

  constructor(
    private readonly state: ExchangeState,
    private readonly o: WsOptions,
    private readonly record: (rec: FaultRec | ClientRec) => void,
  ) {
    this.faultRng = new Rng(o.faultSeed);
  }

  attach(app: uWS.TemplatedApp): void {
    app.ws<ConnData>(WS_PATH, {
      compression: uWS.DISABLED,
      maxPayloadLength: 64 * 1024,
      maxBackpressure: Math.max(64 * 1024 * 1024, this.o.slowConsumerBytes * 4),
      closeOnBackpressureLimit: 0,
      idleTimeout: 0,
      sendPingsAutomatically: false,
      upgrade: (res, req, context) => this.upgrade(res, req, context),
      open: (ws) => {
        const conn = ws.getUserData().conn;
        conn.ws = ws;
        this.conns.set(conn.id, conn);
        this.record({ k: 'client', t: this.state.nowUs, wall_ms: Date.now(), event: 'connect', conn: conn.id, client: conn.client });
      },
      message: (ws, message, isBinary) => this.onMessage(ws.getUserData().conn, message, isBinary),
      close: (ws) => this.onClose(ws.getUserData().conn),
    });
    this.pingTimer = setInterval(() => this.pingAll(), this.o.pingIntervalMs);
    this.pingTimer.unref();
  }

  private upgrade(res: uWS.HttpResponse, req: uWS.HttpRequest, context: uWS.us_socket_context_t): void {
    const key = req.getHeader('sec-websocket-key');
    const protocol = req.getHeader('sec-websocket-protocol');
    const extensions = req.getHeader('sec-websocket-extensions');
    const verdict = checkHandshake((n) => req.getHeader(n), this.o.publicKeys, this.o.requireAuth);
    if (!verdict.ok) {
      res
        .writeStatus('401 Unauthorized')
        .writeHeader('content-type', 'application/json')
        .end(JSON.stringify({ error: 'authentication failed' }));
      return;
    }
    const conn: Conn = {
      id: this.nextConnId++,
      ws: null,
      authed: verdict.keyId !== null,
      client: req.getHeader('user-agent'),
      subs: new Map(),
      nextSid: 1,
      out: [],
      stalledUntilUs: 0,
      tokens: this.o.commandsPerSecMax,
      tokensAtMs: Date.now(),
      framesSent: 0,
    };
    res.upgrade<ConnData>({ conn }, key, protocol, extensions, context);
  }

  private onClose(conn: Conn): void {
    conn.ws = null;
    for (const sub of conn.subs.values()) this.dropSub(sub);
    this.conns.delete(conn.id);
    this.pending.delete(conn);
    this.record({ k: 'client', t: this.state.nowUs, wall_ms: Date.now(), event: 'disconnect', conn: conn.id });
  }

  close(): void {
    if (this.pingTimer) clearInterval(this.pingTimer);
    for (const conn of [...this.conns.values()]) conn.ws?.close();
  }

  private pingAll(): void {
    for (const conn of this.conns.values()) {
      if (conn.ws && conn.stalledUntilUs <= this.state.nowUs) conn.ws.ping('heartbeat');
    }
  }

  // ---------------- fan-out ----------------
  publish(rec: ExchangeRecord): void {
    switch (rec.k) {
      case 'delta': {
        const subs = this.bookIdx.get(rec.m);
        if (!subs || subs.size === 0) return;
        const sent = this.corruptPending && !rec.d.startsWith('-') ? this.corrupted(rec) : rec;
        const prefix = this.state.market(sent.m).wirePrefix;
        const body = deltaMsg(sent, prefix);
        let yesPriced: string | null = null;
        for (const sub of subs) {
          if (sub.useYesPrice && rec.side === 'no') {
            yesPriced ??= deltaMsg({ ...sent, p: formatPrice(PRICE_ONE - parsePrice(sent.p)) }, prefix);
            this.sendSeq(sub, 'orderbook_delta', yesPriced);
          } else this.sendSeq(sub, 'orderbook_delta', body);
        }
        return;
      }
      case 'trade':
        return this.fanAll(this.tradeAll, this.tradeIdx.get(rec.m), 'trade', () => tradeMsg(rec), true);
      case 'ticker':
        return this.fanAll(this.tickerAll, this.tickerIdx.get(rec.m), 'ticker', () =>
          tickerMsg(rec, this.state.market(rec.m).wirePrefix, !omitTsMs(rec.n, this.o.tickerTsMsMissingRate)),
        );
      case 'lifecycle':
        return this.fanAll(this.lifecycleSubs, undefined, 'market_lifecycle_v2', () => JSON.stringify(rec.msg), true);
      case 'event_lifecycle':
        return this.fanAll(this.lifecycleSubs, undefined, 'event_lifecycle', () => JSON.stringify(rec.msg), true);
      default:
        return;
    }
  }

  /** The wire copy of a delta corrupted by the `corrupt` fault (the exchange applied `rec` itself). */
  private corrupted(rec: DeltaRec): DeltaRec {
    this.corruptPending = false;
    const sent = formatSize(parseSize(rec.d) + 100);
    this.record({
      k: 'fault',
      t: this.state.nowUs,
      wall_ms: Date.now(),
      kind: 'corrupt',
      markets: [rec.m],
      detail: `delta n=${rec.n} ${rec.side} ${rec.p} ${rec.d} sent as ${sent}`,
    });
    return { ...rec, d: sent };
  }

  /**
   * Sends one message to every subscriber of a channel. Trades and lifecycle messages carry the
   * sid's seq like book messages (frames captured from the live exchange: `"type":"trade","sid":2,
   * "seq":48`; lifecycle seq is required in Kalshi's 2026 docs); tickers carry none. The rate
   * faults (skipseq, dup, malformed) stay on book sids; a skipseq injected on a sid applies to any.
   */
  private fanAll(all: Set<Sub>, some: Set<Sub> | undefined, type: string, body: () => string, sequenced = false): void {
    if (all.size === 0 && (!some || some.size === 0)) return;
    const msg = body();
    for (const sub of all) this.sendOne(sub, type, msg, sequenced);
    if (some) for (const sub of some) this.sendOne(sub, type, msg, sequenced);
  }

  /** The envelope's sending_ts_ms: the exchange clock when the frame is queued (ms). */
  private sentMs(): number {
    return Math.floor(this.state.nowUs / 1000);
  }

  private sendOne(sub: Sub, type: string, msg: string, sequenced: boolean): void {
    if (!sequenced) return this.push(sub.conn, dataFrame(type, sub.sid, undefined, msg, this.sentMs()));
    const seq = ++sub.seq;
    if (sub.nextFault === 'lose') {
      // A frame lost on the way (the exchange's buffer, a proxy): its seq is consumed, nothing sent.
      sub.nextFault = null;
      return this.fault({ kind: 'lose', conn: sub.conn.id, sid: sub.sid, seq });
    }
    this.push(sub.conn, dataFrame(type, sub.sid, seq, msg, this.sentMs()));
  }

  private sendSeq(sub: Sub, type: string, body: string, id = 0): void {
    const rates = this.o.rates;
    if (rates.skipseq > 0 && id === 0 && this.faultRng.next() < rates.skipseq) {
      sub.seq++;
      this.fault({ kind: 'skipseq', conn: sub.conn.id, sid: sub.sid, seq: sub.seq });
    }
    const seq = ++sub.seq;
    const sentMs = this.sentMs();
    const frame = id > 0 ? replyFrame(id, type, sub.sid, seq, body, sentMs) : dataFrame(type, sub.sid, seq, body, sentMs);
    if (rates.malformed > 0 && this.faultRng.next() < rates.malformed) {
      this.push(sub.conn, frame.slice(0, frame.length >> 1));
      this.fault({ kind: 'malformed', conn: sub.conn.id, sid: sub.sid, seq });
    }
    const injected = id === 0 ? sub.nextFault : null;
    if (injected !== null) {
      sub.nextFault = null;
      if (injected === 'lose') return this.fault({ kind: 'lose', conn: sub.conn.id, sid: sub.sid, seq });
      if (injected === 'malformed') this.push(sub.conn, frame.slice(0, frame.length >> 1));
      this.fault({ kind: injected, conn: sub.conn.id, sid: sub.sid, seq });
    }
    this.push(sub.conn, frame);
    if (injected === 'dup') this.push(sub.conn, frame);
    if (rates.dup > 0 && this.faultRng.next() < rates.dup) {
      this.push(sub.conn, frame);
      this.fault({ kind: 'dup', conn: sub.conn.id, sid: sub.sid, seq });
    }
  }

  private push(conn: Conn, frame: string): void {
    if (conn.out.length === 0) this.pending.add(conn);
    conn.out.push(frame);
  }

  /** Writes every queued frame (corked per connection) and drops slow consumers. */
  flush(): void {
    if (this.pending.size === 0) return;
    for (const conn of this.pending) {
      const frames = conn.out;
      conn.out = [];
      const ws = conn.ws;
      if (!ws) continue;
      if (conn.stalledUntilUs > this.state.nowUs) {
        this.framesDropped += frames.length;
        continue;
      }
      ws.cork(() => {
        for (const f of frames) ws.send(f, false);
      });
      conn.framesSent += frames.length;
      if (ws.getBufferedAmount() > this.o.slowConsumerBytes) this.overflow(conn, ws.getBufferedAmount());
    }
    this.pending.clear();
  }

  /** Drops a reader the exchange will not wait for any longer (error 25 on its sids). */
  dropSlow(conn: Conn): void {
    if (conn.ws) this.overflow(conn, conn.ws.getBufferedAmount());
  }

  /** Error 25 on every live sid of a connection that fell too far behind; the sids are dropped. */
  private overflow(conn: Conn, buffered: number): void {
    for (const sub of [...conn.subs.values()]) {
      this.record({ k: 'client', t: this.state.nowUs, wall_ms: Date.now(), event: 'err25', conn: conn.id, sid: sub.sid, buffered_bytes: buffered });
      this.killSub(sub);
    }
  }

  private killSub(sub: Sub): void {
    const ws = sub.conn.ws;
    this.dropSub(sub);
    if (ws) ws.send(errorFrame(25, WS_ERROR_CODES[25]!, 0, sub.sid), false);
  }

  private fault(f: Omit<FaultRec, 'k' | 't' | 'wall_ms'>): void {
    const client = f.conn === undefined ? undefined : this.conns.get(f.conn)?.client;
    this.record({ k: 'fault', t: this.state.nowUs, wall_ms: Date.now(), ...f, ...(client ? { client } : {}) });
  }

  // ---------------- subscriptions ----------------
  private index(sub: Sub, tickers: Iterable<string>): void {
    const idx = sub.channel === SEQUENCED ? this.bookIdx : sub.channel === 'ticker' ? this.tickerIdx : sub.channel === 'trade' ? this.tradeIdx : null;
    if (!idx) return;
    for (const t of tickers) {
      let set = idx.get(t);
      if (!set) idx.set(t, (set = new Set()));
      set.add(sub);
    }
  }
  private unindex(sub: Sub, tickers: Iterable<string>): void {
    const idx = sub.channel === SEQUENCED ? this.bookIdx : sub.channel === 'ticker' ? this.tickerIdx : sub.channel === 'trade' ? this.tradeIdx : null;
    if (!idx) return;
    for (const t of tickers) idx.get(t)?.delete(sub);
  }
  private dropSub(sub: Sub): void {
    if (!sub.alive) return;
    sub.alive = false;
    sub.conn.subs.delete(sub.sid);
    if (sub.tickers) this.unindex(sub, sub.tickers);
    this.tickerAll.delete(sub);
    this.tradeAll.delete(sub);
    this.lifecycleSubs.delete(sub);
  }

  private snapshot(sub: Sub, ticker: string): void {
    const m = this.state.market(ticker);
    // use_yes_price: the NO side priced as its YES complement (1 - price), best first.
    const no = sub.useYesPrice
      ? m.book
          .levels('no')
          .map(([p, size]): WireLevel => [formatPrice(PRICE_ONE - parsePrice(p)), size])
          .reverse()
      : m.book.levels('no');
    this.sendSeq(sub, 'orderbook_snapshot', snapshotMsg(ticker, m.def.market_id, m.book.levels('yes'), no));
  }

  // ---------------- commands ----------------
  private error(conn: Conn, id: number, code: number, detail = ''): void {
    this.push(conn, errorFrame(code, detail ? `${WS_ERROR_CODES[code]}: ${detail}` : WS_ERROR_CODES[code]!, id));
  }

  private takeToken(conn: Conn): boolean {
    const now = Date.now();
    const max = this.o.commandsPerSecMax;
    conn.tokens = Math.min(max, conn.tokens + ((now - conn.tokensAtMs) * max) / 1000);
    conn.tokensAtMs = now;
    if (conn.tokens < 1) return false;
    conn.tokens -= 1;
    return true;
  }

  private onMessage(conn: Conn, message: ArrayBuffer, isBinary: boolean): void {
    let parsed: unknown;
    try {
      parsed = isBinary ? undefined : JSON.parse(Buffer.from(message).toString('utf8'));
    } catch {
      parsed = undefined;
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      this.error(conn, 0, 1, 'not a JSON object');
      return this.flush();
    }
    const env = parsed as { id?: unknown; cmd?: unknown; params?: unknown };
    const id = typeof env.id === 'number' && Number.isInteger(env.id) && env.id >= 0 ? env.id : 0;
    if (env.id !== undefined && id === 0 && env.id !== 0) this.error(conn, 0, 11, 'id must be a non-negative integer');
    else if (!this.takeToken(conn)) this.error(conn, id, 27);
    else {
      try {
        this.dispatch(conn, id, env.cmd, env.params);
      } catch {
        // A bug must not take the exchange down: answer as Kalshi does for an internal failure.
        this.error(conn, id, 17);
      }
    }
    this.flush();
  }

  private dispatch(conn: Conn, id: number, cmd: unknown, rawParams: unknown): void {
    const params = typeof rawParams === 'object' && rawParams !== null && !Array.isArray(rawParams) ? (rawParams as Record<string, unknown>) : undefined;
    if (cmd === 'list_subscriptions') return this.listSubs(conn, id);
    if (cmd !== 'subscribe' && cmd !== 'unsubscribe' && cmd !== 'update_subscription') return this.error(conn, id, 5, String(cmd));
    if (!params) return this.error(conn, id, 2);
    const c: Cmd = { id, params };
    if (cmd === 'subscribe') return this.subscribe(conn, c);
    if (cmd === 'unsubscribe') return this.unsubscribe(conn, c);
    return this.updateSubscription(conn, c);
  }

  private listSubs(conn: Conn, id: number): void {
    const list = [...conn.subs.values()].map((s) => ({ channel: s.channel, sid: s.sid }));
    this.push(conn, JSON.stringify({ id, type: 'ok', msg: list }));
  }

  /** Reads market_ticker / market_tickers; error already sent when it returns false. */
  private tickersParam(conn: Conn, c: Cmd): string[] | null | false {
    const one = c.params!.market_ticker;
    const many = c.params!.market_tickers;
    if (one === undefined && many === undefined) return null;
    const list: unknown[] = [];
    if (one !== undefined) list.push(one);
    if (many !== undefined) {
      if (!Array.isArray(many)) return (this.error(conn, c.id, 11, 'market_tickers must be a list'), false);
      list.push(...many);
    }
    if (list.length === 0) return null; // an empty list is no list
    if (!list.every((t) => typeof t === 'string' && t.length > 0)) return (this.error(conn, c.id, 11, 'market tickers must be strings'), false);
    const unknown = (list as string[]).find((t) => !this.state.markets.has(t));
    if (unknown !== undefined) return (this.error(conn, c.id, 16, unknown), false);
    return [...new Set(list as string[])];
  }

  private subscribe(conn: Conn, c: Cmd): void {
    const channels = c.params!.channels;
    if (!Array.isArray(channels) || channels.length === 0) return this.error(conn, c.id, 3);
    for (const ch of channels) {
      const known = typeof ch === 'string' && (ch === SEQUENCED || ALL_MARKET_CHANNELS.has(ch) || GLOBAL_CHANNELS.has(ch) || PRIVATE_CHANNELS.has(ch));
      if (!known) return this.error(conn, c.id, 8, String(ch));
    }
    const tickers = this.tickersParam(conn, c);
    if (tickers === false) return;
    const useYes = c.params!.use_yes_price;
    if (useYes !== undefined && typeof useYes !== 'boolean') return this.error(conn, c.id, 11, 'use_yes_price must be a boolean');
    for (const ch of channels as string[]) this.subscribeOne(conn, c, ch, tickers, useYes === true);
  }

  private subscribeOne(conn: Conn, c: Cmd, channel: string, tickers: string[] | null, useYesPrice: boolean): void {
    if (PRIVATE_CHANNELS.has(channel) && !conn.authed) return this.error(conn, c.id, 9, channel);
    if (channel === SEQUENCED && !tickers) return this.error(conn, c.id, 14);
    const same = [...conn.subs.values()].filter((s) => s.channel === channel);
    const filtered = channel === SEQUENCED || ALL_MARKET_CHANNELS.has(channel);
    const useTickers = filtered ? tickers : null;
    if (useTickers === null) {
      // An all-markets subscription already there: subscribing again is a no-op.
      const existing = same.find((s) => s.tickers === null);
      if (existing) return this.push(conn, subscribedFrame(c.id, channel, existing.sid));
    }
    const fresh = useTickers ? useTickers.filter((t) => !same.some((s) => s.tickers === null || s.tickers.has(t))) : null;
    if (fresh && fresh.length === 0) {
      return this.push(conn, subscribedFrame(c.id, channel, same[0]!.sid));
    }
    if (fresh && fresh.length > this.o.marketsPerSubMax) return this.error(conn, c.id, 26, `${fresh.length} > ${this.o.marketsPerSubMax}`);
    const sub: Sub = { conn, sid: conn.nextSid++, channel, tickers: fresh ? new Set(fresh) : null, useYesPrice, seq: 0, alive: true, nextFault: null };
    conn.subs.set(sub.sid, sub);
    if (sub.tickers) this.index(sub, sub.tickers);
    else if (channel === 'ticker') this.tickerAll.add(sub);
    else if (channel === 'trade') this.tradeAll.add(sub);
    else if (GLOBAL_CHANNELS.has(channel) && channel === 'market_lifecycle_v2') this.lifecycleSubs.add(sub);
    this.push(conn, subscribedFrame(c.id, channel, sub.sid));
    if (channel === SEQUENCED) for (const t of sub.tickers!) this.snapshot(sub, t);
  }

  private unsubscribe(conn: Conn, c: Cmd): void {
    const sids = c.params!.sids;
    if (!Array.isArray(sids) || sids.length === 0) return this.error(conn, c.id, 4);
    for (const sid of sids) {
      const sub = typeof sid === 'number' ? conn.subs.get(sid) : undefined;
      if (!sub) {
        this.error(conn, c.id, 7, String(sid));
        continue;
      }
      const seq = ++sub.seq;
      this.dropSub(sub);
      this.push(conn, replyFrame(c.id, 'unsubscribed', sub.sid, seq, undefined, this.sentMs()));
    }
  }

  private updateSubscription(conn: Conn, c: Cmd): void {
    const p = c.params!;
    if (p.sid === undefined && p.sids === undefined) return this.error(conn, c.id, 4);
    const sids = p.sids !== undefined ? p.sids : [p.sid];
    if (!Array.isArray(sids) || sids.length !== 1 || (p.sid !== undefined && p.sids !== undefined)) return this.error(conn, c.id, 12);
    if (typeof sids[0] !== 'number') return this.error(conn, c.id, 11, 'sid must be an integer');
    const sub = conn.subs.get(sids[0]);
    if (!sub) return this.error(conn, c.id, 7, String(sids[0]));
    if (p.action === undefined) return this.error(conn, c.id, 15);
    if (p.action !== 'add_markets' && p.action !== 'delete_markets' && p.action !== 'get_snapshot') return this.error(conn, c.id, 13, String(p.action));
    if (!sub.tickers) return this.error(conn, c.id, 13, `${p.action} on an all-markets subscription`);
    if (p.action === 'get_snapshot' && sub.channel !== SEQUENCED) return this.error(conn, c.id, 13, 'get_snapshot needs orderbook_delta');
    const tickers = this.tickersParam(conn, c);
    if (tickers === false) return;
    if (tickers === null || tickers.length === 0) return this.error(conn, c.id, 14);
    if (p.action === 'add_markets') return this.addMarkets(conn, c, sub, tickers);
    if (p.action === 'delete_markets') {
      const gone = tickers.filter((t) => sub.tickers!.has(t));
      for (const t of gone) sub.tickers.delete(t);
      this.unindex(sub, gone);
      return this.ack(conn, c, sub);
    }
    const held = tickers.filter((t) => sub.tickers!.has(t));
    if (held.length === 0) return this.error(conn, c.id, 11, 'no subscribed market among market_tickers');
    this.ack(conn, c, sub);
    for (const t of held) this.snapshot(sub, t);
  }

  private addMarkets(conn: Conn, c: Cmd, sub: Sub, tickers: string[]): void {
    const fresh = tickers.filter((t) => !sub.tickers!.has(t));
    if (sub.tickers!.size + fresh.length > this.o.marketsPerSubMax) {
      return this.error(conn, c.id, 26, `${sub.tickers!.size + fresh.length} > ${this.o.marketsPerSubMax}`);
    }
    for (const t of fresh) sub.tickers!.add(t);
    this.index(sub, fresh);
    this.ack(conn, c, sub);
    if (sub.channel === SEQUENCED) for (const t of fresh) this.snapshot(sub, t);
  }

  private ack(conn: Conn, c: Cmd, sub: Sub): void {
    const seq = ++sub.seq;
    this.push(conn, replyFrame(c.id, 'ok', sub.sid, seq, JSON.stringify({ market_tickers: [...sub.tickers!] }), this.sentMs()));
  }

  // ---------------- injected connection faults ----------------
  /** Live connections in id order (fault targets are drawn from this list). */
  liveConns(): Conn[] {
    return [...this.conns.values()].filter((c) => c.ws !== null).sort((a, b) => a.id - b.id);
  }
  pickConn(connId?: number): Conn | undefined {
    if (connId !== undefined) return this.conns.get(connId);
    const live = this.liveConns();
    return live.length === 0 ? undefined : live[this.faultRng.int(live.length)];
  }
  /** The order-book markets a connection holds (what a checker must expect gaps on). */
  private bookMarkets(conn: Conn): string[] {
    const out: string[] = [];
    for (const sub of conn.subs.values()) if (sub.channel === SEQUENCED && sub.tickers) out.push(...sub.tickers);
    return out.sort();
  }
  disconnect(conn: Conn): void {
    this.fault({ kind: 'disconnect', conn: conn.id, markets: this.bookMarkets(conn) });
    conn.ws?.close();
  }
  stall(conn: Conn, forUs: number): void {
    conn.stalledUntilUs = this.state.nowUs + forUs;
    this.fault({ kind: 'stall', conn: conn.id, until_us: conn.stalledUntilUs, markets: this.bookMarkets(conn) });
  }
  oversized(conn: Conn, bytes: number): void {
    this.fault({ kind: 'oversized', conn: conn.id, detail: `${bytes} bytes` });
    const head = '{"type":"sim_oversized","msg":{"pad":"';
    this.push(conn, head + 'x'.repeat(Math.max(0, bytes - head.length - 3)) + '"}}');
    this.flush();
  }
  /** Error 25 on one sid (the given one, or a seeded pick among the connection's sids). */
  err25(conn: Conn, sid?: number): void {
    const subs = [...conn.subs.values()].sort((a, b) => a.sid - b.sid);
    const sub = sid !== undefined ? conn.subs.get(sid) : subs.length ? subs[this.faultRng.int(subs.length)] : undefined;
    if (!sub) return this.fault({ kind: 'err25', conn: conn.id, detail: 'no subscription' });
    this.fault({ kind: 'err25', conn: conn.id, sid: sub.sid, markets: sub.tickers ? [...sub.tickers] : [], seq: sub.seq });
    this.flush();
    this.killSub(sub);
  }
}
