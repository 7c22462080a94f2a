// The connection manager: shards markets over WebSocket connections and subscriptions, keeps the
// connections alive (reconnect with backoff and jitter, silence detection), and resubscribes or
// resyncs after breaks. It runs on the ingest thread and never parses data frames: every frame
// goes to the frame sink (the ring router) untouched; workers report replies back (ExchangeReply, src/workers/protocol.ts).
import WebSocket from 'ws';
import type { ErrorCode } from '../core/errors';
import type { Logger } from '../core/log';
import { Backoff } from '../core/backoff';
import type { FrameSink } from '../ingest/router';
import { WS_ERROR_MARKET_LIMIT } from '../kalshi/protocol';
import type { ExchangeReply } from '../workers/protocol';

export interface ConnectionManagerOptions {
  readonly wsUrl: string;
  readonly connections: number;
  /** Markets per subscribe command; halved on error 26 down to marketsPerSubscriptionMin. */
  readonly marketsPerSubscription: number;
  readonly marketsPerSubscriptionMin: number;
  /** No frame (data or ping) for this long: the connection is presumed dead. Kalshi pings every 10 s. */
  readonly silenceTimeoutMs: number;
  readonly backoffInitialMs: number;
  readonly backoffMaxMs: number;
  /** Each connection's first connect waits a random time up to this (three gatherers never in lockstep). */
  readonly startJitterMs: number;
  readonly handshakeTimeoutMs: number;
  readonly commandTimeoutMs: number;
  readonly wsMaxPayloadBytes: number;
  /** Channels subscribed per market shard. */
  readonly marketChannels: readonly string[];
  /**
   * All-markets channels (no market filter): the i-th is held by connection (i mod connections)+1.
   * Kalshi sends every market's messages on them, new markets' from their first message, so a
   * market created a moment ago loses no trade or ticker waiting for its shard subscription.
   */
  readonly globalChannels: readonly string[];
  /** Sent explicitly on every orderbook subscription: Kalshi has said the default will flip. */
  readonly useYesPrice: boolean;
}

export interface ConnectionEvents {
  /** A connection dropped (or went silent): its markets lost data from lastFrameUs until it is back. */
  disconnected(connId: number, tickers: readonly string[], lastFrameUs: number, reason: string): void;
  /** Every shard of a reconnected connection is subscribed again. */
  resubscribed(connId: number, tickers: readonly string[], downSinceUs: number): void;
  error(type: string, detail: Record<string, unknown>): void;
  reconnect(connId: number): void;
  /** The exchange acked the order-book subscription of these markets (subscribe or add_markets). */
  marketsSubscribed?(connId: number, tickers: readonly string[]): void;
}

interface Shard {
  readonly id: number;
  readonly connId: number;
  readonly tickers: Set<string>;
  /** channel -> live sid */
  readonly sids: Map<string, number>;
}

interface PendingCommand {
  readonly kind: 'subscribe' | 'update' | 'unsubscribe';
  readonly shard: Shard | undefined;
  readonly channels: Set<string>;
  readonly tickers: readonly string[];
  /** update_subscription's action (updates only). */
  readonly action?: 'add_markets' | 'delete_markets' | 'get_snapshot';
  readonly timer: NodeJS.Timeout;
  readonly onDone: ((ok: boolean) => void) | undefined;
}

interface Conn {
  readonly id: number;
  socket: WebSocket | undefined;
  epoch: number;
  nextCommandId: number;
  readonly pending: Map<number, PendingCommand>;
  readonly backoff: Backoff;
  lastFrameUs: number;
  /** When the connection last broke (µs) and not yet fully resubscribed; 0 when healthy. */
  downSinceUs: number;
  reconnectTimer: NodeJS.Timeout | undefined;
  paused: boolean;
  /** Set by forceReconnect: why, and from when data counts as lost. */
  forced: { reason: string; lossSinceUs: number } | undefined;
}

const nowUs = (): number => Date.now() * 1000;
// add_markets are gathered this long per shard before one command goes out (see queueAdd).
const ADD_COALESCE_MS = 20;

export class ConnectionManager {
  private readonly conns: Conn[] = [];
  private readonly shards = new Map<number, Shard>();
  private readonly shardOfTicker = new Map<string, Shard>();
  private nextShardId = 1;
  private shardSize: number;
  private stopped = false;
  /** add_markets waiting to be sent, per shard (see queueAdd). */
  private readonly pendingAdds = new Map<Shard, string[]>();
  private addFlushTimer: NodeJS.Timeout | undefined;
  /** Live all-markets subscriptions: channel -> connection and sid. */
  private readonly globalSids = new Map<string, { readonly connId: number; readonly sid: number }>();
  private silenceTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly opts: ConnectionManagerOptions,
    private readonly sink: FrameSink,
    private readonly events: ConnectionEvents,
    private readonly upgradeHeaders: () => Record<string, string>,
    private readonly log: Logger,
  ) {
    this.shardSize = opts.marketsPerSubscription;
    // Connection ids start at 1: conn_id 0 marks REST-sourced rows in the tables.
    for (let id = 1; id <= opts.connections; id++) {
      this.conns.push({
        id,
        socket: undefined,
        epoch: 0,
        nextCommandId: 1,
        pending: new Map(),
        backoff: new Backoff({ initialMs: opts.backoffInitialMs, maxMs: opts.backoffMaxMs, jitter: 'full' }),
        lastFrameUs: 0,
        downSinceUs: 0,
        reconnectTimer: undefined,
        paused: false,
        forced: undefined,
      });
    }
  }

  start(): void {
    for (const c of this.conns) this.scheduleConnect(c, Math.random() * this.opts.startJitterMs);
    this.silenceTimer = setInterval(() => this.checkSilence(), Math.max(250, this.opts.silenceTimeoutMs / 4));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.silenceTimer) clearInterval(this.silenceTimer);
    if (this.addFlushTimer) clearTimeout(this.addFlushTimer);
    const closing: Promise<void>[] = [];
    for (const c of this.conns) {
      if (c.reconnectTimer) clearTimeout(c.reconnectTimer);
      for (const p of c.pending.values()) clearTimeout(p.timer);
      c.pending.clear();
      const s = c.socket;
      if (s && s.readyState !== WebSocket.CLOSED) {
        closing.push(new Promise((resolve) => s.once('close', () => resolve())));
        s.close(1000, 'shutdown');
        setTimeout(() => s.terminate(), 2000).unref();
      }
    }
    await Promise.all(closing);
  }

  /** Open connections (for health and the ws_client_connected gauge). */
  openConnections(): number {
    return this.conns.filter((c) => c.socket?.readyState === WebSocket.OPEN).length;
  }

  /** Open, fully subscribed and heard from within the silence limit. */
  healthyConnections(): number {
    const limit = nowUs() - this.opts.silenceTimeoutMs * 1000;
    return this.conns.filter((c) => c.socket?.readyState === WebSocket.OPEN && c.downSinceUs === 0 && c.lastFrameUs >= limit).length;
  }

  /** Every all-markets channel (lifecycle, ticker, trade) has a live subscription. */
  globalSubscribed(): boolean {
    return this.globalSids.size >= this.opts.globalChannels.length;
  }

  /** Every connection open, no subscribe outstanding, every shard holding a sid per market channel. */
  allSubscribed(): boolean {
    if (this.openConnections() !== this.conns.length) return false;
    if (this.globalSids.size < this.opts.globalChannels.length) return false;
    for (const c of this.conns) for (const p of c.pending.values()) if (p.kind === 'subscribe') return false;
    for (const s of this.shards.values()) {
      if (s.tickers.size > 0 && s.sids.size < this.opts.marketChannels.length) return false;
    }
    return true;
  }

  subscriptionCount(): number {
    let n = 0;
    for (const s of this.shards.values()) n += s.sids.size;
    return n;
  }

  marketCount(): number {
    return this.shardOfTicker.size;
  }

  connectionIds(): number[] {
    return this.conns.map((c) => c.id);
  }

  /** Whether a shard holds sid on connId now. */
  hasSid(connId: number, sid: number): boolean {
    return this.findSid(connId, sid) !== undefined || this.globalChannelOfSid(connId, sid) !== undefined;
  }

  /** The all-markets channel the sid carries on connId, if it is one. */
  globalChannelOfSid(connId: number, sid: number): string | undefined {
    for (const [channel, g] of this.globalSids) if (g.connId === connId && g.sid === sid) return channel;
    return undefined;
  }

  /** True when connId is the connection that holds the all-markets subscription of `channel`. */
  holdsGlobal(connId: number, channel: string): boolean {
    return this.globalChannelsOf(connId).includes(channel);
  }

  /** Every market the manager follows. */
  allTickers(): string[] {
    return [...this.shardOfTicker.keys()];
  }

  private globalChannelsOf(connId: number): string[] {
    return this.opts.globalChannels.filter((_, i) => (i % this.conns.length) + 1 === connId);
  }

  /** Open and not waiting to resubscribe after a break. */
  connectionWhole(connId: number): boolean {
    const c = this.conns[connId - 1];
    return c !== undefined && c.socket?.readyState === WebSocket.OPEN && c.downSinceUs === 0;
  }

  /** Markets of the shard that holds sid on connId (empty when the sid is unknown). */
  tickersOfSid(connId: number, sid: number): string[] {
    const found = this.findSid(connId, sid);
    return found ? [...found.shard.tickers] : [];
  }

  /**
   * Drops a connection on purpose (e.g. its worker died): it reconnects and resubscribes as after any
   * break. `lossSinceUs` widens the loss window when data received earlier than the last frame was
   * lost too (frames a dead worker had taken off its ring but not committed).
   */
  forceReconnect(connId: number, reason: string, lossSinceUs?: number): void {
    const c = this.conns[connId - 1];
    if (!c?.socket) return;
    this.log.warn({ connId, reason }, 'forcing reconnect');
    c.forced = { reason, lossSinceUs: lossSinceUs ?? c.lastFrameUs };
    c.socket.terminate();
  }

  tickersOf(connId: number): string[] {
    const out: string[] = [];
    for (const s of this.shards.values()) if (s.connId === connId) out.push(...s.tickers);
    return out;
  }

  /** Adds markets: fills shards with room (add_markets on each sid) or opens new shards. */
  addMarkets(tickers: readonly string[]): void {
    const fresh = tickers.filter((t) => !this.shardOfTicker.has(t));
    // While a connection holds no shard, spread the markets over every connection: each connection
    // feeds one worker (connId % workers), so 200 markets in one 250-market shard left a worker
    // idle and halved end-to-end throughput (profiled on bench/gatherer-e2e).
    const idleConnections = this.conns.some((c) => ![...this.shards.values()].some((s) => s.connId === c.id));
    const spreadMax = idleConnections ? Math.ceil(fresh.length / this.conns.length) : Infinity;
    let i = 0;
    while (i < fresh.length) {
      const shard = this.shardWithRoom() ?? this.newShard();
      const take = fresh.slice(i, i + Math.min(spreadMax, this.shardSize - shard.tickers.size));
      i += take.length;
      for (const t of take) {
        shard.tickers.add(t);
        this.shardOfTicker.set(t, shard);
      }
      if (shard.sids.size > 0) this.queueAdd(shard, take);
      else if (!this.subscribing(shard)) this.subscribeShard(shard, this.opts.marketChannels);
      // else: the shard's subscribe is in flight; its ack adds these (see finish).
    }
  }

  /**
   * add_markets for a shard, coalesced over ADD_COALESCE_MS: a creation burst of hundreds of
   * markets is one command per shard, not one per market (the exchange answers error 27 past its
   * command rate: at 40,000 markets one add_markets per created market drew it, and the refused
   * markets were never subscribed).
   */
  private queueAdd(shard: Shard, tickers: readonly string[]): void {
    const list = this.pendingAdds.get(shard);
    if (list) list.push(...tickers);
    else this.pendingAdds.set(shard, [...tickers]);
    this.addFlushTimer ??= setTimeout(() => this.flushAdds(), ADD_COALESCE_MS);
  }

  private flushAdds(): void {
    this.addFlushTimer = undefined;
    const adds = [...this.pendingAdds];
    this.pendingAdds.clear();
    for (const [shard, tickers] of adds) {
      const still = tickers.filter((t) => shard.tickers.has(t));
      // A shard without sids is being (re)subscribed with all its markets: nothing to add.
      if (still.length > 0 && this.shards.has(shard.id) && shard.sids.size > 0) this.updateShard(shard, 'add_markets', still);
    }
  }

  private subscribing(shard: Shard): boolean {
    for (const p of this.conns[shard.connId - 1]!.pending.values()) if (p.kind === 'subscribe' && p.shard === shard) return true;
    return false;
  }

  /** Removes finished markets from their subscriptions. */
  removeMarkets(tickers: readonly string[]): void {
    const byShard = new Map<Shard, string[]>();
    for (const t of tickers) {
      const shard = this.shardOfTicker.get(t);
      if (!shard) continue;
      this.shardOfTicker.delete(t);
      shard.tickers.delete(t);
      byShard.set(shard, [...(byShard.get(shard) ?? []), t]);
    }
    for (const [shard, gone] of byShard) {
      if (shard.tickers.size === 0) {
        this.unsubscribeShard(shard);
        this.shards.delete(shard.id);
      } else {
        this.updateShard(shard, 'delete_markets', gone);
      }
    }
  }

  /**
   * Resynchronises markets after a break on one sid: a sequence gap asks for fresh snapshots on the
   * same sid; a terminal error (the sid is dead) subscribes the channel again for the shard.
   * onDone(true) once the exchange acknowledged.
   */
  resync(connId: number, sid: number, terminal: boolean, onDone: (ok: boolean) => void): void {
    const global = this.globalChannelOfSid(connId, sid);
    if (global !== undefined) {
      // Only books have snapshots: a live all-markets sid needs nothing; a dead one is subscribed again.
      if (!terminal) return onDone(true);
      this.globalSids.delete(global);
      return this.subscribeGlobal(this.conns[connId - 1]!, [global], onDone);
    }
    const found = this.findSid(connId, sid);
    if (!found) return onDone(false);
    const { shard, channel } = found;
    if (terminal) {
      shard.sids.delete(channel);
      this.subscribeShard(shard, [channel], onDone);
    } else {
      this.sendUpdate(shard, sid, 'get_snapshot', [...shard.tickers], onDone);
    }
  }

  /** Replies and errors from the exchange, as parsed by the workers. */
  onReply(reply: ExchangeReply): void {
    const conn = this.conns[reply.connId - 1];
    if (!conn) return;
    const pending = reply.type === 'error' && reply.id === undefined ? undefined : conn.pending.get(reply.id ?? -1);
    switch (reply.type) {
      case 'subscribed':
        if (pending?.shard) pending.shard.sids.set(reply.channel, reply.sid);
        else if (pending?.kind === 'subscribe') this.globalSids.set(reply.channel, { connId: conn.id, sid: reply.sid });
        pending?.channels.delete(reply.channel);
        if (pending && pending.channels.size === 0) this.finish(conn, reply.id, true);
        break;
      case 'ok':
      case 'unsubscribed':
        if (pending) this.finish(conn, reply.id, true);
        break;
      case 'error':
        this.onExchangeError(conn, reply, pending);
        break;
    }
  }

  private onExchangeError(conn: Conn, reply: Extract<ExchangeReply, { type: 'error' }>, pending: PendingCommand | undefined): void {
    this.events.error(`exchange_${reply.code}`, { connId: conn.id, id: reply.id, sid: reply.sid, msg: reply.msg });
    // Not thrown: every refusal is handled below (split, move, retry after backoff, or a resync).
    this.log.warn(
      { connId: conn.id, code: 'KDP_ERR_WS_PROTOCOL' satisfies ErrorCode, exchangeCode: reply.code, id: reply.id, sid: reply.sid, msg: reply.msg },
      'exchange refused a command',
    );
    if (reply.code === WS_ERROR_MARKET_LIMIT && pending?.kind === 'subscribe' && pending.shard) {
      this.finish(conn, reply.id!, false);
      this.splitShard(pending.shard);
      return;
    }
    if (reply.code === WS_ERROR_MARKET_LIMIT && pending?.kind === 'update' && pending.action === 'add_markets' && pending.shard) {
      this.finish(conn, reply.id!, false);
      this.moveRefusedMarkets(pending.shard, pending.tickers);
      return;
    }
    if (reply.id !== undefined && pending?.kind === 'update' && pending.action === 'add_markets' && pending.shard) {
      // Refused for another reason (27 too many requests, 18 timeout, ...): asked again after the
      // connection's backoff, like a refused subscribe. Dropping it left markets never subscribed.
      this.finish(conn, reply.id, false);
      const shard = pending.shard;
      const tickers = pending.tickers;
      setTimeout(() => !this.stopped && this.queueAdd(shard, tickers), conn.backoff.nextDelayMs()).unref();
      return;
    }
    if (reply.id !== undefined && pending) {
      // A refused subscribe is retried after the connection's backoff: never give up on markets.
      // Whoever waits for it (a resync after a dead sid) hears when the retry is done, not now.
      const global = pending.kind === 'subscribe' && pending.shard === undefined;
      const retried = global || (pending.kind === 'subscribe' && pending.shard !== undefined && this.shards.has(pending.shard.id));
      this.finish(conn, reply.id, false, !retried);
      const channels = [...pending.channels];
      if (global) {
        setTimeout(() => !this.stopped && this.subscribeGlobal(conn, channels, pending.onDone), conn.backoff.nextDelayMs()).unref();
      } else if (retried) {
        const shard = pending.shard!;
        setTimeout(() => !this.stopped && this.subscribeShard(shard, channels, pending.onDone), conn.backoff.nextDelayMs()).unref();
      }
    }
    // Terminal errors on a live sid (10, 17, 25) are turned into gap events by the worker's
    // sequence checker; the gatherer service answers those with resync().
  }

  private splitShard(shard: Shard): void {
    const newSize = Math.max(this.opts.marketsPerSubscriptionMin, Math.floor(shard.tickers.size / 2));
    this.shardSize = Math.min(this.shardSize, newSize);
    this.log.warn({ shard: shard.id, markets: shard.tickers.size, newSize }, 'market limit (26): splitting subscription');
    const tickers = [...shard.tickers];
    this.unsubscribeShard(shard);
    this.shards.delete(shard.id);
    for (const t of tickers) this.shardOfTicker.delete(t);
    this.addMarkets(tickers);
  }

  /**
   * add_markets refused with error 26 on one of the shard's sids: the shard is full at the size it
   * held before. The markets leave it (deleted from the sids that took them, so every channel of a
   * shard holds the same markets) and go to new shards of at most that size. Without this they were
   * never subscribed: the control test's cap of 15 hit an add to a live 12-market shard.
   */
  private moveRefusedMarkets(shard: Shard, tickers: readonly string[]): void {
    const refused = tickers.filter((t) => this.shardOfTicker.get(t) === shard);
    if (refused.length === 0) return; // another channel's refusal already moved them
    for (const t of refused) {
      shard.tickers.delete(t);
      this.shardOfTicker.delete(t);
    }
    this.shardSize = Math.max(this.opts.marketsPerSubscriptionMin, Math.min(this.shardSize, shard.tickers.size));
    this.log.warn(
      { shard: shard.id, markets: refused.length, newSize: this.shardSize },
      'market limit (26) on add_markets: moving the markets to new subscriptions',
    );
    if (this.shards.has(shard.id)) this.updateShard(shard, 'delete_markets', refused);
    this.addMarkets(refused);
  }

  /** A live shard with room. Shards whose subscribe is still outstanding are sealed: adding to
   *  them would race the reply, so new markets open a new shard instead. */
  /** A shard with room, subscribed or with its subscribe in flight (markets added then follow its ack). */
  private shardWithRoom(): Shard | undefined {
    for (const s of this.shards.values()) if (s.tickers.size < this.shardSize && (s.sids.size > 0 || this.subscribing(s))) return s;
    return undefined;
  }

  private newShard(): Shard {
    // Least-loaded connection takes the shard.
    const load = this.conns.map((c) => ({ c, n: 0 }));
    for (const s of this.shards.values()) load[s.connId - 1]!.n += 1;
    load.sort((a, b) => a.n - b.n || a.c.id - b.c.id);
    const shard: Shard = { id: this.nextShardId++, connId: load[0]!.c.id, tickers: new Set(), sids: new Map() };
    this.shards.set(shard.id, shard);
    return shard;
  }

  private findSid(connId: number, sid: number): { shard: Shard; channel: string } | undefined {
    for (const shard of this.shards.values()) {
      if (shard.connId !== connId) continue;
      for (const [channel, s] of shard.sids) if (s === sid) return { shard, channel };
    }
    return undefined;
  }

  private send(conn: Conn, cmd: string, params: Record<string, unknown>, meta: Omit<PendingCommand, 'timer'>): boolean {
    const s = conn.socket;
    if (!s || s.readyState !== WebSocket.OPEN) return false;
    const id = conn.nextCommandId++;
    const timer = setTimeout(() => this.onCommandTimeout(conn, id), this.opts.commandTimeoutMs);
    timer.unref();
    conn.pending.set(id, { ...meta, timer });
    s.send(JSON.stringify({ id, cmd, params }));
    return true;
  }

  private onCommandTimeout(conn: Conn, id: number): void {
    this.events.error('command_timeout', { connId: conn.id, id });
    // A silent exchange on a live socket is treated like a dead connection: reconnect and resubscribe.
    this.finish(conn, id, false);
    conn.socket?.terminate();
  }

  private finish(conn: Conn, id: number, ok: boolean, notify = true): void {
    const p = conn.pending.get(id);
    if (!p) return;
    clearTimeout(p.timer);
    conn.pending.delete(id);
    if (ok && p.kind === 'subscribe' && p.shard !== undefined) this.addJoinedMeanwhile(p.shard, p.tickers);
    if (ok && p.shard !== undefined && (p.kind === 'subscribe' || p.action === 'add_markets') && p.tickers.length > 0)
      this.events.marketsSubscribed?.(conn.id, p.tickers);
    if (notify) p.onDone?.(ok);
    if (ok) this.checkResubscribed(conn);
  }

  /** Markets added to a shard while its subscribe was in flight are added once it is acked. */
  private addJoinedMeanwhile(shard: Shard, subscribed: readonly string[]): void {
    if (shard.tickers.size === subscribed.length || shard.sids.size === 0) return;
    const had = new Set(subscribed);
    const joined = [...shard.tickers].filter((t) => !had.has(t));
    if (joined.length > 0) this.queueAdd(shard, joined);
  }

  /** After a break: once no subscribe is outstanding on the open socket, the connection is whole again. */
  private checkResubscribed(conn: Conn): void {
    if (conn.downSinceUs === 0 || conn.socket?.readyState !== WebSocket.OPEN) return;
    for (const p of conn.pending.values()) if (p.kind === 'subscribe') return;
    this.events.resubscribed(conn.id, this.tickersOf(conn.id), conn.downSinceUs);
    conn.downSinceUs = 0;
    conn.backoff.reset();
  }

  private subscribeShard(shard: Shard, channels: readonly string[], onDone?: (ok: boolean) => void): void {
    const conn = this.conns[shard.connId - 1]!;
    const tickers = [...shard.tickers];
    const params: Record<string, unknown> = { channels, market_tickers: tickers };
    if (channels.includes('orderbook_delta')) params.use_yes_price = this.opts.useYesPrice;
    const sent = this.send(conn, 'subscribe', params, { kind: 'subscribe', shard, channels: new Set(channels), tickers, onDone });
    if (!sent) onDone?.(false); // not connected: the reconnect resubscribes every shard
  }

  /** All-markets channels (no market filter) this connection holds (see globalChannels). */
  private subscribeGlobal(conn: Conn, channels: readonly string[] = this.globalChannelsOf(conn.id), onDone?: (ok: boolean) => void): void {
    if (channels.length === 0) return onDone?.(true);
    const sent = this.send(conn, 'subscribe', { channels }, { kind: 'subscribe', shard: undefined, channels: new Set(channels), tickers: [], onDone });
    if (!sent) onDone?.(false); // not connected: the reconnect subscribes them again
  }

  private updateShard(shard: Shard, action: 'add_markets' | 'delete_markets', tickers: readonly string[]): void {
    for (const sid of shard.sids.values()) this.sendUpdate(shard, sid, action, tickers, undefined);
  }

  private sendUpdate(
    shard: Shard,
    sid: number,
    action: 'add_markets' | 'delete_markets' | 'get_snapshot',
    tickers: readonly string[],
    onDone: ((ok: boolean) => void) | undefined,
  ): void {
    const conn = this.conns[shard.connId - 1]!;
    const sent = this.send(
      conn,
      'update_subscription',
      { sids: [sid], action, market_tickers: tickers },
      { kind: 'update', shard, channels: new Set(), tickers, action, onDone },
    );
    if (!sent) onDone?.(false);
  }

  private unsubscribeShard(shard: Shard): void {
    const conn = this.conns[shard.connId - 1]!;
    if (shard.sids.size === 0) return;
    this.send(
      conn,
      'unsubscribe',
      { sids: [...shard.sids.values()] },
      { kind: 'unsubscribe', shard: undefined, channels: new Set(), tickers: [], onDone: undefined },
    );
    shard.sids.clear();
  }

  private scheduleConnect(conn: Conn, delayMs: number): void {
    if (this.stopped) return;
    conn.reconnectTimer = setTimeout(() => this.connect(conn), delayMs);
  }

  private connect(conn: Conn): void {
    if (this.stopped) return;
    const socket = new WebSocket(this.opts.wsUrl, {
      headers: this.upgradeHeaders(),
      perMessageDeflate: false,
      // The worker checks every message is UTF-8 (FrameCodec.decode: rejected, counted as
      // KDP_ERR_MSG_JSON), off the ingest thread, which every message crosses.
      skipUTF8Validation: true,
      maxPayload: this.opts.wsMaxPayloadBytes,
      handshakeTimeout: this.opts.handshakeTimeoutMs,
    });
    conn.socket = socket;
    socket.on('open', () => this.onOpen(conn, socket));
    socket.on('message', (data: Buffer) => this.onFrame(conn, socket, data));
    socket.on('ping', () => (conn.lastFrameUs = nowUs()));
    // A handshake the exchange answers with an HTTP status (401/403: a revoked or wrong key) is
    // counted once as http_<status>: terminating the still-connecting socket raises 'error' too.
    let refusedStatus = 0;
    socket.on('error', (err) => {
      // Closing a still-connecting socket at stop() raises 'error' too: our own doing, not the
      // exchange's (a clean-clone CI run counted one as 'connect' after five refused handshakes).
      if (refusedStatus !== 0 || this.stopped) return;
      this.events.error('connect', { connId: conn.id, message: err.message });
      this.log.warn({ connId: conn.id, err: err.message }, 'WebSocket error');
    });
    socket.on('unexpected-response', (_req, res) => {
      refusedStatus = res.statusCode ?? 0;
      this.events.error(`http_${refusedStatus}`, { connId: conn.id });
      this.log.warn({ connId: conn.id, status: refusedStatus }, 'WebSocket handshake refused by the exchange (401/403: check the API key)');
      socket.terminate();
    });
    socket.on('close', (code) => this.onClose(conn, socket, code));
  }

  private onOpen(conn: Conn, socket: WebSocket): void {
    if (conn.socket !== socket) return;
    conn.epoch += 1;
    conn.lastFrameUs = nowUs();
    this.sink.notice(conn.id, { kind: 'opened', epoch: conn.epoch });
    this.log.info({ connId: conn.id, epoch: conn.epoch }, 'connected');
    this.subscribeGlobal(conn);
    for (const shard of this.shards.values()) {
      if (shard.connId !== conn.id || shard.tickers.size === 0) continue;
      shard.sids.clear();
      this.subscribeShard(shard, this.opts.marketChannels);
    }
    this.checkResubscribed(conn);
  }

  private onFrame(conn: Conn, socket: WebSocket, data: Buffer): void {
    const t = nowUs();
    conn.lastFrameUs = t;
    if (this.sink.push(conn.id, t, data) || conn.paused) return;
    // Ring full: stop reading this socket (TCP backpressure reaches the exchange) until it drains.
    conn.paused = true;
    socket.pause();
    void this.sink.waitForRoom(conn.id).then(() => {
      conn.paused = false;
      if (conn.socket === socket) socket.resume();
    });
  }

  private onClose(conn: Conn, socket: WebSocket, code: number): void {
    if (conn.socket !== socket) return;
    conn.socket = undefined;
    for (const p of conn.pending.values()) {
      clearTimeout(p.timer);
      p.onDone?.(false);
    }
    conn.pending.clear();
    for (const shard of this.shards.values()) if (shard.connId === conn.id) shard.sids.clear();
    for (const [channel, g] of this.globalSids) if (g.connId === conn.id) this.globalSids.delete(channel);
    this.sink.notice(conn.id, { kind: 'closed', epoch: conn.epoch });
    if (this.stopped) return;
    const forced = conn.forced;
    conn.forced = undefined;
    if (conn.downSinceUs === 0) {
      conn.downSinceUs = Math.min(conn.lastFrameUs || nowUs(), forced?.lossSinceUs ?? Infinity);
      this.events.disconnected(conn.id, this.tickersOf(conn.id), conn.downSinceUs, forced?.reason ?? `close ${code}`);
    }
    this.events.reconnect(conn.id);
    const delay = conn.backoff.nextDelayMs();
    this.log.warn({ connId: conn.id, code, delayMs: delay }, 'connection closed; reconnecting');
    this.scheduleConnect(conn, delay);
  }

  private checkSilence(): void {
    const limit = nowUs() - this.opts.silenceTimeoutMs * 1000;
    for (const c of this.conns) {
      if (c.socket?.readyState === WebSocket.OPEN && !c.paused && c.lastFrameUs < limit) {
        this.events.error('stale', { connId: c.id });
        // Not thrown: the socket is terminated and reconnected; the code names the condition in the log.
        this.log.warn({ connId: c.id, code: 'KDP_ERR_WS_STALE' satisfies ErrorCode }, 'connection silent too long; terminating');
        c.socket.terminate();
      }
    }
  }
}
